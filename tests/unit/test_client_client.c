/* The client object (lib/client/client.c): chat_client_new() refuses what
 * the 1.0 rules refuse (one version rule for settings, env, backoff,
 * callbacks and store; required members) and says why; it copies settings,
 * env and backoff; the store is the client's from CHAT_OK on and the
 * caller's on failure; chat_client_errmsg() keeps the last failure. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_harness.h"

static fake_env fe;
static chat_client_store_ops mem;
static int destroyed;
static void (*real_destroy)(void *);

static void counting_destroy(void *self) {
  destroyed++;
  real_destroy(self);
}

static void setup(void) {
  fake_env_init(&fe, 1700000000000, 42);
  cr_assert_eq(memory_client_store_open(&mem), CHAT_OK);
  real_destroy = mem.destroy;
  mem.destroy = counting_destroy;
  destroyed = 0;
}

static void teardown(void) {
  if (!destroyed)
    real_destroy(mem.self);
}

TestSuite(client, .init = setup, .fini = teardown);

/* One refusal: CHAT_ERR_INVAL, *out NULL, the store untouched and still
 * the caller's, and a detail naming `what`. */
static void refused(const chat_client_settings *s,
                    const chat_client_store_ops *st,
                    const chat_client_callbacks *cb,
                    const chat_allocator *a, const char *what) {
  chat_client *c = (chat_client *)&fe; /* not NULL: must be cleared */
  chat_errbuf err;
  strcpy(err.msg, "untouched");
  cr_assert_eq(chat_client_new(&c, s, st, cb, NULL, a, &err), CHAT_ERR_INVAL,
               "%s", what);
  cr_assert_null(c, "%s", what);
  cr_assert(strstr(err.msg, what), "detail for %s: \"%s\"", what, err.msg);
  cr_assert_eq(destroyed, 0, "the caller still owns the store");
  /* err may be NULL. */
  cr_assert_eq(chat_client_new(&c, s, st, cb, NULL, a, NULL),
               CHAT_ERR_INVAL);
}

Test(client, new_refuses_and_says_why) {
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1,
                            .env = &fe.env};
  chat_errbuf err;
  cr_assert_eq(chat_client_new(NULL, &s, &mem, NULL, NULL, NULL, &err),
               CHAT_ERR_INVAL);
  cr_assert(strstr(err.msg, "out"));
  refused(NULL, &mem, NULL, NULL, "settings: required");
  refused(&s, NULL, NULL, NULL, "store: required");
  s.env = NULL;
  refused(&s, &mem, NULL, NULL, "settings.env: required");
  chat_env env = fe.env;
  s.env = &env;
  env.random = NULL;
  refused(&s, &mem, NULL, NULL, "settings.env.random");
  env.random = fe.env.random;
  chat_allocator half = {.alloc = NULL};
  refused(&s, &mem, NULL, &half, "alloc:");
  /* Every store method is required but destroy. */
  const size_t first = offsetof(chat_client_store_ops, put_message);
  const size_t last = offsetof(chat_client_store_ops, destroy);
  for (size_t off = first; off < last; off += sizeof(void (*)(void))) {
    chat_client_store_ops st = mem;
    memset((char *)&st + off, 0, sizeof(void (*)(void)));
    refused(&s, &st, NULL, NULL, "store.");
  }
  /* And in a V2 store, every V2 method. */
  const size_t first2 = offsetof(chat_client_store_ops, outbox_add_v2);
  for (size_t off = first2; off < sizeof(chat_client_store_ops);
       off += sizeof(void (*)(void))) {
    chat_client_store_ops st = mem;
    memset((char *)&st + off, 0, sizeof(void (*)(void)));
    refused(&s, &st, NULL, NULL, "in a CHAT_CLIENT_STORE_OPS_V2 store");
  }
  chat_client_store_ops st = mem;
  st.destroy = NULL;
  chat_client *c;
  cr_assert_eq(chat_client_new(&c, &s, &st, NULL, NULL, NULL, NULL), CHAT_OK,
               "destroy may be NULL");
  chat_client_free(c);
  cr_assert_eq(destroyed, 0);
}

/* R1: version 0 and newest+1 refused, newest accepted, for every
 * versioned struct chat_client_new() reads. */
Test(client, every_struct_version_is_checked) {
  chat_env env = fe.env;
  chat_backoff bo = chat_backoff_default();
  chat_client_callbacks cb = {.version = CHAT_CLIENT_CALLBACKS_V2};
  chat_client_store_ops st = mem;
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1, .env = &env,
                            .backoff = &bo};
  struct {
    uint32_t *v;
    uint32_t newest;
    const char *what;
  } cases[] = {
      {&s.version, CHAT_CLIENT_SETTINGS_V1, "settings.version"},
      {&env.version, CHAT_ENV_V1, "settings.env.version"},
      {&bo.version, CHAT_BACKOFF_V1, "settings.backoff.version"},
      {&cb.version, CHAT_CLIENT_CALLBACKS_V2, "callbacks.version"},
      {&st.version, CHAT_CLIENT_STORE_OPS_V2, "store.version"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint32_t bad[] = {0, cases[i].newest + 1, 99};
    for (size_t k = 0; k < 3; k++) {
      *cases[i].v = bad[k];
      refused(&s, &st, &cb, NULL, cases[i].what);
    }
    *cases[i].v = cases[i].newest;
  }
  chat_client *c;
  cr_assert_eq(chat_client_new(&c, &s, &st, &cb, NULL, NULL, NULL), CHAT_OK);
  chat_client_free(c);
  cr_assert_eq(destroyed, 1, "freeing the client destroys its store once");
}

static chat_err fail_each_outbox(
    void *self, void (*fn)(void *, const chat_client_outbox_entry_v2 *),
    void *ctx) {
  (void)self, (void)fn, (void)ctx;
  return CHAT_ERR_MODULE;
}

Test(client, unreadable_store_stays_the_callers) {
  chat_client_store_ops st = mem;
  st.each_outbox_v2 = fail_each_outbox;
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1,
                            .env = &fe.env};
  chat_client *c;
  chat_errbuf err;
  cr_assert_eq(chat_client_new(&c, &s, &st, NULL, NULL, NULL, &err),
               CHAT_ERR_MODULE);
  cr_assert_null(c);
  cr_assert_str_eq(err.msg, "store.each_outbox: failed");
  cr_assert_eq(destroyed, 0);
}

/* settings, env and backoff are copied: the caller's may go away. */
Test(client, settings_env_and_backoff_are_copied) {
  chat_env *env = malloc(sizeof *env);
  chat_backoff *bo = malloc(sizeof *bo);
  *env = fe.env;
  *bo = (chat_backoff){.version = CHAT_BACKOFF_V1, .base_ms = 5000,
                       .cap_ms = 5000, .floor_ms = 5000};
  chat_client_settings *s = malloc(sizeof *s);
  *s = (chat_client_settings){.version = CHAT_CLIENT_SETTINGS_V1, .env = env,
                              .backoff = bo};
  chat_client *c;
  cr_assert_eq(chat_client_new(&c, s, &mem, NULL, NULL, NULL, NULL), CHAT_OK);
  memset(env, 0xa5, sizeof *env);
  memset(bo, 0xa5, sizeof *bo);
  memset(s, 0xa5, sizeof *s);
  free(env), free(bo), free(s);
  chat_client_start(c, 0);
  cr_assert_eq(chat_client_on_connecting(c, 0), CHAT_OK);
  cr_assert_eq(chat_client_on_close(c, 0, 0), CHAT_OK);
  cr_assert_eq(chat_client_get_state(c), CHAT_CLIENT_BACKOFF);
  cr_assert_eq(chat_client_next_deadline(c), 5000, "the copied backoff");
  char id[CHAT_CLIENT_MSG_ID_BUF];
  cr_assert_eq(chat_client_send(c, "c1", "x", 1, id, 0), CHAT_OK,
               "the copied env still draws ids");
  chat_client_free(c);
}

static void zero_random(void *ud, uint8_t *out, size_t n) {
  (void)ud;
  memset(out, 0, n);
}

/* With zero randomness the delay is the floor: a NULL backoff gives the
 * 100 ms default, a given one its own floor, 0 included. */
static chat_time_ms first_delay(const chat_backoff *bo) {
  chat_env env = fe.env;
  env.random = zero_random;
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1, .env = &env,
                            .backoff = bo};
  chat_client_store_ops st;
  cr_assert_eq(memory_client_store_open(&st), CHAT_OK);
  chat_client *c;
  cr_assert_eq(chat_client_new(&c, &s, &st, NULL, NULL, NULL, NULL), CHAT_OK);
  chat_client_start(c, 1000);
  chat_client_on_connecting(c, 1000);
  chat_client_on_close(c, 0, 1000);
  chat_time_ms d = chat_client_next_deadline(c) - 1000;
  chat_client_free(c);
  return d;
}

Test(client, backoff_null_means_defaults_and_floor_is_kept) {
  cr_assert_eq(first_delay(NULL), 100);
  chat_backoff bo = {.version = CHAT_BACKOFF_V1, .floor_ms = 250};
  cr_assert_eq(first_delay(&bo), 250, "zero base and cap take defaults");
  bo.floor_ms = 0;
  cr_assert_eq(first_delay(&bo), 0, "a floor of 0 is a floor of 0");
}

static void *seen_ud;
static chat_client *seen_c;

static void on_conn(void *ud, chat_client *c, chat_client_state st) {
  (void)st;
  seen_ud = ud;
  seen_c = c;
}

Test(client, callbacks_get_user_data_first) {
  chat_client_callbacks cb = {.version = CHAT_CLIENT_CALLBACKS_V1,
                              .on_connection = on_conn};
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1,
                            .env = &fe.env};
  chat_client *c;
  int token;
  cr_assert_eq(chat_client_new(&c, &s, &mem, &cb, &token, NULL, NULL),
               CHAT_OK);
  cr_assert_eq(chat_client_user_data(c), &token);
  chat_client_start(c, 0);
  cr_assert_eq(seen_ud, &token);
  cr_assert_eq(seen_c, c);
  chat_client_free(c);
}

Test(client, errmsg_keeps_the_last_failure) {
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1,
                            .env = &fe.env};
  chat_client *c;
  cr_assert_eq(chat_client_new(&c, &s, &mem, NULL, NULL, NULL, NULL),
               CHAT_OK);
  cr_assert_str_eq(chat_client_errmsg(c), "");
  cr_assert_str_eq(chat_client_errmsg(NULL), "");
  cr_assert_eq(chat_client_send(c, "bad id", "x", 1, NULL, 0),
               CHAT_ERR_INVAL);
  cr_assert(strstr(chat_client_errmsg(c), "conversation_id"), "%s",
            chat_client_errmsg(c));
  /* A success leaves it alone; the next failure replaces it. */
  cr_assert_eq(chat_client_send(c, "c1", "x", 1, NULL, 0), CHAT_OK);
  cr_assert(strstr(chat_client_errmsg(c), "conversation_id"));
  cr_assert_eq(chat_client_on_open(c, 0), CHAT_ERR_STATE);
  cr_assert(strstr(chat_client_errmsg(c), "on_open"), "%s",
            chat_client_errmsg(c));
  char big[70000];
  memset(big, 'a', sizeof big);
  cr_assert_eq(chat_client_send(c, "c1", big, sizeof big, NULL, 0),
               CHAT_ERR_TOO_LARGE);
  cr_assert(strstr(chat_client_errmsg(c), "max_body_bytes"));
  const char *many[101];
  for (int i = 0; i < 101; i++)
    many[i] = "u";
  cr_assert_eq(chat_client_watch_presence(c, many, 101, 0),
               CHAT_ERR_TOO_MANY);
  cr_assert(strstr(chat_client_errmsg(c), "101"));
  cr_assert_eq(chat_client_on_response(c, 77, 200, "{}", 2, 0),
               CHAT_ERR_NOT_FOUND);
  cr_assert(strstr(chat_client_errmsg(c), "77"));
  chat_client_free(c);
  chat_client_free(NULL);
}

static int v1_messages;

static void count_message(void *ud, chat_client *c, const chat_message *m,
                          chat_message_origin o) {
  (void)ud, (void)c, (void)m, (void)o;
  v1_messages++;
}

/* A store and callbacks written against the first 1.0 structs are read
 * only up to their last V1 member (exactly that many bytes are
 * allocated here, so ASan sees any read past them), and work: sends go
 * out, edit and delete entries arrive and are stored as they are, and
 * edit and delete calls say why they cannot be made. */
Test(client, v1_store_and_callbacks_are_read_to_their_end_only) {
  chat_client_store_ops v1;
  cr_assert_eq(memory_client_store_open_v1(&v1), CHAT_OK);
  size_t st_end = offsetof(chat_client_store_ops, destroy) +
                  sizeof(void (*)(void *));
  chat_client_store_ops *st = malloc(st_end);
  memcpy(st, &v1, st_end);
  size_t cb_end = offsetof(chat_client_callbacks, on_auth_required) +
                  sizeof(void (*)(void));
  chat_client_callbacks full = {.version = CHAT_CLIENT_CALLBACKS_V1,
                                .on_message = count_message};
  chat_client_callbacks *cb = malloc(cb_end);
  memcpy(cb, &full, cb_end);
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1,
                            .env = &fe.env};
  chat_client *c;
  cr_assert_eq(chat_client_new(&c, &s, st, cb, NULL, NULL, NULL), CHAT_OK);
  free(st);
  free(cb);
  char id[CHAT_CLIENT_MSG_ID_BUF];
  cr_assert_eq(chat_client_send(c, "c1", "x", 1, id, 0), CHAT_OK);
  cr_assert_eq(chat_client_edit(c, "c1", 5, "y", 1, id, 0), CHAT_ERR_STATE);
  cr_assert(strstr(chat_client_errmsg(c), "V1"), "%s", chat_client_errmsg(c));
  cr_assert_eq(chat_client_delete(c, "c1", 5, id, 0), CHAT_ERR_STATE);
  cr_assert_eq(chat_client_outbox_len(c), 1);
  chat_client_start(c, 0);
  chat_client_on_connecting(c, 0);
  chat_client_on_open(c, 0);
  const char *hello =
      "{\"type\":\"hello\",\"user_id\":\"alice\",\"device_id\":\"d\","
      "\"session_id\":\"s\",\"server_ts\":1,\"heartbeat_ms\":0,\"limits\":{"
      "\"max_body_bytes\":65536,\"max_frame_bytes\":131072,"
      "\"rate_per_minute\":60,\"resume_max_messages\":1000,"
      "\"resume_max_age_ms\":1}}";
  cr_assert_eq(chat_client_on_frame(c, hello, strlen(hello), 0), CHAT_OK);
  const char *msgs[] = {
      "{\"type\":\"message\",\"message_id\":\"5\",\"conversation_id\":"
      "\"c1\",\"sender_id\":\"bob\",\"body\":\"hi\",\"server_ts\":1}",
      "{\"type\":\"message\",\"message_id\":\"6\",\"conversation_id\":"
      "\"c1\",\"sender_id\":\"bob\",\"body\":\"\",\"server_ts\":2,"
      "\"body_type\":\"delete\",\"target_id\":\"5\"}"};
  for (int i = 0; i < 2; i++)
    cr_assert_eq(chat_client_on_frame(c, msgs[i], strlen(msgs[i]), 0),
                 CHAT_OK);
  cr_assert_eq(v1_messages, 2, "the entry is stored and reported");
  const char *f;
  size_t n;
  int sends = 0;
  while (chat_client_next_frame(c, &f, &n) == CHAT_OK)
    sends += strstr(f, "\"type\":\"send\"") != NULL;
  cr_assert_eq(sends, 1);
  chat_client_free(c);
}

/* The server object (lib/server/server.c): what chat_server_new refuses
 * and says about it, the one version rule for every struct the server
 * reads or fills, the settings and counters read back by version, the
 * core's REST rate limit, and token expiry on open sessions. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "server_harness.h"

/* ---- a server made by hand, to refuse things ---- */

static fake_env fe;
static chat_storage_ops store;
static chat_server_settings set;
static chat_server_modules mods;
static chat_errbuf eb;

static void make_parts(void) {
  fake_env_init(&fe, INT64_C(1800000000000), 7);
  cr_assert_eq(chat_sqlite_storage_open(&store, ":memory:", NULL, NULL, NULL),
               CHAT_OK);
  set = (chat_server_settings){.version = CHAT_SERVER_SETTINGS_V1,
                               .env = &fe.env};
  mods = (chat_server_modules){.version = CHAT_SERVER_MODULES_V1,
                               .storage = &store};
  memset(&eb, 0, sizeof eb);
}

static void drop_parts(void) {
  if (store.destroy)
    store.destroy(store.self);
  store.destroy = NULL;
}

TestSuite(server_new, .init = make_parts, .fini = drop_parts);

/* chat_server_new must refuse with CHAT_ERR_INVAL and a detail that
 * contains want; the caller keeps its modules. */
static void refused(const chat_server_callbacks *cb, const char *want) {
  chat_server *srv = (chat_server *)&srv; /* must be reset to NULL */
  chat_err rc = chat_server_new(&srv, &set, &mods, cb, NULL, NULL, &eb);
  cr_assert_eq(rc, CHAT_ERR_INVAL, "%s: %s", want, chat_err_name(rc));
  cr_assert_null(srv);
  cr_assert(strstr(eb.msg, want), "detail \"%s\" lacks \"%s\"", eb.msg,
            want);
  cr_assert_lt(strlen(eb.msg), CHAT_ERRBUF_SIZE);
  memset(&eb, 0, sizeof eb);
}

static void accepted(const chat_server_callbacks *cb) {
  chat_server *srv = NULL;
  chat_err rc = chat_server_new(&srv, &set, &mods, cb, NULL, NULL, &eb);
  cr_assert_eq(rc, CHAT_OK, "%s", eb.msg);
  cr_assert_str_eq(eb.msg, "", "the errbuf is untouched on success");
  chat_server_free(srv);
  store.destroy = NULL; /* the server destroyed it */
}

Test(server_new, refuses_null_arguments_with_a_reason) {
  cr_assert_eq(chat_server_new(NULL, &set, &mods, NULL, NULL, NULL, &eb),
               CHAT_ERR_INVAL);
  cr_assert_str_eq(eb.msg, "out: NULL");
  chat_server *srv;
  cr_assert_eq(chat_server_new(&srv, NULL, &mods, NULL, NULL, NULL, &eb),
               CHAT_ERR_INVAL);
  cr_assert_str_eq(eb.msg, "settings: NULL");
  cr_assert_eq(chat_server_new(&srv, &set, NULL, NULL, NULL, NULL, NULL),
               CHAT_ERR_INVAL, "a NULL errbuf is allowed");
  set.env = NULL;
  refused(NULL, "settings.env: NULL");
}

Test(server_new, settings_version_rule) {
  set.version = 0;
  refused(NULL, "settings.version: 0");
  set.version = CHAT_SERVER_SETTINGS_V1 + 1;
  refused(NULL, "settings.version: 2 is newer");
  set.version = CHAT_SERVER_SETTINGS_V1;
  accepted(NULL);
}

/* The server used to take env.version 2 or 99 (a `<` check). */
Test(server_new, env_version_rule) {
  fe.env.version = 0;
  refused(NULL, "settings.env.version: 0");
  fe.env.version = 99;
  refused(NULL, "settings.env.version: 99 is newer");
  fe.env.version = CHAT_ENV_V1 + 1;
  refused(NULL, "settings.env.version: 2");
  fe.env.version = CHAT_ENV_V1;
  fe.env.wall_ms = NULL;
  refused(NULL, "settings.env.wall_ms: NULL");
  fake_env_init(&fe, INT64_C(1800000000000), 7);
  fe.env.random = NULL;
  refused(NULL, "settings.env.random: NULL");
  fake_env_init(&fe, INT64_C(1800000000000), 7);
  accepted(NULL);
}

Test(server_new, modules_version_rule) {
  mods.version = 0;
  refused(NULL, "modules.version: 0");
  mods.version = CHAT_SERVER_MODULES_V1 + 1;
  refused(NULL, "modules.version: 2 is newer");
  mods.version = CHAT_SERVER_MODULES_V1;
  mods.storage = NULL;
  refused(NULL, "modules.storage: NULL");
  mods.storage = &store;
  accepted(NULL);
}

Test(server_new, callbacks_version_rule) {
  chat_server_callbacks cb = {.version = 0};
  refused(&cb, "callbacks.version: 0");
  cb.version = CHAT_SERVER_CALLBACKS_V1 + 1;
  refused(&cb, "callbacks.version: 2 is newer");
  cb.version = CHAT_SERVER_CALLBACKS_V1;
  accepted(&cb);
}

Test(server_new, storage_version_rule_and_required_methods) {
  chat_storage_ops bad = store;
  mods.storage = &bad;
  bad.version = 0;
  refused(NULL, "modules.storage.version: 0");
  bad.version = CHAT_STORAGE_OPS_V1 + 1;
  refused(NULL, "modules.storage.version: 2 is newer");
  bad.version = CHAT_STORAGE_OPS_V1;
  bad.append = NULL;
  refused(NULL, "modules.storage.append: NULL");
  bad = store;
  bad.mark = NULL;
  refused(NULL, "modules.storage.mark: NULL");
  bad = store;
  bad.max_message_id = NULL;
  refused(NULL, "modules.storage.max_message_id: NULL");
  mods.storage = &store;
  accepted(NULL);
}

static chat_err no_publish(void *self, const char *gw, const char *m,
                           size_t n) {
  (void)self;
  (void)gw;
  (void)m;
  (void)n;
  return CHAT_OK;
}

static chat_err no_notify(void *self, const chat_push_note *n) {
  (void)self;
  (void)n;
  return CHAT_OK;
}

static chat_err no_verify(void *self, const char *t, size_t n, int64_t now,
                          chat_identity *out) {
  (void)self;
  (void)t;
  (void)n;
  (void)now;
  (void)out;
  return CHAT_ERR_AUTH;
}

Test(server_new, every_module_version_rule) {
  chat_memory_hub *hub;
  cr_assert_eq(chat_memory_hub_new(&hub, NULL), CHAT_OK);
  chat_presence_ops pr;
  cr_assert_eq(chat_memory_presence_ops(hub, &pr), CHAT_OK);
  chat_bus_ops bus = {.version = CHAT_BUS_OPS_V1, .publish = no_publish};
  chat_push_ops push = {.version = CHAT_PUSH_OPS_V1, .notify = no_notify};
  chat_auth_ops auth = {.version = CHAT_AUTH_OPS_V1, .verify = no_verify};
  struct {
    uint32_t *version;
    uint32_t newest;
    const char *name;
  } cases[] = {
      {&pr.version, CHAT_PRESENCE_OPS_V1, "modules.presence.version"},
      {&bus.version, CHAT_BUS_OPS_V1, "modules.bus.version"},
      {&push.version, CHAT_PUSH_OPS_V1, "modules.push.version"},
      {&auth.version, CHAT_AUTH_OPS_V1, "modules.auth.version"},
  };
  mods.presence = &pr;
  mods.bus = &bus;
  mods.push = &push;
  mods.auth = &auth;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char want[96];
    *cases[i].version = 0;
    snprintf(want, sizeof want, "%s: 0", cases[i].name);
    refused(NULL, want);
    *cases[i].version = cases[i].newest + 1;
    snprintf(want, sizeof want, "%s: %u is newer", cases[i].name,
             cases[i].newest + 1);
    refused(NULL, want);
    *cases[i].version = cases[i].newest;
  }
  accepted(NULL);
  chat_memory_hub_free(hub);
}

Test(server_new, settings_values_are_checked) {
  set.machine_id = 2000;
  refused(NULL, "settings.machine_id: 2000 is over 1023");
  set.machine_id = 1023;
  set.gateway_id = "has space";
  refused(NULL, "settings.gateway_id: not a valid id");
  set.gateway_id = "gw-7";
  accepted(NULL);
}

static chat_err failing_max_id(void *self, uint64_t *out, chat_op *op) {
  (void)self;
  (void)out;
  (void)op;
  return CHAT_ERR_MODULE;
}

Test(server_new, a_failing_store_is_a_module_error_with_a_reason) {
  chat_storage_ops bad = store;
  bad.max_message_id = failing_max_id;
  mods.storage = &bad;
  chat_server *srv = NULL;
  cr_assert_eq(chat_server_new(&srv, &set, &mods, NULL, NULL, NULL, &eb),
               CHAT_ERR_MODULE);
  cr_assert_null(srv);
  cr_assert_str_eq(eb.msg,
                   "modules.storage.max_message_id: CHAT_ERR_MODULE");
}

/* The env is copied: the caller's struct may go right after the call. */
Test(server_new, env_is_copied) {
  chat_env env = fe.env;
  set.env = &env;
  chat_server *srv = NULL;
  cr_assert_eq(chat_server_new(&srv, &set, &mods, NULL, NULL, NULL, &eb),
               CHAT_OK);
  memset(&env, 0, sizeof env);
  chat_identity id = {CHAT_IDENTITY_V1, "alice", "phone", 0,
                      CHAT_SENDER_USER};
  chat_session *s;
  cr_assert_eq(chat_server_open_session(srv, &s, &id, NULL, 1000), CHAT_OK);
  const char *json;
  size_t len;
  cr_assert_eq(chat_session_next_frame(s, &json, &len), CHAT_OK);
  cr_assert(strstr(json, "\"server_ts\":1800000000000"), "%.*s", (int)len,
            json);
  chat_server_free(srv);
  store.destroy = NULL;
}

/* ---- the harness server: reading back by version ---- */

static harness h;

static void up(void) { harness_init(&h, NULL); }
static void down(void) { harness_fini(&h); }

TestSuite(server, .init = up, .fini = down);

Test(server, stats_version_rule) {
  chat_server_stats st = {.version = 0};
  cr_assert_eq(chat_server_get_stats(h.srv, &st), CHAT_ERR_INVAL);
  cr_assert(strstr(chat_server_errmsg(h.srv), "stats.version: 0"), "%s",
            chat_server_errmsg(h.srv));
  st.version = CHAT_SERVER_STATS_V1 + 1;
  cr_assert_eq(chat_server_get_stats(h.srv, &st), CHAT_ERR_INVAL);
  cr_assert_eq(st.sessions_open, 0, "nothing written on refusal");
  cr_assert_eq(chat_server_get_stats(NULL, &st), CHAT_ERR_INVAL);
  dev_open(&h, "alice", "phone");
  st.version = CHAT_SERVER_STATS_V1;
  cr_assert_eq(chat_server_get_stats(h.srv, &st), CHAT_OK);
  cr_assert_eq(st.version, CHAT_SERVER_STATS_V1, "the version stays");
  cr_assert_eq(st.sessions_open, 1);
  cr_assert_eq(st.presence_online, 1);
}

/* Only the caller's version's fields are written: nothing past the struct
 * the caller compiled against. */
Test(server, stats_write_stays_inside_the_callers_struct) {
  struct {
    chat_server_stats st;
    uint8_t canary[64];
  } box;
  memset(&box, 0xa5, sizeof box);
  box.st.version = CHAT_SERVER_STATS_V1;
  cr_assert_eq(chat_server_get_stats(h.srv, &box.st), CHAT_OK);
  for (size_t i = 0; i < sizeof box.canary; i++)
    cr_assert_eq(box.canary[i], 0xa5);
  cr_assert_eq(box.st.ops_in_flight, 0);
}

Test(server, settings_read_back_with_defaults_resolved) {
  chat_server_settings s = {.version = 0};
  cr_assert_eq(chat_server_get_settings(h.srv, &s), CHAT_ERR_INVAL);
  cr_assert(strstr(chat_server_errmsg(h.srv), "settings.version: 0"));
  s.version = CHAT_SERVER_SETTINGS_V1 + 1;
  cr_assert_eq(chat_server_get_settings(h.srv, &s), CHAT_ERR_INVAL);
  s.version = CHAT_SERVER_SETTINGS_V1;
  cr_assert_eq(chat_server_get_settings(h.srv, &s), CHAT_OK);
  cr_assert_eq(s.heartbeat_ms, 30000);
  cr_assert_eq(s.max_frame_bytes, 131072);
  cr_assert_eq(s.rest_rate_per_minute, 1200);
  cr_assert_eq(s.rest_burst, 200);
  cr_assert_eq(s.max_waiting_frames, 256);
  /* Section 8. */
  cr_assert_eq(s.edit_window_ms, 15 * 60 * 1000);
  cr_assert_eq(s.bot_rate_per_minute, 600);
  cr_assert_eq(s.new_direct_per_day, 50);
  cr_assert_eq(s.drain_retry_after_ms, 10000);
  cr_assert_eq(s.overload_retry_after_ms, 5000);
  cr_assert_eq(s.resume_batch_hint, 0, "not sent by default");
  cr_assert_eq(s.ban_poll_ms, 2000);
  cr_assert_str_eq(s.gateway_id, "gw0");
  cr_assert_not_null(s.env);
  cr_assert_eq(s.env->wall_ms(s.env->user_data), h.fe.wall_ms,
               "the server's copy of the env");
}

Test(server, identity_version_rule) {
  chat_identity id = {.version = 0};
  cr_assert_eq(chat_server_authenticate(h.srv, "t", 1, &id), CHAT_ERR_INVAL);
  cr_assert(strstr(chat_server_errmsg(h.srv), "identity.version: 0"));
  id.version = CHAT_IDENTITY_V1 + 1;
  cr_assert_eq(chat_server_authenticate(h.srv, "t", 1, &id), CHAT_ERR_INVAL);
  id.version = CHAT_IDENTITY_V1;
  /* No auth module: every token is refused (server.h). */
  cr_assert_eq(chat_server_authenticate(h.srv, "t", 1, &id), CHAT_ERR_AUTH);

  chat_identity who = {0, "alice", "phone", 0, CHAT_SENDER_USER};
  chat_session *s;
  cr_assert_eq(chat_server_open_session(h.srv, &s, &who, NULL, h.now),
               CHAT_ERR_INVAL);
  cr_assert(strstr(chat_server_errmsg(h.srv), "identity.version: 0"));
  who.version = CHAT_IDENTITY_V1 + 1;
  cr_assert_eq(chat_server_open_session(h.srv, &s, &who, NULL, h.now),
               CHAT_ERR_INVAL);
  who.version = CHAT_IDENTITY_V1;
  cr_assert_eq(chat_server_open_session(h.srv, &s, &who, NULL, h.now),
               CHAT_OK);
  chat_server_close_session(h.srv, s, h.now);
}

Test(server, http_versions_rule) {
  chat_identity id = {CHAT_IDENTITY_V1, "alice", "rest", 0,
                      CHAT_SENDER_USER};
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = "GET",
                           .path = "/api/v1/conversations",
                           .identity = &id};
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  req.version = 0;
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_ERR_INVAL);
  cr_assert(strstr(chat_server_errmsg(h.srv), "req.version: 0"));
  req.version = CHAT_HTTP_REQUEST_V1 + 1;
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_ERR_INVAL);
  req.version = CHAT_HTTP_REQUEST_V1;
  resp.version = 0;
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_ERR_INVAL);
  cr_assert(strstr(chat_server_errmsg(h.srv), "resp.version: 0"));
  resp.version = CHAT_HTTP_RESPONSE_V1 + 1;
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_ERR_INVAL);
  resp.version = CHAT_HTTP_RESPONSE_V1;
  id.version = 0;
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_ERR_INVAL);
  cr_assert(strstr(chat_server_errmsg(h.srv), "req.identity.version: 0"));
  id.version = CHAT_IDENTITY_V1 + 1;
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_ERR_INVAL);
  id.version = CHAT_IDENTITY_V1;
  chat_err rc = chat_server_http(h.srv, &req, &resp, h.now);
  if (rc == CHAT_PENDING) /* under CHAT_TEST_STORE */
    harness_settle(&h);
  else
    cr_assert_eq(resp.status, 200);
}

/* ---- REST rate limit, in the core ---- */

static int rest_get(void) {
  const char *body;
  return harness_http(&h, "alice", "GET", "/api/v1/conversations", NULL,
                      NULL, &body);
}

Test(server, rest_rate_limit_is_the_cores) {
  harness_fini(&h);
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .rest_rate_per_minute = 60,
                            .rest_burst = 3};
  harness_init(&h, &s);
  for (int i = 0; i < 3; i++)
    cr_assert_eq(rest_get(), 200, "request %d", i);
  /* A host calling chat_server_http() directly gets the 429 too. */
  chat_identity id = {CHAT_IDENTITY_V1, "alice", "rest", 0,
                      CHAT_SENDER_USER};
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = "GET",
                           .path = "/api/v1/conversations",
                           .identity = &id};
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_OK);
  cr_assert_eq(resp.status, 429);
  cr_assert_eq(resp.retry_after_s, 1, "one token a second");
  cr_assert(strstr((const char *)resp.body, "\"rate_limited\""));
  /* Per user: bob is not limited by alice's use. */
  const char *body;
  cr_assert_eq(harness_http(&h, "bob", "GET", "/api/v1/conversations", NULL,
                            NULL, &body),
               200);
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.rest_limited_total, 1);
  /* The bucket refills at the rate. */
  harness_advance(&h, 1000);
  cr_assert_eq(rest_get(), 200);
  cr_assert_eq(rest_get(), 429);
  /* A refilled bucket is swept away: memory follows active users. */
  harness_advance(&h, 120000);
  cr_assert_eq(rest_get(), 200);
}

Test(server, rest_rate_limit_can_be_off) {
  harness_fini(&h);
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .rest_rate_per_minute = UINT32_MAX,
                            .rest_burst = 1};
  harness_init(&h, &s);
  for (int i = 0; i < 50; i++)
    cr_assert_eq(rest_get(), 200);
}

/* ---- token expiry on an open session (PROTOCOL.md section 8) ---- */

static dev *open_expiring(const char *user, int64_t in_ms) {
  cr_assert_lt(h.n_devs, HARNESS_MAX_DEVS);
  dev *d = &h.devs[h.n_devs++];
  memset(d, 0, sizeof *d);
  d->h = &h;
  d->id = (chat_identity){.version = CHAT_IDENTITY_V1,
                          .expires_ms = h.fe.wall_ms + in_ms};
  snprintf(d->id.user_id, sizeof d->id.user_id, "%s", user);
  snprintf(d->id.device_id, sizeof d->id.device_id, "phone");
  cr_assert_eq(chat_codec_new(&d->codec, NULL, NULL, NULL), CHAT_OK);
  cr_assert_eq(chat_server_open_session(h.srv, &d->sess, &d->id, d, h.now),
               CHAT_OK);
  harness_pump(&h);
  return d;
}

Test(server, session_closes_4001_when_its_token_expires) {
  dev *a = open_expiring("alice", 5000);
  dev *b = dev_open(&h, "bob", "phone"); /* no expiry */
  dev_expect(a, CHAT_FRAME_HELLO);
  cr_assert_leq(chat_server_next_deadline(h.srv), h.now + 5000,
                "the expiry is a deadline");
  harness_advance(&h, 4999);
  cr_assert_not(a->closed, "closed early");
  dev_send(a, "{\"type\":\"ping\"}");
  dev_expect(a, CHAT_FRAME_PONG);
  harness_advance(&h, 1);
  cr_assert(a->closed);
  cr_assert_eq(a->close_code, 4001);
  cr_assert_not(b->closed, "only the expired session closes");
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.sessions_expired_total, 1);
}

Test(server, the_close_reason_is_token_expired) {
  chat_identity id = {CHAT_IDENTITY_V1, "alice", "phone",
                      h.fe.wall_ms + 10, CHAT_SENDER_USER};
  chat_session *s;
  cr_assert_eq(chat_server_open_session(h.srv, &s, &id, NULL, h.now),
               CHAT_OK);
  cr_assert_eq(chat_server_on_timer(h.srv, h.now + 10), CHAT_OK);
  const char *json;
  size_t len;
  cr_assert_eq(chat_session_next_frame(s, &json, &len), CHAT_OK); /* hello */
  cr_assert_eq(chat_session_next_frame(s, &json, &len), CHAT_ERR_AGAIN);
  cr_assert(chat_session_wants(s) & CHAT_WANT_CLOSE);
  const char *reason;
  cr_assert_eq(chat_session_close_code(s, &reason), 4001);
  cr_assert_str_eq(reason, "token_expired");
  cr_assert_eq(chat_session_on_frame(s, "{\"type\":\"ping\"}", 15, h.now),
               CHAT_ERR_STATE);
  chat_server_close_session(h.srv, s, h.now);
}

Test(server, a_token_already_expired_at_open_closes_at_once) {
  chat_identity id = {CHAT_IDENTITY_V1, "alice", "phone", h.fe.wall_ms - 1,
                      CHAT_SENDER_USER};
  chat_session *s;
  cr_assert_eq(chat_server_open_session(h.srv, &s, &id, NULL, h.now),
               CHAT_OK);
  const char *json;
  size_t len;
  cr_assert_eq(chat_session_next_frame(s, &json, &len), CHAT_ERR_AGAIN,
               "no hello for an expired token");
  cr_assert_eq(chat_session_close_code(s, NULL), 4001);
  chat_server_close_session(h.srv, s, h.now);
}

Test(server, closed_sessions_leave_the_expiry_heap) {
  /* Many sessions, closed in an order unlike their expiry: the heap must
   * stay a heap (the survivors still expire on time). */
  dev *d[40];
  for (int i = 0; i < 40; i++) {
    char user[16];
    snprintf(user, sizeof user, "u%02d", i);
    d[i] = open_expiring(user, 1000 + (int64_t)((i * 7919) % 40) * 100);
  }
  for (int i = 0; i < 40; i += 3)
    dev_close(d[i]);
  harness_advance(&h, 999);
  for (int i = 0; i < 40; i++)
    cr_assert(i % 3 == 0 ? d[i]->close_code == 0 : !d[i]->closed,
              "session %d", i);
  for (int step = 0; step < 40; step++) {
    harness_advance(&h, 100);
    chat_time_ms left = (chat_time_ms)(999 + (step + 1) * 100);
    for (int i = 0; i < 40; i++) {
      if (i % 3 == 0)
        continue;
      chat_time_ms at = (chat_time_ms)(1000 + ((i * 7919) % 40) * 100);
      cr_assert_eq(d[i]->closed, at <= left, "session %d at %d", i, step);
      if (d[i]->closed)
        cr_assert_eq(d[i]->close_code, 4001);
    }
  }
}

/* R5: every INVAL/STATE return of a public call leaves its reason. */
Test(server, refused_calls_leave_their_reason) {
  dev *a = dev_open(&h, "alice", "phone");
  cr_assert_str_eq(chat_server_errmsg(NULL), "");
  cr_assert_eq(chat_session_on_frame(a->sess, NULL, 5, h.now),
               CHAT_ERR_INVAL);
  cr_assert_str_eq(chat_server_errmsg(h.srv), "json: NULL with len 5");
  size_t len;
  cr_assert_eq(chat_session_next_frame(a->sess, NULL, &len), CHAT_ERR_INVAL);
  cr_assert_str_eq(chat_server_errmsg(h.srv), "json: NULL");
  cr_assert_eq(chat_server_bus_deliver(h.srv, NULL, 3, h.now),
               CHAT_ERR_INVAL);
  cr_assert_str_eq(chat_server_errmsg(h.srv), "msg: NULL with len 3");
  cr_assert_eq(chat_server_bus_deliver(h.srv, "{}", 2, h.now),
               CHAT_ERR_INVAL);
  cr_assert(strstr(chat_server_errmsg(h.srv), "not a bus message"));
  chat_server_drain(h.srv, h.now);
  harness_pump(&h);
  cr_assert_eq(a->close_code, 1012);
  chat_identity id = {CHAT_IDENTITY_V1, "bob", "phone", 0, CHAT_SENDER_USER};
  chat_session *s;
  cr_assert_eq(chat_server_open_session(h.srv, &s, &id, NULL, h.now),
               CHAT_ERR_STATE);
  cr_assert_str_eq(chat_server_errmsg(h.srv), "server: draining");
}

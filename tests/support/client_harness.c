#include "client_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static ch_event *ev(ch *h, const char *kind) {
  static ch_event sink;
  ch_event *e = h->n_ev < CH_MAX_EV ? &h->ev[h->n_ev++] : &sink;
  memset(e, 0, sizeof *e);
  snprintf(e->kind, sizeof e->kind, "%s", kind);
  return e;
}

static void on_connection(void *ud, chat_client *c, chat_client_state s) {
  (void)c;
  ev(ud, "state")->n = (int)s;
}
static void on_hello(void *ud, chat_client *c, const chat_hello *hl) {
  (void)c;
  snprintf(ev(ud, "hello")->a, 80, "%s", hl->user_id);
}
static void on_message(void *ud, chat_client *c, const chat_message *m,
                       chat_message_origin o) {
  (void)c;
  ch_event *e = ev(ud, "message");
  snprintf(e->a, sizeof e->a, "%llu", (unsigned long long)m->message_id);
  snprintf(e->b, sizeof e->b, "%s", m->conversation_id);
  snprintf(e->body, sizeof e->body, "%.*s", (int)m->body.len, m->body.ptr);
  e->n = (int)o;
  e->flag = m->deleted;
  e->edited = m->has_edited_ts;
  e->refs = (int)m->n_media_refs;
}
static void on_changed(void *ud, chat_client *c, const chat_message *m) {
  (void)c;
  ch_event *e = ev(ud, "changed");
  snprintf(e->a, sizeof e->a, "%llu", (unsigned long long)m->message_id);
  snprintf(e->b, sizeof e->b, "%s", m->conversation_id);
  snprintf(e->body, sizeof e->body, "%.*s", (int)m->body.len, m->body.ptr);
  e->flag = m->deleted;
  e->edited = m->has_edited_ts;
}
static void on_ack(void *ud, chat_client *c, const chat_ack *a) {
  (void)c;
  ch_event *e = ev(ud, "ack");
  snprintf(e->a, sizeof e->a, "%s", a->client_msg_id);
  e->flag = a->duplicate;
}
static void on_receipt(void *ud, chat_client *c, const chat_receipt *r) {
  (void)c;
  ch_event *e = ev(ud, "receipt");
  snprintf(e->a, sizeof e->a, "%llu", (unsigned long long)r->message_id);
  e->n = r->has_counts ? (int)r->read_count : -1;
}
static void on_typing(void *ud, chat_client *c, const char *conv,
                      const char *user, bool on) {
  (void)c;
  ch_event *e = ev(ud, "typing");
  snprintf(e->a, sizeof e->a, "%s", conv);
  snprintf(e->b, sizeof e->b, "%s", user);
  e->n = on;
}
static void on_presence(void *ud, chat_client *c, const chat_presence *p) {
  (void)c;
  snprintf(ev(ud, "presence")->a, 80, "%s", p->user_id);
}
static void on_state_change(void *ud, chat_client *c,
                            const chat_state_change *s) {
  (void)c;
  snprintf(ev(ud, "state_change")->a, 80, "%s", s->conversation_id);
}
static void on_conversation(void *ud, chat_client *c,
                            const chat_conversation *cv) {
  (void)c;
  ch_event *e = ev(ud, "conversation");
  snprintf(e->a, sizeof e->a, "%s", cv->conversation_id);
  e->n = (int)cv->n_members;
}
static void on_error(void *ud, chat_client *c, const chat_client_error *er) {
  (void)c;
  ch_event *e = ev(ud, "error");
  snprintf(e->a, sizeof e->a, "%s",
           er->client_msg_id ? er->client_msg_id : "");
  snprintf(e->b, sizeof e->b, "%s",
           er->wire && er->wire->code ? er->wire->code : "");
  e->n = (int)er->err;
  e->http = er->http_status;
  e->flag = er->retrying;
  e->op = (int)er->op;
  e->target = er->target_id;
}
static void on_progress(void *ud, chat_client *c,
                        const chat_resume_progress *p) {
  (void)c;
  ch_event *e = ev(ud, "progress");
  snprintf(e->a, sizeof e->a, "%s", p->conversation_id ? p->conversation_id
                                                        : "");
  e->n = (int)p->gaps_open;
  e->flag = p->complete;
}
static void on_done(void *ud, chat_client *c, uint32_t id, chat_err r) {
  (void)c;
  ch_event *e = ev(ud, "done");
  snprintf(e->a, sizeof e->a, "%u", (unsigned)id);
  e->n = (int)r;
}

static void on_auth(void *ud, chat_client *c, chat_auth_reason why) {
  ch *h = ud;
  ev(h, "auth")->n = (int)why;
  if (h->token_on_auth)
    chat_client_set_token(c, h->token_on_auth, strlen(h->token_on_auth),
                          h->now);
}

chat_err ch_open(ch *h, const char *path, const chat_client_settings *s) {
  return ch_open_alloc(h, path, s, NULL);
}

chat_err ch_open_alloc(ch *h, const char *path, const chat_client_settings *s,
                       const chat_allocator *alloc) {
  h->c = NULL;
  chat_client_settings def = {.version = CHAT_CLIENT_SETTINGS_V1};
  chat_client_settings set = s ? *s : def;
  if (!h->fe.env.version)
    fake_env_init(&h->fe, 1700000000000, 42);
  set.env = &h->fe.env;
  h->cb = (chat_client_callbacks){
      .version = CHAT_CLIENT_CALLBACKS_V2, .on_message_changed = on_changed,
      .on_connection = on_connection, .on_hello = on_hello,
      .on_message = on_message, .on_ack = on_ack, .on_receipt = on_receipt,
      .on_typing = on_typing, .on_presence = on_presence,
      .on_state_change = on_state_change, .on_conversation = on_conversation,
      .on_error = on_error, .on_resume_progress = on_progress,
      .on_request_done = on_done, .on_auth_required = on_auth};
  /* CH_STORE=memory runs the suites that ask for ":memory:" on the
   * in-memory reference store instead (meson registers each client suite
   * both ways). */
  const char *which = getenv("CH_STORE");
  if (path && strcmp(path, ":memory:") == 0 && which &&
      strcmp(which, "memory") == 0)
    path = NULL;
  chat_client_store_ops inner, st;
  chat_err e = path ? chat_sqlite_client_store_open(&inner, path, alloc,
                                                    &h->err)
                    : memory_client_store_open(&inner);
  if (e)
    return e;
  if ((e = failing_store_wrap(&st, &inner, &h->fail))) {
    inner.destroy(inner.self);
    return e;
  }
  e = chat_client_new(&h->c, &set, &st, &h->cb, h, alloc, &h->err);
  if (e)
    st.destroy(st.self);
  return e;
}

void ch_close(ch *h) {
  chat_client_free(h->c);
  h->c = NULL;
}

void ch_reset_log(ch *h) {
  for (size_t i = 0; i < h->n_out; i++)
    free(h->out[i]);
  h->n_out = 0;
  h->n_ev = 0;
}

void ch_open_socket(ch *h) {
  chat_client_start(h->c, h->now);
  if (chat_client_wants(h->c) & CHAT_CLIENT_WANT_CONNECT)
    chat_client_on_connecting(h->c, h->now);
  chat_client_on_open(h->c, h->now);
}

void ch_hello(ch *h, uint32_t heartbeat_ms) {
  char hello[512];
  snprintf(hello, sizeof hello,
           "{\"type\":\"hello\",\"user_id\":\"alice\",\"device_id\":\"phone\","
           "\"session_id\":\"s1\",\"server_ts\":1700000000000,"
           "\"heartbeat_ms\":%u,\"limits\":{\"max_body_bytes\":65536,"
           "\"max_frame_bytes\":131072,\"rate_per_minute\":60,"
           "\"resume_max_messages\":1000,\"resume_max_age_ms\":604800000}}",
           (unsigned)heartbeat_ms);
  ch_feed(h, hello);
}

void ch_connect(ch *h) {
  ch_open_socket(h);
  ch_hello(h, 0);
  ch_feed(h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  ch_drain(h);
}

void ch_feed(ch *h, const char *json) {
  chat_client_on_frame(h->c, json, strlen(json), h->now);
}

size_t ch_drain(ch *h) {
  const char *json;
  size_t len, n = 0;
  while (chat_client_next_frame(h->c, &json, &len) == CHAT_OK) {
    if (h->n_out < CH_MAX_OUT) {
      char *copy = malloc(len + 1);
      memcpy(copy, json, len);
      copy[len] = 0;
      h->out[h->n_out++] = copy;
    }
    n++;
  }
  return n;
}

void ch_advance(ch *h, chat_time_ms ms) {
  chat_time_ms target = h->now + ms;
  for (int guard = 0; guard < 100000; guard++) {
    ch_drain(h);
    chat_time_ms d = chat_client_next_deadline(h->c);
    if (d > target)
      break;
    if (d > h->now)
      h->now = d;
    chat_client_on_timer(h->c, h->now);
  }
  h->now = target;
  ch_drain(h);
}

static bool is_type(const char *json, const char *type) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"type\":\"%s\"", type);
  return strstr(json, pat) != NULL;
}

size_t ch_count_type(const ch *h, const char *type, size_t from) {
  size_t n = 0;
  for (size_t i = from; i < h->n_out; i++)
    n += is_type(h->out[i], type);
  return n;
}

const char *ch_nth_type(const ch *h, const char *type, size_t k) {
  for (size_t i = 0; i < h->n_out; i++)
    if (is_type(h->out[i], type) && k-- == 0)
      return h->out[i];
  return NULL;
}

size_t ch_count_ev(const ch *h, const char *kind) {
  size_t n = 0;
  for (size_t i = 0; i < h->n_ev; i++)
    n += strcmp(h->ev[i].kind, kind) == 0;
  return n;
}

const ch_event *ch_last_ev(const ch *h, const char *kind) {
  for (size_t i = h->n_ev; i-- > 0;)
    if (strcmp(h->ev[i].kind, kind) == 0)
      return &h->ev[i];
  return NULL;
}

void ch_store_fail(ch *h, bool fail) {
  failing_store_set(h->fail, fail);
}

size_t ch_count_with(const ch *h, const char *type, const char *needle,
                     size_t from) {
  size_t n = 0;
  for (size_t i = from; i < h->n_out; i++)
    n += is_type(h->out[i], type) && strstr(h->out[i], needle) != NULL;
  return n;
}

void ch_msg(ch *h, const char *conv, const char *id, const char *sender) {
  char f[512];
  snprintf(f, sizeof f,
           "{\"type\":\"message\",\"message_id\":\"%s\",\"conversation_id\":"
           "\"%s\",\"sender_id\":\"%s\",\"body\":\"hi %s\",\"server_ts\":"
           "1700000000001,\"client_msg_id\":\"x%s\"}",
           id, conv, sender, id, id);
  ch_feed(h, f);
}

void ch_entry(ch *h, const char *conv, const char *id, const char *sender,
              const char *kind, const char *target, const char *body) {
  char f[1024];
  snprintf(f, sizeof f,
           "{\"type\":\"message\",\"message_id\":\"%s\",\"conversation_id\":"
           "\"%s\",\"sender_id\":\"%s\",\"body\":\"%s\",\"server_ts\":"
           "%s,\"client_msg_id\":\"x%s\",\"body_type\":\"%s\","
           "\"target_id\":\"%s\"}",
           id, conv, sender, body, id, id, kind, target);
  ch_feed(h, f);
}

void ch_ack(ch *h, const char *cmid, const char *id, bool dup) {
  char f[256];
  snprintf(f, sizeof f,
           "{\"type\":\"ack\",\"client_msg_id\":\"%s\",\"message_id\":\"%s\","
           "\"server_ts\":1700000000002%s}",
           cmid, id, dup ? ",\"duplicate\":true" : "");
  ch_feed(h, f);
}

void ch_dir_make(ch_dir *d) {
  snprintf(d->dir, sizeof d->dir, "/tmp/chat-client-XXXXXX");
  if (!mkdtemp(d->dir))
    abort();
  snprintf(d->path, sizeof d->path, "%s/client.db", d->dir);
}

void ch_dir_remove(ch_dir *d) {
  char p[160];
  const char *sfx[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s%s", d->path, sfx[i]);
    unlink(p);
  }
  rmdir(d->dir);
}

#include "server_harness.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_wants(void *ud, chat_server *srv, chat_session *s, void *sud) {
  (void)srv;
  (void)s;
  (void)sud;
  ((harness *)ud)->wants_calls++;
}

/* A REST answer that came later: keep a copy for harness_http*. */
static void on_http_response(void *ud, chat_server *srv, void *tag,
                             const chat_http_response *resp) {
  (void)srv;
  harness *h = ud;
  h->http_callbacks++;
  cr_assert_eq(resp->version, CHAT_HTTP_RESPONSE_V1);
  free(h->http_body);
  h->http_body = malloc(resp->body_len + 1);
  cr_assert_not_null(h->http_body);
  if (resp->body_len)
    memcpy(h->http_body, resp->body, resp->body_len);
  h->http_body[resp->body_len] = 0;
  h->http_len = resp->body_len;
  h->http_status = resp->status;
  h->http_retry_after = resp->retry_after_s;
  snprintf(h->http_type, sizeof h->http_type, "%s",
           resp->content_type ? resp->content_type : "");
  h->http_tag = tag;
  h->http_answered = true;
}

static chat_err push_notify(void *self, const chat_push_note *n) {
  harness *h = self;
  if (h->n_pushes >= sizeof h->pushes / sizeof h->pushes[0])
    return CHAT_ERR_MODULE;
  push_rec *r = &h->pushes[h->n_pushes++];
  snprintf(r->user, sizeof r->user, "%s", n->user_id);
  snprintf(r->device, sizeof r->device, "%s", n->device_id);
  snprintf(r->conv, sizeof r->conv, "%s", n->conversation_id);
  snprintf(r->sender, sizeof r->sender, "%s", n->sender_id);
  snprintf(r->preview, sizeof r->preview, "%.*s", (int)n->preview.len,
           n->preview.ptr);
  r->message_id = n->message_id;
  return CHAT_OK;
}

static chat_err push_clear(void *self, const chat_push_clear *c) {
  harness *h = self;
  if (h->n_clears >= sizeof h->clears / sizeof h->clears[0])
    return CHAT_ERR_MODULE;
  clear_rec *r = &h->clears[h->n_clears++];
  snprintf(r->user, sizeof r->user, "%s", c->user_id);
  snprintf(r->device, sizeof r->device, "%s", c->device_id);
  snprintf(r->conv, sizeof r->conv, "%s", c->conversation_id);
  r->up_to = c->up_to;
  return CHAT_OK;
}

/* The store as the server sees it: the real SQLite ops, with appends
 * counted and failable, and purges recorded. */
static chat_err w_append(void *self, const chat_msg_in *m, size_t n,
                         chat_append_result *r, chat_op *op) {
  harness *h = self;
  h->appends++;
  h->last_batch = n;
  if (h->fail_append)
    return CHAT_ERR_MODULE;
  return h->inner.append(h->inner.self, m, n, r, op);
}

static chat_err w_purge(void *self, int64_t before, chat_op *op) {
  harness *h = self;
  h->purged_before = before;
  return h->inner.purge_receipts(h->inner.self, before, op);
}

static void w_destroy(void *self) {
  harness *h = self;
  h->inner.destroy(h->inner.self);
}

#define FWD(name, ...)                                                         \
  harness *h = self;                                                           \
  return h->inner.name(h->inner.self, __VA_ARGS__)
static chat_err w_conv_get(void *self, const char *c, const char *v,
                           chat_conversation_sink e, void *x, chat_op *op) {
  FWD(conversation_get, c, v, e, x, op);
}
static chat_err w_conv_create(void *self, const chat_conversation_new *c,
                              bool *ex, chat_conversation_sink e, void *x,
                              chat_op *op) {
  FWD(conversation_create, c, ex, e, x, op);
}
static chat_err w_member_add(void *self, const char *c, const char *u,
                             int64_t now, chat_op *op) {
  FWD(member_add, c, u, now, op);
}
static chat_err w_member_remove(void *self, const char *c, const char *u,
                                chat_op *op) {
  FWD(member_remove, c, u, op);
}
static chat_err w_convs_of(void *self, const char *u, const char *cur,
                           uint32_t lim, chat_conversation_sink e, void *x,
                           char *next, chat_op *op) {
  ((harness *)self)->convs_of_calls++;
  FWD(conversations_of, u, cur, lim, e, x, next, op);
}
static chat_err w_messages(void *self, const char *c, chat_page_dir d,
                           uint64_t a, uint32_t l, chat_message_sink e,
                           void *x, chat_op *op) {
  FWD(messages, c, d, a, l, e, x, op);
}
static chat_err w_max_id(void *self, uint64_t *out, chat_op *op) {
  FWD(max_message_id, out, op);
}
static chat_err w_mark(void *self, const chat_mark_in *in, bool *adv,
                       chat_mark_sink e, void *x, chat_op *op) {
  FWD(mark, in, adv, e, x, op);
}
static chat_err w_receipts(void *self, const char *c, uint64_t id,
                           uint32_t *d, uint32_t *r,
                           chat_member_state_sink e, void *x, chat_op *op) {
  FWD(receipts, c, id, d, r, e, x, op);
}
static chat_err w_dev_reg(void *self, const char *u, const char *d,
                          const char *p, const char *t, int64_t now,
                          chat_op *op) {
  FWD(device_register, u, d, p, t, now, op);
}
static chat_err w_targets(void *self, const char *u, chat_push_target_sink e,
                          void *x, chat_op *op) {
  FWD(push_targets, u, e, x, op);
}
static chat_err w_media_put(void *self, const char *id, const char *o,
                            const char *ct, const void *d, size_t n,
                            int64_t now, chat_op *op) {
  FWD(media_put, id, o, ct, d, n, now, op);
}
static chat_err w_media_get(void *self, const char *id, const char *r,
                            chat_media_sink e, void *x, chat_op *op) {
  FWD(media_get, id, r, e, x, op);
}
static chat_err w_member_change(void *self, const chat_member_change *ch,
                                chat_member_change_result *res,
                                chat_conversation_sink e, void *x,
                                chat_op *op) {
  FWD(member_change, ch, res, e, x, op);
}
static chat_err w_messages_as(void *self, const char *c, const char *v,
                              chat_page_dir d, uint64_t a, uint32_t l,
                              chat_message_sink e, void *x, chat_op *op) {
  FWD(messages_as, c, v, d, a, l, e, x, op);
}
static chat_err w_ban_set(void *self, const char *u, bool b, int64_t now,
                          chat_op *op) {
  FWD(shadow_ban_set, u, b, now, op);
}
static chat_err w_bans(void *self, uint64_t k, uint64_t *v, chat_user_sink e,
                       void *x, chat_op *op) {
  FWD(shadow_bans, k, v, e, x, op);
}
static chat_err w_push_record(void *self, const char *c, const char *u,
                              uint64_t id, chat_op *op) {
  FWD(push_record, c, u, id, op);
}
static chat_err w_push_read(void *self, const char *c, const char *u,
                            uint64_t read, uint64_t *clear, chat_op *op) {
  FWD(push_read, c, u, read, clear, op);
}
#undef FWD

static void init_all(harness *h, const chat_server_settings *settings,
                     const chat_presence_ops *presence,
                     const chat_bus_ops *bus, const char *db_path,
                     defer_mode mode, bool hold, bool basic) {
  memset(h, 0, sizeof *h);
  h->hold = hold;
  fake_env_init(&h->fe, INT64_C(1800000000000), 42);
  h->now = 1000000;
  h->mode = mode;
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1};
  if (settings)
    s = *settings;
  s.env = &h->fe.env;
  chat_errbuf eb = {{0}};
  chat_err orc = chat_sqlite_storage_open(&h->inner, db_path, NULL, NULL, &eb);
  cr_assert_eq(orc, CHAT_OK, "sqlite: %s", eb.msg);
  if (s.gateway_id)
    snprintf(h->gw, sizeof h->gw, "%s", s.gateway_id);
  else
    snprintf(h->gw, sizeof h->gw, "gw%u", s.machine_id);
  h->store = (chat_storage_ops){
      .version = CHAT_STORAGE_OPS_V1, .self = h,
      .conversation_get = w_conv_get, .conversation_create = w_conv_create,
      .member_add = w_member_add, .member_remove = w_member_remove,
      .conversations_of = w_convs_of, .append = w_append,
      .messages = w_messages, .max_message_id = w_max_id, .mark = w_mark,
      .receipts = w_receipts, .purge_receipts = w_purge,
      .device_register = w_dev_reg, .push_targets = w_targets,
      .media_put = w_media_put, .media_get = w_media_get,
      .destroy = w_destroy, .member_change = w_member_change,
      .messages_as = w_messages_as, .shadow_ban_set = w_ban_set,
      .shadow_bans = w_bans, .push_record = w_push_record,
      .push_read = w_push_read};
  if (basic) {
    /* A store without the methods appended for section 8 (each may be
     * NULL). */
    h->store.member_change = NULL;
    h->store.messages_as = NULL;
    h->store.shadow_ban_set = NULL;
    h->store.shadow_bans = NULL;
    h->store.push_record = NULL;
    h->store.push_read = NULL;
  }
  chat_storage_ops store = h->store;
  chat_presence_ops pres;
  if (mode != DEFER_OFF) {
    /* The seed differs per harness so that two gateways shuffle apart. */
    h->defer = defer_store_new(&h->store, mode,
                               0x5eedull + (uint64_t)(uintptr_t)h, &store);
    if (presence) {
      defer_store_wrap_presence(h->defer, presence, &pres);
      presence = &pres;
    }
  }
  chat_push_ops push = {.version = CHAT_PUSH_OPS_V1, .self = h,
                        .notify = push_notify, .clear = push_clear};
  chat_server_callbacks cbs = {.version = CHAT_SERVER_CALLBACKS_V1,
                               .on_session_wants = on_wants,
                               .on_http_response = on_http_response};
  chat_server_modules mods = {.version = CHAT_SERVER_MODULES_V1,
                              .storage = &store,
                              .presence = presence,
                              .bus = bus,
                              .push = &push};
  chat_err rc = chat_server_new(&h->srv, &s, &mods, &cbs, h, NULL, &eb);
  cr_assert_eq(rc, CHAT_OK, "chat_server_new: %s: %s", chat_err_name(rc),
               eb.msg);
  /* The store's max_message_id may be in flight. */
  harness_pump(h);
}

void harness_init_path(harness *h, const chat_server_settings *settings,
                       const chat_presence_ops *presence,
                       const chat_bus_ops *bus, const char *db_path) {
  init_all(h, settings, presence, bus, db_path, defer_mode_from_env(),
           false, false);
}

void harness_init_full(harness *h, const chat_server_settings *settings,
                       const chat_presence_ops *presence,
                       const chat_bus_ops *bus) {
  harness_init_path(h, settings, presence, bus, ":memory:");
}

void harness_init(harness *h, const chat_server_settings *settings) {
  harness_init_full(h, settings, NULL, NULL);
}

void harness_init_mode(harness *h, const chat_server_settings *settings,
                       defer_mode mode) {
  init_all(h, settings, NULL, NULL, ":memory:", mode, false, false);
}

void harness_init_held(harness *h, const chat_server_settings *settings,
                       defer_mode mode) {
  init_all(h, settings, NULL, NULL, ":memory:", mode, true, false);
}

void harness_init_basic(harness *h, const chat_server_settings *settings) {
  init_all(h, settings, NULL, NULL, ":memory:", defer_mode_from_env(), false,
           true);
}

void harness_hold(harness *h, bool hold) { h->hold = hold; }

void harness_fini(harness *h) {
  for (size_t i = 0; i < h->n_devs; i++) {
    dev *d = &h->devs[i];
    for (size_t k = 0; k < d->n_frames; k++)
      free(d->frames[k]);
    free(d->frames);
    chat_codec_free(d->codec);
  }
  chat_server_free(h->srv);
  free(h->http_body);
  h->http_body = NULL;
}

/* Take every session's queued frames. */
static bool collect(harness *h) {
  bool any = false;
  for (size_t i = 0; i < h->n_devs; i++) {
    dev *d = &h->devs[i];
    if (d->closed)
      continue;
    const char *json;
    size_t len;
    while (chat_session_next_frame(d->sess, &json, &len) == CHAT_OK) {
      cr_assert_lt(d->n_frames, HARNESS_MAX_FRAMES, "too many frames");
      if (d->n_frames == d->cap_frames) {
        size_t cap = d->cap_frames ? d->cap_frames * 2 : 64;
        char **n = realloc(d->frames, cap * sizeof *n);
        cr_assert_not_null(n);
        d->frames = n;
        d->cap_frames = cap;
      }
      d->frames[d->n_frames++] = strndup(json, len);
      any = true;
    }
    if (chat_session_wants(d->sess) & CHAT_WANT_CLOSE) {
      d->close_code = chat_session_close_code(d->sess, NULL);
      dev_close(d);
      any = true;
    }
  }
  return any;
}

/* Complete what the deferring modules hold, round after round, as their
 * answers would arrive, writing output between rounds. */
static bool complete_deferred(harness *h) {
  if (!h->defer || h->hold)
    return false;
  bool any = false;
  for (int round = 0; round < 100000; round++) {
    size_t n = defer_store_run(h->defer);
    if (h->mode == DEFER_THREAD || n == 0)
      cr_assert_eq(chat_server_run_posted(h->srv, h->now), CHAT_OK);
    if (n == 0)
      return any;
    any = true;
    collect(h);
  }
  cr_assert_fail("deferred module calls never settle");
  return any;
}

void harness_pump(harness *h) {
  collect(h);
  if (complete_deferred(h))
    collect(h);
}

void harness_settle(harness *h) {
  for (int i = 0; i < 1000; i++) {
    harness_tick(h);
    if (!h->defer || defer_store_pending(h->defer) == 0)
      return;
  }
  cr_assert_fail("deferred module calls never settle");
}

void harness_tick(harness *h) {
  /* Run every round that is due, writing output between rounds as a
   * transport does (a commit round, then its fan-out round). */
  harness_pump(h);
  for (int round = 0; round < 64; round++) {
    if (chat_server_next_deadline(h->srv) > h->now)
      break;
    cr_assert_eq(chat_server_on_timer(h->srv, h->now), CHAT_OK);
    harness_pump(h);
  }
}

void harness_advance(harness *h, uint64_t ms) {
  /* Jump from deadline to deadline, as a real loop's single timer would. */
  chat_time_ms target = h->now + ms;
  for (long guard = 0; guard < 10000000; guard++) {
    harness_tick(h);
    chat_time_ms due = chat_server_next_deadline(h->srv);
    if (due <= h->now)
      due = h->now + 1; /* still due after a tick: never spin in place */
    if (due > target)
      due = target;
    if (due <= h->now)
      break;
    h->fe.wall_ms += (int64_t)(due - h->now);
    h->now = due;
  }
  harness_tick(h);
}

dev *dev_open(harness *h, const char *user, const char *device) {
  return dev_open_kind(h, user, device, CHAT_SENDER_USER);
}

dev *dev_open_kind(harness *h, const char *user, const char *device,
                   chat_sender_kind kind) {
  cr_assert_lt(h->n_devs, HARNESS_MAX_DEVS);
  dev *d = &h->devs[h->n_devs++];
  memset(d, 0, sizeof *d);
  d->h = h;
  snprintf(d->id.user_id, sizeof d->id.user_id, "%s", user);
  snprintf(d->id.device_id, sizeof d->id.device_id, "%s", device);
  d->id.version = CHAT_IDENTITY_V1;
  d->id.kind = kind;
  cr_assert_eq(chat_codec_new(&d->codec, NULL, NULL, NULL), CHAT_OK);
  chat_err rc = chat_server_open_session(h->srv, &d->sess, &d->id, d, h->now);
  cr_assert_eq(rc, CHAT_OK, "open_session: %s", chat_err_name(rc));
  harness_pump(h);
  return d;
}

void dev_close(dev *d) {
  if (d->closed)
    return;
  d->closed = true;
  chat_server_close_session(d->h->srv, d->sess, d->h->now);
  d->sess = NULL;
}

void dev_send(dev *d, const char *json) {
  cr_assert_not(d->closed, "send on a closed device");
  chat_err rc = chat_session_on_frame(d->sess, json, strlen(json), d->h->now);
  cr_assert(rc == CHAT_OK || rc == CHAT_ERR_STATE, "on_frame: %s",
            chat_err_name(rc));
  harness_pump(d->h);
}

void dev_sendf(dev *d, const char *fmt, ...) {
  char buf[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  dev_send(d, buf);
}

static const chat_frame *decode(dev *d, size_t i) {
  const chat_frame *f;
  chat_decode_error e;
  chat_err rc = chat_codec_decode(d->codec, CHAT_DIR_TO_CLIENT, d->frames[i],
                                  strlen(d->frames[i]), &f, &e);
  cr_assert_eq(rc, CHAT_OK, "server sent an undecodable frame %s: %s",
               d->frames[i], e.message ? e.message : "");
  return f;
}

const chat_frame *dev_next(dev *d) {
  harness_pump(d->h);
  if (d->next >= d->n_frames)
    return NULL;
  return decode(d, d->next++);
}

const chat_frame *dev_expect(dev *d, chat_frame_type t) {
  harness_pump(d->h);
  while (d->next < d->n_frames) {
    const chat_frame *f = decode(d, d->next++);
    if (f->type == t)
      return f;
  }
  cr_assert_fail("%s/%s: no %s frame", d->id.user_id, d->id.device_id,
                 chat_frame_type_name(t));
  return NULL;
}

size_t dev_count(dev *d, chat_frame_type t) {
  harness_pump(d->h);
  size_t n = 0;
  for (size_t i = d->next; i < d->n_frames; i++)
    if (t == CHAT_FRAME_NONE || decode(d, i)->type == t)
      n++;
  return n;
}

void dev_drain(dev *d) {
  harness_pump(d->h);
  d->next = d->n_frames;
}

const char *dev_last_raw(dev *d) {
  return d->next ? d->frames[d->next - 1] : "";
}

/* One REST call; the answer now or, after pumping, from on_http_response.
 * Returns the status and sets the answer's bytes. */
static int http_call(harness *h, const chat_http_request *req,
                     const void **body, size_t *len, const char **type,
                     uint32_t *retry) {
  static char *last;
  static char last_type[256];
  static int tag;
  chat_http_request rq = *req;
  rq.tag = &tag;
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  h->http_answered = false;
  chat_err rc = chat_server_http(h->srv, &rq, &resp, h->now);
  if (rc == CHAT_PENDING) {
    cr_assert(h->defer != NULL, "a synchronous store answered later");
    for (int i = 0; i < 1000 && !h->http_answered; i++)
      harness_tick(h);
    cr_assert(h->http_answered, "%s %s: no answer", req->method, req->path);
    cr_assert_eq(h->http_tag, &tag);
    resp.status = h->http_status;
    resp.body = h->http_body;
    resp.body_len = h->http_len;
    resp.content_type = h->http_type;
    resp.retry_after_s = h->http_retry_after;
  } else {
    cr_assert_eq(rc, CHAT_OK, "chat_server_http: %s", chat_err_name(rc));
  }
  free(last);
  /* One spare NUL, so a JSON answer can be read as a string. */
  last = malloc(resp.body_len + 1);
  cr_assert_not_null(last);
  if (resp.body_len)
    memcpy(last, resp.body, resp.body_len);
  last[resp.body_len] = 0;
  snprintf(last_type, sizeof last_type, "%s",
           resp.content_type ? resp.content_type : "");
  if (body)
    *body = last;
  if (len)
    *len = resp.body_len;
  if (type)
    *type = last_type;
  if (retry)
    *retry = resp.retry_after_s;
  harness_pump(h);
  return resp.status;
}

int harness_http(harness *h, const char *user, const char *method,
                 const char *path, const char *query, const char *body,
                 const char **out_body) {
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  snprintf(id.user_id, sizeof id.user_id, "%s", user ? user : "");
  snprintf(id.device_id, sizeof id.device_id, "rest");
  id.kind = h->http_kind;
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = method, .path = path, .query = query,
                           .content_type = "application/json",
                           .body = body, .body_len = body ? strlen(body) : 0,
                           .identity = user ? &id : NULL};
  const void *b;
  int status = http_call(h, &req, &b, NULL, NULL, NULL);
  if (out_body)
    *out_body = b;
  return status;
}

int harness_http_raw(harness *h, const char *user, const char *method,
                     const char *path, const char *query,
                     const char *content_type, const void *body,
                     size_t body_len, const void **out_body,
                     size_t *out_len, const char **out_content_type) {
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  snprintf(id.user_id, sizeof id.user_id, "%s", user ? user : "");
  snprintf(id.device_id, sizeof id.device_id, "rest");
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = method, .path = path, .query = query,
                           .content_type = content_type, .body = body,
                           .body_len = body_len,
                           .identity = user ? &id : NULL};
  return http_call(h, &req, out_body, out_len, out_content_type, NULL);
}

static void bus_deliver(void *ud, const char *msg, size_t len) {
  harness *h = ud;
  chat_err rc = chat_server_bus_deliver(h->srv, msg, len, h->now);
  cr_assert_eq(rc, CHAT_OK, "bus_deliver: %s", chat_err_name(rc));
}

size_t harness_bus_pump(harness *h, chat_memory_hub *hub) {
  size_t n = chat_memory_hub_drain(hub, h->gw, bus_deliver, h);
  harness_pump(h);
  return n;
}

const char *harness_create(harness *h, const char *creator, const char *type,
                           const char *const *members, size_t n) {
  static char ids[16][65];
  static int slot;
  size_t cap = n * 72 + 64;
  char *body = malloc(cap);
  int k = snprintf(body, cap, "{\"type\":\"%s\",\"members\":[", type);
  for (size_t i = 0; i < n; i++)
    k += snprintf(body + k, cap - (size_t)k, "%s\"%s\"", i ? "," : "",
                  members[i]);
  snprintf(body + k, cap - (size_t)k, "]}");
  const char *out;
  int status = harness_http(h, creator, "POST", "/api/v1/conversations", NULL,
                            body, &out);
  free(body);
  cr_assert(status == 201 || status == 200, "create: %d %s", status, out);
  const char *p = strstr(out, "\"conversation_id\":\"");
  cr_assert_not_null(p);
  p += strlen("\"conversation_id\":\"");
  char *id = ids[slot++ % 16];
  size_t i = 0;
  while (p[i] && p[i] != '"' && i < 64) {
    id[i] = p[i];
    i++;
  }
  id[i] = 0;
  return id;
}

void harness_ban(harness *h, const char *user, bool banned) {
  cr_assert_eq(h->inner.shadow_ban_set(h->inner.self, user, banned,
                                       h->fe.wall_ms, NULL),
               CHAT_OK);
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1};
  cr_assert_eq(chat_server_get_settings(h->srv, &s), CHAT_OK);
  harness_advance(h, s.ban_poll_ms);
  harness_settle(h);
}

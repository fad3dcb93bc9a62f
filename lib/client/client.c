/* The client object: creation over a store, settings and their defaults,
 * the helpers every other file of the core shares, and freeing. */
#include "client/client_internal.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/utf8.h"

#define DEF_STABLE_MS 30000
#define DEF_RECEIPT_MS 1000
#define DEF_TYPING_REFRESH_MS 3000
#define DEF_TYPING_IDLE_MS 5000
#define DEF_TYPING_EXPIRE_MS 5000
#define DEF_TYPING_MAX_MEMBERS 50
#define DEF_HELLO_TIMEOUT_MS 10000
#define DEF_REST_PAGE 200
#define DEF_SEND_RETRY_MS 2000
#define DEF_MAX_FRAME (1u << 20)

void chat__client_log(chat_client *c, int level, const char *what,
                      const char *a, const char *b) {
  if (!c->env.log)
    return;
  char line[256];
  snprintf(line, sizeof line, "client: %s %s %s", what, a ? a : "",
           b ? b : "");
  c->env.log(c->env.user_data, level, line);
}

chat_err chat__client_dup(chat_client *c, const char *s, char **out) {
  *out = chat__strndup(&c->a, s, strlen(s));
  return *out ? CHAT_OK : CHAT_ERR_NOMEM;
}

void chat__client_wants_changed(chat_client *c) {
  if (c->cb.on_wants)
    c->cb.on_wants(c->ud, c);
}

void chat__client_error(chat_client *c, chat_err err, const char *conv,
                        const char *message, int http_status, bool retrying) {
  chat__client_log(c, CHAT_LOG_WARN, message, conv, NULL);
  if (!c->cb.on_error)
    return;
  chat_client_error e = {.err = err, .conversation_id = conv,
                         .message = message ? message : "",
                         .http_status = http_status, .retrying = retrying};
  c->cb.on_error(c->ud, c, &e);
}

bool chat__client_online(const chat_client *c) {
  return (c->state == CHAT_CLIENT_RESUMING ||
          c->state == CHAT_CLIENT_READY) && !c->want_close;
}

const char *chat_client_state_name(chat_client_state s) {
  switch (s) {
  case CHAT_CLIENT_IDLE: return "idle";
  case CHAT_CLIENT_CONNECTING: return "connecting";
  case CHAT_CLIENT_HANDSHAKE: return "handshake";
  case CHAT_CLIENT_RESUMING: return "resuming";
  case CHAT_CLIENT_READY: return "ready";
  case CHAT_CLIENT_BACKOFF: return "backoff";
  case CHAT_CLIENT_UNAUTHORIZED: return "unauthorized";
  }
  return NULL;
}

chat_client_state chat_client_get_state(const chat_client *c) {
  return c ? c->state : CHAT_CLIENT_IDLE;
}

uint32_t chat_client_backoff_attempt(const chat_client *c) {
  return c ? c->attempt : 0;
}

void *chat_client_user_data(const chat_client *c) {
  return c ? c->ud : NULL;
}

const char *chat_client_errmsg(const chat_client *c) {
  return c ? c->errmsg : "";
}

chat_err chat__client_fail(chat_client *c, chat_err rc, const char *fmt,
                           ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
  va_end(ap);
  if (n < 0)
    c->errmsg[0] = 0;
  return rc;
}

chat_err chat__client_check_id(chat_client *c, const char *what,
                               const char *id) {
  if (!id)
    return chat__client_fail(c, CHAT_ERR_INVAL, "%s: required", what);
  if (!chat_id_valid(id, strlen(id)))
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "%s: not 1..64 bytes of [A-Za-z0-9_.:@-]", what);
  return CHAT_OK;
}

static uint32_t or_default(uint32_t v, uint32_t d) {
  return v ? v : d;
}

/* Every store method the client calls, by name, for the refusal text. */
static chat_err check_store(const chat_client_store_ops *st,
                            chat_errbuf *err) {
  if (!st)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "store: required");
  if (!chat__version_ok(st->version, CHAT_CLIENT_STORE_OPS_V2))
    return chat__version_refused(err, "store", st->version,
                                 CHAT_CLIENT_STORE_OPS_V2);
  const struct {
    const char *name;
    bool set;
  } m[] = {
      {"put_message", st->put_message != NULL},
      {"each_message", st->each_message != NULL},
      {"set_receipt", st->set_receipt != NULL},
      {"get_last_seen", st->get_last_seen != NULL},
      {"set_last_seen", st->set_last_seen != NULL},
      {"each_last_seen", st->each_last_seen != NULL},
      {"outbox_add", st->outbox_add != NULL},
      {"outbox_remove", st->outbox_remove != NULL},
      {"each_outbox", st->each_outbox != NULL},
      {"set_mark", st->set_mark != NULL},
      {"each_mark", st->each_mark != NULL},
      {"put_conversation", st->put_conversation != NULL},
      {"get_conversation", st->get_conversation != NULL},
      {"each_conversation", st->each_conversation != NULL},
  };
  for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
    if (!m[i].set)
      return chat__errbuf_set(err, CHAT_ERR_INVAL, "store.%s: required",
                              m[i].name);
  if (st->version < CHAT_CLIENT_STORE_OPS_V2)
    return CHAT_OK; /* a V1 struct ends before the V2 methods */
  const struct {
    const char *name;
    bool set;
  } m2[] = {
      {"outbox_add_v2", st->outbox_add_v2 != NULL},
      {"each_outbox_v2", st->each_outbox_v2 != NULL},
      {"get_message", st->get_message != NULL},
      {"apply_changes", st->apply_changes != NULL},
      {"forget_last_seen", st->forget_last_seen != NULL},
  };
  for (size_t i = 0; i < sizeof m2 / sizeof m2[0]; i++)
    if (!m2[i].set)
      return chat__errbuf_set(err, CHAT_ERR_INVAL,
                              "store.%s: required in a "
                              "CHAT_CLIENT_STORE_OPS_V2 store",
                              m2[i].name);
  return CHAT_OK;
}

/* Where each version of a struct the caller fills ends: the client copies
 * no byte past it (docs/abi.md: an older caller's struct is shorter). */
static const size_t store_end[] = {
    [CHAT_CLIENT_STORE_OPS_V1] = offsetof(chat_client_store_ops, destroy) +
                                 sizeof(void (*)(void *)),
    [CHAT_CLIENT_STORE_OPS_V2] = sizeof(chat_client_store_ops),
};
static const size_t callbacks_end[] = {
    [CHAT_CLIENT_CALLBACKS_V1] = offsetof(chat_client_callbacks,
                                          on_auth_required) +
                                 sizeof(void (*)(void)),
    [CHAT_CLIENT_CALLBACKS_V2] = sizeof(chat_client_callbacks),
};

static chat_err check_settings(const chat_client_settings *s,
                               chat_errbuf *err) {
  if (!s)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "settings: required");
  if (!chat__version_ok(s->version, CHAT_CLIENT_SETTINGS_V1))
    return chat__version_refused(err, "settings", s->version,
                                 CHAT_CLIENT_SETTINGS_V1);
  if (!s->env)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "settings.env: required");
  if (!chat__version_ok(s->env->version, CHAT_ENV_V1))
    return chat__version_refused(err, "settings.env", s->env->version,
                                 CHAT_ENV_V1);
  if (!s->env->random)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "settings.env.random: required (reconnect "
                            "jitter, client_msg_ids)");
  if (s->backoff && !chat__version_ok(s->backoff->version, CHAT_BACKOFF_V1))
    return chat__version_refused(err, "settings.backoff",
                                 s->backoff->version, CHAT_BACKOFF_V1);
  return CHAT_OK;
}

chat_err chat_client_new(chat_client **out,
                         const chat_client_settings *settings,
                         const chat_client_store_ops *store,
                         const chat_client_callbacks *callbacks,
                         void *user_data, const chat_allocator *alloc,
                         chat_errbuf *err) {
  if (!out)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "out: required");
  *out = NULL;
  chat_err e = check_settings(settings, err);
  if (!e)
    e = check_store(store, err);
  if (!e && callbacks &&
      !chat__version_ok(callbacks->version, CHAT_CLIENT_CALLBACKS_V2))
    e = chat__version_refused(err, "callbacks", callbacks->version,
                              CHAT_CLIENT_CALLBACKS_V2);
  if (e)
    return e;
  chat_allocator a;
  if (chat__allocator_init(&a, alloc))
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "alloc: alloc, resize and release are all "
                            "required");
  chat_client *c = chat__calloc(&a, 1, sizeof *c);
  if (!c)
    return chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
  c->a = a;
  c->s = *settings;
  c->env = *settings->env;
  c->s.env = &c->env;
  c->backoff = chat_backoff_default();
  if (settings->backoff) {
    /* Zero base or cap take their defaults; the floor is as given (0 is
     * a valid floor, as in chat_backoff_delay()). */
    const chat_backoff *b = settings->backoff;
    c->backoff.base_ms = or_default(b->base_ms, c->backoff.base_ms);
    c->backoff.cap_ms = or_default(b->cap_ms, c->backoff.cap_ms);
    c->backoff.floor_ms = b->floor_ms;
  }
  c->s.backoff = &c->backoff;
  chat_client_settings *s = &c->s;
  s->stable_after_ms = or_default(s->stable_after_ms, DEF_STABLE_MS);
  s->receipt_interval_ms = or_default(s->receipt_interval_ms, DEF_RECEIPT_MS);
  s->typing_refresh_ms = or_default(s->typing_refresh_ms,
                                    DEF_TYPING_REFRESH_MS);
  s->typing_idle_ms = or_default(s->typing_idle_ms, DEF_TYPING_IDLE_MS);
  s->typing_expire_ms = or_default(s->typing_expire_ms, DEF_TYPING_EXPIRE_MS);
  s->typing_max_members = or_default(s->typing_max_members,
                                     DEF_TYPING_MAX_MEMBERS);
  s->hello_timeout_ms = or_default(s->hello_timeout_ms, DEF_HELLO_TIMEOUT_MS);
  s->rest_page_limit = or_default(s->rest_page_limit, DEF_REST_PAGE);
  if (s->rest_page_limit > 200)
    s->rest_page_limit = 200;
  s->send_retry_ms = or_default(s->send_retry_ms, DEF_SEND_RETRY_MS);
  s->max_frame_bytes = or_default(s->max_frame_bytes, DEF_MAX_FRAME);
  if (callbacks)
    memcpy(&c->cb, callbacks, callbacks_end[callbacks->version]);
  c->ud = user_data;
  /* A V1 store's struct ends at destroy: its V2 methods stay NULL. */
  memcpy(&c->store, store, store_end[store->version]);
  c->st = &c->store;
  c->v2 = store->version >= CHAT_CLIENT_STORE_OPS_V2;
  c->max_body_bytes = CHAT__CLIENT_DEF_MAX_BODY;
  c->next_req_id = 1;
  chat__buf_init(&c->scratch, &c->a);
  /* The maps hash ids the server chose. Their seed comes from the
   * object's address rather than env.random, so that creating a client
   * draws nothing from the env: tests replay its random stream exactly. */
  c->map_seed = chat__hash(0x636c69656e74ull, &c, sizeof c);
  chat__map_init(&c->obox_ids, &c->a, c->map_seed);
  chat__map_init(&c->obox_held, &c->a, c->map_seed + 1);
  chat__map_init(&c->marks, &c->a, c->map_seed + 2);
  chat__map_init(&c->typing, &c->a, c->map_seed + 3);
  chat__map_init(&c->peers, &c->a, c->map_seed + 4);
  chat__map_init(&c->partial, &c->a, c->map_seed + 5);
  chat__map_init(&c->gaps, &c->a, c->map_seed + 6);

  chat_codec_settings cs = {.version = CHAT_CODEC_SETTINGS_V1,
                            .max_frame_bytes_to_client = s->max_frame_bytes};
  e = chat_codec_new(&c->dec, &cs, &c->a, NULL);
  if (!e)
    e = chat_codec_new(&c->enc, NULL, &c->a, NULL);
  if (e) {
    chat__errbuf_set(err, e, "out of memory");
  } else {
    e = chat__client_outbox_load(c);
    const char *what = "each_outbox";
    if (!e) {
      e = chat__client_marks_load(c);
      what = "each_mark";
    }
    if (!e && c->load_oom)
      e = CHAT_ERR_NOMEM;
    e = chat__client_store_err(e);
    if (e == CHAT_ERR_NOMEM)
      chat__errbuf_set(err, e, "out of memory while loading the store");
    else if (e)
      chat__errbuf_set(err, e, "store.%s: failed", what);
  }
  if (e) {
    c->store.destroy = NULL; /* the caller keeps the store */
    chat_client_free(c);
    return e;
  }
  *out = c;
  return CHAT_OK;
}

void chat_client_free(chat_client *c) {
  if (!c)
    return;
  chat__client_queue_free(c);
  chat__client_outbox_free(c);
  chat__client_marks_free(c);
  chat__client_typing_free(c);
  chat__client_resume_free(c);
  chat__client_presence_free(c);
  chat__creq_free_all(c);
  chat__map_free(&c->gaps);
  chat__free(&c->a, c->user_id);
  chat__free(&c->a, c->token);
  chat__buf_free(&c->scratch);
  chat_codec_free(c->dec);
  chat_codec_free(c->enc);
  if (c->store.destroy)
    c->store.destroy(c->store.self);
  chat_allocator a = c->a;
  chat__free(&a, c);
}

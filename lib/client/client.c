/* The client object: creation over a store, settings and their defaults,
 * the helpers every other file of the core shares, and freeing. */
#include "client/client_internal.h"

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
  if (!c->s.env.log)
    return;
  char line[256];
  snprintf(line, sizeof line, "client: %s %s %s", what, a ? a : "",
           b ? b : "");
  c->s.env.log(c->s.env.user_data, level, line);
}

chat_err chat__client_dup(chat_client *c, const char *s, char **out) {
  *out = chat__strndup(&c->a, s, strlen(s));
  return *out ? CHAT_OK : CHAT_ERR_NOMEM;
}

void chat__client_wants_changed(chat_client *c) {
  if (c->cb.on_wants)
    c->cb.on_wants(c, c->ud);
}

void chat__client_error(chat_client *c, chat_err err, const char *conv,
                        const char *message, int http_status, bool retrying) {
  chat__client_log(c, CHAT_LOG_WARN, message, conv, NULL);
  if (!c->cb.on_error)
    return;
  chat_client_error e = {.err = err, .conversation_id = conv,
                         .message = message ? message : "",
                         .http_status = http_status, .retrying = retrying};
  c->cb.on_error(c, &e, c->ud);
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

void chat_client_store_free(chat_client_store *store) {
  if (store && store->ops.destroy)
    store->ops.destroy(store->ops.self);
}

static uint32_t or_default(uint32_t v, uint32_t d) {
  return v ? v : d;
}

chat_err chat_client_new(chat_client **out,
                         const chat_client_settings *settings,
                         const chat_client_callbacks *callbacks,
                         void *user_data, chat_client_store *store,
                         const chat_allocator *alloc) {
  if (!out)
    return CHAT_ERR_INVAL;
  *out = NULL;
  if (!settings || !store || settings->version != CHAT_CLIENT_SETTINGS_V1 ||
      settings->env.version != CHAT_ENV_V1 || !settings->env.random ||
      (callbacks && callbacks->version != CHAT_CLIENT_CALLBACKS_V1))
    return CHAT_ERR_INVAL;
  chat_allocator a;
  chat_err e = chat__allocator_init(&a, alloc);
  if (e)
    return e;
  chat_client *c = chat__calloc(&a, 1, sizeof *c);
  if (!c)
    return CHAT_ERR_NOMEM;
  c->a = a;
  c->s = *settings;
  chat_client_settings *s = &c->s;
  chat_backoff bd = chat_backoff_default();
  s->backoff.version = CHAT_BACKOFF_V1;
  s->backoff.base_ms = or_default(s->backoff.base_ms, bd.base_ms);
  s->backoff.cap_ms = or_default(s->backoff.cap_ms, bd.cap_ms);
  if (!settings->backoff.version && !s->backoff.floor_ms)
    s->backoff.floor_ms = bd.floor_ms;
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
    c->cb = *callbacks;
  c->ud = user_data;
  c->store = store;
  c->st = &store->ops;
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
  e = chat_codec_new(&c->dec, &cs, &c->a);
  if (!e) {
    /* REST pages are rewrapped as frames: allow a full page of maximal
     * bodies, escaped. */
    chat_codec_settings rs = {.version = CHAT_CODEC_SETTINGS_V1,
                              .max_frame_bytes_to_client = 1u << 30,
                              .max_history = 1000};
    e = chat_codec_new(&c->rdec, &rs, &c->a);
  }
  if (!e)
    e = chat_codec_new(&c->enc, NULL, &c->a);
  if (!e) {
    e = chat__client_outbox_load(c);
    if (!e)
      e = chat__client_marks_load(c);
    if (e && e != CHAT_ERR_NOMEM)
      e = CHAT_ERR_MODULE;
    if (!e && c->load_oom)
      e = CHAT_ERR_NOMEM;
  }
  if (e) {
    c->store = NULL; /* the caller keeps it */
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
  chat__buf_free(&c->scratch);
  chat_codec_free(c->dec);
  chat_codec_free(c->rdec);
  chat_codec_free(c->enc);
  chat_client_store_free(c->store);
  chat_allocator a = c->a;
  chat__free(&a, c);
}

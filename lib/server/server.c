/* The server object: settings, modules, the timer and the counters. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

static uint32_t d32(uint32_t v, uint32_t def) { return v ? v : def; }
static uint64_t d64(uint64_t v, uint64_t def) { return v ? v : def; }

int64_t chat__srv_wall(chat_server *srv) {
  return srv->s.env.wall_ms(srv->s.env.user_data);
}

void chat__srv_log(chat_server *srv, int level, const char *fmt, ...) {
  if (!srv->s.env.log)
    return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  srv->s.env.log(srv->s.env.user_data, level, line);
}

/* Copy a module's ops when it is present and of a version we know. */
#define TAKE_OPS(field, flag, ops, ver)                                        \
  do {                                                                         \
    if (ops) {                                                                 \
      if ((ops)->version < 1 || (ops)->version > (ver))                        \
        return CHAT_ERR_INVAL;                                                 \
      srv->field = *(ops);                                                     \
      srv->flag = true;                                                        \
    }                                                                          \
  } while (0)

static chat_err take_modules(chat_server *srv, const chat_storage_ops *st,
                             const chat_presence_ops *pr,
                             const chat_bus_ops *bus,
                             const chat_push_ops *push,
                             const chat_auth_ops *auth) {
  if (st->version < 1 || st->version > CHAT_STORAGE_OPS_V1)
    return CHAT_ERR_INVAL;
  srv->store = *st;
  TAKE_OPS(presence, has_presence, pr, CHAT_PRESENCE_OPS_V1);
  TAKE_OPS(bus, has_bus, bus, CHAT_BUS_OPS_V1);
  TAKE_OPS(push, has_push, push, CHAT_PUSH_OPS_V1);
  TAKE_OPS(auth, has_auth, auth, CHAT_AUTH_OPS_V1);
  if (!st->append || !st->conversation_get || !st->messages ||
      !st->mark || !st->conversations_of || !st->max_message_id)
    return CHAT_ERR_INVAL;
  /* A module without its key method is the same as no module. */
  srv->has_presence = srv->has_presence && pr->locate && pr->device_online &&
                      pr->device_offline;
  srv->has_bus = srv->has_bus && bus->publish;
  srv->has_push = srv->has_push && push->notify;
  srv->has_auth = srv->has_auth && auth->verify;
  return CHAT_OK;
}

static chat_err settings_resolve(chat_server *srv,
                                 const chat_server_settings *in) {
  if (in->version != CHAT_SERVER_SETTINGS_V1 || in->machine_id > 1023 ||
      in->env.version < CHAT_ENV_V1 || !in->env.wall_ms || !in->env.random)
    return CHAT_ERR_INVAL;
  chat_server_settings s = *in;
  s.max_body_bytes = d32(s.max_body_bytes, 65536);
  s.max_frame_bytes = d32(s.max_frame_bytes, 131072);
  s.rate_per_minute = d32(s.rate_per_minute, 60);
  s.resume_max_messages = d32(s.resume_max_messages, 1000);
  s.resume_max_age_ms = d64(s.resume_max_age_ms, 7ull * 24 * 3600 * 1000);
  s.heartbeat_ms = d32(s.heartbeat_ms, 30000);
  s.presence_idle_ms = d64(s.presence_idle_ms, 5 * 60 * 1000);
  s.presence_offline_ms = d64(s.presence_offline_ms, 5000);
  s.presence_idle_offline_ms = d64(s.presence_idle_offline_ms, 15 * 60 * 1000);
  s.max_group_members = d32(s.max_group_members, 1024);
  s.typing_max_members = d32(s.typing_max_members, 50);
  s.delivered_max_members = d32(s.delivered_max_members, 256);
  s.garbage_per_minute = d32(s.garbage_per_minute, 30);
  s.receipt_flush_ms = d32(s.receipt_flush_ms, 250);
  s.receipt_ttl_ms = d64(s.receipt_ttl_ms, 90ull * 24 * 3600 * 1000);
  s.max_queued_frames = d32(s.max_queued_frames, 4096);
  s.max_queued_bytes = d32(s.max_queued_bytes, 8u << 20);
  s.max_batch = d32(s.max_batch, 256);
  if (s.gateway_id) {
    if (!chat_id_valid(s.gateway_id, strlen(s.gateway_id)))
      return CHAT_ERR_INVAL;
    snprintf(srv->gateway_id, sizeof srv->gateway_id, "%s", s.gateway_id);
  } else {
    snprintf(srv->gateway_id, sizeof srv->gateway_id, "gw%u", s.machine_id);
  }
  s.gateway_id = srv->gateway_id;
  srv->s = s;
  return CHAT_OK;
}

chat_err chat_server_new(chat_server **out,
                         const chat_server_settings *settings,
                         const chat_server_callbacks *callbacks,
                         void *user_data, const chat_storage_ops *storage,
                         const chat_presence_ops *presence,
                         const chat_bus_ops *bus, const chat_push_ops *push,
                         const chat_auth_ops *auth,
                         const chat_allocator *alloc) {
  if (!out)
    return CHAT_ERR_INVAL;
  *out = NULL;
  if (!settings || !storage ||
      (callbacks && callbacks->version != CHAT_SERVER_CALLBACKS_V1))
    return CHAT_ERR_INVAL;
  chat_allocator a;
  chat_err rc = chat__allocator_init(&a, alloc);
  if (rc != CHAT_OK)
    return rc;
  chat_server *srv = chat__calloc(&a, 1, sizeof *srv);
  if (!srv)
    return CHAT_ERR_NOMEM;
  srv->a = a;
  rc = settings_resolve(srv, settings);
  if (rc == CHAT_OK)
    rc = take_modules(srv, storage, presence, bus, push, auth);
  if (rc != CHAT_OK) {
    chat__free(&a, srv);
    return rc;
  }
  if (callbacks)
    srv->cbs = *callbacks;
  srv->user_data = user_data;

  uint64_t seed;
  srv->s.env.random(srv->s.env.user_data, (uint8_t *)&seed, sizeof seed);
  chat__map_init(&srv->users, &srv->a, seed);
  chat__map_init(&srv->convs, &srv->a, seed ^ 0x5bd1e995u);
  chat__map_init(&srv->buckets, &srv->a, seed ^ 0x27d4eb2du);
  chat__map_init(&srv->receipts, &srv->a, seed ^ 0x165667b1u);
  chat__map_init(&srv->watchers, &srv->a, seed ^ 0x9e3779b9u);
  chat__arena_init(&srv->scratch, &srv->a);
  chat__buf_init(&srv->tmp, &srv->a);
  chat__buf_init(&srv->rest_out, &srv->a);
  srv->receipt_due = CHAT_TIME_NEVER;
  srv->next_presence_check = CHAT_TIME_NEVER;
  srv->next_purge = 0;
  srv->next_bucket_sweep = CHAT_TIME_NEVER;

  chat_codec_settings cs = {.version = CHAT_CODEC_SETTINGS_V1,
                            .max_frame_bytes = srv->s.max_frame_bytes,
                            .max_body_bytes = srv->s.max_body_bytes,
                            .max_members = srv->s.max_group_members};
  uint64_t max_id = 0;
  rc = chat_snowflake_new(&srv->ids, srv->s.machine_id, &srv->a);
  if (rc == CHAT_OK)
    rc = chat_codec_new(&srv->codec, &cs, &srv->a);
  if (rc == CHAT_OK)
    rc = chat_codec_new(&srv->enc, &cs, &srv->a);
  if (rc == CHAT_OK &&
      srv->store.max_message_id(srv->store.self, &max_id) != CHAT_OK)
    rc = CHAT_ERR_MODULE;
  if (rc != CHAT_OK) {
    /* The caller keeps its modules on failure. */
    srv->has_presence = srv->has_bus = srv->has_push = srv->has_auth = false;
    srv->store.destroy = NULL;
    chat_server_free(srv);
    return rc;
  }
  /* A clock behind the newest stored id must not mint below it. */
  chat_snowflake_observe(srv->ids, max_id);
  *out = srv;
  return CHAT_OK;
}

void chat_server_free(chat_server *srv) {
  if (!srv)
    return;
  while (srv->sessions)
    chat_server_close_session(srv, srv->sessions, 0);
  chat__sends_free(srv);
  chat__receipts_free(srv);
  chat__push_free(srv);
  chat__rate_free(srv);
  chat__convs_free(srv);
  chat__presence_free(srv);
  chat__map_free(&srv->users);
  chat__map_free(&srv->convs);
  chat__map_free(&srv->buckets);
  chat__map_free(&srv->receipts);
  chat__map_free(&srv->watchers);
  chat__arena_free(&srv->scratch);
  chat__buf_free(&srv->tmp);
  chat__buf_free(&srv->rest_out);
  chat_codec_free(srv->codec);
  chat_codec_free(srv->enc);
  chat_snowflake_free(srv->ids);
  if (srv->store.destroy)
    srv->store.destroy(srv->store.self);
  if (srv->has_presence && srv->presence.destroy)
    srv->presence.destroy(srv->presence.self);
  if (srv->has_bus && srv->bus.destroy)
    srv->bus.destroy(srv->bus.self);
  if (srv->has_push && srv->push.destroy)
    srv->push.destroy(srv->push.self);
  if (srv->has_auth && srv->auth.destroy)
    srv->auth.destroy(srv->auth.self);
  chat_allocator a = srv->a;
  chat__free(&a, srv);
}

chat_err chat_server_authenticate(chat_server *srv, const char *token,
                                  size_t len, chat_identity *out) {
  if (!srv || !out || (!token && len))
    return CHAT_ERR_INVAL;
  memset(out, 0, sizeof *out);
  if (!srv->has_auth || !token || len == 0)
    return CHAT_ERR_AUTH;
  chat_err rc = srv->auth.verify(srv->auth.self, token, len,
                                 chat__srv_wall(srv), out);
  if (rc != CHAT_OK || !chat_id_valid(out->user_id, strlen(out->user_id)) ||
      !chat_id_valid(out->device_id, strlen(out->device_id))) {
    memset(out, 0, sizeof *out);
    return CHAT_ERR_AUTH;
  }
  return CHAT_OK;
}

static chat_time_ms min_t(chat_time_ms a, chat_time_ms b) {
  return a < b ? a : b;
}

chat_time_ms chat_server_next_deadline(const chat_server *srv) {
  if (!srv)
    return CHAT_TIME_NEVER;
  /* Waiting sends and pushes are due at once: the host calls on_timer right
   * after the inbound batch that queued them, which is the group commit. */
  if (srv->n_sends > 0 || srv->n_fanouts > 0 || srv->n_pushes > 0)
    return 0;
  chat_time_ms t = srv->receipt_due;
  t = min_t(t, chat__presence_deadline(srv));
  t = min_t(t, srv->next_bucket_sweep);
  t = min_t(t, srv->next_purge);
  return t;
}

chat_err chat_server_on_timer(chat_server *srv, chat_time_ms now) {
  if (!srv)
    return CHAT_ERR_INVAL;
  chat__srv_clock(srv, now);
  chat_err rc = CHAT_OK;
  /* A round either delivers what earlier rounds committed or commits what
   * has arrived, never both: the host writes the acks of one round before
   * the next round's delivery work (fan-out off the send path). Pushes go
   * after every online delivery. */
  if (srv->n_fanouts > 0)
    chat__run_fanouts(srv);
  else
    while (srv->n_sends > 0 && rc == CHAT_OK)
      rc = chat__flush_sends(srv, now);
  if (srv->receipt_due <= now)
    chat__receipts_flush(srv);
  chat__presence_tick(srv, now);
  if (srv->next_bucket_sweep <= now)
    chat__rate_sweep(srv, now);
  if (srv->next_purge <= now) {
    /* Expired group receipt rows go once an hour. */
    if (srv->store.purge_receipts) {
      int64_t cutoff = chat__srv_wall(srv) - (int64_t)srv->s.receipt_ttl_ms;
      if (srv->store.purge_receipts(srv->store.self, cutoff) != CHAT_OK)
        srv->st.store_errors_total++;
    }
    srv->next_purge = now + 3600 * 1000;
  }
  chat__push_run(srv);
  return rc;
}

chat_err chat_server_bus_deliver(chat_server *srv, const char *msg,
                                 size_t len, chat_time_ms now) {
  if (!srv || (!msg && len))
    return CHAT_ERR_INVAL;
  chat__srv_clock(srv, now);
  return chat__bus_in(srv, msg ? msg : "", len, now);
}

void chat_server_drain(chat_server *srv, chat_time_ms now) {
  if (!srv)
    return;
  srv->draining = true;
  /* What was accepted is committed and acked before the sockets close. */
  while (srv->n_sends > 0)
    if (chat__flush_sends(srv, now) != CHAT_OK)
      break;
  chat__run_fanouts(srv);
  chat__receipts_flush(srv);
  for (chat_session *s = srv->sessions; s; s = s->all_next)
    chat__sess_close(s, 1001, "server shutting down");
}

void chat_server_get_stats(const chat_server *srv, chat_server_stats *out) {
  if (!srv || !out)
    return;
  *out = srv->st;
  out->presence_online = chat__map_len(&srv->users);
}

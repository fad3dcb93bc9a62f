/* The server object: settings, modules, the timer, token expiry and the
 * counters. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

static uint32_t d32(uint32_t v, uint32_t def) { return v ? v : def; }
static uint64_t d64(uint64_t v, uint64_t def) { return v ? v : def; }

int64_t chat__srv_wall(chat_server *srv) {
  return srv->env.wall_ms(srv->env.user_data);
}

void chat__srv_log(chat_server *srv, int level, const char *fmt, ...) {
  if (!srv->env.log)
    return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  srv->env.log(srv->env.user_data, level, line);
}

chat_err chat__srv_fail(chat_server *srv, chat_err rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(srv->err.msg, sizeof srv->err.msg, fmt, ap);
  va_end(ap);
  return rc;
}

const char *chat_server_errmsg(const chat_server *srv) {
  return srv ? srv->err.msg : "";
}

/* ---- creation ---- */

/* Check a module's version and copy it. */
#define TAKE_OPS(field, flag, ops, ver, name)                                  \
  do {                                                                         \
    if (ops) {                                                                 \
      if (!chat__version_ok((ops)->version, (ver)))                            \
        return chat__version_refused(err, name, (ops)->version, (ver));        \
      srv->field = *(ops);                                                     \
      srv->flag = true;                                                        \
    }                                                                          \
  } while (0)

static chat_err take_modules(chat_server *srv, const chat_server_modules *m,
                             chat_errbuf *err) {
  if (!chat__version_ok(m->version, CHAT_SERVER_MODULES_V1))
    return chat__version_refused(err, "modules", m->version,
                                 CHAT_SERVER_MODULES_V1);
  const chat_storage_ops *st = m->storage;
  if (!st)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "modules.storage: NULL (a store is required)");
  if (!chat__version_ok(st->version, CHAT_STORAGE_OPS_V1))
    return chat__version_refused(err, "modules.storage", st->version,
                                 CHAT_STORAGE_OPS_V1);
  static const struct {
    size_t off;
    const char *name;
  } required[] = {
      {offsetof(chat_storage_ops, conversation_get), "conversation_get"},
      {offsetof(chat_storage_ops, conversations_of), "conversations_of"},
      {offsetof(chat_storage_ops, append), "append"},
      {offsetof(chat_storage_ops, messages), "messages"},
      {offsetof(chat_storage_ops, max_message_id), "max_message_id"},
      {offsetof(chat_storage_ops, mark), "mark"},
  };
  for (size_t i = 0; i < sizeof required / sizeof *required; i++) {
    void *fn;
    memcpy(&fn, (const char *)st + required[i].off, sizeof fn);
    if (!fn)
      return chat__errbuf_set(err, CHAT_ERR_INVAL,
                              "modules.storage.%s: NULL (required)",
                              required[i].name);
  }
  srv->store = *st;
  TAKE_OPS(presence, has_presence, m->presence, CHAT_PRESENCE_OPS_V1,
           "modules.presence");
  TAKE_OPS(bus, has_bus, m->bus, CHAT_BUS_OPS_V1, "modules.bus");
  TAKE_OPS(push, has_push, m->push, CHAT_PUSH_OPS_V1, "modules.push");
  TAKE_OPS(auth, has_auth, m->auth, CHAT_AUTH_OPS_V1, "modules.auth");
  /* A module without its key method is the same as no module. */
  srv->has_presence = srv->has_presence && srv->presence.locate &&
                      srv->presence.device_online &&
                      srv->presence.device_offline;
  srv->has_bus = srv->has_bus && srv->bus.publish;
  srv->has_push = srv->has_push && srv->push.notify;
  srv->has_auth = srv->has_auth && srv->auth.verify;
  return CHAT_OK;
}

static chat_err settings_resolve(chat_server *srv,
                                 const chat_server_settings *in,
                                 chat_errbuf *err) {
  if (!chat__version_ok(in->version, CHAT_SERVER_SETTINGS_V1))
    return chat__version_refused(err, "settings", in->version,
                                 CHAT_SERVER_SETTINGS_V1);
  const chat_env *env = in->env;
  if (!env)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "settings.env: NULL (wall clock and randomness "
                            "are required; see chat_env_system)");
  if (!chat__version_ok(env->version, CHAT_ENV_V1))
    return chat__version_refused(err, "settings.env", env->version,
                                 CHAT_ENV_V1);
  if (!env->wall_ms || !env->random)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "settings.env.%s: NULL (required)",
                            !env->wall_ms ? "wall_ms" : "random");
  if (in->machine_id > 1023)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "settings.machine_id: %u is over 1023",
                            in->machine_id);
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
  s.rest_rate_per_minute = d32(s.rest_rate_per_minute, 1200);
  s.rest_burst = d32(s.rest_burst, 200);
  s.max_waiting_frames = d32(s.max_waiting_frames, 256);
  s.edit_window_ms = d64(s.edit_window_ms, 15 * 60 * 1000);
  s.bot_rate_per_minute = d32(s.bot_rate_per_minute, 600);
  s.new_direct_per_day = d32(s.new_direct_per_day, 50);
  s.drain_retry_after_ms = d32(s.drain_retry_after_ms, 10000);
  s.overload_retry_after_ms = d32(s.overload_retry_after_ms, 5000);
  s.ban_poll_ms = d32(s.ban_poll_ms, 2000);
  if (s.gateway_id) {
    size_t n = strnlen(s.gateway_id, CHAT_ID_BUF);
    if (!chat_id_valid(s.gateway_id, n))
      return chat__errbuf_set(err, CHAT_ERR_INVAL,
                              "settings.gateway_id: not a valid id (1..64 "
                              "bytes of [A-Za-z0-9_.:@-])");
    memcpy(srv->gateway_id, s.gateway_id, n);
    srv->gateway_id[n] = 0;
  } else {
    snprintf(srv->gateway_id, sizeof srv->gateway_id, "gw%u", s.machine_id);
  }
  s.gateway_id = srv->gateway_id;
  srv->env = *env;
  s.env = &srv->env;
  srv->s = s;
  return CHAT_OK;
}

/* ---- the highest stored id, before any id is minted ---- */

typedef struct max_id_job {
  chat__job base;
  uint64_t max_id;
} max_id_job;

static void max_id_release(chat_server *srv, chat__job *j) {
  chat__free(&srv->a, j);
}

static void on_max_id(chat_server *srv, chat__job *j, uint32_t idx,
                      chat_err rc) {
  (void)idx;
  srv->ids_loading = false;
  if (rc != CHAT_OK) {
    srv->st.store_errors_total++;
    chat__srv_log(srv, CHAT_LOG_ERROR,
                  "storage max_message_id: %s; sends wait and it is asked "
                  "again",
                  chat_err_name(rc));
    return;
  }
  /* A clock behind the newest stored id must not mint below it. */
  chat_snowflake_observe(srv->ids, ((max_id_job *)j)->max_id);
  srv->ids_ready = true;
}

/* ---- shadow bans: the list is polled, so that `chatd ban` run against
 * the store reaches every gateway within ban_poll_ms ---- */

typedef struct bans_job {
  chat__job base;
  uint64_t version;
  chat__map fresh; /* the list as emitted, when it changed */
  bool oom;
} bans_job;

static void bans_release(chat_server *srv, chat__job *j) {
  bans_job *bj = (bans_job *)j;
  chat__map_free(&bj->fresh);
  chat__free(&srv->a, bj);
}

static void on_ban_user(void *ctx, const char *user) {
  bans_job *j = ctx;
  if (!user || !chat_id_valid(user, strnlen(user, CHAT_ID_BUF)))
    return;
  if (chat__map_put(&j->fresh, user, strlen(user), (void *)1, NULL) !=
      CHAT_OK)
    j->oom = true;
}

static void on_bans(chat_server *srv, chat__job *job, uint32_t idx,
                    chat_err rc) {
  (void)idx;
  bans_job *j = (bans_job *)job;
  srv->bans_busy = false;
  if (rc != CHAT_OK || j->oom || j->version == 0) {
    srv->st.store_errors_total += rc != CHAT_OK;
    chat__srv_log(srv, CHAT_LOG_ERROR,
                  "storage shadow_bans: %s; asked again in %u ms",
                  rc != CHAT_OK ? chat_err_name(rc)
                  : j->oom      ? "out of memory"
                                : "version 0",
                  srv->s.ban_poll_ms);
    return;
  }
  if (j->version != srv->bans_version) {
    chat__map_free(&srv->bans);
    srv->bans = j->fresh;
    chat__map_init(&j->fresh, &srv->a, srv->bans.seed);
    if (srv->bans_loaded)
      chat__srv_log(srv, CHAT_LOG_INFO, "shadow bans changed: %zu banned",
                    chat__map_len(&srv->bans));
  }
  srv->bans_version = j->version;
  srv->bans_loaded = true;
  srv->st.shadow_banned_users = chat__map_len(&srv->bans);
}

static void poll_bans(chat_server *srv) {
  srv->next_ban_poll = srv->clock_ms + srv->s.ban_poll_ms;
  if (!srv->store.shadow_bans) {
    srv->bans_loaded = true; /* nobody can be banned */
    return;
  }
  if (srv->bans_busy)
    return;
  bans_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (!j)
    return; /* the next poll tries again */
  chat__job_init(&j->base, bans_release);
  chat__map_init(&j->fresh, &srv->a, srv->bans.seed);
  srv->bans_busy = true;
  chat_op *op;
  CHAT__CALL(srv, &j->base, on_bans, 0, op,
             srv->store.shadow_bans(srv->store.self, srv->bans_version,
                                    &j->version, on_ban_user, j, op));
  chat__job_unref(srv, &j->base);
}

bool chat__banned(const chat_server *srv, const char *user_id) {
  return chat__map_len(&srv->bans) > 0 &&
         chat__map_get(&srv->bans, user_id, strlen(user_id)) != NULL;
}

/* Ask the store; returns what the store answered at once (CHAT_PENDING
 * when it answers later). */
static chat_err load_max_id(chat_server *srv) {
  max_id_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (!j)
    return CHAT_ERR_NOMEM;
  chat__job_init(&j->base, max_id_release);
  srv->ids_loading = true;
  chat_op *op = chat__op_new(srv, &j->base, on_max_id, 0);
  if (!op) {
    srv->ids_loading = false;
    chat__job_unref(srv, &j->base);
    return CHAT_ERR_NOMEM;
  }
  chat_err rc = srv->store.max_message_id(srv->store.self, &j->max_id, op);
  chat__op_call(srv, op, rc);
  chat__job_unref(srv, &j->base);
  return rc;
}

chat_err chat_server_new(chat_server **out,
                         const chat_server_settings *settings,
                         const chat_server_modules *modules,
                         const chat_server_callbacks *callbacks,
                         void *user_data, const chat_allocator *alloc,
                         chat_errbuf *err) {
  if (!out)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "out: NULL");
  *out = NULL;
  if (!settings)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "settings: NULL");
  if (!modules)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "modules: NULL (a storage module is required)");
  if (callbacks &&
      !chat__version_ok(callbacks->version, CHAT_SERVER_CALLBACKS_V1))
    return chat__version_refused(err, "callbacks", callbacks->version,
                                 CHAT_SERVER_CALLBACKS_V1);
  chat_allocator a;
  chat_err rc = chat__allocator_init(&a, alloc);
  if (rc != CHAT_OK)
    return chat__errbuf_set(err, rc,
                            "alloc: alloc, resize and release must all be "
                            "set");
  chat_server *srv = chat__calloc(&a, 1, sizeof *srv);
  if (!srv)
    return chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
  srv->a = a;
  atomic_init(&srv->posted, NULL);
  rc = settings_resolve(srv, settings, err);
  if (rc == CHAT_OK)
    rc = take_modules(srv, modules, err);
  if (rc != CHAT_OK) {
    chat__free(&a, srv);
    return rc;
  }
  if (callbacks)
    srv->cbs = *callbacks;
  srv->user_data = user_data;

  uint64_t seed;
  srv->env.random(srv->env.user_data, (uint8_t *)&seed, sizeof seed);
  chat__map_init(&srv->users, &srv->a, seed);
  chat__map_init(&srv->convs, &srv->a, seed ^ 0x5bd1e995u);
  chat__map_init(&srv->loads, &srv->a, seed ^ 0x85ebca6bu);
  chat__map_init(&srv->buckets, &srv->a, seed ^ 0x27d4eb2du);
  chat__map_init(&srv->rest_buckets, &srv->a, seed ^ 0xc2b2ae35u);
  chat__map_init(&srv->receipts, &srv->a, seed ^ 0x165667b1u);
  chat__map_init(&srv->watchers, &srv->a, seed ^ 0x9e3779b9u);
  chat__map_init(&srv->bans, &srv->a, seed ^ 0x7f4a7c15u);
  chat__buf_init(&srv->tmp, &srv->a);
  chat__buf_init(&srv->rest_out, &srv->a);
  srv->receipt_due = CHAT_TIME_NEVER;
  srv->next_presence_check = CHAT_TIME_NEVER;
  srv->next_purge = 0;
  srv->next_bucket_sweep = CHAT_TIME_NEVER;
  srv->next_rest_sweep = CHAT_TIME_NEVER;
  srv->st.version = CHAT_SERVER_STATS_V1;

  chat_codec_settings cs = {.version = CHAT_CODEC_SETTINGS_V1,
                            .max_frame_bytes = srv->s.max_frame_bytes,
                            .max_body_bytes = srv->s.max_body_bytes,
                            .max_members = srv->s.max_group_members};
  rc = chat_snowflake_new(&srv->ids, srv->s.machine_id, &srv->a);
  if (rc == CHAT_OK)
    rc = chat_codec_new(&srv->codec, &cs, &srv->a, NULL);
  if (rc == CHAT_OK)
    rc = chat_codec_new(&srv->enc, &cs, &srv->a, NULL);
  if (rc != CHAT_OK) {
    chat__errbuf_set(err, rc, "settings: %s", chat_strerror(rc));
  } else {
    chat__enter(srv);
    chat_err mrc = load_max_id(srv);
    if (mrc == CHAT_OK || mrc == CHAT_PENDING)
      poll_bans(srv);
    chat__leave(srv);
    if (mrc != CHAT_OK && mrc != CHAT_PENDING) {
      rc = mrc == CHAT_ERR_NOMEM ? mrc : CHAT_ERR_MODULE;
      chat__errbuf_set(err, rc, "modules.storage.max_message_id: %s",
                       chat_err_name(mrc));
    }
  }
  if (rc != CHAT_OK) {
    /* The caller keeps its modules on failure. */
    srv->has_presence = srv->has_bus = srv->has_push = srv->has_auth = false;
    srv->store.destroy = NULL;
    chat_server_free(srv);
    return rc;
  }
  *out = srv;
  return CHAT_OK;
}

void chat_server_free(chat_server *srv) {
  if (!srv)
    return;
  /* Nothing runs from here on: completions that come while the modules
   * shut down wait on the ready list and are dropped with it. */
  srv->freeing = true;
  srv->depth++;
  while (srv->sessions)
    chat_server_close_session(srv, srv->sessions, srv->clock_ms);
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
  /* The modules are gone and touch no op: release what was in flight. */
  chat__rest_free(srv);
  chat__ops_free(srv);
  while (srv->pump_head) {
    chat_session *s = srv->pump_head;
    srv->pump_head = s->pump_next;
    s->pump_queued = false;
    chat__sess_unref(srv, s);
  }
  srv->pump_tail = NULL;
  chat__sends_free(srv);
  chat__receipts_free(srv);
  chat__push_free(srv);
  chat__rate_free(srv);
  chat__convs_free(srv);
  chat__presence_free(srv);
  chat__map_free(&srv->users);
  chat__map_free(&srv->convs);
  chat__map_free(&srv->loads);
  chat__map_free(&srv->buckets);
  chat__map_free(&srv->rest_buckets);
  chat__map_free(&srv->receipts);
  chat__map_free(&srv->watchers);
  chat__map_free(&srv->bans);
  chat__buf_free(&srv->tmp);
  chat__buf_free(&srv->rest_out);
  chat__free(&srv->a, srv->exp);
  chat_codec_free(srv->codec);
  chat_codec_free(srv->enc);
  chat_snowflake_free(srv->ids);
  chat_allocator a = srv->a;
  chat__free(&a, srv);
}

/* ---- settings and counters out ---- */

/* Where each version's fields end, for structs the library fills. */
static const size_t settings_end[] = {0, sizeof(chat_server_settings)};
static const size_t stats_end[] = {0, sizeof(chat_server_stats)};

chat_err chat_server_get_settings(const chat_server *srv,
                                  chat_server_settings *out) {
  if (!srv || !out)
    return CHAT_ERR_INVAL;
  if (!chat__version_ok(out->version, CHAT_SERVER_SETTINGS_V1)) {
    chat_errbuf e;
    chat__version_refused(&e, "settings", out->version,
                          CHAT_SERVER_SETTINGS_V1);
    return chat__srv_fail((chat_server *)srv, CHAT_ERR_INVAL, "%s", e.msg);
  }
  size_t from = offsetof(chat_server_settings, env);
  memcpy((char *)out + from, (const char *)&srv->s + from,
         settings_end[out->version] - from);
  return CHAT_OK;
}

chat_err chat_server_get_stats(const chat_server *srv,
                               chat_server_stats *out) {
  if (!srv || !out)
    return CHAT_ERR_INVAL;
  if (!chat__version_ok(out->version, CHAT_SERVER_STATS_V1)) {
    chat_errbuf e;
    chat__version_refused(&e, "stats", out->version, CHAT_SERVER_STATS_V1);
    return chat__srv_fail((chat_server *)srv, CHAT_ERR_INVAL, "%s", e.msg);
  }
  chat_server_stats st = srv->st;
  st.presence_online = chat__map_len(&srv->users);
  size_t from = offsetof(chat_server_stats, sessions_open);
  memcpy((char *)out + from, (const char *)&st + from,
         stats_end[out->version] - from);
  return CHAT_OK;
}

/* ---- auth ---- */

static const size_t identity_end[] = {0, sizeof(chat_identity)};

chat_err chat_server_authenticate(chat_server *srv, const char *token,
                                  size_t len, chat_identity *out) {
  if (!srv)
    return CHAT_ERR_INVAL;
  if (!out)
    return chat__srv_fail(srv, CHAT_ERR_INVAL, "out: NULL");
  if (!chat__version_ok(out->version, CHAT_IDENTITY_V1)) {
    chat_errbuf e;
    chat__version_refused(&e, "identity", out->version, CHAT_IDENTITY_V1);
    return chat__srv_fail(srv, CHAT_ERR_INVAL, "%s", e.msg);
  }
  if (!token && len)
    return chat__srv_fail(srv, CHAT_ERR_INVAL, "token: NULL with len %zu",
                          len);
  size_t from = offsetof(chat_identity, user_id);
  memset((char *)out + from, 0, identity_end[out->version] - from);
  if (!srv->has_auth || !token || len == 0)
    return CHAT_ERR_AUTH;
  chat_identity id;
  memset(&id, 0, sizeof id);
  id.version = CHAT_IDENTITY_V1;
  chat__enter(srv);
  chat_err rc = srv->auth.verify(srv->auth.self, token, len,
                                 chat__srv_wall(srv), &id);
  chat__leave(srv);
  if (rc != CHAT_OK ||
      !chat_id_valid(id.user_id, strnlen(id.user_id, CHAT_ID_BUF)) ||
      !chat_id_valid(id.device_id, strnlen(id.device_id, CHAT_ID_BUF)) ||
      (id.kind != CHAT_SENDER_USER && id.kind != CHAT_SENDER_BOT) ||
      id.expires_ms < 0)
    return CHAT_ERR_AUTH;
  memcpy((char *)out + from, (const char *)&id + from,
         identity_end[out->version] - from);
  return CHAT_OK;
}

/* ---- token expiry: a min-heap of sessions by deadline ---- */

static void heap_set(chat_server *srv, size_t i, chat_session *s) {
  srv->exp[i] = s;
  s->exp_idx = i;
}

static void heap_up(chat_server *srv, size_t i) {
  chat_session *s = srv->exp[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (srv->exp[p]->expires_at <= s->expires_at)
      break;
    heap_set(srv, i, srv->exp[p]);
    i = p;
  }
  heap_set(srv, i, s);
}

static void heap_down(chat_server *srv, size_t i) {
  chat_session *s = srv->exp[i];
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    chat_time_ms best = s->expires_at;
    if (l < srv->n_exp && srv->exp[l]->expires_at < best) {
      m = l;
      best = srv->exp[l]->expires_at;
    }
    if (r < srv->n_exp && srv->exp[r]->expires_at < best)
      m = r;
    if (m == i)
      break;
    heap_set(srv, i, srv->exp[m]);
    i = m;
  }
  heap_set(srv, i, s);
}

void chat__expiry_add(chat_server *srv, chat_session *s) {
  if (srv->n_exp == srv->cap_exp) {
    size_t cap = srv->cap_exp ? srv->cap_exp * 2 : 64;
    chat_session **v = chat__realloc(&srv->a, srv->exp, cap * sizeof *v);
    if (!v) {
      /* Without room to track it the session could outlive its token:
       * refuse to keep it. */
      chat__sess_close(s, 1011, "out of memory");
      return;
    }
    srv->exp = v;
    srv->cap_exp = cap;
  }
  heap_set(srv, srv->n_exp++, s);
  heap_up(srv, s->exp_idx);
}

void chat__expiry_remove(chat_server *srv, chat_session *s) {
  size_t i = s->exp_idx;
  if (i == SIZE_MAX)
    return;
  s->exp_idx = SIZE_MAX;
  chat_session *last = srv->exp[--srv->n_exp];
  if (i == srv->n_exp)
    return;
  heap_set(srv, i, last);
  heap_down(srv, i);
  heap_up(srv, last->exp_idx);
}

static void expiry_tick(chat_server *srv, chat_time_ms now) {
  while (srv->n_exp > 0 && srv->exp[0]->expires_at <= now) {
    chat_session *s = srv->exp[0];
    chat__expiry_remove(srv, s);
    srv->st.sessions_expired_total++;
    /* Its frames still go out first; then the transport closes with 4001
     * and the client asks its app for a fresh token (PROTOCOL.md 8). */
    chat__sess_close(s, 4001, "token_expired");
  }
}

/* ---- the timer ---- */

static chat_time_ms min_t(chat_time_ms a, chat_time_ms b) {
  return a < b ? a : b;
}

chat_time_ms chat_server_next_deadline(const chat_server *srv) {
  if (!srv)
    return CHAT_TIME_NEVER;
  /* Waiting sends, deliveries, pushes and posted work are due at once: the
   * host calls on_timer right after the inbound batch that queued them,
   * which is the group commit. A send waits while the previous commit is
   * in flight (its completion wakes the host). */
  if ((srv->n_sends > 0 && chat__can_commit(srv)) ||
      srv->n_fanouts > 0 || srv->n_pushes > 0 || chat__work_waiting(srv) ||
      (!srv->ids_ready && !srv->ids_loading))
    return 0;
  chat_time_ms t = srv->receipts_busy ? CHAT_TIME_NEVER : srv->receipt_due;
  t = min_t(t, chat__presence_deadline(srv));
  t = min_t(t, srv->next_bucket_sweep);
  t = min_t(t, srv->next_rest_sweep);
  t = min_t(t, srv->next_purge);
  if (srv->store.shadow_bans)
    t = min_t(t, srv->next_ban_poll);
  if (srv->n_exp > 0)
    t = min_t(t, srv->exp[0]->expires_at);
  return t;
}

typedef struct purge_job {
  chat__job base;
} purge_job;

static void purge_release(chat_server *srv, chat__job *j) {
  chat__free(&srv->a, j);
}

static void on_purged(chat_server *srv, chat__job *j, uint32_t idx,
                      chat_err rc) {
  (void)j;
  (void)idx;
  if (rc != CHAT_OK)
    srv->st.store_errors_total++;
}

static void purge(chat_server *srv) {
  /* Expired group receipt rows go once an hour. */
  purge_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (!j) {
    srv->st.store_errors_total++;
    return;
  }
  chat__job_init(&j->base, purge_release);
  int64_t cutoff = chat__srv_wall(srv) - (int64_t)srv->s.receipt_ttl_ms;
  chat_op *op;
  CHAT__CALL(srv, &j->base, on_purged, 0, op,
             srv->store.purge_receipts(srv->store.self, cutoff, op));
  chat__job_unref(srv, &j->base);
}

chat_err chat_server_on_timer(chat_server *srv, chat_time_ms now) {
  if (!srv)
    return CHAT_ERR_INVAL;
  chat__srv_clock(srv, now);
  chat__enter(srv);
  chat__posted_run(srv, now);
  chat_err rc = CHAT_OK;
  if (!srv->ids_ready && !srv->ids_loading) {
    chat_err mrc = load_max_id(srv);
    if (mrc == CHAT_ERR_NOMEM)
      rc = mrc;
  }
  /* A round either delivers what earlier rounds committed or commits what
   * has arrived, never both: the host writes the acks of one round before
   * the next round's delivery work (fan-out off the send path). Pushes go
   * after every online delivery. With a store that commits at once, all
   * waiting batches commit in this round; otherwise one is in flight and
   * the next starts when it completes. */
  if (srv->n_fanouts > 0) {
    chat__run_fanouts(srv);
  } else {
    while (srv->n_sends > 0 && chat__can_commit(srv) && rc == CHAT_OK)
      rc = chat__flush_sends(srv, now);
  }
  if (srv->receipt_due <= now)
    chat__receipts_flush(srv);
  chat__presence_tick(srv, now);
  expiry_tick(srv, now);
  if (srv->next_bucket_sweep <= now)
    chat__rate_sweep(srv, now);
  if (srv->next_rest_sweep <= now)
    chat__rest_rate_sweep(srv, now);
  if (srv->next_purge <= now) {
    if (srv->store.purge_receipts)
      purge(srv);
    srv->next_purge = now + 3600 * 1000;
  }
  if (srv->next_ban_poll <= now)
    poll_bans(srv);
  chat__push_run(srv);
  chat__leave(srv);
  return rc;
}

chat_err chat_server_bus_deliver(chat_server *srv, const char *msg,
                                 size_t len, chat_time_ms now) {
  if (!srv)
    return CHAT_ERR_INVAL;
  if (!msg && len)
    return chat__srv_fail(srv, CHAT_ERR_INVAL, "msg: NULL with len %zu",
                          len);
  chat__srv_clock(srv, now);
  chat__enter(srv);
  chat_err rc = chat__bus_in(srv, msg ? msg : "", len, now);
  chat__leave(srv);
  if (rc == CHAT_ERR_INVAL)
    chat__srv_fail(srv, rc, "msg: not a bus message this server knows");
  return rc;
}

/* The drain's close waits for every accepted send to be committed and
 * acked. */
void chat__drain_check(chat_server *srv) {
  if (!srv->draining || srv->drain_closed || srv->n_sends > 0 ||
      srv->commit_busy)
    return;
  srv->drain_closed = true;
  chat__receipts_flush(srv);
  /* Tell each client when to come back (PROTOCOL.md section 8): it waits
   * a random delay in [0, retry_after_ms], so a restart's clients return
   * spread over that window instead of all at once. */
  uint32_t spread = srv->s.drain_retry_after_ms;
  for (chat_session *s = srv->sessions; s; s = s->all_next) {
    if (spread == CHAT_SERVER_NO_GOAWAY)
      chat__sess_close(s, 1001, "server shutting down");
    else
      chat__sess_goaway(s, "drain", spread, 1012, "server restarting");
  }
}

void chat_server_drain(chat_server *srv, chat_time_ms now) {
  if (!srv)
    return;
  chat__srv_clock(srv, now);
  chat__enter(srv);
  srv->draining = true;
  /* What was accepted is committed and acked before the sockets close. */
  while (srv->n_sends > 0 && chat__can_commit(srv))
    if (chat__flush_sends(srv, now) != CHAT_OK)
      break;
  chat__run_fanouts(srv);
  /* Sends that could not start (the store's max_message_id or memory)
   * commit from the timer; the sessions close after them. */
  chat__drain_check(srv);
  chat__leave(srv);
}

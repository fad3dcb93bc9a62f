/* chatd: the reference server of PROTOCOL.md section 6, built only from
 * libchat's public API: the SQLite store, Ed25519 tokens, the in-process
 * presence registry and bus (one node), the file push backend and a
 * server transport: epoll (Linux) or libwebsockets. */
#ifdef CHATD_HAVE_EPOLL
#include <chat/epoll.h>
#endif
#include <chat/lws.h>
#include <chat/memory.h>
#include <chat/server.h>
#include <chat/sodium.h>
#include <chat/sqlite.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "chatd.h"

static volatile sig_atomic_t stop_signals;
static int log_level = CHAT_LOG_WARN;
static const char *transport_src = "lws"; /* src= of the transport's lines */

/* ---- logging: one line per event, key=value, to stderr ---- */

static const char *level_name(int level) {
  switch (level) {
  case CHAT_LOG_ERROR: return "error";
  case CHAT_LOG_WARN: return "warn";
  case CHAT_LOG_INFO: return "info";
  default: return "debug";
  }
}

static void emit(int level, const char *src, const char *kv) {
  if (level > log_level)
    return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(stderr, "ts=%s.%03ldZ level=%s src=%s %s\n", when,
          ts.tv_nsec / 1000000L, level_name(level), src, kv);
}

static void logf_(int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void logf_(int level, const char *fmt, ...) {
  if (level > log_level)
    return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  emit(level, "chatd", line);
}

/* The core logs free text: quote it into msg="...". */
static void core_log(void *user_data, int level, const char *msg) {
  (void)user_data;
  if (level > log_level)
    return;
  char line[1024];
  size_t k = 0;
  const char pre[] = "msg=\"";
  memcpy(line, pre, sizeof pre - 1);
  k = sizeof pre - 1;
  for (const char *p = msg; *p && k < sizeof line - 4; p++) {
    if (*p == '"' || *p == '\\')
      line[k++] = '\\';
    line[k++] = (*p == '\n') ? ' ' : *p;
  }
  line[k++] = '"';
  line[k] = 0;
  emit(level, "core", line);
}

/* The transport already writes key=value. */
static void transport_log(void *user_data, int level, const char *msg) {
  (void)user_data;
  emit(level, transport_src, msg);
}

/* ---- helpers ---- */

static void on_signal(int sig) {
  (void)sig;
  stop_signals++;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* mkdir -p, new directories 0700: the data directory holds the key. */
static int make_dirs(const char *path) {
  char buf[4096];
  size_t n = strlen(path);
  if (n == 0 || n >= sizeof buf)
    return -1;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != 0)
      continue;
    char c = buf[i];
    buf[i] = 0;
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
      return -1;
    buf[i] = c;
  }
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

/* Each connection is a descriptor: take every one the hard limit allows. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  rlim_t want = rl.rlim_max;
  if (want == RLIM_INFINITY || want > (1u << 20))
    want = 1u << 20;
  if (rl.rlim_cur >= want)
    return;
  rlim_t old = rl.rlim_cur;
  rl.rlim_cur = want;
  while (setrlimit(RLIMIT_NOFILE, &rl) != 0 && rl.rlim_cur > old * 2)
    rl.rlim_cur /= 2;
  getrlimit(RLIMIT_NOFILE, &rl);
  logf_(CHAT_LOG_INFO, "event=fd_limit soft=%llu hard=%llu",
        (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max);
}

static int open_key(const char *data_dir, chat_sodium_key **key) {
  char path[4200];
  snprintf(path, sizeof path, "%s/token.key", data_dir);
  bool created = false;
  chat_err rc = chat_sodium_key_load_or_create(key, path, &created, NULL);
  if (rc == CHAT_ERR_DENIED) {
    logf_(CHAT_LOG_ERROR,
          "event=key_refused path=%s why=\"group or world may access it; "
          "chmod 600\"",
          path);
    return -1;
  }
  if (rc != CHAT_OK) {
    logf_(CHAT_LOG_ERROR, "event=key_failed path=%s err=%s", path,
          chat_err_name(rc));
    return -1;
  }
  if (created)
    logf_(CHAT_LOG_INFO, "event=key_created path=%s", path);
  return 0;
}

/* ---- chatd token ---- */

static int cmd_token(const chatd_opts *o) {
  if (make_dirs(o->data_dir) != 0) {
    logf_(CHAT_LOG_ERROR, "event=data_dir_failed path=%s err=\"%s\"",
          o->data_dir, strerror(errno));
    return 1;
  }
  chat_sodium_key *key = NULL;
  if (open_key(o->data_dir, &key) != 0)
    return 1;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  int64_t exp = o->ttl_s ? now_ms + (int64_t)o->ttl_s * 1000 : 0;
  char tok[CHAT_SODIUM_TOKEN_BUF];
  chat_err rc = chat_sodium_token_mint_kind(
      key, o->user, o->device, exp, o->bot ? CHAT_SENDER_BOT : CHAT_SENDER_USER,
      tok, sizeof tok, NULL);
  chat_sodium_key_free(key);
  if (rc != CHAT_OK) {
    fprintf(stderr, "chatd: cannot mint a token: %s (ids are 1..64 bytes "
                    "of [A-Za-z0-9_.:@-])\n",
            chat_strerror(rc));
    return 2;
  }
  printf("%s\n", tok);
  return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- chatd ban / unban ---- */

/* A shadow ban is a row in DIR's store. A chatd running on the same
 * directory reads the ban list inside every commit (SQLite, WAL: the
 * write is visible to its next transaction), so the user's next message
 * is withheld; its typing relay rereads the list every --ban-poll-ms. */
static int cmd_ban(const chatd_opts *o) {
  bool ban = o->cmd == CMD_BAN;
  if (!chat_id_valid(o->user, strlen(o->user))) {
    fprintf(stderr, "chatd: --user: not a valid id (1..64 bytes of "
                    "[A-Za-z0-9_.:@-])\n");
    return 2;
  }
  struct stat st;
  if (stat(o->data_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    logf_(CHAT_LOG_ERROR, "event=data_dir_missing path=%s", o->data_dir);
    fprintf(stderr, "chatd: %s is not a data directory\n", o->data_dir);
    return 1;
  }
  char db_path[4200];
  snprintf(db_path, sizeof db_path, "%s/chat.db", o->data_dir);
  chat_storage_ops store;
  chat_errbuf eb = {{0}};
  chat_err rc = chat_sqlite_storage_open(&store, db_path, NULL, NULL, &eb);
  if (rc != CHAT_OK) {
    logf_(CHAT_LOG_ERROR, "event=store_failed path=%s err=%s why=\"%s\"",
          db_path, chat_err_name(rc), eb.msg);
    fprintf(stderr, "chatd: cannot open %s: %s\n", db_path, eb.msg);
    return 1;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  /* The SQLite store answers at once: called directly, op NULL. */
  rc = store.shadow_ban_set(store.self, o->user, ban, now_ms, NULL);
  store.destroy(store.self);
  if (rc != CHAT_OK) {
    fprintf(stderr, "chatd: cannot %s %s: %s\n", ban ? "ban" : "unban",
            o->user, chat_strerror(rc));
    return 1;
  }
  printf("%s %s\n", ban ? "shadow-banned" : "unbanned", o->user);
  return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- chatd serve ---- */

/* ---- the transport: epoll or lws, behind one face ---- */

typedef struct xport {
  chat_lws *lws;
#ifdef CHATD_HAVE_EPOLL
  chat_epoll *ep;
#endif
} xport;

typedef struct host {
  chat_storage_ops store; /* a copy, for /healthz; the server owns it */
  xport *x;               /* set before the first connection */
} host;

static bool healthy(void *user_data) {
  host *h = user_data;
  uint64_t max_id;
  /* The SQLite store answers at once, so it is asked directly (op NULL). */
  return h->store.max_message_id(h->store.self, &max_id, NULL) == CHAT_OK;
}

/* env.wake: a module thread posted work for the server; the transport
 * runs it on its loop (lws: LWS_CALLBACK_EVENT_WAIT_CANCELLED; epoll: its
 * eventfd). Any thread. */
static void wake(void *user_data) {
  host *h = user_data;
  if (!h->x)
    return;
#ifdef CHATD_HAVE_EPOLL
  if (h->x->ep) {
    chat_epoll_wake(h->x->ep);
    return;
  }
#endif
  if (h->x->lws)
    chat_lws_wake(h->x->lws);
}

typedef struct deliver_ctx {
  chat_server *srv;
} deliver_ctx;

static void bus_in(void *user_data, const char *msg, size_t len) {
  deliver_ctx *d = user_data;
  chat_server_bus_deliver(d->srv, msg, len, mono_ms());
}

static uint16_t x_port(const xport *x) {
#ifdef CHATD_HAVE_EPOLL
  if (x->ep)
    return chat_epoll_port(x->ep);
#endif
  return chat_lws_port(x->lws);
}

static size_t x_connections(const xport *x) {
#ifdef CHATD_HAVE_EPOLL
  if (x->ep)
    return chat_epoll_connections(x->ep);
#endif
  return chat_lws_connections(x->lws);
}

static void x_drain(xport *x) {
#ifdef CHATD_HAVE_EPOLL
  if (x->ep) {
    chat_epoll_drain(x->ep);
    return;
  }
#endif
  chat_lws_drain(x->lws);
}

static chat_err x_service(xport *x) {
#ifdef CHATD_HAVE_EPOLL
  /* A signal ends the wait; the cap bounds a signal that lands between
   * the loop's check and the wait. */
  if (x->ep)
    return chat_epoll_service(x->ep, 250);
#endif
  return chat_lws_service(x->lws);
}

static void x_free(xport *x) {
#ifdef CHATD_HAVE_EPOLL
  chat_epoll_free(x->ep);
  x->ep = NULL;
#endif
  chat_lws_free(x->lws);
  x->lws = NULL;
}

static void x_callbacks(const chatd_opts *o, chat_server_callbacks *cb) {
#ifdef CHATD_HAVE_EPOLL
  if (o->transport == TRANSPORT_EPOLL) {
    chat_epoll_server_callbacks(cb);
    return;
  }
#endif
  (void)o;
  chat_lws_server_callbacks(cb);
}

/* Create and bind the chosen transport; 0 or -1 (logged). */
static int x_open(xport *x, const chatd_opts *o, chat_server *srv,
                  host *h) {
  const char *addr = strcmp(o->host, "localhost") == 0 ? "127.0.0.1"
                                                       : o->host;
  chat_err rc;
#ifdef CHATD_HAVE_EPOLL
  if (o->transport == TRANSPORT_EPOLL) {
    chat_epoll_settings es = {
        .version = CHAT_EPOLL_SETTINGS_V1,
        .max_http_body_bytes = o->max_http_body_bytes,
        .idle_timeout_ms = o->idle_timeout_ms,
        .write_budget_bytes = o->write_budget_bytes,
        .static_dir = o->static_dir,
        .healthy = healthy,
        .log = transport_log,
        .log_level = log_level,
        .user_data = h,
    };
    chat_errbuf err = {""};
    rc = chat_epoll_new(&x->ep, srv, &es, NULL, &err);
    if (rc != CHAT_OK) {
      logf_(CHAT_LOG_ERROR, "event=transport_failed err=%s why=\"%s\"",
            chat_err_name(rc), err.msg);
      return -1;
    }
    h->x = x;
    chat_epoll_listen_options lo = {.version = CHAT_EPOLL_LISTEN_V1,
                                    .host = addr,
                                    .port = o->port};
    rc = chat_epoll_listen(x->ep, &lo, &err);
    if (rc != CHAT_OK) {
      logf_(CHAT_LOG_ERROR,
            "event=listen_failed host=%s port=%u err=%s why=\"%s\"",
            o->host, (unsigned)o->port, chat_err_name(rc), err.msg);
      return -1;
    }
    return 0;
  }
#endif
  chat_lws_settings ls = {
      .version = CHAT_LWS_SETTINGS_V1,
      .max_http_body_bytes = o->max_http_body_bytes,
      .idle_timeout_ms = o->idle_timeout_ms,
      .write_budget_bytes = o->write_budget_bytes,
      .static_dir = o->static_dir,
      .healthy = healthy,
      .log = transport_log,
      .log_level = log_level,
      .user_data = h,
  };
  chat_errbuf eb = {""};
  rc = chat_lws_new(&x->lws, srv, &ls, NULL, &eb);
  if (rc != CHAT_OK) {
    logf_(CHAT_LOG_ERROR, "event=transport_failed err=%s why=\"%s\"",
          chat_err_name(rc), eb.msg);
    return -1;
  }
  h->x = x;
  chat_lws_listen_options lo = {.version = CHAT_LWS_LISTEN_V1,
                                .host = addr,
                                .port = o->port,
                                .rx_buffer_bytes = o->rx_buffer_bytes};
  rc = chat_lws_listen(x->lws, &lo, &eb);
  if (rc != CHAT_OK) {
    logf_(CHAT_LOG_ERROR,
          "event=listen_failed host=%s port=%u err=%s why=\"%s\"", o->host,
          (unsigned)o->port, chat_err_name(rc), eb.msg);
    return -1;
  }
  return 0;
}

static int cmd_serve(const chatd_opts *o) {
  raise_fd_limit();
  if (make_dirs(o->data_dir) != 0) {
    logf_(CHAT_LOG_ERROR, "event=data_dir_failed path=%s err=\"%s\"",
          o->data_dir, strerror(errno));
    return 1;
  }
  char db_path[4200];
  snprintf(db_path, sizeof db_path, "%s/chat.db", o->data_dir);

  int status = 1;
  chat_sodium_key *key = NULL;
  chat_memory_hub *hub = NULL;
  chat_server *srv = NULL;
  xport x = {0};
  chat_storage_ops store = {0};
  chat_auth_ops auth = {0};
  chat_push_ops push = {0};
  chat_presence_ops presence = {0};
  chat_bus_ops bus = {0};
  bool have_push = false;

  if (open_key(o->data_dir, &key) != 0)
    goto out;
  chat_err rc = chat_sodium_auth_ops(&auth, key, NULL);
  chat_sodium_key_free(key);
  key = NULL;
  if (rc != CHAT_OK)
    goto out;

  chat_sqlite_options so = {.version = CHAT_SQLITE_OPTIONS_V1,
                            .sync = o->sync ? CHAT_SQLITE_SYNC_NORMAL
                                            : CHAT_SQLITE_SYNC_FULL};
  chat_errbuf eb = {{0}};
  rc = chat_sqlite_storage_open(&store, db_path, &so, NULL, &eb);
  if (rc != CHAT_OK) {
    logf_(CHAT_LOG_ERROR, "event=store_failed path=%s err=%s why=\"%s\"",
          db_path, chat_err_name(rc), eb.msg);
    goto out;
  }
  if (o->push_log) {
    rc = chat_push_file_open(&push, o->push_log, NULL);
    if (rc != CHAT_OK) {
      logf_(CHAT_LOG_ERROR, "event=push_log_failed path=%s err=%s",
            o->push_log, chat_err_name(rc));
      goto out;
    }
    have_push = true;
  }
  if (chat_memory_hub_new(&hub, NULL) != CHAT_OK ||
      chat_memory_presence_ops(hub, &presence) != CHAT_OK ||
      chat_memory_bus_ops(hub, &bus) != CHAT_OK)
    goto out;

  char gateway[32];
  snprintf(gateway, sizeof gateway, "gw%u", (unsigned)o->machine_id);
  host h = {.store = store};
  chat_env env;
  if (chat_env_system(&env) != CHAT_OK)
    goto out;
  env.log = core_log;
  env.wake = wake;
  env.user_data = &h;
  chat_server_settings s = {
      .version = CHAT_SERVER_SETTINGS_V1,
      .env = &env,
      .machine_id = o->machine_id,
      .gateway_id = gateway,
      .max_body_bytes = o->max_body_bytes,
      .max_frame_bytes = o->max_frame_bytes,
      .rate_per_minute = o->rate_per_minute,
      .resume_max_messages = o->resume_max_messages,
      .resume_max_age_ms = o->resume_max_age_ms,
      .heartbeat_ms = o->heartbeat_ms,
      .presence_idle_ms = o->presence_idle_ms,
      .presence_offline_ms = o->presence_offline_ms,
      .presence_idle_offline_ms = o->presence_idle_offline_ms,
      .max_group_members = o->max_group_members,
      .garbage_per_minute = o->garbage_per_minute,
      .max_queued_frames = o->max_queued_frames,
      .max_queued_bytes = o->max_queued_bytes,
      .rest_rate_per_minute = o->rest_rate_per_minute,
      .rest_burst = o->rest_burst,
      .edit_window_ms = o->edit_window_ms,
      .bot_rate_per_minute = o->bot_rate_per_minute,
      /* Not given: the core's default; 0 asks for none. */
      .new_direct_per_day = o->new_direct_per_day == UINT32_MAX ? 0
                            : o->new_direct_per_day == 0
                                ? UINT32_MAX
                                : o->new_direct_per_day,
      .drain_retry_after_ms = o->drain_spread_ms == UINT32_MAX ? 0
                              : o->drain_spread_ms == 0
                                  ? CHAT_SERVER_NO_GOAWAY
                                  : o->drain_spread_ms,
      .overload_retry_after_ms = o->overload_retry_ms,
      .resume_batch_hint = o->resume_batch_hint,
      .ban_poll_ms = o->ban_poll_ms,
  };
  chat_server_callbacks cb;
  x_callbacks(o, &cb);
  chat_server_modules mods = {.version = CHAT_SERVER_MODULES_V1,
                              .storage = &store,
                              .presence = &presence,
                              .bus = &bus,
                              .push = have_push ? &push : NULL,
                              .auth = &auth};
  rc = chat_server_new(&srv, &s, &mods, &cb, NULL, NULL, &eb);
  if (rc != CHAT_OK) {
    logf_(CHAT_LOG_ERROR, "event=server_failed err=%s why=\"%s\"",
          chat_err_name(rc), eb.msg);
    goto out;
  }
  /* The server owns the modules now. */
  store.destroy = NULL;
  auth.destroy = NULL;
  push.destroy = NULL;

  if (x_open(&x, o, srv, &h) != 0)
    goto out;
  bool v6 = strchr(o->host, ':') != NULL;
  printf("listening on %s%s%s:%u\n", v6 ? "[" : "", o->host, v6 ? "]" : "",
         (unsigned)x_port(&x));
  fflush(stdout);
  logf_(CHAT_LOG_INFO, "event=listening host=%s port=%u data_dir=%s",
        o->host, (unsigned)x_port(&x), o->data_dir);

  deliver_ctx dc = {srv};
  bool draining = false;
  uint64_t deadline = 0;
  status = 0;
  for (;;) {
    if (stop_signals && !draining) {
      draining = true;
      deadline = mono_ms() + o->drain_timeout_ms;
      logf_(CHAT_LOG_INFO, "event=draining sessions=%zu",
            x_connections(&x));
      x_drain(&x);
    }
    if (draining && (x_connections(&x) == 0 || mono_ms() >= deadline ||
                     stop_signals > 1))
      break;
    if (x_service(&x) != CHAT_OK) {
      logf_(CHAT_LOG_ERROR, "event=service_failed");
      status = 1;
      break;
    }
    /* Single node: nothing is published to us, but a hub is a bus. */
    if (chat_memory_hub_pending(hub, gateway))
      chat_memory_hub_drain(hub, gateway, bus_in, &dc);
  }
  logf_(CHAT_LOG_INFO, "event=stopped sessions_left=%zu",
        x_connections(&x));

out:
  x_free(&x); /* closes what is left, before the server goes */
  chat_server_free(srv);
  if (!srv) {
    if (store.destroy)
      store.destroy(store.self);
    if (auth.destroy)
      auth.destroy(auth.self);
    if (push.destroy)
      push.destroy(push.self);
  }
  chat_memory_hub_free(hub);
  chat_sodium_key_free(key);
  if (fflush(stdout) != 0)
    status = 1;
  return status;
}

int main(int argc, char **argv) {
  chatd_opts o;
  bool done = false;
  int rc = chatd_parse(&o, argc, argv, &done);
  if (rc || done) {
    chatd_opts_free(&o);
    return rc;
  }
  log_level = o.log_level;
  transport_src = o.transport == TRANSPORT_EPOLL ? "epoll" : "lws";

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &sa, NULL);

  rc = o.cmd == CMD_TOKEN                          ? cmd_token(&o)
       : o.cmd == CMD_BAN || o.cmd == CMD_UNBAN ? cmd_ban(&o)
                                                : cmd_serve(&o);
  chatd_opts_free(&o);
  return rc;
}

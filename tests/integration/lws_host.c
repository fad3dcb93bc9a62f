/* A host that owns its lws_context (the second way of include/chat/lws.h)
 * for the integration suite:
 *
 *   lws_host --data-dir DIR [--deflate] [--async] [--delay-ms N]
 *
 * It serves chat.v1 and REST like chatd (SQLite store and Ed25519 tokens in
 * DIR, so `chatd token --data-dir DIR` mints its tokens) and prints
 * "listening on 127.0.0.1:PORT" once ready. SIGTERM stops it.
 *   --deflate   the context offers permessage-deflate, as a host serving
 *               other WebSocket protocols might; the adapter must decline
 *               it for chat.v1.
 *   --async     every store call answers CHAT_PENDING
 *               (tests/support/defer_store.h): a worker thread hands the
 *               completions over with chat_op_post(), env.wake calls
 *               chat_lws_wake(), and the adapter runs them from
 *               LWS_CALLBACK_EVENT_WAIT_CANCELLED. REST answers come
 *               through on_http_response.
 *   --delay-ms  with --async: complete what is queued every N ms (1). */
#include <chat/lws.h>
#include <chat/server.h>
#include <chat/sodium.h>
#include <chat/sqlite.h>

#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "defer_store.h"

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

typedef struct host {
  chat_lws *t;
  defer_store *defer;
  struct lws_context *ctx;
  lws_sorted_usec_list_t sul;
  unsigned delay_ms;
} host;

static void wake(void *user_data) {
  host *h = user_data;
  if (h->t)
    chat_lws_wake(h->t);
}

/* The store's answers "arrive": hand what is queued to the worker. */
static void on_pace(lws_sorted_usec_list_t *sul) {
  host *h = lws_container_of(sul, host, sul);
  defer_store_run(h->defer);
  lws_sul_schedule(h->ctx, 0, &h->sul, on_pace,
                   (lws_usec_t)h->delay_ms * 1000);
}

static void die(const char *what, const char *why) {
  fprintf(stderr, "lws_host: %s: %s\n", what, why);
  exit(1);
}

static const struct lws_extension deflate_exts[] = {
    {"permessage-deflate", lws_extension_callback_pm_deflate,
     "permessage-deflate; client_no_context_takeover; "
     "client_max_window_bits"},
    {NULL, NULL, NULL}};

int main(int argc, char **argv) {
  const char *dir = NULL;
  bool deflate = false, async = false;
  host h = {.delay_ms = 1};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--data-dir") && i + 1 < argc)
      dir = argv[++i];
    else if (!strcmp(argv[i], "--deflate"))
      deflate = true;
    else if (!strcmp(argv[i], "--async"))
      async = true;
    else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc)
      h.delay_ms = (unsigned)atoi(argv[++i]);
    else
      die("usage", "lws_host --data-dir DIR [--deflate] [--async] "
                   "[--delay-ms N]");
  }
  if (!dir)
    die("usage", "--data-dir is required");
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);

  char path[4096];
  chat_errbuf eb = {{0}};
  chat_sodium_key *key;
  snprintf(path, sizeof path, "%s/token.key", dir);
  if (chat_sodium_key_load_or_create(&key, path, NULL, NULL) != CHAT_OK)
    die("key", path);
  chat_auth_ops auth;
  if (chat_sodium_auth_ops(&auth, key, NULL) != CHAT_OK)
    die("auth", "ops");
  chat_sodium_key_free(key);
  chat_storage_ops sync_store, store;
  snprintf(path, sizeof path, "%s/chat.db", dir);
  if (chat_sqlite_storage_open(&sync_store, path, NULL, NULL, &eb) != CHAT_OK)
    die("store", eb.msg);
  store = sync_store;
  if (async)
    h.defer = defer_store_new(&sync_store, DEFER_THREAD, 42, &store);

  chat_env env;
  if (chat_env_system(&env) != CHAT_OK)
    die("env", "libsodium");
  env.wake = wake;
  env.user_data = &h;
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .env = &env};
  chat_server_modules mods = {.version = CHAT_SERVER_MODULES_V1,
                              .storage = &store,
                              .auth = &auth};
  chat_server_callbacks cb;
  chat_lws_server_callbacks(&cb);
  chat_server *srv;
  if (chat_server_new(&srv, &s, &mods, &cb, NULL, NULL, &eb) != CHAT_OK)
    die("server", eb.msg);
  chat_lws_settings ls = {.version = CHAT_LWS_SETTINGS_V1};
  if (chat_lws_new(&h.t, srv, &ls, NULL, &eb) != CHAT_OK)
    die("adapter", eb.msg);

  /* The host's own context: the adapter's two protocols first. */
  lws_set_log_level(LLL_ERR, NULL);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.iface = "127.0.0.1";
  info.port = 0;
  info.protocols = chat_lws_protocols(h.t);
  info.vhost_name = "default";
  info.options = LWS_SERVER_OPTION_DISABLE_IPV6 |
                 LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  if (deflate)
    info.extensions = deflate_exts;
  h.ctx = lws_create_context(&info);
  if (!h.ctx)
    die("lws", "cannot create the context");
  struct lws_vhost *vh = lws_get_vhost_by_name(h.ctx, "default");
  int port = vh ? lws_get_vhost_listen_port(vh) : -1;
  if (port <= 0)
    die("lws", "no port");
  if (async)
    lws_sul_schedule(h.ctx, 0, &h.sul, on_pace,
                     (lws_usec_t)h.delay_ms * 1000);
  printf("listening on 127.0.0.1:%d\n", port);
  fflush(stdout);
  while (!stop)
    if (lws_service(h.ctx, 0) < 0)
      break;
  /* The context first: it closes every connection, and their sessions,
   * while the adapter and the server are still there. */
  lws_sul_cancel(&h.sul);
  lws_context_destroy(h.ctx);
  chat_lws_free(h.t);
  chat_server_free(srv);
  return 0;
}

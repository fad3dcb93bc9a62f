/* A libwebsockets runner for chat_client: it owns an lws_context (no
 * listening socket), opens the WebSocket when the client wants one, writes
 * its frames, feeds it inbound frames, arms its timer, and performs its
 * REST requests with lws's HTTP client, over TLS when the URL is wss:// or
 * https://. The bearer token is the client's (chat_client_set_token()),
 * read for each connection and request. Installed only when libchat is
 * built with libwebsockets.
 *
 * Threads. libchat starts no threads. The runner and its client live on
 * the thread that calls chat_client_lws_service() or chat_client_lws_run()
 * (the service thread): every chat_client callback runs there, and the app
 * calls chat_client_* and chat_client_lws_stop() only there. From any
 * thread: chat_client_lws_post() (run a function on the service thread,
 * the way to hand work to the client), chat_client_lws_quit() (make run()
 * return), and chat_client_lws_free() once the runner is stopped.
 *
 * Process-wide libwebsockets state. The first runner created in a process
 * sets lws's log level to errors only, once (pthread_once); a host that
 * wants another level calls lws_set_log_level() after that. Runners create
 * and destroy their contexts under one process-wide lock. A ws:// runner
 * never touches TLS: no OpenSSL context, no CA store. A wss:// runner has
 * its own client SSL_CTX, freed with it. (libwebsockets 4.1 keeps OpenSSL
 * ex-data indexes in globals that every TLS context creation rewrites: a
 * TLS handshake under way on another runner while a wss:// runner is being
 * created may fail once, and is then retried like any failed attempt.)
 *
 * Lifetime, for bindings whose objects die on a garbage collector's
 * thread:
 *   1. any thread:     chat_client_lws_quit(r)   -> run() returns
 *   2. service thread: chat_client_lws_stop(r)   -> the socket and the
 *      requests are dropped and reported to the client (its callbacks run
 *      here, now), tasks still posted run as cancelled; from its return on
 *      nothing calls into the app
 *   3. any thread:     chat_client_lws_free(r), then chat_client_free(c)
 * A graceful close first (the server sees 1000, a last typing stop goes
 * out) is chat_client_stop(c) on the service thread, then servicing until
 * the client is IDLE, then the steps above.
 *
 * Ownership: the settings and their strings are copied. The client is
 * borrowed: free the runner first, then the client. */
#ifndef CHAT_CLIENT_LWS_H
#define CHAT_CLIENT_LWS_H

#include "client.h"
#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chat_client_lws chat_client_lws;

#define CHAT_CLIENT_LWS_SETTINGS_V1 1
typedef struct chat_client_lws_settings {
  uint32_t version; /* CHAT_CLIENT_LWS_SETTINGS_V1 */
  /* "ws://HOST:PORT", "wss://HOST[:PORT]" (http:// and https:// are taken
   * as ws:// and wss://); an optional path replaces /chat/v1/ws. REST goes
   * to http(s) on the same host and port. HOST is a name or an IPv4
   * literal. */
  const char *url;
  const char *ca_file;    /* PEM CA bundle for TLS; NULL: the system's */
  bool allow_self_signed; /* TLS: accept a self-signed certificate (tests) */
  uint32_t max_frame_bytes;    /* inbound reassembly cap; 1048576 */
  uint32_t max_response_bytes; /* REST answer cap; 67108864 */
} chat_client_lws_settings;

/** Create a runner for @p c (borrowed; it must outlive the runner) and its
 * lws_context. Nothing connects until the client wants it
 * (chat_client_start()). @p err (may be NULL) receives one line on
 * failure.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL argument, unknown settings version, a URL
 *         that does not parse, a partial allocator
 * @retval CHAT_ERR_MODULE lws could not create its context, or TLS could
 *         not be set up (ca_file unreadable)
 * @retval CHAT_ERR_NOMEM
 * @since 1.0 */
CHAT_API chat_err chat_client_lws_new(chat_client_lws **out, chat_client *c,
                                      const chat_client_lws_settings *s,
                                      const chat_allocator *alloc,
                                      chat_errbuf *err);

/** Service once: wait for sockets, posted tasks or the client's next
 * deadline, and handle what is ready. Service thread.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL r is NULL
 * @retval CHAT_ERR_STATE the runner is stopped
 * @retval <= CHAT_ERR_FATAL (chat_err_is_fatal()): the client failed
 *         fatally (CHAT_ERR_NOMEM from chat_client_on_frame(), say) or lws
 *         did (CHAT_ERR_MODULE is not fatal, see below); the runner
 *         stopped itself as chat_client_lws_stop() would, and
 *         chat_client_lws_errmsg() says what failed
 * @retval CHAT_ERR_MODULE lws reported a fatal error; the runner stopped
 * @since 0.1 */
CHAT_API chat_err chat_client_lws_service(chat_client_lws *r);

/** Service until chat_client_lws_quit(), chat_client_lws_stop() from a
 * callback or posted task, or a fatal error. Service thread; the thread
 * that calls it is the service thread while it runs.
 * @retval CHAT_OK after quit or stop
 * @retval CHAT_ERR_INVAL @retval CHAT_ERR_STATE already stopped
 * @retval CHAT_ERR_MODULE or a fatal code, as chat_client_lws_service()
 * @since 0.1 */
CHAT_API chat_err chat_client_lws_run(chat_client_lws *r);

/** Make chat_client_lws_run() return soon (the runner keeps its
 * connection; run() may be called again). Any thread. NULL is a no-op.
 * @since 0.1 */
CHAT_API void chat_client_lws_quit(chat_client_lws *r);

/** Run fn(arg, r, c) on the service thread soon, in posting order. Any
 * thread; it wakes the service thread. fn is the place to call
 * chat_client_* with work from other threads. Once posted, fn runs
 * exactly once: normally with the client, or, when the runner stops before
 * it ran, with c NULL ("cancelled: release arg"), on the thread that calls
 * chat_client_lws_stop(). The task is kept in a node allocated with the
 * runner's allocator on the calling thread: a custom allocator given to
 * chat_client_lws_new() must be thread-safe.
 * @retval CHAT_OK posted
 * @retval CHAT_ERR_INVAL r or fn NULL
 * @retval CHAT_ERR_STATE the runner is stopped: fn will not run, arg is
 *         still the caller's
 * @retval CHAT_ERR_NOMEM not posted
 * @since 1.0 */
CHAT_API chat_err chat_client_lws_post(chat_client_lws *r,
                                       void (*fn)(void *arg,
                                                  chat_client_lws *r,
                                                  chat_client *c),
                                       void *arg);

/** Stop the runner, on the service thread: the lws context is destroyed
 * (the socket and any requests go), the client is told (on_close 1001 for
 * an open connection, status 0 for each request in flight, so it retries
 * them later) and tasks still posted run as cancelled. Client callbacks
 * and cancelled tasks run inside this call; from its return on nothing
 * calls into the app and chat_client_lws_free() may run on any thread.
 * Called from a callback or posted task (inside service()/run()), it takes
 * effect when that service()/run() call returns. A second call is a no-op.
 * NULL is a no-op. @since 1.0 */
CHAT_API void chat_client_lws_stop(chat_client_lws *r);

/** Free the runner. After chat_client_lws_stop() it calls nothing (no lws,
 * no client, no task) and may run on any thread. Without a stop it must
 * run on the service thread or after that thread has returned: it then
 * destroys the lws context without telling the client (which still thinks
 * it is connected: free it, or call chat_client_on_close() yourself) and
 * drops posted tasks without running them. NULL is a no-op. @since 0.1 */
CHAT_API void chat_client_lws_free(chat_client_lws *r);

/** What made the runner stop itself (a fatal error), or "" when nothing
 * did; the string belongs to @p r. "" for NULL. @since 1.0 */
CHAT_API const char *chat_client_lws_errmsg(const chat_client_lws *r);

/** The monotonic clock (ms) the runner hands the client as `now`; use it
 * for chat_client_* calls made on the service thread. @since 0.1 */
CHAT_API chat_time_ms chat_client_lws_now(void);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_CLIENT_LWS_H */

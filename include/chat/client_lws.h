/* A libwebsockets runner for chat_client: it owns an lws_context (no
 * listening socket), opens the WebSocket when the client wants one, writes
 * its frames, feeds it inbound frames, arms its timer, and performs its
 * REST requests with lws's HTTP client, over TLS when the URL is wss:// or
 * https://. Installed only when libchat is built with libwebsockets.
 *
 * Threads: libchat starts no threads. The runner and its client live on
 * the thread that calls chat_client_lws_service() or chat_client_lws_run()
 * (the service thread): every chat_client callback runs there, and the
 * app may call chat_client_* only from there, that is from inside those
 * callbacks or from settings.on_wake. Any thread may call
 * chat_client_lws_wake() (on_wake then runs on the service thread) and
 * chat_client_lws_quit(). To drive a client "on its own thread", start a
 * thread that calls chat_client_lws_run().
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
  const char *token;     /* sent as Authorization: Bearer on every request */
  const char *ca_file;   /* PEM CA bundle for TLS; NULL: the system's */
  bool allow_self_signed; /* TLS: accept a self-signed certificate (tests) */
  uint32_t max_frame_bytes;    /* inbound reassembly cap; 1048576 */
  uint32_t max_response_bytes; /* REST answer cap; 67108864 */
  /* Runs on the service thread after chat_client_lws_wake(); the place to
   * call chat_client_* with work handed over from other threads. */
  void (*on_wake)(chat_client_lws *r, chat_client *c, void *user_data);
  void *user_data;
} chat_client_lws_settings;

/** Create a runner for @p c (borrowed; it must outlive the runner) and its
 * lws_context. Nothing connects until the client wants it
 * (chat_client_start()).
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL argument, unknown version, bad URL, no token
 * @retval CHAT_ERR_MODULE lws could not create its context
 * @retval CHAT_ERR_NOMEM
 * @since 0.1 */
CHAT_API chat_err chat_client_lws_new(chat_client_lws **out, chat_client *c,
                                      const chat_client_lws_settings *s,
                                      const chat_allocator *alloc);

/** Replace the token sent as Authorization: Bearer on every later request
 * (the current connection is left alone). After the client reported
 * CHAT_ERR_AUTH and went CHAT_CLIENT_UNAUTHORIZED, set a fresh token and
 * call chat_client_start() to connect again. Service thread only. The
 * token is copied.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL r or token NULL, or token empty
 * @retval CHAT_ERR_NOMEM (the old token stays)
 * @since 0.1 */
CHAT_API chat_err chat_client_lws_set_token(chat_client_lws *r,
                                            const char *token);

/** Destroy the context (closing the socket and cancelling requests; the
 * client sees on_close) and free the runner. NULL is a no-op. Call it on
 * the service thread, or after that thread has returned. @since 0.1 */
CHAT_API void chat_client_lws_free(chat_client_lws *r);

/** Service once: wait for sockets or the client's next deadline and
 * handle what is ready.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL
 * @retval CHAT_ERR_MODULE lws reported a fatal error @since 0.1 */
CHAT_API chat_err chat_client_lws_service(chat_client_lws *r);

/** Service until chat_client_lws_quit().
 * @retval CHAT_OK after quit @retval CHAT_ERR_INVAL
 * @retval CHAT_ERR_MODULE lws reported a fatal error @since 0.1 */
CHAT_API chat_err chat_client_lws_run(chat_client_lws *r);

/** Make chat_client_lws_run() return soon. Any thread. @since 0.1 */
CHAT_API void chat_client_lws_quit(chat_client_lws *r);

/** Wake the service thread and run settings.on_wake there. Any thread;
 * several wakes before the thread gets to it run on_wake once. @since 0.1 */
CHAT_API void chat_client_lws_wake(chat_client_lws *r);

/** The monotonic clock (ms) the runner hands the client as `now`; use it
 * for chat_client_* calls made on the service thread. @since 0.1 */
CHAT_API chat_time_ms chat_client_lws_now(void);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_CLIENT_LWS_H */

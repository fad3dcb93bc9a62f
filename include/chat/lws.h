/* The libwebsockets transport for chat_server: the WebSocket endpoint
 * GET /chat/v1/ws (subprotocol "chat.v1"), the REST API under /api/v1/,
 * GET /healthz, GET /metrics and optional static files, on one port
 * (PROTOCOL.md sections 1 and 5). Installed only when libchat is built
 * with libwebsockets.
 *
 * What the adapter does for the server core:
 *   - refuses a missing, malformed, forged or expired token with HTTP 401
 *     before the upgrade (Authorization: Bearer, or ?access_token=);
 *   - declines every WebSocket extension (permessage-deflate included),
 *     even when the host's lws_context offers them: the adapter frames
 *     chat.v1 messages itself (below), which a compressing extension would
 *     corrupt;
 *   - reassembles fragmented messages up to the server's max_frame_bytes
 *     (over: close 1009), refuses binary messages (close 1003), and hands
 *     each whole text message to chat_session_on_frame();
 *   - writes the session's frames when the socket is writable: every frame
 *     a writable callback may take (write_budget_bytes) is framed by the
 *     adapter (FIN, text opcode, length, no mask) into one buffer and
 *     handed to lws in one lws_write(LWS_WRITE_HTTP), which is one send();
 *     a WebSocket carried by an HTTP/2 stream gets one
 *     lws_write(LWS_WRITE_TEXT) per frame instead (lws frames those);
 *   - closes with the session's close code (1012 drain after goaway, 1001
 *     drain without, 1008, 1009, 1011, 1013, 4001 token_expired, ...);
 *   - runs chat_server_on_timer() right after each batch of reads (the
 *     group commit) and at chat_server_next_deadline();
 *   - runs chat_server_run_posted() from LWS_CALLBACK_EVENT_WAIT_CANCELLED:
 *     the server's env.wake must call chat_lws_wake() (lws_cancel_service),
 *     so that completions posted by module threads are picked up;
 *   - pings peers that have been silent for the server's heartbeat_ms and
 *     closes those silent for idle_timeout_ms, from one sweep (lws's
 *     per-connection validity timer is turned off: it costs a sorted
 *     insert per connection);
 *   - answers REST through chat_server_http() (the core applies the per-user
 *     rate limit, 429 + Retry-After), with a body limit (413). An answer
 *     the core gives later (CHAT_PENDING) is written when it arrives
 *     through on_http_response; a connection that closes first cancels it.
 *
 * Two ways to use it:
 *   1. chat_lws_listen() + chat_lws_service(): the adapter owns an
 *      lws_context with lean settings (chatd does this).
 *   2. A host that owns its own lws_context puts the two protocols of
 *      chat_lws_protocols() first in its vhost's protocol table (the first
 *      one handles HTTP, so it must be protocols[0]), services the context
 *      itself, and destroys the context before chat_lws_free().
 *
 * Threads: everything runs on the lws service thread, like the server it
 * drives; chat_lws_wake() is the one call any thread may make.
 *
 * Ownership: the settings and the strings in them are copied. The server
 * is borrowed: it must outlive the adapter (free the adapter first). */
#ifndef CHAT_LWS_H
#define CHAT_LWS_H

#include "common.h"
#include "server.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lws_protocols;
struct lws_context;

typedef struct chat_lws chat_lws;

/** Fill @p out with the server callbacks the adapter needs (a session
 * with frames to write asks lws for a writable callback; a REST answer
 * that comes later is written to its connection). Pass them to
 * chat_server_new() for the server this adapter will drive; they find the
 * adapter through lws, so any server user_data will do.
 * @since 0.1 */
CHAT_API void chat_lws_server_callbacks(chat_server_callbacks *out);

/** Adapter settings; zero in any numeric field means its default. The
 * heartbeat and the frame limit are the server's (chat_server_settings
 * heartbeat_ms and max_frame_bytes), read through
 * chat_server_get_settings(). @since 1.0 */
#define CHAT_LWS_SETTINGS_V1 1
typedef struct chat_lws_settings {
  uint32_t version;              /* CHAT_LWS_SETTINGS_V1 */
  uint32_t max_http_body_bytes;  /* REST request bodies; 11 MiB (media are
                                    up to 10 MiB); over it 413 */
  uint32_t idle_timeout_ms;      /* close after this much silence;
                                    2 * heartbeat_ms + 15000 */
  uint32_t write_budget_bytes;   /* bytes written per writable callback
                                    before yielding to other sockets;
                                    65536 */
  uint32_t close_grace_ms;       /* a session that must close but whose
                                    socket does not drain is cut after
                                    this; 5000 */
  const char *static_dir;        /* files served at /; NULL: none */
  /* GET /healthz: true when the store can accept sends. NULL: healthy.
   * Draining always answers 503. */
  bool (*healthy)(void *user_data);
  /* One log line (key=value pairs, no newline); NULL: silent. */
  void (*log)(void *user_data, int level, const char *msg);
  int log_level;                 /* highest chat_log_level passed to log;
                                    0 (CHAT_LOG_ERROR) by default */
  void *user_data;               /* passed back to healthy and log */
} chat_lws_settings;

/** Create an adapter for @p srv.
 * @param err may be NULL; on failure one line naming the field and rule
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL out/srv/settings, version 0 or unknown, or
 *         a static_dir that is not a readable directory
 * @retval CHAT_ERR_NOMEM
 * @since 0.1 */
CHAT_API chat_err chat_lws_new(chat_lws **out, chat_server *srv,
                               const chat_lws_settings *settings,
                               const chat_allocator *alloc,
                               chat_errbuf *err);

/** Destroy the adapter's own lws_context if it has one (closing every
 * connection, which closes their sessions), then free the adapter. NULL
 * is a no-op. @since 0.1 */
CHAT_API void chat_lws_free(chat_lws *t);

/** For hosts that own their lws_context: two filled protocols and the
 * terminating entry, valid while the adapter lives. [0] serves HTTP (REST,
 * /healthz, /metrics, static files, the upgrade check) and must be the
 * vhost's protocols[0]; [1] is "chat.v1". Both use the same callback, so
 * a client that names no subprotocol still lands on chat.v1 semantics.
 * @since 0.1 */
CHAT_API const struct lws_protocols *chat_lws_protocols(chat_lws *t);

/** Options of the adapter's own lws_context; zero means default. */
#define CHAT_LWS_LISTEN_V1 1
typedef struct chat_lws_listen_options {
  uint32_t version;            /* CHAT_LWS_LISTEN_V1 */
  const char *host;            /* IPv4 or IPv6 literal; NULL, "" or
                                  "0.0.0.0": every IPv4 interface; "::":
                                  every interface */
  uint16_t port;               /* 0: the kernel picks (see chat_lws_port) */
  uint32_t rx_buffer_bytes;    /* per connection, held while it lives, and
                                  the most one read() takes; 2048 */
  uint32_t max_http_header_bytes; /* per request being parsed; 4096 */
  uint32_t max_fds;            /* sockets lws may hold; 0: RLIMIT_NOFILE
                                  minus a reserve for the store and logs */
} chat_lws_listen_options;

/** Create the adapter's own lws_context listening on host:port. Also sets
 * libwebsockets' own (process-wide) log level to errors only.
 * @param err may be NULL; on failure one line saying what was wrong
 * @retval CHAT_OK
 * @retval CHAT_ERR_STATE already listening
 * @retval CHAT_ERR_INVAL bad options (version 0 or unknown,
 *         rx_buffer_bytes under 128)
 * @retval CHAT_ERR_MODULE lws could not create the context or bind
 * @since 0.1 */
CHAT_API chat_err chat_lws_listen(chat_lws *t,
                                  const chat_lws_listen_options *options,
                                  chat_errbuf *err);

/** The port the adapter's context listens on (the real one when 0 was
 * asked); 0 before chat_lws_listen(). @since 0.1 */
CHAT_API uint16_t chat_lws_port(const chat_lws *t);

/** Service the adapter's own context once: wait for sockets or timers
 * (at most about 250 ms, or less when a signal arrives) and handle them.
 * @retval CHAT_OK @retval CHAT_ERR_STATE not listening
 * @retval CHAT_ERR_MODULE lws reported a fatal error
 * @since 0.1 */
CHAT_API chat_err chat_lws_service(chat_lws *t);

/** Wake the service thread (any thread): lws_cancel_service(), after which
 * the adapter runs chat_server_run_posted(). Make the server's env.wake
 * call this. @since 0.1 */
CHAT_API void chat_lws_wake(chat_lws *t);

/** Begin a graceful stop: refuse new connections and upgrades, /healthz
 * answers 503, and chat_server_drain() commits and acks what is pending
 * and makes every session close with 1012 after goaway (1001 with
 * CHAT_SERVER_NO_GOAWAY). Keep servicing until
 * chat_lws_connections() is 0 (or a deadline passes), then free.
 * @since 0.1 */
CHAT_API void chat_lws_drain(chat_lws *t);

/** Open WebSocket sessions. @since 0.1 */
CHAT_API size_t chat_lws_connections(const chat_lws *t);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_LWS_H */

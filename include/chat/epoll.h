/* The epoll transport for chat_server (Linux): HTTP/1.1 and WebSocket
 * written for this library from RFC 9112 and RFC 6455, serving exactly
 * what the libwebsockets adapter (lws.h) serves, on one port: the
 * WebSocket endpoint GET /chat/v1/ws (subprotocol "chat.v1"), the REST API
 * under /api/v1/, GET /healthz, GET /metrics and optional static files
 * (PROTOCOL.md sections 1 and 5). Installed only on Linux.
 *
 * Why a second transport: it holds an idle WebSocket in a small fixed
 * struct with no receive buffer (reads go to one buffer per loop; only an
 * unfinished frame keeps its bytes, allocated then and freed when it
 * completes), runs the core's group commit once per pass of the event
 * loop with no delay between rounds, writes all of a session's pending
 * frames in one send() per pass, and keeps the handshake phase from being
 * a fixed small door (see the settings).
 *
 * What it does for the server core, besides lws.h's list:
 *   - header phase: connections that have not finished a request head are
 *     bounded in number (header_max) and per source address
 *     (header_per_source); past either bound the oldest such connection is
 *     cut to make room. Each has header_timeout_ms to send its head.
 *   - HTTP framing per RFC 9112: Content-Length and Transfer-Encoding
 *     together are refused (400, close); chunked bodies are decoded;
 *     pipelined requests are answered in order, one at a time.
 *   - body caps: request and response bodies in flight are bounded in
 *     total (body_bytes_max, over it 503) and per user
 *     (user_body_bytes_max, over it 429), both decided at once from the
 *     request head; a body that stalls for body_timeout_ms is cut.
 *   - a REST answer the core gives later (CHAT_PENDING) is written when
 *     on_http_response brings it; the connection waits (at most 30 s, then
 *     503), and one that goes away first cancels the request.
 *   - media (GET /api/v1/media/...) is served with nosniff, a sandboxing
 *     Content-Security-Policy and Content-Disposition: attachment, except
 *     for an allow-list of image, audio and video types shown inline.
 *   - closes: after its close frame the server shuts down its sending side
 *     and keeps reading (and discarding) for up to linger_ms, so that the
 *     close code reaches a peer that is still writing.
 *
 * Threads: one thread runs chat_epoll_service() and everything it calls,
 * including the server; chat_epoll_wake() is the one call any thread may
 * make.
 *
 * Ownership: the settings and their strings are copied. The server is
 * borrowed: it must outlive the transport (free the transport first). */
#ifndef CHAT_EPOLL_H
#define CHAT_EPOLL_H

#include "common.h"
#include "server.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chat_epoll chat_epoll;

/** Fill @p out with the server callbacks this transport needs (a session
 * with frames to write is queued for the loop's next write; a REST answer
 * that comes later is written to its connection). Pass them to
 * chat_server_new() for the server this transport will drive; they find
 * the transport through the session's user data or the request's tag, so
 * any server user_data will do. The server's env.wake must call
 * chat_epoll_wake(), so that work module threads post is run.
 * @since 1.0 */
CHAT_API void chat_epoll_server_callbacks(chat_server_callbacks *out);

/** Transport settings; zero in any numeric field means its default. The
 * heartbeat and the message size limit are the server's
 * (chat_server_settings heartbeat_ms and max_frame_bytes, read through
 * chat_server_get_settings()), and so is the REST rate limit.
 * @since 1.0 */
#define CHAT_EPOLL_SETTINGS_V1 1
typedef struct chat_epoll_settings {
  uint32_t version;              /* CHAT_EPOLL_SETTINGS_V1 */
  uint32_t max_http_body_bytes;  /* one REST request body; 11 MiB; over
                                    it 413 */
  uint32_t idle_timeout_ms;      /* close after this much silence;
                                    2 * the server's heartbeat_ms + 15000 */
  uint32_t write_budget_bytes;   /* bytes taken from one session per loop
                                    pass before others get their turn
                                    (at least one frame); 65536 */
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

  uint32_t max_connections;      /* sockets held at once; 0: the soft
                                    RLIMIT_NOFILE minus a reserve (1/16,
                                    16..256) for the store and logs. A
                                    socket past it is closed at accept */
  uint32_t max_header_bytes;     /* a request line plus fields; 8192;
                                    over it 431 (414 for the line) */
  uint32_t header_timeout_ms;    /* from accept (or the end of the last
                                    answer) to a complete head; 3000 */
  uint32_t header_max;           /* connections in the header phase;
                                    max_connections / 8, at least 64 */
  uint32_t header_per_source;    /* of them from one address; header_max
                                    / 4, at least 16 */
  uint32_t keepalive_timeout_ms; /* an idle keep-alive connection waits
                                    this long for its next request;
                                    15000 */
  uint32_t body_timeout_ms;      /* a request body or an answer that
                                    makes no progress this long is cut;
                                    10000 */
  uint64_t body_bytes_max;       /* request + response body bytes in
                                    flight, all connections; 256 MiB */
  uint64_t user_body_bytes_max;  /* the same for one user; 3 *
                                    max_http_body_bytes */
  uint64_t ws_rx_bytes_max;      /* unfinished WebSocket messages held,
                                    all connections; 64 MiB; a message
                                    that would pass it is closed 1013 */
  uint32_t linger_ms;            /* after a close frame, how long to read
                                    and discard before closing; 2000 */
} chat_epoll_settings;

/** Create a transport for @p srv. Nothing listens yet.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL out/srv/settings, an unknown version, a
 *         setting out of range, a static_dir that is not a readable
 *         directory, or a server whose settings cannot be read (the detail
 *         is in @p err)
 * @retval CHAT_ERR_NOMEM
 * @retval CHAT_ERR_MODULE epoll or eventfd could not be created
 * @since 1.0 */
CHAT_API chat_err chat_epoll_new(chat_epoll **out, chat_server *srv,
                                 const chat_epoll_settings *settings,
                                 const chat_allocator *alloc,
                                 chat_errbuf *err);

/** Close every connection (closing their sessions), the listening socket
 * and the loop, then free the transport. NULL is a no-op. @since 1.0 */
CHAT_API void chat_epoll_free(chat_epoll *t);

/** Where to listen. */
#define CHAT_EPOLL_LISTEN_V1 1
typedef struct chat_epoll_listen_options {
  uint32_t version; /* CHAT_EPOLL_LISTEN_V1 */
  const char *host; /* IPv4 or IPv6 literal; NULL, "" or "0.0.0.0": every
                       IPv4 interface; "::": every interface */
  uint16_t port;    /* 0: the kernel picks (see chat_epoll_port) */
  uint32_t backlog; /* listen queue; 0: 4096 (the kernel caps it at
                       net.core.somaxconn) */
} chat_epoll_listen_options;

/** Bind and listen.
 * @retval CHAT_OK
 * @retval CHAT_ERR_STATE already listening
 * @retval CHAT_ERR_INVAL bad options (the detail is in @p err)
 * @retval CHAT_ERR_MODULE the address cannot be bound (in use, not local)
 * @since 1.0 */
CHAT_API chat_err chat_epoll_listen(chat_epoll *t,
                                    const chat_epoll_listen_options *options,
                                    chat_errbuf *err);

/** The port listened on (the real one when 0 was asked); 0 before
 * chat_epoll_listen(). @since 1.0 */
CHAT_API uint16_t chat_epoll_port(const chat_epoll *t);

/** One pass of the loop: wait up to @p max_wait_ms for sockets, timers or
 * a wake-up (less when work is already due; a signal also ends the wait),
 * read everything readable, run the server's timer (the group commit),
 * then write. Call it in a loop.
 * @retval CHAT_OK
 * @retval CHAT_ERR_MODULE epoll_wait failed for another reason than a
 *         signal
 * @since 1.0 */
CHAT_API chat_err chat_epoll_service(chat_epoll *t, uint32_t max_wait_ms);

/** Make a chat_epoll_service() that is waiting return soon, and run the
 * server's posted work (chat_server_run_posted()) in that pass. Any
 * thread (an eventfd write); the server's env.wake calls it. @since 1.0 */
CHAT_API void chat_epoll_wake(chat_epoll *t);

/** Begin a graceful stop: new connections are closed as they are
 * accepted, upgrades and /healthz answer 503, and chat_server_drain()
 * commits and acks what is pending and makes every session close with
 * 1012 after goaway (1001 with CHAT_SERVER_NO_GOAWAY). Keep servicing
 * until chat_epoll_connections() is 0 (or a deadline
 * passes), then free. @since 1.0 */
CHAT_API void chat_epoll_drain(chat_epoll *t);

/** Open WebSocket sessions. @since 1.0 */
CHAT_API size_t chat_epoll_connections(const chat_epoll *t);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_EPOLL_H */

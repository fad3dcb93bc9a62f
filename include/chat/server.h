/* The sans-I/O chat server: the message service of PROTOCOL.md section 4,
 * behind the module vtables of modules.h. It never touches a socket, a
 * thread or a clock: the host hands it whole frames and the time, takes
 * frames back, and arms one timer from chat_server_next_deadline().
 *
 * The host loop, in short (docs/guide.md has the full version):
 *   open:     chat_server_authenticate(); chat_server_open_session()
 *   inbound:  chat_session_on_frame() for each whole text frame
 *   outbound: when on_session_wants() fires (or after any call), while
 *             chat_session_next_frame() gives CHAT_OK, write that frame;
 *             when chat_session_wants() has CHAT_WANT_CLOSE, close the
 *             socket with chat_session_close_code()
 *   closed:   chat_server_close_session()
 *   time:     call chat_server_on_timer() once chat_server_next_deadline()
 *             has passed. Sends are committed there in groups (one
 *             transaction for all sends that arrived since the last call),
 *             so call it right after draining a batch of inbound frames:
 *             the deadline is "now" while sends are waiting.
 *   bus:      chat_server_bus_deliver() for each message from the bus
 *   REST:     chat_server_http()
 *
 * Threads: a chat_server and its sessions are used from one thread at a
 * time; different servers are independent. Callbacks and module methods run
 * inside chat_server_* / chat_session_* calls, on the calling thread.
 *
 * Ownership: settings, callbacks, identities and allocator are copied.
 * Module ops are copied, and the server calls their destroy() from
 * chat_server_free(). Sessions are owned by the server and stay valid until
 * chat_server_close_session(). Frame text from chat_session_next_frame() is
 * valid until the next call on that session. */
#ifndef CHAT_SERVER_H
#define CHAT_SERVER_H

#include "common.h"
#include "frame.h"
#include "modules.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chat_server chat_server;
typedef struct chat_session chat_session;

/** Settings; zero in any numeric field means its default. */
#define CHAT_SERVER_SETTINGS_V1 1
typedef struct chat_server_settings {
  uint32_t version;             /* CHAT_SERVER_SETTINGS_V1 */
  uint32_t machine_id;          /* Snowflake machine id, 0..1023; default 0 */
  const char *gateway_id;       /* this node on the bus; default "gw<machine_id>" */
  uint32_t max_body_bytes;      /* 65536 */
  uint32_t max_frame_bytes;     /* 131072 */
  uint32_t rate_per_minute;     /* sends per sender per conversation; 60 */
  uint32_t resume_max_messages; /* 1000 */
  uint64_t resume_max_age_ms;   /* 604800000 (7 days) */
  uint32_t heartbeat_ms;        /* advertised in hello; 30000 */
  uint64_t presence_idle_ms;    /* online -> idle without activity; 300000 */
  uint64_t presence_offline_ms; /* grace after the last device leaves; 5000 */
  uint64_t presence_idle_offline_ms; /* idle -> offline; 900000 */
  uint32_t max_group_members;   /* 1024 */
  uint32_t typing_max_members;  /* typing relayed up to this size; 50 */
  uint32_t delivered_max_members; /* delivered kept up to this size; 256 */
  uint32_t garbage_per_minute;  /* refused frames before close 1008; 30 */
  uint32_t receipt_flush_ms;    /* receipt frames coalesced this long; 250 */
  uint64_t receipt_ttl_ms;      /* group receipt rows kept; 90 days */
  uint32_t max_queued_frames;   /* per session; past it close 1013; 4096 */
  uint32_t max_queued_bytes;    /* per session; 8388608 */
  uint32_t max_batch;           /* sends per group commit; 256 */
  chat_env env;                 /* wall clock, randomness, log (copied) */
} chat_server_settings;

/** Server-to-host notifications. */
#define CHAT_SERVER_CALLBACKS_V1 1
typedef struct chat_server_callbacks {
  uint32_t version; /* CHAT_SERVER_CALLBACKS_V1 */
  /* The session's outbound queue went from empty to non-empty, or the
   * session started closing. It fires again for the next frame queued once
   * the host has taken the last one (no need to wait for CHAT_ERR_AGAIN);
   * a host that stops pulling while frames remain must arrange its own next
   * write (chat_session_wants() still says CHAT_WANT_WRITE).
   * Under lws: lws_callback_on_writable(). */
  void (*on_session_wants)(chat_server *srv, chat_session *sess,
                           void *session_user_data, void *user_data);
} chat_server_callbacks;

/** Create a server. storage is required; presence, bus, push and auth may
 * be NULL (single node, no push, no token check). Every ops struct is
 * copied, and from CHAT_OK on the server owns the module (calls its
 * destroy); on failure the caller still owns every module.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL out/settings/storage, an unknown struct
 *         version, machine_id > 1023, or env without wall_ms/random
 * @retval CHAT_ERR_MODULE storage->max_message_id failed
 * @retval CHAT_ERR_NOMEM */
CHAT_API chat_err chat_server_new(chat_server **out,
                                  const chat_server_settings *settings,
                                  const chat_server_callbacks *callbacks,
                                  void *user_data,
                                  const chat_storage_ops *storage,
                                  const chat_presence_ops *presence,
                                  const chat_bus_ops *bus,
                                  const chat_push_ops *push,
                                  const chat_auth_ops *auth,
                                  const chat_allocator *alloc);

/** Free the server, its sessions and its modules. NULL is a no-op. */
CHAT_API void chat_server_free(chat_server *srv);

/** Check a bearer token through the auth module.
 * @retval CHAT_OK *out filled
 * @retval CHAT_ERR_AUTH refused (also when no auth module is installed)
 * @retval CHAT_ERR_INVAL */
CHAT_API chat_err chat_server_authenticate(chat_server *srv, const char *token,
                                           size_t len, chat_identity *out);

/** A device connected: queue `hello`, mark the device online.
 * @p session_user_data is handed back in callbacks.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL bad identity ids
 * @retval CHAT_ERR_STATE the server is draining @retval CHAT_ERR_NOMEM */
CHAT_API chat_err chat_server_open_session(chat_server *srv,
                                           chat_session **out,
                                           const chat_identity *identity,
                                           void *session_user_data,
                                           chat_time_ms now);

/** One whole WebSocket text message from the client. A refused frame gets
 * an `error` frame and changes nothing; a frame over max_frame_bytes,
 * invalid UTF-8 or too much garbage makes the session want to close (1009,
 * 1007, 1008). Returns CHAT_OK in all those cases.
 * @retval CHAT_OK
 * @retval CHAT_ERR_STATE the session is closing; the frame was ignored
 * @retval CHAT_ERR_NOMEM the session is closing with 1011 */
CHAT_API chat_err chat_session_on_frame(chat_session *sess, const char *json,
                                        size_t len, chat_time_ms now);

/** The next frame to write.
 * @retval CHAT_OK json and len set (valid until the next call on sess)
 * @retval CHAT_ERR_AGAIN nothing to write now */
CHAT_API chat_err chat_session_next_frame(chat_session *sess,
                                          const char **json, size_t *len);

#define CHAT_WANT_WRITE 1u
#define CHAT_WANT_CLOSE 2u
/** CHAT_WANT_WRITE while frames are queued; CHAT_WANT_CLOSE once the
 * queued frames are written and the session must be closed. */
CHAT_API uint32_t chat_session_wants(const chat_session *sess);

/** The WebSocket close code (1000 when not closing) and a static reason. */
CHAT_API uint16_t chat_session_close_code(const chat_session *sess,
                                          const char **reason);

/** The session's user data, as given to chat_server_open_session(). */
CHAT_API void *chat_session_user_data(const chat_session *sess);

/** The transport closed: forget the session (the pointer dies). */
CHAT_API void chat_server_close_session(chat_server *srv, chat_session *sess,
                                        chat_time_ms now);

/** When chat_server_on_timer() is next due; CHAT_TIME_NEVER if idle. */
CHAT_API chat_time_ms chat_server_next_deadline(const chat_server *srv);

/** Run everything due by @p now: commit waiting sends (group commit) and
 * fan them out, flush receipt frames, presence transitions, push hand-off,
 * receipt expiry.
 * @retval CHAT_OK @retval CHAT_ERR_NOMEM */
CHAT_API chat_err chat_server_on_timer(chat_server *srv, chat_time_ms now);

/** A message another gateway published to this one. Unknown or malformed
 * messages are dropped (the bus is fire-and-forget) and reported.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL malformed */
CHAT_API chat_err chat_server_bus_deliver(chat_server *srv, const char *msg,
                                          size_t len, chat_time_ms now);

/** Begin draining (SIGTERM): refuse new sessions, commit what is waiting,
 * and make every session want to close with 1001. */
CHAT_API void chat_server_drain(chat_server *srv, chat_time_ms now);

/* ------------------------------------------------------------------------
 * REST (PROTOCOL.md section 5), sans-I/O: the transport parses HTTP and
 * authenticates; the server answers. */
typedef struct chat_http_request {
  const char *method;       /* "GET", "POST", "DELETE", ... */
  const char *path;         /* "/api/v1/conversations/c1/messages" */
  const char *query;        /* "before=5&limit=20" without '?', or NULL */
  const char *content_type; /* of the body, or NULL */
  const void *body;
  size_t body_len;
  const chat_identity *identity; /* the authenticated caller; NULL: 401 */
} chat_http_request;

typedef struct chat_http_response {
  int status;               /* 200, 201, 400, 401, 403, 404, 409, 413, 429 */
  const char *content_type; /* "application/json" or the media's type */
  const void *body;         /* valid until the next chat_server_http() */
  size_t body_len;
  uint32_t retry_after_s;   /* > 0: send Retry-After */
} chat_http_response;

/** Answer one REST request under /api/v1/. Errors are answered in *resp
 * as {"error":{"code","message"}} with a fitting status; the return value
 * is CHAT_OK whenever *resp holds an answer.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL NULL arguments */
CHAT_API chat_err chat_server_http(chat_server *srv,
                                   const chat_http_request *req,
                                   chat_http_response *resp,
                                   chat_time_ms now);

/* ------------------------------------------------------------------------
 * Counters for /metrics. */
typedef struct chat_server_stats {
  uint64_t sessions_open;
  uint64_t sessions_opened_total;
  uint64_t sessions_closed_total;
  uint64_t frames_in_total;
  uint64_t frames_out_total;
  uint64_t frames_refused_total;
  uint64_t sends_committed_total;
  uint64_t sends_duplicate_total;
  uint64_t commits_total;          /* group commits (store transactions) */
  uint64_t deliveries_total;       /* message frames queued to devices */
  uint64_t bus_published_total;
  uint64_t bus_publish_errors_total;
  uint64_t push_total;
  uint64_t push_errors_total;
  uint64_t receipts_applied_total; /* marks that advanced */
  uint64_t receipt_frames_total;
  uint64_t resume_messages_total;
  uint64_t slow_closes_total;      /* sessions closed for a full queue */
  uint64_t presence_online;        /* users online or idle here */
  uint64_t store_errors_total;
} chat_server_stats;

CHAT_API void chat_server_get_stats(const chat_server *srv,
                                    chat_server_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_SERVER_H */

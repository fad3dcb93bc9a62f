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
 *   posted:   when env.wake fires (from any thread), call
 *             chat_server_run_posted() on the loop thread
 *   bus:      chat_server_bus_deliver() for each message from the bus
 *   REST:     chat_server_http(); an answer that waits on a module comes
 *             through callbacks.on_http_response()
 *
 * Threads: a chat_server and its sessions are used from one thread at a
 * time (the loop thread); different servers are independent. Callbacks and
 * module methods run inside chat_server_* / chat_session_* calls, on the
 * calling thread. chat_server_post() and chat_op_post() are the calls any
 * thread may make.
 *
 * Ownership: settings, the env, callbacks, identities, module ops and the
 * allocator are copied. The server calls the modules' destroy() from
 * chat_server_free(). Sessions are owned by the server and stay valid until
 * chat_server_close_session(). Frame text from chat_session_next_frame() is
 * valid until the next call on that session.
 *
 * Errors: every call that fails with CHAT_ERR_INVAL, CHAT_ERR_STATE,
 * CHAT_ERR_MODULE or CHAT_ERR_TOO_LARGE leaves a one-line reason in
 * chat_server_errmsg(); constructors write it into their chat_errbuf. */
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

/** Settings; zero in any numeric field means its default.
 * @since 1.0 */
#define CHAT_SERVER_SETTINGS_V1 1
typedef struct chat_server_settings {
  uint32_t version;             /* CHAT_SERVER_SETTINGS_V1 */
  /* Wall clock, randomness, log and wake; required, copied (wall_ms and
   * random must be set). */
  const chat_env *env;
  uint32_t machine_id;          /* Snowflake machine id, 0..1023; default 0 */
  const char *gateway_id;       /* this node on the bus; default "gw<machine_id>" */
  uint32_t max_body_bytes;      /* 65536 */
  uint32_t max_frame_bytes;     /* 131072; the transport reads it back with
                                   chat_server_get_settings() */
  uint32_t rate_per_minute;     /* sends per sender per conversation; 60 */
  uint32_t resume_max_messages; /* 1000 */
  uint64_t resume_max_age_ms;   /* 604800000 (7 days) */
  uint32_t heartbeat_ms;        /* advertised in hello and used by the
                                   transport for pings; 30000 */
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
  uint32_t rest_rate_per_minute; /* REST requests per user; 1200;
                                    UINT32_MAX: no limit (over: 429) */
  uint32_t rest_burst;          /* REST bucket size; 200 */
  uint32_t max_waiting_frames;  /* per session: inbound frames held while an
                                   earlier frame waits on a module; past it
                                   close 1013; 256 */
  /* PROTOCOL.md section 8 (appended in 1.0). */
  uint64_t edit_window_ms;      /* an edit is allowed this long after its
                                   target's server_ts; 900000 (15 min) */
  uint32_t bot_rate_per_minute; /* sends per bot per conversation; 600 */
  uint32_t new_direct_per_day;  /* direct conversations a user may start
                                   per UTC day with users who never wrote
                                   to them (over: REST 429); 50;
                                   UINT32_MAX: no cap */
  uint32_t drain_retry_after_ms; /* goaway.retry_after_ms before the drain's
                                    close 1012; 10000;
                                    CHAT_SERVER_NO_GOAWAY: close with 1001,
                                    no goaway */
  uint32_t overload_retry_after_ms; /* goaway.retry_after_ms before an
                                       overload close 1013 (a full queue);
                                       5000 */
  uint32_t resume_batch_hint;   /* hello.limits.resume_batch_hint; 0: not
                                   sent */
  uint32_t ban_poll_ms;         /* how often the shadow-ban list is reread
                                   (storage shadow_bans); 2000 */
} chat_server_settings;

/** drain_retry_after_ms: drain without `goaway` (close 1001). @since 1.0 */
#define CHAT_SERVER_NO_GOAWAY UINT32_MAX

typedef struct chat_http_response chat_http_response;

/** Server-to-host notifications. Each takes the server's user_data first.
 * @since 1.0 */
#define CHAT_SERVER_CALLBACKS_V1 1
typedef struct chat_server_callbacks {
  uint32_t version; /* CHAT_SERVER_CALLBACKS_V1 */
  /* The session's outbound queue went from empty to non-empty, or the
   * session started closing. It fires again for the next frame queued once
   * the host has taken the last one (no need to wait for CHAT_ERR_AGAIN);
   * a host that stops pulling while frames remain must arrange its own next
   * write (chat_session_wants() still says CHAT_WANT_WRITE).
   * Under lws: lws_callback_on_writable(). */
  void (*on_session_wants)(void *user_data, chat_server *srv,
                           chat_session *sess, void *session_user_data);
  /* The answer of a chat_server_http() call that returned CHAT_PENDING;
   * @p tag is that request's tag. @p resp and its body are borrowed for
   * the callback. Never fires for a cancelled request. NULL: such answers
   * are dropped (set it whenever a module may answer CHAT_PENDING). */
  void (*on_http_response)(void *user_data, chat_server *srv, void *tag,
                           const chat_http_response *resp);
} chat_server_callbacks;

/** The modules a server runs on. Each is copied; only storage is
 * required. @since 1.0 */
#define CHAT_SERVER_MODULES_V1 1
typedef struct chat_server_modules {
  uint32_t version;                  /* CHAT_SERVER_MODULES_V1 */
  const chat_storage_ops *storage;   /* required */
  const chat_presence_ops *presence; /* NULL: single node */
  const chat_bus_ops *bus;           /* NULL: single node */
  const chat_push_ops *push;         /* NULL: no push */
  const chat_auth_ops *auth;         /* NULL: every token is refused
                                        (chat_server_authenticate() answers
                                        CHAT_ERR_AUTH), so no session opens
                                        through a transport that
                                        authenticates */
} chat_server_modules;

/** Create a server.
 * @param out        receives the server; NULL on failure
 * @param settings   copied, with the env it points at
 * @param modules    copied; from CHAT_OK on the server owns every module
 *                   (calls its destroy); on failure the caller still owns
 *                   every module
 * @param callbacks  copied; may be NULL
 * @param user_data  first argument of every callback
 * @param alloc      copied; NULL: libc
 * @param err        may be NULL; on failure one line naming the field and
 *                   the rule ("settings.machine_id: 2000 is over 1023")
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL out/settings/env/modules/storage, 0 or an
 *         unknown struct version (settings, env, modules, callbacks, any
 *         ops), machine_id > 1023, an invalid gateway_id, env without
 *         wall_ms or random, storage without a required method
 * @retval CHAT_ERR_MODULE storage->max_message_id failed
 * @retval CHAT_ERR_NOMEM
 * @since 1.0 */
CHAT_API chat_err chat_server_new(chat_server **out,
                                  const chat_server_settings *settings,
                                  const chat_server_modules *modules,
                                  const chat_server_callbacks *callbacks,
                                  void *user_data,
                                  const chat_allocator *alloc,
                                  chat_errbuf *err);

/** Free the server, its sessions and its modules (destroy() each), then
 * the module calls still in flight (their completions never run) and
 * posted work (chat_task structs still queued are not run; they remain
 * the caller's). NULL is a no-op. Call it on the loop thread after every
 * thread that might post has stopped. @since 0.1 */
CHAT_API void chat_server_free(chat_server *srv);

/** The reason for the last call on @p srv (or one of its sessions) that
 * failed with CHAT_ERR_INVAL, CHAT_ERR_STATE, CHAT_ERR_MODULE or
 * CHAT_ERR_TOO_LARGE; "" when none. Valid until the next call on the
 * server. @since 1.0 */
CHAT_API const char *chat_server_errmsg(const chat_server *srv);

/** The server's settings with every default resolved, written into @p out
 * up to the version the caller set in out->version (env points at the
 * server's copy, gateway_id at the server's string; both valid while the
 * server lives). Transports read heartbeat_ms and max_frame_bytes here, so
 * each is set once.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL NULL, or out->version 0 or unknown
 * @since 1.0 */
CHAT_API chat_err chat_server_get_settings(const chat_server *srv,
                                           chat_server_settings *out);

/** Check a bearer token through the auth module (auth.verify, at env
 * wall-clock time). Fills the fields of out->version.
 * @retval CHAT_OK *out filled
 * @retval CHAT_ERR_AUTH refused, or no auth module installed
 * @retval CHAT_ERR_INVAL NULL srv/out, token NULL with len > 0, or
 *         out->version 0 or unknown
 * @since 0.1 */
CHAT_API chat_err chat_server_authenticate(chat_server *srv, const char *token,
                                           size_t len, chat_identity *out);

/** A device connected: queue `hello`, mark the device online. When
 * identity->expires_ms is set, the session closes with 4001
 * "token_expired" once that wall-clock time passes (at once if it has).
 * @p session_user_data is handed back in callbacks.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL arguments, identity version 0 or unknown,
 *         bad identity ids, or an identity kind that is neither
 *         CHAT_SENDER_USER nor CHAT_SENDER_BOT
 * @retval CHAT_ERR_STATE the server is draining
 * @retval CHAT_ERR_NOMEM
 * @since 0.1 */
CHAT_API chat_err chat_server_open_session(chat_server *srv,
                                           chat_session **out,
                                           const chat_identity *identity,
                                           void *session_user_data,
                                           chat_time_ms now);

/** One whole WebSocket text message from the client. A refused frame gets
 * an `error` frame and changes nothing; a frame over max_frame_bytes,
 * invalid UTF-8 or too much garbage makes the session want to close (1009,
 * 1007, 1008). While an earlier frame of the session waits on a module
 * call, the frame is copied and handled after it (other sessions go on);
 * past max_waiting_frames the session closes with 1013. Returns CHAT_OK
 * in all those cases.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL session, or json NULL with len > 0
 * @retval CHAT_ERR_STATE the session is closing; the frame was ignored
 * @retval CHAT_ERR_NOMEM the session is closing with 1011
 * @since 0.1 */
CHAT_API chat_err chat_session_on_frame(chat_session *sess, const char *json,
                                        size_t len, chat_time_ms now);

/** The next frame to write.
 * @retval CHAT_OK json and len set (valid until the next call on sess)
 * @retval CHAT_ERR_AGAIN nothing to write now
 * @retval CHAT_ERR_INVAL NULL arguments
 * @since 0.1 */
CHAT_API chat_err chat_session_next_frame(chat_session *sess,
                                          const char **json, size_t *len);

#define CHAT_WANT_WRITE 1u
#define CHAT_WANT_CLOSE 2u
/** CHAT_WANT_WRITE while frames are queued; CHAT_WANT_CLOSE once the
 * queued frames are written and the session must be closed. @since 0.1 */
CHAT_API uint32_t chat_session_wants(const chat_session *sess);

/** The WebSocket close code (1000 when not closing) and a static reason:
 * 1001 draining without goaway, 1007 invalid UTF-8, 1008 garbage, 1009
 * frame too large, 1011 out of memory, 1012 draining after goaway, 1013 a
 * queue full (after goaway "overload"), 4001 "token_expired".
 * @since 0.1 */
CHAT_API uint16_t chat_session_close_code(const chat_session *sess,
                                          const char **reason);

/** The session's user data, as given to chat_server_open_session().
 * @since 0.1 */
CHAT_API void *chat_session_user_data(const chat_session *sess);

/** The transport closed: forget the session (the pointer dies). Work the
 * session started (a send waiting for its commit) still completes; its
 * answers are dropped. @since 0.1 */
CHAT_API void chat_server_close_session(chat_server *srv, chat_session *sess,
                                        chat_time_ms now);

/** When chat_server_on_timer() is next due: 0 while sends, deliveries or
 * posted work wait; CHAT_TIME_NEVER if idle. Token expiries count.
 * @since 0.1 */
CHAT_API chat_time_ms chat_server_next_deadline(const chat_server *srv);

/** Run everything due by @p now: posted work (as chat_server_run_posted),
 * commit waiting sends (group commit, at most one commit in flight) and
 * fan them out, flush receipt frames, presence transitions, token expiry,
 * push hand-off, receipt expiry.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL NULL
 * @retval CHAT_ERR_NOMEM @retval CHAT_ERR_FATAL the id generator failed
 * @since 0.1 */
CHAT_API chat_err chat_server_on_timer(chat_server *srv, chat_time_ms now);

/* ------------------------------------------------------------------------
 * Hand-off from other threads. */

/** A unit of work for the loop thread, allocated by the caller, which
 * keeps it alive until fn runs (fn may free it). `link` is the library's
 * while the task is queued. Not versioned: this struct never grows.
 * @since 1.0 */
typedef struct chat_task {
  void (*fn)(void *user_data, chat_server *srv, chat_time_ms now);
  void *user_data;
  struct chat_task *link; /* library use while posted */
} chat_task;

/** From any thread: queue @p task to run on the loop thread at the next
 * chat_server_run_posted() or chat_server_on_timer(), in posting order
 * (per thread), then call env.wake. Lock-free; never fails. A task must
 * not be posted again before it has run. A bus module's reader thread
 * uses it to get messages to chat_server_bus_deliver(). @since 1.0 */
CHAT_API void chat_server_post(chat_server *srv, chat_task *task);

/** Loop thread: run every posted task and op completion (chat_op_post),
 * and what waited on them. chat_server_on_timer() does it too, and
 * chat_server_next_deadline() is 0 while posted work waits.
 * Under lws: call it from LWS_CALLBACK_EVENT_WAIT_CANCELLED, which
 * env.wake triggers through lws_cancel_service().
 * @retval CHAT_OK @retval CHAT_ERR_INVAL NULL
 * @since 1.0 */
CHAT_API chat_err chat_server_run_posted(chat_server *srv, chat_time_ms now);

/** A message another gateway published to this one. Unknown or malformed
 * messages are dropped (the bus is fire-and-forget) and reported.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL malformed
 * @retval CHAT_ERR_NOMEM
 * @since 0.1 */
CHAT_API chat_err chat_server_bus_deliver(chat_server *srv, const char *msg,
                                          size_t len, chat_time_ms now);

/** Begin draining (SIGTERM): refuse new sessions, commit what is waiting,
 * and once the commits are done queue `goaway` (reason "drain",
 * retry_after_ms = settings.drain_retry_after_ms) to every session and
 * make it want to close with 1012, so that clients spread their return
 * over that window (PROTOCOL.md section 8); with CHAT_SERVER_NO_GOAWAY,
 * close with 1001 and no goaway. @since 0.1 */
CHAT_API void chat_server_drain(chat_server *srv, chat_time_ms now);

/* ------------------------------------------------------------------------
 * REST (PROTOCOL.md section 5), sans-I/O: the transport parses HTTP and
 * authenticates; the server answers, with a per-user token bucket
 * (settings.rest_rate_per_minute, 429 + Retry-After) in front. */

/** One request; every pointer is borrowed for the chat_server_http()
 * call. @since 1.0 */
#define CHAT_HTTP_REQUEST_V1 1
typedef struct chat_http_request {
  uint32_t version;         /* CHAT_HTTP_REQUEST_V1 */
  const char *method;       /* "GET", "POST", "DELETE", ... */
  const char *path;         /* "/api/v1/conversations/c1/messages" */
  const char *query;        /* "before=5&limit=20" without '?', or NULL */
  const char *content_type; /* of the body, or NULL */
  const void *body;
  size_t body_len;
  const chat_identity *identity; /* the authenticated caller; NULL: 401 */
  void *tag; /* the caller's: handed back by on_http_response() when the
                answer comes later, and the key of chat_server_http_cancel() */
} chat_http_request;

/** An answer. For chat_server_http() the caller sets version and the
 * library writes only that version's fields; on_http_response() lends one
 * of the newest version. @since 1.0 */
#define CHAT_HTTP_RESPONSE_V1 1
struct chat_http_response {
  uint32_t version;         /* CHAT_HTTP_RESPONSE_V1 */
  int status;               /* 200, 201, 400, 401, 403, 404, 405, 409, 413,
                               429, 500, 501, 503 */
  const char *content_type; /* "application/json" or the media's type */
  const void *body;         /* chat_server_http(): valid until the next
                               chat_server_http() call */
  size_t body_len;
  uint32_t retry_after_s;   /* > 0: send Retry-After */
};

/** Answer one REST request under /api/v1/. Errors are answered in *resp
 * as {"error":{"code","message"}} with a fitting status; the return value
 * is CHAT_OK whenever *resp holds an answer. When the answer waits on a
 * module, the call returns CHAT_PENDING and *resp is untouched; the answer
 * then comes through callbacks.on_http_response with req->tag (or never,
 * after chat_server_http_cancel()).
 * @retval CHAT_OK *resp holds the answer
 * @retval CHAT_PENDING the answer comes later
 * @retval CHAT_ERR_INVAL NULL arguments, no method or path, or a request,
 *         identity or response version 0 or unknown
 * @since 0.1 */
CHAT_API chat_err chat_server_http(chat_server *srv,
                                   const chat_http_request *req,
                                   chat_http_response *resp,
                                   chat_time_ms now);

/** The connection of a pending request went away: its on_http_response()
 * will not fire. What the request changes in the store may still happen
 * (a module call cannot be taken back). Cancels every pending request
 * with that tag.
 * @retval CHAT_OK @retval CHAT_ERR_NOT_FOUND no pending request has @p tag
 * @retval CHAT_ERR_INVAL NULL srv
 * @since 1.0 */
CHAT_API chat_err chat_server_http_cancel(chat_server *srv, void *tag);

/* ------------------------------------------------------------------------
 * Counters for /metrics. The caller sets version; the library writes only
 * that version's fields. @since 1.0 */
#define CHAT_SERVER_STATS_V1 1
typedef struct chat_server_stats {
  uint32_t version; /* CHAT_SERVER_STATS_V1 */
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
  uint64_t rest_limited_total;     /* REST requests answered 429 */
  uint64_t sessions_expired_total; /* closed with 4001 token_expired */
  uint64_t ops_in_flight;          /* module calls pending now */
  uint64_t ops_pending_total;      /* module calls that answered PENDING */
  /* PROTOCOL.md section 8 (appended in 1.0) */
  uint64_t edits_committed_total;
  uint64_t deletes_committed_total;
  uint64_t edits_refused_total;    /* edit/delete answered forbidden or
                                      not_found */
  uint64_t system_messages_total;  /* member and admin changes recorded */
  uint64_t goaway_total;           /* goaway frames queued */
  uint64_t push_clears_total;      /* push.clear calls that succeeded */
  uint64_t shadow_withheld_total;  /* messages of shadow-banned senders
                                      delivered to their own devices only */
  uint64_t shadow_banned_users;    /* size of the ban list now */
  uint64_t bot_reads_dropped_total;
  uint64_t direct_capped_total;    /* POST conversations answered 429 by
                                      the new-direct cap */
} chat_server_stats;

/** Copy the counters into @p out, up to out->version's fields.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL NULL, or out->version 0 or unknown
 * @since 1.0 */
CHAT_API chat_err chat_server_get_stats(const chat_server *srv,
                                        chat_server_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_SERVER_H */

/* The sans-I/O chat client: one logged-in device (PROTOCOL.md sections 2-4).
 *
 * A chat_client holds no socket, thread or clock. The host (a runner such as
 * include/chat/client_lws.h, or an app's own event loop) moves bytes and
 * time in and out:
 *
 *   start:    chat_client_start(); then follow chat_client_wants()
 *   connect:  CHAT_CLIENT_WANT_CONNECT -> chat_client_on_connecting(), open
 *             the WebSocket with the token of chat_client_token(), then
 *             chat_client_on_open() or, on failure, chat_client_on_close(),
 *             or chat_client_on_refused() when the server answered the
 *             upgrade with an HTTP status (401: the token was refused)
 *   inbound:  chat_client_on_frame() for each whole text message
 *   outbound: CHAT_CLIENT_WANT_WRITE -> while chat_client_next_frame() gives
 *             CHAT_OK, write that frame
 *   close:    CHAT_CLIENT_WANT_CLOSE -> write what next_frame() still
 *             gives (a last typing stop), close the socket, then
 *             chat_client_on_close(); also call it whenever the socket dies
 *   REST:     CHAT_CLIENT_WANT_REST -> while chat_client_next_request()
 *             gives CHAT_OK, perform that HTTP request (the same bearer
 *             token) and later hand the answer to chat_client_on_response()
 *   time:     arm one timer for chat_client_next_deadline(); when it fires,
 *             chat_client_on_timer()
 *
 * Reconnection is the client's job, not the host's: after a close it waits
 * (exponential backoff with full jitter) and then wants CONNECT again. After
 * `hello` it sends `resume` built from its local store, flushes the outbox of
 * unacknowledged sends in order (same client_msg_ids), re-sends the presence
 * subscription and any receipt marks not yet sent; conversations whose gap
 * the server cannot close (`resume_failed`, or `history` with
 * `complete:false`) are paged from REST.
 *
 * The token is the client's (chat_client_set_token()). When the server
 * finds it no good (401 on the upgrade or a REST request, close 4001 on an
 * open session) the client stops using it, goes CHAT_CLIENT_UNAUTHORIZED
 * and asks the app for a new one through on_auth_required.
 *
 * Threads: a chat_client is used from one thread at a time. Callbacks fire
 * only inside chat_client_* calls, on the calling thread, and may call
 * chat_client_* functions on the same client, except chat_client_free()
 * and the feeding calls (chat_client_on_frame(), chat_client_on_response()),
 * which must not be re-entered from a callback.
 *
 * Ownership: settings (with the env and backoff they point at), callbacks,
 * store ops, allocator, the token and input strings are copied. The store
 * is owned by the client from a successful chat_client_new() on.
 * Pointers given to callbacks are borrowed until the callback returns.
 * Views returned by chat_client_next_frame() and chat_client_next_request()
 * stay valid until the next call on the same client.
 *
 * Time: `now` is the host's monotonic clock in milliseconds. */
#ifndef CHAT_CLIENT_H
#define CHAT_CLIENT_H

#include "backoff.h"
#include "client_store.h"
#include "common.h"
#include "frame.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chat_client chat_client;

/** Connection state, reported by on_connection. Values are stable. */
typedef enum chat_client_state {
  CHAT_CLIENT_IDLE = 0,       /* not started, or stopped */
  CHAT_CLIENT_CONNECTING = 1, /* wants a socket, or one is being opened */
  CHAT_CLIENT_HANDSHAKE = 2,  /* socket open, waiting for `hello` */
  CHAT_CLIENT_RESUMING = 3,   /* `resume` sent, waiting for `resumed` */
  CHAT_CLIENT_READY = 4,      /* live */
  CHAT_CLIENT_BACKOFF = 5,    /* disconnected, waiting to reconnect */
  /* The token is no good: refused with HTTP 401 (on the upgrade or a REST
   * request) or expired on an open session (close 4001). Nothing
   * reconnects and no REST request goes out until
   * chat_client_set_token() gives a new token (or chat_client_start()
   * retries the old one); on_auth_required says so. @since 0.1 */
  CHAT_CLIENT_UNAUTHORIZED = 6
} chat_client_state;

/** "ready", "backoff", ...; NULL for an unknown value. @since 0.1 */
CHAT_API const char *chat_client_state_name(chat_client_state s);

/** Why the client needs a new token (on_auth_required). */
typedef enum chat_auth_reason {
  /* HTTP 401: the server refused the token, on the WebSocket upgrade or a
   * REST request. */
  CHAT_AUTH_REFUSED = 1,
  /* The server closed the session with 4001 (token_expired): the token's
   * expiry passed while it was open (PROTOCOL.md section 8). */
  CHAT_AUTH_EXPIRED = 2
} chat_auth_reason;

/** Where a message handed to on_message came from. */
typedef enum chat_message_origin {
  CHAT_ORIGIN_LIVE = 0,   /* a `message` frame */
  CHAT_ORIGIN_RESUME = 1, /* a `history` frame answering `resume` */
  CHAT_ORIGIN_REST = 2,   /* a REST page closing a resume gap */
  CHAT_ORIGIN_OLDER = 3   /* a REST page asked for by chat_client_load_older */
} chat_message_origin;

/** What went wrong, for on_error. Exactly one cause is described:
 * - a server `error` frame: wire is set (client_msg_id is its ref when it
 *   refused one of our sends, and that send left the outbox for good unless
 *   retrying is set);
 * - a bad inbound frame: err is the decode error (CHAT_ERR_JSON, ...);
 * - a store failure: err is CHAT_ERR_MODULE (nothing was lost: the operation
 *   will be retried or was refused to the caller);
 * - a REST failure: err is CHAT_ERR_MODULE and http_status is set;
 * - the token is no good (also told through on_auth_required, which is
 *   the one to act on): err is CHAT_ERR_AUTH, retrying false, http_status
 *   401 for a refusal (upgrade or REST) and 0 for a session closed with
 *   4001; the client is CHAT_CLIENT_UNAUTHORIZED.
 * When the server refused one of our edits or deletes (wire code
 * `forbidden`: not ours, or past the edit window; `not_found`: no such
 * message), client_msg_id is the one chat_client_edit() or
 * chat_client_delete() gave out, op says which and target_id names the
 * message; the entry has left the outbox. */
typedef struct chat_client_error {
  chat_err err;                 /* CHAT_OK when wire is set */
  const chat_error_frame *wire; /* NULL unless the server sent `error` */
  const char *client_msg_id;    /* the send this concerns, or NULL */
  const char *conversation_id;  /* the conversation this concerns, or NULL */
  const char *message;          /* human-readable detail; never NULL */
  int http_status;              /* REST failures: the status (0: no answer) */
  bool retrying;                /* the client will try again by itself */
  /* Appended in 1.0 (section 8). With client_msg_id set: what the outbox
   * entry was (CHAT_FRAME_SEND, CHAT_FRAME_EDIT or CHAT_FRAME_DELETE) and,
   * for an edit or a delete, its target (0 for a send). CHAT_FRAME_NONE
   * and 0 otherwise. @since 1.0 */
  chat_frame_type op;
  uint64_t target_id;
} chat_client_error;

/** Progress of catching up after a (re)connect. */
typedef struct chat_resume_progress {
  const char *conversation_id; /* the conversation just advanced, or NULL */
  uint32_t gaps_open;    /* conversations still being paged from REST */
  uint32_t messages;     /* new messages stored since the resume began */
  bool resumed;          /* the server's `resumed` frame has arrived */
  bool complete;         /* resumed and no gap left: fully caught up */
} chat_resume_progress;

/** Events. Every member may be NULL. Each callback takes the user_data
 * given to chat_client_new() first and the client second (docs/abi.md:
 * the context always comes first). They fire only inside chat_client_*
 * calls, on the calling thread; pointers they get are borrowed until they
 * return. New members are only appended, each under a new version; the
 * client reads a struct only up to the members of its version. */
#define CHAT_CLIENT_CALLBACKS_V1 1
/* V2 appends on_message_changed (PROTOCOL.md section 8). @since 1.0 */
#define CHAT_CLIENT_CALLBACKS_V2 2
typedef struct chat_client_callbacks {
  uint32_t version; /* CHAT_CLIENT_CALLBACKS_V1 or _V2 */
  /* The connection state changed. */
  void (*on_connection)(void *user_data, chat_client *c,
                        chat_client_state state);
  /* `hello` arrived (who we are, the server's limits). */
  void (*on_hello)(void *user_data, chat_client *c, const chat_hello *h);
  /* A message new to the local store (duplicates are never reported). Own
   * messages from other devices arrive here too. A message whose edits or
   * delete arrived before it is reported as it is now (edited or deleted).
   * Edit and delete entries (body_type CHAT_BODY_EDIT, CHAT_BODY_DELETE,
   * with target_id; PROTOCOL.md section 8) arrive here too, as the log
   * entries they are: they are not messages to show, and their effect on
   * the target comes through on_message_changed right after. */
  void (*on_message)(void *user_data, chat_client *c, const chat_message *m,
                     chat_message_origin origin);
  /* One of our sends is durably stored; it has left the outbox. Fired once
   * per client_msg_id, also when the server answers a retry with
   * duplicate:true. */
  void (*on_ack)(void *user_data, chat_client *c, const chat_ack *a);
  /* A member's delivered/read mark for our messages (counts for groups). */
  void (*on_receipt)(void *user_data, chat_client *c, const chat_receipt *r);
  /* A peer started or stopped typing. The client reports a stop itself 5 s
   * (typing_expire_ms) after the last is_typing:true. */
  void (*on_typing)(void *user_data, chat_client *c,
                    const char *conversation_id, const char *user_id,
                    bool is_typing);
  /* A subscribed user's presence. */
  void (*on_presence)(void *user_data, chat_client *c,
                      const chat_presence *p);
  /* Read sync: another device of ours read up to last_read_message_id. */
  void (*on_state_change)(void *user_data, chat_client *c,
                          const chat_state_change *s);
  /* A conversation became known or changed (frame, REST list, create). */
  void (*on_conversation)(void *user_data, chat_client *c,
                          const chat_conversation *conv);
  /* Something failed; see chat_client_error. */
  void (*on_error)(void *user_data, chat_client *c,
                   const chat_client_error *e);
  /* Catch-up progress; complete once every gap is closed. */
  void (*on_resume_progress)(void *user_data, chat_client *c,
                             const chat_resume_progress *p);
  /* chat_client_wants() may have changed (new output, a request, a close),
   * so a runner knows to look. Runs inside the call that caused it. */
  void (*on_wants)(void *user_data, chat_client *c);
  /* A request the app started (chat_client_fetch_conversations,
   * chat_client_create_conversation, chat_client_load_older, the admin
   * and member calls, ...) finished: CHAT_OK, or the failure (also
   * reported through on_error): CHAT_ERR_DENIED for 403 `forbidden`,
   * CHAT_ERR_NOT_FOUND for 404 and other 403s, CHAT_ERR_CONFLICT for 409,
   * CHAT_ERR_RATE_LIMITED for a create refused with 429 (too many new
   * direct conversations today: try again later), CHAT_ERR_MODULE for
   * anything else. */
  void (*on_request_done)(void *user_data, chat_client *c,
                          uint32_t request_id, chat_err result);
  /* The token is no good (reason) and the client is now
   * CHAT_CLIENT_UNAUTHORIZED: get a fresh one from the app's login and
   * hand it over with chat_client_set_token() (from here or later, on the
   * client's thread); the client then reconnects and resumes, and REST
   * requests held meanwhile go out, outbox and marks intact. Fired once
   * each time the client enters that state. */
  void (*on_auth_required)(void *user_data, chat_client *c,
                           chat_auth_reason reason);

  /* ---- CHAT_CLIENT_CALLBACKS_V2 ---- */

  /* A stored message changed because an edit or a delete entry was
   * applied to it (PROTOCOL.md section 8): m is its state now, the new
   * body with has_edited_ts and edited_ts, or deleted with an empty body.
   * Redraw it. The entry was reported through on_message just before it
   * (our own edits and deletes: through on_ack). Fired only when the
   * stored message really changed (never for a repeat, nor for an edit
   * that lost to a later one), and never for a message the app has not
   * been told of: one that arrives after its edits comes to on_message
   * as it is now. Needs a CHAT_CLIENT_STORE_OPS_V2 store. @since 1.0 */
  void (*on_message_changed)(void *user_data, chat_client *c,
                             const chat_message *m);
} chat_client_callbacks;

/** Settings; zero in any numeric field means its default. */
#define CHAT_CLIENT_SETTINGS_V1 1
typedef struct chat_client_settings {
  uint32_t version; /* CHAT_CLIENT_SETTINGS_V1 */
  /* Required, copied (CHAT_ENV_V1): random for reconnect jitter and
   * client_msg_ids; log optional; wall_ms and wake are not used. */
  const chat_env *env;
  /* Reconnect and REST retry schedule, copied (CHAT_BACKOFF_V1). NULL:
   * base 1000 ms, cap 60000 ms, floor 100 ms. In a given one, a zero
   * base_ms or cap_ms takes its default; floor_ms is taken as given. */
  const chat_backoff *backoff;
  uint32_t stable_after_ms;    /* up this long resets the backoff; 30000 */
  uint32_t receipt_interval_ms; /* min gap between flushes of one
                                   conversation's marks; 1000 */
  uint32_t typing_refresh_ms;  /* is_typing:true at most this often; 3000 */
  uint32_t typing_idle_ms;     /* is_typing:false after this quiet; 5000 */
  uint32_t typing_expire_ms;   /* a peer's typing expires after; 5000 */
  uint32_t typing_max_members; /* no typing in larger groups; 50 */
  uint32_t hello_timeout_ms;   /* no `hello` this long: reconnect; 10000 */
  uint32_t rest_page_limit;    /* messages per REST page; 200 */
  uint32_t send_retry_ms;      /* retry after internal/unknown errors; 2000 */
  uint32_t max_frame_bytes;    /* inbound limit; 1048576 */
  /* false (default): the client marks `delivered` itself up to the newest
   * message it has stored contiguously; true: only the app's
   * chat_client_mark_delivered() calls do. */
  bool manual_delivered;
} chat_client_settings;

/** Create a client over a store (include/chat/client_store.h).
 * @p store is copied; from CHAT_OK on the client owns the store and
 * chat_client_free() destroys it; on failure the caller still owns it.
 * settings (with the env and backoff it points at), callbacks and alloc
 * are copied (callbacks and alloc may be NULL). The outbox and receipt
 * marks are loaded from the store, so a client recreated over the same
 * store continues where the last one stopped. The client starts IDLE.
 * @p err (may be NULL) receives one line naming the field and the rule on
 * a refusal ("settings.env: required"); it is untouched on success.
 * @retval CHAT_OK *out set
 * @retval CHAT_ERR_INVAL out, settings, settings->env or store NULL; a
 *         struct version 0 or newer than this library knows (settings,
 *         env, backoff, callbacks, store); env->random NULL; a store
 *         method NULL
 * @retval CHAT_ERR_MODULE the store could not be read
 * @retval CHAT_ERR_NOMEM
 * @since 1.0 */
CHAT_API chat_err chat_client_new(chat_client **out,
                                  const chat_client_settings *settings,
                                  const chat_client_store_ops *store,
                                  const chat_client_callbacks *callbacks,
                                  void *user_data,
                                  const chat_allocator *alloc,
                                  chat_errbuf *err);

/** Free the client and destroy its store. NULL is a no-op. Nothing is
 * lost: the outbox and unsent marks are in the store already. No callback
 * fires. @since 0.1 */
CHAT_API void chat_client_free(chat_client *c);

/** The user_data given to chat_client_new(). @since 0.1 */
CHAT_API void *chat_client_user_data(const chat_client *c);

/** Why the last call on @p c that failed with CHAT_ERR_INVAL, _STATE,
 * _MODULE, _TOO_LARGE, _TOO_MANY, _NOT_FOUND or _NOMEM failed, in one line
 * ("conversation_id: not 1..64 bytes of [A-Za-z0-9_.:@-]"); "" when none
 * has. Successful calls leave it alone. The string belongs to @p c and
 * changes with the next failing call; "" for a NULL @p c. @since 1.0 */
CHAT_API const char *chat_client_errmsg(const chat_client *c);

/** Longest token chat_client_set_token() takes, in bytes. */
#define CHAT_CLIENT_TOKEN_MAX 8192

/** Give the client its bearer token (copied), the one transports send on
 * the WebSocket upgrade and every REST request (PROTOCOL.md section 1).
 * Set it before chat_client_start(); set a new one whenever the app has
 * one (the connection open now is left alone; the next connection and
 * request use it). While CHAT_CLIENT_UNAUTHORIZED a new token ends that
 * state: the client reconnects and resumes at once (or goes IDLE when
 * stopped) and the held REST requests go out again.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL c or token NULL; len 0 or over
 *         CHAT_CLIENT_TOKEN_MAX; a byte outside visible ASCII (0x21-0x7e:
 *         it goes into an HTTP header); or, while UNAUTHORIZED, the very
 *         token the server refused (call chat_client_start() to retry it)
 * @retval CHAT_ERR_NOMEM the old token stays
 * @since 1.0 */
CHAT_API chat_err chat_client_set_token(chat_client *c, const char *token,
                                        size_t len, chat_time_ms now);

/** The token for a transport to send: *token (NUL-terminated, valid until
 * the next chat_client_set_token() or chat_client_free()) and *len. Read
 * it when opening each connection (after chat_client_on_connecting()) and
 * for each request (after chat_client_next_request()), not once: the app
 * may replace it at any time.
 * @retval CHAT_OK
 * @retval CHAT_ERR_NOT_FOUND no token was set (*token NULL, *len 0)
 * @retval CHAT_ERR_INVAL a NULL argument
 * @since 1.0 */
CHAT_API chat_err chat_client_token(const chat_client *c, const char **token,
                                    size_t *len);

/* ------------------------------------------------------------------------
 * Transport side */

#define CHAT_CLIENT_WANT_WRITE 1u   /* frames are waiting: next_frame() */
#define CHAT_CLIENT_WANT_CLOSE 2u   /* write what is left, close, on_close() */
#define CHAT_CLIENT_WANT_CONNECT 4u /* open a socket: on_connecting() */
#define CHAT_CLIENT_WANT_REST 8u    /* requests waiting: next_request() */

/** Begin connecting (IDLE -> CONNECTING); a no-op when already started.
 * From UNAUTHORIZED it retries the current token (CONNECTING, REST
 * requests released): for a token refused by mistake; a new token goes
 * through chat_client_set_token().
 * @retval CHAT_OK @retval CHAT_ERR_INVAL c is NULL @since 0.1 */
CHAT_API chat_err chat_client_start(chat_client *c, chat_time_ms now);

/** Stop: no more reconnects; wants CLOSE when a socket is open. Queued
 * sends stay in the outbox.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @since 0.1 */
CHAT_API chat_err chat_client_stop(chat_client *c, chat_time_ms now);

/** The CHAT_CLIENT_WANT_* bits. @since 0.1 */
CHAT_API uint32_t chat_client_wants(const chat_client *c);

/** The host took WANT_CONNECT and is opening a socket; the client waits
 * hello_timeout_ms for on_open and `hello`.
 * @retval CHAT_OK @retval CHAT_ERR_STATE not wanting to connect
 * @retval CHAT_ERR_INVAL @since 0.1 */
CHAT_API chat_err chat_client_on_connecting(chat_client *c, chat_time_ms now);

/** The WebSocket is open; the client waits for `hello`.
 * @retval CHAT_OK @retval CHAT_ERR_STATE not connecting @retval
 * CHAT_ERR_INVAL @since 0.1 */
CHAT_API chat_err chat_client_on_open(chat_client *c, chat_time_ms now);

/** One whole text message from the server. A frame that does not decode
 * (or comes at the wrong time) is reported through on_error and otherwise
 * ignored; the return value is still CHAT_OK.
 * @retval CHAT_OK
 * @retval CHAT_ERR_STATE no connection is open (frame ignored)
 * @retval CHAT_ERR_INVAL c NULL, or json NULL with len > 0
 * @retval CHAT_ERR_NOMEM @since 0.1 */
CHAT_API chat_err chat_client_on_frame(chat_client *c, const char *json,
                                       size_t len, chat_time_ms now);

/** The socket closed or the connection attempt failed (@p ws_code is the
 * close code, 0 when unknown). Unwritten frames are dropped (their content
 * is re-sent after the next `hello`); the client moves to BACKOFF, or IDLE
 * when stopped. Code 4001 (token_expired) means the token is no good: the
 * client moves to UNAUTHORIZED and fires on_auth_required
 * (CHAT_AUTH_EXPIRED) instead of reconnecting with it. Harmless when no
 * connection exists.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @since 0.1 */
CHAT_API chat_err chat_client_on_close(chat_client *c, uint16_t ws_code,
                                       chat_time_ms now);

/** The connection attempt was answered with HTTP @p http_status instead of
 * the WebSocket upgrade (101); use it instead of chat_client_on_close() for
 * that attempt. 401 means the token was refused: the client moves to
 * CHAT_CLIENT_UNAUTHORIZED and fires on_auth_required (CHAT_AUTH_REFUSED;
 * on_error too, err CHAT_ERR_AUTH, http_status 401), and waits there,
 * without reconnecting, for chat_client_set_token() (or
 * chat_client_start(), or chat_client_stop()). A 401 for an attempt made
 * with a token that has been replaced since only reconnects, with the new
 * one. Any other status is a failed attempt like
 * chat_client_on_close(c, 0, now): BACKOFF, or IDLE when stopped.
 * @retval CHAT_OK
 * @retval CHAT_ERR_STATE no connection attempt is in progress (nothing
 *         changed)
 * @retval CHAT_ERR_INVAL c NULL, or http_status outside 100..599
 * @since 0.1 */
CHAT_API chat_err chat_client_on_refused(chat_client *c, int http_status,
                                         chat_time_ms now);

/** The next frame to write.
 * @retval CHAT_OK *json and *len set; valid until the next call on c
 * @retval CHAT_ERR_AGAIN nothing to write
 * @retval CHAT_ERR_INVAL @since 0.1 */
CHAT_API chat_err chat_client_next_frame(chat_client *c, const char **json,
                                         size_t *len);

/** When chat_client_on_timer() is next due; CHAT_TIME_NEVER when nothing
 * waits. @since 0.1 */
CHAT_API chat_time_ms chat_client_next_deadline(const chat_client *c);

/** Run everything due by @p now: reconnect, receipt flush, typing stop and
 * expiry, heartbeat, send and REST retries.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_NOMEM @since 0.1 */
CHAT_API chat_err chat_client_on_timer(chat_client *c, chat_time_ms now);

/** The network is back (an OS hint): when waiting in BACKOFF, want CONNECT
 * at once instead of at the backoff deadline. Otherwise a no-op.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @since 0.1 */
CHAT_API chat_err chat_client_hint_network_up(chat_client *c,
                                              chat_time_ms now);

/** The connection state. @since 0.1 */
CHAT_API chat_client_state chat_client_get_state(const chat_client *c);

/** The current reconnect attempt number (0 after a stable connection).
 * @since 0.1 */
CHAT_API uint32_t chat_client_backoff_attempt(const chat_client *c);

/* ------------------------------------------------------------------------
 * REST, sans-I/O: the client emits requests as data; the host performs
 * them against the same server (https:// for wss://) with the same bearer
 * token, and hands back the answer. */
#define CHAT_CLIENT_REQUEST_V1 1
typedef struct chat_client_request {
  uint32_t version;   /* set by the caller: CHAT_CLIENT_REQUEST_V1 */
  uint32_t id;        /* pass back to chat_client_on_response() */
  const char *method; /* "GET", "POST" or "DELETE" */
  const char *path;   /* "/api/v1/conversations/c1/messages?after=5&limit=200" */
  const char *body;   /* JSON for POST, NULL for GET and DELETE */
  size_t body_len;
} chat_client_request;

/** The next request to perform; it is now in flight until its answer.
 * The caller sets out->version; the library fills only the fields of that
 * version.
 * @retval CHAT_OK *out set; its strings are valid until the next call on c
 * @retval CHAT_ERR_AGAIN none waiting
 * @retval CHAT_ERR_INVAL c or out NULL, or out->version 0 or unknown
 * @since 1.0 */
CHAT_API chat_err chat_client_next_request(chat_client *c,
                                           chat_client_request *out);

/** The answer to request @p id: the HTTP @p status (0 when no answer came:
 * connection refused, timeout) and the body, read during the call only.
 * Transient failures (0, 429, 5xx but 501) are retried after a backoff
 * delay. 401 is no failure of the request: it is held, and the client
 * goes UNAUTHORIZED as for a refused upgrade (on_auth_required
 * CHAT_AUTH_REFUSED), closing its socket; the request goes out again
 * after chat_client_set_token().
 * @retval CHAT_OK (also for failures, which go to on_error)
 * @retval CHAT_ERR_NOT_FOUND no such request in flight
 * @retval CHAT_ERR_INVAL @retval CHAT_ERR_NOMEM @since 0.1 */
CHAT_API chat_err chat_client_on_response(chat_client *c, uint32_t id,
                                          int status, const char *body,
                                          size_t len, chat_time_ms now);

/* ------------------------------------------------------------------------
 * App side */

/** Longest client_msg_id plus its NUL. */
#define CHAT_CLIENT_MSG_ID_BUF 65

/** Send a text message. It is written to the outbox in the store before this
 * returns, so it survives a crash, and it is sent now when connected or
 * after the next `hello` otherwise, until acked. A pending typing
 * indicator in that conversation is stopped.
 * @p client_msg_id_out (may be NULL) receives the generated id
 * (CHAT_CLIENT_MSG_ID_BUF bytes, NUL-terminated).
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL argument, bad conversation id, invalid UTF-8
 * @retval CHAT_ERR_TOO_LARGE body over the server's max_body_bytes
 * @retval CHAT_ERR_MODULE the store failed: the message was NOT accepted
 * @retval CHAT_ERR_NOMEM @since 0.1 */
CHAT_API chat_err chat_client_send(chat_client *c, const char *conversation_id,
                                   const char *body, size_t body_len,
                                   char *client_msg_id_out, chat_time_ms now);

/** Edit one of the user's own messages (PROTOCOL.md section 8): @p body
 * replaces the body of message @p target_id of the conversation. Like a
 * send it goes through the outbox (written to the store before this
 * returns, sent now or after the next `hello`, the same client_msg_id on
 * every retry, until acked): on_ack once it is stored, and then
 * on_message_changed for the target when the local store holds it. The
 * server decides whether it may be done: only the sender may edit, within
 * its edit window (15 minutes by default); a refusal arrives through
 * on_error (wire `forbidden`, or `not_found` for an unknown message, a
 * system message or an edit or delete entry) with this client_msg_id, op
 * CHAT_FRAME_EDIT and target_id, and the edit leaves the outbox.
 * @p client_msg_id_out (may be NULL) receives the generated id
 * (CHAT_CLIENT_MSG_ID_BUF bytes).
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL argument, bad conversation id, target_id 0
 *         or over INT64_MAX, invalid UTF-8
 * @retval CHAT_ERR_TOO_LARGE body over the server's max_body_bytes
 * @retval CHAT_ERR_STATE the store is a CHAT_CLIENT_STORE_OPS_V1 one,
 *         which cannot keep an edit in its outbox
 * @retval CHAT_ERR_MODULE the store failed: the edit was NOT accepted
 * @retval CHAT_ERR_NOMEM @since 1.0 */
CHAT_API chat_err chat_client_edit(chat_client *c,
                                   const char *conversation_id,
                                   uint64_t target_id, const char *body,
                                   size_t body_len, char *client_msg_id_out,
                                   chat_time_ms now);

/** Delete message @p target_id of the conversation (PROTOCOL.md section
 * 8): the user's own message, or, for an admin of a group, anyone's.
 * Through the outbox like chat_client_edit(); once acked the local copy's
 * body (and the bodies of its edits) are erased from the store, not
 * hidden, and on_message_changed reports it deleted. A refusal
 * (`forbidden`, `not_found`) arrives through on_error with op
 * CHAT_FRAME_DELETE.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL argument, bad conversation id, target_id 0
 *         or over INT64_MAX
 * @retval CHAT_ERR_STATE the store is a CHAT_CLIENT_STORE_OPS_V1 one
 * @retval CHAT_ERR_MODULE the store failed: the delete was NOT accepted
 * @retval CHAT_ERR_NOMEM @since 1.0 */
CHAT_API chat_err chat_client_delete(chat_client *c,
                                     const char *conversation_id,
                                     uint64_t target_id,
                                     char *client_msg_id_out,
                                     chat_time_ms now);

/** Number of sends not yet acked (the outbox). @since 0.1 */
CHAT_API size_t chat_client_outbox_len(const chat_client *c);

/** This device has every message of the conversation up to @p up_to. Only
 * a higher mark changes anything; it is persisted at once and sent at most
 * once per receipt_interval_ms per conversation (also after reconnects and
 * restarts until sent).
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_MODULE store
 * failure (mark not recorded) @retval CHAT_ERR_NOMEM @since 0.1 */
CHAT_API chat_err chat_client_mark_delivered(chat_client *c,
                                             const char *conversation_id,
                                             uint64_t up_to,
                                             chat_time_ms now);

/** The user read up to @p up_to; as chat_client_mark_delivered(). @since 0.1 */
CHAT_API chat_err chat_client_mark_read(chat_client *c,
                                        const char *conversation_id,
                                        uint64_t up_to, chat_time_ms now);

/** Call on every keystroke in a conversation's input box. Sends
 * is_typing:true at most once per typing_refresh_ms and is_typing:false
 * after typing_idle_ms without a keystroke (or on send). Nothing is sent in
 * groups over typing_max_members, nor while disconnected.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_NOMEM @since 0.1 */
CHAT_API chat_err chat_client_typing(chat_client *c,
                                     const char *conversation_id,
                                     chat_time_ms now);

/** Replace the set of users whose presence is wanted (those on screen; at
 * most 100). Sent now when connected and again after every reconnect;
 * n == 0 clears it.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL bad id @retval CHAT_ERR_TOO_MANY
 * @retval CHAT_ERR_NOMEM @since 0.1 */
CHAT_API chat_err chat_client_watch_presence(chat_client *c,
                                             const char *const *user_ids,
                                             size_t n, chat_time_ms now);

/** Fetch the conversation list over REST; each arrives through
 * on_conversation and is stored. *request_id (may be NULL) names it in
 * on_request_done.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_NOMEM @since 0.1 */
CHAT_API chat_err chat_client_fetch_conversations(chat_client *c,
                                                  uint32_t *request_id,
                                                  chat_time_ms now);

/** Create a conversation over REST (group when @p name is not NULL, direct
 * with the one member otherwise). The answer arrives through
 * on_conversation. A 429 here is the daily cap on new direct
 * conversations with users who never wrote back (PROTOCOL.md section 8):
 * it is not retried; on_request_done says CHAT_ERR_RATE_LIMITED.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL bad ids, a direct chat without
 * exactly one member @retval CHAT_ERR_NOMEM @since 0.1 */
CHAT_API chat_err chat_client_create_conversation(chat_client *c,
                                                  const char *name,
                                                  const char *const *members,
                                                  size_t n_members,
                                                  uint32_t *request_id,
                                                  chat_time_ms now);

/** Page older history over REST (@p before 0: the newest page). New
 * messages arrive through on_message with CHAT_ORIGIN_OLDER.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_NOMEM @since 0.1 */
CHAT_API chat_err chat_client_load_older(chat_client *c,
                                         const char *conversation_id,
                                         uint64_t before, uint32_t limit,
                                         uint32_t *request_id,
                                         chat_time_ms now);

/** Fetch one conversation over REST (GET /api/v1/conversations/:id): it
 * is stored and arrives through on_conversation, then on_request_done.
 * The client does this by itself when a resume or REST page brings a
 * system message (a member or admin change while the device was away).
 * @retval CHAT_OK @retval CHAT_ERR_INVAL bad id @retval CHAT_ERR_NOMEM
 * @since 1.0 */
CHAT_API chat_err chat_client_fetch_conversation(chat_client *c,
                                                 const char *conversation_id,
                                                 uint32_t *request_id,
                                                 chat_time_ms now);

/** Make @p user_id, a member of the group, one of its admins (POST
 * /api/v1/conversations/:id/admins; PROTOCOL.md section 8). Only admins
 * may. The conversation as it is now arrives through on_conversation
 * (and is stored), then on_request_done: CHAT_OK, or CHAT_ERR_DENIED
 * (403 `forbidden`: the caller is not an admin), CHAT_ERR_NOT_FOUND (404:
 * the user is not a member; 403 `not_member`: nor is the caller),
 * CHAT_ERR_CONFLICT (409: a direct conversation); on_error has the
 * server's code and message. Every member's devices
 * see the change as a `system` message and a `conversation` frame.
 * *request_id may be NULL.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL bad ids @retval CHAT_ERR_NOMEM
 * @since 1.0 */
CHAT_API chat_err chat_client_add_admin(chat_client *c,
                                        const char *conversation_id,
                                        const char *user_id,
                                        uint32_t *request_id,
                                        chat_time_ms now);

/** Take the admin right away from @p user_id (DELETE
 * /api/v1/conversations/:id/admins/:user_id): an admin may do it to
 * anyone but the creator, anyone to themself. A group keeps at least one
 * admin (409 when none would be left). Results as
 * chat_client_add_admin().
 * @retval CHAT_OK @retval CHAT_ERR_INVAL bad ids @retval CHAT_ERR_NOMEM
 * @since 1.0 */
CHAT_API chat_err chat_client_remove_admin(chat_client *c,
                                           const char *conversation_id,
                                           const char *user_id,
                                           uint32_t *request_id,
                                           chat_time_ms now);

/** Remove @p user_id from the group (DELETE
 * /api/v1/conversations/:id/members/:user_id): admins only, and the
 * creator can be removed by nobody but themself. On success the client
 * fetches the conversation as it is now (on_conversation), then reports
 * on_request_done. Removing oneself is chat_client_leave().
 * @retval CHAT_OK @retval CHAT_ERR_INVAL bad ids @retval CHAT_ERR_NOMEM
 * @since 1.0 */
CHAT_API chat_err chat_client_remove_member(chat_client *c,
                                            const char *conversation_id,
                                            const char *user_id,
                                            uint32_t *request_id,
                                            chat_time_ms now);

/** Leave the group (DELETE /api/v1/conversations/:id/members/<self>). On
 * success the stored conversation no longer lists the user (among members
 * or admins) and arrives so through on_conversation; the client stops
 * resuming it (its messages stay in the store); then on_request_done.
 * When the last admin leaves, the server makes the longest-standing
 * member admin. The user id is learnt from the server's `hello`.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL bad id
 * @retval CHAT_ERR_STATE no `hello` yet: the user id is not known
 * @retval CHAT_ERR_NOMEM @since 1.0 */
CHAT_API chat_err chat_client_leave(chat_client *c,
                                    const char *conversation_id,
                                    uint32_t *request_id, chat_time_ms now);

/** Tie this device's push token to it on the server (POST
 * /api/v1/devices, PROTOCOL.md section 5), so that messages arriving while
 * the app sleeps are pushed. @p platform is "apns", "fcm" or "webpush";
 * @p push_token the token the platform gave the app (copied). Call it
 * again whenever the platform hands out a new token. The result arrives
 * through on_request_done (*request_id may be NULL).
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL a NULL argument, an unknown platform, an empty
 *         push_token, or one over 4096 bytes or not UTF-8 without NUL
 * @retval CHAT_ERR_NOMEM @since 1.0 */
CHAT_API chat_err chat_client_register_device(chat_client *c,
                                              const char *platform,
                                              const char *push_token,
                                              uint32_t *request_id,
                                              chat_time_ms now);

/* ------------------------------------------------------------------------
 * Local reads (from the store; no network) */

/** A stored message as the app displays it. */
typedef struct chat_client_message {
  const chat_message *message;
  bool own;                 /* sent by this user */
  bool pending;             /* own and not yet acked (message_id is 0) */
  /* own: the best receipt seen; CHAT_RECEIPT_NONE: sent only (or pending,
   * or not own) */
  chat_receipt_state state;
} chat_client_message;

/** Call @p fn for up to @p limit stored messages of a conversation with
 * message_id < @p before (0: the newest), oldest first, then for the
 * conversation's unacked sends. Pointers are borrowed for the call.
 * Messages come in their current state (edited_ts, deleted). Edit and
 * delete entries are stored messages too (body_type CHAT_BODY_EDIT or
 * CHAT_BODY_DELETE) and count in @p limit; skip them when drawing. Unacked
 * edits and deletes of the outbox come last with that body_type and their
 * target_id (pending, message_id 0).
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_MODULE
 * @since 0.1 */
CHAT_API chat_err chat_client_list_messages(
    chat_client *c, const char *conversation_id, uint64_t before,
    uint32_t limit,
    void (*fn)(void *user_data, const chat_client_message *m),
    void *user_data);

/** Call @p fn once for the stored message (conversation, @p message_id)
 * in its current state (a reply's quote, a redraw).
 * @retval CHAT_OK
 * @retval CHAT_ERR_NOT_FOUND not stored (fn not called)
 * @retval CHAT_ERR_INVAL
 * @retval CHAT_ERR_STATE the store is a CHAT_CLIENT_STORE_OPS_V1 one
 * @retval CHAT_ERR_MODULE
 * @since 1.0 */
CHAT_API chat_err chat_client_get_message(
    chat_client *c, const char *conversation_id, uint64_t message_id,
    void (*fn)(void *user_data, const chat_client_message *m),
    void *user_data);

/** Call @p fn for each stored conversation, most recent activity first.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_MODULE
 * @since 0.1 */
CHAT_API chat_err chat_client_list_conversations(
    chat_client *c,
    void (*fn)(void *user_data, const chat_conversation *conv),
    void *user_data);

/** The stored last_seen of a conversation (0 when none).
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_MODULE
 * @since 0.1 */
CHAT_API chat_err chat_client_last_seen(chat_client *c,
                                        const char *conversation_id,
                                        uint64_t *out);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_CLIENT_H */

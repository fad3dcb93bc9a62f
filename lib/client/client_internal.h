/* Internals shared by the client core's files. One file per concern, in the
 * shape of lib/server/:
 *   client.c    object, settings, store hand-over, helpers shared by all
 *   conn.c      connection state machine: start/stop, connect, open, close,
 *               backoff, heartbeat, timers and the next deadline
 *   queue.c     the outbound frame queue and chat_client_next_frame()
 *   outbox.c    unacked sends, in order, flushed once per connection;
 *               acks and refusals of our sends
 *   send.c      chat_client_send()
 *   store.c     messages and conversations into the store; local reads
 *   receipts.c  delivered/read high-water marks, batching, read sync
 *   typing.c    our typing indicator and peers' typing with expiry
 *   presence.c  the presence subscription
 *   resume.c    the resume frame, history, resume_failed, resumed, progress
 *   dispatch.c  inbound frames: decode, hello, live messages, errors
 *   rest.c      REST as data: gap paging, conversation list, create, older
 *   rest_decode.c  REST answer bodies -> messages and conversations
 *
 * Invariants worth knowing before changing anything here:
 * - The store is written before memory, so a store failure leaves both as
 *   they were and the caller gets CHAT_ERR_MODULE.
 * - last_seen of a conversation is only raised by messages known to be
 *   contiguous with what is stored: resume history, REST gap pages, and
 *   live messages while READY with no gap open. Anything else (an ack of
 *   our own send, a live message during resume) is stored but leaves
 *   last_seen alone, so a disconnect at any point can make the client fetch
 *   a message twice (the store drops the copy) but never skip one.
 * - Callbacks run after the client's own bookkeeping for an event is done,
 *   and entries are unlinked before a callback sees them, so a callback may
 *   call back into the client.
 * - Per-conversation state lives in chat__map tables keyed by conversation
 *   id (marks, typing, peers, partial histories, REST gaps) and the outbox
 *   is indexed by client_msg_id: no lookup walks a list. */
#ifndef CHAT__CLIENT_INTERNAL_H
#define CHAT__CLIENT_INTERNAL_H

#include <chat/client.h>

#include "common/check.h"
#include "common/alloc.h"
#include "common/arena.h"
#include "common/buf.h"
#include "common/map.h"

/* Defaults of chat_client_settings, and the server's before `hello`. */
#define CHAT__CLIENT_DEF_MAX_BODY 65536
/* The server refuses a resume listing more (codec default 4096). */
#define CHAT__CLIENT_MAX_RESUME_ENTRIES 4096
#define CHAT__CLIENT_MAX_PRESENCE 100
/* An id (conversation, user, client_msg_id) plus its NUL. */
#define CHAT__CLIENT_ID_BUF 65
/* A group name, as the codec allows it. */
#define CHAT__CLIENT_MAX_NAME 256

/* ---- queue.c ---- */

/* A frame waiting to be written. Marks remember what they carry, so the
 * mark counts as sent only once the host has taken the frame. */
typedef enum out_kind { OUT_PLAIN = 0, OUT_MARK = 1 } out_kind;

typedef struct chat__out {
  struct chat__out *next;
  out_kind kind;
  struct chat__mark *mark; /* OUT_MARK */
  chat_receipt_state mark_kind; /* DELIVERED or READ */
  uint64_t up_to;
  size_t len;
  char json[]; /* len bytes plus a NUL */
} chat__out;

/* ---- outbox.c ---- */

/* One unacked send, edit or delete, mirrored from the store's outbox, in
 * sending order. */
typedef struct chat__obox {
  struct chat__obox *prev, *next;
  char *client_msg_id;
  char *conv;
  char *body;
  size_t body_len;
  chat_client_outbox_kind kind;
  uint64_t target_id;     /* EDIT, DELETE */
  uint64_t sent_gen;     /* connection it was last sent on; 0: never */
  chat_time_ms retry_at; /* not before this (rate limited); 0: any time */
} chat__obox;

/* ---- receipts.c ---- */

/* Receipt marks of one conversation; index 1 delivered, 2 read. Both
 * kinds share one flush window per conversation. Never freed before the
 * client: queued frames point at it. */
typedef struct chat__mark {
  struct chat__mark *todo_next; /* in c->mark_todo */
  bool in_todo;
  uint64_t want[3];     /* what the app said (persisted) */
  uint64_t sent[3];     /* written to a socket (persisted) */
  uint64_t queued[3];   /* in the outbound queue now */
  chat_time_ms last_at; /* when frames were last queued */
  bool ever;            /* frames were queued at least once */
  char conv[];
} chat__mark;

/* ---- typing.c ---- */

/* Our own typing state in one conversation. */
typedef struct chat__mytyping {
  bool active;
  chat_time_ms last_true; /* when is_typing:true was last queued */
  chat_time_ms last_key;  /* the last keystroke */
  char conv[];
} chat__mytyping;

/* A peer typing somewhere; keyed "conversation user" in c->peers. */
typedef struct chat__peer {
  char *conv;
  char *user;
  chat_time_ms expires;
} chat__peer;

/* ---- rest.c ---- */

typedef enum req_kind {
  REQ_GAP = 1,    /* page a resume gap after a cursor */
  REQ_CONVS = 2,  /* the conversation list */
  REQ_CREATE = 3, /* create a conversation */
  REQ_OLDER = 4,  /* older history for the app */
  REQ_DEVICE = 5, /* register the push token */
  REQ_CONV = 6,   /* one conversation object (the app's, or a refresh) */
  REQ_ADMIN = 7,  /* grant or revoke admin: answers the conversation */
  REQ_REMOVE = 8, /* remove another member, then REQ_CONV of the result */
  REQ_LEAVE = 9   /* remove ourself */
} req_kind;

typedef struct chat__req {
  struct chat__req *prev, *next; /* c->reqs, in creation order */
  uint32_t id;
  req_kind kind;
  char *conv;      /* GAP, OLDER */
  uint64_t cursor; /* GAP: last message id had */
  char *method;
  char *path;
  char *body;      /* POST */
  size_t body_len;
  bool in_flight;
  bool ready;      /* false while waiting for not_before */
  chat_time_ms not_before;
  uint32_t attempt;
  uint64_t token_gen; /* c->token_gen when it was last handed out */
  bool sync;       /* CONVS started by the client itself: open a gap for
                    * every conversation with messages past last_seen,
                    * and report to no one */
  bool internal;   /* CONV started by the client itself (a refresh after
                    * a system message): report to no one */
} chat__req;

/* ---- rest_decode.c ---- */

/* The longest conversation-list cursor the client echoes back. */
#define CHAT__REST_MAX_CURSOR 512

typedef enum chat__rest_kind {
  CHAT__REST_MESSAGES = 1,      /* {"messages":[...], "has_more": bool} */
  CHAT__REST_CONVERSATIONS = 2, /* {"conversations":[...], "next_cursor"} */
  CHAT__REST_CONVERSATION = 3,  /* one conversation object */
  CHAT__REST_ERROR = 4          /* {"error":{"code","message"}} */
} chat__rest_kind;

typedef struct chat__rest_limits {
  uint32_t max_answer_bytes;
  uint32_t max_items;      /* messages or conversations in one answer */
  uint32_t max_body_bytes; /* a message body */
  uint32_t max_members;    /* a conversation's members */
  uint32_t max_media_refs; /* a message's media_refs */
} chat__rest_limits;

/* What an answer holds; the members of its kind are set, the rest zero.
 * Everything points into the arena given to chat__rest_decode(). */
typedef struct chat__rest_answer {
  chat_message *messages;
  size_t n_messages;
  bool has_more;
  chat_conversation *conversations;
  size_t n_conversations;
  chat_str next_cursor;         /* ptr NULL: the last page */
  chat_conversation *conversation;
  chat_str error_code, error_message; /* ptr NULL: absent */
} chat__rest_answer;

/* Decode body as an answer of `kind`. On failure err (errcap bytes, may be
 * NULL) holds the field path and the rule: "messages[2].message_id: not a
 * canonical decimal message id". Returns CHAT_OK, CHAT_ERR_NOMEM, or the
 * decode error (CHAT_ERR_JSON, CHAT_ERR_MISSING_FIELD, ...). */
chat_err chat__rest_decode(chat__arena *ar, chat__rest_kind kind,
                           const char *body, size_t len,
                           const chat__rest_limits *lim,
                           chat__rest_answer *out, char *err, size_t errcap);

/* ---- the client ---- */

struct chat_client {
  chat_allocator a;
  chat_client_settings s; /* zeros replaced by defaults; s.env and
                             s.backoff point at env and backoff below */
  chat_env env;
  chat_backoff backoff;
  chat_client_callbacks cb;
  void *ud;
  chat_client_store_ops store; /* owned from chat_client_new() on */
  chat_client_store_ops *st;   /* &store */
  bool v2;                     /* the store has the section 8 methods */
  char errmsg[CHAT_ERRBUF_SIZE]; /* the last failed call's detail */
  chat_codec *dec;  /* inbound frames */
  chat_codec *enc;
  uint64_t map_seed;

  /* conn.c */
  chat_client_state state;
  bool started;
  bool connect_taken; /* the host took WANT_CONNECT */
  bool sock;          /* the host holds a socket or an attempt at one */
  bool want_close;
  bool auth_wait;     /* the token is no good: wait for a new one */
  bool fast_reconnect; /* after the socket closes: CONNECTING, no backoff */
  char *token;        /* NUL-terminated; NULL: none set */
  size_t token_len;
  uint64_t token_gen;      /* bumped by every chat_client_set_token() */
  uint64_t conn_token_gen; /* token_gen when this connection began */
  bool goaway;             /* the server announced its close (section 8) */
  uint64_t goaway_ms;      /* ... and asked for a wait up to this long */
  uint64_t conn_gen;
  uint32_t attempt;
  chat_time_ms reconnect_at;
  chat_time_ms handshake_deadline;
  chat_time_ms ready_at; /* hello time of the current connection */
  chat_time_ms last_in, last_out;
  uint32_t heartbeat_ms;
  uint32_t max_body_bytes;
  char *user_id;
  bool load_oom; /* chat_client_new: an allocation failed while loading */

  /* queue.c */
  chat__out *q_head, *q_tail;
  chat__out *taken;

  /* outbox.c */
  chat__obox *obox_head, *obox_tail;
  size_t obox_len;
  chat__map obox_ids;    /* client_msg_id -> chat__obox */
  chat__map obox_held;   /* conversation -> pass it was held in */
  uintptr_t flush_pass;

  /* receipts.c */
  chat__map marks;       /* conversation -> chat__mark */
  chat__mark *mark_todo; /* marks that may have something to send */

  /* typing.c */
  chat__map typing;      /* conversation -> chat__mytyping */
  chat__map peers;       /* "conversation user" -> chat__peer */

  /* presence.c */
  char **presence;
  size_t n_presence;

  /* resume.c */
  uint32_t resume_batch; /* hello's resume_batch_hint; 0: one resume */
  uint32_t resume_round; /* paced resume: rounds sent so far */
  bool resume_final;     /* the round in flight is the last one */
  bool resumed;
  uint32_t resume_msgs;
  chat__map partial;     /* conversations whose history is not complete */

  /* rest.c */
  chat__req *reqs, *reqs_tail;
  uint32_t n_ready;      /* ready and not in flight */
  uint32_t n_waiting;    /* waiting for not_before */
  chat__map gaps;        /* conversation -> its REQ_GAP */
  uint32_t next_req_id;
  chat__buf scratch;
};

/* ---- client.c ---- */
/* Record why a public call failed (chat_client_errmsg()) and return rc:
 *   return chat__client_fail(c, CHAT_ERR_INVAL, "conversation_id: ...");  */
chat_err chat__client_fail(chat_client *c, chat_err rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A store failure as the client reports it: NOMEM stays, anything else is
 * CHAT_ERR_MODULE. */
static inline chat_err chat__client_store_err(chat_err e) {
  return e == CHAT_OK || e == CHAT_ERR_NOMEM ? e : CHAT_ERR_MODULE;
}
/* Checks shared by the app-facing calls; on failure they record the
 * detail and return CHAT_ERR_INVAL. */
chat_err chat__client_check_id(chat_client *c, const char *what,
                               const char *id);
chat_err chat__client_dup(chat_client *c, const char *s, char **out);
void chat__client_log(chat_client *c, int level, const char *what,
                      const char *a, const char *b);
/* chat_client_wants() may have changed: tell the host. */
void chat__client_wants_changed(chat_client *c);
void chat__client_error(chat_client *c, chat_err err, const char *conv,
                        const char *message, int http_status, bool retrying);
/* Connected with the resume sent: frames may be queued. */
bool chat__client_online(const chat_client *c);
/* A conversation or user id as a map key. */
static inline size_t chat__client_klen(const char *s) {
  size_t n = 0;
  while (s[n])
    n++;
  return n;
}

/* ---- conn.c ---- */
void chat__client_set_state(chat_client *c, chat_client_state st);
void chat__client_request_close(chat_client *c, const char *why);
/* The server says the token is no good: UNAUTHORIZED (closing any socket),
 * on_error and on_auth_required, once until a new token or a start. */
void chat__client_auth_lost(chat_client *c, chat_auth_reason why,
                            int http_status, const char *conv);

/* ---- queue.c ---- */
/* Encode f and queue it; *item (may be NULL) receives the entry. */
chat_err chat__client_queue_frame(chat_client *c, const chat_frame *f,
                                  chat__out **item);
/* Drop everything not yet written (the socket is gone). */
void chat__client_queue_drop(chat_client *c);
void chat__client_queue_free(chat_client *c);

/* ---- outbox.c ---- */
chat__obox *chat__client_outbox_find(chat_client *c, const char *id);
chat_err chat__client_outbox_append(chat_client *c, const char *id,
                                    const char *conv, const char *body,
                                    size_t len, chat_client_outbox_kind kind,
                                    uint64_t target_id);
/* Validate, store durably, then queue one outbox entry for the app
 * (chat_client_send/_edit/_delete); id_out may be NULL. */
chat_err chat__client_outbox_submit(chat_client *c, const char *conv,
                                    const char *body, size_t len,
                                    chat_client_outbox_kind kind,
                                    uint64_t target_id, char *id_out,
                                    chat_time_ms now);
/* Unlink o (it stays allocated for the caller to report, then free). */
void chat__client_outbox_unlink(chat_client *c, chat__obox *o);
void chat__client_outbox_free_entry(chat_client *c, chat__obox *o);
/* Queue every entry not yet sent on this connection, in order. */
void chat__client_outbox_flush(chat_client *c, chat_time_ms now);
chat_time_ms chat__client_outbox_deadline(const chat_client *c);
chat_err chat__client_outbox_load(chat_client *c);
void chat__client_outbox_free(chat_client *c);
void chat__client_outbox_ack(chat_client *c, const chat_ack *a);
/* An `error` frame whose ref names one of our sends; false when none. */
bool chat__client_outbox_refused(chat_client *c, const chat_error_frame *ef,
                                 chat_time_ms now);

/* ---- store.c ---- */
bool chat__client_is_own(const chat_client *c, const chat_message *m);
/* An edit or delete log entry (body_type EDIT/DELETE with a target). */
bool chat__client_is_entry(const chat_message *m);
/* Apply the store's edit and delete entries to message target of conv
 * (a V2 store; nothing with V1). *changed says whether it changed; a store
 * failure is reported through on_error and returned. */
chat_err chat__client_apply(chat_client *c, const char *conv, uint64_t target,
                            bool *changed);
/* Tell the app (on_message_changed) the stored message's state now. */
void chat__client_report_changed(chat_client *c, const char *conv,
                                 uint64_t id);
/* Store m (dedup), raise last_seen when `raise`, report it when new. */
void chat__client_store_message(chat_client *c, const chat_message *m,
                                chat_message_origin origin, bool raise,
                                uint64_t *max_id);
void chat__client_put_conversation(chat_client *c,
                                   const chat_conversation *conv);

/* ---- receipts.c ---- */
void chat__client_marks_flush(chat_client *c, chat_time_ms now);
chat_time_ms chat__client_marks_deadline(const chat_client *c);
/* The host took a mark frame: from here on the mark counts as sent. */
void chat__client_marks_written(chat_client *c, const chat__out *o);
/* The queue was dropped: a mark frame in it never went out. */
void chat__client_marks_unqueued(chat_client *c, chat__mark *m,
                                 chat_receipt_state kind);
void chat__client_auto_delivered(chat_client *c, const char *conv,
                                 uint64_t up_to, chat_time_ms now);
void chat__client_marks_state_change(chat_client *c,
                                     const chat_state_change *sc);
chat_err chat__client_marks_load(chat_client *c);
void chat__client_marks_free(chat_client *c);

/* ---- typing.c ---- */
void chat__client_typing_stop(chat_client *c, const char *conv);
void chat__client_typing_stop_all(chat_client *c);
/* The connection is gone: nothing of ours is active any more. */
void chat__client_typing_reset(chat_client *c);
void chat__client_typing_timer(chat_client *c, chat_time_ms now);
chat_time_ms chat__client_typing_deadline(const chat_client *c);
void chat__client_peer_typing(chat_client *c, const chat_typing *ty,
                              chat_time_ms now);
/* Stop every peer whose typing expired by now (all of them when `all`). */
void chat__client_peers_expire(chat_client *c, chat_time_ms now, bool all);
chat_time_ms chat__client_peers_deadline(const chat_client *c);
void chat__client_typing_free(chat_client *c);

/* ---- presence.c ---- */
void chat__client_presence_send(chat_client *c);
void chat__client_presence_free(chat_client *c);

/* ---- resume.c ---- */
chat_err chat__client_resume_send(chat_client *c);
void chat__client_resume_reset(chat_client *c);
void chat__client_on_history(chat_client *c, const chat_history *h,
                             chat_time_ms now);
void chat__client_on_resume_failed(chat_client *c,
                                   const chat_resume_failed *rf,
                                   chat_time_ms now);
void chat__client_on_resumed(chat_client *c, chat_time_ms now);
void chat__client_progress(chat_client *c, const char *conv);
void chat__client_resume_free(chat_client *c);

/* ---- rest.c ---- */
chat_err chat__creq_gap_open(chat_client *c, const char *conv,
                             chat_time_ms now);
bool chat__creq_gap_is_open(const chat_client *c, const char *conv);
/* Walk the whole conversation list over REST and page every conversation
 * that has messages past its last_seen (the server cut a resume short). */
chat_err chat__creq_sync(chat_client *c);
uint32_t chat__creq_gaps(const chat_client *c);
/* Fetch the conversation object anew (a system message arrived through
 * resume or REST); one at a time per conversation. */
chat_err chat__creq_conv_refresh(chat_client *c, const char *conv);
/* The user is no longer a member of conv: forget its last_seen (resume
 * stops asking for it) and, when the stored copy still lists the user,
 * store and report it without them. */
void chat__client_left(chat_client *c, const char *conv);
chat_time_ms chat__creq_deadline(const chat_client *c);
void chat__creq_timer(chat_client *c, chat_time_ms now);
bool chat__creq_ready(const chat_client *c);
void chat__creq_free_all(chat_client *c);

#endif

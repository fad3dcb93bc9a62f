/* Internals shared by the server core's files. One file per concern:
 *   server.c    object, settings, modules, timers, stats, token expiry
 *   ops.c       module calls that may finish later (chat_op), posted work
 *   session.c   per connection: hello, in/outbound queues, limits, closes
 *   dispatch.c  frame type -> handler; refusals become error frames
 *   convs.c     conversation/membership cache and its (shared) loads
 *   send.c      validate -> rate limit -> queue -> group commit -> ack
 *   fanout.c    local and bus delivery, push hand-off, bus envelope
 *   receipts.c  marks, coalesced receipt frames, read sync
 *   resume.c    resume answers and their caps
 *   presence.c  online/idle/offline with grace; subscriptions; typing
 *   ratelimit.c token buckets: (sender, conversation) sends, REST per user
 *   rest.c      the REST API of PROTOCOL.md section 5
 *
 * Asynchronous module calls. Every module call that may answer
 * CHAT_PENDING is made on behalf of a job (a refcounted heap object with a
 * release function) through an op:
 *     chat_op *op;
 *     bool now = CHAT__CALL(srv, &job->base, done_fn, idx, op,
 *                           srv->store.method(srv->store.self, ..., op));
 * done_fn(srv, job, idx, status) runs exactly once: inside CHAT__CALL when
 * the module finished at once (now is true), or later from
 * chat_op_complete(). Completions that arrive while a chat_server_* call
 * is in progress wait on a ready list that the outermost call drains
 * before it returns (chat__enter / chat__leave), so a continuation never
 * runs in the middle of another handler (the shared decoder, the caches).
 * Jobs copy what they need from frames and requests before their first
 * call. A job's release frees memory and drops references only: it never
 * calls a module or queues a frame, because chat_server_free() releases
 * the jobs of ops still in flight after the modules are gone.
 *
 * Sessions are refcounted: a job holds a reference, and a closed session
 * (dead) stays allocated until its last job lets go; nothing is queued to
 * it any more. */
#ifndef CHAT__SERVER_INTERNAL_H
#define CHAT__SERVER_INTERNAL_H

#include <stdatomic.h>

#include <chat/server.h>

#include "common/alloc.h"
#include "common/arena.h"
#include "common/buf.h"
#include "common/check.h"
#include "common/json.h"
#include "common/map.h"
#include "proto/frame_internal.h"

#include <chat/snowflake.h>

/* ---- jobs and ops (ops.c) ---- */

typedef struct chat__job chat__job;
typedef void (*chat__job_release)(chat_server *srv, chat__job *j);
struct chat__job {
  uint32_t refs;
  chat__job_release release;
};

static inline void chat__job_init(chat__job *j, chat__job_release release) {
  j->refs = 1;
  j->release = release;
}
static inline void chat__job_ref(chat__job *j) { j->refs++; }
void chat__job_unref(chat_server *srv, chat__job *j);

typedef void (*chat__op_fn)(chat_server *srv, chat__job *j, uint32_t idx,
                            chat_err status);

struct chat_op {
  chat_task task;      /* chat_op_post() queues this */
  chat_server *srv;
  chat_op *prev, *next; /* in flight, or the ready list, or the pool */
  chat__job *job;      /* holds a reference */
  chat__op_fn done;
  void (*post_fn)(void *user_data, chat_op *op);
  void *post_ud;
  uint32_t idx;        /* the caller's: which item of a job */
  uint8_t state;       /* OP_* in ops.c */
  chat_err status;
};

/* A new op for one module call on behalf of j (referenced). NULL when out
 * of memory. */
chat_op *chat__op_new(chat_server *srv, chat__job *j, chat__op_fn done,
                      uint32_t idx);
/* Hand over the module method's return value: unless it is CHAT_PENDING,
 * done runs now. True when done has run. */
bool chat__op_call(chat_server *srv, chat_op *op, chat_err rc);
/* No op could be made: done runs now with CHAT_ERR_NOMEM. Returns true. */
bool chat__op_nomem(chat_server *srv, chat__job *j, chat__op_fn done,
                    uint32_t idx);

#define CHAT__CALL(srv, job, fn, idx, OP, expr)                                \
  (((OP) = chat__op_new((srv), (job), (fn), (idx))) != NULL                    \
       ? chat__op_call((srv), (OP), (expr))                                    \
       : chat__op_nomem((srv), (job), (fn), (idx)))

/* Around every public entry point that may call a module or complete an
 * op: the outermost leave runs what became ready. */
static inline void chat__enter(chat_server *srv);
void chat__leave(chat_server *srv);
/* Run posted tasks and op hand-offs (chat_server_run_posted). */
void chat__posted_run(chat_server *srv, chat_time_ms now);
/* Posted or ready work is waiting (next_deadline says 0). */
bool chat__work_waiting(const chat_server *srv);
/* chat_server_free(): forget posted work, release every op and its job. */
void chat__ops_free(chat_server *srv);

/* ---- frames and sessions ---- */

/* An encoded frame shared by every queue it is in (one encode per fan-out,
 * however many devices receive it). */
typedef struct chat__shared_frame {
  uint32_t refs;
  uint32_t len;
  char data[];
} chat__shared_frame;

typedef struct outq_item {
  struct outq_item *next;
  chat__shared_frame *frame;
} outq_item;

/* An inbound frame waiting behind one that waits on a module. */
typedef struct inq_item {
  struct inq_item *next;
  size_t len;
  char data[];
} inq_item;

typedef struct user_entry user_entry;

struct chat_session {
  chat_server *srv;
  uint32_t refs;                 /* the server's own, plus one per job */
  bool dead;                     /* closed by the host; kept for its jobs */
  chat_identity id;
  char session_id[CHAT_ID_BUF];
  void *user_data;
  user_entry *user;              /* the local user this device belongs to */
  chat_session *user_next;       /* that user's other local sessions */
  chat_session *all_prev, *all_next;
  outq_item *q_head, *q_tail;
  uint32_t q_frames;
  uint64_t q_bytes;
  chat__shared_frame *lent;      /* handed out by next_frame */
  uint16_t close_code;
  const char *close_reason;
  chat_time_ms garbage_window;
  uint32_t garbage;
  char (*subs)[CHAT_ID_BUF];     /* presence subscriptions */
  size_t n_subs;
  /* Typing relay budget: each frame fans out to up to 50 members, so a
   * session gets a burst of TYPING_BURST and one more per second. */
  chat_time_ms typing_at;
  uint32_t typing_tokens;
  bool typing_seen;
  /* A frame of this session waits on a module call; later frames wait in
   * the inbound queue behind it. */
  bool busy;
  bool pump_queued;              /* on srv's pump list */
  chat_session *pump_next;
  inq_item *in_head, *in_tail;
  uint32_t in_frames;
  uint64_t in_bytes;
  /* Token expiry: monotonic deadline, and the slot in srv's heap. */
  chat_time_ms expires_at;       /* CHAT_TIME_NEVER: none */
  size_t exp_idx;                /* SIZE_MAX: not in the heap */
};

/* A user with at least one device on this gateway, or in its offline grace. */
struct user_entry {
  char user_id[CHAT_ID_BUF];
  chat_session *sessions;
  size_t n_sessions;
  chat_presence_state state;
  int64_t last_active_wall;      /* Unix ms, for presence frames */
  chat_time_ms last_activity;    /* monotonic */
  chat_time_ms offline_at;       /* grace end when no device; else NEVER */
};

/* Cached conversation: type and members, for membership checks. Shared
 * by the cache and by whoever is using it (refs). */
typedef struct conv_entry {
  uint32_t refs;
  chat_conversation_type type;
  size_t n_members;
  char **members;                /* sorted, for bsearch */
  size_t n_admins;
  char **admins;                 /* sorted; pointers into members */
  chat_time_ms loaded_ms;        /* srv->clock_ms when read from the store */
} conv_entry;

/* A send (or an edit or delete entry) waiting for the next group
 * commit. */
typedef struct pending_send {
  chat_session *sess;            /* referenced; may be dead */
  char device[CHAT_ID_BUF];      /* the sending device, skipped in fan-out */
  chat_msg_in msg;
  char *strings;                 /* one block holding every string of msg */
  const char **refs;
} pending_send;

/* A coalesced receipt frame waiting for the flush. */
typedef struct pending_receipt {
  char sender[CHAT_ID_BUF];
  char conv[CHAT_ID_BUF];
  char member[CHAT_ID_BUF];
  chat_receipt_state state;
  uint64_t message_id;
  bool group;
  uint32_t delivered, read;
} pending_receipt;

/* A committed message waiting for its fan-out round. */
typedef struct pending_fanout {
  pending_send send;
  chat_append_result res;
} pending_fanout;

typedef struct push_job {
  char user[CHAT_ID_BUF];
  char conv[CHAT_ID_BUF];
  char sender[CHAT_ID_BUF];
  uint64_t message_id;
  bool notified;                 /* at least one device got the note */
} push_job;

/* Who gets a push when a member has no device anywhere (fan-out only). */
typedef struct chat__push_info {
  const char *conv;
  const char *sender;
  uint64_t message_id;
} chat__push_info;

typedef struct rq rq;

struct chat_server {
  chat_allocator a;
  chat_server_settings s;
  chat_env env;                  /* s.env points here */
  char gateway_id[CHAT_ID_BUF];
  chat_server_callbacks cbs;
  void *user_data;
  chat_errbuf err;
  chat_storage_ops store;
  chat_presence_ops presence;
  chat_bus_ops bus;
  chat_push_ops push;
  chat_auth_ops auth;
  bool has_presence, has_bus, has_push, has_auth;
  chat_snowflake *ids;
  bool ids_ready;                /* max_message_id answered */
  bool ids_loading;              /* ... and is in flight */
  chat_codec *codec;             /* decoding inbound frames */
  chat_codec *enc;               /* encoding outbound frames */
  chat__buf tmp;                 /* bus envelopes */
  chat__buf rest_out;            /* the last synchronous REST answer */
  chat__map users;               /* user_id -> user_entry */
  chat__map convs;               /* conversation_id -> conv_entry */
  chat__map loads;               /* conversation_id -> load in flight */
  chat__map buckets;             /* sender \n conversation -> bucket */
  chat__map rest_buckets;        /* user_id -> REST bucket */
  chat__map receipts;            /* sender \n conv \n state -> pending */
  chat__map watchers;            /* user_id -> watcher list */
  chat_session *sessions;
  pending_send *sends;
  size_t n_sends, cap_sends;
  bool commit_busy;              /* an append is in flight */
  bool receipts_busy;            /* a receipt flush is in flight */
  pending_fanout *fanouts;       /* committed, acked, not yet delivered */
  size_t n_fanouts, cap_fanouts;
  push_job *pushes;
  size_t n_pushes, cap_pushes;
  rq *rest_pending;              /* REST requests answered later */
  chat_time_ms receipt_due;      /* NEVER when none pending */
  chat_time_ms next_presence_check;
  chat_time_ms next_purge;
  chat_time_ms next_bucket_sweep;
  chat_time_ms next_rest_sweep;
  bool draining;
  bool drain_closed;             /* sessions told to close (1001/1012) */
  /* Shadow bans (storage shadow_bans), polled every ban_poll_ms for the
   * typing relay; whether a message is withheld is decided by the store
   * in its commit (chat_append_result.withheld). */
  chat__map bans;                /* user_id -> (void *)1 */
  uint64_t bans_version;         /* 0: not loaded */
  bool bans_loaded;
  bool bans_busy;                /* a poll is in flight */
  chat_time_ms next_ban_poll;
  /* The latest time a host call handed in: cache ages are measured on it
   * without widening every internal signature. */
  chat_time_ms clock_ms;
  uint64_t session_counter;
  chat_server_stats st;
  /* Token expiry: a binary min-heap of sessions by expires_at. */
  chat_session **exp;
  size_t n_exp, cap_exp;
  /* ops.c */
  unsigned depth;                /* chat_server_* calls on the stack */
  bool freeing;
  chat_op *ops_live;             /* called or pending */
  chat_op *ops_pool;             /* free ops for reuse */
  size_t n_pool;
  chat_op *ready_head, *ready_tail; /* completed, waiting to run */
  chat_session *pump_head, *pump_tail; /* sessions with frames to resume */
  _Atomic(chat_task *) posted;   /* Treiber stack, newest first */
};

static inline void chat__enter(chat_server *srv) { srv->depth++; }

/* A group commit may start now: none in flight, and ids minted above the
 * store's. */
static inline bool chat__can_commit(const chat_server *srv) {
  return !srv->commit_busy && srv->ids_ready;
}

/* ---- server.c ---- */
static inline void chat__srv_clock(chat_server *srv, chat_time_ms now) {
  if (now > srv->clock_ms)
    srv->clock_ms = now;
}
int64_t chat__srv_wall(chat_server *srv);
void chat__srv_log(chat_server *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Record the reason of a failed public call; returns rc. */
chat_err chat__srv_fail(chat_server *srv, chat_err rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Sessions with a token expiry. */
void chat__expiry_add(chat_server *srv, chat_session *s);
void chat__expiry_remove(chat_server *srv, chat_session *s);
/* All sends are committed: finish a drain. */
void chat__drain_check(chat_server *srv);

/* ---- session.c ---- */
/* Queue an encoded frame on a session (takes a reference). Closes the
 * session with 1013 when its queue is full. Nothing for a dead session. */
void chat__sess_queue(chat_session *s, chat__shared_frame *f);
/* Encode f with the server's encoder into a new shared frame holding one
 * reference, the caller's: queue it where it goes, then unref it. Holding
 * it across the deliveries keeps it alive when one of them closes a session
 * whose queue already held it. NULL on failure (logged). */
chat__shared_frame *chat__frame_make(chat_server *srv, const chat_frame *f);
chat__shared_frame *chat__frame_copy(chat_server *srv, const char *json,
                                     size_t len);
void chat__frame_ref(chat__shared_frame *f);
void chat__frame_unref(chat_server *srv, chat__shared_frame *f);
/* Encode and queue one frame for one session. */
void chat__sess_send(chat_session *s, const chat_frame *f);
void chat__sess_error(chat_session *s, chat_wire_error code, const char *msg,
                      const char *ref, uint64_t retry_after_ms);
void chat__sess_close(chat_session *s, uint16_t code, const char *reason);
/* A deliberate close (PROTOCOL.md section 8): queue `goaway` (reason,
 * retry_after_ms), then close with code (1012 drain, 1013 overload). The
 * goaway gets room in a full queue by dropping what it holds. */
void chat__sess_goaway(chat_session *s, const char *reason,
                       uint64_t retry_after_ms, uint16_t code,
                       const char *why);
/* The send quota of this session's user per conversation a minute. */
uint32_t chat__sess_rate(const chat_session *s);
bool chat__sess_closing(const chat_session *s);
void chat__sess_ref(chat_session *s);
void chat__sess_unref(chat_server *srv, chat_session *s);
/* The frame being handled is finished (every handler calls it once, now
 * or from its last continuation): the session's next frames may go. */
void chat__sess_frame_done(chat_session *s);
/* Run the inbound frames of sessions whose blocking frame finished. */
bool chat__sess_pump(chat_server *srv);

/* ---- dispatch.c ---- */
/* Handle one decoded frame; the handler ends with chat__sess_frame_done. */
void chat__dispatch(chat_session *s, const chat_frame *f, chat_time_ms now);

/* ---- convs.c ---- */
/* The conversation, from the cache or loaded (one load per conversation
 * however many wait). cb runs once with the entry (borrowed for the
 * callback; chat__conv_ref to keep it) or NULL and err (CHAT_ERR_NOT_FOUND,
 * MODULE, NOMEM). True when cb has run before the call returns. */
typedef void (*chat__conv_cb)(chat_server *srv, chat__job *j,
                              const conv_entry *c, chat_err err);
bool chat__conv_load(chat_server *srv, const char *conv_id, chat__job *j,
                     chat__conv_cb cb);
bool chat__conv_has_member(const conv_entry *c, const char *user_id);
void chat__conv_ref(conv_entry *c);
void chat__conv_unref(chat_server *srv, conv_entry *c);
void chat__conv_forget(chat_server *srv, const char *conv_id);
void chat__convs_free(chat_server *srv);
/* Membership answer for a frame: false (and the session answered with an
 * error frame) when the user may not act on the conversation. */
bool chat__conv_check_member(chat_session *s, const conv_entry *c,
                             chat_err err, const char *ref);
bool chat__conv_is_admin(const conv_entry *c, const char *user_id);

/* ---- shadow bans (server.c) ---- */
bool chat__banned(const chat_server *srv, const char *user_id);

/* ---- send.c ---- */
void chat__on_send(chat_session *s, const chat_send *m, chat_time_ms now);
/* `edit` and `delete` (PROTOCOL.md section 8): log entries acked like a
 * send, checked against their target by the store. */
void chat__on_edit(chat_session *s, const chat_edit *m, chat_time_ms now);
void chat__on_delete(chat_session *s, const chat_delete *m,
                     chat_time_ms now);
/* Deliver a stored entry of the log (a committed send, edit, delete or
 * system message) as a `message` frame: to every member's devices but
 * except_device of the sender, or, when the store withheld it (a
 * shadow-banned sender), only to the sender's own devices and without
 * push. */
void chat__deliver_message(chat_server *srv, const chat_message *m,
                           const char *const *members, size_t n_members,
                           const char *except_device, bool push,
                           bool withheld);
/* Start the next group commit unless one is in flight. */
chat_err chat__flush_sends(chat_server *srv, chat_time_ms now);
/* Deliver every message committed in an earlier timer round. */
void chat__run_fanouts(chat_server *srv);
void chat__sends_free(chat_server *srv);
void chat__pending_free(chat_server *srv, pending_send *p);

/* ---- ratelimit.c ---- */
/* Take one token from the (sender, conversation) bucket, which holds
 * rate_per_minute tokens refilled over a minute (a bot's has its own
 * rate); false with *retry_after_ms when the bucket is empty. */
bool chat__rate_take(chat_server *srv, const char *sender, const char *conv,
                     uint32_t rate_per_minute, chat_time_ms now,
                     uint64_t *retry_after_ms);
void chat__rate_refund(chat_server *srv, const char *sender, const char *conv);
void chat__rate_sweep(chat_server *srv, chat_time_ms now);
/* REST: one request of user; false with *retry_s when over the limit. */
bool chat__rest_rate_take(chat_server *srv, const char *user,
                          chat_time_ms now, uint32_t *retry_s);
void chat__rest_rate_sweep(chat_server *srv, chat_time_ms now);
void chat__rate_free(chat_server *srv);

/* ---- fanout.c ---- */
/* Deliver an encoded frame to every device of each user (local sessions
 * now and, through the presence registry and the bus, other gateways),
 * except the device `except_device` of `except_user` (both may be NULL).
 * With push set, members with no device anywhere get a push. Everything
 * given is copied or referenced. */
void chat__deliver(chat_server *srv, chat__shared_frame *f,
                   const char *const *users, size_t n_users,
                   const char *except_user, const char *except_device,
                   const chat__push_info *push);
void chat__push_queue(chat_server *srv, const char *user, const char *conv,
                      const char *sender, uint64_t message_id);
/* Receipt-aware push: user's read mark of conv advanced to up_to; clear
 * the notifications it passed on the user's devices. */
void chat__push_clear(chat_server *srv, const char *user, const char *conv,
                      uint64_t up_to);
void chat__push_run(chat_server *srv);
void chat__push_free(chat_server *srv);
chat_err chat__bus_in(chat_server *srv, const char *msg, size_t len,
                      chat_time_ms now);
/* Tell every other gateway with a device of these users (or of user) to
 * drop its cached members of conv. Fire-and-forget. */
void chat__bus_forget(chat_server *srv, const char *conv,
                      const char *const *users, size_t n, const char *user);

/* ---- receipts.c ---- */
void chat__on_mark(chat_session *s, chat_frame_type t, const chat_mark *m,
                   chat_time_ms now);
void chat__receipts_flush(chat_server *srv);
void chat__receipts_free(chat_server *srv);

/* ---- resume.c ---- */
void chat__on_resume(chat_session *s, const chat_resume *r, chat_time_ms now);

/* ---- presence.c ---- */
chat_err chat__presence_attach(chat_session *s, chat_time_ms now);
void chat__presence_detach(chat_session *s, chat_time_ms now);
void chat__presence_activity(chat_session *s, chat_time_ms now);
void chat__presence_tick(chat_server *srv, chat_time_ms now);
chat_time_ms chat__presence_deadline(const chat_server *srv);
void chat__on_subscribe(chat_session *s, const chat_presence_subscribe *p,
                        chat_time_ms now);
void chat__on_typing(chat_session *s, const chat_typing *t, chat_time_ms now);
void chat__presence_free(chat_server *srv);
/* Deliver an encoded frame to the local sessions of one user. */
size_t chat__deliver_local(chat_server *srv, chat__shared_frame *f,
                           const char *user_id, const char *except_device);

/* ---- rest.c ---- */
/* Send the `conversation` frame to users added to a conversation. */
void chat__notify_added(chat_server *srv, const chat_conversation *c,
                        const char *const *users, size_t n);
/* chat_server_free(): drop requests still waiting (no callbacks). */
void chat__rest_free(chat_server *srv);

#endif

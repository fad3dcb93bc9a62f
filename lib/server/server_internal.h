/* Internals shared by the server core's files. One file per concern:
 *   server.c    object, settings, modules, timers, stats
 *   session.c   per connection: hello, outbound queue, limits, close codes
 *   dispatch.c  frame type -> handler; refusals become error frames
 *   convs.c     conversation/membership cache
 *   send.c      validate -> rate limit -> queue -> group commit -> ack
 *   fanout.c    local and bus delivery, push hand-off, bus envelope
 *   receipts.c  marks, coalesced receipt frames, read sync
 *   resume.c    resume answers and their caps
 *   presence.c  online/idle/offline with grace; subscriptions; typing
 *   ratelimit.c (sender, conversation) token buckets
 *   rest.c      the REST API of PROTOCOL.md section 5 */
#ifndef CHAT__SERVER_INTERNAL_H
#define CHAT__SERVER_INTERNAL_H

#include <chat/server.h>

#include "common/alloc.h"
#include "common/arena.h"
#include "common/buf.h"
#include "common/json.h"
#include "common/map.h"
#include "proto/frame_internal.h"

#include <chat/snowflake.h>

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

typedef struct user_entry user_entry;

struct chat_session {
  chat_server *srv;
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

/* Cached conversation: type and members, for membership checks. */
typedef struct conv_entry {
  chat_conversation_type type;
  size_t n_members;
  char **members;                /* sorted, for bsearch */
  chat_time_ms loaded_ms;        /* srv->clock_ms when read from the store */
} conv_entry;

/* A send waiting for the next group commit. */
typedef struct pending_send {
  chat_session *sess;            /* NULL once the session has closed */
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
} push_job;

struct chat_server {
  chat_allocator a;
  chat_server_settings s;
  char gateway_id[CHAT_ID_BUF];
  chat_server_callbacks cbs;
  void *user_data;
  chat_storage_ops store;
  chat_presence_ops presence;
  chat_bus_ops bus;
  chat_push_ops push;
  chat_auth_ops auth;
  bool has_presence, has_bus, has_push, has_auth;
  chat_snowflake *ids;
  chat_codec *codec;             /* decoding inbound frames */
  chat_codec *enc;               /* encoding outbound frames */
  chat__arena scratch;           /* per-call temporary data */
  chat__buf tmp;                 /* bus envelopes, REST bodies */
  chat__buf rest_out;            /* the last REST answer */
  chat__map users;               /* user_id -> user_entry */
  chat__map convs;               /* conversation_id -> conv_entry */
  chat__map buckets;             /* sender \n conversation -> bucket */
  chat__map receipts;            /* sender \n conv \n state -> pending */
  chat__map watchers;            /* user_id -> watcher list */
  chat_session *sessions;
  pending_send *sends;
  size_t n_sends, cap_sends;
  pending_fanout *fanouts;       /* committed, acked, not yet delivered */
  size_t n_fanouts, cap_fanouts;
  push_job *pushes;
  size_t n_pushes, cap_pushes;
  chat_time_ms receipt_due;      /* NEVER when none pending */
  chat_time_ms next_presence_check;
  chat_time_ms next_purge;
  chat_time_ms next_bucket_sweep;
  bool draining;
  /* The latest time a host call handed in: cache ages are measured on it
   * without widening every internal signature. */
  chat_time_ms clock_ms;
  uint64_t session_counter;
  chat_server_stats st;
};

/* ---- server.c ---- */
static inline void chat__srv_clock(chat_server *srv, chat_time_ms now) {
  if (now > srv->clock_ms)
    srv->clock_ms = now;
}
int64_t chat__srv_wall(chat_server *srv);
void chat__srv_log(chat_server *srv, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- session.c ---- */
/* Queue an encoded frame on a session (takes a reference). Closes the
 * session with 1013 when its queue is full. */
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
bool chat__sess_closing(const chat_session *s);

/* ---- dispatch.c ---- */
void chat__dispatch(chat_session *s, const chat_frame *f, chat_time_ms now);

/* ---- convs.c ---- */
/* The cached conversation, loading it on a miss; NULL with *err set
 * (CHAT_ERR_NOT_FOUND, MODULE, NOMEM). */
const conv_entry *chat__conv_get(chat_server *srv, const char *conv_id,
                                 chat_err *err);
bool chat__conv_has_member(const conv_entry *c, const char *user_id);
void chat__conv_forget(chat_server *srv, const char *conv_id);
void chat__convs_free(chat_server *srv);
/* Membership check for a frame: answers the session with an error frame
 * and returns NULL when the user may not act on the conversation. */
const conv_entry *chat__conv_for_member(chat_session *s, const char *conv_id,
                                        const char *ref);

/* ---- send.c ---- */
void chat__on_send(chat_session *s, const chat_send *m, chat_time_ms now);
chat_err chat__flush_sends(chat_server *srv, chat_time_ms now);
/* Deliver every message committed in an earlier timer round. */
void chat__run_fanouts(chat_server *srv);
void chat__sends_forget_session(chat_server *srv, chat_session *s);
void chat__sends_free(chat_server *srv);

/* ---- ratelimit.c ---- */
/* Take one token; false with *retry_after_ms when the bucket is empty. */
bool chat__rate_take(chat_server *srv, const char *sender, const char *conv,
                     chat_time_ms now, uint64_t *retry_after_ms);
void chat__rate_refund(chat_server *srv, const char *sender, const char *conv);
void chat__rate_sweep(chat_server *srv, chat_time_ms now);
void chat__rate_free(chat_server *srv);

/* ---- fanout.c ---- */
/* Deliver an encoded frame to every device of each user (local sessions
 * and, through the bus, other gateways), except the device `except_device`
 * of `except_user` (both may be NULL). Users with no device anywhere are
 * reported through offline (may be NULL). */
typedef void (*chat__offline_fn)(chat_server *srv, const char *user_id,
                                 void *ctx);
void chat__deliver(chat_server *srv, chat__shared_frame *f,
                   const char *const *users, size_t n_users,
                   const char *except_user, const char *except_device,
                   chat__offline_fn offline, void *ctx);
void chat__push_queue(chat_server *srv, const char *user, const char *conv,
                      const char *sender, uint64_t message_id);
void chat__push_run(chat_server *srv);
void chat__push_free(chat_server *srv);
chat_err chat__bus_in(chat_server *srv, const char *msg, size_t len,
                      chat_time_ms now);

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
/* Send the `conversation` frame to a user added to a conversation. */
void chat__notify_added(chat_server *srv, const chat_conversation *c,
                        const char *const *users, size_t n);

#endif

/* Shared between the client core's files. */
#ifndef CHAT__CLIENT_INTERNAL_H
#define CHAT__CLIENT_INTERNAL_H

#include <chat/client.h>

#include "client/store.h"
#include "common/buf.h"

/* A frame waiting to be written. Marks remember what they carry, so the
 * mark counts as sent only once the host has taken the frame. */
typedef enum out_kind { OUT_PLAIN = 0, OUT_MARK = 1 } out_kind;

typedef struct chat__out {
  struct chat__out *next;
  out_kind kind;
  struct chat__mark *mark; /* OUT_MARK */
  int mark_kind;           /* 1 delivered, 2 read */
  uint64_t up_to;
  size_t len;
  char json[]; /* len bytes plus a NUL */
} chat__out;

/* One unacked send, mirrored from the store's outbox. */
typedef struct chat__obox {
  struct chat__obox *next;
  char *client_msg_id;
  char *conv;
  char *body;
  size_t body_len;
  uint64_t sent_gen;     /* connection it was last sent on; 0: never */
  chat_time_ms retry_at; /* not before this (rate limited); 0: any time */
} chat__obox;

/* Receipt marks of one conversation; index 1 delivered, 2 read. Both
 * kinds share one flush window per conversation. */
typedef struct chat__mark {
  struct chat__mark *next;
  char *conv;
  uint64_t want[3];          /* what the app said (persisted) */
  uint64_t sent[3];          /* written to a socket (persisted) */
  uint64_t queued[3];        /* in the outbound queue now */
  chat_time_ms last_at;      /* when frames were last queued */
  bool ever;                 /* frames were queued at least once */
} chat__mark;

/* Our own typing state in one conversation. */
typedef struct chat__mytyping {
  struct chat__mytyping *next;
  char *conv;
  bool active;
  chat_time_ms last_true; /* when is_typing:true was last queued */
  chat_time_ms last_key;  /* the last keystroke */
} chat__mytyping;

/* A peer typing somewhere. */
typedef struct chat__peer {
  struct chat__peer *next;
  char *conv;
  char *user;
  chat_time_ms expires;
} chat__peer;

typedef enum req_kind {
  REQ_GAP = 1,    /* page a resume gap after a cursor */
  REQ_CONVS = 2,  /* the conversation list */
  REQ_CREATE = 3, /* create a conversation */
  REQ_OLDER = 4   /* older history for the app */
} req_kind;

typedef struct chat__req {
  struct chat__req *next;
  uint32_t id;
  req_kind kind;
  char *conv;         /* GAP, OLDER */
  uint64_t cursor;    /* GAP: last message id had */
  uint32_t limit;     /* OLDER */
  char *method;
  char *path;
  char *body;         /* POST */
  size_t body_len;
  bool in_flight;
  bool ready;         /* false while waiting for not_before */
  chat_time_ms not_before;
  uint32_t attempt;
  bool sync;          /* CONVS started by the client itself: open a gap for
                       * every conversation with messages past last_seen,
                       * and report to no one */
} chat__req;

typedef struct chat__partial {
  struct chat__partial *next;
  char *conv;
} chat__partial;

struct chat_client {
  chat_allocator a;
  chat_client_settings s; /* zeros replaced by defaults */
  chat_client_callbacks cb;
  void *ud;
  chat_client_store *store;
  chat__cstore_ops *st;
  chat_codec *dec;  /* inbound frames */
  chat_codec *rdec; /* REST answers, rewrapped as frames */
  chat_codec *enc;

  chat_client_state state;
  bool started;
  bool connect_taken; /* the host took WANT_CONNECT */
  bool want_close;
  bool load_oom; /* chat_client_new: an allocation failed while loading */
  uint64_t conn_gen;
  uint32_t attempt;
  chat_time_ms reconnect_at;
  chat_time_ms handshake_deadline;
  chat_time_ms ready_at; /* hello time of the current connection */
  chat_time_ms last_in, last_out;
  uint32_t heartbeat_ms;
  uint32_t max_body_bytes;
  char *user_id;

  /* resume */
  bool resumed;
  uint32_t resume_msgs;
  chat__partial *partial;

  chat__out *q_head, *q_tail;
  chat__out *taken;
  chat__obox *obox_head, *obox_tail;
  size_t obox_len;
  chat__mark *marks;
  chat__mytyping *typing;
  chat__peer *peers;
  char **presence;
  size_t n_presence;

  chat__req *reqs;
  uint32_t next_req_id;

  chat__buf scratch;
};

/* client.c, for rest.c */
chat_err chat__client_dup(chat_client *c, const char *s, char **out);
void chat__client_wants_changed(chat_client *c);
void chat__client_error(chat_client *c, chat_err err, const char *conv,
                        const char *message, int http_status, bool retrying);
void chat__client_progress(chat_client *c, const char *conv);
/* Store m (dedup), raise last_seen when `raise`, report it when new. */
void chat__client_store_message(chat_client *c, const chat_message *m,
                                chat_message_origin origin, bool raise,
                                uint64_t *max_id);
void chat__client_auto_delivered(chat_client *c, const char *conv,
                                 uint64_t up_to, chat_time_ms now);
void chat__client_put_conversation(chat_client *c,
                                   const chat_conversation *conv);

/* rest.c */
chat_err chat__creq_gap_open(chat_client *c, const char *conv,
                             chat_time_ms now);
bool chat__creq_gap_is_open(const chat_client *c, const char *conv);
/* Walk the whole conversation list over REST and page every conversation
 * that has messages past its last_seen (the server cut a resume short). */
chat_err chat__creq_sync(chat_client *c);
uint32_t chat__creq_gaps(const chat_client *c);
chat_time_ms chat__creq_deadline(const chat_client *c);
void chat__creq_timer(chat_client *c, chat_time_ms now);
bool chat__creq_ready(const chat_client *c);
void chat__creq_free_all(chat_client *c);

#endif

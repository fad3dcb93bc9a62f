/* A chat_client on a SQLite store (":memory:" or a file), or on the
 * in-memory reference store, with a fake env and a manual monotonic clock,
 * recording every callback and every frame the client writes. The store is
 * wrapped so a test can make its writes fail. Used by the client unit
 * tests; needs no test framework. */
#ifndef CHAT_TEST_CLIENT_HARNESS_H
#define CHAT_TEST_CLIENT_HARNESS_H

#include <chat/client.h>
#include <chat/sqlite.h>

#include "fake_env.h"
#include "memory_client_store.h"

#define CH_MAX_OUT 512
#define CH_MAX_EV 256

typedef struct ch_event {
  char kind[16];    /* "message", "ack", "typing", "error", ... */
  char a[80];       /* main id: message id, client_msg_id, conversation */
  char b[80];       /* second: user, origin, wire code */
  int n;            /* a number: state, is_typing, err */
  bool flag;        /* retrying, duplicate, complete; message: deleted */
  int http;         /* error: http_status */
  bool edited;      /* message, changed: has_edited_ts */
  char body[80];    /* message, changed: the body */
  int op;           /* error: chat_client_error.op */
  int refs;         /* message: n_media_refs */
  uint64_t target;  /* error: chat_client_error.target_id */
} ch_event;

typedef struct ch {
  fake_env fe;
  chat_client *c;
  chat_time_ms now;
  char *out[CH_MAX_OUT]; /* frames written, in order */
  size_t n_out;
  ch_event ev[CH_MAX_EV];
  size_t n_ev;
  chat_client_callbacks cb;
  failing_store *fail; /* the store's wrapper, owned by c */
  /* When set, on_auth_required hands this token over at once, from inside
   * the callback. */
  const char *token_on_auth;
  chat_errbuf err;     /* chat_client_new's detail */
} ch;

/* Open a client over the SQLite store at path, or over the in-memory
 * reference store when path is NULL. s may be NULL (defaults); its env is
 * replaced by the harness's. Returns chat_client_new's result. */
chat_err ch_open(ch *h, const char *path, const chat_client_settings *s);
/* The same with an allocator for the client (and the store's own memory). */
chat_err ch_open_alloc(ch *h, const char *path, const chat_client_settings *s,
                       const chat_allocator *alloc);
void ch_close(ch *h); /* frees the client (and store); keeps recordings */
void ch_reset_log(ch *h);  /* forget frames and events */

/* start + on_connecting + on_open; then the server's hello. */
void ch_open_socket(ch *h);
void ch_hello(ch *h, uint32_t heartbeat_ms);
/* Full handshake with an empty resume answer ("resumed"). */
void ch_connect(ch *h);
void ch_feed(ch *h, const char *json);
/* Take every frame the client wants written into out[]. */
size_t ch_drain(ch *h);
/* Move the clock to now + ms, running every timer that falls due on the
 * way (at its own deadline), then drain. */
void ch_advance(ch *h, chat_time_ms ms);
/* Frames of a type (by "type":"...") written since index from. */
size_t ch_count_type(const ch *h, const char *type, size_t from);
/* The i-th frame of a type, or NULL. */
const char *ch_nth_type(const ch *h, const char *type, size_t i);
size_t ch_count_ev(const ch *h, const char *kind);
const ch_event *ch_last_ev(const ch *h, const char *kind);

/* A live `message` frame from sender ("hi <id>", client_msg_id x<id>). */
void ch_msg(ch *h, const char *conv, const char *id, const char *sender);
/* A live edit or delete entry: kind "edit" or "delete", server_ts = id
 * (as a decimal number), client_msg_id x<id>. */
void ch_entry(ch *h, const char *conv, const char *id, const char *sender,
              const char *kind, const char *target, const char *body);
/* An `ack` of one of our sends. */
void ch_ack(ch *h, const char *cmid, const char *id, bool duplicate);

/* A temporary directory with a store file path in it, and its removal
 * (the file, its -wal and -shm, the directory). */
typedef struct ch_dir {
  char dir[64];
  char path[128];
} ch_dir;
void ch_dir_make(ch_dir *d);
void ch_dir_remove(ch_dir *d);

/* Make every write to the store fail (true) or work again (false). */
void ch_store_fail(ch *h, bool fail);

/* "true"/"false" frames written since index from with this field value:
 * ch_count_field(h, "typing", "\"is_typing\":true", 0). */
size_t ch_count_with(const ch *h, const char *type, const char *needle,
                     size_t from);

#endif

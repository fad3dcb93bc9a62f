/* A chat_client on a SQLite store (":memory:" or a file) with a fake env
 * and a manual monotonic clock, recording every callback and every frame
 * the client writes. Used by the client unit tests and the client fuzzer;
 * needs no test framework. */
#ifndef CHAT_TEST_CLIENT_HARNESS_H
#define CHAT_TEST_CLIENT_HARNESS_H

#include <chat/client.h>
#include <chat/sqlite.h>

#include "fake_env.h"

#define CH_MAX_OUT 512
#define CH_MAX_EV 256

typedef struct ch_event {
  char kind[16];    /* "message", "ack", "typing", "error", ... */
  char a[80];       /* main id: message id, client_msg_id, conversation */
  char b[80];       /* second: user, origin, wire code */
  int n;            /* a number: state, is_typing, err */
  bool flag;        /* retrying, duplicate, complete */
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
  chat_client_store *store; /* owned by c */
} ch;

/* Open a client over the store at path. s may be NULL (defaults). Returns
 * chat_client_new's result. */
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

/* Make every write to the store fail (true) or work again (false). */
void ch_store_fail(ch *h, bool fail);

#endif

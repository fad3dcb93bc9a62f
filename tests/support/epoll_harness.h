/* A real chat_epoll on 127.0.0.1 for unit tests, driven from the test's
 * own thread: a chat_server on in-memory SQLite with Ed25519 tokens, the
 * transport listening on a free port, and clients on non-blocking sockets.
 * Every wait pumps the transport (chat_epoll_service) until what the test
 * waits for arrives or a deadline passes, so a test is one thread and
 * deterministic in its order of events.
 *
 *   eh h; eh_init(&h, NULL, NULL);
 *   eh_conn *c = eh_ws_open(&h, "alice", "phone");   // 101 + hello read
 *   eh_ws_send_text(c, "{\"type\":\"ping\"}");
 *   eh_frame f; eh_ws_recv(&h, c, &f, 2000);
 *   eh_fini(&h);
 */
#ifndef CHAT_TEST_EPOLL_HARNESS_H
#define CHAT_TEST_EPOLL_HARNESS_H

#include <chat/epoll.h>
#include <chat/server.h>
#include <chat/sodium.h>

#include "defer_store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eh {
  chat_server *srv;
  chat_epoll *t;
  chat_sodium_key *key;
  chat_env env;       /* env.wake calls chat_epoll_wake() */
  defer_store *defer; /* eh_init_defer: the store answers later */
  char dir[64];
  uint16_t port;
} eh;

/* A client connection with its own receive buffer. */
#define EH_BUF (16u << 20) /* untouched pages cost nothing */
typedef struct eh_conn {
  int fd;
  char *buf; /* EH_BUF */
  size_t len;
  bool eof;   /* the server closed (FIN or reset) */
  bool reset; /* ... with a reset */
} eh_conn;

typedef struct eh_resp {
  int status;
  char head[8192];
  char *body; /* malloc'd, NUL-terminated */
  size_t body_len;
} eh_resp;

typedef struct eh_frame {
  uint8_t op;
  bool fin;
  char *data; /* malloc'd, NUL-terminated */
  size_t len;
  uint16_t close_code; /* for a close frame, 0 when it had none */
} eh_frame;

/* settings/server may be NULL: defaults. */
void eh_init(eh *h, const chat_epoll_settings *settings,
             const chat_server_settings *server);
/* The same on a store that answers every call later (defer_store.h); in
 * DEFER_THREAD mode a worker thread posts each completion and env.wake
 * wakes the transport, which runs it. */
void eh_init_defer(eh *h, const chat_epoll_settings *settings,
                   const chat_server_settings *server, defer_mode mode);
void eh_fini(eh *h);
/* Service the transport for about ms (at least one pass). */
void eh_pump(eh *h, unsigned ms);
/* A token for user/device (valid an hour) into out (512 bytes). */
void eh_token(eh *h, const char *user, const char *device, char *out);
/* Connect from 127.0.0.1, or from src (another 127.x address). */
eh_conn *eh_connect(eh *h);
eh_conn *eh_connect_from(eh *h, const char *src);
/* Connect with a small receive buffer: a reader the server outpaces. */
eh_conn *eh_connect_rcvbuf(eh *h, int bytes);
void eh_close(eh_conn *c);
/* Write everything, pumping the server while the socket is full. */
void eh_send(eh *h, eh_conn *c, const void *p, size_t n);
void eh_sends(eh *h, eh_conn *c, const char *s);
/* Read what arrives within ms into c->buf (pumping); bytes added. */
size_t eh_fill(eh *h, eh_conn *c, unsigned ms);
/* Drop n bytes from the front of c->buf. */
void eh_consume(eh_conn *c, size_t n);
/* Wait up to ms for the server to close c (reading and dropping what
 * comes); true when it did. */
bool eh_wait_closed(eh *h, eh_conn *c, unsigned ms);

/* Read one HTTP response (by Content-Length) within ms. */
bool eh_read_resp(eh *h, eh_conn *c, eh_resp *r, unsigned ms);
/* Send raw, read one response. */
bool eh_http(eh *h, eh_conn *c, const char *raw, eh_resp *r, unsigned ms);
/* The value of a response field (case-insensitive name), or NULL; static
 * buffer. */
const char *eh_field(const eh_resp *r, const char *name);
void eh_resp_free(eh_resp *r);

/* The upgrade request for user/device with extra header lines. */
void eh_upgrade_request(eh *h, const char *user, const char *device,
                        const char *extra, char *out, size_t cap);
/* Upgrade and read the 101 and the hello; fails the test otherwise. */
eh_conn *eh_ws_open(eh *h, const char *user, const char *device);
/* A masked client frame with first byte b0 (FIN/opcode). */
void eh_ws_send(eh *h, eh_conn *c, uint8_t b0, const void *p, size_t n);
void eh_ws_send_text(eh *h, eh_conn *c, const char *s);
/* Build a masked frame into out; returns its length. */
size_t eh_ws_frame(uint8_t *out, uint8_t b0, const void *p, size_t n,
                   bool mask);
/* One server frame within ms. */
bool eh_ws_recv(eh *h, eh_conn *c, eh_frame *f, unsigned ms);
/* Frames until one of opcode op (others dropped) within ms. */
bool eh_ws_expect(eh *h, eh_conn *c, uint8_t op, eh_frame *f, unsigned ms);
/* The next text frame whose JSON contains needle, within ms. */
bool eh_ws_expect_text(eh *h, eh_conn *c, const char *needle, eh_frame *f,
                       unsigned ms);
void eh_frame_free(eh_frame *f);

/* A metric's value from /metrics (name with labels, as printed); -1 when
 * absent. */
double eh_metric(eh *h, const char *name);

#endif

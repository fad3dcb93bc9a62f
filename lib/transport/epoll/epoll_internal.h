/* Shared state of the epoll transport (include/chat/epoll.h).
 *
 *   server_epoll.c  the loop: listening, accepting, reading, the core's
 *                   timer, writing, the timer wheel, WebSocket sessions,
 *                   closes and the public API
 *   http_epoll.c    HTTP on a connection: the header phase and its
 *                   budget, requests and bodies, the upgrade, REST,
 *                   /healthz, /metrics, static files, answers
 *   http_parse.c    RFC 9112 framing, pure
 *   ws_frame.c      RFC 6455 framing, pure
 *   sha1.c          Sec-WebSocket-Accept
 *   timer_wheel.c   one O(1) timer per connection
 *
 * Memory per connection. An idle WebSocket holds one chat__ep_conn and
 * nothing else: reads go to the loop's buffer, frames are unmasked and
 * handed to the core in place; only a frame or message that is still
 * unfinished when a read ends keeps its bytes (chat__ep_rx, allocated then
 * and freed when it completes), and only unsent output keeps a buffer
 * (chat__ep_out). HTTP state (chat__ep_http) lives from accept to the
 * upgrade. */
#ifndef CHAT__EPOLL_INTERNAL_H
#define CHAT__EPOLL_INTERNAL_H

#include <chat/epoll.h>

#include <sys/epoll.h>
#include <sys/types.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/map.h"
#include "transport/epoll/http_parse.h"
#include "transport/epoll/timer_wheel.h"
#include "transport/epoll/ws_frame.h"
#include "transport/metrics.h"

/* The loop's receive buffer: the most one read() takes. */
#define CHAT__EP_RBUF 65536
/* Bytes read from one connection per pass before the others get theirs. */
#define CHAT__EP_READ_BUDGET (4 * CHAT__EP_RBUF)
/* Connections accepted per pass before the others get their turn. */
#define CHAT__EP_ACCEPT_BATCH 1024
#define CHAT__EP_EVENTS 512
#define CHAT__EP_TOKEN_MAX 2048

typedef struct chat_epoll chat_epoll;
typedef struct chat__ep_conn chat__ep_conn;

enum chat__ep_phase {
  CHAT__EP_HTTP = 0,    /* HTTP: head, body or answer (see chat__ep_http) */
  CHAT__EP_WS = 1,      /* an open WebSocket session */
  CHAT__EP_CLOSING = 2, /* our close frame waits to be written */
  CHAT__EP_LINGER = 3,  /* shut down for writing; read and discard */
  CHAT__EP_DEAD = 4     /* fd closed; freed once no list holds it */
};

enum chat__ep_flags {
  CHAT__EP_F_WRITABLE = 1u << 0, /* the socket took all we gave it */
  CHAT__EP_F_DIRTY = 1u << 1,    /* on the write list */
  CHAT__EP_F_READY = 1u << 2,    /* on the read list */
  CHAT__EP_F_HUP = 1u << 3,      /* the peer half-closed or failed */
  CHAT__EP_F_PING = 1u << 4,     /* write a heartbeat ping */
  CHAT__EP_F_PING_OUT = 1u << 5, /* a ping is unanswered */
  CHAT__EP_F_SESSION = 1u << 6,  /* counted in n_ws (session or linger) */
  CHAT__EP_F_GRAVE = 1u << 7,    /* on the graves list */
  CHAT__EP_F_CLOSE_SENT = 1u << 8 /* our close frame is in the output */
};

/* Bytes held against the body caps for one user. */
typedef struct chat__ep_user {
  uint64_t bytes;
  uint32_t holders;
  char id[65];
} chat__ep_user;

/* Unsent output: bytes, then maybe a file being sent with sendfile(). */
typedef struct chat__ep_out {
  char *buf;
  size_t off, len, cap;   /* unsent bytes are buf[off..len) */
  uint64_t charged;       /* of them, counted against the body caps */
  chat__ep_user *user;    /* who they are charged to, or NULL */
  int file_fd;            /* -1: none */
  off_t file_off;
  uint64_t file_left;
} chat__ep_out;

/* An unfinished WebSocket frame or message. */
typedef struct chat__ep_rx {
  chat__ws_parser p;
  char *msg;              /* the message reassembled so far */
  size_t len, cap;
} chat__ep_rx;

typedef struct chat__ep_src chat__ep_src;
typedef struct chat__ep_http chat__ep_http;

struct chat__ep_conn {
  chat__tw_node tw;       /* its one timer; first (the wheel hands it back) */
  int fd;
  uint8_t phase;          /* chat__ep_phase */
  uint16_t flags;         /* chat__ep_flags */
  uint16_t close_code;    /* the close frame to send, 0: the session's */
  chat_epoll *owner;      /* for the server's callbacks */
  chat_session *sess;
  chat__ep_http *http;    /* HTTP state, NULL once upgraded */
  chat__ep_rx *rx;        /* NULL unless a frame is unfinished */
  chat__ep_out *out;      /* NULL unless output is unsent */
  chat__ep_conn *next_dirty, *next_ready;
  uint64_t last_rx_ms;    /* WebSocket: the peer's last frame */
  uint64_t mark_ms;       /* when the current wait began (close, linger) */
};

struct chat_epoll {
  chat_allocator a;
  chat_server *srv;
  chat_epoll_settings s;
  uint32_t max_frame_bytes; /* the server's */
  uint32_t heartbeat_ms;    /* the server's */
  char *static_dir;       /* realpath of settings.static_dir, or NULL */
  size_t static_dir_len;

  int ep;                 /* epoll */
  int lfd;                /* listening socket, -1 */
  int wfd;                /* eventfd for chat_epoll_wake() */
  int spare_fd;           /* kept to accept-and-close at EMFILE */
  uint16_t port;
  unsigned fd_cap;        /* sockets numbered at or above it: refused */
  bool accept_ready;      /* the listen queue may hold more */
  uint64_t accept_retry_ms; /* after ENOBUFS/ENOMEM, not before this */
  bool draining;
  bool destroying;
  struct epoll_event events[CHAT__EP_EVENTS];
  uint64_t now_ms;        /* this pass's clock */

  char *rbuf;             /* CHAT__EP_RBUF, the one receive buffer */
  chat__http_head *head;  /* the one request head being handled */
  char *tx;               /* frames batched for one send() */
  size_t tx_cap;

  chat__tw wheel;
  chat__ep_conn *dirty;   /* to write this pass */
  chat__ep_conn *ready;   /* to read this pass */
  chat__ep_conn **graves; /* dead, to free */
  size_t n_graves, graves_cap;
  size_t n_conns;         /* every connection */
  size_t n_ws;            /* WebSocket sessions, lingering closes too */

  /* The header phase (http_epoll.c). */
  chat__ep_http *hp_old, *hp_new; /* oldest first */
  size_t n_header;
  chat__map sources;      /* address bytes -> chat__ep_src */

  /* Body caps. */
  uint64_t body_bytes;    /* request + response bytes in flight */
  chat__map users;        /* user_id -> chat__ep_user */
  uint64_t ws_rx_bytes;   /* held by unfinished WebSocket messages */

  uint64_t jitter;        /* state of the header-timeout jitter */
  chat__buf mbuf;         /* /metrics text */
  chat__tstats st;
  /* The epoll transport's own counters (metrics beyond the shared ones). */
  struct {
    uint64_t header_timeouts;
    uint64_t header_shed;
    uint64_t body_timeouts;
    uint64_t body_refused_global;
    uint64_t body_refused_user;
    uint64_t lingering_closes;
    uint64_t ws_rx_refused;
    uint64_t accept_refused;  /* over max_connections or the fd cap */
    uint64_t ws_sends;        /* send() calls carrying WebSocket frames */
  } ex;
};

/* ---- server_epoll.c ---- */
uint64_t chat__ep_mono_ms(void);
uint64_t chat__ep_mono_us(void);
void chat__ep_log(chat_epoll *t, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Queue c for this pass's writes. */
void chat__ep_dirty(chat_epoll *t, chat__ep_conn *c);
/* Queue c for reading in this pass (or the next). */
void chat__ep_ready(chat_epoll *t, chat__ep_conn *c);
/* Append bytes to c's unsent output. False when out of memory. */
bool chat__ep_out_append(chat_epoll *t, chat__ep_conn *c, const void *p,
                         size_t n);
/* Close the socket now; the struct is freed at the end of the pass. */
void chat__ep_kill(chat_epoll *t, chat__ep_conn *c, const char *why);
/* Begin a lingering close once the output is written (HTTP). */
void chat__ep_close_after_write(chat_epoll *t, chat__ep_conn *c);
/* The upgrade succeeded: c becomes a WebSocket with the identity. The
 * 101 is already in c's output; leftover are bytes read after the head. */
void chat__ep_ws_open(chat_epoll *t, chat__ep_conn *c,
                      const chat_identity *id, char *leftover, size_t n);
/* Run the core's timer while it is due (the group commit). */
void chat__ep_run_core(chat_epoll *t);
/* Scratch space for one batch of output, at least n bytes. */
char *chat__ep_tx(chat_epoll *t, size_t n);
/* Move the body-cap charge of c's output (see chat__ep_out). */
void chat__ep_out_release(chat_epoll *t, chat__ep_out *o, uint64_t n);

/* ---- http_epoll.c ---- */
/* A connection was accepted: set up its HTTP state and place it in the
 * header phase (which may cut the oldest there). False: refused. */
bool chat__ep_http_accept(chat_epoll *t, chat__ep_conn *c,
                          const struct sockaddr *sa, socklen_t sl);
/* Bytes arrived on an HTTP connection. */
void chat__ep_http_input(chat_epoll *t, chat__ep_conn *c, char *buf,
                         size_t n);
/* The peer closed its side (EOF) while in HTTP. */
void chat__ep_http_eof(chat_epoll *t, chat__ep_conn *c);
/* c's output is all written: next request, or the close. */
void chat__ep_http_drained(chat_epoll *t, chat__ep_conn *c);
/* The timer fired for an HTTP connection. */
void chat__ep_http_timer(chat_epoll *t, chat__ep_conn *c);
/* Free c's HTTP state, leaving the header phase and the caps. */
void chat__ep_http_free(chat_epoll *t, chat__ep_conn *c);
/* True when c may be read (not waiting for an answer to be written). */
bool chat__ep_http_can_read(const chat__ep_conn *c);
/* True when bytes read earlier wait to be taken as requests. */
bool chat__ep_http_pending(const chat__ep_conn *c);
/* The server's on_http_response: a REST answer that came later. */
void chat__ep_on_http_response(void *user_data, chat_server *srv, void *tag,
                               const chat_http_response *resp);
void chat__ep_users_free(chat_epoll *t);
/* Charge n bytes to the body caps for user u (may be NULL); false (and
 * nothing charged) when either cap would be passed: *status says 503
 * (all) or 429 (the user). */
bool chat__ep_charge(chat_epoll *t, chat__ep_user *u, uint64_t n,
                     int *status);
void chat__ep_uncharge(chat_epoll *t, chat__ep_user *u, uint64_t n);
chat__ep_user *chat__ep_user_get(chat_epoll *t, const char *id);
void chat__ep_user_put(chat_epoll *t, chat__ep_user *u);

#endif

/* Shared state of the libwebsockets adapter (include/chat/lws.h).
 *
 *   server_lws.c  protocols, WebSocket sessions, timers, the own context
 *   http_lws.c    REST, /healthz, /metrics, static files, upgrade checks
 *   metrics.c     /metrics (the text itself is ../metrics.c, shared) */
#ifndef CHAT__LWS_INTERNAL_H
#define CHAT__LWS_INTERNAL_H

#include <chat/lws.h>

#include <libwebsockets.h>

#include "common/alloc.h"
#include "common/buf.h"
#include "common/check.h"
#include "transport/metrics.h"

/* ---- metrics (shared with the epoll transport) ---- */

typedef chat__tstats chat__lws_stats;

static inline size_t chat__lws_close_index(uint16_t code) {
  return chat__tstats_close_index(code);
}
static inline void chat__lws_count_status(chat__lws_stats *st, int status) {
  chat__tstats_count_status(st, status);
}

/* ---- connections ---- */

typedef struct chat__lws_conn chat__lws_conn;
struct chat__lws_conn {
  struct lws *wsi;
  chat_session *sess;
  chat__lws_conn *prev, *next; /* every open WebSocket, for the sweep */
  char *rx;                    /* a fragmented message being reassembled */
  uint32_t rx_len, rx_cap;
  uint64_t last_rx_ms;         /* anything from the peer, pongs included */
  uint64_t close_seen_ms;      /* when the session was first seen wanting
                                  to close; 0: not yet */
  const char *close_reason;    /* the adapter's own close (1003, 1009,
                                  1011), sent from the next writable */
  uint16_t close_code;         /* 0: none */
  bool linked;
  bool want_ping;              /* write a ping at the next writable */
  bool ping_out;               /* a ping is unanswered */
  bool killed;
  bool closing;                /* the close frame is on its way */
  bool lws_frames;             /* an HTTP/2 stream: lws frames each message */
};

/* A REST request waiting for its body. */
typedef struct chat__lws_req {
  char method[8];
  char *path;
  char *query;         /* NULL: none */
  char *content_type;  /* NULL: none */
  chat_identity id;
  char *body;
  size_t len, cap;
} chat__lws_req;

/* A REST answer the core gave later, copied, waiting for HTTP_WRITEABLE. */
typedef struct chat__lws_answer {
  int status;
  uint32_t retry_after_s;
  char *content_type;
  char *body;
  size_t len;
} chat__lws_answer;

/* lws's per-session block: the same for both protocols, since a WebSocket
 * without a subprotocol lands on protocols[0]. */
typedef struct chat__lws_pss {
  chat__lws_conn ws;
  chat__lws_req *req;
  struct lws *http_wsi;         /* the connection of a deferred request */
  bool waiting;                 /* chat_server_http() said CHAT_PENDING */
  chat__lws_answer *answer;     /* ... and this is what came */
  uint64_t rest_t0_us;          /* when the deferred request started */
} chat__lws_pss;

struct chat_lws {
  chat_allocator a;
  chat_server *srv;
  chat_lws_settings s;
  char *static_dir;       /* realpath of settings.static_dir, or NULL */
  size_t static_dir_len;

  uint32_t max_frame_bytes; /* the server's */
  uint32_t heartbeat_ms;    /* the server's */

  struct lws_protocols protocols[3];
  lws_retry_bo_t retry;   /* all zero: no validity timer */
  struct lws_context *ctx; /* ours or the host's (seen at PROTOCOL_INIT) */
  bool own_ctx;
  uint16_t port;
  unsigned int fd_cap;    /* sockets numbered at or above it are refused */
  bool draining;
  bool destroying;        /* inside chat_lws_free(): schedule nothing */

  lws_sorted_usec_list_t sul_core; /* chat_server_on_timer() */
  lws_sorted_usec_list_t sul_tick; /* heartbeats, idle sweep, buckets */
  bool core_armed, tick_armed;
  uint64_t core_at_us;      /* when sul_core fires, monotonic us */
  uint64_t next_sweep_ms;

  chat__lws_conn *conns;
  size_t n_conns;

  /* The identity checked at HTTP_CONFIRM_UPGRADE, picked up by the same
   * connection a moment later: lws runs FILTER_PROTOCOL_CONNECTION and
   * ESTABLISHED in the same call, so one slot is enough. */
  struct lws *handoff_wsi;
  chat_identity handoff_id;

  unsigned char *tx;      /* LWS_PRE + payload scratch for lws_write */
  size_t tx_cap;
  chat__buf out;          /* /metrics text */

  chat__lws_stats st;
};

/* ---- server_lws.c ---- */
uint64_t chat__lws_mono_ms(void);
uint64_t chat__lws_mono_us(void);
void chat__lws_log(chat_lws *t, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Schedule chat_server_on_timer() for the server's next deadline. */
void chat__lws_arm(chat_lws *t);
/* LWS_PRE bytes plus n, or NULL when out of memory. */
unsigned char *chat__lws_tx(chat_lws *t, size_t n);
/* The bearer token of a request: Authorization header or access_token
 * argument; 0 when there is none (or it is too long for buf). */
size_t chat__lws_token(struct lws *wsi, char *buf, size_t cap);

/* ---- http_lws.c ---- */
int chat__lws_confirm_upgrade(chat_lws *t, struct lws *wsi, const char *up);
int chat__lws_http(chat_lws *t, struct lws *wsi, chat__lws_pss *ps,
                   const char *uri, size_t len);
int chat__lws_http_body(chat_lws *t, struct lws *wsi, chat__lws_pss *ps,
                        const void *in, size_t len);
int chat__lws_http_body_done(chat_lws *t, struct lws *wsi,
                             chat__lws_pss *ps);
void chat__lws_req_free(chat_lws *t, chat__lws_pss *ps);
/* A deferred request's connection closed (or its protocol changed):
 * cancel it in the core and drop any answer. */
void chat__lws_http_forget(chat_lws *t, chat__lws_pss *ps);
/* LWS_CALLBACK_HTTP_WRITEABLE: write a deferred answer. 1: not ours. */
int chat__lws_http_writable(chat_lws *t, struct lws *wsi, chat__lws_pss *ps);
void chat__lws_on_http_response(void *user_data, chat_server *srv,
                                void *tag, const chat_http_response *resp);

/* ---- metrics.c ---- */
void chat__lws_metrics(chat_lws *t, chat__buf *out);

#endif

/* Counters, histograms and the Prometheus text of /metrics, shared by the
 * server transports (lws and epoll): the same names with the same meaning
 * whichever transport chatd runs. metrics.c writes them. */
#ifndef CHAT__TRANSPORT_METRICS_H
#define CHAT__TRANSPORT_METRICS_H

#include <chat/server.h>

#include "common/buf.h"

#define CHAT__HIST_N 15
typedef struct chat__hist {
  uint64_t le[CHAT__HIST_N + 1]; /* per bucket, the last one is +Inf */
  uint64_t count;
  uint64_t sum_us;
} chat__hist;

void chat__hist_observe(chat__hist *h, uint64_t us);

/* Close codes counted, by index (see chat__tstats_close_index). */
#define CHAT__N_CLOSE_CODES 11
/* HTTP statuses counted, by index (the last one: any other). */
#define CHAT__N_STATUS 16

typedef struct chat__tstats {
  uint64_t ws_opened;
  uint64_t ws_closed;
  uint64_t ws_bytes_in;
  uint64_t ws_bytes_out;
  uint64_t ws_messages_in;
  uint64_t ws_messages_out;
  uint64_t ws_pings;
  uint64_t ws_idle_closes;
  uint64_t ws_stalled_closes;
  uint64_t ws_closes[CHAT__N_CLOSE_CODES];
  uint64_t auth_fail_upgrade;
  uint64_t auth_fail_rest;
  uint64_t upgrades_refused; /* 4xx/5xx other than 401 before upgrade */
  uint64_t net_refused;      /* connections turned away while draining */
  uint64_t ext_declined;     /* WebSocket extensions a client offered */
  uint64_t rest_deferred;    /* REST answers that came later */
  uint64_t http[CHAT__N_STATUS];
  uint64_t http_bytes_out;
  chat__hist dispatch;       /* chat_session_on_frame() */
  chat__hist commit;         /* on_timer runs that committed, per commit */
  chat__hist rest;           /* chat_server_http() */
} chat__tstats;

size_t chat__tstats_close_index(uint16_t code);
void chat__tstats_count_status(chat__tstats *st, int status);

/* Append the core's counters and the transport's to b. */
void chat__metrics_write(chat__buf *b, const chat_server *srv,
                         const chat__tstats *st, size_t ws_open,
                         bool draining);

/* One "# HELP / # TYPE / value" block, for a transport's own extras. */
void chat__metrics_one(chat__buf *b, const char *name, const char *type,
                       const char *help, uint64_t v);
/* printf into b (lines up to 511 bytes). */
void chat__metrics_put(chat__buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif

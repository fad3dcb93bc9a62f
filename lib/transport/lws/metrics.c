/* /metrics for the libwebsockets adapter: the shared writer
 * (lib/transport/metrics.c) with this adapter's gauges. */
#include "lws_internal.h"

void chat__lws_metrics(chat_lws *t, chat__buf *b) {
  chat__metrics_write(b, t->srv, &t->st, t->n_conns, t->draining);
}

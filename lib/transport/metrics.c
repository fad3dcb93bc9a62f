/* /metrics: the server core's counters and a transport's own, in the
 * Prometheus text exposition format (version 0.0.4). Every name starts
 * with chat_. Shared by the libwebsockets and the epoll transports, so
 * both expose the same names with the same meaning. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "transport/metrics.h"

/* Histogram bucket upper bounds, in microseconds. */
static const uint64_t bounds_us[CHAT__HIST_N] = {
    50,    100,    250,    500,    1000,    2500,    5000,   10000,
    25000, 50000, 100000, 250000, 500000, 1000000, 2500000,
};

void chat__hist_observe(chat__hist *h, uint64_t us) {
  size_t i = 0;
  while (i < CHAT__HIST_N && us > bounds_us[i])
    i++;
  h->le[i]++;
  h->count++;
  h->sum_us += us;
}

static const uint16_t close_codes[CHAT__N_CLOSE_CODES - 1] = {
    1000, 1001, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 4001,
};

size_t chat__tstats_close_index(uint16_t code) {
  for (size_t i = 0; i < CHAT__N_CLOSE_CODES - 1; i++)
    if (close_codes[i] == code)
      return i;
  return CHAT__N_CLOSE_CODES - 1;
}

static const int statuses[CHAT__N_STATUS - 1] = {
    200, 201, 400, 401, 403, 404, 405, 409, 413, 414, 426, 429, 500, 501, 503,
};

void chat__tstats_count_status(chat__tstats *st, int status) {
  for (size_t i = 0; i < CHAT__N_STATUS - 1; i++)
    if (statuses[i] == status) {
      st->http[i]++;
      return;
    }
  st->http[CHAT__N_STATUS - 1]++;
}

void chat__metrics_put(chat__buf *b, const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (n > 0)
    chat__buf_append(b, line, (size_t)n < sizeof line ? (size_t)n
                                                      : sizeof line - 1);
}

void chat__metrics_one(chat__buf *b, const char *name, const char *type,
                       const char *help, uint64_t v) {
  chat__metrics_put(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name,
      type, name, v);
}

static void hist(chat__buf *b, const char *name, const char *help,
                 const chat__hist *h) {
  chat__metrics_put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0;
  for (size_t i = 0; i < CHAT__HIST_N; i++) {
    cum += h->le[i];
    chat__metrics_put(b, "%s_bucket{le=\"%g\"} %" PRIu64 "\n", name,
        (double)bounds_us[i] / 1e6, cum);
  }
  cum += h->le[CHAT__HIST_N];
  chat__metrics_put(b, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n", name, cum);
  chat__metrics_put(b, "%s_sum %.6f\n%s_count %" PRIu64 "\n", name,
      (double)h->sum_us / 1e6, name, h->count);
}

void chat__metrics_write(chat__buf *b, const chat_server *srv,
                         const chat__tstats *st, size_t ws_open,
                         bool draining) {
  chat_server_stats s = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(srv, &s);

  chat__metrics_put(b, "# HELP chat_build_info libchat version\n"
         "# TYPE chat_build_info gauge\n"
         "chat_build_info{version=\"%s\"} 1\n",
      chat_version_string());
  /* The server core. */
  chat__metrics_one(b, "chat_sessions_open", "gauge", "Device sessions open.",
         s.sessions_open);
  chat__metrics_one(b, "chat_sessions_opened_total", "counter", "Sessions opened.",
         s.sessions_opened_total);
  chat__metrics_one(b, "chat_sessions_closed_total", "counter", "Sessions closed.",
         s.sessions_closed_total);
  chat__metrics_one(b, "chat_frames_in_total", "counter", "Client frames received.",
         s.frames_in_total);
  chat__metrics_one(b, "chat_frames_out_total", "counter", "Frames queued to clients.",
         s.frames_out_total);
  chat__metrics_one(b, "chat_frames_refused_total", "counter",
         "Client frames refused (error frame or close).",
         s.frames_refused_total);
  chat__metrics_one(b, "chat_sends_committed_total", "counter",
         "Messages committed (acked).", s.sends_committed_total);
  chat__metrics_one(b, "chat_sends_duplicate_total", "counter",
         "Sends answered as duplicates.", s.sends_duplicate_total);
  chat__metrics_one(b, "chat_store_commits_total", "counter",
         "Group commits (store transactions).", s.commits_total);
  chat__metrics_one(b, "chat_store_errors_total", "counter", "Store failures.",
         s.store_errors_total);
  chat__metrics_one(b, "chat_deliveries_total", "counter",
         "Message frames queued to devices.", s.deliveries_total);
  chat__metrics_one(b, "chat_bus_published_total", "counter",
         "Messages published to other gateways.", s.bus_published_total);
  chat__metrics_one(b, "chat_bus_publish_errors_total", "counter",
         "Failed bus publishes.", s.bus_publish_errors_total);
  chat__metrics_one(b, "chat_push_total", "counter", "Push notifications handed off.",
         s.push_total);
  chat__metrics_one(b, "chat_push_errors_total", "counter", "Failed push hand-offs.",
         s.push_errors_total);
  chat__metrics_one(b, "chat_receipts_applied_total", "counter",
         "Receipt marks that advanced.", s.receipts_applied_total);
  chat__metrics_one(b, "chat_receipt_frames_total", "counter",
         "Receipt frames queued.", s.receipt_frames_total);
  chat__metrics_one(b, "chat_resume_messages_total", "counter",
         "Messages sent in resume answers.", s.resume_messages_total);
  chat__metrics_one(b, "chat_slow_reader_closes_total", "counter",
         "Sessions closed (1013) because their outbound queue was full.",
         s.slow_closes_total);
  chat__metrics_one(b, "chat_presence_online_users", "gauge",
         "Users online or idle on this gateway.", s.presence_online);
  chat__metrics_one(b, "chat_sessions_expired_total", "counter",
         "Sessions closed with 4001 because their token expired.",
         s.sessions_expired_total);
  chat__metrics_one(b, "chat_module_calls_in_flight", "gauge",
         "Module calls that answered CHAT_PENDING and have not completed.",
         s.ops_in_flight);
  chat__metrics_one(b, "chat_module_calls_pending_total", "counter",
         "Module calls that answered CHAT_PENDING.", s.ops_pending_total);
  chat__metrics_one(b, "chat_edits_committed_total", "counter",
         "Edit entries stored.", s.edits_committed_total);
  chat__metrics_one(b, "chat_deletes_committed_total", "counter",
         "Delete entries stored.", s.deletes_committed_total);
  chat__metrics_one(b, "chat_edits_refused_total", "counter",
         "Edits and deletes answered forbidden or not_found.",
         s.edits_refused_total);
  chat__metrics_one(b, "chat_system_messages_total", "counter",
         "Member and admin changes recorded as system messages.",
         s.system_messages_total);
  chat__metrics_one(b, "chat_goaway_total", "counter",
         "goaway frames sent before a drain (1012) or overload (1013) "
         "close.",
         s.goaway_total);
  chat__metrics_one(b, "chat_push_clears_total", "counter",
         "Receipt-aware push clears handed off.", s.push_clears_total);
  chat__metrics_one(b, "chat_shadow_withheld_total", "counter",
         "Messages of shadow-banned senders delivered to their own devices "
         "only.",
         s.shadow_withheld_total);
  chat__metrics_one(b, "chat_shadow_banned_users", "gauge",
         "Shadow-banned users (as last polled).", s.shadow_banned_users);
  chat__metrics_one(b, "chat_bot_reads_dropped_total", "counter",
         "Read marks of bots dropped.", s.bot_reads_dropped_total);
  chat__metrics_one(b, "chat_direct_capped_total", "counter",
         "New direct conversations refused by the daily cap (429).",
         s.direct_capped_total);

  /* The transport. */
  chat__metrics_one(b, "chat_ws_connections_open", "gauge", "WebSocket connections.",
         (uint64_t)ws_open);
  chat__metrics_one(b, "chat_ws_connections_opened_total", "counter",
         "WebSocket connections accepted.", st->ws_opened);
  chat__metrics_one(b, "chat_ws_connections_closed_total", "counter",
         "WebSocket connections ended.", st->ws_closed);
  chat__metrics_one(b, "chat_ws_received_bytes_total", "counter",
         "WebSocket payload bytes received.", st->ws_bytes_in);
  chat__metrics_one(b, "chat_ws_sent_bytes_total", "counter",
         "WebSocket payload bytes sent.", st->ws_bytes_out);
  chat__metrics_one(b, "chat_ws_messages_received_total", "counter",
         "Whole WebSocket messages received.", st->ws_messages_in);
  chat__metrics_one(b, "chat_ws_messages_sent_total", "counter",
         "WebSocket messages written.", st->ws_messages_out);
  chat__metrics_one(b, "chat_ws_pings_sent_total", "counter",
         "Heartbeat pings to silent peers.", st->ws_pings);
  chat__metrics_one(b, "chat_ws_idle_closes_total", "counter",
         "Connections cut after the idle timeout.", st->ws_idle_closes);
  chat__metrics_one(b, "chat_ws_stalled_closes_total", "counter",
         "Connections cut because their close could not be written.",
         st->ws_stalled_closes);
  chat__metrics_put(b, "# HELP chat_ws_closes_total Close frames sent, by code.\n"
         "# TYPE chat_ws_closes_total counter\n");
  for (size_t i = 0; i < CHAT__N_CLOSE_CODES; i++) {
    if (i < CHAT__N_CLOSE_CODES - 1)
      chat__metrics_put(b, "chat_ws_closes_total{code=\"%u\"} %" PRIu64 "\n",
          (unsigned)close_codes[i], st->ws_closes[i]);
    else
      chat__metrics_put(b, "chat_ws_closes_total{code=\"other\"} %" PRIu64 "\n",
          st->ws_closes[i]);
  }
  chat__metrics_put(b, "# HELP chat_auth_failures_total Refused tokens.\n"
         "# TYPE chat_auth_failures_total counter\n"
         "chat_auth_failures_total{where=\"upgrade\"} %" PRIu64 "\n"
         "chat_auth_failures_total{where=\"rest\"} %" PRIu64 "\n",
      st->auth_fail_upgrade, st->auth_fail_rest);
  chat__metrics_one(b, "chat_upgrades_refused_total", "counter",
         "Upgrade requests refused for other reasons than the token.",
         st->upgrades_refused);
  chat__metrics_one(b, "chat_connections_refused_total", "counter",
         "TCP connections turned away while draining.", st->net_refused);
  chat__metrics_put(b, "# HELP chat_http_responses_total HTTP answers, by status.\n"
         "# TYPE chat_http_responses_total counter\n");
  for (size_t i = 0; i < CHAT__N_STATUS; i++) {
    if (i < CHAT__N_STATUS - 1)
      chat__metrics_put(b, "chat_http_responses_total{status=\"%d\"} %" PRIu64 "\n",
          statuses[i], st->http[i]);
    else
      chat__metrics_put(b, "chat_http_responses_total{status=\"other\"} %" PRIu64 "\n",
          st->http[i]);
  }
  chat__metrics_one(b, "chat_http_sent_bytes_total", "counter",
         "HTTP body bytes sent (static files excluded).", st->http_bytes_out);
  chat__metrics_one(b, "chat_rest_rate_limited_total", "counter",
         "REST requests answered 429.", s.rest_limited_total);
  chat__metrics_one(b, "chat_rest_deferred_total", "counter",
         "REST answers that waited on a module.", st->rest_deferred);
  chat__metrics_one(b, "chat_ws_extensions_declined_total", "counter",
         "WebSocket extensions offered by clients and declined.",
         st->ext_declined);
  chat__metrics_one(b, "chat_draining", "gauge", "1 while shutting down.",
         draining ? 1 : 0);
  hist(b, "chat_dispatch_seconds",
       "Time in chat_session_on_frame() per client frame.", &st->dispatch);
  hist(b, "chat_commit_seconds",
       "Group commit time per transaction: store commit, acks and fan-out.",
       &st->commit);
  hist(b, "chat_rest_seconds", "Time in chat_server_http() per request.",
       &st->rest);
}

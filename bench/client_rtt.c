/* client-rtt: the C client SDK's send -> ack round trip against a running
 * server, the baseline the language bindings' benchmarks are compared
 * with (bench/bindings.sh runs them side by side).
 *
 *   client-rtt --url ws://127.0.0.1:PORT --token TOKEN --peer USER
 *              [--n 1000] [--window 32] [--msgs 5000]
 *
 * One chat_client on an in-memory store, driven by the libwebsockets
 * runner (include/chat/client_lws.h), opens the direct conversation with
 * PEER, then
 *   1. sends N messages one after the other, each when the previous one
 *      was acked, timing every send -> ack round trip (p50, p99);
 *   2. sends MSGS messages keeping WINDOW unacked at all times, and
 *      reports the acked messages per second.
 * It prints one JSON line (the format of bench/bindings.sh):
 *   {"lang":"c","n":N,"rtt_p50_us":..,"rtt_p99_us":..,"window":W,
 *    "msgs":M,"msgs_per_s":..}
 * The server must allow the rate (chatd --rate-per-minute). */
#include <chat/client.h>
#include <chat/client_lws.h>
#include <chat/sqlite.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum phase { OPENING, RTT, WINDOW, DONE, FAILED };

typedef struct bench {
  chat_client_lws *runner;
  enum phase phase;
  const char *peer;
  char conv[65]; /* an id (PROTOCOL.md section 1) and its NUL */
  uint32_t create_req;
  unsigned n, window, msgs;
  unsigned sent, acked;
  uint64_t t_sent; /* ns, the RTT phase's send in flight */
  uint64_t *rtt;   /* ns, one per RTT send */
  uint64_t t0, t1; /* ns, the window phase */
} bench;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(bench *b, const char *what) {
  fprintf(stderr, "client-rtt: %s\n", what);
  b->phase = FAILED;
  chat_client_lws_quit(b->runner);
}

static void send_one(bench *b, chat_client *c) {
  char body[32];
  snprintf(body, sizeof body, "bench-%u", b->sent);
  if (b->phase == RTT)
    b->t_sent = now_ns();
  chat_err e = chat_client_send(c, b->conv, body, strlen(body), NULL,
                                chat_client_lws_now());
  if (e != CHAT_OK) {
    fail(b, chat_client_errmsg(c));
    return;
  }
  b->sent++;
}

static void on_connection(void *ud, chat_client *c, chat_client_state s) {
  bench *b = ud;
  if (s == CHAT_CLIENT_READY && b->phase == OPENING && !b->create_req) {
    const char *members[1] = {b->peer};
    if (chat_client_create_conversation(c, NULL, members, 1, &b->create_req,
                                        chat_client_lws_now()) != CHAT_OK)
      fail(b, chat_client_errmsg(c));
  } else if (s == CHAT_CLIENT_UNAUTHORIZED) {
    fail(b, "the token was refused");
  }
}

static void on_conversation(void *ud, chat_client *c,
                            const chat_conversation *cv) {
  bench *b = ud;
  (void)c;
  if (b->phase == OPENING)
    snprintf(b->conv, sizeof b->conv, "%s", cv->conversation_id);
}

static void on_request_done(void *ud, chat_client *c, uint32_t id,
                            chat_err r) {
  bench *b = ud;
  if (id != b->create_req || b->phase != OPENING)
    return;
  if (r != CHAT_OK || !b->conv[0]) {
    fail(b, "cannot open the conversation");
    return;
  }
  b->phase = RTT;
  send_one(b, c);
}

static void on_ack(void *ud, chat_client *c, const chat_ack *a) {
  bench *b = ud;
  (void)a;
  uint64_t t = now_ns();
  if (b->phase == RTT) {
    b->rtt[b->acked++] = t - b->t_sent;
    if (b->acked < b->n) {
      send_one(b, c);
      return;
    }
    b->phase = WINDOW;
    b->sent = b->acked = 0;
    b->t0 = t;
    while (b->sent < b->window && b->sent < b->msgs && b->phase == WINDOW)
      send_one(b, c);
  } else if (b->phase == WINDOW) {
    b->acked++;
    if (b->acked == b->msgs) {
      b->t1 = t;
      b->phase = DONE;
      chat_client_lws_quit(b->runner);
    } else if (b->sent < b->msgs) {
      send_one(b, c);
    }
  }
}

static void on_error(void *ud, chat_client *c, const chat_client_error *e) {
  (void)c;
  bench *b = ud;
  if (e->wire && !e->retrying)
    fail(b, e->message);
}

static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}

static uint64_t pct(const uint64_t *v, unsigned n, unsigned p) {
  unsigned i = (unsigned)(((uint64_t)n * p + 99) / 100);
  return v[i ? i - 1 : 0];
}

int main(int argc, char **argv) {
  const char *url = NULL, *token = NULL, *peer = NULL;
  bench b = {.n = 1000, .window = 32, .msgs = 5000};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--url") == 0)
      url = argv[i + 1];
    else if (strcmp(argv[i], "--token") == 0)
      token = argv[i + 1];
    else if (strcmp(argv[i], "--peer") == 0)
      peer = argv[i + 1];
    else if (strcmp(argv[i], "--n") == 0)
      b.n = (unsigned)strtoul(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--window") == 0)
      b.window = (unsigned)strtoul(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--msgs") == 0)
      b.msgs = (unsigned)strtoul(argv[i + 1], NULL, 10);
    else
      break;
  }
  if (!url || !token || !peer || !b.n || !b.window || !b.msgs) {
    fprintf(stderr, "usage: client-rtt --url ws://HOST:PORT --token TOKEN "
                    "--peer USER [--n N] [--window W] [--msgs M]\n");
    return 2;
  }
  b.peer = peer;
  b.rtt = calloc(b.n, sizeof *b.rtt);
  if (!b.rtt)
    return 1;

  chat_errbuf err;
  chat_env env;
  chat_env_system(&env);
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1, .env = &env};
  chat_client_callbacks cb = {.version = CHAT_CLIENT_CALLBACKS_V1,
                              .on_connection = on_connection,
                              .on_conversation = on_conversation,
                              .on_request_done = on_request_done,
                              .on_ack = on_ack,
                              .on_error = on_error};
  chat_client_store_ops store;
  if (chat_sqlite_client_store_open(&store, ":memory:", NULL, &err))
    return fprintf(stderr, "client-rtt: %s\n", err.msg), 1;
  chat_client *c;
  if (chat_client_new(&c, &s, &store, &cb, &b, NULL, &err)) {
    store.destroy(store.self);
    return fprintf(stderr, "client-rtt: %s\n", err.msg), 1;
  }
  chat_client_set_token(c, token, strlen(token), chat_client_lws_now());
  chat_client_lws_settings ls = {.version = CHAT_CLIENT_LWS_SETTINGS_V1,
                                 .url = url};
  if (chat_client_lws_new(&b.runner, c, &ls, NULL, &err)) {
    chat_client_free(c);
    return fprintf(stderr, "client-rtt: %s\n", err.msg), 1;
  }
  chat_client_start(c, chat_client_lws_now());
  chat_err rc = chat_client_lws_run(b.runner);
  chat_client_lws_stop(b.runner);
  chat_client_lws_free(b.runner);
  chat_client_free(c);
  if (rc != CHAT_OK || b.phase != DONE) {
    free(b.rtt);
    fprintf(stderr, "client-rtt: did not finish (%s)\n", chat_err_name(rc));
    return 1;
  }
  qsort(b.rtt, b.n, sizeof *b.rtt, cmp_u64);
  double secs = (double)(b.t1 - b.t0) / 1e9;
  printf("{\"lang\":\"c\",\"n\":%u,\"rtt_p50_us\":%.1f,\"rtt_p99_us\":%.1f,"
         "\"window\":%u,\"msgs\":%u,\"msgs_per_s\":%.0f}\n",
         b.n, (double)pct(b.rtt, b.n, 50) / 1e3,
         (double)pct(b.rtt, b.n, 99) / 1e3, b.window, b.msgs,
         (double)b.msgs / secs);
  free(b.rtt);
  return 0;
}

/* Server core throughput without sockets: what the message service itself
 * costs, on the embedded SQLite store in a real file.
 *
 *   direct:  P pairs, each sender keeping W sends in flight, M messages in
 *            all; durable (acked) messages/s, with group commit (default
 *            max_batch) and with one commit per message (max_batch=1).
 *   group:   one message to a G-member group with every member online;
 *            deliveries/s of the fan-out.
 *
 * Each figure is the median of RUNS runs with min-max. Usage:
 *   bench-server [runs] [messages] [sync: full|normal]   (5 20000 full) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <chat/chat.h>
#include <chat/server.h>
#include <chat/sqlite.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static chat_time_ms now_ms(void) { return (chat_time_ms)(now_s() * 1000); }

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct bench {
  chat_server *srv;
  char path[64];
  chat_session **sess;
  size_t n_sess;
  size_t frames_out;
  size_t acks;
} bench;

static chat_sqlite_sync sync_mode = CHAT_SQLITE_SYNC_FULL;

static void open_server(bench *b, uint32_t max_batch) {
  memset(b, 0, sizeof *b);
  snprintf(b->path, sizeof b->path, "/tmp/bench-server-%d.db", (int)getpid());
  unlink(b->path);
  chat_storage_ops st;
  chat_sqlite_options o = {.version = CHAT_SQLITE_OPTIONS_V1,
                           .sync = sync_mode};
  if (chat_sqlite_storage_open(&st, b->path, &o, NULL, NULL) != CHAT_OK)
    exit(1);
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .rate_per_minute = 1000000000,
                            .max_batch = max_batch,
                            .max_queued_frames = 1u << 20,
                            .max_queued_bytes = 1u << 30,
                            .max_group_members = 4096};
  static chat_env env;
  s.env = &env;
  chat_server_modules m = {.version = CHAT_SERVER_MODULES_V1,
                           .storage = &st};
  chat_errbuf eb;
  if (chat_env_system(&env) != CHAT_OK ||
      chat_server_new(&b->srv, &s, &m, NULL, NULL, NULL, &eb) != CHAT_OK) {
    fprintf(stderr, "bench-server: %s\n", eb.msg);
    exit(1);
  }
}

static void close_server(bench *b) {
  chat_server_free(b->srv);
  free(b->sess);
  char p[80];
  unlink(b->path);
  snprintf(p, sizeof p, "%s-wal", b->path);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", b->path);
  unlink(p);
}

static chat_session *open_dev(bench *b, const char *user, const char *dev) {
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  snprintf(id.user_id, sizeof id.user_id, "%s", user);
  snprintf(id.device_id, sizeof id.device_id, "%s", dev);
  chat_session *s;
  if (chat_server_open_session(b->srv, &s, &id, NULL, now_ms()) != CHAT_OK)
    exit(1);
  b->sess = realloc(b->sess, (b->n_sess + 1) * sizeof *b->sess);
  b->sess[b->n_sess++] = s;
  return s;
}

/* Drain every session, counting frames and acks, as a transport would. */
static void pump(bench *b) {
  for (size_t i = 0; i < b->n_sess; i++) {
    const char *j;
    size_t n;
    while (chat_session_next_frame(b->sess[i], &j, &n) == CHAT_OK) {
      b->frames_out++;
      if (n > 12 && memcmp(j, "{\"type\":\"ack\"", 13) == 0)
        b->acks++;
    }
  }
}

static void create(bench *b, const char *creator, const char *body,
                   char *out_id) {
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  snprintf(id.user_id, sizeof id.user_id, "%s", creator);
  snprintf(id.device_id, sizeof id.device_id, "rest");
  chat_http_request rq = {.version = CHAT_HTTP_REQUEST_V1, .method = "POST", .path = "/api/v1/conversations",
                          .body = body, .body_len = strlen(body),
                          .identity = &id};
  chat_http_response rs = {.version = CHAT_HTTP_RESPONSE_V1};
  chat_server_http(b->srv, &rq, &rs, now_ms());
  const char *p = strstr((const char *)rs.body, "\"conversation_id\":\"");
  if (rs.status >= 300 || !p)
    exit(1);
  p += 19;
  size_t n = strcspn(p, "\"");
  memcpy(out_id, p, n);
  out_id[n] = 0;
}

/* P pairs, W in flight per sender, M messages: acked messages/s. */
static double run_direct(uint32_t max_batch, int pairs, int window, int m) {
  bench b;
  open_server(&b, max_batch);
  char (*conv)[65] = calloc((size_t)pairs, sizeof *conv);
  chat_session **senders = calloc((size_t)pairs, sizeof *senders);
  for (int p = 0; p < pairs; p++) {
    char a[16], r[16], body[96];
    snprintf(a, sizeof a, "s%d", p);
    snprintf(r, sizeof r, "r%d", p);
    snprintf(body, sizeof body, "{\"type\":\"direct\",\"members\":[\"%s\"]}",
             r);
    create(&b, a, body, conv[p]);
    senders[p] = open_dev(&b, a, "d");
    open_dev(&b, r, "d");
  }
  pump(&b);
  b.acks = 0;
  char body[64];
  memset(body, 'x', sizeof body);
  body[sizeof body - 1] = 0;
  int sent = 0;
  char frame[512];
  double t0 = now_s();
  while ((int)b.acks < m) {
    /* Each sender tops its window up; then one timer round commits. */
    int in_flight = sent - (int)b.acks;
    for (int p = 0; p < pairs && sent < m; p++)
      for (int w = in_flight / pairs; w < window && sent < m; w++) {
        int n = snprintf(frame, sizeof frame,
                         "{\"type\":\"send\",\"client_msg_id\":\"m%d\","
                         "\"conversation_id\":\"%s\",\"body\":\"%s\"}",
                         sent, conv[p], body);
        chat_session_on_frame(senders[p], frame, (size_t)n, now_ms());
        sent++;
      }
    chat_server_on_timer(b.srv, now_ms());
    pump(&b);
  }
  double rate = m / (now_s() - t0);
  free(conv);
  free(senders);
  close_server(&b);
  return rate;
}

/* One message to a g-member group, everyone online: deliveries/s. */
static double run_group(int g) {
  bench b;
  open_server(&b, 0);
  size_t cap = (size_t)g * 16 + 64;
  char *body = malloc(cap);
  size_t k = (size_t)snprintf(body, cap, "{\"type\":\"group\",\"members\":[");
  for (int i = 1; i < g; i++)
    k += (size_t)snprintf(body + k, cap - k, "%s\"u%d\"", i > 1 ? "," : "",
                          i);
  snprintf(body + k, cap - k, "]}");
  char conv[65];
  create(&b, "u0", body, conv);
  free(body);
  chat_session *sender = open_dev(&b, "u0", "d");
  for (int i = 1; i < g; i++) {
    char u[16];
    snprintf(u, sizeof u, "u%d", i);
    open_dev(&b, u, "d");
  }
  pump(&b);
  b.frames_out = 0;
  char frame[256];
  int msgs = 20;
  double t0 = now_s();
  for (int i = 0; i < msgs; i++) {
    int n = snprintf(frame, sizeof frame,
                     "{\"type\":\"send\",\"client_msg_id\":\"g%d\","
                     "\"conversation_id\":\"%s\",\"body\":\"hello group\"}",
                     i, conv);
    chat_session_on_frame(sender, frame, (size_t)n, now_ms());
    chat_server_on_timer(b.srv, now_ms());
    pump(&b);
  }
  double rate = (double)(b.frames_out - (size_t)msgs) / (now_s() - t0);
  close_server(&b);
  return rate;
}

static void report(const char *name, double *r, int runs) {
  qsort(r, (size_t)runs, sizeof *r, cmp_d);
  printf("  %-44s %10.0f /s  [%.0f-%.0f]\n", name, r[runs / 2], r[0],
         r[runs - 1]);
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 5;
  int m = argc > 2 ? atoi(argv[2]) : 20000;
  if (argc > 3 && strcmp(argv[3], "normal") == 0)
    sync_mode = CHAT_SQLITE_SYNC_NORMAL;
  if (runs < 1 || runs > 31 || m < 100) {
    fprintf(stderr, "usage: bench-server [runs 1..31] [messages >= 100] "
                    "[full|normal]\n");
    return 2;
  }
  printf("libchat %s server core, SQLite synchronous=%s, %d runs, median "
         "[min-max]\n",
         chat_version_string(),
         sync_mode == CHAT_SQLITE_SYNC_FULL ? "FULL" : "NORMAL", runs);
  double r[31];
  for (int i = 0; i < runs; i++)
    r[i] = run_direct(0, 50, 10, m);
  report("direct 50x10, group commit: acked msg", r, runs);
  int m1 = m / 10 > 200 ? m / 10 : 200;
  for (int i = 0; i < runs; i++)
    r[i] = run_direct(1, 50, 10, m1);
  report("direct 50x10, one commit per msg: acked msg", r, runs);
  for (int i = 0; i < runs; i++)
    r[i] = run_group(1000);
  report("group of 1000, all online: deliveries", r, runs);
  return 0;
}

/* Append throughput of the SQLite store: messages per second committed
 * with batches of 1 and 64 messages, under synchronous FULL and NORMAL.
 * Every append call is one transaction, so a batch of 64 pays for one
 * commit (one fsync under FULL) where a batch of 1 pays for one each.
 *
 *   bench-store [DIR [SECONDS]]
 *
 * The database files are created in DIR (default: $TMPDIR or /tmp), which
 * should be on the disk being measured; each configuration runs for about
 * SECONDS (default 1) three times and the median is reported. */
#include <chat/sqlite.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUNS 3
#define BATCH_MAX 64

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void remove_db(const char *path) {
  static const char *const suffix[] = {"", "-wal", "-shm"};
  char p[4200];
  for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
}

/* Messages per second for one configuration, or a negative value. */
static double run_once(const char *path, chat_sqlite_sync sync, int batch,
                       double seconds) {
  remove_db(path);
  chat_sqlite_options o = {CHAT_SQLITE_OPTIONS_V1, sync, 0};
  chat_storage_ops ops;
  chat_err e = chat_sqlite_storage_open(&ops, path, &o, NULL, NULL);
  if (e != CHAT_OK) {
    fprintf(stderr, "open %s: %s\n", path, chat_strerror(e));
    return -1;
  }
  const char *const members[] = {"alice", "bob"};
  chat_conversation_new c = {0};
  c.conversation_id = "bench";
  c.type = CHAT_CONVERSATION_DIRECT;
  c.created_by = "alice";
  c.members = members;
  c.n_members = 2;
  c.now_ms = 1;
  if ((e = ops.conversation_create(ops.self, &c, NULL, NULL, NULL, NULL))) {
    fprintf(stderr, "create: %s\n", chat_strerror(e));
    ops.destroy(ops.self);
    return -1;
  }
  static const char body[] = "a typical short chat message, some 60 bytes";
  char cmid[BATCH_MAX][24];
  chat_msg_in m[BATCH_MAX];
  chat_append_result r[BATCH_MAX];
  uint64_t next = 1;
  double start = now_s(), elapsed = 0;
  while (elapsed < seconds) {
    for (int i = 0; i < batch; i++, next++) {
      snprintf(cmid[i], sizeof cmid[i], "c%llu", (unsigned long long)next);
      memset(&m[i], 0, sizeof m[i]);
      m[i].message_id = next;
      m[i].server_ts = (int64_t)next;
      m[i].conversation_id = "bench";
      m[i].sender_id = "alice";
      m[i].client_msg_id = cmid[i];
      m[i].body.ptr = body;
      m[i].body.len = sizeof body - 1;
    }
    if ((e = ops.append(ops.self, m, (size_t)batch, r, NULL))) {
      fprintf(stderr, "append: %s\n", chat_strerror(e));
      ops.destroy(ops.self);
      return -1;
    }
    elapsed = now_s() - start;
  }
  ops.destroy(ops.self);
  remove_db(path);
  return (double)(next - 1) / elapsed;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : getenv("TMPDIR");
  if (!dir || !*dir)
    dir = "/tmp";
  double seconds = argc > 2 ? atof(argv[2]) : 1.0;
  if (seconds <= 0)
    seconds = 1.0;
  char path[4096];
  snprintf(path, sizeof path, "%s/bench-store-%ld.db", dir, (long)getpid());

  static const struct {
    chat_sqlite_sync sync;
    const char *name;
  } syncs[] = {{CHAT_SQLITE_SYNC_FULL, "FULL"},
               {CHAT_SQLITE_SYNC_NORMAL, "NORMAL"}};
  static const int batches[] = {1, 64};
  printf("%-8s %6s %14s %14s\n", "sync", "batch", "appends/s", "commits/s");
  for (size_t s = 0; s < 2; s++) {
    for (size_t b = 0; b < 2; b++) {
      double v[RUNS];
      for (int i = 0; i < RUNS; i++)
        if ((v[i] = run_once(path, syncs[s].sync, batches[b], seconds)) < 0)
          return 1;
      qsort(v, RUNS, sizeof *v, cmp_double);
      printf("%-8s %6d %14.0f %14.0f\n", syncs[s].name, batches[b],
             v[RUNS / 2], v[RUNS / 2] / batches[b]);
    }
  }
  return 0;
}

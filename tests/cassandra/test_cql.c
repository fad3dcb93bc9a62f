/* The chat__cql surface (lib/backends/cassandra/cql) against a real
 * Cassandra node or ring that scripts/services/svc.sh started; this program
 * starts nothing. Environment:
 *   CHAT_CQL_HOSTS  contact points, host:port,... (unset: the test skips)
 *   CHAT_CQL_RF     replication factor for the test keyspace (1, or 3 on
 *                   the 3-node ring) [1]
 * It creates its own keyspace (chat_test_<pid>_<time>), the seed's
 * `messages` and `group_receipts` tables (90-day default TTL on the
 * latter), writes through prepared statements at QUORUM (asynchronously,
 * with callbacks on the driver's threads), reads a partition back page by
 * page, checks TTLs and their expiry, the error paths, and that close
 * waits for executions in flight; then drops the keyspace. TAP output. */
#include "cql.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int tap_n;
static int tap_failed;

static void ok(int cond, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));

static void ok(int cond, const char *fmt, ...) {
  va_list ap;
  tap_n++;
  printf("%s %d - ", cond ? "ok" : "not ok", tap_n);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
  if (!cond)
    tap_failed++;
}

static void bail(const char *what, const chat__cql_error *e) {
  printf("Bail out! %s: %s (%s)\n", what, e->message,
         chat__cql_code_name(e->code));
  exit(1);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char keyspace[64];
static chat__cql_session *sess;

/* DDL and other one-off statements; bails out on failure. */
static void exec_ddl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void exec_ddl(const char *fmt, ...) {
  char cql[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cql, sizeof cql, fmt, ap);
  va_end(ap);
  chat__cql_result *r = NULL;
  chat__cql_error e;
  if (chat__cql_query_wait(sess, cql, CHAT__CQL_DEFAULT, &r, &e) != 0)
    bail(cql, &e);
  chat__cql_result_free(r);
}

static chat__cql_prepared *prepare(const char *cql, chat__cql_consistency cl,
                                   int32_t page_size) {
  chat__cql_prepared *p = NULL;
  chat__cql_error e;
  if (chat__cql_prepare(sess, cql, cl, page_size, CHAT__CQL_IDEMPOTENT, &p,
                        &e) != 0)
    bail(cql, &e);
  return p;
}

/* ------------------------------------------------ async bookkeeping -- */

/* Counts completions; the main thread waits on it with a deadline. */
typedef struct waiter {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
  int failed;
  int off_main;        /* completions that ran on another thread */
  int last_code;
  char last_msg[500];
  pthread_t main_thread;
  chat__cql_result *kept; /* the last result, when asked to keep it */
  int keep;
  int nested_wait_rc;  /* a *_wait call made inside the callback */
  int try_nested;
} waiter;

static void waiter_init(waiter *w) {
  memset(w, 0, sizeof *w);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->main_thread = pthread_self();
}

static void waiter_fini(waiter *w) {
  chat__cql_result_free(w->kept);
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
}

static void on_done(void *user_data, const chat__cql_error *err,
                    chat__cql_result *result) {
  waiter *w = user_data;
  int nested = 0;
  if (w->try_nested) {
    chat__cql_result *r = NULL;
    chat__cql_error e;
    nested = chat__cql_query_wait(sess, "SELECT now() FROM system.local",
                                  CHAT__CQL_ONE, &r, &e);
    chat__cql_result_free(r);
  }
  pthread_mutex_lock(&w->mu);
  if (!pthread_equal(pthread_self(), w->main_thread))
    w->off_main++;
  if (err->code != CHAT__CQL_OK) {
    w->failed++;
    w->last_code = err->code;
    snprintf(w->last_msg, sizeof w->last_msg, "%s", err->message);
  }
  if (w->try_nested)
    w->nested_wait_rc = nested;
  if (w->keep && result) {
    chat__cql_result_free(w->kept);
    w->kept = result;
    result = NULL;
  }
  w->done++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  chat__cql_result_free(result);
}

/* Wait until `n` completions arrived or `seconds` passed. */
static int waiter_wait(waiter *w, int n, int seconds) {
  struct timespec dl;
  clock_gettime(CLOCK_REALTIME, &dl);
  dl.tv_sec += seconds;
  pthread_mutex_lock(&w->mu);
  while (w->done < n) {
    if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) != 0)
      break;
  }
  int got = w->done;
  pthread_mutex_unlock(&w->mu);
  return got;
}

/* ------------------------------------------------------------ tests -- */

enum { N_MSG = 250, PAGE = 100, N_MEMBERS = 50 };
static const int64_t base_ts = 1767225600000; /* 2026-01-01T00:00:00Z */

static void body_of(int i, char *buf, size_t n) {
  snprintf(buf, n, "message %d: h\xc3\xa9llo", i);
}

static void test_messages(void) {
  chat__cql_prepared *ins = prepare(
    "INSERT INTO messages (conversation_id, message_id, sender_id,"
    " client_msg_id, body, body_type, media_refs, reply_to, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", CHAT__CQL_QUORUM, 0);
  ok(chat__cql_prepared_params(ins) == 9, "the insert has 9 bind markers");

  /* Every write asynchronously, all in flight at once: execute returns
   * before the result, and the callbacks run on the driver's threads. */
  waiter w;
  waiter_init(&w);
  chat__cql_values *v = chat__cql_values_new(9);
  int accepted = 0;
  int64_t t0 = now_ms();
  for (int i = 1; i <= N_MSG; i++) {
    char body[64], cmid[32];
    body_of(i, body, sizeof body);
    snprintf(cmid, sizeof cmid, "c-%d", i);
    const char *refs[2] = {"media/a", "media/b"};
    const size_t lens[2] = {7, 7};
    chat__cql_values_text(v, 0, "conv-1", 6);
    chat__cql_values_bigint(v, 1, 1000 + i);
    chat__cql_values_bigint(v, 2, 42);
    chat__cql_values_text(v, 3, cmid, strlen(cmid));
    chat__cql_values_text(v, 4, body, strlen(body));
    chat__cql_values_smallint(v, 5, 1);
    chat__cql_values_text_list(v, 6, refs, lens, (size_t)(i % 3));
    if (i % 2)
      chat__cql_values_null(v, 7);
    else
      chat__cql_values_bigint(v, 7, 1000 + i - 1);
    chat__cql_values_timestamp(v, 8, base_ts + i);
    if (chat__cql_execute(sess, ins, v, NULL, 0, on_done, &w) == 0)
      accepted++;
  }
  int got = waiter_wait(&w, accepted, 60);
  int64_t dt = now_ms() - t0;
  ok(accepted == N_MSG, "%d of %d async inserts accepted", accepted, N_MSG);
  ok(got == N_MSG && w.failed == 0,
     "%d completions, %d failed (last: %s) in %" PRId64 " ms", got,
     w.failed, w.last_msg, dt);
  ok(w.off_main == got, "every callback ran off the calling thread (%d/%d)",
     w.off_main, got);
  /* An execution counts as in flight until its callback has returned,
   * which is a moment after the last one signalled us. */
  size_t left = chat__cql_inflight(sess);
  for (int i = 0; i < 100 && left > 0; i++) {
    nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    left = chat__cql_inflight(sess);
  }
  ok(left == 0, "nothing in flight once the callbacks returned");
  waiter_fini(&w);

  /* Page by page, newest first (CLUSTERING ORDER BY message_id DESC). */
  chat__cql_prepared *sel = prepare(
    "SELECT message_id, body, body_type, media_refs, reply_to, created_at,"
    " sender_id FROM messages WHERE conversation_id = ?", CHAT__CQL_QUORUM,
    PAGE);
  chat__cql_values *k = chat__cql_values_new(1);
  chat__cql_values_text(k, 0, "conv-1", 6);
  uint8_t *state = NULL;
  size_t state_len = 0;
  int pages = 0, rows = 0, bad = 0;
  int64_t expect = 1000 + N_MSG;
  size_t page_rows[8] = {0};
  for (;;) {
    chat__cql_result *r = NULL;
    chat__cql_error e;
    if (chat__cql_execute_wait(sess, sel, k, state, state_len, &r, &e) != 0)
      bail("page", &e);
    if (pages < 8)
      page_rows[pages] = chat__cql_result_rows(r);
    pages++;
    int c_id = chat__cql_result_column_index(r, "message_id");
    int c_body = chat__cql_result_column_index(r, "body");
    int c_type = chat__cql_result_column_index(r, "body_type");
    int c_refs = chat__cql_result_column_index(r, "media_refs");
    int c_reply = chat__cql_result_column_index(r, "reply_to");
    int c_ts = chat__cql_result_column_index(r, "created_at");
    for (size_t i = 0; i < chat__cql_result_rows(r); i++, rows++) {
      int64_t id = 0, ts = 0, reply = 0;
      int16_t type = 0;
      const char *s = NULL;
      size_t len = 0, nrefs = 9;
      char want[64];
      int n = (int)(expect - 1000);
      body_of(n, want, sizeof want);
      if (chat__cql_result_bigint(r, i, (size_t)c_id, &id) != 0 || id != expect)
        bad++;
      if (chat__cql_result_text(r, i, (size_t)c_body, &s, &len) != 0 ||
          len != strlen(want) || memcmp(s, want, len) != 0 || s[len] != '\0')
        bad++;
      if (chat__cql_result_smallint(r, i, (size_t)c_type, &type) != 0 ||
          type != 1)
        bad++;
      if (chat__cql_result_timestamp(r, i, (size_t)c_ts, &ts) != 0 ||
          ts != base_ts + n)
        bad++;
      if (chat__cql_result_list_len(r, i, (size_t)c_refs, &nrefs) != 0 ||
          nrefs != (size_t)(n % 3))
        bad++;
      if (nrefs == 2 &&
          (chat__cql_result_list_text(r, i, (size_t)c_refs, 1, &s, &len) != 0 ||
           len != 7 || memcmp(s, "media/b", 7) != 0))
        bad++;
      int rc = chat__cql_result_bigint(r, i, (size_t)c_reply, &reply);
      if (n % 2 ? rc != CHAT__CQL_ENULL : (rc != 0 || reply != expect - 1))
        bad++;
      expect--;
    }
    const uint8_t *st;
    size_t st_len;
    int more = chat__cql_result_paging_state(r, &st, &st_len);
    free(state);
    state = NULL;
    state_len = 0;
    if (more) {
      state = malloc(st_len);
      memcpy(state, st, st_len);
      state_len = st_len;
    }
    if (pages == 1) {
      /* Getter discipline on a real row. */
      const char *s;
      size_t len;
      int64_t x;
      ok(chat__cql_result_text(r, 0, (size_t)c_id, &s, &len) == CHAT__CQL_ETYPE,
         "text getter on a bigint column: ETYPE");
      ok(chat__cql_result_bigint(r, 0, 99, &x) == CHAT__CQL_ERANGE &&
         chat__cql_result_bigint(r, 9999, 0, &x) == CHAT__CQL_ERANGE,
         "out-of-range column and row: ERANGE");
      ok(chat__cql_result_is_null(r, 0, (size_t)c_reply) == 0 &&
         chat__cql_result_is_null(r, 1, (size_t)c_reply) == 1,
         "is_null tells the bound reply_to from the null one");
      ok(strcmp(chat__cql_result_column_name(r, 0), "message_id") == 0 &&
         chat__cql_result_column_name(r, 99) == NULL &&
         chat__cql_result_column_index(r, "nope") == -1,
         "column names and indexes");
    }
    chat__cql_result_free(r);
    if (!more || pages > 10)
      break;
  }
  ok(pages == 3 && page_rows[0] == PAGE && page_rows[1] == PAGE &&
     page_rows[2] == N_MSG - 2 * PAGE,
     "read in %d pages of %zu, %zu, %zu rows", pages, page_rows[0],
     page_rows[1], page_rows[2]);
  ok(rows == N_MSG && bad == 0,
     "%d rows back, newest first, every column as written (%d mismatches)",
     rows, bad);

  /* An async page read, whose result the callback hands over. */
  waiter_init(&w);
  w.keep = 1;
  int rc = chat__cql_execute(sess, sel, k, NULL, 0, on_done, &w);
  got = waiter_wait(&w, 1, 30);
  ok(rc == 0 && got == 1 && w.failed == 0 && w.kept &&
     chat__cql_result_rows(w.kept) == PAGE &&
     chat__cql_result_paging_state(w.kept, NULL, NULL),
     "async read: first page of %d rows with a paging state", PAGE);
  waiter_fini(&w);

  chat__cql_values_free(k);
  chat__cql_values_free(v);
  chat__cql_prepared_free(sel);
  chat__cql_prepared_free(ins);
}

static void test_receipts(void) {
  chat__cql_prepared *ins = prepare(
    "INSERT INTO group_receipts (conversation_id, message_id, member_id,"
    " state, state_ts) VALUES (?, ?, ?, ?, ?)", CHAT__CQL_QUORUM, 0);
  /* One partition per (conversation, message): an unlogged batch is
   * atomic within it and costs one write path. */
  chat__cql_batch *b = chat__cql_batch_new(CHAT__CQL_UNLOGGED,
                                           CHAT__CQL_QUORUM);
  chat__cql_values *v = chat__cql_values_new(5);
  for (int m = 1; m <= N_MEMBERS; m++) {
    chat__cql_values_text(v, 0, "group-7", 7);
    chat__cql_values_bigint(v, 1, 9187202);
    chat__cql_values_bigint(v, 2, m);
    chat__cql_values_smallint(v, 3, (int16_t)(m % 2 ? 1 : 2));
    chat__cql_values_timestamp(v, 4, base_ts + m);
    chat__cql_batch_add(b, ins, v);
  }
  ok(chat__cql_batch_len(b) == N_MEMBERS, "batch of %d receipts", N_MEMBERS);
  waiter w;
  waiter_init(&w);
  int rc = chat__cql_batch_execute(sess, b, on_done, &w);
  int got = waiter_wait(&w, 1, 30);
  ok(rc == 0 && got == 1 && w.failed == 0,
     "unlogged batch at QUORUM, async (%s)", w.last_msg);
  waiter_fini(&w);

  chat__cql_result *r = NULL;
  chat__cql_error e;
  char cql[256];
  snprintf(cql, sizeof cql,
           "SELECT member_id, state, TTL(state) FROM %s.group_receipts WHERE"
           " conversation_id = 'group-7' AND message_id = 9187202", keyspace);
  if (chat__cql_query_wait(sess, cql, CHAT__CQL_QUORUM, &r, &e) != 0)
    bail("select receipts", &e);
  int bad = 0;
  int32_t ttl_min = INT32_MAX, ttl_max = 0;
  for (size_t i = 0; i < chat__cql_result_rows(r); i++) {
    int64_t member;
    int16_t state;
    int32_t ttl;
    if (chat__cql_result_bigint(r, i, 0, &member) != 0 ||
        chat__cql_result_smallint(r, i, 1, &state) != 0 ||
        state != (member % 2 ? 1 : 2) ||
        chat__cql_result_int(r, i, 2, &ttl) != 0) {
      bad++;
      continue;
    }
    if (ttl < ttl_min) ttl_min = ttl;
    if (ttl > ttl_max) ttl_max = ttl;
  }
  ok(chat__cql_result_rows(r) == N_MEMBERS && bad == 0,
     "%zu receipts back, states as written", chat__cql_result_rows(r));
  /* The table's default_time_to_live applies to rows written without
   * USING TTL: 90 days, minus the seconds since the write. */
  ok(ttl_max <= 7776000 && ttl_min >= 7776000 - 120,
     "receipts carry the 90-day default TTL (%" PRId32 "..%" PRId32 " s)",
     ttl_min, ttl_max);
  chat__cql_result_free(r);

  /* Expiry is real: a receipt written with a 2 s TTL is gone after it. */
  snprintf(cql, sizeof cql,
           "INSERT INTO %s.group_receipts (conversation_id, message_id,"
           " member_id, state) VALUES ('group-7', 1, 1, 2) USING TTL 2",
           keyspace);
  exec_ddl("%s", cql);
  snprintf(cql, sizeof cql,
           "SELECT state FROM %s.group_receipts WHERE conversation_id ="
           " 'group-7' AND message_id = 1", keyspace);
  size_t before = 0, after = 99;
  if (chat__cql_query_wait(sess, cql, CHAT__CQL_QUORUM, &r, &e) != 0)
    bail("select ttl row", &e);
  before = chat__cql_result_rows(r);
  chat__cql_result_free(r);
  sleep(3);
  if (chat__cql_query_wait(sess, cql, CHAT__CQL_QUORUM, &r, &e) != 0)
    bail("select ttl row", &e);
  after = chat__cql_result_rows(r);
  chat__cql_result_free(r);
  ok(before == 1 && after == 0,
     "a 2 s TTL row is there (%zu) and gone 3 s later (%zu)", before, after);

  chat__cql_values_free(v);
  chat__cql_batch_free(b);
  chat__cql_prepared_free(ins);
}

static void test_types(void) {
  exec_ddl("CREATE TABLE %s.types (k int PRIMARY KEY, b boolean, bl blob,"
           " t text, ts timestamp, si smallint, bi bigint)", keyspace);
  char cql[256];
  snprintf(cql, sizeof cql, "INSERT INTO %s.types (k, b, bl, t, ts, si, bi)"
           " VALUES (?, ?, ?, ?, ?, ?, ?)", keyspace);
  chat__cql_prepared *ins = prepare(cql, CHAT__CQL_DEFAULT, 0);
  snprintf(cql, sizeof cql, "SELECT k, b, bl, t, ts, si, bi FROM %s.types"
           " WHERE k = ?", keyspace);
  chat__cql_prepared *sel = prepare(cql, CHAT__CQL_DEFAULT, 0);
  static const uint8_t blob[5] = {0, 1, 0xff, 0, 7};
  chat__cql_values *v = chat__cql_values_new(7);
  chat__cql_values_int(v, 0, -7);
  chat__cql_values_bool(v, 1, true);
  chat__cql_values_blob(v, 2, blob, sizeof blob);
  chat__cql_values_text(v, 3, "a\0b", 3);
  chat__cql_values_timestamp(v, 4, -1);
  chat__cql_values_smallint(v, 5, INT16_MIN);
  chat__cql_values_bigint(v, 6, INT64_MAX);
  chat__cql_result *r = NULL;
  chat__cql_error e;
  if (chat__cql_execute_wait(sess, ins, v, NULL, 0, &r, &e) != 0)
    bail("insert types", &e);
  ok(chat__cql_result_rows(r) == 0 && chat__cql_result_columns(r) == 0,
     "a write returns a result without rows");
  chat__cql_result_free(r);
  chat__cql_values *k = chat__cql_values_new(1);
  chat__cql_values_int(k, 0, -7);
  if (chat__cql_execute_wait(sess, sel, k, NULL, 0, &r, &e) != 0)
    bail("select types", &e);
  int32_t ki = 0;
  bool bo = false;
  const uint8_t *bl = NULL;
  const char *t = NULL;
  size_t bl_len = 0, t_len = 0;
  int64_t ts = 0, bi = 0;
  int16_t si = 0;
  int all = chat__cql_result_rows(r) == 1 &&
            chat__cql_result_int(r, 0, 0, &ki) == 0 && ki == -7 &&
            chat__cql_result_bool(r, 0, 1, &bo) == 0 && bo &&
            chat__cql_result_blob(r, 0, 2, &bl, &bl_len) == 0 &&
            bl_len == sizeof blob && memcmp(bl, blob, bl_len) == 0 &&
            chat__cql_result_text(r, 0, 3, &t, &t_len) == 0 && t_len == 3 &&
            memcmp(t, "a\0b", 3) == 0 &&
            chat__cql_result_timestamp(r, 0, 4, &ts) == 0 && ts == -1 &&
            chat__cql_result_smallint(r, 0, 5, &si) == 0 && si == INT16_MIN &&
            chat__cql_result_bigint(r, 0, 6, &bi) == 0 && bi == INT64_MAX;
  ok(all, "int, boolean, blob, text with a NUL, timestamp, smallint, bigint"
          " round-trip");
  chat__cql_result_free(r);

  /* Nulls: a row with only its key. */
  chat__cql_values_clear(v);
  chat__cql_values_int(v, 0, 8);
  for (size_t i = 1; i < 7; i++)
    chat__cql_values_null(v, i);
  int rc = chat__cql_execute_wait(sess, ins, v, NULL, 0, &r, &e);
  chat__cql_result_free(r);
  chat__cql_values_int(k, 0, 8);
  int rc2 = chat__cql_execute_wait(sess, sel, k, NULL, 0, &r, &e);
  int nulls = 0;
  for (size_t c = 1; rc2 == 0 && c < 7; c++)
    nulls += chat__cql_result_is_null(r, 0, c);
  bool b2;
  ok(rc == 0 && rc2 == 0 && nulls == 6 &&
     chat__cql_result_bool(r, 0, 1, &b2) == CHAT__CQL_ENULL,
     "bound nulls read back as null (ENULL from a getter)");
  chat__cql_result_free(r);

  /* Type mismatch between a bound value and the column. */
  chat__cql_values_clear(v);
  chat__cql_values_text(v, 0, "not an int", 10);
  for (size_t i = 1; i < 7; i++)
    chat__cql_values_null(v, i);
  rc = chat__cql_execute_wait(sess, ins, v, NULL, 0, &r, &e);
  ok(rc == CHAT__CQL_ETYPE && e.code == rc && r == NULL,
     "text bound to an int column: ETYPE (%s)", e.message);

  /* A slot left unset is refused before anything is sent. */
  chat__cql_values_clear(v);
  chat__cql_values_int(v, 0, 9);
  waiter w;
  waiter_init(&w);
  rc = chat__cql_execute(sess, ins, v, NULL, 0, on_done, &w);
  ok(rc == CHAT__CQL_EINVAL && w.done == 0,
     "an unbound value: EINVAL at once, and no callback");
  rc = chat__cql_execute(sess, ins, NULL, NULL, 0, on_done, &w);
  ok(rc == CHAT__CQL_EINVAL, "no values for a statement with markers: EINVAL");
  rc = chat__cql_execute(sess, ins, v, NULL, 0, NULL, &w);
  ok(rc == CHAT__CQL_EINVAL, "no callback: EINVAL");
  ok(chat__cql_values_text(v, 3, "\xff\xfe", 2) == CHAT__CQL_EINVAL &&
     chat__cql_values_int(v, 7, 1) == CHAT__CQL_EINVAL,
     "setters refuse invalid UTF-8 and an index past the end");
  waiter_fini(&w);

  chat__cql_values_free(k);
  chat__cql_values_free(v);
  chat__cql_prepared_free(sel);
  chat__cql_prepared_free(ins);
}

static void test_errors(const char *hosts, int rf) {
  chat__cql_result *r = NULL;
  chat__cql_error e;
  int rc = chat__cql_query_wait(sess, "SELEKT * FROM nowhere", CHAT__CQL_ONE,
                                &r, &e);
  ok(rc == CHAT__CQL_ESYNTAX && e.db_code == 0x2000 && e.message[0],
     "bad query: ESYNTAX, db code 0x%04x (%s)", (unsigned)e.db_code,
     e.message);
  rc = chat__cql_query_wait(sess, "SELECT * FROM no_such_table",
                            CHAT__CQL_ONE, &r, &e);
  ok(rc == CHAT__CQL_EINVALID && e.db_code == 0x2200,
     "unknown table: EINVALID (%s)", e.message);
  chat__cql_prepared *p = NULL;
  rc = chat__cql_prepare(sess, "INSERT INTO messages (nope) VALUES (?)",
                         CHAT__CQL_QUORUM, 0, 0, &p, &e);
  ok(rc == CHAT__CQL_EINVALID && p == NULL,
     "preparing against an unknown column: EINVALID (%s)", e.message);

  /* Too few replicas for QUORUM: a keyspace whose replication factor is
   * 2n+1 on an n-node ring needs n+1 live replicas. */
  exec_ddl("CREATE KEYSPACE %s_wide WITH replication = {'class':"
           " 'SimpleStrategy', 'replication_factor': %d}", keyspace,
           2 * rf + 1);
  exec_ddl("CREATE TABLE %s_wide.t (k int PRIMARY KEY, v int)", keyspace);
  char cql[256];
  snprintf(cql, sizeof cql, "INSERT INTO %s_wide.t (k, v) VALUES (?, ?)",
           keyspace);
  chat__cql_prepared *ins = prepare(cql, CHAT__CQL_QUORUM, 0);
  chat__cql_values *v = chat__cql_values_new(2);
  chat__cql_values_int(v, 0, 1);
  chat__cql_values_int(v, 1, 1);
  waiter w;
  waiter_init(&w);
  rc = chat__cql_execute(sess, ins, v, NULL, 0, on_done, &w);
  int got = waiter_wait(&w, 1, 30);
  ok(rc == 0 && got == 1 && w.last_code == CHAT__CQL_EUNAVAILABLE &&
     chat__cql_code_is_retryable(w.last_code),
     "QUORUM write with %d of %d replicas alive: EUNAVAILABLE, retryable"
     " (%s)", rf, 2 * rf + 1, w.last_msg);
  waiter_fini(&w);
  exec_ddl("DROP KEYSPACE %s_wide", keyspace);
  chat__cql_values_free(v);
  chat__cql_prepared_free(ins);

  /* A blocking call from inside a completion is refused, not deadlocked. */
  waiter_init(&w);
  w.try_nested = 1;
  rc = chat__cql_query(sess, "SELECT now() FROM system.local", CHAT__CQL_ONE,
                       on_done, &w);
  got = waiter_wait(&w, 1, 30);
  ok(rc == 0 && got == 1 && w.nested_wait_rc == CHAT__CQL_EINVAL,
     "a *_wait call inside a callback: EINVAL");
  waiter_fini(&w);

  /* The client-side timeout: a 1 ms deadline on a 250-row read. */
  chat__cql_config cfg = {
    .contact_points = hosts, .keyspace = keyspace,
    .consistency = CHAT__CQL_QUORUM, .request_timeout_ms = 1, .threads = 1,
  };
  chat__cql_session *fast = NULL;
  if (chat__cql_connect(&cfg, &fast, &e) != 0)
    bail("connect (1 ms timeout)", &e);
  int timeouts = 0, tries = 0;
  for (; tries < 20 && timeouts == 0; tries++) {
    rc = chat__cql_query_wait(fast, "SELECT * FROM messages", CHAT__CQL_QUORUM,
                              &r, &e);
    if (rc == CHAT__CQL_ETIMEOUT)
      timeouts++;
    chat__cql_result_free(r);
    r = NULL;
  }
  ok(timeouts > 0, "1 ms request timeout: ETIMEOUT (after %d tries)", tries);
  chat__cql_close(fast);

  /* Connecting to nothing fails cleanly and quickly. */
  chat__cql_config bad = {.contact_points = "127.0.0.1:1",
                          .connect_timeout_ms = 2000};
  chat__cql_session *none = NULL;
  int64_t t0 = now_ms();
  rc = chat__cql_connect(&bad, &none, &e);
  ok(rc == CHAT__CQL_ECONNECT && none == NULL && now_ms() - t0 < 10000,
     "no node at 127.0.0.1:1: ECONNECT in %" PRId64 " ms (%s)",
     now_ms() - t0, e.message);
  chat__cql_config nohost = {.contact_points = " , "};
  ok(chat__cql_connect(&nohost, &none, &e) == CHAT__CQL_EINVAL,
     "empty contact points: EINVAL");
}

/* close() waits for every execution in flight and each callback fires. */
static void test_close(const char *hosts) {
  chat__cql_config cfg = {.contact_points = hosts, .keyspace = keyspace};
  chat__cql_session *s2 = NULL;
  chat__cql_error e;
  if (chat__cql_connect(&cfg, &s2, &e) != 0)
    bail("connect", &e);
  waiter w;
  waiter_init(&w);
  int accepted = 0;
  for (int i = 0; i < 20; i++)
    if (chat__cql_query(s2, "SELECT * FROM messages LIMIT 10",
                        CHAT__CQL_QUORUM, on_done, &w) == 0)
      accepted++;
  int rc = chat__cql_close(s2);
  /* No waiting here: close returned, so every callback has returned. */
  pthread_mutex_lock(&w.mu);
  int done = w.done, failed = w.failed;
  pthread_mutex_unlock(&w.mu);
  ok(rc == 0 && accepted == 20 && done == 20 && failed == 0,
     "close with 20 in flight: all %d callbacks fired before it returned",
     done);
  waiter_fini(&w);
}

int main(void) {
  const char *hosts = getenv("CHAT_CQL_HOSTS");
  if (!hosts || !*hosts) {
    printf("1..0 # SKIP CHAT_CQL_HOSTS is not set (start a node with"
           " scripts/services/svc.sh start cassandra)\n");
    return 0;
  }
  const char *rf_s = getenv("CHAT_CQL_RF");
  int rf = rf_s && *rf_s ? atoi(rf_s) : 1;
  if (rf < 1 || rf > 9)
    rf = 1;
  snprintf(keyspace, sizeof keyspace, "chat_test_%ld_%ld", (long)getpid(),
           (long)time(NULL));

  chat__cql_config cfg = {.contact_points = hosts,
                          .consistency = CHAT__CQL_QUORUM,
                          .connect_timeout_ms = 10000};
  chat__cql_error e;
  if (chat__cql_connect(&cfg, &sess, &e) != 0)
    bail("connect", &e);
  ok(1, "connected to %s", hosts);
  exec_ddl("CREATE KEYSPACE %s WITH replication = {'class':"
           " 'SimpleStrategy', 'replication_factor': %d}", keyspace, rf);
  chat__cql_close(sess);
  /* Reconnect with the keyspace as every connection's default. */
  cfg.keyspace = keyspace;
  if (chat__cql_connect(&cfg, &sess, &e) != 0)
    bail("connect with keyspace", &e);

  /* The seed's tables, verbatim in their columns and keys. */
  exec_ddl(
    "CREATE TABLE messages ("
    " conversation_id TEXT, message_id BIGINT, sender_id BIGINT,"
    " client_msg_id TEXT, body TEXT, body_type SMALLINT,"
    " media_refs LIST<TEXT>, reply_to BIGINT, created_at TIMESTAMP,"
    " deleted_at TIMESTAMP, edited_at TIMESTAMP, delivered_at TIMESTAMP,"
    " read_at TIMESTAMP,"
    " PRIMARY KEY ((conversation_id), message_id)"
    ") WITH CLUSTERING ORDER BY (message_id DESC)");
  exec_ddl(
    "CREATE TABLE group_receipts ("
    " conversation_id TEXT, message_id BIGINT, member_id BIGINT,"
    " state SMALLINT, state_ts TIMESTAMP,"
    " PRIMARY KEY ((conversation_id, message_id), member_id)"
    ") WITH default_time_to_live = 7776000");
  ok(1, "keyspace %s (RF=%d) with messages and group_receipts", keyspace, rf);

  test_messages();
  test_receipts();
  test_types();
  test_errors(hosts, rf);
  test_close(hosts);

  exec_ddl("DROP KEYSPACE %s", keyspace);
  ok(chat__cql_close(sess) == 0, "closed");
  printf("1..%d\n", tap_n);
  return tap_failed ? 1 : 0;
}

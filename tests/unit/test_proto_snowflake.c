#include <criterion/criterion.h>

#include <chat/snowflake.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "fail_alloc.h"
#include "fake_env.h"

#define MS_MAX ((UINT64_C(1) << 41) - 1)
/* 2026-03-01T12:00:00Z, an ordinary "now" well after the epoch. */
#define T0 INT64_C(1772366400000)

static chat_snowflake *make(uint32_t machine) {
  chat_snowflake *g = NULL;
  cr_assert_eq(chat_snowflake_new(&g, machine, NULL), CHAT_OK);
  cr_assert_not_null(g);
  return g;
}

static uint64_t next_ok(chat_snowflake *g, int64_t wall) {
  uint64_t id = 0;
  cr_assert_eq(chat_snowflake_next(g, wall, &id), CHAT_OK);
  return id;
}

static uint64_t ms_of(uint64_t id) {
  uint64_t ms;
  chat_snowflake_unpack(id, &ms, NULL, NULL);
  return ms;
}

static uint32_t machine_of(uint64_t id) {
  uint32_t m;
  chat_snowflake_unpack(id, NULL, &m, NULL);
  return m;
}

static uint32_t seq_of(uint64_t id) {
  uint32_t s;
  chat_snowflake_unpack(id, NULL, NULL, &s);
  return s;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

Test(snowflake, epoch_is_2026_01_01_utc) {
  cr_assert_eq(CHAT_EPOCH_MS, INT64_C(1767225600000));
  /* Cross-check with the C library's calendar rather than a constant:
   * 2026-01-01 is 56 years after 1970, 14 of them leap years. */
  cr_assert_eq(CHAT_EPOCH_MS, (int64_t)(56 * 365 + 14) * 86400 * 1000);
  struct tm tm;
  time_t t = (time_t)(CHAT_EPOCH_MS / 1000);
  cr_assert_not_null(gmtime_r(&t, &tm));
  cr_assert_eq(tm.tm_year, 126);
  cr_assert_eq(tm.tm_mon, 0);
  cr_assert_eq(tm.tm_mday, 1);
  cr_assert_eq(tm.tm_hour + tm.tm_min + tm.tm_sec, 0);
}

Test(snowflake, exact_bit_layout) {
  cr_assert_eq(chat_snowflake_pack(0, 0, 1), UINT64_C(1));
  cr_assert_eq(chat_snowflake_pack(0, 1, 0), UINT64_C(1) << 12);
  cr_assert_eq(chat_snowflake_pack(1, 0, 0), UINT64_C(1) << 22);
  cr_assert_eq(chat_snowflake_pack(0, 0, 4095), UINT64_C(0xfff));
  cr_assert_eq(chat_snowflake_pack(0, 1023, 0), UINT64_C(0x3ff000));
  cr_assert_eq(chat_snowflake_pack(MS_MAX, 1023, 4095),
               UINT64_C(0x7fffffffffffffff));
  cr_assert_eq(chat_snowflake_pack(0x123456789aull, 0x2a5, 0xbcd),
               (UINT64_C(0x123456789a) << 22) | (UINT64_C(0x2a5) << 12) |
                   UINT64_C(0xbcd));
  /* Out-of-range fields are masked, never spilled into a neighbour or
   * into the sign bit. */
  cr_assert_eq(chat_snowflake_pack(0, 0, 4096), UINT64_C(0));
  cr_assert_eq(chat_snowflake_pack(0, 1024, 0), UINT64_C(0));
  cr_assert_eq(chat_snowflake_pack(MS_MAX + 1, 0, 0), UINT64_C(0));
  cr_assert_eq(chat_snowflake_pack(UINT64_MAX, UINT32_MAX, UINT32_MAX),
               UINT64_C(0x7fffffffffffffff));
}

Test(snowflake, pack_unpack_round_trip) {
  fake_env fe;
  fake_env_init(&fe, 0, 42);
  for (int i = 0; i < 100000; i++) {
    uint64_t r = fake_env_rand64(&fe);
    uint64_t ms = r & MS_MAX;
    uint32_t m = (uint32_t)(r >> 41) & 1023;
    uint32_t s = (uint32_t)(r >> 51) & 4095;
    uint64_t id = chat_snowflake_pack(ms, m, s);
    cr_assert_eq(id >> 63, 0);
    uint64_t ms2 = 0;
    uint32_t m2 = 0, s2 = 0;
    chat_snowflake_unpack(id, &ms2, &m2, &s2);
    cr_assert_eq(ms2, ms);
    cr_assert_eq(m2, m);
    cr_assert_eq(s2, s);
    /* And any 63-bit value survives unpack then pack. */
    uint64_t any = r >> 1;
    chat_snowflake_unpack(any, &ms2, &m2, &s2);
    cr_assert_eq(chat_snowflake_pack(ms2, m2, s2), any);
  }
  chat_snowflake_unpack(1, NULL, NULL, NULL); /* NULL outs are allowed */
}

Test(snowflake, unix_ms) {
  cr_assert_eq(chat_snowflake_unix_ms(0), CHAT_EPOCH_MS);
  cr_assert_eq(chat_snowflake_unix_ms(chat_snowflake_pack(12345, 7, 99)),
               CHAT_EPOCH_MS + 12345);
  cr_assert_eq(chat_snowflake_unix_ms(chat_snowflake_pack(MS_MAX, 1023, 4095)),
               CHAT_EPOCH_MS + (int64_t)MS_MAX);
  chat_snowflake *g = make(5);
  cr_assert_eq(chat_snowflake_unix_ms(next_ok(g, T0)), T0);
  chat_snowflake_free(g);
}

Test(snowflake, new_validates_arguments) {
  chat_snowflake *g = (chat_snowflake *)&g; /* junk that must be cleared */
  cr_assert_eq(chat_snowflake_new(NULL, 0, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(chat_snowflake_new(&g, 1024, NULL), CHAT_ERR_INVAL);
  cr_assert_null(g);
  cr_assert_eq(chat_snowflake_new(&g, UINT32_MAX, NULL), CHAT_ERR_INVAL);
  cr_assert_null(g);
  cr_assert_eq(chat_snowflake_new(&g, 1023, NULL), CHAT_OK);
  chat_snowflake_free(g);
  chat_snowflake_free(NULL);

  uint64_t id = 77;
  cr_assert_eq(chat_snowflake_next(NULL, T0, &id), CHAT_ERR_INVAL);
  g = make(0);
  cr_assert_eq(chat_snowflake_next(g, T0, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(id, 77);
  chat_snowflake_observe(NULL, 5); /* no-op, no crash */
  chat_snowflake_free(g);
}

Test(snowflake, uses_the_given_allocator) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat_snowflake *g = NULL;
  cr_assert_eq(chat_snowflake_new(&g, 3, &fa.a), CHAT_OK);
  cr_assert_eq(fa.live, 1);
  chat_snowflake_free(g);
  cr_assert_eq(fa.live, 0);

  fail_alloc_init(&fa, 0);
  g = (chat_snowflake *)&g;
  cr_assert_eq(chat_snowflake_new(&g, 3, &fa.a), CHAT_ERR_NOMEM);
  cr_assert_null(g);
  cr_assert_eq(fa.live, 0);
}

Test(snowflake, half_filled_allocator_rejected) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat_allocator a = fa.a;
  a.release = NULL;
  chat_snowflake *g = (chat_snowflake *)&g;
  cr_assert_eq(chat_snowflake_new(&g, 3, &a), CHAT_ERR_INVAL);
  cr_assert_null(g);
  cr_assert_eq(fa.live, 0);
}

Test(snowflake, machine_id_embedded) {
  const uint32_t machines[] = {0, 1, 2, 511, 512, 1022, 1023};
  for (size_t i = 0; i < sizeof machines / sizeof *machines; i++) {
    chat_snowflake *g = make(machines[i]);
    for (int k = 0; k < 5000; k++) {
      uint64_t id = next_ok(g, T0 + k / 3);
      cr_assert_eq(machine_of(id), machines[i]);
      cr_assert_eq(id >> 63, 0);
    }
    chat_snowflake_free(g);
  }
}

Test(snowflake, follows_the_clock) {
  chat_snowflake *g = make(9);
  uint64_t a = next_ok(g, T0);
  cr_assert_eq(a, chat_snowflake_pack((uint64_t)(T0 - CHAT_EPOCH_MS), 9, 0));
  uint64_t b = next_ok(g, T0);
  cr_assert_eq(b, a + 1);
  uint64_t c = next_ok(g, T0 + 1);
  cr_assert_eq(c, chat_snowflake_pack((uint64_t)(T0 + 1 - CHAT_EPOCH_MS), 9,
                                      0));
  /* A jump forward is followed at once, sequence back at 0. */
  uint64_t d = next_ok(g, T0 + 86400000);
  cr_assert_eq(chat_snowflake_unix_ms(d), T0 + 86400000);
  cr_assert_eq(seq_of(d), 0);
  chat_snowflake_free(g);
}

Test(snowflake, million_ids_in_one_ms) {
  enum { N = 1000000 };
  chat_snowflake *g = make(77);
  uint64_t start = (uint64_t)(T0 - CHAT_EPOCH_MS);
  uint64_t prev = 0;
  for (uint32_t i = 0; i < N; i++) {
    uint64_t id = next_ok(g, T0);
    cr_assert_gt(id, prev, "id %u did not increase", i);
    /* With the clock stuck, the sequence fills and then borrows whole ms:
     * id i sits exactly at ms start + i / 4096, sequence i % 4096, and the
     * machine bits are never touched by the carry. */
    cr_assert_eq(ms_of(id), start + i / 4096);
    cr_assert_eq(seq_of(id), i % 4096);
    cr_assert_eq(machine_of(id), 77);
    prev = id;
  }
  uint64_t borrowed = ms_of(prev);
  cr_assert_eq(borrowed, start + (N - 1) / 4096);

  /* The clock moving on, but not yet past the borrowed time, still gives
   * increasing ids that continue from the borrowed ms. */
  uint64_t id = next_ok(g, T0 + 100);
  cr_assert_gt(id, prev);
  cr_assert_eq(ms_of(id), borrowed);
  prev = id;

  /* Once the wall clock overtakes it, ids follow the wall clock again. */
  int64_t later = CHAT_EPOCH_MS + (int64_t)borrowed + 5;
  id = next_ok(g, later);
  cr_assert_gt(id, prev);
  cr_assert_eq(chat_snowflake_unix_ms(id), later);
  cr_assert_eq(seq_of(id), 0);
  chat_snowflake_free(g);
}

Test(snowflake, clock_steps_back_an_hour) {
  chat_snowflake *g = make(4);
  uint64_t prev = 0;
  for (int k = 0; k < 1000; k++) {
    uint64_t id = next_ok(g, T0 + k);
    cr_assert_gt(id, prev);
    prev = id;
  }
  uint64_t high_ms = ms_of(prev);
  int64_t back = T0 + 999 - 3600000;
  /* 10,000 ids with the clock an hour behind: no repeat, no decrease, and
   * the timestamps stay at (or borrow just past) the highest seen. */
  for (int k = 0; k < 10000; k++) {
    uint64_t id = next_ok(g, back + k / 100);
    cr_assert_gt(id, prev);
    cr_assert_geq(ms_of(id), high_ms);
    cr_assert_leq(ms_of(id), high_ms + 3);
    prev = id;
  }
  /* Back to the real time: the wall clock wins again. */
  uint64_t id = next_ok(g, T0 + 5000);
  cr_assert_gt(id, prev);
  cr_assert_eq(chat_snowflake_unix_ms(id), T0 + 5000);
  chat_snowflake_free(g);
}

Test(snowflake, pre_epoch_clock_counts_as_epoch) {
  const int64_t walls[] = {CHAT_EPOCH_MS, CHAT_EPOCH_MS - 1, 0, -1,
                           INT64_MIN};
  chat_snowflake *g = make(1);
  uint64_t prev = 0;
  for (size_t i = 0; i < sizeof walls / sizeof *walls; i++) {
    uint64_t id = next_ok(g, walls[i]);
    cr_assert_gt(id, prev);
    cr_assert_eq(ms_of(id), 0);
    cr_assert_eq(seq_of(id), i);
    prev = id;
  }
  chat_snowflake_free(g);

  /* Machine 0 at the epoch: the very first id is 1, never 0. */
  g = make(0);
  cr_assert_eq(next_ok(g, 0), UINT64_C(1));
  cr_assert_eq(next_ok(g, CHAT_EPOCH_MS), UINT64_C(2));
  chat_snowflake_free(g);
}

Test(snowflake, observe_raises_the_floor) {
  chat_snowflake *g = make(10);
  uint64_t now_ms = (uint64_t)(T0 - CHAT_EPOCH_MS);

  /* An id from storage minted by this machine, 5 s ahead of our clock. */
  uint64_t stored = chat_snowflake_pack(now_ms + 5000, 10, 17);
  chat_snowflake_observe(g, stored);
  cr_assert_eq(next_ok(g, T0), stored + 1);

  /* A lower id changes nothing. */
  chat_snowflake_observe(g, chat_snowflake_pack(now_ms, 10, 0));
  cr_assert_eq(next_ok(g, T0), stored + 2);

  /* Another machine's id: a lower machine in the same ms stays in that ms,
   * a higher machine moves us to the next ms; both are above it. */
  uint64_t other = chat_snowflake_pack(now_ms + 6000, 3, 4000);
  chat_snowflake_observe(g, other);
  uint64_t id = next_ok(g, T0);
  cr_assert_gt(id, other);
  cr_assert_eq(id, chat_snowflake_pack(now_ms + 6000, 10, 0));

  other = chat_snowflake_pack(now_ms + 7000, 900, 0);
  chat_snowflake_observe(g, other);
  id = next_ok(g, T0);
  cr_assert_gt(id, other);
  cr_assert_eq(id, chat_snowflake_pack(now_ms + 7001, 10, 0));

  /* The same machine with a full sequence carries into the ms. */
  other = chat_snowflake_pack(now_ms + 8000, 10, 4095);
  chat_snowflake_observe(g, other);
  id = next_ok(g, T0);
  cr_assert_eq(id, chat_snowflake_pack(now_ms + 8001, 10, 0));

  /* An "id" with the sign bit set is not one; it must not poison g. */
  chat_snowflake_observe(g, UINT64_MAX);
  uint64_t after = next_ok(g, T0);
  cr_assert_eq(after, id + 1);
  chat_snowflake_free(g);
}

Test(snowflake, exhaustion_is_an_error) {
  chat_snowflake *g = make(6);
  chat_snowflake_observe(g, chat_snowflake_pack(MS_MAX, 6, 4094));
  uint64_t id = 0;
  cr_assert_eq(chat_snowflake_next(g, T0, &id), CHAT_OK);
  cr_assert_eq(id, chat_snowflake_pack(MS_MAX, 6, 4095));
  uint64_t untouched = 99;
  cr_assert_eq(chat_snowflake_next(g, T0, &untouched), CHAT_ERR_STATE);
  cr_assert_eq(untouched, 99);
  /* It stays exhausted; it never wraps to small ids. */
  cr_assert_eq(chat_snowflake_next(g, T0 + 1000, &untouched), CHAT_ERR_STATE);
  chat_snowflake_free(g);

  /* A higher machine in the last ms also leaves no room. */
  g = make(6);
  chat_snowflake_observe(g, chat_snowflake_pack(MS_MAX, 7, 0));
  cr_assert_eq(chat_snowflake_next(g, T0, &untouched), CHAT_ERR_STATE);
  chat_snowflake_free(g);

  /* A wall clock past the 41-bit range. */
  g = make(6);
  int64_t last_ms = CHAT_EPOCH_MS + (int64_t)MS_MAX;
  cr_assert_eq(chat_snowflake_next(g, last_ms, &id), CHAT_OK);
  cr_assert_eq(id, chat_snowflake_pack(MS_MAX, 6, 0));
  cr_assert_eq(chat_snowflake_next(g, last_ms + 1, &untouched),
               CHAT_ERR_STATE);
  cr_assert_eq(chat_snowflake_next(g, INT64_MAX, &untouched), CHAT_ERR_STATE);
  cr_assert_eq(untouched, 99);
  chat_snowflake_free(g);
}

/* ------------------------------------------------------------------------
 * Several threads on one generator. */

enum { THREADS = 4, PER_THREAD = 200000 };

struct worker {
  chat_snowflake *g;
  int index;
  uint64_t *ids;
  int failures;
};

static void *work(void *arg) {
  struct worker *w = arg;
  for (int k = 0; k < PER_THREAD; k++) {
    /* Each thread's clock is a little skewed from the others', so some
     * threads see time go "back" relative to ids already issued. */
    int64_t wall = T0 + k / 64 - w->index * 7;
    if (chat_snowflake_next(w->g, wall, &w->ids[k]) != CHAT_OK)
      w->failures++;
    /* Each thread must see its own ids strictly increase. */
    else if (k > 0 && w->ids[k] <= w->ids[k - 1])
      w->failures++;
  }
  return NULL;
}

Test(snowflake, threads_never_collide) {
  chat_snowflake *g = make(321);
  uint64_t *all = malloc(sizeof *all * THREADS * PER_THREAD);
  cr_assert_not_null(all);
  pthread_t tid[THREADS];
  struct worker w[THREADS];
  for (int t = 0; t < THREADS; t++) {
    w[t] = (struct worker){g, t, all + (size_t)t * PER_THREAD, 0};
    cr_assert_eq(pthread_create(&tid[t], NULL, work, &w[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) {
    cr_assert_eq(pthread_join(tid[t], NULL), 0);
    cr_assert_eq(w[t].failures, 0, "thread %d", t);
  }
  size_t n = (size_t)THREADS * PER_THREAD;
  qsort(all, n, sizeof *all, cmp_u64);
  for (size_t i = 0; i < n; i++) {
    cr_assert_eq(machine_of(all[i]), 321);
    if (i > 0)
      cr_assert_gt(all[i], all[i - 1], "duplicate id %llu",
                   (unsigned long long)all[i]);
  }
  /* The generator continues above everything handed out. */
  cr_assert_gt(next_ok(g, T0), all[n - 1]);
  free(all);
  chat_snowflake_free(g);
}

/* lib/common/map.c: the seeded string-keyed hash map. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/map.h"
#include "fail_alloc.h"

#define V(i) ((void *)(uintptr_t)(i))

static void **get_s(const chat__map *m, const char *k) {
  return chat__map_get(m, k, strlen(k));
}

static chat_err put_s(chat__map *m, const char *k, void *v, void **old) {
  return chat__map_put(m, k, strlen(k), v, old);
}

static bool is_pow2(size_t n) {
  return n && (n & (n - 1)) == 0;
}

Test(map, empty_map) {
  chat__map m;
  chat__map_init(&m, NULL, 1);
  cr_assert_eq(chat__map_len(&m), 0);
  cr_assert_null(get_s(&m, "x"));
  cr_assert_null(chat__map_get(&m, NULL, 0));
  void *old = V(9);
  cr_assert_not(chat__map_del(&m, "x", 1, &old));
  cr_assert_eq(old, V(9), "a failed del leaves *old_value alone");
  size_t it = 0;
  cr_assert_not(chat__map_next(&m, &it, NULL, NULL, NULL));
  chat__map_free(&m);
  chat__map_free(&m); /* twice is harmless */
}

Test(map, put_get_replace_del) {
  chat__map m;
  chat__map_init(&m, NULL, 42);
  void *old = V(1);
  cr_assert_eq(put_s(&m, "alice", V(10), &old), CHAT_OK);
  cr_assert_null(old, "a new key reports no old value");
  cr_assert_eq(put_s(&m, "bob", V(20), NULL), CHAT_OK);
  cr_assert_eq(chat__map_len(&m), 2);
  cr_assert(is_pow2(m.cap));

  void **v = get_s(&m, "alice");
  cr_assert_not_null(v);
  cr_assert_eq(*v, V(10));
  cr_assert_null(get_s(&m, "alic"));
  cr_assert_null(get_s(&m, "alicex"));

  /* The slot is writable in place. */
  *v = V(11);
  cr_assert_eq(*get_s(&m, "alice"), V(11));

  cr_assert_eq(put_s(&m, "alice", V(12), &old), CHAT_OK);
  cr_assert_eq(old, V(11));
  cr_assert_eq(chat__map_len(&m), 2, "replacing does not add");
  cr_assert_eq(*get_s(&m, "alice"), V(12));

  cr_assert(chat__map_del(&m, "alice", 5, &old));
  cr_assert_eq(old, V(12));
  cr_assert_null(get_s(&m, "alice"));
  cr_assert_not(chat__map_del(&m, "alice", 5, NULL));
  cr_assert_eq(chat__map_len(&m), 1);
  cr_assert_eq(*get_s(&m, "bob"), V(20));

  /* NULL values are values. */
  cr_assert_eq(put_s(&m, "nil", NULL, NULL), CHAT_OK);
  v = get_s(&m, "nil");
  cr_assert_not_null(v);
  cr_assert_null(*v);
  chat__map_free(&m);
}

Test(map, keys_are_copied_and_terminated) {
  chat__map m;
  chat__map_init(&m, NULL, 3);
  char k[] = "mutable";
  cr_assert_eq(chat__map_put(&m, k, 3, V(1), NULL), CHAT_OK); /* "mut" */
  k[0] = 'X';
  cr_assert_not_null(get_s(&m, "mut"));
  size_t it = 0, klen;
  const char *key;
  cr_assert(chat__map_next(&m, &it, &key, &klen, NULL));
  cr_assert_neq(key, k);
  cr_assert_eq(klen, 3);
  cr_assert_str_eq(key, "mut");
  chat__map_free(&m);
}

Test(map, null_key_with_length_is_invalid) {
  chat__map m;
  chat__map_init(&m, NULL, 3);
  cr_assert_eq(chat__map_put(&m, NULL, 1, V(1), NULL), CHAT_ERR_INVAL);
  cr_assert_null(chat__map_get(&m, NULL, 1));
  cr_assert_not(chat__map_del(&m, NULL, 1, NULL));
  cr_assert_eq(chat__map_len(&m), 0);
  chat__map_free(&m);
}

Test(map, embedded_nul_and_binary_keys) {
  chat__map m;
  chat__map_init(&m, NULL, 77);
  cr_assert_eq(chat__map_put(&m, "a\0b", 3, V(1), NULL), CHAT_OK);
  cr_assert_eq(chat__map_put(&m, "a\0c", 3, V(2), NULL), CHAT_OK);
  cr_assert_eq(chat__map_put(&m, "a", 1, V(3), NULL), CHAT_OK);
  cr_assert_eq(chat__map_put(&m, "a\0", 2, V(4), NULL), CHAT_OK);
  /* The empty key: NULL and a real pointer with length 0 are one key. */
  cr_assert_eq(chat__map_put(&m, NULL, 0, V(5), NULL), CHAT_OK);
  void *old;
  cr_assert_eq(chat__map_put(&m, "zzz", 0, V(6), &old), CHAT_OK);
  cr_assert_eq(old, V(5));
  cr_assert_eq(chat__map_len(&m), 5);

  cr_assert_eq(*chat__map_get(&m, "a\0b", 3), V(1));
  cr_assert_eq(*chat__map_get(&m, "a\0c", 3), V(2));
  cr_assert_eq(*chat__map_get(&m, "a", 1), V(3));
  cr_assert_eq(*chat__map_get(&m, "a\0", 2), V(4));
  cr_assert_eq(*chat__map_get(&m, "", 0), V(6));
  cr_assert_null(chat__map_get(&m, "a\0d", 3));

  /* A key with an embedded NUL is copied whole, plus a terminator. */
  size_t it = 0, klen;
  const char *key;
  bool seen = false;
  while (chat__map_next(&m, &it, &key, &klen, NULL)) {
    if (klen == 3 && memcmp(key, "a\0b", 4) == 0)
      seen = true;
    cr_assert_eq(key[klen], '\0');
  }
  cr_assert(seen);

  /* Every byte value, as one-byte and as eight-to-nine-byte keys (one word
   * plus a tail). */
  for (int c = 0; c < 256; c++) {
    char k1 = (char)c;
    char k9[9];
    memset(k9, 0xEE, 8);
    k9[8] = (char)c;
    cr_assert_eq(chat__map_put(&m, &k1, 1, V(1000 + c), NULL), CHAT_OK);
    cr_assert_eq(chat__map_put(&m, k9, 9, V(2000 + c), NULL), CHAT_OK);
  }
  for (int c = 0; c < 256; c++) {
    char k1 = (char)c;
    char k9[9];
    memset(k9, 0xEE, 8);
    k9[8] = (char)c;
    void **v = chat__map_get(&m, &k1, 1);
    if (c == 'a')
      cr_assert_eq(*v, V(1000 + c), "\"a\" was replaced");
    else
      cr_assert_eq(*v, V(1000 + c));
    cr_assert_eq(*chat__map_get(&m, k9, 9), V(2000 + c));
  }
  cr_assert_eq(chat__map_len(&m), 5 - 1 + 512);
  cr_assert(chat__map_del(&m, NULL, 0, &old));
  cr_assert_eq(old, V(6));
  cr_assert_null(chat__map_get(&m, NULL, 0));
  chat__map_free(&m);
}

/* ---- bulk consistency against a direct-indexed reference ---- */

enum { BULK = 100000 };

static size_t key_of(char *buf, size_t i) {
  return (size_t)snprintf(buf, 32, "user:%zu", i);
}

static void check_against(const chat__map *m, const bool *present,
                          void *const *value) {
  char k[32];
  size_t n = 0;
  for (size_t i = 0; i < BULK; i++) {
    void **v = chat__map_get(m, k, key_of(k, i));
    if (present[i]) {
      n++;
      if (!v || *v != value[i])
        cr_assert_fail("key %zu: wrong or missing value", i);
    } else if (v) {
      cr_assert_fail("key %zu: present after deletion", i);
    }
  }
  cr_assert_eq(chat__map_len(m), n);
  /* Iteration sees exactly the live keys, each once. */
  static unsigned char seen[BULK];
  memset(seen, 0, sizeof seen);
  size_t it = 0, klen, visited = 0;
  const char *key;
  void *val;
  while (chat__map_next(m, &it, &key, &klen, &val)) {
    size_t i = (size_t)strtoull(key + 5, NULL, 10);
    cr_assert_lt(i, BULK);
    cr_assert(present[i] && !seen[i] && val == value[i], "key %zu", i);
    seen[i] = 1;
    visited++;
  }
  cr_assert_eq(visited, n);
  cr_assert(is_pow2(m->cap));
  cr_assert_leq((m->len + m->tombs) * 10, m->cap * 7, "load within 70%%");
}

Test(map, hundred_thousand_keys_half_deleted_and_reinserted) {
  static bool present[BULK];
  static void *value[BULK];
  chat__map m;
  chat__map_init(&m, NULL, 0x1234567890abcdefull);
  char k[32];
  for (size_t i = 0; i < BULK; i++) {
    value[i] = V(i + 1);
    present[i] = true;
    cr_assert_eq(chat__map_put(&m, k, key_of(k, i), value[i], NULL),
                 CHAT_OK);
  }
  check_against(&m, present, value);

  /* Delete a pseudo-random half. */
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < BULK; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    if (x & 1) {
      void *old;
      cr_assert(chat__map_del(&m, k, key_of(k, i), &old));
      cr_assert_eq(old, value[i]);
      present[i] = false;
    }
  }
  check_against(&m, present, value);

  /* Reinsert them with new values, and replace some survivors. */
  for (size_t i = 0; i < BULK; i++) {
    void *old;
    if (!present[i]) {
      value[i] = V(i + 1 + BULK);
      present[i] = true;
      cr_assert_eq(chat__map_put(&m, k, key_of(k, i), value[i], &old),
                   CHAT_OK);
      cr_assert_null(old);
    } else if (i % 3 == 0) {
      void *prev = value[i];
      value[i] = V(i + 1 + 2 * BULK);
      cr_assert_eq(chat__map_put(&m, k, key_of(k, i), value[i], &old),
                   CHAT_OK);
      cr_assert_eq(old, prev);
    }
  }
  check_against(&m, present, value);
  chat__map_free(&m);
}

Test(map, churn_reuses_tombstones_without_growing) {
  /* A small working set under endless insert/delete must not keep growing
   * the table: tombstones are reused or dropped by a same-size rehash. */
  chat__map m;
  chat__map_init(&m, NULL, 5);
  char k[32];
  for (size_t i = 0; i < 200000; i++) {
    cr_assert_eq(chat__map_put(&m, k, key_of(k, i), V(i), NULL), CHAT_OK);
    if (i >= 10)
      cr_assert(chat__map_del(&m, k, key_of(k, i - 10), NULL));
  }
  cr_assert_eq(chat__map_len(&m), 10);
  cr_assert_leq(m.cap, 32);
  chat__map_free(&m);
}

/* ---- iteration ---- */

Test(map, iteration_visits_each_live_key_once) {
  enum { N = 1000 };
  chat__map m;
  chat__map_init(&m, NULL, 9);
  char k[32];
  for (size_t i = 0; i < N; i++)
    chat__map_put(&m, k, key_of(k, i), V(i), NULL);
  for (size_t i = 0; i < N; i += 4)
    chat__map_del(&m, k, key_of(k, i), NULL);
  int seen[N] = {0};
  size_t it = 0;
  const char *key;
  void *v;
  while (chat__map_next(&m, &it, &key, NULL, &v)) {
    size_t i = (size_t)strtoull(key + 5, NULL, 10);
    cr_assert_eq(v, V(i));
    seen[i]++;
  }
  for (size_t i = 0; i < N; i++)
    cr_assert_eq(seen[i], i % 4 ? 1 : 0, "key %zu", i);
  /* The end stays the end. */
  cr_assert_not(chat__map_next(&m, &it, &key, NULL, &v));
  chat__map_free(&m);
}

Test(map, deleting_during_iteration) {
  enum { N = 5000 };
  chat__map m;
  chat__map_init(&m, NULL, 10);
  char k[32];
  for (size_t i = 0; i < N; i++)
    chat__map_put(&m, k, key_of(k, i), V(i), NULL);

  /* First pass: delete every odd key as it comes up. */
  static int seen[N];
  memset(seen, 0, sizeof seen);
  size_t it = 0, klen;
  const char *key;
  while (chat__map_next(&m, &it, &key, &klen, NULL)) {
    size_t i = (size_t)strtoull(key + 5, NULL, 10);
    seen[i]++;
    if (i % 2)
      cr_assert(chat__map_del(&m, key, klen, NULL));
  }
  for (size_t i = 0; i < N; i++)
    cr_assert_eq(seen[i], 1, "key %zu visited %d times", i, seen[i]);
  cr_assert_eq(chat__map_len(&m), N / 2);

  /* Second pass: delete everything that is left, still once each. */
  memset(seen, 0, sizeof seen);
  it = 0;
  while (chat__map_next(&m, &it, &key, &klen, NULL)) {
    size_t i = (size_t)strtoull(key + 5, NULL, 10);
    cr_assert_eq(i % 2, 0);
    seen[i]++;
    cr_assert(chat__map_del(&m, key, klen, NULL));
  }
  for (size_t i = 0; i < N; i += 2)
    cr_assert_eq(seen[i], 1);
  cr_assert_eq(chat__map_len(&m), 0);
  it = 0;
  cr_assert_not(chat__map_next(&m, &it, NULL, NULL, NULL));
  /* The emptied map still works. */
  cr_assert_eq(put_s(&m, "again", V(1), NULL), CHAT_OK);
  cr_assert_eq(*get_s(&m, "again"), V(1));
  chat__map_free(&m);
}

/* ---- out of memory ---- */

enum { OOM_KEYS = 60 };

static void oom_key(char *k, int i) {
  /* Mixed lengths, so keys both shorter and longer than one word. */
  snprintf(k, 32, i % 3 ? "k%d" : "a-much-longer-key-%d", i);
}

/* Put key i, which is absent while keys 0..i-1 are present. On
 * CHAT_ERR_NOMEM check that nothing changed and retry. Returns the number
 * of failures seen. */
static int put_checked(chat__map *m, int i, long fail_at) {
  char k[32];
  oom_key(k, i);
  size_t len_before = chat__map_len(m);
  chat_err e = put_s(m, k, V(i + 1), NULL);
  if (e != CHAT_ERR_NOMEM) {
    cr_assert_eq(e, CHAT_OK, "fail_at %ld, key %d: %d", fail_at, i, e);
    return 0;
  }
  cr_assert_eq(chat__map_len(m), len_before);
  cr_assert_null(get_s(m, k), "a failed put is not visible");
  for (int j = 0; j < i; j++) {
    char kj[32];
    oom_key(kj, j);
    void **v = get_s(m, kj);
    cr_assert(v && *v == V(j + 1), "fail_at %ld: key %d", fail_at, j);
  }
  /* Still usable: only one allocation fails, so the retry succeeds. */
  cr_assert_eq(put_s(m, k, V(i + 1), NULL), CHAT_OK);
  return 1;
}

Test(map, every_failing_allocation_leaves_the_map_unchanged) {
  bool finished = false;
  for (long fail_at = 0; !finished; fail_at++) {
    fail_alloc fa;
    fail_alloc_init(&fa, fail_at);
    chat__map m;
    chat__map_init(&m, &fa.a, 99);
    int failures = 0;
    char k[32];
    for (int i = 0; i < OOM_KEYS; i++) {
      failures += put_checked(&m, i, fail_at);
      oom_key(k, i);
      /* Replacing never allocates. */
      long count = fa.count;
      cr_assert_eq(put_s(&m, k, V(i + 1), NULL), CHAT_OK);
      cr_assert_eq(fa.count, count);
      /* Delete and put again: the key is copied anew, into a tombstone or
       * an emptied slot. */
      if (i % 7 == 0) {
        cr_assert(chat__map_del(&m, k, strlen(k), NULL));
        failures += put_checked(&m, i, fail_at);
      }
    }
    cr_assert_eq(chat__map_len(&m), OOM_KEYS);
    cr_assert_leq(failures, 1);
    finished = fa.count <= fail_at; /* nothing failed: every index done */
    chat__map_free(&m);
    cr_assert_eq(fa.live, 0, "fail_at %ld leaked %ld blocks", fail_at,
                 fa.live);
  }
}

/* ---- the hash ---- */

Test(map, hash_is_deterministic_and_seeded) {
  const char *s = "conversation:1234";
  size_t n = strlen(s);
  cr_assert_eq(chat__hash(1, s, n), chat__hash(1, s, n));
  cr_assert_neq(chat__hash(1, s, n), chat__hash(2, s, n));
  cr_assert_neq(chat__hash(0, NULL, 0), chat__hash(1, NULL, 0));
  /* Every key, under two seeds: the hashes differ (a 64-bit coincidence
   * would be a one-in-2^64 event), and so does the bucket order. */
  char k[32];
  int same_bucket = 0;
  for (size_t i = 0; i < 1000; i++) {
    size_t kl = key_of(k, i);
    uint64_t a = chat__hash(0x1111, k, kl), b = chat__hash(0x2222, k, kl);
    cr_assert_neq(a, b);
    same_bucket += (a & 1023) == (b & 1023);
  }
  cr_assert_lt(same_bucket, 20);
  /* Length is part of the key: trailing zero bytes change the hash. */
  const char z[16] = {0};
  for (size_t i = 0; i < 16; i++)
    for (size_t j = i + 1; j < 16; j++)
      cr_assert_neq(chat__hash(7, z, i), chat__hash(7, z, j));
}

Test(map, maps_with_different_seeds_agree_on_contents) {
  chat__map a, b;
  chat__map_init(&a, NULL, 1);
  chat__map_init(&b, NULL, 2);
  char k[32];
  for (size_t i = 0; i < 500; i++) {
    chat__map_put(&a, k, key_of(k, i), V(i), NULL);
    chat__map_put(&b, k, key_of(k, i), V(i), NULL);
  }
  /* Same contents, different layout. */
  size_t ia = 0, ib = 0, differ = 0;
  const char *ka, *kb;
  while (chat__map_next(&a, &ia, &ka, NULL, NULL) &&
         chat__map_next(&b, &ib, &kb, NULL, NULL))
    differ += strcmp(ka, kb) != 0;
  cr_assert_gt(differ, 100);
  for (size_t i = 0; i < 500; i++) {
    size_t kl = key_of(k, i);
    cr_assert_eq(*chat__map_get(&a, k, kl), *chat__map_get(&b, k, kl));
  }
  chat__map_free(&a);
  chat__map_free(&b);
}

Test(map, hash_spreads_sequential_keys) {
  /* Low bits pick the bucket: sequential ids must fill 1024 buckets
   * roughly evenly (chi-square far below a broken hash's). */
  enum { BUCKETS = 1024, KEYS = 102400 };
  static unsigned count[BUCKETS];
  memset(count, 0, sizeof count);
  char k[32];
  for (size_t i = 0; i < KEYS; i++)
    count[chat__hash(12345, k, key_of(k, i)) & (BUCKETS - 1)]++;
  double expect = (double)KEYS / BUCKETS, chi = 0;
  for (int i = 0; i < BUCKETS; i++)
    chi += (count[i] - expect) * (count[i] - expect) / expect;
  /* 1023 degrees of freedom: mean 1023, sd about 45. */
  cr_assert_lt(chi, 1300.0, "chi-square %f", chi);
}

/* lib/common/alloc.c, arena.c and buf.c. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/arena.h"
#include "common/buf.h"
#include "fail_alloc.h"

/* ---- allocator ---- */

Test(alloc, null_source_means_libc) {
  chat_allocator a;
  cr_assert_eq(chat__allocator_init(&a, NULL), CHAT_OK);
  cr_assert(a.alloc && a.resize && a.release);
  char *p = chat__alloc(&a, 10);
  cr_assert_not_null(p);
  memcpy(p, "123456789", 10);
  p = chat__realloc(&a, p, 1000);
  cr_assert_str_eq(p, "123456789");
  chat__free(&a, p);
  chat__free(&a, NULL);
  /* A NULL allocator pointer is libc as well. */
  p = chat__alloc(NULL, 3);
  cr_assert_not_null(p);
  chat__free(NULL, p);
}

static void *dummy_alloc(size_t n, void *ud) {
  (void)n, (void)ud;
  return NULL;
}
static void *dummy_resize(void *p, size_t n, void *ud) {
  (void)p, (void)n, (void)ud;
  return NULL;
}
static void dummy_release(void *p, void *ud) {
  (void)p, (void)ud;
}

Test(alloc, refuses_partial_allocator) {
  for (int mask = 0; mask < 7; mask++) { /* 7 = all three present */
    chat_allocator src = {
      NULL,
      (mask & 1) ? dummy_alloc : NULL,
      (mask & 2) ? dummy_resize : NULL,
      (mask & 4) ? dummy_release : NULL,
    };
    chat_allocator dst;
    cr_assert_eq(chat__allocator_init(&dst, &src), CHAT_ERR_INVAL, "mask %d",
                 mask);
  }
  cr_assert_eq(chat__allocator_init(NULL, NULL), CHAT_ERR_INVAL);
}

Test(alloc, copies_the_callers_allocator) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat_allocator src = fa.a, a;
  cr_assert_eq(chat__allocator_init(&a, &src), CHAT_OK);
  memset(&src, 0, sizeof src); /* the copy must not refer back */
  void *p = chat__alloc(&a, 8);
  cr_assert_not_null(p);
  cr_assert_eq(fa.count, 1);
  cr_assert_eq(fa.live, 1);
  chat__free(&a, p);
  cr_assert_eq(fa.live, 0);
}

Test(alloc, calloc_zeroes_and_checks_overflow) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  unsigned char *p = chat__calloc(&fa.a, 100, 7);
  cr_assert_not_null(p);
  for (int i = 0; i < 700; i++)
    cr_assert_eq(p[i], 0);
  chat__free(&fa.a, p);
  long before = fa.count;
  cr_assert_null(chat__calloc(&fa.a, SIZE_MAX / 2 + 1, 2));
  cr_assert_null(chat__calloc(&fa.a, 2, SIZE_MAX / 2 + 1));
  cr_assert_null(chat__calloc(&fa.a, SIZE_MAX, SIZE_MAX));
  cr_assert_null(chat__calloc(&fa.a, (SIZE_MAX >> 16) + 1, 1u << 16));
  cr_assert_eq(fa.count, before, "an overflowing size never reaches alloc");
  p = chat__calloc(&fa.a, 0, 16);
  chat__free(&fa.a, p);
  cr_assert_eq(fa.live, 0);
}

Test(alloc, failures_are_null) {
  fail_alloc fa;
  fail_alloc_init(&fa, 0);
  cr_assert_null(chat__alloc(&fa.a, 10));
  fail_alloc_init(&fa, 0);
  cr_assert_null(chat__calloc(&fa.a, 10, 10));
  fail_alloc_init(&fa, 0);
  cr_assert_null(chat__strndup(&fa.a, "abc", 3));
  cr_assert_eq(fa.live, 0);
}

Test(alloc, strndup_copies_len_bytes) {
  char *s = chat__strndup(NULL, "hello world", 5);
  cr_assert_str_eq(s, "hello");
  chat__free(NULL, s);
  s = chat__strndup(NULL, "a\0b", 3);
  cr_assert_eq(memcmp(s, "a\0b\0", 4), 0);
  chat__free(NULL, s);
  s = chat__strndup(NULL, NULL, 0);
  cr_assert_str_eq(s, "");
  chat__free(NULL, s);
  cr_assert_null(chat__strndup(NULL, "x", SIZE_MAX));
  cr_assert_null(chat__strndup(NULL, NULL, 3));
}

/* ---- arena ---- */

static bool aligned16(const void *p) {
  return ((uintptr_t)p & 15) == 0;
}

Test(arena, alignment_for_every_small_size) {
  chat__arena ar;
  chat__arena_init(&ar, NULL);
  for (size_t n = 0; n < 300; n++) {
    void *p = chat__arena_alloc(&ar, n);
    cr_assert_not_null(p);
    cr_assert(aligned16(p), "size %zu", n);
  }
  cr_assert(aligned16(chat__arena_alloc(&ar, 100000)));
  cr_assert(aligned16(chat__arena_alloc(&ar, 1)));
  chat__arena_free(&ar);
}

/* An allocator whose blocks are only 8-aligned: the arena must still hand
 * out 16-aligned memory. */
static void *odd_alloc(size_t n, void *ud) {
  (void)ud;
  char *p = malloc(n + 8);
  return p ? p + 8 : NULL;
}
static void *odd_resize(void *p, size_t n, void *ud) {
  (void)ud;
  char *q = realloc(p ? (char *)p - 8 : NULL, n + 8);
  return q ? q + 8 : NULL;
}
static void odd_release(void *p, void *ud) {
  (void)ud;
  if (p)
    free((char *)p - 8);
}

Test(arena, aligns_even_with_a_misaligning_allocator) {
  chat_allocator a = {NULL, odd_alloc, odd_resize, odd_release};
  chat__arena ar;
  chat__arena_init(&ar, &a);
  for (int round = 0; round < 3; round++) {
    for (size_t n = 0; n < 2000; n += 7) {
      char *p = chat__arena_alloc(&ar, n);
      cr_assert_not_null(p);
      cr_assert(aligned16(p));
      memset(p, 0xAB, n);
    }
    chat__arena_reset(&ar);
  }
  chat__arena_free(&ar);
}

Test(arena, zero_size_gives_unique_pointers) {
  chat__arena ar;
  chat__arena_init(&ar, NULL);
  void *a = chat__arena_alloc(&ar, 0), *b = chat__arena_alloc(&ar, 0);
  cr_assert_not_null(a);
  cr_assert_not_null(b);
  cr_assert_neq(a, b);
  chat__arena_free(&ar);
}

Test(arena, allocations_never_overlap) {
  chat__arena ar;
  chat__arena_init(&ar, NULL);
  enum { N = 3000 };
  static unsigned char *ptr[N];
  static size_t len[N];
  srand(7);
  for (int i = 0; i < N; i++) {
    len[i] = (size_t)(rand() % 10 == 0 ? rand() % 20000 : rand() % 100);
    ptr[i] = chat__arena_alloc(&ar, len[i]);
    cr_assert_not_null(ptr[i]);
    memset(ptr[i], i & 0xFF, len[i]);
  }
  for (int i = 0; i < N; i++)
    for (size_t k = 0; k < len[i]; k++)
      if (ptr[i][k] != (i & 0xFF))
        cr_assert_fail("allocation %d was overwritten", i);
  chat__arena_free(&ar);
}

Test(arena, large_request_gets_its_own_chunk) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat__arena ar;
  chat__arena_init(&ar, &fa.a);
  char *a = chat__arena_alloc(&ar, 32);
  cr_assert_eq(fa.count, 1);
  char *big = chat__arena_alloc(&ar, 100000);
  cr_assert_not_null(big);
  cr_assert_eq(fa.count, 2);
  memset(big, 1, 100000);
  /* The small chunk's free space is not abandoned. */
  char *c = chat__arena_alloc(&ar, 32);
  cr_assert_eq(c, a + 32);
  cr_assert_eq(fa.count, 2);
  chat__arena_free(&ar);
  cr_assert_eq(fa.live, 0);
}

Test(arena, strndup) {
  chat__arena ar;
  chat__arena_init(&ar, NULL);
  char *s = chat__arena_strndup(&ar, "hello world", 5);
  cr_assert_str_eq(s, "hello");
  s = chat__arena_strndup(&ar, "x\0y", 3);
  cr_assert_eq(memcmp(s, "x\0y\0", 4), 0);
  s = chat__arena_strndup(&ar, NULL, 0);
  cr_assert_str_eq(s, "");
  cr_assert_null(chat__arena_strndup(&ar, "x", SIZE_MAX));
  chat__arena_free(&ar);
}

Test(arena, reset_keeps_one_chunk_and_next_run_allocates_nothing) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat__arena ar;
  chat__arena_init(&ar, &fa.a);
  /* A run that spills over many chunks, with a large request in it. */
  for (int i = 0; i < 5000; i++)
    cr_assert_not_null(chat__arena_alloc(&ar, (size_t)(i % 97)));
  cr_assert_not_null(chat__arena_alloc(&ar, 50000));
  cr_assert_gt(fa.live, 2);
  chat__arena_reset(&ar);
  cr_assert_eq(fa.live, 1, "reset keeps exactly one chunk");
  for (int round = 0; round < 3; round++) {
    long before = fa.count;
    for (int i = 0; i < 5000; i++)
      cr_assert_not_null(chat__arena_alloc(&ar, (size_t)(i % 97)));
    cr_assert_not_null(chat__arena_alloc(&ar, 50000));
    cr_assert_eq(fa.count, before, "round %d called the allocator", round);
    chat__arena_reset(&ar);
    cr_assert_eq(fa.count, before, "a reset after a fitting run is free");
    cr_assert_eq(fa.live, 1);
  }
  chat__arena_free(&ar);
  cr_assert_eq(fa.live, 0);
}

Test(arena, reset_survives_failed_consolidation) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat__arena ar;
  chat__arena_init(&ar, &fa.a);
  for (int i = 0; i < 1000; i++)
    chat__arena_alloc(&ar, 64);
  fa.fail_at = fa.count; /* the resize inside reset fails */
  chat__arena_reset(&ar);
  cr_assert_eq(fa.live, 1);
  for (int i = 0; i < 1000; i++) {
    char *p = chat__arena_alloc(&ar, 64);
    cr_assert_not_null(p);
    memset(p, 0x5A, 64);
  }
  chat__arena_free(&ar);
  cr_assert_eq(fa.live, 0);
}

Test(arena, out_of_memory_is_null_and_recoverable) {
  fail_alloc fa;
  fail_alloc_init(&fa, 0);
  chat__arena ar;
  chat__arena_init(&ar, &fa.a);
  cr_assert_null(chat__arena_alloc(&ar, 10));
  cr_assert_str_eq(chat__arena_strndup(&ar, "abc", 3), "abc");
  cr_assert_eq(fa.live, 1, "the second call got a chunk");
  fa.fail_at = fa.count; /* large request fails */
  cr_assert_null(chat__arena_alloc(&ar, 1 << 20));
  cr_assert_not_null(chat__arena_alloc(&ar, 16), "arena still usable");
  long before = fa.count;
  cr_assert_null(chat__arena_alloc(&ar, SIZE_MAX));
  cr_assert_null(chat__arena_alloc(&ar, SIZE_MAX - 20));
  cr_assert_eq(fa.count, before, "impossible sizes never reach alloc");
  chat__arena_free(&ar);
  cr_assert_eq(fa.live, 0);
}

Test(arena, free_and_reset_on_empty_arena) {
  chat__arena ar;
  chat__arena_init(&ar, NULL);
  chat__arena_reset(&ar);
  chat__arena_free(&ar);
  chat__arena_free(&ar);
  cr_assert_not_null(chat__arena_alloc(&ar, 8), "usable again after free");
  chat__arena_free(&ar);
}

/* ---- buf ---- */

Test(buf, append_and_putc) {
  chat__buf b;
  chat__buf_init(&b, NULL);
  chat__buf_append(&b, "hello", 5);
  chat__buf_putc(&b, ' ');
  chat__buf_append(&b, "world", 5);
  chat__buf_append(&b, NULL, 0);
  cr_assert_eq(b.len, 11);
  cr_assert_eq(memcmp(b.data, "hello world", 11), 0);
  cr_assert_not(b.oom);
  chat__buf_free(&b);
  cr_assert_null(b.data);
  chat__buf_free(&b);
}

Test(buf, grows_geometrically) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat__buf b;
  chat__buf_init(&b, &fa.a);
  for (int i = 0; i < 1000000; i++)
    chat__buf_putc(&b, (char)('a' + i % 26));
  cr_assert_eq(b.len, 1000000);
  cr_assert_lt(fa.count, 20, "%ld growths", fa.count);
  for (int i = 0; i < 1000000; i++)
    if (b.data[i] != (char)('a' + i % 26))
      cr_assert_fail("byte %d", i);
  chat__buf_free(&b);
  cr_assert_eq(fa.live, 0);
}

Test(buf, reserve) {
  chat__buf b;
  chat__buf_init(&b, NULL);
  cr_assert(chat__buf_reserve(&b, 1000));
  cr_assert_geq(b.cap, 1000);
  cr_assert_eq(b.len, 0);
  chat__buf_append(&b, "x", 1);
  cr_assert_not(chat__buf_reserve(&b, SIZE_MAX), "len + n overflows");
  cr_assert(b.oom);
  chat__buf_free(&b);
}

Test(buf, oom_is_sticky_until_reset) {
  fail_alloc fa;
  fail_alloc_init(&fa, 1); /* the second growth fails */
  chat__buf b;
  chat__buf_init(&b, &fa.a);
  chat__buf_append(&b, "abc", 3);
  cr_assert_not(b.oom);
  char big[1000];
  memset(big, 'z', sizeof big);
  chat__buf_append(&b, big, sizeof big);
  cr_assert(b.oom);
  cr_assert_eq(b.len, 3, "a failed append adds nothing");
  long before = fa.count;
  chat__buf_putc(&b, 'q');
  chat__buf_append(&b, "d", 1);
  cr_assert_eq(b.len, 3, "appends after a failure do nothing");
  cr_assert_eq(fa.count, before, "...and do not retry the allocator");
  cr_assert_not(chat__buf_reserve(&b, 1));
  cr_assert_eq(memcmp(b.data, "abc", 3), 0);

  chat__buf_reset(&b);
  cr_assert_not(b.oom);
  cr_assert_eq(b.len, 0);
  chat__buf_append(&b, big, sizeof big);
  cr_assert_not(b.oom);
  cr_assert_eq(b.len, sizeof big);
  chat__buf_free(&b);
  cr_assert_eq(fa.live, 0);
}

Test(buf, first_growth_failing) {
  fail_alloc fa;
  fail_alloc_init(&fa, 0);
  chat__buf b;
  chat__buf_init(&b, &fa.a);
  chat__buf_putc(&b, 'x');
  cr_assert(b.oom);
  cr_assert_eq(b.len, 0);
  chat__buf_free(&b);
  cr_assert_eq(fa.live, 0);
}

Test(buf, reset_keeps_memory) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat__buf b;
  chat__buf_init(&b, &fa.a);
  chat__buf_append(&b, "0123456789", 10);
  char *data = b.data;
  size_t cap = b.cap;
  chat__buf_reset(&b);
  cr_assert_eq(b.len, 0);
  cr_assert_eq(b.data, data);
  cr_assert_eq(b.cap, cap);
  long before = fa.count;
  chat__buf_append(&b, "abc", 3);
  cr_assert_eq(fa.count, before);
  chat__buf_free(&b);
  cr_assert_eq(fa.live, 0);
}

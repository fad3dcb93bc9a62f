/* Chunked bump allocator.
 *
 * Small requests are carved from the head chunk; a request over LARGE gets a
 * chunk of its own, linked behind the head so the head's free space is not
 * abandoned. Reset keeps one chunk, grown to what the whole last run used,
 * so the next run of the same shape makes no allocator call at all. */
#include "arena.h"

#include <string.h>

#include "alloc.h"

#define ALIGN 16
#define CHUNK_MIN 4096         /* first chunk, allocator-friendly */
#define CHUNK_GROW_MAX 65536   /* regular chunks double up to this */
#define LARGE (CHUNK_MIN / 4)  /* bigger requests get their own chunk */

struct chat__arena_chunk {
  struct chat__arena_chunk *next;
  size_t total; /* bytes obtained from the allocator, header included */
};

/* The allocator need not return 16-aligned blocks, so each chunk carries
 * ALIGN - 1 bytes of slack and usable space starts at the first aligned
 * address after the header. */
#define OVERHEAD (sizeof(struct chat__arena_chunk) + ALIGN - 1)

static char *chunk_start(struct chat__arena_chunk *c) {
  uintptr_t p = (uintptr_t)(c + 1);
  return (char *)(c + 1) + ((ALIGN - (p & (ALIGN - 1))) & (ALIGN - 1));
}

static char *chunk_end(struct chat__arena_chunk *c) {
  return (char *)c + c->total;
}

/* A chunk whose usable space is at least cap, or NULL. */
static struct chat__arena_chunk *chunk_new(chat__arena *ar, size_t cap) {
  if (cap > SIZE_MAX - OVERHEAD)
    return NULL;
  struct chat__arena_chunk *c = chat__alloc(ar->a, cap + OVERHEAD);
  if (!c)
    return NULL;
  c->next = NULL;
  c->total = cap + OVERHEAD;
  return c;
}

void chat__arena_init(chat__arena *ar, const chat_allocator *a) {
  ar->a = a;
  ar->head = NULL;
  ar->cur = NULL;
  ar->end = NULL;
}

/* n rounded up to ALIGN, so cur stays aligned; 0 on overflow. */
static size_t round_up(size_t n) {
  return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

/* n is already rounded and nonzero. */
static void *alloc_slow(chat__arena *ar, size_t n) {
  if (n > LARGE) {
    struct chat__arena_chunk *c = chunk_new(ar, n);
    if (!c)
      return NULL;
    char *p = chunk_start(c);
    if (ar->head) {
      c->next = ar->head->next;
      ar->head->next = c;
    } else {
      ar->head = c;
      ar->cur = p + n;
      ar->end = chunk_end(c);
    }
    return p;
  }
  size_t cap = CHUNK_MIN;
  if (ar->head) {
    size_t prev = ar->head->total;
    cap = prev >= CHUNK_GROW_MAX / 2 ? CHUNK_GROW_MAX : prev * 2;
  }
  struct chat__arena_chunk *c = chunk_new(ar, cap);
  if (!c)
    return NULL;
  c->next = ar->head;
  ar->head = c;
  char *p = chunk_start(c);
  ar->cur = p + n;
  ar->end = chunk_end(c);
  return p;
}

void *chat__arena_alloc(chat__arena *ar, size_t n) {
  /* n == 0 still takes ALIGN bytes: a unique pointer, as documented. */
  size_t r = n ? round_up(n) : ALIGN;
  if (r == 0)
    return NULL; /* n within ALIGN of SIZE_MAX */
  if (r <= (size_t)((uintptr_t)ar->end - (uintptr_t)ar->cur)) {
    char *p = ar->cur;
    ar->cur = p + r;
    return p;
  }
  return alloc_slow(ar, r);
}

char *chat__arena_strndup(chat__arena *ar, const char *s, size_t len) {
  if (len == SIZE_MAX || (!s && len))
    return NULL;
  char *p = chat__arena_alloc(ar, len + 1);
  if (!p)
    return NULL;
  if (len)
    memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

void chat__arena_reset(chat__arena *ar) {
  struct chat__arena_chunk *keep = NULL;
  size_t sum = 0;
  for (struct chat__arena_chunk *c = ar->head; c; c = c->next) {
    sum = c->total > SIZE_MAX - sum ? SIZE_MAX : sum + c->total;
    if (!keep || c->total > keep->total)
      keep = c;
  }
  for (struct chat__arena_chunk *c = ar->head, *next; c; c = next) {
    next = c->next;
    if (c != keep)
      chat__free(ar->a, c);
  }
  ar->head = keep;
  ar->cur = NULL;
  ar->end = NULL;
  if (!keep)
    return;
  keep->next = NULL;
  /* The last run spilled over several chunks: grow the kept one to their
   * sum so the same run fits in one chunk next time. If that fails the
   * kept chunk is still intact and merely too small. */
  if (sum > keep->total && sum != SIZE_MAX) {
    struct chat__arena_chunk *g = chat__realloc(ar->a, keep, sum);
    if (g) {
      keep = g;
      keep->total = sum;
      ar->head = keep;
    }
  }
  ar->cur = chunk_start(keep);
  ar->end = chunk_end(keep);
}

void chat__arena_free(chat__arena *ar) {
  for (struct chat__arena_chunk *c = ar->head, *next; c; c = next) {
    next = c->next;
    chat__free(ar->a, c);
  }
  ar->head = NULL;
  ar->cur = NULL;
  ar->end = NULL;
}

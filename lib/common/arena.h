/* Bump allocator for per-call data (a decoded frame and its strings). Reset
 * keeps the largest chunk, so a warmed-up codec decodes without calling the
 * allocator at all. */
#ifndef CHAT__ARENA_H
#define CHAT__ARENA_H

#include <chat/common.h>

struct chat__arena_chunk;

typedef struct chat__arena {
  const chat_allocator *a; /* borrowed from the owner; must outlive the arena */
  struct chat__arena_chunk *head;
  char *cur; /* always 16-aligned (or NULL) */
  char *end;
} chat__arena;

void chat__arena_init(chat__arena *ar, const chat_allocator *a);
/* n bytes aligned to 16 (max_align_t); NULL on OOM. n == 0 gives a valid
 * unique pointer. */
void *chat__arena_alloc(chat__arena *ar, size_t n);
/* A NUL-terminated copy of s[0..len) in the arena; NULL on OOM. */
char *chat__arena_strndup(chat__arena *ar, const char *s, size_t len);

/* chat__arena_alloc with its bump fast path inlined, for hot callers (the
 * JSON parser makes a dozen allocations per frame). Sizes are rounded up to
 * 16 so cur stays aligned; n == 0 and overflow wrap r to 0 and take the
 * out-of-line path. */
static inline void *chat__arena_alloc_hot(chat__arena *ar, size_t n) {
  size_t r = (n + 15) & ~(size_t)15;
  if (r - 1 < (size_t)((uintptr_t)ar->end - (uintptr_t)ar->cur)) {
    void *p = ar->cur;
    ar->cur += r;
    return p;
  }
  return chat__arena_alloc(ar, n);
}

/* Forget every allocation; keeps the largest chunk for reuse. */
void chat__arena_reset(chat__arena *ar);
void chat__arena_free(chat__arena *ar);

#endif

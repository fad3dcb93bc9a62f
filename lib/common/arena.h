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
  char *cur;
  char *end;
} chat__arena;

void chat__arena_init(chat__arena *ar, const chat_allocator *a);
/* n bytes aligned to 16 (max_align_t); NULL on OOM. n == 0 gives a valid
 * unique pointer. */
void *chat__arena_alloc(chat__arena *ar, size_t n);
/* A NUL-terminated copy of s[0..len) in the arena; NULL on OOM. */
char *chat__arena_strndup(chat__arena *ar, const char *s, size_t len);
/* Forget every allocation; keeps the largest chunk for reuse. */
void chat__arena_reset(chat__arena *ar);
void chat__arena_free(chat__arena *ar);

#endif

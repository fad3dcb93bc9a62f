/* Allocation through the owning object's copied chat_allocator. A NULL
 * allocator pointer means libc here too, matching the public rule that
 * NULL everywhere means libc. */
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

/* malloc(0) and realloc(p, 0) may return NULL; asking for one byte keeps
 * "NULL means out of memory" true for every size. */
static void *libc_alloc(size_t n, void *user_data) {
  (void)user_data;
  return malloc(n ? n : 1);
}

static void *libc_resize(void *p, size_t n, void *user_data) {
  (void)user_data;
  return realloc(p, n ? n : 1);
}

static void libc_release(void *p, void *user_data) {
  (void)user_data;
  free(p);
}

static const chat_allocator libc_allocator = {
  NULL, libc_alloc, libc_resize, libc_release
};

static const chat_allocator *pick(const chat_allocator *a) {
  return a ? a : &libc_allocator;
}

chat_err chat__allocator_init(chat_allocator *dst, const chat_allocator *src) {
  if (!dst)
    return CHAT_ERR_INVAL;
  if (!src) {
    *dst = libc_allocator;
    return CHAT_OK;
  }
  /* Mixing one of the caller's methods with one of libc's would hand a
   * block to the wrong release, so a partial allocator is refused. */
  if (!src->alloc || !src->resize || !src->release)
    return CHAT_ERR_INVAL;
  *dst = *src;
  return CHAT_OK;
}

void *chat__alloc(const chat_allocator *a, size_t n) {
  a = pick(a);
  return a->alloc(n, a->user_data);
}

void *chat__calloc(const chat_allocator *a, size_t n, size_t size) {
  if (size && n > SIZE_MAX / size)
    return NULL;
  void *p = chat__alloc(a, n * size);
  if (p)
    memset(p, 0, n * size);
  return p;
}

void *chat__realloc(const chat_allocator *a, void *p, size_t n) {
  a = pick(a);
  return a->resize(p, n, a->user_data);
}

void chat__free(const chat_allocator *a, void *p) {
  if (!p)
    return;
  a = pick(a);
  a->release(p, a->user_data);
}

char *chat__strndup(const chat_allocator *a, const char *s, size_t len) {
  if (len == SIZE_MAX || (!s && len))
    return NULL;
  char *p = chat__alloc(a, len + 1);
  if (!p)
    return NULL;
  if (len)
    memcpy(p, s, len);
  p[len] = '\0';
  return p;
}

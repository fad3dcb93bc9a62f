/* Growable byte buffer. Growth failure is sticky, so a writer can append a
 * whole document and check once at the end. */
#include "buf.h"

#include <string.h>

#include "alloc.h"

#define BUF_MIN 256

void chat__buf_init(chat__buf *b, const chat_allocator *a) {
  b->a = a;
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->oom = false;
}

bool chat__buf_reserve(chat__buf *b, size_t n) {
  if (b->oom)
    return false;
  if (n <= b->cap - b->len)
    return true;
  if (n > SIZE_MAX - b->len) {
    b->oom = true;
    return false;
  }
  size_t need = b->len + n;
  /* Doubling keeps appends amortised O(1); past SIZE_MAX / 2 take exactly
   * what is needed. */
  size_t cap = b->cap > SIZE_MAX / 2 ? need : b->cap * 2;
  if (cap < need)
    cap = need;
  if (cap < BUF_MIN)
    cap = BUF_MIN;
  char *p = chat__realloc(b->a, b->data, cap);
  if (!p) {
    b->oom = true;
    return false;
  }
  b->data = p;
  b->cap = cap;
  return true;
}

void chat__buf_append(chat__buf *b, const void *p, size_t n) {
  if (n == 0 || !chat__buf_reserve(b, n))
    return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void chat__buf_putc(chat__buf *b, char c) {
  if (b->oom || (b->cap == b->len && !chat__buf_reserve(b, 1)))
    return;
  b->data[b->len++] = c;
}

void chat__buf_reset(chat__buf *b) {
  b->len = 0;
  b->oom = false;
}

void chat__buf_free(chat__buf *b) {
  chat__free(b->a, b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
  b->oom = false;
}

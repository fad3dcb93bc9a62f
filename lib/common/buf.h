/* Growable byte buffer with a sticky out-of-memory flag, so a writer can
 * append many pieces and check for failure once at the end. */
#ifndef CHAT__BUF_H
#define CHAT__BUF_H

#include <chat/common.h>

typedef struct chat__buf {
  const chat_allocator *a; /* borrowed from the owner */
  char *data;
  size_t len;
  size_t cap;
  bool oom; /* set by the first failed growth; later appends do nothing */
} chat__buf;

void chat__buf_init(chat__buf *b, const chat_allocator *a);
/* Make room for n more bytes; false (and oom set) on failure. */
bool chat__buf_reserve(chat__buf *b, size_t n);
void chat__buf_append(chat__buf *b, const void *p, size_t n);
void chat__buf_putc(chat__buf *b, char c);
/* len = 0 and oom cleared; keeps the memory. */
void chat__buf_reset(chat__buf *b);
void chat__buf_free(chat__buf *b);

#endif

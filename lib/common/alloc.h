/* Internal allocation helpers: every allocation in libchat goes through the
 * owning object's copied chat_allocator, never straight to libc. */
#ifndef CHAT__ALLOC_H
#define CHAT__ALLOC_H

#include <chat/common.h>

/* Copy *src into *dst, or the libc allocator when src is NULL. Returns
 * CHAT_ERR_INVAL for a half-filled allocator (some methods NULL). */
chat_err chat__allocator_init(chat_allocator *dst, const chat_allocator *src);

void *chat__alloc(const chat_allocator *a, size_t n);
void *chat__calloc(const chat_allocator *a, size_t n, size_t size);
void *chat__realloc(const chat_allocator *a, void *p, size_t n);
void chat__free(const chat_allocator *a, void *p);
/* A NUL-terminated copy of s[0..len). */
char *chat__strndup(const chat_allocator *a, const char *s, size_t len);

#endif

/* An allocator that fails on request, for OOM torture: run a scenario once
 * to count its allocations, then once per allocation with that one failing,
 * and require CHAT_ERR_NOMEM (or graceful degradation), no crash and no
 * leak (ASan checks the leak). */
#ifndef CHAT_TEST_FAIL_ALLOC_H
#define CHAT_TEST_FAIL_ALLOC_H

#include <chat/common.h>

typedef struct fail_alloc {
  long fail_at;     /* 0-based index of the allocation to fail; -1: never */
  long count;       /* allocations (alloc + growing resize) attempted */
  long live;        /* blocks currently allocated */
  chat_allocator a; /* points back at this struct */
} fail_alloc;

void fail_alloc_init(fail_alloc *fa, long fail_at);

#endif

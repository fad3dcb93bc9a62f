#include "fail_alloc.h"

#include <stdlib.h>

static bool should_fail(fail_alloc *fa) {
  return fa->count++ == fa->fail_at;
}

static void *fa_alloc(size_t n, void *ud) {
  fail_alloc *fa = ud;
  if (should_fail(fa))
    return NULL;
  void *p = malloc(n ? n : 1);
  if (p)
    fa->live++;
  return p;
}

static void *fa_resize(void *p, size_t n, void *ud) {
  fail_alloc *fa = ud;
  if (should_fail(fa))
    return NULL;
  void *q = realloc(p, n ? n : 1);
  if (q && !p)
    fa->live++;
  return q;
}

static void fa_release(void *p, void *ud) {
  fail_alloc *fa = ud;
  if (p) {
    fa->live--;
    free(p);
  }
}

void fail_alloc_init(fail_alloc *fa, long fail_at) {
  fa->fail_at = fail_at;
  fa->count = 0;
  fa->live = 0;
  fa->a.user_data = fa;
  fa->a.alloc = fa_alloc;
  fa->a.resize = fa_resize;
  fa->a.release = fa_release;
}

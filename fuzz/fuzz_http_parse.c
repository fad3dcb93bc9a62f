/* Fuzz target: HTTP/1.1 request framing (lib/transport/epoll/http_parse.c).
 *
 * The first byte picks how the input is cut into reads (1..64 bytes); the
 * rest is what a client sent. Checks, beyond "no crash, no read outside
 * the input":
 *   - finding the head read by read gives the same answer as all at once;
 *   - a parsed head's strings all lie inside the head, and its framing is
 *     never both Content-Length and chunked;
 *   - a chunked body decoded read by read gives the same bytes and the
 *     same end as decoded at once;
 *   - the helpers (percent-decoding, the query, comma lists) stay inside
 *     their input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/epoll/http_parse.h"

#define MAX_HEAD 4096

static void check_in(const char *base, size_t len, chat__http_str s) {
  if (!s.p)
    return;
  if (s.p < base || s.p + s.n > base + len)
    abort();
}

/* Decode a chunked body in pieces of `step`; returns the status, the
 * decoded length and where the body ended. */
static int dechunk(const char *in, size_t len, size_t step, char *out,
                   size_t *out_len, size_t *end) {
  chat__http_chunked c;
  chat__http_chunked_init(&c);
  size_t k = 0, off = 0;
  *end = 0;
  while (off < len) {
    size_t piece = len - off < step ? len - off : step;
    size_t pos = 0;
    for (;;) {
      size_t used;
      const char *d;
      size_t dn;
      int r = chat__http_chunked_next(&c, in + off + pos, piece - pos, &used,
                                      &d, &dn);
      if (used > piece - pos)
        abort();
      pos += used;
      if (r == CHAT__CHUNK_DATA) {
        if (d < in || d + dn > in + len || dn == 0)
          abort();
        memcpy(out + k, d, dn);
        k += dn;
        continue;
      }
      if (r == CHAT__CHUNK_DONE || r == CHAT__CHUNK_ERROR) {
        *out_len = k;
        *end = off + pos;
        return r;
      }
      if (pos != piece)
        abort(); /* MORE means everything was taken */
      break;
    }
    off += piece;
  }
  *out_len = k;
  return CHAT__CHUNK_MORE;
}

static void chunked_both_ways(const char *in, size_t len, size_t step) {
  char *a = malloc(len + 1), *b = malloc(len + 1);
  size_t an, bn, ae, be;
  int ra = dechunk(in, len, len ? len : 1, a, &an, &ae);
  int rb = dechunk(in, len, step, b, &bn, &be);
  if (an > len || bn > len)
    abort();
  /* Errors may be found at different points of a split input only in
   * the count of bytes already decoded; the outcome must agree. */
  if (ra != rb)
    abort();
  if (ra == CHAT__CHUNK_DONE && (an != bn || ae != be || memcmp(a, b, an)))
    abort();
  free(a);
  free(b);
}

static chat__http_head head;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  size_t step = (size_t)(data[0] % 64) + 1;
  const char *in = (const char *)data + 1;
  size_t len = size - 1;

  /* One shot. */
  chat__http_error e1 = {0, 0, 0}, e2 = {0, 0, 0};
  size_t scan1 = 0;
  size_t skip = chat__http_skip_blank(in, len);
  long h1 = chat__http_find_head(in + skip, len - skip, MAX_HEAD, &scan1,
                                 &e1);
  /* Read by read, as the transport sees it. */
  size_t scan2 = 0;
  long h2 = 0;
  for (size_t have = step;; have += step) {
    if (have > len - skip)
      have = len - skip;
    h2 = chat__http_find_head(in + skip, have, MAX_HEAD, &scan2, &e2);
    if (h2 != 0 || have == len - skip)
      break;
  }
  if (h1 != h2 || (h1 < 0 && e1.status != e2.status))
    abort();
  if (h1 < 0 && (!e1.code || !e1.message || e1.status < 400))
    abort();

  if (h1 > 0) {
    const char *hd = in + skip;
    size_t hl = (size_t)h1;
    if (hl > len - skip)
      abort();
    chat__http_error err;
    if (chat__http_parse_head(hd, hl, &head, &err) == 0) {
      check_in(hd, hl, head.method);
      check_in(hd, hl, head.target);
      /* An absolute target without a path gets a static "/". */
      if (!(head.form == CHAT__HTTP_ABSOLUTE && head.path.n == 1 &&
            head.path.p[0] == '/'))
        check_in(hd, hl, head.path);
      check_in(hd, hl, head.query);
      check_in(hd, hl, head.host);
      if (head.n_fields > CHAT__HTTP_MAX_HEADERS)
        abort();
      for (size_t i = 0; i < head.n_fields; i++) {
        check_in(hd, hl, head.fields[i].name);
        check_in(hd, hl, head.fields[i].value);
        (void)chat__http_list_has(head.fields[i].value, "chunked");
      }
      if (head.chunked && head.has_length)
        abort();
      if (head.has_length && head.content_length > CHAT__HTTP_MAX_LENGTH)
        abort();
      if (head.minor >= 1 && !head.host.p)
        abort();
      char buf[MAX_HEAD + 1];
      size_t dn;
      if (head.path.n <= MAX_HEAD &&
          chat__http_pct_decode(head.path.p, head.path.n, buf, &dn)) {
        if (dn > head.path.n || memchr(buf, 0, dn))
          abort();
      }
      if (head.query.p && head.query.n <= MAX_HEAD) {
        size_t qn = chat__http_query_without(head.query, "access_token", buf);
        if (qn > head.query.n || buf[qn] != 0)
          abort();
        chat__http_str tok = chat__http_query_get(head.query, "access_token");
        check_in(hd, hl, tok);
      }
      if (head.chunked)
        chunked_both_ways(hd + hl, len - skip - hl, step);
    } else if (!err.code || !err.message || err.status < 400) {
      abort();
    }
  }
  /* The whole input as a chunked body, too. */
  chunked_both_ways(in, len, step);
  return 0;
}

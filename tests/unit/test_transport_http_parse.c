/* lib/transport/epoll/http_parse.c: RFC 9112 request framing, strict
 * where leniency would let two parsers disagree about message bounds. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transport/epoll/http_parse.h"

static chat__http_head H;

/* Parse a whole head; the status of the refusal, or 0. */
static int parse(const char *s) {
  chat__http_error err = {0, NULL, NULL};
  size_t scan = 0;
  long n = chat__http_find_head(s, strlen(s), 65536, &scan, &err);
  if (n < 0)
    return err.status;
  cr_assert_gt(n, 0, "head not complete: %s", s);
  cr_assert_eq((size_t)n, strlen(s), "head length for %s", s);
  if (chat__http_parse_head(s, (size_t)n, &H, &err) != 0) {
    cr_assert(err.code && err.message);
    return err.status;
  }
  return 0;
}

static bool str_is(chat__http_str s, const char *want) {
  return s.p && s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

Test(http_parse, simple_get) {
  cr_assert_eq(parse("GET /api/v1/x?limit=5&a=b HTTP/1.1\r\n"
                     "Host: h\r\nX-A:  spaced value \t\r\n\r\n"),
               0);
  cr_assert(str_is(H.method, "GET"));
  cr_assert(str_is(H.path, "/api/v1/x"));
  cr_assert(str_is(H.query, "limit=5&a=b"));
  cr_assert_eq(H.minor, 1);
  cr_assert(H.keep_alive);
  cr_assert(!H.has_length && !H.chunked);
  cr_assert(str_is(chat__http_field_get(&H, "x-a"), "spaced value"));
  cr_assert(str_is(H.host, "h"));
  cr_assert_null(chat__http_field_get(&H, "nope").p);
}

Test(http_parse, keep_alive_rules) {
  cr_assert_eq(parse("GET / HTTP/1.0\r\n\r\n"), 0);
  cr_assert(!H.keep_alive);
  cr_assert_eq(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
  cr_assert(H.keep_alive);
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: x, Close\r\n"
                     "\r\n"),
               0);
  cr_assert(!H.keep_alive);
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
                     "Connection: Upgrade\r\n\r\n"),
               0);
  cr_assert(H.keep_alive && H.connection_upgrade);
}

Test(http_parse, host_rules) {
  cr_assert_eq(parse("GET / HTTP/1.1\r\n\r\n"), 400);
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
  cr_assert_eq(parse("GET / HTTP/1.0\r\n\r\n"), 0); /* 1.0 needs none */
}

Test(http_parse, request_line) {
  cr_assert_eq(parse("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  cr_assert_eq(parse("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
  cr_assert_eq(parse("GET /\r\nHost: h\r\n\r\n"), 400);
  cr_assert_eq(parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 505);
  cr_assert_eq(parse("GET / HTTX/1.1\r\nHost: h\r\n\r\n"), 400);
  cr_assert_eq(parse("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), 0);
  cr_assert_eq(H.minor, 2);
  cr_assert_eq(parse("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  char longm[96];
  memset(longm, 'M', 40);
  strcpy(longm + 40, " / HTTP/1.1\r\nHost: h\r\n\r\n");
  cr_assert_eq(parse(longm), 501);
  /* Targets: no spaces, controls, non-ASCII or fragments. */
  cr_assert_eq(parse("GET /a#b HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  cr_assert_eq(parse("GET /\x80 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  cr_assert_eq(parse("GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
  /* The HTTP/2 preface is not HTTP/1. */
  cr_assert_eq(parse("PRI * HTTP/2.0\r\n\r\n"), 505);
}

Test(http_parse, target_forms) {
  cr_assert_eq(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
  cr_assert_eq(H.form, CHAT__HTTP_ASTERISK);
  cr_assert_eq(parse("GET http://example.com/api/v1/x?q=1 HTTP/1.1\r\n"
                     "Host: h\r\n\r\n"),
               0);
  cr_assert_eq(H.form, CHAT__HTTP_ABSOLUTE);
  cr_assert(str_is(H.path, "/api/v1/x"));
  cr_assert(str_is(H.query, "q=1"));
  cr_assert_eq(parse("GET HTTPS://example.com HTTP/1.1\r\nHost: h\r\n\r\n"),
               0);
  cr_assert(str_is(H.path, "/"));
  cr_assert_null(H.query.p);
  cr_assert_eq(parse("CONNECT example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
               0);
  cr_assert_eq(H.form, CHAT__HTTP_AUTHORITY);
  cr_assert_eq(parse("GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

Test(http_parse, field_syntax) {
  /* Whitespace before the colon (RFC 9112 section 5.1). */
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), 400);
  /* obs-fold. */
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"),
               400);
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01\r\n\r\n"), 400);
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7f\r\n\r\n"), 400);
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\n: x\r\n\r\n"), 400);
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n"), 400);
  /* obs-text is allowed in values. */
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n"),
               0);
  cr_assert(str_is(chat__http_field_get(&H, "x"), "caf\xc3\xa9"));
  /* An empty value is a value. */
  cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: h\r\nX:\r\n\r\n"), 0);
  cr_assert_not_null(chat__http_field_get(&H, "x").p);
}

Test(http_parse, too_many_fields) {
  char buf[8192];
  size_t k = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: h\r\n");
  for (int i = 0; i < CHAT__HTTP_MAX_HEADERS; i++)
    k += (size_t)sprintf(buf + k, "X-%d: v\r\n", i);
  strcpy(buf + k, "\r\n");
  cr_assert_eq(parse(buf), 431);
}

Test(http_parse, framing_smuggling) {
  /* Both: refused, whatever their values. */
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
                     "Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"
                     "\r\n"),
               400);
  /* Transfer codings: chunked alone, final, once. */
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
                     "Transfer-Encoding: Chunked\r\n\r\n"),
               0);
  cr_assert(H.chunked && !H.has_length);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
                     "Transfer-Encoding: gzip, chunked\r\n\r\n"),
               501);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
                     "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
                     "\r\n"),
               501);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
                     "Transfer-Encoding: chunked, gzip\r\n\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
                     "Transfer-Encoding: chunked, chunked\r\n\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
                     "Transfer-Encoding: \r\n\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
                     "Transfer-Encoding: chunked;q=1\r\n\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
               400);
  /* Content-Length: digits, once, in range. */
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n"
                     "\r\n"),
               0);
  cr_assert(H.has_length && H.content_length == 42);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
                     "Content-Length: 4\r\n\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4, 4\r\n"
                     "\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n"
                     "\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n"
                     "\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n"
                     "\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n"
                     "\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
                     "Content-Length: 99999999999999999\r\n\r\n"),
               400);
  cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: h\r\n"
                     "Content-Length: 9007199254740993\r\n\r\n"),
               400);
}

Test(http_parse, find_head_incremental) {
  const char *req = "GET / HTTP/1.1\r\nHost: h\r\n\r\nNEXT";
  size_t full = strlen(req) - 4;
  for (size_t cut = 0; cut < full; cut++) {
    size_t scan = 0;
    chat__http_error err;
    /* First a prefix, then the whole: the same answer as at once. */
    long a = chat__http_find_head(req, cut, 1024, &scan, &err);
    cr_assert_eq(a, 0, "cut %zu", cut);
    cr_assert_leq(scan, cut);
    long b = chat__http_find_head(req, strlen(req), 1024, &scan, &err);
    cr_assert_eq(b, (long)full, "cut %zu", cut);
  }
}

Test(http_parse, find_head_errors) {
  size_t scan = 0;
  chat__http_error err;
  cr_assert_eq(chat__http_find_head("GET / HTTP/1.1\nHost: h\r\n\r\n", 26,
                                    1024, &scan, &err),
               -1);
  cr_assert_eq(err.status, 400);
  scan = 0;
  cr_assert_eq(chat__http_find_head("GET / HTTP/1.1\rX\r\n\r\n", 20, 1024,
                                    &scan, &err),
               -1);
  cr_assert_eq(err.status, 400);
  /* A lone CR at the end waits for the next byte. */
  scan = 0;
  cr_assert_eq(chat__http_find_head("GET / HTTP/1.1\r", 15, 1024, &scan,
                                    &err),
               0);
  /* Over the limit: the request line itself (414), or the fields (431). */
  char big[600];
  memset(big, 'a', sizeof big);
  memcpy(big, "GET /", 5);
  scan = 0;
  cr_assert_eq(chat__http_find_head(big, sizeof big, 512, &scan, &err), -1);
  cr_assert_eq(err.status, 414);
  memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
  scan = 0;
  cr_assert_eq(chat__http_find_head(big, sizeof big, 512, &scan, &err), -1);
  cr_assert_eq(err.status, 431);
  /* The end within the limit, body bytes after it: fine. */
  char ok[600];
  memset(ok, 'b', sizeof ok);
  memcpy(ok, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27);
  scan = 0;
  cr_assert_eq(chat__http_find_head(ok, sizeof ok, 512, &scan, &err), 27);
}

Test(http_parse, skip_blank) {
  cr_assert_eq(chat__http_skip_blank("\r\n\r\nGET", 7), 4);
  cr_assert_eq(chat__http_skip_blank("\r\n\r", 3), 2);
  cr_assert_eq(chat__http_skip_blank("GET", 3), 0);
}

Test(http_parse, percent_decoding) {
  char out[64];
  size_t n;
  cr_assert(chat__http_pct_decode("/a%20b%2Fc+d", 12, out, &n));
  cr_assert_eq(n, 8);
  cr_assert_eq(memcmp(out, "/a b/c+d", 8), 0);
  cr_assert(!chat__http_pct_decode("/%zz", 4, out, &n));
  cr_assert(!chat__http_pct_decode("/%2", 3, out, &n));
  cr_assert(!chat__http_pct_decode("/%", 2, out, &n));
  cr_assert(!chat__http_pct_decode("/%00", 4, out, &n));
  cr_assert(chat__http_pct_decode("%2e%2E", 6, out, &n));
  cr_assert_eq(n, 2);
  cr_assert_eq(memcmp(out, "..", 2), 0);
}

Test(http_parse, query_helpers) {
  chat__http_str q = {"a=1&access_token=T.X&access_tokenx=2&b", 38};
  cr_assert(str_is(chat__http_query_get(q, "access_token"), "T.X"));
  cr_assert(str_is(chat__http_query_get(q, "a"), "1"));
  chat__http_str b = chat__http_query_get(q, "b");
  cr_assert_not_null(b.p);
  cr_assert_eq(b.n, 0);
  cr_assert_null(chat__http_query_get(q, "c").p);
  char out[64];
  size_t n = chat__http_query_without(q, "access_token", out);
  cr_assert_str_eq(out, "a=1&access_tokenx=2&b");
  cr_assert_eq(n, strlen(out));
  chat__http_str only = {"access_token=x", 14};
  cr_assert_eq(chat__http_query_without(only, "access_token", out), 0);
  cr_assert_str_eq(out, "");
  chat__http_str none = {NULL, 0};
  cr_assert_eq(chat__http_query_without(none, "x", out), 0);
}

Test(http_parse, list_has) {
  chat__http_str s = {" keep-alive ,, Upgrade\t", 23};
  cr_assert(chat__http_list_has(s, "upgrade"));
  cr_assert(chat__http_list_has(s, "keep-alive"));
  cr_assert(!chat__http_list_has(s, "close"));
  chat__http_str none = {NULL, 0};
  cr_assert(!chat__http_list_has(none, "x"));
}

/* Decode a whole chunked body fed in pieces of `step` bytes; returns the
 * final status and the body in out, the leftover's offset in *rest. */
static int chunked(const char *in, size_t len, size_t step, char *out,
                   size_t *out_len, size_t *rest) {
  chat__http_chunked c;
  chat__http_chunked_init(&c);
  size_t k = 0, off = 0;
  *out_len = 0;
  while (off < len) {
    size_t piece = len - off < step ? len - off : step;
    size_t pos = 0;
    for (;;) {
      size_t used;
      const char *d;
      size_t dn;
      int r = chat__http_chunked_next(&c, in + off + pos, piece - pos, &used,
                                      &d, &dn);
      pos += used;
      if (r == CHAT__CHUNK_DATA) {
        memcpy(out + k, d, dn);
        k += dn;
        continue;
      }
      if (r == CHAT__CHUNK_DONE) {
        *out_len = k;
        *rest = off + pos;
        return r;
      }
      if (r == CHAT__CHUNK_ERROR)
        return r;
      break; /* MORE */
    }
    off += piece;
  }
  *out_len = k;
  return CHAT__CHUNK_MORE;
}

Test(http_parse, chunked_bodies) {
  const char *b = "5\r\nhello\r\n6;ext=1;x\r\n world\r\n0\r\nT: v\r\n\r\nGET";
  size_t len = strlen(b);
  for (size_t step = 1; step <= len; step++) {
    char out[64];
    size_t n, rest = 0;
    cr_assert_eq(chunked(b, len, step, out, &n, &rest), CHAT__CHUNK_DONE,
                 "step %zu", step);
    cr_assert_eq(n, 11);
    cr_assert_eq(memcmp(out, "hello world", 11), 0);
    cr_assert_eq(rest, len - 3, "step %zu", step);
  }
  char out[64];
  size_t n, rest;
  cr_assert_eq(chunked("A\r\n0123456789\r\n0\r\n\r\n", 22, 64, out, &n, &rest),
               CHAT__CHUNK_DONE);
  cr_assert_eq(n, 10);
  cr_assert_eq(chunked("0\r\n\r\n", 5, 64, out, &n, &rest), CHAT__CHUNK_DONE);
  cr_assert_eq(n, 0);
  /* Whitespace then an extension is allowed; anything else after the
   * size is not. */
  cr_assert_eq(chunked("1 ;a\r\nx\r\n0\r\n\r\n", 14, 64, out, &n, &rest),
               CHAT__CHUNK_DONE);
  cr_assert_eq(chunked("1x\r\nx\r\n0\r\n\r\n", 12, 64, out, &n, &rest),
               CHAT__CHUNK_ERROR);
}

Test(http_parse, chunked_errors) {
  char out[256];
  size_t n, rest;
  cr_assert_eq(chunked("\r\n", 2, 64, out, &n, &rest), CHAT__CHUNK_ERROR);
  cr_assert_eq(chunked("g\r\n", 3, 64, out, &n, &rest), CHAT__CHUNK_ERROR);
  cr_assert_eq(chunked("1\r\nxy\r\n", 7, 64, out, &n, &rest),
               CHAT__CHUNK_ERROR);
  cr_assert_eq(chunked("1\nx\r\n", 5, 64, out, &n, &rest), CHAT__CHUNK_ERROR);
  cr_assert_eq(chunked("1\r\nx\n", 5, 64, out, &n, &rest), CHAT__CHUNK_ERROR);
  /* Sizes past 2^60 are refused before they can overflow. */
  cr_assert_eq(chunked("1000000000000000\r\n", 18, 64, out, &n, &rest),
               CHAT__CHUNK_ERROR);
  cr_assert_eq(chunked("0\r\nX: \x01\r\n\r\n", 11, 64, out, &n, &rest),
               CHAT__CHUNK_ERROR);
  /* Unfinished: more is wanted, nothing is wrong yet. */
  cr_assert_eq(chunked("5\r\nhel", 6, 64, out, &n, &rest), CHAT__CHUNK_MORE);
  /* Extensions and trailers are bounded. */
  size_t big = 5000;
  char *s = malloc(big + 16);
  memcpy(s, "1;", 2);
  memset(s + 2, 'e', big);
  memcpy(s + 2 + big, "\r\n", 2);
  cr_assert_eq(chunked(s, big + 4, 64, out, &n, &rest), CHAT__CHUNK_ERROR);
  free(s);
}

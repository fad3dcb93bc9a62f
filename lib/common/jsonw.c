/* JSON writer: appends to a chat__buf and inserts commas itself, so encoders
 * read as a list of fields. Failure is the buffer's sticky oom flag; misuse
 * (nesting deeper than CHAT__JW_MAX_DEPTH, an end without a begin) sets it
 * too, so a malformed document is never handed out as complete. */
#include "json.h"

#include <string.h>

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#  define LITTLE_ENDIAN_CTZ 1
#else
#  define LITTLE_ENDIAN_CTZ 0
#endif

#define ONES 0x0101010101010101ull
#define HIGH_BITS 0x8080808080808080ull

void chat__jw_init(chat__jw *w, chat__buf *b) {
  w->b = b;
  w->depth = 0;
  w->nonempty = 0;
  w->after_key = false;
}

/* Before any value or key: a comma unless it is the first item of its
 * container, or the value of a key just written. */
static void sep(chat__jw *w) {
  if (w->after_key) {
    w->after_key = false;
    return;
  }
  if (w->depth >= 64)
    return;
  uint64_t bit = (uint64_t)1 << w->depth;
  if (w->nonempty & bit)
    chat__buf_putc(w->b, ',');
  w->nonempty |= bit;
}

static void open_container(chat__jw *w, char open) {
  sep(w);
  if (w->depth >= CHAT__JW_MAX_DEPTH)
    w->b->oom = true;
  chat__buf_putc(w->b, open);
  w->depth++;
  if (w->depth < 64)
    w->nonempty &= ~((uint64_t)1 << w->depth);
}

static void close_container(chat__jw *w, char close) {
  if (w->depth == 0 || w->after_key) {
    w->b->oom = true;
    return;
  }
  w->depth--;
  chat__buf_putc(w->b, close);
}

void chat__jw_obj_begin(chat__jw *w) {
  open_container(w, '{');
}

void chat__jw_obj_end(chat__jw *w) {
  close_container(w, '}');
}

void chat__jw_arr_begin(chat__jw *w) {
  open_container(w, '[');
}

void chat__jw_arr_end(chat__jw *w) {
  close_container(w, ']');
}

/* Nonzero iff some byte of v is zero (the flags mark such bytes). */
static uint64_t has_zero(uint64_t v) {
  return (v - ONES) & ~v & HIGH_BITS;
}

/* Nonzero iff some byte of v is below 0x20. */
static uint64_t has_control(uint64_t v) {
  return (v - ONES * 0x20) & ~v & HIGH_BITS;
}

static const char hex[] = "0123456789abcdef";

/* Flags (see has_zero) the bytes of p[0..8) that may need an escape: '"',
 * '\\', controls, and 0xE2, the lead byte of U+2028 and U+2029. */
static uint64_t escape_mask(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return has_zero(v ^ (ONES * '"')) | has_zero(v ^ (ONES * '\\')) |
         has_control(v) | has_zero(v ^ (ONES * 0xE2));
}

/* The first byte in [p, end) that may need an escape, or end. begin is the
 * start of the string, so that its last word can be re-read whole. */
static const unsigned char *next_escape(const unsigned char *begin,
                                        const unsigned char *p,
                                        const unsigned char *end) {
  while (end - p >= 8) {
    uint64_t m = escape_mask(p);
    if (m) {
#if LITTLE_ENDIAN_CTZ
      /* These tests can flag bytes after a true match, never before it,
       * so the lowest flag is exact. */
      return p + (unsigned)__builtin_ctzll(m) / 8;
#else
      break;
#endif
    }
    p += 8;
  }
#if LITTLE_ENDIAN_CTZ
  if (p < end && end - begin >= 8) {
    /* The last 1..7 bytes: re-read the final word, ignoring the bytes
     * before p that were already checked. */
    unsigned seen = (unsigned)(8 - (end - p));
    uint64_t m = escape_mask(end - 8) & (~(uint64_t)0 << (8 * seen));
    return m ? end - 8 + (unsigned)__builtin_ctzll(m) / 8 : end;
  }
#endif
  for (; p < end; p++)
    if (*p == '"' || *p == '\\' || *p < 0x20 || *p == 0xE2)
      return p;
  return end;
}

/* s as a quoted JSON string, then `tail` unless it is 0. */
static void put_string(chat__buf *b, const char *s, size_t len, char tail) {
  const unsigned char *begin = (const unsigned char *)s, *end = begin + len;
  const unsigned char *p = next_escape(begin, begin, end);
  if (p == end) {
    /* Nothing to escape (the common case): one reservation, one copy. */
    if (len > SIZE_MAX - 3) {
      b->oom = true;
      return;
    }
    if (!chat__buf_reserve(b, len + 3))
      return;
    char *o = b->data + b->len;
    o[0] = '"';
    if (len)
      memcpy(o + 1, s, len);
    o[len + 1] = '"';
    o[len + 2] = tail;
    b->len += len + 2 + (tail != 0);
    return;
  }
  /* Copy runs of safe bytes with one append each, escapes in between. */
  const unsigned char *run = begin;
  chat__buf_putc(b, '"');
  for (; p < end; p = next_escape(begin, p, end)) {
    unsigned char c = *p;
    char esc[6];
    size_t n = 2, skip = 1;
    esc[0] = '\\';
    switch (c) {
    case '"': esc[1] = '"'; break;
    case '\\': esc[1] = '\\'; break;
    case '\b': esc[1] = 'b'; break;
    case '\f': esc[1] = 'f'; break;
    case '\n': esc[1] = 'n'; break;
    case '\r': esc[1] = 'r'; break;
    case '\t': esc[1] = 't'; break;
    default:
      if (c < 0x20) {
        memcpy(esc + 1, "u00", 3);
        esc[4] = hex[c >> 4];
        esc[5] = hex[c & 15];
        n = 6;
      } else if (c == 0xE2 && end - p >= 3 && p[1] == 0x80 &&
                 (p[2] == 0xA8 || p[2] == 0xA9)) {
        memcpy(esc + 1, "u202", 4);
        esc[5] = p[2] == 0xA8 ? '8' : '9';
        n = 6;
        skip = 3;
      } else {
        p++; /* an 0xE2 that starts some other character */
        continue;
      }
    }
    chat__buf_append(b, run, (size_t)(p - run));
    chat__buf_append(b, esc, n);
    p += skip;
    run = p;
  }
  chat__buf_append(b, run, (size_t)(end - run));
  chat__buf_putc(b, '"');
  if (tail)
    chat__buf_putc(b, tail);
}

void chat__jw_key_len(chat__jw *w, const char *key, size_t len) {
  sep(w);
  put_string(w->b, key, len, ':');
  w->after_key = true;
}

void chat__jw_key(chat__jw *w, const char *key) {
  chat__jw_key_len(w, key, strlen(key));
}

void chat__jw_str(chat__jw *w, const char *s, size_t len) {
  sep(w);
  put_string(w->b, s, len, 0);
}

/* Decimal digits of v at the end of buf[0..20); returns the first. */
static char *u64_digits(uint64_t v, char *buf_end) {
  char *p = buf_end;
  do {
    *--p = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  return p;
}

void chat__jw_int(chat__jw *w, int64_t v) {
  char buf[21];
  char *end = buf + sizeof buf;
  /* Negate in unsigned so INT64_MIN works. */
  uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  char *p = u64_digits(mag, end);
  if (v < 0)
    *--p = '-';
  sep(w);
  chat__buf_append(w->b, p, (size_t)(end - p));
}

void chat__jw_uint(chat__jw *w, uint64_t v) {
  char buf[20];
  char *end = buf + sizeof buf;
  char *p = u64_digits(v, end);
  sep(w);
  chat__buf_append(w->b, p, (size_t)(end - p));
}

void chat__jw_uint_str(chat__jw *w, uint64_t v) {
  char buf[22];
  char *end = buf + sizeof buf;
  *--end = '"';
  char *p = u64_digits(v, end);
  *--p = '"';
  sep(w);
  chat__buf_append(w->b, p, (size_t)(end + 1 - p));
}

void chat__jw_bool(chat__jw *w, bool v) {
  sep(w);
  if (v)
    chat__buf_append(w->b, "true", 4);
  else
    chat__buf_append(w->b, "false", 5);
}

void chat__jw_null(chat__jw *w) {
  sep(w);
  chat__buf_append(w->b, "null", 4);
}

void chat__jw_raw(chat__jw *w, const char *json, size_t len) {
  sep(w);
  chat__buf_append(w->b, json, len);
}

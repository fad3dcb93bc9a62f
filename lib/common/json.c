/* Strict RFC 8259 parser into an arena tree.
 *
 * Recursive descent, bounded by max_depth (at most DEPTH_CAP), over an input
 * that is not NUL-terminated: every read is checked against `end`. Frames
 * are small and numerous, so the common cases are kept cheap: strings
 * without escapes are found with a word-at-a-time scan and copied with one
 * memcpy, and nodes and strings come from a bump allocator.
 *
 * Error precedence: when the input is not valid UTF-8, the result is
 * CHAT_ERR_BAD_UTF8 (at the first bad byte) whatever else went wrong first,
 * except CHAT_ERR_NOMEM. A WebSocket peer must close with 1007 for that, so
 * the answer must not depend on where a syntax error happened to be. */
#include "json.h"

#include <string.h>

#include "utf8.h"

#define DEPTH_DEFAULT 16
#define DEPTH_CAP 64
/* Objects up to this size are checked for duplicate keys pairwise; larger
 * ones are sorted, to stay O(n log n) against a hostile peer. */
#define SMALL_OBJECT 16

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#  define LITTLE_ENDIAN_CTZ 1
#else
#  define LITTLE_ENDIAN_CTZ 0
#endif

#define ONES 0x0101010101010101ull
#define HIGH_BITS 0x8080808080808080ull

typedef struct parser {
  chat__arena *ar;
  const unsigned char *begin;
  const unsigned char *p;
  const unsigned char *end;
  uint32_t max_depth;
  chat_err err;
  const unsigned char *err_at;
} parser;

static chat__json *fail(parser *ps, chat_err e, const unsigned char *at) {
  ps->err = e;
  ps->err_at = at;
  return NULL;
}

static bool is_ws(unsigned char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline const unsigned char *skip_ws(const unsigned char *p,
                                           const unsigned char *end) {
  /* Nearly every byte that is not whitespace is above ' '. */
  while (p < end && *p <= ' ' && is_ws(*p))
    p++;
  return p;
}

static bool is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

static uint64_t load64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

/* Nonzero iff some byte of v is zero. */
static uint64_t has_zero(uint64_t v) {
  return (v - ONES) & ~v & HIGH_BITS;
}

/* Nonzero iff some byte of v is below 0x20. */
static uint64_t has_control(uint64_t v) {
  return (v - ONES * 0x20) & ~v & HIGH_BITS;
}

/* ---- strings ---- */

/* '"', '\\', a control or a byte >= 0x80: where the plain scan stops. */
static bool str_special(unsigned char c) {
  return c == '"' || c == '\\' || (unsigned char)(c - 0x20) >= 0x60;
}

/* The first special byte in [s, end), or end. Eight bytes at a time: JSON
 * strings in frames are mostly plain ASCII. */
static inline const unsigned char *next_special(const unsigned char *s,
                                                const unsigned char *end) {
  while (end - s >= 8) {
    uint64_t v = load64(s);
    uint64_t m = has_zero(v ^ (ONES * '"')) | has_zero(v ^ (ONES * '\\')) |
                 has_control(v) | (v & HIGH_BITS);
    if (m) {
#if LITTLE_ENDIAN_CTZ
      /* These tests can flag bytes after a true match, never before it,
       * so the lowest flag is exact. */
      return s + (unsigned)__builtin_ctzll(m) / 8;
#else
      break;
#endif
    }
    s += 8;
  }
  while (s < end && !str_special(*s))
    s++;
  return s;
}

/* The rest of scan_string, from s (the first special byte) on: escapes,
 * bytes >= 0x80 and errors. */
static bool scan_string_slow(parser *ps, const unsigned char *b,
                             const unsigned char *s,
                             const unsigned char **body, size_t *blen,
                             bool *esc) {
  const unsigned char *end = ps->end;
  bool high = false, escapes = false;
  for (;; s = next_special(s, end)) {
    if (s == end) {
      fail(ps, CHAT_ERR_JSON, end); /* unterminated */
      return false;
    }
    unsigned char c = *s;
    if (c == '"')
      break;
    if (c == '\\') {
      /* Pair the backslash with the next byte so an escaped quote does not
       * end the string; the escape itself is checked when decoding. */
      if (end - s < 2) {
        fail(ps, CHAT_ERR_JSON, end);
        return false;
      }
      escapes = true;
      high |= s[1] >= 0x80;
      s += 2;
    } else if (c >= 0x80) {
      high = true;
      while (++s < end && *s >= 0x80)
        ;
    } else {
      fail(ps, CHAT_ERR_JSON, s); /* raw control character */
      return false;
    }
  }
  /* Escapes are ASCII, so the raw text is UTF-8 exactly when its content
   * is. A failure is reported at the first bad byte of the whole input by
   * chat__json_parse. */
  if (high && !chat__utf8_valid((const char *)b, (size_t)(s - b))) {
    fail(ps, CHAT_ERR_BAD_UTF8, b);
    return false;
  }
  *body = b;
  *blen = (size_t)(s - b);
  *esc = escapes;
  ps->p = s + 1;
  return true;
}

/* Scan the string whose opening quote is at ps->p: find its end, note
 * whether it has escapes, reject raw controls and validate raw bytes as
 * UTF-8. On success ps->p is just past the closing quote. Inline for the
 * common plain-ASCII string. */
static inline bool scan_string(parser *ps, const unsigned char **body,
                               size_t *blen, bool *esc) {
  const unsigned char *b = ps->p + 1;
  const unsigned char *s = next_special(b, ps->end);
  if (s < ps->end && *s == '"') {
    *body = b;
    *blen = (size_t)(s - b);
    *esc = false;
    ps->p = s + 1;
    return true;
  }
  return scan_string_slow(ps, b, s, body, blen, esc);
}

/* memcpy for the short strings frames are made of, without a call. */
static inline void copy_bytes(char *dst, const unsigned char *src, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t a = load64(src), z = load64(src + n - 8);
    memcpy(dst, &a, 8);
    memcpy(dst + n - 8, &z, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t a, z;
    memcpy(&a, src, 4);
    memcpy(&z, src + n - 4, 4);
    memcpy(dst, &a, 4);
    memcpy(dst + n - 4, &z, 4);
  } else {
    memcpy(dst, src, n);
  }
}

static int hex_val(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

static bool hex4(const unsigned char *s, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    int d = hex_val(s[i]);
    if (d < 0)
      return false;
    v = v << 4 | (uint32_t)d;
  }
  *out = v;
  return true;
}

/* Decode the escapes of a scanned string into dst, NUL-terminated. dst has
 * room for blen + 1 bytes, which always suffices: unescaped text is never
 * longer than its source (\uXXXX is 6 bytes for at most 3, a surrogate pair
 * 12 for 4). */
static bool unescape(parser *ps, const unsigned char *body, size_t blen,
                     char *dst, size_t *out_len) {
  char *d = dst;
  const unsigned char *s = body, *e = body + blen;
  while (s < e) {
    const unsigned char *bs = memchr(s, '\\', (size_t)(e - s));
    if (!bs)
      bs = e;
    memcpy(d, s, (size_t)(bs - s));
    d += bs - s;
    s = bs;
    if (s == e)
      break;
    /* The scan paired every backslash with the byte after it, inside the
     * body, so s[1] is readable. */
    switch (s[1]) {
    case '"': *d++ = '"'; break;
    case '\\': *d++ = '\\'; break;
    case '/': *d++ = '/'; break;
    case 'b': *d++ = '\b'; break;
    case 'f': *d++ = '\f'; break;
    case 'n': *d++ = '\n'; break;
    case 'r': *d++ = '\r'; break;
    case 't': *d++ = '\t'; break;
    case 'u': {
      uint32_t cp, lo;
      if (e - s < 6 || !hex4(s + 2, &cp) || (cp >= 0xDC00 && cp <= 0xDFFF)) {
        fail(ps, CHAT_ERR_JSON, s);
        return false;
      }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        /* A high surrogate counts only with a low one right after it. */
        if (e - s < 12 || s[6] != '\\' || s[7] != 'u' || !hex4(s + 8, &lo) ||
            lo < 0xDC00 || lo > 0xDFFF) {
          fail(ps, CHAT_ERR_JSON, s);
          return false;
        }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        s += 6;
      }
      d += chat__utf8_encode(cp, d);
      s += 6;
      continue;
    }
    default:
      fail(ps, CHAT_ERR_JSON, s);
      return false;
    }
    s += 2;
  }
  *d = '\0';
  *out_len = (size_t)(d - dst);
  return true;
}

/* The value of a scanned string, into dst (blen + 1 bytes). */
static inline bool decode_string(parser *ps, const unsigned char *body,
                                 size_t blen, bool esc, char *dst,
                                 size_t *out_len) {
  if (esc)
    return unescape(ps, body, blen, dst, out_len);
  copy_bytes(dst, body, blen);
  dst[blen] = '\0';
  *out_len = blen;
  return true;
}

/* A node with `extra` bytes for its text right behind it: one allocation
 * instead of two. */
static chat__json *new_node_with(parser *ps, chat__json_kind kind,
                                 const unsigned char *raw, size_t extra) {
  if (extra > SIZE_MAX - sizeof(chat__json))
    return fail(ps, CHAT_ERR_NOMEM, raw);
  chat__json *n = chat__arena_alloc_hot(ps->ar, sizeof *n + extra);
  if (!n)
    return fail(ps, CHAT_ERR_NOMEM, raw);
  *n = (chat__json){.kind = kind, .raw = (const char *)raw};
  return n;
}

static chat__json *parse_string_value(parser *ps) {
  const unsigned char *start = ps->p, *body;
  size_t blen;
  bool esc;
  if (!scan_string(ps, &body, &blen, &esc))
    return NULL;
  chat__json *n = new_node_with(ps, CHAT__JSON_STRING, start, blen + 1);
  if (!n)
    return NULL;
  char *text = (char *)(n + 1);
  if (!decode_string(ps, body, blen, esc, text, &n->len))
    return NULL;
  n->str = text;
  n->raw_len = (size_t)(ps->p - start);
  return n;
}

static bool parse_key(parser *ps, const char **key, size_t *key_len) {
  const unsigned char *body;
  size_t blen;
  bool esc;
  if (!scan_string(ps, &body, &blen, &esc))
    return false;
  char *k = chat__arena_alloc_hot(ps->ar, blen + 1);
  if (!k) {
    fail(ps, CHAT_ERR_NOMEM, body);
    return false;
  }
  if (!decode_string(ps, body, blen, esc, k, key_len))
    return false;
  *key = k;
  return true;
}

/* ---- scalars ---- */

static chat__json *parse_number(parser *ps) {
  const unsigned char *start = ps->p, *s = start, *end = ps->end;
  if (*s == '-')
    s++;
  if (s == end || !is_digit(*s))
    return fail(ps, CHAT_ERR_JSON, s);
  if (*s++ != '0')
    while (s < end && is_digit(*s))
      s++;
  if (s < end && *s == '.') {
    s++;
    if (s == end || !is_digit(*s))
      return fail(ps, CHAT_ERR_JSON, s);
    while (s < end && is_digit(*s))
      s++;
  }
  if (s < end && (*s == 'e' || *s == 'E')) {
    s++;
    if (s < end && (*s == '+' || *s == '-'))
      s++;
    if (s == end || !is_digit(*s))
      return fail(ps, CHAT_ERR_JSON, s);
    while (s < end && is_digit(*s))
      s++;
  }
  size_t len = (size_t)(s - start);
  chat__json *n = new_node_with(ps, CHAT__JSON_NUMBER, start, len + 1);
  if (!n)
    return NULL;
  char *text = (char *)(n + 1);
  copy_bytes(text, start, len);
  text[len] = '\0';
  n->str = text;
  n->len = len;
  n->raw_len = len;
  ps->p = s;
  return n;
}

static chat__json *parse_literal(parser *ps, const char *lit, size_t len,
                                 chat__json_kind kind) {
  const unsigned char *s = ps->p;
  for (size_t i = 0; i < len; i++)
    if (s + i == ps->end || s[i] != (unsigned char)lit[i])
      return fail(ps, CHAT_ERR_JSON, s + i);
  chat__json *n = new_node_with(ps, kind, s, 0);
  if (!n)
    return NULL;
  n->raw_len = len;
  ps->p = s + len;
  return n;
}

/* ---- duplicate keys ---- */

static bool key_eq(const chat__json *a, const chat__json *b) {
  return a->key_len == b->key_len &&
         memcmp(a->key, b->key, a->key_len) == 0;
}

/* Orders by key, then by source position, so that within a run of equal
 * keys the first is the earliest member. */
static int key_cmp(const chat__json *a, const chat__json *b) {
  if (a->key_len != b->key_len)
    return a->key_len < b->key_len ? -1 : 1;
  int c = memcmp(a->key, b->key, a->key_len);
  if (c)
    return c;
  return a->raw < b->raw ? -1 : a->raw > b->raw;
}

/* Heapsort: O(n log n) in the worst case and no memory beyond the array
 * (libc's qsort may call malloc behind the object's allocator). */
static void sift_down(const chat__json **v, size_t i, size_t n) {
  const chat__json *x = v[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && key_cmp(v[c + 1], v[c]) > 0)
      c++;
    if (key_cmp(v[c], x) <= 0)
      break;
    v[i] = v[c];
    i = c;
  }
  v[i] = x;
}

static void sort_members(const chat__json **v, size_t n) {
  for (size_t i = n / 2; i-- > 0;)
    sift_down(v, i, n);
  for (size_t i = n; i-- > 1;) {
    const chat__json *t = v[0];
    v[0] = v[i];
    v[i] = t;
    sift_down(v, 0, i);
  }
}

/* The earliest member (in source order) whose key repeats an earlier one,
 * or NULL. Sets ps->err on OOM. */
static const chat__json *find_duplicate(parser *ps, const chat__json *obj) {
  if (obj->n <= SMALL_OBJECT) {
    for (const chat__json *j = obj->child->next; j; j = j->next)
      for (const chat__json *i = obj->child; i != j; i = i->next)
        if (key_eq(i, j))
          return j;
    return NULL;
  }
  if (obj->n > SIZE_MAX / sizeof(chat__json *)) {
    fail(ps, CHAT_ERR_NOMEM, (const unsigned char *)obj->raw);
    return NULL;
  }
  const chat__json **v =
      chat__arena_alloc(ps->ar, obj->n * sizeof(chat__json *));
  if (!v) {
    fail(ps, CHAT_ERR_NOMEM, (const unsigned char *)obj->raw);
    return NULL;
  }
  size_t k = 0;
  for (const chat__json *c = obj->child; c; c = c->next)
    v[k++] = c;
  sort_members(v, k);
  const chat__json *first = NULL;
  for (size_t i = 1; i < k; i++)
    if (key_eq(v[i - 1], v[i]) && (!first || v[i]->raw < first->raw))
      first = v[i];
  return first;
}

/* Where the key of member m starts: walk back from its value over the
 * colon and whitespace to the key's closing quote, then to the first quote
 * not escaped by an odd run of backslashes. Only used for error offsets,
 * on text the parser has already accepted. */
static const unsigned char *key_start(const parser *ps, const chat__json *m) {
  const unsigned char *q = (const unsigned char *)m->raw;
  while (q > ps->begin && *q != ':')
    q--;
  while (q > ps->begin && *q != '"')
    q--;
  while (q > ps->begin) {
    q--;
    if (*q != '"')
      continue;
    size_t bs = 0;
    while (q - bs > ps->begin && q[-1 - (ptrdiff_t)bs] == '\\')
      bs++;
    if (bs % 2 == 0)
      break;
  }
  return q;
}

/* ---- containers ---- */

static chat__json *parse_value(parser *ps, uint32_t depth);

/* After a member or element: skip to ',' or the closer. Returns 1 for a
 * comma (ps->p past it and following whitespace), 0 for the closer (ps->p
 * past it), -1 on error. */
static int next_item(parser *ps, unsigned char closer) {
  const unsigned char *p = skip_ws(ps->p, ps->end);
  if (p < ps->end) {
    if (*p == ',') {
      ps->p = skip_ws(p + 1, ps->end);
      return 1;
    }
    if (*p == closer) {
      ps->p = p + 1;
      return 0;
    }
  }
  fail(ps, CHAT_ERR_JSON, p);
  return -1;
}

static chat__json *parse_array(parser *ps, uint32_t depth) {
  const unsigned char *open = ps->p;
  if (depth > ps->max_depth)
    return fail(ps, CHAT_ERR_TOO_DEEP, open);
  chat__json *arr = new_node_with(ps, CHAT__JSON_ARRAY, open, 0);
  if (!arr)
    return NULL;
  ps->p = skip_ws(open + 1, ps->end);
  if (ps->p < ps->end && *ps->p == ']') {
    ps->p++;
  } else {
    chat__json **tail = &arr->child;
    for (;;) {
      chat__json *v = parse_value(ps, depth);
      if (!v)
        return NULL;
      *tail = v;
      tail = &v->next;
      arr->n++;
      int r = next_item(ps, ']');
      if (r < 0)
        return NULL;
      if (r == 0)
        break;
    }
  }
  arr->raw_len = (size_t)(ps->p - open);
  return arr;
}

static chat__json *parse_object(parser *ps, uint32_t depth) {
  const unsigned char *open = ps->p;
  if (depth > ps->max_depth)
    return fail(ps, CHAT_ERR_TOO_DEEP, open);
  chat__json *obj = new_node_with(ps, CHAT__JSON_OBJECT, open, 0);
  if (!obj)
    return NULL;
  ps->p = skip_ws(open + 1, ps->end);
  if (ps->p < ps->end && *ps->p == '}') {
    ps->p++;
    obj->raw_len = (size_t)(ps->p - open);
    return obj;
  }
  chat__json **tail = &obj->child;
  for (;;) {
    if (ps->p == ps->end || *ps->p != '"')
      return fail(ps, CHAT_ERR_JSON, ps->p);
    const char *key;
    size_t key_len;
    if (!parse_key(ps, &key, &key_len))
      return NULL;
    const unsigned char *p = skip_ws(ps->p, ps->end);
    if (p == ps->end || *p != ':')
      return fail(ps, CHAT_ERR_JSON, p);
    ps->p = skip_ws(p + 1, ps->end);
    chat__json *v = parse_value(ps, depth);
    if (!v)
      return NULL;
    v->key = key;
    v->key_len = key_len;
    *tail = v;
    tail = &v->next;
    obj->n++;
    int r = next_item(ps, '}');
    if (r < 0)
      return NULL;
    if (r == 0)
      break;
  }
  obj->raw_len = (size_t)(ps->p - open);
  /* Checked when the object closes, so a syntax error inside an object
   * wins over a duplicate in it, whatever the object's size. */
  if (obj->n > 1) {
    const chat__json *dup = find_duplicate(ps, obj);
    if (dup)
      return fail(ps, CHAT_ERR_DUPLICATE_KEY, key_start(ps, dup));
    if (ps->err)
      return NULL;
  }
  return obj;
}

/* ps->p is at the value's first byte (whitespace already skipped). depth is
 * the nesting of the enclosing container (0 at top level). */
static chat__json *parse_value(parser *ps, uint32_t depth) {
  if (ps->p == ps->end)
    return fail(ps, CHAT_ERR_JSON, ps->p);
  switch (*ps->p) {
  case '{':
    return parse_object(ps, depth + 1);
  case '[':
    return parse_array(ps, depth + 1);
  case '"':
    return parse_string_value(ps);
  case 't':
    return parse_literal(ps, "true", 4, CHAT__JSON_TRUE);
  case 'f':
    return parse_literal(ps, "false", 5, CHAT__JSON_FALSE);
  case 'n':
    return parse_literal(ps, "null", 4, CHAT__JSON_NULL);
  default:
    if (*ps->p == '-' || is_digit(*ps->p))
      return parse_number(ps);
    return fail(ps, CHAT_ERR_JSON, ps->p);
  }
}

chat_err chat__json_parse(chat__arena *ar, const char *in, size_t len,
                          uint32_t max_depth, chat__json **out,
                          size_t *err_offset) {
  if (out)
    *out = NULL;
  if (err_offset)
    *err_offset = 0;
  if (!ar || !out || (!in && len))
    return CHAT_ERR_INVAL;
  if (!in)
    in = "";
  if (max_depth == 0)
    max_depth = DEPTH_DEFAULT;
  if (max_depth > DEPTH_CAP)
    max_depth = DEPTH_CAP;
  const unsigned char *begin = (const unsigned char *)in;
  parser ps = {
    .ar = ar,
    .begin = begin,
    .p = skip_ws(begin, begin + len),
    .end = begin + len,
    .max_depth = max_depth,
    .err = CHAT_OK,
  };
  chat__json *root = parse_value(&ps, 0);
  if (root) {
    const unsigned char *p = skip_ws(ps.p, ps.end);
    if (p != ps.end)
      root = fail(&ps, CHAT_ERR_JSON, p); /* trailing data */
  }
  if (!root) {
    /* Success implies valid UTF-8 (strings are validated and any other
     * byte >= 0x80 is a syntax error), so the full check runs only here. */
    if (ps.err != CHAT_ERR_NOMEM) {
      size_t ok = chat__utf8_valid_prefix(in, len);
      if (ok != len) {
        ps.err = CHAT_ERR_BAD_UTF8;
        ps.err_at = begin + ok;
      }
    }
    if (err_offset)
      *err_offset = (size_t)(ps.err_at - begin);
    return ps.err;
  }
  *out = root;
  return CHAT_OK;
}

/* ---- access ---- */

const chat__json *chat__json_get(const chat__json *obj, const char *key) {
  if (!obj || obj->kind != CHAT__JSON_OBJECT || !key)
    return NULL;
  size_t len = strlen(key);
  for (const chat__json *c = obj->child; c; c = c->next)
    if (c->key_len == len && memcmp(c->key, key, len) == 0)
      return c;
  return NULL;
}

/* Digits only, exact, with overflow detection. */
static bool parse_u64(const char *s, size_t len, uint64_t *out) {
  if (len == 0)
    return false;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned d = (unsigned char)s[i] - (unsigned)'0';
    if (d > 9 || v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

chat_err chat__json_int64(const chat__json *n, int64_t *out) {
  if (!n || n->kind != CHAT__JSON_NUMBER)
    return CHAT_ERR_FIELD_TYPE;
  if (!out)
    return CHAT_ERR_INVAL;
  const char *s = n->str;
  size_t len = n->len;
  bool neg = len > 0 && s[0] == '-';
  uint64_t v;
  if (!parse_u64(s + neg, len - neg, &v))
    return CHAT_ERR_BAD_NUMBER;
  if (neg) {
    if (v > (uint64_t)INT64_MAX + 1)
      return CHAT_ERR_BAD_NUMBER;
    /* -(2^63) has no positive counterpart, so negate in unsigned. */
    *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  } else {
    if (v > (uint64_t)INT64_MAX)
      return CHAT_ERR_BAD_NUMBER;
    *out = (int64_t)v;
  }
  return CHAT_OK;
}

chat_err chat__json_uint64(const chat__json *n, uint64_t *out) {
  if (!n || n->kind != CHAT__JSON_NUMBER)
    return CHAT_ERR_FIELD_TYPE;
  if (!out)
    return CHAT_ERR_INVAL;
  uint64_t v;
  if (!parse_u64(n->str, n->len, &v))
    return CHAT_ERR_BAD_NUMBER;
  *out = v;
  return CHAT_OK;
}

/* HTTP/1.1 request framing (see http_parse.h). Grammar references are to
 * RFC 9112 (message syntax) and RFC 9110 (semantics). */
#include <string.h>

#include "transport/epoll/http_parse.h"

static chat__http_error mkerr(int status, const char *code, const char *msg) {
  chat__http_error e = {status, code, msg};
  return e;
}

static int fail(chat__http_error *err, int status, const char *code,
                const char *msg) {
  if (err)
    *err = mkerr(status, code, msg);
  return -1;
}

/* tchar (RFC 9110 section 5.6.2). */
static bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
      (c >= 'A' && c <= 'Z'))
    return true;
  return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar, SP or HTAB (RFC 9110 section 5.5): no other controls. */
static bool is_value_char(unsigned char c) {
  return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static unsigned char lower(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static bool ieq(const char *a, size_t n, const char *lower_b) {
  size_t m = strlen(lower_b);
  if (n != m)
    return false;
  for (size_t i = 0; i < n; i++)
    if (lower((unsigned char)a[i]) != (unsigned char)lower_b[i])
      return false;
  return true;
}

size_t chat__http_skip_blank(const char *buf, size_t len) {
  size_t i = 0;
  while (i + 1 < len && buf[i] == '\r' && buf[i + 1] == '\n')
    i += 2;
  return i;
}

long chat__http_find_head(const char *buf, size_t len, size_t max,
                          size_t *scan, chat__http_error *err) {
  size_t lim = len < max ? len : max;
  size_t i = *scan;
  for (; i < lim; i++) {
    char c = buf[i];
    if (c == '\r') {
      /* Wait for the byte after it; never look past max, so that the
       * answer does not depend on how the input was cut into reads. */
      if (i + 1 >= lim)
        break;
      if (buf[i + 1] != '\n') {
        fail(err, 400, "bad_request", "bare CR in the request head");
        return -1;
      }
      continue;
    }
    if (c != '\n')
      continue;
    if (i == 0 || buf[i - 1] != '\r') {
      fail(err, 400, "bad_request", "bare LF in the request head");
      return -1;
    }
    if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
      return (long)(i + 1);
  }
  *scan = i;
  if (len >= max) {
    /* No end within max bytes. Is the request line itself that long? */
    if (!memchr(buf, '\n', max))
      fail(err, 414, "uri_too_long", "request line too long");
    else
      fail(err, 431, "headers_too_large", "request header fields too large");
    return -1;
  }
  return 0;
}

/* ---- the request line ---- */

static int parse_target(chat__http_head *h, chat__http_error *err) {
  const char *t = h->target.p;
  size_t n = h->target.n;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)t[i];
    /* Visible ASCII only; '#' never travels in a request. */
    if (c <= 0x20 || c >= 0x7f || c == '#')
      return fail(err, 400, "bad_request", "bad request target");
  }
  const char *path = t;
  size_t pn = n;
  if (t[0] == '/') {
    h->form = CHAT__HTTP_ORIGIN;
  } else if (n == 1 && t[0] == '*') {
    h->form = CHAT__HTTP_ASTERISK;
    h->path.p = t;
    h->path.n = 0;
    return 0;
  } else if ((n > 7 && ieq(t, 7, "http://")) ||
             (n > 8 && ieq(t, 8, "https://"))) {
    /* absolute-form (RFC 9112 section 3.2.2): servers must accept it;
     * the authority is ignored (it is a proxy's business), the path
     * kept. */
    h->form = CHAT__HTTP_ABSOLUTE;
    size_t skip = t[4] == ':' ? 7 : 8;
    const char *auth = t + skip;
    size_t an = n - skip;
    size_t k = 0;
    while (k < an && auth[k] != '/' && auth[k] != '?')
      k++;
    if (k == 0)
      return fail(err, 400, "bad_request", "bad request target");
    path = auth + k;
    pn = an - k;
    if (pn == 0 || path[0] == '?') {
      /* No path: the root, with the query if there is one. */
      h->path.p = "/";
      h->path.n = 1;
      if (pn) {
        h->query.p = path + 1;
        h->query.n = pn - 1;
      }
      return 0;
    }
  } else {
    /* authority-form, or garbage; the caller refuses it unless CONNECT. */
    h->form = CHAT__HTTP_AUTHORITY;
    h->path.p = t;
    h->path.n = 0;
    return 0;
  }
  const char *q = memchr(path, '?', pn);
  if (q) {
    h->path.p = path;
    h->path.n = (size_t)(q - path);
    h->query.p = q + 1;
    h->query.n = pn - h->path.n - 1;
  } else {
    h->path.p = path;
    h->path.n = pn;
  }
  return 0;
}

static int request_line(const char *s, size_t n, chat__http_head *h,
                        chat__http_error *err) {
  /* method SP request-target SP HTTP-version: single spaces, exactly. */
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)s[i]))
    i++;
  if (i == 0 || i >= n || s[i] != ' ')
    return fail(err, 400, "bad_request", "malformed request line");
  if (i > 32)
    return fail(err, 501, "not_implemented", "unknown method");
  h->method.p = s;
  h->method.n = i;
  size_t t0 = ++i;
  while (i < n && s[i] != ' ')
    i++;
  if (i == t0 || i >= n)
    return fail(err, 400, "bad_request", "malformed request line");
  h->target.p = s + t0;
  h->target.n = i - t0;
  i++;
  const char *v = s + i;
  size_t vn = n - i;
  if (vn != 8 || memcmp(v, "HTTP/", 5) != 0 || v[6] != '.' || v[5] < '0' ||
      v[5] > '9' || v[7] < '0' || v[7] > '9')
    return fail(err, 400, "bad_request", "malformed request line");
  if (v[5] != '1')
    return fail(err, 505, "version_not_supported",
                "only HTTP/1.0 and HTTP/1.1 are served");
  h->minor = v[7] - '0';
  return parse_target(h, err);
}

/* ---- fields ---- */

static int field_line(const char *s, size_t n, chat__http_head *h,
                      chat__http_error *err) {
  if (n == 0)
    return 0;
  /* obs-fold (a line that starts with whitespace) is refused (RFC 9112
   * section 5.2), as is whitespace between the name and the colon
   * (section 5.1). */
  if (s[0] == ' ' || s[0] == '\t')
    return fail(err, 400, "bad_request", "folded header field");
  size_t i = 0;
  while (i < n && is_tchar((unsigned char)s[i]))
    i++;
  if (i == 0 || i >= n || s[i] != ':')
    return fail(err, 400, "bad_request", "malformed header field");
  if (h->n_fields >= CHAT__HTTP_MAX_HEADERS)
    return fail(err, 431, "headers_too_large", "too many header fields");
  chat__http_field *f = &h->fields[h->n_fields++];
  f->name.p = s;
  f->name.n = i;
  size_t a = i + 1, b = n;
  while (a < b && (s[a] == ' ' || s[a] == '\t'))
    a++;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t'))
    b--;
  for (size_t k = a; k < b; k++)
    if (!is_value_char((unsigned char)s[k]))
      return fail(err, 400, "bad_request", "control character in a header");
  f->value.p = s + a;
  f->value.n = b - a;
  return 0;
}

chat__http_str chat__http_field_get(const chat__http_head *h,
                                    const char *name) {
  for (size_t i = 0; i < h->n_fields; i++)
    if (ieq(h->fields[i].name.p, h->fields[i].name.n, name))
      return h->fields[i].value;
  chat__http_str none = {NULL, 0};
  return none;
}

size_t chat__http_field_count(const chat__http_head *h, const char *name) {
  size_t k = 0;
  for (size_t i = 0; i < h->n_fields; i++)
    if (ieq(h->fields[i].name.p, h->fields[i].name.n, name))
      k++;
  return k;
}

/* Walk a comma-separated list: the next element (trimmed) into *el;
 * false at the end. Empty elements are skipped (RFC 9110 section 5.6.1). */
static bool list_next(const char **p, const char *end, chat__http_str *el) {
  while (*p < end) {
    const char *s = *p;
    const char *c = memchr(s, ',', (size_t)(end - s));
    const char *e = c ? c : end;
    *p = c ? c + 1 : end;
    while (s < e && (*s == ' ' || *s == '\t'))
      s++;
    const char *t = e;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
      t--;
    if (t > s) {
      el->p = s;
      el->n = (size_t)(t - s);
      return true;
    }
  }
  return false;
}

bool chat__http_list_has(chat__http_str s, const char *tok) {
  if (!s.p)
    return false;
  const char *p = s.p, *end = s.p + s.n;
  chat__http_str el;
  while (list_next(&p, end, &el))
    if (ieq(el.p, el.n, tok))
      return true;
  return false;
}

/* Transfer-Encoding over every such field: 0 chunked alone, 501 for a
 * coding we do not implement (with chunked last), 400 otherwise. */
static int transfer_coding(const chat__http_head *h) {
  size_t codings = 0;
  bool last_chunked = false, chunked_seen = false;
  for (size_t i = 0; i < h->n_fields; i++) {
    const chat__http_field *f = &h->fields[i];
    if (!ieq(f->name.p, f->name.n, "transfer-encoding"))
      continue;
    const char *p = f->value.p, *end = f->value.p + f->value.n;
    chat__http_str el;
    while (list_next(&p, end, &el)) {
      codings++;
      /* Parameters (";q=...") make it a coding we do not know. */
      last_chunked = ieq(el.p, el.n, "chunked");
      if (last_chunked) {
        if (chunked_seen)
          return 400; /* chunked twice (RFC 9112 section 6.1) */
        chunked_seen = true;
      }
    }
  }
  if (codings == 0)
    return 400;
  if (!last_chunked)
    return 400; /* the request body's length is unknowable */
  return codings == 1 ? 0 : 501;
}

static int framing(chat__http_head *h, chat__http_error *err) {
  size_t n_te = chat__http_field_count(h, "transfer-encoding");
  size_t n_cl = chat__http_field_count(h, "content-length");
  if (n_te && n_cl)
    return fail(err, 400, "bad_request",
                "both Transfer-Encoding and Content-Length");
  if (n_te) {
    if (h->minor == 0)
      return fail(err, 400, "bad_request",
                  "Transfer-Encoding in an HTTP/1.0 request");
    int te = transfer_coding(h);
    if (te == 501)
      return fail(err, 501, "not_implemented",
                  "only the chunked transfer coding is served");
    if (te)
      return fail(err, 400, "bad_request", "bad Transfer-Encoding");
    h->chunked = true;
    return 0;
  }
  if (n_cl > 1)
    return fail(err, 400, "bad_request", "more than one Content-Length");
  if (n_cl == 1) {
    chat__http_str v = chat__http_field_get(h, "content-length");
    if (v.n == 0 || v.n > 16)
      return fail(err, 400, "bad_request", "bad Content-Length");
    uint64_t x = 0;
    for (size_t i = 0; i < v.n; i++) {
      if (v.p[i] < '0' || v.p[i] > '9')
        return fail(err, 400, "bad_request", "bad Content-Length");
      x = x * 10 + (uint64_t)(v.p[i] - '0');
    }
    if (x > CHAT__HTTP_MAX_LENGTH)
      return fail(err, 400, "bad_request", "bad Content-Length");
    h->has_length = true;
    h->content_length = x;
  }
  return 0;
}

int chat__http_parse_head(const char *buf, size_t len, chat__http_head *h,
                          chat__http_error *err) {
  memset(h, 0, sizeof *h);
  if (len < 4 || memcmp(buf + len - 4, "\r\n\r\n", 4) != 0)
    return fail(err, 400, "bad_request", "incomplete request head");
  const char *end = buf + len - 2; /* the last line's CRLF is the blank */
  const char *p = buf;
  const char *eol = memchr(p, '\r', (size_t)(end - p));
  if (!eol || eol[1] != '\n')
    return fail(err, 400, "bad_request", "malformed request line");
  if (request_line(p, (size_t)(eol - p), h, err))
    return -1;
  p = eol + 2;
  while (p < end) {
    eol = memchr(p, '\r', (size_t)(end - p));
    if (!eol || eol[1] != '\n')
      return fail(err, 400, "bad_request", "malformed header field");
    if (field_line(p, (size_t)(eol - p), h, err))
      return -1;
    p = eol + 2;
  }
  if (chat__http_field_count(h, "host") > 1)
    return fail(err, 400, "bad_request", "more than one Host");
  h->host = chat__http_field_get(h, "host");
  if (h->minor >= 1 && !h->host.p)
    return fail(err, 400, "bad_request", "Host is required");
  if (framing(h, err))
    return -1;
  /* Connection options may come in several fields. */
  bool close = false, keep = false;
  for (size_t i = 0; i < h->n_fields; i++) {
    const chat__http_field *f = &h->fields[i];
    if (!ieq(f->name.p, f->name.n, "connection"))
      continue;
    close |= chat__http_list_has(f->value, "close");
    keep |= chat__http_list_has(f->value, "keep-alive");
    h->connection_upgrade |= chat__http_list_has(f->value, "upgrade");
  }
  h->keep_alive = close ? false : h->minor >= 1 ? true : keep;
  return 0;
}

/* ---- helpers ---- */

static int hexval(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c = lower(c);
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

bool chat__http_pct_decode(const char *s, size_t n, char *out,
                           size_t *out_len) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '%') {
      int hi, lo;
      if (i + 2 >= n || (hi = hexval((unsigned char)s[i + 1])) < 0 ||
          (lo = hexval((unsigned char)s[i + 2])) < 0)
        return false;
      c = (unsigned char)(hi * 16 + lo);
      i += 2;
    }
    if (c == 0)
      return false;
    out[k++] = (char)c;
  }
  *out_len = k;
  return true;
}

chat__http_str chat__http_query_get(chat__http_str query, const char *name) {
  chat__http_str none = {NULL, 0};
  if (!query.p)
    return none;
  size_t nl = strlen(name);
  const char *p = query.p, *end = query.p + query.n;
  while (p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *e = amp ? amp : end;
    size_t len = (size_t)(e - p);
    if (len >= nl && memcmp(p, name, nl) == 0 &&
        (len == nl || p[nl] == '=')) {
      chat__http_str v = {len == nl ? e : p + nl + 1,
                          len == nl ? 0 : len - nl - 1};
      return v;
    }
    p = amp ? amp + 1 : end;
  }
  return none;
}

size_t chat__http_query_without(chat__http_str query, const char *name,
                                char *out) {
  size_t k = 0;
  if (query.p) {
    size_t nl = strlen(name);
    const char *p = query.p, *end = query.p + query.n;
    while (p < end) {
      const char *amp = memchr(p, '&', (size_t)(end - p));
      const char *e = amp ? amp : end;
      size_t len = (size_t)(e - p);
      bool drop = len == 0 || (len >= nl && memcmp(p, name, nl) == 0 &&
                               (len == nl || p[nl] == '='));
      if (!drop) {
        if (k)
          out[k++] = '&';
        memcpy(out + k, p, len);
        k += len;
      }
      p = amp ? amp + 1 : end;
    }
  }
  out[k] = 0;
  return k;
}

/* ---- chunked ---- */

enum {
  CK_SIZE,     /* hex digits */
  CK_EXT_WS,   /* whitespace after the size, then ';' or CR */
  CK_EXT,      /* ";ext..." up to CR */
  CK_SIZE_LF,  /* the LF after the size line's CR */
  CK_DATA,     /* chunk data */
  CK_DATA_CR,  /* the CR after the data */
  CK_DATA_LF,  /* the LF after that */
  CK_TRAILER,  /* a trailer field line, or the blank line */
  CK_TRAIL_LF, /* the LF of a trailer line */
  CK_DONE
};

/* A size line's extensions and the trailer section are skipped, within
 * these bounds. */
#define EXT_MAX 4096
#define TRAILER_MAX 8192

void chat__http_chunked_init(chat__http_chunked *c) {
  memset(c, 0, sizeof *c);
  c->state = CK_SIZE;
}

int chat__http_chunked_next(chat__http_chunked *c, const char *in, size_t n,
                            size_t *used, const char **data, size_t *dlen) {
  size_t i = 0;
  *data = NULL;
  *dlen = 0;
  while (i < n) {
    unsigned char ch = (unsigned char)in[i];
    switch (c->state) {
    case CK_SIZE: {
      int v = hexval(ch);
      if (v >= 0) {
        if (c->digits >= 15)
          goto bad; /* beyond 2^60: nobody sends that */
        c->left = c->left * 16 + (uint64_t)v;
        c->digits++;
        i++;
        break;
      }
      if (c->digits == 0)
        goto bad;
      c->state = CK_EXT_WS;
      c->line = 0;
      break;
    }
    case CK_EXT_WS:
      /* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ) */
      if (ch == ' ' || ch == '\t') {
        if (++c->line > EXT_MAX)
          goto bad;
      } else if (ch == ';') {
        c->state = CK_EXT;
      } else if (ch == '\r') {
        c->state = CK_SIZE_LF;
      } else {
        goto bad;
      }
      i++;
      break;
    case CK_EXT:
      if (ch == '\r') {
        c->state = CK_SIZE_LF;
      } else if (!is_value_char(ch) || ++c->line > EXT_MAX) {
        goto bad;
      }
      i++;
      break;
    case CK_SIZE_LF:
      if (ch != '\n')
        goto bad;
      i++;
      c->digits = 0;
      if (c->left == 0) {
        c->state = CK_TRAILER;
        c->line = 0;
      } else {
        c->state = CK_DATA;
      }
      break;
    case CK_DATA: {
      size_t take = n - i;
      if ((uint64_t)take > c->left)
        take = (size_t)c->left;
      c->left -= take;
      if (c->left == 0)
        c->state = CK_DATA_CR;
      *data = in + i;
      *dlen = take;
      *used = i + take;
      return CHAT__CHUNK_DATA;
    }
    case CK_DATA_CR:
      if (ch != '\r')
        goto bad;
      c->state = CK_DATA_LF;
      i++;
      break;
    case CK_DATA_LF:
      if (ch != '\n')
        goto bad;
      c->state = CK_SIZE;
      c->left = 0;
      i++;
      break;
    case CK_TRAILER:
      if (ch == '\r') {
        c->state = CK_TRAIL_LF;
      } else if (!is_value_char(ch) || ++c->trailer > TRAILER_MAX) {
        goto bad;
      } else {
        c->line++;
      }
      i++;
      break;
    case CK_TRAIL_LF:
      if (ch != '\n')
        goto bad;
      i++;
      if (c->line == 0) {
        c->state = CK_DONE;
        *used = i;
        return CHAT__CHUNK_DONE;
      }
      c->line = 0;
      c->state = CK_TRAILER;
      break;
    default:
      *used = i;
      return CHAT__CHUNK_DONE;
    }
  }
  *used = i;
  if (c->state == CK_DONE)
    return CHAT__CHUNK_DONE;
  return CHAT__CHUNK_MORE;
bad:
  *used = i;
  return CHAT__CHUNK_ERROR;
}

/* HTTP/1.1 request framing (RFC 9112), pure: no sockets, no allocation.
 *
 *   chat__http_skip_blank   drop the empty lines a client may send before
 *                           a request line (RFC 9112 section 2.2)
 *   chat__http_find_head    where the head (request line + fields) ends
 *   chat__http_parse_head   parse and check the head; decide the body's
 *                           framing (Content-Length, chunked, none)
 *   chat__http_chunked_*    decode a chunked body incrementally
 *   helpers                 percent-decoding, comma lists, the query
 *
 * The parser is strict where leniency lets two parsers disagree about
 * where a message ends (request smuggling): lines end in CRLF only, no
 * whitespace before a field's colon, no obs-fold, no control characters in
 * field values, exactly one Content-Length, never Content-Length together
 * with Transfer-Encoding, chunked only as the one and final coding. Every
 * refusal names a status, a contract error code and a message, and every
 * refusal of framing closes the connection (the caller does that). */
#ifndef CHAT__EPOLL_HTTP_PARSE_H
#define CHAT__EPOLL_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHAT__HTTP_MAX_HEADERS 64
/* Content-Length above this is refused as malformed (2^53: JSON-safe). */
#define CHAT__HTTP_MAX_LENGTH (UINT64_C(1) << 53)

typedef struct chat__http_str {
  const char *p; /* into the head buffer; NULL when absent */
  size_t n;
} chat__http_str;

typedef struct chat__http_field {
  chat__http_str name;  /* as sent; compare case-insensitively */
  chat__http_str value; /* without leading and trailing whitespace */
} chat__http_field;

/* Why a request was refused: an HTTP status and the contract's error
 * code and message (static strings). */
typedef struct chat__http_error {
  int status;
  const char *code;
  const char *message;
} chat__http_error;

enum chat__http_target_form {
  CHAT__HTTP_ORIGIN = 0,   /* "/path?query" */
  CHAT__HTTP_ABSOLUTE = 1, /* "http://host/path?query" (path kept) */
  CHAT__HTTP_ASTERISK = 2, /* "*" (OPTIONS only) */
  CHAT__HTTP_AUTHORITY = 3 /* "host:port" (CONNECT only) */
};

typedef struct chat__http_head {
  chat__http_str method;
  chat__http_str target; /* the whole request-target */
  chat__http_str path;   /* raw, percent-encoded; "/" for an absolute
                            target without one; empty for * and authority */
  chat__http_str query;  /* raw, after '?'; p NULL when there is none */
  int form;              /* chat__http_target_form */
  int minor;             /* HTTP/1.<minor> */
  size_t n_fields;
  chat__http_field fields[CHAT__HTTP_MAX_HEADERS];

  /* Decided from the fields. */
  bool has_length;         /* Content-Length given */
  uint64_t content_length;
  bool chunked;            /* Transfer-Encoding: chunked */
  bool keep_alive;         /* the connection may carry another request */
  bool connection_upgrade; /* Connection lists "upgrade" */
  chat__http_str host;
} chat__http_head;

/* Bytes of empty lines (CRLF pairs) at the start of buf; a lone CR at the
 * end is left for the next call. */
size_t chat__http_skip_blank(const char *buf, size_t len);

/* Search buf[0..len) for the end of the head, starting at *scan (0 at
 * first; the function keeps it so that a head arriving in pieces is not
 * scanned again from the start).
 * Returns the head's length including the blank line, 0 when it is not
 * complete yet, or -1 with *err set when len has reached max without an
 * end (414 while the request line is unfinished, else 431), or a bare CR
 * or LF makes it malformed (400). */
long chat__http_find_head(const char *buf, size_t len, size_t max,
                          size_t *scan, chat__http_error *err);

/* Parse a complete head buf[0..len) (as found by chat__http_find_head).
 * The strings point into buf. Returns 0, or -1 with *err set. */
int chat__http_parse_head(const char *buf, size_t len, chat__http_head *h,
                          chat__http_error *err);

/* The value of the first field named @p name (lower case), or p NULL. */
chat__http_str chat__http_field_get(const chat__http_head *h,
                                    const char *name);
/* How many fields are named @p name. */
size_t chat__http_field_count(const chat__http_head *h, const char *name);
/* True when the comma-separated list s contains token tok (case
 * insensitive, whitespace around elements ignored). */
bool chat__http_list_has(chat__http_str s, const char *tok);

/* Percent-decode s[0..n) into out (at least n bytes). False for a
 * malformed escape or a decoded NUL. '+' stays '+'. */
bool chat__http_pct_decode(const char *s, size_t n, char *out,
                           size_t *out_len);

/* The value of query parameter @p name, raw (still encoded); p NULL when
 * absent. */
chat__http_str chat__http_query_get(chat__http_str query, const char *name);

/* The query without any @p name parameters, into out (at least query.n
 * + 1 bytes, NUL-terminated); returns its length. */
size_t chat__http_query_without(chat__http_str query, const char *name,
                                char *out);

/* ---- chunked bodies (RFC 9112 section 7.1) ---- */

typedef struct chat__http_chunked {
  uint8_t state;
  uint8_t digits;       /* hex digits of the size line so far */
  uint64_t left;        /* data bytes left in this chunk */
  uint32_t line;        /* bytes of the current extension or trailer line */
  uint32_t trailer;     /* bytes of trailer fields so far */
} chat__http_chunked;

enum {
  CHAT__CHUNK_MORE = 0,  /* everything consumed; feed more */
  CHAT__CHUNK_DATA = 1,  /* body bytes in *data, *dlen (inside in) */
  CHAT__CHUNK_DONE = 2,  /* the body ended; bytes after *used are the
                            next request */
  CHAT__CHUNK_ERROR = -1 /* malformed: 400 and close */
};

void chat__http_chunked_init(chat__http_chunked *c);

/* Decode from in[0..n): returns one of the CHAT__CHUNK_ values values; *used is
 * how many bytes of in were consumed by this call. Call again with the
 * rest after CHAT__CHUNK_DATA. */
int chat__http_chunked_next(chat__http_chunked *c, const char *in, size_t n,
                            size_t *used, const char **data, size_t *dlen);

#endif

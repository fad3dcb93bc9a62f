/* Strict JSON (RFC 8259) reader into an arena-allocated tree, and a writer.
 *
 * Why our own and not cJSON: the codec must reject what cJSON accepts
 * (duplicate keys, lone surrogate escapes, invalid UTF-8, trailing data),
 * keep 64-bit integers exact (cJSON holds numbers as double), keep a value's
 * exact source text (ping nonces are echoed byte for byte), and decode over
 * a million frames a second without a malloc per node. cJSON remains the
 * independent oracle in tests and fuzzers. */
#ifndef CHAT__JSON_H
#define CHAT__JSON_H

#include <chat/common.h>

#include "arena.h"
#include "buf.h"

typedef enum chat__json_kind {
  CHAT__JSON_NULL = 0,
  CHAT__JSON_FALSE,
  CHAT__JSON_TRUE,
  CHAT__JSON_NUMBER,
  CHAT__JSON_STRING,
  CHAT__JSON_ARRAY,
  CHAT__JSON_OBJECT
} chat__json_kind;

typedef struct chat__json chat__json;
struct chat__json {
  chat__json_kind kind;
  /* STRING: the unescaped value, NUL-terminated, in the arena (may contain
   * U+0000, so len is authoritative). NUMBER: the literal's text, copied
   * to the arena and NUL-terminated. Otherwise NULL/0. */
  const char *str;
  size_t len;
  /* The value's exact source text; points into the parser's INPUT, so it is
   * only valid as long as the input buffer is. */
  const char *raw;
  size_t raw_len;
  /* For a member of an object: its unescaped key (arena, NUL-terminated). */
  const char *key;
  size_t key_len;
  /* ARRAY/OBJECT: number of children and the first; siblings via next,
   * in source order. */
  size_t n;
  chat__json *child;
  chat__json *next;
};

/* Parse exactly one JSON value filling in[0..len) (whitespace around it is
 * allowed, anything else after it is not). Nodes and strings come from ar.
 * max_depth bounds array/object nesting (1 = a flat object).
 * On failure *out is NULL and, when err_offset is not NULL, it receives the
 * byte offset where the problem was found.
 * Returns CHAT_OK, CHAT_ERR_JSON (syntax, lone surrogate escape, bad number
 * literal, trailing data, empty input), CHAT_ERR_BAD_UTF8 (raw bytes that are
 * not UTF-8, anywhere: it wins over every other error but NOMEM),
 * CHAT_ERR_TOO_DEEP, CHAT_ERR_DUPLICATE_KEY (two members of one object with
 * equal unescaped keys; the offset is the later key's), CHAT_ERR_NOMEM, and
 * CHAT_ERR_INVAL for a NULL ar or out, or NULL in with len > 0. */
chat_err chat__json_parse(chat__arena *ar, const char *in, size_t len,
                          uint32_t max_depth, chat__json **out,
                          size_t *err_offset);

/* Member of obj with the given key, or NULL (also when obj is not an
 * object). Linear: frames have few members. */
const chat__json *chat__json_get(const chat__json *obj, const char *key);

/* NUMBER nodes only: an integer literal (no fraction, no exponent) within
 * range. CHAT_ERR_BAD_NUMBER otherwise, CHAT_ERR_FIELD_TYPE when n is not a
 * NUMBER. */
chat_err chat__json_int64(const chat__json *n, int64_t *out);
chat_err chat__json_uint64(const chat__json *n, uint64_t *out);

/* ---- writer ----
 * Appends to a chat__buf; failures are the buffer's sticky oom flag.
 * Commas are inserted automatically. Keys given to the writer are written
 * escaped as well. Strings are escaped minimally: '"', '\\' and control
 * characters below 0x20 (as \n, \t, ... or \u00XX); U+2028/U+2029 are
 * written as \u2028/\u2029 so the output is also safe JavaScript; all other
 * UTF-8 is copied as is. The writer does not validate UTF-8. */
#define CHAT__JW_MAX_DEPTH 32
typedef struct chat__jw {
  chat__buf *b;
  uint32_t depth;
  uint64_t nonempty; /* bit d: container at depth d has a member already */
  bool after_key;
} chat__jw;

void chat__jw_init(chat__jw *w, chat__buf *b);
void chat__jw_obj_begin(chat__jw *w);
void chat__jw_obj_end(chat__jw *w);
void chat__jw_arr_begin(chat__jw *w);
void chat__jw_arr_end(chat__jw *w);
void chat__jw_key(chat__jw *w, const char *key);
/* A key that may contain U+0000 (or is not NUL-terminated). */
void chat__jw_key_len(chat__jw *w, const char *key, size_t len);
void chat__jw_str(chat__jw *w, const char *s, size_t len);
void chat__jw_int(chat__jw *w, int64_t v);
void chat__jw_uint(chat__jw *w, uint64_t v);
/* An unsigned integer written as a JSON string ("9187202"): message ids. */
void chat__jw_uint_str(chat__jw *w, uint64_t v);
void chat__jw_bool(chat__jw *w, bool v);
void chat__jw_null(chat__jw *w);
/* Already-encoded JSON text, copied verbatim. */
void chat__jw_raw(chat__jw *w, const char *json, size_t len);

#endif

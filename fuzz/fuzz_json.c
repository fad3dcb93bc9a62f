/* Fuzz target: the strict JSON parser and writer of lib/common.
 *
 * Checks, on any input:
 * - the parser never crashes, reads out of bounds or leaks;
 * - errors are the documented ones, with an offset inside the input, and
 *   CHAT_ERR_BAD_UTF8 exactly when the input is not UTF-8;
 * - whatever we accept, cJSON accepts too, ending at the same byte and
 *   giving the same tree (cJSON accepts more than we do, so the other
 *   direction is not checked);
 * - int64/uint64 conversion agrees with strtoll/strtoull;
 * - writing the tree back out and parsing that gives an equal tree, and
 *   writing that again gives the same bytes. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/utf8.h"

/* The writer's nesting limit bounds what can be round-tripped. */
#define DEPTH CHAT__JW_MAX_DEPTH

#define CHECK(x)                                                   \
  do {                                                             \
    if (!(x)) {                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,       \
              __LINE__, #x);                                       \
      abort();                                                     \
    }                                                              \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* cJSON copies at most 63 bytes of a number before strtod, so a longer
 * (valid) literal makes it stop early; such trees skip the comparison. */
static bool has_long_number(const chat__json *n) {
  if (n->kind == CHAT__JSON_NUMBER)
    return n->len >= 63;
  for (const chat__json *c = n->child; c; c = c->next)
    if (has_long_number(c))
      return true;
  return false;
}

/* cJSON keeps strings as C strings, so a U+0000 cuts them short. */
static bool same_c_string(const char *ours, size_t len, const char *theirs) {
  const char *nul = memchr(ours, '\0', len);
  size_t cut = nul ? (size_t)(nul - ours) : len;
  return theirs && strlen(theirs) == cut && memcmp(ours, theirs, cut) == 0;
}

static void compare_cjson(const chat__json *n, const cJSON *c) {
  switch (n->kind) {
  case CHAT__JSON_NULL: CHECK(cJSON_IsNull(c)); break;
  case CHAT__JSON_FALSE: CHECK(cJSON_IsFalse(c)); break;
  case CHAT__JSON_TRUE: CHECK(cJSON_IsTrue(c)); break;
  case CHAT__JSON_NUMBER:
    CHECK(cJSON_IsNumber(c));
    /* Both come from strtod on the same text. */
    CHECK(c->valuedouble == strtod(n->str, NULL));
    break;
  case CHAT__JSON_STRING:
    CHECK(cJSON_IsString(c));
    CHECK(same_c_string(n->str, n->len, c->valuestring));
    break;
  case CHAT__JSON_ARRAY:
  case CHAT__JSON_OBJECT: {
    CHECK(n->kind == CHAT__JSON_ARRAY ? cJSON_IsArray(c) : cJSON_IsObject(c));
    CHECK((size_t)cJSON_GetArraySize(c) == n->n);
    const cJSON *cc = c->child;
    for (const chat__json *m = n->child; m; m = m->next, cc = cc->next) {
      CHECK(cc);
      if (n->kind == CHAT__JSON_OBJECT)
        CHECK(same_c_string(m->key, m->key_len, cc->string));
      compare_cjson(m, cc);
    }
    CHECK(!cc);
    break;
  }
  }
}

static bool is_int_literal(const chat__json *n) {
  return !memchr(n->str, '.', n->len) && !memchr(n->str, 'e', n->len) &&
         !memchr(n->str, 'E', n->len);
}

/* Structural invariants of a parsed tree over input [in, in + size). */
static void check_node(const chat__json *n, const char *in, size_t size) {
  CHECK(n->raw >= in && n->raw_len <= size &&
        (size_t)(n->raw - in) <= size - n->raw_len);
  switch (n->kind) {
  case CHAT__JSON_NUMBER: {
    CHECK(n->len == n->raw_len && memcmp(n->str, n->raw, n->len) == 0);
    CHECK(n->str[n->len] == '\0');
    int64_t i;
    uint64_t u;
    chat_err ei = chat__json_int64(n, &i);
    chat_err eu = chat__json_uint64(n, &u);
    if (!is_int_literal(n)) {
      CHECK(ei == CHAT_ERR_BAD_NUMBER && eu == CHAT_ERR_BAD_NUMBER);
      break;
    }
    errno = 0;
    long long ll = strtoll(n->str, NULL, 10);
    if (errno == ERANGE) {
      CHECK(ei == CHAT_ERR_BAD_NUMBER);
    } else {
      CHECK(ei == CHAT_OK && i == ll);
    }
    if (n->str[0] == '-') {
      CHECK(eu == CHAT_ERR_BAD_NUMBER);
    } else {
      errno = 0;
      unsigned long long ull = strtoull(n->str, NULL, 10);
      if (errno == ERANGE)
        CHECK(eu == CHAT_ERR_BAD_NUMBER);
      else
        CHECK(eu == CHAT_OK && u == ull);
    }
    break;
  }
  case CHAT__JSON_STRING:
    CHECK(n->raw[0] == '"' && n->raw[n->raw_len - 1] == '"');
    CHECK(n->str[n->len] == '\0');
    CHECK(chat__utf8_valid(n->str, n->len));
    break;
  case CHAT__JSON_ARRAY:
  case CHAT__JSON_OBJECT: {
    size_t k = 0;
    for (const chat__json *c = n->child; c; c = c->next, k++) {
      if (n->kind == CHAT__JSON_OBJECT) {
        CHECK(c->key && c->key[c->key_len] == '\0');
        CHECK(chat__utf8_valid(c->key, c->key_len));
        if (!memchr(c->key, '\0', c->key_len))
          CHECK(chat__json_get(n, c->key) != NULL);
      } else {
        CHECK(!c->key);
      }
      check_node(c, in, size);
    }
    CHECK(k == n->n);
    break;
  }
  default:
    CHECK(!n->child && n->n == 0);
  }
}

static void write_tree(chat__jw *w, const chat__json *n) {
  switch (n->kind) {
  case CHAT__JSON_NULL: chat__jw_null(w); break;
  case CHAT__JSON_FALSE: chat__jw_bool(w, false); break;
  case CHAT__JSON_TRUE: chat__jw_bool(w, true); break;
  case CHAT__JSON_NUMBER: chat__jw_raw(w, n->str, n->len); break;
  case CHAT__JSON_STRING: chat__jw_str(w, n->str, n->len); break;
  case CHAT__JSON_ARRAY:
    chat__jw_arr_begin(w);
    for (const chat__json *c = n->child; c; c = c->next)
      write_tree(w, c);
    chat__jw_arr_end(w);
    break;
  case CHAT__JSON_OBJECT:
    chat__jw_obj_begin(w);
    for (const chat__json *c = n->child; c; c = c->next) {
      chat__jw_key_len(w, c->key, c->key_len);
      write_tree(w, c);
    }
    chat__jw_obj_end(w);
    break;
  }
}

static bool bytes_eq(const char *a, size_t an, const char *b, size_t bn) {
  return an == bn && memcmp(a, b, an) == 0;
}

static bool tree_eq(const chat__json *a, const chat__json *b) {
  if (a->kind != b->kind || a->n != b->n ||
      !bytes_eq(a->key ? a->key : "", a->key_len, b->key ? b->key : "",
                b->key_len))
    return false;
  if (a->kind == CHAT__JSON_NUMBER || a->kind == CHAT__JSON_STRING)
    return bytes_eq(a->str, a->len, b->str, b->len);
  const chat__json *x = a->child, *y = b->child;
  for (; x && y; x = x->next, y = y->next)
    if (!tree_eq(x, y))
      return false;
  return !x && !y;
}

static void write_doc(const chat__json *root, chat__buf *b) {
  chat__jw w;
  chat__jw_init(&w, b);
  write_tree(&w, root);
  CHECK(!b->oom && w.depth == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  chat__arena ar;
  chat__arena_init(&ar, NULL);
  chat__json *root = (chat__json *)1;
  size_t off = SIZE_MAX;
  chat_err e = chat__json_parse(&ar, in, size, DEPTH, &root, &off);
  bool utf8 = chat__utf8_valid(in, size);
  if (e != CHAT_OK) {
    CHECK(root == NULL && off <= size);
    CHECK(e == CHAT_ERR_JSON || e == CHAT_ERR_BAD_UTF8 ||
          e == CHAT_ERR_TOO_DEEP || e == CHAT_ERR_DUPLICATE_KEY);
    CHECK((e == CHAT_ERR_BAD_UTF8) == !utf8);
    if (e == CHAT_ERR_BAD_UTF8)
      CHECK(off == chat__utf8_valid_prefix(in, size));
    chat__arena_free(&ar);
    return 0;
  }
  CHECK(root && utf8);
  check_node(root, in, size);

  bool oracle = !has_long_number(root);
  if (oracle) {
    const char *end = NULL;
    cJSON *c = cJSON_ParseWithLengthOpts(in, size, &end, 0);
    CHECK(c != NULL);
    CHECK(end == root->raw + root->raw_len);
    compare_cjson(root, c);
    cJSON_Delete(c);
  }

  /* Write, re-parse, compare; then write again: same bytes. */
  chat__buf b1, b2;
  chat__buf_init(&b1, NULL);
  chat__buf_init(&b2, NULL);
  write_doc(root, &b1);
  chat__arena ar2;
  chat__arena_init(&ar2, NULL);
  chat__json *again = NULL;
  CHECK(chat__json_parse(&ar2, b1.data, b1.len, DEPTH, &again, NULL) ==
        CHAT_OK);
  CHECK(tree_eq(root, again));
  write_doc(again, &b2);
  CHECK(bytes_eq(b1.data, b1.len, b2.data, b2.len));
  if (oracle) {
    const char *end = NULL;
    cJSON *c = cJSON_ParseWithLengthOpts(b1.data, b1.len, &end, 0);
    CHECK(c != NULL && end == b1.data + b1.len);
    compare_cjson(again, c);
    cJSON_Delete(c);
  }

  /* A reset arena must give the same tree again. */
  chat__arena_reset(&ar2);
  CHECK(chat__json_parse(&ar2, in, size, DEPTH, &again, NULL) == CHAT_OK);
  CHECK(tree_eq(root, again));

  chat__buf_free(&b1);
  chat__buf_free(&b2);
  chat__arena_free(&ar2);
  chat__arena_free(&ar);
  return 0;
}

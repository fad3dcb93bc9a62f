/* lib/common/json.c (strict parser) and jsonw.c (writer), with cJSON as an
 * independent oracle. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/utf8.h"
#include "fail_alloc.h"

/* ---- helpers ---- */

/* A parse whose input lives in an exact-size heap copy (so ASan sees any
 * read past the end; the input is never NUL-terminated) and whose tree
 * lives in its own arena. */
typedef struct doc {
  chat__arena ar;
  char *copy;
  chat__json *root;
  size_t off;
  chat_err err;
} doc;

static chat_err doc_parse(doc *d, const char *s, size_t len, uint32_t depth) {
  chat__arena_init(&d->ar, NULL);
  d->copy = malloc(len ? len : 1);
  cr_assert_not_null(d->copy);
  if (len)
    memcpy(d->copy, s, len);
  d->off = 12345;
  d->root = (chat__json *)&d->off; /* must be overwritten */
  d->err = chat__json_parse(&d->ar, d->copy, len, depth, &d->root, &d->off);
  if (d->err == CHAT_OK) {
    cr_assert_not_null(d->root);
  } else {
    cr_assert_null(d->root, "*out is NULL on failure");
    cr_assert_leq(d->off, len);
  }
  return d->err;
}

static void doc_free(doc *d) {
  chat__arena_free(&d->ar);
  free(d->copy);
}

/* Parse, check the outcome, free. */
static chat_err check_parse(const char *s, size_t len, uint32_t depth,
                            size_t *off) {
  doc d;
  chat_err e = doc_parse(&d, s, len, depth);
  if (off)
    *off = d.off;
  doc_free(&d);
  return e;
}

#define LIT(s) s, sizeof(s) - 1

static bool str_is(const chat__json *n, const char *s, size_t len) {
  return n && n->kind == CHAT__JSON_STRING && n->len == len &&
         memcmp(n->str, s, len) == 0 && n->str[len] == '\0';
}

static bool raw_is(const chat__json *n, const char *s) {
  return n && n->raw_len == strlen(s) && memcmp(n->raw, s, n->raw_len) == 0;
}

/* ---- the table: accepted and refused documents ---- */

#define NO_OFF ((size_t)-1)
typedef struct tcase {
  const char *s;
  size_t len;
  chat_err err;
  size_t off; /* expected err_offset, or NO_OFF */
  uint32_t depth;
} tcase;

#define OK(s) {s, sizeof(s) - 1, CHAT_OK, NO_OFF, 0}
#define BAD(s, e, o) {s, sizeof(s) - 1, e, o, 0}
#define DEEP(s, d, e, o) {s, sizeof(s) - 1, e, o, d}

static const tcase cases[] = {
  /* scalars */
  OK("null"),
  OK("true"),
  OK("false"),
  OK("0"),
  OK("-0"),
  OK("1"),
  OK("-1"),
  OK("0.5"),
  OK("-0.5e-3"),
  OK("1E+10"),
  OK("1e10"),
  OK("1.0e-0"),
  OK("123456789012345678901234567890"),
  OK("\"\""),
  OK("\"abc\""),
  OK("\"\\/\""),
  OK("\"\\u0000\""),
  OK("\"\\ud83d\\ude00\""),
  OK("\"\\uD83D\\uDE00\""),
  OK("\"\xF4\x8F\xBF\xBF\""),
  OK("\"\xE2\x80\xA8\""),
  OK("\"\x7f\""),
  /* containers and whitespace */
  OK("[]"),
  OK("{}"),
  OK(" [ ] "),
  OK("\t\n\r {\"a\" : [1 , 2] } \n"),
  OK("[[[]]]"),
  OK("{\"a\":{\"b\":{}}}"),
  OK("[1,\"2\",true,null,{},[],-3.5]"),
  OK("{\"\":0}"),
  OK("{\"a\":1,\"A\":2,\"a \":3,\"ab\":4}"),
  OK("{\"a\":{\"a\":1},\"b\":{\"a\":2}}"),

  /* empty and whitespace */
  BAD("", CHAT_ERR_JSON, 0),
  BAD("   ", CHAT_ERR_JSON, 3),
  BAD("\x00", CHAT_ERR_JSON, 0),
  BAD("{}\x00", CHAT_ERR_JSON, 2),
  BAD("{} \f", CHAT_ERR_JSON, 3),
  BAD("[1\v]", CHAT_ERR_JSON, 2),
  BAD("\xC2\xA0" "1", CHAT_ERR_JSON, 0),
  BAD("\xEF\xBB\xBF{}", CHAT_ERR_JSON, 0),
  /* literals */
  BAD("nul", CHAT_ERR_JSON, 3),
  BAD("nulx", CHAT_ERR_JSON, 3),
  BAD("tru", CHAT_ERR_JSON, 3),
  BAD("True", CHAT_ERR_JSON, 0),
  BAD("nullnull", CHAT_ERR_JSON, 4),
  BAD("NaN", CHAT_ERR_JSON, 0),
  BAD("Infinity", CHAT_ERR_JSON, 0),
  BAD("-Infinity", CHAT_ERR_JSON, 1),
  BAD("undefined", CHAT_ERR_JSON, 0),
  /* numbers */
  BAD("+1", CHAT_ERR_JSON, 0),
  BAD("01", CHAT_ERR_JSON, 1),
  BAD("-01", CHAT_ERR_JSON, 2),
  BAD("00", CHAT_ERR_JSON, 1),
  BAD(".5", CHAT_ERR_JSON, 0),
  BAD("5.", CHAT_ERR_JSON, 2),
  BAD("1.e5", CHAT_ERR_JSON, 2),
  BAD("1e", CHAT_ERR_JSON, 2),
  BAD("1e+", CHAT_ERR_JSON, 3),
  BAD("-1.5E-", CHAT_ERR_JSON, 6),
  BAD("-", CHAT_ERR_JSON, 1),
  BAD("--1", CHAT_ERR_JSON, 1),
  BAD("0x10", CHAT_ERR_JSON, 1),
  BAD("1 2", CHAT_ERR_JSON, 2),
  BAD("[-]", CHAT_ERR_JSON, 2),
  BAD("[1.]", CHAT_ERR_JSON, 3),
  /* arrays */
  BAD("[", CHAT_ERR_JSON, 1),
  BAD("]", CHAT_ERR_JSON, 0),
  BAD("[1,]", CHAT_ERR_JSON, 3),
  BAD("[,1]", CHAT_ERR_JSON, 1),
  BAD("[1 2]", CHAT_ERR_JSON, 3),
  BAD("[\"a\" \"b\"]", CHAT_ERR_JSON, 5),
  BAD("[1}", CHAT_ERR_JSON, 2),
  BAD("[1]x", CHAT_ERR_JSON, 3),
  BAD("[1] [2]", CHAT_ERR_JSON, 4),
  /* objects */
  BAD("{", CHAT_ERR_JSON, 1),
  BAD("{,}", CHAT_ERR_JSON, 1),
  BAD("{\"a\"}", CHAT_ERR_JSON, 4),
  BAD("{\"a\":}", CHAT_ERR_JSON, 5),
  BAD("{\"a\":1,}", CHAT_ERR_JSON, 7),
  BAD("{a:1}", CHAT_ERR_JSON, 1),
  BAD("{'a':1}", CHAT_ERR_JSON, 1),
  BAD("{1:1}", CHAT_ERR_JSON, 1),
  BAD("{\"a\" 1}", CHAT_ERR_JSON, 5),
  BAD("{\"a\":1", CHAT_ERR_JSON, 6),
  BAD("{\"a\":1 \"b\":2}", CHAT_ERR_JSON, 7),
  BAD("{\"a\":1]", CHAT_ERR_JSON, 6),
  /* strings */
  BAD("\"abc", CHAT_ERR_JSON, 4),
  BAD("\"a\\\"", CHAT_ERR_JSON, 4),
  BAD("\"\\", CHAT_ERR_JSON, 2),
  BAD("\"\\x\"", CHAT_ERR_JSON, 1),
  BAD("\"\\'\"", CHAT_ERR_JSON, 1),
  BAD("\"\\U0041\"", CHAT_ERR_JSON, 1),
  BAD("\"\\u12\"", CHAT_ERR_JSON, 1),
  BAD("\"\\u12G4\"", CHAT_ERR_JSON, 1),
  BAD("\"ab\\u\"", CHAT_ERR_JSON, 3),
  BAD("\"a\tb\"", CHAT_ERR_JSON, 2),
  BAD("\"a\nb\"", CHAT_ERR_JSON, 2),
  BAD("\"\x01\"", CHAT_ERR_JSON, 1),
  BAD("\"\x1f\"", CHAT_ERR_JSON, 1),
  BAD("\"\x00\"", CHAT_ERR_JSON, 1),
  /* surrogate escapes */
  BAD("\"\\ud800\"", CHAT_ERR_JSON, 1),
  BAD("\"\\udbff\"", CHAT_ERR_JSON, 1),
  BAD("\"\\udc00\"", CHAT_ERR_JSON, 1),
  BAD("\"\\udfff\"", CHAT_ERR_JSON, 1),
  BAD("\"x\\ude00\\ud83d\"", CHAT_ERR_JSON, 2),
  BAD("\"\\ud83d\\u0041\"", CHAT_ERR_JSON, 1),
  BAD("\"\\ud83d\\ud83d\"", CHAT_ERR_JSON, 1),
  BAD("\"\\ud83dx\"", CHAT_ERR_JSON, 1),
  BAD("\"\\ud83d\\n\"", CHAT_ERR_JSON, 1),
  BAD("\"\\ud83d\\ude0\"", CHAT_ERR_JSON, 1),
  BAD("{\"\\ud800\":1}", CHAT_ERR_JSON, 2),
  /* raw bytes that are not UTF-8 */
  BAD("\"\xC0\x80\"", CHAT_ERR_BAD_UTF8, 1),
  BAD("\"\xED\xA0\x80\"", CHAT_ERR_BAD_UTF8, 1),
  BAD("\"ab\xF4\x90\x80\x80\"", CHAT_ERR_BAD_UTF8, 3),
  BAD("\"\xE2\x82\"", CHAT_ERR_BAD_UTF8, 1),
  BAD("\"\xff\"", CHAT_ERR_BAD_UTF8, 1),
  BAD("{\"k\xff\":1}", CHAT_ERR_BAD_UTF8, 3),
  BAD("\xff", CHAT_ERR_BAD_UTF8, 0),
  BAD("[1,\xff]", CHAT_ERR_BAD_UTF8, 3),
  BAD("[1,,\"\xff\"]", CHAT_ERR_BAD_UTF8, 5), /* wins over the syntax error */
  BAD("{\"a\":1,\"a\":\"\xC1\xBF\"}", CHAT_ERR_BAD_UTF8, 12),
  BAD("\xC3\xA9", CHAT_ERR_JSON, 0), /* valid UTF-8, but not JSON */
  BAD("[\"a\"]\xC3\xA9", CHAT_ERR_JSON, 5),
  /* duplicate keys */
  BAD("{\"a\":1,\"a\":2}", CHAT_ERR_DUPLICATE_KEY, 7),
  BAD("{\"a\":1, \"b\":2, \"a\" :3}", CHAT_ERR_DUPLICATE_KEY, 15),
  BAD("{\"a\":1,\"\\u0061\":2}", CHAT_ERR_DUPLICATE_KEY, 7),
  BAD("{\"\\\"\":1,\"\\u0022\":2}", CHAT_ERR_DUPLICATE_KEY, 8),
  BAD("{\"\":1,\"\":2}", CHAT_ERR_DUPLICATE_KEY, 6),
  BAD("{\"x\\\\\":1,\"x\\u005c\":2}", CHAT_ERR_DUPLICATE_KEY, 9),
  BAD("[{\"a\":{\"b\":1,\"b\":1}}]", CHAT_ERR_DUPLICATE_KEY, 13),
  BAD("{\"a\":1,\"a\":2,]", CHAT_ERR_JSON, 13), /* syntax wins in one object */
  /* depth */
  DEEP("{\"a\":1}", 1, CHAT_OK, NO_OFF),
  DEEP("{\"a\":{}}", 1, CHAT_ERR_TOO_DEEP, 5),
  DEEP("[[]]", 1, CHAT_ERR_TOO_DEEP, 1),
  DEEP("[[]]", 2, CHAT_OK, NO_OFF),
  DEEP("[{\"a\":[1]}]", 2, CHAT_ERR_TOO_DEEP, 6),
  DEEP("[{\"a\":[1]}]", 3, CHAT_OK, NO_OFF),
  DEEP("[1,2,[3,[4]],5]", 2, CHAT_ERR_TOO_DEEP, 8),
  DEEP("\"scalars have no depth\"", 1, CHAT_OK, NO_OFF),
};

Test(json, table_of_valid_and_invalid_documents) {
  size_t n = sizeof cases / sizeof cases[0];
  cr_assert_geq(n, 100);
  for (size_t i = 0; i < n; i++) {
    const tcase *t = &cases[i];
    size_t off;
    chat_err e = check_parse(t->s, t->len, t->depth, &off);
    cr_expect_eq(e, t->err, "case %zu `%s`: got %s, want %s", i, t->s,
                 chat_err_name(e), chat_err_name(t->err));
    if (t->off != NO_OFF && e == t->err)
      cr_expect_eq(off, t->off, "case %zu `%s`: offset %zu, want %zu", i,
                   t->s, off, t->off);
  }
}

/* cJSON must accept everything we accept (it accepts more). */
Test(json, table_accepted_documents_are_json_for_cjson_too) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i].err != CHAT_OK)
      continue;
    cJSON *c = cJSON_ParseWithLength(cases[i].s, cases[i].len);
    cr_expect_not_null(c, "cJSON refused `%s`", cases[i].s);
    cJSON_Delete(c);
  }
}

Test(json, null_arguments) {
  chat__arena ar;
  chat__arena_init(&ar, NULL);
  chat__json *root;
  size_t off;
  cr_assert_eq(chat__json_parse(NULL, "1", 1, 0, &root, &off),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat__json_parse(&ar, "1", 1, 0, NULL, &off), CHAT_ERR_INVAL);
  cr_assert_eq(chat__json_parse(&ar, NULL, 1, 0, &root, &off),
               CHAT_ERR_INVAL);
  cr_assert_null(root);
  cr_assert_eq(chat__json_parse(&ar, NULL, 0, 0, &root, &off), CHAT_ERR_JSON);
  cr_assert_eq(chat__json_parse(&ar, "[1]", 3, 0, &root, NULL), CHAT_OK);
  chat__arena_free(&ar);
}

/* ---- tree shape ---- */

Test(json, tree_shape_and_order) {
  doc d;
  cr_assert_eq(
      doc_parse(&d,
                LIT("{\"a\":[1,\"x\",true,false,null,{}],\"b\":{\"c\":-2.5e3}"
                    ",\"\":[]}"),
                0),
      CHAT_OK);
  const chat__json *r = d.root;
  cr_assert_eq(r->kind, CHAT__JSON_OBJECT);
  cr_assert_eq(r->n, 3);
  cr_assert_null(r->key);
  const chat__json *a = r->child;
  cr_assert_str_eq(a->key, "a");
  cr_assert_eq(a->key_len, 1);
  cr_assert_eq(a->kind, CHAT__JSON_ARRAY);
  cr_assert_eq(a->n, 6);
  static const chat__json_kind want[] = {
    CHAT__JSON_NUMBER, CHAT__JSON_STRING, CHAT__JSON_TRUE,
    CHAT__JSON_FALSE,  CHAT__JSON_NULL,   CHAT__JSON_OBJECT};
  size_t i = 0;
  for (const chat__json *c = a->child; c; c = c->next, i++) {
    cr_assert_eq(c->kind, want[i]);
    cr_assert_null(c->key, "array elements have no key");
  }
  cr_assert_eq(i, 6);
  cr_assert_str_eq(a->child->str, "1");
  cr_assert(str_is(a->child->next, "x", 1));
  const chat__json *e = a->child->next->next->next->next->next;
  cr_assert_eq(e->n, 0);
  cr_assert_null(e->child);
  const chat__json *b = a->next;
  cr_assert_str_eq(b->key, "b");
  cr_assert_eq(b->child->kind, CHAT__JSON_NUMBER);
  cr_assert_str_eq(b->child->str, "-2.5e3");
  cr_assert_eq(b->child->len, 6);
  cr_assert_eq(b->next->key_len, 0);
  cr_assert_str_eq(b->next->key, "");
  cr_assert_null(b->next->next);
  cr_assert_null(r->next);
  doc_free(&d);
}

Test(json, raw_is_exact_source_text) {
  doc d;
  cr_assert_eq(doc_parse(&d,
                         LIT("  {\"n\": 12.50e1 , \"s\":\"a\\nb\", \"o\" : { "
                             "\"k\" : [ 1 , true ] } }  "),
                         0),
               CHAT_OK);
  const chat__json *r = d.root;
  cr_assert(raw_is(r, "{\"n\": 12.50e1 , \"s\":\"a\\nb\", \"o\" : { \"k\" : "
                      "[ 1 , true ] } }"));
  cr_assert(raw_is(chat__json_get(r, "n"), "12.50e1"));
  cr_assert(raw_is(chat__json_get(r, "s"), "\"a\\nb\""));
  cr_assert(str_is(chat__json_get(r, "s"), "a\nb", 3));
  const chat__json *o = chat__json_get(r, "o");
  cr_assert(raw_is(o, "{ \"k\" : [ 1 , true ] }"));
  cr_assert(raw_is(o->child, "[ 1 , true ]"));
  cr_assert(raw_is(o->child->child->next, "true"));
  cr_assert(d.root->raw >= d.copy && d.root->raw < d.copy + 60,
            "raw points into the input");
  doc_free(&d);
}

Test(json, get_by_key) {
  doc d;
  cr_assert_eq(doc_parse(&d, LIT("{\"type\":\"send\",\"ty\":1,\"typed\":2,"
                                 "\"\":3,\"a\\u0000b\":4}"),
                         0),
               CHAT_OK);
  cr_assert(str_is(chat__json_get(d.root, "type"), "send", 4));
  cr_assert_str_eq(chat__json_get(d.root, "ty")->str, "1");
  cr_assert_str_eq(chat__json_get(d.root, "typed")->str, "2");
  cr_assert_str_eq(chat__json_get(d.root, "")->str, "3");
  cr_assert_null(chat__json_get(d.root, "typ"));
  cr_assert_null(chat__json_get(d.root, "types"));
  cr_assert_null(chat__json_get(d.root, "a"), "key with NUL is 3 bytes");
  cr_assert_null(chat__json_get(d.root->child, "type"), "not an object");
  cr_assert_null(chat__json_get(NULL, "type"));
  doc_free(&d);
}

/* ---- strings ---- */

Test(json, every_escape) {
  doc d;
  cr_assert_eq(doc_parse(&d, LIT("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), 0),
               CHAT_OK);
  cr_assert(str_is(d.root, "\"\\/\b\f\n\r\t", 8));
  doc_free(&d);

  static const struct {
    const char *json;
    const char *want;
    size_t want_len;
  } u[] = {
    {"\"\\u0041\"", "A", 1},
    {"\"\\u0000\"", "\0", 1},
    {"\"a\\u0000b\"", "a\0b", 3},
    {"\"\\u001f\"", "\x1f", 1},
    {"\"\\u007F\"", "\x7f", 1},
    {"\"\\u0080\"", "\xC2\x80", 2},
    {"\"\\u00e9\"", "\xC3\xA9", 2},
    {"\"\\u00E9\"", "\xC3\xA9", 2},
    {"\"\\u07ff\"", "\xDF\xBF", 2},
    {"\"\\u0800\"", "\xE0\xA0\x80", 3},
    {"\"\\u20AC\"", "\xE2\x82\xAC", 3},
    {"\"\\u2028\"", "\xE2\x80\xA8", 3},
    {"\"\\ud7ff\"", "\xED\x9F\xBF", 3},
    {"\"\\ue000\"", "\xEE\x80\x80", 3},
    {"\"\\uffff\"", "\xEF\xBF\xBF", 3},
    {"\"\\ud800\\udc00\"", "\xF0\x90\x80\x80", 4},
    {"\"\\ud83d\\ude00\"", "\xF0\x9F\x98\x80", 4},
    {"\"\\uDBFF\\uDFFF\"", "\xF4\x8F\xBF\xBF", 4},
    {"\"x\\ud83d\\ude00y\\n\"", "x\xF0\x9F\x98\x80y\n", 7},
    {"\"caf\xC3\xA9 \\u00e9\"", "caf\xC3\xA9 \xC3\xA9", 8},
    {"\"\\\\u0041\"", "\\u0041", 6},
  };
  for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
    cr_assert_eq(doc_parse(&d, u[i].json, strlen(u[i].json), 0), CHAT_OK,
                 "%s", u[i].json);
    cr_assert(str_is(d.root, u[i].want, u[i].want_len), "%s", u[i].json);
    doc_free(&d);
  }
}

Test(json, keys_are_unescaped) {
  doc d;
  cr_assert_eq(doc_parse(&d, LIT("{\"\\u0074ype\":1,\"a\\u0000\":2}"), 0),
               CHAT_OK);
  cr_assert_str_eq(d.root->child->key, "type");
  cr_assert_eq(d.root->child->key_len, 4);
  cr_assert_eq(d.root->child->next->key_len, 2);
  cr_assert_eq(memcmp(d.root->child->next->key, "a\0", 3), 0);
  doc_free(&d);
}

Test(json, long_strings_at_every_length) {
  /* The escape scan works a word at a time: put the special byte at every
   * position of strings of many lengths. */
  char buf[200];
  for (size_t len = 0; len < 80; len++) {
    buf[0] = '"';
    memset(buf + 1, 'a', len);
    buf[len + 1] = '"';
    doc d;
    cr_assert_eq(doc_parse(&d, buf, len + 2, 0), CHAT_OK);
    cr_assert_eq(d.root->len, len);
    doc_free(&d);
    for (size_t pos = 0; pos < len; pos++) {
      size_t off;
      memset(buf + 1, 'a', len);
      buf[1 + pos] = '\x01';
      cr_assert_eq(check_parse(buf, len + 2, 0, &off), CHAT_ERR_JSON);
      cr_assert_eq(off, 1 + pos);
      buf[1 + pos] = (char)0x80;
      cr_assert_eq(check_parse(buf, len + 2, 0, &off), CHAT_ERR_BAD_UTF8);
      cr_assert_eq(off, 1 + pos);
      buf[1 + pos] = '"';
      cr_assert_eq(check_parse(buf, len + 2, 0, &off), CHAT_ERR_JSON);
      buf[1 + pos] = '\\';
      cr_assert_eq(check_parse(buf, len + 2, 0, &off), CHAT_ERR_JSON);
      if (pos + 2 <= len) {
        memcpy(buf + 1 + pos, "\\n", 2);
        cr_assert_eq(doc_parse(&d, buf, len + 2, 0), CHAT_OK);
        cr_assert_eq(d.root->len, len - 1);
        cr_assert_eq(d.root->str[pos], '\n');
        doc_free(&d);
      }
      if (pos + 2 <= len) {
        memcpy(buf + 1 + pos, "\xC3\xA9", 2);
        cr_assert_eq(check_parse(buf, len + 2, 0, NULL), CHAT_OK);
      }
    }
  }
}

/* ---- bounds: the input is not NUL-terminated ---- */

Test(json, reads_only_len_bytes) {
  doc d;
  cr_assert_eq(doc_parse(&d, "[1,2]garbage", 5, 0), CHAT_OK);
  cr_assert_eq(d.root->n, 2);
  doc_free(&d);
  cr_assert_eq(doc_parse(&d, "123456", 3, 0), CHAT_OK);
  cr_assert_str_eq(d.root->str, "123");
  doc_free(&d);
  cr_assert_eq(check_parse("\"abc\"", 4, 0, NULL), CHAT_ERR_JSON);
  cr_assert_eq(check_parse("true", 3, 0, NULL), CHAT_ERR_JSON);
  cr_assert_eq(check_parse("\"\\u0041\"", 6, 0, NULL), CHAT_ERR_JSON);
  cr_assert_eq(check_parse("1e5", 2, 0, NULL), CHAT_ERR_JSON);
}

/* Every proper prefix of a document must fail cleanly: the parser reads
 * nothing past the end (the copy is exact-size, so ASan would notice). */
Test(json, every_prefix_fails_cleanly) {
  static const char full[] =
      "{\"type\":\"send\",\"a\":[1,-2.5e+3,true,false,null,{}],"
      "\"s\":\"x\\n\\u00e9\\ud83d\\ude00\xC3\xA9\xF0\x9F\x98\x80\","
      "\"n\":{\"k\":[[]]}}";
  size_t len = sizeof full - 1;
  cr_assert_eq(check_parse(full, len, 0, NULL), CHAT_OK);
  for (size_t i = 0; i < len; i++) {
    size_t off;
    chat_err e = check_parse(full, i, 0, &off);
    bool utf8 = chat__utf8_valid(full, i);
    cr_assert_eq(e, utf8 ? CHAT_ERR_JSON : CHAT_ERR_BAD_UTF8,
                 "prefix %zu: %s", i, chat_err_name(e));
    if (utf8)
      cr_assert_eq(off, i, "a truncated document fails at its end");
  }
}

/* ---- numbers ---- */

Test(json, int64_conversion) {
  static const struct {
    const char *s;
    chat_err e;
    int64_t v;
  } t[] = {
    {"0", CHAT_OK, 0},
    {"-0", CHAT_OK, 0},
    {"7", CHAT_OK, 7},
    {"-7", CHAT_OK, -7},
    {"9223372036854775807", CHAT_OK, INT64_MAX},
    {"-9223372036854775808", CHAT_OK, INT64_MIN},
    {"-9223372036854775807", CHAT_OK, -INT64_MAX},
    {"9223372036854775808", CHAT_ERR_BAD_NUMBER, 0},
    {"-9223372036854775809", CHAT_ERR_BAD_NUMBER, 0},
    {"18446744073709551615", CHAT_ERR_BAD_NUMBER, 0},
    {"18446744073709551616", CHAT_ERR_BAD_NUMBER, 0},
    {"99999999999999999999999", CHAT_ERR_BAD_NUMBER, 0},
    {"1.0", CHAT_ERR_BAD_NUMBER, 0},
    {"1e2", CHAT_ERR_BAD_NUMBER, 0},
    {"1E2", CHAT_ERR_BAD_NUMBER, 0},
    {"-0.0", CHAT_ERR_BAD_NUMBER, 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    doc d;
    cr_assert_eq(doc_parse(&d, t[i].s, strlen(t[i].s), 0), CHAT_OK);
    int64_t v = 42;
    cr_assert_eq(chat__json_int64(d.root, &v), t[i].e, "%s", t[i].s);
    if (t[i].e == CHAT_OK)
      cr_assert_eq(v, t[i].v, "%s", t[i].s);
    doc_free(&d);
  }
}

Test(json, uint64_conversion) {
  static const struct {
    const char *s;
    chat_err e;
    uint64_t v;
  } t[] = {
    {"0", CHAT_OK, 0},
    {"1", CHAT_OK, 1},
    {"9223372036854775807", CHAT_OK, (uint64_t)INT64_MAX},
    {"9223372036854775808", CHAT_OK, (uint64_t)INT64_MAX + 1},
    {"18446744073709551615", CHAT_OK, UINT64_MAX},
    {"18446744073709551616", CHAT_ERR_BAD_NUMBER, 0},
    {"18446744073709551620", CHAT_ERR_BAD_NUMBER, 0},
    {"28446744073709551615", CHAT_ERR_BAD_NUMBER, 0},
    {"184467440737095516150", CHAT_ERR_BAD_NUMBER, 0},
    {"-0", CHAT_ERR_BAD_NUMBER, 0},
    {"-1", CHAT_ERR_BAD_NUMBER, 0},
    {"1.5", CHAT_ERR_BAD_NUMBER, 0},
    {"10e0", CHAT_ERR_BAD_NUMBER, 0},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    doc d;
    cr_assert_eq(doc_parse(&d, t[i].s, strlen(t[i].s), 0), CHAT_OK);
    uint64_t v = 42;
    cr_assert_eq(chat__json_uint64(d.root, &v), t[i].e, "%s", t[i].s);
    if (t[i].e == CHAT_OK)
      cr_assert_eq(v, t[i].v, "%s", t[i].s);
    doc_free(&d);
  }
}

Test(json, number_conversion_needs_a_number) {
  doc d;
  cr_assert_eq(doc_parse(&d, LIT("[\"1\",true,null,[],{}]"), 0), CHAT_OK);
  for (const chat__json *c = d.root->child; c; c = c->next) {
    int64_t i;
    uint64_t u;
    cr_assert_eq(chat__json_int64(c, &i), CHAT_ERR_FIELD_TYPE);
    cr_assert_eq(chat__json_uint64(c, &u), CHAT_ERR_FIELD_TYPE);
  }
  int64_t i;
  cr_assert_eq(chat__json_int64(NULL, &i), CHAT_ERR_FIELD_TYPE);
  doc_free(&d);
}

/* ---- depth ---- */

static char *nested(uint32_t n, const char *open, const char *mid,
                    const char *close, size_t *len) {
  size_t lo = strlen(open), lm = strlen(mid), lc = strlen(close);
  char *s = malloc(n * (lo + lc) + lm + 1);
  char *p = s;
  for (uint32_t i = 0; i < n; i++, p += lo)
    memcpy(p, open, lo);
  memcpy(p, mid, lm);
  p += lm;
  for (uint32_t i = 0; i < n; i++, p += lc)
    memcpy(p, close, lc);
  *len = (size_t)(p - s);
  return s;
}

Test(json, depth_limit_exact_boundary) {
  for (uint32_t max = 1; max <= 64; max++) {
    size_t len, off;
    char *ok = nested(max, "[", "1", "]", &len);
    cr_assert_eq(check_parse(ok, len, max, NULL), CHAT_OK, "%u", max);
    free(ok);
    char *deep = nested(max + 1, "[", "", "]", &len);
    cr_assert_eq(check_parse(deep, len, max, &off), CHAT_ERR_TOO_DEEP);
    cr_assert_eq(off, max, "the bracket that goes too deep");
    free(deep);
    ok = nested(max, "{\"k\":", "null", "}", &len);
    cr_assert_eq(check_parse(ok, len, max, NULL), CHAT_OK, "%u", max);
    free(ok);
    deep = nested(max + 1, "{\"k\":", "null", "}", &len);
    cr_assert_eq(check_parse(deep, len, max, &off), CHAT_ERR_TOO_DEEP);
    cr_assert_eq(off, 5 * max);
    free(deep);
  }
}

Test(json, depth_default_and_cap) {
  size_t len;
  char *s = nested(16, "[", "", "]", &len);
  cr_assert_eq(check_parse(s, len, 0, NULL), CHAT_OK, "0 means 16");
  free(s);
  s = nested(17, "[", "", "]", &len);
  cr_assert_eq(check_parse(s, len, 0, NULL), CHAT_ERR_TOO_DEEP);
  free(s);
  s = nested(64, "[", "", "]", &len);
  cr_assert_eq(check_parse(s, len, 1000, NULL), CHAT_OK);
  cr_assert_eq(check_parse(s, len, UINT32_MAX, NULL), CHAT_OK);
  free(s);
  s = nested(65, "[", "", "]", &len);
  cr_assert_eq(check_parse(s, len, 1000, NULL), CHAT_ERR_TOO_DEEP,
               "capped at 64");
  cr_assert_eq(check_parse(s, len, UINT32_MAX, NULL), CHAT_ERR_TOO_DEEP);
  free(s);
}

Test(json, very_deep_input_is_refused_without_recursing) {
  size_t len = 1000000, off;
  char *s = malloc(len);
  memset(s, '[', len);
  cr_assert_eq(check_parse(s, len, 64, &off), CHAT_ERR_TOO_DEEP);
  cr_assert_eq(off, 64);
  memset(s, '{', len);
  cr_assert_eq(check_parse(s, len, 64, &off), CHAT_ERR_JSON);
  free(s);
}

/* ---- duplicate keys ---- */

/* {"k0":0,"k1":1,...} with n members; key i is written by name(i). */
static char *object_of(size_t n, void (*name)(size_t, char *, void *),
                       void *ctx, size_t *len, size_t *key_off) {
  size_t cap = n * 40 + 16;
  char *s = malloc(cap), *p = s;
  *p++ = '{';
  for (size_t i = 0; i < n; i++) {
    if (i)
      *p++ = ',';
    if (key_off)
      key_off[i] = (size_t)(p - s);
    char key[32];
    name(i, key, ctx);
    p += sprintf(p, "\"%s\":%zu", key, i);
  }
  *p++ = '}';
  *len = (size_t)(p - s);
  return s;
}

static void unique_name(size_t i, char *out, void *ctx) {
  (void)ctx;
  sprintf(out, "k%zu", i);
}

/* Members a and b share a key; with `escaped`, b spells it with \u. */
typedef struct dup_at {
  size_t a, b;
  bool escaped;
} dup_at;

static void dup_name(size_t i, char *out, void *ctx) {
  const dup_at *d = ctx;
  if (i == d->b)
    sprintf(out, d->escaped ? "\\u006b%zu" : "k%zu", d->a);
  else
    sprintf(out, "k%zu", i);
}

Test(json, duplicates_in_small_and_boundary_sized_objects) {
  for (size_t n = 2; n <= 40; n++) {
    size_t len, off;
    size_t *ko = malloc(n * sizeof *ko);
    char *s = object_of(n, unique_name, NULL, &len, ko);
    cr_assert_eq(check_parse(s, len, 0, NULL), CHAT_OK, "n=%zu", n);
    free(s);
    const dup_at pairs[] = {{0, 1, false},     {0, n - 1, false},
                            {n - 2, n - 1, true}, {0, n - 1, true},
                            {n / 2, n - 1, false}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
      dup_at d = pairs[k];
      if (d.a >= d.b)
        continue;
      s = object_of(n, dup_name, &d, &len, ko);
      cr_assert_eq(check_parse(s, len, 0, &off), CHAT_ERR_DUPLICATE_KEY,
                   "n=%zu %zu/%zu", n, d.a, d.b);
      cr_assert_eq(off, ko[d.b], "n=%zu: offset of the later key", n);
      free(s);
    }
    free(ko);
  }
}

Test(json, duplicates_in_a_4000_member_object) {
  size_t n = 4000, len, off;
  size_t *ko = malloc(n * sizeof *ko);
  char *s = object_of(n, unique_name, NULL, &len, ko);
  doc d;
  cr_assert_eq(doc_parse(&d, s, len, 0), CHAT_OK);
  cr_assert_eq(d.root->n, n);
  cr_assert_str_eq(chat__json_get(d.root, "k3999")->str, "3999");
  doc_free(&d);
  free(s);

  const dup_at cases_[] = {{0, 3999, false}, {0, 3999, true},
                           {1234, 1235, true}, {3998, 3999, false},
                           {17, 2000, true}};
  for (size_t k = 0; k < sizeof cases_ / sizeof cases_[0]; k++) {
    dup_at dd = cases_[k];
    s = object_of(n, dup_name, &dd, &len, ko);
    cr_assert_eq(check_parse(s, len, 0, &off), CHAT_ERR_DUPLICATE_KEY,
                 "%zu/%zu", dd.a, dd.b);
    cr_assert_eq(off, ko[dd.b]);
    free(s);
  }
  free(ko);
}

/* Several duplicates: the reported one is the first repeat in source order
 * (here member 25, which repeats member 20), not the first in key order. */
static void multi_dup_name(size_t i, char *out, void *ctx) {
  (void)ctx;
  if (i == 3000)
    strcpy(out, "k10");
  else if (i == 25)
    strcpy(out, "k20");
  else if (i == 3500)
    strcpy(out, "k20");
  else
    sprintf(out, "k%zu", i);
}

Test(json, first_repeat_in_source_order_is_reported) {
  size_t n = 4000, len, off;
  size_t *ko = malloc(n * sizeof *ko);
  char *s = object_of(n, multi_dup_name, NULL, &len, ko);
  cr_assert_eq(check_parse(s, len, 0, &off), CHAT_ERR_DUPLICATE_KEY);
  cr_assert_eq(off, ko[25]);
  free(s);
  free(ko);
}

/* 200,000 members: pairwise checking would take 2e10 comparisons. */
Test(json, huge_object_stays_n_log_n, .timeout = 60) {
  size_t n = 200000, len;
  char *s = object_of(n, unique_name, NULL, &len, NULL);
  cr_assert_eq(check_parse(s, len, 0, NULL), CHAT_OK);
  /* Same-length keys with long common prefixes: the worst case for the
   * comparison. */
  free(s);
  char *p = s = malloc(n * 80);
  *p++ = '{';
  for (size_t i = 0; i < n; i++)
    p += sprintf(p, "%s\"%048zu\":0", i ? "," : "", (i * 7919) % n);
  *p++ = '}';
  cr_assert_eq(check_parse(s, (size_t)(p - s), 0, NULL), CHAT_OK);
  free(s);
}

/* ---- memory ---- */

static const char frame[] =
    "{\"type\":\"send\",\"client_msg_id\":\"c-123\","
    "\"conversation_id\":\"conv_abc\",\"body\":\"are you home?\"}";

Test(json, warm_parse_makes_no_allocator_calls) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat__arena ar;
  chat__arena_init(&ar, &fa.a);
  chat__json *root;
  cr_assert_eq(chat__json_parse(&ar, LIT(frame), 0, &root, NULL), CHAT_OK);
  chat__arena_reset(&ar);
  long before = fa.count;
  for (int i = 0; i < 100; i++) {
    cr_assert_eq(chat__json_parse(&ar, LIT(frame), 0, &root, NULL), CHAT_OK);
    cr_assert_str_eq(chat__json_get(root, "body")->str, "are you home?");
    chat__arena_reset(&ar);
  }
  cr_assert_eq(fa.count, before, "%ld allocator calls", fa.count - before);
  chat__arena_free(&ar);
  cr_assert_eq(fa.live, 0);
}

Test(json, warm_parse_of_a_large_document_makes_no_allocator_calls) {
  size_t len;
  char *s = object_of(4000, unique_name, NULL, &len, NULL);
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat__arena ar;
  chat__arena_init(&ar, &fa.a);
  chat__json *root;
  cr_assert_eq(chat__json_parse(&ar, s, len, 0, &root, NULL), CHAT_OK);
  cr_assert_gt(fa.count, 1, "the warm-up spilled over several chunks");
  chat__arena_reset(&ar);
  long before = fa.count;
  cr_assert_eq(chat__json_parse(&ar, s, len, 0, &root, NULL), CHAT_OK);
  cr_assert_eq(fa.count, before);
  chat__arena_free(&ar);
  cr_assert_eq(fa.live, 0);
  free(s);
}

/* Fail each allocation of a parse in turn: every run reports NOMEM, and
 * freeing the arena returns every block. */
static void oom_torture(const char *s, size_t len) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat__arena ar;
  chat__arena_init(&ar, &fa.a);
  chat__json *root;
  cr_assert_eq(chat__json_parse(&ar, s, len, 0, &root, NULL), CHAT_OK);
  long total = fa.count;
  chat__arena_free(&ar);
  cr_assert_eq(fa.live, 0);
  cr_assert_gt(total, 3, "a scenario with several allocations");
  for (long i = 0; i < total; i++) {
    fail_alloc_init(&fa, i);
    chat__arena_init(&ar, &fa.a);
    size_t off;
    chat_err e = chat__json_parse(&ar, s, len, 0, &root, &off);
    cr_assert_eq(e, CHAT_ERR_NOMEM, "failing allocation %ld: %s", i,
                 chat_err_name(e));
    cr_assert_null(root);
    chat__arena_free(&ar);
    cr_assert_eq(fa.live, 0, "leak after failing allocation %ld", i);
  }
}

Test(json, oom_torture) {
  /* Many nodes, escaped and large strings, a large object (sorted), all
   * spilling over several chunks. */
  char *s = malloc(200000), *p = s;
  p += sprintf(p, "{\"big\":\"");
  memset(p, 'x', 20000);
  p += 20000;
  p += sprintf(p, "\",\"esc\":\"a\\n\\u00e9\\ud83d\\ude00\",\"arr\":[");
  for (int i = 0; i < 500; i++)
    p += sprintf(p, "%s{\"n\":%d,\"s\":\"v%d\"}", i ? "," : "", i, i);
  p += sprintf(p, "],\"obj\":{");
  for (int i = 0; i < 300; i++)
    p += sprintf(p, "%s\"key%d\":[true,null]", i ? "," : "", i);
  p += sprintf(p, "}}");
  oom_torture(s, (size_t)(p - s));
  free(s);
}

Test(json, oom_torture_small_documents) {
  /* One chunk serves a small frame: failing it must still be clean. */
  fail_alloc fa;
  fail_alloc_init(&fa, 0);
  chat__arena ar;
  chat__arena_init(&ar, &fa.a);
  chat__json *root;
  cr_assert_eq(chat__json_parse(&ar, LIT(frame), 0, &root, NULL),
               CHAT_ERR_NOMEM);
  chat__arena_free(&ar);
  cr_assert_eq(fa.live, 0);
}

/* ---- writer ---- */

typedef struct wr {
  chat__buf b;
  chat__jw w;
} wr;

static void wr_init(wr *x) {
  chat__buf_init(&x->b, NULL);
  chat__jw_init(&x->w, &x->b);
}

static void wr_expect(wr *x, const char *want) {
  cr_assert_not(x->b.oom);
  cr_assert_eq(x->b.len, strlen(want), "got `%.*s`, want `%s`",
               (int)x->b.len, x->b.data, want);
  cr_assert_eq(memcmp(x->b.data, want, x->b.len), 0, "got `%.*s`, want `%s`",
               (int)x->b.len, x->b.data, want);
  chat__buf_free(&x->b);
}

Test(jsonw, commas_and_nesting) {
  wr x;
  wr_init(&x);
  chat__jw_obj_begin(&x.w);
  chat__jw_key(&x.w, "a");
  chat__jw_arr_begin(&x.w);
  chat__jw_int(&x.w, 1);
  chat__jw_obj_begin(&x.w);
  chat__jw_key(&x.w, "b");
  chat__jw_null(&x.w);
  chat__jw_obj_end(&x.w);
  chat__jw_arr_begin(&x.w);
  chat__jw_arr_end(&x.w);
  chat__jw_bool(&x.w, false);
  chat__jw_arr_end(&x.w);
  chat__jw_key(&x.w, "c");
  chat__jw_obj_begin(&x.w);
  chat__jw_obj_end(&x.w);
  chat__jw_key(&x.w, "d");
  chat__jw_str(&x.w, "x", 1);
  chat__jw_key(&x.w, "e");
  chat__jw_bool(&x.w, true);
  chat__jw_obj_end(&x.w);
  cr_assert_eq(x.w.depth, 0);
  wr_expect(&x, "{\"a\":[1,{\"b\":null},[],false],\"c\":{},\"d\":\"x\","
                "\"e\":true}");
}

Test(jsonw, numbers) {
  wr x;
  wr_init(&x);
  chat__jw_arr_begin(&x.w);
  chat__jw_int(&x.w, 0);
  chat__jw_int(&x.w, -1);
  chat__jw_int(&x.w, INT64_MAX);
  chat__jw_int(&x.w, INT64_MIN);
  chat__jw_uint(&x.w, 0);
  chat__jw_uint(&x.w, UINT64_MAX);
  chat__jw_uint_str(&x.w, 9187202);
  chat__jw_uint_str(&x.w, 0);
  chat__jw_uint_str(&x.w, UINT64_MAX);
  chat__jw_raw(&x.w, "{\"n\":1}", 7);
  chat__jw_arr_end(&x.w);
  wr_expect(&x, "[0,-1,9223372036854775807,-9223372036854775808,0,"
                "18446744073709551615,\"9187202\",\"0\","
                "\"18446744073709551615\",{\"n\":1}]");
}

Test(jsonw, escapes_every_ascii_byte_as_documented) {
  for (int c = 0; c < 0x80; c++) {
    wr x;
    wr_init(&x);
    char ch = (char)c;
    chat__jw_str(&x.w, &ch, 1);
    char want[16];
    switch (c) {
    case '"': strcpy(want, "\"\\\"\""); break;
    case '\\': strcpy(want, "\"\\\\\""); break;
    case '\b': strcpy(want, "\"\\b\""); break;
    case '\f': strcpy(want, "\"\\f\""); break;
    case '\n': strcpy(want, "\"\\n\""); break;
    case '\r': strcpy(want, "\"\\r\""); break;
    case '\t': strcpy(want, "\"\\t\""); break;
    default:
      if (c < 0x20)
        sprintf(want, "\"\\u%04x\"", c);
      else
        sprintf(want, "\"%c\"", c);
    }
    cr_assert_eq(x.b.len, strlen(want), "byte 0x%02x", c);
    cr_assert_eq(memcmp(x.b.data, want, x.b.len), 0, "byte 0x%02x", c);
    chat__buf_free(&x.b);
  }
}

Test(jsonw, line_separators_and_other_utf8) {
  static const struct {
    const char *in;
    const char *out;
  } t[] = {
    {"\xE2\x80\xA8", "\"\\u2028\""},
    {"\xE2\x80\xA9", "\"\\u2029\""},
    {"a\xE2\x80\xA8z\xE2\x80\xA9", "\"a\\u2028z\\u2029\""},
    {"\xE2\x80\xAA", "\"\xE2\x80\xAA\""},
    {"\xE2\x80\xA7", "\"\xE2\x80\xA7\""},
    {"\xE2\x82\xAC", "\"\xE2\x82\xAC\""},
    {"\xE2\x80", "\"\xE2\x80\""}, /* not validated, copied */
    {"\xE2", "\"\xE2\""},
    {"caf\xC3\xA9 \xF0\x9F\x98\x80", "\"caf\xC3\xA9 \xF0\x9F\x98\x80\""},
    {"12345678\"12345678\\", "\"12345678\\\"12345678\\\\\""},
    {"</script>", "\"</script>\""},
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    wr x;
    wr_init(&x);
    chat__jw_str(&x.w, t[i].in, strlen(t[i].in));
    wr_expect(&x, t[i].out);
  }
  wr x;
  wr_init(&x);
  chat__jw_str(&x.w, "a\0b", 3);
  wr_expect(&x, "\"a\\u0000b\"");
}

/* A plain reference escaper, to check the word-at-a-time writer against. */
static size_t ref_escape(const unsigned char *s, size_t len, char *out) {
  size_t o = 0;
  out[o++] = '"';
  for (size_t i = 0; i < len; i++) {
    unsigned char c = s[i];
    if (c == 0xE2 && i + 2 < len && s[i + 1] == 0x80 &&
        (s[i + 2] == 0xA8 || s[i + 2] == 0xA9)) {
      o += (size_t)sprintf(out + o, "\\u202%c", s[i + 2] == 0xA8 ? '8' : '9');
      i += 2;
    } else if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c == '\n') {
      o += (size_t)sprintf(out + o, "\\n");
    } else if (c == '\t') {
      o += (size_t)sprintf(out + o, "\\t");
    } else if (c == '\r') {
      o += (size_t)sprintf(out + o, "\\r");
    } else if (c == '\b') {
      o += (size_t)sprintf(out + o, "\\b");
    } else if (c == '\f') {
      o += (size_t)sprintf(out + o, "\\f");
    } else if (c < 0x20) {
      o += (size_t)sprintf(out + o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o++] = '"';
  return o;
}

/* Every special sequence at every position of strings of many lengths:
 * the scan reads eight bytes at a time and re-reads the last word. */
Test(jsonw, escapes_at_every_position_and_length, .timeout = 60) {
  static const char *specials[] = {"\"", "\\", "\n", "\x01", "\x1f",
                                   "\xE2\x80\xA8", "\xE2\x80\xA9",
                                   "\xE2\x82\xAC", "\xE2"};
  unsigned char in[64];
  char want[64 * 6 + 2];
  for (size_t len = 1; len <= 40; len++) {
    for (size_t pos = 0; pos < len; pos++) {
      for (size_t k = 0; k < sizeof specials / sizeof specials[0]; k++) {
        size_t sl = strlen(specials[k]);
        if (pos + sl > len)
          continue;
        memset(in, 'a', len);
        memcpy(in + pos, specials[k], sl);
        size_t wl = ref_escape(in, len, want);
        wr x;
        wr_init(&x);
        chat__jw_str(&x.w, (const char *)in, len);
        cr_assert_eq(x.b.len, wl, "len %zu pos %zu special %zu", len, pos, k);
        cr_assert_eq(memcmp(x.b.data, want, wl), 0, "len %zu pos %zu k %zu",
                     len, pos, k);
        chat__buf_free(&x.b);
      }
    }
  }
}

Test(jsonw, keys_are_escaped) {
  wr x;
  wr_init(&x);
  chat__jw_obj_begin(&x.w);
  chat__jw_key(&x.w, "q\"\n");
  chat__jw_int(&x.w, 1);
  chat__jw_key_len(&x.w, "a\0b", 3);
  chat__jw_int(&x.w, 2);
  chat__jw_obj_end(&x.w);
  wr_expect(&x, "{\"q\\\"\\n\":1,\"a\\u0000b\":2}");
}

Test(jsonw, misuse_and_oom_set_the_flag) {
  wr x;
  wr_init(&x);
  chat__jw_obj_end(&x.w);
  cr_assert(x.b.oom, "end without begin");
  chat__buf_free(&x.b);

  wr_init(&x);
  for (int i = 0; i < CHAT__JW_MAX_DEPTH; i++)
    chat__jw_arr_begin(&x.w);
  cr_assert_not(x.b.oom, "CHAT__JW_MAX_DEPTH levels are fine");
  chat__jw_arr_begin(&x.w);
  cr_assert(x.b.oom, "one more is not");
  chat__buf_free(&x.b);

  fail_alloc fa;
  fail_alloc_init(&fa, 0);
  chat__buf b;
  chat__buf_init(&b, &fa.a);
  chat__jw w;
  chat__jw_init(&w, &b);
  chat__jw_obj_begin(&w);
  chat__jw_key(&w, "k");
  chat__jw_str(&w, "v", 1);
  chat__jw_obj_end(&w);
  cr_assert(b.oom);
  chat__buf_free(&b);
  cr_assert_eq(fa.live, 0);
}

/* Random strings that are valid UTF-8, heavy in characters that need
 * escaping, written and read back by our parser and by cJSON. */
static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

static size_t random_utf8(char *out, size_t max_chars, bool allow_nul) {
  static const uint32_t special[] = {'"',    '\\',   '/',    '\b',
                                     '\f',   '\n',   '\r',   '\t',
                                     0x1f,   0x7f,   0x2028, 0x2029,
                                     0x2027, 0x202A, 0xFFFF, 0x10FFFF,
                                     0xD7FF, 0xE000, 0x80,   0x7FF};
  size_t n = 0, chars = rnd() % (max_chars + 1);
  for (size_t i = 0; i < chars; i++) {
    uint32_t cp;
    switch (rnd() % 5) {
    case 0: cp = special[rnd() % (sizeof special / sizeof special[0])]; break;
    case 1: cp = rnd() % 0x20; break;
    case 2: cp = 0x20 + rnd() % 0x60; break;
    case 3: cp = rnd() % 0x10000; break;
    default: cp = rnd() % 0x110000; break;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF)
      cp = 0xFFFD;
    if (cp == 0 && !allow_nul)
      cp = 1;
    n += chat__utf8_encode(cp, out + n);
  }
  return n;
}

Test(jsonw, random_strings_round_trip_through_both_parsers) {
  char in[4 * 64];
  for (int iter = 0; iter < 20000; iter++) {
    bool nul = iter % 2;
    size_t len = random_utf8(in, 64, nul);
    wr x;
    wr_init(&x);
    chat__jw_arr_begin(&x.w);
    chat__jw_str(&x.w, in, len);
    chat__jw_arr_end(&x.w);
    cr_assert_not(x.b.oom);
    /* Ours: exact bytes back. */
    doc d;
    cr_assert_eq(doc_parse(&d, x.b.data, x.b.len, 0), CHAT_OK, "%.*s",
                 (int)x.b.len, x.b.data);
    cr_assert(str_is(d.root->child, in, len));
    doc_free(&d);
    /* The output never carries raw controls or U+2028/2029. */
    for (size_t i = 0; i < x.b.len; i++) {
      cr_assert_geq((unsigned char)x.b.data[i], 0x20);
      if (i + 2 < x.b.len)
        cr_assert(memcmp(x.b.data + i, "\xE2\x80\xA8", 3) &&
                  memcmp(x.b.data + i, "\xE2\x80\xA9", 3));
    }
    /* cJSON: same string (it keeps C strings, hence no U+0000 there). */
    if (!nul) {
      cJSON *c = cJSON_ParseWithLength(x.b.data, x.b.len);
      cr_assert_not_null(c);
      const char *v = cJSON_GetStringValue(cJSON_GetArrayItem(c, 0));
      cr_assert_not_null(v);
      cr_assert_eq(strlen(v), len);
      cr_assert_eq(memcmp(v, in, len), 0);
      cJSON_Delete(c);
    }
    chat__buf_free(&x.b);
  }
}

/* Random trees, written by our writer, read by both parsers and compared
 * with what was written. */
typedef struct gen {
  wr x;
  cJSON *expect; /* built alongside, to compare cJSON's parse against */
} gen;

static cJSON *gen_value(chat__jw *w, int depth) {
  char buf[4 * 16 + 1];
  switch (rnd() % (depth < 6 ? 8 : 5)) {
  case 0: chat__jw_null(w); return cJSON_CreateNull();
  case 1: {
    bool b = rnd() % 2;
    chat__jw_bool(w, b);
    return cJSON_CreateBool(b);
  }
  case 2: {
    int64_t v = (int64_t)rnd() - (int64_t)(rnd() % 1000000);
    chat__jw_int(w, v);
    return cJSON_CreateNumber((double)v);
  }
  case 3:
  case 4: {
    size_t n = random_utf8(buf, 16, false);
    buf[n] = '\0';
    chat__jw_str(w, buf, n);
    return cJSON_CreateString(buf);
  }
  case 5: {
    cJSON *a = cJSON_CreateArray();
    chat__jw_arr_begin(w);
    for (uint32_t i = 0, n = rnd() % 5; i < n; i++)
      cJSON_AddItemToArray(a, gen_value(w, depth + 1));
    chat__jw_arr_end(w);
    return a;
  }
  default: {
    cJSON *o = cJSON_CreateObject();
    chat__jw_obj_begin(w);
    for (uint32_t i = 0, n = rnd() % 5; i < n; i++) {
      size_t kn = random_utf8(buf, 6, false);
      buf[kn] = '\0';
      if (cJSON_GetObjectItemCaseSensitive(o, buf))
        continue; /* keys must stay unique */
      chat__jw_key(w, buf);
      cJSON_AddItemToObject(o, buf, gen_value(w, depth + 1));
    }
    chat__jw_obj_end(w);
    return o;
  }
  }
}

static void same_tree(const chat__json *n, const cJSON *c) {
  switch (n->kind) {
  case CHAT__JSON_NULL: cr_assert(cJSON_IsNull(c)); break;
  case CHAT__JSON_FALSE: cr_assert(cJSON_IsFalse(c)); break;
  case CHAT__JSON_TRUE: cr_assert(cJSON_IsTrue(c)); break;
  case CHAT__JSON_NUMBER: {
    int64_t v;
    cr_assert_eq(chat__json_int64(n, &v), CHAT_OK);
    cr_assert(cJSON_IsNumber(c));
    cr_assert_eq((double)v, c->valuedouble);
    break;
  }
  case CHAT__JSON_STRING:
    cr_assert(cJSON_IsString(c));
    cr_assert_eq(n->len, strlen(c->valuestring));
    cr_assert_eq(memcmp(n->str, c->valuestring, n->len), 0);
    break;
  default: {
    cr_assert(n->kind == CHAT__JSON_ARRAY ? cJSON_IsArray(c)
                                          : cJSON_IsObject(c));
    cr_assert_eq(n->n, (size_t)cJSON_GetArraySize(c));
    const cJSON *cc = c->child;
    for (const chat__json *m = n->child; m; m = m->next, cc = cc->next) {
      if (m->key)
        cr_assert_str_eq(m->key, cc->string);
      same_tree(m, cc);
    }
  }
  }
}

Test(jsonw, random_trees_round_trip_through_both_parsers) {
  for (int iter = 0; iter < 3000; iter++) {
    wr x;
    wr_init(&x);
    cJSON *expect = gen_value(&x.w, 0);
    cr_assert_not(x.b.oom);
    cr_assert_eq(x.w.depth, 0);
    doc d;
    cr_assert_eq(doc_parse(&d, x.b.data, x.b.len, 0), CHAT_OK, "%.*s",
                 (int)x.b.len, x.b.data);
    same_tree(d.root, expect);
    cJSON *theirs = cJSON_ParseWithLength(x.b.data, x.b.len);
    cr_assert_not_null(theirs);
    cr_assert(cJSON_Compare(theirs, expect, true));
    cJSON_Delete(theirs);
    cJSON_Delete(expect);
    doc_free(&d);
    chat__buf_free(&x.b);
  }
}

/* lib/common/ids.c: id grammar and canonical decimal message ids. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include <chat/frame.h>

#define ID(lit) chat_id_valid(lit, sizeof(lit) - 1)

Test(ids, accepts_every_allowed_character) {
  cr_assert(ID("a"));
  cr_assert(ID("abcdefghijklmnopqrstuvwxyz"));
  cr_assert(ID("ABCDEFGHIJKLMNOPQRSTUVWXYZ"));
  cr_assert(ID("0123456789"));
  cr_assert(ID("_.:@-"));
  cr_assert(ID("user_alice@example.org:dev-1"));
  cr_assert(ID("conv_abc"));
}

Test(ids, rejects_every_other_byte) {
  for (int c = 0; c < 256; c++) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                   (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                   c == ':' || c == '@' || c == '-';
    char s[3] = {'a', (char)c, 'b'};
    cr_assert_eq(chat_id_valid(s, 3), allowed, "byte 0x%02x", c);
  }
}

Test(ids, length_limits) {
  char s[66];
  memset(s, 'x', sizeof s);
  cr_assert(chat_id_valid(s, 1));
  cr_assert(chat_id_valid(s, 64));
  cr_assert_not(chat_id_valid(s, 65));
  cr_assert_not(chat_id_valid(s, 0));
  cr_assert_not(chat_id_valid(NULL, 0));
  cr_assert_not(chat_id_valid(NULL, 5));
  cr_assert_not(ID("a b"));
  cr_assert_not(ID("a\0b"), "embedded NUL");
  cr_assert_not(ID("caf\xC3\xA9"), "non-ASCII");
  cr_assert_not(ID("a/b"));
}

static chat_err parse(const char *s, size_t len, uint64_t *out) {
  /* exact-size heap copy: the input is not NUL-terminated */
  char *copy = malloc(len ? len : 1);
  memcpy(copy, s, len);
  chat_err e = chat_message_id_parse(copy, len, out);
  free(copy);
  return e;
}

Test(ids, parses_canonical_decimals) {
  static const struct {
    const char *s;
    uint64_t v;
  } ok[] = {
    {"0", 0},
    {"1", 1},
    {"9", 9},
    {"10", 10},
    {"9187202", 9187202},
    {"1000000000000000000", 1000000000000000000ull},
    {"9223372036854775806", 9223372036854775806ull},
    {"9223372036854775807", 9223372036854775807ull},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    uint64_t v = 77;
    cr_assert_eq(parse(ok[i].s, strlen(ok[i].s), &v), CHAT_OK, "%s", ok[i].s);
    cr_assert_eq(v, ok[i].v, "%s", ok[i].s);
  }
}

Test(ids, rejects_non_canonical) {
  static const char *bad[] = {
    "",
    "00",
    "01",
    "007",
    "-1",
    "-0",
    "+1",
    " 1",
    "1 ",
    "1\n",
    "1.0",
    "1e3",
    "0x10",
    "1_000",
    "abc",
    "12a",
    "9223372036854775808",
    "9999999999999999999",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999",
    "100000000000000000000000",
    "\xEF\xBC\x91", /* fullwidth digit one */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t v = 77;
    cr_assert_eq(parse(bad[i], strlen(bad[i]), &v), CHAT_ERR_BAD_MESSAGE_ID,
                 "\"%s\"", bad[i]);
    cr_assert_eq(v, 77, "output untouched on failure");
  }
  uint64_t v;
  cr_assert_eq(parse("1\0", 2, &v), CHAT_ERR_BAD_MESSAGE_ID, "NUL inside");
}

Test(ids, reads_only_len_bytes) {
  uint64_t v;
  cr_assert_eq(chat_message_id_parse("12345", 2, &v), CHAT_OK);
  cr_assert_eq(v, 12);
  cr_assert_eq(chat_message_id_parse("0123", 1, &v), CHAT_OK);
  cr_assert_eq(v, 0);
}

Test(ids, null_arguments) {
  uint64_t v;
  cr_assert_eq(chat_message_id_parse(NULL, 1, &v), CHAT_ERR_INVAL);
  cr_assert_eq(chat_message_id_parse(NULL, 0, &v), CHAT_ERR_INVAL);
  cr_assert_eq(chat_message_id_parse("1", 1, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(chat_message_id_format(1, NULL), 0);
}

Test(ids, formats_canonically) {
  char buf[21];
  cr_assert_eq(chat_message_id_format(0, buf), 1);
  cr_assert_str_eq(buf, "0");
  cr_assert_eq(chat_message_id_format(9187202, buf), 7);
  cr_assert_str_eq(buf, "9187202");
  cr_assert_eq(chat_message_id_format(INT64_MAX, buf), 19);
  cr_assert_str_eq(buf, "9223372036854775807");
  memset(buf, '#', sizeof buf);
  cr_assert_eq(chat_message_id_format((uint64_t)INT64_MAX + 1, buf), 0);
  cr_assert_eq(chat_message_id_format(UINT64_MAX, buf), 0);
  cr_assert_eq(buf[0], '#', "buffer untouched when refused");
}

Test(ids, format_parse_round_trip) {
  char buf[21];
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 100000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t id = (x >> (x % 64)) & (uint64_t)INT64_MAX;
    size_t n = chat_message_id_format(id, buf);
    cr_assert_gt(n, 0);
    cr_assert_eq(strlen(buf), n);
    uint64_t back;
    cr_assert_eq(chat_message_id_parse(buf, n, &back), CHAT_OK);
    cr_assert_eq(back, id);
  }
}

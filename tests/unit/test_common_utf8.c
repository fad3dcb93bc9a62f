/* lib/common/utf8.c: strict RFC 3629 validation and encoding. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/utf8.h"

/* An independent, obviously-correct reference: decode generically, then
 * check the rules one by one. Returns the sequence length or 0. */
static size_t ref_seq(const unsigned char *p, size_t avail) {
  unsigned c = p[0];
  size_t n;
  uint32_t cp, min;
  if (c < 0x80)
    return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1F;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0F;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (avail < n)
    return 0;
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    cp = cp << 6 | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

static bool ref_valid(const unsigned char *p, size_t len) {
  size_t i = 0;
  while (i < len) {
    size_t n = ref_seq(p + i, len - i);
    if (!n)
      return false;
    i += n;
  }
  return true;
}

/* Validate from an exact-size heap copy so ASan catches any overread. */
static bool valid(const char *s, size_t len) {
  char *copy = malloc(len ? len : 1);
  memcpy(copy, s, len);
  bool ok = chat__utf8_valid(copy, len);
  free(copy);
  return ok;
}

#define V(lit) valid(lit, sizeof(lit) - 1)

Test(utf8, accepts_ascii_and_empty) {
  cr_assert(chat__utf8_valid(NULL, 0));
  cr_assert(V(""));
  cr_assert(V("hello, world"));
  cr_assert(V("\x00"), "U+0000 is valid UTF-8");
  cr_assert(V("a\x00z\x7f"));
}

Test(utf8, accepts_boundaries_of_each_length) {
  cr_assert(V("\xC2\x80"), "U+0080");
  cr_assert(V("\xDF\xBF"), "U+07FF");
  cr_assert(V("\xE0\xA0\x80"), "U+0800");
  cr_assert(V("\xED\x9F\xBF"), "U+D7FF, just below the surrogates");
  cr_assert(V("\xEE\x80\x80"), "U+E000, just above the surrogates");
  cr_assert(V("\xEF\xBF\xBF"), "U+FFFF");
  cr_assert(V("\xF0\x90\x80\x80"), "U+10000");
  cr_assert(V("\xF4\x8F\xBF\xBF"), "U+10FFFF");
  cr_assert(V("\xE2\x80\xA8\xE2\x80\xA9"), "U+2028 U+2029");
  cr_assert(V("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80"));
}

Test(utf8, rejects_overlong_forms) {
  cr_assert(!V("\xC0\x80"), "overlong U+0000 (2 bytes)");
  cr_assert(!V("\xC0\xAF"), "overlong '/'");
  cr_assert(!V("\xC1\xBF"), "overlong U+007F");
  cr_assert(!V("\xE0\x80\x80"), "overlong U+0000 (3 bytes)");
  cr_assert(!V("\xE0\x9F\xBF"), "overlong U+07FF (3 bytes)");
  cr_assert(!V("\xF0\x80\x80\x80"), "overlong U+0000 (4 bytes)");
  cr_assert(!V("\xF0\x8F\xBF\xBF"), "overlong U+FFFF (4 bytes)");
  cr_assert(!V("\xF8\x88\x80\x80\x80"), "5-byte form");
  cr_assert(!V("\xFC\x84\x80\x80\x80\x80"), "6-byte form");
}

Test(utf8, rejects_surrogates) {
  cr_assert(!V("\xED\xA0\x80"), "U+D800");
  cr_assert(!V("\xED\xAD\xBF"), "U+DB7F");
  cr_assert(!V("\xED\xB0\x80"), "U+DC00");
  cr_assert(!V("\xED\xBF\xBF"), "U+DFFF");
  cr_assert(!V("\xED\xA0\xBD\xED\xB8\x80"), "CESU-8 pair for U+1F600");
}

Test(utf8, rejects_above_10ffff) {
  cr_assert(!V("\xF4\x90\x80\x80"), "U+110000");
  cr_assert(!V("\xF5\x80\x80\x80"));
  cr_assert(!V("\xF7\xBF\xBF\xBF"));
  cr_assert(!V("\xFE"));
  cr_assert(!V("\xFF"));
}

Test(utf8, rejects_truncated_and_stray) {
  cr_assert(!V("\xC2"));
  cr_assert(!V("\xE0\xA0"));
  cr_assert(!V("\xE2\x82"));
  cr_assert(!V("\xF0\x90\x80"));
  cr_assert(!V("\xF4\x8F\xBF"));
  cr_assert(!V("\x80"), "lone continuation");
  cr_assert(!V("\xBF"));
  cr_assert(!V("a\x80z"));
  cr_assert(!V("\xC2\x41"), "continuation replaced by ASCII");
  cr_assert(!V("\xE2\x82\x41"));
  cr_assert(!V("\xF0\x90\x41\x80"));
  cr_assert(!V("\xC3\xA9\xA9"), "one continuation too many");
}

Test(utf8, prefix_is_offset_of_first_bad_byte) {
  cr_assert_eq(chat__utf8_valid_prefix("abc\xFF" "def", 7), 3);
  cr_assert_eq(chat__utf8_valid_prefix("ab\xE2\x82", 4), 2);
  cr_assert_eq(chat__utf8_valid_prefix("\xC3\xA9\xC0\x80", 4), 2);
  cr_assert_eq(chat__utf8_valid_prefix("\xC3\xA9", 2), 2);
  cr_assert_eq(chat__utf8_valid_prefix("", 0), 0);
}

/* The 8-byte ASCII path must not skip a bad byte at any alignment, nor a
 * sequence straddling a word boundary. */
Test(utf8, every_position_and_length) {
  char buf[80];
  for (size_t len = 1; len <= 70; len++) {
    for (size_t pos = 0; pos < len; pos++) {
      memset(buf, 'a', len);
      buf[pos] = (char)0xFF;
      cr_assert(!valid(buf, len), "len %zu pos %zu", len, pos);
      cr_assert_eq(chat__utf8_valid_prefix(buf, len), pos);
      memset(buf, 'a', len);
      if (pos + 4 <= len) {
        memcpy(buf + pos, "\xF0\x9F\x98\x80", 4);
        cr_assert(valid(buf, len), "len %zu pos %zu", len, pos);
        cr_assert(!valid(buf, pos + 3), "truncated at the end");
      }
    }
  }
}

/* Every sequence of one to three bytes, against the reference. */
Test(utf8, exhaustive_up_to_three_bytes, .timeout = 120) {
  unsigned char b[3];
  for (unsigned x = 0; x < 0x100; x++) {
    b[0] = (unsigned char)x;
    cr_assert_eq(chat__utf8_valid((char *)b, 1), ref_valid(b, 1), "%02x", x);
    for (unsigned y = 0; y < 0x100; y++) {
      b[1] = (unsigned char)y;
      cr_assert_eq(chat__utf8_valid((char *)b, 2), ref_valid(b, 2));
      if (x < 0xE0 || x > 0xEF)
        continue; /* 3-byte leads only; others are covered by the above */
      for (unsigned z = 0; z < 0x100; z++) {
        b[2] = (unsigned char)z;
        if (chat__utf8_valid((char *)b, 3) != ref_valid(b, 3))
          cr_assert_fail("%02x %02x %02x", x, y, z);
      }
    }
  }
}

Test(utf8, four_byte_leads_against_reference) {
  unsigned char b[4];
  for (unsigned x = 0xF0; x < 0x100; x++)
    for (unsigned y = 0; y < 0x100; y++)
      for (unsigned z = 0x70; z < 0xC8; z += 0x11)
        for (unsigned w = 0x70; w < 0xC8; w += 0x13) {
          b[0] = (unsigned char)x;
          b[1] = (unsigned char)y;
          b[2] = (unsigned char)z;
          b[3] = (unsigned char)w;
          if (chat__utf8_valid((char *)b, 4) != ref_valid(b, 4))
            cr_assert_fail("%02x %02x %02x %02x", x, y, z, w);
        }
}

Test(utf8, random_strings_against_reference) {
  srand(12345);
  unsigned char buf[64];
  for (int i = 0; i < 200000; i++) {
    size_t len = (size_t)rand() % sizeof buf;
    for (size_t k = 0; k < len; k++) {
      int r = rand();
      /* mostly ASCII and plausible lead/continuation bytes */
      buf[k] = (unsigned char)(r % 4 == 0 ? 0x80 + (r >> 4) % 0x80
                                          : (r % 4 == 1 ? 0xC0 + (r >> 4) % 0x40
                                                        : (r >> 4) % 0x80));
    }
    cr_assert_eq(chat__utf8_valid((char *)buf, len), ref_valid(buf, len));
  }
}

Test(utf8, encode_every_scalar_value_round_trips) {
  char out[4];
  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    if (cp == 0xD800)
      cp = 0xE000;
    size_t n = chat__utf8_encode(cp, out);
    size_t want = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (n != want || !chat__utf8_valid(out, n) ||
        ref_seq((unsigned char *)out, n) != n)
      cr_assert_fail("U+%04X", (unsigned)cp);
  }
  cr_assert_eq(chat__utf8_encode(0x10FFFF, out), 4);
  cr_assert_eq(memcmp(out, "\xF4\x8F\xBF\xBF", 4), 0);
  cr_assert_eq(chat__utf8_encode(0xE9, out), 2);
  cr_assert_eq(memcmp(out, "\xC3\xA9", 2), 0);
}

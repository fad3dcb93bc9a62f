/* lib/transport/epoll/sha1.c: SHA-1 against the RFC 3174 test vectors,
 * base64 against RFC 4648's, and the RFC 6455 accept key. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "transport/epoll/sha1.h"

static void hex(const uint8_t *d, char *out) {
  for (int i = 0; i < CHAT__SHA1_LEN; i++)
    sprintf(out + 2 * i, "%02X", d[i]);
}

/* RFC 3174 section 7.3: each test string hashed `repeat` times over. */
static void check(const char *s, int repeat, const char *want) {
  chat__sha1 c;
  uint8_t d[CHAT__SHA1_LEN];
  char got[41];
  chat__sha1_init(&c);
  for (int i = 0; i < repeat; i++)
    chat__sha1_update(&c, s, strlen(s));
  chat__sha1_final(&c, d);
  hex(d, got);
  cr_assert_str_eq(got, want, "%s x%d", s, repeat);
}

Test(sha1, rfc3174_vectors) {
  check("abc", 1, "A9993E364706816ABA3E25717850C26C9CD0D89D");
  check("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
        "84983E441C3BD26EBAAE4AA1F95129E5E54670F1");
  check("a", 1000000, "34AA973CD4C4DAA4F61EEB2BDBAD27316534016F");
  check("01234567012345670123456701234567"
        "01234567012345670123456701234567",
        10, "DEA356A2CDDD90C7A7ECEDC5EBB563934F460452");
}

Test(sha1, empty_and_block_edges) {
  check("", 1, "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709");
  /* 55, 56 and 64 bytes straddle the padding's block boundary; compared
   * with the same input hashed in one piece and byte by byte. */
  for (size_t n = 50; n <= 130; n++) {
    char buf[200];
    memset(buf, 'x', n);
    chat__sha1 a, b;
    uint8_t da[20], db[20];
    chat__sha1_init(&a);
    chat__sha1_update(&a, buf, n);
    chat__sha1_final(&a, da);
    chat__sha1_init(&b);
    for (size_t i = 0; i < n; i++)
      chat__sha1_update(&b, buf + i, 1);
    chat__sha1_final(&b, db);
    cr_assert_eq(memcmp(da, db, 20), 0, "n=%zu", n);
  }
  /* A known 64-byte value (one full block plus a padding block). */
  check("0123456701234567012345670123456701234567012345670123456701234567",
        1, "E0C094E867EF46C350EF54A7F59DD60BED92AE83");
}

Test(sha1, base64_rfc4648_vectors) {
  static const struct {
    const char *in, *out;
  } v[] = {{"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},
           {"foo", "Zm9v"},   {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
           {"foobar", "Zm9vYmFy"}};
  for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
    char out[32];
    size_t n = chat__base64((const uint8_t *)v[i].in, strlen(v[i].in), out);
    cr_assert_str_eq(out, v[i].out);
    cr_assert_eq(n, strlen(v[i].out));
  }
}

Test(sha1, websocket_accept_rfc6455_example) {
  char out[CHAT__WS_ACCEPT_LEN + 1];
  chat__ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
  cr_assert_str_eq(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

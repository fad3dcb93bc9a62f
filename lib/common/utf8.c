/* Strict UTF-8 validation (RFC 3629, Unicode table 3-7). It runs over every
 * frame, and frames are mostly ASCII, so ASCII is checked eight bytes at a
 * time. */
#include "utf8.h"

#include <string.h>

#define HIGH_BITS 0x8080808080808080ull

static bool cont(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

/* Length of the well-formed sequence starting at p (lead byte >= 0x80), or
 * 0 when it is overlong, a surrogate, above U+10FFFF or truncated. */
static size_t seq_len(const unsigned char *p, size_t avail) {
  unsigned char c = p[0];
  if (c < 0xC2) /* a continuation byte, or C0/C1 (overlong 2-byte) */
    return 0;
  if (c < 0xE0)
    return avail >= 2 && cont(p[1]) ? 2 : 0;
  if (c < 0xF0) {
    /* E0 needs A0.. to not be overlong; ED stops at 9F before surrogates */
    unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
    unsigned char hi = c == 0xED ? 0x9F : 0xBF;
    if (avail < 3 || p[1] < lo || p[1] > hi || !cont(p[2]))
      return 0;
    return 3;
  }
  if (c < 0xF5) {
    /* F0 needs 90.. to not be overlong; F4 stops at 8F (U+10FFFF) */
    unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
    unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;
    if (avail < 4 || p[1] < lo || p[1] > hi || !cont(p[2]) || !cont(p[3]))
      return 0;
    return 4;
  }
  return 0;
}

size_t chat__utf8_valid_prefix(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  const unsigned char *end = p + len;
  while (p < end) {
    if (*p < 0x80) {
      while (end - p >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v & HIGH_BITS)
          break;
        p += 8;
      }
      while (p < end && *p < 0x80)
        p++;
      continue;
    }
    size_t n = seq_len(p, (size_t)(end - p));
    if (!n)
      return (size_t)(p - (const unsigned char *)s);
    p += n;
  }
  return len;
}

bool chat__utf8_valid(const char *s, size_t len) {
  return chat__utf8_valid_prefix(s, len) == len;
}

size_t chat__utf8_encode(uint32_t cp, char *out) {
  unsigned char *o = (unsigned char *)out;
  if (cp < 0x80) {
    o[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (unsigned char)(0xC0 | (cp >> 6));
    o[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xE0 | (cp >> 12));
    o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (unsigned char)(0xF0 | (cp >> 18));
  o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  o[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* SHA-1 as RFC 3174 section 6.1 describes it (the method with the 80-word
 * schedule), base64 as RFC 4648 section 4, and the WebSocket accept key. */
#include <string.h>

#include "transport/epoll/sha1.h"

static uint32_t rol(uint32_t x, unsigned n) {
  return (x << n) | (x >> (32u - n));
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

static void block(chat__sha1 *s, const uint8_t *p) {
  uint32_t w[80];
  for (int t = 0; t < 16; t++)
    w[t] = be32(p + 4 * t);
  for (int t = 16; t < 80; t++)
    w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
  uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
  for (int t = 0; t < 80; t++) {
    uint32_t f, k;
    if (t < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999u;
    } else if (t < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1u;
    } else if (t < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDCu;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6u;
    }
    uint32_t tmp = rol(a, 5) + f + e + k + w[t];
    e = d;
    d = c;
    c = rol(b, 30);
    b = a;
    a = tmp;
  }
  s->h[0] += a;
  s->h[1] += b;
  s->h[2] += c;
  s->h[3] += d;
  s->h[4] += e;
}

void chat__sha1_init(chat__sha1 *s) {
  s->h[0] = 0x67452301u;
  s->h[1] = 0xEFCDAB89u;
  s->h[2] = 0x98BADCFEu;
  s->h[3] = 0x10325476u;
  s->h[4] = 0xC3D2E1F0u;
  s->total = 0;
  s->fill = 0;
}

void chat__sha1_update(chat__sha1 *s, const void *data, size_t len) {
  const uint8_t *p = data;
  s->total += len;
  if (s->fill) {
    size_t take = 64 - s->fill < len ? 64 - s->fill : len;
    memcpy(s->block + s->fill, p, take);
    s->fill += take;
    p += take;
    len -= take;
    if (s->fill < 64)
      return;
    block(s, s->block);
    s->fill = 0;
  }
  for (; len >= 64; p += 64, len -= 64)
    block(s, p);
  if (len) {
    memcpy(s->block, p, len);
    s->fill = len;
  }
}

void chat__sha1_final(chat__sha1 *s, uint8_t out[CHAT__SHA1_LEN]) {
  uint64_t bits = s->total * 8u;
  /* 0x80, zeros up to 56 mod 64, then the length in bits, big-endian. */
  uint8_t pad[72];
  size_t n = (s->fill < 56 ? 56 : 120) - s->fill;
  memset(pad, 0, sizeof pad);
  pad[0] = 0x80;
  for (int i = 0; i < 8; i++)
    pad[n + (size_t)i] = (uint8_t)(bits >> (56 - 8 * i));
  uint64_t keep = s->total;
  chat__sha1_update(s, pad, n + 8);
  s->total = keep;
  for (int i = 0; i < 5; i++) {
    out[4 * i] = (uint8_t)(s->h[i] >> 24);
    out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
    out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
    out[4 * i + 3] = (uint8_t)s->h[i];
  }
}

size_t chat__base64(const uint8_t *in, size_t n, char *out) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t k = 0;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[k++] = tab[v >> 18];
    out[k++] = tab[(v >> 12) & 63];
    out[k++] = tab[(v >> 6) & 63];
    out[k++] = tab[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[k++] = tab[v >> 18];
    out[k++] = tab[(v >> 12) & 63];
    out[k++] = '=';
    out[k++] = '=';
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[k++] = tab[v >> 18];
    out[k++] = tab[(v >> 12) & 63];
    out[k++] = tab[(v >> 6) & 63];
    out[k++] = '=';
  }
  out[k] = 0;
  return k;
}

void chat__ws_accept(const char *key, size_t key_len,
                     char out[CHAT__WS_ACCEPT_LEN + 1]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  chat__sha1 s;
  uint8_t d[CHAT__SHA1_LEN];
  chat__sha1_init(&s);
  chat__sha1_update(&s, key, key_len);
  chat__sha1_update(&s, guid, sizeof guid - 1);
  chat__sha1_final(&s, d);
  chat__base64(d, sizeof d, out);
}

/* SHA-1 (RFC 3174) and base64 (RFC 4648), for one purpose: the
 * Sec-WebSocket-Accept value of RFC 6455 section 4.2.2. SHA-1 is broken
 * for collision resistance; the handshake uses it only as a fixed
 * transform that proves the server read the request, so that is fine
 * here and nowhere else. */
#ifndef CHAT__EPOLL_SHA1_H
#define CHAT__EPOLL_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define CHAT__SHA1_LEN 20

typedef struct chat__sha1 {
  uint32_t h[5];
  uint64_t total;    /* bytes hashed so far */
  uint8_t block[64]; /* the partial block */
  size_t fill;
} chat__sha1;

void chat__sha1_init(chat__sha1 *s);
void chat__sha1_update(chat__sha1 *s, const void *data, size_t len);
void chat__sha1_final(chat__sha1 *s, uint8_t out[CHAT__SHA1_LEN]);

/* Standard base64 with padding of in[0..n) into out, NUL-terminated;
 * out needs 4 * ((n + 2) / 3) + 1 bytes. Returns the length written. */
size_t chat__base64(const uint8_t *in, size_t n, char *out);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key +
 * GUID)), 28 characters plus the NUL. */
#define CHAT__WS_ACCEPT_LEN 28
void chat__ws_accept(const char *key, size_t key_len,
                     char out[CHAT__WS_ACCEPT_LEN + 1]);

#endif

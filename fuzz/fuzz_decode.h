/* Shared body of the two decoder fuzz targets: decode; when that succeeds,
 * encode, decode the encoding and encode again, and require the two
 * encodings to be byte-identical (the codec's canonical form is a fixed
 * point). Any crash, sanitizer report or mismatch is a finding. */
#ifndef CHAT_FUZZ_DECODE_H
#define CHAT_FUZZ_DECODE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <chat/frame.h>

static int fuzz_decode(chat_direction dir, const uint8_t *data, size_t size) {
  static chat_codec *a, *b;
  if (!a && (chat_codec_new(&a, NULL, NULL, NULL) != CHAT_OK ||
             chat_codec_new(&b, NULL, NULL, NULL) != CHAT_OK))
    abort();
  const chat_frame *f;
  chat_decode_error err;
  chat_err rc = chat_codec_decode(a, dir, (const char *)data, size, &f, &err);
  if (rc != CHAT_OK) {
    /* A refusal must be fully described, for the error frame. */
    if (f || err.err != rc || !err.message || !err.message[0])
      abort();
    if (chat_wire_error_str(chat_wire_error_from_err(rc)) == NULL)
      abort();
    return 0;
  }
  const char *j1;
  size_t n1;
  rc = chat_codec_encode(a, f, &j1, &n1);
  /* Escaping can grow a frame (U+2028 becomes \u2028), so only the size
   * limit may refuse what was decoded. */
  if (rc == CHAT_ERR_FRAME_TOO_LARGE)
    return 0;
  if (rc != CHAT_OK)
    abort();
  const chat_frame *g;
  if (chat_codec_decode(b, dir, j1, n1, &g, NULL) != CHAT_OK)
    abort();
  if (g->type != f->type)
    abort();
  const char *j2;
  size_t n2;
  if (chat_codec_encode(b, g, &j2, &n2) != CHAT_OK)
    abort();
  if (n1 != n2 || memcmp(j1, j2, n1) != 0)
    abort();
  return 0;
}

#endif

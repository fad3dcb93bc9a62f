/* Fuzz target: WebSocket framing for a server
 * (lib/transport/epoll/ws_frame.c).
 *
 * Byte 0 picks how the input is cut into reads (1..64 bytes), byte 1 the
 * message size limit; the rest is what a client sent. The parser runs
 * twice over copies, once with the input whole and once cut into reads,
 * and the two event streams must agree: the same messages (joined), the
 * same control frames, the same error at the end. Close payloads go
 * through chat__ws_close_check. Nothing may be read or written outside the
 * input, and an ERROR ends the stream. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transport/epoll/ws_frame.h"

typedef struct trace {
  uint8_t *bytes; /* kind, opcode, then data or code, per event */
  size_t len, cap;
} trace;

static void put(trace *t, const void *p, size_t n) {
  if (t->len + n > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 1024;
    while (cap < t->len + n)
      cap *= 2;
    t->bytes = realloc(t->bytes, cap);
    if (!t->bytes)
      abort();
    t->cap = cap;
  }
  if (n)
    memcpy(t->bytes + t->len, p, n);
  t->len += n;
}

/* Messages are recorded whole (chunks joined), so both runs compare. */
static void run(uint8_t *buf, size_t len, size_t step, uint64_t max,
                trace *t) {
  chat__ws_parser p;
  chat__ws_parser_init(&p);
  trace msg = {0};
  bool open = false;
  for (size_t off = 0; off < len;) {
    size_t piece = len - off < step ? len - off : step;
    uint8_t *b = buf + off;
    size_t left = piece;
    for (;;) {
      chat__ws_event ev;
      size_t used = chat__ws_parse(&p, b, left, max, &ev);
      if (used > left)
        abort();
      b += used;
      left -= used;
      if (ev.kind == CHAT__WS_EV_MORE) {
        if (left)
          abort();
        break;
      }
      if (ev.kind == CHAT__WS_EV_ERROR) {
        uint8_t r[3] = {'E', (uint8_t)(ev.code >> 8), (uint8_t)ev.code};
        if (ev.code != 1002 && ev.code != 1009)
          abort();
        put(t, r, 3);
        free(msg.bytes);
        return;
      }
      if (ev.kind == CHAT__WS_EV_CONTROL) {
        if (ev.len > 125)
          abort();
        uint8_t r[3] = {'C', ev.opcode, (uint8_t)ev.len};
        put(t, r, 3);
        put(t, ev.data, ev.len);
        if (ev.opcode == CHAT__WS_CLOSE) {
          uint16_t code = 0;
          uint16_t bad = chat__ws_close_check(ev.data, ev.len, &code);
          if (bad && bad != 1002 && bad != 1007)
            abort();
          if (!bad && code < 1000)
            abort();
        }
        continue;
      }
      /* DATA */
      if (ev.data && (ev.data < buf || ev.data + ev.len > buf + len))
        abort();
      if (!ev.data && ev.len)
        abort();
      if (ev.first != !open)
        abort();
      if (ev.first)
        msg.len = 0;
      put(&msg, ev.data, ev.len);
      if (msg.len > max)
        abort();
      open = !ev.last;
      if (ev.last) {
        uint8_t r[2] = {'D', ev.opcode};
        put(t, r, 2);
        uint32_t n = (uint32_t)msg.len;
        put(t, &n, sizeof n);
        put(t, msg.bytes, msg.len);
      }
    }
    off += piece;
  }
  /* Unfinished at the end: say so (both runs end in the same state). */
  uint8_t r[2] = {'U', chat__ws_parser_idle(&p) ? 0 : 1};
  put(t, r, 2);
  free(msg.bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  size_t step = (size_t)(data[0] % 64) + 1;
  static const uint64_t maxes[] = {0, 1, 16, 125, 126, 4096, 65536,
                                   131072, UINT64_MAX};
  uint64_t max = maxes[data[1] % (sizeof maxes / sizeof *maxes)];
  size_t len = size - 2;
  /* Exact-size copies: the parser unmasks in place. */
  uint8_t *a = malloc(len ? len : 1), *b = malloc(len ? len : 1);
  memcpy(a, data + 2, len);
  memcpy(b, data + 2, len);
  trace ta = {0}, tb = {0};
  run(a, len, len ? len : 1, max, &ta);
  run(b, len, step, max, &tb);
  if (ta.len != tb.len || memcmp(ta.bytes, tb.bytes, ta.len) != 0)
    abort();
  free(ta.bytes);
  free(tb.bytes);
  free(a);
  free(b);
  return 0;
}

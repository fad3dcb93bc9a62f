/* lib/transport/epoll/ws_frame.c: RFC 6455 framing for a server, fed
 * whole and byte by byte. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "transport/epoll/ws_frame.h"

/* A client frame: b0 as given (FIN/RSV/opcode), masked unless mask is
 * NULL. Returns its length. */
static size_t frame(uint8_t *out, uint8_t b0, const void *payload, size_t n,
                    const uint8_t *mask) {
  size_t k = 0;
  out[k++] = b0;
  uint8_t m = mask ? 0x80 : 0;
  if (n < 126) {
    out[k++] = (uint8_t)(m | n);
  } else if (n < 65536) {
    out[k++] = m | 126;
    out[k++] = (uint8_t)(n >> 8);
    out[k++] = (uint8_t)n;
  } else {
    out[k++] = m | 127;
    for (int i = 7; i >= 0; i--)
      out[k++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  if (mask) {
    memcpy(out + k, mask, 4);
    k += 4;
  }
  for (size_t i = 0; i < n; i++)
    out[k + i] = ((const uint8_t *)payload)[i] ^ (mask ? mask[i & 3] : 0);
  return k + n;
}

static const uint8_t K[4] = {0x37, 0xfa, 0x21, 0x3d};

typedef struct ev_rec {
  int kind;
  uint8_t opcode;
  bool first, last;
  char data[256];
  size_t len;
  uint16_t code;
} ev_rec;

/* Parse buf fed `step` bytes at a time; data chunks of one message are
 * joined into one record (first/last from its ends). */
static size_t run(uint8_t *buf, size_t len, size_t step, uint64_t max,
                  ev_rec *out, size_t cap) {
  chat__ws_parser p;
  chat__ws_parser_init(&p);
  size_t n = 0;
  bool open_msg = false;
  size_t msg_at = 0; /* the record of the message being joined */
  for (size_t off = 0; off < len;) {
    size_t piece = len - off < step ? len - off : step;
    uint8_t *b = buf + off;
    size_t left = piece;
    for (;;) {
      chat__ws_event ev;
      size_t used = chat__ws_parse(&p, b, left, max, &ev);
      b += used;
      left -= used;
      if (ev.kind == CHAT__WS_EV_MORE) {
        cr_assert_eq(left, 0);
        break;
      }
      if (ev.kind == CHAT__WS_EV_DATA) {
        if (ev.len == 0)
          cr_assert_null(ev.data);
        if (open_msg) {
          ev_rec *r = &out[msg_at];
          cr_assert(!ev.first);
          memcpy(r->data + r->len, ev.data ? (char *)ev.data : "", ev.len);
          r->len += ev.len;
          r->last = ev.last;
        } else {
          cr_assert_lt(n, cap);
          msg_at = n;
          ev_rec *r = &out[n++];
          memset(r, 0, sizeof *r);
          r->kind = ev.kind;
          r->opcode = ev.opcode;
          r->first = ev.first;
          r->last = ev.last;
          memcpy(r->data, ev.data ? (char *)ev.data : "", ev.len);
          r->len = ev.len;
        }
        open_msg = !ev.last;
        continue;
      }
      cr_assert_lt(n, cap);
      ev_rec *r = &out[n++];
      memset(r, 0, sizeof *r);
      r->kind = ev.kind;
      r->opcode = ev.opcode;
      r->code = ev.code;
      if (ev.kind == CHAT__WS_EV_CONTROL) {
        memcpy(r->data, ev.data, ev.len);
        r->len = ev.len;
      }
      if (ev.kind == CHAT__WS_EV_ERROR)
        return n;
    }
    off += piece;
  }
  return n;
}

Test(ws_frame, one_masked_text_frame_any_split) {
  uint8_t buf[64];
  size_t len = frame(buf, 0x81, "hello", 5, K);
  for (size_t step = 1; step <= len; step++) {
    uint8_t copy[64];
    memcpy(copy, buf, len);
    ev_rec ev[4];
    size_t n = run(copy, len, step, 1 << 20, ev, 4);
    cr_assert_eq(n, 1, "step %zu", step);
    cr_assert_eq(ev[0].kind, CHAT__WS_EV_DATA);
    cr_assert_eq(ev[0].opcode, CHAT__WS_TEXT);
    cr_assert(ev[0].first && ev[0].last);
    cr_assert_eq(ev[0].len, 5);
    cr_assert_eq(memcmp(ev[0].data, "hello", 5), 0);
  }
}

Test(ws_frame, whole_frame_in_one_buffer_is_one_event) {
  uint8_t buf[64];
  size_t len = frame(buf, 0x81, "hello", 5, K);
  chat__ws_parser p;
  chat__ws_parser_init(&p);
  chat__ws_event ev;
  size_t used = chat__ws_parse(&p, buf, len, 1 << 20, &ev);
  cr_assert_eq(used, len);
  cr_assert(ev.first && ev.last);
  /* Unmasked in place: the payload is the input's own bytes. */
  cr_assert_eq(ev.data, buf + len - 5);
  cr_assert(chat__ws_parser_idle(&p));
}

Test(ws_frame, unmasked_client_frame_is_1002) {
  uint8_t buf[64];
  size_t len = frame(buf, 0x81, "hi", 2, NULL);
  ev_rec ev[2];
  size_t n = run(buf, len, 1, 1 << 20, ev, 2);
  cr_assert_eq(n, 1);
  cr_assert_eq(ev[0].kind, CHAT__WS_EV_ERROR);
  cr_assert_eq(ev[0].code, 1002);
}

Test(ws_frame, protocol_errors_are_1002) {
  struct {
    uint8_t b0;
    size_t plen;
  } bad[] = {
      {0xC1, 1}, /* RSV1 (no extension was negotiated) */
      {0xA1, 1}, /* RSV2 */
      {0x91, 1}, /* RSV3 */
      {0x83, 1}, /* reserved data opcode */
      {0x8B, 1}, /* reserved control opcode */
      {0x09, 1}, /* a fragmented ping */
      {0x89, 126}, /* a ping over 125 bytes */
      {0x80, 1}, /* a continuation with no message */
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    uint8_t buf[256], pl[200];
    memset(pl, 'x', sizeof pl);
    size_t len = frame(buf, bad[i].b0, pl, bad[i].plen, K);
    ev_rec ev[2];
    size_t n = run(buf, len, len, 1 << 20, ev, 2);
    cr_assert_eq(n, 1, "case %zu", i);
    cr_assert_eq(ev[0].kind, CHAT__WS_EV_ERROR, "case %zu", i);
    cr_assert_eq(ev[0].code, 1002, "case %zu", i);
  }
}

Test(ws_frame, new_message_inside_a_fragmented_one_is_1002) {
  uint8_t buf[64];
  size_t len = frame(buf, 0x01, "ab", 2, K);
  len += frame(buf + len, 0x81, "cd", 2, K);
  ev_rec ev[4];
  size_t n = run(buf, len, len, 1 << 20, ev, 4);
  cr_assert_eq(n, 2);
  cr_assert_eq(ev[1].kind, CHAT__WS_EV_ERROR);
  cr_assert_eq(ev[1].code, 1002);
}

Test(ws_frame, control_frames_between_fragments) {
  uint8_t buf[128];
  size_t len = frame(buf, 0x01, "ab", 2, K);      /* text, not final */
  len += frame(buf + len, 0x89, "p1", 2, K);      /* ping */
  len += frame(buf + len, 0x00, "cd", 2, K);      /* continuation */
  len += frame(buf + len, 0x8A, "", 0, K);        /* pong, empty */
  len += frame(buf + len, 0x80, "ef", 2, K);      /* final continuation */
  for (size_t step = 1; step <= len; step++) {
    uint8_t copy[128];
    memcpy(copy, buf, len);
    ev_rec ev[8];
    size_t n = run(copy, len, step, 1 << 20, ev, 8);
    /* The data record collects the message; controls come in between. */
    size_t data = 0, pings = 0, pongs = 0;
    for (size_t i = 0; i < n; i++) {
      if (ev[i].kind == CHAT__WS_EV_DATA) {
        data++;
        cr_assert_eq(ev[i].len, 6);
        cr_assert_eq(memcmp(ev[i].data, "abcdef", 6), 0);
        cr_assert(ev[i].first && ev[i].last);
      } else if (ev[i].opcode == CHAT__WS_PING) {
        pings++;
        cr_assert_eq(ev[i].len, 2);
        cr_assert_eq(memcmp(ev[i].data, "p1", 2), 0);
      } else if (ev[i].opcode == CHAT__WS_PONG) {
        pongs++;
        cr_assert_eq(ev[i].len, 0);
      }
    }
    cr_assert_eq(data + pings + pongs, n, "step %zu", step);
    cr_assert_eq(data, 1);
    cr_assert_eq(pings, 1);
    cr_assert_eq(pongs, 1);
  }
}

Test(ws_frame, empty_first_fragment_then_continuation) {
  uint8_t buf[64];
  size_t len = frame(buf, 0x01, "", 0, K); /* empty, not final */
  len += frame(buf + len, 0x80, "xyz", 3, K);
  chat__ws_parser p;
  chat__ws_parser_init(&p);
  chat__ws_event ev;
  size_t used = chat__ws_parse(&p, buf, len, 1 << 20, &ev);
  cr_assert_eq(ev.kind, CHAT__WS_EV_DATA);
  cr_assert(ev.first && !ev.last);
  cr_assert_eq(ev.len, 0);
  cr_assert_null(ev.data);
  cr_assert(!chat__ws_parser_idle(&p));
  used += chat__ws_parse(&p, buf + used, len - used, 1 << 20, &ev);
  cr_assert_eq(ev.kind, CHAT__WS_EV_DATA);
  cr_assert(!ev.first && ev.last);
  cr_assert_eq(ev.len, 3);
  cr_assert_eq(memcmp(ev.data, "xyz", 3), 0);
  cr_assert_eq(used, len);
  cr_assert(chat__ws_parser_idle(&p));
}

Test(ws_frame, empty_message) {
  uint8_t buf[16];
  size_t len = frame(buf, 0x81, "", 0, K);
  ev_rec ev[2];
  size_t n = run(buf, len, 1, 1 << 20, ev, 2);
  cr_assert_eq(n, 1);
  cr_assert(ev[0].first && ev[0].last);
  cr_assert_eq(ev[0].len, 0);
}

Test(ws_frame, message_size_is_bounded_at_the_header) {
  uint8_t *buf = calloc(1, 70000);
  /* One frame over the limit: refused after its header, before payload. */
  size_t len = frame(buf, 0x81, buf + 30000, 200, K);
  ev_rec ev[4];
  chat__ws_parser p;
  chat__ws_parser_init(&p);
  chat__ws_event e;
  size_t used = chat__ws_parse(&p, buf, 8, 100, &e); /* header only */
  cr_assert_eq(e.kind, CHAT__WS_EV_ERROR);
  cr_assert_eq(e.code, 1009);
  cr_assert_leq(used, 8);
  /* Fragments adding up past it. */
  len = frame(buf, 0x01, "0123456789", 10, K);
  len += frame(buf + len, 0x80, "0123456789", 10, K);
  size_t n = run(buf, len, len, 15, ev, 4);
  cr_assert_eq(ev[n - 1].kind, CHAT__WS_EV_ERROR);
  cr_assert_eq(ev[n - 1].code, 1009);
  /* Exactly at the limit is fine. */
  len = frame(buf, 0x01, "0123456789", 10, K);
  len += frame(buf + len, 0x80, "01234", 5, K);
  n = run(buf, len, len, 15, ev, 4);
  cr_assert_eq(n, 1);
  cr_assert_eq(ev[0].kind, CHAT__WS_EV_DATA);
  cr_assert_eq(ev[0].len, 15);
  free(buf);
}

Test(ws_frame, extended_lengths) {
  size_t sizes[] = {125, 126, 65535, 65536, 70000};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    size_t n = sizes[i];
    uint8_t *pl = malloc(n), *buf = malloc(n + 14);
    for (size_t k = 0; k < n; k++)
      pl[k] = (uint8_t)(k * 7);
    size_t len = frame(buf, 0x82, pl, n, K);
    chat__ws_parser p;
    chat__ws_parser_init(&p);
    chat__ws_event ev;
    size_t used = chat__ws_parse(&p, buf, len, 1 << 20, &ev);
    cr_assert_eq(used, len);
    cr_assert_eq(ev.opcode, CHAT__WS_BINARY);
    cr_assert_eq(ev.len, n);
    cr_assert_eq(memcmp(ev.data, pl, n), 0, "size %zu", n);
    /* And the server's own header for that length. */
    uint8_t h[10];
    size_t hl = chat__ws_header(h, CHAT__WS_TEXT, n);
    cr_assert_eq(hl, n < 126 ? 2u : n < 65536 ? 4u : 10u);
    cr_assert_eq(h[0], 0x81);
    cr_assert_eq(h[1] & 0x80, 0); /* servers never mask */
    free(pl);
    free(buf);
  }
  /* A 64-bit length with the top bit set. */
  uint8_t bad[14] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
  ev_rec ev[2];
  size_t n = run(bad, sizeof bad, 14, UINT64_MAX, ev, 2);
  cr_assert_eq(n, 1);
  cr_assert_eq(ev[0].code, 1002);
}

Test(ws_frame, close_payload_checks) {
  uint16_t code = 0;
  cr_assert_eq(chat__ws_close_check(NULL, 0, &code), 0);
  cr_assert_eq(code, 1005);
  uint8_t one[1] = {3};
  cr_assert_eq(chat__ws_close_check(one, 1, &code), 1002);
  struct {
    uint16_t c;
    uint16_t want;
  } cases[] = {{1000, 0},    {1001, 0},    {1003, 0},    {1004, 1002},
               {1005, 1002}, {1006, 1002}, {1007, 0},    {1011, 0},
               {1014, 0},    {1015, 1002}, {1016, 1002}, {2999, 1002},
               {3000, 0},    {4999, 0},    {5000, 1002}, {999, 1002},
               {0, 1002}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    uint8_t p[2] = {(uint8_t)(cases[i].c >> 8), (uint8_t)cases[i].c};
    code = 0;
    cr_assert_eq(chat__ws_close_check(p, 2, &code), cases[i].want, "%u",
                 cases[i].c);
    if (!cases[i].want)
      cr_assert_eq(code, cases[i].c);
  }
  uint8_t badutf[] = {0x03, 0xE8, 0xC3, 0x28};
  cr_assert_eq(chat__ws_close_check(badutf, sizeof badutf, &code), 1007);
  uint8_t goodutf[] = {0x03, 0xE8, 0xC3, 0xA9};
  cr_assert_eq(chat__ws_close_check(goodutf, sizeof goodutf, &code), 0);
}

Test(ws_frame, close_payload_fits_and_keeps_utf8_whole) {
  uint8_t out[125];
  size_t n = chat__ws_close_payload(out, 1009, "too big");
  cr_assert_eq(n, 9);
  cr_assert_eq(out[0], 0x03);
  cr_assert_eq(out[1], 0xF1);
  char reason[200];
  /* 122 ASCII bytes then a 2-byte character that would straddle 123. */
  memset(reason, 'r', 122);
  strcpy(reason + 122, "\xC3\xA9 tail");
  n = chat__ws_close_payload(out, 1000, reason);
  cr_assert_eq(n, 2 + 122);
  uint16_t code;
  cr_assert_eq(chat__ws_close_check(out, n, &code), 0);
  cr_assert_eq(code, 1000);
}

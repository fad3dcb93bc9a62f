/* WebSocket framing for a server (see ws_frame.h). Section numbers are
 * RFC 6455's. */
#include <string.h>

#include "common/utf8.h"
#include "transport/epoll/ws_frame.h"

void chat__ws_parser_init(chat__ws_parser *p) { memset(p, 0, sizeof *p); }

bool chat__ws_parser_idle(const chat__ws_parser *p) {
  return p->hlen == 0 && !p->in_payload && p->msg_op == 0;
}

static size_t error(chat__ws_parser *p, chat__ws_event *ev, size_t used,
                    uint16_t code, const char *reason) {
  (void)p;
  ev->kind = CHAT__WS_EV_ERROR;
  ev->code = code;
  ev->reason = reason;
  return used;
}

/* Header bytes this frame needs, from its first two (section 5.2). */
static size_t header_need(const chat__ws_parser *p) {
  if (p->hlen < 2)
    return 2;
  uint8_t l7 = p->hdr[1] & 0x7f;
  return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4; /* + masking key */
}

/* Check the first two header bytes; 0 or a close code. */
static uint16_t check_start(const chat__ws_parser *p, const char **why) {
  uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
  uint8_t op = b0 & 0x0f;
  if (b0 & 0x70) {
    *why = "reserved bits set";
    return 1002;
  }
  if (!(b1 & 0x80)) {
    /* Section 5.1: the server closes on an unmasked client frame. */
    *why = "client frames must be masked";
    return 1002;
  }
  switch (op) {
  case CHAT__WS_CONT:
    if (!p->msg_op) {
      *why = "continuation without a message";
      return 1002;
    }
    break;
  case CHAT__WS_TEXT:
  case CHAT__WS_BINARY:
    if (p->msg_op) {
      *why = "new message inside a fragmented one";
      return 1002;
    }
    break;
  case CHAT__WS_CLOSE:
  case CHAT__WS_PING:
  case CHAT__WS_PONG:
    /* Section 5.5: control frames are never fragmented, at most 125. */
    if (!(b0 & 0x80) || (b1 & 0x7f) > 125) {
      *why = "bad control frame";
      return 1002;
    }
    break;
  default:
    *why = "unknown opcode";
    return 1002;
  }
  return 0;
}

static void end_frame(chat__ws_parser *p) {
  bool data = !(p->opcode & 0x8);
  if (data && p->fin) {
    p->msg_op = 0;
    p->msg_len = 0;
    p->msg_emitted = false;
  }
  p->hlen = 0;
  p->in_payload = false;
  p->ctl_len = 0;
  p->left = 0;
}

static void unmask(chat__ws_parser *p, uint8_t *b, size_t n) {
  size_t m = p->mpos;
  size_t i = 0;
  /* Byte by byte to a mask boundary, then eight at a time. */
  while (i < n && (m & 3)) {
    b[i++] ^= p->mask[m & 3];
    m++;
  }
  if (n - i >= 8) {
    uint8_t k8[8];
    for (int j = 0; j < 8; j++)
      k8[j] = p->mask[j & 3];
    uint64_t k;
    memcpy(&k, k8, 8);
    for (; n - i >= 8; i += 8) {
      uint64_t w;
      memcpy(&w, b + i, 8);
      w ^= k;
      memcpy(b + i, &w, 8);
    }
  }
  for (; i < n; i++, m++)
    b[i] ^= p->mask[m & 3];
  p->mpos = (uint8_t)((p->mpos + n) & 3);
}

size_t chat__ws_parse(chat__ws_parser *p, uint8_t *buf, size_t len,
                      uint64_t max_message, chat__ws_event *ev) {
  memset(ev, 0, sizeof *ev);
  size_t i = 0;
  if (!p->in_payload) {
    for (;;) {
      size_t need = header_need(p);
      if (p->hlen >= need)
        break;
      if (i >= len)
        return i; /* MORE */
      size_t take = need - p->hlen;
      if (take > len - i)
        take = len - i;
      memcpy(p->hdr + p->hlen, buf + i, take);
      p->hlen = (uint8_t)(p->hlen + take);
      i += take;
      if (p->hlen == 2) {
        const char *why = "";
        uint16_t code = check_start(p, &why);
        if (code)
          return error(p, ev, i, code, why);
      }
    }
    uint8_t b0 = p->hdr[0], l7 = p->hdr[1] & 0x7f;
    uint64_t n = l7;
    size_t k = 2;
    if (l7 == 126) {
      n = (uint64_t)p->hdr[2] << 8 | p->hdr[3];
      k = 4;
    } else if (l7 == 127) {
      n = 0;
      for (int j = 0; j < 8; j++)
        n = n << 8 | p->hdr[2 + j];
      k = 10;
      if (n >> 63)
        return error(p, ev, i, 1002, "bad frame length");
    }
    memcpy(p->mask, p->hdr + k, 4);
    p->mpos = 0;
    p->opcode = b0 & 0x0f;
    p->fin = (b0 & 0x80) != 0;
    p->left = n;
    p->ctl_len = 0;
    if (!(p->opcode & 0x8)) {
      if (p->opcode != CHAT__WS_CONT)
        p->msg_op = p->opcode;
      /* The whole message is bounded before any of its payload is held. */
      if (n > max_message || p->msg_len > max_message - n)
        return error(p, ev, i, 1009, "message too large");
      p->msg_len += n;
    }
    p->in_payload = true;
  }

  bool control = (p->opcode & 0x8) != 0;
  if (p->left == 0 || i < len) {
    size_t take = len - i;
    if ((uint64_t)take > p->left)
      take = (size_t)p->left;
    if (take)
      unmask(p, buf + i, take);
    p->left -= take;
    if (control) {
      if (take)
        memcpy(p->ctl + p->ctl_len, buf + i, take);
      p->ctl_len = (uint8_t)(p->ctl_len + take);
      i += take;
      if (p->left)
        return i; /* MORE: the rest of the control frame later */
      ev->kind = CHAT__WS_EV_CONTROL;
      ev->opcode = p->opcode;
      ev->data = p->ctl;
      ev->len = p->ctl_len;
      /* ev->data points into the parser: valid until the next call. */
      p->hlen = 0;
      p->in_payload = false;
      p->left = 0;
      return i;
    }
    ev->kind = CHAT__WS_EV_DATA;
    ev->opcode = p->msg_op;
    ev->first = !p->msg_emitted;
    ev->last = p->fin && p->left == 0;
    ev->data = take ? buf + i : NULL;
    ev->len = take;
    p->msg_emitted = true;
    i += take;
    if (p->left == 0)
      end_frame(p);
    return i;
  }
  return i; /* MORE: payload follows in a later read */
}

size_t chat__ws_header(uint8_t *out, uint8_t opcode, uint64_t len) {
  out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (uint8_t)len;
    return 2;
  }
  if (len < 65536) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; i++)
    out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
  return 10;
}

uint16_t chat__ws_close_check(const uint8_t *p, size_t n, uint16_t *code) {
  if (n == 0) {
    *code = 1005; /* no status code was present */
    return 0;
  }
  if (n == 1)
    return 1002;
  uint16_t c = (uint16_t)(p[0] << 8 | p[1]);
  /* Section 7.4: 1004-1006 and 1015 are never sent; 1000-2999 are the
   * registry's (1012-1014 were registered after the RFC); 3000-4999 are
   * for libraries and applications. */
  bool ok = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
            (c >= 3000 && c <= 4999);
  if (!ok)
    return 1002;
  if (!chat__utf8_valid((const char *)p + 2, n - 2))
    return 1007;
  *code = c;
  return 0;
}

size_t chat__ws_close_payload(uint8_t *out, uint16_t code,
                              const char *reason) {
  out[0] = (uint8_t)(code >> 8);
  out[1] = (uint8_t)code;
  size_t n = reason ? strlen(reason) : 0;
  if (n > 123) {
    n = 123;
    /* Back off to the start of a UTF-8 sequence that fits whole. */
    while (n > 0 && ((unsigned char)reason[n] & 0xc0) == 0x80)
      n--;
  }
  if (n)
    memcpy(out + 2, reason, n);
  return 2 + n;
}

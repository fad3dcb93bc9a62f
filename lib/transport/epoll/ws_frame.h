/* WebSocket framing for a server (RFC 6455 section 5), pure: no sockets,
 * no allocation.
 *
 * The parser is a streaming state machine: it takes whatever bytes a read
 * produced, unmasks payload in place, and reports one event per call: a
 * chunk of a data message, a whole control frame, or a protocol error
 * with the close code to send. It never needs a frame to be contiguous,
 * so a connection keeps no receive buffer: between reads only this small
 * struct survives, and only while a frame or message is unfinished.
 *
 * What it enforces (each a close code for the caller to send):
 *   1002  a client frame without a mask; RSV bits; an unknown opcode; a
 *         control frame that is fragmented or over 125 bytes; a
 *         continuation with no message started; a new data message while
 *         one is unfinished; a 64-bit length with the top bit set
 *   1009  a message whose declared size passes max_message (checked at
 *         each frame header, before any payload is held)
 * Control frames may arrive between the fragments of a message. Binary
 * versus text, UTF-8 and the close payload are the caller's business
 * (chat__ws_close_check helps with the last). */
#ifndef CHAT__EPOLL_WS_FRAME_H
#define CHAT__EPOLL_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
  CHAT__WS_CONT = 0x0,
  CHAT__WS_TEXT = 0x1,
  CHAT__WS_BINARY = 0x2,
  CHAT__WS_CLOSE = 0x8,
  CHAT__WS_PING = 0x9,
  CHAT__WS_PONG = 0xA
};

typedef struct chat__ws_parser {
  uint64_t left;      /* payload bytes left in the current frame */
  uint64_t msg_len;   /* declared bytes of the unfinished message so far */
  uint8_t hdr[14];    /* a frame header arriving in pieces */
  uint8_t hlen;       /* header bytes collected; 0 between frames */
  uint8_t opcode;     /* of the current frame */
  uint8_t msg_op;     /* TEXT or BINARY while a message is unfinished */
  uint8_t mask[4];
  uint8_t mpos;       /* mask offset of the next payload byte */
  bool fin;           /* of the current frame */
  bool in_payload;    /* the header is done, payload bytes follow */
  bool msg_emitted;   /* a chunk of the current message was reported */
  uint8_t ctl_len;    /* control payload collected in ctl */
  uint8_t ctl[125];
} chat__ws_parser;

enum chat__ws_event_kind {
  CHAT__WS_EV_MORE = 0,    /* all input consumed, nothing to report */
  CHAT__WS_EV_DATA = 1,    /* a chunk of a data message */
  CHAT__WS_EV_CONTROL = 2, /* a whole control frame */
  CHAT__WS_EV_ERROR = 3    /* protocol error: close with code */
};

typedef struct chat__ws_event {
  int kind;
  uint8_t opcode;  /* DATA: TEXT or BINARY (the message's);
                      CONTROL: CLOSE, PING or PONG */
  bool first;      /* DATA: the message's first chunk */
  bool last;       /* DATA: the message ends with this chunk */
  uint8_t *data;   /* DATA: unmasked, inside the input (NULL when len 0);
                      CONTROL: the parser's ctl or the input */
  size_t len;
  uint16_t code;   /* ERROR: 1002 or 1009 */
  const char *reason; /* ERROR: static text for the close frame */
} chat__ws_event;

void chat__ws_parser_init(chat__ws_parser *p);

/* True between frames with no message unfinished: nothing to keep. */
bool chat__ws_parser_idle(const chat__ws_parser *p);

/* Consume from buf[0..len) (unmasking it in place) up to the next event.
 * Returns the bytes consumed; *ev says what happened. After an ERROR the
 * parser is spent: close the connection. Zero-length data frames produce
 * DATA events with len 0 (an empty message, or an empty fragment that
 * opens or closes one). */
size_t chat__ws_parse(chat__ws_parser *p, uint8_t *buf, size_t len,
                      uint64_t max_message, chat__ws_event *ev);

/* Write a server frame header (FIN set, no mask) for @p opcode and a
 * payload of @p len bytes into out (at least 10 bytes); returns its
 * length (2, 4 or 10). */
size_t chat__ws_header(uint8_t *out, uint8_t opcode, uint64_t len);

/* Check a received close frame's payload (RFC 6455 sections 5.5.1, 7.4).
 * Returns 0 with *code set (1005 when the payload is empty), or the close
 * code to answer with: 1002 for a 1-byte payload or a code no endpoint may
 * send, 1007 for a reason that is not UTF-8. */
uint16_t chat__ws_close_check(const uint8_t *p, size_t n, uint16_t *code);

/* Build a close payload: the code, big-endian, then as much of reason as
 * fits in 123 bytes without cutting a UTF-8 sequence. out needs 125
 * bytes; returns the length. */
size_t chat__ws_close_payload(uint8_t *out, uint16_t code,
                              const char *reason);

#endif

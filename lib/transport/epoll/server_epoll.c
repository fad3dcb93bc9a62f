/* chat_server on Linux epoll: the loop, connections, WebSocket sessions,
 * closes, and the public API. HTTP is in http_epoll.c.
 *
 * One pass of chat_epoll_service():
 *   1. epoll_wait (edge-triggered), for no longer than the next deadline;
 *   2. accept until the listen queue is empty (a batch per pass);
 *   3. read every readable connection (a byte budget each), handing whole
 *      WebSocket messages to the core as they are parsed;
 *   4. run the core's timer while it is due: the group commit of all the
 *      sends just read, then its fan-out, writing after each round so the
 *      acks go out before the deliveries' work starts;
 *   5. fire the timer wheel (heartbeats, timeouts, lingering closes);
 *   6. write: each connection's pending frames go out in one send().
 * Nothing waits a fixed time between rounds: unloaded, a send costs one
 * pass and one commit; loaded, the batches grow by themselves. */
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK, sendfile, realpath */

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/check.h"
#include "transport/epoll/epoll_internal.h"

#define TICK_MS 32
#define WHEEL_SLOTS 1024
#define BUCKET_SWEEP_MS 10000
/* Tags of the two descriptors that are not connections. */
static char listen_tag, wake_tag;

/* ---- small helpers ---- */

uint64_t chat__ep_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t chat__ep_mono_ms(void) { return chat__ep_mono_us() / 1000u; }

void chat__ep_log(chat_epoll *t, int level, const char *fmt, ...) {
  if (!t->s.log || level > t->s.log_level)
    return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  t->s.log(t->s.user_data, level, line);
}

char *chat__ep_tx(chat_epoll *t, size_t n) {
  if (n > t->tx_cap) {
    size_t cap = t->tx_cap ? t->tx_cap : 65536;
    while (cap < n)
      cap *= 2;
    char *p = chat__realloc(&t->a, t->tx, cap);
    if (!p)
      return NULL;
    t->tx = p;
    t->tx_cap = cap;
  }
  return t->tx;
}

/* After a large batch the scratch buffer shrinks back, so one big frame
 * does not pin memory for the life of the process. */
static void tx_trim(chat_epoll *t) {
  if (t->tx_cap > (1u << 20)) {
    chat__free(&t->a, t->tx);
    t->tx = NULL;
    t->tx_cap = 0;
  }
}

void chat__ep_dirty(chat_epoll *t, chat__ep_conn *c) {
  if (c->flags & CHAT__EP_F_DIRTY || c->phase == CHAT__EP_DEAD)
    return;
  c->flags |= CHAT__EP_F_DIRTY;
  c->next_dirty = t->dirty;
  t->dirty = c;
}

void chat__ep_ready(chat_epoll *t, chat__ep_conn *c) {
  if (c->flags & CHAT__EP_F_READY || c->phase == CHAT__EP_DEAD)
    return;
  c->flags |= CHAT__EP_F_READY;
  c->next_ready = t->ready;
  t->ready = c;
}

static bool out_pending(const chat__ep_out *o) {
  return o && (o->len > o->off || o->file_left);
}

void chat__ep_out_release(chat_epoll *t, chat__ep_out *o, uint64_t n) {
  if (n > o->charged)
    n = o->charged;
  if (!n)
    return;
  o->charged -= n;
  chat__ep_uncharge(t, o->user, n);
}

static void out_free(chat_epoll *t, chat__ep_conn *c) {
  chat__ep_out *o = c->out;
  if (!o)
    return;
  chat__ep_out_release(t, o, o->charged);
  if (o->user)
    chat__ep_user_put(t, o->user);
  if (o->file_fd >= 0)
    close(o->file_fd);
  chat__free(&t->a, o->buf);
  chat__free(&t->a, o);
  c->out = NULL;
}

static chat__ep_out *out_get(chat_epoll *t, chat__ep_conn *c) {
  if (!c->out) {
    c->out = chat__calloc(&t->a, 1, sizeof *c->out);
    if (c->out)
      c->out->file_fd = -1;
  }
  return c->out;
}

bool chat__ep_out_append(chat_epoll *t, chat__ep_conn *c, const void *p,
                         size_t n) {
  chat__ep_out *o = out_get(t, c);
  if (!o)
    return false;
  if (o->off && o->off == o->len)
    o->off = o->len = 0;
  if (o->len + n > o->cap) {
    /* Move what is left to the front before growing. */
    if (o->off) {
      memmove(o->buf, o->buf + o->off, o->len - o->off);
      o->len -= o->off;
      o->off = 0;
    }
    if (o->len + n > o->cap) {
      size_t cap = o->cap ? o->cap : 256;
      while (cap < o->len + n)
        cap *= 2;
      char *b = chat__realloc(&t->a, o->buf, cap);
      if (!b)
        return false;
      o->buf = b;
      o->cap = cap;
    }
  }
  if (n)
    memcpy(o->buf + o->len, p, n);
  o->len += n;
  return true;
}

/* ---- connections ---- */

static void rx_free(chat_epoll *t, chat__ep_conn *c) {
  chat__ep_rx *rx = c->rx;
  if (!rx)
    return;
  if (rx->cap) {
    t->ws_rx_bytes -= rx->cap;
    chat__free(&t->a, rx->msg);
  }
  chat__free(&t->a, rx);
  c->rx = NULL;
}

static void session_end(chat_epoll *t, chat__ep_conn *c) {
  if (!c->sess)
    return;
  chat_server_close_session(t->srv, c->sess, t->now_ms);
  c->sess = NULL;
  t->st.ws_closed++;
}

void chat__ep_kill(chat_epoll *t, chat__ep_conn *c, const char *why) {
  if (c->phase == CHAT__EP_DEAD)
    return;
  if (why && t->s.log && t->s.log_level >= CHAT_LOG_DEBUG)
    chat__ep_log(t, CHAT_LOG_DEBUG, "event=conn_closed fd=%d why=\"%s\"",
                 c->fd, why);
  chat__tw_del(&t->wheel, &c->tw);
  session_end(t, c);
  if (c->http)
    chat__ep_http_free(t, c);
  rx_free(t, c);
  out_free(t, c);
  if (c->flags & CHAT__EP_F_SESSION) {
    c->flags &= (uint16_t)~CHAT__EP_F_SESSION;
    t->n_ws--;
  }
  close(c->fd);
  c->fd = -1;
  c->phase = CHAT__EP_DEAD;
  t->n_conns--;
  /* Freed at the end of the pass: this pass's events and lists may still
   * name it. */
  if (t->n_graves == t->graves_cap) {
    size_t cap = t->graves_cap ? t->graves_cap * 2 : 64;
    chat__ep_conn **g = chat__realloc(&t->a, t->graves, cap * sizeof *g);
    if (!g) {
      /* Leak rather than free what a list may still hold. */
      return;
    }
    t->graves = g;
    t->graves_cap = cap;
  }
  c->flags |= CHAT__EP_F_GRAVE;
  t->graves[t->n_graves++] = c;
}

static void bury(chat_epoll *t) {
  size_t keep = 0;
  for (size_t i = 0; i < t->n_graves; i++) {
    chat__ep_conn *c = t->graves[i];
    /* Still on a list: the list drops it next pass, then it goes. */
    if (c->flags & (CHAT__EP_F_DIRTY | CHAT__EP_F_READY))
      t->graves[keep++] = c;
    else
      chat__free(&t->a, c);
  }
  t->n_graves = keep;
}

/* Shut our side down and read until the peer closes or linger_ms pass:
 * the peer reads everything we sent (a close frame, an error answer)
 * before its kernel could see a reset for bytes we never read. */
static void begin_linger(chat_epoll *t, chat__ep_conn *c) {
  session_end(t, c);
  rx_free(t, c);
  if (c->http)
    chat__ep_http_free(t, c);
  if (c->flags & CHAT__EP_F_HUP) {
    /* The peer has already closed its side: nothing left to read. */
    chat__ep_kill(t, c, "closed");
    return;
  }
  if (shutdown(c->fd, SHUT_WR) != 0) {
    chat__ep_kill(t, c, "shutdown failed");
    return;
  }
  c->phase = CHAT__EP_LINGER;
  c->mark_ms = t->now_ms + t->s.linger_ms;
  chat__tw_add(&t->wheel, &c->tw, c->mark_ms);
  t->ex.lingering_closes++;
  /* Bytes may already be waiting (the peer kept writing). */
  chat__ep_ready(t, c);
}

void chat__ep_close_after_write(chat_epoll *t, chat__ep_conn *c) {
  if (!out_pending(c->out))
    begin_linger(t, c);
  /* else: http_epoll.c asks again once the output is written. */
}

/* ---- writing ---- */

/* Send c's unsent output. True when all of it (and any file) is out;
 * false when the socket is full (wait for EPOLLOUT) or c died. */
static bool send_out(chat_epoll *t, chat__ep_conn *c) {
  chat__ep_out *o = c->out;
  while (o && o->len > o->off) {
    if (!c->http)
      t->ex.ws_sends++;
    ssize_t n = send(c->fd, o->buf + o->off, o->len - o->off,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      o->off += (size_t)n;
      chat__ep_out_release(t, o, (uint64_t)n);
      if (c->http)
        c->mark_ms = t->now_ms; /* progress, for the stall timeout */
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->flags &= (uint16_t)~CHAT__EP_F_WRITABLE;
      return false;
    }
    chat__ep_kill(t, c, "write failed");
    return false;
  }
  if (o && o->file_left) {
    while (o->file_left) {
      size_t want = o->file_left > (1u << 20) ? (1u << 20)
                                              : (size_t)o->file_left;
      ssize_t n = sendfile(c->fd, o->file_fd, &o->file_off, want);
      if (n > 0) {
        o->file_left -= (uint64_t)n;
        c->mark_ms = t->now_ms;
        continue;
      }
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->flags &= (uint16_t)~CHAT__EP_F_WRITABLE;
        return false;
      }
      /* A file that shrank, or the peer went away. */
      chat__ep_kill(t, c, "sendfile failed");
      return false;
    }
  }
  if (o) {
    /* Everything is out: give the memory back. */
    out_free(t, c);
  }
  return true;
}

static const char *close_reason(uint16_t code) {
  switch (code) {
  case 1001: return "going away";
  case 1002: return "protocol error";
  case 1003: return "binary messages are not accepted";
  case 1007: return "invalid UTF-8";
  case 1009: return "message too large";
  case 1011: return "internal error";
  case 1012: return "service restart";
  case 1013: return "try again later";
  default: return "";
  }
}

/* Frames for one WebSocket connection: pending control frames, then the
 * session's queued frames up to the write budget, then the close frame
 * when it is time, all in one send(). */
static void flush_ws(chat_epoll *t, chat__ep_conn *c) {
  if (!(c->flags & CHAT__EP_F_WRITABLE))
    return; /* EPOLLOUT brings it back */
  size_t used = 0;
  chat__ep_out *o = c->out;
  if (o && !o->file_left && o->len - o->off <= 16384 && !o->charged) {
    /* A little unsent output (the 101, a pong) rides in front of the
     * batch: one send() for all of it. */
    used = o->len - o->off;
    char *tx0 = chat__ep_tx(t, used + 256);
    if (!tx0) {
      chat__ep_kill(t, c, "out of memory");
      return;
    }
    if (used)
      memcpy(tx0, o->buf + o->off, used);
    out_free(t, c);
  } else if (out_pending(o) && !send_out(t, c)) {
    return;
  }
  if (c->phase == CHAT__EP_DEAD)
    return;
  bool more = false, closing = false;
  uint16_t code = 0;
  const char *reason = "";
  char *tx = chat__ep_tx(t, used + 256);
  if (!tx) {
    chat__ep_kill(t, c, "out of memory");
    return;
  }
  if (c->flags & CHAT__EP_F_PING) {
    /* A payload, so that a pong can be told from an unsolicited one. */
    used += chat__ws_header((uint8_t *)tx, CHAT__WS_PING, 2);
    memcpy(tx + used, "hb", 2);
    used += 2;
    c->flags &= (uint16_t)~CHAT__EP_F_PING;
    c->flags |= CHAT__EP_F_PING_OUT;
    t->st.ws_pings++;
  }
  if (c->close_code) {
    /* The transport's own close goes out without the queued frames. */
    code = c->close_code;
    reason = close_reason(code);
    closing = true;
  } else if (c->sess) {
    size_t budget = t->s.write_budget_bytes;
    for (;;) {
      if (budget == 0) {
        more = (chat_session_wants(c->sess) & CHAT_WANT_WRITE) != 0;
        break;
      }
      const char *json;
      size_t len;
      if (chat_session_next_frame(c->sess, &json, &len) != CHAT_OK)
        break;
      size_t need = used + 10 + len;
      if (need < len || !(tx = chat__ep_tx(t, need))) {
        chat__ep_kill(t, c, "out of memory");
        return;
      }
      used += chat__ws_header((uint8_t *)tx + used, CHAT__WS_TEXT, len);
      memcpy(tx + used, json, len);
      used += len;
      t->st.ws_messages_out++;
      t->st.ws_bytes_out += len;
      budget = len >= budget ? 0 : budget - len;
    }
    if (!more && (chat_session_wants(c->sess) & CHAT_WANT_CLOSE)) {
      code = chat_session_close_code(c->sess, &reason);
      closing = true;
    }
  }
  if (closing) {
    uint8_t pl[125];
    size_t pn = chat__ws_close_payload(pl, code, reason);
    if (!(tx = chat__ep_tx(t, used + 2 + pn))) {
      chat__ep_kill(t, c, "out of memory");
      return;
    }
    used += chat__ws_header((uint8_t *)tx + used, CHAT__WS_CLOSE, pn);
    memcpy(tx + used, pl, pn);
    used += pn;
    t->st.ws_closes[chat__tstats_close_index(code)]++;
    chat__ep_log(t, CHAT_LOG_INFO, "event=ws_close code=%u reason=\"%s\"",
                 (unsigned)code, reason);
  }
  size_t sent = 0;
  while (sent < used) {
    t->ex.ws_sends++;
    ssize_t n = send(c->fd, tx + sent, used - sent,
                     MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->flags &= (uint16_t)~CHAT__EP_F_WRITABLE;
      break;
    }
    chat__ep_kill(t, c, "write failed");
    return;
  }
  if (sent < used && !chat__ep_out_append(t, c, tx + sent, used - sent)) {
    chat__ep_kill(t, c, "out of memory");
    return;
  }
  tx_trim(t);
  if (closing) {
    /* Nothing more goes out; the rest of the queue is the core's. */
    if (c->phase == CHAT__EP_WS) {
      c->phase = CHAT__EP_CLOSING;
      c->mark_ms = t->now_ms + t->s.close_grace_ms;
      chat__tw_add(&t->wheel, &c->tw, c->mark_ms);
    }
    c->flags |= CHAT__EP_F_CLOSE_SENT; /* only the output remains */
    if (!out_pending(c->out))
      begin_linger(t, c);
    return;
  }
  if (more)
    chat__ep_dirty(t, c);
}

static void flush_conn(chat_epoll *t, chat__ep_conn *c) {
  switch (c->phase) {
  case CHAT__EP_HTTP:
    if (!(c->flags & CHAT__EP_F_WRITABLE))
      return;
    if (out_pending(c->out) && !send_out(t, c))
      return;
    if (c->phase == CHAT__EP_HTTP)
      chat__ep_http_drained(t, c);
    return;
  case CHAT__EP_WS:
    flush_ws(t, c);
    return;
  case CHAT__EP_CLOSING:
    if (c->flags & CHAT__EP_F_CLOSE_SENT) {
      /* Our close frame is in the output: finish it, then linger. */
      if ((c->flags & CHAT__EP_F_WRITABLE) && send_out(t, c) &&
          c->phase == CHAT__EP_CLOSING)
        begin_linger(t, c);
      return;
    }
    flush_ws(t, c);
    return;
  default:
    return;
  }
}

static void flush(chat_epoll *t) {
  chat__ep_conn *c = t->dirty;
  t->dirty = NULL;
  while (c) {
    chat__ep_conn *next = c->next_dirty;
    c->flags &= (uint16_t)~CHAT__EP_F_DIRTY;
    if (c->phase != CHAT__EP_DEAD)
      flush_conn(t, c);
    c = next;
  }
}

/* ---- WebSocket sessions ---- */

/* The session (or the transport) is closing: stop handing input to the
 * core; write what is queued, then the close frame, within close_grace. */
static void ws_closing(chat_epoll *t, chat__ep_conn *c) {
  if (c->phase != CHAT__EP_WS)
    return;
  c->phase = CHAT__EP_CLOSING;
  rx_free(t, c);
  c->mark_ms = t->now_ms + t->s.close_grace_ms;
  chat__tw_add(&t->wheel, &c->tw, c->mark_ms);
  chat__ep_dirty(t, c);
}

static void ws_close_soon(chat_epoll *t, chat__ep_conn *c, uint16_t code) {
  if (c->phase != CHAT__EP_WS)
    return;
  c->close_code = code;
  ws_closing(t, c);
}

static bool session_closing(const chat_session *s) {
  return (chat_session_wants(s) & CHAT_WANT_CLOSE) ||
         chat_session_close_code(s, NULL) != 1000;
}

static void on_session_wants(void *user_data, chat_server *srv,
                             chat_session *sess, void *session_user_data) {
  (void)srv;
  (void)user_data;
  chat__ep_conn *c = session_user_data;
  if (!c || c->sess != sess)
    return;
  chat_epoll *t = c->owner;
  if (c->phase == CHAT__EP_WS && session_closing(sess))
    ws_closing(t, c);
  else
    chat__ep_dirty(t, c);
}

static void deliver(chat_epoll *t, chat__ep_conn *c, const char *json,
                    size_t len) {
  uint64_t t0 = chat__ep_mono_us();
  chat_err rc = chat_session_on_frame(c->sess, json ? json : "", len,
                                      t->now_ms);
  chat__hist_observe(&t->st.dispatch, chat__ep_mono_us() - t0);
  t->st.ws_messages_in++;
  if (rc == CHAT_ERR_NOMEM)
    chat__ep_log(t, CHAT_LOG_ERROR, "event=frame_nomem");
}

/* Append a chunk of an unfinished message; false when it cannot be held
 * (the connection is then closing). */
static bool rx_append(chat_epoll *t, chat__ep_conn *c, const uint8_t *p,
                      size_t n) {
  chat__ep_rx *rx = c->rx;
  if (n == 0)
    return true; /* an empty fragment: nothing to copy (p may be NULL) */
  if (rx->len + n > rx->cap) {
    /* Grow with the data, never with what a header announced: a peer
     * that announces 128 KiB and sends one byte holds 4 KiB. */
    size_t cap = rx->cap ? rx->cap * 2 : 4096;
    if (cap < rx->len + n)
      cap = rx->len + n;
    if (cap > t->max_frame_bytes)
      cap = t->max_frame_bytes;
    if (cap < rx->len + n)
      cap = rx->len + n;
    uint64_t grow = cap - rx->cap;
    if (t->ws_rx_bytes + grow > t->s.ws_rx_bytes_max) {
      t->ex.ws_rx_refused++;
      ws_close_soon(t, c, 1013);
      return false;
    }
    char *m = chat__realloc(&t->a, rx->msg, cap);
    if (!m) {
      ws_close_soon(t, c, 1011);
      return false;
    }
    rx->msg = m;
    t->ws_rx_bytes += grow;
    rx->cap = cap;
  }
  memcpy(rx->msg + rx->len, p, n);
  rx->len += n;
  return true;
}

static void ws_control(chat_epoll *t, chat__ep_conn *c,
                       const chat__ws_event *ev) {
  if (ev->opcode == CHAT__WS_PING) {
    /* Answer with the same payload (section 5.5.3). A peer that pings
     * without reading fills our output: past a few KiB unsent, pings go
     * unanswered (only the latest needs an answer anyway). */
    if (c->out && c->out->len - c->out->off > 4096)
      return;
    uint8_t f[2 + 125];
    size_t h = chat__ws_header(f, CHAT__WS_PONG, ev->len);
    if (ev->len)
      memcpy(f + h, ev->data, ev->len);
    if (!chat__ep_out_append(t, c, f, h + ev->len))
      ws_close_soon(t, c, 1011);
    else
      chat__ep_dirty(t, c);
    return;
  }
  if (ev->opcode == CHAT__WS_PONG)
    return; /* activity, already counted */
  /* A close from the peer: answer with its code (section 5.5.1), then
   * close our side. */
  uint16_t code = 1000;
  uint16_t bad = chat__ws_close_check(ev->data, ev->len, &code);
  if (bad) {
    ws_close_soon(t, c, bad);
    return;
  }
  if (code == 1005)
    code = 1000;
  chat__ep_log(t, CHAT_LOG_DEBUG, "event=ws_peer_close code=%u",
               (unsigned)code);
  c->close_code = code;
  ws_closing(t, c);
}

/* Bytes of a WebSocket connection, from the loop's buffer. */
static void ws_input(chat_epoll *t, chat__ep_conn *c, uint8_t *buf,
                     size_t n) {
  chat__ws_parser scratch;
  chat__ws_parser *p;
  if (c->rx) {
    p = &c->rx->p;
  } else {
    chat__ws_parser_init(&scratch);
    p = &scratch;
  }
  t->st.ws_bytes_in += n;
  while (c->phase == CHAT__EP_WS) {
    chat__ws_event ev;
    size_t used = chat__ws_parse(p, buf, n, t->max_frame_bytes, &ev);
    buf += used;
    n -= used;
    if (ev.kind == CHAT__WS_EV_MORE)
      break;
    c->last_rx_ms = t->now_ms;
    c->flags &= (uint16_t)~CHAT__EP_F_PING_OUT;
    if (ev.kind == CHAT__WS_EV_ERROR) {
      chat__ep_log(t, CHAT_LOG_INFO, "event=ws_protocol_error code=%u "
                   "why=\"%s\"", (unsigned)ev.code, ev.reason);
      ws_close_soon(t, c, ev.code);
      return;
    }
    if (ev.kind == CHAT__WS_EV_CONTROL) {
      ws_control(t, c, &ev);
      continue;
    }
    /* DATA */
    if (ev.opcode == CHAT__WS_BINARY) {
      ws_close_soon(t, c, 1003);
      return;
    }
    if (ev.first && ev.last) {
      /* The common case: a whole message in this read, no copy. */
      deliver(t, c, (const char *)ev.data, ev.len);
      continue;
    }
    if (!c->rx) {
      c->rx = chat__calloc(&t->a, 1, sizeof *c->rx);
      if (!c->rx) {
        ws_close_soon(t, c, 1011);
        return;
      }
      c->rx->p = scratch;
      p = &c->rx->p;
    }
    if (ev.first)
      c->rx->len = 0;
    if (!rx_append(t, c, ev.data, ev.len))
      return;
    if (ev.last) {
      deliver(t, c, c->rx->msg, c->rx->len);
      if (c->phase != CHAT__EP_WS)
        return; /* closing: c->rx is gone */
      c->rx->len = 0;
    }
  }
  if (c->phase != CHAT__EP_WS)
    return;
  if (c->rx) {
    /* Keep only what an unfinished frame or message needs. */
    if (chat__ws_parser_idle(&c->rx->p) && c->rx->len == 0)
      rx_free(t, c);
  } else if (!chat__ws_parser_idle(&scratch)) {
    c->rx = chat__calloc(&t->a, 1, sizeof *c->rx);
    if (!c->rx) {
      ws_close_soon(t, c, 1011);
      return;
    }
    c->rx->p = scratch;
  }
}

void chat__ep_ws_open(chat_epoll *t, chat__ep_conn *c,
                      const chat_identity *id, char *leftover, size_t n) {
  c->phase = CHAT__EP_WS;
  c->last_rx_ms = t->now_ms;
  chat_err rc = chat_server_open_session(t->srv, &c->sess, id, c, t->now_ms);
  if (rc != CHAT_OK) {
    c->sess = NULL;
    chat__ep_log(t, CHAT_LOG_WARN, "event=ws_refused user=%s err=%s",
                 id->user_id, chat_err_name(rc));
    c->close_code = rc == CHAT_ERR_STATE ? 1001 : 1011;
    c->phase = CHAT__EP_CLOSING;
    c->mark_ms = t->now_ms + t->s.close_grace_ms;
    chat__tw_add(&t->wheel, &c->tw, c->mark_ms);
    c->flags |= CHAT__EP_F_SESSION;
    t->n_ws++;
    flush_ws(t, c);
    return;
  }
  c->flags |= CHAT__EP_F_SESSION;
  t->n_ws++;
  t->st.ws_opened++;
  chat__tw_add(&t->wheel, &c->tw, t->now_ms + t->heartbeat_ms);
  chat__ep_dirty(t, c);
  if (n)
    ws_input(t, c, (uint8_t *)leftover, n);
}

/* ---- reading ---- */

static void conn_eof(chat_epoll *t, chat__ep_conn *c) {
  c->flags |= CHAT__EP_F_HUP;
  switch (c->phase) {
  case CHAT__EP_HTTP:
    chat__ep_http_eof(t, c);
    return;
  case CHAT__EP_WS:
    chat__ep_kill(t, c, "peer closed");
    return;
  case CHAT__EP_CLOSING:
    /* Our close cannot be answered any more; write it if we can. */
    if (!out_pending(c->out) && !(c->flags & CHAT__EP_F_CLOSE_SENT))
      flush_ws(t, c);
    if (c->phase != CHAT__EP_DEAD)
      chat__ep_kill(t, c, "peer closed");
    return;
  default:
    chat__ep_kill(t, c, "closed");
    return;
  }
}

static void conn_read(chat_epoll *t, chat__ep_conn *c) {
  size_t budget = CHAT__EP_READ_BUDGET;
  bool stash_taken = false;
  for (;;) {
    if (c->phase == CHAT__EP_DEAD)
      return;
    if (c->phase == CHAT__EP_HTTP) {
      if (!chat__ep_http_can_read(c))
        return; /* resumed once its answer is out */
      /* Requests that came in behind an answer go first (once: what is
       * left then is an unfinished head, waiting for more bytes). */
      if (!stash_taken && chat__ep_http_pending(c)) {
        stash_taken = true;
        chat__ep_http_input(t, c, t->rbuf, 0);
        continue;
      }
    }
    ssize_t n = recv(c->fd, t->rbuf, CHAT__EP_RBUF, MSG_DONTWAIT);
    if (n > 0) {
      switch (c->phase) {
      case CHAT__EP_HTTP:
        chat__ep_http_input(t, c, t->rbuf, (size_t)n);
        break;
      case CHAT__EP_WS:
        ws_input(t, c, (uint8_t *)t->rbuf, (size_t)n);
        break;
      default:
        /* Closing or lingering: read and discard, so that the kernel never
         * answers the peer's bytes with a reset that would destroy our
         * close frame before the peer reads it. The peer's EOF (or the
         * linger deadline) ends it. */
        break;
      }
      /* A short read emptied the socket: new data brings a new edge. */
      if ((size_t)n < CHAT__EP_RBUF && !(c->flags & CHAT__EP_F_HUP))
        return;
      if ((size_t)n >= budget) {
        chat__ep_ready(t, c); /* the rest next pass */
        return;
      }
      budget -= (size_t)n;
      continue;
    }
    if (n == 0) {
      conn_eof(t, c);
      return;
    }
    if (errno == EINTR)
      continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return;
    chat__ep_kill(t, c, "read failed");
    return;
  }
}

static void read_all(chat_epoll *t) {
  chat__ep_conn *c = t->ready;
  t->ready = NULL;
  while (c) {
    chat__ep_conn *next = c->next_ready;
    c->flags &= (uint16_t)~CHAT__EP_F_READY;
    if (c->phase != CHAT__EP_DEAD)
      conn_read(t, c);
    c = next;
  }
}

/* ---- timers ---- */

static void ws_timer(chat_epoll *t, chat__ep_conn *c) {
  uint64_t now = t->now_ms;
  uint64_t quiet = now > c->last_rx_ms ? now - c->last_rx_ms : 0;
  if (quiet >= t->s.idle_timeout_ms) {
    t->st.ws_idle_closes++;
    chat__ep_log(t, CHAT_LOG_INFO, "event=ws_idle_close quiet_ms=%llu",
                 (unsigned long long)quiet);
    /* A silent peer may not read either: a short grace for the close. */
    ws_close_soon(t, c, 1001);
    c->mark_ms = now + 1000;
    chat__tw_add(&t->wheel, &c->tw, c->mark_ms);
    return;
  }
  if (quiet >= t->heartbeat_ms && !(c->flags & CHAT__EP_F_PING_OUT)) {
    c->flags |= CHAT__EP_F_PING;
    chat__ep_dirty(t, c);
  }
  uint64_t due = (c->flags & (CHAT__EP_F_PING | CHAT__EP_F_PING_OUT))
                     ? c->last_rx_ms + t->s.idle_timeout_ms
                     : c->last_rx_ms + t->heartbeat_ms;
  chat__tw_add(&t->wheel, &c->tw, due);
}

static void on_timer(void *ctx, chat__tw_node *n) {
  chat_epoll *t = ctx;
  chat__ep_conn *c = (chat__ep_conn *)n; /* tw is the first member */
  switch (c->phase) {
  case CHAT__EP_HTTP:
    chat__ep_http_timer(t, c);
    return;
  case CHAT__EP_WS:
    ws_timer(t, c);
    return;
  case CHAT__EP_CLOSING:
    if (t->now_ms >= c->mark_ms) {
      t->st.ws_stalled_closes++;
      chat__ep_kill(t, c, "close stalled");
    } else {
      chat__tw_add(&t->wheel, &c->tw, c->mark_ms);
    }
    return;
  case CHAT__EP_LINGER:
    if (t->now_ms >= c->mark_ms)
      chat__ep_kill(t, c, "linger done");
    else
      chat__tw_add(&t->wheel, &c->tw, c->mark_ms);
    return;
  default:
    return;
  }
}

/* ---- the core's timer ---- */

static void run_core_once(chat_epoll *t) {
  chat_server_stats before = {.version = CHAT_SERVER_STATS_V1};
  chat_server_stats after = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(t->srv, &before);
  uint64_t t0 = chat__ep_mono_us();
  chat_err rc = chat_server_on_timer(t->srv, t->now_ms);
  uint64_t dt = chat__ep_mono_us() - t0;
  if (rc != CHAT_OK)
    chat__ep_log(t, CHAT_LOG_ERROR, "event=timer_failed err=%s",
                 chat_err_name(rc));
  chat_server_get_stats(t->srv, &after);
  uint64_t commits = after.commits_total - before.commits_total;
  for (uint64_t i = 0; i < commits; i++)
    chat__hist_observe(&t->st.commit, dt / commits);
}

void chat__ep_run_core(chat_epoll *t) {
  /* A round either commits what has arrived or fans out what the last
   * round committed: write after each, so the acks leave before the
   * deliveries' work begins, and all of it within this pass. */
  for (int k = 0; k < 4; k++) {
    if (chat_server_next_deadline(t->srv) > t->now_ms)
      break;
    run_core_once(t);
    flush(t);
  }
}

/* ---- accepting ---- */

static void do_accept(chat_epoll *t) {
  for (int k = 0; k < CHAT__EP_ACCEPT_BATCH; k++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(t->lfd, (struct sockaddr *)&ss, &sl,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EINTR || e == ECONNABORTED || e == EPROTO || e == EPERM)
        continue;
      if (e == EAGAIN || e == EWOULDBLOCK) {
        t->accept_ready = false;
        return;
      }
      if ((e == EMFILE || e == ENFILE) && t->spare_fd >= 0) {
        /* Out of descriptors: give up the spare to take the connection
         * off the queue and close it, so the queue cannot wedge us. */
        close(t->spare_fd);
        t->spare_fd = -1;
        int x = accept4(t->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (x >= 0)
          close(x);
        t->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        t->ex.accept_refused++;
        continue;
      }
      /* ENOBUFS, ENOMEM, or no spare: try again shortly. */
      chat__ep_log(t, CHAT_LOG_WARN, "event=accept_failed err=\"%s\"",
                   strerror(e));
      t->accept_retry_ms = t->now_ms + 10;
      return;
    }
    if (t->draining) {
      t->st.net_refused++;
      close(fd);
      continue;
    }
    /* Descriptors are handed out lowest first, so one at or above the cap
     * means the reserve is being eaten into: close it before accept() can
     * ever run out of descriptors and spin. */
    if ((unsigned)fd >= t->fd_cap || t->n_conns >= t->s.max_connections) {
      t->ex.accept_refused++;
      chat__ep_log(t, CHAT_LOG_INFO, "event=fd_cap_refused fd=%d cap=%u",
                   fd, t->fd_cap);
      close(fd);
      continue;
    }
    chat__ep_conn *c = chat__calloc(&t->a, 1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->owner = t;
    c->phase = CHAT__EP_HTTP;
    c->flags = CHAT__EP_F_WRITABLE;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP |
                                       EPOLLET,
                             .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      chat__free(&t->a, c);
      continue;
    }
    t->n_conns++;
    if (!chat__ep_http_accept(t, c, (struct sockaddr *)&ss, sl))
      chat__ep_kill(t, c, "refused");
  }
}

/* ---- the pass ---- */

static int wait_ms(chat_epoll *t, uint32_t max_wait_ms) {
  if (t->ready || t->dirty)
    return 0;
  uint64_t now = t->now_ms;
  uint64_t until = now + max_wait_ms;
  if (t->accept_ready) {
    if (t->accept_retry_ms <= now)
      return 0;
    if (t->accept_retry_ms < until)
      until = t->accept_retry_ms;
  }
  chat_time_ms d = chat_server_next_deadline(t->srv);
  if (d <= now)
    return 0;
  if (d < until)
    until = d;
  uint64_t w = chat__tw_next(&t->wheel);
  if (w <= now)
    return 0;
  if (w < until)
    until = w;
  uint64_t ms = until - now;
  return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* env.wake: module threads posted completions or tasks; run them here,
 * before this pass's reads, commit and writes. */
static void on_wake(chat_epoll *t) {
  uint64_t v;
  while (read(t->wfd, &v, sizeof v) == (ssize_t)sizeof v)
    ;
  chat_err rc = chat_server_run_posted(t->srv, t->now_ms);
  if (rc != CHAT_OK)
    chat__ep_log(t, CHAT_LOG_ERROR, "event=run_posted_failed err=%s",
                 chat_err_name(rc));
}

chat_err chat_epoll_service(chat_epoll *t, uint32_t max_wait_ms) {
  if (!t || t->ep < 0)
    return CHAT_ERR_STATE;
  t->now_ms = chat__ep_mono_ms();
  int timeout = wait_ms(t, max_wait_ms);
  int n = epoll_wait(t->ep, t->events, CHAT__EP_EVENTS, timeout);
  if (n < 0) {
    if (errno != EINTR)
      return CHAT_ERR_MODULE;
    n = 0;
  }
  t->now_ms = chat__ep_mono_ms();
  for (int i = 0; i < n; i++) {
    struct epoll_event *e = &t->events[i];
    if (e->data.ptr == &listen_tag) {
      t->accept_ready = true;
      continue;
    }
    if (e->data.ptr == &wake_tag) {
      on_wake(t);
      continue;
    }
    chat__ep_conn *c = e->data.ptr;
    if (c->phase == CHAT__EP_DEAD)
      continue;
    if (e->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
      c->flags |= CHAT__EP_F_HUP;
    /* Edge-triggered epoll reports EPOLLOUT with every event on the
     * socket; only a socket we saw full has news. */
    if ((e->events & EPOLLOUT) && !(c->flags & CHAT__EP_F_WRITABLE)) {
      c->flags |= CHAT__EP_F_WRITABLE;
      chat__ep_dirty(t, c);
    }
    if (e->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
      chat__ep_ready(t, c);
  }
  if (t->accept_ready && t->accept_retry_ms <= t->now_ms && t->lfd >= 0)
    do_accept(t);
  read_all(t);
  chat__ep_run_core(t);
  chat__tw_expire(&t->wheel, t->now_ms, on_timer, t);
  flush(t);
  bury(t);
  return CHAT_OK;
}

/* ---- public API ---- */

void chat_epoll_server_callbacks(chat_server_callbacks *out) {
  if (!out)
    return;
  memset(out, 0, sizeof *out);
  out->version = CHAT_SERVER_CALLBACKS_V1;
  out->on_session_wants = on_session_wants;
  out->on_http_response = chat__ep_on_http_response;
}

static unsigned default_max_conns(void) {
  struct rlimit rl;
  rlim_t cur = 1024;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    cur = rl.rlim_cur;
  if (cur > (1u << 22))
    cur = 1u << 22;
  rlim_t reserve = cur / 16;
  if (reserve < 16)
    reserve = 16;
  if (reserve > 256)
    reserve = 256;
  return cur > reserve + 16 ? (unsigned)(cur - reserve) : 16;
}

static chat_err settings_init(chat_epoll *t, const chat_epoll_settings *in,
                              chat_errbuf *err) {
  chat_epoll_settings *s = &t->s;
  *s = *in;
  s->static_dir = NULL;
  /* Set once, in the server: the messages the core accepts are the ones
   * the transport reassembles, and the heartbeat it advertises in hello
   * is the one the transport pings at. */
  chat_server_settings ss = {.version = CHAT_SERVER_SETTINGS_V1};
  if (chat_server_get_settings(t->srv, &ss) != CHAT_OK)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "srv: cannot read its settings");
  t->max_frame_bytes = ss.max_frame_bytes;
  t->heartbeat_ms = ss.heartbeat_ms;
  if (!s->max_http_body_bytes)
    s->max_http_body_bytes = 11u << 20;
  if (!s->idle_timeout_ms) {
    uint64_t idle = 2 * (uint64_t)t->heartbeat_ms + 15000;
    s->idle_timeout_ms = idle > UINT32_MAX ? UINT32_MAX : (uint32_t)idle;
  }
  if (!s->write_budget_bytes)
    s->write_budget_bytes = 65536;
  if (!s->close_grace_ms)
    s->close_grace_ms = 5000;
  if (!s->max_connections)
    s->max_connections = default_max_conns();
  if (!s->max_header_bytes)
    s->max_header_bytes = 8192;
  if (!s->header_timeout_ms)
    s->header_timeout_ms = 3000;
  if (!s->header_max) {
    s->header_max = s->max_connections / 8;
    if (s->header_max < 64)
      s->header_max = 64;
  }
  if (!s->header_per_source) {
    s->header_per_source = s->header_max / 4;
    if (s->header_per_source < 16)
      s->header_per_source = 16;
  }
  if (!s->keepalive_timeout_ms)
    s->keepalive_timeout_ms = 15000;
  if (!s->body_timeout_ms)
    s->body_timeout_ms = 10000;
  if (!s->body_bytes_max)
    s->body_bytes_max = (uint64_t)256 << 20;
  if (!s->user_body_bytes_max)
    s->user_body_bytes_max = 3 * (uint64_t)s->max_http_body_bytes;
  if (!s->ws_rx_bytes_max)
    s->ws_rx_bytes_max = (uint64_t)64 << 20;
  if (!s->linger_ms)
    s->linger_ms = 2000;
  if (s->max_header_bytes < 256 || s->max_header_bytes > (1u << 20))
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "settings.max_header_bytes: %u is not "
                            "256..1048576",
                            s->max_header_bytes);
  /* Timers are kept in ms on 64 bits; a month is plenty for any of them. */
  const uint32_t month = 31u * 24 * 3600 * 1000;
  if (t->heartbeat_ms > month || s->idle_timeout_ms > month ||
      s->header_timeout_ms > month || s->keepalive_timeout_ms > month ||
      s->body_timeout_ms > month || s->close_grace_ms > month ||
      s->linger_ms > 600000)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "settings: a timeout is over 31 days (linger "
                            "over 600000 ms)");
  if (s->header_per_source > s->header_max)
    s->header_per_source = s->header_max;
  return CHAT_OK;
}

chat_err chat_epoll_new(chat_epoll **out, chat_server *srv,
                        const chat_epoll_settings *settings,
                        const chat_allocator *alloc, chat_errbuf *err) {
  if (!out)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "out: NULL");
  *out = NULL;
  if (!srv)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "srv: NULL");
  if (!settings)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "settings: NULL");
  if (!chat__version_ok(settings->version, CHAT_EPOLL_SETTINGS_V1))
    return chat__version_refused(err, "settings", settings->version,
                                 CHAT_EPOLL_SETTINGS_V1);
  chat_allocator a;
  if (chat__allocator_init(&a, alloc) != CHAT_OK)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "alloc: every method must be set");
  chat_epoll *t = chat__calloc(&a, 1, sizeof *t);
  if (!t)
    return chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
  t->a = a;
  t->srv = srv;
  t->ep = t->lfd = t->wfd = t->spare_fd = -1;
  chat_err rc = settings_init(t, settings, err);
  if (rc != CHAT_OK)
    goto fail;
  if (settings->static_dir && settings->static_dir[0]) {
    char *rp = realpath(settings->static_dir, NULL);
    struct stat st;
    if (!rp || stat(rp, &st) != 0 || !S_ISDIR(st.st_mode)) {
      free(rp); /* realpath() allocates with libc */
      rc = chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "settings.static_dir: %s is not a readable "
                            "directory",
                            settings->static_dir);
      goto fail;
    }
    t->static_dir = chat__strndup(&a, rp, strlen(rp));
    free(rp);
    if (!t->static_dir) {
      rc = chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
      goto fail;
    }
    t->static_dir_len = strlen(t->static_dir);
  }
  t->now_ms = chat__ep_mono_ms();
  uint64_t seed = chat__ep_mono_us() ^ (uint64_t)(uintptr_t)t;
  chat__map_init(&t->sources, &t->a, seed);
  chat__map_init(&t->users, &t->a, seed * 31 + 7);
  chat__buf_init(&t->mbuf, &t->a);
  t->rbuf = chat__alloc(&a, CHAT__EP_RBUF);
  t->head = chat__alloc(&a, sizeof *t->head);
  if (!t->rbuf || !t->head ||
      chat__tw_init(&t->wheel, &t->a, WHEEL_SLOTS, TICK_MS, t->now_ms) !=
          CHAT_OK) {
    rc = chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
    goto fail;
  }
  t->ep = epoll_create1(EPOLL_CLOEXEC);
  t->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (t->ep < 0 || t->wfd < 0) {
    rc = chat__errbuf_set(err, CHAT_ERR_MODULE, "epoll/eventfd: %s",
                          strerror(errno));
    goto fail;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &wake_tag};
  if (epoll_ctl(t->ep, EPOLL_CTL_ADD, t->wfd, &ev) != 0) {
    rc = chat__errbuf_set(err, CHAT_ERR_MODULE, "epoll_ctl: %s",
                          strerror(errno));
    goto fail;
  }
  t->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  /* Descriptors at or above this are the reserve (the store, logs, static
   * files): a connection that lands there is closed at once, whatever
   * max_connections says, so accept() never runs out and spins. */
  t->fd_cap = default_max_conns();
  *out = t;
  return CHAT_OK;
fail:
  chat_epoll_free(t);
  return rc;
}

static void free_conn_cb(void *ctx, chat__tw_node *n) {
  chat_epoll *t = ctx;
  chat__ep_conn *c = (chat__ep_conn *)n;
  chat__ep_kill(t, c, NULL);
}

void chat_epoll_free(chat_epoll *t) {
  if (!t)
    return;
  t->destroying = true;
  t->now_ms = chat__ep_mono_ms();
  /* Every live connection is on the wheel. */
  if (t->wheel.slots)
    chat__tw_each(&t->wheel, free_conn_cb, t);
  /* Nothing is listed any more: everything dead can go. */
  for (size_t i = 0; i < t->n_graves; i++)
    chat__free(&t->a, t->graves[i]);
  chat__free(&t->a, t->graves);
  if (t->lfd >= 0)
    close(t->lfd);
  if (t->wfd >= 0)
    close(t->wfd);
  if (t->ep >= 0)
    close(t->ep);
  if (t->spare_fd >= 0)
    close(t->spare_fd);
  chat__tw_free(&t->wheel, &t->a);
  chat__ep_users_free(t);
  chat__map_free(&t->sources);
  chat__buf_free(&t->mbuf);
  chat__free(&t->a, t->rbuf);
  chat__free(&t->a, t->head);
  chat__free(&t->a, t->tx);
  chat__free(&t->a, t->static_dir);
  chat_allocator a = t->a;
  chat__free(&a, t);
}

chat_err chat_epoll_listen(chat_epoll *t, const chat_epoll_listen_options *o,
                           chat_errbuf *err) {
  if (!t)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "t: NULL");
  if (!o)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "options: NULL");
  if (!chat__version_ok(o->version, CHAT_EPOLL_LISTEN_V1))
    return chat__version_refused(err, "options", o->version,
                                 CHAT_EPOLL_LISTEN_V1);
  if (t->lfd >= 0)
    return chat__errbuf_set(err, CHAT_ERR_STATE, "already listening");
  const char *host = o->host;
  bool any4 = !host || !host[0] || strcmp(host, "0.0.0.0") == 0;
  bool v6 = !any4 && strchr(host, ':') != NULL;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = v6 ? AF_INET6 : AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  char ps[8];
  snprintf(ps, sizeof ps, "%u", (unsigned)o->port);
  if (getaddrinfo(any4 ? NULL : host, ps, &hints, &res) != 0 || !res)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "options.host: %s is not an IP literal",
                            host ? host : "");
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  0);
  if (fd < 0) {
    freeaddrinfo(res);
    return chat__errbuf_set(err, CHAT_ERR_MODULE, "socket: %s",
                            strerror(errno));
  }
  int one = 1, zero = 0;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  /* Accepted sockets inherit it: our writes are already batched, and
   * Nagle would hold a lone ack back for the peer's delayed ACK. */
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (v6)
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  int rc = bind(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rc != 0) {
    int e = errno;
    close(fd);
    chat__ep_log(t, CHAT_LOG_ERROR,
                 "event=listen_failed host=%s port=%u err=\"%s\"",
                 host ? host : "*", (unsigned)o->port, strerror(e));
    return chat__errbuf_set(err, CHAT_ERR_MODULE, "bind %s:%u: %s",
                            host ? host : "*", (unsigned)o->port,
                            strerror(e));
  }
  int backlog = o->backlog ? (int)(o->backlog > 65535 ? 65535 : o->backlog)
                           : 4096;
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (listen(fd, backlog) != 0 ||
      getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
    int e = errno;
    close(fd);
    return chat__errbuf_set(err, CHAT_ERR_MODULE, "listen: %s",
                            strerror(e));
  }
  t->port = ntohs(ss.ss_family == AF_INET6
                      ? ((struct sockaddr_in6 *)&ss)->sin6_port
                      : ((struct sockaddr_in *)&ss)->sin_port);
  struct epoll_event ev = {.events = EPOLLIN | EPOLLET,
                           .data.ptr = &listen_tag};
  if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int e = errno;
    close(fd);
    return chat__errbuf_set(err, CHAT_ERR_MODULE, "epoll_ctl: %s",
                            strerror(e));
  }
  t->lfd = fd;
  t->accept_ready = true;
  return CHAT_OK;
}

uint16_t chat_epoll_port(const chat_epoll *t) { return t ? t->port : 0; }

void chat_epoll_wake(chat_epoll *t) {
  if (!t || t->wfd < 0)
    return;
  uint64_t one = 1;
  /* EAGAIN means the counter is already non-zero: a wake is pending. */
  ssize_t n = write(t->wfd, &one, sizeof one);
  (void)n;
}

void chat_epoll_drain(chat_epoll *t) {
  if (!t || t->draining)
    return;
  t->draining = true;
  t->now_ms = chat__ep_mono_ms();
  chat__ep_log(t, CHAT_LOG_INFO, "event=drain sessions=%zu", t->n_ws);
  /* Commits and acks what is waiting, then every session gets goaway and
   * wants 1012, or 1001 without goaway (on_session_wants moves each to
   * its close). */
  chat_server_drain(t->srv, t->now_ms);
  flush(t);
}

size_t chat_epoll_connections(const chat_epoll *t) {
  return t ? t->n_ws : 0;
}

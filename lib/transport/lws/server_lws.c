/* chat_server on libwebsockets (STYLE 2.9): the protocols table, the
 * WebSocket sessions, the timers that drive the core, and the adapter's
 * own lws_context. HTTP lives in http_lws.c. */
/* realpath() is XSI. */
#define _XOPEN_SOURCE 700

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lws_internal.h"

#define TICK_MS 250
#define SWEEP_MS 1000
/* Reassembly buffers above this size are not kept between messages. */
#define RX_KEEP_BYTES 16384

/* ---- small helpers ---- */

uint64_t chat__lws_mono_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t chat__lws_mono_ms(void) { return chat__lws_mono_us() / 1000u; }

void chat__lws_log(chat_lws *t, int level, const char *fmt, ...) {
  if (!t->s.log || level > t->s.log_level)
    return;
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  t->s.log(t->s.user_data, level, line);
}

unsigned char *chat__lws_tx(chat_lws *t, size_t n) {
  size_t need = LWS_PRE + n;
  if (need < n)
    return NULL;
  if (need > t->tx_cap) {
    size_t cap = t->tx_cap ? t->tx_cap : 4096;
    while (cap < need)
      cap *= 2;
    unsigned char *p = chat__realloc(&t->a, t->tx, cap);
    if (!p)
      return NULL;
    t->tx = p;
    t->tx_cap = cap;
  }
  return t->tx;
}

/* After a large HTTP body the scratch buffer shrinks back, so one media
 * download does not pin megabytes for the life of the process. */
static void tx_trim(chat_lws *t) {
  if (t->tx_cap > (1u << 20)) {
    chat__free(&t->a, t->tx);
    t->tx = NULL;
    t->tx_cap = 0;
  }
}

size_t chat__lws_token(struct lws *wsi, char *buf, size_t cap) {
  /* The header wins over the argument, as with most bearer APIs. */
  int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
  if (n > 0 && (size_t)n < cap &&
      lws_hdr_copy(wsi, buf, (int)cap, WSI_TOKEN_HTTP_AUTHORIZATION) == n) {
    char *p = buf;
    while (*p == ' ' || *p == '\t')
      p++;
    if (strncasecmp(p, "bearer", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
      p += 6;
      while (*p == ' ' || *p == '\t')
        p++;
      size_t len = strlen(p);
      while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
      memmove(buf, p, len);
      buf[len] = 0;
      return len;
    }
    /* Another scheme (a proxy's Basic, say): try the argument. */
  }
  for (int i = 0; i < 64; i++) {
    int fl = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
    if (fl <= 0)
      break;
    if ((size_t)fl >= cap ||
        lws_hdr_copy_fragment(wsi, buf, (int)cap, WSI_TOKEN_HTTP_URI_ARGS,
                              i) < 0)
      continue;
    if (strncmp(buf, "access_token=", 13) == 0) {
      size_t len = strlen(buf + 13);
      memmove(buf, buf + 13, len + 1);
      return len;
    }
  }
  return 0;
}

/* ---- the core's timer ---- */

static void run_core(chat_lws *t) {
  chat_server_stats before = {.version = CHAT_SERVER_STATS_V1};
  chat_server_stats after = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(t->srv, &before);
  uint64_t t0 = chat__lws_mono_us();
  chat_err rc = chat_server_on_timer(t->srv, t0 / 1000u);
  uint64_t dt = chat__lws_mono_us() - t0;
  if (rc != CHAT_OK)
    chat__lws_log(t, CHAT_LOG_ERROR, "event=timer_failed err=%s",
                  chat_err_name(rc));
  chat_server_get_stats(t->srv, &after);
  uint64_t commits = after.commits_total - before.commits_total;
  /* One timer run may commit several batches; each gets its share. */
  for (uint64_t i = 0; i < commits; i++)
    chat__hist_observe(&t->st.commit, dt / commits);
}

/* A round that is due right after another (the fan-out round after a
 * commit round) waits this long, so that the writable callbacks of this
 * service pass write the acks first. */
#define NEXT_ROUND_US 500

static void arm(chat_lws *t, uint64_t min_delay_us);

static void on_core_timer(lws_sorted_usec_list_t *sul) {
  chat_lws *t = lws_container_of(sul, chat_lws, sul_core);
  t->core_armed = false;
  run_core(t);
  arm(t, NEXT_ROUND_US);
}

static void arm(chat_lws *t, uint64_t min_delay_us) {
  if (!t->ctx || t->destroying)
    return;
  chat_time_ms d = chat_server_next_deadline(t->srv);
  if (d == CHAT_TIME_NEVER)
    return; /* an armed timer just finds nothing to do */
  /* In microseconds: a send read while the fan-out round is still
   * NEXT_ROUND_US away must move the timer forward, or every send of an
   * unloaded client waits out the previous message's round (the floor
   * was ~1 ms to the ack). Running the core early is safe: the acks of
   * the previous round were written before the client could send again,
   * and the new commit's own fan-out still waits for its next round. */
  uint64_t now_us = chat__lws_mono_us();
  uint64_t at_us = d <= now_us / 1000u ? now_us : d * 1000u;
  if (at_us < now_us + min_delay_us)
    at_us = now_us + min_delay_us;
  /* Many reads in one service round all ask for "now": one schedule. */
  if (t->core_armed && t->core_at_us <= at_us)
    return;
  lws_sul_schedule(t->ctx, 0, &t->sul_core, on_core_timer,
                   (lws_usec_t)(at_us - now_us));
  t->core_armed = true;
  t->core_at_us = at_us;
}

void chat__lws_arm(chat_lws *t) { arm(t, 0); }

/* ---- WebSocket sessions ---- */

static void conn_link(chat_lws *t, chat__lws_conn *c) {
  c->prev = NULL;
  c->next = t->conns;
  if (t->conns)
    t->conns->prev = c;
  t->conns = c;
  c->linked = true;
  t->n_conns++;
}

static void conn_unlink(chat_lws *t, chat__lws_conn *c) {
  if (!c->linked)
    return;
  if (c->prev)
    c->prev->next = c->next;
  else
    t->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->linked = false;
  t->n_conns--;
}

static void rx_free(chat_lws *t, chat__lws_conn *c) {
  chat__free(&t->a, c->rx);
  c->rx = NULL;
  c->rx_len = c->rx_cap = 0;
}

static int close_with(chat_lws *t, struct lws *wsi, uint16_t code,
                      const char *why) {
  t->st.ws_closes[chat__lws_close_index(code)]++;
  lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)why,
                   strlen(why));
  return -1;
}

/* Close from the next writable callback, not from the receive callback:
 * lws then sends the close frame through its normal closing handshake
 * and keeps reading until the peer answers. Hanging up inside RECEIVE
 * while the peer is still sending makes the kernel reset the connection,
 * and the peer never sees the close code. Until then input is dropped. */
static int close_soon(chat_lws *t, struct lws *wsi, chat__lws_conn *c,
                      uint16_t code, const char *why) {
  rx_free(t, c);
  if (!c->close_code) {
    c->close_code = code;
    c->close_reason = why;
  }
  lws_callback_on_writable(wsi);
  return 0;
}

static void on_session_wants(void *user_data, chat_server *srv,
                             chat_session *sess, void *session_user_data) {
  (void)srv;
  (void)sess;
  (void)user_data;
  chat__lws_conn *c = session_user_data;
  if (c && c->wsi)
    lws_callback_on_writable(c->wsi);
}

/* Authenticate from the request headers; used only when the identity was
 * not handed over from HTTP_CONFIRM_UPGRADE (lws paths that skip it). */
static bool auth_headers(chat_lws *t, struct lws *wsi, chat_identity *id) {
  char tok[2048];
  id->version = CHAT_IDENTITY_V1;
  size_t n = chat__lws_token(wsi, tok, sizeof tok);
  return n > 0 && chat_server_authenticate(t->srv, tok, n, id) == CHAT_OK;
}

static int ws_filter(chat_lws *t, struct lws *wsi) {
  if (t->handoff_wsi == wsi)
    return 0;
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  if (t->draining || !auth_headers(t, wsi, &id)) {
    t->st.auth_fail_upgrade++;
    return 1; /* lws hangs up; HTTP_CONFIRM_UPGRADE normally answered */
  }
  t->handoff_wsi = wsi;
  t->handoff_id = id;
  return 0;
}

static int ws_open(chat_lws *t, struct lws *wsi, chat__lws_conn *c) {
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  if (t->handoff_wsi == wsi) {
    id = t->handoff_id;
  } else if (!auth_headers(t, wsi, &id)) {
    t->st.auth_fail_upgrade++;
    return -1;
  }
  t->handoff_wsi = NULL;
  memset(c, 0, sizeof *c);
  c->wsi = wsi;
  /* A WebSocket on an HTTP/2 stream is framed inside h2 DATA frames by
   * lws: the raw writes of ws_writable() would bypass that. */
  c->lws_frames = lws_get_network_wsi(wsi) != wsi;
  uint64_t now = chat__lws_mono_ms();
  c->last_rx_ms = now;
  chat_err rc = chat_server_open_session(t->srv, &c->sess, &id, c, now);
  if (rc != CHAT_OK) {
    c->sess = NULL;
    chat__lws_log(t, CHAT_LOG_WARN, "event=ws_refused user=%s err=%s",
                  id.user_id, chat_err_name(rc));
    return close_with(t, wsi, rc == CHAT_ERR_STATE ? 1001 : 1011,
                      rc == CHAT_ERR_STATE ? "server shutting down"
                                           : "cannot open session");
  }
  conn_link(t, c);
  t->st.ws_opened++;
  if (t->s.log && t->s.log_level >= CHAT_LOG_INFO) {
    char peer[64] = "";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    chat__lws_log(t, CHAT_LOG_INFO, "event=ws_open user=%s device=%s peer=%s",
                  id.user_id, id.device_id, peer);
  }
  chat__lws_arm(t);
  return 0;
}

static void deliver(chat_lws *t, chat__lws_conn *c, const char *json,
                    size_t len, uint64_t now_ms) {
  uint64_t t0 = chat__lws_mono_us();
  chat_err rc = chat_session_on_frame(c->sess, json, len, now_ms);
  chat__hist_observe(&t->st.dispatch, chat__lws_mono_us() - t0);
  t->st.ws_messages_in++;
  if (rc == CHAT_ERR_NOMEM)
    chat__lws_log(t, CHAT_LOG_ERROR, "event=frame_nomem");
}

static int ws_receive(chat_lws *t, struct lws *wsi, chat__lws_conn *c,
                      const char *in, size_t len) {
  if (!c->sess)
    return -1;
  uint64_t now = chat__lws_mono_ms();
  c->last_rx_ms = now;
  c->ping_out = false;
  t->st.ws_bytes_in += len;
  if (c->close_code)
    return 0;
  if (lws_frame_is_binary(wsi))
    return close_soon(t, wsi, c, 1003, "binary messages are not accepted");
  bool first = lws_is_first_fragment(wsi);
  bool final = lws_is_final_fragment(wsi);
  if (first && final) {
    /* The common case: the whole message in lws's buffer, no copy. */
    c->rx_len = 0;
    deliver(t, c, in, len, now);
  } else {
    if (first)
      c->rx_len = 0;
    /* Bound the memory a peer can make us hold before the core sees the
     * frame; the core applies the same limit to whole frames. */
    if (len > t->max_frame_bytes || c->rx_len > t->max_frame_bytes - len)
      return close_soon(t, wsi, c, 1009, "frame too large");
    if (c->rx_len + len > c->rx_cap) {
      size_t cap = c->rx_cap ? c->rx_cap : 4096;
      while (cap < c->rx_len + len)
        cap *= 2;
      if (cap > t->max_frame_bytes)
        cap = t->max_frame_bytes;
      char *p = chat__realloc(&t->a, c->rx, cap);
      if (!p)
        return close_soon(t, wsi, c, 1011, "out of memory");
      c->rx = p;
      c->rx_cap = (uint32_t)cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += (uint32_t)len;
    if (final) {
      deliver(t, c, c->rx, c->rx_len, now);
      c->rx_len = 0;
      if (c->rx_cap > RX_KEEP_BYTES)
        rx_free(t, c);
    }
  }
  chat__lws_arm(t);
  return 0;
}

static int ws_writable(chat_lws *t, struct lws *wsi, chat__lws_conn *c) {
  if (!c->sess || c->killed || c->closing)
    return c->killed || c->closing ? -1 : 0;
  if (c->close_code) {
    c->closing = true;
    return close_with(t, wsi, c->close_code, c->close_reason);
  }
  if (c->want_ping) {
    /* A payload, because lws does not report empty pongs. */
    unsigned char ping[LWS_PRE + 2];
    memcpy(ping + LWS_PRE, "hb", 2);
    c->want_ping = false;
    if (lws_write(wsi, ping + LWS_PRE, 2, LWS_WRITE_PING) < 0)
      return -1;
    t->st.ws_pings++;
  }
  /* All the frames a pass may take go out in one send(): each is framed
   * here (a server frame is FIN + opcode, the length, no mask) behind the
   * previous one in the scratch buffer, and the batch is handed to lws as
   * raw bytes (LWS_WRITE_HTTP skips lws's own framing on a WebSocket).
   * One lws_write() per frame cost one send() per frame, and send() was
   * nearly all of chatd's CPU time under fan-out. lws keeps whatever a
   * short send() leaves and we stop; the next pass waits until it is out.
   * The core asks for a writable callback again (on_session_wants) only
   * after next_frame() has said CHAT_ERR_AGAIN, so the loop ends on AGAIN
   * whenever the queue is empty, and re-arms itself when it stops early. */
  size_t budget = t->s.write_budget_bytes;
  bool more = false;
  size_t used = 0; /* batched bytes after LWS_PRE */
  while (c->lws_frames) {
    /* lws frames each message (HTTP/2 stream): one lws_write per frame,
     * as lws expects, within the same budget. */
    if (lws_partial_buffered(wsi) ||
        (budget == 0 && (chat_session_wants(c->sess) & CHAT_WANT_WRITE))) {
      more = true;
      break;
    }
    const char *json;
    size_t len;
    if (chat_session_next_frame(c->sess, &json, &len) != CHAT_OK)
      break;
    unsigned char *buf = chat__lws_tx(t, len);
    if (!buf)
      return close_with(t, wsi, 1011, "out of memory");
    memcpy(buf + LWS_PRE, json, len);
    if (lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT) < (int)len)
      return -1;
    t->st.ws_messages_out++;
    t->st.ws_bytes_out += len;
    budget = len >= budget ? 0 : budget - len;
  }
  for (; !c->lws_frames;) {
    if (lws_partial_buffered(wsi) ||
        (budget == 0 && (chat_session_wants(c->sess) & CHAT_WANT_WRITE))) {
      more = true;
      break;
    }
    const char *json;
    size_t len;
    if (chat_session_next_frame(c->sess, &json, &len) != CHAT_OK)
      break;
    size_t hl = len < 126 ? 2 : len < 65536 ? 4 : 10;
    if (used + hl + len < used)
      return close_with(t, wsi, 1011, "out of memory");
    unsigned char *buf = chat__lws_tx(t, used + hl + len);
    if (!buf)
      return close_with(t, wsi, 1011, "out of memory");
    unsigned char *h = buf + LWS_PRE + used;
    h[0] = 0x81; /* FIN, text */
    if (hl == 2) {
      h[1] = (unsigned char)len;
    } else if (hl == 4) {
      h[1] = 126;
      h[2] = (unsigned char)(len >> 8);
      h[3] = (unsigned char)len;
    } else {
      h[1] = 127;
      for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    }
    memcpy(h + hl, json, len);
    used += hl + len;
    t->st.ws_messages_out++;
    t->st.ws_bytes_out += len;
    budget = len >= budget ? 0 : budget - len;
  }
  if (used && lws_write(wsi, t->tx + LWS_PRE, used, LWS_WRITE_HTTP) <
                  (int)used)
    return -1;
  uint32_t w = chat_session_wants(c->sess);
  if ((w & CHAT_WANT_CLOSE) && !lws_partial_buffered(wsi)) {
    const char *reason = "";
    uint16_t code = chat_session_close_code(c->sess, &reason);
    chat__lws_log(t, CHAT_LOG_INFO, "event=ws_close code=%u reason=\"%s\"",
                  code, reason);
    c->closing = true;
    return close_with(t, wsi, code, reason);
  }
  if (more || w)
    lws_callback_on_writable(wsi);
  tx_trim(t);
  return 0;
}

static void ws_closed(chat_lws *t, struct lws *wsi, chat__lws_conn *c) {
  if (t->handoff_wsi == wsi)
    t->handoff_wsi = NULL;
  if (!c)
    return;
  conn_unlink(t, c);
  rx_free(t, c);
  if (c->sess) {
    chat_server_close_session(t->srv, c->sess, chat__lws_mono_ms());
    c->sess = NULL;
    t->st.ws_closed++;
    chat__lws_arm(t);
  }
  c->wsi = NULL;
}

/* ---- the sweep: heartbeats, dead peers, stuck closes ---- */

static void kill_conn(chat_lws *t, chat__lws_conn *c, const char *why) {
  c->killed = true;
  chat__lws_log(t, CHAT_LOG_INFO, "event=ws_kill reason=%s", why);
  lws_close_reason(c->wsi, LWS_CLOSE_STATUS_GOINGAWAY, (unsigned char *)why,
                   strlen(why));
  lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void sweep(chat_lws *t, uint64_t now) {
  uint64_t hb = t->heartbeat_ms, idle = t->s.idle_timeout_ms;
  for (chat__lws_conn *c = t->conns; c; c = c->next) {
    if (c->killed || !c->sess)
      continue;
    uint64_t quiet = now > c->last_rx_ms ? now - c->last_rx_ms : 0;
    if (quiet >= idle) {
      t->st.ws_idle_closes++;
      kill_conn(t, c, "idle timeout");
      continue;
    }
    if (quiet >= hb && !c->ping_out) {
      c->ping_out = true;
      c->want_ping = true;
      lws_callback_on_writable(c->wsi);
    }
    /* A session that must close but cannot (its peer stopped reading, so
     * the close frame never gets out) is cut after a grace period. */
    if (c->close_code || (chat_session_wants(c->sess) & CHAT_WANT_CLOSE)) {
      if (!c->close_seen_ms) {
        c->close_seen_ms = now;
        lws_callback_on_writable(c->wsi);
      } else if (now - c->close_seen_ms >= t->s.close_grace_ms) {
        t->st.ws_stalled_closes++;
        kill_conn(t, c, "close stalled");
      }
    }
  }
}

static void on_tick(lws_sorted_usec_list_t *sul) {
  chat_lws *t = lws_container_of(sul, chat_lws, sul_tick);
  uint64_t now = chat__lws_mono_ms();
  if (now >= t->next_sweep_ms) {
    t->next_sweep_ms = now + SWEEP_MS;
    sweep(t, now);
  }
  /* A deadline that was far away when last armed may be due by now. */
  chat__lws_arm(t);
  lws_sul_schedule(t->ctx, 0, &t->sul_tick, on_tick,
                   (lws_usec_t)TICK_MS * 1000);
}

/* ---- the protocol callback ---- */

static chat_lws *adapter_of(struct lws *wsi) {
  const struct lws_protocols *p = lws_get_protocol(wsi);
  if (p && p->user)
    return p->user;
  /* The listening socket's pseudo connection may have no protocol. */
  struct lws_context *cx = lws_get_context(wsi);
  return cx ? lws_context_user(cx) : NULL;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len) {
  chat_lws *t = adapter_of(wsi);
  chat__lws_pss *ps = user;
  if (!t)
    return lws_callback_http_dummy(wsi, reason, user, in, len);
  /* The handed-over identity lives only for the one call chain that runs
   * HTTP_CONFIRM_UPGRADE, FILTER_PROTOCOL_CONNECTION and ESTABLISHED on
   * one connection; a callback for any other connection ends it, so a
   * failed upgrade can never leave it to a later connection that happens
   * to reuse the same struct lws address. */
  if (t->handoff_wsi && t->handoff_wsi != wsi)
    t->handoff_wsi = NULL;
  switch (reason) {
  case LWS_CALLBACK_PROTOCOL_INIT:
    if (!t->ctx)
      t->ctx = lws_get_context(wsi);
    if (!t->tick_armed) {
      t->tick_armed = true;
      lws_sul_schedule(t->ctx, 0, &t->sul_tick, on_tick,
                       (lws_usec_t)TICK_MS * 1000);
    }
    return 0;
  case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    /* env.wake -> chat_lws_wake() -> lws_cancel_service(): work posted
     * by module threads runs here, on the service thread. Every protocol
     * gets this callback; the second finds nothing to run. */
    if (!t->destroying) {
      chat_server_run_posted(t->srv, chat__lws_mono_ms());
      chat__lws_arm(t);
    }
    return 0;
  case LWS_CALLBACK_CONFIRM_EXTENSION_OKAY:
    /* The adapter writes its own WebSocket frames (ws_writable), which a
     * compressing extension such as permessage-deflate would corrupt:
     * decline every extension, whatever the host's context offers. */
    t->st.ext_declined++;
    chat__lws_log(t, CHAT_LOG_INFO, "event=ws_extension_declined name=%s",
                  in ? (const char *)in : "");
    return 1;
  case LWS_CALLBACK_HTTP_WRITEABLE: {
    int r = chat__lws_http_writable(t, wsi, ps);
    if (r <= 0)
      return r;
    break; /* not a deferred answer: lws's own (files) */
  }
  case LWS_CALLBACK_PROTOCOL_DESTROY:
    lws_sul_cancel(&t->sul_tick);
    lws_sul_cancel(&t->sul_core);
    t->tick_armed = t->core_armed = false;
    return 0;
  case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
    if (t->draining) {
      t->st.net_refused++;
      return 1;
    }
    /* Descriptors are handed out lowest first, so a new socket numbered
     * at or above the cap means the reserve is being eaten into: close it
     * at once (lws has not adopted it yet), before accept() can ever run
     * out of descriptors and spin. */
    if (t->fd_cap && (intptr_t)in >= (intptr_t)t->fd_cap) {
      chat__lws_log(t, CHAT_LOG_INFO, "event=fd_cap_refused fd=%d cap=%u",
                    (int)(intptr_t)in, t->fd_cap);
      return 1;
    }
    return 0;
  case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
    return chat__lws_confirm_upgrade(t, wsi, in ? in : "");
  case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    return ws_filter(t, wsi);
  case LWS_CALLBACK_ESTABLISHED:
    return ps ? ws_open(t, wsi, &ps->ws) : -1;
  case LWS_CALLBACK_RECEIVE:
    return ps ? ws_receive(t, wsi, &ps->ws, in, len) : -1;
  case LWS_CALLBACK_RECEIVE_PONG:
    if (ps) {
      ps->ws.last_rx_ms = chat__lws_mono_ms();
      ps->ws.ping_out = false;
    }
    return 0;
  case LWS_CALLBACK_SERVER_WRITEABLE:
    return ps ? ws_writable(t, wsi, &ps->ws) : 0;
  case LWS_CALLBACK_CLOSED:
    ws_closed(t, wsi, ps ? &ps->ws : NULL);
    return 0;
  case LWS_CALLBACK_HTTP:
    return chat__lws_http(t, wsi, ps, in, len);
  case LWS_CALLBACK_HTTP_BODY:
    return chat__lws_http_body(t, wsi, ps, in, len);
  case LWS_CALLBACK_HTTP_BODY_COMPLETION:
    return chat__lws_http_body_done(t, wsi, ps);
  case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
  case LWS_CALLBACK_CLOSED_HTTP:
    if (t->handoff_wsi == wsi)
      t->handoff_wsi = NULL;
    chat__lws_req_free(t, ps);
    chat__lws_http_forget(t, ps);
    break;
  default:
    break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- public API ---- */

static void set_protocol(chat_lws *t, struct lws_protocols *p,
                         const char *name, size_t rx) {
  p->name = name;
  p->callback = callback;
  p->per_session_data_size = sizeof(chat__lws_pss);
  p->rx_buffer_size = rx;
  p->id = 1;
  p->user = t;
  /* One send() per frame: never split a frame in lws's own buffer. */
  p->tx_packet_size = (size_t)t->max_frame_bytes + 64;
  if (p->tx_packet_size < t->s.write_budget_bytes)
    p->tx_packet_size = t->s.write_budget_bytes;
}

chat_err chat_lws_new(chat_lws **out, chat_server *srv,
                      const chat_lws_settings *settings,
                      const chat_allocator *alloc, chat_errbuf *err) {
  if (!out)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "out: NULL");
  *out = NULL;
  if (!srv || !settings)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "%s: NULL",
                            !srv ? "srv" : "settings");
  if (!chat__version_ok(settings->version, CHAT_LWS_SETTINGS_V1))
    return chat__version_refused(err, "settings", settings->version,
                                 CHAT_LWS_SETTINGS_V1);
  chat_server_settings ss = {.version = CHAT_SERVER_SETTINGS_V1};
  if (chat_server_get_settings(srv, &ss) != CHAT_OK)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "srv: cannot read its settings");
  chat_allocator a;
  if (chat__allocator_init(&a, alloc) != CHAT_OK)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "alloc: alloc, resize and release must all be "
                            "set");
  chat_lws *t = chat__calloc(&a, 1, sizeof *t);
  if (!t)
    return chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
  t->a = a;
  t->srv = srv;
  t->s = *settings;
  t->s.static_dir = NULL;
  /* Set once, in the server: the frames the core accepts are the frames
   * the adapter reassembles, and the heartbeat it advertises in hello is
   * the one the adapter pings at. */
  t->max_frame_bytes = ss.max_frame_bytes;
  t->heartbeat_ms = ss.heartbeat_ms;
  if (!t->s.max_http_body_bytes)
    t->s.max_http_body_bytes = 11u << 20;
  if (!t->s.idle_timeout_ms)
    t->s.idle_timeout_ms = 2 * t->heartbeat_ms + 15000;
  if (!t->s.write_budget_bytes)
    t->s.write_budget_bytes = 65536;
  if (!t->s.close_grace_ms)
    t->s.close_grace_ms = 5000;
  if (settings->static_dir && settings->static_dir[0]) {
    char *rp = realpath(settings->static_dir, NULL);
    struct stat st;
    if (!rp || stat(rp, &st) != 0 || !S_ISDIR(st.st_mode)) {
      free(rp); /* realpath() allocates with libc */
      chat__free(&a, t);
      return chat__errbuf_set(err, CHAT_ERR_INVAL,
                              "settings.static_dir: %s is not a readable "
                              "directory",
                              settings->static_dir);
    }
    t->static_dir = chat__strndup(&a, rp, strlen(rp));
    free(rp);
    if (!t->static_dir) {
      chat__free(&a, t);
      return chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
    }
    t->static_dir_len = strlen(t->static_dir);
  }
  chat__buf_init(&t->out, &t->a);
  set_protocol(t, &t->protocols[0], "chat-http", 2048);
  set_protocol(t, &t->protocols[1], "chat.v1", 2048);

  *out = t;
  return CHAT_OK;
}

void chat_lws_server_callbacks(chat_server_callbacks *out) {
  if (!out)
    return;
  memset(out, 0, sizeof *out);
  out->version = CHAT_SERVER_CALLBACKS_V1;
  out->on_session_wants = on_session_wants;
  out->on_http_response = chat__lws_on_http_response;
}

const struct lws_protocols *chat_lws_protocols(chat_lws *t) {
  return t ? t->protocols : NULL;
}

void chat_lws_free(chat_lws *t) {
  if (!t)
    return;
  t->destroying = true;
  if (t->own_ctx && t->ctx)
    lws_context_destroy(t->ctx); /* CLOSED for each session first */
  t->ctx = NULL;
  chat__buf_free(&t->out);
  chat__free(&t->a, t->tx);
  chat__free(&t->a, t->static_dir);
  chat_allocator a = t->a;
  chat__free(&a, t);
}

static bool is_ipv6_literal(const char *h) { return h && strchr(h, ':'); }

/* Can host:port be bound? Checked before lws tries, because a context
 * that fails to bind leaks inside lws 4.1 and says little about why. */
static int probe_bind(const char *host, uint16_t port, bool v6) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = v6 ? AF_INET6 : AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  char ps[8];
  snprintf(ps, sizeof ps, "%u", (unsigned)port);
  int rc = getaddrinfo(host, ps, &hints, &res);
  if (rc != 0)
    return EINVAL;
  int err = 0;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = errno;
  } else {
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0)
      err = errno;
    close(fd);
  }
  freeaddrinfo(res);
  return err;
}

chat_err chat_lws_listen(chat_lws *t, const chat_lws_listen_options *o,
                         chat_errbuf *err) {
  if (!t || !o)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "%s: NULL",
                            !t ? "t" : "options");
  if (!chat__version_ok(o->version, CHAT_LWS_LISTEN_V1))
    return chat__version_refused(err, "options", o->version,
                                 CHAT_LWS_LISTEN_V1);
  if (t->ctx)
    return chat__errbuf_set(err, CHAT_ERR_STATE,
                            "already listening (or serving a host's "
                            "context)");
  size_t rx = o->rx_buffer_bytes ? o->rx_buffer_bytes : 2048;
  if (rx < 128)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "options.rx_buffer_bytes: %zu is under 128", rx);
  t->protocols[0].rx_buffer_size = rx;
  t->protocols[1].rx_buffer_size = rx;

  /* Leave descriptors for the store, the logs, the key and static files,
   * so that accept() never fails for lack of one and spins: a new socket
   * numbered at or above the cap is closed at once (see
   * FILTER_NETWORK_CONNECTION). The cap is not given to lws as
   * fd_limit_per_thread: below RLIMIT_NOFILE that switches lws 4.1 to its
   * "max_fds_unrelated_to_ulimit" mode, where wsi_from_fd() scans the
   * whole socket table on every event instead of indexing it by fd, which
   * made each event cost O(connections) (a third of chatd's CPU at 10,000
   * connections). */
  unsigned int fds = o->max_fds;
  if (!fds) {
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
    fds = cur > reserve + 16 ? (unsigned int)(cur - reserve) : 16;
  }

  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  const char *host = o->host;
  if (host && (!host[0] || strcmp(host, "0.0.0.0") == 0 ||
               strcmp(host, "::") == 0))
    host = strcmp(host, "::") == 0 ? "::" : NULL;
  info.iface = host && strcmp(host, "::") != 0 ? host : NULL;
  info.port = o->port;
  info.protocols = t->protocols;
  info.options = LWS_SERVER_OPTION_SKIP_SERVER_CANONICAL_NAME |
                 LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
  if (!is_ipv6_literal(host))
    info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  info.retry_and_idle_policy = &t->retry;
  info.max_http_header_data =
      (unsigned short)(o->max_http_header_bytes ? o->max_http_header_bytes
                                                : 4096);
  info.max_http_header_pool = 256;
  t->fd_cap = fds;
  info.count_threads = 1;
  info.pt_serv_buf_size = 32768;
  /* How long lws lets a new connection take to get its request served
   * (and other network round trips). lws 4.1's default of 5 s resets
   * every connection still waiting after a reconnect storm: with 10,000
   * clients connecting at once, 30-240 % of them had to retry (counted
   * by the kernel as TCPAbortOnClose, lws closing with the request
   * unread). Dead peers after the upgrade are the sweep's business. */
  info.timeout_secs = 30;
  info.server_string = "libchat";
  info.vhost_name = "default";
  info.user = t;

  int perr = probe_bind(host && strcmp(host, "::") ? host : NULL, o->port,
                        is_ipv6_literal(host));
  if (perr) {
    chat__lws_log(t, CHAT_LOG_ERROR,
                  "event=listen_failed host=%s port=%u err=\"%s\"",
                  o->host ? o->host : "*", (unsigned)o->port, strerror(perr));
    return chat__errbuf_set(err, perr == EINVAL ? CHAT_ERR_INVAL
                                                : CHAT_ERR_MODULE,
                            "options.host/port: cannot bind %s:%u: %s",
                            o->host ? o->host : "*", (unsigned)o->port,
                            perr == EINVAL ? "not an IP address literal"
                                           : strerror(perr));
  }

  /* lws logs through a process-wide setting; keep it to real errors. */
  lws_set_log_level(LLL_ERR, NULL);
  t->own_ctx = true;
  struct lws_context *cx = lws_create_context(&info);
  if (!cx) {
    t->own_ctx = false;
    t->ctx = NULL;
    chat__lws_log(t, CHAT_LOG_ERROR, "event=listen_failed host=%s port=%u",
                  o->host ? o->host : "*", (unsigned)o->port);
    return chat__errbuf_set(err, CHAT_ERR_MODULE,
                            "lws_create_context failed for %s:%u",
                            o->host ? o->host : "*", (unsigned)o->port);
  }
  t->ctx = cx;
  struct lws_vhost *vh = lws_get_vhost_by_name(cx, "default");
  int port = vh ? lws_get_vhost_listen_port(vh) : -1;
  if (port <= 0 || port > 65535) {
    lws_context_destroy(cx);
    t->ctx = NULL;
    t->own_ctx = false;
    return chat__errbuf_set(err, CHAT_ERR_MODULE,
                            "lws reports no listening port");
  }
  t->port = (uint16_t)port;
  return CHAT_OK;
}

uint16_t chat_lws_port(const chat_lws *t) { return t ? t->port : 0; }

chat_err chat_lws_service(chat_lws *t) {
  if (!t || !t->ctx || !t->own_ctx)
    return CHAT_ERR_STATE;
  return lws_service(t->ctx, 0) < 0 ? CHAT_ERR_MODULE : CHAT_OK;
}

void chat_lws_wake(chat_lws *t) {
  if (t && t->ctx)
    lws_cancel_service(t->ctx);
}

void chat_lws_drain(chat_lws *t) {
  if (!t || t->draining)
    return;
  t->draining = true;
  chat__lws_log(t, CHAT_LOG_INFO, "event=drain sessions=%zu", t->n_conns);
  /* Commits and acks what is waiting, then every session wants 1001. */
  chat_server_drain(t->srv, chat__lws_mono_ms());
  for (chat__lws_conn *c = t->conns; c; c = c->next)
    lws_callback_on_writable(c->wsi);
  chat__lws_arm(t);
}

size_t chat_lws_connections(const chat_lws *t) { return t ? t->n_conns : 0; }

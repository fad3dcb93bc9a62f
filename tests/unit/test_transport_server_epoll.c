/* lib/transport/epoll/server_epoll.c over real loopback sockets: the
 * WebSocket session, framing rules as the peer sees them, closes that
 * arrive, heartbeats, one pass from read to write, batched writes, the
 * write budget, drain, wake and the connection cap. */
#define _GNU_SOURCE

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "epoll_harness.h"

static uint64_t ms_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The close code the peer reads (0: none arrived before the end). */
static uint16_t close_code_of(eh *h, eh_conn *c, unsigned ms) {
  eh_frame f;
  if (!eh_ws_expect(h, c, 8, &f, ms))
    return 0;
  uint16_t code = f.close_code;
  eh_frame_free(&f);
  return code;
}

Test(server_epoll, hello_then_ping_pong) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  eh_ws_send_text(&h, c, "{\"type\":\"ping\",\"nonce\":\"n1\"}");
  eh_frame f;
  cr_assert(eh_ws_expect_text(&h, c, "\"pong\"", &f, 3000));
  cr_assert(strstr(f.data, "\"n1\""));
  cr_assert(f.fin);
  eh_frame_free(&f);
  cr_assert_eq(chat_epoll_connections(h.t), 1);
  eh_close(c);
  eh_pump(&h, 50);
  cr_assert_eq(chat_epoll_connections(h.t), 0);
  eh_fini(&h);
}

Test(server_epoll, websocket_ping_gets_its_pong) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  eh_ws_send(&h, c, 0x89, "abc", 3);
  eh_frame f;
  cr_assert(eh_ws_expect(&h, c, 0xA, &f, 3000));
  cr_assert_eq(f.len, 3);
  cr_assert_eq(memcmp(f.data, "abc", 3), 0);
  eh_frame_free(&f);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, unmasked_frame_closes_1002) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  uint8_t fr[64];
  size_t n = eh_ws_frame(fr, 0x81, "{\"type\":\"ping\"}", 15, false);
  eh_send(&h, c, fr, n);
  cr_assert_eq(close_code_of(&h, c, 3000), 1002);
  cr_assert(eh_wait_closed(&h, c, 5000));
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, binary_closes_1003) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  eh_ws_send(&h, c, 0x82, "\x00\x01", 2);
  cr_assert_eq(close_code_of(&h, c, 3000), 1003);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, fragments_with_control_frames_between) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  const char *parts[] = {"{\"type\":\"pi", "ng\",\"nonce\"", ":\"frag\"}"};
  uint8_t buf[256];
  size_t n = 0;
  n += eh_ws_frame(buf + n, 0x01, parts[0], strlen(parts[0]), true);
  n += eh_ws_frame(buf + n, 0x89, "x", 1, true); /* ping in the middle */
  n += eh_ws_frame(buf + n, 0x00, parts[1], strlen(parts[1]), true);
  n += eh_ws_frame(buf + n, 0x8A, "", 0, true); /* unsolicited pong */
  n += eh_ws_frame(buf + n, 0x80, parts[2], strlen(parts[2]), true);
  /* Byte by byte, so every frame also spans reads. */
  for (size_t i = 0; i < n; i++) {
    eh_send(&h, c, buf + i, 1);
    eh_pump(&h, 1);
  }
  eh_frame f;
  cr_assert(eh_ws_expect_text(&h, c, "\"frag\"", &f, 3000));
  eh_frame_free(&f);
  /* Nothing of it is held once the message is done. */
  cr_assert_eq(eh_metric(&h, "chat_ws_rx_bytes"), 0);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, empty_first_fragment_then_continuation) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  const char *m = "{\"type\":\"ping\",\"nonce\":\"empty-first\"}";
  uint8_t buf[128];
  size_t n = eh_ws_frame(buf, 0x01, "", 0, true);
  n += eh_ws_frame(buf + n, 0x80, m, strlen(m), true);
  eh_send(&h, c, buf, n);
  eh_frame f;
  cr_assert(eh_ws_expect_text(&h, c, "empty-first", &f, 3000));
  eh_frame_free(&f);
  /* An empty message, also split: the core answers it as a bad frame. */
  n = eh_ws_frame(buf, 0x01, "", 0, true);
  n += eh_ws_frame(buf + n, 0x80, "", 0, true);
  eh_send(&h, c, buf, n);
  cr_assert(eh_ws_expect_text(&h, c, "bad_frame", &f, 3000));
  eh_frame_free(&f);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, partial_frame_held_only_while_unfinished) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  char m[600];
  snprintf(m, sizeof m, "{\"type\":\"ping\",\"nonce\":\"%0200d\"}", 7);
  uint8_t buf[700];
  size_t n = eh_ws_frame(buf, 0x81, m, strlen(m), true);
  eh_send(&h, c, buf, n / 2);
  eh_pump(&h, 30);
  cr_assert_gt(eh_metric(&h, "chat_ws_rx_bytes"), 0);
  eh_send(&h, c, buf + n / 2, n - n / 2);
  eh_frame f;
  cr_assert(eh_ws_expect_text(&h, c, "\"pong\"", &f, 3000));
  eh_frame_free(&f);
  cr_assert_eq(eh_metric(&h, "chat_ws_rx_bytes"), 0);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, an_announced_length_is_not_allocated_ahead) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  /* A header that announces 100,000 bytes, then ten of them. */
  static uint8_t fr[100020], pl[100000];
  memset(pl, 'a', sizeof pl);
  eh_ws_frame(fr, 0x81, pl, sizeof pl, true);
  eh_send(&h, c, fr, 14 + 10); /* 2 + 8 length + 4 mask, 10 payload */
  eh_pump(&h, 30);
  double held = eh_metric(&h, "chat_ws_rx_bytes");
  cr_assert_gt(held, 0);
  cr_assert_leq(held, 4096, "%g bytes held for 10 received", held);
  eh_close(c);
  eh_fini(&h);
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, res = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &pages, &res) != 2)
      res = 0;
    fclose(f);
  }
  return res * (sysconf(_SC_PAGESIZE) / 1024);
}

Test(server_epoll, pings_from_a_peer_that_never_reads_are_bounded) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_connect_rcvbuf(&h, 4096);
  char req[2048];
  eh_upgrade_request(&h, "alice", "phone", NULL, req, sizeof req);
  eh_sends(&h, c, req);
  eh_pump(&h, 50);
  long before = rss_kib();
  uint8_t pl[125], fr[200];
  memset(pl, 'p', sizeof pl);
  size_t n = eh_ws_frame(fr, 0x89, pl, sizeof pl, true);
  char *burst = malloc(n * 1000);
  for (int i = 0; i < 1000; i++)
    memcpy(burst + (size_t)i * n, fr, n);
  for (int k = 0; k < 300; k++) /* 300,000 pings, never a read */
    eh_send(&h, c, burst, n * 1000);
  eh_pump(&h, 50);
  long grown = rss_kib() - before;
  free(burst);
  /* Answering each would hold ~38 MB of pongs. */
  cr_assert_lt(grown, 8 * 1024, "grew %ld KiB", grown);
  cr_assert_eq(chat_epoll_connections(h.t), 1);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, oversize_message_closes_1009) {
  /* The limit is the server's: the transport reads it from there. */
  chat_server_settings ss = {.version = CHAT_SERVER_SETTINGS_V1,
                             .max_frame_bytes = 1000};
  eh h;
  eh_init(&h, NULL, &ss);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  char big[600];
  memset(big, 'y', sizeof big);
  eh_ws_send(&h, c, 0x01, big, sizeof big);
  eh_ws_send(&h, c, 0x80, big, sizeof big);
  cr_assert_eq(close_code_of(&h, c, 3000), 1009);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, invalid_utf8_closes_1007) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  eh_ws_send(&h, c, 0x81, "{\"type\":\"ping\",\"nonce\":\"\xff\xfe\"}", 28);
  cr_assert_eq(close_code_of(&h, c, 3000), 1007);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, peer_close_is_echoed_then_tcp_closes) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  eh_ws_send(&h, c, 0x88, "\x0f\xa0" "bye", 5); /* 4000 */
  cr_assert_eq(close_code_of(&h, c, 3000), 4000);
  /* The server closes its side first (RFC 6455 section 7.1.1). */
  cr_assert(eh_wait_closed(&h, c, 3000));
  cr_assert(!c->reset);
  eh_close(c);
  /* A bad close payload (a code nobody may send) is a protocol error. */
  c = eh_ws_open(&h, "alice", "phone");
  eh_ws_send(&h, c, 0x88, "\x03\xed", 2); /* 1005 */
  cr_assert_eq(close_code_of(&h, c, 3000), 1002);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, heartbeat_ping_then_idle_close) {
  /* The heartbeat is the server's (advertised in hello); the idle
   * timeout the transport's. */
  chat_server_settings ss = {.version = CHAT_SERVER_SETTINGS_V1,
                             .heartbeat_ms = 300};
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .idle_timeout_ms = 900};
  eh h;
  eh_init(&h, &s, &ss);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  uint64_t t0 = ms_now();
  eh_frame f;
  cr_assert(eh_ws_expect(&h, c, 0x9, &f, 3000), "no heartbeat ping");
  uint64_t pinged = ms_now() - t0;
  cr_assert_eq(f.len, 2);
  cr_assert_eq(memcmp(f.data, "hb", 2), 0);
  eh_frame_free(&f);
  cr_assert_geq(pinged, 250, "pinged after %llu ms",
                (unsigned long long)pinged);
  /* Never answered: cut at the idle timeout, with 1001. */
  cr_assert_eq(close_code_of(&h, c, 3000), 1001);
  uint64_t cut = ms_now() - t0;
  cr_assert_geq(cut, 850);
  cr_assert_leq(cut, 2500);
  cr_assert_eq(eh_metric(&h, "chat_ws_idle_closes_total"), 1);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, a_pong_keeps_the_session) {
  chat_server_settings ss = {.version = CHAT_SERVER_SETTINGS_V1,
                             .heartbeat_ms = 200};
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .idle_timeout_ms = 500};
  eh h;
  eh_init(&h, &s, &ss);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  uint64_t t0 = ms_now();
  while (ms_now() - t0 < 1500) {
    eh_frame f;
    if (eh_ws_recv(&h, c, &f, 50)) {
      cr_assert_neq(f.op, 8, "closed while answering pings");
      if (f.op == 9)
        eh_ws_send(&h, c, 0x8A, f.data, f.len);
      eh_frame_free(&f);
    }
  }
  cr_assert_eq(chat_epoll_connections(h.t), 1);
  eh_close(c);
  eh_fini(&h);
}

static const char *make_direct(eh *h, const char *a, const char *b) {
  static char id[64];
  char tok[512], req[2048];
  eh_token(h, a, "d", tok);
  char body[128];
  snprintf(body, sizeof body, "{\"type\":\"direct\",\"members\":[\"%s\"]}",
           b);
  snprintf(req, sizeof req,
           "POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
           "Content-Length: %zu\r\n\r\n%s",
           tok, strlen(body), body);
  eh_conn *c = eh_connect(h);
  eh_resp r;
  cr_assert(eh_http(h, c, req, &r, 5000));
  cr_assert(r.status == 200 || r.status == 201, "%d %s", r.status, r.body);
  char *p = strstr(r.body, "\"conversation_id\":\"");
  cr_assert_not_null(p);
  p += 19;
  size_t n = strcspn(p, "\"");
  memcpy(id, p, n);
  id[n] = 0;
  eh_resp_free(&r);
  eh_close(c);
  return id;
}

/* Non-blocking: a whole frame already waiting in the socket? */
static bool frame_waiting(eh_conn *c, const char *needle) {
  for (;;) {
    ssize_t n = recv(c->fd, c->buf + c->len, EH_BUF - c->len, MSG_DONTWAIT);
    if (n <= 0)
      break;
    c->len += (size_t)n;
  }
  return memmem(c->buf, c->len, needle, strlen(needle)) != NULL;
}

Test(server_epoll, send_acked_and_delivered_in_one_pass) {
  eh h;
  eh_init(&h, NULL, NULL);
  const char *cid = make_direct(&h, "alice", "bob");
  eh_conn *a = eh_ws_open(&h, "alice", "a");
  eh_conn *b = eh_ws_open(&h, "bob", "b");
  eh_pump(&h, 50);
  a->len = b->len = 0;
  char m[256];
  snprintf(m, sizeof m,
           "{\"type\":\"send\",\"client_msg_id\":\"one\","
           "\"conversation_id\":\"%s\",\"body\":\"hi\"}",
           cid);
  eh_ws_send_text(&h, a, m);
  /* One pass reads the send, commits it, and writes the ack and the
   * delivery: no second round, no timer between rounds. */
  cr_assert_eq(chat_epoll_service(h.t, 1000), CHAT_OK);
  cr_assert(frame_waiting(a, "\"type\":\"ack\""), "no ack after one pass");
  cr_assert(frame_waiting(b, "\"type\":\"message\""),
            "no delivery after one pass");
  eh_close(a);
  eh_close(b);
  eh_fini(&h);
}

/* Pings in one write; how many send() calls carried the pongs. */
static void pongs(eh *h, eh_conn *c, int n, double *sends, double *msgs) {
  double s0 = eh_metric(h, "chat_ws_send_calls_total");
  double m0 = eh_metric(h, "chat_ws_messages_sent_total");
  char *all = malloc((size_t)n * 64);
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    char p[48];
    int pl = snprintf(p, sizeof p, "{\"type\":\"ping\",\"nonce\":\"%d\"}", i);
    k += eh_ws_frame((uint8_t *)all + k, 0x81, p, (size_t)pl, true);
  }
  eh_send(h, c, all, k);
  free(all);
  int got = 0;
  while (got < n) {
    eh_frame f;
    cr_assert(eh_ws_expect_text(h, c, "\"pong\"", &f, 5000), "got %d", got);
    eh_frame_free(&f);
    got++;
  }
  *sends = eh_metric(h, "chat_ws_send_calls_total") - s0;
  *msgs = eh_metric(h, "chat_ws_messages_sent_total") - m0;
}

Test(server_epoll, pending_frames_go_out_in_one_send) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  double sends, msgs;
  pongs(&h, c, 100, &sends, &msgs);
  cr_assert_eq(msgs, 100);
  /* 100 pongs from one read: a handful of sends, not 100. */
  cr_assert_leq(sends, 4, "%g sends for 100 frames", sends);
  eh_close(c);
  eh_fini(&h);
}

Test(server_epoll, write_budget_bounds_one_connection_per_pass) {
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .write_budget_bytes = 1};
  eh h;
  eh_init(&h, &s, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  double sends, msgs;
  pongs(&h, c, 50, &sends, &msgs);
  cr_assert_eq(msgs, 50);
  /* One frame per pass at most: the budget is honoured. */
  cr_assert_geq(sends, 50, "%g sends for 50 frames", sends);
  eh_close(c);
  eh_fini(&h);
}

/* Write junk until the close frame is read. A write that fails first
 * (the server's kernel reset the connection because it closed with bytes
 * unread) ends the session for a real client before it reads the close
 * frame: websockets, browsers and the lws client report 1006 then. */
static uint16_t close_while_writing(eh *h, eh_conn *c, bool *write_failed) {
  char junk[4096];
  memset(junk, 'j', sizeof junk);
  *write_failed = false;
  uint64_t t0 = ms_now();
  while (ms_now() - t0 < 4000) {
    for (int k = 0; k < 3; k++) {
      ssize_t w = send(c->fd, junk, sizeof junk, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w < 0 && errno != EAGAIN) {
        *write_failed = true;
        return 0;
      }
      eh_pump(h, 1);
    }
    eh_fill(h, c, 1);
    eh_frame f;
    while (eh_ws_recv(h, c, &f, 0)) {
      uint16_t code = f.op == 8 ? f.close_code : 0;
      eh_frame_free(&f);
      if (code)
        return code;
    }
  }
  return 0;
}

Test(server_epoll, close_code_arrives_while_the_peer_keeps_writing) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_ws_open(&h, "alice", "phone");
  /* A protocol error (an unmasked frame), then junk the server will
   * never read as frames. */
  uint8_t fr[64];
  size_t n = eh_ws_frame(fr, 0x81, "{}", 2, false);
  eh_send(&h, c, fr, n);
  bool failed;
  uint16_t code = close_while_writing(&h, c, &failed);
  cr_assert(!failed, "a write failed before the close frame was read");
  cr_assert_eq(code, 1002);
  eh_close(c);
  /* And a close the core asks for (1008, garbage), the same way. */
  c = eh_ws_open(&h, "bob", "phone");
  for (int i = 0; i < 31; i++)
    eh_ws_send_text(&h, c, "garbage");
  code = close_while_writing(&h, c, &failed);
  cr_assert(!failed, "a write failed before the close frame was read");
  cr_assert_eq(code, 1008);
  cr_assert_geq(eh_metric(&h, "chat_ws_lingering_closes_total"), 2);
  eh_close(c);
  eh_fini(&h);
}

/* The drain's close is 1012, after goaway (PROTOCOL.md section 8). */
Test(server_epoll, drain_closes_1012_and_refuses_new_connections) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *a = eh_ws_open(&h, "alice", "a");
  eh_conn *b = eh_ws_open(&h, "bob", "b");
  chat_epoll_drain(h.t);
  eh_frame g;
  cr_assert(eh_ws_expect_text(&h, a, "{\"type\":\"goaway\",\"reason\":"
                                     "\"drain\",\"retry_after_ms\":10000}",
                              &g, 3000));
  eh_frame_free(&g);
  cr_assert_eq(close_code_of(&h, a, 3000), 1012);
  cr_assert_eq(close_code_of(&h, b, 3000), 1012);
  cr_assert(eh_wait_closed(&h, a, 3000));
  cr_assert(eh_wait_closed(&h, b, 3000));
  uint64_t t0 = ms_now();
  while (chat_epoll_connections(h.t) && ms_now() - t0 < 5000)
    eh_pump(&h, 10);
  cr_assert_eq(chat_epoll_connections(h.t), 0);
  eh_conn *c = eh_connect(&h);
  cr_assert(eh_wait_closed(&h, c, 3000), "a new connection was kept");
  eh_close(a);
  eh_close(b);
  eh_close(c);
  eh_fini(&h);
}

typedef struct waker {
  chat_epoll *t;
  unsigned delay_ms;
} waker;

static void *wake_later(void *p) {
  waker *w = p;
  usleep(w->delay_ms * 1000);
  chat_epoll_wake(w->t);
  return NULL;
}

Test(server_epoll, wake_from_another_thread) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_pump(&h, 20); /* accept-ready and timers settle */
  waker w = {h.t, 100};
  pthread_t th;
  pthread_create(&th, NULL, wake_later, &w);
  uint64_t t0 = ms_now();
  cr_assert_eq(chat_epoll_service(h.t, 5000), CHAT_OK);
  /* Timers due inside the wait may end it early; a wake surely does. */
  cr_assert_lt(ms_now() - t0, 2000);
  pthread_join(th, NULL);
  eh_fini(&h);
}

Test(server_epoll, connections_past_the_cap_are_closed_at_accept) {
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .max_connections = 3};
  eh h;
  eh_init(&h, &s, NULL);
  eh_conn *c[3];
  for (int i = 0; i < 3; i++) {
    char dev[8];
    snprintf(dev, sizeof dev, "d%d", i);
    c[i] = eh_ws_open(&h, "alice", dev);
  }
  eh_conn *x = eh_connect(&h);
  cr_assert(eh_wait_closed(&h, x, 3000));
  /* The others carry on. */
  eh_ws_send_text(&h, c[0], "{\"type\":\"ping\",\"nonce\":\"ok\"}");
  eh_frame f;
  cr_assert(eh_ws_expect_text(&h, c[0], "\"ok\"", &f, 3000));
  eh_frame_free(&f);
  /* Room again once one goes. */
  eh_close(c[2]);
  eh_pump(&h, 50);
  cr_assert_eq(eh_metric(&h, "chat_connections_refused_at_cap_total"), 1);
  for (int i = 0; i < 2; i++)
    eh_close(c[i]);
  eh_close(x);
  eh_fini(&h);
}

Test(server_epoll, settings_are_checked) {
  eh h;
  eh_init(&h, NULL, NULL);
  chat_epoll *t = NULL;
  chat_errbuf err = {""};
  chat_epoll_settings s = {.version = 0};
  cr_assert_eq(chat_epoll_new(&t, h.srv, &s, NULL, &err), CHAT_ERR_INVAL);
  cr_assert(strstr(err.msg, "settings.version"), "%s", err.msg);
  s.version = CHAT_EPOLL_SETTINGS_V1 + 1;
  cr_assert_eq(chat_epoll_new(&t, h.srv, &s, NULL, &err), CHAT_ERR_INVAL);
  s.version = CHAT_EPOLL_SETTINGS_V1;
  s.max_header_bytes = 10;
  cr_assert_eq(chat_epoll_new(&t, h.srv, &s, NULL, &err), CHAT_ERR_INVAL);
  cr_assert(strstr(err.msg, "max_header_bytes"), "%s", err.msg);
  s.max_header_bytes = 0;
  s.static_dir = "/nonexistent/dir";
  cr_assert_eq(chat_epoll_new(&t, h.srv, &s, NULL, &err), CHAT_ERR_INVAL);
  cr_assert(strstr(err.msg, "static_dir"), "%s", err.msg);
  cr_assert_null(t);
  s.static_dir = NULL;
  cr_assert_eq(chat_epoll_new(&t, h.srv, &s, NULL, &err), CHAT_OK);
  chat_epoll_listen_options lo = {.version = CHAT_EPOLL_LISTEN_V1,
                                  .host = "not-an-ip"};
  cr_assert_eq(chat_epoll_listen(t, &lo, &err), CHAT_ERR_INVAL);
  lo.host = "127.0.0.1";
  lo.port = h.port; /* taken */
  cr_assert_eq(chat_epoll_listen(t, &lo, &err), CHAT_ERR_MODULE);
  lo.port = 0;
  cr_assert_eq(chat_epoll_listen(t, &lo, &err), CHAT_OK);
  cr_assert_eq(chat_epoll_listen(t, &lo, &err), CHAT_ERR_STATE);
  chat_epoll_free(t);
  chat_epoll_free(NULL);
  eh_fini(&h);
}

Test(server_epoll, a_commit_that_completes_later_is_acked) {
  /* The store answers from a worker thread: the ack comes when its
   * completion is posted and the transport, woken, runs it. */
  eh h;
  eh_init_defer(&h, NULL, NULL, DEFER_THREAD);
  eh_conn *a = eh_ws_open(&h, "alice", "a");
  /* A conversation, created over REST with the store answering later. */
  char tok[512], req[2048];
  eh_token(&h, "alice", "a", tok);
  const char *body = "{\"type\":\"direct\",\"members\":[\"bob\"]}";
  snprintf(req, sizeof req,
           "POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
           "Content-Length: %zu\r\n\r\n%s",
           tok, strlen(body), body);
  eh_conn *c = eh_connect(&h);
  eh_sends(&h, c, req);
  eh_resp r;
  bool got = false;
  for (int i = 0; i < 200 && !got; i++) {
    defer_store_run(h.defer);
    got = eh_read_resp(&h, c, &r, 20);
  }
  cr_assert(got, "no answer to the create");
  cr_assert(r.status == 200 || r.status == 201, "%d %s", r.status, r.body);
  char *p = strstr(r.body, "\"conversation_id\":\"");
  cr_assert_not_null(p);
  char cid[64];
  p += 19;
  size_t n = strcspn(p, "\"");
  memcpy(cid, p, n);
  cid[n] = 0;
  eh_resp_free(&r);
  eh_close(c);
  char m[256];
  snprintf(m, sizeof m,
           "{\"type\":\"send\",\"client_msg_id\":\"later\","
           "\"conversation_id\":\"%s\",\"body\":\"hi\"}",
           cid);
  eh_ws_send_text(&h, a, m);
  eh_frame f;
  got = false;
  for (int i = 0; i < 200 && !got; i++) {
    defer_store_run(h.defer);
    got = eh_ws_expect_text(&h, a, "\"type\":\"ack\"", &f, 20);
  }
  cr_assert(got, "no ack");
  cr_assert(strstr(f.data, "\"later\""));
  eh_frame_free(&f);
  eh_close(a);
  eh_fini(&h);
}

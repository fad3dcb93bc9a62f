/* lib/transport/epoll/http_epoll.c over real loopback sockets: the JSON
 * error shape everywhere, request smuggling refused, chunked bodies,
 * pipelining, the upgrade, the header phase budget, body caps and
 * timeouts, media headers and static files. */
#define _GNU_SOURCE

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "epoll_harness.h"

static uint64_t ms_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One request on a fresh connection; the answer in r. */
static void ask(eh *h, const char *raw, eh_resp *r) {
  eh_conn *c = eh_connect(h);
  cr_assert(eh_http(h, c, raw, r, 5000), "no answer to %s", raw);
  eh_close(c);
}

static void assert_json_error(const eh_resp *r, int status,
                              const char *code) {
  cr_assert_eq(r->status, status, "%s", r->head);
  cr_assert_str_eq(eh_field(r, "content-type"), "application/json");
  char want[128];
  snprintf(want, sizeof want, "{\"error\":{\"code\":\"%s\",\"message\":\"",
           code);
  cr_assert_eq(strncmp(r->body, want, strlen(want)), 0, "%s", r->body);
  cr_assert_str_eq(r->body + r->body_len - 3, "\"}}");
  cr_assert_str_eq(eh_field(r, "x-content-type-options"), "nosniff");
}

Test(http_epoll, healthz_metrics_and_404) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_resp r;
  ask(&h, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(r.body, "{\"ok\":true}");
  cr_assert_str_eq(eh_field(&r, "cache-control"), "no-store");
  eh_resp_free(&r);
  /* HEAD: the GET's fields, no body. */
  eh_conn *c = eh_connect(&h);
  eh_sends(&h, c, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  eh_fill(&h, c, 200);
  eh_fill(&h, c, 100);
  c->buf[c->len] = 0;
  cr_assert(strstr(c->buf, "Content-Length: 11\r\n"), "%s", c->buf);
  cr_assert_str_eq(c->buf + c->len - 4, "\r\n\r\n", "a body followed");
  eh_close(c);
  ask(&h, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  cr_assert_eq(r.status, 200);
  cr_assert(strstr(eh_field(&r, "content-type"), "text/plain; version=0.0.4"));
  cr_assert(strstr(r.body, "chat_sessions_open "));
  cr_assert(strstr(r.body, "chat_http_header_phase "));
  eh_resp_free(&r);
  ask(&h, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  assert_json_error(&r, 404, "not_found");
  eh_resp_free(&r);
  ask(&h, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
      &r);
  assert_json_error(&r, 405, "method_not_allowed");
  eh_resp_free(&r);
  eh_fini(&h);
}

Test(http_epoll, every_error_is_json) {
  eh h;
  eh_init(&h, NULL, NULL);
  static const struct {
    const char *req;
    int status;
    const char *code;
  } cases[] = {
      {"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
      {"GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
      {"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"},
      {"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n", 405,
       "method_not_allowed"},
      {"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 501, "not_implemented"},
      {"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501, "not_implemented"},
      {"GET / HTTP/1.1\r\n\r\n", 400, "bad_request"},
      {"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "version_not_supported"},
      {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "bad_request"},
      {"GET / HTTP/1.1\nHost: x\n\n", 400, "bad_request"},
      {"GET x HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
      {"GET /chat/v1/ws HTTP/1.1\r\nHost: x\r\n\r\n", 426,
       "upgrade_required"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    eh_resp r;
    ask(&h, cases[i].req, &r);
    assert_json_error(&r, cases[i].status, cases[i].code);
    eh_resp_free(&r);
  }
  /* Over-long fields and request lines. */
  char *big = malloc(20000);
  strcpy(big, "GET / HTTP/1.1\r\nHost: x\r\nX-Long: ");
  memset(big + strlen(big), 'a', 10000);
  strcpy(big + strlen("GET / HTTP/1.1\r\nHost: x\r\nX-Long: ") + 10000,
         "\r\n\r\n");
  eh_resp r;
  ask(&h, big, &r);
  assert_json_error(&r, 431, "headers_too_large");
  eh_resp_free(&r);
  strcpy(big, "GET /");
  memset(big + 5, 'p', 10000);
  strcpy(big + 10005, " HTTP/1.1\r\nHost: x\r\n\r\n");
  ask(&h, big, &r);
  assert_json_error(&r, 414, "uri_too_long");
  eh_resp_free(&r);
  free(big);
  eh_fini(&h);
}

Test(http_epoll, content_length_and_chunked_together_is_400_and_close) {
  eh h;
  eh_init(&h, NULL, NULL);
  eh_conn *c = eh_connect(&h);
  /* The chunk's content is a second request: it must never be answered. */
  eh_sends(&h, c,
           "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
           "Transfer-Encoding: chunked\r\n\r\n"
           "2a\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\r\n0\r\n\r\n");
  eh_resp r;
  cr_assert(eh_read_resp(&h, c, &r, 5000));
  assert_json_error(&r, 400, "bad_request");
  cr_assert_str_eq(eh_field(&r, "connection"), "close");
  eh_resp_free(&r);
  cr_assert(eh_wait_closed(&h, c, 5000));
  cr_assert_eq(c->len, 0, "more was answered: %.*s", (int)c->len, c->buf);
  eh_close(c);
  eh_fini(&h);
}

Test(http_epoll, chunked_body_is_decoded) {
  eh h;
  eh_init(&h, NULL, NULL);
  char tok[512], req[2048];
  eh_token(&h, "alice", "a", tok);
  const char *body = "{\"type\":\"direct\",\"members\":[\"bob\"]}";
  snprintf(req, sizeof req,
           "POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
           "Transfer-Encoding: chunked\r\n\r\n"
           "5;x=y\r\n%.5s\r\n%zx\r\n%s\r\n0\r\nTrailer: t\r\n\r\n"
           "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
           tok, body, strlen(body) - 5, body + 5);
  eh_conn *c = eh_connect(&h);
  eh_resp r;
  cr_assert(eh_http(&h, c, req, &r, 5000));
  cr_assert_eq(r.status, 201, "%s %s", r.head, r.body);
  cr_assert(strstr(r.body, "\"conversation_id\""));
  eh_resp_free(&r);
  /* The request after the body is its own request. */
  cr_assert(eh_read_resp(&h, c, &r, 5000));
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(r.body, "{\"ok\":true}");
  eh_resp_free(&r);
  eh_close(c);
  /* A coding we do not implement: 501, and the connection goes. */
  c = eh_connect(&h);
  cr_assert(eh_http(&h, c,
                    "POST /api/v1/media HTTP/1.1\r\nHost: x\r\n"
                    "Transfer-Encoding: gzip, chunked\r\n\r\n",
                    &r, 5000));
  assert_json_error(&r, 501, "not_implemented");
  eh_resp_free(&r);
  cr_assert(eh_wait_closed(&h, c, 5000));
  eh_close(c);
  /* A malformed chunk: 400 and close. */
  snprintf(req, sizeof req,
           "POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\nTransfer-Encoding: chunked\r\n\r\n"
           "zz\r\n",
           tok);
  c = eh_connect(&h);
  cr_assert(eh_http(&h, c, req, &r, 5000));
  assert_json_error(&r, 400, "bad_request");
  eh_resp_free(&r);
  cr_assert(eh_wait_closed(&h, c, 5000));
  eh_close(c);
  eh_fini(&h);
}

Test(http_epoll, pipelined_requests_answered_in_order) {
  eh h;
  eh_init(&h, NULL, NULL);
  char tok[512], req[4096];
  eh_token(&h, "alice", "a", tok);
  snprintf(req, sizeof req,
           "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
           "GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\n\r\n"
           "POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\nContent-Length: 13\r\n\r\n{not json!!}\n"
           "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
           tok, tok);
  eh_conn *c = eh_connect(&h);
  /* Byte by byte: the framing must not depend on how reads fall. */
  for (size_t i = 0; req[i]; i++) {
    eh_send(&h, c, req + i, 1);
    eh_pump(&h, 0);
  }
  int want[] = {200, 200, 400, 404};
  for (int i = 0; i < 4; i++) {
    eh_resp r;
    cr_assert(eh_read_resp(&h, c, &r, 5000), "answer %d", i);
    cr_assert_eq(r.status, want[i], "answer %d: %s", i, r.head);
    eh_resp_free(&r);
  }
  eh_close(c);
  eh_fini(&h);
}

Test(http_epoll, expect_100_continue) {
  eh h;
  eh_init(&h, NULL, NULL);
  char tok[512], req[2048];
  eh_token(&h, "alice", "a", tok);
  snprintf(req, sizeof req,
           "POST /api/v1/media HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\nContent-Type: image/png\r\n"
           "Content-Length: 4\r\nExpect: 100-continue\r\n\r\n",
           tok);
  eh_conn *c = eh_connect(&h);
  eh_resp r;
  cr_assert(eh_http(&h, c, req, &r, 5000));
  cr_assert_eq(r.status, 100);
  eh_resp_free(&r);
  eh_sends(&h, c, "\x89PNG");
  cr_assert(eh_read_resp(&h, c, &r, 5000));
  cr_assert_eq(r.status, 201, "%s", r.body);
  eh_resp_free(&r);
  eh_close(c);
  eh_fini(&h);
}

Test(http_epoll, upgrade_refusals_and_subprotocols) {
  eh h;
  eh_init(&h, NULL, NULL);
  char req[2048];
  eh_resp r;
  /* No token: a complete 401 with the JSON body, then the close. */
  eh_conn *c = eh_connect(&h);
  cr_assert(eh_http(&h, c,
                    "GET /chat/v1/ws HTTP/1.1\r\nHost: x\r\n"
                    "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                    "Sec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
                    &r, 5000));
  cr_assert_eq(r.status, 401);
  cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"unauthorized\","
                           "\"message\":\"missing or invalid token\"}}");
  cr_assert(strncmp(eh_field(&r, "www-authenticate"), "Bearer", 6) == 0);
  cr_assert_str_eq(eh_field(&r, "connection"), "close");
  eh_resp_free(&r);
  cr_assert(eh_wait_closed(&h, c, 5000));
  eh_close(c);
  /* "chat-http, chat.v1": chat.v1 is chosen. */
  eh_upgrade_request(&h, "alice", "a", NULL, req, sizeof req);
  char *p = strstr(req, "Sec-WebSocket-Protocol: chat.v1");
  cr_assert_not_null(p);
  char req2[2048];
  snprintf(req2, sizeof req2, "%.*sSec-WebSocket-Protocol: chat-http, "
                              "chat.v1%s",
           (int)(p - req), req, p + strlen("Sec-WebSocket-Protocol: chat.v1"));
  ask(&h, req2, &r);
  cr_assert_eq(r.status, 101, "%s", r.head);
  cr_assert_str_eq(eh_field(&r, "sec-websocket-protocol"), "chat.v1");
  eh_resp_free(&r);
  /* Only others offered: 400. */
  snprintf(req2, sizeof req2, "%.*sSec-WebSocket-Protocol: other.v9%s",
           (int)(p - req), req, p + strlen("Sec-WebSocket-Protocol: chat.v1"));
  ask(&h, req2, &r);
  assert_json_error(&r, 400, "bad_request");
  eh_resp_free(&r);
  /* None offered: accepted, none named in the answer. */
  snprintf(req2, sizeof req2, "%.*s%s", (int)(p - req), req,
           p + strlen("Sec-WebSocket-Protocol: chat.v1\r\n"));
  ask(&h, req2, &r);
  cr_assert_eq(r.status, 101, "%s", r.head);
  cr_assert_null(eh_field(&r, "sec-websocket-protocol"));
  eh_resp_free(&r);
  /* Another WebSocket version: 426 naming 13. */
  p = strstr(req, "Sec-WebSocket-Version: 13");
  snprintf(req2, sizeof req2, "%.*sSec-WebSocket-Version: 8%s",
           (int)(p - req), req, p + strlen("Sec-WebSocket-Version: 13"));
  ask(&h, req2, &r);
  assert_json_error(&r, 426, "upgrade_required");
  cr_assert_str_eq(eh_field(&r, "sec-websocket-version"), "13");
  eh_resp_free(&r);
  /* The token as ?access_token=. */
  char tok[512];
  eh_token(&h, "alice", "q", tok);
  snprintf(req2, sizeof req2,
           "GET /chat/v1/ws?access_token=%s HTTP/1.1\r\nHost: x\r\n"
           "Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n"
           "Sec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
           tok);
  ask(&h, req2, &r);
  cr_assert_eq(r.status, 101, "%s", r.head);
  eh_resp_free(&r);
  /* Wrong path: 404 JSON. */
  p = strstr(req, "/chat/v1/ws");
  snprintf(req2, sizeof req2, "%.*s/chat/v2/ws%s", (int)(p - req), req,
           p + strlen("/chat/v1/ws"));
  ask(&h, req2, &r);
  assert_json_error(&r, 404, "not_found");
  eh_resp_free(&r);
  eh_fini(&h);
}

Test(http_epoll, header_timeout_cuts_silent_and_slow_clients) {
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .header_timeout_ms = 300};
  eh h;
  eh_init(&h, &s, NULL);
  eh_conn *silent = eh_connect(&h);
  eh_conn *slow = eh_connect(&h);
  uint64_t t0 = ms_now();
  const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  size_t i = 0;
  while (!(silent->eof && slow->eof) && ms_now() - t0 < 3000) {
    if (req[i] && !slow->eof)
      eh_send(&h, slow, req + i++, 1);
    eh_fill(&h, silent, 40);
    eh_fill(&h, slow, 40);
  }
  uint64_t dt = ms_now() - t0;
  cr_assert(silent->eof && slow->eof);
  cr_assert_geq(dt, 250);
  cr_assert_leq(dt, 1500);
  cr_assert_eq(slow->len, 0, "the slow client got an answer");
  cr_assert_geq(eh_metric(&h, "chat_http_header_timeouts_total"), 2);
  eh_close(silent);
  eh_close(slow);
  eh_fini(&h);
}

Test(http_epoll, header_phase_sheds_the_oldest) {
  /* Cut only connections in the header phase for at least a second
   * (half the header timeout, at most 1 s). */
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .header_max = 6,
                           .header_per_source = 3,
                           .header_timeout_ms = 2000};
  eh h;
  eh_init(&h, &s, NULL);
  /* An attacker on 127.0.0.2 fills its share and lets it grow old. */
  eh_conn *att[5];
  for (int i = 0; i < 3; i++)
    att[i] = eh_connect_from(&h, "127.0.0.2");
  eh_pump(&h, 1100);
  /* Two more of its own push out its two oldest, nobody else's. */
  for (int i = 3; i < 5; i++) {
    att[i] = eh_connect_from(&h, "127.0.0.2");
    eh_pump(&h, 5);
  }
  for (int i = 0; i < 5; i++)
    eh_fill(&h, att[i], 10);
  cr_assert(att[0]->eof && att[1]->eof);
  cr_assert(!att[2]->eof && !att[3]->eof && !att[4]->eof);
  /* A burst of honest clients from one address (a proxy), past both
   * budgets: all young, all read and answered, none cut. */
  eh_conn *burst[5];
  for (int i = 0; i < 5; i++) {
    burst[i] = eh_connect_from(&h, "127.0.0.4");
    eh_sends(&h, burst[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  for (int i = 0; i < 5; i++) {
    eh_resp r;
    cr_assert(eh_read_resp(&h, burst[i], &r, 3000), "burst %d cut", i);
    cr_assert_eq(r.status, 200);
    eh_resp_free(&r);
  }
  /* Over the total budget, the oldest (the attacker's) went first. */
  eh_fill(&h, att[2], 10);
  cr_assert(att[2]->eof, "the oldest was not shed");
  cr_assert(!att[3]->eof && !att[4]->eof);
  cr_assert_geq(eh_metric(&h, "chat_http_header_shed_total"), 3);
  for (int i = 0; i < 5; i++) {
    eh_close(att[i]);
    eh_close(burst[i]);
  }
  eh_fini(&h);
}

static void media_post(eh *h, eh_conn *c, const char *tok, size_t len,
                       const char *type) {
  char req[2048];
  snprintf(req, sizeof req,
           "POST /api/v1/media HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\nContent-Type: %s\r\n"
           "Content-Length: %zu\r\n\r\n",
           tok, type, len);
  eh_sends(h, c, req);
}

Test(http_epoll, body_caps_answer_at_once) {
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .user_body_bytes_max = 100000,
                           .body_bytes_max = 150000};
  eh h;
  eh_init(&h, &s, NULL);
  char ta[512], tb[512];
  eh_token(&h, "alice", "a", ta);
  eh_token(&h, "bob", "b", tb);
  /* Alice holds 90,000 bytes in flight (sent slowly: not at all). */
  eh_conn *a1 = eh_connect(&h);
  media_post(&h, a1, ta, 90000, "image/png");
  eh_pump(&h, 30);
  /* Her next one passes her own cap: 429 at once, before any body. */
  eh_conn *a2 = eh_connect(&h);
  media_post(&h, a2, ta, 20000, "image/png");
  eh_resp r;
  cr_assert(eh_read_resp(&h, a2, &r, 3000));
  assert_json_error(&r, 429, "rate_limited");
  eh_resp_free(&r);
  cr_assert(eh_wait_closed(&h, a2, 3000));
  /* Bob's passes the total: 503 at once. */
  eh_conn *b1 = eh_connect(&h);
  media_post(&h, b1, tb, 70000, "image/png");
  cr_assert(eh_read_resp(&h, b1, &r, 3000));
  assert_json_error(&r, 503, "unavailable");
  eh_resp_free(&r);
  /* A small one still fits. */
  eh_conn *b2 = eh_connect(&h);
  media_post(&h, b2, tb, 4, "image/png");
  eh_sends(&h, b2, "\x89PNG");
  cr_assert(eh_read_resp(&h, b2, &r, 3000));
  cr_assert_eq(r.status, 201, "%s", r.body);
  eh_resp_free(&r);
  cr_assert_eq(eh_metric(&h, "chat_http_body_bytes"), 90000);
  /* Alice's stalled upload ends: the bytes are free again. */
  eh_close(a1);
  eh_pump(&h, 50);
  cr_assert_eq(eh_metric(&h, "chat_http_body_bytes"), 0);
  eh_close(a2);
  eh_close(b1);
  eh_close(b2);
  eh_fini(&h);
}

Test(http_epoll, stalled_body_times_out_with_408) {
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .body_timeout_ms = 300};
  eh h;
  eh_init(&h, &s, NULL);
  char tok[512];
  eh_token(&h, "alice", "a", tok);
  eh_conn *c = eh_connect(&h);
  media_post(&h, c, tok, 100, "image/png");
  eh_sends(&h, c, "0123456789");
  uint64_t t0 = ms_now();
  eh_resp r;
  cr_assert(eh_read_resp(&h, c, &r, 3000));
  assert_json_error(&r, 408, "timeout");
  cr_assert_geq(ms_now() - t0, 250);
  eh_resp_free(&r);
  cr_assert(eh_wait_closed(&h, c, 3000));
  eh_close(c);
  eh_fini(&h);
}

Test(http_epoll, too_large_is_413_and_the_answer_survives_the_body) {
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .max_http_body_bytes = 4096};
  eh h;
  eh_init(&h, &s, NULL);
  char tok[512];
  eh_token(&h, "alice", "a", tok);
  eh_conn *c = eh_connect(&h);
  media_post(&h, c, tok, 200000, "application/octet-stream");
  /* The client sends its body anyway; the answer must still arrive. */
  char junk[8192];
  memset(junk, 'x', sizeof junk);
  for (int i = 0; i < 24; i++) {
    ssize_t w = send(c->fd, junk, sizeof junk, MSG_NOSIGNAL | MSG_DONTWAIT);
    cr_assert(w > 0 || errno == EAGAIN, "write failed: %s", strerror(errno));
    eh_pump(&h, 1);
  }
  eh_resp r;
  cr_assert(eh_read_resp(&h, c, &r, 3000));
  assert_json_error(&r, 413, "too_large");
  eh_resp_free(&r);
  eh_close(c);
  eh_fini(&h);
}

static void upload(eh *h, const char *tok, const char *type,
                   const void *data, size_t n, char *media_id) {
  eh_conn *c = eh_connect(h);
  media_post(h, c, tok, n, type);
  eh_send(h, c, data, n);
  eh_resp r;
  cr_assert(eh_read_resp(h, c, &r, 5000));
  cr_assert_eq(r.status, 201, "%s", r.body);
  char *p = strstr(r.body, "\"media_id\":\"");
  cr_assert_not_null(p);
  p += 12;
  size_t k = strcspn(p, "\"");
  memcpy(media_id, p, k);
  media_id[k] = 0;
  eh_resp_free(&r);
  eh_close(c);
}

Test(http_epoll, media_headers) {
  eh h;
  eh_init(&h, NULL, NULL);
  char tok[512], id[64], req[2048];
  eh_token(&h, "alice", "a", tok);
  upload(&h, tok, "text/html", "<script>x</script>", 18, id);
  snprintf(req, sizeof req,
           "GET /api/v1/media/%s HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\n\r\n",
           id, tok);
  eh_resp r;
  ask(&h, req, &r);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(eh_field(&r, "content-disposition"), "attachment");
  cr_assert_str_eq(eh_field(&r, "x-content-type-options"), "nosniff");
  cr_assert(strstr(eh_field(&r, "content-security-policy"), "sandbox"));
  cr_assert(strstr(eh_field(&r, "content-security-policy"),
                   "default-src 'none'"));
  eh_resp_free(&r);
  upload(&h, tok, "image/png", "\x89PNG....", 8, id);
  snprintf(req, sizeof req,
           "GET /api/v1/media/%s HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\n\r\n",
           id, tok);
  ask(&h, req, &r);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(eh_field(&r, "content-type"), "image/png");
  cr_assert_str_eq(eh_field(&r, "content-disposition"), "inline");
  eh_resp_free(&r);
  /* SVG carries script: a download, never inline. */
  upload(&h, tok, "image/svg+xml", "<svg/>", 6, id);
  snprintf(req, sizeof req,
           "GET /api/v1/media/%s HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\n\r\n",
           id, tok);
  ask(&h, req, &r);
  cr_assert_str_eq(eh_field(&r, "content-disposition"), "attachment");
  eh_resp_free(&r);
  eh_fini(&h);
}

Test(http_epoll, big_answer_written_as_the_reader_reads) {
  eh h;
  eh_init(&h, NULL, NULL);
  char tok[512], id[64], req[2048];
  eh_token(&h, "alice", "a", tok);
  size_t n = 8u << 20;
  char *blob = malloc(n);
  for (size_t i = 0; i < n; i++)
    blob[i] = (char)(i * 31 + 7);
  upload(&h, tok, "application/octet-stream", blob, n, id);
  snprintf(req, sizeof req,
           "GET /api/v1/media/%s HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\n\r\n",
           id, tok);
  eh_conn *c = eh_connect_rcvbuf(&h, 65536);
  /* A request pipelined behind it waits for the answer, then is served. */
  strcat(req, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  eh_sends(&h, c, req);
  eh_pump(&h, 50);
  /* Not read yet: what the socket did not take is held and counted. */
  cr_assert_gt(eh_metric(&h, "chat_http_body_bytes"), 0);
  eh_resp r;
  cr_assert(eh_read_resp(&h, c, &r, 10000));
  cr_assert_eq(r.status, 200);
  cr_assert_eq(r.body_len, n);
  cr_assert_eq(memcmp(r.body, blob, n), 0);
  eh_resp_free(&r);
  cr_assert(eh_read_resp(&h, c, &r, 5000), "the pipelined request waits");
  cr_assert_str_eq(r.body, "{\"ok\":true}");
  eh_resp_free(&r);
  eh_pump(&h, 20);
  cr_assert_eq(eh_metric(&h, "chat_http_body_bytes"), 0);
  eh_close(c);
  free(blob);
  eh_fini(&h);
}

Test(http_epoll, static_files) {
  char dir[] = "/tmp/eh-static-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/index.html", dir);
  FILE *f = fopen(path, "w");
  fputs("<h1>hi</h1>", f);
  fclose(f);
  snprintf(path, sizeof path, "%s/big.js", dir);
  f = fopen(path, "w");
  for (int i = 0; i < 100000; i++)
    fprintf(f, "%06d\n", i);
  fclose(f);
  snprintf(path, sizeof path, "%s/.secret", dir);
  f = fopen(path, "w");
  fputs("hidden", f);
  fclose(f);
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .static_dir = dir};
  eh h;
  eh_init(&h, &s, NULL);
  eh_resp r;
  ask(&h, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  cr_assert_eq(r.status, 200);
  cr_assert_str_eq(r.body, "<h1>hi</h1>");
  cr_assert(strncmp(eh_field(&r, "content-type"), "text/html", 9) == 0);
  cr_assert_str_eq(eh_field(&r, "x-content-type-options"), "nosniff");
  eh_resp_free(&r);
  ask(&h, "GET /big.js HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  cr_assert_eq(r.status, 200);
  cr_assert_eq(r.body_len, 700000);
  cr_assert_eq(memcmp(r.body + 699993, "099999\n", 7), 0);
  eh_resp_free(&r);
  const char *bad[] = {"/.secret", "/../etc/passwd", "/%2e%2e/etc/passwd",
                       "/sub/%2e%2e/%2e%2e/x", "/a%5cb", "/missing.html"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char req[256];
    snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", bad[i]);
    ask(&h, req, &r);
    assert_json_error(&r, 404, "not_found");
    eh_resp_free(&r);
  }
  /* The API is still the API. */
  ask(&h, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  cr_assert_eq(r.status, 200);
  eh_resp_free(&r);
  eh_fini(&h);
  snprintf(path, sizeof path, "%s/index.html", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/big.js", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/.secret", dir);
  unlink(path);
  rmdir(dir);
}

Test(http_epoll, keep_alive_then_its_timeout) {
  chat_epoll_settings s = {.version = CHAT_EPOLL_SETTINGS_V1,
                           .keepalive_timeout_ms = 300};
  eh h;
  eh_init(&h, &s, NULL);
  eh_conn *c = eh_connect(&h);
  for (int i = 0; i < 3; i++) {
    eh_resp r;
    cr_assert(eh_http(&h, c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &r,
                      3000));
    cr_assert_eq(r.status, 200);
    cr_assert_null(eh_field(&r, "connection"));
    eh_resp_free(&r);
  }
  uint64_t t0 = ms_now();
  cr_assert(eh_wait_closed(&h, c, 3000));
  cr_assert_geq(ms_now() - t0, 250);
  eh_close(c);
  /* HTTP/1.0 closes after its answer. */
  c = eh_connect(&h);
  eh_resp r;
  cr_assert(eh_http(&h, c, "GET /healthz HTTP/1.0\r\n\r\n", &r, 3000));
  cr_assert_str_eq(eh_field(&r, "connection"), "close");
  eh_resp_free(&r);
  cr_assert(eh_wait_closed(&h, c, 3000));
  eh_close(c);
  eh_fini(&h);
}

Test(http_epoll, rest_auth_and_rate_limit) {
  /* The REST rate limit is the core's; the transport carries its 429. */
  chat_server_settings ss = {.version = CHAT_SERVER_SETTINGS_V1,
                             .rest_rate_per_minute = 60,
                             .rest_burst = 2};
  eh h;
  eh_init(&h, NULL, &ss);
  eh_resp r;
  ask(&h, "GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  assert_json_error(&r, 401, "unauthorized");
  cr_assert(strncmp(eh_field(&r, "www-authenticate"), "Bearer", 6) == 0);
  eh_resp_free(&r);
  char tok[512], req[1024];
  eh_token(&h, "alice", "a", tok);
  snprintf(req, sizeof req,
           "GET http://h/api/v1/conversations?limit=2&access_token=%s "
           "HTTP/1.1\r\nHost: x\r\n\r\n",
           tok);
  for (int i = 0; i < 2; i++) {
    ask(&h, req, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    eh_resp_free(&r);
  }
  ask(&h, req, &r);
  assert_json_error(&r, 429, "rate_limited");
  cr_assert_str_eq(eh_field(&r, "retry-after"), "1");
  eh_resp_free(&r);
  eh_fini(&h);
}

/* Pump, completing whatever the deferring store holds, until a whole
 * answer is in c (or ms pass). */
static bool read_resp_deferred(eh *h, eh_conn *c, eh_resp *r, unsigned ms) {
  uint64_t end = ms_now() + ms;
  while (ms_now() < end) {
    if (h->defer)
      defer_store_run(h->defer);
    if (eh_read_resp(h, c, r, 20))
      return true;
  }
  return false;
}

/* Another thread: the store's worker posts every completion. */
static void *complete_later(void *p) {
  usleep(150 * 1000);
  defer_store_run(p);
  return NULL;
}

Test(http_epoll, rest_answer_that_comes_later) {
  /* Every store call answers CHAT_PENDING and a worker thread posts its
   * completion: env.wake -> chat_epoll_wake -> chat_server_run_posted ->
   * on_http_response -> the answer is written. */
  eh h;
  eh_init_defer(&h, NULL, NULL, DEFER_THREAD);
  char tok[512], req[2048];
  eh_token(&h, "alice", "a", tok);
  snprintf(req, sizeof req,
           "GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\n\r\n"
           "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
           tok);
  eh_conn *c = eh_connect(&h);
  eh_sends(&h, c, req);
  eh_pump(&h, 100);
  /* Waiting on the store: nothing yet, not even the pipelined request. */
  eh_fill(&h, c, 10);
  cr_assert_eq(c->len, 0, "answered early: %.*s", (int)c->len, c->buf);
  cr_assert_geq(defer_store_pending(h.defer), 1);
  /* While the loop waits (no timer due for 30 s), another thread has
   * the worker post the completion: the wake ends the wait, and that
   * pass runs the posted work and writes the answer. */
  eh_pump(&h, 20);
  pthread_t th;
  pthread_create(&th, NULL, complete_later, h.defer);
  uint64_t t0 = ms_now();
  cr_assert_eq(chat_epoll_service(h.t, 3000), CHAT_OK);
  uint64_t waited = ms_now() - t0;
  pthread_join(th, NULL);
  cr_assert_lt(waited, 1000, "the wake did not end the wait (%llu ms)",
               (unsigned long long)waited);
  eh_resp r;
  cr_assert(read_resp_deferred(&h, c, &r, 5000), "no deferred answer");
  cr_assert_eq(r.status, 200, "%s", r.body);
  cr_assert(strstr(r.body, "\"conversations\""), "%s", r.body);
  eh_resp_free(&r);
  /* Then the request behind it, in order. */
  cr_assert(read_resp_deferred(&h, c, &r, 5000));
  cr_assert_str_eq(r.body, "{\"ok\":true}");
  eh_resp_free(&r);
  eh_close(c);
  cr_assert_geq(eh_metric(&h, "chat_rest_deferred_total"), 1);
  eh_fini(&h);
}

Test(http_epoll, a_connection_gone_cancels_its_pending_request) {
  eh h;
  eh_init_defer(&h, NULL, NULL, DEFER_THREAD);
  char tok[512], req[2048];
  eh_token(&h, "alice", "a", tok);
  snprintf(req, sizeof req,
           "GET /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\n\r\n",
           tok);
  for (int i = 0; i < 5; i++) {
    eh_conn *c = eh_connect(&h);
    eh_sends(&h, c, req);
    eh_pump(&h, 30);
    eh_close(c); /* gone before the store answers */
  }
  eh_pump(&h, 50);
  /* The answers come now, for connections that no longer exist: the
   * transport cancelled them, so nothing touches freed memory (ASan). */
  defer_store_run(h.defer);
  eh_pump(&h, 100);
  /* And the transport carries on. */
  eh_conn *c = eh_connect(&h);
  eh_resp r;
  cr_assert(eh_http(&h, c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", &r,
                    3000));
  cr_assert_eq(r.status, 200);
  eh_resp_free(&r);
  eh_close(c);
  eh_fini(&h);
}

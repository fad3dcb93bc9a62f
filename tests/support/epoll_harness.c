/* See epoll_harness.h. */
#define _GNU_SOURCE

#include "epoll_harness.h"

#include <chat/sqlite.h>

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wake(void *user_data) {
  eh *h = user_data;
  if (h->t)
    chat_epoll_wake(h->t);
}

void eh_init_defer(eh *h, const chat_epoll_settings *settings,
                   const chat_server_settings *server, defer_mode mode) {
  memset(h, 0, sizeof *h);
  strcpy(h->dir, "/tmp/eh-XXXXXX");
  cr_assert_not_null(mkdtemp(h->dir));
  char path[128];
  snprintf(path, sizeof path, "%s/token.key", h->dir);
  bool created;
  cr_assert_eq(chat_sodium_key_load_or_create(&h->key, path, &created, NULL),
               CHAT_OK);
  chat_auth_ops auth;
  cr_assert_eq(chat_sodium_auth_ops(&auth, h->key, NULL), CHAT_OK);
  chat_storage_ops store;
  chat_sqlite_options so = {.version = CHAT_SQLITE_OPTIONS_V1,
                            .sync = CHAT_SQLITE_SYNC_NORMAL};
  cr_assert_eq(chat_sqlite_storage_open(&store, ":memory:", &so, NULL, NULL),
               CHAT_OK);
  if (mode != DEFER_OFF) {
    chat_storage_ops inner = store;
    h->defer = defer_store_new(&inner, mode, 42, &store);
    cr_assert_not_null(h->defer);
  }
  cr_assert_eq(chat_env_system(&h->env), CHAT_OK);
  h->env.wake = wake;
  h->env.user_data = h;
  chat_server_settings ss = {.version = CHAT_SERVER_SETTINGS_V1};
  if (server)
    ss = *server;
  ss.env = &h->env;
  ss.rate_per_minute = ss.rate_per_minute ? ss.rate_per_minute : 100000;
  chat_server_callbacks cb;
  chat_epoll_server_callbacks(&cb);
  chat_server_modules mods = {.version = CHAT_SERVER_MODULES_V1,
                              .storage = &store,
                              .auth = &auth};
  chat_errbuf err = {""};
  cr_assert_eq(chat_server_new(&h->srv, &ss, &mods, &cb, NULL, NULL, &err),
               CHAT_OK, "%s", err.msg);
  chat_epoll_settings es = {.version = CHAT_EPOLL_SETTINGS_V1};
  if (settings)
    es = *settings;
  cr_assert_eq(chat_epoll_new(&h->t, h->srv, &es, NULL, &err), CHAT_OK, "%s",
               err.msg);
  chat_epoll_listen_options lo = {.version = CHAT_EPOLL_LISTEN_V1,
                                  .host = "127.0.0.1"};
  cr_assert_eq(chat_epoll_listen(h->t, &lo, &err), CHAT_OK, "%s", err.msg);
  h->port = chat_epoll_port(h->t);
  cr_assert_gt(h->port, 0);
}

void eh_init(eh *h, const chat_epoll_settings *settings,
             const chat_server_settings *server) {
  eh_init_defer(h, settings, server, DEFER_OFF);
}

void eh_fini(eh *h) {
  chat_epoll_free(h->t);
  chat_server_free(h->srv);
  chat_sodium_key_free(h->key);
  char path[128];
  snprintf(path, sizeof path, "%s/token.key", h->dir);
  unlink(path);
  rmdir(h->dir);
}

void eh_pump(eh *h, unsigned ms) {
  uint64_t end = now_ms() + ms;
  do {
    cr_assert_eq(chat_epoll_service(h->t, 2), CHAT_OK);
  } while (now_ms() < end);
}

void eh_token(eh *h, const char *user, const char *device, char *out) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t exp = (int64_t)ts.tv_sec * 1000 + 3600 * 1000;
  cr_assert_eq(chat_sodium_token_mint(h->key, user, device, exp, out,
                                      CHAT_SODIUM_TOKEN_BUF, NULL),
               CHAT_OK);
}

static eh_conn *connect_with(eh *h, const char *src, int rcvbuf) {
  eh_conn *c = calloc(1, sizeof *c);
  c->buf = malloc(EH_BUF);
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  cr_assert_geq(c->fd, 0);
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (rcvbuf)
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (src) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &sa.sin_addr);
    cr_assert_eq(bind(c->fd, (struct sockaddr *)&sa, sizeof sa), 0, "%s",
                 strerror(errno));
  }
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(h->port)};
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  int r = connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
  cr_assert(r == 0 || errno == EINPROGRESS, "%s", strerror(errno));
  return c;
}

eh_conn *eh_connect_from(eh *h, const char *src) {
  return connect_with(h, src, 0);
}

eh_conn *eh_connect(eh *h) { return connect_with(h, NULL, 0); }

eh_conn *eh_connect_rcvbuf(eh *h, int bytes) {
  return connect_with(h, NULL, bytes);
}

void eh_close(eh_conn *c) {
  if (!c)
    return;
  close(c->fd);
  free(c->buf);
  free(c);
}

void eh_send(eh *h, eh_conn *c, const void *p, size_t n) {
  size_t off = 0;
  uint64_t end = now_ms() + 10000;
  while (off < n) {
    ssize_t w = send(c->fd, (const char *)p + off, n - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += (size_t)w;
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EINPROGRESS ||
                  errno == ENOTCONN)) {
      cr_assert_lt(now_ms(), end, "send stuck");
      eh_pump(h, 1);
      continue;
    }
    cr_assert_fail("send: %s", strerror(errno));
  }
}

void eh_sends(eh *h, eh_conn *c, const char *s) { eh_send(h, c, s, strlen(s)); }

size_t eh_fill(eh *h, eh_conn *c, unsigned ms) {
  uint64_t end = now_ms() + ms;
  size_t got = 0;
  for (;;) {
    if (c->len >= EH_BUF)
      return got;
    ssize_t n = recv(c->fd, c->buf + c->len, EH_BUF - c->len, 0);
    if (n > 0) {
      c->len += (size_t)n;
      got += (size_t)n;
      continue;
    }
    if (n == 0) {
      c->eof = true;
      return got;
    }
    if (errno == ECONNRESET) {
      c->eof = c->reset = true;
      return got;
    }
    if (got || now_ms() >= end)
      return got;
    eh_pump(h, 1);
  }
}

void eh_consume(eh_conn *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

bool eh_wait_closed(eh *h, eh_conn *c, unsigned ms) {
  uint64_t end = now_ms() + ms;
  while (!c->eof && now_ms() < end) {
    eh_fill(h, c, 5);
    c->len = 0;
  }
  return c->eof;
}

bool eh_read_resp(eh *h, eh_conn *c, eh_resp *r, unsigned ms) {
  memset(r, 0, sizeof *r);
  uint64_t end = now_ms() + ms;
  for (;;) {
    char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (e) {
      size_t hl = (size_t)(e - c->buf) + 4;
      cr_assert_lt(hl, sizeof r->head);
      memcpy(r->head, c->buf, hl);
      r->head[hl] = 0;
      sscanf(r->head, "HTTP/1.1 %d", &r->status);
      const char *cl = eh_field(r, "content-length");
      size_t bl = cl ? strtoul(cl, NULL, 10) : 0;
      if (r->status == 101 || r->status == 100)
        bl = 0;
      if (c->len >= hl + bl) {
        r->body = malloc(bl + 1);
        memcpy(r->body, c->buf + hl, bl);
        r->body[bl] = 0;
        r->body_len = bl;
        eh_consume(c, hl + bl);
        return true;
      }
    }
    if (c->eof || now_ms() >= end)
      return false;
    eh_fill(h, c, 5);
  }
}

bool eh_http(eh *h, eh_conn *c, const char *raw, eh_resp *r, unsigned ms) {
  eh_sends(h, c, raw);
  return eh_read_resp(h, c, r, ms);
}

const char *eh_field(const eh_resp *r, const char *name) {
  static char val[1024];
  size_t nl = strlen(name);
  const char *p = strstr(r->head, "\r\n");
  while (p && p[2] != '\r') {
    p += 2;
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ')
        v++;
      const char *e = strstr(v, "\r\n");
      size_t n = (size_t)(e - v);
      if (n >= sizeof val)
        n = sizeof val - 1;
      memcpy(val, v, n);
      val[n] = 0;
      return val;
    }
    p = strstr(p, "\r\n");
  }
  return NULL;
}

void eh_resp_free(eh_resp *r) {
  free(r->body);
  r->body = NULL;
}

void eh_upgrade_request(eh *h, const char *user, const char *device,
                        const char *extra, char *out, size_t cap) {
  char tok[CHAT_SODIUM_TOKEN_BUF];
  eh_token(h, user, device, tok);
  snprintf(out, cap,
           "GET /chat/v1/ws HTTP/1.1\r\n"
           "Host: 127.0.0.1\r\n"
           "Connection: Upgrade\r\n"
           "Upgrade: websocket\r\n"
           "Sec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Protocol: chat.v1\r\n"
           "Authorization: Bearer %s\r\n"
           "%s\r\n",
           tok, extra ? extra : "");
}

eh_conn *eh_ws_open(eh *h, const char *user, const char *device) {
  eh_conn *c = eh_connect(h);
  char req[2048];
  eh_upgrade_request(h, user, device, NULL, req, sizeof req);
  eh_resp r;
  cr_assert(eh_http(h, c, req, &r, 5000), "no answer to the upgrade");
  cr_assert_eq(r.status, 101, "%s", r.head);
  cr_assert_str_eq(eh_field(&r, "sec-websocket-accept"),
                   "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  eh_resp_free(&r);
  eh_frame f;
  cr_assert(eh_ws_recv(h, c, &f, 5000), "no hello");
  cr_assert(strstr(f.data, "\"type\":\"hello\""), "%s", f.data);
  eh_frame_free(&f);
  return c;
}

size_t eh_ws_frame(uint8_t *out, uint8_t b0, const void *p, size_t n,
                   bool mask) {
  static const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
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
    memcpy(out + k, key, 4);
    k += 4;
  }
  for (size_t i = 0; i < n; i++)
    out[k + i] = ((const uint8_t *)p)[i] ^ (mask ? key[i & 3] : 0);
  return k + n;
}

void eh_ws_send(eh *h, eh_conn *c, uint8_t b0, const void *p, size_t n) {
  uint8_t *f = malloc(n + 14);
  size_t k = eh_ws_frame(f, b0, p, n, true);
  eh_send(h, c, f, k);
  free(f);
}

void eh_ws_send_text(eh *h, eh_conn *c, const char *s) {
  eh_ws_send(h, c, 0x81, s, strlen(s));
}

/* A whole server frame at the front of c->buf? */
static bool take_frame(eh_conn *c, eh_frame *f) {
  const uint8_t *b = (const uint8_t *)c->buf;
  if (c->len < 2)
    return false;
  cr_assert_eq(b[1] & 0x80, 0, "server frames are never masked");
  size_t hl = 2;
  uint64_t n = b[1] & 0x7f;
  if (n == 126) {
    if (c->len < 4)
      return false;
    n = (uint64_t)b[2] << 8 | b[3];
    hl = 4;
  } else if (n == 127) {
    if (c->len < 10)
      return false;
    n = 0;
    for (int i = 0; i < 8; i++)
      n = n << 8 | b[2 + i];
    hl = 10;
  }
  if (c->len < hl + n)
    return false;
  f->op = b[0] & 0x0f;
  f->fin = (b[0] & 0x80) != 0;
  f->data = malloc(n + 1);
  memcpy(f->data, b + hl, n);
  f->data[n] = 0;
  f->len = n;
  f->close_code = 0;
  if (f->op == 8 && n >= 2)
    f->close_code = (uint16_t)((uint8_t)f->data[0] << 8 | (uint8_t)f->data[1]);
  eh_consume(c, hl + n);
  return true;
}

bool eh_ws_recv(eh *h, eh_conn *c, eh_frame *f, unsigned ms) {
  uint64_t end = now_ms() + ms;
  for (;;) {
    if (take_frame(c, f))
      return true;
    if (c->eof || now_ms() >= end)
      return false;
    eh_fill(h, c, 5);
  }
}

bool eh_ws_expect(eh *h, eh_conn *c, uint8_t op, eh_frame *f, unsigned ms) {
  uint64_t end = now_ms() + ms;
  while (now_ms() < end) {
    if (!eh_ws_recv(h, c, f, (unsigned)(end - now_ms())))
      return false;
    if (f->op == op)
      return true;
    eh_frame_free(f);
  }
  return false;
}

bool eh_ws_expect_text(eh *h, eh_conn *c, const char *needle, eh_frame *f,
                       unsigned ms) {
  uint64_t end = now_ms() + ms;
  while (now_ms() < end) {
    if (!eh_ws_recv(h, c, f, (unsigned)(end - now_ms())))
      return false;
    if (f->op == 1 && strstr(f->data, needle))
      return true;
    eh_frame_free(f);
  }
  return false;
}

void eh_frame_free(eh_frame *f) {
  free(f->data);
  f->data = NULL;
}

double eh_metric(eh *h, const char *name) {
  eh_conn *c = eh_connect(h);
  eh_resp r;
  cr_assert(eh_http(h, c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &r,
                    5000));
  cr_assert_eq(r.status, 200);
  double v = -1;
  size_t nl = strlen(name);
  for (char *p = r.body; p && *p;) {
    if (strncmp(p, name, nl) == 0 && p[nl] == ' ') {
      v = strtod(p + nl + 1, NULL);
      break;
    }
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  eh_resp_free(&r);
  eh_close(c);
  return v;
}

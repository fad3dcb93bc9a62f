/* HTTP on the epoll transport's port: the header phase and its budget,
 * requests and their bodies, the WebSocket upgrade (401 before it), REST
 * through chat_server_http(), /healthz, /metrics and static files.
 * Every error body has the REST shape {"error":{"code","message"}}. */
#define _GNU_SOURCE /* realpath, writev */

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "transport/epoll/epoll_internal.h"
#include "transport/epoll/sha1.h"

#define WS_PATH "/chat/v1/ws"
/* A REST body grows with its data, at least this much at a time. */
#define BODY_CHUNK 16384
/* Chunked bodies are charged to the caps this much at a time. */
#define CHARGE_STEP 65536
/* Answers at least this large are checked against the body caps. */
#define BIG_ANSWER 65536
/* How long a request waits for an answer the core gives later. */
#define PENDING_MAX_MS 30000

enum { H_HEAD, H_BODY, H_WAIT, H_WRITE };

struct chat__ep_src {
  chat__ep_http *old, *new; /* this address's header-phase connections */
  uint32_t n;
};

/* A REST request whose body is being read. */
typedef struct chat__ep_req {
  char method[8];
  char *path;   /* raw (percent-encoded), NUL-terminated */
  char *query;  /* without access_token; NULL: none */
  char *ctype;  /* NULL: none */
  chat_identity id;
  bool chunked;
  chat__http_chunked ck;
  uint64_t left;     /* Content-Length bytes still to come */
  uint64_t charged;  /* against the body caps */
  char *body;
  size_t len, cap;
} chat__ep_req;

struct chat__ep_http {
  chat__ep_conn *c;
  chat__ep_http *hp_prev, *hp_next;   /* header phase, all addresses */
  chat__ep_http *src_prev, *src_next; /* header phase, this address */
  chat__ep_src *src;
  uint8_t addr[16];
  uint8_t addr_len;
  uint8_t state;       /* H_* */
  bool in_hp;          /* on the header-phase lists */
  bool close_after;    /* close once the answer is written */
  bool keep_alive;     /* of the request being answered */
  bool served;         /* a request was answered: keep-alive timing */
  char *in;            /* bytes read but not yet used */
  size_t in_len, in_cap;
  size_t scan;         /* chat__http_find_head's position in `in` */
  uint64_t deadline;   /* header phase: the head must be complete */
  uint64_t entered;    /* when it entered the header phase */
  uint64_t progress;   /* body: when bytes last arrived */
  chat__ep_req *req;
  chat__ep_user *user; /* who an answer's bytes are charged to */
  bool media;          /* H_WAIT: the answer is a media download */
  uint64_t rest_t0_us; /* H_WAIT: when the request went to the core */
};

/* ---- the body caps ---- */

chat__ep_user *chat__ep_user_get(chat_epoll *t, const char *id) {
  size_t n = strlen(id);
  if (n >= sizeof ((chat__ep_user *)0)->id)
    return NULL;
  void **slot = chat__map_get(&t->users, id, n);
  chat__ep_user *u = slot ? *slot : NULL;
  if (!u) {
    u = chat__calloc(&t->a, 1, sizeof *u);
    if (!u)
      return NULL;
    memcpy(u->id, id, n + 1);
    if (chat__map_put(&t->users, id, n, u, NULL) != CHAT_OK) {
      chat__free(&t->a, u);
      return NULL;
    }
  }
  u->holders++;
  return u;
}

void chat__ep_user_put(chat_epoll *t, chat__ep_user *u) {
  if (!u || --u->holders || u->bytes)
    return;
  chat__map_del(&t->users, u->id, strlen(u->id), NULL);
  chat__free(&t->a, u);
}

void chat__ep_users_free(chat_epoll *t) {
  size_t it = 0;
  const char *key;
  size_t klen;
  void *v;
  while (chat__map_next(&t->users, &it, &key, &klen, &v))
    chat__free(&t->a, v);
  chat__map_free(&t->users);
}

bool chat__ep_charge(chat_epoll *t, chat__ep_user *u, uint64_t n,
                     int *status) {
  if (t->body_bytes + n > t->s.body_bytes_max) {
    t->ex.body_refused_global++;
    *status = 503;
    return false;
  }
  if (u && u->bytes + n > t->s.user_body_bytes_max) {
    t->ex.body_refused_user++;
    *status = 429;
    return false;
  }
  t->body_bytes += n;
  if (u)
    u->bytes += n;
  return true;
}

void chat__ep_uncharge(chat_epoll *t, chat__ep_user *u, uint64_t n) {
  t->body_bytes -= n < t->body_bytes ? n : t->body_bytes;
  if (u)
    u->bytes -= n < u->bytes ? n : u->bytes;
}

/* ---- the header phase ---- */

static void hp_leave(chat_epoll *t, chat__ep_http *h) {
  if (!h->in_hp)
    return;
  h->in_hp = false;
  if (h->hp_prev)
    h->hp_prev->hp_next = h->hp_next;
  else
    t->hp_old = h->hp_next;
  if (h->hp_next)
    h->hp_next->hp_prev = h->hp_prev;
  else
    t->hp_new = h->hp_prev;
  h->hp_prev = h->hp_next = NULL;
  t->n_header--;
  chat__ep_src *s = h->src;
  h->src = NULL;
  if (!s)
    return;
  if (h->src_prev)
    h->src_prev->src_next = h->src_next;
  else
    s->old = h->src_next;
  if (h->src_next)
    h->src_next->src_prev = h->src_prev;
  else
    s->new = h->src_prev;
  h->src_prev = h->src_next = NULL;
  if (--s->n == 0) {
    chat__map_del(&t->sources, (const char *)h->addr, h->addr_len, NULL);
    chat__free(&t->a, s);
  }
}

static void arm(chat_epoll *t, chat__ep_conn *c, uint64_t at) {
  chat__tw_add(&t->wheel, &c->tw, at);
}

/* May the header-phase connection o be cut to make room? Only once it
 * has had a fair chance to send its head: a burst of honest clients (a
 * reconnect storm through one proxy) is all young and gets read in the
 * next pass, while sockets held open grow old. Cutting young ones would
 * also make an attacker reconnect as fast as it can. */
static bool sheddable(const chat_epoll *t, const chat__ep_http *o,
                      const chat__ep_http *h) {
  uint64_t min_age = t->s.header_timeout_ms / 2;
  if (min_age > 1000)
    min_age = 1000;
  return o && o != h && t->now_ms - o->entered >= min_age;
}

/* Enter the header phase, cutting the oldest connections there when the
 * budget (all, or this address's) is spent: a fresh client always gets
 * in, and an attacker holding sockets open only pushes out its own. Past
 * the budget with nobody old enough to cut, the newcomer is let in anyway
 * (bounded by max_connections); the header timeout ends the excess. */
static void hp_enter(chat_epoll *t, chat__ep_http *h, uint64_t deadline) {
  const char *key = (const char *)h->addr;
  void **slot = chat__map_get(&t->sources, key, h->addr_len);
  chat__ep_src *s = slot ? *slot : NULL;
  while (s && s->n >= t->s.header_per_source && sheddable(t, s->old, h)) {
    t->ex.header_shed++;
    chat__ep_kill(t, s->old->c, "header phase: address over its share");
    slot = chat__map_get(&t->sources, key, h->addr_len);
    s = slot ? *slot : NULL;
  }
  while (t->n_header >= t->s.header_max && sheddable(t, t->hp_old, h)) {
    t->ex.header_shed++;
    chat__ep_kill(t, t->hp_old->c, "header phase: budget spent");
  }
  slot = chat__map_get(&t->sources, key, h->addr_len);
  s = slot ? *slot : NULL;
  if (!s) {
    s = chat__calloc(&t->a, 1, sizeof *s);
    if (s && chat__map_put(&t->sources, key, h->addr_len, s, NULL) !=
                 CHAT_OK) {
      chat__free(&t->a, s);
      s = NULL;
    }
  }
  h->in_hp = true;
  h->hp_prev = t->hp_new;
  h->hp_next = NULL;
  if (t->hp_new)
    t->hp_new->hp_next = h;
  else
    t->hp_old = h;
  t->hp_new = h;
  t->n_header++;
  if (s) {
    h->src = s;
    h->src_prev = s->new;
    h->src_next = NULL;
    if (s->new)
      s->new->src_next = h;
    else
      s->old = h;
    s->new = h;
    s->n++;
  }
  h->state = H_HEAD;
  h->deadline = deadline;
  h->entered = t->now_ms;
  h->scan = 0;
  arm(t, h->c, deadline);
}

/* The header timeout, less up to a quarter at random: sockets an attacker
 * opened together are not all cut (and reopened) in the same pass. */
static uint64_t header_timeout(chat_epoll *t) {
  /* xorshift64: spreading, not secrecy. */
  uint64_t x = t->jitter ? t->jitter : 0x9E3779B97F4A7C15u;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  t->jitter = x;
  uint64_t to = t->s.header_timeout_ms;
  return to - (x % (to / 4 + 1));
}

bool chat__ep_http_accept(chat_epoll *t, chat__ep_conn *c,
                          const struct sockaddr *sa, socklen_t sl) {
  chat__ep_http *h = chat__calloc(&t->a, 1, sizeof *h);
  if (!h)
    return false;
  h->c = c;
  c->http = h;
  if (sa->sa_family == AF_INET6 && sl >= sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    const uint8_t *b = s6->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                       0xff, 0xff};
    if (memcmp(b, mapped, 12) == 0) {
      memcpy(h->addr, b + 12, 4);
      h->addr_len = 4;
    } else {
      memcpy(h->addr, b, 16);
      h->addr_len = 16;
    }
  } else if (sa->sa_family == AF_INET && sl >= sizeof(struct sockaddr_in)) {
    memcpy(h->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    h->addr_len = 4;
  } else {
    h->addr_len = 1; /* unknown family: one shared bucket */
  }
  hp_enter(t, h, t->now_ms + header_timeout(t));
  return true;
}

static void req_free(chat_epoll *t, chat__ep_http *h) {
  chat__ep_req *r = h->req;
  if (!r)
    return;
  h->req = NULL;
  if (r->charged)
    chat__ep_uncharge(t, h->user, r->charged);
  chat__free(&t->a, r->path);
  chat__free(&t->a, r->body);
  chat__free(&t->a, r);
}

void chat__ep_http_free(chat_epoll *t, chat__ep_conn *c) {
  chat__ep_http *h = c->http;
  if (!h)
    return;
  if (h->state == H_WAIT) {
    /* Its answer must never find this connection. */
    h->state = H_HEAD;
    chat_server_http_cancel(t->srv, c);
  }
  hp_leave(t, h);
  req_free(t, h);
  if (h->user) {
    /* The answer's bytes in c->out stay charged to the user until they
     * are written; out holds its own reference. */
    chat__ep_user_put(t, h->user);
  }
  chat__free(&t->a, h->in);
  chat__free(&t->a, h);
  c->http = NULL;
}

bool chat__ep_http_pending(const chat__ep_conn *c) {
  return c->http && c->http->in_len > 0;
}

bool chat__ep_http_can_read(const chat__ep_conn *c) {
  const chat__ep_http *h = c->http;
  return h && (h->state == H_HEAD || h->state == H_BODY);
}

/* ---- answers ---- */

static const char *reason_phrase(int status) {
  switch (status) {
  case 100: return "Continue";
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 201: return "Created";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 417: return "Expectation Failed";
  case 426: return "Upgrade Required";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Status";
  }
}

enum {
  A_NOSTORE = 1 << 0,  /* Cache-Control: no-store */
  A_BEARER = 1 << 1,   /* WWW-Authenticate: Bearer */
  A_CLOSE = 1 << 2,    /* close after this answer */
  A_HEAD = 1 << 3,     /* HEAD: no body */
  A_API = 1 << 4,      /* a REST answer: restrictive CSP */
  A_MEDIA = 1 << 5,    /* media bytes: Content-Disposition */
  A_ALLOW = 1 << 6,    /* Allow: the methods served */
  A_WSVER = 1 << 7,    /* Sec-WebSocket-Version: 13 */
  A_UPGRADE = 1 << 8   /* Upgrade: websocket (426) */
};

/* Image, audio and video types a browser may show inline: none of them
 * runs script. Everything else is a download. (SVG is an image that can
 * carry script, so it is not here.) */
static bool inline_type(const char *ct) {
  static const char *const ok[] = {
      "image/png",  "image/jpeg", "image/gif",  "image/webp", "image/avif",
      "image/bmp",  "audio/mpeg", "audio/ogg",  "audio/wav",  "audio/webm",
      "audio/aac",  "audio/mp4",  "audio/flac", "video/mp4",  "video/webm",
      "video/ogg",  "video/quicktime",
  };
  size_t n = 0;
  while (ct[n] && ct[n] != ';' && ct[n] != ' ')
    n++;
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
    if (strlen(ok[i]) == n && strncasecmp(ct, ok[i], n) == 0)
      return true;
  return false;
}

/* A Content-Type that can go into a header as it is. */
static bool header_safe(const char *s) {
  size_t n = 0;
  for (; s[n]; n++)
    if ((unsigned char)s[n] < 0x20 || (unsigned char)s[n] >= 0x7f)
      return false;
  return n > 0 && n < 256;
}

static void finish_answer(chat_epoll *t, chat__ep_conn *c);

/* The status line and fields; returns their length, 0 when they do not
 * fit (never with our own fields). */
static size_t build_head(chat_epoll *t, chat__ep_conn *c, char *head,
                         size_t cap, int status, const char *ctype,
                         uint64_t len, uint32_t retry_after_s, int flags) {
  chat__ep_http *h = c->http;
  bool close = (flags & A_CLOSE) || !h || h->close_after || !h->keep_alive ||
               t->draining;
  if (h)
    h->close_after = close;
  int n = snprintf(head, cap,
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: %s\r\n"
                   "Content-Length: %llu\r\n"
                   "X-Content-Type-Options: nosniff\r\n"
                   "%s%s%s%s%s%s%s",
                   status, reason_phrase(status), ctype,
                   (unsigned long long)len,
                   (flags & A_NOSTORE) ? "Cache-Control: no-store\r\n" : "",
                   (flags & A_BEARER)
                       ? "WWW-Authenticate: Bearer realm=\"chat\"\r\n"
                       : "",
                   (flags & (A_API | A_MEDIA))
                       ? "Content-Security-Policy: default-src 'none'; "
                         "frame-ancestors 'none'; sandbox\r\n"
                       : "",
                   (flags & A_MEDIA)
                       ? (inline_type(ctype)
                              ? "Content-Disposition: inline\r\n"
                              : "Content-Disposition: attachment\r\n")
                       : "",
                   (flags & A_ALLOW)
                       ? "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, "
                         "OPTIONS\r\n"
                       : "",
                   (flags & A_WSVER) ? "Sec-WebSocket-Version: 13\r\n" : "",
                   (flags & A_UPGRADE) ? "Upgrade: websocket\r\n" : "");
  if (n < 0 || (size_t)n >= cap - 64)
    return 0;
  if (retry_after_s)
    n += snprintf(head + n, cap - (size_t)n, "Retry-After: %u\r\n",
                  (unsigned)retry_after_s);
  n += snprintf(head + n, cap - (size_t)n, "%s\r\n",
                close ? "Connection: close\r\n" : "");
  chat__tstats_count_status(&t->st, status);
  if (h)
    h->state = H_WRITE;
  c->mark_ms = t->now_ms;
  return (size_t)n;
}

/* Status line, fields and body. The body is sent straight from the
 * caller's memory where the socket takes it; only what it does not take
 * is copied (and charged to the body caps until it is written). A HEAD
 * answer has the fields of the GET answer and no body. */
static void answer(chat_epoll *t, chat__ep_conn *c, int status,
                   const char *ctype, const void *body, size_t len,
                   uint32_t retry_after_s, int flags) {
  chat__ep_http *h = c->http;
  char head[1024];
  if (!ctype || !header_safe(ctype))
    ctype = ctype ? "application/octet-stream" : "application/json";
  size_t n = build_head(t, c, head, sizeof head, status, ctype, len,
                        retry_after_s, flags);
  if (!n) {
    chat__ep_kill(t, c, "answer too long");
    return;
  }
  if (flags & A_HEAD)
    len = 0;
  t->st.http_bytes_out += len;
  size_t sent = 0, total = n + len;
  if (!c->out && (c->flags & CHAT__EP_F_WRITABLE)) {
    struct iovec iov[2] = {{head, n}, {(void *)body, len}};
    for (;;) {
      ssize_t w = writev(c->fd, iov, len ? 2 : 1);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        chat__ep_kill(t, c, "write failed");
        return;
      }
      if (w < 0)
        c->flags &= (uint16_t)~CHAT__EP_F_WRITABLE;
      else
        sent = (size_t)w;
      break;
    }
  }
  if (sent < n && !chat__ep_out_append(t, c, head + sent, n - sent)) {
    chat__ep_kill(t, c, "out of memory");
    return;
  }
  size_t body_sent = sent > n ? sent - n : 0;
  if (body_sent < len) {
    size_t rest = len - body_sent;
    if (!chat__ep_out_append(t, c, (const char *)body + body_sent, rest)) {
      chat__ep_kill(t, c, "out of memory");
      return;
    }
    chat__ep_out *o = c->out;
    if (h && h->user && !o->user) {
      o->user = h->user;
      o->user->holders++;
    }
    int st;
    if (chat__ep_charge(t, o->user, rest, &st))
      o->charged += rest;
  }
  if (sent < total)
    chat__ep_dirty(t, c);
  else
    finish_answer(t, c);
}

/* The fields now, then the file as the socket takes it (sendfile). Takes
 * fd. */
static void answer_file(chat_epoll *t, chat__ep_conn *c, const char *mime,
                        int fd, uint64_t size, int flags) {
  char head[1024];
  size_t n = build_head(t, c, head, sizeof head, 200, mime, size, 0, flags);
  if (!n || !chat__ep_out_append(t, c, head, n)) {
    close(fd);
    chat__ep_kill(t, c, "out of memory");
    return;
  }
  if (flags & A_HEAD) {
    close(fd);
  } else {
    c->out->file_fd = fd;
    c->out->file_off = 0;
    c->out->file_left = size;
  }
  chat__ep_dirty(t, c);
}

static void json_error(chat_epoll *t, chat__ep_conn *c, int status,
                       const char *code, const char *msg, int flags) {
  char body[256];
  int n = snprintf(body, sizeof body,
                   "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
                   msg);
  if (n < 0 || (size_t)n >= sizeof body)
    n = 0;
  answer(t, c, status, "application/json", body, (size_t)n, 0,
         flags | A_NOSTORE);
}

/* The answer is written: the next request, or the close. */
static void finish_answer(chat_epoll *t, chat__ep_conn *c) {
  chat__ep_http *h = c->http;
  if (!h || c->phase != CHAT__EP_HTTP || h->state != H_WRITE)
    return;
  if (h->close_after) {
    chat__ep_close_after_write(t, c);
    return;
  }
  h->served = true;
  if (h->user) {
    chat__ep_user_put(t, h->user);
    h->user = NULL;
  }
  hp_enter(t, h, t->now_ms + t->s.keepalive_timeout_ms);
  /* Bytes may wait in the socket (or in `in`) for the next request. */
  chat__ep_ready(t, c);
}

void chat__ep_http_drained(chat_epoll *t, chat__ep_conn *c) {
  chat__ep_http *h = c->http;
  if (!h)
    return;
  if (h->state == H_WRITE)
    finish_answer(t, c);
}

/* ---- tokens, the upgrade ---- */

static bool ieq(chat__http_str s, const char *lower) {
  size_t n = strlen(lower);
  return s.p && s.n == n && strncasecmp(s.p, lower, n) == 0;
}

/* The bearer token: Authorization: Bearer, else ?access_token=. The
 * header wins over the argument, as with most bearer APIs. 0: none. */
static size_t token_of(const chat__http_head *hd, char *buf, size_t cap) {
  chat__http_str a = chat__http_field_get(hd, "authorization");
  if (a.p && a.n > 7 && strncasecmp(a.p, "bearer", 6) == 0 &&
      (a.p[6] == ' ' || a.p[6] == '\t')) {
    const char *p = a.p + 7;
    size_t n = a.n - 7;
    while (n && (*p == ' ' || *p == '\t')) {
      p++;
      n--;
    }
    if (n && n < cap) {
      memcpy(buf, p, n);
      buf[n] = 0;
      return n;
    }
    return 0;
  }
  /* Another scheme (a proxy's Basic, say): try the argument. */
  chat__http_str q = chat__http_query_get(hd->query, "access_token");
  size_t n;
  if (q.p && q.n && q.n < cap && chat__http_pct_decode(q.p, q.n, buf, &n) &&
      n) {
    buf[n] = 0;
    return n;
  }
  return 0;
}

/* Refuse an upgrade with an HTTP error and close. */
static void refuse_upgrade(chat_epoll *t, chat__ep_conn *c, int status,
                           const char *code, const char *msg, int flags) {
  if (status == 401)
    t->st.auth_fail_upgrade++;
  else
    t->st.upgrades_refused++;
  chat__ep_log(t, CHAT_LOG_INFO, "event=upgrade_refused status=%d code=%s",
               status, code);
  json_error(t, c, status, code, msg, flags | A_CLOSE);
}

/* A base64 nonce of 16 bytes (RFC 6455 section 4.1): 22 characters and
 * "==". */
static bool key_ok(chat__http_str k) {
  if (!k.p || k.n != 24 || k.p[22] != '=' || k.p[23] != '=')
    return false;
  for (size_t i = 0; i < 22; i++) {
    char ch = k.p[i];
    if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
          (ch >= '0' && ch <= '9') || ch == '+' || ch == '/'))
      return false;
  }
  return true;
}

/* Is chat.v1 among the offered subprotocols? *offered says whether any
 * list was sent at all. */
static bool subprotocol_ok(const chat__http_head *hd, bool *offered) {
  *offered = false;
  for (size_t i = 0; i < hd->n_fields; i++) {
    const chat__http_field *f = &hd->fields[i];
    if (!ieq(f->name, "sec-websocket-protocol"))
      continue;
    *offered = true;
    /* Subprotocol names are case-sensitive (section 4.1): exact match. */
    const char *p = f->value.p, *end = f->value.p + f->value.n;
    while (p < end) {
      const char *comma = memchr(p, ',', (size_t)(end - p));
      const char *e = comma ? comma : end;
      const char *s = p;
      while (s < e && (*s == ' ' || *s == '\t'))
        s++;
      const char *x = e;
      while (x > s && (x[-1] == ' ' || x[-1] == '\t'))
        x--;
      if ((size_t)(x - s) == 7 && memcmp(s, "chat.v1", 7) == 0)
        return true;
      p = comma ? comma + 1 : end;
    }
  }
  return !*offered;
}

static void upgrade(chat_epoll *t, chat__ep_conn *c, const chat__http_head *hd,
                    const char *dpath, char *rest, size_t rest_n,
                    size_t *used) {
  *used = 0;
  if (strcmp(dpath, WS_PATH) != 0) {
    refuse_upgrade(t, c, 404, "not_found", "no such endpoint", 0);
    return;
  }
  if (!ieq(hd->method, "get")) {
    refuse_upgrade(t, c, 405, "method_not_allowed",
                   "the WebSocket endpoint takes GET", A_ALLOW);
    return;
  }
  chat__http_str ver = chat__http_field_get(hd, "sec-websocket-version");
  if (hd->minor < 1 || !key_ok(chat__http_field_get(hd,
                                                    "sec-websocket-key"))) {
    refuse_upgrade(t, c, 400, "bad_request", "malformed WebSocket upgrade",
                   0);
    return;
  }
  if (!ver.p || ver.n != 2 || memcmp(ver.p, "13", 2) != 0) {
    refuse_upgrade(t, c, 426, "upgrade_required",
                   "Sec-WebSocket-Version 13 is required", A_WSVER);
    return;
  }
  if (t->draining) {
    refuse_upgrade(t, c, 503, "unavailable", "server is shutting down", 0);
    return;
  }
  bool offered;
  if (!subprotocol_ok(hd, &offered)) {
    refuse_upgrade(t, c, 400, "bad_request", "subprotocol chat.v1 required",
                   0);
    return;
  }
  char tok[CHAT__EP_TOKEN_MAX];
  size_t tn = token_of(hd, tok, sizeof tok);
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  if (tn == 0 || chat_server_authenticate(t->srv, tok, tn, &id) != CHAT_OK) {
    refuse_upgrade(t, c, 401, "unauthorized", "missing or invalid token",
                   A_BEARER);
    return;
  }
  /* Extensions (permessage-deflate) are declined: the answer names none,
   * and frames with RSV bits are refused. */
  if (chat__http_field_get(hd, "sec-websocket-extensions").p)
    t->st.ext_declined++;
  chat__http_str key = chat__http_field_get(hd, "sec-websocket-key");
  char accept[CHAT__WS_ACCEPT_LEN + 1];
  chat__ws_accept(key.p, key.n, accept);
  char resp[256];
  int n = snprintf(resp, sizeof resp,
                   "HTTP/1.1 101 Switching Protocols\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Accept: %s\r\n"
                   "%s\r\n",
                   accept,
                   offered ? "Sec-WebSocket-Protocol: chat.v1\r\n" : "");
  if (n < 0 || !chat__ep_out_append(t, c, resp, (size_t)n)) {
    chat__ep_kill(t, c, "out of memory");
    return;
  }
  chat__tstats_count_status(&t->st, 101);
  if (t->s.log && t->s.log_level >= CHAT_LOG_INFO)
    chat__ep_log(t, CHAT_LOG_INFO, "event=ws_open user=%s device=%s",
                 id.user_id, id.device_id);
  /* From here the connection speaks WebSocket; bytes the client sent
   * after its request are frames already. */
  chat__ep_http_free(t, c);
  *used = rest_n;
  chat__ep_ws_open(t, c, &id, rest, rest_n);
}

/* ---- REST ---- */

/* Write the core's answer to a REST request (now, or when it came). */
static void rest_answer(chat_epoll *t, chat__ep_conn *c,
                        const chat_http_response *resp, bool media) {
  chat__ep_http *h = c->http;
  int flags = A_NOSTORE | A_API | (resp->status == 401 ? A_BEARER : 0);
  if (media && resp->status == 200)
    flags |= A_MEDIA;
  if (resp->body_len >= BIG_ANSWER) {
    /* Admitted only if the whole answer could be held by us. */
    int st;
    if (!chat__ep_charge(t, h->user, resp->body_len, &st)) {
      json_error(t, c, st, st == 429 ? "rate_limited" : "unavailable",
                 st == 429 ? "too many bytes in flight for this user"
                           : "server busy, try again later",
                 0);
      return;
    }
    chat__ep_uncharge(t, h->user, resp->body_len);
  }
  answer(t, c, resp->status,
         resp->content_type ? resp->content_type : "application/json",
         resp->body, resp->body_len, resp->retry_after_s, flags);
}

static void dispatch(chat_epoll *t, chat__ep_conn *c, chat__ep_req *r) {
  chat_http_request rq = {.version = CHAT_HTTP_REQUEST_V1,
                          .method = r->method,
                          .path = r->path,
                          .query = r->query,
                          .content_type = r->ctype,
                          .body = r->body,
                          .body_len = r->len,
                          .identity = &r->id,
                          .tag = c};
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  uint64_t t0 = chat__ep_mono_us();
  chat_err rc = chat_server_http(t->srv, &rq, &resp, t->now_ms);
  chat__ep_http *h = c->http;
  bool media = strcmp(r->method, "GET") == 0 &&
               strncmp(r->path, "/api/v1/media/", 14) == 0;
  /* The request's bytes are no longer held (nor is r valid): the core
   * copied what a pending answer needs. */
  req_free(t, h);
  if (rc == CHAT_PENDING) {
    /* The answer waits on a module: on_http_response brings it; the
     * connection reads nothing more until it is written. */
    h->state = H_WAIT;
    h->media = media;
    h->rest_t0_us = t0;
    h->progress = t->now_ms;
    t->st.rest_deferred++;
    arm(t, c, t->now_ms + PENDING_MAX_MS);
    return;
  }
  chat__hist_observe(&t->st.rest, chat__ep_mono_us() - t0);
  if (rc != CHAT_OK) {
    json_error(t, c, 500, "internal", "request failed", 0);
    return;
  }
  rest_answer(t, c, &resp, media);
}

void chat__ep_on_http_response(void *user_data, chat_server *srv, void *tag,
                               const chat_http_response *resp) {
  (void)user_data;
  (void)srv;
  chat__ep_conn *c = tag;
  /* A connection that went away cancelled its request first, so the tag
   * is a live connection waiting for exactly this. */
  if (!c || c->phase != CHAT__EP_HTTP || !c->http ||
      c->http->state != H_WAIT)
    return;
  chat_epoll *t = c->owner;
  chat__ep_http *h = c->http;
  chat__hist_observe(&t->st.rest, chat__ep_mono_us() - h->rest_t0_us);
  h->state = H_HEAD; /* answer() moves it on */
  rest_answer(t, c, resp, h->media);
  /* Requests pipelined behind it, and the socket, are read again. */
  if (c->phase == CHAT__EP_HTTP)
    chat__ep_ready(t, c);
}

/* Bytes of a request body; returns how many were used. */
static size_t body_feed(chat_epoll *t, chat__ep_conn *c, const char *p,
                        size_t n) {
  chat__ep_http *h = c->http;
  chat__ep_req *r = h->req;
  size_t used = 0;
  bool done = false;
  h->progress = t->now_ms;
  while (used < n && !done) {
    const char *data;
    size_t dlen;
    if (r->chunked) {
      size_t u;
      int k = chat__http_chunked_next(&r->ck, p + used, n - used, &u, &data,
                                      &dlen);
      used += u;
      if (k == CHAT__CHUNK_ERROR) {
        json_error(t, c, 400, "bad_request", "malformed chunked body",
                   A_CLOSE);
        return n;
      }
      if (k == CHAT__CHUNK_DONE)
        done = true;
      if (k != CHAT__CHUNK_DATA)
        continue;
    } else {
      dlen = n - used;
      if ((uint64_t)dlen > r->left)
        dlen = (size_t)r->left;
      data = p + used;
      used += dlen;
      r->left -= dlen;
      done = r->left == 0;
    }
    if (dlen > t->s.max_http_body_bytes - r->len) {
      json_error(t, c, 413, "too_large", "request body too large", A_CLOSE);
      return n;
    }
    if (r->len + dlen > r->cap) {
      size_t cap = r->cap ? r->cap * 2 : BODY_CHUNK;
      if (cap < r->len + dlen)
        cap = r->len + dlen;
      if (!r->chunked && cap > r->len + dlen + r->left)
        cap = r->len + dlen + (size_t)r->left; /* exactly what is due */
      if (r->chunked && cap > r->charged) {
        /* Unknown length: charge as it grows. */
        uint64_t step = cap - r->charged;
        if (step < CHARGE_STEP)
          step = CHARGE_STEP;
        int st;
        if (!chat__ep_charge(t, h->user, step, &st)) {
          json_error(t, c, st, st == 429 ? "rate_limited" : "unavailable",
                     st == 429 ? "too many bytes in flight for this user"
                               : "server busy, try again later",
                     A_CLOSE);
          return n;
        }
        r->charged += step;
      }
      char *b = chat__realloc(&t->a, r->body, cap);
      if (!b) {
        json_error(t, c, 503, "internal", "out of memory", A_CLOSE);
        return n;
      }
      r->body = b;
      r->cap = cap;
    }
    if (dlen)
      memcpy(r->body + r->len, data, dlen);
    r->len += dlen;
  }
  if (done)
    dispatch(t, c, r);
  return used;
}

static void rest_request(chat_epoll *t, chat__ep_conn *c,
                         const chat__http_head *hd, bool has_body) {
  chat__ep_http *h = c->http;
  int body_close = has_body ? A_CLOSE : 0;
  char tok[CHAT__EP_TOKEN_MAX];
  size_t tn = token_of(hd, tok, sizeof tok);
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  if (tn == 0 || chat_server_authenticate(t->srv, tok, tn, &id) != CHAT_OK) {
    t->st.auth_fail_rest++;
    json_error(t, c, 401, "unauthorized", "missing or invalid token",
               A_BEARER | A_API | body_close);
    return;
  }
  if (hd->has_length && hd->content_length > t->s.max_http_body_bytes) {
    json_error(t, c, 413, "too_large", "request body too large",
               A_API | A_CLOSE);
    return;
  }
  chat__http_str expect = chat__http_field_get(hd, "expect");
  bool cont = false;
  if (expect.p) {
    if (!ieq(expect, "100-continue")) {
      json_error(t, c, 417, "bad_request", "unsupported expectation",
                 A_CLOSE);
      return;
    }
    cont = hd->minor >= 1 && has_body;
  }
  chat__http_str ct = chat__http_field_get(hd, "content-type");
  if (ct.p && ct.n > 255) {
    json_error(t, c, 400, "bad_request", "Content-Type too long",
               body_close);
    return;
  }
  /* One block: the request, then path, query and type, each with its
   * NUL. */
  size_t need = hd->path.n + 1 + hd->query.n + 1 + ct.n + 1;
  chat__ep_req *r = chat__calloc(&t->a, 1, sizeof *r);
  char *strs = r ? chat__alloc(&t->a, need) : NULL;
  if (!strs) {
    chat__free(&t->a, r);
    json_error(t, c, 503, "internal", "out of memory", A_CLOSE);
    return;
  }
  h->req = r;
  r->path = strs;
  memcpy(r->path, hd->path.p, hd->path.n);
  r->path[hd->path.n] = 0;
  char *q = r->path + hd->path.n + 1;
  size_t qn = chat__http_query_without(hd->query, "access_token", q);
  r->query = qn ? q : NULL;
  char *cts = q + qn + 1;
  if (ct.p) {
    memcpy(cts, ct.p, ct.n);
    cts[ct.n] = 0;
    r->ctype = cts;
  }
  snprintf(r->method, sizeof r->method, "%.*s", (int)hd->method.n,
           hd->method.p);
  r->id = id;
  h->user = chat__ep_user_get(t, id.user_id);
  if (!has_body) {
    dispatch(t, c, r);
    return;
  }
  r->chunked = hd->chunked;
  if (r->chunked) {
    chat__http_chunked_init(&r->ck);
  } else {
    r->left = hd->content_length;
    /* The whole declared body is charged now: past the caps the answer
     * comes at once, before any of it is read. */
    int st;
    if (!chat__ep_charge(t, h->user, r->left, &st)) {
      json_error(t, c, st, st == 429 ? "rate_limited" : "unavailable",
                 st == 429 ? "too many bytes in flight for this user"
                           : "server busy, try again later",
                 A_API | A_CLOSE);
      return;
    }
    r->charged = r->left;
  }
  h->state = H_BODY;
  h->progress = t->now_ms;
  arm(t, c, t->now_ms + t->s.body_timeout_ms);
  if (cont) {
    static const char k100[] = "HTTP/1.1 100 Continue\r\n\r\n";
    if (!chat__ep_out_append(t, c, k100, sizeof k100 - 1)) {
      chat__ep_kill(t, c, "out of memory");
      return;
    }
    chat__ep_dirty(t, c);
  }
}

/* ---- /healthz, /metrics ---- */

static void healthz(chat_epoll *t, chat__ep_conn *c, int flags) {
  static const char ok[] = "{\"ok\":true}";
  static const char bad[] = "{\"ok\":false}";
  static const char drain[] = "{\"ok\":false,\"draining\":true}";
  if (t->draining)
    answer(t, c, 503, "application/json", drain, sizeof drain - 1, 0,
           flags | A_NOSTORE);
  else if (!t->s.healthy || t->s.healthy(t->s.user_data))
    answer(t, c, 200, "application/json", ok, sizeof ok - 1, 0,
           flags | A_NOSTORE);
  else
    answer(t, c, 503, "application/json", bad, sizeof bad - 1, 0,
           flags | A_NOSTORE);
}

static void metrics(chat_epoll *t, chat__ep_conn *c, int flags) {
  chat__buf *b = &t->mbuf;
  chat__buf_reset(b);
  chat__metrics_write(b, t->srv, &t->st, t->n_ws, t->draining);
  chat__metrics_one(b, "chat_http_header_phase", "gauge",
                    "Connections still sending a request head.",
                    (uint64_t)t->n_header);
  chat__metrics_one(b, "chat_http_header_timeouts_total", "counter",
                    "Connections cut for not finishing a head in time.",
                    t->ex.header_timeouts);
  chat__metrics_one(b, "chat_http_header_shed_total", "counter",
                    "Header-phase connections cut to make room.",
                    t->ex.header_shed);
  chat__metrics_one(b, "chat_http_body_timeouts_total", "counter",
                    "Requests or answers cut for making no progress.",
                    t->ex.body_timeouts);
  chat__metrics_one(b, "chat_http_body_bytes", "gauge",
                    "Request and answer body bytes held.", t->body_bytes);
  chat__metrics_put(b,
                    "# HELP chat_http_body_refused_total Requests refused "
                    "at once by a body cap.\n"
                    "# TYPE chat_http_body_refused_total counter\n"
                    "chat_http_body_refused_total{cap=\"all\"} %llu\n"
                    "chat_http_body_refused_total{cap=\"user\"} %llu\n",
                    (unsigned long long)t->ex.body_refused_global,
                    (unsigned long long)t->ex.body_refused_user);
  chat__metrics_one(b, "chat_ws_lingering_closes_total", "counter",
                    "Closes that read and discarded after the close frame.",
                    t->ex.lingering_closes);
  chat__metrics_one(b, "chat_ws_send_calls_total", "counter",
                    "send() calls that carried WebSocket frames (all of a "
                    "session's pending frames go in one).",
                    t->ex.ws_sends);
  chat__metrics_one(b, "chat_ws_rx_bytes", "gauge",
                    "Bytes of unfinished WebSocket messages held.",
                    t->ws_rx_bytes);
  chat__metrics_one(b, "chat_connections_refused_at_cap_total", "counter",
                    "Connections closed at accept: over the connection "
                    "budget or into the descriptor reserve.",
                    t->ex.accept_refused);
  chat__metrics_one(b, "chat_connections", "gauge",
                    "Sockets held (HTTP, WebSocket and closing).",
                    (uint64_t)t->n_conns);
  if (b->oom) {
    json_error(t, c, 503, "internal", "out of memory", 0);
    return;
  }
  answer(t, c, 200, "text/plain; version=0.0.4; charset=utf-8", b->data,
         b->len, 0, flags | A_NOSTORE);
}

/* ---- static files ---- */

static const struct {
  const char *ext;
  const char *mime;
} mimes[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"png", "image/png"},
    {"svg", "image/svg+xml"},
    {"ico", "image/x-icon"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
    {"woff2", "font/woff2"},
    {"woff", "font/woff"},
};

static const char *mime_of(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(path, '.');
  if (dot && (!slash || dot > slash)) {
    for (size_t i = 0; i < sizeof mimes / sizeof *mimes; i++)
      if (strcasecmp(dot + 1, mimes[i].ext) == 0)
        return mimes[i].mime;
  }
  return "application/octet-stream";
}

/* No "..", no hidden files, no backslashes or control characters: checked
 * on the decoded path before any file system call. */
static bool path_is_safe(const char *p) {
  if (p[0] != '/')
    return false;
  for (const char *s = p; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '\\' || ch < 0x20 || ch == 0x7f)
      return false;
    if (ch == '/' && s[1] == '.')
      return false; /* "/.", "/..", "/.hidden" */
  }
  return true;
}

static void serve_static(chat_epoll *t, chat__ep_conn *c, const char *path,
                         int flags) {
  if (!path_is_safe(path)) {
    json_error(t, c, 404, "not_found", "no such file", flags);
    return;
  }
  char full[8192];
  size_t pl = strlen(path);
  const char *index = path[pl - 1] == '/' ? "index.html" : "";
  int n = snprintf(full, sizeof full, "%s%s%s", t->static_dir, path, index);
  if (n < 0 || (size_t)n >= sizeof full) {
    json_error(t, c, 404, "not_found", "no such file", flags);
    return;
  }
  char *real = realpath(full, NULL);
  struct stat st;
  if (real && stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
    n = snprintf(full, sizeof full, "%s/index.html", real);
    free(real);
    real = (n > 0 && (size_t)n < sizeof full) ? realpath(full, NULL) : NULL;
  }
  /* The resolved file must still be inside the directory: a symbolic link
   * may point anywhere. */
  int fd = -1;
  if (real && strncmp(real, t->static_dir, t->static_dir_len) == 0 &&
      real[t->static_dir_len] == '/')
    fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0)
      close(fd);
    free(real);
    json_error(t, c, 404, "not_found", "no such file", flags);
    return;
  }
  const char *mime = mime_of(real);
  free(real);
  answer_file(t, c, mime, fd, (uint64_t)st.st_size, flags);
}

/* ---- a request ---- */

static bool method_known(chat__http_str m) {
  static const char *const ms[] = {"GET",   "HEAD",   "POST",   "PUT",
                                   "PATCH", "DELETE", "OPTIONS"};
  for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
    if (m.n == strlen(ms[i]) && memcmp(m.p, ms[i], m.n) == 0)
      return true;
  return false;
}

static bool is_method(chat__http_str m, const char *name) {
  return m.n == strlen(name) && memcmp(m.p, name, m.n) == 0;
}

/* Handle a parsed head. rest[0..rest_n) are the bytes after it; *used
 * says how many of them were taken (the upgrade takes them all). */
static void request(chat_epoll *t, chat__ep_conn *c, chat__http_head *hd,
                    char *rest, size_t rest_n, size_t *used) {
  chat__ep_http *h = c->http;
  *used = 0;
  h->keep_alive = hd->keep_alive;
  bool has_body = hd->chunked || (hd->has_length && hd->content_length);
  /* An answer given before the body is read must close the connection:
   * what follows would be body bytes, not a request. */
  int bc = has_body ? A_CLOSE : 0;
  bool head_only = is_method(hd->method, "HEAD");
  int hf = head_only ? A_HEAD : 0;
  if (!method_known(hd->method)) {
    if (is_method(hd->method, "TRACE") || is_method(hd->method, "CONNECT"))
      json_error(t, c, 405, "method_not_allowed", "method not allowed",
                 A_ALLOW | bc);
    else
      json_error(t, c, 501, "not_implemented", "unknown method",
                 A_ALLOW | bc);
    return;
  }
  if (hd->form == CHAT__HTTP_ASTERISK) {
    json_error(t, c, 501, "not_implemented",
               "server-wide OPTIONS is not served", A_ALLOW | bc);
    return;
  }
  if (hd->form == CHAT__HTTP_AUTHORITY) {
    json_error(t, c, 400, "bad_request", "bad request target", A_CLOSE);
    return;
  }
  /* The path, decoded, for routing; REST gets it raw (the core decodes
   * each segment itself). */
  char dpath[4096];
  size_t dn;
  if (hd->path.n >= sizeof dpath) {
    json_error(t, c, 414, "uri_too_long", "path too long", A_CLOSE);
    return;
  }
  if (!chat__http_pct_decode(hd->path.p, hd->path.n, dpath, &dn)) {
    json_error(t, c, 400, "bad_request", "malformed percent-encoding",
               bc);
    return;
  }
  dpath[dn] = 0;
  chat__http_str up = chat__http_field_get(hd, "upgrade");
  if (up.p && hd->connection_upgrade) {
    if (!chat__http_list_has(up, "websocket")) {
      refuse_upgrade(t, c, 400, "bad_request",
                     "only WebSocket upgrades are accepted", 0);
      return;
    }
    if (has_body) {
      refuse_upgrade(t, c, 400, "bad_request", "an upgrade has no body", 0);
      return;
    }
    upgrade(t, c, hd, dpath, rest, rest_n, used);
    return;
  }
  bool get = is_method(hd->method, "GET") || head_only;
  if (strcmp(dpath, "/healthz") == 0 || strcmp(dpath, "/metrics") == 0) {
    if (!get)
      json_error(t, c, 405, "method_not_allowed", "use GET", A_ALLOW | bc);
    else if (dpath[1] == 'h')
      healthz(t, c, hf | bc);
    else
      metrics(t, c, hf | bc);
    return;
  }
  if (strncmp(dpath, "/api/", 5) == 0) {
    rest_request(t, c, hd, has_body);
    return;
  }
  if (strcmp(dpath, WS_PATH) == 0) {
    json_error(t, c, 426, "upgrade_required",
               "this endpoint speaks WebSocket only", A_UPGRADE | bc);
    return;
  }
  if (t->static_dir && get) {
    serve_static(t, c, dpath, hf | bc);
    return;
  }
  json_error(t, c, 404, "not_found", "no such endpoint", bc);
}

/* Take requests from p[0..n) while the connection may; returns the bytes
 * used. Stops at an unfinished head or body, or while an answer is
 * waiting or being written. */
static size_t process(chat_epoll *t, chat__ep_conn *c, char *p, size_t n) {
  size_t used = 0;
  while (c->phase == CHAT__EP_HTTP && c->http) {
    chat__ep_http *h = c->http;
    if (h->state == H_BODY) {
      if (used == n)
        break;
      used += body_feed(t, c, p + used, n - used);
      continue;
    }
    if (h->state != H_HEAD || used == n)
      break;
    if (h->scan == 0) {
      size_t skip = chat__http_skip_blank(p + used, n - used);
      used += skip;
      if (used == n)
        break;
    }
    if (h->served && h->deadline > t->now_ms + t->s.header_timeout_ms) {
      /* A keep-alive connection started its next request: from here the
       * head gets the short timeout. */
      h->deadline = t->now_ms + t->s.header_timeout_ms;
      arm(t, c, h->deadline);
    }
    chat__http_error err;
    long hl = chat__http_find_head(p + used, n - used, t->s.max_header_bytes,
                                   &h->scan, &err);
    if (hl == 0)
      break;
    if (hl > 0) {
      /* One scratch head for the loop: nothing below parses another. */
      chat__http_head *hd = t->head;
      if (chat__http_parse_head(p + used, (size_t)hl, hd, &err) == 0) {
        h->scan = 0;
        hp_leave(t, h);
        used += (size_t)hl;
        size_t taken = 0;
        request(t, c, hd, p + used, n - used, &taken);
        used += taken;
        continue;
      }
    }
    /* A malformed head: answer and close; nothing after it can be
     * trusted to be a request. */
    hp_leave(t, h);
    h->keep_alive = false;
    json_error(t, c, err.status, err.code, err.message,
               A_CLOSE | (err.status == 405 || err.status == 501 ? A_ALLOW
                                                                 : 0));
    return n;
  }
  return used;
}

void chat__ep_http_input(chat_epoll *t, chat__ep_conn *c, char *buf,
                         size_t n) {
  chat__ep_http *h = c->http;
  if (!h)
    return;
  if (h->in_len == 0) {
    size_t used = process(t, c, buf, n);
    h = c->phase == CHAT__EP_HTTP ? c->http : NULL;
    if (!h || used >= n)
      return;
    buf += used;
    n -= used;
    /* Keep the rest: an unfinished head, or requests behind an answer. */
    if (n > h->in_cap) {
      char *b = chat__realloc(&t->a, h->in, n);
      if (!b) {
        chat__ep_kill(t, c, "out of memory");
        return;
      }
      h->in = b;
      h->in_cap = n;
    }
    memcpy(h->in, buf, n);
    h->in_len = n;
    return;
  }
  /* Bytes already wait: these go behind them. */
  if (h->in_len + n > h->in_cap) {
    size_t cap = h->in_len + n;
    char *b = chat__realloc(&t->a, h->in, cap);
    if (!b) {
      chat__ep_kill(t, c, "out of memory");
      return;
    }
    h->in = b;
    h->in_cap = cap;
  }
  memcpy(h->in + h->in_len, buf, n);
  h->in_len += n;
  /* Take the buffer out of h while it is worked on: the upgrade frees h. */
  char *b = h->in;
  size_t len = h->in_len;
  h->in = NULL;
  h->in_len = h->in_cap = 0;
  size_t used = process(t, c, b, len);
  h = c->phase == CHAT__EP_HTTP ? c->http : NULL;
  if (h && used < len && !h->in) {
    memmove(b, b + used, len - used);
    h->in = b;
    h->in_len = len - used;
    h->in_cap = len;
    if (h->in_len < len / 4) {
      /* Give back what a long head held. */
      char *s = chat__realloc(&t->a, h->in, h->in_len);
      if (s) {
        h->in = s;
        h->in_cap = h->in_len;
      }
    }
    return;
  }
  chat__free(&t->a, b);
}

void chat__ep_http_eof(chat_epoll *t, chat__ep_conn *c) {
  chat__ep_http *h = c->http;
  if (!h || h->state == H_HEAD || h->state == H_BODY) {
    chat__ep_kill(t, c, "peer closed");
    return;
  }
  /* It may still read what we write: finish the answer, then close. */
  h->close_after = true;
}

void chat__ep_http_timer(chat_epoll *t, chat__ep_conn *c) {
  chat__ep_http *h = c->http;
  if (!h) {
    chat__ep_kill(t, c, "no state");
    return;
  }
  uint64_t now = t->now_ms;
  switch (h->state) {
  case H_HEAD:
    if (now >= h->deadline) {
      t->ex.header_timeouts++;
      chat__ep_kill(t, c, h->served ? "keep-alive timeout"
                                    : "header timeout");
      return;
    }
    arm(t, c, h->deadline);
    return;
  case H_BODY:
    if (now - h->progress >= t->s.body_timeout_ms) {
      t->ex.body_timeouts++;
      json_error(t, c, 408, "timeout", "request body timed out", A_CLOSE);
      if (c->phase == CHAT__EP_HTTP)
        arm(t, c, now + t->s.body_timeout_ms);
      return;
    }
    arm(t, c, h->progress + t->s.body_timeout_ms);
    return;
  case H_WRITE:
    if (now - c->mark_ms >= t->s.body_timeout_ms) {
      t->ex.body_timeouts++;
      chat__ep_kill(t, c, "answer stalled");
      return;
    }
    arm(t, c, c->mark_ms + t->s.body_timeout_ms);
    return;
  case H_WAIT:
    if (now - h->progress >= PENDING_MAX_MS) {
      /* The store never answered: say so, and forget the request. */
      chat_server_http_cancel(t->srv, c);
      h->state = H_HEAD;
      json_error(t, c, 503, "unavailable", "the store did not answer",
                 A_CLOSE);
      return;
    }
    arm(t, c, h->progress + PENDING_MAX_MS);
    return;
  default:
    arm(t, c, now + t->s.body_timeout_ms);
    return;
  }
}

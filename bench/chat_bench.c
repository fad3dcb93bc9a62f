/* chat-bench: drives a running chatd over real loopback WebSockets.
 *
 *   chat-bench SCENARIO --chatd PATH [--sync full|normal] [options]
 *
 * Each scenario starts its own chatd on a temporary data directory
 * (127.0.0.1, port 0), mints tokens with that directory's key through
 * libchat's public token API, sets conversations up over REST, runs, and
 * stops the chatd it started (by PID). One JSON object per scenario goes
 * to stdout, then a human summary line starting with "# ".
 *
 * The client is a minimal hand-written WebSocket client on epoll: one
 * process, no threads; scenarios that need more descriptors than one
 * process may open fork generator processes, each bound to its own source
 * address 127.0.0.x. Every scenario is bounded in count and in time.
 * `drain` restarts its chatd (on the same port and data directory) in the
 * middle. */
#define _GNU_SOURCE
#include <chat/backoff.h>
#include <chat/sodium.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ---- */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "chat-bench: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static void *xcalloc(size_t n, size_t sz) {
  void *p = calloc(n ? n : 1, sz ? sz : 1);
  if (!p)
    die("out of memory");
  return p;
}

static void *xrealloc(void *p, size_t n) {
  p = realloc(p, n ? n : 1);
  if (!p)
    die("out of memory");
  return p;
}

static char *xstrdup(const char *s) {
  char *p = strdup(s);
  if (!p)
    die("out of memory");
  return p;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* Latency samples in microseconds. */
typedef struct lat {
  uint32_t *v;
  size_t n, cap;
} lat;

static void lat_add(lat *l, uint64_t ns) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 1024;
    l->v = xrealloc(l->v, l->cap * sizeof *l->v);
  }
  uint64_t us = ns / 1000u;
  l->v[l->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static double lat_pct(lat *l, double p) {
  if (!l->n)
    return -1;
  size_t i = (size_t)(p / 100.0 * (double)(l->n - 1) + 0.5);
  if (i >= l->n)
    i = l->n - 1;
  return l->v[i] / 1000.0; /* ms */
}

static void lat_sort(lat *l) {
  if (l->n)
    qsort(l->v, l->n, sizeof *l->v, cmp_u32);
}

/* "p50":x,"p99":y,"p999":z in ms */
static void lat_json(char *out, size_t cap, const char *name, lat *l) {
  lat_sort(l);
  snprintf(out, cap,
           "\"%s_ms\":{\"n\":%zu,\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,"
           "\"max\":%.3f}",
           name, l->n, lat_pct(l, 50), lat_pct(l, 99), lat_pct(l, 99.9),
           lat_pct(l, 100));
}

/* ---- the chatd under test ---- */

static struct {
  const char *chatd;
  const char *sync;
  const char *extra; /* more serve flags, space separated */
  char dir[256];
  pid_t pid;
  uint16_t port;
  chat_sodium_key *key;
  bool attached; /* --port given: a chatd someone else started */
} S = {.sync = "full"};

/* Start a chatd on S.dir listening on @p listen ("127.0.0.1:0" for any
 * port); S.port is the port it says it listens on. */
static void chatd_spawn(const char *listen, const char *more) {
  int pfd[2];
  if (pipe(pfd) != 0)
    die("pipe");
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)S.chatd;
  argv[n++] = "serve";
  argv[n++] = "--listen";
  argv[n++] = (char *)listen;
  argv[n++] = "--data-dir";
  argv[n++] = S.dir;
  argv[n++] = "--sync";
  argv[n++] = (char *)S.sync;
  /* Benchmarks send far above the product's default rate limits. */
  argv[n++] = "--rate-per-minute=4000000000";
  argv[n++] = "--rest-rate-per-minute=4000000000";
  argv[n++] = "--rest-burst=4000000000";
  char *extra = S.extra ? xstrdup(S.extra) : NULL;
  for (char *tok = extra ? strtok(extra, " ") : NULL; tok && n < 62;
       tok = strtok(NULL, " "))
    argv[n++] = tok;
  char *more_copy = more ? xstrdup(more) : NULL;
  for (char *tok = more_copy ? strtok(more_copy, " ") : NULL; tok && n < 62;
       tok = strtok(NULL, " "))
    argv[n++] = tok;
  argv[n] = NULL;
  pid_t pid = fork();
  if (pid < 0)
    die("fork");
  if (pid == 0) {
    dup2(pfd[1], 1);
    close(pfd[0]);
    close(pfd[1]);
    char log[300];
    snprintf(log, sizeof log, "%s/chatd.log", S.dir);
    int lf = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (lf >= 0)
      dup2(lf, 2);
    execv(S.chatd, argv);
    _exit(127);
  }
  free(extra);
  free(more_copy);
  close(pfd[1]);
  S.pid = pid;
  char line[256];
  size_t k = 0;
  while (k < sizeof line - 1) {
    ssize_t r = read(pfd[0], line + k, 1);
    if (r <= 0)
      die("chatd did not start (see %s/chatd.log)", S.dir);
    if (line[k] == '\n')
      break;
    k++;
  }
  line[k] = 0;
  close(pfd[0]);
  char *colon = strrchr(line, ':');
  if (strncmp(line, "listening on ", 13) != 0 || !colon)
    die("unexpected chatd line: %s", line);
  S.port = (uint16_t)atoi(colon + 1);
}

static void chatd_start_with(const char *more) {
  if (S.attached)
    return;
  snprintf(S.dir, sizeof S.dir, "/tmp/chat-bench-XXXXXX");
  if (!mkdtemp(S.dir))
    die("mkdtemp: %s", strerror(errno));
  chatd_spawn("127.0.0.1:0", more);
}

static void chatd_start(void) { chatd_start_with(NULL); }

static void chatd_stop(void) {
  if (S.attached || S.pid <= 0)
    return;
  kill(S.pid, SIGTERM);
  for (int i = 0; i < 200; i++) {
    if (waitpid(S.pid, NULL, WNOHANG) == S.pid) {
      S.pid = 0;
      break;
    }
    usleep(50000);
  }
  if (S.pid > 0) {
    kill(S.pid, SIGKILL);
    waitpid(S.pid, NULL, 0);
    S.pid = 0;
  }
  if (S.dir[0] && strncmp(S.dir, "/tmp/chat-bench-", 16) == 0) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", S.dir);
    if (system(cmd) != 0)
      fprintf(stderr, "chat-bench: could not remove %s\n", S.dir);
  }
  if (S.key)
    chat_sodium_key_free(S.key);
  S.key = NULL;
}

static long chatd_rss_kib(void) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)S.pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  long v = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "VmRSS:", 6) == 0)
      v = atol(line + 6);
  fclose(f);
  return v;
}

static double chatd_cpu_s(void) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)S.pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p)
    return -1;
  unsigned long ut = 0, st = 0;
  /* fields after ')': state(3) ... utime(14) stime(15) */
  if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
             &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static const char *mint(const char *user, const char *device) {
  if (!S.key) {
    char path[300];
    snprintf(path, sizeof path, "%s/token.key", S.dir);
    if (chat_sodium_key_load_or_create(&S.key, path, NULL, NULL) != CHAT_OK)
      die("cannot load %s", path);
  }
  char buf[CHAT_SODIUM_TOKEN_BUF];
  int64_t exp = (int64_t)time(NULL) * 1000 + 3600 * 1000;
  if (chat_sodium_token_mint(S.key, user, device, exp, buf, sizeof buf,
                             NULL) != CHAT_OK)
    die("cannot mint a token for %s", user);
  return xstrdup(buf);
}

/* ---- REST (blocking, one request per connection) ---- */

static int http(const char *method, const char *path, const char *token,
                const char *body, char **resp) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(S.port)};
  sa.sin_addr.s_addr = htonl(0x7f000001);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    die("REST connect: %s", strerror(errno));
  size_t blen = body ? strlen(body) : 0;
  size_t cap = blen + 4096;
  char *req = xcalloc(1, cap);
  int n = snprintf(req, cap,
                   "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                   "%s%s%sContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n",
                   method, path, token ? "Authorization: Bearer " : "",
                   token ? token : "", token ? "\r\n" : "", blen);
  if (body)
    memcpy(req + n, body, blen);
  size_t len = (size_t)n + blen, off = 0;
  while (off < len) {
    ssize_t w = write(fd, req + off, len - off);
    if (w <= 0)
      die("REST write");
    off += (size_t)w;
  }
  free(req);
  size_t rcap = 65536, rlen = 0;
  char *r = xcalloc(1, rcap);
  for (;;) {
    if (rlen + 1 >= rcap)
      r = xrealloc(r, rcap *= 2);
    ssize_t k = read(fd, r + rlen, rcap - rlen - 1);
    if (k <= 0)
      break;
    rlen += (size_t)k;
    r[rlen] = 0;
    /* chatd keeps the connection open after Content-Length bytes. */
    char *hdr_end = strstr(r, "\r\n\r\n");
    if (hdr_end) {
      char *cl = strcasestr(r, "content-length:");
      if (cl && cl < hdr_end &&
          (size_t)(hdr_end + 4 - r) + (size_t)atol(cl + 15) <= rlen)
        break;
    }
  }
  close(fd);
  r[rlen] = 0;
  int status = 0;
  sscanf(r, "HTTP/1.1 %d", &status);
  char *b = strstr(r, "\r\n\r\n");
  if (resp)
    *resp = xstrdup(b ? b + 4 : "");
  free(r);
  return status;
}

static double metric(const char *name) {
  char *body = NULL;
  if (http("GET", "/metrics", NULL, NULL, &body) != 200)
    die("GET /metrics failed");
  size_t nl = strlen(name);
  double v = -1;
  for (char *p = body; p && *p;) {
    if (strncmp(p, name, nl) == 0 && p[nl] == ' ') {
      v = atof(p + nl + 1);
      break;
    }
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  free(body);
  return v;
}

/* JSON: the string value of "key":"..." in s (first occurrence). */
static bool jstr(const char *s, size_t len, const char *key, char *out,
                 size_t cap) {
  char pat[64];
  int pn = snprintf(pat, sizeof pat, "\"%s\":\"", key);
  const char *p = memmem(s, len, pat, (size_t)pn);
  if (!p)
    return false;
  p += pn;
  const char *e = memchr(p, '"', len - (size_t)(p - s));
  if (!e || (size_t)(e - p) >= cap)
    return false;
  memcpy(out, p, (size_t)(e - p));
  out[e - p] = 0;
  return true;
}

static char *create_conv(const char *token, const char *type,
                         const char *name, const char **members, size_t n) {
  size_t cap = 256 + n * 72;
  char *body = xcalloc(1, cap);
  size_t k = (size_t)snprintf(body, cap, "{\"type\":\"%s\",", type);
  if (name)
    k += (size_t)snprintf(body + k, cap - k, "\"name\":\"%s\",", name);
  k += (size_t)snprintf(body + k, cap - k, "\"members\":[");
  for (size_t i = 0; i < n; i++)
    k += (size_t)snprintf(body + k, cap - k, "%s\"%s\"", i ? "," : "",
                          members[i]);
  snprintf(body + k, cap - k, "]}");
  char *resp = NULL;
  int st = http("POST", "/api/v1/conversations", token, body, &resp);
  if (st != 200 && st != 201)
    die("create conversation: HTTP %d %s", st, resp);
  char id[80];
  if (!jstr(resp, strlen(resp), "conversation_id", id, sizeof id))
    die("create conversation: no id in %s", resp);
  free(body);
  free(resp);
  return xstrdup(id);
}

/* ---- the WebSocket client ---- */

enum { C_IDLE, C_CONNECTING, C_UPGRADING, C_OPEN, C_CLOSED };

typedef struct conn conn;
struct conn {
  int fd;
  int state;
  int idx;
  bool queued;     /* waiting for a handshake slot */
  bool dirty;      /* has output to flush */
  bool want_out;   /* EPOLLOUT armed */
  bool hello;
  bool failed;
  const char *token;
  uint32_t src;    /* source address, host order */
  char *rb;
  size_t rlen, rcap;
  char *wb;
  size_t wlen, woff, wcap;
  char *frag;      /* continuation reassembly */
  size_t flen;
  uint64_t t_first, t_start, t_hello, t_done; /* t_first: first conn_open */
  /* scenario state */
  uint64_t sent, acked, recvd;
  uint64_t mark_id, mark_sent_id; /* receipt batching */
  uint64_t next_receipt_ns;
  char conv[80];
  void *u;
};

typedef struct scen {
  void (*on_hello)(conn *c);
  void (*on_frame)(conn *c, const char *type, const char *json, size_t len);
  void (*on_close)(conn *c);
} scen;

static struct {
  int ep;
  scen sc;
  conn **queue; /* waiting to connect */
  size_t qhead, qlen, qcap;
  size_t pending;      /* handshakes in progress */
  size_t max_pending;
  conn **dirty;
  size_t ndirty, dcap;
  uint64_t n_open, n_hello, n_failed, n_closed, n_errors;
  char last_error[120];
} L = {.max_pending = 512};

static const char *UPGRADE =
    "GET /chat/v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "Connection: Upgrade\r\nUpgrade: websocket\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Protocol: chat.v1\r\nAuthorization: Bearer ";

static void wb_put(conn *c, const void *p, size_t n) {
  if (c->wlen + n > c->wcap) {
    size_t cap = c->wcap ? c->wcap : 512;
    while (cap < c->wlen + n)
      cap *= 2;
    c->wb = xrealloc(c->wb, cap);
    c->wcap = cap;
  }
  memcpy(c->wb + c->wlen, p, n);
  c->wlen += n;
  if (!c->dirty) {
    c->dirty = true;
    if (L.ndirty == L.dcap) {
      L.dcap = L.dcap ? L.dcap * 2 : 1024;
      L.dirty = xrealloc(L.dirty, L.dcap * sizeof *L.dirty);
    }
    L.dirty[L.ndirty++] = c;
  }
}

/* A masked client frame; the all-zero mask leaves the payload as is. */
static void ws_frame(conn *c, int opcode, const char *p, size_t n) {
  unsigned char h[14];
  size_t k = 0;
  h[k++] = (unsigned char)(0x80 | opcode);
  if (n < 126) {
    h[k++] = (unsigned char)(0x80 | n);
  } else if (n < 65536) {
    h[k++] = 0x80 | 126;
    h[k++] = (unsigned char)(n >> 8);
    h[k++] = (unsigned char)n;
  } else {
    h[k++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--)
      h[k++] = (unsigned char)((uint64_t)n >> (8 * i));
  }
  memset(h + k, 0, 4);
  k += 4;
  wb_put(c, h, k);
  wb_put(c, p, n);
}

static void ws_text(conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void ws_text(conn *c, const char *fmt, ...) {
  char buf[65536];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof buf)
    die("frame too long");
  ws_frame(c, 1, buf, (size_t)n);
}

static void ev_mod(conn *c, bool out) {
  struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0),
                           .data.ptr = c};
  epoll_ctl(L.ep, EPOLL_CTL_MOD, c->fd, &ev);
  c->want_out = out;
}

static void conn_close(conn *c, bool failed) {
  if (c->state == C_CLOSED || c->state == C_IDLE)
    return;
  if (c->state == C_CONNECTING || c->state == C_UPGRADING)
    L.pending--;
  if (c->hello)
    L.n_open--;
  c->state = C_CLOSED;
  if (c->fd >= 0) {
    epoll_ctl(L.ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->rlen = c->wlen = c->woff = 0;
  c->flen = 0;
  if (failed) {
    c->failed = true;
    L.n_failed++;
  } else {
    L.n_closed++;
  }
  bool had_hello = c->hello;
  c->hello = false;
  if (L.sc.on_close && had_hello)
    L.sc.on_close(c);
}

static void flush(conn *c) {
  c->dirty = false;
  if (c->state != C_OPEN && c->state != C_UPGRADING)
    return;
  while (c->woff < c->wlen) {
    ssize_t w = send(c->fd, c->wb + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!c->want_out)
          ev_mod(c, true);
        return;
      }
      if (errno == EINTR)
        continue;
      conn_close(c, true);
      return;
    }
    c->woff += (size_t)w;
  }
  c->woff = c->wlen = 0;
  if (c->want_out)
    ev_mod(c, false);
}

static void start_connect(conn *c) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(L.last_error, sizeof L.last_error, "socket: %s",
             strerror(errno));
    c->state = C_CONNECTING;
    L.pending++;
    conn_close(c, true);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (c->src && c->src != 0x7f000001) {
#ifdef IP_BIND_ADDRESS_NO_PORT
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
    struct sockaddr_in src = {.sin_family = AF_INET};
    src.sin_addr.s_addr = htonl(c->src);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0)
      die("bind 127.0.0.x: %s", strerror(errno));
  }
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(S.port)};
  sa.sin_addr.s_addr = htonl(0x7f000001);
  c->fd = fd;
  c->state = C_CONNECTING;
  c->t_start = now_ns();
  L.pending++;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  epoll_ctl(L.ep, EPOLL_CTL_ADD, fd, &ev);
  c->want_out = true;
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 &&
      errno != EINPROGRESS) {
    snprintf(L.last_error, sizeof L.last_error, "connect: %s",
             strerror(errno));
    conn_close(c, true);
  }
}

/* Ask for a connection; at most max_pending handshakes run at once. */
static void conn_open(conn *c) {
  if (c->queued || c->state == C_CONNECTING || c->state == C_UPGRADING ||
      c->state == C_OPEN)
    return;
  c->failed = false;
  c->hello = false;
  c->queued = true;
  if (!c->t_first)
    c->t_first = now_ns();
  if (L.qlen == L.qcap) {
    size_t ncap = L.qcap ? L.qcap * 2 : 1024;
    conn **q = xcalloc(ncap, sizeof *q);
    for (size_t i = 0; i < L.qlen; i++)
      q[i] = L.queue[(L.qhead + i) % L.qcap];
    free(L.queue);
    L.queue = q;
    L.qhead = 0;
    L.qcap = ncap;
  }
  L.queue[(L.qhead + L.qlen) % L.qcap] = c;
  L.qlen++;
}

static void pump_queue(void) {
  while (L.qlen && L.pending < L.max_pending) {
    conn *c = L.queue[L.qhead];
    L.qhead = (L.qhead + 1) % L.qcap;
    L.qlen--;
    c->queued = false;
    start_connect(c);
  }
}

static void on_ws_message(conn *c, const char *p, size_t n) {
  if (n < 10 || memcmp(p, "{\"type\":\"", 9) != 0)
    return;
  char type[32];
  const char *q = memchr(p + 9, '"', n - 9);
  if (!q || (size_t)(q - p - 9) >= sizeof type)
    return;
  memcpy(type, p + 9, (size_t)(q - p - 9));
  type[q - p - 9] = 0;
  if (!c->hello && strcmp(type, "hello") == 0) {
    c->hello = true;
    c->t_hello = now_ns();
    L.pending--;
    L.n_hello++;
    L.n_open++;
    if (L.sc.on_hello)
      L.sc.on_hello(c);
    return;
  }
  if (strcmp(type, "error") == 0) {
    L.n_errors++;
    if (L.n_errors <= 3)
      fprintf(stderr, "chat-bench: error frame: %.*s\n", (int)n, p);
  }
  if (L.sc.on_frame)
    L.sc.on_frame(c, type, p, n);
}

/* Parse what is buffered: HTTP answer first, then server frames. */
static void parse(conn *c) {
  size_t off = 0;
  if (c->state == C_UPGRADING) {
    char *e = memmem(c->rb, c->rlen, "\r\n\r\n", 4);
    if (!e)
      return;
    if (c->rlen < 12 || memcmp(c->rb, "HTTP/1.1 101", 12) != 0) {
      snprintf(L.last_error, sizeof L.last_error, "upgrade: %.40s", c->rb);
      conn_close(c, true);
      return;
    }
    c->state = C_OPEN;
    off = (size_t)(e + 4 - c->rb);
  }
  while (c->state == C_OPEN) {
    size_t avail = c->rlen - off;
    if (avail < 2)
      break;
    const unsigned char *h = (const unsigned char *)c->rb + off;
    bool fin = h[0] & 0x80;
    int op = h[0] & 0x0f;
    uint64_t len = h[1] & 0x7f;
    size_t hl = 2;
    if (len == 126) {
      if (avail < 4)
        break;
      len = ((uint64_t)h[2] << 8) | h[3];
      hl = 4;
    } else if (len == 127) {
      if (avail < 10)
        break;
      len = 0;
      for (int i = 0; i < 8; i++)
        len = (len << 8) | h[2 + i];
      hl = 10;
    }
    if (h[1] & 0x80)
      hl += 4; /* servers do not mask; tolerate it anyway */
    if (avail < hl + len)
      break;
    const char *pl = c->rb + off + hl;
    off += hl + (size_t)len;
    if (op == 9) {
      ws_frame(c, 10, pl, (size_t)len);
    } else if (op == 8) {
      conn_close(c, false);
      return;
    } else if (op == 1 || op == 0) {
      if (op == 1 && fin) {
        on_ws_message(c, pl, (size_t)len);
      } else {
        c->frag = xrealloc(c->frag, c->flen + (size_t)len + 1);
        memcpy(c->frag + c->flen, pl, (size_t)len);
        c->flen += (size_t)len;
        if (fin) {
          on_ws_message(c, c->frag, c->flen);
          c->flen = 0;
        }
      }
    }
  }
  if (c->state == C_CLOSED)
    return;
  if (off) {
    memmove(c->rb, c->rb + off, c->rlen - off);
    c->rlen -= off;
  }
}

static void on_readable(conn *c) {
  for (int rounds = 0; rounds < 4 && c->state != C_CLOSED; rounds++) {
    if (c->rcap - c->rlen < 16384) {
      c->rcap = c->rcap ? c->rcap * 2 : 32768;
      c->rb = xrealloc(c->rb, c->rcap);
    }
    ssize_t r = recv(c->fd, c->rb + c->rlen, c->rcap - c->rlen, 0);
    if (r == 0) {
      if (!c->hello)
        snprintf(L.last_error, sizeof L.last_error,
                 "closed by chatd before hello (%s)",
                 c->state == C_UPGRADING ? "no HTTP answer" : "after 101");
      conn_close(c, !c->hello);
      return;
    }
    if (r < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        return;
      if (errno == EINTR)
        continue;
      snprintf(L.last_error, sizeof L.last_error, "recv: %s",
               strerror(errno));
      conn_close(c, true);
      return;
    }
    c->rlen += (size_t)r;
    parse(c);
    if ((size_t)r < c->rcap - c->rlen + (size_t)r)
      return; /* drained */
  }
}

static void on_event(conn *c, uint32_t ev) {
  if (c->state == C_CONNECTING) {
    int err = 0;
    socklen_t sl = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &sl);
    if (err || (ev & (EPOLLERR | EPOLLHUP))) {
      snprintf(L.last_error, sizeof L.last_error, "connect: %s",
               strerror(err ? err : ECONNRESET));
      conn_close(c, true);
      return;
    }
    if (!(ev & EPOLLOUT))
      return;
    c->state = C_UPGRADING;
    wb_put(c, UPGRADE, strlen(UPGRADE));
    wb_put(c, c->token, strlen(c->token));
    wb_put(c, "\r\n\r\n", 4);
    return;
  }
  if (ev & EPOLLIN)
    on_readable(c);
  if (c->state != C_CLOSED && (ev & EPOLLOUT) && c->wlen > c->woff)
    flush(c);
  if (c->state != C_CLOSED && (ev & (EPOLLERR | EPOLLHUP)) &&
      !(ev & EPOLLIN))
    conn_close(c, !c->hello);
}

static void loop_once(int timeout_ms) {
  pump_queue();
  for (size_t i = 0; i < L.ndirty; i++)
    flush(L.dirty[i]);
  L.ndirty = 0;
  struct epoll_event evs[512];
  int n = epoll_wait(L.ep, evs, 512, timeout_ms);
  for (int i = 0; i < n; i++)
    on_event(evs[i].data.ptr, evs[i].events);
  for (size_t i = 0; i < L.ndirty; i++)
    flush(L.dirty[i]);
  L.ndirty = 0;
  pump_queue();
}

static void loop_init(scen sc) {
  if (L.ep <= 0)
    L.ep = epoll_create1(EPOLL_CLOEXEC);
  L.sc = sc;
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static conn *conns_new(size_t n, const char *const *tokens, uint32_t src) {
  conn *cs = xcalloc(n, sizeof *cs);
  for (size_t i = 0; i < n; i++) {
    cs[i].fd = -1;
    cs[i].idx = (int)i;
    cs[i].token = tokens[i];
    cs[i].src = src;
  }
  return cs;
}

/* Receipt batching as an SDK does it: at most one mark per conversation
 * per second, carrying the highest id seen. */
static void note_mark(conn *c, const char *json, size_t len) {
  char mid[32];
  if (jstr(json, len, "message_id", mid, sizeof mid)) {
    uint64_t v = strtoull(mid, NULL, 10);
    if (v > c->mark_id)
      c->mark_id = v;
  }
}

static void flush_marks(conn *cs, size_t n, const char *kind, uint64_t now) {
  for (size_t i = 0; i < n; i++) {
    conn *c = &cs[i];
    if (!c->hello || c->mark_id <= c->mark_sent_id ||
        now < c->next_receipt_ns)
      continue;
    ws_text(c,
            "{\"type\":\"%s\",\"conversation_id\":\"%s\","
            "\"up_to_message_id\":\"%" PRIu64 "\"}",
            kind, c->conv, c->mark_id);
    c->mark_sent_id = c->mark_id;
    c->next_receipt_ns = now + 1000000000u;
  }
}

/* 64-byte body: the send time in ns, padded. */
static void make_body(char *out, uint64_t t) {
  int k = snprintf(out, 65, "t%020" PRIu64 "-", t);
  memset(out + k, 'x', (size_t)(64 - k));
  out[64] = 0;
}

static uint64_t body_time(const char *json, size_t len) {
  const char *p = memmem(json, len, "\"body\":\"t", 9);
  return p ? strtoull(p + 9, NULL, 10) : 0;
}

/* ---- options ---- */

typedef struct opts {
  long conns, procs, pairs, window, messages, members, online, burst,
      singles, receipt_msgs, clients, convs, missed, group_size, seconds,
      rate, churn_rate, timeout, receipts, max_pending, spread;
  int json_only;
} opts;

static opts O = {
    .conns = 1000, .procs = 0, .pairs = 50, .window = 10,
    .messages = 200000, .members = 1000, .online = 1000, .burst = 2000,
    .singles = 100, .receipt_msgs = 5, .clients = 2000, .convs = 4,
    .missed = 20, .group_size = 100, .seconds = 10, .rate = 50,
    .churn_rate = 100, .timeout = 120, .receipts = 1, .spread = 10000};

static void json_common(FILE *f, const char *scenario) {
  fprintf(f, "{\"scenario\":\"%s\",\"sync\":\"%s\"", scenario, S.sync);
}

/* ==== scenario: idle ==== */

/* A child generator: connect n, report, hold until the parent says so. */
typedef struct gen_report {
  uint64_t ok, failed, t_first_ns, t_last_ns;
  char err[120];
} gen_report;

static void idle_child(const char *const *tokens, size_t n, uint32_t src,
                       int go_fd, int report_fd) {
  char b;
  if (read(go_fd, &b, 1) != 1)
    _exit(1);
  loop_init((scen){0});
  if (O.max_pending)
    L.max_pending = (size_t)O.max_pending;
  conn *cs = conns_new(n, tokens, src);
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < n; i++)
    conn_open(&cs[i]);
  uint64_t deadline = t0 + (uint64_t)O.timeout * 1000000000u;
  while (L.n_hello + L.n_failed < n && now_ns() < deadline)
    loop_once(10);
  gen_report r = {.ok = L.n_hello, .failed = n - L.n_hello,
                  .t_first_ns = t0, .t_last_ns = 0};
  for (size_t i = 0; i < n; i++)
    if (cs[i].hello && cs[i].t_hello > r.t_last_ns)
      r.t_last_ns = cs[i].t_hello;
  snprintf(r.err, sizeof r.err, "%s", L.last_error);
  if (write(report_fd, &r, sizeof r) != sizeof r)
    _exit(1);
  /* Hold: keep answering pings until the parent closes go_fd. */
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(L.ep, EPOLL_CTL_ADD, go_fd, &ev);
  for (;;) {
    struct epoll_event evs[256];
    int k = epoll_wait(L.ep, evs, 256, 1000);
    for (int i = 0; i < k; i++) {
      if (!evs[i].data.ptr)
        _exit(0);
      on_event(evs[i].data.ptr, evs[i].events);
    }
    for (size_t i = 0; i < L.ndirty; i++)
      flush(L.dirty[i]);
    L.ndirty = 0;
  }
}

typedef struct gens {
  size_t n;
  pid_t pid[64];
  int go[64], rep[64];
} gens;

/* Fork nproc generators over [0, n) of tokens; child i uses 127.0.0.(2+i).
 * body(tokens, count, src, go_fd, report_fd) never returns. */
static void gens_fork(gens *g, size_t nproc, const char *const *tokens,
                      size_t n,
                      void (*body)(const char *const *, size_t, uint32_t, int,
                                   int, size_t first)) {
  g->n = nproc;
  size_t per = (n + nproc - 1) / nproc, first = 0;
  for (size_t i = 0; i < nproc; i++) {
    size_t cnt = first + per > n ? n - first : per;
    int go[2], rep[2];
    /* Close-on-exec: a chatd started later (drain restarts it) must not
     * hold the generators' pipes open. */
    if (pipe2(go, O_CLOEXEC) || pipe2(rep, O_CLOEXEC))
      die("pipe");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
      die("fork");
    if (pid == 0) {
      close(go[1]);
      close(rep[0]);
      /* A fresh loop: an epoll instance inherited across fork() is shared
       * with the parent and the other generators, which would then be
       * woken for (and read from) each other's sockets. */
      if (L.ep > 0)
        close(L.ep);
      free(L.queue);
      free(L.dirty);
      memset(&L, 0, sizeof L);
      L.max_pending = 512;
      body(tokens + first, cnt, 0x7f000002u + (uint32_t)i, go[0], rep[1],
           first);
      _exit(0);
    }
    close(go[0]);
    close(rep[1]);
    g->pid[i] = pid;
    g->go[i] = go[1];
    g->rep[i] = rep[0];
    first += cnt;
  }
}

static void gens_go(gens *g) {
  for (size_t i = 0; i < g->n; i++)
    if (write(g->go[i], "g", 1) != 1)
      die("go pipe");
}

static void gens_end(gens *g) {
  for (size_t i = 0; i < g->n; i++)
    close(g->go[i]);
  for (size_t i = 0; i < g->n; i++) {
    close(g->rep[i]);
    waitpid(g->pid[i], NULL, 0);
  }
}

static void idle_body(const char *const *tokens, size_t n, uint32_t src,
                      int go, int rep, size_t first) {
  (void)first;
  idle_child(tokens, n, src, go, rep);
}

static void read_full(int fd, void *p, size_t n) {
  size_t k = 0;
  while (k < n) {
    ssize_t r = read(fd, (char *)p + k, n - k);
    if (r <= 0)
      die("generator died");
    k += (size_t)r;
  }
}

static void run_idle(void) {
  size_t n = (size_t)O.conns;
  size_t nproc = O.procs > 0 ? (size_t)O.procs : (n + 3999) / 4000;
  if (nproc > 64)
    nproc = 64;
  chatd_start();
  const char **tokens = xcalloc(n, sizeof *tokens);
  for (size_t i = 0; i < n; i++) {
    char u[32];
    snprintf(u, sizeof u, "idle%zu", i);
    tokens[i] = mint(u, "d");
  }
  /* One connection first, so that lws's and SQLite's one-time allocations
   * are not charged to the N connections. */
  gens warm;
  gens_fork(&warm, 1, tokens, 1, idle_body);
  gens_go(&warm);
  gen_report wr;
  read_full(warm.rep[0], &wr, sizeof wr);
  usleep(300000);
  gens g;
  gens_fork(&g, nproc, tokens + 1, n - 1, idle_body);
  usleep(200000);
  long rss0 = chatd_rss_kib();
  double cpu0 = chatd_cpu_s();
  uint64_t t0 = now_ns();
  gens_go(&g);
  uint64_t ok = 0, failed = 0, t_last = 0;
  char err[120] = "";
  for (size_t i = 0; i < g.n; i++) {
    gen_report r;
    read_full(g.rep[i], &r, sizeof r);
    ok += r.ok;
    failed += r.failed;
    if (r.t_last_ns > t_last)
      t_last = r.t_last_ns;
    if (r.err[0])
      snprintf(err, sizeof err, "%s", r.err);
  }
  double cpu1 = chatd_cpu_s();
  usleep(1000000); /* let lazily freed upgrade state go */
  long rss1 = chatd_rss_kib();
  double open_now = metric("chat_ws_connections_open");
  double secs = (double)(t_last - t0) / 1e9;
  double per = ok ? (double)(rss1 - rss0) * 1024.0 / (double)ok : 0;
  json_common(stdout, "idle");
  printf(",\"connections\":%" PRIu64 ",\"failed\":%" PRIu64
         ",\"generators\":%zu,\"server_open\":%.0f,\"rss_before_kib\":%ld,"
         "\"rss_after_kib\":%ld,\"bytes_per_conn\":%.0f,"
         "\"connect_s\":%.3f,\"conns_per_s\":%.0f,\"chatd_cpu_s\":%.2f,"
         "\"error\":\"%s\"}\n",
         ok, failed, nproc, open_now, rss0, rss1, per, secs,
         secs > 0 ? (double)ok / secs : 0, cpu1 - cpu0, err);
  printf("# idle: %" PRIu64 " connections (%" PRIu64
         " failed) over %zu generators: %.0f B/conn of chatd RSS, "
         "%.0f conn/s accepted\n",
         ok, failed, nproc, per, secs > 0 ? (double)ok / secs : 0);
  fflush(stdout);
  gens_end(&g);
  gens_end(&warm);
  chatd_stop();
}

/* ==== scenario: direct ==== */

static struct {
  conn *cs; /* senders at 2i, receivers at 2i+1 */
  size_t pairs;
  uint64_t per_pair, window;
  uint64_t **t_send; /* per pair, by seq */
  lat ack, dlv;
  uint64_t acked, delivered, t_last_ack, t_last_dlv;
  bool started;
} D;

static void direct_send(conn *c) {
  size_t p = (size_t)c->idx / 2;
  uint64_t seq = c->sent++;
  uint64_t t = now_ns();
  D.t_send[p][seq] = t;
  char body[65];
  make_body(body, t);
  ws_text(c,
          "{\"type\":\"send\",\"client_msg_id\":\"m%" PRIu64
          "\",\"conversation_id\":\"%s\",\"body\":\"%s\"}",
          seq, c->conv, body);
}

static void direct_frame(conn *c, const char *type, const char *json,
                         size_t len) {
  uint64_t t = now_ns();
  if (c->idx % 2 == 0 && strcmp(type, "ack") == 0) {
    char cm[40];
    if (!jstr(json, len, "client_msg_id", cm, sizeof cm))
      return;
    uint64_t seq = strtoull(cm + 1, NULL, 10);
    size_t p = (size_t)c->idx / 2;
    if (seq < D.per_pair)
      lat_add(&D.ack, t - D.t_send[p][seq]);
    c->acked++;
    D.acked++;
    D.t_last_ack = t;
    if (c->sent < D.per_pair)
      direct_send(c);
  } else if (c->idx % 2 == 1 && strcmp(type, "message") == 0) {
    uint64_t ts = body_time(json, len);
    if (ts)
      lat_add(&D.dlv, t - ts);
    c->recvd++;
    D.delivered++;
    D.t_last_dlv = t;
    note_mark(c, json, len);
  }
}

static void run_direct(size_t pairs, uint64_t window, uint64_t total,
                       const char *label) {
  chatd_start();
  memset(&D, 0, sizeof D);
  D.pairs = pairs;
  D.per_pair = total / pairs;
  D.window = window;
  const char **tokens = xcalloc(2 * pairs, sizeof *tokens);
  char **convs = xcalloc(pairs, sizeof *convs);
  for (size_t i = 0; i < pairs; i++) {
    char a[32], b[32];
    snprintf(a, sizeof a, "a%zu", i);
    snprintf(b, sizeof b, "b%zu", i);
    tokens[2 * i] = mint(a, "d");
    tokens[2 * i + 1] = mint(b, "d");
    const char *mem[1] = {b};
    convs[i] = create_conv(tokens[2 * i], "direct", NULL, mem, 1);
  }
  D.t_send = xcalloc(pairs, sizeof *D.t_send);
  for (size_t i = 0; i < pairs; i++)
    D.t_send[i] = xcalloc(D.per_pair, sizeof **D.t_send);
  loop_init((scen){.on_frame = direct_frame});
  L.n_hello = L.n_failed = 0;
  D.cs = conns_new(2 * pairs, tokens, 0x7f000001);
  for (size_t i = 0; i < 2 * pairs; i++) {
    snprintf(D.cs[i].conv, sizeof D.cs[i].conv, "%s", convs[i / 2]);
    conn_open(&D.cs[i]);
  }
  uint64_t deadline = now_ns() + 30ull * 1000000000u;
  while (L.n_hello < 2 * pairs && now_ns() < deadline)
    loop_once(10);
  if (L.n_hello < 2 * pairs)
    die("direct: only %" PRIu64 " of %zu connected (%s)", L.n_hello,
        2 * pairs, L.last_error);
  double commits0 = metric("chat_store_commits_total");
  double rec0 = metric("chat_receipts_applied_total");
  double cpu0 = chatd_cpu_s();
  uint64_t want = D.per_pair * pairs;
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < pairs; i++)
    for (uint64_t w = 0; w < window && D.cs[2 * i].sent < D.per_pair; w++)
      direct_send(&D.cs[2 * i]);
  deadline = t0 + (uint64_t)O.timeout * 1000000000u;
  while ((D.acked < want || D.delivered < want) && now_ns() < deadline) {
    loop_once(5);
    uint64_t now = now_ns();
    for (size_t i = 0; i < pairs; i++)
      flush_marks(&D.cs[2 * i + 1], 1, "delivered", now);
  }
  double cpu1 = chatd_cpu_s();
  double commits1 = metric("chat_store_commits_total");
  double rec1 = metric("chat_receipts_applied_total");
  double ack_s = (double)(D.t_last_ack - t0) / 1e9;
  double dlv_s = (double)(D.t_last_dlv - t0) / 1e9;
  char la[256], ld[256];
  lat_json(la, sizeof la, "send_to_ack", &D.ack);
  lat_json(ld, sizeof ld, "send_to_deliver", &D.dlv);
  json_common(stdout, label);
  printf(",\"pairs\":%zu,\"in_flight\":%" PRIu64 ",\"messages\":%" PRIu64
         ",\"body_bytes\":64,\"acked\":%" PRIu64 ",\"delivered\":%" PRIu64
         ",\"acked_per_s\":%.0f,\"delivered_per_s\":%.0f,%s,%s,"
         "\"store_commits\":%.0f,\"receipts_applied\":%.0f,"
         "\"sends_per_commit\":%.1f,\"chatd_cpu_s\":%.2f,\"wall_s\":%.3f,"
         "\"error_frames\":%" PRIu64 "}\n",
         pairs, window, want, D.acked, D.delivered,
         ack_s > 0 ? (double)D.acked / ack_s : 0,
         dlv_s > 0 ? (double)D.delivered / dlv_s : 0, la, ld,
         commits1 - commits0, rec1 - rec0,
         commits1 > commits0 ? (double)D.acked / (commits1 - commits0) : 0,
         cpu1 - cpu0, dlv_s > ack_s ? dlv_s : ack_s, L.n_errors);
  printf("# %s (--sync %s): %zu pairs x %" PRIu64 " in flight, %" PRIu64
         " msgs: %.0f acked/s, %.0f delivered/s, ack p50 %.3f p99 %.3f "
         "p99.9 %.3f ms, deliver p50 %.3f p99 %.3f p99.9 %.3f ms\n",
         label, S.sync, pairs, window, want,
         ack_s > 0 ? (double)D.acked / ack_s : 0,
         dlv_s > 0 ? (double)D.delivered / dlv_s : 0, lat_pct(&D.ack, 50),
         lat_pct(&D.ack, 99), lat_pct(&D.ack, 99.9), lat_pct(&D.dlv, 50),
         lat_pct(&D.dlv, 99), lat_pct(&D.dlv, 99.9));
  fflush(stdout);
  for (size_t i = 0; i < 2 * pairs; i++)
    conn_close(&D.cs[i], false);
  chatd_stop();
}

/* ==== scenario: group ==== */

static struct {
  conn *cs; /* [0] publisher, the rest receivers */
  size_t online;
  uint64_t target;  /* messages each receiver must have this phase */
  uint64_t done;    /* receivers that have them */
  uint64_t t_last;
  uint64_t deliveries;
  uint64_t acked;
  uint64_t last_ack_id;
  bool read_receipts;
} G;

static void group_frame(conn *c, const char *type, const char *json,
                        size_t len) {
  if (c->idx == 0) {
    if (strcmp(type, "ack") == 0) {
      G.acked++;
      char mid[32];
      if (jstr(json, len, "message_id", mid, sizeof mid))
        G.last_ack_id = strtoull(mid, NULL, 10);
    }
    return;
  }
  if (strcmp(type, "message") != 0)
    return;
  G.deliveries++;
  c->recvd++;
  note_mark(c, json, len);
  if (c->recvd == G.target) {
    G.done++;
    G.t_last = now_ns();
  }
}

static void group_pump(uint64_t until_ns) {
  uint64_t now = now_ns();
  while (G.done < G.online - 1 && now < until_ns) {
    loop_once(2);
    now = now_ns();
    if (G.read_receipts)
      flush_marks(G.cs + 1, G.online - 1, "read", now);
  }
}

static void group_send(const char *cmid_prefix, uint64_t seq) {
  conn *p = &G.cs[0];
  char body[65];
  make_body(body, now_ns());
  ws_text(p,
          "{\"type\":\"send\",\"client_msg_id\":\"%s%" PRIu64
          "\",\"conversation_id\":\"%s\",\"body\":\"%s\"}",
          cmid_prefix, seq, p->conv, body);
}

static void run_group(void) {
  size_t m = (size_t)O.members, online = (size_t)O.online;
  if (online > m)
    online = m;
  chatd_start();
  const char **tokens = xcalloc(m, sizeof *tokens);
  char **users = xcalloc(m, sizeof *users);
  for (size_t i = 0; i < m; i++) {
    char u[32];
    snprintf(u, sizeof u, "g%zu", i);
    users[i] = xstrdup(u);
    tokens[i] = mint(u, "d");
  }
  char *conv = create_conv(tokens[0], "group", "bench", (const char **)users + 1,
                           m - 1);
  memset(&G, 0, sizeof G);
  G.online = online;
  G.read_receipts = O.receipts != 0;
  loop_init((scen){.on_frame = group_frame});
  L.n_hello = L.n_failed = 0;
  G.cs = conns_new(online, tokens, 0x7f000001);
  for (size_t i = 0; i < online; i++) {
    snprintf(G.cs[i].conv, sizeof G.cs[i].conv, "%s", conv);
    conn_open(&G.cs[i]);
  }
  uint64_t deadline = now_ns() + 60ull * 1000000000u;
  while (L.n_hello + L.n_failed < online && now_ns() < deadline)
    loop_once(10);
  if (L.n_hello < online)
    die("group: only %" PRIu64 " of %zu connected (%s)", L.n_hello, online,
        L.last_error);
  /* (a) a burst */
  uint64_t burst = (uint64_t)O.burst;
  double rec0 = metric("chat_receipts_applied_total");
  double com0 = metric("chat_store_commits_total");
  double dl0 = metric("chat_deliveries_total");
  double cpu0 = chatd_cpu_s();
  G.target = burst;
  G.done = 0;
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < burst; i++)
    group_send("b", i);
  group_pump(t0 + (uint64_t)O.timeout * 1000000000u);
  double burst_s = (double)(G.t_last - t0) / 1e9;
  uint64_t burst_done = G.done;
  double cpu1 = chatd_cpu_s();
  double dl1 = metric("chat_deliveries_total");
  uint64_t burst_deliveries = G.deliveries;
  /* let the last batched read receipts of the burst go out */
  uint64_t t_settle = now_ns() + 1100000000u;
  while (now_ns() < t_settle) {
    loop_once(5);
    if (G.read_receipts)
      flush_marks(G.cs + 1, online - 1, "read", now_ns());
  }
  double rec1 = metric("chat_receipts_applied_total");
  double com1 = metric("chat_store_commits_total");
  /* (b) one message at a time */
  lat one;
  memset(&one, 0, sizeof one);
  uint64_t singles_t0 = now_ns();
  for (long s = 0; s < O.singles; s++) {
    G.target += 1;
    G.done = 0;
    uint64_t ts = now_ns();
    group_send("s", (uint64_t)s);
    group_pump(ts + 10ull * 1000000000u);
    if (G.done == online - 1)
      lat_add(&one, G.t_last - ts);
    if (now_ns() - singles_t0 > (uint64_t)O.timeout * 1000000000u)
      break;
  }
  /* (c) receipts: messages a second apart, every online member reads each
   * (batched as an SDK does, at most one mark a second) */
  double rec2 = metric("chat_receipts_applied_total");
  double com2 = metric("chat_store_commits_total");
  for (long r = 0; r < O.receipt_msgs; r++) {
    G.target += 1;
    G.done = 0;
    group_send("r", (uint64_t)r);
    uint64_t until = now_ns() + 1050000000u;
    while (now_ns() < until) {
      loop_once(5);
      if (G.read_receipts)
        flush_marks(G.cs + 1, online - 1, "read", now_ns());
    }
  }
  uint64_t until = now_ns() + 1100000000u;
  while (now_ns() < until) {
    loop_once(5);
    if (G.read_receipts)
      flush_marks(G.cs + 1, online - 1, "read", now_ns());
  }
  double rec3 = metric("chat_receipts_applied_total");
  double com3 = metric("chat_store_commits_total");
  double rframes = metric("chat_receipt_frames_total");
  char lo[256];
  lat_json(lo, sizeof lo, "one_to_last", &one);
  double per_msg_rc =
      O.receipt_msgs ? (rec3 - rec2) / (double)O.receipt_msgs : 0;
  double per_msg_writes =
      O.receipt_msgs ? (rec3 - rec2 + com3 - com2) / (double)O.receipt_msgs
                     : 0;
  json_common(stdout, "group");
  printf(",\"read_receipts\":%s,\"members\":%zu,\"online\":%zu,\"burst\":%" PRIu64
         ",\"burst_receivers_complete\":%" PRIu64
         ",\"burst_deliveries\":%" PRIu64 ",\"burst_s\":%.3f,"
         "\"burst_deliveries_per_s\":%.0f,\"burst_server_deliveries\":%.0f,"
         "\"burst_chatd_cpu_s\":%.2f,\"burst_receipts_applied\":%.0f,"
         "\"burst_store_commits\":%.0f,%s,"
         "\"receipt_msgs\":%ld,\"receipts_applied_per_msg\":%.1f,"
         "\"store_writes_per_msg\":%.1f,\"receipt_frames_total\":%.0f,"
         "\"error_frames\":%" PRIu64 "}\n",
         G.read_receipts ? "true" : "false", m, online, burst, burst_done, burst_deliveries, burst_s,
         burst_s > 0 ? (double)burst_deliveries / burst_s : 0, dl1 - dl0,
         cpu1 - cpu0, rec1 - rec0, com1 - com0, lo, O.receipt_msgs,
         per_msg_rc, per_msg_writes, rframes, L.n_errors);
  lat_sort(&one);
  printf("# group %zu members, %zu online: burst of %" PRIu64
         " -> %.0f deliveries/s, last member complete after %.3f s; one "
         "message to the last member p50 %.2f ms p99 %.2f ms; %.1f store "
         "writes per message with batched reads\n",
         m, online, burst,
         burst_s > 0 ? (double)burst_deliveries / burst_s : 0, burst_s,
         lat_pct(&one, 50), lat_pct(&one, 99), per_msg_writes);
  fflush(stdout);
  for (size_t i = 0; i < online; i++)
    conn_close(&G.cs[i], false);
  chatd_stop();
}

/* ==== scenario: resume ==== */

static struct {
  size_t nconv;          /* group conversations */
  char **conv;           /* ids */
  uint64_t *base;        /* last message id each client saw, per conv */
  size_t per_layer;      /* groups per layer */
  size_t first;          /* this generator's first client */
  conn *cs;
  size_t n;
  uint64_t expect;       /* messages per client */
  uint64_t done, bad;
  uint64_t *retry_at;    /* per client: when to try again, 0: not due */
  uint32_t *attempts;
  uint64_t retries;
  uint64_t acks;
} R;

static void resume_groups_of(size_t client, size_t *out) {
  /* client i is in group (i / group_size) of each of the C layers */
  for (long j = 0; j < O.convs; j++)
    out[j] = (size_t)j * R.per_layer + client / (size_t)O.group_size;
}

static void resume_hello(conn *c) {
  size_t g[64];
  resume_groups_of(R.first + (size_t)c->idx, g);
  char buf[8192];
  size_t k = (size_t)snprintf(buf, sizeof buf,
                              "{\"type\":\"resume\",\"last_seen\":{");
  for (long j = 0; j < O.convs; j++)
    k += (size_t)snprintf(buf + k, sizeof buf - k, "%s\"%s\":\"%" PRIu64 "\"",
                          j ? "," : "", R.conv[g[j]], R.base[g[j]]);
  snprintf(buf + k, sizeof buf - k, "}}");
  ws_text(c, "%s", buf);
}

static void resume_frame(conn *c, const char *type, const char *json,
                         size_t len) {
  if (strcmp(type, "history") == 0) {
    const char *p = json, *e = json + len;
    while ((p = memmem(p, (size_t)(e - p), "\"message_id\":\"", 14))) {
      c->recvd++;
      p += 14;
    }
  } else if (strcmp(type, "resumed") == 0) {
    c->t_done = now_ns();
    R.done++;
    if (c->recvd != R.expect)
      R.bad++;
  }
}

typedef struct res_report {
  uint64_t ok, bad, failed, t_last_ns, n, retries;
  char err[120];
} res_report;

static void resume_body(const char *const *tokens, size_t n, uint32_t src,
                        int go, int rep, size_t first) {
  R.first = first;
  loop_init((scen){.on_hello = resume_hello, .on_frame = resume_frame});
  L.max_pending = O.max_pending ? (size_t)O.max_pending : 4096;
  R.cs = conns_new(n, tokens, src);
  R.n = n;
  char b;
  if (read(go, &b, 1) != 1)
    _exit(1);
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < n; i++)
    conn_open(&R.cs[i]);
  uint64_t deadline = t0 + (uint64_t)O.timeout * 1000000000u;
  /* A client refused or cut before `resumed` tries again after a jittered
   * backoff (250 ms doubling, at most 4 s), as the SDK does. */
  R.retry_at = xcalloc(n, sizeof *R.retry_at);
  R.attempts = xcalloc(n, sizeof *R.attempts);
  uint64_t rng = 0x2545f4914f6cdd1dull ^ first;
  while (R.done < n && now_ns() < deadline) {
    loop_once(5);
    uint64_t now = now_ns();
    for (size_t i = 0; i < n; i++) {
      conn *c = &R.cs[i];
      if (c->t_done || c->state != C_CLOSED || c->queued)
        continue;
      if (!R.retry_at[i]) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        uint32_t a = R.attempts[i] < 4 ? R.attempts[i] : 4;
        uint64_t base = 250000000ull << a;
        R.retry_at[i] = now + base / 2 + rng % base;
      } else if (now >= R.retry_at[i]) {
        R.retry_at[i] = 0;
        R.attempts[i]++;
        R.retries++;
        c->recvd = 0;
        conn_open(c); /* per-client time still counts from t_first */
      }
    }
  }
  res_report r = {.ok = R.done, .bad = R.bad, .failed = n - R.done, .n = n,
                  .retries = R.retries};
  snprintf(r.err, sizeof r.err, "%s", L.last_error);
  uint32_t *us = xcalloc(n, sizeof *us);
  for (size_t i = 0; i < n; i++) {
    if (R.cs[i].t_done) {
      uint64_t d = (R.cs[i].t_done - R.cs[i].t_first) / 1000u;
      us[i] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
      if (R.cs[i].t_done > r.t_last_ns)
        r.t_last_ns = R.cs[i].t_done;
    } else {
      us[i] = UINT32_MAX;
    }
  }
  if (write(rep, &r, sizeof r) != sizeof r ||
      write(rep, us, n * sizeof *us) != (ssize_t)(n * sizeof *us))
    _exit(1);
  if (read(go, &b, 1) < 0)
    _exit(1);
  _exit(0);
}

static void resume_poster_frame(conn *c, const char *type, const char *json,
                                size_t len) {
  (void)c;
  if (strcmp(type, "ack") != 0)
    return;
  char cm[40], mid[32];
  if (jstr(json, len, "client_msg_id", cm, sizeof cm) && cm[0] == 'z' &&
      jstr(json, len, "message_id", mid, sizeof mid))
    R.base[strtoull(cm + 1, NULL, 10)] = strtoull(mid, NULL, 10);
  R.acks++;
}

static void run_resume(void) {
  size_t m = (size_t)O.clients;
  size_t gs = (size_t)O.group_size;
  if (m % gs)
    m = (m / gs + 1) * gs;
  R.per_layer = m / gs;
  R.nconv = R.per_layer * (size_t)O.convs;
  R.expect = (uint64_t)O.missed;
  uint64_t per_conv = (uint64_t)O.missed / (uint64_t)O.convs;
  R.expect = per_conv * (uint64_t)O.convs;
  chatd_start();
  const char **tokens = xcalloc(m, sizeof *tokens);
  char **users = xcalloc(m, sizeof *users);
  for (size_t i = 0; i < m; i++) {
    char u[32];
    snprintf(u, sizeof u, "r%zu", i);
    users[i] = xstrdup(u);
    tokens[i] = mint(u, "d");
  }
  const char *ptok = mint("poster", "d");
  R.conv = xcalloc(R.nconv, sizeof *R.conv);
  R.base = xcalloc(R.nconv, sizeof *R.base);
  uint64_t ts = now_ns();
  for (size_t g = 0; g < R.nconv; g++) {
    size_t first = (g % R.per_layer) * gs;
    R.conv[g] = create_conv(ptok, "group", "r", (const char **)users + first,
                            gs);
  }
  double setup_s = (double)(now_ns() - ts) / 1e9;
  /* the poster: one baseline message per conversation (what every client
   * saw before it went away), then the ones they miss */
  loop_init((scen){.on_frame = resume_poster_frame});
  const char *pt[1] = {ptok};
  conn *p = conns_new(1, pt, 0x7f000001);
  conn_open(p);
  uint64_t dl = now_ns() + 30ull * 1000000000u;
  while (!p->hello && now_ns() < dl)
    loop_once(10);
  if (!p->hello)
    die("resume: poster did not connect (%s)", L.last_error);
  for (size_t g = 0; g < R.nconv; g++)
    ws_text(p,
            "{\"type\":\"send\",\"client_msg_id\":\"z%zu\","
            "\"conversation_id\":\"%s\",\"body\":\"base\"}",
            g, R.conv[g]);
  while (R.acks < R.nconv && now_ns() < dl)
    loop_once(10);
  char body[65];
  make_body(body, 0);
  for (uint64_t k = 0; k < per_conv; k++)
    for (size_t g = 0; g < R.nconv; g++)
      ws_text(p,
              "{\"type\":\"send\",\"client_msg_id\":\"y%zu_%" PRIu64
              "\",\"conversation_id\":\"%s\",\"body\":\"%s\"}",
              g, k, R.conv[g], body);
  dl = now_ns() + 120ull * 1000000000u;
  while (R.acks < R.nconv * (1 + per_conv) && now_ns() < dl)
    loop_once(10);
  if (R.acks < R.nconv * (1 + per_conv))
    die("resume: only %" PRIu64 " acks (%" PRIu64 " errors)", R.acks,
        L.n_errors);
  conn_close(p, false);
  size_t nproc = O.procs > 0 ? (size_t)O.procs : (m + 3999) / 4000;
  gens g;
  gens_fork(&g, nproc, tokens, m, resume_body);
  usleep(300000);
  double cpu0 = chatd_cpu_s();
  uint64_t t0 = now_ns();
  gens_go(&g);
  lat all;
  memset(&all, 0, sizeof all);
  uint64_t ok = 0, bad = 0, failed = 0, t_last = 0, retries = 0;
  char err[120] = "";
  for (size_t i = 0; i < g.n; i++) {
    res_report r;
    read_full(g.rep[i], &r, sizeof r);
    uint32_t *us = xcalloc(r.n, sizeof *us);
    read_full(g.rep[i], us, r.n * sizeof *us);
    for (size_t k = 0; k < r.n; k++)
      if (us[k] != UINT32_MAX)
        lat_add(&all, (uint64_t)us[k] * 1000u);
    free(us);
    ok += r.ok;
    retries += r.retries;
    bad += r.bad;
    failed += r.failed;
    if (r.t_last_ns > t_last)
      t_last = r.t_last_ns;
    if (r.err[0])
      snprintf(err, sizeof err, "%s", r.err);
  }
  double cpu1 = chatd_cpu_s();
  double all_s = t_last > t0 ? (double)(t_last - t0) / 1e9 : -1;
  char lr[256];
  lat_json(lr, sizeof lr, "client_resume", &all);
  json_common(stdout, "resume");
  printf(",\"clients\":%zu,\"convs_per_client\":%ld,\"group_size\":%zu,"
         "\"conversations\":%zu,\"missed_per_client\":%" PRIu64
         ",\"generators\":%zu,\"resumed\":%" PRIu64 ",\"wrong_count\":%" PRIu64
         ",\"failed\":%" PRIu64 ",\"retries\":%" PRIu64
         ",\"all_resumed_s\":%.3f,%s,"
         "\"chatd_cpu_s\":%.2f,\"setup_s\":%.2f,\"error\":\"%s\"}\n",
         m, O.convs, gs, R.nconv, R.expect, nproc, ok, bad, failed, retries,
         all_s, lr,
         cpu1 - cpu0, setup_s, err);
  printf("# resume: %zu clients x %" PRIu64 " missed in %ld conversations: "
         "all resumed in %.3f s, per client p50 %.1f ms p99 %.1f ms (%" PRIu64
         " failed, %" PRIu64 " wrong count, %" PRIu64 " retries)\n",
         m, R.expect, O.convs, all_s, lat_pct(&all, 50), lat_pct(&all, 99),
         failed, bad, retries);
  fflush(stdout);
  gens_end(&g);
  chatd_stop();
}

/* ==== scenario: drain ==== */

/* PROTOCOL.md section 8, server-advised reconnect. N clients (--clients)
 * in groups of --group-size are connected and resumed; then chatd is
 * restarted: SIGTERM, and once it has exited a new chatd on the same port
 * and data directory. With --spread MS > 0 chatd runs with
 * --drain-spread-ms MS, sends goaway before its close 1012, and each
 * client waits a uniformly random delay in [0, retry_after_ms] before it
 * reconnects (docs/protocol.md 6.4). With --spread 0, chatd closes with
 * 1001 and no goaway, and clients use the SDK's reconnect backoff
 * (chat_backoff_default(): full jitter, first ceiling 1 s). A failed
 * attempt (the server is not back yet) goes on with the backoff from its
 * first step, in both modes. Every reconnected client resumes its
 * conversations. Reported, from the SIGTERM: reconnects and resumes per
 * 100 ms, and when the last client had resumed. */

#define DRAIN_BIN_MS 100
#define DRAIN_BINS 1200 /* 120 s */

static struct {
  char **conv;
  uint64_t *base;
  size_t nconv, first;
  conn *cs;
  size_t n;
  bool after;            /* the first session of every client is done */
  uint64_t ready;        /* resumed in the first session */
  uint64_t done;         /* resumed after the restart */
  uint64_t *goaway_ms;   /* per client: retry_after_ms, UINT64_MAX: none */
  uint64_t *due;         /* per client: when to (re)connect, 0: not due */
  uint32_t *attempt;     /* per client: backoff step */
  bool *closed_once;     /* per client: lost its first session */
  uint64_t *t_close, *t_try, *t_hello, *t_resumed;
  uint64_t failed_attempts;
  uint64_t rng;
} DR;

static uint64_t drain_rand(void) {
  DR.rng ^= DR.rng << 13;
  DR.rng ^= DR.rng >> 7;
  DR.rng ^= DR.rng << 17;
  return DR.rng;
}

static void drain_hello(conn *c) {
  size_t i = (size_t)c->idx;
  if (DR.after && !DR.t_hello[i])
    DR.t_hello[i] = c->t_hello;
  size_t g = (DR.first + i) / (size_t)O.group_size;
  ws_text(c,
          "{\"type\":\"resume\",\"last_seen\":{\"%s\":\"%" PRIu64 "\"}}",
          DR.conv[g], DR.base[g]);
}

static void drain_frame(conn *c, const char *type, const char *json,
                        size_t len) {
  size_t i = (size_t)c->idx;
  if (strcmp(type, "goaway") == 0) {
    const char *p = memmem(json, len, "\"retry_after_ms\":", 17);
    if (p)
      DR.goaway_ms[i] = strtoull(p + 17, NULL, 10);
  } else if (strcmp(type, "resumed") == 0) {
    if (!DR.after) {
      DR.ready++;
    } else if (!DR.t_resumed[i]) {
      DR.t_resumed[i] = now_ns();
      DR.done++;
    }
  }
}

static void drain_close(conn *c) {
  size_t i = (size_t)c->idx;
  if (DR.after && !DR.closed_once[i]) {
    DR.closed_once[i] = true;
    DR.t_close[i] = now_ns();
  }
}

/* When a closed client tries next: after goaway, a uniform delay in
 * [0, retry_after_ms] the first time; otherwise (and after any failed
 * attempt) the SDK's backoff. */
static void drain_schedule(size_t i, uint64_t now) {
  uint64_t delay_ms;
  if (DR.goaway_ms[i] != UINT64_MAX) {
    delay_ms = drain_rand() % (DR.goaway_ms[i] + 1);
    DR.goaway_ms[i] = UINT64_MAX; /* used once */
  } else {
    chat_backoff b = chat_backoff_default();
    delay_ms = chat_backoff_delay(&b, DR.attempt[i]++,
                                  (uint32_t)drain_rand());
  }
  DR.due[i] = now + delay_ms * 1000000u;
}

typedef struct drain_report {
  uint64_t n, ready, done, failed_attempts;
  char err[120];
} drain_report;

static void drain_body(const char *const *tokens, size_t n, uint32_t src,
                       int go, int rep, size_t first) {
  DR.first = first;
  DR.n = n;
  DR.rng = 0x9e3779b97f4a7c15ull ^ (first + 1) * 0x2545f4914f6cdd1dull;
  loop_init((scen){.on_hello = drain_hello, .on_frame = drain_frame,
                   .on_close = drain_close});
  L.max_pending = O.max_pending ? (size_t)O.max_pending : 4096;
  DR.cs = conns_new(n, tokens, src);
  DR.goaway_ms = xcalloc(n, sizeof *DR.goaway_ms);
  DR.due = xcalloc(n, sizeof *DR.due);
  DR.attempt = xcalloc(n, sizeof *DR.attempt);
  DR.closed_once = xcalloc(n, sizeof *DR.closed_once);
  DR.t_close = xcalloc(n, sizeof *DR.t_close);
  DR.t_try = xcalloc(n, sizeof *DR.t_try);
  DR.t_hello = xcalloc(n, sizeof *DR.t_hello);
  DR.t_resumed = xcalloc(n, sizeof *DR.t_resumed);
  for (size_t i = 0; i < n; i++)
    DR.goaway_ms[i] = UINT64_MAX;
  char b;
  if (read(go, &b, 1) != 1)
    _exit(1);
  /* The first sessions: connect and resume, then report ready. */
  for (size_t i = 0; i < n; i++)
    conn_open(&DR.cs[i]);
  uint64_t deadline = now_ns() + (uint64_t)O.timeout * 1000000000u;
  while (DR.ready < n && now_ns() < deadline)
    loop_once(10);
  drain_report r = {.n = n, .ready = DR.ready};
  snprintf(r.err, sizeof r.err, "%s", L.last_error);
  DR.after = true;
  if (write(rep, &r, sizeof r) != sizeof r)
    _exit(1);
  if (DR.ready < n)
    _exit(0);
  /* The restart: every client loses its session and comes back. */
  deadline = now_ns() + (uint64_t)O.timeout * 1000000000u;
  while (DR.done < n && now_ns() < deadline) {
    loop_once(2);
    uint64_t now = now_ns();
    for (size_t i = 0; i < n; i++) {
      conn *c = &DR.cs[i];
      if (DR.t_resumed[i] || c->state != C_CLOSED || c->queued)
        continue;
      if (!DR.due[i]) {
        if (DR.t_try[i]) /* an attempt that failed */
          DR.failed_attempts++;
        drain_schedule(i, now);
      } else if (now >= DR.due[i]) {
        DR.due[i] = 0;
        if (!DR.t_try[i])
          DR.t_try[i] = now;
        conn_open(c);
      }
    }
  }
  r.done = DR.done;
  r.failed_attempts = DR.failed_attempts;
  snprintf(r.err, sizeof r.err, "%s", L.last_error);
  if (write(rep, &r, sizeof r) != sizeof r ||
      write(rep, DR.t_close, n * sizeof(uint64_t)) != (ssize_t)(n * 8) ||
      write(rep, DR.t_try, n * sizeof(uint64_t)) != (ssize_t)(n * 8) ||
      write(rep, DR.t_hello, n * sizeof(uint64_t)) != (ssize_t)(n * 8) ||
      write(rep, DR.t_resumed, n * sizeof(uint64_t)) != (ssize_t)(n * 8))
    _exit(1);
  if (read(go, &b, 1) < 0)
    _exit(1);
  _exit(0);
}

static void drain_poster_frame(conn *c, const char *type, const char *json,
                               size_t len) {
  (void)c;
  char cm[40], mid[32];
  if (strcmp(type, "ack") == 0 &&
      jstr(json, len, "client_msg_id", cm, sizeof cm) && cm[0] == 'z' &&
      jstr(json, len, "message_id", mid, sizeof mid)) {
    DR.base[strtoull(cm + 1, NULL, 10)] = strtoull(mid, NULL, 10);
    DR.ready++;
  }
}

static void bins_json(FILE *f, const char *name, const uint32_t *bins,
                      size_t n) {
  fprintf(f, ",\"%s\":[", name);
  for (size_t i = 0; i < n; i++)
    fprintf(f, "%s%u", i ? "," : "", bins[i]);
  fprintf(f, "]");
}

static void run_drain(void) {
  size_t m = (size_t)O.clients, gs = (size_t)O.group_size;
  if (m % gs)
    m = (m / gs + 1) * gs;
  uint64_t spread = (uint64_t)O.spread;
  char flags[64];
  snprintf(flags, sizeof flags, "--drain-spread-ms %" PRIu64, spread);
  chatd_start_with(flags);
  memset(&DR, 0, sizeof DR);
  const char **tokens = xcalloc(m, sizeof *tokens);
  char **users = xcalloc(m, sizeof *users);
  for (size_t i = 0; i < m; i++) {
    char u[32];
    snprintf(u, sizeof u, "d%zu", i);
    users[i] = xstrdup(u);
    tokens[i] = mint(u, "d");
  }
  const char *ptok = mint("poster", "d");
  DR.nconv = m / gs;
  DR.conv = xcalloc(DR.nconv, sizeof *DR.conv);
  DR.base = xcalloc(DR.nconv, sizeof *DR.base);
  for (size_t g = 0; g < DR.nconv; g++)
    DR.conv[g] = create_conv(ptok, "group", "drain",
                             (const char **)users + g * gs, gs);
  /* One message per group: what every client has before the restart. */
  loop_init((scen){.on_frame = drain_poster_frame});
  const char *pt[1] = {ptok};
  conn *p = conns_new(1, pt, 0x7f000001);
  conn_open(p);
  uint64_t dl = now_ns() + 30ull * 1000000000u;
  while (!p->hello && now_ns() < dl)
    loop_once(10);
  if (!p->hello)
    die("drain: poster did not connect (%s)", L.last_error);
  for (size_t g = 0; g < DR.nconv; g++)
    ws_text(p,
            "{\"type\":\"send\",\"client_msg_id\":\"z%zu\","
            "\"conversation_id\":\"%s\",\"body\":\"before\"}",
            g, DR.conv[g]);
  while (DR.ready < DR.nconv && now_ns() < dl)
    loop_once(10);
  if (DR.ready < DR.nconv)
    die("drain: only %" PRIu64 " base messages acked", DR.ready);
  conn_close(p, false);
  DR.ready = 0;
  size_t nproc = O.procs > 0 ? (size_t)O.procs : (m + 3999) / 4000;
  gens g;
  gens_fork(&g, nproc, tokens, m, drain_body);
  gens_go(&g);
  for (size_t i = 0; i < g.n; i++) {
    drain_report r;
    read_full(g.rep[i], &r, sizeof r);
    if (r.ready < r.n)
      die("drain: a generator connected %" PRIu64 " of %" PRIu64 " (%s)",
          r.ready, r.n, r.err);
  }
  usleep(1000000); /* settle */
  /* The restart. */
  uint16_t port = S.port;
  uint64_t t0 = now_ns();
  kill(S.pid, SIGTERM);
  bool exited = false;
  for (int i = 0; i < 400 && !exited; i++) {
    if (waitpid(S.pid, NULL, WNOHANG) == S.pid)
      exited = true;
    else
      usleep(5000);
  }
  if (!exited) {
    kill(S.pid, SIGKILL);
    waitpid(S.pid, NULL, 0);
  }
  uint64_t t_down = now_ns();
  char listen[32];
  snprintf(listen, sizeof listen, "127.0.0.1:%u", (unsigned)port);
  chatd_spawn(listen, flags);
  uint64_t t_up = now_ns();
  if (S.port != port)
    die("drain: the new chatd listens on %u, not %u", (unsigned)S.port,
        (unsigned)port);
  /* What the clients saw. */
  static uint32_t rec[DRAIN_BINS], res[DRAIN_BINS], tries[DRAIN_BINS];
  memset(rec, 0, sizeof rec);
  memset(res, 0, sizeof res);
  memset(tries, 0, sizeof tries);
  lat close_lat, resume_lat;
  memset(&close_lat, 0, sizeof close_lat);
  memset(&resume_lat, 0, sizeof resume_lat);
  uint64_t done = 0, failed_attempts = 0, t_last = 0;
  size_t last_bin = 0;
  char err[120] = "";
  for (size_t i = 0; i < g.n; i++) {
    drain_report r;
    read_full(g.rep[i], &r, sizeof r);
    uint64_t *v = xcalloc(4 * r.n, sizeof *v);
    read_full(g.rep[i], v, 4 * r.n * sizeof *v);
    for (size_t k = 0; k < r.n; k++) {
      uint64_t tc = v[k], tt = v[r.n + k], th = v[2 * r.n + k],
               tr = v[3 * r.n + k];
      if (tc)
        lat_add(&close_lat, tc > t0 ? tc - t0 : 0);
      if (tt && tt >= t0 && (tt - t0) / 1000000u / DRAIN_BIN_MS < DRAIN_BINS)
        tries[(tt - t0) / 1000000u / DRAIN_BIN_MS]++;
      if (th && th >= t0) {
        size_t bin = (size_t)((th - t0) / 1000000u / DRAIN_BIN_MS);
        if (bin < DRAIN_BINS)
          rec[bin]++;
      }
      if (tr && tr >= t0) {
        size_t bin = (size_t)((tr - t0) / 1000000u / DRAIN_BIN_MS);
        if (bin < DRAIN_BINS)
          res[bin]++;
        if (bin > last_bin)
          last_bin = bin;
        lat_add(&resume_lat, tr - t0);
        if (tr > t_last)
          t_last = tr;
      }
    }
    free(v);
    done += r.done;
    failed_attempts += r.failed_attempts;
    if (r.err[0])
      snprintf(err, sizeof err, "%s", r.err);
  }
  uint32_t peak = 0, peak_res = 0;
  for (size_t i = 0; i < DRAIN_BINS; i++) {
    if (rec[i] > peak)
      peak = rec[i];
    if (res[i] > peak_res)
      peak_res = res[i];
  }
  size_t nb = last_bin + 1 < DRAIN_BINS ? last_bin + 1 : DRAIN_BINS;
  double all_s = t_last > t0 ? (double)(t_last - t0) / 1e9 : -1;
  lat_sort(&close_lat);
  lat_sort(&resume_lat);
  json_common(stdout, "drain");
  printf(",\"clients\":%zu,\"group_size\":%zu,\"generators\":%zu,"
         "\"spread_ms\":%" PRIu64 ",\"goaway\":%s,\"bin_ms\":%d,"
         "\"old_exited_ms\":%.1f,\"new_listening_ms\":%.1f,"
         "\"closed_p50_ms\":%.1f,\"closed_max_ms\":%.1f,"
         "\"resumed\":%" PRIu64 ",\"failed_attempts\":%" PRIu64
         ",\"peak_reconnects_per_100ms\":%u,"
         "\"peak_resumes_per_100ms\":%u,\"all_resumed_s\":%.3f,"
         "\"resume_p50_s\":%.3f,\"resume_p99_s\":%.3f",
         m, gs, nproc, spread, spread ? "true" : "false", DRAIN_BIN_MS,
         (double)(t_down - t0) / 1e6, (double)(t_up - t0) / 1e6,
         lat_pct(&close_lat, 50), lat_pct(&close_lat, 100), done,
         failed_attempts, peak, peak_res, all_s,
         lat_pct(&resume_lat, 50) / 1000.0, lat_pct(&resume_lat, 99) / 1000.0);
  bins_json(stdout, "reconnects_per_bin", rec, nb);
  bins_json(stdout, "resumes_per_bin", res, nb);
  bins_json(stdout, "attempts_per_bin", tries, nb);
  printf(",\"error\":\"%s\"}\n", err);
  printf("# drain (%s, spread %" PRIu64 " ms): %zu clients; old chatd gone "
         "after %.0f ms, new one listening after %.0f ms; peak %u "
         "reconnects per 100 ms; all %" PRIu64 " resumed after %.2f s "
         "(%" PRIu64 " failed attempts)\n",
         spread ? "goaway" : "no goaway", spread, m,
         (double)(t_down - t0) / 1e6, (double)(t_up - t0) / 1e6, peak, done,
         all_s, failed_attempts);
  fflush(stdout);
  gens_end(&g);
  chatd_stop();
}

/* ==== scenario: churn ==== */

static struct {
  size_t pairs, extra;
  conn *snd, *rcv, *idle;
  uint8_t **got;         /* per pair, by seq */
  uint64_t *acked_n;     /* per pair: acks seen */
  uint8_t **acked;       /* per pair, by seq */
  uint64_t *last_seen;   /* per pair: the resume point (see churn_got) */
  uint64_t *seen_max;    /* per pair: highest id received */
  bool *resuming;        /* per pair: a resume is unanswered */
  uint64_t *down_until;  /* receiver reconnect time */
  uint64_t *up_until;    /* receiver disconnect time */
  uint64_t *idle_next;
  uint64_t cap, dup, reconnects, idle_opened, resumes_done;
  uint64_t rng;
  bool final;
} C;

static uint64_t rnd(void) {
  C.rng ^= C.rng << 13;
  C.rng ^= C.rng >> 7;
  C.rng ^= C.rng << 17;
  return C.rng;
}

static void churn_got(size_t p, const char *json, size_t len) {
  char cm[40], mid[32];
  /* While a resume is unanswered, a live message may overtake the
   * history that fills the gap before it; the resume point moves only when
   * no resume is outstanding, or else a client that drops the connection
   * before `resumed` would skip the gap next time (an SDK must do the
   * same). */
  if (jstr(json, len, "message_id", mid, sizeof mid)) {
    uint64_t v = strtoull(mid, NULL, 10);
    if (v > C.seen_max[p])
      C.seen_max[p] = v;
    if (!C.resuming[p] && v > C.last_seen[p])
      C.last_seen[p] = v;
  }
  if (!jstr(json, len, "client_msg_id", cm, sizeof cm) || cm[0] != 'm')
    return;
  uint64_t seq = strtoull(cm + 1, NULL, 10);
  if (seq >= C.cap)
    return;
  if (C.got[p][seq])
    C.dup++;
  C.got[p][seq] = 1;
}

static void churn_hello(conn *c) {
  if (c->u != (void *)&C.rcv)
    return;
  size_t p = (size_t)c->idx;
  C.resuming[p] = true;
  ws_text(c,
          "{\"type\":\"resume\",\"last_seen\":{\"%s\":\"%" PRIu64 "\"}}",
          c->conv, C.last_seen[p]);
  C.up_until[p] = now_ns() + (100 + rnd() % 400) * 1000000u;
}

static void churn_frame(conn *c, const char *type, const char *json,
                        size_t len) {
  if (c->u == (void *)&C.snd) {
    if (strcmp(type, "ack") == 0) {
      char cm[40];
      if (jstr(json, len, "client_msg_id", cm, sizeof cm)) {
        uint64_t seq = strtoull(cm + 1, NULL, 10);
        if (seq < C.cap && !C.acked[c->idx][seq]) {
          C.acked[c->idx][seq] = 1;
          C.acked_n[c->idx]++;
        }
      }
    }
    return;
  }
  if (c->u != (void *)&C.rcv)
    return;
  size_t p = (size_t)c->idx;
  if (strcmp(type, "message") == 0) {
    churn_got(p, json, len);
  } else if (strcmp(type, "history") == 0) {
    /* each message object: find message_id then client_msg_id */
    const char *s = json, *e = json + len;
    while ((s = memmem(s, (size_t)(e - s), "{\"message_id\":\"", 15))) {
      const char *nx = memmem(s + 15, (size_t)(e - s - 15),
                              "{\"message_id\":\"", 15);
      churn_got(p, s, (size_t)((nx ? nx : e) - s));
      s += 15;
    }
  } else if (strcmp(type, "resumed") == 0) {
    C.resuming[p] = false;
    if (C.seen_max[p] > C.last_seen[p])
      C.last_seen[p] = C.seen_max[p];
    C.resumes_done++;
  }
}

static void churn_close(conn *c) {
  if (c->u == (void *)&C.rcv && !C.final)
    C.down_until[c->idx] = now_ns() + (20 + rnd() % 100) * 1000000u;
}

static void run_churn(void) {
  size_t pairs = (size_t)O.pairs, extra = (size_t)O.conns;
  memset(&C, 0, sizeof C);
  C.rng = 0x9e3779b97f4a7c15ull;
  C.pairs = pairs;
  C.extra = extra;
  C.cap = (uint64_t)(O.rate * O.seconds) + 16;
  chatd_start();
  const char **st = xcalloc(pairs, sizeof *st), **rt = xcalloc(pairs, sizeof *rt),
             **it = xcalloc(extra ? extra : 1, sizeof *it);
  char **convs = xcalloc(pairs, sizeof *convs);
  for (size_t i = 0; i < pairs; i++) {
    char a[32], b[32];
    snprintf(a, sizeof a, "s%zu", i);
    snprintf(b, sizeof b, "c%zu", i);
    st[i] = mint(a, "d");
    rt[i] = mint(b, "d");
    const char *mem[1] = {b};
    convs[i] = create_conv(st[i], "direct", NULL, mem, 1);
  }
  for (size_t i = 0; i < extra; i++) {
    char u[32];
    snprintf(u, sizeof u, "x%zu", i);
    it[i] = mint(u, "d");
  }
  loop_init((scen){.on_hello = churn_hello, .on_frame = churn_frame,
                   .on_close = churn_close});
  C.snd = conns_new(pairs, st, 0x7f000001);
  C.rcv = conns_new(pairs, rt, 0x7f000001);
  C.idle = conns_new(extra, it, 0x7f000001);
  C.got = xcalloc(pairs, sizeof *C.got);
  C.acked = xcalloc(pairs, sizeof *C.acked);
  C.acked_n = xcalloc(pairs, sizeof *C.acked_n);
  C.last_seen = xcalloc(pairs, sizeof *C.last_seen);
  C.seen_max = xcalloc(pairs, sizeof *C.seen_max);
  C.resuming = xcalloc(pairs, sizeof *C.resuming);
  C.down_until = xcalloc(pairs, sizeof *C.down_until);
  C.up_until = xcalloc(pairs, sizeof *C.up_until);
  C.idle_next = xcalloc(extra ? extra : 1, sizeof *C.idle_next);
  for (size_t i = 0; i < pairs; i++) {
    C.got[i] = xcalloc(C.cap, 1);
    C.acked[i] = xcalloc(C.cap, 1);
    C.snd[i].u = &C.snd;
    C.rcv[i].u = &C.rcv;
    snprintf(C.snd[i].conv, sizeof C.snd[i].conv, "%s", convs[i]);
    snprintf(C.rcv[i].conv, sizeof C.rcv[i].conv, "%s", convs[i]);
    conn_open(&C.snd[i]);
    conn_open(&C.rcv[i]);
  }
  for (size_t i = 0; i < extra; i++)
    C.idle[i].u = &C.idle;
  uint64_t dl = now_ns() + 30ull * 1000000000u;
  while (L.n_hello < 2 * pairs && now_ns() < dl)
    loop_once(10);
  uint64_t t0 = now_ns(), tend = t0 + (uint64_t)O.seconds * 1000000000u;
  uint64_t interval = 1000000000ull / (uint64_t)(O.rate > 0 ? O.rate : 1);
  uint64_t next_send = t0;
  uint64_t churn_interval =
      O.churn_rate > 0 ? 1000000000ull / (uint64_t)O.churn_rate : 0;
  uint64_t next_churn = t0;
  size_t idle_rr = 0;
  double opened0 = metric("chat_ws_connections_opened_total");
  while (now_ns() < tend) {
    loop_once(1);
    uint64_t now = now_ns();
    while (now >= next_send) {
      for (size_t i = 0; i < pairs; i++) {
        conn *s = &C.snd[i];
        if (s->hello && s->sent < C.cap) {
          char body[65];
          make_body(body, now);
          ws_text(s,
                  "{\"type\":\"send\",\"client_msg_id\":\"m%" PRIu64
                  "\",\"conversation_id\":\"%s\",\"body\":\"%s\"}",
                  s->sent++, s->conv, body);
        }
      }
      next_send += interval;
    }
    for (size_t i = 0; i < pairs; i++) {
      conn *r = &C.rcv[i];
      if (r->hello && now >= C.up_until[i]) {
        conn_close(r, false); /* abrupt: the peer just goes */
      } else if ((r->state == C_CLOSED) && !r->queued &&
                 now >= C.down_until[i]) {
        C.reconnects++;
        conn_open(r);
      }
    }
    /* extra connections opening and closing at a fixed rate */
    while (extra && churn_interval && now >= next_churn) {
      conn *x = &C.idle[idle_rr++ % extra];
      if (x->state == C_OPEN || x->state == C_CONNECTING ||
          x->state == C_UPGRADING)
        conn_close(x, false);
      if (!x->queued) {
        conn_open(x);
        C.idle_opened++;
      }
      next_churn += churn_interval;
    }
  }
  /* stop: wait for acks, then every receiver resumes once more */
  uint64_t sent_total = 0;
  for (size_t i = 0; i < pairs; i++)
    sent_total += C.snd[i].sent;
  dl = now_ns() + 20ull * 1000000000u;
  for (;;) {
    uint64_t a = 0;
    for (size_t i = 0; i < pairs; i++)
      a += C.acked_n[i];
    if (a >= sent_total || now_ns() > dl)
      break;
    loop_once(5);
  }
  C.final = true;
  for (size_t i = 0; i < extra; i++)
    conn_close(&C.idle[i], false);
  for (size_t i = 0; i < pairs; i++)
    conn_close(&C.rcv[i], false);
  uint64_t res0 = C.resumes_done;
  for (size_t i = 0; i < pairs; i++)
    conn_open(&C.rcv[i]);
  for (size_t i = 0; i < pairs; i++)
    C.up_until[i] = UINT64_MAX;
  while (C.resumes_done < res0 + pairs && now_ns() < dl + 10000000000ull) {
    loop_once(5);
    for (size_t i = 0; i < pairs; i++)
      C.up_until[i] = UINT64_MAX;
  }
  double opened1 = metric("chat_ws_connections_opened_total");
  uint64_t acked = 0, lost = 0, got = 0;
  for (size_t i = 0; i < pairs; i++)
    for (uint64_t s = 0; s < C.cap; s++) {
      if (C.acked[i][s]) {
        acked++;
        if (!C.got[i][s])
          lost++;
      }
      if (C.got[i][s])
        got++;
    }
  double secs = (double)O.seconds;
  json_common(stdout, "churn");
  printf(",\"pairs\":%zu,\"seconds\":%ld,\"rate_per_sender\":%ld,"
         "\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"received\":%" PRIu64
         ",\"lost\":%" PRIu64 ",\"duplicates_seen\":%" PRIu64
         ",\"receiver_reconnects\":%" PRIu64 ",\"extra_opens\":%" PRIu64
         ",\"server_opens\":%.0f,\"opens_per_s\":%.0f,\"failed_connects\":%" PRIu64
         ",\"error_frames\":%" PRIu64 "}\n",
         pairs, O.seconds, O.rate, sent_total, acked, got, lost, C.dup,
         C.reconnects, C.idle_opened, opened1 - opened0,
         (opened1 - opened0) / secs, L.n_failed, L.n_errors);
  printf("# churn: %.0f connections opened/s for %ld s while %zu senders "
         "sent %" PRIu64 " messages: %" PRIu64 " acked, %" PRIu64
         " lost, %" PRIu64 " receiver reconnects\n",
         (opened1 - opened0) / secs, O.seconds, pairs, sent_total, acked,
         lost, C.reconnects);
  fflush(stdout);
  for (size_t i = 0; i < pairs; i++) {
    conn_close(&C.snd[i], false);
    conn_close(&C.rcv[i], false);
  }
  chatd_stop();
}

/* ---- main ---- */

static void usage(void) {
  fprintf(stderr,
          "usage: chat-bench SCENARIO... --chatd PATH [options]\n"
          "  scenarios: idle direct floor group resume churn drain\n"
          "  --chatd PATH        chatd binary (started per scenario)\n"
          "  --sync full|normal  passed to chatd (default full)\n"
          "  --chatd-args 'A B'  more flags for chatd serve\n"
          "  --attach PORT DIR PID  use a running chatd instead (not stopped)\n"
          "  --conns N           idle: connections; churn: extra churning "
          "connections\n"
          "  --procs N           generator processes (default: 4000 "
          "connections each)\n"
          "  --pairs N --window N --messages N     direct (50, 10, 200000)\n"
          "  --members N --online N --burst N --singles N --receipt-msgs N  "
          "group\n"
          "  --clients N --convs N --missed N --group-size N   resume\n"
          "  --seconds N --rate N --churn-rate N   churn\n"
          "  --clients N --group-size N --spread MS  drain: restart chatd "
          "under N\n"
          "                      clients; MS > 0: goaway with that spread "
          "(10000),\n"
          "                      0: no goaway, clients use the SDK "
          "backoff\n"
          "  --timeout S         bound on each phase (default 120)\n"
          "  --max-pending N     handshakes in progress per generator (512;\n"
          "                      resume: 4096, i.e. all at once)\n");
  exit(2);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  const char *names[16];
  int ns = 0;
  struct {
    const char *name;
    long *v;
  } num[] = {{"--conns", &O.conns},       {"--procs", &O.procs},
             {"--pairs", &O.pairs},       {"--window", &O.window},
             {"--messages", &O.messages}, {"--members", &O.members},
             {"--online", &O.online},     {"--burst", &O.burst},
             {"--singles", &O.singles},   {"--receipt-msgs", &O.receipt_msgs},
             {"--clients", &O.clients},   {"--convs", &O.convs},
             {"--missed", &O.missed},     {"--group-size", &O.group_size},
             {"--seconds", &O.seconds},   {"--rate", &O.rate},
             {"--churn-rate", &O.churn_rate}, {"--timeout", &O.timeout},
             {"--receipts", &O.receipts}, {"--max-pending", &O.max_pending},
             {"--spread", &O.spread}};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool matched = false;
    for (size_t k = 0; k < sizeof num / sizeof num[0]; k++)
      if (strcmp(a, num[k].name) == 0 && i + 1 < argc) {
        *num[k].v = atol(argv[++i]);
        matched = true;
      }
    if (matched)
      continue;
    if (strcmp(a, "--chatd") == 0 && i + 1 < argc)
      S.chatd = argv[++i];
    else if (strcmp(a, "--sync") == 0 && i + 1 < argc)
      S.sync = argv[++i];
    else if (strcmp(a, "--chatd-args") == 0 && i + 1 < argc)
      S.extra = argv[++i];
    else if (strcmp(a, "--attach") == 0 && i + 3 < argc) {
      /* a chatd someone else started (under valgrind, say): PORT DIR PID */
      S.attached = true;
      S.port = (uint16_t)atoi(argv[++i]);
      snprintf(S.dir, sizeof S.dir, "%s", argv[++i]);
      S.pid = (pid_t)atoi(argv[++i]);
      S.chatd = "attached";
    }
    else if (a[0] != '-' && ns < 16)
      names[ns++] = a;
    else
      usage();
  }
  if (!ns || !S.chatd)
    usage();
  if (O.convs < 1 || O.convs > 64 || O.group_size < 1 || O.pairs < 1 ||
      O.window < 1)
    usage();
  for (int i = 0; i < ns; i++) {
    if (strcmp(names[i], "idle") == 0)
      run_idle();
    else if (strcmp(names[i], "direct") == 0)
      run_direct((size_t)O.pairs, (uint64_t)O.window, (uint64_t)O.messages,
                 "direct");
    else if (strcmp(names[i], "floor") == 0)
      run_direct(1, 1, 2000, "floor");
    else if (strcmp(names[i], "group") == 0)
      run_group();
    else if (strcmp(names[i], "resume") == 0)
      run_resume();
    else if (strcmp(names[i], "churn") == 0)
      run_churn();
    else if (strcmp(names[i], "drain") == 0)
      run_drain();
    else
      usage();
  }
  return 0;
}

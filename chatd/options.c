/* chatd's command line: one table drives the parser, the --config file
 * reader and --help, so a flag cannot be documented in one and missing in
 * another. */
#include <chat/common.h>

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chatd.h"

typedef enum kind {
  K_U32,
  K_U64,
  K_STR,
  K_LISTEN,
  K_LEVEL,
  K_SYNC,
  K_TRANSPORT,
  K_FLAG /* takes no value */
} kind;

typedef struct opt {
  const char *name;
  int cmds;      /* CMD_SERVE, CMD_TOKEN or both */
  kind k;
  size_t off;
  uint64_t min, max;
  const char *arg;
  const char *help;
} opt;

#define OFF(f) offsetof(chatd_opts, f)
#define S CMD_SERVE
#define T CMD_TOKEN
#define B (CMD_BAN | CMD_UNBAN)

static const opt opts[] = {
    {"listen", S, K_LISTEN, 0, 0, 0, "HOST:PORT",
     "address to listen on (IPv4, [IPv6] or localhost); port 0 picks a "
     "free one. Default 127.0.0.1:8080"},
    {"data-dir", S | T | B, K_STR, OFF(data_dir), 0, 0, "DIR",
     "data directory: chat.db (SQLite) and token.key (created at first "
     "start, mode 0600). Default ./chatd-data"},
    {"config", S, K_STR, 0, 0, 0, "FILE",
     "read key=value lines with these flag names (without --); flags on "
     "the command line win"},
    {"machine-id", S, K_U32, OFF(machine_id), 0, 1023, "N",
     "Snowflake machine id of this node, 0..1023. Default 0"},
    {"rate-per-minute", S, K_U32, OFF(rate_per_minute), 1, UINT32_MAX, "N",
     "sends per sender per conversation per minute. Default 60"},
    {"resume-max-messages", S, K_U32, OFF(resume_max_messages), 1,
     UINT32_MAX, "N", "resume cap in messages per conversation. Default 1000"},
    {"resume-max-age-ms", S, K_U64, OFF(resume_max_age_ms), 1, UINT64_MAX,
     "N", "resume cap in age. Default 604800000 (7 days)"},
    {"presence-idle-ms", S, K_U64, OFF(presence_idle_ms), 1, UINT64_MAX, "N",
     "online -> idle without activity. Default 300000"},
    {"presence-offline-ms", S, K_U64, OFF(presence_offline_ms), 1,
     UINT64_MAX, "N",
     "grace between the last device leaving and offline. Default 5000"},
    {"presence-idle-offline-ms", S, K_U64, OFF(presence_idle_offline_ms), 1,
     UINT64_MAX, "N", "idle -> offline. Default 900000"},
    {"max-body-bytes", S, K_U32, OFF(max_body_bytes), 1, UINT32_MAX, "N",
     "largest message body. Default 65536"},
    {"max-frame-bytes", S, K_U32, OFF(max_frame_bytes), 64, UINT32_MAX, "N",
     "largest WebSocket message; over it close 1009. Default 131072"},
    {"max-group-members", S, K_U32, OFF(max_group_members), 2, UINT32_MAX,
     "N", "largest group. Default 1024"},
    {"push-log", S, K_STR, OFF(push_log), 0, 0, "FILE",
     "append each push hand-off to FILE as one JSON line (user_id, "
     "device_id, conversation_id, sender_id, preview, ...)"},
    {"static", S, K_STR, OFF(static_dir), 0, 0, "DIR", "serve DIR at /"},
    {"heartbeat-ms", S, K_U32, OFF(heartbeat_ms), 1000, UINT32_MAX, "N",
     "advertised heartbeat; a peer silent this long gets a ping. Default "
     "30000"},
    {"idle-timeout-ms", S, K_U32, OFF(idle_timeout_ms), 1000, UINT32_MAX,
     "N", "close a peer silent this long. Default 2 * heartbeat + 15000"},
    {"garbage-per-minute", S, K_U32, OFF(garbage_per_minute), 1, UINT32_MAX,
     "N", "refused frames a minute before close 1008. Default 30"},
    {"max-queued-frames", S, K_U32, OFF(max_queued_frames), 16, UINT32_MAX,
     "N", "outbound queue per session; past it close 1013. Default 4096"},
    {"max-queued-bytes", S, K_U32, OFF(max_queued_bytes), 65536, UINT32_MAX,
     "N", "outbound bytes per session; past it close 1013. Default 8388608"},
    {"rest-rate-per-minute", S, K_U32, OFF(rest_rate_per_minute), 1,
     UINT32_MAX, "N", "REST requests per user per minute. Default 1200"},
    {"rest-burst", S, K_U32, OFF(rest_burst), 1, UINT32_MAX, "N",
     "REST requests a user may make at once. Default 200"},
    {"max-http-body-bytes", S, K_U32, OFF(max_http_body_bytes), 1024,
     UINT32_MAX, "N", "largest REST request body (413 over). Default 11534336"},
    {"rx-buffer-bytes", S, K_U32, OFF(rx_buffer_bytes), 128, 1u << 24, "N",
     "receive buffer per connection, held while it lives. Default 2048"},
    {"write-budget-bytes", S, K_U32, OFF(write_budget_bytes), 1, 1u << 26,
     "N", "bytes written to one connection per writable callback before "
     "other sockets get their turn (each frame is still one write). "
     "Default 65536"},
    {"drain-timeout-ms", S, K_U32, OFF(drain_timeout_ms), 0, 600000, "N",
     "on SIGTERM, how long to wait for sessions to close. Default 4000"},
    {"edit-window-ms", S, K_U64, OFF(edit_window_ms), 1, UINT64_MAX, "N",
     "a message may be edited this long after it was sent. Default 900000 "
     "(15 min)"},
    {"bot-rate-per-minute", S, K_U32, OFF(bot_rate_per_minute), 1,
     UINT32_MAX, "N",
     "sends per bot (chatd token --bot) per conversation per minute. "
     "Default 600"},
    {"new-direct-per-day", S, K_U32, OFF(new_direct_per_day), 0, 1000000,
     "N",
     "direct conversations a user may start per UTC day with users who "
     "never wrote to them (over: 429); 0: no cap. Default 50"},
    {"drain-spread-ms", S, K_U32, OFF(drain_spread_ms), 0, 3600000, "N",
     "on SIGTERM, goaway tells clients to come back within this window "
     "(retry_after_ms) before the close 1012; 0: no goaway, close 1001. "
     "Default 10000"},
    {"overload-retry-ms", S, K_U32, OFF(overload_retry_ms), 1, 3600000, "N",
     "goaway's retry_after_ms before an overload close 1013. Default 5000"},
    {"resume-batch-hint", S, K_U32, OFF(resume_batch_hint), 1, UINT32_MAX,
     "N",
     "advertise hello.limits.resume_batch_hint: conversations per resume "
     "frame. Default: not advertised"},
    {"ban-poll-ms", S, K_U32, OFF(ban_poll_ms), 100, 600000, "N",
     "how often the shadow-ban list is reread (chatd ban from another "
     "process). Default 2000"},
    {"sync", S, K_SYNC, OFF(sync), 0, 0, "full|normal",
     "full: fsync every commit (acked survives power loss); normal: "
     "survives a crash of chatd. Default full"},
    {"transport", S, K_TRANSPORT, OFF(transport), 0, 0, "epoll|lws",
     "the server transport: epoll (libchat's own HTTP/1.1 and WebSocket "
     "on Linux epoll) or lws (libwebsockets). Default epoll where "
     "built, else lws"},
    {"log-level", S | T, K_LEVEL, OFF(log_level), 0, 0,
     "error|warn|info|debug", "logging to stderr. Default warn"},
    {"user", T | B, K_STR, OFF(user), 0, 0, "U",
     "token, ban, unban: the user id"},
    {"device", T, K_STR, OFF(device), 0, 0, "D", "token: the device id"},
    {"ttl", T, K_U64, OFF(ttl_s), 0, UINT64_C(3153600000), "SECONDS",
     "token: lifetime, at most 100 years; 0 never expires. Default 86400"},
    {"bot", T, K_FLAG, OFF(bot), 0, 0, "",
     "token: a bot's token (its messages say sender_kind bot; its own "
     "quota; no read receipts, no push)"},
    {"shadow", B, K_FLAG, OFF(shadow), 0, 0, "",
     "ban, unban: a shadow ban (the user's messages are acked and stored "
     "but reach only their own devices); required by ban"},
};
#define N_OPTS (sizeof opts / sizeof *opts)

/* Help text wrapped at 78 columns under a 6-space indent. */
static void wrap(FILE *f, const char *text) {
  const int indent = 6, width = 78;
  int col = 0;
  const char *p = text;
  while (*p) {
    const char *w = p;
    while (*p && *p != ' ')
      p++;
    int n = (int)(p - w);
    if (col == 0) {
      fprintf(f, "%*s%.*s", indent, "", n, w);
      col = indent + n;
    } else if (col + 1 + n > width) {
      fprintf(f, "\n%*s%.*s", indent, "", n, w);
      col = indent + n;
    } else {
      fprintf(f, " %.*s", n, w);
      col += 1 + n;
    }
    while (*p == ' ')
      p++;
  }
  fputc('\n', f);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: chatd [serve] [--listen HOST:PORT] [--data-dir DIR] "
          "[FLAGS...]\n"
          "       chatd token --data-dir DIR --user U --device D "
          "[--ttl SECONDS] [--bot]\n"
          "       chatd ban --data-dir DIR --user U --shadow\n"
          "       chatd unban --data-dir DIR --user U [--shadow]\n"
          "       chatd --help | --version\n"
          "\n"
          "chatd is the reference chat.v1 server: WebSocket at "
          "/chat/v1/ws, REST under\n"
          "/api/v1/, GET /healthz, GET /metrics, on one port. It prints "
          "\"listening on\nHOST:PORT\" once it accepts connections. SIGTERM "
          "drains (commits and acks what\nis pending, sends goaway and closes "
          "sessions with 1012) and exits 0.\n"
          "\n"
          "serve flags:\n");
  for (size_t i = 0; i < N_OPTS; i++) {
    if (!(opts[i].cmds & CMD_SERVE))
      continue;
    fprintf(f, "  --%s %s\n", opts[i].name, opts[i].arg);
    wrap(f, opts[i].help);
  }
  fprintf(f, "\ntoken flags:\n");
  for (size_t i = 0; i < N_OPTS; i++) {
    if (!(opts[i].cmds & CMD_TOKEN))
      continue;
    fprintf(f, "  --%s%s%s\n", opts[i].name, *opts[i].arg ? " " : "",
            opts[i].arg);
    wrap(f, opts[i].help);
  }
  fprintf(f, "\nban and unban flags (they write to DIR's store; a chatd "
             "running on DIR\napplies the ban to every message it commits "
             "from then on):\n");
  for (size_t i = 0; i < N_OPTS; i++) {
    if (!(opts[i].cmds & CMD_BAN))
      continue;
    fprintf(f, "  --%s%s%s\n", opts[i].name, *opts[i].arg ? " " : "",
            opts[i].arg);
    wrap(f, opts[i].help);
  }
  fprintf(f, "\nSee docs/chatd.md for deployment notes.\n");
}

static int bad(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* A usage error: say what, point at --help, exit status 2. */
static int bad(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "chatd: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\nTry 'chatd --help'.\n");
  va_end(ap);
  return 2;
}

static const opt *find(const char *name, size_t len) {
  for (size_t i = 0; i < N_OPTS; i++)
    if (strlen(opts[i].name) == len && memcmp(opts[i].name, name, len) == 0)
      return &opts[i];
  return NULL;
}

static bool parse_u64(const char *s, uint64_t *out) {
  if (!*s || *s == '-' || *s == '+' || *s == ' ')
    return false;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end)
    return false;
  *out = v;
  return true;
}

static bool parse_listen(chatd_opts *o, const char *v) {
  const char *colon = strrchr(v, ':');
  if (!colon)
    return false;
  const char *h = v;
  size_t hl = (size_t)(colon - v);
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
    h++;
    hl -= 2;
  } else if (memchr(h, ':', hl)) {
    return false; /* IPv6 needs brackets */
  }
  if (hl == 0 || hl >= sizeof o->host)
    return false;
  uint64_t port;
  if (!parse_u64(colon + 1, &port) || port > 65535)
    return false;
  memcpy(o->host, h, hl);
  o->host[hl] = 0;
  o->port = (uint16_t)port;
  return true;
}

static int apply(chatd_opts *o, const opt *p, const char *v,
                 const char *where) {
  char *base = (char *)o;
  uint64_t n;
  switch (p->k) {
  case K_U32:
  case K_U64:
    if (!parse_u64(v, &n) || n < p->min || n > p->max) {
      char range[96];
      snprintf(range, sizeof range, "%s: a number in %llu..%llu", where,
               (unsigned long long)p->min, (unsigned long long)p->max);
      return bad("--%s: %s", p->name, range);
    }
    if (p->k == K_U32)
      *(uint32_t *)(base + p->off) = (uint32_t)n;
    else
      *(uint64_t *)(base + p->off) = n;
    return 0;
  case K_STR:
    if (!*v)
      return bad("--%s: empty value (%s)", p->name, where);
    if (p->off)
      *(const char **)(base + p->off) = v;
    return 0;
  case K_LISTEN:
    if (!parse_listen(o, v))
      return bad("--listen: expected HOST:PORT, got '%s' (%s)", v, where);
    return 0;
  case K_LEVEL: {
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
      if (strcmp(v, names[i]) == 0) {
        o->log_level = i;
        return 0;
      }
    return bad("--log-level: expected error, warn, info or debug, got '%s'"
               " (%s)", v, where);
  }
  case K_SYNC:
    if (strcmp(v, "full") == 0 || strcmp(v, "normal") == 0) {
      o->sync = v[0] == 'n';
      return 0;
    }
    return bad("--sync: expected full or normal, got '%s' (%s)", v, where);
  case K_TRANSPORT:
#ifndef CHATD_HAVE_EPOLL
    if (strcmp(v, "epoll") == 0)
      return bad("--transport: this chatd was built without epoll (%s)",
                 where);
#endif
    if (strcmp(v, "epoll") == 0 || strcmp(v, "lws") == 0) {
      o->transport = v[0] == 'l' ? TRANSPORT_LWS : TRANSPORT_EPOLL;
      return 0;
    }
    return bad("--transport: expected epoll or lws, got '%s' (%s)", v,
               where);
  case K_FLAG:
    *(bool *)(base + p->off) = true;
    return 0;
  }
  return 2;
}

static char *own(chatd_opts *o, const char *s, size_t n) {
  char **list = realloc(o->owned, (o->n_owned + 1) * sizeof *list);
  if (!list)
    return NULL;
  o->owned = list;
  char *c = malloc(n + 1);
  if (!c)
    return NULL;
  memcpy(c, s, n);
  c[n] = 0;
  o->owned[o->n_owned++] = c;
  return c;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t')
    s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' ||
                   s[n - 1] == '\n'))
    s[--n] = 0;
  return s;
}

static int load_config(chatd_opts *o, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return bad("--config: cannot read %s: %s", path, strerror(errno));
  char line[4096];
  int lineno = 0, rc = 0;
  while (rc == 0 && fgets(line, sizeof line, f)) {
    lineno++;
    char *s = trim(line);
    if (!*s || *s == '#')
      continue;
    char *eq = strchr(s, '=');
    char where[300];
    snprintf(where, sizeof where, "%s:%d", path, lineno);
    if (!eq) {
      rc = bad("%s: expected key=value, got '%s'", where, s);
      break;
    }
    *eq = 0;
    char *key = trim(s), *val = trim(eq + 1);
    const opt *p = find(key, strlen(key));
    if (!p || !(p->cmds & CMD_SERVE) || strcmp(key, "config") == 0) {
      rc = bad("%s: unknown key '%s'", where, key);
      break;
    }
    char *v = own(o, val, strlen(val));
    if (!v) {
      rc = bad("%s: out of memory", where);
      break;
    }
    rc = apply(o, p, v, where);
  }
  fclose(f);
  return rc;
}

void chatd_opts_free(chatd_opts *o) {
  for (size_t i = 0; i < o->n_owned; i++)
    free(o->owned[i]);
  free(o->owned);
  o->owned = NULL;
  o->n_owned = 0;
}

int chatd_parse(chatd_opts *o, int argc, char **argv, bool *done) {
  memset(o, 0, sizeof *o);
  *done = false;
  o->cmd = CMD_SERVE;
  strcpy(o->host, "127.0.0.1");
  o->port = 8080;
  o->data_dir = "./chatd-data";
  o->log_level = CHAT_LOG_WARN;
  o->ttl_s = 86400;
  o->drain_timeout_ms = 4000;
#ifdef CHATD_HAVE_EPOLL
  o->transport = TRANSPORT_EPOLL;
#else
  o->transport = TRANSPORT_LWS;
#endif
  o->drain_spread_ms = UINT32_MAX;
  o->new_direct_per_day = UINT32_MAX;

  int i = 1;
  if (argc > 1 && argv[1][0] != '-') {
    if (strcmp(argv[1], "serve") == 0) {
      o->cmd = CMD_SERVE;
    } else if (strcmp(argv[1], "token") == 0) {
      o->cmd = CMD_TOKEN;
    } else if (strcmp(argv[1], "ban") == 0) {
      o->cmd = CMD_BAN;
    } else if (strcmp(argv[1], "unban") == 0) {
      o->cmd = CMD_UNBAN;
    } else if (strcmp(argv[1], "help") == 0) {
      usage(stdout);
      *done = true;
      return 0;
    } else {
      return bad("unknown command '%s'", argv[1]);
    }
    i = 2;
  }
  /* --help and --version anywhere; --config first, so that the command
   * line overrides the file whatever the order. */
  for (int j = i; j < argc; j++) {
    if (strcmp(argv[j], "--help") == 0 || strcmp(argv[j], "-h") == 0) {
      usage(stdout);
      *done = true;
      return 0;
    }
    if (strcmp(argv[j], "--version") == 0) {
      printf("chatd %s\n", chat_version_string());
      *done = true;
      return 0;
    }
  }
  for (int j = i; j < argc; j++) {
    const char *cfg = NULL;
    if (strcmp(argv[j], "--config") == 0 && j + 1 < argc)
      cfg = argv[j + 1];
    else if (strncmp(argv[j], "--config=", 9) == 0)
      cfg = argv[j] + 9;
    if (cfg) {
      if (o->cmd != CMD_SERVE)
        return bad("--config is a serve flag");
      int rc = load_config(o, cfg);
      if (rc)
        return rc;
    }
  }
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0)
      return bad("unexpected argument '%s'", a);
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t nl = eq ? (size_t)(eq - name) : strlen(name);
    const opt *p = find(name, nl);
    if (!p)
      return bad("unknown flag '%s'", a);
    if (!(p->cmds & o->cmd))
      return bad("--%s does not apply to this command", p->name);
    if (p->k == K_FLAG) {
      if (eq)
        return bad("--%s takes no value", p->name);
      apply(o, p, "", "command line");
      continue;
    }
    const char *v;
    if (eq) {
      v = eq + 1;
    } else {
      if (i + 1 >= argc)
        return bad("--%s needs a value", p->name);
      v = argv[++i];
    }
    if (strcmp(p->name, "config") == 0)
      continue;
    int rc = apply(o, p, v, "command line");
    if (rc)
      return rc;
  }
  if (o->cmd == CMD_TOKEN && (!o->user || !o->device))
    return bad("token needs --user and --device");
  if ((o->cmd == CMD_BAN || o->cmd == CMD_UNBAN) && !o->user)
    return bad("%s needs --user", o->cmd == CMD_BAN ? "ban" : "unban");
  if (o->cmd == CMD_BAN && !o->shadow)
    return bad("ban needs --shadow (shadow bans are the only kind)");
  return 0;
}

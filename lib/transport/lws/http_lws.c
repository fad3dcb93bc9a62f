/* HTTP on the adapter's port: the upgrade check (401 before the upgrade),
 * REST through chat_server_http(), /healthz, /metrics and static files.
 * Every error body has the REST shape {"error":{"code","message"}}. */
/* realpath() is XSI. */
#define _XOPEN_SOURCE 700

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "lws_internal.h"

#define WS_PATH "/chat/v1/ws"
#define TOKEN_MAX 2048
#define PATH_MAX_BYTES 2048
#define QUERY_MAX_BYTES 8192

enum { F_NOSTORE = 1, F_BEARER = 2 };

/* The adapter that serves wsi (its protocol's user). */
static chat_lws *adapter_of_wsi(struct lws *wsi) {
  const struct lws_protocols *p = lws_get_protocol(wsi);
  return p ? p->user : NULL;
}

/* ---- writing answers ---- */

static int add_header(struct lws *wsi, const char *name, const char *value,
                      unsigned char **p, unsigned char *end) {
  return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                     (const unsigned char *)value,
                                     (int)strlen(value), p, end);
}

/* Status line, headers and the whole body. lws keeps whatever one send()
 * does not take and finishes it when the socket drains. 0 or -1. */
static int respond(chat_lws *t, struct lws *wsi, int status,
                   const char *ctype, const void *body, size_t len,
                   uint32_t retry_after_s, int flags) {
  unsigned char hdr[LWS_PRE + 1024];
  unsigned char *start = hdr + LWS_PRE, *p = start;
  unsigned char *end = hdr + sizeof hdr - 1;
  char ra[24];
  if (lws_add_http_common_headers(wsi, (unsigned int)status, ctype,
                                  (lws_filepos_t)len, &p, end))
    return -1;
  if (retry_after_s) {
    snprintf(ra, sizeof ra, "%u", (unsigned)retry_after_s);
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_RETRY_AFTER,
                                     (const unsigned char *)ra,
                                     (int)strlen(ra), &p, end))
      return -1;
  }
  if ((flags & F_NOSTORE) &&
      add_header(wsi, "cache-control:", "no-store", &p, end))
    return -1;
  if ((flags & F_BEARER) &&
      add_header(wsi, "www-authenticate:", "Bearer realm=\"chat\"", &p, end))
    return -1;
  if (add_header(wsi, "x-content-type-options:", "nosniff", &p, end))
    return -1;
  if (lws_finalize_write_http_header(wsi, start, &p, end))
    return -1;
  chat__lws_count_status(&t->st, status);
  if (len == 0)
    return 0;
  unsigned char *buf = chat__lws_tx(t, len);
  if (!buf)
    return -1;
  memcpy(buf + LWS_PRE, body, len);
  if (lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) < 0)
    return -1;
  t->st.http_bytes_out += len;
  return 0;
}

static int json_error(chat_lws *t, struct lws *wsi, int status,
                      const char *code, const char *msg, uint32_t retry_s,
                      int flags) {
  char body[256];
  int n = snprintf(body, sizeof body,
                   "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
                   msg);
  return respond(t, wsi, status, "application/json", body, (size_t)n,
                 retry_s, flags | F_NOSTORE);
}

/* The answer is out: keep the connection for the next request, or close
 * it when lws says so. */
static int finish(struct lws *wsi) {
  return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int error_and_finish(chat_lws *t, struct lws *wsi, int status,
                            const char *code, const char *msg, int flags) {
  if (json_error(t, wsi, status, code, msg, 0, flags))
    return -1;
  return finish(wsi);
}

/* ---- the upgrade ---- */

/* True when the Sec-WebSocket-Protocol list is absent or names chat.v1. */
static bool subprotocol_ok(struct lws *wsi) {
  char buf[256];
  int n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
  if (n <= 0)
    return true;
  if ((size_t)n >= sizeof buf ||
      lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_PROTOCOL) < 0)
    return false;
  char *save = NULL;
  for (char *tok = strtok_r(buf, ",", &save); tok;
       tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ' || *tok == '\t')
      tok++;
    size_t k = strlen(tok);
    while (k > 0 && (tok[k - 1] == ' ' || tok[k - 1] == '\t'))
      tok[--k] = 0;
    if (strcmp(tok, "chat.v1") == 0)
      return true;
  }
  return false;
}

static const char *reason_phrase(int status) {
  switch (status) {
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 404: return "Not Found";
  case 503: return "Service Unavailable";
  default: return "Error";
  }
}

/* Answer the upgrade request with an HTTP error and hang up. The status
 * line is written by hand: at this point lws has not yet recorded the
 * request's HTTP version and would answer "HTTP/1.0", which WebSocket
 * clients reject as a malformed handshake instead of reporting the status.
 * Returning <0 (not >0) from HTTP_CONFIRM_UPGRADE makes lws hang up at
 * once instead of resetting the connection for another request: a refused
 * upgrade is never kept alive. (CVE-2025-11677 reports a use-after-free in
 * lws_handshake_server for servers that handle this callback; whether and
 * how it affects 4.1.6 is not established here, and the shortest path
 * through lws after our answer is the conservative choice.) */
static int refuse_upgrade(chat_lws *t, struct lws *wsi, int status,
                          const char *code, const char *msg, bool bearer) {
  if (status == 401)
    t->st.auth_fail_upgrade++;
  else
    t->st.upgrades_refused++;
  chat__lws_log(t, CHAT_LOG_INFO, "event=upgrade_refused status=%d code=%s",
                status, code);
  char body[256];
  int bl = snprintf(body, sizeof body,
                    "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                    code, msg);
  unsigned char *buf = chat__lws_tx(t, 1024);
  if (!buf || bl < 0 || (size_t)bl >= sizeof body)
    return -1;
  char *p = (char *)buf + LWS_PRE;
  int n = snprintf(p, 1024,
                   "HTTP/1.1 %d %s\r\n"
                   "content-type: application/json\r\n"
                   "content-length: %d\r\n"
                   "cache-control: no-store\r\n"
                   "%s"
                   "connection: close\r\n"
                   "x-content-type-options: nosniff\r\n"
                   "\r\n%s",
                   status, reason_phrase(status), bl,
                   bearer ? "www-authenticate: Bearer realm=\"chat\"\r\n" : "",
                   body);
  if (n > 0 && n < 1024) {
    chat__lws_count_status(&t->st, status);
    (void)lws_write(wsi, (unsigned char *)p, (size_t)n,
                    LWS_WRITE_HTTP_HEADERS);
  }
  return -1;
}

int chat__lws_confirm_upgrade(chat_lws *t, struct lws *wsi, const char *up) {
  if (strcasecmp(up, "websocket") != 0)
    return refuse_upgrade(t, wsi, 400, "bad_request",
                          "only WebSocket upgrades are accepted", false);
  char *uri = NULL;
  int ulen = 0;
  int m = lws_http_get_uri_and_method(wsi, &uri, &ulen);
  if (m != LWSHUMETH_GET || !uri || (size_t)ulen != strlen(WS_PATH) ||
      memcmp(uri, WS_PATH, (size_t)ulen) != 0)
    return refuse_upgrade(t, wsi, 404, "not_found", "no such endpoint",
                          false);
  if (t->draining)
    return refuse_upgrade(t, wsi, 503, "unavailable",
                          "server is shutting down", false);
  if (!subprotocol_ok(wsi))
    return refuse_upgrade(t, wsi, 400, "bad_request",
                          "subprotocol chat.v1 required", false);
  char tok[TOKEN_MAX];
  size_t n = chat__lws_token(wsi, tok, sizeof tok);
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  if (n == 0 || chat_server_authenticate(t->srv, tok, n, &id) != CHAT_OK)
    return refuse_upgrade(t, wsi, 401, "unauthorized",
                          "missing or invalid token", true);
  t->handoff_wsi = wsi;
  t->handoff_id = id;
  return 0;
}

/* ---- REST ---- */

static const char *method_name(int m) {
  switch (m) {
  case LWSHUMETH_GET: return "GET";
  case LWSHUMETH_POST: return "POST";
  case LWSHUMETH_OPTIONS: return "OPTIONS";
  case LWSHUMETH_PUT: return "PUT";
  case LWSHUMETH_PATCH: return "PATCH";
  case LWSHUMETH_DELETE: return "DELETE";
  case LWSHUMETH_HEAD: return "HEAD";
  default: return NULL;
  }
}

static void pct_encode(chat__buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
        c == '~' || c == ':' || c == '@') {
      chat__buf_putc(b, (char)c);
    } else {
      chat__buf_putc(b, '%');
      chat__buf_putc(b, hex[c >> 4]);
      chat__buf_putc(b, hex[c & 15]);
    }
  }
}

/* lws hands the query over decoded, one "name=value" per fragment; the
 * core wants the raw query, so each part is encoded again. access_token
 * is taken out: it is a credential, not an argument. */
static bool rebuild_query(struct lws *wsi, chat__buf *q) {
  char frag[QUERY_MAX_BYTES];
  for (int i = 0; i < 256; i++) {
    int fl = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
    if (fl <= 0)
      break;
    if ((size_t)fl >= sizeof frag ||
        lws_hdr_copy_fragment(wsi, frag, sizeof frag,
                              WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
      return false;
    if (strncmp(frag, "access_token=", 13) == 0)
      continue;
    if (q->len)
      chat__buf_putc(q, '&');
    char *eq = strchr(frag, '=');
    if (eq) {
      pct_encode(q, frag, (size_t)(eq - frag));
      chat__buf_putc(q, '=');
      pct_encode(q, eq + 1, strlen(eq + 1));
    } else {
      pct_encode(q, frag, strlen(frag));
    }
  }
  return !q->oom && q->len < QUERY_MAX_BYTES;
}

static int rest_answer(chat_lws *t, struct lws *wsi,
                       const chat_http_response *resp) {
  int flags = F_NOSTORE | (resp->status == 401 ? F_BEARER : 0);
  int r = respond(t, wsi, resp->status,
                  resp->content_type ? resp->content_type
                                     : "application/json",
                  resp->body, resp->body_len, resp->retry_after_s, flags);
  /* A REST call may queue frames (a new member) or move deadlines. */
  chat__lws_arm(t);
  if (r)
    return -1;
  return finish(wsi);
}

static int rest_dispatch(chat_lws *t, struct lws *wsi, chat__lws_pss *ps,
                         const char *method, const char *path,
                         const char *query, const char *ctype,
                         const chat_identity *id, const void *body,
                         size_t len) {
  chat_http_request rq = {.version = CHAT_HTTP_REQUEST_V1,
                          .method = method,
                          .path = path,
                          .query = query,
                          .content_type = ctype,
                          .body = body,
                          .body_len = len,
                          .identity = id,
                          .tag = ps};
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  uint64_t t0 = chat__lws_mono_us();
  chat_err rc = chat_server_http(t->srv, &rq, &resp, t0 / 1000u);
  if (rc == CHAT_PENDING && ps) {
    /* The answer waits on a module: it comes through on_http_response and
     * is written from HTTP_WRITEABLE; until then the connection waits
     * (lws's HTTP timeout still applies). */
    ps->http_wsi = wsi;
    ps->waiting = true;
    ps->rest_t0_us = t0;
    t->st.rest_deferred++;
    chat__lws_arm(t);
    return 0;
  }
  chat__hist_observe(&t->st.rest, chat__lws_mono_us() - t0);
  if (rc == CHAT_PENDING) {
    /* No per-session block to answer through (lws gave none). */
    chat_server_http_cancel(t->srv, NULL);
    return error_and_finish(t, wsi, 500, "internal", "request failed", 0);
  }
  if (rc != CHAT_OK)
    return error_and_finish(t, wsi, 500, "internal", "request failed", 0);
  return rest_answer(t, wsi, &resp);
}

static void answer_free(chat_lws *t, chat__lws_answer *a) {
  if (!a)
    return;
  chat__free(&t->a, a->content_type);
  chat__free(&t->a, a->body);
  chat__free(&t->a, a);
}

void chat__lws_on_http_response(void *user_data, chat_server *srv,
                                void *tag, const chat_http_response *resp) {
  (void)user_data;
  (void)srv;
  chat__lws_pss *ps = tag;
  if (!ps || !ps->waiting || !ps->http_wsi)
    return;
  chat_lws *t = adapter_of_wsi(ps->http_wsi);
  if (!t)
    return;
  ps->waiting = false;
  chat__hist_observe(&t->st.rest, chat__lws_mono_us() - ps->rest_t0_us);
  chat__lws_answer *a = chat__calloc(&t->a, 1, sizeof *a);
  const char *ct = resp->content_type ? resp->content_type
                                      : "application/json";
  if (a) {
    a->status = resp->status;
    a->retry_after_s = resp->retry_after_s;
    a->content_type = chat__strndup(&t->a, ct, strlen(ct));
    a->len = resp->body_len;
    a->body = chat__alloc(&t->a, a->len ? a->len : 1);
    if (!a->content_type || !a->body) {
      answer_free(t, a);
      a = NULL;
    } else if (a->len) {
      memcpy(a->body, resp->body, a->len);
    }
  }
  if (!a) {
    /* Say so (503, no body) rather than leave the client hanging. */
    a = chat__calloc(&t->a, 1, sizeof *a);
    if (!a) {
      lws_set_timeout(ps->http_wsi, PENDING_TIMEOUT_USER_OK,
                      LWS_TO_KILL_ASYNC);
      return;
    }
    a->status = 503;
  }
  ps->answer = a;
  lws_callback_on_writable(ps->http_wsi);
}

int chat__lws_http_writable(chat_lws *t, struct lws *wsi,
                            chat__lws_pss *ps) {
  if (!ps || !ps->answer)
    return 1;
  chat__lws_answer *a = ps->answer;
  ps->answer = NULL;
  ps->http_wsi = NULL;
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1,
                             .status = a->status,
                             .content_type = a->content_type,
                             .body = a->body,
                             .body_len = a->len,
                             .retry_after_s = a->retry_after_s};
  int r = rest_answer(t, wsi, &resp);
  answer_free(t, a);
  return r;
}

void chat__lws_http_forget(chat_lws *t, chat__lws_pss *ps) {
  if (!ps)
    return;
  if (ps->waiting) {
    ps->waiting = false;
    chat_server_http_cancel(t->srv, ps);
  }
  answer_free(t, ps->answer);
  ps->answer = NULL;
  ps->http_wsi = NULL;
}

static void req_destroy(chat_lws *t, chat__lws_req *r) {
  chat__free(&t->a, r->path);
  chat__free(&t->a, r->query);
  chat__free(&t->a, r->content_type);
  chat__free(&t->a, r->body);
  chat__free(&t->a, r);
}

void chat__lws_req_free(chat_lws *t, chat__lws_pss *ps) {
  if (!ps || !ps->req)
    return;
  chat__lws_req *r = ps->req;
  ps->req = NULL;
  req_destroy(t, r);
}

/* Content-Length as a number; -1 absent, -2 malformed. */
static int64_t content_length(struct lws *wsi) {
  char buf[32];
  int n = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
  if (n <= 0)
    return -1;
  if ((size_t)n >= sizeof buf ||
      lws_hdr_copy(wsi, buf, sizeof buf, WSI_TOKEN_HTTP_CONTENT_LENGTH) < 0)
    return -2;
  int64_t v = 0;
  for (const char *p = buf; *p; p++) {
    if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10)
      return -2;
    v = v * 10 + (*p - '0');
  }
  return v;
}

static int rest(chat_lws *t, struct lws *wsi, chat__lws_pss *ps, int m,
                const char *method, const char *path) {
  char tok[TOKEN_MAX];
  size_t n = chat__lws_token(wsi, tok, sizeof tok);
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  if (n == 0 || chat_server_authenticate(t->srv, tok, n, &id) != CHAT_OK) {
    t->st.auth_fail_rest++;
    return error_and_finish(t, wsi, 401, "unauthorized",
                            "missing or invalid token", F_BEARER);
  }
  int64_t cl = content_length(wsi);
  if (cl == -2)
    return error_and_finish(t, wsi, 400, "bad_request",
                            "bad Content-Length", 0);
  if (cl > (int64_t)t->s.max_http_body_bytes)
    return error_and_finish(t, wsi, 413, "too_large",
                            "request body too large", 0);
  char ctype[256];
  int cn = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE);
  bool has_ctype = cn > 0;
  if (has_ctype && ((size_t)cn >= sizeof ctype ||
                    lws_hdr_copy(wsi, ctype, sizeof ctype,
                                 WSI_TOKEN_HTTP_CONTENT_TYPE) < 0))
    return error_and_finish(t, wsi, 400, "bad_request",
                            "Content-Type too long", 0);
  chat__buf q;
  chat__buf_init(&q, &t->a);
  if (!rebuild_query(wsi, &q)) {
    chat__buf_free(&q);
    return error_and_finish(t, wsi, 414, "bad_request", "query too long",
                            0);
  }
  chat__buf_putc(&q, 0);
  if (q.oom) {
    chat__buf_free(&q);
    return error_and_finish(t, wsi, 503, "internal", "out of memory", 0);
  }
  const char *query = q.len > 1 ? q.data : NULL;

  /* lws delivers a body (and for POST an explicitly empty one) through
   * HTTP_BODY and HTTP_BODY_COMPLETION; answer there. */
  bool wait_body = cl > 0 || (cl == 0 && m == LWSHUMETH_POST);
  if (!wait_body) {
    int r = rest_dispatch(t, wsi, ps, method, path, query,
                          has_ctype ? ctype : NULL, &id, NULL, 0);
    chat__buf_free(&q);
    return r;
  }
  chat__lws_req_free(t, ps);
  chat__lws_req *r = ps ? chat__calloc(&t->a, 1, sizeof *r) : NULL;
  if (r) {
    snprintf(r->method, sizeof r->method, "%s", method);
    r->path = chat__strndup(&t->a, path, strlen(path));
    r->query = query ? chat__strndup(&t->a, query, strlen(query)) : NULL;
    r->content_type =
        has_ctype ? chat__strndup(&t->a, ctype, strlen(ctype)) : NULL;
    r->id = id;
    ps->req = r;
  }
  chat__buf_free(&q);
  if (!r || !r->path || (query && !r->query) ||
      (has_ctype && !r->content_type)) {
    chat__lws_req_free(t, ps);
    return error_and_finish(t, wsi, 503, "internal", "out of memory", 0);
  }
  return 0;
}

int chat__lws_http_body(chat_lws *t, struct lws *wsi, chat__lws_pss *ps,
                        const void *in, size_t len) {
  (void)wsi;
  chat__lws_req *r = ps ? ps->req : NULL;
  if (!r || len == 0)
    return 0;
  if (len > t->s.max_http_body_bytes - r->len) {
    chat__lws_req_free(t, ps);
    return -1; /* more than Content-Length promised */
  }
  if (r->len + len > r->cap) {
    /* Grow with the data, not with what Content-Length promises, so a
     * request that never sends its body holds no memory. */
    size_t cap = r->cap ? r->cap : 16384;
    while (cap < r->len + len)
      cap *= 2;
    char *p = chat__realloc(&t->a, r->body, cap);
    if (!p) {
      chat__lws_req_free(t, ps);
      return -1;
    }
    r->body = p;
    r->cap = cap;
  }
  memcpy(r->body + r->len, in, len);
  r->len += len;
  return 0;
}

int chat__lws_http_body_done(chat_lws *t, struct lws *wsi,
                             chat__lws_pss *ps) {
  chat__lws_req *r = ps ? ps->req : NULL;
  if (!r)
    return 0;
  /* Answering completes the transaction, and on a keep-alive connection
   * lws then frees ps: take the request out of it first and never touch
   * ps again. */
  ps->req = NULL;
  int rc = rest_dispatch(t, wsi, ps, r->method, r->path, r->query,
                         r->content_type, &r->id, r->body, r->len);
  req_destroy(t, r);
  return rc;
}

/* ---- /healthz, /metrics ---- */

static int healthz(chat_lws *t, struct lws *wsi) {
  static const char ok[] = "{\"ok\":true}";
  static const char bad[] = "{\"ok\":false}";
  static const char drain[] = "{\"ok\":false,\"draining\":true}";
  int r;
  if (t->draining)
    r = respond(t, wsi, 503, "application/json", drain, sizeof drain - 1, 0,
                F_NOSTORE);
  else if (!t->s.healthy || t->s.healthy(t->s.user_data))
    r = respond(t, wsi, 200, "application/json", ok, sizeof ok - 1, 0,
                F_NOSTORE);
  else
    r = respond(t, wsi, 503, "application/json", bad, sizeof bad - 1, 0,
                F_NOSTORE);
  return r ? -1 : finish(wsi);
}

static int metrics(chat_lws *t, struct lws *wsi) {
  chat__buf_reset(&t->out);
  chat__lws_metrics(t, &t->out);
  if (t->out.oom)
    return error_and_finish(t, wsi, 503, "internal", "out of memory", 0);
  int r = respond(t, wsi, 200, "text/plain; version=0.0.4; charset=utf-8",
                  t->out.data, t->out.len, 0, F_NOSTORE);
  return r ? -1 : finish(wsi);
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

/* No "..", no hidden files, no backslashes: checked on the request path
 * before any file system call, whatever lws already normalised. */
static bool path_is_safe(const char *p) {
  if (p[0] != '/')
    return false;
  for (const char *s = p; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\\' || c < 0x20 || c == 0x7f)
      return false;
    if (c == '/' && s[1] == '.')
      return false; /* "/.", "/..", "/.hidden" */
  }
  return true;
}

static int serve_static(chat_lws *t, struct lws *wsi, const char *path) {
  if (!path_is_safe(path))
    return error_and_finish(t, wsi, 404, "not_found", "no such file", 0);
  char full[PATH_MAX_BYTES + 4096];
  size_t pl = strlen(path);
  const char *index = path[pl - 1] == '/' ? "index.html" : "";
  int n = snprintf(full, sizeof full, "%s%s%s", t->static_dir, path, index);
  if (n < 0 || (size_t)n >= sizeof full)
    return error_and_finish(t, wsi, 404, "not_found", "no such file", 0);
  char *real = realpath(full, NULL);
  struct stat st;
  if (real && stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
    n = snprintf(full, sizeof full, "%s/index.html", real);
    free(real);
    real = (n > 0 && (size_t)n < sizeof full) ? realpath(full, NULL) : NULL;
  }
  /* The resolved file must still be inside the directory: a symbolic link
   * may point anywhere. */
  bool ok = real && strncmp(real, t->static_dir, t->static_dir_len) == 0 &&
            real[t->static_dir_len] == '/' && stat(real, &st) == 0 &&
            S_ISREG(st.st_mode);
  if (!ok) {
    free(real);
    return error_and_finish(t, wsi, 404, "not_found", "no such file", 0);
  }
  static const char extra[] = "x-content-type-options: nosniff\x0d\x0a";
  int r = lws_serve_http_file(wsi, real, mime_of(real), extra,
                              (int)sizeof extra - 1);
  free(real);
  if (r < 0)
    return -1;
  chat__lws_count_status(&t->st, 200);
  if (r > 0 && lws_http_transaction_completed(wsi))
    return -1;
  return 0;
}

/* ---- LWS_CALLBACK_HTTP ---- */

int chat__lws_http(chat_lws *t, struct lws *wsi, chat__lws_pss *ps,
                   const char *uri, size_t len) {
  char *u = NULL;
  int ulen = 0;
  int m = lws_http_get_uri_and_method(wsi, &u, &ulen);
  const char *method = method_name(m);
  if (!method)
    return error_and_finish(t, wsi, 405, "method_not_allowed",
                            "method not allowed", 0);
  if (!uri || len == 0 || len >= PATH_MAX_BYTES)
    return error_and_finish(t, wsi, 414, "bad_request", "path too long", 0);
  char path[PATH_MAX_BYTES];
  memcpy(path, uri, len);
  path[len] = 0;
  bool get = m == LWSHUMETH_GET || m == LWSHUMETH_HEAD;
  if (strcmp(path, "/healthz") == 0)
    return get ? healthz(t, wsi)
               : error_and_finish(t, wsi, 405, "method_not_allowed",
                                  "use GET", 0);
  if (strcmp(path, "/metrics") == 0)
    return get ? metrics(t, wsi)
               : error_and_finish(t, wsi, 405, "method_not_allowed",
                                  "use GET", 0);
  if (strncmp(path, "/api/", 5) == 0)
    return rest(t, wsi, ps, m, method, path);
  if (strcmp(path, WS_PATH) == 0)
    return error_and_finish(t, wsi, 426, "upgrade_required",
                            "this endpoint speaks WebSocket only", 0);
  if (t->static_dir && get)
    return serve_static(t, wsi, path);
  return error_and_finish(t, wsi, 404, "not_found", "no such endpoint", 0);
}

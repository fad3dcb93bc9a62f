/* chat_client on libwebsockets (include/chat/client_lws.h).
 *
 * One lws_context without a listening socket and one protocol callback for
 * both kinds of client connection: the WebSocket (wsi r->ws) and the REST
 * requests (each a chat__creq in r->reqs, found again by its wsi). After
 * every event that may have changed what the client wants, pump() looks at
 * chat_client_wants() and acts: connect, ask for a writable callback,
 * close, start requests, and re-arm the one timer at the client's next
 * deadline. As in the server adapter, each writable callback writes one
 * frame and asks for another if more are waiting. */
#include <chat/client_lws.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lws_internal.h"

#define DEF_MAX_FRAME (1u << 20)
#define DEF_MAX_RESPONSE (64u << 20)

typedef struct chat__creq {
  struct chat__creq *next;
  chat_client_lws *r;
  struct lws *wsi;
  uint32_t id;
  char *method;
  char *path;
  char *body;
  size_t body_len;
  bool body_sent;
  int status;
  chat__buf resp;
  bool too_big;
} chat__creq;

struct chat_client_lws {
  chat_allocator a;
  chat_client *c;
  chat_client_lws_settings s;
  char *host;
  char *ws_path;
  char *auth; /* "Bearer <token>" */
  int port;
  bool tls;
  struct lws_context *ctx;
  struct lws_protocols protocols[2];
  struct lws *ws;
  bool ws_open;      /* established */
  bool ws_closing;   /* we asked lws to close it */
  chat__buf rx;
  bool rx_over;
  bool rx_binary;
  uint16_t close_code; /* the peer's, from its close frame */
  chat__creq *reqs;
  lws_sorted_usec_list_t sul;
  bool armed;             /* sul is scheduled ... */
  chat_time_ms armed_at;  /* ... for this time */
  bool destroying;
  bool in_pump;
  atomic_bool wake_pending;
  atomic_bool quit;
};

chat_time_ms chat_client_lws_now(void) { return chat__lws_mono_ms(); }

static void pump(chat_client_lws *r);

static void on_timer(lws_sorted_usec_list_t *sul) {
  chat_client_lws *r = lws_container_of(sul, chat_client_lws, sul);
  r->armed = false;
  chat_client_on_timer(r->c, chat__lws_mono_ms());
  pump(r);
}

static void arm(chat_client_lws *r) {
  if (!r->ctx || r->destroying)
    return;
  chat_time_ms d = chat_client_next_deadline(r->c);
  if (d == CHAT_TIME_NEVER) {
    if (r->armed)
      lws_sul_cancel(&r->sul);
    r->armed = false;
    return;
  }
  chat_time_ms now = chat__lws_mono_ms();
  chat_time_ms at = d > now ? d : now + 1;
  /* Keep a timer that fires no later than needed. Re-arming a due timer
   * on every pump would push it into the future for ever: a busy loop
   * pumps before every service round, and lws runs ripe timers only at
   * the start of one. */
  if (r->armed && r->armed_at <= at)
    return;
  lws_sul_schedule(r->ctx, 0, &r->sul, on_timer,
                   (lws_usec_t)((at - now) * 1000u));
  r->armed = true;
  r->armed_at = at;
}

/* ---- REST ---- */

static void req_free(chat_client_lws *r, chat__creq *q) {
  for (chat__creq **p = &r->reqs; *p; p = &(*p)->next)
    if (*p == q) {
      *p = q->next;
      break;
    }
  chat__free(&r->a, q->method);
  chat__free(&r->a, q->path);
  chat__free(&r->a, q->body);
  chat__buf_free(&q->resp);
  chat__free(&r->a, q);
}

static chat__creq *req_of(chat_client_lws *r, struct lws *wsi) {
  for (chat__creq *q = r->reqs; q; q = q->next)
    if (q->wsi == wsi)
      return q;
  return NULL;
}

/* Hand the answer (status 0: none) to the client and forget the request. */
static void req_finish(chat_client_lws *r, chat__creq *q, bool ok) {
  int status = ok && !q->too_big && !q->resp.oom ? q->status : 0;
  uint32_t id = q->id;
  const char *body = status ? q->resp.data : NULL;
  size_t len = status ? q->resp.len : 0;
  q->wsi = NULL;
  if (!r->destroying)
    chat_client_on_response(r->c, id, status, body ? body : "", len,
                            chat__lws_mono_ms());
  req_free(r, q);
}

/* What the WebSocket and every REST request share: where to connect and
 * how hard to check TLS, set in one place so the two cannot drift. */
static void connect_info(chat_client_lws *r, struct lws_client_connect_info *i,
                         const char *path) {
  memset(i, 0, sizeof *i);
  i->context = r->ctx;
  i->address = r->host;
  i->port = r->port;
  i->host = r->host;
  i->origin = r->host;
  i->path = path;
  i->local_protocol_name = r->protocols[0].name;
  i->ssl_connection = r->tls ? LCCSCF_USE_SSL : 0;
  if (r->tls && r->s.allow_self_signed)
    i->ssl_connection |= LCCSCF_ALLOW_SELFSIGNED |
                         LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
  i->alpn = "http/1.1";
}

static void req_start(chat_client_lws *r, const chat_client_request *cr) {
  chat__creq *q = chat__calloc(&r->a, 1, sizeof *q);
  if (!q) {
    chat_client_on_response(r->c, cr->id, 0, NULL, 0, chat__lws_mono_ms());
    return;
  }
  q->r = r;
  q->id = cr->id;
  chat__buf_init(&q->resp, &r->a);
  q->method = chat__strndup(&r->a, cr->method, strlen(cr->method));
  q->path = chat__strndup(&r->a, cr->path, strlen(cr->path));
  if (cr->body) {
    q->body = chat__strndup(&r->a, cr->body, cr->body_len);
    q->body_len = cr->body_len;
  }
  q->next = r->reqs;
  r->reqs = q;
  if (!q->method || !q->path || (cr->body && !q->body)) {
    req_finish(r, q, false);
    return;
  }
  struct lws_client_connect_info i;
  connect_info(r, &i, q->path);
  i.method = q->method;
  i.ssl_connection |= LCCSCF_HTTP_NO_FOLLOW_REDIRECT;
  i.protocol = r->protocols[0].name;
  i.userdata = q;
  i.pwsi = &q->wsi;
  if (!lws_client_connect_via_info(&i)) {
    /* A synchronous failure may already have reported the error through
     * the callback, which finished the request. */
    chat__creq *still = NULL;
    for (chat__creq *p = r->reqs; p; p = p->next)
      if (p == q)
        still = p;
    if (still)
      req_finish(r, still, false);
  }
}

/* ---- the WebSocket ---- */

static void ws_connect(chat_client_lws *r) {
  chat_time_ms now = chat__lws_mono_ms();
  if (chat_client_on_connecting(r->c, now) != CHAT_OK)
    return;
  struct lws_client_connect_info i;
  connect_info(r, &i, r->ws_path);
  i.protocol = "chat.v1";
  i.pwsi = &r->ws;
  r->ws_open = false;
  r->ws_closing = false;
  chat__buf_reset(&r->rx);
  r->rx_over = false;
  r->rx_binary = false;
  r->close_code = 0;
  if (!lws_client_connect_via_info(&i) && r->ws) {
    r->ws = NULL;
    chat_client_on_close(r->c, 0, now);
  } else if (!r->ws &&
             chat_client_get_state(r->c) == CHAT_CLIENT_CONNECTING) {
    chat_client_on_close(r->c, 0, now);
  }
}

static void pump(chat_client_lws *r) {
  if (r->destroying || r->in_pump)
    return;
  r->in_pump = true;
  for (int round = 0; round < 8; round++) {
    uint32_t w = chat_client_wants(r->c);
    bool again = false;
    if (w & CHAT_CLIENT_WANT_CONNECT) {
      ws_connect(r);
      again = true;
    }
    if ((w & (CHAT_CLIENT_WANT_WRITE | CHAT_CLIENT_WANT_CLOSE)) && r->ws &&
        r->ws_open)
      lws_callback_on_writable(r->ws);
    if ((w & CHAT_CLIENT_WANT_CLOSE) && !r->ws) {
      chat_client_on_close(r->c, 0, chat__lws_mono_ms());
      again = true;
    } else if ((w & CHAT_CLIENT_WANT_CLOSE) && r->ws && !r->ws_open &&
               !r->ws_closing) {
      /* Still connecting: drop the attempt. */
      r->ws_closing = true;
      lws_set_timeout(r->ws, PENDING_TIMEOUT_CLOSE_ACK, LWS_TO_KILL_ASYNC);
    }
    if (w & CHAT_CLIENT_WANT_REST) {
      chat_client_request cr = {.version = CHAT_CLIENT_REQUEST_V1};
      while (chat_client_next_request(r->c, &cr) == CHAT_OK)
        req_start(r, &cr);
      again = true;
    }
    if (!again)
      break;
  }
  r->in_pump = false;
  arm(r);
}

static int add_auth(chat_client_lws *r, struct lws *wsi, void *in,
                    size_t len) {
  unsigned char **p = (unsigned char **)in, *end = (*p) + len;
  return lws_add_http_header_by_name(wsi,
                                     (const unsigned char *)"authorization:",
                                     (const unsigned char *)r->auth,
                                     (int)strlen(r->auth), p, end);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason,
                    void *user, void *in, size_t len) {
  (void)user;
  if (!wsi)
    return 0;
  struct lws_context *cx = lws_get_context(wsi);
  chat_client_lws *r = cx ? lws_context_user(cx) : NULL;
  if (!r)
    return 0;
  chat_time_ms now = chat__lws_mono_ms();
  bool is_ws = wsi == r->ws;
  switch (reason) {
  case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
    if (add_auth(r, wsi, in, len))
      return -1;
    chat__creq *q = is_ws ? NULL : req_of(r, wsi);
    if (q && q->body) {
      unsigned char **p = (unsigned char **)in, *end = (*p) + len;
      if (lws_add_http_header_by_name(
              wsi, (const unsigned char *)"content-type:",
              (const unsigned char *)"application/json", 16, p, end) ||
          lws_add_http_header_content_length(wsi, q->body_len, p, end))
        return -1;
      lws_client_http_body_pending(wsi, 1);
      lws_callback_on_writable(wsi);
    }
    return 0;
  }

  /* ---- WebSocket ---- */
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    if (!is_ws)
      return -1;
    r->ws_open = true;
    chat_client_on_open(r->c, now);
    pump(r);
    return 0;

  case LWS_CALLBACK_CLIENT_RECEIVE:
    if (!is_ws)
      return -1;
    if (lws_frame_is_binary(wsi)) {
      r->rx_binary = true; /* not ours; dropped with its fragments */
    } else if (!r->rx_over && !r->rx_binary) {
      if (r->rx.len + len > r->s.max_frame_bytes) {
        /* Dropping it would lose a message for good; closing makes the
         * client reconnect and resume, which fetches it again. */
        r->rx_over = true;
        r->ws_closing = true;
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, NULL, 0);
        return -1;
      }
      chat__buf_append(&r->rx, in, len);
    }
    if (lws_is_final_fragment(wsi)) {
      if (!r->rx_over && !r->rx_binary && !r->rx.oom)
        chat_client_on_frame(r->c, r->rx.data ? r->rx.data : "", r->rx.len,
                             now);
      chat__buf_reset(&r->rx);
      r->rx_over = false;
      r->rx_binary = false;
      pump(r);
    }
    return 0;

  case LWS_CALLBACK_CLIENT_WRITEABLE: {
    if (!is_ws)
      return 0;
    const char *json;
    size_t n;
    if (chat_client_next_frame(r->c, &json, &n) == CHAT_OK) {
      unsigned char *buf = chat__alloc(&r->a, LWS_PRE + n);
      if (!buf)
        return -1;
      memcpy(buf + LWS_PRE, json, n);
      int wr = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
      chat__free(&r->a, buf);
      if (wr < (int)n)
        return -1;
      if (chat_client_wants(r->c) &
          (CHAT_CLIENT_WANT_WRITE | CHAT_CLIENT_WANT_CLOSE))
        lws_callback_on_writable(wsi);
      return 0;
    }
    if (chat_client_wants(r->c) & CHAT_CLIENT_WANT_CLOSE) {
      r->ws_closing = true;
      lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
      return -1;
    }
    return 0;
  }

  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    if (is_ws && in && len >= 2) {
      const unsigned char *p = in;
      r->close_code = (uint16_t)(p[0] << 8 | p[1]);
    }
    return 0;

  case LWS_CALLBACK_CLIENT_CLOSED:
    if (is_ws) {
      r->ws = NULL;
      r->ws_open = false;
      chat_client_on_close(r->c, r->close_code ? r->close_code : 1006, now);
      r->close_code = 0;
      pump(r);
    }
    return 0;

  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    if (is_ws) {
      /* An HTTP answer instead of the upgrade: lws keeps its status until
       * the wsi goes (4.1 fails a 401 with "HS: ws upgrade unauthorized",
       * any other status with "HS: ws upgrade response not 101"). The
       * client must hear of a 401, or it would retry a refused token for
       * ever. */
      unsigned int status = lws_http_client_http_response(wsi);
      static const char unauth[] = "HS: ws upgrade unauthorized";
      if (!status && in && len >= sizeof unauth - 1 &&
          memcmp(in, unauth, sizeof unauth - 1) == 0)
        status = 401;
      r->ws = NULL;
      r->ws_open = false;
      if (status >= 100 && status <= 599 && status != 101)
        chat_client_on_refused(r->c, (int)status, now);
      else
        chat_client_on_close(r->c, 0, now);
      pump(r);
      return 0;
    } else {
      chat__creq *q = req_of(r, wsi);
      if (q) {
        req_finish(r, q, false);
        pump(r);
      }
    }
    return 0;

  /* ---- REST ---- */
  case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP: {
    chat__creq *q = req_of(r, wsi);
    if (q)
      q->status = (int)lws_http_client_http_response(wsi);
    return 0;
  }

  case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE: {
    chat__creq *q = req_of(r, wsi);
    if (!q || !q->body || q->body_sent)
      return 0;
    unsigned char *buf = chat__alloc(&r->a, LWS_PRE + q->body_len);
    if (!buf)
      return -1;
    memcpy(buf + LWS_PRE, q->body, q->body_len);
    q->body_sent = true;
    lws_client_http_body_pending(wsi, 0);
    int wr = lws_write(wsi, buf + LWS_PRE, q->body_len,
                       LWS_WRITE_HTTP_FINAL);
    chat__free(&r->a, buf);
    return wr < (int)q->body_len ? -1 : 0;
  }

  case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ: {
    chat__creq *q = req_of(r, wsi);
    if (!q)
      return 0;
    if (q->resp.len + len > r->s.max_response_bytes)
      q->too_big = true;
    else
      chat__buf_append(&q->resp, in, len);
    return 0;
  }

  case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
    char buf[LWS_PRE + 4096];
    char *px = buf + LWS_PRE;
    int lenx = (int)sizeof buf - LWS_PRE;
    if (lws_http_client_read(wsi, &px, &lenx) < 0)
      return -1;
    return 0;
  }

  case LWS_CALLBACK_COMPLETED_CLIENT_HTTP: {
    chat__creq *q = req_of(r, wsi);
    if (q) {
      req_finish(r, q, true);
      pump(r);
    }
    return 0;
  }

  case LWS_CALLBACK_CLOSED_CLIENT_HTTP: {
    chat__creq *q = req_of(r, wsi);
    if (q) {
      req_finish(r, q, false);
      pump(r);
    }
    return 0;
  }

  case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    if (atomic_exchange(&r->wake_pending, false) && r->s.on_wake &&
        !r->destroying)
      r->s.on_wake(r, r->c, r->s.user_data);
    pump(r);
    return 0;

  default:
    break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- URL ---- */

static chat_err parse_url(chat_client_lws *r, const char *url) {
  const char *p = url;
  if (strncmp(p, "wss://", 6) == 0) {
    r->tls = true;
    p += 6;
  } else if (strncmp(p, "https://", 8) == 0) {
    r->tls = true;
    p += 8;
  } else if (strncmp(p, "ws://", 5) == 0) {
    p += 5;
  } else if (strncmp(p, "http://", 7) == 0) {
    p += 7;
  } else {
    return CHAT_ERR_INVAL;
  }
  size_t hl = strcspn(p, ":/");
  if (hl == 0 || hl > 253)
    return CHAT_ERR_INVAL;
  r->host = chat__strndup(&r->a, p, hl);
  p += hl;
  r->port = r->tls ? 443 : 80;
  if (*p == ':') {
    char *end;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || port <= 0 || port > 65535)
      return CHAT_ERR_INVAL;
    r->port = (int)port;
    p = end;
  }
  if (*p && *p != '/')
    return CHAT_ERR_INVAL;
  const char *path = *p && strcmp(p, "/") != 0 ? p : "/chat/v1/ws";
  r->ws_path = chat__strndup(&r->a, path, strlen(path));
  if (!r->host || !r->ws_path)
    return CHAT_ERR_NOMEM;
  return CHAT_OK;
}

chat_err chat_client_lws_new(chat_client_lws **out, chat_client *c,
                             const chat_client_lws_settings *s,
                             const chat_allocator *alloc) {
  if (!out)
    return CHAT_ERR_INVAL;
  *out = NULL;
  if (!c || !s || s->version != CHAT_CLIENT_LWS_SETTINGS_V1 || !s->url ||
      !s->token || !s->token[0])
    return CHAT_ERR_INVAL;
  chat_allocator a;
  chat_err e = chat__allocator_init(&a, alloc);
  if (e)
    return e;
  chat_client_lws *r = chat__calloc(&a, 1, sizeof *r);
  if (!r)
    return CHAT_ERR_NOMEM;
  r->a = a;
  r->c = c;
  r->s = *s;
  r->s.url = NULL;
  r->s.token = NULL;
  r->s.ca_file = NULL;
  if (!r->s.max_frame_bytes)
    r->s.max_frame_bytes = DEF_MAX_FRAME;
  if (!r->s.max_response_bytes)
    r->s.max_response_bytes = DEF_MAX_RESPONSE;
  chat__buf_init(&r->rx, &r->a);
  atomic_init(&r->wake_pending, false);
  atomic_init(&r->quit, false);
  e = parse_url(r, s->url);
  char *ca = NULL;
  if (!e) {
    size_t tl = strlen(s->token);
    r->auth = chat__alloc(&r->a, tl + 8);
    if (!r->auth)
      e = CHAT_ERR_NOMEM;
    else
      snprintf(r->auth, tl + 8, "Bearer %s", s->token);
  }
  if (!e && s->ca_file && !(ca = chat__strndup(&r->a, s->ca_file,
                                               strlen(s->ca_file))))
    e = CHAT_ERR_NOMEM;
  if (!e) {
    r->protocols[0].name = "chat-client";
    r->protocols[0].callback = callback;
    r->protocols[0].rx_buffer_size = 4096;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = r->protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_filepath = ca;
    info.fd_limit_per_thread = 64;
    info.user = r;
    /* lws logs through a process-wide setting; keep it to real errors. */
    lws_set_log_level(LLL_ERR, NULL);
    r->ctx = lws_create_context(&info);
    if (!r->ctx)
      e = CHAT_ERR_MODULE;
  }
  chat__free(&r->a, ca);
  if (e) {
    chat_client_lws_free(r);
    return e;
  }
  *out = r;
  pump(r);
  return CHAT_OK;
}

void chat_client_lws_free(chat_client_lws *r) {
  if (!r)
    return;
  if (r->ctx) {
    if (r->armed)
      lws_sul_cancel(&r->sul);
    r->armed = false;
    r->destroying = true;
    lws_context_destroy(r->ctx);
    r->ctx = NULL;
  }
  if (r->ws || r->ws_open) {
    r->ws = NULL;
    chat_client_on_close(r->c, 1001, chat__lws_mono_ms());
  }
  while (r->reqs)
    req_free(r, r->reqs);
  chat__buf_free(&r->rx);
  chat__free(&r->a, r->host);
  chat__free(&r->a, r->ws_path);
  chat__free(&r->a, r->auth);
  chat_allocator a = r->a;
  chat__free(&a, r);
}

chat_err chat_client_lws_set_token(chat_client_lws *r, const char *token) {
  if (!r || !token || !token[0])
    return CHAT_ERR_INVAL;
  size_t tl = strlen(token);
  char *auth = chat__alloc(&r->a, tl + 8);
  if (!auth)
    return CHAT_ERR_NOMEM;
  snprintf(auth, tl + 8, "Bearer %s", token);
  chat__free(&r->a, r->auth);
  r->auth = auth;
  return CHAT_OK;
}

chat_err chat_client_lws_service(chat_client_lws *r) {
  if (!r || !r->ctx)
    return CHAT_ERR_INVAL;
  pump(r);
  return lws_service(r->ctx, 0) < 0 ? CHAT_ERR_MODULE : CHAT_OK;
}

chat_err chat_client_lws_run(chat_client_lws *r) {
  if (!r || !r->ctx)
    return CHAT_ERR_INVAL;
  while (!atomic_load(&r->quit))
    if (chat_client_lws_service(r) != CHAT_OK)
      return CHAT_ERR_MODULE;
  atomic_store(&r->quit, false);
  return CHAT_OK;
}

void chat_client_lws_quit(chat_client_lws *r) {
  if (!r)
    return;
  atomic_store(&r->quit, true);
  if (r->ctx)
    lws_cancel_service(r->ctx);
}

void chat_client_lws_wake(chat_client_lws *r) {
  if (!r)
    return;
  atomic_store(&r->wake_pending, true);
  if (r->ctx)
    lws_cancel_service(r->ctx);
}

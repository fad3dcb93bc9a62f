/* chat_client on libwebsockets (include/chat/client_lws.h).
 *
 * One lws_context without a listening socket and one protocol callback for
 * both kinds of client connection: the WebSocket (wsi r->ws) and the REST
 * requests (each a creq in r->reqs, found again by its wsi). After every
 * event that may have changed what the client wants, pump() looks at
 * chat_client_wants() and acts: connect, ask for a writable callback,
 * close, start requests, and re-arm the one timer at the client's next
 * deadline. As in the server adapter, each writable callback writes one
 * frame and asks for another if more are waiting.
 *
 * Other threads reach the runner through a locked task queue and
 * lws_cancel_service(), the one lws call that is safe from any thread;
 * the tasks run in LWS_CALLBACK_EVENT_WAIT_CANCELLED and at the start of
 * every service call. The same lock guards the context pointer against a
 * stop destroying it under a post or a quit.
 *
 * Whatever the client returns is looked at: a fatal code stops the runner
 * at the end of the service call, which returns it. */
#include <chat/client_lws.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "lws_internal.h"

/* lws built on OpenSSL: a wss:// runner brings its own client SSL_CTX
 * (see chat_client_lws_new()). libwebsockets.h included <openssl/ssl.h>. */
#if defined(CHAT_HAVE_OPENSSL) && defined(LWS_OPENSSL_SUPPORT) &&           \
    !defined(LWS_WITH_MBEDTLS)
#define OWN_SSL_CTX 1
#endif

#define DEF_MAX_FRAME (1u << 20)
#define DEF_MAX_RESPONSE (64u << 20)
/* Room for the Authorization header of a CHAT_CLIENT_TOKEN_MAX token. */
#define HEADER_BUF 16384

typedef struct creq {
  struct creq *next;
  struct lws *wsi;
  uint32_t id;
  char *method;
  char *path;
  char *body;
  size_t body_len;
  char *auth; /* "Bearer <token>" as it was when the request began */
  bool body_sent;
  int status;
  chat__buf resp;
  bool too_big;
} creq;

typedef struct task {
  struct task *next;
  void (*fn)(void *arg, chat_client_lws *r, chat_client *c);
  void *arg;
} task;

struct chat_client_lws {
  chat_allocator a;
  chat_client *c;
  chat_client_lws_settings s;
  char *host;
  char *ws_path;
  int port;
  bool tls;
  struct lws_context *ctx;
#ifdef OWN_SSL_CTX
  SSL_CTX *ssl;
#endif
  struct lws_protocols protocols[2];
  struct lws *ws;
  char *ws_auth;   /* the WebSocket's Authorization value */
  bool ws_told;    /* the client was told of an attempt and not yet of
                    * its end: a stop must close it for the client */
  bool ws_open;    /* established */
  bool ws_closing; /* we asked lws to close it */
  chat__buf rx;
  bool rx_over;
  bool rx_binary;
  uint16_t close_code; /* the peer's, from its close frame */
  creq *reqs;
  lws_sorted_usec_list_t sul;
  bool armed;            /* sul is scheduled ... */
  chat_time_ms armed_at; /* ... for this time */
  bool quiet;            /* tearing down: the callback calls nobody */
  bool in_pump;
  int in_service;        /* service() calls on the stack */
  bool stop_pending;     /* chat_client_lws_stop() from inside service() */
  bool stopped;          /* the stop ran: nothing is called any more */
  chat_err fatal;        /* what stops the runner at the end of service() */
  char errmsg[CHAT_ERRBUF_SIZE];
  atomic_bool quit;

  pthread_mutex_t mu;    /* tasks, closed, and ctx against other threads */
  task *tasks, *tasks_tail;
  bool closed;           /* posts refused */
};

chat_time_ms chat_client_lws_now(void) { return chat__lws_mono_ms(); }

const char *chat_client_lws_errmsg(const chat_client_lws *r) {
  return r ? r->errmsg : "";
}

/* ---- process-wide lws state ---- */

static pthread_once_t lws_once = PTHREAD_ONCE_INIT;
/* lws_create_context() and lws_context_destroy() touch lws globals (and,
 * for TLS contexts, OpenSSL ex-data indexes): one at a time. */
static pthread_mutex_t lws_global = PTHREAD_MUTEX_INITIALIZER;

static void lws_init_once(void) {
  /* lws logs through a process-wide setting; keep it to real errors. */
  lws_set_log_level(LLL_ERR, NULL);
}

/* ---- fatal errors ---- */

/* Remember the first fatal return of the client and stop at the end of
 * this service call. Returns whether rc was fatal. */
static bool check(chat_client_lws *r, chat_err rc, const char *what) {
  if (!chat_err_is_fatal(rc))
    return false;
  if (r->fatal == CHAT_OK) {
    r->fatal = rc;
    snprintf(r->errmsg, sizeof r->errmsg, "%s: %s (%s)", what,
             chat_strerror(rc), chat_client_errmsg(r->c));
  }
  r->quiet = true;
  if (r->ctx)
    lws_cancel_service(r->ctx);
  return true;
}

static void pump(chat_client_lws *r);

static void on_timer(lws_sorted_usec_list_t *sul) {
  chat_client_lws *r = lws_container_of(sul, chat_client_lws, sul);
  r->armed = false;
  if (r->quiet)
    return;
  if (check(r, chat_client_on_timer(r->c, chat__lws_mono_ms()),
            "chat_client_on_timer"))
    return;
  pump(r);
}

static void arm(chat_client_lws *r) {
  if (!r->ctx || r->quiet)
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

/* "Bearer <token>" from the client's token now; NULL when it has none (or
 * out of memory): the request then goes without, and the server's 401
 * tells the client to ask the app. */
static char *auth_value(chat_client_lws *r) {
  const char *t;
  size_t n;
  if (chat_client_token(r->c, &t, &n) != CHAT_OK)
    return NULL;
  char *v = chat__alloc(&r->a, n + 8);
  if (v)
    snprintf(v, n + 8, "Bearer %s", t);
  return v;
}

/* ---- REST ---- */

static void req_free(chat_client_lws *r, creq *q) {
  for (creq **p = &r->reqs; *p; p = &(*p)->next)
    if (*p == q) {
      *p = q->next;
      break;
    }
  chat__free(&r->a, q->method);
  chat__free(&r->a, q->path);
  chat__free(&r->a, q->body);
  chat__free(&r->a, q->auth);
  chat__buf_free(&q->resp);
  chat__free(&r->a, q);
}

static creq *req_of(chat_client_lws *r, struct lws *wsi) {
  for (creq *q = r->reqs; q; q = q->next)
    if (q->wsi == wsi)
      return q;
  return NULL;
}

/* The WebSocket attempt or connection is over: tell the client once. */
static void ws_ended(chat_client_lws *r, int refused_status, uint16_t code) {
  if (!r->ws_told)
    return;
  r->ws_told = false;
  chat_time_ms now = chat__lws_mono_ms();
  if (refused_status)
    check(r, chat_client_on_refused(r->c, refused_status, now),
          "chat_client_on_refused");
  else
    check(r, chat_client_on_close(r->c, code, now), "chat_client_on_close");
}

/* Hand the answer (status 0: none) to the client and forget the request. */
static void req_finish(chat_client_lws *r, creq *q, bool ok) {
  int status = ok && !q->too_big && !q->resp.oom ? q->status : 0;
  uint32_t id = q->id;
  const char *body = status ? q->resp.data : NULL;
  size_t len = status ? q->resp.len : 0;
  q->wsi = NULL;
  chat_err rc = CHAT_OK;
  if (!r->quiet)
    rc = chat_client_on_response(r->c, id, status, body ? body : "", len,
                                 chat__lws_mono_ms());
  req_free(r, q);
  check(r, rc, "chat_client_on_response");
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
  creq *q = chat__calloc(&r->a, 1, sizeof *q);
  if (!q) {
    check(r, chat_client_on_response(r->c, cr->id, 0, NULL, 0,
                                     chat__lws_mono_ms()),
          "chat_client_on_response");
    return;
  }
  q->id = cr->id;
  chat__buf_init(&q->resp, &r->a);
  q->method = chat__strndup(&r->a, cr->method, strlen(cr->method));
  q->path = chat__strndup(&r->a, cr->path, strlen(cr->path));
  q->auth = auth_value(r);
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
    for (creq *p = r->reqs; p; p = p->next)
      if (p == q) {
        req_finish(r, q, false);
        break;
      }
  }
}

/* ---- the WebSocket ---- */

static void ws_connect(chat_client_lws *r) {
  chat_time_ms now = chat__lws_mono_ms();
  if (chat_client_on_connecting(r->c, now) != CHAT_OK)
    return;
  r->ws_told = true;
  struct lws_client_connect_info i;
  connect_info(r, &i, r->ws_path);
  i.protocol = "chat.v1";
  i.pwsi = &r->ws;
  chat__free(&r->a, r->ws_auth);
  r->ws_auth = auth_value(r);
  r->ws_open = false;
  r->ws_closing = false;
  chat__buf_reset(&r->rx);
  r->rx_over = false;
  r->rx_binary = false;
  r->close_code = 0;
  if (!lws_client_connect_via_info(&i) || !r->ws) {
    /* Failed at once (the callback may have reported it already). */
    r->ws = NULL;
    ws_ended(r, 0, 0);
  }
}

static void pump(chat_client_lws *r) {
  if (r->quiet || r->in_pump || !r->ctx)
    return;
  r->in_pump = true;
  for (int round = 0; round < 8 && !r->quiet; round++) {
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
      /* Nothing of ours is open: the close is done. */
      r->ws_told = true;
      ws_ended(r, 0, 0);
      again = true;
    } else if ((w & CHAT_CLIENT_WANT_CLOSE) && r->ws && !r->ws_open &&
               !r->ws_closing) {
      /* Still connecting: drop the attempt. */
      r->ws_closing = true;
      lws_set_timeout(r->ws, PENDING_TIMEOUT_CLOSE_ACK, LWS_TO_KILL_ASYNC);
    }
    if (w & CHAT_CLIENT_WANT_REST) {
      chat_client_request cr = {.version = CHAT_CLIENT_REQUEST_V1};
      while (!r->quiet && chat_client_next_request(r->c, &cr) == CHAT_OK)
        req_start(r, &cr);
      again = true;
    }
    if (!again)
      break;
  }
  r->in_pump = false;
  arm(r);
}

/* ---- posted tasks ---- */

/* Take everything posted so far (in order). */
static task *take_tasks(chat_client_lws *r) {
  pthread_mutex_lock(&r->mu);
  task *t = r->tasks;
  r->tasks = r->tasks_tail = NULL;
  pthread_mutex_unlock(&r->mu);
  return t;
}

/* Put t (a list) back in front of the queue, for the stop to cancel. */
static void requeue(chat_client_lws *r, task *t) {
  task *tail = t;
  while (tail->next)
    tail = tail->next;
  pthread_mutex_lock(&r->mu);
  tail->next = r->tasks;
  if (!r->tasks)
    r->tasks_tail = tail;
  r->tasks = t;
  pthread_mutex_unlock(&r->mu);
}

/* Run the tasks in order; with c NULL ("cancelled") when stopping. A task
 * that stops the runner (or a fatal error) leaves the rest for the stop,
 * which runs them cancelled. */
static void run_tasks(chat_client_lws *r, task *t, bool cancelled) {
  while (t) {
    if (!cancelled && r->quiet) {
      requeue(r, t);
      return;
    }
    task *next = t->next;
    t->fn(t->arg, r, cancelled ? NULL : r->c);
    chat__free(&r->a, t);
    t = next;
  }
}

chat_err chat_client_lws_post(chat_client_lws *r,
                              void (*fn)(void *, chat_client_lws *,
                                         chat_client *),
                              void *arg) {
  if (!r || !fn)
    return CHAT_ERR_INVAL;
  task *t = chat__alloc(&r->a, sizeof *t);
  if (!t)
    return CHAT_ERR_NOMEM;
  t->next = NULL;
  t->fn = fn;
  t->arg = arg;
  pthread_mutex_lock(&r->mu);
  if (r->closed) {
    pthread_mutex_unlock(&r->mu);
    chat__free(&r->a, t);
    return CHAT_ERR_STATE;
  }
  if (r->tasks_tail)
    r->tasks_tail->next = t;
  else
    r->tasks = t;
  r->tasks_tail = t;
  /* Under the lock: a stop destroys ctx only after taking it. */
  if (r->ctx)
    lws_cancel_service(r->ctx);
  pthread_mutex_unlock(&r->mu);
  return CHAT_OK;
}

void chat_client_lws_quit(chat_client_lws *r) {
  if (!r)
    return;
  atomic_store(&r->quit, true);
  pthread_mutex_lock(&r->mu);
  if (r->ctx)
    lws_cancel_service(r->ctx);
  pthread_mutex_unlock(&r->mu);
}

/* ---- the protocol callback ---- */

static int add_header(struct lws *wsi, const char *name, const char *value,
                      void *in, size_t len) {
  unsigned char **p = (unsigned char **)in, *end = (*p) + len;
  return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                     (const unsigned char *)value,
                                     (int)strlen(value), p, end);
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
  if (r->quiet) {
    /* Tearing down, or stopped by a fatal error: the client hears nothing
     * more from lws; the stop reports what is left. */
    if (reason == LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER ||
        reason == LWS_CALLBACK_CLIENT_ESTABLISHED ||
        reason == LWS_CALLBACK_CLIENT_RECEIVE ||
        reason == LWS_CALLBACK_CLIENT_WRITEABLE ||
        reason == LWS_CALLBACK_RECEIVE_CLIENT_HTTP)
      return -1;
    return 0;
  }
  chat_time_ms now = chat__lws_mono_ms();
  bool is_ws = wsi == r->ws;
  switch (reason) {
  case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
    creq *q = is_ws ? NULL : req_of(r, wsi);
    const char *auth = is_ws ? r->ws_auth : q ? q->auth : NULL;
    if (auth && add_header(wsi, "authorization:", auth, in, len))
      return -1;
    if (q && q->body) {
      unsigned char **p = (unsigned char **)in, *end = (*p) + len;
      if (add_header(wsi, "content-type:", "application/json", in, len) ||
          lws_add_http_header_content_length(wsi, q->body_len, p, end))
        return -1;
      lws_client_http_body_pending(wsi, 1);
      lws_callback_on_writable(wsi);
    }
    return 0;
  }

  /* ---- WebSocket ---- */
  case LWS_CALLBACK_CLIENT_ESTABLISHED: {
    if (!is_ws)
      return -1;
    r->ws_open = true;
    chat_err rc = chat_client_on_open(r->c, now);
    if (check(r, rc, "chat_client_on_open"))
      return -1;
    if (rc != CHAT_OK) {
      /* The client gave up on this attempt meanwhile (stopped, say). */
      r->ws_closing = true;
      lws_close_reason(wsi, LWS_CLOSE_STATUS_GOINGAWAY, NULL, 0);
      return -1;
    }
    pump(r);
    return 0;
  }

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
      chat_err rc = CHAT_OK;
      if (!r->rx_over && !r->rx_binary && !r->rx.oom)
        rc = chat_client_on_frame(r->c, r->rx.data ? r->rx.data : "",
                                  r->rx.len, now);
      bool lost = r->rx.oom;
      chat__buf_reset(&r->rx);
      r->rx_over = false;
      r->rx_binary = false;
      if (check(r, rc, "chat_client_on_frame"))
        return -1;
      if (lost) {
        /* A frame we could not hold is a frame lost: reconnect and let
         * the resume fetch it again. */
        r->ws_closing = true;
        lws_close_reason(wsi, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, NULL,
                         0);
        return -1;
      }
      /* CHAT_ERR_STATE: a frame after the client gave the connection up
       * (it asked to close); it comes again after the resume. */
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
        return -1; /* the frames come again after the resume */
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
      uint16_t code = r->close_code ? r->close_code : 1006;
      r->close_code = 0;
      ws_ended(r, 0, code);
      pump(r);
    }
    return 0;

  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    if (is_ws) {
      /* An HTTP answer instead of the upgrade: lws keeps its status until
       * the wsi goes (4.1 fails a 401 with "HS: ws upgrade unauthorized",
       * any other status with "HS: ws upgrade response not 101"). The
       * client must hear of a 401, or it would retry a refused token. */
      unsigned int status = lws_http_client_http_response(wsi);
      static const char unauth[] = "HS: ws upgrade unauthorized";
      if (!status && in && len >= sizeof unauth - 1 &&
          memcmp(in, unauth, sizeof unauth - 1) == 0)
        status = 401;
      r->ws = NULL;
      r->ws_open = false;
      ws_ended(r, status >= 100 && status <= 599 && status != 101
                      ? (int)status
                      : 0,
               0);
      pump(r);
      return 0;
    } else {
      creq *q = req_of(r, wsi);
      if (q) {
        req_finish(r, q, false);
        pump(r);
      }
    }
    return 0;

  /* ---- REST ---- */
  case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP: {
    creq *q = req_of(r, wsi);
    if (q)
      q->status = (int)lws_http_client_http_response(wsi);
    return 0;
  }

  case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE: {
    creq *q = req_of(r, wsi);
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
    creq *q = req_of(r, wsi);
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
    creq *q = req_of(r, wsi);
    if (q) {
      req_finish(r, q, true);
      pump(r);
    }
    return 0;
  }

  case LWS_CALLBACK_CLOSED_CLIENT_HTTP: {
    creq *q = req_of(r, wsi);
    if (q) {
      req_finish(r, q, false);
      pump(r);
    }
    return 0;
  }

  case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
    /* A post, a quit or a stop woke us: run what was posted. */
    run_tasks(r, take_tasks(r), false);
    pump(r);
    return 0;

  default:
    break;
  }
  return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* ---- URL ---- */

static chat_err parse_url(chat_client_lws *r, const char *url,
                          chat_errbuf *err) {
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
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "settings.url: must start with ws://, wss://, "
                            "http:// or https://");
  }
  size_t hl = strcspn(p, ":/");
  if (hl == 0 || hl > 253)
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "settings.url: no host, or one over 253 bytes");
  r->host = chat__strndup(&r->a, p, hl);
  p += hl;
  r->port = r->tls ? 443 : 80;
  if (*p == ':') {
    char *end;
    long port = strtol(p + 1, &end, 10);
    if (end == p + 1 || port <= 0 || port > 65535)
      return chat__errbuf_set(err, CHAT_ERR_INVAL,
                              "settings.url: the port is not 1..65535");
    r->port = (int)port;
    p = end;
  }
  if (*p && *p != '/')
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "settings.url: junk after the port");
  const char *path = *p && strcmp(p, "/") != 0 ? p : "/chat/v1/ws";
  r->ws_path = chat__strndup(&r->a, path, strlen(path));
  if (!r->host || !r->ws_path)
    return chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
  return CHAT_OK;
}

#ifdef OWN_SSL_CTX
/* The client SSL_CTX of a wss:// runner. lws 4.1 would make one itself but
 * could not free it once a second TLS context existed in the process (it
 * finds its bookkeeping through an OpenSSL ex-data index that every
 * context creation replaces), so N runners leaked N-1 of them with their
 * CA stores. A context we provide is ours to free. Verification stays
 * lws's: it checks the verify result (self-signed allowed only when asked)
 * and the host name after the handshake. */
static chat_err make_ssl(chat_client_lws *r, const char *ca_file,
                         chat_errbuf *err) {
  r->ssl = SSL_CTX_new(TLS_client_method());
  if (!r->ssl)
    return chat__errbuf_set(err, CHAT_ERR_MODULE,
                            "TLS: cannot create an SSL context");
  SSL_CTX_set_min_proto_version(r->ssl, TLS1_2_VERSION);
  SSL_CTX_set_options(r->ssl, SSL_OP_NO_COMPRESSION);
  /* lws may retry a partial write with the same data at a new address. */
  SSL_CTX_set_mode(r->ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                               SSL_MODE_RELEASE_BUFFERS);
  if (ca_file) {
    if (SSL_CTX_load_verify_locations(r->ssl, ca_file, NULL) != 1)
      return chat__errbuf_set(err, CHAT_ERR_MODULE,
                              "settings.ca_file: cannot load %s", ca_file);
  } else if (SSL_CTX_set_default_verify_paths(r->ssl) != 1) {
    return chat__errbuf_set(err, CHAT_ERR_MODULE,
                            "TLS: cannot load the system's CA store");
  }
  return CHAT_OK;
}
#endif

/* Destroy the lws context without a word to the client: callbacks fired
 * by the teardown find r->quiet set. */
static void context_down(chat_client_lws *r) {
  r->quiet = true;
  if (r->armed && r->ctx)
    lws_sul_cancel(&r->sul);
  r->armed = false;
  pthread_mutex_lock(&r->mu);
  struct lws_context *ctx = r->ctx;
  r->ctx = NULL;
  pthread_mutex_unlock(&r->mu);
  if (ctx) {
    pthread_mutex_lock(&lws_global);
    lws_context_destroy(ctx);
    pthread_mutex_unlock(&lws_global);
  }
#ifdef OWN_SSL_CTX
  SSL_CTX_free(r->ssl);
  r->ssl = NULL;
#endif
}

chat_err chat_client_lws_new(chat_client_lws **out, chat_client *c,
                             const chat_client_lws_settings *s,
                             const chat_allocator *alloc, chat_errbuf *err) {
  if (!out)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "out: required");
  *out = NULL;
  if (!c)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "c: required");
  if (!s)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "settings: required");
  if (!chat__version_ok(s->version, CHAT_CLIENT_LWS_SETTINGS_V1))
    return chat__version_refused(err, "settings", s->version,
                                 CHAT_CLIENT_LWS_SETTINGS_V1);
  if (!s->url)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "settings.url: required");
  chat_allocator a;
  if (chat__allocator_init(&a, alloc))
    return chat__errbuf_set(err, CHAT_ERR_INVAL,
                            "alloc: alloc, resize and release are all "
                            "required");
  chat_client_lws *r = chat__calloc(&a, 1, sizeof *r);
  if (!r)
    return chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
  r->a = a;
  r->c = c;
  r->s = *s;
  r->s.url = NULL;
  r->s.ca_file = NULL;
  if (!r->s.max_frame_bytes)
    r->s.max_frame_bytes = DEF_MAX_FRAME;
  if (!r->s.max_response_bytes)
    r->s.max_response_bytes = DEF_MAX_RESPONSE;
  chat__buf_init(&r->rx, &r->a);
  atomic_init(&r->quit, false);
  pthread_mutex_init(&r->mu, NULL);
  pthread_once(&lws_once, lws_init_once);
  chat_err e = parse_url(r, s->url, err);
#ifdef OWN_SSL_CTX
  if (!e && r->tls)
    e = make_ssl(r, s->ca_file, err);
#else
  char *ca = NULL;
  if (!e && r->tls && s->ca_file &&
      !(ca = chat__strndup(&r->a, s->ca_file, strlen(s->ca_file))))
    e = chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
#endif
  if (!e) {
    r->protocols[0].name = "chat-client";
    r->protocols[0].callback = callback;
    r->protocols[0].rx_buffer_size = 4096;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = r->protocols;
    info.fd_limit_per_thread = 64;
    info.pt_serv_buf_size = HEADER_BUF;
    info.user = r;
    /* A plain ws:// runner leaves TLS alone: without this option lws
     * creates no SSL context and loads no CA store. */
    if (r->tls) {
      info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
#ifdef OWN_SSL_CTX
      info.provided_client_ssl_ctx = r->ssl;
#else
      info.client_ssl_ca_filepath = ca;
#endif
    }
    pthread_mutex_lock(&lws_global);
    struct lws_context *ctx = lws_create_context(&info);
    pthread_mutex_unlock(&lws_global);
    pthread_mutex_lock(&r->mu);
    r->ctx = ctx;
    pthread_mutex_unlock(&r->mu);
    if (!ctx)
      e = chat__errbuf_set(err, CHAT_ERR_MODULE,
                           "libwebsockets could not create its context");
  }
#ifndef OWN_SSL_CTX
  chat__free(&r->a, ca);
#endif
  if (e) {
    chat_client_lws_free(r);
    return e;
  }
  *out = r;
  return CHAT_OK;
}

/* The stop itself (service thread, outside lws_service()). */
static void do_stop(chat_client_lws *r) {
  if (r->stopped)
    return;
  r->stopped = true;
  r->stop_pending = false;
  pthread_mutex_lock(&r->mu);
  r->closed = true; /* no more posts */
  pthread_mutex_unlock(&r->mu);
  context_down(r);
  r->ws = NULL;
  r->ws_open = false;
  /* Tell the client what went with the context, on this thread, now:
   * after the stop nothing calls into the app. A client that failed
   * fatally may only be freed: it hears nothing. */
  bool tell = r->fatal == CHAT_OK || r->fatal == CHAT_ERR_NOMEM;
  chat_time_ms now = chat__lws_mono_ms();
  if (r->ws_told && tell)
    (void)chat_client_on_close(r->c, 1001, now);
  r->ws_told = false;
  while (r->reqs) {
    creq *q = r->reqs;
    uint32_t id = q->id;
    req_free(r, q);
    if (tell)
      (void)chat_client_on_response(r->c, id, 0, NULL, 0, now);
  }
  run_tasks(r, take_tasks(r), true);
}

void chat_client_lws_stop(chat_client_lws *r) {
  if (!r || r->stopped)
    return;
  if (r->in_service) {
    /* Inside lws_service(): the context cannot be destroyed from its own
     * callback. Go quiet now and finish when service() returns. */
    r->stop_pending = true;
    r->quiet = true;
    if (r->ctx)
      lws_cancel_service(r->ctx);
    return;
  }
  do_stop(r);
}

void chat_client_lws_free(chat_client_lws *r) {
  if (!r)
    return;
  if (!r->stopped) {
    /* No stop: tear down without telling anyone. */
    context_down(r);
    pthread_mutex_lock(&r->mu);
    r->closed = true;
    pthread_mutex_unlock(&r->mu);
  }
  for (task *t = take_tasks(r); t;) {
    task *n = t->next;
    chat__free(&r->a, t);
    t = n;
  }
  while (r->reqs)
    req_free(r, r->reqs);
  chat__buf_free(&r->rx);
  chat__free(&r->a, r->host);
  chat__free(&r->a, r->ws_path);
  chat__free(&r->a, r->ws_auth);
  pthread_mutex_destroy(&r->mu);
  chat_allocator a = r->a;
  chat__free(&a, r);
}

chat_err chat_client_lws_service(chat_client_lws *r) {
  if (!r)
    return CHAT_ERR_INVAL;
  if (r->stopped || !r->ctx)
    return CHAT_ERR_STATE;
  r->in_service++;
  run_tasks(r, take_tasks(r), false);
  pump(r);
  int n = r->quiet ? 0 : lws_service(r->ctx, 0);
  r->in_service--;
  if (n < 0 && r->fatal == CHAT_OK) {
    r->fatal = CHAT_ERR_MODULE;
    snprintf(r->errmsg, sizeof r->errmsg, "lws_service failed");
  }
  if (r->fatal != CHAT_OK) {
    chat_err e = r->fatal;
    do_stop(r);
    return e;
  }
  if (r->stop_pending && !r->in_service)
    do_stop(r);
  return CHAT_OK;
}

chat_err chat_client_lws_run(chat_client_lws *r) {
  if (!r)
    return CHAT_ERR_INVAL;
  if (r->stopped)
    return CHAT_ERR_STATE;
  while (!atomic_load(&r->quit) && !r->stopped) {
    chat_err e = chat_client_lws_service(r);
    if (e != CHAT_OK)
      return r->stopped && e == CHAT_ERR_STATE ? CHAT_OK : e;
  }
  atomic_store(&r->quit, false);
  return CHAT_OK;
}

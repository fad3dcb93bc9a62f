/* REST as data: the client queues requests (method, path, body), the host
 * performs them and hands back status and body. Used to close resume gaps
 * (`resume_failed`, or a history that never completed), to fetch the
 * conversation list, to create conversations and to page older history.
 *
 * Answers are parsed with the strict JSON reader, and each message or
 * conversation object is rewrapped as a `history` or `conversation` frame
 * and run through the codec, so REST data passes exactly the checks a
 * frame would. */
#include "client/client_internal.h"

#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/arena.h"
#include "common/json.h"

#define APP_MAX_ATTEMPTS 5

/* Keep n_ready and n_waiting true whenever a request changes state, so
 * chat_client_wants() and the deadline need no walk. */
static bool is_ready(const chat__req *r) { return r->ready && !r->in_flight; }
static bool is_waiting(const chat__req *r) {
  return !r->ready && !r->in_flight;
}

static void req_count(chat_client *c, const chat__req *r, int d) {
  if (is_ready(r))
    c->n_ready += (uint32_t)d;
  if (is_waiting(r))
    c->n_waiting += (uint32_t)d;
}

static void req_flags(chat_client *c, chat__req *r, bool ready,
                      bool in_flight) {
  req_count(c, r, -1);
  r->ready = ready;
  r->in_flight = in_flight;
  req_count(c, r, +1);
}

static chat__req *req_new(chat_client *c, req_kind kind, const char *conv) {
  chat__req *r = chat__calloc(&c->a, 1, sizeof *r);
  if (!r)
    return NULL;
  if (conv && !(r->conv = chat__strndup(&c->a, conv, strlen(conv)))) {
    chat__free(&c->a, r);
    return NULL;
  }
  r->kind = kind;
  r->ready = true;
  r->id = c->next_req_id++;
  if (c->next_req_id == 0)
    c->next_req_id = 1;
  return r;
}

static void req_free(chat_client *c, chat__req *r) {
  chat__free(&c->a, r->conv);
  chat__free(&c->a, r->method);
  chat__free(&c->a, r->path);
  chat__free(&c->a, r->body);
  chat__free(&c->a, r);
}

/* Append r (a gap is also indexed by its conversation; the caller made
 * sure the index has room). */
static void req_link(chat_client *c, chat__req *r) {
  r->prev = c->reqs_tail;
  r->next = NULL;
  if (c->reqs_tail)
    c->reqs_tail->next = r;
  else
    c->reqs = r;
  c->reqs_tail = r;
  req_count(c, r, +1);
  chat__client_wants_changed(c);
}

static void req_unlink(chat_client *c, chat__req *r) {
  req_count(c, r, -1);
  if (r->prev)
    r->prev->next = r->next;
  else
    c->reqs = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    c->reqs_tail = r->prev;
  r->prev = r->next = NULL;
  if (r->kind == REQ_GAP)
    chat__map_del(&c->gaps, r->conv, strlen(r->conv), NULL);
}

static chat_err req_set(chat_client *c, chat__req *r, const char *method,
                        const char *path) {
  char *m = chat__strndup(&c->a, method, strlen(method));
  char *p = chat__strndup(&c->a, path, strlen(path));
  if (!m || !p) {
    chat__free(&c->a, m);
    chat__free(&c->a, p);
    return CHAT_ERR_NOMEM;
  }
  chat__free(&c->a, r->method);
  chat__free(&c->a, r->path);
  r->method = m;
  r->path = p;
  return CHAT_OK;
}

static chat_err gap_path(chat_client *c, chat__req *r) {
  char path[256];
  snprintf(path, sizeof path,
           "/api/v1/conversations/%s/messages?after=%llu&limit=%u", r->conv,
           (unsigned long long)r->cursor, (unsigned)c->s.rest_page_limit);
  return req_set(c, r, "GET", path);
}

bool chat__creq_gap_is_open(const chat_client *c, const char *conv) {
  return chat__map_get(&c->gaps, conv, strlen(conv)) != NULL;
}

uint32_t chat__creq_gaps(const chat_client *c) {
  return (uint32_t)chat__map_len(&c->gaps);
}

chat_err chat__creq_gap_open(chat_client *c, const char *conv,
                             chat_time_ms now) {
  (void)now;
  if (chat__creq_gap_is_open(c, conv))
    return CHAT_OK;
  chat__req *r = req_new(c, REQ_GAP, conv);
  if (!r)
    return CHAT_ERR_NOMEM;
  chat_err e = c->st->get_last_seen(c->st->self, conv, &r->cursor);
  if (!e)
    e = gap_path(c, r);
  if (e) {
    req_free(c, r);
    return e == CHAT_ERR_NOMEM ? e : CHAT_ERR_MODULE;
  }
  if (chat__map_put(&c->gaps, r->conv, strlen(r->conv), r, NULL)) {
    req_free(c, r);
    return CHAT_ERR_NOMEM;
  }
  req_link(c, r);
  return CHAT_OK;
}

bool chat__creq_ready(const chat_client *c) {
  return c->n_ready > 0;
}

chat_time_ms chat__creq_deadline(const chat_client *c) {
  chat_time_ms d = CHAT_TIME_NEVER;
  if (c->n_waiting == 0)
    return d;
  for (const chat__req *r = c->reqs; r; r = r->next)
    if (is_waiting(r) && r->not_before < d)
      d = r->not_before;
  return d;
}

void chat__creq_timer(chat_client *c, chat_time_ms now) {
  if (c->n_waiting == 0)
    return;
  bool any = false;
  for (chat__req *r = c->reqs; r; r = r->next)
    if (is_waiting(r) && r->not_before <= now) {
      req_flags(c, r, true, false);
      any = true;
    }
  if (any)
    chat__client_wants_changed(c);
}

void chat__creq_free_all(chat_client *c) {
  while (c->reqs) {
    chat__req *r = c->reqs;
    req_unlink(c, r);
    req_free(c, r);
  }
}

chat_err chat_client_next_request(chat_client *c, chat_client_request *out) {
  if (!c || !out)
    return CHAT_ERR_INVAL;
  if (c->n_ready == 0)
    return CHAT_ERR_AGAIN;
  for (chat__req *r = c->reqs; r; r = r->next)
    if (is_ready(r)) {
      req_flags(c, r, true, true);
      out->id = r->id;
      out->method = r->method;
      out->path = r->path;
      out->body = r->body;
      out->body_len = r->body_len;
      return CHAT_OK;
    }
  return CHAT_ERR_AGAIN;
}

/* ------------------------------------------------------------------------
 * App requests */

static chat_err app_req(chat_client *c, chat__req *r, uint32_t *id) {
  if (id)
    *id = r->id;
  req_link(c, r);
  return CHAT_OK;
}

chat_err chat__creq_sync(chat_client *c) {
  for (const chat__req *q = c->reqs; q; q = q->next)
    if (q->sync)
      return CHAT_OK; /* one walk at a time (requests are few) */
  chat__req *r = req_new(c, REQ_CONVS, NULL);
  if (!r)
    return CHAT_ERR_NOMEM;
  if (req_set(c, r, "GET", "/api/v1/conversations?limit=100")) {
    req_free(c, r);
    return CHAT_ERR_NOMEM;
  }
  r->sync = true;
  req_link(c, r);
  return CHAT_OK;
}

chat_err chat_client_fetch_conversations(chat_client *c, uint32_t *id,
                                         chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  chat__req *r = req_new(c, REQ_CONVS, NULL);
  if (!r)
    return CHAT_ERR_NOMEM;
  if (req_set(c, r, "GET", "/api/v1/conversations?limit=100")) {
    req_free(c, r);
    return CHAT_ERR_NOMEM;
  }
  return app_req(c, r, id);
}

chat_err chat_client_create_conversation(chat_client *c, const char *name,
                                         const char *const *members,
                                         size_t n, uint32_t *id,
                                         chat_time_ms now) {
  (void)now;
  if (!c || (n && !members) || (!name && n != 1))
    return CHAT_ERR_INVAL;
  for (size_t i = 0; i < n; i++)
    if (!members[i] || !chat_id_valid(members[i], strlen(members[i])))
      return CHAT_ERR_INVAL;
  chat__buf b;
  chat__buf_init(&b, &c->a);
  chat__jw w;
  chat__jw_init(&w, &b);
  chat__jw_obj_begin(&w);
  chat__jw_key(&w, "type");
  chat__jw_str(&w, name ? "group" : "direct", name ? 5 : 6);
  if (name) {
    chat__jw_key(&w, "name");
    chat__jw_str(&w, name, strlen(name));
  }
  chat__jw_key(&w, "members");
  chat__jw_arr_begin(&w);
  for (size_t i = 0; i < n; i++)
    chat__jw_str(&w, members[i], strlen(members[i]));
  chat__jw_arr_end(&w);
  chat__jw_obj_end(&w);
  chat__req *r = b.oom ? NULL : req_new(c, REQ_CREATE, NULL);
  if (!r || req_set(c, r, "POST", "/api/v1/conversations") ||
      !(r->body = chat__strndup(&c->a, b.data, b.len))) {
    if (r)
      req_free(c, r);
    chat__buf_free(&b);
    return CHAT_ERR_NOMEM;
  }
  r->body_len = b.len;
  chat__buf_free(&b);
  return app_req(c, r, id);
}

chat_err chat_client_load_older(chat_client *c, const char *conv,
                                uint64_t before, uint32_t limit, uint32_t *id,
                                chat_time_ms now) {
  (void)now;
  if (!c || !conv || !chat_id_valid(conv, strlen(conv)))
    return CHAT_ERR_INVAL;
  if (limit == 0 || limit > 200)
    limit = 50;
  char path[256];
  if (before)
    snprintf(path, sizeof path,
             "/api/v1/conversations/%s/messages?before=%llu&limit=%u", conv,
             (unsigned long long)before, (unsigned)limit);
  else
    snprintf(path, sizeof path, "/api/v1/conversations/%s/messages?limit=%u",
             conv, (unsigned)limit);
  chat__req *r = req_new(c, REQ_OLDER, conv);
  if (!r)
    return CHAT_ERR_NOMEM;
  if (req_set(c, r, "GET", path)) {
    req_free(c, r);
    return CHAT_ERR_NOMEM;
  }
  return app_req(c, r, id);
}

/* ------------------------------------------------------------------------
 * Answers */

/* Decode the raw JSON text of a message array as a history frame of conv. */
static chat_err decode_messages(chat_client *c, const char *conv,
                                const chat__json *arr,
                                const chat_history **out) {
  chat__buf *b = &c->scratch;
  chat__buf_reset(b);
  static const char pre[] = "{\"type\":\"history\",\"conversation_id\":\"";
  chat__buf_append(b, pre, sizeof pre - 1);
  chat__buf_append(b, conv, strlen(conv));
  chat__buf_append(b, "\",\"messages\":", 13);
  chat__buf_append(b, arr->raw, arr->raw_len);
  static const char post[] = ",\"complete\":true}";
  chat__buf_append(b, post, sizeof post - 1);
  if (b->oom)
    return CHAT_ERR_NOMEM;
  const chat_frame *f;
  chat_err e = chat_codec_decode(c->rdec, CHAT_DIR_TO_CLIENT, b->data, b->len,
                                 &f, NULL);
  if (e)
    return e;
  *out = f->history;
  return CHAT_OK;
}

static chat_err decode_conversation(chat_client *c, const char *raw,
                                    size_t len,
                                    const chat_conversation **out) {
  chat__buf *b = &c->scratch;
  chat__buf_reset(b);
  static const char pre[] = "{\"type\":\"conversation\",\"conversation\":";
  chat__buf_append(b, pre, sizeof pre - 1);
  chat__buf_append(b, raw, len);
  chat__buf_putc(b, '}');
  if (b->oom)
    return CHAT_ERR_NOMEM;
  const chat_frame *f;
  chat_err e = chat_codec_decode(c->rdec, CHAT_DIR_TO_CLIENT, b->data, b->len,
                                 &f, NULL);
  if (e)
    return e;
  *out = f->conversation;
  return CHAT_OK;
}

static void finish(chat_client *c, chat__req *r, chat_err result) {
  req_unlink(c, r);
  if (r->kind == REQ_GAP || r->sync)
    chat__client_progress(c, r->conv);
  else if (c->cb.on_request_done)
    c->cb.on_request_done(c, r->id, result, c->ud);
  req_free(c, r);
}

/* 200 for a gap page. Returns true when the gap is closed. */
static chat_err gap_page(chat_client *c, chat__req *r,
                         const chat__json *root, chat_time_ms now,
                         bool *more) {
  const chat__json *msgs = chat__json_get(root, "messages");
  const chat__json *hm = chat__json_get(root, "has_more");
  if (!msgs || msgs->kind != CHAT__JSON_ARRAY)
    return CHAT_ERR_MISSING_FIELD;
  const chat_history *h;
  chat_err e = decode_messages(c, r->conv, msgs, &h);
  if (e)
    return e;
  uint64_t max_id = 0;
  for (size_t i = 0; i < h->n_messages; i++) {
    const chat_message *m = &h->messages[i];
    if (strcmp(m->conversation_id, r->conv) != 0 || m->message_id <= r->cursor)
      continue;
    chat__client_store_message(c, m, CHAT_ORIGIN_REST, true, &max_id);
  }
  if (max_id > r->cursor)
    r->cursor = max_id;
  chat__client_auto_delivered(c, r->conv, max_id, now);
  *more = hm && hm->kind == CHAT__JSON_TRUE && max_id > 0;
  return CHAT_OK;
}

static chat_err convs_page(chat_client *c, chat__req *r,
                           const chat__json *root, bool *more) {
  const chat__json *list = chat__json_get(root, "conversations");
  const chat__json *next = chat__json_get(root, "next_cursor");
  if (!list || list->kind != CHAT__JSON_ARRAY)
    return CHAT_ERR_MISSING_FIELD;
  for (const chat__json *it = list->child; it; it = it->next) {
    const chat_conversation *conv;
    chat_err e = decode_conversation(c, it->raw, it->raw_len, &conv);
    if (e)
      return e;
    chat__client_put_conversation(c, conv);
    if (r->sync && conv->last_message) {
      uint64_t seen = 0;
      if (c->st->get_last_seen(c->st->self, conv->conversation_id, &seen) ||
          conv->last_message->message_id > seen) {
        chat_err ge = chat__creq_gap_open(c, conv->conversation_id, 0);
        if (ge)
          return ge;
      }
    }
  }
  *more = false;
  if (next && next->kind == CHAT__JSON_STRING && next->len > 0 &&
      next->len < 128) {
    /* Percent-encode the opaque cursor for the query string. */
    char path[512];
    int k = snprintf(path, sizeof path, "/api/v1/conversations?limit=100"
                                        "&cursor=");
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < next->len && k < (int)sizeof path - 4; i++) {
      unsigned char ch = (unsigned char)next->str[i];
      if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.' ||
          ch == '~') {
        path[k++] = (char)ch;
      } else {
        path[k++] = '%';
        path[k++] = hex[ch >> 4];
        path[k++] = hex[ch & 15];
      }
    }
    path[k] = 0;
    chat_err e = req_set(c, r, "GET", path);
    if (e)
      return e;
    *more = true;
  }
  return CHAT_OK;
}

static chat_err older_page(chat_client *c, chat__req *r,
                           const chat__json *root) {
  const chat__json *msgs = chat__json_get(root, "messages");
  if (!msgs || msgs->kind != CHAT__JSON_ARRAY)
    return CHAT_ERR_MISSING_FIELD;
  const chat_history *h;
  chat_err e = decode_messages(c, r->conv, msgs, &h);
  if (e)
    return e;
  /* Newest first on the wire; the app gets them oldest first. */
  for (size_t i = h->n_messages; i-- > 0;)
    if (strcmp(h->messages[i].conversation_id, r->conv) == 0)
      chat__client_store_message(c, &h->messages[i], CHAT_ORIGIN_OLDER,
                                 false, NULL);
  return CHAT_OK;
}

chat_err chat_client_on_response(chat_client *c, uint32_t id, int status,
                                 const char *body, size_t len,
                                 chat_time_ms now) {
  if (!c || (!body && len))
    return CHAT_ERR_INVAL;
  chat__req *r = c->reqs;
  while (r && !(r->id == id && r->in_flight))
    r = r->next;
  if (!r)
    return CHAT_ERR_NOT_FOUND;
  /* r stays in flight until its answer is handled: the callbacks below
   * may ask for the next request, and must not be handed this one. */
  const char *conv = r->conv;

  if (status == 0 || status == 429 || status >= 500) {
    bool give_up = r->kind != REQ_GAP && r->attempt + 1 >= APP_MAX_ATTEMPTS;
    chat__client_error(c, CHAT_ERR_MODULE, conv, "REST request failed",
                       status, !give_up);
    if (give_up) {
      finish(c, r, CHAT_ERR_MODULE);
      return CHAT_OK;
    }
    uint32_t delay = 0;
    if (chat_backoff_next(&c->s.backoff, r->attempt, &c->s.env, &delay))
      delay = c->s.backoff.cap_ms;
    r->attempt++;
    r->not_before = now + delay;
    req_flags(c, r, false, false);
    return CHAT_OK;
  }
  if (status < 200 || status > 299) {
    chat__client_error(c, CHAT_ERR_MODULE, conv,
                       status == 403   ? "REST: not a member"
                       : status == 404 ? "REST: no such conversation"
                                       : "REST request refused",
                       status, false);
    finish(c, r, status == 404 || status == 403 ? CHAT_ERR_NOT_FOUND
                                                : CHAT_ERR_MODULE);
    return CHAT_OK;
  }

  chat__arena ar;
  chat__arena_init(&ar, &c->a);
  chat__json *root = NULL;
  chat_err e = chat__json_parse(&ar, body ? body : "", len, 16, &root, NULL);
  if (!e && root->kind != CHAT__JSON_OBJECT)
    e = CHAT_ERR_NOT_OBJECT;
  bool more = false;
  if (!e) {
    switch (r->kind) {
    case REQ_GAP:
      e = gap_page(c, r, root, now, &more);
      if (!e && more)
        e = gap_path(c, r);
      break;
    case REQ_CONVS:
      e = convs_page(c, r, root, &more);
      break;
    case REQ_CREATE: {
      const chat_conversation *cv;
      e = decode_conversation(c, root->raw, root->raw_len, &cv);
      if (!e)
        chat__client_put_conversation(c, cv);
      break;
    }
    case REQ_OLDER:
      e = older_page(c, r, root);
      break;
    }
  }
  chat__arena_free(&ar);
  if (e) {
    chat__client_error(c, e, conv, "malformed REST answer", status, false);
    finish(c, r, e);
    return e == CHAT_ERR_NOMEM ? e : CHAT_OK;
  }
  if (more) {
    r->attempt = 0;
    req_flags(c, r, true, false);
    if (r->kind == REQ_GAP)
      chat__client_progress(c, r->conv);
    chat__client_wants_changed(c);
    return CHAT_OK;
  }
  finish(c, r, CHAT_OK);
  return CHAT_OK;
}

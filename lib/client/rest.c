/* REST as data: the client queues requests (method, path, body), the host
 * performs them and hands back status and body. Used to close resume gaps
 * (`resume_failed`, or a history that never completed), to fetch the
 * conversation list and single conversations, to create conversations, to
 * page older history, and for the member and admin calls of PROTOCOL.md
 * section 8. Answers are decoded by rest_decode.c. */
#include "client/client_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/utf8.h"

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

/* Where each chat_client_request version ends: the library writes no
 * byte past it (R3 of the 1.0 API: structs the library fills carry the
 * caller's version). */
static const size_t request_end[] = {
    [CHAT_CLIENT_REQUEST_V1] = offsetof(chat_client_request, body_len) +
                               sizeof(size_t),
};

chat_err chat_client_next_request(chat_client *c, chat_client_request *out) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (!out)
    return chat__client_fail(c, CHAT_ERR_INVAL, "out: required");
  if (!chat__version_ok(out->version, CHAT_CLIENT_REQUEST_V1)) {
    chat_errbuf eb;
    chat__version_refused(&eb, "out", out->version, CHAT_CLIENT_REQUEST_V1);
    return chat__client_fail(c, CHAT_ERR_INVAL, "%s", eb.msg);
  }
  /* Nothing goes out with a token the server refused. */
  if (c->n_ready == 0 || c->auth_wait)
    return CHAT_ERR_AGAIN;
  for (chat__req *r = c->reqs; r; r = r->next)
    if (is_ready(r)) {
      req_flags(c, r, true, true);
      r->token_gen = c->token_gen;
      chat_client_request full = {.version = out->version,
                                  .id = r->id,
                                  .method = r->method,
                                  .path = r->path,
                                  .body = r->body,
                                  .body_len = r->body_len};
      memcpy(out, &full, request_end[out->version]);
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

/* A GET of `path` for the app, or NULL when out of memory. */
static chat__req *get_req(chat_client *c, req_kind kind, const char *conv,
                          const char *path) {
  chat__req *r = req_new(c, kind, conv);
  if (r && req_set(c, r, "GET", path)) {
    req_free(c, r);
    r = NULL;
  }
  return r;
}

chat_err chat__creq_sync(chat_client *c) {
  for (const chat__req *q = c->reqs; q; q = q->next)
    if (q->sync)
      return CHAT_OK; /* one walk at a time (requests are few) */
  chat__req *r = get_req(c, REQ_CONVS, NULL,
                         "/api/v1/conversations?limit=100");
  if (!r)
    return CHAT_ERR_NOMEM;
  r->sync = true;
  req_link(c, r);
  return CHAT_OK;
}

chat_err chat_client_fetch_conversations(chat_client *c, uint32_t *id,
                                         chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  chat__req *r = get_req(c, REQ_CONVS, NULL,
                         "/api/v1/conversations?limit=100");
  if (!r)
    return chat__client_fail(c, CHAT_ERR_NOMEM, "out of memory");
  return app_req(c, r, id);
}

/* A POST of the JSON that w wrote into b, for the app. */
static chat_err post_req(chat_client *c, req_kind kind, const char *path,
                         chat__buf *b, uint32_t *id) {
  chat__req *r = b->oom ? NULL : req_new(c, kind, NULL);
  if (!r || req_set(c, r, "POST", path) ||
      !(r->body = chat__strndup(&c->a, b->data, b->len))) {
    if (r)
      req_free(c, r);
    chat__buf_free(b);
    return chat__client_fail(c, CHAT_ERR_NOMEM, "out of memory");
  }
  r->body_len = b->len;
  chat__buf_free(b);
  return app_req(c, r, id);
}

chat_err chat_client_create_conversation(chat_client *c, const char *name,
                                         const char *const *members,
                                         size_t n, uint32_t *id,
                                         chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  if (n && !members)
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "members: NULL with n_members %zu", n);
  if (!name && n != 1)
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "n_members: a direct conversation (name NULL) "
                             "has exactly one other member, not %zu", n);
  if (name && (strlen(name) > CHAT__CLIENT_MAX_NAME ||
               !chat__utf8_valid(name, strlen(name))))
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "name: not UTF-8 of at most %d bytes",
                             CHAT__CLIENT_MAX_NAME);
  for (size_t i = 0; i < n; i++) {
    char what[32];
    snprintf(what, sizeof what, "members[%zu]", i);
    chat_err e = chat__client_check_id(c, what, members[i]);
    if (e)
      return e;
  }
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
  return post_req(c, REQ_CREATE, "/api/v1/conversations", &b, id);
}

chat_err chat_client_load_older(chat_client *c, const char *conv,
                                uint64_t before, uint32_t limit, uint32_t *id,
                                chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (e)
    return e;
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
  chat__req *r = get_req(c, REQ_OLDER, conv, path);
  if (!r)
    return chat__client_fail(c, CHAT_ERR_NOMEM, "out of memory");
  return app_req(c, r, id);
}

/* ---- one conversation, members and admins (section 8) ---- */

static chat_err conv_path(chat_client *c, chat__req *r) {
  char path[128];
  snprintf(path, sizeof path, "/api/v1/conversations/%s", r->conv);
  return req_set(c, r, "GET", path);
}

chat_err chat__creq_conv_refresh(chat_client *c, const char *conv) {
  for (const chat__req *q = c->reqs; q; q = q->next)
    if (q->kind == REQ_CONV && q->internal && strcmp(q->conv, conv) == 0)
      return CHAT_OK; /* one is on its way already */
  chat__req *r = req_new(c, REQ_CONV, conv);
  if (!r || conv_path(c, r)) {
    if (r)
      req_free(c, r);
    return CHAT_ERR_NOMEM;
  }
  r->internal = true;
  req_link(c, r);
  return CHAT_OK;
}

chat_err chat_client_fetch_conversation(chat_client *c, const char *conv,
                                        uint32_t *id, chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (e)
    return e;
  chat__req *r = req_new(c, REQ_CONV, conv);
  if (!r || conv_path(c, r)) {
    if (r)
      req_free(c, r);
    return chat__client_fail(c, CHAT_ERR_NOMEM, "out of memory");
  }
  return app_req(c, r, id);
}

/* A member or admin request: method on path (with the JSON body
 * {"user_id": user} for a POST). */
static chat_err member_req(chat_client *c, req_kind kind, const char *conv,
                           const char *method, const char *path,
                           const char *user, uint32_t *id) {
  chat__req *r = req_new(c, kind, conv);
  chat_err e = r ? req_set(c, r, method, path) : CHAT_ERR_NOMEM;
  if (!e && strcmp(method, "POST") == 0) {
    chat__buf b;
    chat__buf_init(&b, &c->a);
    chat__jw w;
    chat__jw_init(&w, &b);
    chat__jw_obj_begin(&w);
    chat__jw_key(&w, "user_id");
    chat__jw_str(&w, user, strlen(user));
    chat__jw_obj_end(&w);
    if (b.oom || !(r->body = chat__strndup(&c->a, b.data, b.len)))
      e = CHAT_ERR_NOMEM;
    else
      r->body_len = b.len;
    chat__buf_free(&b);
  }
  if (e) {
    if (r)
      req_free(c, r);
    return chat__client_fail(c, CHAT_ERR_NOMEM, "out of memory");
  }
  return app_req(c, r, id);
}

static chat_err check_pair(chat_client *c, const char *conv,
                           const char *user) {
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  return e ? e : chat__client_check_id(c, "user_id", user);
}

chat_err chat_client_add_admin(chat_client *c, const char *conv,
                               const char *user, uint32_t *id,
                               chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = check_pair(c, conv, user);
  if (e)
    return e;
  char path[128];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/admins", conv);
  return member_req(c, REQ_ADMIN, conv, "POST", path, user, id);
}

chat_err chat_client_remove_admin(chat_client *c, const char *conv,
                                  const char *user, uint32_t *id,
                                  chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = check_pair(c, conv, user);
  if (e)
    return e;
  char path[192];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/admins/%s", conv,
           user);
  return member_req(c, REQ_ADMIN, conv, "DELETE", path, user, id);
}

chat_err chat_client_remove_member(chat_client *c, const char *conv,
                                   const char *user, uint32_t *id,
                                   chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = check_pair(c, conv, user);
  if (e)
    return e;
  bool self = c->user_id && strcmp(c->user_id, user) == 0;
  char path[192];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/members/%s", conv,
           user);
  return member_req(c, self ? REQ_LEAVE : REQ_REMOVE, conv, "DELETE", path,
                    user, id);
}

chat_err chat_client_leave(chat_client *c, const char *conv, uint32_t *id,
                           chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (e)
    return e;
  if (!c->user_id)
    return chat__client_fail(c, CHAT_ERR_STATE,
                             "leave: the user id is not known before the "
                             "server's first hello");
  return chat_client_remove_member(c, conv, c->user_id, id, now);
}

static bool platform_ok(const char *p) {
  return strcmp(p, "apns") == 0 || strcmp(p, "fcm") == 0 ||
         strcmp(p, "webpush") == 0;
}

/* The server's limit on push tokens. */
#define MAX_PUSH_TOKEN 4096

chat_err chat_client_register_device(chat_client *c, const char *platform,
                                     const char *push_token, uint32_t *id,
                                     chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  if (!platform || !platform_ok(platform))
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "platform: must be \"apns\", \"fcm\" or "
                             "\"webpush\"");
  size_t n = push_token ? strlen(push_token) : 0;
  if (n == 0 || n > MAX_PUSH_TOKEN || !chat__utf8_valid(push_token, n))
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "push_token: must be UTF-8 of 1..%d bytes",
                             MAX_PUSH_TOKEN);
  chat__buf b;
  chat__buf_init(&b, &c->a);
  chat__jw w;
  chat__jw_init(&w, &b);
  chat__jw_obj_begin(&w);
  chat__jw_key(&w, "platform");
  chat__jw_str(&w, platform, strlen(platform));
  chat__jw_key(&w, "push_token");
  chat__jw_str(&w, push_token, n);
  chat__jw_obj_end(&w);
  return post_req(c, REQ_DEVICE, "/api/v1/devices", &b, id);
}

/* ------------------------------------------------------------------------
 * Answers */

static void finish(chat_client *c, chat__req *r, chat_err result) {
  req_unlink(c, r);
  if (r->kind == REQ_GAP || r->sync)
    chat__client_progress(c, r->conv);
  else if (r->internal)
    ; /* a refresh the client started: nobody to tell */
  else if (c->cb.on_request_done)
    c->cb.on_request_done(c->ud, c, r->id, result);
  req_free(c, r);
}

/* Every message of a page belongs to the conversation asked for: one of
 * another would be filed in the wrong chat. */
static chat_err same_conversation(const chat__req *r,
                                  const chat__rest_answer *a, char *err,
                                  size_t errcap) {
  for (size_t i = 0; i < a->n_messages; i++)
    if (strcmp(a->messages[i].conversation_id, r->conv) != 0) {
      snprintf(err, errcap,
               "messages[%zu].conversation_id: not the conversation asked "
               "for", i);
      return CHAT_ERR_BAD_VALUE;
    }
  return CHAT_OK;
}

/* 200 for a gap page: store what is past the cursor (raising last_seen)
 * and move the cursor; *more when another page is due. */
static void gap_page(chat_client *c, chat__req *r, const chat__rest_answer *a,
                     chat_time_ms now, bool *more) {
  uint64_t max_id = 0;
  for (size_t i = 0; i < a->n_messages; i++) {
    const chat_message *m = &a->messages[i];
    if (m->message_id <= r->cursor)
      continue;
    chat__client_store_message(c, m, CHAT_ORIGIN_REST, true, &max_id);
  }
  if (max_id > r->cursor)
    r->cursor = max_id;
  chat__client_auto_delivered(c, r->conv, max_id, now);
  *more = a->has_more && max_id > 0;
}

/* The next list page's path, the opaque cursor percent-encoded. */
static chat_err convs_next(chat_client *c, chat__req *r, chat_str cursor) {
  char path[64 + 3 * CHAT__REST_MAX_CURSOR];
  int k = snprintf(path, sizeof path,
                   "/api/v1/conversations?limit=100&cursor=");
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < cursor.len; i++) {
    unsigned char ch = (unsigned char)cursor.ptr[i];
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
  return req_set(c, r, "GET", path);
}

static chat_err convs_page(chat_client *c, chat__req *r,
                           const chat__rest_answer *a, bool *more) {
  for (size_t i = 0; i < a->n_conversations; i++) {
    const chat_conversation *conv = &a->conversations[i];
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
  if (a->next_cursor.ptr && a->next_cursor.len > 0) {
    chat_err e = convs_next(c, r, a->next_cursor);
    if (e)
      return e;
    *more = true;
  }
  return CHAT_OK;
}

static void older_page(chat_client *c, chat__req *r,
                       const chat__rest_answer *a) {
  (void)r;
  /* Newest first on the wire; the app gets them oldest first. */
  for (size_t i = a->n_messages; i-- > 0;)
    chat__client_store_message(c, &a->messages[i], CHAT_ORIGIN_OLDER, false,
                               NULL);
}

static const chat__rest_kind answer_kind[] = {
    [REQ_GAP] = CHAT__REST_MESSAGES,
    [REQ_CONVS] = CHAT__REST_CONVERSATIONS,
    [REQ_CREATE] = CHAT__REST_CONVERSATION,
    [REQ_OLDER] = CHAT__REST_MESSAGES,
    [REQ_DEVICE] = CHAT__REST_ERROR, /* any JSON object; nothing to keep */
    [REQ_CONV] = CHAT__REST_CONVERSATION,
    [REQ_ADMIN] = CHAT__REST_CONVERSATION,
    [REQ_REMOVE] = CHAT__REST_ERROR, /* {"removed":true}: nothing to keep */
    [REQ_LEAVE] = CHAT__REST_ERROR,
};

/* The server's own words for a refusal, when its body says; *wire is its
 * code (CHAT_WIRE_OTHER when none or unknown). */
static void refusal_text(chat_client *c, const char *body, size_t len,
                         int status, char *out, size_t cap,
                         chat_wire_error *wire) {
  const char *what = status == 403   ? "not a member"
                     : status == 404 ? "no such conversation"
                                     : "refused";
  *wire = CHAT_WIRE_OTHER;
  chat__arena ar;
  chat__arena_init(&ar, &c->a);
  chat__rest_answer a;
  memset(&a, 0, sizeof a);
  chat__rest_limits lim = {.max_answer_bytes = 1u << 16};
  if (chat__rest_decode(&ar, CHAT__REST_ERROR, body, len, &lim, &a, NULL,
                        0) != CHAT_OK)
    memset(&a, 0, sizeof a);
  if (a.error_code.ptr)
    *wire = chat_wire_error_from_str(a.error_code.ptr, a.error_code.len);
  if (*wire == CHAT_WIRE_FORBIDDEN)
    what = "forbidden";
  if (a.error_code.ptr)
    snprintf(out, cap, "REST %d %s: %.*s%s%.*s", status, what,
             (int)a.error_code.len, a.error_code.ptr,
             a.error_message.ptr ? ": " : "",
             a.error_message.ptr ? (int)a.error_message.len : 0,
             a.error_message.ptr ? a.error_message.ptr : "");
  else
    snprintf(out, cap, "REST %d %s", status, what);
  chat__arena_free(&ar);
}

chat_err chat_client_on_response(chat_client *c, uint32_t id, int status,
                                 const char *body, size_t len,
                                 chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (!body && len)
    return chat__client_fail(c, CHAT_ERR_INVAL, "body: NULL with len %zu",
                             len);
  chat__req *r = c->reqs;
  while (r && !(r->id == id && r->in_flight))
    r = r->next;
  if (!r)
    return chat__client_fail(c, CHAT_ERR_NOT_FOUND,
                             "id: request %u is not in flight", (unsigned)id);
  /* r stays in flight until its answer is handled: the callbacks below
   * may ask for the next request, and must not be handed this one. */
  const char *conv = r->conv;

  if (status == 401) {
    /* Not the request's fault: it goes out again with the next token,
     * at once when the app has replaced the token since this one went
     * out. The client waits for a token otherwise. */
    req_flags(c, r, true, false);
    if (r->token_gen == c->token_gen)
      chat__client_auth_lost(c, CHAT_AUTH_REFUSED, 401, conv);
    chat__client_wants_changed(c);
    return CHAT_OK;
  }
  /* A 429 on create is the daily cap on new direct conversations
   * (section 8): retrying cannot help today. */
  bool capped = status == 429 && r->kind == REQ_CREATE;
  if (!capped &&
      (status == 0 || status == 429 || (status >= 500 && status != 501))) {
    bool give_up = r->kind != REQ_GAP && r->attempt + 1 >= APP_MAX_ATTEMPTS;
    chat__client_error(c, CHAT_ERR_MODULE, conv, "REST request failed",
                       status, !give_up);
    if (give_up) {
      finish(c, r, CHAT_ERR_MODULE);
      return CHAT_OK;
    }
    uint32_t delay = 0;
    if (chat_backoff_next(&c->backoff, r->attempt, &c->env, &delay))
      delay = c->backoff.cap_ms;
    r->attempt++;
    r->not_before = now + delay;
    req_flags(c, r, false, false);
    return CHAT_OK;
  }
  if (status < 200 || status > 299) {
    char text[256];
    chat_wire_error wire;
    refusal_text(c, body, len, status, text, sizeof text, &wire);
    bool gone = (status == 403 && wire != CHAT_WIRE_FORBIDDEN) ||
                status == 404;
    if ((r->kind == REQ_REMOVE || r->kind == REQ_LEAVE) && r->attempt > 0 &&
        gone) {
      /* A retry of a removal whose first answer was lost: the first one
       * did it. */
      status = 200;
    } else if (r->kind == REQ_LEAVE && status == 403 && gone) {
      /* Not a member any more (left from another device): done. */
      chat__client_left(c, conv);
      finish(c, r, CHAT_OK);
      return CHAT_OK;
    } else {
      chat__client_error(c, CHAT_ERR_MODULE, conv, text, status, false);
      if (r->kind == REQ_CONV && gone)
        chat__client_left(c, conv); /* the server says: not ours */
      chat_err res = wire == CHAT_WIRE_FORBIDDEN ? CHAT_ERR_DENIED
                     : gone                       ? CHAT_ERR_NOT_FOUND
                     : status == 409              ? CHAT_ERR_CONFLICT
                     : capped                     ? CHAT_ERR_RATE_LIMITED
                                                  : CHAT_ERR_MODULE;
      finish(c, r, res);
      return CHAT_OK;
    }
  }

  chat__arena ar;
  chat__arena_init(&ar, &c->a);
  chat__rest_limits lim = {
      .max_answer_bytes = UINT32_MAX,
      .max_items = 1000,
      .max_body_bytes = c->max_body_bytes > CHAT__CLIENT_DEF_MAX_BODY
                            ? c->max_body_bytes
                            : CHAT__CLIENT_DEF_MAX_BODY,
      .max_members = 1024,
      .max_media_refs = 32};
  chat__rest_answer a;
  char why[200];
  chat_err e = chat__rest_decode(&ar, answer_kind[r->kind], body, len, &lim,
                                 &a, why, sizeof why);
  if (!e && (r->kind == REQ_GAP || r->kind == REQ_OLDER))
    e = same_conversation(r, &a, why, sizeof why);
  if (!e && (r->kind == REQ_CONV || r->kind == REQ_ADMIN) &&
      strcmp(a.conversation->conversation_id, r->conv) != 0) {
    /* Stored under the wrong id it would overwrite another chat. */
    snprintf(why, sizeof why,
             "conversation_id: not the conversation asked for");
    e = CHAT_ERR_BAD_VALUE;
  }
  bool more = false;
  if (!e) {
    switch (r->kind) {
    case REQ_GAP:
      gap_page(c, r, &a, now, &more);
      if (more)
        e = gap_path(c, r);
      break;
    case REQ_CONVS:
      e = convs_page(c, r, &a, &more);
      if (e)
        snprintf(why, sizeof why, "%s", chat_strerror(e));
      break;
    case REQ_CREATE:
      chat__client_put_conversation(c, a.conversation);
      break;
    case REQ_OLDER:
      older_page(c, r, &a);
      break;
    case REQ_DEVICE:
      break;
    case REQ_CONV:
    case REQ_ADMIN:
      chat__client_put_conversation(c, a.conversation);
      break;
    case REQ_REMOVE:
      /* Removed: fetch what the conversation looks like now (an admin
       * may have been promoted), and report the request after that. */
      r->kind = REQ_CONV;
      chat__free(&c->a, r->body);
      r->body = NULL;
      r->body_len = 0;
      e = conv_path(c, r);
      more = e == CHAT_OK;
      if (e)
        snprintf(why, sizeof why, "%s", chat_strerror(e));
      break;
    case REQ_LEAVE:
      chat__client_left(c, r->conv);
      break;
    }
  }
  chat__arena_free(&ar);
  if (e) {
    char text[256];
    snprintf(text, sizeof text, "malformed REST answer: %s", why);
    chat__client_error(c, e, conv, text, status, false);
    finish(c, r, e);
    return e == CHAT_ERR_NOMEM
               ? chat__client_fail(c, e, "out of memory handling an answer")
               : CHAT_OK;
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

/* The REST API of PROTOCOL.md section 5, sans-I/O: parsed request in,
 * status and JSON body out. The transport does HTTP and authentication;
 * every rule about who may see or change what lives here.
 *
 * Each request is a job. Everything it needs from the request (path
 * segments, query, parsed JSON body, identity) is copied into the job
 * before its first module call; the media upload's bytes are the one
 * exception, handed to media_put within chat_server_http() itself. The
 * answer is written into the job's buffer and handed over exactly once
 * (reply): into the caller's chat_http_response when the request finished
 * within chat_server_http(), through on_http_response otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

#define MAX_MEDIA_BYTES (10u << 20)
#define MAX_TOKEN_BYTES 4096
#define PAGE_DEFAULT 50
#define PAGE_MAX 200
#define DAY_MS INT64_C(86400000)

typedef void (*gate_fn)(rq *q, const conv_entry *c);

struct rq {
  chat__job base;
  chat_server *srv;
  rq *prev, *next;        /* srv->rest_pending while answered later */
  bool listed;
  bool in_http;           /* inside chat_server_http() */
  bool answered;
  bool cancelled;
  void *tag;
  chat_http_response resp; /* of the newest version */
  chat__buf out;
  chat__arena ar;
  chat__jw w;
  char user[CHAT_ID_BUF];
  char device[CHAT_ID_BUF];
  const char *query;      /* the raw query, copied */
  const chat__json *body; /* parsed JSON body (NULL: none or malformed) */
  /* route state */
  char conv[CHAT_ID_BUF];
  const char *arg;        /* a path segment: message id, user id, media id */
  gate_fn after_gate;
  bool written;
  bool existed;
  bool advanced;
  bool already;
  const char *target;     /* the user added */
  char **members;         /* copied before a member change */
  size_t n_members;
  uint32_t limit, n;
  uint32_t delivered, read;
  bool with_members;
  char cursor_next[CHAT_CURSOR_BUF];
  char new_id[32];
  chat_sender_kind kind;  /* the caller's: bots get no push devices */
  /* member_change (section 8) */
  chat_member_op chg_op;
  chat_member_change_result res;
  const char *body_text;  /* the change's system message, in the arena */
  const char *promote_suffix;
  bool answer_view;       /* the answer is the actor's view */
  bool target_only;       /* on_notify: to q->target only */
  const char **now_members; /* after the change, copied from the view */
  size_t n_now;
  const char **notify;    /* who hears of the change */
  size_t n_notify;
  const char *platform;
  size_t platform_len;
  bool media_got;
  int64_t day_end;        /* the cold-direct cap's day ends (Unix ms) */
};

/* ---- answers ---- */

static void rq_release(chat_server *srv, chat__job *j) {
  rq *q = (rq *)j;
  if (q->listed) {
    if (q->prev)
      q->prev->next = q->next;
    else
      srv->rest_pending = q->next;
    if (q->next)
      q->next->prev = q->prev;
  }
  chat__arena_free(&q->ar);
  chat__buf_free(&q->out);
  chat__free(&srv->a, q);
}

static void unlist(rq *q) {
  if (!q->listed)
    return;
  chat_server *srv = q->srv;
  if (q->prev)
    q->prev->next = q->next;
  else
    srv->rest_pending = q->next;
  if (q->next)
    q->next->prev = q->prev;
  q->prev = q->next = NULL;
  q->listed = false;
}

/* The answer is complete: hand it over, once. */
static int reply(rq *q) {
  if (q->answered)
    return 0;
  q->answered = true;
  if (q->in_http)
    return 0; /* chat_server_http() copies it out */
  chat_server *srv = q->srv;
  unlist(q);
  if (!q->cancelled && srv->cbs.on_http_response)
    srv->cbs.on_http_response(srv->user_data, srv, q->tag, &q->resp);
  return 0;
}

static void begin(rq *q, int status) {
  chat__buf_reset(&q->out);
  chat__jw_init(&q->w, &q->out);
  q->resp.status = status;
  q->resp.content_type = "application/json";
  q->resp.retry_after_s = 0;
}

/* The body in q->out is complete. */
static void finish(rq *q) {
  chat__buf *b = &q->out;
  if (b->oom) {
    /* A fixed body, so that even this answer needs no memory. */
    static const char oom[] =
        "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
    q->resp.status = 500;
    q->resp.content_type = "application/json";
    q->resp.body = oom;
    q->resp.body_len = sizeof oom - 1;
    return;
  }
  q->resp.body = b->data;
  q->resp.body_len = b->len;
}

/* An error answer with Retry-After (seconds), set before the answer is
 * handed over. */
static int fail_retry(rq *q, int status, const char *code, const char *msg,
                      uint32_t retry_after_s) {
  begin(q, status);
  q->resp.retry_after_s = retry_after_s;
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "error");
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "code");
  chat__jw_str(&q->w, code, strlen(code));
  chat__jw_key(&q->w, "message");
  chat__jw_str(&q->w, msg, strlen(msg));
  chat__jw_obj_end(&q->w);
  chat__jw_obj_end(&q->w);
  finish(q);
  return reply(q);
}

static int fail(rq *q, int status, const char *code, const char *msg) {
  return fail_retry(q, status, code, msg, 0);
}

static int store_failed(rq *q, chat_err rc) {
  q->srv->st.store_errors_total++;
  return fail(q, rc == CHAT_ERR_NOMEM ? 503 : 500, "internal",
              rc == CHAT_ERR_NOMEM ? "out of memory" : "storage failed");
}

/* ---- request parsing ---- */

static int hexv(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* Percent-decode s[0..n) into the arena; NULL for a bad escape or NUL. */
static char *pct_decode(rq *q, const char *s, size_t n) {
  char *out = chat__arena_alloc(&q->ar, n + 1);
  if (!out)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (c == '%') {
      int h, l;
      if (i + 2 >= n || (h = hexv(s[i + 1])) < 0 ||
          (l = hexv(s[i + 2])) < 0)
        return NULL;
      c = (char)(h * 16 + l);
      i += 2;
    } else if (c == '+') {
      c = ' ';
    }
    if (c == 0)
      return NULL;
    out[k++] = c;
  }
  out[k] = 0;
  return out;
}

/* The value of a query parameter, decoded; NULL when absent. *bad is set
 * for a malformed value. */
static const char *query_get(rq *q, const char *name, bool *bad) {
  const char *s = q->query;
  size_t nl = strlen(name);
  while (s && *s) {
    const char *amp = strchr(s, '&');
    size_t len = amp ? (size_t)(amp - s) : strlen(s);
    if (len > nl && s[nl] == '=' && memcmp(s, name, nl) == 0) {
      const char *v = pct_decode(q, s + nl + 1, len - nl - 1);
      if (!v)
        *bad = true;
      return v;
    }
    if (len == nl && memcmp(s, name, nl) == 0)
      return "";
    s = amp ? amp + 1 : NULL;
  }
  return NULL;
}

static bool query_limit(rq *q, uint32_t *out, bool *bad) {
  const char *v = query_get(q, "limit", bad);
  *out = PAGE_DEFAULT;
  if (!v)
    return true;
  char *end;
  unsigned long n = strtoul(v, &end, 10);
  if (!*v || *end || v[0] == '-' || n < 1 || n > PAGE_MAX)
    return false;
  *out = (uint32_t)n;
  return true;
}

/* Split the path after /api/v1/ into at most 8 decoded segments. */
static size_t split_path(rq *q, const char *path, const char **seg,
                         bool *bad) {
  size_t n = 0;
  const char *p = path;
  while (*p && n < 8) {
    while (*p == '/')
      p++;
    if (!*p)
      break;
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    seg[n] = pct_decode(q, p, len);
    if (!seg[n])
      *bad = true;
    n++;
    p += len;
  }
  if (*p && strspn(p, "/") != strlen(p))
    *bad = true; /* more segments than any route has */
  return n;
}

/* Parsed into the job's arena: the tree's strings are copies. */
static const chat__json *parse_body(rq *q, const chat_http_request *req) {
  chat__json *root;
  if (!req->body || req->body_len == 0)
    return NULL;
  if (chat__json_parse(&q->ar, req->body, req->body_len, 8, &root, NULL) !=
          CHAT_OK ||
      root->kind != CHAT__JSON_OBJECT)
    return NULL;
  return root;
}

static const char *body_id(const chat__json *root, const char *key) {
  const chat__json *v = chat__json_get(root, key);
  if (!v || v->kind != CHAT__JSON_STRING || !chat_id_valid(v->str, v->len))
    return NULL;
  return v->str;
}

static bool parse_msgid(const char *s, uint64_t *out) {
  return s && chat_message_id_parse(s, strlen(s), out) == CHAT_OK;
}

/* ---- conversation helpers ---- */

static void write_conv(void *ctx, const chat_conversation *c) {
  rq *q = ctx;
  chat__jw_conversation_object(&q->w, c);
  q->written = true;
}

static void on_gate(chat_server *srv, chat__job *j, const conv_entry *c,
                    chat_err err) {
  (void)srv;
  rq *q = (rq *)j;
  if (!c) {
    if (err == CHAT_ERR_NOT_FOUND)
      fail(q, 404, "not_found", "no such conversation");
    else
      store_failed(q, err);
    return;
  }
  if (!chat__conv_has_member(c, q->user)) {
    fail(q, 403, "not_member", "not a member of this conversation");
    return;
  }
  q->after_gate(q, c);
}

/* Membership gate for routes under a conversation: 404 unknown, 403 not a
 * member (PROTOCOL.md section 7); then next(q, c), c borrowed for the
 * call. */
static int member_gate(rq *q, const char *conv, gate_fn next) {
  if (!chat_id_valid(conv, strlen(conv)))
    return fail(q, 404, "not_found", "no such conversation");
  snprintf(q->conv, sizeof q->conv, "%s", conv);
  q->after_gate = next;
  chat__conv_load(q->srv, q->conv, &q->base, on_gate);
  return 0;
}

/* The `conversation` frame for users added to a conversation. */
void chat__notify_added(chat_server *srv, const chat_conversation *c,
                        const char *const *users, size_t n) {
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_CONVERSATION,
                  .conversation = c};
  chat__shared_frame *sf = chat__frame_make(srv, &f);
  if (!sf)
    return;
  chat__deliver(srv, sf, users, n, NULL, NULL, NULL);
  chat__frame_unref(srv, sf);
}

/* Emitted by the store: send the `conversation` frame to everyone but the
 * creator (q->target NULL), or to the added user only. */
static void on_notify(void *ctx, const chat_conversation *c) {
  rq *q = ctx;
  chat_server *srv = q->srv;
  if (q->target_only || q->target) {
    chat__notify_added(srv, c, &q->target, 1);
    return;
  }
  const char *stack[64] = {0};
  const char **others = stack;
  if (c->n_members > 64 &&
      !(others = chat__alloc(&srv->a, c->n_members * sizeof *others)))
    return;
  size_t n = 0;
  for (size_t i = 0; i < c->n_members; i++)
    if (strcmp(c->members[i], q->user) != 0)
      others[n++] = c->members[i];
  chat__notify_added(srv, c, others, n);
  if (others != stack)
    chat__free(&srv->a, others);
}

/* The notification is out (or failed: the members see it on resume). */
static void on_notified(chat_server *srv, chat__job *j, uint32_t idx,
                        chat_err rc) {
  (void)srv;
  (void)idx;
  (void)rc;
  reply((rq *)j);
}

static void notify_then_reply(rq *q, const char *conv, const char *viewer) {
  chat_server *srv = q->srv;
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_notified, 0, op,
             srv->store.conversation_get(srv->store.self, conv, viewer,
                                         on_notify, q, op));
}

/* ---- POST /conversations ---- */

static void on_created(chat_server *srv, chat__job *j, uint32_t idx,
                       chat_err rc) {
  (void)idx;
  rq *q = (rq *)j;
  if (rc == CHAT_OK && !q->written)
    rc = CHAT_ERR_MODULE;
  if (rc != CHAT_OK) {
    if (rc == CHAT_ERR_CONFLICT) {
      fail(q, 409, "conflict", "conversation id taken");
    } else if (rc == CHAT_ERR_RATE_LIMITED) {
      /* Too many new direct conversations today with users who never
       * wrote back: try again after midnight UTC. */
      srv->st.direct_capped_total++;
      int64_t wall = chat__srv_wall(srv);
      int64_t left = q->day_end > wall ? q->day_end - wall : 1000;
      fail_retry(q, 429, "rate_limited",
                 "too many new direct conversations today with users who "
                 "have not written to you",
                 (uint32_t)((left + 999) / 1000));
    } else {
      store_failed(q, rc);
    }
    return;
  }
  finish(q);
  if (q->existed) {
    q->resp.status = 200;
    reply(q);
    return;
  }
  /* Everyone but the creator learns of the new conversation now. */
  (void)srv;
  q->target = NULL;
  notify_then_reply(q, q->new_id, NULL);
}

static int create_conversation(rq *q) {
  chat_server *srv = q->srv;
  const chat__json *root = q->body;
  if (!root)
    return fail(q, 400, "bad_request", "body must be a JSON object");
  const chat__json *type = chat__json_get(root, "type");
  const chat__json *members = chat__json_get(root, "members");
  const chat__json *name = chat__json_get(root, "name");
  chat_conversation_type t;
  if (type && type->kind == CHAT__JSON_STRING && !strcmp(type->str, "direct"))
    t = CHAT_CONVERSATION_DIRECT;
  else if (type && type->kind == CHAT__JSON_STRING &&
           !strcmp(type->str, "group"))
    t = CHAT_CONVERSATION_GROUP;
  else
    return fail(q, 400, "bad_request",
                "\"type\" must be \"direct\" or \"group\"");
  if (!members || members->kind != CHAT__JSON_ARRAY)
    return fail(q, 400, "bad_request", "\"members\" must be an array of ids");
  if (name && name->kind != CHAT__JSON_STRING && name->kind != CHAT__JSON_NULL)
    return fail(q, 400, "bad_request", "\"name\" must be a string");
  if (name && name->kind == CHAT__JSON_STRING &&
      name->len > CHAT__MAX_NAME_BYTES)
    return fail(q, 413, "too_large", "\"name\" is over 256 bytes");
  /* A list longer than the limit is refused before the quadratic
   * de-duplication below; the limit itself applies to the distinct
   * members, the caller included. */
  if (members->n > srv->s.max_group_members)
    return fail(q, 413, "too_large", "too many members");
  /* The caller is always a member; duplicates collapse. */
  const char **ids = chat__arena_alloc(&q->ar, (members->n + 1) * sizeof *ids);
  if (!ids)
    return store_failed(q, CHAT_ERR_NOMEM);
  size_t n = 0;
  ids[n++] = q->user;
  for (const chat__json *m = members->child; m; m = m->next) {
    if (m->kind != CHAT__JSON_STRING || !chat_id_valid(m->str, m->len))
      return fail(q, 400, "bad_id", "\"members\" must hold valid user ids");
    bool dup = false;
    for (size_t i = 0; i < n && !dup; i++)
      dup = strcmp(ids[i], m->str) == 0;
    if (!dup)
      ids[n++] = m->str;
  }
  if (n > srv->s.max_group_members)
    return fail(q, 413, "too_large", "too many members");
  if (t == CHAT_CONVERSATION_DIRECT && n != 2)
    return fail(q, 400, "bad_request",
                "a direct conversation has exactly one other member");
  if (!srv->store.conversation_create)
    return fail(q, 501, "internal", "conversations not supported by the store");
  if (!srv->ids_ready)
    return fail(q, 503, "unavailable", "server is starting");
  uint64_t id;
  int64_t wall = chat__srv_wall(srv);
  if (chat_snowflake_next(srv->ids, wall, &id) != CHAT_OK)
    return store_failed(q, CHAT_ERR_MODULE);
  snprintf(q->new_id, sizeof q->new_id, "c%llu", (unsigned long long)id);
  /* The abuse cap counts per UTC day (PROTOCOL.md section 8). */
  int64_t day = wall > 0 ? wall - wall % DAY_MS : 0;
  chat_conversation_new cn = {
      .conversation_id = q->new_id,
      .type = t,
      .name = name && name->kind == CHAT__JSON_STRING
                  ? (chat_str){name->str, name->len}
                  : (chat_str){NULL, 0},
      .created_by = q->user,
      .members = ids,
      .n_members = n,
      .now_ms = wall,
      .cold_direct_limit = srv->s.new_direct_per_day == UINT32_MAX
                               ? 0
                               : srv->s.new_direct_per_day,
      .cold_direct_since_ms = day};
  q->day_end = day + DAY_MS;
  begin(q, 201);
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_created, 0, op,
             srv->store.conversation_create(srv->store.self, &cn,
                                            &q->existed, write_conv, q, op));
  return 0;
}

/* ---- GET /conversations ---- */

static void on_listed(chat_server *srv, chat__job *j, uint32_t idx,
                      chat_err rc) {
  (void)srv;
  (void)idx;
  rq *q = (rq *)j;
  if (rc == CHAT_ERR_INVAL) {
    fail(q, 400, "bad_request", "malformed cursor");
    return;
  }
  if (rc != CHAT_OK) {
    store_failed(q, rc);
    return;
  }
  chat__jw_arr_end(&q->w);
  chat__jw_key(&q->w, "next_cursor");
  q->cursor_next[sizeof q->cursor_next - 1] = 0;
  if (q->cursor_next[0])
    chat__jw_str(&q->w, q->cursor_next, strlen(q->cursor_next));
  else
    chat__jw_null(&q->w);
  chat__jw_obj_end(&q->w);
  finish(q);
  reply(q);
}

static int list_conversations(rq *q) {
  bool bad = false;
  uint32_t limit;
  if (!query_limit(q, &limit, &bad))
    return fail(q, 400, "bad_request", "limit must be 1..200");
  const char *cursor = query_get(q, "cursor", &bad);
  if (bad)
    return fail(q, 400, "bad_request", "malformed query");
  begin(q, 200);
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "conversations");
  chat__jw_arr_begin(&q->w);
  chat_server *srv = q->srv;
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_listed, 0, op,
             srv->store.conversations_of(srv->store.self, q->user, cursor,
                                         limit, write_conv, q, q->cursor_next,
                                         op));
  return 0;
}

/* ---- GET /conversations/:id ---- */

static void on_got(chat_server *srv, chat__job *j, uint32_t idx,
                   chat_err rc) {
  (void)srv;
  (void)idx;
  rq *q = (rq *)j;
  if (rc == CHAT_OK && !q->written)
    rc = CHAT_ERR_MODULE;
  if (rc != CHAT_OK) {
    store_failed(q, rc);
    return;
  }
  finish(q);
  reply(q);
}

static void get_conversation_gated(rq *q, const conv_entry *c) {
  (void)c;
  chat_server *srv = q->srv;
  begin(q, 200);
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_got, 0, op,
             srv->store.conversation_get(srv->store.self, q->conv, q->user,
                                         write_conv, q, op));
}

/* ---- GET /conversations/:id/messages ---- */

static void write_msg(void *ctx, const chat_message *m) {
  rq *q = ctx;
  /* One more than asked tells whether there is more. */
  if (q->n++ < q->limit)
    chat__jw_message_object(&q->w, m);
}

static void on_page(chat_server *srv, chat__job *j, uint32_t idx,
                    chat_err rc) {
  (void)srv;
  (void)idx;
  rq *q = (rq *)j;
  if (rc != CHAT_OK) {
    store_failed(q, rc);
    return;
  }
  chat__jw_arr_end(&q->w);
  chat__jw_key(&q->w, "has_more");
  chat__jw_bool(&q->w, q->n > q->limit);
  chat__jw_obj_end(&q->w);
  finish(q);
  reply(q);
}

static void list_messages_gated(rq *q, const conv_entry *c) {
  (void)c;
  bool bad = false;
  uint32_t limit;
  if (!query_limit(q, &limit, &bad)) {
    fail(q, 400, "bad_request", "limit must be 1..200");
    return;
  }
  const char *before = query_get(q, "before", &bad);
  const char *after = query_get(q, "after", &bad);
  if (bad) {
    fail(q, 400, "bad_request", "malformed query");
    return;
  }
  if (before && after) {
    fail(q, 400, "bad_request", "give before or after, not both");
    return;
  }
  chat_page_dir dir = CHAT_PAGE_LATEST;
  uint64_t anchor = 0;
  if (before || after) {
    if (!parse_msgid(before ? before : after, &anchor)) {
      fail(q, 400, "bad_id", "not a message id");
      return;
    }
    dir = before ? CHAT_PAGE_BEFORE : CHAT_PAGE_AFTER;
  }
  begin(q, 200);
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "messages");
  chat__jw_arr_begin(&q->w);
  q->limit = limit;
  q->n = 0;
  chat_server *srv = q->srv;
  chat_op *op;
  /* As the caller sees it: a shadow-banned sender's messages reach only
   * that sender (PROTOCOL.md section 8). */
  if (srv->store.messages_as)
    CHAT__CALL(srv, &q->base, on_page, 0, op,
               srv->store.messages_as(srv->store.self, q->conv, q->user, dir,
                                      anchor, limit + 1, write_msg, q, op));
  else
    CHAT__CALL(srv, &q->base, on_page, 0, op,
               srv->store.messages(srv->store.self, q->conv, dir, anchor,
                                   limit + 1, write_msg, q, op));
}

/* ---- GET /conversations/:id/messages/:mid/receipts ---- */

static void member_state(void *ctx, const char *member,
                         chat_receipt_state state) {
  rq *q = ctx;
  const char *st = state == CHAT_RECEIPT_READ        ? "read"
                   : state == CHAT_RECEIPT_DELIVERED ? "delivered"
                                                     : "sent";
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "user_id");
  chat__jw_str(&q->w, member, strlen(member));
  chat__jw_key(&q->w, "state");
  chat__jw_str(&q->w, st, strlen(st));
  chat__jw_obj_end(&q->w);
}

static void on_receipts(chat_server *srv, chat__job *j, uint32_t idx,
                        chat_err rc) {
  (void)srv;
  (void)idx;
  rq *q = (rq *)j;
  if (rc == CHAT_ERR_NOT_FOUND) {
    fail(q, 404, "not_found", "no such message");
    return;
  }
  if (rc != CHAT_OK) {
    store_failed(q, rc);
    return;
  }
  if (q->with_members)
    chat__jw_arr_end(&q->w);
  chat__jw_key(&q->w, "delivered");
  chat__jw_uint(&q->w, q->delivered);
  chat__jw_key(&q->w, "read");
  chat__jw_uint(&q->w, q->read);
  chat__jw_obj_end(&q->w);
  finish(q);
  reply(q);
}

static void get_receipts_gated(rq *q, const conv_entry *c) {
  chat_server *srv = q->srv;
  uint64_t id;
  if (!parse_msgid(q->arg, &id)) {
    fail(q, 400, "bad_id", "not a message id");
    return;
  }
  if (!srv->store.receipts) {
    fail(q, 501, "internal", "receipts not supported by the store");
    return;
  }
  /* Per-member states only where they exist: direct chats and groups up to
   * the delivered threshold. */
  q->with_members = c->type == CHAT_CONVERSATION_DIRECT ||
                    c->n_members <= srv->s.delivered_max_members;
  begin(q, 200);
  chat__jw_obj_begin(&q->w);
  if (q->with_members) {
    chat__jw_key(&q->w, "members");
    chat__jw_arr_begin(&q->w);
  }
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_receipts, 0, op,
             srv->store.receipts(srv->store.self, q->conv, id, &q->delivered,
                                 &q->read,
                                 q->with_members ? member_state : NULL, q,
                                 op));
}

/* ---- members ---- */

/* The members before a change, for telling the other gateways. */
static bool keep_members(rq *q, const conv_entry *c) {
  q->members = chat__arena_alloc(&q->ar, (c->n_members + 1) *
                                             sizeof *q->members);
  if (!q->members)
    return false;
  for (size_t i = 0; i < c->n_members; i++) {
    q->members[i] = chat__arena_strndup(&q->ar, c->members[i],
                                        strlen(c->members[i]));
    if (!q->members[i])
      return false;
  }
  q->n_members = c->n_members;
  return true;
}

static void on_member_view(chat_server *srv, chat__job *j, uint32_t idx,
                           chat_err rc) {
  (void)srv;
  (void)idx;
  rq *q = (rq *)j;
  if (rc == CHAT_OK && !q->written)
    rc = CHAT_ERR_MODULE;
  if (rc != CHAT_OK) {
    store_failed(q, rc);
    return;
  }
  finish(q);
  if (q->already) {
    reply(q);
    return;
  }
  /* The added user's own view goes into its `conversation` frame; the
   * answer above stays in q->out, which notifying does not touch. */
  notify_then_reply(q, q->conv, q->target);
}

static void on_member_added(chat_server *srv, chat__job *j, uint32_t idx,
                            chat_err rc) {
  (void)idx;
  rq *q = (rq *)j;
  if (rc != CHAT_OK) {
    if (rc == CHAT_ERR_NOT_FOUND)
      fail(q, 404, "not_found", "no such conversation");
    else
      store_failed(q, rc);
    return;
  }
  if (!q->already)
    chat__bus_forget(srv, q->conv, (const char *const *)q->members,
                     q->n_members, q->target);
  chat__conv_forget(srv, q->conv);
  begin(q, 200);
  q->written = false;
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_member_view, 0, op,
             srv->store.conversation_get(srv->store.self, q->conv, q->user,
                                         write_conv, q, op));
}

/* ---- member and admin changes through member_change (PROTOCOL.md
 * section 8): the store applies the change with its system message(s) in
 * one transaction and checks the guards the core sets; the core then
 * delivers the system messages and a `conversation` frame to everyone
 * the change concerns (members before and after). ---- */

static int cmp_cstr(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Members before (q->members) and after (q->now_members) the change, and
 * the user it is about, once each: who hears of it. */
static bool build_notify(rq *q) {
  size_t cap = q->n_members + q->n_now + 1;
  const char **v = chat__arena_alloc(&q->ar, cap * sizeof *v);
  if (!v)
    return false;
  size_t n = 0;
  for (size_t i = 0; i < q->n_members; i++)
    v[n++] = q->members[i];
  for (size_t i = 0; i < q->n_now; i++)
    v[n++] = q->now_members[i];
  v[n++] = q->target;
  qsort(v, n, sizeof *v, cmp_cstr);
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (k == 0 || strcmp(v[k - 1], v[i]) != 0)
      v[k++] = v[i];
  q->notify = v;
  q->n_notify = k;
  return true;
}

/* The view member_change emits: the answer (the actor's view), and the
 * members after the change. */
static void change_view(void *ctx, const chat_conversation *c) {
  rq *q = ctx;
  if (q->answer_view) {
    chat__jw_conversation_object(&q->w, c);
    q->written = true;
  }
  q->now_members = chat__arena_alloc(&q->ar, (c->n_members + 1) *
                                                 sizeof *q->now_members);
  q->n_now = 0;
  for (size_t i = 0; q->now_members && i < c->n_members; i++) {
    const char *m = chat__arena_strndup(&q->ar, c->members[i],
                                        strlen(c->members[i]));
    if (m)
      q->now_members[q->n_now++] = m;
  }
}

/* Every user the change concerns gets the new object, the added user
 * excepted (it gets its own view next, with its own unread count). */
static void on_change_object(void *ctx, const chat_conversation *c) {
  rq *q = ctx;
  chat_server *srv = q->srv;
  const char **to = chat__arena_alloc(&q->ar, (q->n_notify + 1) * sizeof *to);
  if (!to)
    return;
  size_t n = 0;
  for (size_t i = 0; i < q->n_notify; i++)
    if (q->chg_op != CHAT_MEMBER_ADD || strcmp(q->notify[i], q->target) != 0)
      to[n++] = q->notify[i];
  chat__notify_added(srv, c, to, n);
}

static void on_change_notified(chat_server *srv, chat__job *j, uint32_t idx,
                               chat_err rc) {
  (void)idx;
  (void)rc; /* a failed notification is seen on the next REST read */
  rq *q = (rq *)j;
  if (q->chg_op == CHAT_MEMBER_ADD && idx == 0) {
    /* The added user's own view, as before section 8. */
    q->target_only = true;
    chat_op *op;
    CHAT__CALL(srv, &q->base, on_change_notified, 1, op,
               srv->store.conversation_get(srv->store.self, q->conv,
                                           q->target, on_notify, q, op));
    return;
  }
  reply(q);
}

/* One system message of the log, delivered like any message. */
static void deliver_system(rq *q, const chat_append_result *r,
                           const char *prefix, const char *body) {
  chat_server *srv = q->srv;
  size_t pl = prefix ? strlen(prefix) : 0, bl = strlen(body);
  char *text = chat__arena_alloc(&q->ar, pl + bl + 1);
  if (!text)
    return;
  memcpy(text, prefix ? prefix : "", pl);
  memcpy(text + pl, body, bl + 1);
  chat_message m = {.message_id = r->message_id,
                    .conversation_id = q->conv,
                    .sender_id = q->user,
                    .body = {text, pl + bl},
                    .server_ts = r->server_ts,
                    .body_type = CHAT_BODY_SYSTEM};
  chat__deliver_message(srv, &m, q->notify, q->n_notify, NULL, false,
                        r->withheld);
}

static void on_changed(chat_server *srv, chat__job *j, uint32_t idx,
                       chat_err rc) {
  (void)idx;
  rq *q = (rq *)j;
  chat_member_op op = q->chg_op;
  bool self = strcmp(q->target, q->user) == 0;
  if (rc == CHAT_OK && q->answer_view && !q->written)
    rc = CHAT_ERR_MODULE;
  switch (rc) {
  case CHAT_OK:
    break;
  case CHAT_ERR_NOT_FOUND:
    fail(q, 404, "not_found",
         op == CHAT_MEMBER_ADD ? "no such conversation" : "not a member");
    return;
  case CHAT_ERR_DENIED:
    fail(q, 403, "forbidden",
         op == CHAT_MEMBER_ADMIN_GRANT
             ? "only an admin may make admins"
         : self ? "not allowed"
                : "only an admin may do this, and the creator can be "
                  "removed only by themself");
    return;
  case CHAT_ERR_CONFLICT:
    fail(q, 409, "conflict",
         op == CHAT_MEMBER_ADD ? "the group is full"
         : op == CHAT_MEMBER_ADMIN_REVOKE
             ? "a group keeps at least one admin: make another member "
               "admin first"
             : "not a group");
    return;
  default:
    store_failed(q, rc);
    return;
  }
  if (op == CHAT_MEMBER_REMOVE) {
    begin(q, 200);
    chat__jw_obj_begin(&q->w);
    chat__jw_key(&q->w, "conversation_id");
    chat__jw_str(&q->w, q->conv, strlen(q->conv));
    chat__jw_key(&q->w, "user_id");
    chat__jw_str(&q->w, q->target, strlen(q->target));
    chat__jw_key(&q->w, "removed");
    chat__jw_bool(&q->w, true);
    chat__jw_obj_end(&q->w);
  }
  finish(q);
  if (!q->res.changed) {
    reply(q);
    return;
  }
  /* Every gateway drops its cached members and admins. */
  chat__bus_forget(srv, q->conv, (const char *const *)q->members,
                   q->n_members, q->target);
  chat__conv_forget(srv, q->conv);
  srv->st.system_messages_total += 1 + q->res.promoted;
  if (!build_notify(q)) {
    reply(q); /* the change is stored; the others see it by resume */
    return;
  }
  deliver_system(q, &q->res.message, NULL, q->body_text);
  if (q->res.promoted)
    deliver_system(q, &q->res.promote_message, q->res.promoted_user,
                   q->promote_suffix);
  chat_op *op2;
  CHAT__CALL(srv, &q->base, on_change_notified, 0, op2,
             srv->store.conversation_get(srv->store.self, q->conv, NULL,
                                         on_change_object, q, op2));
}

static void start_change(rq *q, const conv_entry *c, chat_member_op op,
                         const char *user) {
  chat_server *srv = q->srv;
  if (!srv->ids_ready) {
    fail(q, 503, "unavailable", "server is starting");
    return;
  }
  if (!keep_members(q, c)) {
    store_failed(q, CHAT_ERR_NOMEM);
    return;
  }
  bool self = strcmp(user, q->user) == 0;
  const char *a = q->user;
  char text[3 * CHAT_ID_BUF + 64];
  switch (op) {
  case CHAT_MEMBER_ADD:
    snprintf(text, sizeof text, "%s added %s", a, user);
    break;
  case CHAT_MEMBER_REMOVE:
    if (self)
      snprintf(text, sizeof text, "%s left", user);
    else
      snprintf(text, sizeof text, "%s removed %s", a, user);
    break;
  case CHAT_MEMBER_ADMIN_GRANT:
    snprintf(text, sizeof text, "%s made %s an admin", a, user);
    break;
  default:
    if (self)
      snprintf(text, sizeof text, "%s is no longer an admin", user);
    else
      snprintf(text, sizeof text, "%s removed %s as an admin", a, user);
    break;
  }
  q->body_text = chat__arena_strndup(&q->ar, text, strlen(text));
  q->promote_suffix = " is now an admin";
  q->target = chat__arena_strndup(&q->ar, user, strlen(user));
  if (!q->body_text || !q->target) {
    store_failed(q, CHAT_ERR_NOMEM);
    return;
  }
  int64_t wall = chat__srv_wall(srv);
  uint64_t ids[2];
  if (chat_snowflake_next(srv->ids, wall, &ids[0]) != CHAT_OK ||
      chat_snowflake_next(srv->ids, wall, &ids[1]) != CHAT_OK) {
    store_failed(q, CHAT_ERR_MODULE);
    return;
  }
  /* Who may do what is the core's rule; the store checks it against the
   * rows inside the change's transaction. Anyone may leave, or step down;
   * acting on someone else needs an admin, and never touches the
   * creator; granting needs an admin. */
  chat_member_change ch = {
      .conversation_id = q->conv,
      .op = op,
      .actor_id = q->user,
      .user_id = q->target,
      .now_ms = wall,
      .actor_must_be_admin = op == CHAT_MEMBER_ADMIN_GRANT ||
                             (!self && (op == CHAT_MEMBER_REMOVE ||
                                        op == CHAT_MEMBER_ADMIN_REVOKE)),
      .protect_creator = !self && (op == CHAT_MEMBER_REMOVE ||
                                   op == CHAT_MEMBER_ADMIN_REVOKE),
      .max_members = op == CHAT_MEMBER_ADD ? srv->s.max_group_members : 0,
      .message_id = ids[0],
      .server_ts = wall,
      .body = {q->body_text, strlen(q->body_text)},
      .promote_message_id = ids[1],
      .promote_suffix = {q->promote_suffix, strlen(q->promote_suffix)}};
  q->chg_op = op;
  q->answer_view = op != CHAT_MEMBER_REMOVE;
  q->written = false;
  begin(q, 200);
  chat_op *cop;
  CHAT__CALL(srv, &q->base, on_changed, 0, cop,
             srv->store.member_change(srv->store.self, &ch, &q->res,
                                      change_view, q, cop));
}

static void grant_admin_gated(rq *q, const conv_entry *c) {
  const char *user = q->body ? body_id(q->body, "user_id") : NULL;
  if (!user) {
    fail(q, 400, "bad_request", "\"user_id\" must be a user id");
    return;
  }
  if (c->type != CHAT_CONVERSATION_GROUP) {
    fail(q, 409, "conflict", "only groups have admins");
    return;
  }
  start_change(q, c, CHAT_MEMBER_ADMIN_GRANT, user);
}

static void revoke_admin_gated(rq *q, const conv_entry *c) {
  if (!chat_id_valid(q->arg, strlen(q->arg))) {
    fail(q, 404, "not_found", "not a member");
    return;
  }
  if (c->type != CHAT_CONVERSATION_GROUP) {
    fail(q, 409, "conflict", "only groups have admins");
    return;
  }
  start_change(q, c, CHAT_MEMBER_ADMIN_REVOKE, q->arg);
}

static void add_member_gated(rq *q, const conv_entry *c) {
  chat_server *srv = q->srv;
  const char *user = q->body ? body_id(q->body, "user_id") : NULL;
  if (!user) {
    fail(q, 400, "bad_request", "\"user_id\" must be a user id");
    return;
  }
  if (c->type != CHAT_CONVERSATION_GROUP) {
    fail(q, 409, "conflict", "members can be added to groups only");
    return;
  }
  q->already = chat__conv_has_member(c, user);
  if (!q->already && c->n_members >= srv->s.max_group_members) {
    fail(q, 409, "conflict", "the group is full");
    return;
  }
  if (!srv->store.member_add) {
    fail(q, 501, "internal", "members not supported by the store");
    return;
  }
  if (srv->store.member_change) {
    start_change(q, c, CHAT_MEMBER_ADD, user);
    return;
  }
  if (!keep_members(q, c)) {
    store_failed(q, CHAT_ERR_NOMEM);
    return;
  }
  q->target = user;
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_member_added, 0, op,
             srv->store.member_add(srv->store.self, q->conv, user,
                                   chat__srv_wall(srv), op));
}

static void on_member_removed(chat_server *srv, chat__job *j, uint32_t idx,
                              chat_err rc) {
  (void)idx;
  rq *q = (rq *)j;
  if (rc == CHAT_ERR_NOT_FOUND) {
    fail(q, 404, "not_found", "not a member");
    return;
  }
  if (rc != CHAT_OK) {
    store_failed(q, rc);
    return;
  }
  chat__bus_forget(srv, q->conv, (const char *const *)q->members,
                   q->n_members, q->arg);
  chat__conv_forget(srv, q->conv);
  begin(q, 200);
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "conversation_id");
  chat__jw_str(&q->w, q->conv, strlen(q->conv));
  chat__jw_key(&q->w, "user_id");
  chat__jw_str(&q->w, q->arg, strlen(q->arg));
  chat__jw_key(&q->w, "removed");
  chat__jw_bool(&q->w, true);
  chat__jw_obj_end(&q->w);
  finish(q);
  reply(q);
}

static void remove_member_gated(rq *q, const conv_entry *c) {
  chat_server *srv = q->srv;
  bool self = strcmp(q->arg, q->user) == 0;
  if (!self && !srv->store.member_change) {
    fail(q, 403, "forbidden", "a member may remove only themself");
    return;
  }
  if (c->type != CHAT_CONVERSATION_GROUP) {
    fail(q, 409, "conflict",
         self ? "cannot leave a direct conversation"
              : "members of a direct conversation cannot be removed");
    return;
  }
  if (srv->store.member_change) {
    if (!chat_id_valid(q->arg, strlen(q->arg)))
      fail(q, 404, "not_found", "not a member");
    else
      start_change(q, c, CHAT_MEMBER_REMOVE, q->arg);
    return;
  }
  if (!srv->store.member_remove) {
    fail(q, 501, "internal", "members not supported by the store");
    return;
  }
  if (!keep_members(q, c)) {
    store_failed(q, CHAT_ERR_NOMEM);
    return;
  }
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_member_removed, 0, op,
             srv->store.member_remove(srv->store.self, q->conv, q->arg, op));
}

/* ---- devices and media ---- */

static void on_registered(chat_server *srv, chat__job *j, uint32_t idx,
                          chat_err rc) {
  (void)srv;
  (void)idx;
  rq *q = (rq *)j;
  if (rc != CHAT_OK) {
    store_failed(q, rc);
    return;
  }
  begin(q, 200);
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "device_id");
  chat__jw_str(&q->w, q->device, strlen(q->device));
  chat__jw_key(&q->w, "platform");
  chat__jw_str(&q->w, q->platform, q->platform_len);
  chat__jw_obj_end(&q->w);
  finish(q);
  reply(q);
}

static int register_device(rq *q) {
  chat_server *srv = q->srv;
  const chat__json *root = q->body;
  if (!root)
    return fail(q, 400, "bad_request", "body must be a JSON object");
  const chat__json *pl = chat__json_get(root, "platform");
  const chat__json *tok = chat__json_get(root, "push_token");
  if (!pl || pl->kind != CHAT__JSON_STRING ||
      (strcmp(pl->str, "apns") && strcmp(pl->str, "fcm") &&
       strcmp(pl->str, "webpush")))
    return fail(q, 400, "bad_request",
                "\"platform\" must be \"apns\", \"fcm\" or \"webpush\"");
  if (!tok || tok->kind != CHAT__JSON_STRING || tok->len == 0 ||
      tok->len > MAX_TOKEN_BYTES || memchr(tok->str, 0, tok->len))
    return fail(q, 400, "bad_request",
                "\"push_token\" must be a non-empty string");
  if (!srv->store.device_register)
    return fail(q, 501, "internal", "devices not supported by the store");
  if (q->kind == CHAT_SENDER_BOT)
    return fail(q, 403, "forbidden", "bots are never sent push");
  q->platform = pl->str;
  q->platform_len = pl->len;
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_registered, 0, op,
             srv->store.device_register(srv->store.self, q->user, q->device,
                                        pl->str, tok->str,
                                        chat__srv_wall(srv), op));
  return 0;
}

static bool content_type_ok(const char *ct) {
  /* type/subtype with optional parameters, printable ASCII, bounded. */
  size_t n = strlen(ct);
  if (n == 0 || n > 255 || !strchr(ct, '/'))
    return false;
  for (size_t i = 0; i < n; i++)
    if (ct[i] < 0x20 || ct[i] > 0x7e)
      return false;
  return true;
}

static void on_uploaded(chat_server *srv, chat__job *j, uint32_t idx,
                        chat_err rc) {
  (void)srv;
  (void)idx;
  rq *q = (rq *)j;
  if (rc != CHAT_OK) {
    store_failed(q, rc);
    return;
  }
  begin(q, 201);
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "media_id");
  chat__jw_str(&q->w, q->new_id, strlen(q->new_id));
  chat__jw_obj_end(&q->w);
  finish(q);
  reply(q);
}

static int upload_media(rq *q, const chat_http_request *req) {
  chat_server *srv = q->srv;
  if (!srv->store.media_put)
    return fail(q, 501, "internal", "media not supported by the store");
  if (req->body_len == 0)
    return fail(q, 400, "bad_request", "empty body");
  if (req->body_len > MAX_MEDIA_BYTES)
    return fail(q, 413, "too_large", "media is over 10 MiB");
  const char *ct = req->content_type ? req->content_type
                                     : "application/octet-stream";
  if (!content_type_ok(ct))
    return fail(q, 400, "bad_request", "bad Content-Type");
  if (!srv->ids_ready)
    return fail(q, 503, "unavailable", "server is starting");
  uint64_t id;
  if (chat_snowflake_next(srv->ids, chat__srv_wall(srv), &id) != CHAT_OK)
    return store_failed(q, CHAT_ERR_MODULE);
  snprintf(q->new_id, sizeof q->new_id, "m%llu", (unsigned long long)id);
  /* The bytes are borrowed for this call only; a store that answers later
   * copies them first (modules.h). */
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_uploaded, 0, op,
             srv->store.media_put(srv->store.self, q->new_id, q->user, ct,
                                  req->body, req->body_len,
                                  chat__srv_wall(srv), op));
  return 0;
}

static void on_media(void *ctx, const char *ct, const void *data,
                     size_t len) {
  rq *q = ctx;
  /* The type goes first, NUL-terminated, then the bytes: one buffer. */
  chat__buf_reset(&q->out);
  chat__buf_append(&q->out, ct, strlen(ct) + 1);
  chat__buf_append(&q->out, data, len);
  q->media_got = !q->out.oom;
}

static void on_downloaded(chat_server *srv, chat__job *j, uint32_t idx,
                          chat_err rc) {
  (void)srv;
  (void)idx;
  rq *q = (rq *)j;
  /* Denied reads as unknown: media ids are guessable, so a stranger must
   * not learn which ones exist. */
  if (rc == CHAT_ERR_NOT_FOUND || rc == CHAT_ERR_DENIED) {
    fail(q, 404, "not_found", "no such media");
    return;
  }
  if (rc != CHAT_OK || !q->media_got) {
    store_failed(q, rc != CHAT_OK ? rc : CHAT_ERR_NOMEM);
    return;
  }
  size_t ct_len = strlen(q->out.data) + 1;
  q->resp.status = 200;
  q->resp.content_type = q->out.data;
  q->resp.body = q->out.data + ct_len;
  q->resp.body_len = q->out.len - ct_len;
  q->resp.retry_after_s = 0;
  reply(q);
}

static int download_media(rq *q, const char *id) {
  chat_server *srv = q->srv;
  if (!srv->store.media_get)
    return fail(q, 501, "internal", "media not supported by the store");
  if (!chat_id_valid(id, strlen(id)))
    return fail(q, 404, "not_found", "no such media");
  chat_op *op;
  CHAT__CALL(srv, &q->base, on_downloaded, 0, op,
             srv->store.media_get(srv->store.self, id, q->user, on_media, q,
                                  op));
  return 0;
}

/* ---- routing ---- */

static bool is(const char *a, const char *b) { return strcmp(a, b) == 0; }

static int route(rq *q, const chat_http_request *req) {
  const char *path = req->path;
  const char *m = req->method;
  if (strncmp(path, "/api/v1/", 8) != 0)
    return fail(q, 404, "not_found", "no such endpoint");
  const char *seg[8];
  bool bad = false;
  size_t n = split_path(q, path + 8, seg, &bad);
  if (bad)
    return fail(q, 404, "not_found", "no such endpoint");
  bool get = is(m, "GET"), post = is(m, "POST"), del = is(m, "DELETE");
  if (n >= 1 && is(seg[0], "conversations")) {
    /* 405 only for a path some route has with another method; any other
     * path is unknown (404). */
    bool msgs = n >= 3 && is(seg[2], "messages");
    bool mems = n >= 3 && is(seg[2], "members");
    if (n == 1) {
      if (post) {
        q->body = parse_body(q, req);
        return create_conversation(q);
      }
      return get ? list_conversations(q)
                 : fail(q, 405, "method_not_allowed", "use GET or POST");
    }
    if (n == 2)
      return get ? member_gate(q, seg[1], get_conversation_gated)
                 : fail(q, 405, "method_not_allowed", "use GET");
    if (n == 3 && msgs)
      return get ? member_gate(q, seg[1], list_messages_gated)
                 : fail(q, 405, "method_not_allowed", "use GET");
    if (n == 3 && mems) {
      if (!post)
        return fail(q, 405, "method_not_allowed", "use POST");
      q->body = parse_body(q, req);
      return member_gate(q, seg[1], add_member_gated);
    }
    if (n == 4 && mems) {
      if (!del)
        return fail(q, 405, "method_not_allowed", "use DELETE");
      q->arg = seg[3];
      return member_gate(q, seg[1], remove_member_gated);
    }
    bool adms = n >= 3 && is(seg[2], "admins");
    if ((n == 3 || n == 4) && adms && !q->srv->store.member_change)
      return fail(q, 501, "internal", "admins not supported by the store");
    if (n == 3 && adms) {
      if (!post)
        return fail(q, 405, "method_not_allowed", "use POST");
      q->body = parse_body(q, req);
      return member_gate(q, seg[1], grant_admin_gated);
    }
    if (n == 4 && adms) {
      if (!del)
        return fail(q, 405, "method_not_allowed", "use DELETE");
      q->arg = seg[3];
      return member_gate(q, seg[1], revoke_admin_gated);
    }
    if (n == 5 && msgs && is(seg[4], "receipts")) {
      if (!get)
        return fail(q, 405, "method_not_allowed", "use GET");
      q->arg = seg[3];
      return member_gate(q, seg[1], get_receipts_gated);
    }
    return fail(q, 404, "not_found", "no such endpoint");
  }
  if (n == 1 && is(seg[0], "devices")) {
    if (!post)
      return fail(q, 405, "method_not_allowed", "use POST");
    q->body = parse_body(q, req);
    return register_device(q);
  }
  if (n == 1 && is(seg[0], "media"))
    return post ? upload_media(q, req)
                : fail(q, 405, "method_not_allowed", "use POST");
  if (n == 2 && is(seg[0], "media"))
    return get ? download_media(q, seg[1])
               : fail(q, 405, "method_not_allowed", "use GET");
  return fail(q, 404, "not_found", "no such endpoint");
}

/* Fields of chat_http_response by version, for answers copied out. */
static const size_t resp_end[] = {
    0, /* version 0 is refused */
    sizeof(chat_http_response), /* V1 */
};

static void copy_resp(chat_http_response *out, const chat_http_response *in) {
  uint32_t v = out->version;
  size_t from = offsetof(chat_http_response, status);
  memcpy((char *)out + from, (const char *)in + from, resp_end[v] - from);
}

chat_err chat_server_http(chat_server *srv, const chat_http_request *req,
                          chat_http_response *resp, chat_time_ms now) {
  if (!srv)
    return CHAT_ERR_INVAL;
  if (!req || !resp)
    return chat__srv_fail(srv, CHAT_ERR_INVAL, "%s: NULL",
                          !req ? "req" : "resp");
  if (!chat__version_ok(req->version, CHAT_HTTP_REQUEST_V1) ||
      !chat__version_ok(resp->version, CHAT_HTTP_RESPONSE_V1) ||
      (req->identity &&
       !chat__version_ok(req->identity->version, CHAT_IDENTITY_V1))) {
    chat_errbuf e;
    if (!chat__version_ok(req->version, CHAT_HTTP_REQUEST_V1))
      chat__version_refused(&e, "req", req->version, CHAT_HTTP_REQUEST_V1);
    else if (!chat__version_ok(resp->version, CHAT_HTTP_RESPONSE_V1))
      chat__version_refused(&e, "resp", resp->version,
                            CHAT_HTTP_RESPONSE_V1);
    else
      chat__version_refused(&e, "req.identity", req->identity->version,
                            CHAT_IDENTITY_V1);
    return chat__srv_fail(srv, CHAT_ERR_INVAL, "%s", e.msg);
  }
  if (!req->method || !req->path)
    return chat__srv_fail(srv, CHAT_ERR_INVAL, "req.%s: NULL",
                          !req->method ? "method" : "path");
  chat__srv_clock(srv, now);
  rq *q = chat__calloc(&srv->a, 1, sizeof *q);
  if (!q) {
    static const char oom[] =
        "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
    chat_http_response r = {.version = CHAT_HTTP_RESPONSE_V1,
                            .status = 503,
                            .content_type = "application/json",
                            .body = oom,
                            .body_len = sizeof oom - 1};
    copy_resp(resp, &r);
    return CHAT_OK;
  }
  chat__job_init(&q->base, rq_release);
  q->srv = srv;
  q->tag = req->tag;
  q->in_http = true;
  q->resp.version = CHAT_HTTP_RESPONSE_V1;
  chat__arena_init(&q->ar, &srv->a);
  chat__buf_init(&q->out, &srv->a);
  chat__enter(srv);
  const chat_identity *id = req->identity;
  uint32_t retry_s = 0;
  if (!id || !id->user_id[0]) {
    (void)fail(q, 401, "unauthorized", "missing or invalid token");
  } else if (!chat__rest_rate_take(srv, id->user_id, now, &retry_s)) {
    srv->st.rest_limited_total++;
    (void)fail_retry(q, 429, "rate_limited", "too many requests", retry_s);
  } else {
    snprintf(q->user, sizeof q->user, "%s", id->user_id);
    snprintf(q->device, sizeof q->device, "%s", id->device_id);
    q->kind = id->kind;
    if (req->query)
      q->query = chat__arena_strndup(&q->ar, req->query, strlen(req->query));
    if (req->query && !q->query)
      (void)store_failed(q, CHAT_ERR_NOMEM);
    else
      (void)route(q, req);
  }
  q->in_http = false;
  chat_err rc;
  if (q->answered) {
    /* The answer lives in srv->rest_out until the next call. */
    chat__buf t = srv->rest_out;
    srv->rest_out = q->out;
    q->out = t;
    copy_resp(resp, &q->resp);
    rc = CHAT_OK;
  } else {
    q->listed = true;
    q->prev = NULL;
    q->next = srv->rest_pending;
    if (srv->rest_pending)
      srv->rest_pending->prev = q;
    srv->rest_pending = q;
    rc = CHAT_PENDING;
  }
  chat__job_unref(srv, &q->base);
  chat__leave(srv);
  return rc;
}

chat_err chat_server_http_cancel(chat_server *srv, void *tag) {
  if (!srv)
    return CHAT_ERR_INVAL;
  bool any = false;
  for (rq *q = srv->rest_pending; q; q = q->next)
    if (q->tag == tag) {
      q->cancelled = true;
      any = true;
    }
  return any ? CHAT_OK : CHAT_ERR_NOT_FOUND;
}

void chat__rest_free(chat_server *srv) {
  /* Requests still waiting are released with the ops they wait on. */
  for (rq *q = srv->rest_pending; q; q = q->next)
    q->cancelled = true;
}

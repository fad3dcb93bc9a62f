/* The REST API of PROTOCOL.md section 5, sans-I/O: parsed request in,
 * status and JSON body out. The transport does HTTP and authentication;
 * every rule about who may see or change what lives here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

#define MAX_MEDIA_BYTES (10u << 20)
#define MAX_TOKEN_BYTES 4096
#define PAGE_DEFAULT 50
#define PAGE_MAX 200

typedef struct rq {
  chat_server *srv;
  const chat_http_request *req;
  chat_http_response *resp;
  const char *user;
  chat__arena ar;
  chat__jw w;
} rq;

/* ---- answers ---- */

static void begin(rq *q, int status) {
  chat__buf_reset(&q->srv->rest_out);
  chat__jw_init(&q->w, &q->srv->rest_out);
  q->resp->status = status;
  q->resp->content_type = "application/json";
}

static void finish(rq *q) {
  chat__buf *b = &q->srv->rest_out;
  if (b->oom) {
    /* A fixed body, so that even this answer needs no memory. */
    static const char oom[] =
        "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
    q->resp->status = 500;
    q->resp->body = oom;
    q->resp->body_len = sizeof oom - 1;
    return;
  }
  q->resp->body = b->data;
  q->resp->body_len = b->len;
}

static int fail(rq *q, int status, const char *code, const char *msg) {
  begin(q, status);
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
  return 0;
}

static int store_failed(rq *q, chat_err rc) {
  q->srv->st.store_errors_total++;
  fail(q, rc == CHAT_ERR_NOMEM ? 503 : 500, "internal",
       rc == CHAT_ERR_NOMEM ? "out of memory" : "storage failed");
  return 0;
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
  const char *s = q->req->query;
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

static const chat__json *parse_body(rq *q) {
  chat__json *root;
  if (!q->req->body || q->req->body_len == 0)
    return NULL;
  if (chat__json_parse(&q->ar, q->req->body, q->req->body_len, 8, &root,
                       NULL) != CHAT_OK ||
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

/* ---- conversation helpers ---- */

typedef struct conv_out {
  rq *q;
  bool written;
} conv_out;

static void write_conv(void *ctx, const chat_conversation *c) {
  conv_out *co = ctx;
  chat__jw_conversation_object(&co->q->w, c);
  co->written = true;
}

/* Membership gate for routes under a conversation: 404 unknown, 403 not a
 * member (PROTOCOL.md section 7). */
static const conv_entry *member_gate(rq *q, const char *conv) {
  if (!chat_id_valid(conv, strlen(conv))) {
    fail(q, 404, "not_found", "no such conversation");
    return NULL;
  }
  chat_err err = CHAT_OK;
  const conv_entry *c = chat__conv_get(q->srv, conv, &err);
  if (!c) {
    if (err == CHAT_ERR_NOT_FOUND)
      fail(q, 404, "not_found", "no such conversation");
    else
      store_failed(q, err);
    return NULL;
  }
  if (!chat__conv_has_member(c, q->user)) {
    fail(q, 403, "not_member", "not a member of this conversation");
    return NULL;
  }
  return c;
}

/* The `conversation` frame for users added to a conversation. */
void chat__notify_added(chat_server *srv, const chat_conversation *c,
                        const char *const *users, size_t n) {
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_CONVERSATION,
                  .conversation = c};
  chat__shared_frame *sf = chat__frame_make(srv, &f);
  if (!sf)
    return;
  chat__deliver(srv, sf, users, n, NULL, NULL, NULL, NULL);
  chat__frame_unref(srv, sf);
}

typedef struct notify_ctx {
  chat_server *srv;
  const char *skip; /* the user who needs no notification */
  const char *only; /* notify just this user; NULL: every other member */
} notify_ctx;

/* Emitted by the store: send the `conversation` frame to the added users. */
static void on_notify(void *ctx, const chat_conversation *c) {
  notify_ctx *nc = ctx;
  if (nc->only) {
    chat__notify_added(nc->srv, c, &nc->only, 1);
    return;
  }
  const char *stack[64] = {0};
  const char **others = stack;
  if (c->n_members > 64 &&
      !(others = chat__alloc(&nc->srv->a, c->n_members * sizeof *others)))
    return;
  size_t n = 0;
  for (size_t i = 0; i < c->n_members; i++)
    if (strcmp(c->members[i], nc->skip) != 0)
      others[n++] = c->members[i];
  chat__notify_added(nc->srv, c, others, n);
  if (others != stack)
    chat__free(&nc->srv->a, others);
}

static int create_conversation(rq *q) {
  chat_server *srv = q->srv;
  const chat__json *root = parse_body(q);
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
  uint64_t id;
  if (chat_snowflake_next(srv->ids, chat__srv_wall(srv), &id) != CHAT_OK)
    return store_failed(q, CHAT_ERR_MODULE);
  char conv_id[32];
  snprintf(conv_id, sizeof conv_id, "c%llu", (unsigned long long)id);
  chat_conversation_new cn = {
      .conversation_id = conv_id,
      .type = t,
      .name = name && name->kind == CHAT__JSON_STRING
                  ? (chat_str){name->str, name->len}
                  : (chat_str){NULL, 0},
      .created_by = q->user,
      .members = ids,
      .n_members = n,
      .now_ms = chat__srv_wall(srv)};
  begin(q, 201);
  conv_out co = {q, false};
  bool existed = false;
  chat_err rc = srv->store.conversation_create(srv->store.self, &cn, &existed,
                                               write_conv, &co);
  if (rc == CHAT_OK && !co.written)
    rc = CHAT_ERR_MODULE;
  if (rc != CHAT_OK)
    return rc == CHAT_ERR_CONFLICT
               ? fail(q, 409, "conflict", "conversation id taken")
               : store_failed(q, rc);
  if (existed) {
    q->resp->status = 200;
  } else {
    /* Everyone but the creator learns of the new conversation now. */
    notify_ctx nc = {srv, q->user, NULL};
    srv->store.conversation_get(srv->store.self, conv_id, NULL, on_notify,
                                &nc);
  }
  finish(q);
  return 0;
}

static int list_conversations(rq *q) {
  bool bad = false;
  uint32_t limit;
  if (!query_limit(q, &limit, &bad))
    return fail(q, 400, "bad_request", "limit must be 1..200");
  const char *cursor = query_get(q, "cursor", &bad);
  if (bad)
    return fail(q, 400, "bad_request", "malformed query");
  char next[CHAT_CURSOR_BUF] = "";
  begin(q, 200);
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "conversations");
  chat__jw_arr_begin(&q->w);
  conv_out co = {q, false};
  chat_err rc = q->srv->store.conversations_of(
      q->srv->store.self, q->user, cursor, limit, write_conv, &co, next);
  if (rc == CHAT_ERR_INVAL)
    return fail(q, 400, "bad_request", "malformed cursor");
  if (rc != CHAT_OK)
    return store_failed(q, rc);
  chat__jw_arr_end(&q->w);
  chat__jw_key(&q->w, "next_cursor");
  if (next[0])
    chat__jw_str(&q->w, next, strlen(next));
  else
    chat__jw_null(&q->w);
  chat__jw_obj_end(&q->w);
  finish(q);
  return 0;
}

static int get_conversation(rq *q, const char *conv) {
  if (!member_gate(q, conv))
    return 0;
  begin(q, 200);
  conv_out co = {q, false};
  chat_err rc = q->srv->store.conversation_get(q->srv->store.self, conv,
                                               q->user, write_conv, &co);
  if (rc == CHAT_OK && !co.written)
    rc = CHAT_ERR_MODULE;
  if (rc != CHAT_OK)
    return store_failed(q, rc);
  finish(q);
  return 0;
}

typedef struct page {
  rq *q;
  uint32_t n, limit;
} page;

static void write_msg(void *ctx, const chat_message *m) {
  page *p = ctx;
  /* One more than asked tells whether there is more. */
  if (p->n++ < p->limit)
    chat__jw_message_object(&p->q->w, m);
}

static bool parse_msgid(const char *s, uint64_t *out) {
  return s && chat_message_id_parse(s, strlen(s), out) == CHAT_OK;
}

static int list_messages(rq *q, const char *conv) {
  if (!member_gate(q, conv))
    return 0;
  bool bad = false;
  uint32_t limit;
  if (!query_limit(q, &limit, &bad))
    return fail(q, 400, "bad_request", "limit must be 1..200");
  const char *before = query_get(q, "before", &bad);
  const char *after = query_get(q, "after", &bad);
  if (bad)
    return fail(q, 400, "bad_request", "malformed query");
  if (before && after)
    return fail(q, 400, "bad_request", "give before or after, not both");
  chat_page_dir dir = CHAT_PAGE_LATEST;
  uint64_t anchor = 0;
  if (before || after) {
    if (!parse_msgid(before ? before : after, &anchor))
      return fail(q, 400, "bad_id", "not a message id");
    dir = before ? CHAT_PAGE_BEFORE : CHAT_PAGE_AFTER;
  }
  begin(q, 200);
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "messages");
  chat__jw_arr_begin(&q->w);
  page p = {q, 0, limit};
  chat_err rc = q->srv->store.messages(q->srv->store.self, conv, dir, anchor,
                                       limit + 1, write_msg, &p);
  if (rc != CHAT_OK)
    return store_failed(q, rc);
  chat__jw_arr_end(&q->w);
  chat__jw_key(&q->w, "has_more");
  chat__jw_bool(&q->w, p.n > limit);
  chat__jw_obj_end(&q->w);
  finish(q);
  return 0;
}

static void member_state(void *ctx, const char *member, int state) {
  rq *q = ctx;
  static const char *const names[] = {"sent", "delivered", "read"};
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "user_id");
  chat__jw_str(&q->w, member, strlen(member));
  chat__jw_key(&q->w, "state");
  const char *st = names[state >= 0 && state <= 2 ? state : 0];
  chat__jw_str(&q->w, st, strlen(st));
  chat__jw_obj_end(&q->w);
}

static int get_receipts(rq *q, const char *conv, const char *mid) {
  const conv_entry *c = member_gate(q, conv);
  if (!c)
    return 0;
  uint64_t id;
  if (!parse_msgid(mid, &id))
    return fail(q, 400, "bad_id", "not a message id");
  if (!q->srv->store.receipts)
    return fail(q, 501, "internal", "receipts not supported by the store");
  /* Per-member states only where they exist: direct chats and groups up to
   * the delivered threshold. */
  bool with_members = c->type == CHAT_CONVERSATION_DIRECT ||
                      c->n_members <= q->srv->s.delivered_max_members;
  uint32_t delivered = 0, read = 0;
  begin(q, 200);
  chat__jw_obj_begin(&q->w);
  if (with_members) {
    chat__jw_key(&q->w, "members");
    chat__jw_arr_begin(&q->w);
  }
  chat_err rc = q->srv->store.receipts(q->srv->store.self, conv, id,
                                       &delivered, &read,
                                       with_members ? member_state : NULL, q);
  if (rc == CHAT_ERR_NOT_FOUND)
    return fail(q, 404, "not_found", "no such message");
  if (rc != CHAT_OK)
    return store_failed(q, rc);
  if (with_members)
    chat__jw_arr_end(&q->w);
  chat__jw_key(&q->w, "delivered");
  chat__jw_uint(&q->w, delivered);
  chat__jw_key(&q->w, "read");
  chat__jw_uint(&q->w, read);
  chat__jw_obj_end(&q->w);
  finish(q);
  return 0;
}

/* Every gateway keeps its own membership cache (convs.c). After a member
 * change, each gateway holding a device of a member, or of the user added
 * or removed, is told to forget the conversation: {"k":"forget","c":id}.
 * The bus is fire-and-forget, like every other bus message. */
typedef struct gw_set {
  chat_server *srv;
  char (*gw)[CHAT_ID_BUF];
  size_t n, cap;
  bool oom;
} gw_set;

static void on_gateway(void *ctx, const char *gw, const char *device) {
  (void)device;
  gw_set *gs = ctx;
  if (strcmp(gw, gs->srv->gateway_id) == 0 || strlen(gw) >= CHAT_ID_BUF)
    return;
  for (size_t i = 0; i < gs->n; i++)
    if (strcmp(gs->gw[i], gw) == 0)
      return;
  if (gs->n == gs->cap) {
    size_t cap = gs->cap ? gs->cap * 2 : 8;
    char(*v)[CHAT_ID_BUF] = chat__realloc(&gs->srv->a, gs->gw, cap * sizeof *v);
    if (!v) {
      gs->oom = true;
      return;
    }
    gs->gw = v;
    gs->cap = cap;
  }
  memcpy(gs->gw[gs->n++], gw, strlen(gw) + 1);
}

static void bus_forget(chat_server *srv, const char *conv,
                       const conv_entry *c, const char *user) {
  if (!srv->has_presence || !srv->has_bus)
    return;
  gw_set gs = {.srv = srv};
  for (size_t i = 0; i <= c->n_members; i++) {
    const char *u = i < c->n_members ? c->members[i] : user;
    if (srv->presence.locate(srv->presence.self, u, on_gateway, &gs) !=
        CHAT_OK)
      srv->st.bus_publish_errors_total++;
  }
  if (gs.oom)
    srv->st.bus_publish_errors_total++;
  chat__buf_reset(&srv->tmp);
  chat__jw w;
  chat__jw_init(&w, &srv->tmp);
  chat__jw_obj_begin(&w);
  chat__jw_key(&w, "k");
  chat__jw_str(&w, "forget", 6);
  chat__jw_key(&w, "c");
  chat__jw_str(&w, conv, strlen(conv));
  chat__jw_obj_end(&w);
  for (size_t i = 0; i < gs.n; i++) {
    if (!srv->tmp.oom && srv->bus.publish(srv->bus.self, gs.gw[i],
                                          srv->tmp.data,
                                          srv->tmp.len) == CHAT_OK)
      srv->st.bus_published_total++;
    else
      srv->st.bus_publish_errors_total++;
  }
  chat__free(&srv->a, gs.gw);
}

static int add_member(rq *q, const char *conv) {
  chat_server *srv = q->srv;
  const conv_entry *c = member_gate(q, conv);
  if (!c)
    return 0;
  const chat__json *root = parse_body(q);
  const char *user = root ? body_id(root, "user_id") : NULL;
  if (!user)
    return fail(q, 400, "bad_request", "\"user_id\" must be a user id");
  if (c->type != CHAT_CONVERSATION_GROUP)
    return fail(q, 409, "conflict", "members can be added to groups only");
  bool already = chat__conv_has_member(c, user);
  if (!already && c->n_members >= srv->s.max_group_members)
    return fail(q, 409, "conflict", "the group is full");
  chat_err rc = srv->store.member_add(srv->store.self, conv, user,
                                      chat__srv_wall(srv));
  if (rc != CHAT_OK)
    return rc == CHAT_ERR_NOT_FOUND
               ? fail(q, 404, "not_found", "no such conversation")
               : store_failed(q, rc);
  if (!already)
    bus_forget(srv, conv, c, user);
  chat__conv_forget(srv, conv); /* c dies here */
  begin(q, 200);
  conv_out co = {q, false};
  rc = srv->store.conversation_get(srv->store.self, conv, q->user, write_conv,
                                   &co);
  if (rc == CHAT_OK && !co.written)
    rc = CHAT_ERR_MODULE;
  if (rc != CHAT_OK)
    return store_failed(q, rc);
  finish(q);
  if (!already) {
    /* The added user's own view goes into its `conversation` frame; the
     * answer above stays in rest_out, which notifying does not touch. */
    notify_ctx nc = {srv, NULL, user};
    srv->store.conversation_get(srv->store.self, conv, user, on_notify, &nc);
  }
  return 0;
}

static int remove_member(rq *q, const char *conv, const char *user) {
  chat_server *srv = q->srv;
  const conv_entry *c = member_gate(q, conv);
  if (!c)
    return 0;
  if (strcmp(user, q->user) != 0)
    return fail(q, 403, "forbidden", "a member may remove only themself");
  if (c->type != CHAT_CONVERSATION_GROUP)
    return fail(q, 409, "conflict", "cannot leave a direct conversation");
  chat_err rc = srv->store.member_remove(srv->store.self, conv, user);
  if (rc == CHAT_ERR_NOT_FOUND)
    return fail(q, 404, "not_found", "not a member");
  if (rc != CHAT_OK)
    return store_failed(q, rc);
  bus_forget(srv, conv, c, user);
  chat__conv_forget(srv, conv); /* c dies here */
  begin(q, 200);
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "conversation_id");
  chat__jw_str(&q->w, conv, strlen(conv));
  chat__jw_key(&q->w, "user_id");
  chat__jw_str(&q->w, user, strlen(user));
  chat__jw_key(&q->w, "removed");
  chat__jw_bool(&q->w, true);
  chat__jw_obj_end(&q->w);
  finish(q);
  return 0;
}

static int register_device(rq *q) {
  chat_server *srv = q->srv;
  const chat__json *root = parse_body(q);
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
  chat_err rc = srv->store.device_register(
      srv->store.self, q->user, q->req->identity->device_id, pl->str,
      tok->str, chat__srv_wall(srv));
  if (rc != CHAT_OK)
    return store_failed(q, rc);
  begin(q, 200);
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "device_id");
  const char *dev = q->req->identity->device_id;
  chat__jw_str(&q->w, dev, strlen(dev));
  chat__jw_key(&q->w, "platform");
  chat__jw_str(&q->w, pl->str, pl->len);
  chat__jw_obj_end(&q->w);
  finish(q);
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

static int upload_media(rq *q) {
  chat_server *srv = q->srv;
  if (!srv->store.media_put)
    return fail(q, 501, "internal", "media not supported by the store");
  if (q->req->body_len == 0)
    return fail(q, 400, "bad_request", "empty body");
  if (q->req->body_len > MAX_MEDIA_BYTES)
    return fail(q, 413, "too_large", "media is over 10 MiB");
  const char *ct = q->req->content_type ? q->req->content_type
                                        : "application/octet-stream";
  if (!content_type_ok(ct))
    return fail(q, 400, "bad_request", "bad Content-Type");
  uint64_t id;
  if (chat_snowflake_next(srv->ids, chat__srv_wall(srv), &id) != CHAT_OK)
    return store_failed(q, CHAT_ERR_MODULE);
  char media_id[32];
  snprintf(media_id, sizeof media_id, "m%llu", (unsigned long long)id);
  chat_err rc = srv->store.media_put(srv->store.self, media_id, q->user, ct,
                                     q->req->body, q->req->body_len,
                                     chat__srv_wall(srv));
  if (rc != CHAT_OK)
    return store_failed(q, rc);
  begin(q, 201);
  chat__jw_obj_begin(&q->w);
  chat__jw_key(&q->w, "media_id");
  chat__jw_str(&q->w, media_id, strlen(media_id));
  chat__jw_obj_end(&q->w);
  finish(q);
  return 0;
}

typedef struct media_out {
  rq *q;
  bool got;
} media_out;

static void on_media(void *ctx, const char *ct, const void *data,
                     size_t len) {
  media_out *mo = ctx;
  chat_server *srv = mo->q->srv;
  /* The type goes first, NUL-terminated, then the bytes: one buffer that
   * lives until the next request. */
  chat__buf_reset(&srv->rest_out);
  chat__buf_append(&srv->rest_out, ct, strlen(ct) + 1);
  chat__buf_append(&srv->rest_out, data, len);
  mo->got = !srv->rest_out.oom;
}

static int download_media(rq *q, const char *id) {
  chat_server *srv = q->srv;
  if (!srv->store.media_get)
    return fail(q, 501, "internal", "media not supported by the store");
  if (!chat_id_valid(id, strlen(id)))
    return fail(q, 404, "not_found", "no such media");
  media_out mo = {q, false};
  chat_err rc = srv->store.media_get(srv->store.self, id, q->user, on_media,
                                     &mo);
  /* Denied reads as unknown: media ids are guessable, so a stranger must
   * not learn which ones exist. */
  if (rc == CHAT_ERR_NOT_FOUND || rc == CHAT_ERR_DENIED)
    return fail(q, 404, "not_found", "no such media");
  if (rc != CHAT_OK || !mo.got)
    return store_failed(q, rc != CHAT_OK ? rc : CHAT_ERR_NOMEM);
  size_t ct_len = strlen(srv->rest_out.data) + 1;
  q->resp->status = 200;
  q->resp->content_type = srv->rest_out.data;
  q->resp->body = srv->rest_out.data + ct_len;
  q->resp->body_len = srv->rest_out.len - ct_len;
  return 0;
}

static bool is(const char *a, const char *b) { return strcmp(a, b) == 0; }

static int route(rq *q) {
  const char *path = q->req->path;
  const char *m = q->req->method;
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
    if (n == 1)
      return post ? create_conversation(q)
             : get ? list_conversations(q)
                   : fail(q, 405, "method_not_allowed", "use GET or POST");
    if (n == 2)
      return get ? get_conversation(q, seg[1])
                 : fail(q, 405, "method_not_allowed", "use GET");
    if (n == 3 && msgs)
      return get ? list_messages(q, seg[1])
                 : fail(q, 405, "method_not_allowed", "use GET");
    if (n == 3 && mems)
      return post ? add_member(q, seg[1])
                  : fail(q, 405, "method_not_allowed", "use POST");
    if (n == 4 && mems)
      return del ? remove_member(q, seg[1], seg[3])
                 : fail(q, 405, "method_not_allowed", "use DELETE");
    if (n == 5 && msgs && is(seg[4], "receipts"))
      return get ? get_receipts(q, seg[1], seg[3])
                 : fail(q, 405, "method_not_allowed", "use GET");
    return fail(q, 404, "not_found", "no such endpoint");
  }
  if (n == 1 && is(seg[0], "devices"))
    return post ? register_device(q)
                : fail(q, 405, "method_not_allowed", "use POST");
  if (n == 1 && is(seg[0], "media"))
    return post ? upload_media(q)
                : fail(q, 405, "method_not_allowed", "use POST");
  if (n == 2 && is(seg[0], "media"))
    return get ? download_media(q, seg[1])
               : fail(q, 405, "method_not_allowed", "use GET");
  fail(q, 404, "not_found", "no such endpoint");
  return 0;
}

chat_err chat_server_http(chat_server *srv, const chat_http_request *req,
                          chat_http_response *resp, chat_time_ms now) {
  if (!srv || !req || !resp || !req->method || !req->path)
    return CHAT_ERR_INVAL;
  chat__srv_clock(srv, now);
  memset(resp, 0, sizeof *resp);
  rq q = {.srv = srv, .req = req, .resp = resp};
  chat__arena_init(&q.ar, &srv->a);
  if (!req->identity || !req->identity->user_id[0]) {
    (void)fail(&q, 401, "unauthorized", "missing or invalid token");
  } else {
    q.user = req->identity->user_id;
    (void)route(&q);
  }
  chat__arena_free(&q.ar);
  return CHAT_OK;
}

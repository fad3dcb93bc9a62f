/* REST answer bodies (PROTOCOL.md section 5) -> messages and conversations,
 * straight from the strict JSON reader: a messages page, a conversation
 * list page, one conversation, an error object. The message and
 * conversation objects are held to the same rules as in frames (ids,
 * canonical message ids, integer ranges, size limits); optional fields
 * given as null count as absent, unknown members are ignored (the
 * contract may add fields). Every refusal names the field path
 * ("messages[3].message_id: ...") for the report that reaches the app. */
#include "client/client_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"

#define MAX_NAME_BYTES 256

typedef struct rd {
  chat__arena *ar;
  const chat__rest_limits *lim;
  char *err;
  size_t errcap;
  char path[96]; /* the member being read, for messages */
} rd;

static chat_err fail(rd *d, chat_err e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static chat_err fail(rd *d, chat_err e, const char *fmt, ...) {
  if (d->err && d->errcap) {
    int k = snprintf(d->err, d->errcap, "%s%s", d->path,
                     d->path[0] ? ": " : "");
    if (k < 0)
      k = 0;
    if ((size_t)k < d->errcap) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(d->err + k, d->errcap - (size_t)k, fmt, ap);
      va_end(ap);
    }
  }
  return e;
}

/* Set d->path to "<prefix><key>" for the member about to be read. */
static void at(rd *d, const char *prefix, const char *key) {
  snprintf(d->path, sizeof d->path, "%s%s", prefix, key);
}

static const char *kind_name(chat__json_kind k) {
  switch (k) {
  case CHAT__JSON_NULL: return "null";
  case CHAT__JSON_FALSE:
  case CHAT__JSON_TRUE: return "a boolean";
  case CHAT__JSON_NUMBER: return "a number";
  case CHAT__JSON_STRING: return "a string";
  case CHAT__JSON_ARRAY: return "an array";
  default: return "an object";
  }
}

static chat_err wrong(rd *d, const char *want, const chat__json *v) {
  return fail(d, CHAT_ERR_FIELD_TYPE, "must be %s, not %s", want,
              kind_name(v->kind));
}

/* The member, or NULL when absent or null. */
static const chat__json *opt(const chat__json *obj, const char *key) {
  const chat__json *v = chat__json_get(obj, key);
  return v && v->kind != CHAT__JSON_NULL ? v : NULL;
}

static chat_err need(rd *d, const chat__json *obj, const char *key,
                     const chat__json **v) {
  *v = chat__json_get(obj, key);
  return *v ? CHAT_OK : fail(d, CHAT_ERR_MISSING_FIELD, "missing");
}

static chat_err as_id(rd *d, const chat__json *v, const char **out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong(d, "a string id", v);
  if (!chat_id_valid(v->str, v->len))
    return fail(d, CHAT_ERR_BAD_ID, "not 1..64 bytes of [A-Za-z0-9_.:@-]");
  *out = v->str;
  return CHAT_OK;
}

static chat_err as_msgid(rd *d, const chat__json *v, uint64_t *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong(d, "a string message id", v);
  if (chat_message_id_parse(v->str, v->len, out) != CHAT_OK)
    return fail(d, CHAT_ERR_BAD_MESSAGE_ID,
                "not a canonical decimal message id");
  return CHAT_OK;
}

static chat_err as_text(rd *d, const chat__json *v, size_t max,
                        chat_str *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong(d, "a string", v);
  if (v->len > max)
    return fail(d, CHAT_ERR_TOO_LARGE, "%zu bytes is over %zu", v->len, max);
  out->ptr = v->str;
  out->len = v->len;
  return CHAT_OK;
}

static chat_err as_i64(rd *d, const chat__json *v, int64_t *out) {
  if (v->kind != CHAT__JSON_NUMBER)
    return wrong(d, "an integer", v);
  if (chat__json_int64(v, out) != CHAT_OK)
    return fail(d, CHAT_ERR_BAD_NUMBER,
                "not an integer in the signed 64-bit range");
  return CHAT_OK;
}

static chat_err as_u32(rd *d, const chat__json *v, uint32_t *out) {
  uint64_t x;
  if (v->kind != CHAT__JSON_NUMBER)
    return wrong(d, "an integer", v);
  if (chat__json_uint64(v, &x) != CHAT_OK || x > UINT32_MAX)
    return fail(d, CHAT_ERR_BAD_NUMBER, "not an integer from 0 to %u",
                (unsigned)UINT32_MAX);
  *out = (uint32_t)x;
  return CHAT_OK;
}

static chat_err as_bool(rd *d, const chat__json *v, bool *out) {
  if (v->kind != CHAT__JSON_TRUE && v->kind != CHAT__JSON_FALSE)
    return wrong(d, "a boolean", v);
  *out = v->kind == CHAT__JSON_TRUE;
  return CHAT_OK;
}

static chat_err as_ids(rd *d, const chat__json *v, uint32_t max,
                       const char *const **out, size_t *n_out) {
  if (v->kind != CHAT__JSON_ARRAY)
    return wrong(d, "an array of ids", v);
  if (v->n > max)
    return fail(d, CHAT_ERR_TOO_MANY, "%zu entries; the limit is %u", v->n,
                max);
  const char **ids = chat__arena_alloc(d->ar, (v->n ? v->n : 1) * sizeof *ids);
  if (!ids)
    return fail(d, CHAT_ERR_NOMEM, "out of memory");
  size_t i = 0;
  for (const chat__json *it = v->child; it; it = it->next, i++) {
    chat_err e = as_id(d, it, &ids[i]);
    if (e)
      return e;
  }
  *out = ids;
  *n_out = v->n;
  return CHAT_OK;
}

static chat_err as_body_type(rd *d, const chat__json *v, chat_body_type *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong(d, "a string", v);
  if (v->len == 4 && memcmp(v->str, "text", 4) == 0)
    *out = CHAT_BODY_TEXT;
  else if (v->len == 5 && memcmp(v->str, "media", 5) == 0)
    *out = CHAT_BODY_MEDIA;
  else if (v->len == 6 && memcmp(v->str, "system", 6) == 0)
    *out = CHAT_BODY_SYSTEM;
  else if (v->len == 4 && memcmp(v->str, "edit", 4) == 0)
    *out = CHAT_BODY_EDIT;
  else if (v->len == 6 && memcmp(v->str, "delete", 6) == 0)
    *out = CHAT_BODY_DELETE;
  else
    return fail(d, CHAT_ERR_BAD_VALUE,
                "must be \"text\", \"media\", \"system\", \"edit\" or "
                "\"delete\"");
  return CHAT_OK;
}

static chat_err as_sender_kind(rd *d, const chat__json *v,
                               chat_sender_kind *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong(d, "a string", v);
  if (v->len == 3 && memcmp(v->str, "bot", 3) == 0)
    *out = CHAT_SENDER_BOT;
  else if (v->len == 4 && memcmp(v->str, "user", 4) == 0)
    *out = CHAT_SENDER_USER;
  else
    return fail(d, CHAT_ERR_BAD_VALUE, "must be \"user\" or \"bot\"");
  return CHAT_OK;
}

/* Read member `key` of obj with reader(d, v, args...): required members
 * must be there (null has the wrong type), optional ones may be absent or
 * null (*has says which, when given). */
#define REQ(pfx, key, reader, ...)                                             \
  do {                                                                         \
    const chat__json *v_;                                                      \
    at(d, pfx, key);                                                           \
    chat_err e_ = need(d, obj, key, &v_);                                      \
    if (!e_)                                                                   \
      e_ = reader(d, v_, __VA_ARGS__);                                         \
    if (e_)                                                                    \
      return e_;                                                               \
  } while (0)

#define OPT(pfx, key, has, reader, ...)                                        \
  do {                                                                         \
    const chat__json *v_ = opt(obj, key);                                      \
    bool *h_ = (has);                                                          \
    if (h_)                                                                    \
      *h_ = v_ != NULL;                                                        \
    if (v_) {                                                                  \
      at(d, pfx, key);                                                         \
      chat_err e_ = reader(d, v_, __VA_ARGS__);                                \
      if (e_)                                                                  \
        return e_;                                                             \
    }                                                                          \
  } while (0)

/* The message object; pfx names it in errors ("messages[3]."). */
static chat_err message(rd *d, const char *pfx, const chat__json *obj,
                        chat_message *m) {
  memset(m, 0, sizeof *m);
  if (obj->kind != CHAT__JSON_OBJECT) {
    snprintf(d->path, sizeof d->path, "%.*s", (int)strlen(pfx) - 1, pfx);
    return wrong(d, "an object", obj);
  }
  uint32_t max_body = d->lim->max_body_bytes;
  REQ(pfx, "message_id", as_msgid, &m->message_id);
  REQ(pfx, "conversation_id", as_id, &m->conversation_id);
  REQ(pfx, "sender_id", as_id, &m->sender_id);
  REQ(pfx, "body", as_text, max_body, &m->body);
  REQ(pfx, "server_ts", as_i64, &m->server_ts);
  OPT(pfx, "client_msg_id", NULL, as_id, &m->client_msg_id);
  OPT(pfx, "reply_to", &m->has_reply_to, as_msgid, &m->reply_to);
  OPT(pfx, "media_refs", NULL, as_ids, d->lim->max_media_refs,
      &m->media_refs, &m->n_media_refs);
  OPT(pfx, "body_type", NULL, as_body_type, &m->body_type);
  /* Section 8: edit and delete entries, bots, and the state a stored
   * message is read back in. */
  OPT(pfx, "target_id", &m->has_target_id, as_msgid, &m->target_id);
  OPT(pfx, "sender_kind", NULL, as_sender_kind, &m->sender_kind);
  OPT(pfx, "edited_ts", &m->has_edited_ts, as_i64, &m->edited_ts);
  OPT(pfx, "deleted", NULL, as_bool, &m->deleted);
  bool targets =
      m->body_type == CHAT_BODY_EDIT || m->body_type == CHAT_BODY_DELETE;
  if (targets && !m->has_target_id) {
    at(d, pfx, "target_id");
    return fail(d, CHAT_ERR_MISSING_FIELD,
                "missing (required with body_type edit and delete)");
  }
  if (!targets && m->has_target_id) {
    at(d, pfx, "target_id");
    return fail(d, CHAT_ERR_BAD_VALUE,
                "only for body_type edit and delete");
  }
  if ((m->body_type == CHAT_BODY_DELETE || m->deleted) && m->body.len > 0) {
    at(d, pfx, "body");
    return fail(d, CHAT_ERR_BAD_VALUE,
                "a deleted message or a delete entry has an empty body");
  }
  return CHAT_OK;
}

static chat_err as_conv_type(rd *d, const chat__json *v,
                             chat_conversation_type *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong(d, "a string", v);
  if (v->len == 6 && memcmp(v->str, "direct", 6) == 0)
    *out = CHAT_CONVERSATION_DIRECT;
  else if (v->len == 5 && memcmp(v->str, "group", 5) == 0)
    *out = CHAT_CONVERSATION_GROUP;
  else
    return fail(d, CHAT_ERR_BAD_VALUE, "must be \"direct\" or \"group\"");
  return CHAT_OK;
}

static chat_err conversation(rd *d, const char *pfx, const chat__json *obj,
                             chat_conversation *c) {
  memset(c, 0, sizeof *c);
  if (obj->kind != CHAT__JSON_OBJECT) {
    snprintf(d->path, sizeof d->path, "%.*s", (int)strlen(pfx) - 1, pfx);
    return wrong(d, "an object", obj);
  }
  REQ(pfx, "conversation_id", as_id, &c->conversation_id);
  REQ(pfx, "type", as_conv_type, &c->type);
  REQ(pfx, "members", as_ids, d->lim->max_members, &c->members,
      &c->n_members);
  OPT(pfx, "name", NULL, as_text, MAX_NAME_BYTES, &c->name);
  const chat__json *lm = opt(obj, "last_message");
  if (lm) {
    chat_message *m = chat__arena_alloc(d->ar, sizeof *m);
    if (!m)
      return fail(d, CHAT_ERR_NOMEM, "out of memory");
    char sub[64];
    snprintf(sub, sizeof sub, "%slast_message.", pfx);
    chat_err e = message(d, sub, lm, m);
    if (e)
      return e;
    c->last_message = m;
  }
  OPT(pfx, "unread_count", NULL, as_u32, &c->unread_count);
  OPT(pfx, "last_read_message_id", &c->has_last_read, as_msgid,
      &c->last_read_message_id);
  /* Section 8; absent from an older server. */
  OPT(pfx, "admins", NULL, as_ids, d->lim->max_members, &c->admins,
      &c->n_admins);
  return CHAT_OK;
}

/* The array member `key` of root, at most max entries. */
static chat_err array(rd *d, const chat__json *obj, const char *key,
                      uint32_t max, const chat__json **out) {
  at(d, "", key);
  chat_err e = need(d, obj, key, out);
  if (e)
    return e;
  if ((*out)->kind != CHAT__JSON_ARRAY)
    return wrong(d, "an array", *out);
  if ((*out)->n > max)
    return fail(d, CHAT_ERR_TOO_MANY, "%zu entries; the limit is %u",
                (*out)->n, max);
  return CHAT_OK;
}

static chat_err messages_page(rd *d, const chat__json *obj,
                              chat__rest_answer *out) {
  const chat__json *arr;
  chat_err e = array(d, obj, "messages", d->lim->max_items, &arr);
  if (e)
    return e;
  chat_message *m = chat__arena_alloc(d->ar, (arr->n ? arr->n : 1) *
                                                 sizeof *m);
  if (!m)
    return fail(d, CHAT_ERR_NOMEM, "out of memory");
  size_t i = 0;
  for (const chat__json *it = arr->child; it; it = it->next, i++) {
    char pfx[32];
    snprintf(pfx, sizeof pfx, "messages[%zu].", i);
    if ((e = message(d, pfx, it, &m[i])))
      return e;
  }
  out->messages = m;
  out->n_messages = arr->n;
  OPT("", "has_more", NULL, as_bool, &out->has_more);
  return CHAT_OK;
}

static chat_err conversations_page(rd *d, const chat__json *obj,
                                   chat__rest_answer *out) {
  const chat__json *arr;
  chat_err e = array(d, obj, "conversations", d->lim->max_items, &arr);
  if (e)
    return e;
  chat_conversation *cv = chat__arena_alloc(d->ar, (arr->n ? arr->n : 1) *
                                                       sizeof *cv);
  if (!cv)
    return fail(d, CHAT_ERR_NOMEM, "out of memory");
  size_t i = 0;
  for (const chat__json *it = arr->child; it; it = it->next, i++) {
    char pfx[40];
    snprintf(pfx, sizeof pfx, "conversations[%zu].", i);
    if ((e = conversation(d, pfx, it, &cv[i])))
      return e;
  }
  out->conversations = cv;
  out->n_conversations = arr->n;
  /* The cursor is opaque text; a client echoes it percent-encoded. */
  OPT("", "next_cursor", NULL, as_text, CHAT__REST_MAX_CURSOR,
      &out->next_cursor);
  return CHAT_OK;
}

static chat_err error_object(rd *d, const chat__json *root,
                             chat__rest_answer *out) {
  const chat__json *obj = opt(root, "error");
  if (!obj)
    return CHAT_OK; /* not an error body: nothing to report */
  if (obj->kind != CHAT__JSON_OBJECT) {
    at(d, "", "error");
    return wrong(d, "an object", obj);
  }
  OPT("error.", "code", NULL, as_text, 64, &out->error_code);
  OPT("error.", "message", NULL, as_text, 1024, &out->error_message);
  return CHAT_OK;
}

chat_err chat__rest_decode(chat__arena *ar, chat__rest_kind kind,
                           const char *body, size_t len,
                           const chat__rest_limits *lim,
                           chat__rest_answer *out, char *err, size_t errcap) {
  memset(out, 0, sizeof *out);
  if (err && errcap)
    err[0] = 0;
  rd dd = {.ar = ar, .lim = lim, .err = err, .errcap = errcap};
  rd *d = &dd;
  if (len > lim->max_answer_bytes)
    return fail(d, CHAT_ERR_TOO_LARGE, "answer of %zu bytes is over %u", len,
                (unsigned)lim->max_answer_bytes);
  chat__json *root = NULL;
  size_t off = 0;
  chat_err e = chat__json_parse(ar, body ? body : "", len, 16, &root, &off);
  switch (e) {
  case CHAT_OK:
    break;
  case CHAT_ERR_NOMEM:
    return fail(d, e, "out of memory");
  case CHAT_ERR_BAD_UTF8:
    return fail(d, e, "invalid UTF-8 at byte %zu", off);
  case CHAT_ERR_TOO_DEEP:
    return fail(d, e, "JSON nested deeper than 16");
  case CHAT_ERR_DUPLICATE_KEY:
    return fail(d, e, "duplicate key at byte %zu", off);
  default:
    return fail(d, e, "malformed JSON at byte %zu", off);
  }
  if (root->kind != CHAT__JSON_OBJECT)
    return fail(d, CHAT_ERR_NOT_OBJECT, "the answer is not a JSON object");
  switch (kind) {
  case CHAT__REST_MESSAGES:
    return messages_page(d, root, out);
  case CHAT__REST_CONVERSATIONS:
    return conversations_page(d, root, out);
  case CHAT__REST_CONVERSATION: {
    chat_conversation *cv = chat__arena_alloc(ar, sizeof *cv);
    if (!cv)
      return fail(d, CHAT_ERR_NOMEM, "out of memory");
    if ((e = conversation(d, "", root, cv)))
      return e;
    out->conversation = cv;
    return CHAT_OK;
  }
  case CHAT__REST_ERROR:
    return error_object(d, root, out);
  }
  return fail(d, CHAT_ERR_INVAL, "unknown answer kind");
}

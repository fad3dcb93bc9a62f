/* Strict decoding of chat.v1 frames: JSON tree -> typed structs.
 *
 * Every refusal names the field and the rule it broke, because the text goes
 * straight into the `error` frame a third-party client developer reads.
 * Optional fields given as JSON null count as absent; required fields given
 * as null have the wrong type. Unknown members are ignored. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "frame_internal.h"

typedef struct dctx {
  chat_codec *c;
  chat_decode_error *e;
} dctx;

/* Records the failure (first one wins) and returns its code. */
static chat_err fail(dctx *d, chat_err err, const char *field,
                     const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static chat_err fail(dctx *d, chat_err err, const char *field,
                     const char *fmt, ...) {
  if (d->e && d->e->err == CHAT_OK) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->c->errmsg, sizeof d->c->errmsg, fmt, ap);
    va_end(ap);
    d->e->err = err;
    d->e->message = d->c->errmsg;
    d->e->field = field;
  }
  return err;
}

static void *alloc(dctx *d, size_t n) {
  return chat__arena_alloc(&d->c->arena, n);
}

static chat_err oom(dctx *d) {
  return fail(d, CHAT_ERR_NOMEM, NULL, "out of memory");
}

static const char *kind_name(chat__json_kind k) {
  switch (k) {
  case CHAT__JSON_NULL:
    return "null";
  case CHAT__JSON_FALSE:
  case CHAT__JSON_TRUE:
    return "a boolean";
  case CHAT__JSON_NUMBER:
    return "a number";
  case CHAT__JSON_STRING:
    return "a string";
  case CHAT__JSON_ARRAY:
    return "an array";
  default:
    return "an object";
  }
}

static chat_err wrong_type(dctx *d, const char *key, const char *want,
                           const chat__json *v) {
  return fail(d, CHAT_ERR_FIELD_TYPE, key, "\"%s\" must be %s, not %s", key,
              want, kind_name(v->kind));
}

/* The member, or NULL when absent or null (for optional fields). */
static const chat__json *opt(const chat__json *obj, const char *key) {
  const chat__json *v = chat__json_get(obj, key);
  return v && v->kind != CHAT__JSON_NULL ? v : NULL;
}

static chat_err need(dctx *d, const chat__json *obj, const char *key,
                     const chat__json **out) {
  *out = chat__json_get(obj, key);
  if (!*out)
    return fail(d, CHAT_ERR_MISSING_FIELD, key, "missing field \"%s\"", key);
  return CHAT_OK;
}

/* ---- typed field readers. v is present and not yet type-checked. ---- */

static chat_err as_id(dctx *d, const char *key, const chat__json *v,
                      const char **out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong_type(d, key, "a string id", v);
  if (!chat_id_valid(v->str, v->len))
    return fail(d, CHAT_ERR_BAD_ID, key,
                "\"%s\" must be 1..64 bytes of [A-Za-z0-9_.:@-]", key);
  *out = v->str;
  return CHAT_OK;
}

static chat_err as_msgid(dctx *d, const char *key, const chat__json *v,
                         uint64_t *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong_type(d, key, "a string message id", v);
  if (chat_message_id_parse(v->str, v->len, out) != CHAT_OK)
    return fail(d, CHAT_ERR_BAD_MESSAGE_ID, key,
                "\"%s\" must be a canonical decimal message id", key);
  return CHAT_OK;
}

static chat_err as_bool(dctx *d, const char *key, const chat__json *v,
                        bool *out) {
  if (v->kind != CHAT__JSON_TRUE && v->kind != CHAT__JSON_FALSE)
    return wrong_type(d, key, "a boolean", v);
  *out = v->kind == CHAT__JSON_TRUE;
  return CHAT_OK;
}

static chat_err as_text(dctx *d, const char *key, const chat__json *v,
                        size_t max, chat_str *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong_type(d, key, "a string", v);
  if (v->len > max)
    return fail(d, CHAT_ERR_TOO_LARGE, key, "\"%s\" is over %zu bytes", key,
                max);
  out->ptr = v->str;
  out->len = v->len;
  return CHAT_OK;
}

/* Codes ("code", "reason") name a condition: empty or with a NUL they name
 * none, and the encoder could not write them back. */
static chat_err as_code(dctx *d, const char *key, const chat__json *v,
                        size_t max, chat_str *out) {
  chat_err rc = as_text(d, key, v, max, out);
  if (rc != CHAT_OK)
    return rc;
  if (out->len == 0 || memchr(out->ptr, 0, out->len))
    return fail(d, CHAT_ERR_BAD_VALUE, key,
                "\"%s\" must be a non-empty code", key);
  return CHAT_OK;
}

static chat_err as_i64(dctx *d, const char *key, const chat__json *v,
                       int64_t *out) {
  if (v->kind != CHAT__JSON_NUMBER)
    return wrong_type(d, key, "an integer", v);
  if (chat__json_int64(v, out) != CHAT_OK)
    return fail(d, CHAT_ERR_BAD_NUMBER, key,
                "\"%s\" must be an integer in the signed 64-bit range", key);
  return CHAT_OK;
}

static chat_err as_u64(dctx *d, const char *key, const chat__json *v,
                       uint64_t max, uint64_t *out) {
  if (v->kind != CHAT__JSON_NUMBER)
    return wrong_type(d, key, "an integer", v);
  if (chat__json_uint64(v, out) != CHAT_OK || *out > max)
    return fail(d, CHAT_ERR_BAD_NUMBER, key,
                "\"%s\" must be an integer from 0 to %llu", key,
                (unsigned long long)max);
  return CHAT_OK;
}

static chat_err as_u32(dctx *d, const char *key, const chat__json *v,
                       uint32_t *out) {
  uint64_t x;
  chat_err rc = as_u64(d, key, v, UINT32_MAX, &x);
  *out = (uint32_t)x;
  return rc;
}

/* An array of ids, at most max of them. */
static chat_err as_id_array(dctx *d, const char *key, const chat__json *v,
                            uint32_t max, const char *const **out,
                            size_t *n_out) {
  if (v->kind != CHAT__JSON_ARRAY)
    return wrong_type(d, key, "an array of ids", v);
  if (v->n > max)
    return fail(d, CHAT_ERR_TOO_MANY, key,
                "\"%s\" has %zu entries; the limit is %u", key, v->n, max);
  const char **ids = alloc(d, v->n * sizeof *ids);
  if (!ids)
    return oom(d);
  size_t i = 0;
  for (const chat__json *it = v->child; it; it = it->next, i++) {
    chat_err rc = as_id(d, key, it, &ids[i]);
    if (rc != CHAT_OK)
      return rc;
  }
  *out = ids;
  *n_out = v->n;
  return CHAT_OK;
}

/* ---- required/optional wrappers ---- */

#define REQ(reader, key, ...)                                                  \
  do {                                                                         \
    const chat__json *v_;                                                      \
    chat_err rc_ = need(d, obj, key, &v_);                                     \
    if (rc_ == CHAT_OK)                                                        \
      rc_ = reader(d, key, v_, __VA_ARGS__);                                   \
    if (rc_ != CHAT_OK)                                                        \
      return rc_;                                                              \
  } while (0)

/* Runs the reader when the member is present and not null, and records
 * that in *has (has may be NULL). */
#define OPT(reader, key, has, ...)                                             \
  do {                                                                         \
    const chat__json *v_ = opt(obj, key);                                      \
    bool *h_ = (has);                                                          \
    if (h_)                                                                    \
      *h_ = v_ != NULL;                                                        \
    if (v_) {                                                                  \
      chat_err rc_ = reader(d, key, v_, __VA_ARGS__);                          \
      if (rc_ != CHAT_OK)                                                      \
        return rc_;                                                            \
    }                                                                          \
  } while (0)

static chat_err as_body_type(dctx *d, const char *key, const chat__json *v,
                             chat_body_type *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong_type(d, key, "a string", v);
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
    return fail(d, CHAT_ERR_BAD_VALUE, key,
                "\"%s\" must be \"text\", \"media\", \"system\", "
                "\"edit\" or \"delete\"",
                key);
  return CHAT_OK;
}

static chat_err as_sender_kind(dctx *d, const char *key, const chat__json *v,
                               chat_sender_kind *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong_type(d, key, "a string", v);
  if (v->len == 3 && memcmp(v->str, "bot", 3) == 0)
    *out = CHAT_SENDER_BOT;
  else if (v->len == 4 && memcmp(v->str, "user", 4) == 0)
    *out = CHAT_SENDER_USER;
  else
    return fail(d, CHAT_ERR_BAD_VALUE, key,
                "\"%s\" must be \"user\" or \"bot\"", key);
  return CHAT_OK;
}

/* ---- payloads ---- */

static chat_err dec_send(dctx *d, const chat__json *obj, chat_send *s) {
  REQ(as_id, "client_msg_id", &s->client_msg_id);
  REQ(as_id, "conversation_id", &s->conversation_id);
  REQ(as_text, "body", d->c->s.max_body_bytes, &s->body);
  OPT(as_msgid, "reply_to", &s->has_reply_to, &s->reply_to);
  OPT(as_id_array, "media_refs", NULL, d->c->s.max_media_refs,
      &s->media_refs, &s->n_media_refs);
  OPT(as_body_type, "body_type", NULL, &s->body_type);
  if (s->body_type != CHAT_BODY_TEXT && s->body_type != CHAT_BODY_MEDIA)
    return fail(d, CHAT_ERR_BAD_VALUE, "body_type",
                "\"body_type\" of a send must be \"text\" or \"media\"; "
                "the others are made by the server");
  if (s->body_type == CHAT_BODY_MEDIA && s->n_media_refs == 0)
    return fail(d, CHAT_ERR_BAD_VALUE, "media_refs",
                "a \"media\" message needs at least one of \"media_refs\"");
  return CHAT_OK;
}

/* edit and delete are strict like send: the same id rules and body limit,
 * and error.ref names their client_msg_id (see ref_for). */
static chat_err dec_edit(dctx *d, const chat__json *obj, chat_edit *e) {
  REQ(as_id, "client_msg_id", &e->client_msg_id);
  REQ(as_id, "conversation_id", &e->conversation_id);
  REQ(as_msgid, "target_id", &e->target_id);
  REQ(as_text, "body", d->c->s.max_body_bytes, &e->body);
  return CHAT_OK;
}

static chat_err dec_delete(dctx *d, const chat__json *obj, chat_delete *x) {
  REQ(as_id, "client_msg_id", &x->client_msg_id);
  REQ(as_id, "conversation_id", &x->conversation_id);
  REQ(as_msgid, "target_id", &x->target_id);
  return CHAT_OK;
}

static chat_err dec_mark(dctx *d, const chat__json *obj, chat_mark *m) {
  REQ(as_id, "conversation_id", &m->conversation_id);
  REQ(as_msgid, "up_to_message_id", &m->up_to_message_id);
  return CHAT_OK;
}

static chat_err dec_typing(dctx *d, const chat__json *obj, chat_typing *t,
                           chat_direction dir) {
  REQ(as_id, "conversation_id", &t->conversation_id);
  REQ(as_bool, "is_typing", &t->is_typing);
  if (dir == CHAT_DIR_TO_CLIENT)
    REQ(as_id, "user_id", &t->user_id);
  return CHAT_OK;
}

static chat_err dec_resume(dctx *d, const chat__json *obj, chat_resume *r) {
  const chat__json *ls;
  chat_err rc = need(d, obj, "last_seen", &ls);
  if (rc != CHAT_OK)
    return rc;
  if (ls->kind != CHAT__JSON_OBJECT)
    return wrong_type(d, "last_seen", "an object", ls);
  if (ls->n > d->c->s.max_resume_entries)
    return fail(d, CHAT_ERR_TOO_MANY, "last_seen",
                "\"last_seen\" has %zu conversations; the limit is %u", ls->n,
                d->c->s.max_resume_entries);
  chat_resume_entry *e = alloc(d, ls->n * sizeof *e);
  if (!e)
    return oom(d);
  size_t i = 0;
  for (const chat__json *it = ls->child; it; it = it->next, i++) {
    if (!chat_id_valid(it->key, it->key_len))
      return fail(d, CHAT_ERR_BAD_ID, "last_seen",
                  "\"last_seen\" keys must be conversation ids");
    e[i].conversation_id = it->key;
    rc = as_msgid(d, "last_seen", it, &e[i].message_id);
    if (rc != CHAT_OK)
      return rc;
  }
  r->last_seen = e;
  r->n_last_seen = ls->n;
  OPT(as_msgid, "since", &r->has_since, &r->since);
  return CHAT_OK;
}

static chat_err dec_presence_subscribe(dctx *d, const chat__json *obj,
                                       chat_presence_subscribe *p) {
  REQ(as_id_array, "user_ids", d->c->s.max_presence_ids, &p->user_ids,
      &p->n_user_ids);
  return CHAT_OK;
}

static chat_err as_nonce(dctx *d, const char *key, const chat__json *v,
                         chat_str *out) {
  if (v->kind != CHAT__JSON_STRING && v->kind != CHAT__JSON_NUMBER)
    return wrong_type(d, key, "a string or a number", v);
  if (v->raw_len > CHAT__MAX_NONCE_BYTES)
    return fail(d, CHAT_ERR_TOO_LARGE, key, "\"%s\" is over %d bytes", key,
                CHAT__MAX_NONCE_BYTES);
  /* raw points into the caller's input, which dies with this call. */
  char *copy = chat__arena_strndup(&d->c->arena, v->raw, v->raw_len);
  if (!copy)
    return oom(d);
  out->ptr = copy;
  out->len = v->raw_len;
  return CHAT_OK;
}

static chat_err dec_ping(dctx *d, const chat__json *obj, chat_ping *p) {
  OPT(as_nonce, "nonce", NULL, &p->nonce_json);
  return CHAT_OK;
}

static chat_err as_u32_positive(dctx *d, const char *key,
                                const chat__json *v, uint32_t *out) {
  uint64_t x;
  if (v->kind != CHAT__JSON_NUMBER)
    return wrong_type(d, key, "an integer", v);
  if (chat__json_uint64(v, &x) != CHAT_OK || x < 1 || x > UINT32_MAX)
    return fail(d, CHAT_ERR_BAD_NUMBER, key,
                "\"%s\" must be an integer from 1 to %u", key, UINT32_MAX);
  *out = (uint32_t)x;
  return CHAT_OK;
}

/* hello.limits. Its section 8 member lands in chat_hello itself, since
 * chat_limits is frozen (see frame.h). */
static chat_err as_limits(dctx *d, const char *key, const chat__json *v,
                          chat_hello *h) {
  if (v->kind != CHAT__JSON_OBJECT)
    return wrong_type(d, key, "an object", v);
  chat_limits *l = &h->limits;
  const chat__json *obj = v;
  REQ(as_u32, "max_body_bytes", &l->max_body_bytes);
  REQ(as_u32, "max_frame_bytes", &l->max_frame_bytes);
  REQ(as_u32, "rate_per_minute", &l->rate_per_minute);
  REQ(as_u32, "resume_max_messages", &l->resume_max_messages);
  REQ(as_u64, "resume_max_age_ms", INT64_MAX, &l->resume_max_age_ms);
  OPT(as_u32_positive, "resume_batch_hint", &h->has_resume_batch_hint,
      &h->resume_batch_hint);
  return CHAT_OK;
}

static chat_err dec_hello(dctx *d, const chat__json *obj, chat_hello *h) {
  REQ(as_id, "user_id", &h->user_id);
  REQ(as_id, "device_id", &h->device_id);
  REQ(as_id, "session_id", &h->session_id);
  REQ(as_i64, "server_ts", &h->server_ts);
  REQ(as_u32, "heartbeat_ms", &h->heartbeat_ms);
  REQ(as_limits, "limits", h);
  return CHAT_OK;
}

static chat_err dec_ack(dctx *d, const chat__json *obj, chat_ack *a) {
  REQ(as_id, "client_msg_id", &a->client_msg_id);
  REQ(as_msgid, "message_id", &a->message_id);
  REQ(as_i64, "server_ts", &a->server_ts);
  OPT(as_bool, "duplicate", NULL, &a->duplicate);
  return CHAT_OK;
}

/* The message object: a `message` frame, a `history` element, or a
 * conversation's last_message. */
static chat_err dec_message(dctx *d, const chat__json *obj,
                            chat_message *m) {
  REQ(as_msgid, "message_id", &m->message_id);
  REQ(as_id, "conversation_id", &m->conversation_id);
  REQ(as_id, "sender_id", &m->sender_id);
  REQ(as_text, "body", d->c->s.max_body_bytes, &m->body);
  REQ(as_i64, "server_ts", &m->server_ts);
  OPT(as_id, "client_msg_id", NULL, &m->client_msg_id);
  OPT(as_msgid, "reply_to", &m->has_reply_to, &m->reply_to);
  OPT(as_id_array, "media_refs", NULL, d->c->s.max_media_refs,
      &m->media_refs, &m->n_media_refs);
  OPT(as_body_type, "body_type", NULL, &m->body_type);
  OPT(as_msgid, "target_id", &m->has_target_id, &m->target_id);
  OPT(as_sender_kind, "sender_kind", NULL, &m->sender_kind);
  OPT(as_i64, "edited_ts", &m->has_edited_ts, &m->edited_ts);
  OPT(as_bool, "deleted", NULL, &m->deleted);
  /* Section 8: an edit or delete entry names its target, nothing else
   * does; a delete entry and a deleted message have no body left. */
  bool targets =
      m->body_type == CHAT_BODY_EDIT || m->body_type == CHAT_BODY_DELETE;
  if (targets && !m->has_target_id)
    return fail(d, CHAT_ERR_MISSING_FIELD, "target_id",
                "missing field \"target_id\" (required with \"body_type\" "
                "\"edit\" and \"delete\")");
  if (!targets && m->has_target_id)
    return fail(d, CHAT_ERR_BAD_VALUE, "target_id",
                "\"target_id\" is only for \"body_type\" \"edit\" and "
                "\"delete\"");
  if (m->body_type == CHAT_BODY_DELETE && m->body.len > 0)
    return fail(d, CHAT_ERR_BAD_VALUE, "body",
                "a \"delete\" message has an empty \"body\"");
  if (m->deleted && m->body.len > 0)
    return fail(d, CHAT_ERR_BAD_VALUE, "body",
                "a message with \"deleted\": true has an empty \"body\"");
  return CHAT_OK;
}

static chat_err as_message(dctx *d, const char *key, const chat__json *v,
                           chat_message *m) {
  if (v->kind != CHAT__JSON_OBJECT)
    return wrong_type(d, key, "an object", v);
  return dec_message(d, v, m);
}

static chat_err as_receipt_state(dctx *d, const char *key,
                                 const chat__json *v,
                                 chat_receipt_state *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong_type(d, key, "a string", v);
  if (v->len == 9 && memcmp(v->str, "delivered", 9) == 0)
    *out = CHAT_RECEIPT_DELIVERED;
  else if (v->len == 4 && memcmp(v->str, "read", 4) == 0)
    *out = CHAT_RECEIPT_READ;
  else
    return fail(d, CHAT_ERR_BAD_VALUE, key,
                "\"%s\" must be \"delivered\" or \"read\"", key);
  return CHAT_OK;
}

static chat_err as_counts(dctx *d, const char *key, const chat__json *v,
                          chat_receipt *r) {
  if (v->kind != CHAT__JSON_OBJECT)
    return wrong_type(d, key, "an object", v);
  const chat__json *obj = v;
  REQ(as_u32, "delivered", &r->delivered_count);
  REQ(as_u32, "read", &r->read_count);
  return CHAT_OK;
}

static chat_err dec_receipt(dctx *d, const chat__json *obj, chat_receipt *r) {
  REQ(as_id, "conversation_id", &r->conversation_id);
  REQ(as_msgid, "message_id", &r->message_id);
  REQ(as_receipt_state, "state", &r->state);
  REQ(as_id, "member_id", &r->member_id);
  OPT(as_counts, "counts", &r->has_counts, r);
  return CHAT_OK;
}

static chat_err dec_history(dctx *d, const chat__json *obj, chat_history *h) {
  REQ(as_id, "conversation_id", &h->conversation_id);
  REQ(as_bool, "complete", &h->complete);
  const chat__json *ms;
  chat_err rc = need(d, obj, "messages", &ms);
  if (rc != CHAT_OK)
    return rc;
  if (ms->kind != CHAT__JSON_ARRAY)
    return wrong_type(d, "messages", "an array", ms);
  if (ms->n > d->c->s.max_history)
    return fail(d, CHAT_ERR_TOO_MANY, "messages",
                "\"messages\" has %zu entries; the limit is %u", ms->n,
                d->c->s.max_history);
  chat_message *m = alloc(d, ms->n * sizeof *m);
  if (!m)
    return oom(d);
  memset(m, 0, ms->n * sizeof *m);
  size_t i = 0;
  for (const chat__json *it = ms->child; it; it = it->next, i++) {
    rc = as_message(d, "messages", it, &m[i]);
    if (rc != CHAT_OK)
      return rc;
    /* A history frame answers for one conversation; a message from another
     * would be filed in the wrong chat by the client. */
    if (strcmp(m[i].conversation_id, h->conversation_id) != 0)
      return fail(d, CHAT_ERR_BAD_VALUE, "messages",
                  "a history message belongs to another conversation");
  }
  h->messages = m;
  h->n_messages = ms->n;
  return CHAT_OK;
}

static chat_err dec_resume_failed(dctx *d, const chat__json *obj,
                                  chat_resume_failed *r) {
  REQ(as_id, "conversation_id", &r->conversation_id);
  REQ(as_code, "reason", CHAT__MAX_CODE_BYTES, &r->reason);
  return CHAT_OK;
}

static chat_err dec_resumed(dctx *d, const chat__json *obj, chat_resumed *r) {
  REQ(as_u32, "conversations", &r->conversations);
  REQ(as_u32, "messages", &r->messages);
  return CHAT_OK;
}

static chat_err as_presence_state(dctx *d, const char *key,
                                  const chat__json *v,
                                  chat_presence_state *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong_type(d, key, "a string", v);
  if (v->len == 6 && memcmp(v->str, "online", 6) == 0)
    *out = CHAT_PRESENCE_ONLINE;
  else if (v->len == 4 && memcmp(v->str, "idle", 4) == 0)
    *out = CHAT_PRESENCE_IDLE;
  else if (v->len == 7 && memcmp(v->str, "offline", 7) == 0)
    *out = CHAT_PRESENCE_OFFLINE;
  else
    return fail(d, CHAT_ERR_BAD_VALUE, key,
                "\"%s\" must be \"online\", \"idle\" or \"offline\"", key);
  return CHAT_OK;
}

static chat_err dec_presence(dctx *d, const chat__json *obj,
                             chat_presence *p) {
  REQ(as_id, "user_id", &p->user_id);
  REQ(as_presence_state, "state", &p->state);
  OPT(as_i64, "last_active_ts", &p->has_last_active, &p->last_active_ts);
  return CHAT_OK;
}

static chat_err dec_state_change(dctx *d, const chat__json *obj,
                                 chat_state_change *s) {
  REQ(as_id, "conversation_id", &s->conversation_id);
  REQ(as_msgid, "last_read_message_id", &s->last_read_message_id);
  return CHAT_OK;
}

static chat_err as_conv_type(dctx *d, const char *key, const chat__json *v,
                             chat_conversation_type *out) {
  if (v->kind != CHAT__JSON_STRING)
    return wrong_type(d, key, "a string", v);
  if (v->len == 6 && memcmp(v->str, "direct", 6) == 0)
    *out = CHAT_CONVERSATION_DIRECT;
  else if (v->len == 5 && memcmp(v->str, "group", 5) == 0)
    *out = CHAT_CONVERSATION_GROUP;
  else
    return fail(d, CHAT_ERR_BAD_VALUE, key,
                "\"%s\" must be \"direct\" or \"group\"", key);
  return CHAT_OK;
}

static chat_err as_conversation(dctx *d, const char *key,
                                const chat__json *v, chat_conversation *c) {
  if (v->kind != CHAT__JSON_OBJECT)
    return wrong_type(d, key, "an object", v);
  const chat__json *obj = v;
  REQ(as_id, "conversation_id", &c->conversation_id);
  REQ(as_conv_type, "type", &c->type);
  REQ(as_id_array, "members", d->c->s.max_members, &c->members,
      &c->n_members);
  OPT(as_id_array, "admins", NULL, d->c->s.max_members, &c->admins,
      &c->n_admins);
  OPT(as_text, "name", NULL, CHAT__MAX_NAME_BYTES, &c->name);
  const chat__json *lm = opt(obj, "last_message");
  if (lm) {
    chat_message *m = alloc(d, sizeof *m);
    if (!m)
      return oom(d);
    memset(m, 0, sizeof *m);
    chat_err rc = as_message(d, "last_message", lm, m);
    if (rc != CHAT_OK)
      return rc;
    c->last_message = m;
  }
  OPT(as_u32, "unread_count", NULL, &c->unread_count);
  OPT(as_msgid, "last_read_message_id", &c->has_last_read,
      &c->last_read_message_id);
  return CHAT_OK;
}

static chat_err dec_conversation(dctx *d, const chat__json *obj,
                                 chat_conversation *c) {
  REQ(as_conversation, "conversation", c);
  return CHAT_OK;
}

static chat_err dec_error(dctx *d, const chat__json *obj,
                          chat_error_frame *e) {
  chat_str code = {0};
  REQ(as_code, "code", CHAT__MAX_CODE_BYTES, &code);
  e->code = code.ptr;
  e->wire = chat_wire_error_from_str(code.ptr, code.len);
  REQ(as_text, "message", CHAT__MAX_MESSAGE_BYTES, &e->message);
  OPT(as_text, "ref", NULL, CHAT__MAX_REF_BYTES, &e->ref);
  OPT(as_u64, "retry_after_ms", &e->has_retry_after, INT64_MAX,
      &e->retry_after_ms);
  return CHAT_OK;
}

static chat_err dec_goaway(dctx *d, const chat__json *obj, chat_goaway *g) {
  REQ(as_code, "reason", CHAT__MAX_CODE_BYTES, &g->reason);
  REQ(as_u64, "retry_after_ms", INT64_MAX, &g->retry_after_ms);
  return CHAT_OK;
}

/* ---- entry point ---- */

/* Sizes of each payload, for one arena allocation before dispatch. */
static size_t payload_size(chat_frame_type t) {
  switch (t) {
  case CHAT_FRAME_SEND: return sizeof(chat_send);
  case CHAT_FRAME_DELIVERED:
  case CHAT_FRAME_READ: return sizeof(chat_mark);
  case CHAT_FRAME_TYPING: return sizeof(chat_typing);
  case CHAT_FRAME_RESUME: return sizeof(chat_resume);
  case CHAT_FRAME_PRESENCE_SUBSCRIBE: return sizeof(chat_presence_subscribe);
  case CHAT_FRAME_PING:
  case CHAT_FRAME_PONG: return sizeof(chat_ping);
  case CHAT_FRAME_HELLO: return sizeof(chat_hello);
  case CHAT_FRAME_ACK: return sizeof(chat_ack);
  case CHAT_FRAME_MESSAGE: return sizeof(chat_message);
  case CHAT_FRAME_RECEIPT: return sizeof(chat_receipt);
  case CHAT_FRAME_HISTORY: return sizeof(chat_history);
  case CHAT_FRAME_RESUME_FAILED: return sizeof(chat_resume_failed);
  case CHAT_FRAME_RESUMED: return sizeof(chat_resumed);
  case CHAT_FRAME_PRESENCE: return sizeof(chat_presence);
  case CHAT_FRAME_STATE_CHANGE: return sizeof(chat_state_change);
  case CHAT_FRAME_CONVERSATION: return sizeof(chat_conversation);
  case CHAT_FRAME_ERROR: return sizeof(chat_error_frame);
  case CHAT_FRAME_EDIT: return sizeof(chat_edit);
  case CHAT_FRAME_DELETE: return sizeof(chat_delete);
  case CHAT_FRAME_GOAWAY: return sizeof(chat_goaway);
  default: return 0;
  }
}

static chat_err dispatch(dctx *d, const chat__json *obj, chat_frame *f,
                         void *p, chat_direction dir) {
  switch (f->type) {
  case CHAT_FRAME_SEND: f->send = p; return dec_send(d, obj, p);
  case CHAT_FRAME_DELIVERED:
  case CHAT_FRAME_READ: f->mark = p; return dec_mark(d, obj, p);
  case CHAT_FRAME_TYPING: f->typing = p; return dec_typing(d, obj, p, dir);
  case CHAT_FRAME_RESUME: f->resume = p; return dec_resume(d, obj, p);
  case CHAT_FRAME_PRESENCE_SUBSCRIBE:
    f->presence_subscribe = p;
    return dec_presence_subscribe(d, obj, p);
  case CHAT_FRAME_PING:
  case CHAT_FRAME_PONG: f->ping = p; return dec_ping(d, obj, p);
  case CHAT_FRAME_HELLO: f->hello = p; return dec_hello(d, obj, p);
  case CHAT_FRAME_ACK: f->ack = p; return dec_ack(d, obj, p);
  case CHAT_FRAME_MESSAGE: f->message = p; return dec_message(d, obj, p);
  case CHAT_FRAME_RECEIPT: f->receipt = p; return dec_receipt(d, obj, p);
  case CHAT_FRAME_HISTORY: f->history = p; return dec_history(d, obj, p);
  case CHAT_FRAME_RESUME_FAILED:
    f->resume_failed = p;
    return dec_resume_failed(d, obj, p);
  case CHAT_FRAME_RESUMED: f->resumed = p; return dec_resumed(d, obj, p);
  case CHAT_FRAME_PRESENCE: f->presence = p; return dec_presence(d, obj, p);
  case CHAT_FRAME_STATE_CHANGE:
    f->state_change = p;
    return dec_state_change(d, obj, p);
  case CHAT_FRAME_CONVERSATION:
    f->conversation = p;
    return dec_conversation(d, obj, p);
  case CHAT_FRAME_ERROR: f->error = p; return dec_error(d, obj, p);
  case CHAT_FRAME_EDIT: f->edit = p; return dec_edit(d, obj, p);
  case CHAT_FRAME_DELETE: f->deletion = p; return dec_delete(d, obj, p);
  case CHAT_FRAME_GOAWAY: f->goaway = p; return dec_goaway(d, obj, p);
  default: return fail(d, CHAT_ERR_UNKNOWN_TYPE, "type", "unknown type");
  }
}

/* The client frames that carry a client_msg_id and are acked. */
static bool acked_type(const chat__json *type) {
  chat_frame_type t = chat__frame_type_lookup(type->str, type->len);
  return t == CHAT_FRAME_SEND || t == CHAT_FRAME_EDIT ||
         t == CHAT_FRAME_DELETE;
}

/* error.ref per PROTOCOL.md section 7: a valid client_msg_id of a send (and
 * of an edit or delete, which section 8 acks like a send), otherwise the
 * type (cut to CHAT__MAX_REF_BYTES on a UTF-8 boundary). */
static const char *ref_for(dctx *d, const chat__json *root,
                           const chat__json *type) {
  if (!type || type->kind != CHAT__JSON_STRING)
    return NULL;
  if (acked_type(type)) {
    const chat__json *cm = chat__json_get(root, "client_msg_id");
    if (cm && cm->kind == CHAT__JSON_STRING && chat_id_valid(cm->str, cm->len))
      return cm->str;
  }
  size_t n = type->len;
  if (n <= CHAT__MAX_REF_BYTES && memchr(type->str, 0, n) == NULL)
    return type->str;
  if (n > CHAT__MAX_REF_BYTES)
    n = CHAT__MAX_REF_BYTES;
  while (n > 0 && ((unsigned char)type->str[n] & 0xC0) == 0x80)
    n--;
  const char *nul = memchr(type->str, 0, n);
  if (nul)
    n = (size_t)(nul - type->str);
  return chat__arena_strndup(&d->c->arena, type->str, n);
}

chat_err chat_codec_decode(chat_codec *c, chat_direction dir,
                           const char *json, size_t len,
                           const chat_frame **out, chat_decode_error *err) {
  if (out)
    *out = NULL;
  if (err)
    memset(err, 0, sizeof *err);
  if (!c || !out || (!json && len > 0) ||
      (dir != CHAT_DIR_TO_SERVER && dir != CHAT_DIR_TO_CLIENT))
    return CHAT_ERR_INVAL;
  dctx d = {c, err};
  chat_err rc;
  const chat__json *root = NULL, *type = NULL;
  chat__arena_reset(&c->arena);

  size_t limit = dir == CHAT_DIR_TO_SERVER ? c->s.max_frame_bytes
                                           : c->s.max_frame_bytes_to_client;
  if (len > limit) {
    rc = fail(&d, CHAT_ERR_FRAME_TOO_LARGE, NULL,
              "frame of %zu bytes is over the %zu-byte limit", len, limit);
    goto out;
  }
  chat__json *tree;
  size_t at = 0;
  rc = chat__json_parse(&c->arena, json ? json : "", len, c->s.max_depth,
                        &tree, &at);
  if (rc != CHAT_OK) {
    switch (rc) {
    case CHAT_ERR_BAD_UTF8:
      fail(&d, rc, NULL, "invalid UTF-8 at byte %zu", at);
      break;
    case CHAT_ERR_TOO_DEEP:
      fail(&d, rc, NULL, "JSON nested deeper than %u", c->s.max_depth);
      break;
    case CHAT_ERR_DUPLICATE_KEY:
      fail(&d, rc, NULL, "duplicate key at byte %zu", at);
      break;
    case CHAT_ERR_NOMEM:
      oom(&d);
      break;
    default:
      fail(&d, rc, NULL, "malformed JSON at byte %zu", at);
    }
    goto out;
  }
  root = tree;
  if (root->kind != CHAT__JSON_OBJECT) {
    rc = fail(&d, CHAT_ERR_NOT_OBJECT, NULL, "a frame must be a JSON object");
    goto out;
  }
  type = chat__json_get(root, "type");
  if (!type || type->kind != CHAT__JSON_STRING) {
    rc = fail(&d, CHAT_ERR_NO_TYPE, "type",
              "\"type\" must be present and a string");
    goto out;
  }
  chat_frame_type t = chat__frame_type_lookup(type->str, type->len);
  if (t == CHAT_FRAME_NONE ||
      (t != CHAT_FRAME_TYPING && chat_frame_type_direction(t) != (int)dir)) {
    rc = fail(&d, CHAT_ERR_UNKNOWN_TYPE, "type",
              dir == CHAT_DIR_TO_SERVER
                  ? "type not accepted from clients"
                  : "type not known to this client");
    goto out;
  }
  chat_frame *f = alloc(&d, sizeof *f);
  void *payload = alloc(&d, payload_size(t));
  if (!f || !payload) {
    rc = oom(&d);
    goto out;
  }
  memset(f, 0, sizeof *f);
  memset(payload, 0, payload_size(t));
  f->version = CHAT_FRAME_V2;
  f->type = t;
  rc = dispatch(&d, root, f, payload, dir);
  if (rc == CHAT_OK)
    *out = f;

out:
  if (rc != CHAT_OK && err) {
    err->wire = chat_wire_error_from_err(rc);
    err->ref = root ? ref_for(&d, root, type) : NULL;
  }
  return rc;
}

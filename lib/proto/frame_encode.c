/* Encoding chat.v1 frames: typed structs -> one JSON object.
 *
 * The encoder checks everything the decoder checks, with the same limits,
 * so a frame that leaves this library always decodes on the other side.
 * "type" is always the first member, then the fields in the order of
 * PROTOCOL.md, which keeps the output stable for tests and captures. */
#include <stdlib.h>
#include <string.h>

#include "common/check.h"
#include "common/json.h"
#include "common/utf8.h"
#include "frame_internal.h"

typedef struct ectx {
  chat_codec *c;
  chat__jw w;
} ectx;

/* ---- checks ---- */

#define CHECK_RC(expr)                                                         \
  do {                                                                         \
    chat_err rc_ = (expr);                                                     \
    if (rc_ != CHAT_OK)                                                        \
      return rc_;                                                              \
  } while (0)

static chat_err check_id(const char *id) {
  if (!id)
    return CHAT_ERR_INVAL;
  return chat_id_valid(id, strlen(id)) ? CHAT_OK : CHAT_ERR_BAD_ID;
}

static chat_err check_msgid(uint64_t id) {
  return id <= (uint64_t)INT64_MAX ? CHAT_OK : CHAT_ERR_BAD_MESSAGE_ID;
}

static chat_err check_text(chat_str s, size_t max) {
  if (!s.ptr && s.len > 0)
    return CHAT_ERR_INVAL;
  if (s.len > max)
    return CHAT_ERR_TOO_LARGE;
  return chat__utf8_valid(s.ptr ? s.ptr : "", s.len) ? CHAT_OK
                                                      : CHAT_ERR_BAD_UTF8;
}

/* A code ("reason"): the decoder refuses one that is empty or holds a NUL,
 * as it names no condition. */
static chat_err check_code(chat_str s, size_t max) {
  if (!s.ptr || s.len == 0)
    return CHAT_ERR_INVAL;
  CHECK_RC(check_text(s, max));
  return memchr(s.ptr, 0, s.len) ? CHAT_ERR_BAD_VALUE : CHAT_OK;
}

static chat_err check_ids(const char *const *ids, size_t n, uint32_t max) {
  if (n > max)
    return CHAT_ERR_TOO_MANY;
  if (n > 0 && !ids)
    return CHAT_ERR_INVAL;
  for (size_t i = 0; i < n; i++) {
    chat_err rc = check_id(ids[i]);
    if (rc != CHAT_OK)
      return rc;
  }
  return CHAT_OK;
}

#define CHECK(expr) CHECK_RC(expr)

/* ---- writers ---- */

static void kv_id(ectx *e, const char *key, const char *id) {
  chat__jw_key(&e->w, key);
  chat__jw_str(&e->w, id, strlen(id));
}

static void kv_text(ectx *e, const char *key, chat_str s) {
  chat__jw_key(&e->w, key);
  chat__jw_str(&e->w, s.ptr ? s.ptr : "", s.len);
}

static void kv_msgid(ectx *e, const char *key, uint64_t id) {
  chat__jw_key(&e->w, key);
  chat__jw_uint_str(&e->w, id);
}

static void kv_int(ectx *e, const char *key, int64_t v) {
  chat__jw_key(&e->w, key);
  chat__jw_int(&e->w, v);
}

static void kv_uint(ectx *e, const char *key, uint64_t v) {
  chat__jw_key(&e->w, key);
  chat__jw_uint(&e->w, v);
}

static void kv_bool(ectx *e, const char *key, bool v) {
  chat__jw_key(&e->w, key);
  chat__jw_bool(&e->w, v);
}

static void kv_ids(ectx *e, const char *key, const char *const *ids,
                   size_t n) {
  chat__jw_key(&e->w, key);
  chat__jw_arr_begin(&e->w);
  for (size_t i = 0; i < n; i++)
    chat__jw_str(&e->w, ids[i], strlen(ids[i]));
  chat__jw_arr_end(&e->w);
}

static const char *body_type_name(chat_body_type t) {
  switch (t) {
  case CHAT_BODY_TEXT: return "text";
  case CHAT_BODY_MEDIA: return "media";
  case CHAT_BODY_SYSTEM: return "system";
  case CHAT_BODY_EDIT: return "edit";
  case CHAT_BODY_DELETE: return "delete";
  default: return NULL;
  }
}

static void kv_enum(ectx *e, const char *key, const char *value) {
  chat__jw_key(&e->w, key);
  chat__jw_str(&e->w, value, strlen(value));
}

/* ---- payloads: check, then write ---- */

static chat_err enc_send(ectx *e, const chat_send *s) {
  const chat_codec_settings *lim = &e->c->s;
  CHECK(check_id(s->client_msg_id));
  CHECK(check_id(s->conversation_id));
  if (!s->body.ptr)
    return CHAT_ERR_INVAL;
  CHECK(check_text(s->body, lim->max_body_bytes));
  if (s->has_reply_to)
    CHECK(check_msgid(s->reply_to));
  CHECK(check_ids(s->media_refs, s->n_media_refs, lim->max_media_refs));
  /* system, edit and delete are the server's. */
  if ((s->body_type != CHAT_BODY_TEXT && s->body_type != CHAT_BODY_MEDIA) ||
      (s->body_type == CHAT_BODY_MEDIA && s->n_media_refs == 0))
    return CHAT_ERR_BAD_VALUE;

  kv_id(e, "client_msg_id", s->client_msg_id);
  kv_id(e, "conversation_id", s->conversation_id);
  kv_text(e, "body", s->body);
  if (s->has_reply_to)
    kv_msgid(e, "reply_to", s->reply_to);
  if (s->n_media_refs > 0)
    kv_ids(e, "media_refs", s->media_refs, s->n_media_refs);
  if (s->body_type != CHAT_BODY_TEXT)
    kv_enum(e, "body_type", body_type_name(s->body_type));
  return CHAT_OK;
}

static chat_err enc_edit(ectx *e, const chat_edit *x) {
  CHECK(check_id(x->client_msg_id));
  CHECK(check_id(x->conversation_id));
  CHECK(check_msgid(x->target_id));
  if (!x->body.ptr)
    return CHAT_ERR_INVAL;
  CHECK(check_text(x->body, e->c->s.max_body_bytes));
  kv_id(e, "client_msg_id", x->client_msg_id);
  kv_id(e, "conversation_id", x->conversation_id);
  kv_msgid(e, "target_id", x->target_id);
  kv_text(e, "body", x->body);
  return CHAT_OK;
}

static chat_err enc_delete(ectx *e, const chat_delete *x) {
  CHECK(check_id(x->client_msg_id));
  CHECK(check_id(x->conversation_id));
  CHECK(check_msgid(x->target_id));
  kv_id(e, "client_msg_id", x->client_msg_id);
  kv_id(e, "conversation_id", x->conversation_id);
  kv_msgid(e, "target_id", x->target_id);
  return CHAT_OK;
}

static chat_err enc_mark(ectx *e, const chat_mark *m) {
  CHECK(check_id(m->conversation_id));
  CHECK(check_msgid(m->up_to_message_id));
  kv_id(e, "conversation_id", m->conversation_id);
  kv_msgid(e, "up_to_message_id", m->up_to_message_id);
  return CHAT_OK;
}

static chat_err enc_typing(ectx *e, const chat_typing *t) {
  CHECK(check_id(t->conversation_id));
  if (t->user_id)
    CHECK(check_id(t->user_id));
  kv_id(e, "conversation_id", t->conversation_id);
  if (t->user_id)
    kv_id(e, "user_id", t->user_id);
  kv_bool(e, "is_typing", t->is_typing);
  return CHAT_OK;
}

/* Same rule as the decoder: a conversation listed twice is refused. The
 * list is small in practice, so sort a scratch copy only when it is not. */
static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static chat_err check_unique(ectx *e, const chat_resume_entry *es, size_t n) {
  if (n <= 16) {
    for (size_t i = 0; i < n; i++)
      for (size_t j = i + 1; j < n; j++)
        if (strcmp(es[i].conversation_id, es[j].conversation_id) == 0)
          return CHAT_ERR_DUPLICATE_KEY;
    return CHAT_OK;
  }
  chat__arena_reset(&e->c->scratch);
  const char **keys = chat__arena_alloc(&e->c->scratch, n * sizeof *keys);
  if (!keys)
    return CHAT_ERR_NOMEM;
  for (size_t i = 0; i < n; i++)
    keys[i] = es[i].conversation_id;
  qsort(keys, n, sizeof *keys, cmp_str);
  for (size_t i = 1; i < n; i++)
    if (strcmp(keys[i - 1], keys[i]) == 0)
      return CHAT_ERR_DUPLICATE_KEY;
  return CHAT_OK;
}

static chat_err enc_resume(ectx *e, const chat_resume *r) {
  if (r->n_last_seen > e->c->s.max_resume_entries)
    return CHAT_ERR_TOO_MANY;
  if (r->n_last_seen > 0 && !r->last_seen)
    return CHAT_ERR_INVAL;
  for (size_t i = 0; i < r->n_last_seen; i++) {
    CHECK(check_id(r->last_seen[i].conversation_id));
    CHECK(check_msgid(r->last_seen[i].message_id));
  }
  CHECK(check_unique(e, r->last_seen, r->n_last_seen));
  if (r->has_since)
    CHECK(check_msgid(r->since));

  chat__jw_key(&e->w, "last_seen");
  chat__jw_obj_begin(&e->w);
  for (size_t i = 0; i < r->n_last_seen; i++)
    kv_msgid(e, r->last_seen[i].conversation_id, r->last_seen[i].message_id);
  chat__jw_obj_end(&e->w);
  if (r->has_since)
    kv_msgid(e, "since", r->since);
  return CHAT_OK;
}

static chat_err enc_presence_subscribe(ectx *e,
                                       const chat_presence_subscribe *p) {
  CHECK(check_ids(p->user_ids, p->n_user_ids, e->c->s.max_presence_ids));
  kv_ids(e, "user_ids", p->user_ids, p->n_user_ids);
  return CHAT_OK;
}

static chat_err enc_ping(ectx *e, const chat_ping *p) {
  if (!p->nonce_json.ptr)
    return CHAT_OK;
  if (p->nonce_json.len > CHAT__MAX_NONCE_BYTES)
    return CHAT_ERR_TOO_LARGE;
  /* The nonce is JSON text from the caller: it must be exactly one string
   * or number, or it would corrupt the frame around it. */
  chat__json *v;
  chat__arena_reset(&e->c->scratch);
  chat_err rc = chat__json_parse(&e->c->scratch, p->nonce_json.ptr,
                                 p->nonce_json.len, 1, &v, NULL);
  if (rc == CHAT_ERR_NOMEM)
    return rc;
  if (rc != CHAT_OK ||
      (v->kind != CHAT__JSON_STRING && v->kind != CHAT__JSON_NUMBER) ||
      v->raw_len != p->nonce_json.len)
    return CHAT_ERR_BAD_VALUE;
  chat__jw_key(&e->w, "nonce");
  chat__jw_raw(&e->w, p->nonce_json.ptr, p->nonce_json.len);
  return CHAT_OK;
}

static chat_err enc_hello(ectx *e, const chat_hello *h) {
  CHECK(check_id(h->user_id));
  CHECK(check_id(h->device_id));
  CHECK(check_id(h->session_id));
  if (h->limits.resume_max_age_ms > (uint64_t)INT64_MAX)
    return CHAT_ERR_BAD_VALUE;
  if (h->has_resume_batch_hint && h->resume_batch_hint == 0)
    return CHAT_ERR_BAD_VALUE;
  kv_id(e, "user_id", h->user_id);
  kv_id(e, "device_id", h->device_id);
  kv_id(e, "session_id", h->session_id);
  kv_int(e, "server_ts", h->server_ts);
  kv_uint(e, "heartbeat_ms", h->heartbeat_ms);
  chat__jw_key(&e->w, "limits");
  chat__jw_obj_begin(&e->w);
  kv_uint(e, "max_body_bytes", h->limits.max_body_bytes);
  kv_uint(e, "max_frame_bytes", h->limits.max_frame_bytes);
  kv_uint(e, "rate_per_minute", h->limits.rate_per_minute);
  kv_uint(e, "resume_max_messages", h->limits.resume_max_messages);
  kv_uint(e, "resume_max_age_ms", h->limits.resume_max_age_ms);
  if (h->has_resume_batch_hint)
    kv_uint(e, "resume_batch_hint", h->resume_batch_hint);
  chat__jw_obj_end(&e->w);
  return CHAT_OK;
}

static chat_err enc_ack(ectx *e, const chat_ack *a) {
  CHECK(check_id(a->client_msg_id));
  CHECK(check_msgid(a->message_id));
  kv_id(e, "client_msg_id", a->client_msg_id);
  kv_msgid(e, "message_id", a->message_id);
  kv_int(e, "server_ts", a->server_ts);
  if (a->duplicate)
    kv_bool(e, "duplicate", true);
  return CHAT_OK;
}

static chat_err check_message(ectx *e, const chat_message *m) {
  const chat_codec_settings *lim = &e->c->s;
  CHECK(check_msgid(m->message_id));
  CHECK(check_id(m->conversation_id));
  CHECK(check_id(m->sender_id));
  if (!m->body.ptr)
    return CHAT_ERR_INVAL;
  CHECK(check_text(m->body, lim->max_body_bytes));
  if (m->client_msg_id)
    CHECK(check_id(m->client_msg_id));
  if (m->has_reply_to)
    CHECK(check_msgid(m->reply_to));
  CHECK(check_ids(m->media_refs, m->n_media_refs, lim->max_media_refs));
  if (!body_type_name(m->body_type))
    return CHAT_ERR_BAD_VALUE;
  /* Section 8, as the decoder reads it: target_id exactly with edit and
   * delete; a delete entry and a deleted message carry no body. */
  bool targets =
      m->body_type == CHAT_BODY_EDIT || m->body_type == CHAT_BODY_DELETE;
  if (targets != m->has_target_id)
    return CHAT_ERR_BAD_VALUE;
  if (m->has_target_id)
    CHECK(check_msgid(m->target_id));
  if ((m->body_type == CHAT_BODY_DELETE || m->deleted) && m->body.len > 0)
    return CHAT_ERR_BAD_VALUE;
  if (m->sender_kind != CHAT_SENDER_USER && m->sender_kind != CHAT_SENDER_BOT)
    return CHAT_ERR_BAD_VALUE;
  return CHAT_OK;
}

/* The message's members without the surrounding braces, so that `message`
 * frames share them with history elements and last_message. */
static void write_message_fields(ectx *e, const chat_message *m) {
  kv_msgid(e, "message_id", m->message_id);
  kv_id(e, "conversation_id", m->conversation_id);
  kv_id(e, "sender_id", m->sender_id);
  kv_text(e, "body", m->body);
  kv_int(e, "server_ts", m->server_ts);
  if (m->client_msg_id)
    kv_id(e, "client_msg_id", m->client_msg_id);
  if (m->has_reply_to)
    kv_msgid(e, "reply_to", m->reply_to);
  if (m->n_media_refs > 0)
    kv_ids(e, "media_refs", m->media_refs, m->n_media_refs);
  if (m->body_type != CHAT_BODY_TEXT)
    kv_enum(e, "body_type", body_type_name(m->body_type));
  if (m->has_target_id)
    kv_msgid(e, "target_id", m->target_id);
  /* Absent means a user: "user" is never written. */
  if (m->sender_kind == CHAT_SENDER_BOT)
    kv_enum(e, "sender_kind", "bot");
  if (m->has_edited_ts)
    kv_int(e, "edited_ts", m->edited_ts);
  if (m->deleted)
    kv_bool(e, "deleted", true);
}

static chat_err enc_message(ectx *e, const chat_message *m) {
  CHECK(check_message(e, m));
  write_message_fields(e, m);
  return CHAT_OK;
}

static chat_err enc_receipt(ectx *e, const chat_receipt *r) {
  CHECK(check_id(r->conversation_id));
  CHECK(check_msgid(r->message_id));
  CHECK(check_id(r->member_id));
  if (r->state != CHAT_RECEIPT_DELIVERED && r->state != CHAT_RECEIPT_READ)
    return CHAT_ERR_BAD_VALUE;
  kv_id(e, "conversation_id", r->conversation_id);
  kv_msgid(e, "message_id", r->message_id);
  chat__jw_key(&e->w, "state");
  if (r->state == CHAT_RECEIPT_DELIVERED)
    chat__jw_str(&e->w, "delivered", 9);
  else
    chat__jw_str(&e->w, "read", 4);
  kv_id(e, "member_id", r->member_id);
  if (r->has_counts) {
    chat__jw_key(&e->w, "counts");
    chat__jw_obj_begin(&e->w);
    kv_uint(e, "delivered", r->delivered_count);
    kv_uint(e, "read", r->read_count);
    chat__jw_obj_end(&e->w);
  }
  return CHAT_OK;
}

static chat_err enc_history(ectx *e, const chat_history *h) {
  CHECK(check_id(h->conversation_id));
  if (h->n_messages > e->c->s.max_history)
    return CHAT_ERR_TOO_MANY;
  if (h->n_messages > 0 && !h->messages)
    return CHAT_ERR_INVAL;
  for (size_t i = 0; i < h->n_messages; i++) {
    CHECK(check_message(e, &h->messages[i]));
    if (strcmp(h->messages[i].conversation_id, h->conversation_id) != 0)
      return CHAT_ERR_BAD_VALUE;
  }
  kv_id(e, "conversation_id", h->conversation_id);
  chat__jw_key(&e->w, "messages");
  chat__jw_arr_begin(&e->w);
  for (size_t i = 0; i < h->n_messages; i++) {
    chat__jw_obj_begin(&e->w);
    write_message_fields(e, &h->messages[i]);
    chat__jw_obj_end(&e->w);
  }
  chat__jw_arr_end(&e->w);
  kv_bool(e, "complete", h->complete);
  return CHAT_OK;
}

static chat_err enc_resume_failed(ectx *e, const chat_resume_failed *r) {
  CHECK(check_id(r->conversation_id));
  CHECK(check_code(r->reason, CHAT__MAX_CODE_BYTES));
  kv_id(e, "conversation_id", r->conversation_id);
  kv_text(e, "reason", r->reason);
  return CHAT_OK;
}

static chat_err enc_resumed(ectx *e, const chat_resumed *r) {
  kv_uint(e, "conversations", r->conversations);
  kv_uint(e, "messages", r->messages);
  return CHAT_OK;
}

static chat_err enc_presence(ectx *e, const chat_presence *p) {
  CHECK(check_id(p->user_id));
  const char *st;
  switch (p->state) {
  case CHAT_PRESENCE_ONLINE: st = "online"; break;
  case CHAT_PRESENCE_IDLE: st = "idle"; break;
  case CHAT_PRESENCE_OFFLINE: st = "offline"; break;
  default: return CHAT_ERR_BAD_VALUE;
  }
  kv_id(e, "user_id", p->user_id);
  chat__jw_key(&e->w, "state");
  chat__jw_str(&e->w, st, strlen(st));
  chat__jw_key(&e->w, "last_active_ts");
  if (p->has_last_active)
    chat__jw_int(&e->w, p->last_active_ts);
  else
    chat__jw_null(&e->w);
  return CHAT_OK;
}

static chat_err enc_state_change(ectx *e, const chat_state_change *s) {
  CHECK(check_id(s->conversation_id));
  CHECK(check_msgid(s->last_read_message_id));
  kv_id(e, "conversation_id", s->conversation_id);
  kv_msgid(e, "last_read_message_id", s->last_read_message_id);
  return CHAT_OK;
}

/* The conversation object of PROTOCOL.md section 5, braces included. */
static void write_conversation_object(ectx *e, const chat_conversation *c) {
  chat__jw_obj_begin(&e->w);
  kv_id(e, "conversation_id", c->conversation_id);
  chat__jw_key(&e->w, "type");
  if (c->type == CHAT_CONVERSATION_DIRECT)
    chat__jw_str(&e->w, "direct", 6);
  else
    chat__jw_str(&e->w, "group", 5);
  chat__jw_key(&e->w, "name");
  if (c->name.ptr)
    chat__jw_str(&e->w, c->name.ptr, c->name.len);
  else
    chat__jw_null(&e->w);
  kv_ids(e, "members", c->members, c->n_members);
  kv_ids(e, "admins", c->admins, c->n_admins);
  chat__jw_key(&e->w, "last_message");
  if (c->last_message) {
    chat__jw_obj_begin(&e->w);
    write_message_fields(e, c->last_message);
    chat__jw_obj_end(&e->w);
  } else {
    chat__jw_null(&e->w);
  }
  kv_uint(e, "unread_count", c->unread_count);
  chat__jw_key(&e->w, "last_read_message_id");
  if (c->has_last_read)
    chat__jw_uint_str(&e->w, c->last_read_message_id);
  else
    chat__jw_null(&e->w);
  chat__jw_obj_end(&e->w);
}

static chat_err enc_conversation(ectx *e, const chat_conversation *c) {
  CHECK(check_id(c->conversation_id));
  if (c->type != CHAT_CONVERSATION_DIRECT &&
      c->type != CHAT_CONVERSATION_GROUP)
    return CHAT_ERR_BAD_VALUE;
  CHECK(check_ids(c->members, c->n_members, e->c->s.max_members));
  CHECK(check_ids(c->admins, c->n_admins, e->c->s.max_members));
  if (c->name.ptr)
    CHECK(check_text(c->name, CHAT__MAX_NAME_BYTES));
  if (c->last_message)
    CHECK(check_message(e, c->last_message));
  if (c->has_last_read)
    CHECK(check_msgid(c->last_read_message_id));

  chat__jw_key(&e->w, "conversation");
  write_conversation_object(e, c);
  return CHAT_OK;
}

static chat_err enc_error(ectx *e, const chat_error_frame *f) {
  const char *code = f->code ? f->code : chat_wire_error_str(f->wire);
  if (!code)
    return CHAT_ERR_INVAL;
  chat_str cs = {code, strlen(code)};
  if (cs.len == 0)
    return CHAT_ERR_BAD_VALUE;
  CHECK(check_text(cs, CHAT__MAX_CODE_BYTES));
  if (!f->message.ptr)
    return CHAT_ERR_INVAL;
  CHECK(check_text(f->message, CHAT__MAX_MESSAGE_BYTES));
  if (f->ref.ptr)
    CHECK(check_text(f->ref, CHAT__MAX_REF_BYTES));
  if (f->has_retry_after && f->retry_after_ms > (uint64_t)INT64_MAX)
    return CHAT_ERR_BAD_VALUE;
  kv_text(e, "code", cs);
  kv_text(e, "message", f->message);
  if (f->ref.ptr)
    kv_text(e, "ref", f->ref);
  if (f->has_retry_after)
    kv_uint(e, "retry_after_ms", f->retry_after_ms);
  return CHAT_OK;
}

static chat_err enc_goaway(ectx *e, const chat_goaway *g) {
  CHECK(check_code(g->reason, CHAT__MAX_CODE_BYTES));
  if (g->retry_after_ms > (uint64_t)INT64_MAX)
    return CHAT_ERR_BAD_VALUE;
  kv_text(e, "reason", g->reason);
  kv_uint(e, "retry_after_ms", g->retry_after_ms);
  return CHAT_OK;
}

static chat_err dispatch(ectx *e, const chat_frame *f) {
#define PAYLOAD(field, fn)                                                     \
  return f->field ? fn(e, f->field) : CHAT_ERR_INVAL
  switch (f->type) {
  case CHAT_FRAME_SEND: PAYLOAD(send, enc_send);
  case CHAT_FRAME_DELIVERED:
  case CHAT_FRAME_READ: PAYLOAD(mark, enc_mark);
  case CHAT_FRAME_TYPING: PAYLOAD(typing, enc_typing);
  case CHAT_FRAME_RESUME: PAYLOAD(resume, enc_resume);
  case CHAT_FRAME_PRESENCE_SUBSCRIBE:
    PAYLOAD(presence_subscribe, enc_presence_subscribe);
  case CHAT_FRAME_PING:
  case CHAT_FRAME_PONG: PAYLOAD(ping, enc_ping);
  case CHAT_FRAME_HELLO: PAYLOAD(hello, enc_hello);
  case CHAT_FRAME_ACK: PAYLOAD(ack, enc_ack);
  case CHAT_FRAME_MESSAGE: PAYLOAD(message, enc_message);
  case CHAT_FRAME_RECEIPT: PAYLOAD(receipt, enc_receipt);
  case CHAT_FRAME_HISTORY: PAYLOAD(history, enc_history);
  case CHAT_FRAME_RESUME_FAILED: PAYLOAD(resume_failed, enc_resume_failed);
  case CHAT_FRAME_RESUMED: PAYLOAD(resumed, enc_resumed);
  case CHAT_FRAME_PRESENCE: PAYLOAD(presence, enc_presence);
  case CHAT_FRAME_STATE_CHANGE: PAYLOAD(state_change, enc_state_change);
  case CHAT_FRAME_CONVERSATION: PAYLOAD(conversation, enc_conversation);
  case CHAT_FRAME_ERROR: PAYLOAD(error, enc_error);
  default: break;
  }
  /* The V2 payload fields exist only in frames that say so. */
  if (f->version < CHAT_FRAME_V2)
    return CHAT_ERR_INVAL;
  switch (f->type) {
  case CHAT_FRAME_EDIT: PAYLOAD(edit, enc_edit);
  case CHAT_FRAME_DELETE: PAYLOAD(deletion, enc_delete);
  case CHAT_FRAME_GOAWAY: PAYLOAD(goaway, enc_goaway);
  default: return CHAT_ERR_INVAL;
  }
#undef PAYLOAD
}

chat_err chat_codec_encode(chat_codec *c, const chat_frame *f,
                           const char **json, size_t *len) {
  if (json)
    *json = NULL;
  if (len)
    *len = 0;
  if (!c || !f || !json || !len ||
      !chat__version_ok(f->version, CHAT_FRAME_V2))
    return CHAT_ERR_INVAL;
  const char *name = chat_frame_type_name(f->type);
  if (!name)
    return CHAT_ERR_INVAL;
  ectx e = {c, {0}};
  chat__buf_reset(&c->out);
  chat__jw_init(&e.w, &c->out);
  chat__jw_obj_begin(&e.w);
  chat__jw_key(&e.w, "type");
  chat__jw_str(&e.w, name, strlen(name));
  chat_err rc = dispatch(&e, f);
  if (rc != CHAT_OK)
    return rc;
  chat__jw_obj_end(&e.w);
  if (c->out.oom)
    return CHAT_ERR_NOMEM;
  int dir = chat_frame_type_direction(f->type);
  /* typing travels both ways; user_id marks the server's form. */
  if (f->type == CHAT_FRAME_TYPING && f->typing->user_id)
    dir = CHAT_DIR_TO_CLIENT;
  size_t limit = dir == CHAT_DIR_TO_SERVER ? c->s.max_frame_bytes
                                           : c->s.max_frame_bytes_to_client;
  if (c->out.len > limit)
    return CHAT_ERR_FRAME_TOO_LARGE;
  *json = c->out.data;
  *len = c->out.len;
  return CHAT_OK;
}

/* For REST answers, which carry the same objects outside a frame. The data
 * comes from the store and is written without the frame checks. */
void chat__jw_message_object(chat__jw *w, const chat_message *m) {
  ectx e = {NULL, *w};
  chat__jw_obj_begin(&e.w);
  write_message_fields(&e, m);
  chat__jw_obj_end(&e.w);
  *w = e.w;
}

void chat__jw_conversation_object(chat__jw *w, const chat_conversation *c) {
  ectx e = {NULL, *w};
  write_conversation_object(&e, c);
  *w = e.w;
}

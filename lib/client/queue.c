/* The outbound queue: encoded frames waiting for the host to write them,
 * handed out one at a time by chat_client_next_frame(). A frame handed out
 * stays allocated until the next call, so the host's view stays valid. */
#include "client/client_internal.h"

#include <string.h>

static chat__out *out_new(chat_client *c, const char *json, size_t len) {
  chat__out *o = chat__alloc(&c->a, sizeof *o + len + 1);
  if (!o)
    return NULL;
  memset(o, 0, sizeof *o);
  memcpy(o->json, json, len);
  o->json[len] = 0;
  o->len = len;
  return o;
}

static void out_push(chat_client *c, chat__out *o) {
  bool was_empty = c->q_head == NULL;
  if (c->q_tail)
    c->q_tail->next = o;
  else
    c->q_head = o;
  c->q_tail = o;
  if (was_empty)
    chat__client_wants_changed(c);
}

chat_err chat__client_queue_frame(chat_client *c, const chat_frame *f,
                                  chat__out **item) {
  const char *json;
  size_t len;
  chat_err e = chat_codec_encode(c->enc, f, &json, &len);
  if (e) {
    chat__client_log(c, CHAT_LOG_ERROR, "cannot encode",
                     chat_frame_type_name(f->type), chat_err_name(e));
    return e;
  }
  chat__out *o = out_new(c, json, len);
  if (!o)
    return CHAT_ERR_NOMEM;
  if (item)
    *item = o;
  out_push(c, o);
  return CHAT_OK;
}

void chat__client_queue_drop(chat_client *c) {
  chat__out *o = c->q_head;
  c->q_head = c->q_tail = NULL;
  while (o) {
    chat__out *n = o->next;
    /* Nothing queued is in flight any more. */
    if (o->kind == OUT_MARK)
      chat__client_marks_unqueued(c, o->mark, o->mark_kind);
    chat__free(&c->a, o);
    o = n;
  }
}

void chat__client_queue_free(chat_client *c) {
  chat__out *o = c->q_head;
  while (o) {
    chat__out *n = o->next;
    chat__free(&c->a, o);
    o = n;
  }
  c->q_head = c->q_tail = NULL;
  chat__free(&c->a, c->taken);
  c->taken = NULL;
}

chat_err chat_client_next_frame(chat_client *c, const char **json,
                                size_t *len) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (!json || !len)
    return chat__client_fail(c, CHAT_ERR_INVAL, "%s: required",
                             !json ? "json" : "len");
  if (c->taken) {
    chat__free(&c->a, c->taken);
    c->taken = NULL;
  }
  chat__out *o = c->q_head;
  if (!o)
    return CHAT_ERR_AGAIN;
  c->q_head = o->next;
  if (!c->q_head)
    c->q_tail = NULL;
  c->taken = o;
  if (o->kind == OUT_MARK)
    chat__client_marks_written(c, o);
  *json = o->json;
  *len = o->len;
  return CHAT_OK;
}

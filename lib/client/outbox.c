/* The outbox: every send, edit and delete not yet acked, mirrored from the
 * store in sending order and indexed by client_msg_id. Each entry goes out
 * once per connection with the same client_msg_id, so a retry the server
 * already stored comes back as duplicate:true and nothing is stored twice.
 * An acked edit or delete becomes the log entry it is in the local store
 * and is applied to its target (PROTOCOL.md section 8). */
#include "client/client_internal.h"

#include <string.h>

chat__obox *chat__client_outbox_find(chat_client *c, const char *id) {
  void **v = chat__map_get(&c->obox_ids, id, chat__client_klen(id));
  return v ? *v : NULL;
}

void chat__client_outbox_unlink(chat_client *c, chat__obox *o) {
  if (o->prev)
    o->prev->next = o->next;
  else
    c->obox_head = o->next;
  if (o->next)
    o->next->prev = o->prev;
  else
    c->obox_tail = o->prev;
  o->prev = o->next = NULL;
  chat__map_del(&c->obox_ids, o->client_msg_id,
                chat__client_klen(o->client_msg_id), NULL);
  c->obox_len--;
}

void chat__client_outbox_free_entry(chat_client *c, chat__obox *o) {
  chat__free(&c->a, o->client_msg_id);
  chat__free(&c->a, o->conv);
  chat__free(&c->a, o->body);
  chat__free(&c->a, o);
}

chat_err chat__client_outbox_append(chat_client *c, const char *id,
                                    const char *conv, const char *body,
                                    size_t len, chat_client_outbox_kind kind,
                                    uint64_t target_id) {
  chat__obox *o = chat__calloc(&c->a, 1, sizeof *o);
  if (!o)
    return CHAT_ERR_NOMEM;
  o->kind = kind;
  o->target_id = target_id;
  o->client_msg_id = chat__strndup(&c->a, id, strlen(id));
  o->conv = chat__strndup(&c->a, conv, strlen(conv));
  o->body = chat__strndup(&c->a, body ? body : "", len);
  o->body_len = len;
  if (!o->client_msg_id || !o->conv || !o->body ||
      chat__map_put(&c->obox_ids, o->client_msg_id,
                    strlen(o->client_msg_id), o, NULL)) {
    chat__client_outbox_free_entry(c, o);
    return CHAT_ERR_NOMEM;
  }
  o->prev = c->obox_tail;
  if (c->obox_tail)
    c->obox_tail->next = o;
  else
    c->obox_head = o;
  c->obox_tail = o;
  c->obox_len++;
  return CHAT_OK;
}

/* Is conv's queue held in this flush pass (an earlier entry of it waits)?
 * Marking it held may need memory: on failure the caller stops the pass. */
static bool held_now(chat_client *c, const char *conv) {
  void **v = chat__map_get(&c->obox_held, conv, strlen(conv));
  return v && (uintptr_t)*v == c->flush_pass;
}

static chat_err hold(chat_client *c, const char *conv) {
  return chat__map_put(&c->obox_held, conv, strlen(conv),
                       (void *)c->flush_pass, NULL);
}

/* Send every outbox entry not yet sent on this connection, in order. An
 * entry waiting for its retry time holds back the entries after it in the
 * same conversation, so one sender's order survives a rate limit. */
void chat__client_outbox_flush(chat_client *c, chat_time_ms now) {
  if (!chat__client_online(c))
    return;
  /* A new pass number makes every earlier hold stale at once. */
  c->flush_pass++;
  if (c->flush_pass == 0)
    c->flush_pass = 1;
  bool any_held = false;
  for (chat__obox *o = c->obox_head; o; o = o->next) {
    if (o->sent_gen == c->conn_gen)
      continue;
    if (o->retry_at > now || (any_held && held_now(c, o->conv))) {
      if (hold(c, o->conv))
        return; /* out of memory: the rest waits for the next flush */
      any_held = true;
      continue;
    }
    chat_send s = {.client_msg_id = o->client_msg_id,
                   .conversation_id = o->conv,
                   .body = {o->body, o->body_len}};
    chat_edit ed = {.client_msg_id = o->client_msg_id,
                    .conversation_id = o->conv,
                    .target_id = o->target_id,
                    .body = {o->body, o->body_len}};
    chat_delete del = {.client_msg_id = o->client_msg_id,
                       .conversation_id = o->conv,
                       .target_id = o->target_id};
    chat_frame f = {.version = CHAT_FRAME_V2, .type = CHAT_FRAME_SEND,
                    .send = &s};
    if (o->kind == CHAT_CLIENT_OUTBOX_EDIT)
      f = (chat_frame){.version = CHAT_FRAME_V2, .type = CHAT_FRAME_EDIT,
                       .edit = &ed};
    else if (o->kind == CHAT_CLIENT_OUTBOX_DELETE)
      f = (chat_frame){.version = CHAT_FRAME_V2, .type = CHAT_FRAME_DELETE,
                       .deletion = &del};
    chat_err e = chat__client_queue_frame(c, &f, NULL);
    if (e == CHAT_ERR_NOMEM)
      return; /* tried again on the next flush */
    /* Sent, or never encodable (a body the codec refuses): either way it
     * is done for this connection. */
    o->sent_gen = c->conn_gen;
    if (!e)
      o->retry_at = 0;
  }
}

chat_time_ms chat__client_outbox_deadline(const chat_client *c) {
  chat_time_ms d = CHAT_TIME_NEVER;
  for (const chat__obox *o = c->obox_head; o; o = o->next)
    if (o->sent_gen != c->conn_gen && o->retry_at && o->retry_at < d)
      d = o->retry_at;
  return d;
}

static void load_cb(void *ctx, const chat_client_outbox_entry *e) {
  chat_client *c = ctx;
  if (chat__client_outbox_append(c, e->client_msg_id, e->conversation_id,
                                 e->body.ptr, e->body.len,
                                 CHAT_CLIENT_OUTBOX_SEND, 0))
    c->load_oom = true;
}

static void load_v2_cb(void *ctx, const chat_client_outbox_entry_v2 *e) {
  chat_client *c = ctx;
  chat_client_outbox_kind k = e->kind;
  if (k != CHAT_CLIENT_OUTBOX_EDIT && k != CHAT_CLIENT_OUTBOX_DELETE)
    k = CHAT_CLIENT_OUTBOX_SEND;
  if (chat__client_outbox_append(c, e->client_msg_id, e->conversation_id,
                                 e->body.ptr, e->body.len, k,
                                 k == CHAT_CLIENT_OUTBOX_SEND ? 0
                                                              : e->target_id))
    c->load_oom = true;
}

chat_err chat__client_outbox_load(chat_client *c) {
  if (c->v2)
    return c->st->each_outbox_v2(c->st->self, load_v2_cb, c);
  return c->st->each_outbox(c->st->self, load_cb, c);
}

void chat__client_outbox_free(chat_client *c) {
  while (c->obox_head) {
    chat__obox *o = c->obox_head;
    c->obox_head = o->next;
    chat__client_outbox_free_entry(c, o);
  }
  c->obox_tail = NULL;
  c->obox_len = 0;
  chat__map_free(&c->obox_ids);
  chat__map_free(&c->obox_held);
}

size_t chat_client_outbox_len(const chat_client *c) {
  return c ? c->obox_len : 0;
}

void chat__client_outbox_ack(chat_client *c, const chat_ack *a) {
  chat__obox *o = chat__client_outbox_find(c, a->client_msg_id);
  if (!o) {
    /* An ack for a send already acked (a retry crossing the first ack):
     * the outbox entry is gone, there is nothing left to do. */
    chat__client_log(c, CHAT_LOG_DEBUG, "ack for an unknown send",
                     a->client_msg_id, a->duplicate ? " (duplicate)" : "");
    return;
  }
  chat_err e = c->st->outbox_remove(c->st->self, o->client_msg_id);
  if (e)
    /* It stays in the stored outbox and is sent again after a restart;
     * the server answers that with duplicate:true, so nothing doubles. */
    chat__client_error(c, CHAT_ERR_MODULE, o->conv,
                       "cannot remove an acked send from the outbox", 0,
                       false);
  chat__client_outbox_unlink(c, o);
  /* The entry as the other members get it: a message, or an edit or
   * delete log entry naming its target. */
  bool entry = o->kind != CHAT_CLIENT_OUTBOX_SEND;
  chat_message m = {.message_id = a->message_id,
                    .conversation_id = o->conv,
                    .sender_id = c->user_id,
                    .body = {o->body, o->body_len},
                    .server_ts = a->server_ts,
                    .client_msg_id = o->client_msg_id,
                    .body_type = o->kind == CHAT_CLIENT_OUTBOX_EDIT
                                     ? CHAT_BODY_EDIT
                                 : o->kind == CHAT_CLIENT_OUTBOX_DELETE
                                     ? CHAT_BODY_DELETE
                                     : CHAT_BODY_TEXT,
                    .has_target_id = entry,
                    .target_id = entry ? o->target_id : 0};
  bool inserted = false, stored = false;
  if (c->user_id) {
    if (c->st->put_message(c->st->self, &m, true, &inserted) != CHAT_OK)
      chat__client_error(c, CHAT_ERR_MODULE, o->conv,
                         "cannot store an acked send", 0, false);
    else
      stored = true;
  }
  /* Apply it (an edit or delete of ours), or bring our message up to date
   * with entries that reached the store before this ack did. */
  bool changed = false;
  uint64_t target = entry ? o->target_id : m.message_id;
  if (stored && (entry || inserted))
    (void)chat__client_apply(c, o->conv, target, &changed);
  if (c->cb.on_ack)
    c->cb.on_ack(c->ud, c, a);
  if (changed)
    chat__client_report_changed(c, o->conv, target);
  chat__client_outbox_free_entry(c, o);
}

bool chat__client_outbox_refused(chat_client *c, const chat_error_frame *ef,
                                 chat_time_ms now) {
  void **v = ef->ref.ptr ? chat__map_get(&c->obox_ids, ef->ref.ptr,
                                          ef->ref.len)
                         : NULL;
  if (!v)
    return false;
  chat__obox *o = *v;
  chat_client_error ce = {.err = CHAT_OK, .wire = ef,
                          .message = ef->message.ptr ? ef->message.ptr : "",
                          .client_msg_id = o->client_msg_id,
                          .conversation_id = o->conv,
                          .op = o->kind == CHAT_CLIENT_OUTBOX_EDIT
                                    ? CHAT_FRAME_EDIT
                                : o->kind == CHAT_CLIENT_OUTBOX_DELETE
                                    ? CHAT_FRAME_DELETE
                                    : CHAT_FRAME_SEND,
                          .target_id = o->target_id};
  if (ef->wire == CHAT_WIRE_RATE_LIMITED || ef->wire == CHAT_WIRE_INTERNAL) {
    /* Not stored: send again later, same client_msg_id. */
    uint64_t wait = ef->has_retry_after ? ef->retry_after_ms
                                        : c->s.send_retry_ms;
    if (wait == 0)
      wait = c->s.send_retry_ms;
    o->sent_gen = 0;
    o->retry_at = now + wait;
    ce.retrying = true;
    if (c->cb.on_error)
      c->cb.on_error(c->ud, c, &ce);
    return true;
  }
  /* Refused for good (not a member, too large; for an edit or a delete
   * also forbidden or not_found): it leaves the outbox, and the app hears
   * why. */
  if (c->st->outbox_remove(c->st->self, o->client_msg_id))
    chat__client_error(c, CHAT_ERR_MODULE, o->conv,
                       "cannot remove a refused send from the outbox", 0,
                       false);
  chat__client_outbox_unlink(c, o);
  if (c->cb.on_error)
    c->cb.on_error(c->ud, c, &ce);
  chat__client_outbox_free_entry(c, o);
  return true;
}

/* The client's view of its store: messages and conversations written with
 * their callbacks, and the local reads the app makes (no network). */
#include "client/client_internal.h"

#include <string.h>

bool chat__client_is_own(const chat_client *c, const chat_message *m) {
  return c->user_id && m->sender_id && strcmp(c->user_id, m->sender_id) == 0;
}

void chat__client_store_message(chat_client *c, const chat_message *m,
                                chat_message_origin origin, bool raise,
                                uint64_t *max_id) {
  bool inserted = true;
  chat_err e = c->st->put_message(c->st->self, m, chat__client_is_own(c, m),
                                  &inserted);
  if (e) {
    /* Not stored, so last_seen stays behind it: the next resume fetches it
     * again. The app still sees it now. */
    chat__client_error(c, CHAT_ERR_MODULE, m->conversation_id,
                       "cannot store a message", 0, false);
    raise = false;
  } else if (raise) {
    e = c->st->set_last_seen(c->st->self, m->conversation_id, m->message_id);
    if (e) {
      chat__client_error(c, CHAT_ERR_MODULE, m->conversation_id,
                         "cannot record last_seen", 0, false);
      raise = false;
    }
  }
  if (raise && max_id && m->message_id > *max_id)
    *max_id = m->message_id;
  if (inserted) {
    if (origin != CHAT_ORIGIN_OLDER && origin != CHAT_ORIGIN_LIVE)
      c->resume_msgs++;
    if (c->cb.on_message)
      c->cb.on_message(c, m, origin, c->ud);
  }
}

void chat__client_put_conversation(chat_client *c,
                                   const chat_conversation *conv) {
  if (c->st->put_conversation(c->st->self, conv))
    chat__client_error(c, CHAT_ERR_MODULE, conv->conversation_id,
                       "cannot store a conversation", 0, false);
  if (c->cb.on_conversation)
    c->cb.on_conversation(c, conv, c->ud);
}

typedef struct list_ctx {
  chat_client *c;
  void (*fn)(const chat_client_message *, void *);
  void *ud;
} list_ctx;

static void list_cb(const chat_message *m, bool own, int state, void *ud) {
  list_ctx *l = ud;
  chat_client_message cm = {.message = m, .own = own, .pending = false,
                            .state = (chat_receipt_state)state};
  l->fn(&cm, l->ud);
}

chat_err chat_client_list_messages(
    chat_client *c, const char *conv, uint64_t before, uint32_t limit,
    void (*fn)(const chat_client_message *, void *), void *ud) {
  if (!c || !conv || !fn)
    return CHAT_ERR_INVAL;
  list_ctx l = {c, fn, ud};
  chat_err e = c->st->each_message(c->st->self, conv, before, limit, list_cb,
                                   &l);
  if (e)
    return e == CHAT_ERR_NOMEM ? e : CHAT_ERR_MODULE;
  if (before)
    return CHAT_OK;
  for (chat__obox *o = c->obox_head; o; o = o->next) {
    if (strcmp(o->conv, conv) != 0)
      continue;
    chat_message m = {.conversation_id = o->conv, .sender_id = c->user_id,
                      .body = {o->body, o->body_len},
                      .client_msg_id = o->client_msg_id};
    chat_client_message cm = {.message = &m, .own = true, .pending = true};
    fn(&cm, ud);
  }
  return CHAT_OK;
}

chat_err chat_client_list_conversations(
    chat_client *c, void (*fn)(const chat_conversation *, void *), void *ud) {
  if (!c || !fn)
    return CHAT_ERR_INVAL;
  chat_err e = c->st->each_conversation(c->st->self, fn, ud);
  return e == CHAT_OK || e == CHAT_ERR_NOMEM ? e : CHAT_ERR_MODULE;
}

chat_err chat_client_last_seen(chat_client *c, const char *conv,
                               uint64_t *out) {
  if (!c || !conv || !out)
    return CHAT_ERR_INVAL;
  chat_err e = c->st->get_last_seen(c->st->self, conv, out);
  return e == CHAT_OK || e == CHAT_ERR_NOMEM ? e : CHAT_ERR_MODULE;
}

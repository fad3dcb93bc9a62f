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
      c->cb.on_message(c->ud, c, m, origin);
  }
}

void chat__client_put_conversation(chat_client *c,
                                   const chat_conversation *conv) {
  if (c->st->put_conversation(c->st->self, conv))
    chat__client_error(c, CHAT_ERR_MODULE, conv->conversation_id,
                       "cannot store a conversation", 0, false);
  if (c->cb.on_conversation)
    c->cb.on_conversation(c->ud, c, conv);
}

typedef struct list_ctx {
  void (*fn)(void *, const chat_client_message *);
  void *ud;
} list_ctx;

static void list_cb(void *ctx, const chat_message *m, bool own,
                    chat_receipt_state state) {
  list_ctx *l = ctx;
  chat_client_message cm = {.message = m, .own = own, .pending = false,
                            .state = own ? state : CHAT_RECEIPT_NONE};
  l->fn(l->ud, &cm);
}

/* The store's answer to a local read, with its detail on failure. */
static chat_err read_err(chat_client *c, chat_err e, const char *method) {
  e = chat__client_store_err(e);
  if (e == CHAT_ERR_NOMEM)
    return chat__client_fail(c, e, "out of memory");
  if (e)
    return chat__client_fail(c, e, "store.%s: failed", method);
  return CHAT_OK;
}

chat_err chat_client_list_messages(
    chat_client *c, const char *conv, uint64_t before, uint32_t limit,
    void (*fn)(void *, const chat_client_message *), void *ud) {
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (e)
    return e;
  if (!fn)
    return chat__client_fail(c, CHAT_ERR_INVAL, "fn: required");
  list_ctx l = {fn, ud};
  e = c->st->each_message(c->st->self, conv, before, limit, list_cb, &l);
  if (e)
    return read_err(c, e, "each_message");
  if (before)
    return CHAT_OK;
  for (chat__obox *o = c->obox_head; o; o = o->next) {
    if (strcmp(o->conv, conv) != 0)
      continue;
    chat_message m = {.conversation_id = o->conv, .sender_id = c->user_id,
                      .body = {o->body, o->body_len},
                      .client_msg_id = o->client_msg_id};
    chat_client_message cm = {.message = &m, .own = true, .pending = true,
                              .state = CHAT_RECEIPT_NONE};
    fn(ud, &cm);
  }
  return CHAT_OK;
}

chat_err chat_client_list_conversations(
    chat_client *c, void (*fn)(void *, const chat_conversation *), void *ud) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (!fn)
    return chat__client_fail(c, CHAT_ERR_INVAL, "fn: required");
  return read_err(c, c->st->each_conversation(c->st->self, fn, ud),
                  "each_conversation");
}

chat_err chat_client_last_seen(chat_client *c, const char *conv,
                               uint64_t *out) {
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (e)
    return e;
  if (!out)
    return chat__client_fail(c, CHAT_ERR_INVAL, "out: required");
  return read_err(c, c->st->get_last_seen(c->st->self, conv, out),
                  "get_last_seen");
}

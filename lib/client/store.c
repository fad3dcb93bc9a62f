/* The client's view of its store: messages and conversations written with
 * their callbacks, edit and delete entries applied to their targets
 * (PROTOCOL.md section 8), and the local reads the app makes (no
 * network).
 *
 * Edits and deletes converge whatever order things arrive in because the
 * store computes a target's state from the entries it holds
 * (apply_changes): after every entry stored the client applies its target,
 * and after every new message it applies that message (entries that came
 * first, an edit before its target paged in from REST). */
#include "client/client_internal.h"

#include <string.h>

bool chat__client_is_own(const chat_client *c, const chat_message *m) {
  return c->user_id && m->sender_id && strcmp(c->user_id, m->sender_id) == 0;
}

bool chat__client_is_entry(const chat_message *m) {
  return m->has_target_id && (m->body_type == CHAT_BODY_EDIT ||
                              m->body_type == CHAT_BODY_DELETE);
}

chat_err chat__client_apply(chat_client *c, const char *conv, uint64_t target,
                            bool *changed) {
  *changed = false;
  if (!c->v2)
    return CHAT_OK;
  chat_err e = c->st->apply_changes(c->st->self, conv, target, changed);
  if (e) {
    *changed = false;
    chat__client_error(c, chat__client_store_err(e), conv,
                       "cannot apply an edit or delete to the store", 0,
                       false);
  }
  return e;
}

typedef struct report_ctx {
  chat_client *c;
  chat_message_origin origin;
  /* Set: on_message for this message as received, with the state the
   * store holds now (the store keeps no media_refs: the received copy's
   * stay unless deleted). NULL: on_message_changed with the stored copy. */
  const chat_message *as_new;
} report_ctx;

static void report_cb(void *ctx, const chat_message *m, bool own,
                      chat_receipt_state st) {
  (void)own, (void)st;
  report_ctx *r = ctx;
  chat_client *c = r->c;
  if (r->as_new) {
    chat_message now = *r->as_new;
    now.body = m->body;
    now.has_edited_ts = m->has_edited_ts;
    now.edited_ts = m->edited_ts;
    now.deleted = m->deleted;
    if (now.deleted) {
      now.media_refs = NULL;
      now.n_media_refs = 0;
    }
    if (c->cb.on_message)
      c->cb.on_message(c->ud, c, &now, r->origin);
  } else if (c->cb.on_message_changed) {
    c->cb.on_message_changed(c->ud, c, m);
  }
}

void chat__client_report_changed(chat_client *c, const char *conv,
                                 uint64_t id) {
  if (!c->v2 || !c->cb.on_message_changed)
    return;
  report_ctx r = {.c = c};
  chat_err e = c->st->get_message(c->st->self, conv, id, report_cb, &r);
  if (e && e != CHAT_ERR_NOT_FOUND)
    chat__client_error(c, chat__client_store_err(e), conv,
                       "cannot read a changed message back", 0, false);
}

void chat__client_store_message(chat_client *c, const chat_message *m,
                                chat_message_origin origin, bool raise,
                                uint64_t *max_id) {
  bool inserted = true;
  chat_err e = c->st->put_message(c->st->self, m, chat__client_is_own(c, m),
                                  &inserted);
  bool entry = chat__client_is_entry(m);
  bool changed = false;
  if (e) {
    /* Not stored, so last_seen stays behind it: the next resume fetches it
     * again. The app still sees it now. */
    chat__client_error(c, CHAT_ERR_MODULE, m->conversation_id,
                       "cannot store a message", 0, false);
    raise = false;
  } else if ((entry || inserted) &&
             chat__client_apply(c, m->conversation_id,
                                entry ? m->target_id : m->message_id,
                                &changed)) {
    /* Stored but not applied: last_seen stays behind the entry, so the
     * next resume brings it again (a duplicate), and an entry is applied
     * again even as a duplicate. */
    raise = false;
  }
  if (!e && raise) {
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
    if (!entry && changed) {
      /* Its edits or delete came first: the app meets it as it is now. */
      report_ctx r = {.c = c, .origin = origin, .as_new = m};
      if (c->st->get_message(c->st->self, m->conversation_id, m->message_id,
                             report_cb, &r) != CHAT_OK &&
          c->cb.on_message)
        c->cb.on_message(c->ud, c, m, origin);
    } else if (c->cb.on_message) {
      c->cb.on_message(c->ud, c, m, origin);
    }
    /* A member or admin change the device learns of after the fact (it
     * was away): the conversation object it changed is fetched anew. Live
     * changes come with their own `conversation` frame. */
    if (m->body_type == CHAT_BODY_SYSTEM &&
        (origin == CHAT_ORIGIN_RESUME || origin == CHAT_ORIGIN_REST))
      (void)chat__creq_conv_refresh(c, m->conversation_id);
  }
  if (entry && changed)
    chat__client_report_changed(c, m->conversation_id, m->target_id);
}

void chat__client_put_conversation(chat_client *c,
                                   const chat_conversation *conv) {
  if (c->st->put_conversation(c->st->self, conv))
    chat__client_error(c, CHAT_ERR_MODULE, conv->conversation_id,
                       "cannot store a conversation", 0, false);
  if (c->cb.on_conversation)
    c->cb.on_conversation(c->ud, c, conv);
}

typedef struct left_ctx {
  chat_client *c;
  const char *conv;
  bool done;
} left_ctx;

/* The ids of list without the user's own; *n in, *n out. */
static const char **without(chat_client *c, const char *const *ids,
                            size_t *n) {
  const char **out = chat__alloc(&c->a, (*n + 1) * sizeof *out);
  if (!out)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < *n; i++)
    if (strcmp(ids[i], c->user_id) != 0)
      out[k++] = ids[i];
  *n = k;
  return out;
}

static void left_cb(void *ctx, const chat_conversation *conv) {
  left_ctx *l = ctx;
  chat_client *c = l->c;
  if (l->done || strcmp(conv->conversation_id, l->conv) != 0)
    return;
  l->done = true;
  chat_conversation now = *conv;
  const char **members = without(c, conv->members, &now.n_members);
  const char **admins = without(c, conv->admins, &now.n_admins);
  if (members && admins &&
      (now.n_members != conv->n_members || now.n_admins != conv->n_admins)) {
    now.members = members;
    now.admins = admins;
    chat__client_put_conversation(c, &now);
  }
  chat__free(&c->a, members);
  chat__free(&c->a, admins);
}

void chat__client_left(chat_client *c, const char *conv) {
  if (c->v2 && c->st->forget_last_seen(c->st->self, conv))
    chat__client_error(c, CHAT_ERR_MODULE, conv,
                       "cannot forget the last_seen of a conversation left",
                       0, false);
  if (!c->user_id)
    return;
  left_ctx l = {.c = c, .conv = conv};
  if (c->st->each_conversation(c->st->self, left_cb, &l))
    chat__client_error(c, CHAT_ERR_MODULE, conv,
                       "cannot read the conversations", 0, false);
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
    bool entry = o->kind != CHAT_CLIENT_OUTBOX_SEND;
    chat_message m = {.conversation_id = o->conv, .sender_id = c->user_id,
                      .body = {o->body, o->body_len},
                      .client_msg_id = o->client_msg_id,
                      .body_type = o->kind == CHAT_CLIENT_OUTBOX_EDIT
                                       ? CHAT_BODY_EDIT
                                   : o->kind == CHAT_CLIENT_OUTBOX_DELETE
                                       ? CHAT_BODY_DELETE
                                       : CHAT_BODY_TEXT,
                      .has_target_id = entry,
                      .target_id = o->target_id};
    chat_client_message cm = {.message = &m, .own = true, .pending = true,
                              .state = CHAT_RECEIPT_NONE};
    fn(ud, &cm);
  }
  return CHAT_OK;
}

chat_err chat_client_get_message(
    chat_client *c, const char *conv, uint64_t id,
    void (*fn)(void *, const chat_client_message *), void *ud) {
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (e)
    return e;
  if (!fn)
    return chat__client_fail(c, CHAT_ERR_INVAL, "fn: required");
  if (!c->v2)
    return chat__client_fail(c, CHAT_ERR_STATE,
                             "get_message: the store is a "
                             "CHAT_CLIENT_STORE_OPS_V1 one");
  list_ctx l = {fn, ud};
  e = c->st->get_message(c->st->self, conv, id, list_cb, &l);
  if (e == CHAT_ERR_NOT_FOUND)
    return chat__client_fail(c, e, "message %llu of %s: not stored",
                             (unsigned long long)id, conv);
  return e ? read_err(c, e, "get_message") : CHAT_OK;
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

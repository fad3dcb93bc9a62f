/* Receipt marks: per conversation, the delivered and read high-water marks
 * the app set (want), what went out on a socket (sent) and what waits in
 * the outbound queue (queued). Both are persisted, so marks survive
 * disconnects and restarts until written. A conversation's marks go out at
 * most once per receipt_interval_ms (one delivered and/or one read frame).
 *
 * Marks that may have something to send are kept on a to-do list, so the
 * flush and the deadline look at those only, not at every conversation the
 * device ever marked. */
#include "client/client_internal.h"

#include <string.h>

static chat__mark *mark_get(chat_client *c, const char *conv, bool create) {
  size_t n = strlen(conv);
  void **v = chat__map_get(&c->marks, conv, n);
  if (v)
    return *v;
  if (!create)
    return NULL;
  chat__mark *m = chat__calloc(&c->a, 1, sizeof *m + n + 1);
  if (!m)
    return NULL;
  memcpy(m->conv, conv, n + 1);
  if (chat__map_put(&c->marks, conv, n, m, NULL)) {
    chat__free(&c->a, m);
    return NULL;
  }
  return m;
}

static void todo_add(chat_client *c, chat__mark *m) {
  if (m->in_todo)
    return;
  m->in_todo = true;
  m->todo_next = c->mark_todo;
  c->mark_todo = m;
}

static uint64_t mark_have(const chat__mark *m, chat_receipt_state k) {
  return m->queued[k] > m->sent[k] ? m->queued[k] : m->sent[k];
}

/* When the conversation's marks may next go out: one flush (a delivered
 * and/or a read frame) per conversation per receipt_interval_ms. */
static chat_time_ms mark_due(const chat_client *c, const chat__mark *m) {
  if (m->want[1] <= mark_have(m, 1) && m->want[2] <= mark_have(m, 2))
    return CHAT_TIME_NEVER;
  if (!m->ever)
    return 0;
  return m->last_at + c->s.receipt_interval_ms;
}

void chat__client_marks_flush(chat_client *c, chat_time_ms now) {
  if (!chat__client_online(c))
    return;
  chat__mark **pp = &c->mark_todo;
  while (*pp) {
    chat__mark *m = *pp;
    chat_time_ms due = mark_due(c, m);
    if (due != CHAT_TIME_NEVER && due <= now) {
      for (chat_receipt_state k = CHAT_RECEIPT_DELIVERED;
           k <= CHAT_RECEIPT_READ; k++) {
        if (m->want[k] <= mark_have(m, k))
          continue;
        chat_mark mk = {.conversation_id = m->conv,
                        .up_to_message_id = m->want[k]};
        chat_frame f = {.version = CHAT_FRAME_V1,
                        .type = k == CHAT_RECEIPT_DELIVERED
                                    ? CHAT_FRAME_DELIVERED
                                       : CHAT_FRAME_READ,
                        .mark = &mk};
        chat__out *o;
        if (chat__client_queue_frame(c, &f, &o))
          return;
        o->kind = OUT_MARK;
        o->mark = m;
        o->mark_kind = k;
        o->up_to = m->want[k];
        m->queued[k] = m->want[k];
      }
      m->last_at = now;
      m->ever = true;
      due = mark_due(c, m);
    }
    if (due == CHAT_TIME_NEVER && *pp == m) {
      /* Nothing left to send: off the list until a mark moves again. */
      *pp = m->todo_next;
      m->todo_next = NULL;
      m->in_todo = false;
    } else {
      pp = &m->todo_next;
    }
  }
}

chat_time_ms chat__client_marks_deadline(const chat_client *c) {
  chat_time_ms d = CHAT_TIME_NEVER;
  for (const chat__mark *m = c->mark_todo; m; m = m->todo_next) {
    chat_time_ms t = mark_due(c, m);
    if (t < d)
      d = t;
  }
  return d;
}

void chat__client_marks_written(chat_client *c, const chat__out *o) {
  chat__mark *m = o->mark;
  chat_receipt_state k = o->mark_kind;
  if (m->queued[k] == o->up_to)
    m->queued[k] = 0;
  if (o->up_to > m->sent[k]) {
    m->sent[k] = o->up_to;
    if (c->st->set_mark(c->st->self, m->conv, k, m->want[k], m->sent[k]))
      chat__client_error(c, CHAT_ERR_MODULE, m->conv,
                         "cannot record a sent mark", 0, false);
  }
}

void chat__client_marks_unqueued(chat_client *c, chat__mark *m,
                                 chat_receipt_state kind) {
  m->queued[kind] = 0;
  todo_add(c, m);
}

static chat_err set_mark(chat_client *c, const char *conv,
                         chat_receipt_state k, uint64_t up_to,
                         chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (e)
    return e;
  if (up_to == 0 || up_to > INT64_MAX)
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "up_to: %llu is not a message id (1..2^63-1)",
                             (unsigned long long)up_to);
  chat__mark *m = mark_get(c, conv, true);
  if (!m)
    return chat__client_fail(c, CHAT_ERR_NOMEM, "out of memory");
  if (up_to <= m->want[k])
    return CHAT_OK;
  e = chat__client_store_err(
      c->st->set_mark(c->st->self, conv, k, up_to, m->sent[k]));
  if (e)
    return chat__client_fail(c, e, e == CHAT_ERR_NOMEM
                                       ? "out of memory"
                                       : "store.set_mark: failed; the mark "
                                         "was not recorded");
  m->want[k] = up_to;
  todo_add(c, m);
  chat__client_marks_flush(c, now);
  return CHAT_OK;
}

chat_err chat_client_mark_delivered(chat_client *c, const char *conv,
                                    uint64_t up_to, chat_time_ms now) {
  return set_mark(c, conv, CHAT_RECEIPT_DELIVERED, up_to, now);
}

chat_err chat_client_mark_read(chat_client *c, const char *conv,
                               uint64_t up_to, chat_time_ms now) {
  return set_mark(c, conv, CHAT_RECEIPT_READ, up_to, now);
}

void chat__client_auto_delivered(chat_client *c, const char *conv,
                                 uint64_t up_to, chat_time_ms now) {
  if (c->s.manual_delivered || up_to == 0)
    return;
  chat_err e = set_mark(c, conv, CHAT_RECEIPT_DELIVERED, up_to, now);
  if (e)
    chat__client_error(c, e, conv, "cannot record the delivered mark", 0,
                       false);
}

void chat__client_marks_state_change(chat_client *c,
                                     const chat_state_change *sc) {
  chat__mark *m = mark_get(c, sc->conversation_id, true);
  uint64_t id = sc->last_read_message_id;
  if (m && id > m->sent[2]) {
    /* The server has this mark already (another device sent it). */
    uint64_t want = m->want[2] > id ? m->want[2] : id;
    if (c->st->set_mark(c->st->self, m->conv, CHAT_RECEIPT_READ, want, id) ==
        CHAT_OK) {
      m->want[2] = want;
      m->sent[2] = id;
    }
  }
}

static void load_cb(void *ctx, const char *conv, chat_receipt_state kind,
                    uint64_t want, uint64_t sent) {
  chat_client *c = ctx;
  if (kind != CHAT_RECEIPT_DELIVERED && kind != CHAT_RECEIPT_READ)
    return;
  chat__mark *m = mark_get(c, conv, true);
  if (!m) {
    c->load_oom = true;
    return;
  }
  m->want[kind] = want;
  m->sent[kind] = sent;
  todo_add(c, m);
}

chat_err chat__client_marks_load(chat_client *c) {
  return c->st->each_mark(c->st->self, load_cb, c);
}

void chat__client_marks_free(chat_client *c) {
  size_t it = 0;
  void *v;
  while (chat__map_next(&c->marks, &it, NULL, NULL, &v))
    chat__free(&c->a, v);
  chat__map_free(&c->marks);
  c->mark_todo = NULL;
}

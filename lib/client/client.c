/* The sans-I/O client core: connection state machine with backoff, hello
 * and resume, the outbox, receipt marks, typing and presence. REST paging
 * lives in rest.c; the store behind client/store.h.
 *
 * Invariants worth knowing before changing anything here:
 * - The store is written before memory, so a store failure leaves both as
 *   they were and the caller gets CHAT_ERR_MODULE.
 * - last_seen of a conversation is only raised by messages known to be
 *   contiguous with what is stored: resume history, REST gap pages, and
 *   live messages while READY with no gap open. Anything else (an ack of
 *   our own send, a live message during resume) is stored but leaves
 *   last_seen alone, so a disconnect at any point can make the client fetch
 *   a message twice (the store drops the copy) but never skip one.
 * - Callbacks run after the client's own bookkeeping for an event is done,
 *   and list nodes are unlinked before a callback sees them, so a callback
 *   may call back into the client. */
#include "client/client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/utf8.h"

#define DEF_STABLE_MS 30000
#define DEF_RECEIPT_MS 1000
#define DEF_TYPING_REFRESH_MS 3000
#define DEF_TYPING_IDLE_MS 5000
#define DEF_TYPING_EXPIRE_MS 5000
#define DEF_TYPING_MAX_MEMBERS 50
#define DEF_HELLO_TIMEOUT_MS 10000
#define DEF_REST_PAGE 200
#define DEF_SEND_RETRY_MS 2000
#define DEF_MAX_FRAME (1u << 20)
#define DEF_MAX_BODY 65536
#define MAX_PRESENCE 100
/* The server refuses a resume listing more (codec default 4096). */
#define MAX_RESUME_ENTRIES 4096

static chat_time_ms tmin(chat_time_ms a, chat_time_ms b) {
  return a < b ? a : b;
}

static void logf_(chat_client *c, int level, const char *fmt, const char *a,
                  const char *b) {
  if (!c->s.env.log)
    return;
  char line[256];
  snprintf(line, sizeof line, "client: %s %s %s", fmt, a ? a : "",
           b ? b : "");
  c->s.env.log(c->s.env.user_data, level, line);
}

chat_err chat__client_dup(chat_client *c, const char *s, char **out) {
  *out = chat__strndup(&c->a, s, strlen(s));
  return *out ? CHAT_OK : CHAT_ERR_NOMEM;
}

void chat__client_wants_changed(chat_client *c) {
  if (c->cb.on_wants)
    c->cb.on_wants(c, c->ud);
}

static void set_state(chat_client *c, chat_client_state st) {
  if (c->state == st)
    return;
  c->state = st;
  if (c->cb.on_connection)
    c->cb.on_connection(c, st, c->ud);
  chat__client_wants_changed(c);
}

void chat__client_error(chat_client *c, chat_err err, const char *conv,
                        const char *message, int http_status, bool retrying) {
  logf_(c, CHAT_LOG_WARN, message, conv, NULL);
  if (!c->cb.on_error)
    return;
  chat_client_error e = {.err = err, .conversation_id = conv,
                         .message = message ? message : "",
                         .http_status = http_status, .retrying = retrying};
  c->cb.on_error(c, &e, c->ud);
}

static bool online(const chat_client *c) {
  return (c->state == CHAT_CLIENT_RESUMING ||
          c->state == CHAT_CLIENT_READY) && !c->want_close;
}

/* ------------------------------------------------------------------------
 * Outbound queue */

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

/* Encode and queue one frame. */
static chat_err queue_frame(chat_client *c, const chat_frame *f,
                            chat__out **item) {
  const char *json;
  size_t len;
  chat_err e = chat_codec_encode(c->enc, f, &json, &len);
  if (e) {
    logf_(c, CHAT_LOG_ERROR, "cannot encode",
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

static void drop_queue(chat_client *c) {
  chat__out *o = c->q_head;
  while (o) {
    chat__out *n = o->next;
    chat__free(&c->a, o);
    o = n;
  }
  c->q_head = c->q_tail = NULL;
  /* Nothing queued is in flight any more. */
  for (chat__mark *m = c->marks; m; m = m->next)
    m->queued[1] = m->queued[2] = 0;
}

/* ------------------------------------------------------------------------
 * Outbox */

static chat__obox *obox_find(chat_client *c, const char *id,
                             chat__obox **prev) {
  chat__obox *p = NULL;
  for (chat__obox *o = c->obox_head; o; p = o, o = o->next)
    if (strcmp(o->client_msg_id, id) == 0) {
      if (prev)
        *prev = p;
      return o;
    }
  return NULL;
}

static void obox_unlink(chat_client *c, chat__obox *o, chat__obox *prev) {
  if (prev)
    prev->next = o->next;
  else
    c->obox_head = o->next;
  if (c->obox_tail == o)
    c->obox_tail = prev;
  c->obox_len--;
}

static void obox_free(chat_client *c, chat__obox *o) {
  chat__free(&c->a, o->client_msg_id);
  chat__free(&c->a, o->conv);
  chat__free(&c->a, o->body);
  chat__free(&c->a, o);
}

static chat_err obox_append(chat_client *c, const char *id, const char *conv,
                            const char *body, size_t len) {
  chat__obox *o = chat__calloc(&c->a, 1, sizeof *o);
  if (!o)
    return CHAT_ERR_NOMEM;
  o->client_msg_id = chat__strndup(&c->a, id, strlen(id));
  o->conv = chat__strndup(&c->a, conv, strlen(conv));
  o->body = chat__strndup(&c->a, body ? body : "", len);
  o->body_len = len;
  if (!o->client_msg_id || !o->conv || !o->body) {
    obox_free(c, o);
    return CHAT_ERR_NOMEM;
  }
  if (c->obox_tail)
    c->obox_tail->next = o;
  else
    c->obox_head = o;
  c->obox_tail = o;
  c->obox_len++;
  return CHAT_OK;
}

/* Send every outbox entry not yet sent on this connection, in order. An
 * entry waiting for its retry time holds back the entries after it in the
 * same conversation, so one sender's order survives a rate limit. */
static void flush_outbox(chat_client *c, chat_time_ms now) {
  if (!online(c))
    return;
  for (chat__obox *o = c->obox_head; o; o = o->next) {
    if (o->sent_gen == c->conn_gen)
      continue;
    bool held = o->retry_at > now;
    for (chat__obox *p = c->obox_head; !held && p != o; p = p->next)
      if (p->sent_gen != c->conn_gen && strcmp(p->conv, o->conv) == 0)
        held = true;
    if (held)
      continue;
    chat_send s = {.client_msg_id = o->client_msg_id,
                   .conversation_id = o->conv,
                   .body = {o->body, o->body_len}};
    chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_SEND,
                    .send = &s};
    chat_err e = queue_frame(c, &f, NULL);
    if (e == CHAT_ERR_NOMEM)
      return; /* tried again on the next flush */
    if (e) {
      /* Never encodable (a body the codec refuses): it can only fail. */
      o->sent_gen = c->conn_gen;
      continue;
    }
    o->sent_gen = c->conn_gen;
    o->retry_at = 0;
  }
}

static void load_outbox_cb(const chat__outbox_entry *e, void *ud) {
  chat_client *c = ud;
  if (obox_append(c, e->client_msg_id, e->conversation_id, e->body.ptr,
                  e->body.len))
    c->load_oom = true;
}

/* ------------------------------------------------------------------------
 * Receipt marks */

static chat__mark *mark_get(chat_client *c, const char *conv, bool create) {
  for (chat__mark *m = c->marks; m; m = m->next)
    if (strcmp(m->conv, conv) == 0)
      return m;
  if (!create)
    return NULL;
  chat__mark *m = chat__calloc(&c->a, 1, sizeof *m);
  if (!m)
    return NULL;
  m->conv = chat__strndup(&c->a, conv, strlen(conv));
  if (!m->conv) {
    chat__free(&c->a, m);
    return NULL;
  }
  m->next = c->marks;
  c->marks = m;
  return m;
}

static uint64_t mark_have(const chat__mark *m, int k) {
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

static void flush_marks(chat_client *c, chat_time_ms now) {
  if (!online(c))
    return;
  for (chat__mark *m = c->marks; m; m = m->next) {
    if (mark_due(c, m) > now)
      continue;
    for (int k = 1; k <= 2; k++) {
      if (m->want[k] <= mark_have(m, k))
        continue;
      chat_mark mk = {.conversation_id = m->conv,
                      .up_to_message_id = m->want[k]};
      chat_frame f = {.version = CHAT_FRAME_V1,
                      .type = k == 1 ? CHAT_FRAME_DELIVERED : CHAT_FRAME_READ,
                      .mark = &mk};
      chat__out *o;
      if (queue_frame(c, &f, &o))
        return;
      o->kind = OUT_MARK;
      o->mark = m;
      o->mark_kind = k;
      o->up_to = m->want[k];
      m->queued[k] = m->want[k];
    }
    m->last_at = now;
    m->ever = true;
  }
}

static chat_err set_mark(chat_client *c, const char *conv, int k,
                         uint64_t up_to, chat_time_ms now) {
  if (!c || !conv || !chat_id_valid(conv, strlen(conv)) || up_to == 0 ||
      up_to > INT64_MAX)
    return CHAT_ERR_INVAL;
  chat__mark *m = mark_get(c, conv, true);
  if (!m)
    return CHAT_ERR_NOMEM;
  if (up_to <= m->want[k])
    return CHAT_OK;
  chat_err e = c->st->set_mark(c->st->self, conv, k, up_to, m->sent[k]);
  if (e)
    return e == CHAT_ERR_NOMEM ? e : CHAT_ERR_MODULE;
  m->want[k] = up_to;
  flush_marks(c, now);
  return CHAT_OK;
}

chat_err chat_client_mark_delivered(chat_client *c, const char *conv,
                                    uint64_t up_to, chat_time_ms now) {
  return set_mark(c, conv, 1, up_to, now);
}

chat_err chat_client_mark_read(chat_client *c, const char *conv,
                               uint64_t up_to, chat_time_ms now) {
  return set_mark(c, conv, 2, up_to, now);
}

void chat__client_auto_delivered(chat_client *c, const char *conv,
                                 uint64_t up_to, chat_time_ms now) {
  if (c->s.manual_delivered || up_to == 0)
    return;
  chat_err e = set_mark(c, conv, 1, up_to, now);
  if (e)
    chat__client_error(c, e, conv, "cannot record the delivered mark", 0,
                       false);
}

static void load_mark_cb(const char *conv, int kind, uint64_t want,
                         uint64_t sent, void *ud) {
  chat_client *c = ud;
  if (kind < 1 || kind > 2)
    return;
  chat__mark *m = mark_get(c, conv, true);
  if (!m) {
    c->load_oom = true;
    return;
  }
  m->want[kind] = want;
  m->sent[kind] = sent;
}

/* ------------------------------------------------------------------------
 * Typing */

static chat__mytyping *typing_get(chat_client *c, const char *conv,
                                  bool create) {
  for (chat__mytyping *t = c->typing; t; t = t->next)
    if (strcmp(t->conv, conv) == 0)
      return t;
  if (!create)
    return NULL;
  chat__mytyping *t = chat__calloc(&c->a, 1, sizeof *t);
  if (!t)
    return NULL;
  t->conv = chat__strndup(&c->a, conv, strlen(conv));
  if (!t->conv) {
    chat__free(&c->a, t);
    return NULL;
  }
  t->next = c->typing;
  c->typing = t;
  return t;
}

static chat_err queue_typing(chat_client *c, const char *conv, bool on) {
  chat_typing t = {.conversation_id = conv, .is_typing = on};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_TYPING,
                  .typing = &t};
  return queue_frame(c, &f, NULL);
}

chat_err chat_client_typing(chat_client *c, const char *conv,
                            chat_time_ms now) {
  if (!c || !conv || !chat_id_valid(conv, strlen(conv)))
    return CHAT_ERR_INVAL;
  if (!online(c))
    return CHAT_OK;
  chat_conversation_type type = CHAT_CONVERSATION_DIRECT;
  uint32_t n = 0;
  chat_err e = c->st->get_conversation(c->st->self, conv, &type, &n);
  /* Typing is a nicety: an unknown conversation still gets it, but a large
   * group never does (PROTOCOL.md 4.8). */
  if (e == CHAT_OK && n > c->s.typing_max_members)
    return CHAT_OK;
  chat__mytyping *t = typing_get(c, conv, true);
  if (!t)
    return CHAT_ERR_NOMEM;
  if (!t->active || now - t->last_true >= c->s.typing_refresh_ms) {
    e = queue_typing(c, conv, true);
    if (e)
      return e;
    t->active = true;
    t->last_true = now;
  }
  t->last_key = now;
  return CHAT_OK;
}

static void typing_stop(chat_client *c, chat__mytyping *t) {
  if (!t->active)
    return;
  t->active = false;
  if (online(c))
    (void)queue_typing(c, t->conv, false);
}

/* Peers' typing, expired by the client itself. */
static void peer_typing(chat_client *c, const chat_typing *ty,
                        chat_time_ms now) {
  chat__peer *p = c->peers, *prev = NULL;
  for (; p; prev = p, p = p->next)
    if (strcmp(p->conv, ty->conversation_id) == 0 &&
        strcmp(p->user, ty->user_id) == 0)
      break;
  if (ty->is_typing) {
    bool fresh = p == NULL;
    if (!p) {
      p = chat__calloc(&c->a, 1, sizeof *p);
      if (!p)
        return;
      p->conv = chat__strndup(&c->a, ty->conversation_id,
                              strlen(ty->conversation_id));
      p->user = chat__strndup(&c->a, ty->user_id, strlen(ty->user_id));
      if (!p->conv || !p->user) {
        chat__free(&c->a, p->conv);
        chat__free(&c->a, p->user);
        chat__free(&c->a, p);
        return;
      }
      p->next = c->peers;
      c->peers = p;
    }
    p->expires = now + c->s.typing_expire_ms;
    if (fresh && c->cb.on_typing)
      c->cb.on_typing(c, ty->conversation_id, ty->user_id, true, c->ud);
    return;
  }
  if (!p)
    return;
  if (prev)
    prev->next = p->next;
  else
    c->peers = p->next;
  if (c->cb.on_typing)
    c->cb.on_typing(c, p->conv, p->user, false, c->ud);
  chat__free(&c->a, p->conv);
  chat__free(&c->a, p->user);
  chat__free(&c->a, p);
}

/* Stop every peer whose typing expired by now (all of them when `all`). */
static void expire_peers(chat_client *c, chat_time_ms now, bool all) {
  for (;;) {
    chat__peer *p = c->peers, *prev = NULL;
    for (; p; prev = p, p = p->next)
      if (all || p->expires <= now)
        break;
    if (!p)
      return;
    if (prev)
      prev->next = p->next;
    else
      c->peers = p->next;
    if (c->cb.on_typing)
      c->cb.on_typing(c, p->conv, p->user, false, c->ud);
    chat__free(&c->a, p->conv);
    chat__free(&c->a, p->user);
    chat__free(&c->a, p);
  }
}

/* ------------------------------------------------------------------------
 * Presence */

static void send_presence(chat_client *c) {
  if (!online(c) || c->n_presence == 0)
    return;
  chat_presence_subscribe ps = {.user_ids = (const char *const *)c->presence,
                                .n_user_ids = c->n_presence};
  chat_frame f = {.version = CHAT_FRAME_V1,
                  .type = CHAT_FRAME_PRESENCE_SUBSCRIBE,
                  .presence_subscribe = &ps};
  (void)queue_frame(c, &f, NULL);
}

static void presence_clear(chat_client *c) {
  for (size_t i = 0; i < c->n_presence; i++)
    chat__free(&c->a, c->presence[i]);
  chat__free(&c->a, c->presence);
  c->presence = NULL;
  c->n_presence = 0;
}

chat_err chat_client_watch_presence(chat_client *c,
                                    const char *const *user_ids, size_t n,
                                    chat_time_ms now) {
  (void)now;
  if (!c || (n && !user_ids))
    return CHAT_ERR_INVAL;
  if (n > MAX_PRESENCE)
    return CHAT_ERR_TOO_MANY;
  for (size_t i = 0; i < n; i++)
    if (!user_ids[i] || !chat_id_valid(user_ids[i], strlen(user_ids[i])))
      return CHAT_ERR_INVAL;
  char **ids = NULL;
  if (n) {
    ids = chat__calloc(&c->a, n, sizeof *ids);
    if (!ids)
      return CHAT_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
      if (!(ids[i] = chat__strndup(&c->a, user_ids[i],
                                   strlen(user_ids[i])))) {
        for (size_t j = 0; j < i; j++)
          chat__free(&c->a, ids[j]);
        chat__free(&c->a, ids);
        return CHAT_ERR_NOMEM;
      }
  }
  bool had = c->n_presence > 0;
  presence_clear(c);
  c->presence = ids;
  c->n_presence = n;
  if (n)
    send_presence(c);
  else if (had && online(c)) {
    /* An empty list clears the server's subscriptions too. */
    chat_presence_subscribe ps = {.user_ids = NULL, .n_user_ids = 0};
    chat_frame f = {.version = CHAT_FRAME_V1,
                    .type = CHAT_FRAME_PRESENCE_SUBSCRIBE,
                    .presence_subscribe = &ps};
    (void)queue_frame(c, &f, NULL);
  }
  return CHAT_OK;
}

/* ------------------------------------------------------------------------
 * Messages and conversations into the store */

static bool is_own(const chat_client *c, const chat_message *m) {
  return c->user_id && m->sender_id && strcmp(c->user_id, m->sender_id) == 0;
}

void chat__client_store_message(chat_client *c, const chat_message *m,
                                chat_message_origin origin, bool raise,
                                uint64_t *max_id) {
  bool inserted = true;
  chat_err e = c->st->put_message(c->st->self, m, is_own(c, m), &inserted);
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

void chat__client_progress(chat_client *c, const char *conv) {
  if (!c->cb.on_resume_progress)
    return;
  uint32_t gaps = chat__creq_gaps(c);
  chat_resume_progress p = {.conversation_id = conv,
                            .gaps_open = gaps,
                            .messages = c->resume_msgs,
                            .resumed = c->resumed,
                            .complete = c->resumed && gaps == 0};
  c->cb.on_resume_progress(c, &p, c->ud);
}

/* ------------------------------------------------------------------------
 * Resume */

typedef struct resume_build {
  chat_client *c;
  chat_resume_entry *e;
  size_t n, cap;
  uint64_t since;
  bool oom;
} resume_build;

static void resume_cb(const char *conv, uint64_t id, void *ud) {
  resume_build *b = ud;
  if (b->oom || id == 0)
    return;
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    chat_resume_entry *ne = chat__realloc(&b->c->a, b->e, cap * sizeof *ne);
    if (!ne) {
      b->oom = true;
      return;
    }
    b->e = ne;
    b->cap = cap;
  }
  char *copy = chat__strndup(&b->c->a, conv, strlen(conv));
  if (!copy) {
    b->oom = true;
    return;
  }
  b->e[b->n].conversation_id = copy;
  b->e[b->n].message_id = id;
  b->n++;
  if (id > b->since)
    b->since = id;
}

static int newest_first(const void *x, const void *y) {
  const chat_resume_entry *a = x, *b = y;
  return a->message_id < b->message_id ? 1
         : a->message_id > b->message_id ? -1
                                         : 0;
}

/* `resume` from the store's last_seen map; `since` is the newest id this
 * device has seen anywhere, absent on a fresh device (the server then
 * sends a `conversation` frame for each conversation instead). A device
 * with more conversations than a resume may list names the most recently
 * active ones, and `since` covers the rest. */
static chat_err send_resume(chat_client *c) {
  resume_build b = {.c = c};
  chat_err e = c->st->each_last_seen(c->st->self, resume_cb, &b);
  if (!e && b.oom)
    e = CHAT_ERR_NOMEM;
  size_t keep = b.n > MAX_RESUME_ENTRIES ? MAX_RESUME_ENTRIES : b.n;
  bool sorted = false;
  while (!e) {
    if (keep < b.n && !sorted) {
      qsort(b.e, b.n, sizeof *b.e, newest_first);
      sorted = true;
    }
    /* Unlisted conversations get what is after `since`: when some are
     * left out, `since` must go back to the oldest of them, or the
     * messages between their last_seen and the newest id would be
     * skipped. */
    uint64_t since = keep < b.n ? b.e[b.n - 1].message_id : b.since;
    chat_resume r = {.last_seen = b.e, .n_last_seen = keep,
                     .has_since = since > 0, .since = since};
    chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUME,
                    .resume = &r};
    e = queue_frame(c, &f, NULL);
    /* Long conversation ids can pass the frame limit first. */
    if (e != CHAT_ERR_FRAME_TOO_LARGE || keep <= 1)
      break;
    e = CHAT_OK;
    keep /= 2;
  }
  if (e && e != CHAT_ERR_NOMEM && e != CHAT_ERR_FRAME_TOO_LARGE)
    e = CHAT_ERR_MODULE;
  for (size_t i = 0; i < b.n; i++)
    chat__free(&c->a, (char *)b.e[i].conversation_id);
  chat__free(&c->a, b.e);
  return e;
}

static void partial_set(chat_client *c, const char *conv, bool on) {
  chat__partial *p = c->partial, *prev = NULL;
  for (; p; prev = p, p = p->next)
    if (strcmp(p->conv, conv) == 0)
      break;
  if (on && !p) {
    p = chat__calloc(&c->a, 1, sizeof *p);
    if (p && (p->conv = chat__strndup(&c->a, conv, strlen(conv)))) {
      p->next = c->partial;
      c->partial = p;
    } else {
      chat__free(&c->a, p);
    }
  } else if (!on && p) {
    if (prev)
      prev->next = p->next;
    else
      c->partial = p->next;
    chat__free(&c->a, p->conv);
    chat__free(&c->a, p);
  }
}

static void partial_clear(chat_client *c) {
  while (c->partial)
    partial_set(c, c->partial->conv, false);
}

/* ------------------------------------------------------------------------
 * Inbound frames */

static void on_hello(chat_client *c, const chat_hello *h, chat_time_ms now) {
  char *uid;
  if (chat__client_dup(c, h->user_id, &uid)) {
    c->want_close = true;
    return;
  }
  chat__free(&c->a, c->user_id);
  c->user_id = uid;
  c->heartbeat_ms = h->heartbeat_ms;
  c->max_body_bytes = h->limits.max_body_bytes ? h->limits.max_body_bytes
                                               : DEF_MAX_BODY;
  c->ready_at = now;
  c->resumed = false;
  c->resume_msgs = 0;
  partial_clear(c);
  /* resume goes first, then the outbox in order, presence and marks; the
   * callbacks run after, so a send made from one queues behind them. */
  c->state = CHAT_CLIENT_RESUMING;
  chat_err e = send_resume(c);
  flush_outbox(c, now);
  send_presence(c);
  flush_marks(c, now);
  c->state = CHAT_CLIENT_HANDSHAKE;
  set_state(c, CHAT_CLIENT_RESUMING);
  if (e)
    chat__client_error(c, e, NULL, "cannot build resume", 0, false);
  if (c->cb.on_hello)
    c->cb.on_hello(c, h, c->ud);
}

static void on_ack(chat_client *c, const chat_ack *a) {
  chat__obox *prev = NULL;
  chat__obox *o = obox_find(c, a->client_msg_id, &prev);
  if (!o) {
    /* An ack for a send already acked (a retry crossing the first ack):
     * the outbox entry is gone, there is nothing left to do. */
    logf_(c, CHAT_LOG_DEBUG, "ack for an unknown send",
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
  obox_unlink(c, o, prev);
  chat_message m = {.message_id = a->message_id,
                    .conversation_id = o->conv,
                    .sender_id = c->user_id,
                    .body = {o->body, o->body_len},
                    .server_ts = a->server_ts,
                    .client_msg_id = o->client_msg_id};
  bool inserted;
  if (c->user_id &&
      c->st->put_message(c->st->self, &m, true, &inserted) != CHAT_OK)
    chat__client_error(c, CHAT_ERR_MODULE, o->conv,
                       "cannot store an acked send", 0, false);
  if (c->cb.on_ack)
    c->cb.on_ack(c, a, c->ud);
  obox_free(c, o);
}

static void on_error_frame(chat_client *c, const chat_error_frame *ef,
                           chat_time_ms now) {
  chat_client_error ce = {.err = CHAT_OK, .wire = ef,
                          .message = ef->message.ptr ? ef->message.ptr : ""};
  /* The server's resume answer stopped at its queue budget (too many
   * conversations): what it left out comes over REST. */
  if (ef->wire == CHAT_WIRE_TOO_LARGE && ef->ref.ptr && ef->ref.len == 6 &&
      memcmp(ef->ref.ptr, "resume", 6) == 0) {
    chat_err e = chat__creq_sync(c);
    if (e)
      chat__client_error(c, e, NULL, "cannot start the REST sync", 0, false);
    if (c->cb.on_error)
      c->cb.on_error(c, &ce, c->ud);
    return;
  }
  chat__obox *prev = NULL;
  chat__obox *o = ef->ref.ptr ? obox_find(c, ef->ref.ptr, &prev) : NULL;
  if (o) {
    ce.client_msg_id = o->client_msg_id;
    ce.conversation_id = o->conv;
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
        c->cb.on_error(c, &ce, c->ud);
      return;
    }
    /* Refused for good (not a member, too large, ...): it leaves the
     * outbox, and the app hears why. */
    if (c->st->outbox_remove(c->st->self, o->client_msg_id))
      chat__client_error(c, CHAT_ERR_MODULE, o->conv,
                         "cannot remove a refused send from the outbox", 0,
                         false);
    obox_unlink(c, o, prev);
    if (c->cb.on_error)
      c->cb.on_error(c, &ce, c->ud);
    obox_free(c, o);
    return;
  }
  if (c->cb.on_error)
    c->cb.on_error(c, &ce, c->ud);
}

static void on_history(chat_client *c, const chat_history *h,
                       chat_time_ms now) {
  const char *conv = h->conversation_id;
  bool gap = chat__creq_gap_is_open(c, conv);
  uint64_t max_id = 0;
  for (size_t i = 0; i < h->n_messages; i++) {
    if (strcmp(h->messages[i].conversation_id, conv) != 0) {
      chat__client_error(c, CHAT_ERR_BAD_VALUE, conv,
                         "history message of another conversation", 0,
                         false);
      continue;
    }
    chat__client_store_message(c, &h->messages[i], CHAT_ORIGIN_RESUME, !gap,
                               &max_id);
  }
  partial_set(c, conv, !h->complete);
  chat__client_auto_delivered(c, conv, max_id, now);
  chat__client_progress(c, conv);
}

static void on_resume_failed(chat_client *c, const chat_resume_failed *rf,
                             chat_time_ms now) {
  const char *r = rf->reason.ptr ? rf->reason.ptr : "";
  partial_set(c, rf->conversation_id, false);
  if (strcmp(r, "not_member") == 0 ||
      strcmp(r, "no_such_conversation") == 0) {
    chat__client_error(c, CHAT_ERR_NOT_FOUND, rf->conversation_id,
                       "resume refused: not a member", 0, false);
    return;
  }
  /* too_old, or a reason this version does not know: page it over REST. */
  chat_err e = chat__creq_gap_open(c, rf->conversation_id, now);
  if (e)
    chat__client_error(c, e, rf->conversation_id,
                       "cannot start REST paging", 0, false);
  chat__client_progress(c, rf->conversation_id);
}

static void on_resumed(chat_client *c, chat_time_ms now) {
  /* A conversation whose history stopped before a complete:true frame has
   * a hole the server did not fill: page it over REST. */
  while (c->partial) {
    char *conv = c->partial->conv;
    (void)chat__creq_gap_open(c, conv, now);
    partial_set(c, conv, false);
  }
  c->resumed = true;
  set_state(c, CHAT_CLIENT_READY);
  chat__client_progress(c, NULL);
}

static void on_live_message(chat_client *c, const chat_message *m,
                            chat_time_ms now) {
  bool raise = c->state == CHAT_CLIENT_READY &&
               !chat__creq_gap_is_open(c, m->conversation_id);
  uint64_t max_id = 0;
  chat__client_store_message(c, m, CHAT_ORIGIN_LIVE, raise, &max_id);
  if (!is_own(c, m))
    chat__client_auto_delivered(c, m->conversation_id, max_id, now);
}

static void on_state_change(chat_client *c, const chat_state_change *sc) {
  chat__mark *m = mark_get(c, sc->conversation_id, true);
  uint64_t id = sc->last_read_message_id;
  if (m && id > m->sent[2]) {
    /* The server has this mark already (another device sent it). */
    uint64_t want = m->want[2] > id ? m->want[2] : id;
    if (c->st->set_mark(c->st->self, m->conv, 2, want, id) == CHAT_OK) {
      m->want[2] = want;
      m->sent[2] = id;
    }
  }
  if (c->cb.on_state_change)
    c->cb.on_state_change(c, sc, c->ud);
}

static void dispatch(chat_client *c, const chat_frame *f, chat_time_ms now) {
  if (c->state == CHAT_CLIENT_HANDSHAKE) {
    if (f->type == CHAT_FRAME_HELLO)
      on_hello(c, f->hello, now);
    else
      chat__client_error(c, CHAT_ERR_STATE, NULL,
                         "frame before hello ignored", 0, false);
    return;
  }
  switch (f->type) {
  case CHAT_FRAME_HELLO:
    chat__client_error(c, CHAT_ERR_STATE, NULL, "second hello ignored", 0,
                       false);
    break;
  case CHAT_FRAME_ACK:
    on_ack(c, f->ack);
    break;
  case CHAT_FRAME_MESSAGE:
    on_live_message(c, f->message, now);
    break;
  case CHAT_FRAME_RECEIPT:
    if (c->st->set_receipt(c->st->self, f->receipt->conversation_id,
                           f->receipt->message_id, (int)f->receipt->state))
      chat__client_error(c, CHAT_ERR_MODULE, f->receipt->conversation_id,
                         "cannot store a receipt", 0, false);
    if (c->cb.on_receipt)
      c->cb.on_receipt(c, f->receipt, c->ud);
    break;
  case CHAT_FRAME_HISTORY:
    on_history(c, f->history, now);
    break;
  case CHAT_FRAME_RESUME_FAILED:
    on_resume_failed(c, f->resume_failed, now);
    break;
  case CHAT_FRAME_RESUMED:
    on_resumed(c, now);
    break;
  case CHAT_FRAME_TYPING:
    if (f->typing->user_id)
      peer_typing(c, f->typing, now);
    break;
  case CHAT_FRAME_PRESENCE:
    if (c->cb.on_presence)
      c->cb.on_presence(c, f->presence, c->ud);
    break;
  case CHAT_FRAME_STATE_CHANGE:
    on_state_change(c, f->state_change);
    break;
  case CHAT_FRAME_CONVERSATION:
    chat__client_put_conversation(c, f->conversation);
    break;
  case CHAT_FRAME_ERROR:
    on_error_frame(c, f->error, now);
    break;
  case CHAT_FRAME_PONG:
    break;
  default:
    chat__client_error(c, CHAT_ERR_UNKNOWN_TYPE, NULL,
                       "unexpected frame type", 0, false);
    break;
  }
}

chat_err chat_client_on_frame(chat_client *c, const char *json, size_t len,
                              chat_time_ms now) {
  if (!c || (!json && len > 0))
    return CHAT_ERR_INVAL;
  if (c->state != CHAT_CLIENT_HANDSHAKE && c->state != CHAT_CLIENT_RESUMING &&
      c->state != CHAT_CLIENT_READY)
    return CHAT_ERR_STATE;
  c->last_in = now;
  const chat_frame *f;
  chat_decode_error de;
  chat_err e = chat_codec_decode(c->dec, CHAT_DIR_TO_CLIENT, json, len, &f,
                                 &de);
  if (e == CHAT_ERR_NOMEM)
    return e;
  if (e) {
    chat__client_error(c, e, NULL, de.message ? de.message : chat_strerror(e),
                       0, false);
    return CHAT_OK;
  }
  dispatch(c, f, now);
  return CHAT_OK;
}

/* ------------------------------------------------------------------------
 * Connection state machine */

chat_err chat_client_start(chat_client *c, chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  c->started = true;
  if (c->state == CHAT_CLIENT_IDLE ||
      c->state == CHAT_CLIENT_UNAUTHORIZED) {
    c->connect_taken = false;
    set_state(c, CHAT_CLIENT_CONNECTING);
  }
  return CHAT_OK;
}

chat_err chat_client_stop(chat_client *c, chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  c->started = false;
  bool socket = c->state == CHAT_CLIENT_HANDSHAKE ||
                c->state == CHAT_CLIENT_RESUMING ||
                c->state == CHAT_CLIENT_READY ||
                (c->state == CHAT_CLIENT_CONNECTING && c->connect_taken);
  if (socket) {
    if (c->state == CHAT_CLIENT_READY || c->state == CHAT_CLIENT_RESUMING)
      for (chat__mytyping *t = c->typing; t; t = t->next)
        typing_stop(c, t);
    c->want_close = true;
    chat__client_wants_changed(c);
  } else {
    set_state(c, CHAT_CLIENT_IDLE);
  }
  return CHAT_OK;
}

uint32_t chat_client_wants(const chat_client *c) {
  if (!c)
    return 0;
  uint32_t w = 0;
  if (c->q_head)
    w |= CHAT_CLIENT_WANT_WRITE;
  if (c->want_close)
    w |= CHAT_CLIENT_WANT_CLOSE;
  if (c->state == CHAT_CLIENT_CONNECTING && !c->connect_taken)
    w |= CHAT_CLIENT_WANT_CONNECT;
  if (chat__creq_ready(c))
    w |= CHAT_CLIENT_WANT_REST;
  return w;
}

chat_err chat_client_on_connecting(chat_client *c, chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (c->state != CHAT_CLIENT_CONNECTING || c->connect_taken)
    return CHAT_ERR_STATE;
  c->connect_taken = true;
  c->handshake_deadline = now + c->s.hello_timeout_ms;
  return CHAT_OK;
}

chat_err chat_client_on_open(chat_client *c, chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (c->state != CHAT_CLIENT_CONNECTING)
    return CHAT_ERR_STATE;
  if (!c->connect_taken)
    c->handshake_deadline = now + c->s.hello_timeout_ms;
  c->connect_taken = true;
  c->conn_gen++;
  c->last_in = c->last_out = now;
  c->want_close = false;
  set_state(c, CHAT_CLIENT_HANDSHAKE);
  return CHAT_OK;
}

/* The socket closed or the attempt failed; @p unauthorized: the server
 * refused our token, so reconnecting with it would only be refused again. */
static chat_err closed(chat_client *c, uint16_t ws_code, bool unauthorized,
                       chat_time_ms now) {
  bool had = c->state == CHAT_CLIENT_HANDSHAKE ||
             c->state == CHAT_CLIENT_RESUMING ||
             c->state == CHAT_CLIENT_READY ||
             (c->state == CHAT_CLIENT_CONNECTING && c->connect_taken);
  if (!had && !c->want_close)
    return CHAT_OK;
  logf_(c, CHAT_LOG_INFO, "connection closed",
        ws_code ? "" : "(no code)", NULL);
  bool was_up = c->state == CHAT_CLIENT_RESUMING ||
                c->state == CHAT_CLIENT_READY;
  drop_queue(c);
  c->want_close = false;
  c->connect_taken = false;
  partial_clear(c);
  for (chat__mytyping *t = c->typing; t; t = t->next)
    t->active = false;
  expire_peers(c, now, true);
  /* A connection that stayed up long enough proves the server healthy:
   * start the schedule over instead of growing the delay. */
  if (was_up && now - c->ready_at >= c->s.stable_after_ms)
    c->attempt = 0;
  if (!c->started) {
    set_state(c, CHAT_CLIENT_IDLE);
    return CHAT_OK;
  }
  if (unauthorized) {
    /* Terminal until the app calls chat_client_start() again (with a new
     * token given to its transport): retrying the same token on a backoff
     * schedule would hammer the server with requests it must refuse. */
    c->started = false;
    set_state(c, CHAT_CLIENT_UNAUTHORIZED);
    chat__client_error(c, CHAT_ERR_AUTH, NULL,
                       "the server refused the token (HTTP 401)", 401, false);
    return CHAT_OK;
  }
  uint32_t delay = 0;
  if (chat_backoff_next(&c->s.backoff, c->attempt, &c->s.env, &delay))
    delay = c->s.backoff.cap_ms;
  if (c->attempt < UINT32_MAX)
    c->attempt++;
  c->reconnect_at = now + delay;
  set_state(c, CHAT_CLIENT_BACKOFF);
  return CHAT_OK;
}

chat_err chat_client_on_close(chat_client *c, uint16_t ws_code,
                              chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  return closed(c, ws_code, false, now);
}

chat_err chat_client_on_refused(chat_client *c, int http_status,
                                chat_time_ms now) {
  if (!c || http_status < 100 || http_status > 599)
    return CHAT_ERR_INVAL;
  if (!(c->state == CHAT_CLIENT_CONNECTING && c->connect_taken) &&
      !c->want_close)
    return CHAT_ERR_STATE;
  return closed(c, 0, http_status == 401, now);
}

chat_err chat_client_hint_network_up(chat_client *c, chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (c->state == CHAT_CLIENT_BACKOFF) {
    c->reconnect_at = now;
    c->connect_taken = false;
    set_state(c, CHAT_CLIENT_CONNECTING);
  }
  return CHAT_OK;
}

chat_err chat_client_next_frame(chat_client *c, const char **json,
                                size_t *len) {
  if (!c || !json || !len)
    return CHAT_ERR_INVAL;
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
  if (o->kind == OUT_MARK) {
    /* Written now: from here on the mark counts as sent. */
    chat__mark *m = o->mark;
    int k = o->mark_kind;
    if (m->queued[k] == o->up_to)
      m->queued[k] = 0;
    if (o->up_to > m->sent[k]) {
      m->sent[k] = o->up_to;
      if (c->st->set_mark(c->st->self, m->conv, k, m->want[k], m->sent[k]))
        chat__client_error(c, CHAT_ERR_MODULE, m->conv,
                           "cannot record a sent mark", 0, false);
    }
  }
  *json = o->json;
  *len = o->len;
  return CHAT_OK;
}

chat_time_ms chat_client_next_deadline(const chat_client *c) {
  if (!c)
    return CHAT_TIME_NEVER;
  chat_time_ms d = chat__creq_deadline(c);
  switch (c->state) {
  case CHAT_CLIENT_BACKOFF:
    d = tmin(d, c->reconnect_at);
    break;
  case CHAT_CLIENT_CONNECTING:
    if (c->connect_taken && !c->want_close)
      d = tmin(d, c->handshake_deadline);
    break;
  case CHAT_CLIENT_HANDSHAKE:
    if (!c->want_close)
      d = tmin(d, c->handshake_deadline);
    break;
  default:
    break;
  }
  if (online(c)) {
    if (c->heartbeat_ms) {
      d = tmin(d, c->last_out + c->heartbeat_ms);
      d = tmin(d, c->last_in + 2ull * c->heartbeat_ms);
    }
    if (c->state == CHAT_CLIENT_READY &&
        c->ready_at + c->s.stable_after_ms > c->ready_at && c->attempt)
      d = tmin(d, c->ready_at + c->s.stable_after_ms);
    for (chat__mark *m = c->marks; m; m = m->next)
      d = tmin(d, mark_due(c, m));
    for (chat__mytyping *t = c->typing; t; t = t->next)
      if (t->active)
        d = tmin(d, t->last_key + c->s.typing_idle_ms);
    for (chat__obox *o = c->obox_head; o; o = o->next)
      if (o->sent_gen != c->conn_gen && o->retry_at)
        d = tmin(d, o->retry_at);
  }
  for (chat__peer *p = c->peers; p; p = p->next)
    d = tmin(d, p->expires);
  return d;
}

static void request_close(chat_client *c, const char *why) {
  logf_(c, CHAT_LOG_WARN, "closing:", why, NULL);
  c->want_close = true;
  chat__client_wants_changed(c);
}

chat_err chat_client_on_timer(chat_client *c, chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (c->state == CHAT_CLIENT_BACKOFF && now >= c->reconnect_at) {
    c->connect_taken = false;
    set_state(c, CHAT_CLIENT_CONNECTING);
  }
  if (!c->want_close &&
      ((c->state == CHAT_CLIENT_CONNECTING && c->connect_taken) ||
       c->state == CHAT_CLIENT_HANDSHAKE) &&
      now >= c->handshake_deadline)
    request_close(c, "no hello in time");
  if (online(c)) {
    if (c->heartbeat_ms && now >= c->last_in + 2ull * c->heartbeat_ms) {
      request_close(c, "server silent past two heartbeats");
    } else {
      if (c->state == CHAT_CLIENT_READY &&
          now - c->ready_at >= c->s.stable_after_ms)
        c->attempt = 0;
      if (c->heartbeat_ms && now >= c->last_out + c->heartbeat_ms) {
        chat_ping p = {.nonce_json = {NULL, 0}};
        chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_PING,
                        .ping = &p};
        if (queue_frame(c, &f, NULL) == CHAT_OK)
          c->last_out = now;
      }
      for (chat__mytyping *t = c->typing; t; t = t->next)
        if (t->active && now >= t->last_key + c->s.typing_idle_ms)
          typing_stop(c, t);
      flush_outbox(c, now);
      flush_marks(c, now);
    }
  }
  expire_peers(c, now, false);
  chat__creq_timer(c, now);
  return CHAT_OK;
}

/* ------------------------------------------------------------------------
 * Sending */

static void make_client_msg_id(chat_client *c, char out[32]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t r[12];
  c->s.env.random(c->s.env.user_data, r, sizeof r);
  out[0] = 'm';
  for (size_t i = 0; i < sizeof r; i++) {
    out[1 + 2 * i] = hex[r[i] >> 4];
    out[2 + 2 * i] = hex[r[i] & 15];
  }
  out[1 + 2 * sizeof r] = 0;
}

chat_err chat_client_send(chat_client *c, const char *conv, const char *body,
                          size_t body_len, char *client_msg_id_out,
                          chat_time_ms now) {
  if (!c || !conv || (!body && body_len) ||
      !chat_id_valid(conv, strlen(conv)) ||
      !chat__utf8_valid(body ? body : "", body_len))
    return CHAT_ERR_INVAL;
  if (body_len > c->max_body_bytes)
    return CHAT_ERR_TOO_LARGE;
  char id[32];
  make_client_msg_id(c, id);
  chat__outbox_entry en = {.client_msg_id = id, .conversation_id = conv,
                           .body = {body ? body : "", body_len}};
  /* Durable first: once this returns CHAT_OK the send survives a crash. */
  chat_err e = c->st->outbox_add(c->st->self, &en);
  if (e)
    return e == CHAT_ERR_NOMEM ? e : CHAT_ERR_MODULE;
  e = obox_append(c, id, conv, body, body_len);
  if (e) {
    (void)c->st->outbox_remove(c->st->self, id);
    return e;
  }
  chat__mytyping *t = typing_get(c, conv, false);
  if (t)
    typing_stop(c, t);
  flush_outbox(c, now);
  if (c->state == CHAT_CLIENT_READY || c->state == CHAT_CLIENT_RESUMING)
    c->last_out = now;
  if (client_msg_id_out)
    memcpy(client_msg_id_out, id, strlen(id) + 1);
  return CHAT_OK;
}

size_t chat_client_outbox_len(const chat_client *c) {
  return c ? c->obox_len : 0;
}

/* ------------------------------------------------------------------------
 * Local reads */

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

/* ------------------------------------------------------------------------
 * Lifecycle */

const char *chat_client_state_name(chat_client_state s) {
  switch (s) {
  case CHAT_CLIENT_IDLE: return "idle";
  case CHAT_CLIENT_CONNECTING: return "connecting";
  case CHAT_CLIENT_HANDSHAKE: return "handshake";
  case CHAT_CLIENT_RESUMING: return "resuming";
  case CHAT_CLIENT_READY: return "ready";
  case CHAT_CLIENT_BACKOFF: return "backoff";
  case CHAT_CLIENT_UNAUTHORIZED: return "unauthorized";
  }
  return NULL;
}

chat_client_state chat_client_get_state(const chat_client *c) {
  return c ? c->state : CHAT_CLIENT_IDLE;
}

uint32_t chat_client_backoff_attempt(const chat_client *c) {
  return c ? c->attempt : 0;
}

void *chat_client_user_data(const chat_client *c) {
  return c ? c->ud : NULL;
}

void chat_client_store_free(chat_client_store *store) {
  if (store && store->ops.destroy)
    store->ops.destroy(store->ops.self);
}

static uint32_t or_default(uint32_t v, uint32_t d) {
  return v ? v : d;
}

chat_err chat_client_new(chat_client **out,
                         const chat_client_settings *settings,
                         const chat_client_callbacks *callbacks,
                         void *user_data, chat_client_store *store,
                         const chat_allocator *alloc) {
  if (!out)
    return CHAT_ERR_INVAL;
  *out = NULL;
  if (!settings || !store || settings->version != CHAT_CLIENT_SETTINGS_V1 ||
      settings->env.version != CHAT_ENV_V1 || !settings->env.random ||
      (callbacks && callbacks->version != CHAT_CLIENT_CALLBACKS_V1))
    return CHAT_ERR_INVAL;
  chat_allocator a;
  chat_err e = chat__allocator_init(&a, alloc);
  if (e)
    return e;
  chat_client *c = chat__calloc(&a, 1, sizeof *c);
  if (!c)
    return CHAT_ERR_NOMEM;
  c->a = a;
  c->s = *settings;
  chat_client_settings *s = &c->s;
  chat_backoff bd = chat_backoff_default();
  s->backoff.version = CHAT_BACKOFF_V1;
  s->backoff.base_ms = or_default(s->backoff.base_ms, bd.base_ms);
  s->backoff.cap_ms = or_default(s->backoff.cap_ms, bd.cap_ms);
  if (!settings->backoff.version && !s->backoff.floor_ms)
    s->backoff.floor_ms = bd.floor_ms;
  s->stable_after_ms = or_default(s->stable_after_ms, DEF_STABLE_MS);
  s->receipt_interval_ms = or_default(s->receipt_interval_ms, DEF_RECEIPT_MS);
  s->typing_refresh_ms = or_default(s->typing_refresh_ms,
                                    DEF_TYPING_REFRESH_MS);
  s->typing_idle_ms = or_default(s->typing_idle_ms, DEF_TYPING_IDLE_MS);
  s->typing_expire_ms = or_default(s->typing_expire_ms, DEF_TYPING_EXPIRE_MS);
  s->typing_max_members = or_default(s->typing_max_members,
                                     DEF_TYPING_MAX_MEMBERS);
  s->hello_timeout_ms = or_default(s->hello_timeout_ms, DEF_HELLO_TIMEOUT_MS);
  s->rest_page_limit = or_default(s->rest_page_limit, DEF_REST_PAGE);
  if (s->rest_page_limit > 200)
    s->rest_page_limit = 200;
  s->send_retry_ms = or_default(s->send_retry_ms, DEF_SEND_RETRY_MS);
  s->max_frame_bytes = or_default(s->max_frame_bytes, DEF_MAX_FRAME);
  if (callbacks)
    c->cb = *callbacks;
  c->ud = user_data;
  c->store = store;
  c->st = &store->ops;
  c->max_body_bytes = DEF_MAX_BODY;
  c->next_req_id = 1;
  chat__buf_init(&c->scratch, &c->a);

  chat_codec_settings cs = {.version = CHAT_CODEC_SETTINGS_V1,
                            .max_frame_bytes_to_client = s->max_frame_bytes};
  e = chat_codec_new(&c->dec, &cs, &c->a);
  if (!e) {
    /* REST pages are rewrapped as frames: allow a full page of maximal
     * bodies, escaped. */
    chat_codec_settings rs = {.version = CHAT_CODEC_SETTINGS_V1,
                              .max_frame_bytes_to_client = 1u << 30,
                              .max_history = 1000};
    e = chat_codec_new(&c->rdec, &rs, &c->a);
  }
  if (!e)
    e = chat_codec_new(&c->enc, NULL, &c->a);
  if (!e) {
    e = c->st->each_outbox(c->st->self, load_outbox_cb, c);
    if (!e)
      e = c->st->each_mark(c->st->self, load_mark_cb, c);
    if (e && e != CHAT_ERR_NOMEM)
      e = CHAT_ERR_MODULE;
    if (!e && c->load_oom)
      e = CHAT_ERR_NOMEM;
  }
  if (e) {
    c->store = NULL; /* the caller keeps it */
    chat_client_free(c);
    return e;
  }
  *out = c;
  return CHAT_OK;
}

void chat_client_free(chat_client *c) {
  if (!c)
    return;
  drop_queue(c);
  chat__free(&c->a, c->taken);
  while (c->obox_head) {
    chat__obox *o = c->obox_head;
    c->obox_head = o->next;
    obox_free(c, o);
  }
  while (c->marks) {
    chat__mark *m = c->marks;
    c->marks = m->next;
    chat__free(&c->a, m->conv);
    chat__free(&c->a, m);
  }
  while (c->typing) {
    chat__mytyping *t = c->typing;
    c->typing = t->next;
    chat__free(&c->a, t->conv);
    chat__free(&c->a, t);
  }
  while (c->peers) {
    chat__peer *p = c->peers;
    c->peers = p->next;
    chat__free(&c->a, p->conv);
    chat__free(&c->a, p->user);
    chat__free(&c->a, p);
  }
  partial_clear(c);
  presence_clear(c);
  chat__creq_free_all(c);
  chat__free(&c->a, c->user_id);
  chat__buf_free(&c->scratch);
  chat_codec_free(c->dec);
  chat_codec_free(c->rdec);
  chat_codec_free(c->enc);
  chat_client_store_free(c->store);
  chat_allocator a = c->a;
  chat__free(&a, c);
}

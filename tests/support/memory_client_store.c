#include "memory_client_store.h"

#include <stdlib.h>
#include <string.h>

/* Heap copies of borrowed strings and blobs. */
static char *dupn(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p)
    return NULL;
  if (n)
    memcpy(p, s, n);
  p[n] = 0;
  return p;
}

static char *dup0(const char *s) {
  return s ? dupn(s, strlen(s)) : NULL;
}

/* Overwrite, then free: an erased body leaves no copy in the heap. */
static void wipe(char *p, size_t n) {
  if (!p)
    return;
  volatile char *v = p;
  for (size_t i = 0; i < n; i++)
    v[i] = 0;
  free(p);
}

/* Grow *arr (of *n elements of size sz, capacity *cap) by one; NULL when
 * out of memory. The new element is zeroed. */
static void *grow(void **arr, size_t *n, size_t *cap, size_t sz) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 8;
    void *p = realloc(*arr, nc * sz);
    if (!p)
      return NULL;
    *arr = p;
    *cap = nc;
  }
  void *e = (char *)*arr + (*n)++ * sz;
  memset(e, 0, sz);
  return e;
}

typedef struct mmsg {
  char *conv, *sender, *cmid, *body;
  size_t body_len;
  uint64_t id, reply_to, target_id;
  uint64_t edit_id; /* the edit entry whose body it holds; 0: its own */
  bool has_reply_to, own, has_target_id, has_edited_ts, deleted;
  chat_body_type body_type;
  chat_sender_kind sender_kind;
  int64_t server_ts, edited_ts;
  chat_receipt_state state;
} mmsg;

typedef struct mseen {
  char *conv;
  uint64_t id;
} mseen;

typedef struct mbox {
  int64_t seq;
  char *cmid, *conv, *body;
  size_t body_len;
  chat_client_outbox_kind kind;
  uint64_t target_id;
} mbox;

typedef struct mmark {
  char *conv;
  chat_receipt_state kind;
  uint64_t want, sent;
} mmark;

typedef struct mconv {
  char *conv, *name;
  size_t name_len;
  bool has_name;
  chat_conversation_type type;
  char **members, **admins;
  size_t n_members, n_admins;
  uint32_t unread;
  bool has_last_read;
  uint64_t last_read, activity;
} mconv;

typedef struct mstore {
  mmsg *msgs;
  size_t n_msgs, cap_msgs;
  mseen *seen;
  size_t n_seen, cap_seen;
  mbox *box;
  size_t n_box, cap_box;
  int64_t next_seq;
  mmark *marks;
  size_t n_marks, cap_marks;
  mconv *convs;
  size_t n_convs, cap_convs;
} mstore;

/* ---- messages ---- */

static chat_err put_message(void *self, const chat_message *m, bool own,
                            bool *inserted) {
  mstore *s = self;
  for (size_t i = 0; i < s->n_msgs; i++)
    if (s->msgs[i].id == m->message_id &&
        strcmp(s->msgs[i].conv, m->conversation_id) == 0) {
      *inserted = false;
      return CHAT_OK;
    }
  mmsg x = {.id = m->message_id, .own = own, .body_type = m->body_type,
            .server_ts = m->server_ts, .has_reply_to = m->has_reply_to,
            .reply_to = m->reply_to, .body_len = m->body.len,
            .has_target_id = m->has_target_id, .target_id = m->target_id,
            .sender_kind = m->sender_kind, .has_edited_ts = m->has_edited_ts,
            .edited_ts = m->edited_ts, .deleted = m->deleted};
  x.conv = dup0(m->conversation_id);
  x.sender = dup0(m->sender_id);
  x.cmid = dup0(m->client_msg_id);
  x.body = dupn(m->body.ptr ? m->body.ptr : "", m->body.len);
  mmsg *slot = NULL;
  if (x.conv && x.sender && (x.cmid || !m->client_msg_id) && x.body)
    slot = grow((void **)&s->msgs, &s->n_msgs, &s->cap_msgs, sizeof *slot);
  if (!slot) {
    free(x.conv), free(x.sender), free(x.cmid), free(x.body);
    return CHAT_ERR_NOMEM;
  }
  *slot = x;
  *inserted = true;
  return CHAT_OK;
}

static int by_id(const void *a, const void *b) {
  const mmsg *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

static mmsg copy_msg(const mmsg *m) {
  mmsg c = *m;
  c.conv = dup0(m->conv);
  c.sender = dup0(m->sender);
  c.cmid = dup0(m->cmid);
  c.body = dupn(m->body, m->body_len);
  return c;
}

static void free_msg(mmsg *m) {
  free(m->conv), free(m->sender), free(m->cmid);
  wipe(m->body, m->body_len);
}

static chat_err each_message(void *self, const char *conv, uint64_t before,
                             uint32_t limit,
                             void (*fn)(void *, const chat_message *, bool,
                                        chat_receipt_state),
                             void *ctx) {
  mstore *s = self;
  if (!limit)
    limit = 50;
  /* A private snapshot: the sink may change the store under us. */
  mmsg *snap = malloc((s->n_msgs + 1) * sizeof *snap);
  if (!snap)
    return CHAT_ERR_NOMEM;
  size_t n = 0;
  for (size_t i = 0; i < s->n_msgs; i++)
    if (strcmp(s->msgs[i].conv, conv) == 0 &&
        (!before || s->msgs[i].id < before))
      snap[n++] = s->msgs[i];
  qsort(snap, n, sizeof *snap, by_id);
  size_t from = n > limit ? n - limit : 0;
  for (size_t i = from; i < n; i++)
    snap[i] = copy_msg(&snap[i]);
  chat_err e = CHAT_OK;
  for (size_t i = from; i < n; i++) {
    mmsg *m = &snap[i];
    if (!e && (!m->conv || !m->sender || !m->body))
      e = CHAT_ERR_NOMEM;
    if (!e) {
      chat_message cm = {.message_id = m->id, .conversation_id = m->conv,
                         .sender_id = m->sender, .body = {m->body,
                                                          m->body_len},
                         .server_ts = m->server_ts, .client_msg_id = m->cmid,
                         .has_reply_to = m->has_reply_to,
                         .reply_to = m->reply_to, .body_type = m->body_type,
                         .has_target_id = m->has_target_id,
                         .target_id = m->target_id,
                         .sender_kind = m->sender_kind,
                         .has_edited_ts = m->has_edited_ts,
                         .edited_ts = m->edited_ts, .deleted = m->deleted};
      fn(ctx, &cm, m->own, m->state);
    }
    free_msg(m);
  }
  free(snap);
  return e;
}

static chat_err set_receipt(void *self, const char *conv, uint64_t up_to,
                            chat_receipt_state state) {
  mstore *s = self;
  for (size_t i = 0; i < s->n_msgs; i++) {
    mmsg *m = &s->msgs[i];
    if (m->own && m->id <= up_to && strcmp(m->conv, conv) == 0 &&
        m->state < state)
      m->state = state;
  }
  return CHAT_OK;
}

/* ---- last_seen ---- */

static mseen *seen_of(mstore *s, const char *conv) {
  for (size_t i = 0; i < s->n_seen; i++)
    if (strcmp(s->seen[i].conv, conv) == 0)
      return &s->seen[i];
  return NULL;
}

static chat_err get_last_seen(void *self, const char *conv, uint64_t *out) {
  mseen *x = seen_of(self, conv);
  *out = x ? x->id : 0;
  return CHAT_OK;
}

static chat_err set_last_seen(void *self, const char *conv, uint64_t id) {
  mstore *s = self;
  mseen *x = seen_of(s, conv);
  if (!x) {
    char *c = dup0(conv);
    if (!c || !(x = grow((void **)&s->seen, &s->n_seen, &s->cap_seen,
                         sizeof *x))) {
      free(c);
      return CHAT_ERR_NOMEM;
    }
    x->conv = c;
  }
  if (id > x->id)
    x->id = id;
  return CHAT_OK;
}

static chat_err each_last_seen(void *self,
                               void (*fn)(void *, const char *, uint64_t),
                               void *ctx) {
  mstore *s = self;
  size_t n = s->n_seen;
  mseen *snap = malloc((n + 1) * sizeof *snap);
  if (!snap)
    return CHAT_ERR_NOMEM;
  for (size_t i = 0; i < n; i++) {
    snap[i].id = s->seen[i].id;
    snap[i].conv = dup0(s->seen[i].conv);
  }
  chat_err e = CHAT_OK;
  for (size_t i = 0; i < n; i++) {
    if (!snap[i].conv)
      e = CHAT_ERR_NOMEM;
    if (!e)
      fn(ctx, snap[i].conv, snap[i].id);
    free(snap[i].conv);
  }
  free(snap);
  return e;
}

/* ---- outbox ---- */

static chat_err outbox_add_v2(void *self,
                              const chat_client_outbox_entry_v2 *e) {
  mstore *s = self;
  for (size_t i = 0; i < s->n_box; i++)
    if (strcmp(s->box[i].cmid, e->client_msg_id) == 0)
      return CHAT_ERR_MODULE; /* unique, as a constraint would say */
  mbox x = {.seq = ++s->next_seq, .body_len = e->body.len, .kind = e->kind,
            .target_id = e->target_id};
  x.cmid = dup0(e->client_msg_id);
  x.conv = dup0(e->conversation_id);
  x.body = dupn(e->body.ptr ? e->body.ptr : "", e->body.len);
  mbox *slot = NULL;
  if (x.cmid && x.conv && x.body)
    slot = grow((void **)&s->box, &s->n_box, &s->cap_box, sizeof *slot);
  if (!slot) {
    free(x.cmid), free(x.conv), free(x.body);
    return CHAT_ERR_NOMEM;
  }
  *slot = x;
  return CHAT_OK;
}

static chat_err outbox_add(void *self, const chat_client_outbox_entry *e) {
  chat_client_outbox_entry_v2 v2 = {.client_msg_id = e->client_msg_id,
                                    .conversation_id = e->conversation_id,
                                    .body = e->body,
                                    .kind = CHAT_CLIENT_OUTBOX_SEND};
  return outbox_add_v2(self, &v2);
}

static chat_err outbox_remove(void *self, const char *cmid) {
  mstore *s = self;
  for (size_t i = 0; i < s->n_box; i++)
    if (strcmp(s->box[i].cmid, cmid) == 0) {
      free(s->box[i].cmid), free(s->box[i].conv);
      wipe(s->box[i].body, s->box[i].body_len);
      memmove(&s->box[i], &s->box[i + 1],
              (s->n_box - i - 1) * sizeof *s->box);
      s->n_box--;
      break;
    }
  return CHAT_OK;
}

/* Every entry (v2) or the sends only (V1's shape). */
static chat_err walk_outbox(mstore *s,
                            void (*fn1)(void *,
                                        const chat_client_outbox_entry *),
                            void (*fn2)(void *,
                                        const chat_client_outbox_entry_v2 *),
                            void *ctx) {
  size_t n = s->n_box;
  mbox *snap = malloc((n + 1) * sizeof *snap);
  if (!snap)
    return CHAT_ERR_NOMEM;
  for (size_t i = 0; i < n; i++) {
    snap[i] = s->box[i];
    snap[i].cmid = dup0(s->box[i].cmid);
    snap[i].conv = dup0(s->box[i].conv);
    snap[i].body = dupn(s->box[i].body, s->box[i].body_len);
  }
  chat_err e = CHAT_OK;
  for (size_t i = 0; i < n; i++) {
    if (!snap[i].cmid || !snap[i].conv || !snap[i].body)
      e = CHAT_ERR_NOMEM;
    if (!e && fn2) {
      chat_client_outbox_entry_v2 en = {.seq = snap[i].seq,
                                        .client_msg_id = snap[i].cmid,
                                        .conversation_id = snap[i].conv,
                                        .body = {snap[i].body,
                                                 snap[i].body_len},
                                        .kind = snap[i].kind,
                                        .target_id = snap[i].target_id};
      fn2(ctx, &en);
    } else if (!e && snap[i].kind == CHAT_CLIENT_OUTBOX_SEND) {
      chat_client_outbox_entry en = {.seq = snap[i].seq,
                                     .client_msg_id = snap[i].cmid,
                                     .conversation_id = snap[i].conv,
                                     .body = {snap[i].body,
                                              snap[i].body_len}};
      fn1(ctx, &en);
    }
    free(snap[i].cmid), free(snap[i].conv);
    wipe(snap[i].body, snap[i].body_len);
  }
  free(snap);
  return e;
}

static chat_err each_outbox(void *self,
                            void (*fn)(void *,
                                       const chat_client_outbox_entry *),
                            void *ctx) {
  return walk_outbox(self, fn, NULL, ctx);
}

static chat_err each_outbox_v2(void *self,
                               void (*fn)(void *,
                                          const chat_client_outbox_entry_v2 *),
                               void *ctx) {
  return walk_outbox(self, NULL, fn, ctx);
}

/* ---- marks ---- */

static chat_err set_mark(void *self, const char *conv, chat_receipt_state k,
                         uint64_t want, uint64_t sent) {
  mstore *s = self;
  mmark *x = NULL;
  for (size_t i = 0; i < s->n_marks && !x; i++)
    if (s->marks[i].kind == k && strcmp(s->marks[i].conv, conv) == 0)
      x = &s->marks[i];
  if (!x) {
    char *c = dup0(conv);
    if (!c || !(x = grow((void **)&s->marks, &s->n_marks, &s->cap_marks,
                         sizeof *x))) {
      free(c);
      return CHAT_ERR_NOMEM;
    }
    x->conv = c;
    x->kind = k;
  }
  x->want = want;
  x->sent = sent;
  return CHAT_OK;
}

static chat_err each_mark(void *self,
                          void (*fn)(void *, const char *, chat_receipt_state,
                                     uint64_t, uint64_t),
                          void *ctx) {
  mstore *s = self;
  size_t n = s->n_marks;
  mmark *snap = malloc((n + 1) * sizeof *snap);
  if (!snap)
    return CHAT_ERR_NOMEM;
  for (size_t i = 0; i < n; i++) {
    snap[i] = s->marks[i];
    snap[i].conv = dup0(s->marks[i].conv);
  }
  chat_err e = CHAT_OK;
  for (size_t i = 0; i < n; i++) {
    if (!snap[i].conv)
      e = CHAT_ERR_NOMEM;
    if (!e)
      fn(ctx, snap[i].conv, snap[i].kind, snap[i].want, snap[i].sent);
    free(snap[i].conv);
  }
  free(snap);
  return e;
}

/* ---- conversations ---- */

static void free_conv(mconv *c) {
  free(c->conv);
  free(c->name);
  for (size_t i = 0; i < c->n_members; i++)
    free(c->members[i]);
  free(c->members);
  for (size_t i = 0; i < c->n_admins; i++)
    free(c->admins[i]);
  free(c->admins);
}

/* A deep copy of in (last_message only as its id); false when out of
 * memory (out is then freeable). */
static bool copy_conv(mconv *out, const chat_conversation *in) {
  memset(out, 0, sizeof *out);
  out->conv = dup0(in->conversation_id);
  out->type = in->type;
  out->has_name = in->name.ptr != NULL;
  out->name = in->name.ptr ? dupn(in->name.ptr, in->name.len) : NULL;
  out->name_len = in->name.len;
  out->unread = in->unread_count;
  out->has_last_read = in->has_last_read;
  out->last_read = in->last_read_message_id;
  out->activity = in->last_message ? in->last_message->message_id : 0;
  out->members = calloc(in->n_members + 1, sizeof *out->members);
  if (!out->conv || (out->has_name && !out->name) || !out->members)
    return false;
  for (size_t i = 0; i < in->n_members; i++) {
    if (!(out->members[i] = dup0(in->members[i])))
      return false;
    out->n_members++;
  }
  out->admins = calloc(in->n_admins + 1, sizeof *out->admins);
  if (!out->admins)
    return false;
  for (size_t i = 0; i < in->n_admins; i++) {
    if (!(out->admins[i] = dup0(in->admins[i])))
      return false;
    out->n_admins++;
  }
  return true;
}

static chat_err put_conversation(void *self, const chat_conversation *c) {
  mstore *s = self;
  mconv x;
  if (!copy_conv(&x, c)) {
    free_conv(&x);
    return CHAT_ERR_NOMEM;
  }
  for (size_t i = 0; i < s->n_convs; i++)
    if (strcmp(s->convs[i].conv, x.conv) == 0) {
      free_conv(&s->convs[i]);
      s->convs[i] = x;
      return CHAT_OK;
    }
  mconv *slot = grow((void **)&s->convs, &s->n_convs, &s->cap_convs,
                     sizeof *slot);
  if (!slot) {
    free_conv(&x);
    return CHAT_ERR_NOMEM;
  }
  *slot = x;
  return CHAT_OK;
}

static chat_err get_conversation(void *self, const char *conv,
                                 chat_conversation_type *type,
                                 uint32_t *n_members) {
  mstore *s = self;
  *n_members = 0;
  for (size_t i = 0; i < s->n_convs; i++)
    if (strcmp(s->convs[i].conv, conv) == 0) {
      *type = s->convs[i].type;
      *n_members = (uint32_t)s->convs[i].n_members;
      return CHAT_OK;
    }
  return CHAT_ERR_NOT_FOUND;
}

typedef struct ranked {
  mconv c;
  uint64_t act;
} ranked;

static int by_activity(const void *a, const void *b) {
  const ranked *x = a, *y = b;
  if (x->act != y->act)
    return x->act > y->act ? -1 : 1;
  return strcmp(x->c.conv, y->c.conv);
}

static chat_err each_conversation(void *self,
                                  void (*fn)(void *,
                                             const chat_conversation *),
                                  void *ctx) {
  mstore *s = self;
  size_t n = s->n_convs;
  ranked *snap = calloc(n + 1, sizeof *snap);
  if (!snap)
    return CHAT_ERR_NOMEM;
  bool oom = false;
  for (size_t i = 0; i < n; i++) {
    const mconv *c = &s->convs[i];
    chat_conversation cv = {.conversation_id = c->conv, .type = c->type,
                            .name = {c->has_name ? c->name : NULL,
                                     c->name_len},
                            .members = (const char *const *)c->members,
                            .n_members = c->n_members,
                            .admins = (const char *const *)c->admins,
                            .n_admins = c->n_admins};
    if (!copy_conv(&snap[i].c, &cv))
      oom = true;
    snap[i].c.unread = c->unread;
    snap[i].c.has_last_read = c->has_last_read;
    snap[i].c.last_read = c->last_read;
    snap[i].act = c->activity;
    for (size_t k = 0; k < s->n_msgs; k++)
      if (s->msgs[k].id > snap[i].act && strcmp(s->msgs[k].conv, c->conv) == 0)
        snap[i].act = s->msgs[k].id;
  }
  if (!oom)
    qsort(snap, n, sizeof *snap, by_activity);
  for (size_t i = 0; i < n; i++) {
    const mconv *c = &snap[i].c;
    if (!oom) {
      chat_conversation cv = {.conversation_id = c->conv, .type = c->type,
                              .name = {c->has_name ? c->name : NULL,
                                       c->name_len},
                              .members = (const char *const *)c->members,
                              .n_members = c->n_members,
                              .admins = (const char *const *)c->admins,
                              .n_admins = c->n_admins,
                              .unread_count = c->unread,
                              .has_last_read = c->has_last_read,
                              .last_read_message_id = c->last_read};
      fn(ctx, &cv);
    }
    free_conv(&snap[i].c);
  }
  free(snap);
  return oom ? CHAT_ERR_NOMEM : CHAT_OK;
}

/* ---- V2: one message, edit and delete entries applied ---- */

static mmsg *find_msg(mstore *s, const char *conv, uint64_t id) {
  for (size_t i = 0; i < s->n_msgs; i++)
    if (s->msgs[i].id == id && strcmp(s->msgs[i].conv, conv) == 0)
      return &s->msgs[i];
  return NULL;
}

static chat_err get_message(void *self, const char *conv, uint64_t id,
                            void (*fn)(void *, const chat_message *, bool,
                                       chat_receipt_state),
                            void *ctx) {
  mmsg *found = find_msg(self, conv, id);
  if (!found)
    return CHAT_ERR_NOT_FOUND;
  /* A private copy: the sink may change the store under us. */
  mmsg m = copy_msg(found);
  chat_err e = CHAT_ERR_NOMEM;
  if (m.conv && m.sender && m.body && (m.cmid || !found->cmid)) {
    chat_message cm = {.message_id = m.id, .conversation_id = m.conv,
                       .sender_id = m.sender, .body = {m.body, m.body_len},
                       .server_ts = m.server_ts, .client_msg_id = m.cmid,
                       .has_reply_to = m.has_reply_to, .reply_to = m.reply_to,
                       .body_type = m.body_type,
                       .has_target_id = m.has_target_id,
                       .target_id = m.target_id,
                       .sender_kind = m.sender_kind,
                       .has_edited_ts = m.has_edited_ts,
                       .edited_ts = m.edited_ts, .deleted = m.deleted};
    fn(ctx, &cm, m.own, m.state);
    e = CHAT_OK;
  }
  free_msg(&m);
  return e;
}

/* Erase a stored body in place (its bytes zeroed, the buffer kept as
 * the empty string); true when there was one. */
static bool erase_body(mmsg *m) {
  if (m->body_len == 0)
    return false;
  volatile char *v = m->body;
  for (size_t i = 0; i < m->body_len; i++)
    v[i] = 0;
  m->body_len = 0;
  return true;
}

static bool names(const mmsg *m, const char *conv, uint64_t target,
                  chat_body_type type) {
  return m->body_type == type && m->has_target_id &&
         m->target_id == target && strcmp(m->conv, conv) == 0;
}

static chat_err apply_changes(void *self, const char *conv, uint64_t id,
                              bool *changed) {
  mstore *s = self;
  *changed = false;
  mmsg *t = find_msg(s, conv, id);
  if (!t || (t->body_type != CHAT_BODY_TEXT &&
             t->body_type != CHAT_BODY_MEDIA))
    return CHAT_OK;
  bool del = t->deleted;
  const mmsg *w = NULL; /* the newest edit entry */
  for (size_t i = 0; i < s->n_msgs; i++) {
    const mmsg *m = &s->msgs[i];
    if (names(m, conv, id, CHAT_BODY_DELETE))
      del = true;
    else if (names(m, conv, id, CHAT_BODY_EDIT) && (!w || m->id > w->id))
      w = m;
  }
  if (del) {
    if (!t->deleted)
      *changed = true;
    t->deleted = true;
    if (erase_body(t))
      *changed = true;
    for (size_t i = 0; i < s->n_msgs; i++)
      if (names(&s->msgs[i], conv, id, CHAT_BODY_EDIT))
        (void)erase_body(&s->msgs[i]);
    return CHAT_OK;
  }
  if (!w)
    return CHAT_OK;
  bool apply = t->edit_id ? w->id > t->edit_id
                          : !t->has_edited_ts || w->server_ts >= t->edited_ts;
  if (!apply)
    return CHAT_OK;
  bool same = t->has_edited_ts && t->edited_ts == w->server_ts &&
              t->body_len == w->body_len &&
              memcmp(t->body, w->body, w->body_len) == 0;
  char *body = dupn(w->body, w->body_len);
  if (!body)
    return CHAT_ERR_NOMEM;
  wipe(t->body, t->body_len);
  t->body = body;
  t->body_len = w->body_len;
  t->has_edited_ts = true;
  t->edited_ts = w->server_ts;
  t->edit_id = w->id;
  *changed = !same;
  return CHAT_OK;
}

static chat_err forget_last_seen(void *self, const char *conv) {
  mstore *s = self;
  for (size_t i = 0; i < s->n_seen; i++)
    if (strcmp(s->seen[i].conv, conv) == 0) {
      free(s->seen[i].conv);
      memmove(&s->seen[i], &s->seen[i + 1],
              (s->n_seen - i - 1) * sizeof *s->seen);
      s->n_seen--;
      break;
    }
  return CHAT_OK;
}

static void destroy(void *self) {
  mstore *s = self;
  for (size_t i = 0; i < s->n_msgs; i++)
    free_msg(&s->msgs[i]);
  for (size_t i = 0; i < s->n_seen; i++)
    free(s->seen[i].conv);
  for (size_t i = 0; i < s->n_box; i++) {
    free(s->box[i].cmid), free(s->box[i].conv);
    wipe(s->box[i].body, s->box[i].body_len);
  }
  for (size_t i = 0; i < s->n_marks; i++)
    free(s->marks[i].conv);
  for (size_t i = 0; i < s->n_convs; i++)
    free_conv(&s->convs[i]);
  free(s->msgs), free(s->seen), free(s->box), free(s->marks), free(s->convs);
  free(s);
}

chat_err memory_client_store_open(chat_client_store_ops *out) {
  memset(out, 0, sizeof *out);
  mstore *s = calloc(1, sizeof *s);
  if (!s)
    return CHAT_ERR_NOMEM;
  *out = (chat_client_store_ops){
      .version = CHAT_CLIENT_STORE_OPS_V2, .self = s,
      .put_message = put_message, .each_message = each_message,
      .set_receipt = set_receipt, .get_last_seen = get_last_seen,
      .set_last_seen = set_last_seen, .each_last_seen = each_last_seen,
      .outbox_add = outbox_add, .outbox_remove = outbox_remove,
      .each_outbox = each_outbox, .set_mark = set_mark,
      .each_mark = each_mark, .put_conversation = put_conversation,
      .get_conversation = get_conversation,
      .each_conversation = each_conversation, .destroy = destroy,
      .outbox_add_v2 = outbox_add_v2, .each_outbox_v2 = each_outbox_v2,
      .get_message = get_message, .apply_changes = apply_changes,
      .forget_last_seen = forget_last_seen};
  return CHAT_OK;
}

chat_err memory_client_store_open_v1(chat_client_store_ops *out) {
  chat_err e = memory_client_store_open(out);
  if (e)
    return e;
  out->version = CHAT_CLIENT_STORE_OPS_V1;
  out->outbox_add_v2 = NULL;
  out->each_outbox_v2 = NULL;
  out->get_message = NULL;
  out->apply_changes = NULL;
  out->forget_last_seen = NULL;
  return CHAT_OK;
}

/* ------------------------------------------------------------------------
 * The failing wrapper */

struct failing_store {
  chat_client_store_ops in;
  bool fail;
  const char *only; /* fail this method alone; NULL: every write */
  unsigned refused;
};

#define SELF failing_store *f = self
#define REFUSE                                                                 \
  do {                                                                         \
    if (f->fail && (!f->only || strcmp(f->only, __func__ + 2) == 0)) {        \
      f->refused++;                                                            \
      return CHAT_ERR_MODULE;                                                  \
    }                                                                          \
  } while (0)

static chat_err f_put_message(void *self, const chat_message *m, bool own,
                              bool *inserted) {
  SELF;
  REFUSE;
  return f->in.put_message(f->in.self, m, own, inserted);
}
static chat_err f_each_message(void *self, const char *conv, uint64_t before,
                               uint32_t limit,
                               void (*fn)(void *, const chat_message *, bool,
                                          chat_receipt_state),
                               void *ctx) {
  SELF;
  return f->in.each_message(f->in.self, conv, before, limit, fn, ctx);
}
static chat_err f_set_receipt(void *self, const char *conv, uint64_t up_to,
                              chat_receipt_state st) {
  SELF;
  REFUSE;
  return f->in.set_receipt(f->in.self, conv, up_to, st);
}
static chat_err f_get_last_seen(void *self, const char *conv, uint64_t *out) {
  SELF;
  return f->in.get_last_seen(f->in.self, conv, out);
}
static chat_err f_set_last_seen(void *self, const char *conv, uint64_t id) {
  SELF;
  REFUSE;
  return f->in.set_last_seen(f->in.self, conv, id);
}
static chat_err f_each_last_seen(void *self,
                                 void (*fn)(void *, const char *, uint64_t),
                                 void *ctx) {
  SELF;
  return f->in.each_last_seen(f->in.self, fn, ctx);
}
static chat_err f_outbox_add(void *self, const chat_client_outbox_entry *e) {
  SELF;
  REFUSE;
  return f->in.outbox_add(f->in.self, e);
}
static chat_err f_outbox_remove(void *self, const char *id) {
  SELF;
  REFUSE;
  return f->in.outbox_remove(f->in.self, id);
}
static chat_err f_each_outbox(void *self,
                              void (*fn)(void *,
                                         const chat_client_outbox_entry *),
                              void *ctx) {
  SELF;
  return f->in.each_outbox(f->in.self, fn, ctx);
}
static chat_err f_set_mark(void *self, const char *conv, chat_receipt_state k,
                           uint64_t want, uint64_t sent) {
  SELF;
  REFUSE;
  return f->in.set_mark(f->in.self, conv, k, want, sent);
}
static chat_err f_each_mark(void *self,
                            void (*fn)(void *, const char *,
                                       chat_receipt_state, uint64_t,
                                       uint64_t),
                            void *ctx) {
  SELF;
  return f->in.each_mark(f->in.self, fn, ctx);
}
static chat_err f_put_conversation(void *self, const chat_conversation *c) {
  SELF;
  REFUSE;
  return f->in.put_conversation(f->in.self, c);
}
static chat_err f_get_conversation(void *self, const char *conv,
                                   chat_conversation_type *t, uint32_t *n) {
  SELF;
  return f->in.get_conversation(f->in.self, conv, t, n);
}
static chat_err f_each_conversation(void *self,
                                    void (*fn)(void *,
                                               const chat_conversation *),
                                    void *ctx) {
  SELF;
  return f->in.each_conversation(f->in.self, fn, ctx);
}
static chat_err f_outbox_add_v2(void *self,
                                const chat_client_outbox_entry_v2 *e) {
  SELF;
  REFUSE;
  return f->in.outbox_add_v2(f->in.self, e);
}
static chat_err f_each_outbox_v2(void *self,
                                 void (*fn)(void *,
                                            const chat_client_outbox_entry_v2 *),
                                 void *ctx) {
  SELF;
  return f->in.each_outbox_v2(f->in.self, fn, ctx);
}
static chat_err f_get_message(void *self, const char *conv, uint64_t id,
                              void (*fn)(void *, const chat_message *, bool,
                                         chat_receipt_state),
                              void *ctx) {
  SELF;
  return f->in.get_message(f->in.self, conv, id, fn, ctx);
}
static chat_err f_apply_changes(void *self, const char *conv, uint64_t id,
                                bool *changed) {
  SELF;
  *changed = false;
  REFUSE;
  return f->in.apply_changes(f->in.self, conv, id, changed);
}
static chat_err f_forget_last_seen(void *self, const char *conv) {
  SELF;
  REFUSE;
  return f->in.forget_last_seen(f->in.self, conv);
}
static void f_destroy(void *self) {
  SELF;
  if (f->in.destroy)
    f->in.destroy(f->in.self);
  free(f);
}

chat_err failing_store_wrap(chat_client_store_ops *out,
                            const chat_client_store_ops *inner,
                            failing_store **handle) {
  failing_store *f = calloc(1, sizeof *f);
  if (!f)
    return CHAT_ERR_NOMEM;
  f->in = *inner;
  if (inner->version < CHAT_CLIENT_STORE_OPS_V2) {
    /* A V1 struct ends before the V2 methods: never read them. */
    f->in.outbox_add_v2 = NULL;
    f->in.each_outbox_v2 = NULL;
    f->in.get_message = NULL;
    f->in.apply_changes = NULL;
    f->in.forget_last_seen = NULL;
  }
  *out = (chat_client_store_ops){
      .version = CHAT_CLIENT_STORE_OPS_V1, .self = f,
      .put_message = f_put_message, .each_message = f_each_message,
      .set_receipt = f_set_receipt, .get_last_seen = f_get_last_seen,
      .set_last_seen = f_set_last_seen, .each_last_seen = f_each_last_seen,
      .outbox_add = f_outbox_add, .outbox_remove = f_outbox_remove,
      .each_outbox = f_each_outbox, .set_mark = f_set_mark,
      .each_mark = f_each_mark, .put_conversation = f_put_conversation,
      .get_conversation = f_get_conversation,
      .each_conversation = f_each_conversation, .destroy = f_destroy};
  if (inner->version >= CHAT_CLIENT_STORE_OPS_V2) {
    /* The wrapper has the inner store's version. */
    out->version = CHAT_CLIENT_STORE_OPS_V2;
    out->outbox_add_v2 = f_outbox_add_v2;
    out->each_outbox_v2 = f_each_outbox_v2;
    out->get_message = f_get_message;
    out->apply_changes = f_apply_changes;
    out->forget_last_seen = f_forget_last_seen;
  }
  if (handle)
    *handle = f;
  return CHAT_OK;
}

void failing_store_set(failing_store *f, bool fail) {
  f->fail = fail;
  f->only = NULL;
}

void failing_store_set_only(failing_store *f, const char *method) {
  f->fail = method != NULL;
  f->only = method;
}

unsigned failing_store_refused(const failing_store *f) {
  return f->refused;
}

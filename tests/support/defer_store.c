#include "defer_store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*any_fn)(void);

enum { R_QUEUED = 0, R_POSTED };

typedef struct blk {
  struct blk *next;
  char data[];
} blk;

typedef struct rec {
  struct rec *prev, *next; /* every record, in call order */
  struct defer_store *d;
  int state;
  defer_kind kind;
  chat_op *op;
  any_fn emit;
  void *ctx;
  void *out1, *out2;
  const char *s[5];
  int64_t i64;
  uint64_t u64;
  uint32_t u32;
  int dir;
  chat_conversation_new cn;
  chat_msg_in *msgs;
  size_t n;
  chat_mark_in mark;
  chat_member_change mc;
  bool flag;
  const void *data;
  size_t len;
  blk *blocks;
} rec;

struct defer_store {
  int refs; /* one per installed wrapper */
  defer_mode mode;
  uint64_t rng;
  chat_storage_ops inner;
  chat_presence_ops pinner;
  rec *head, *tail;
  size_t queued, calls;
  /* DEFER_THREAD */
  pthread_t th;
  bool th_started, th_stop;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  rec **work;
  size_t n_work, done_work;
};

defer_mode defer_mode_from_env(void) {
  const char *m = getenv("CHAT_TEST_STORE");
  if (!m || !*m || strcmp(m, "sync") == 0)
    return DEFER_OFF;
  if (strcmp(m, "fifo") == 0)
    return DEFER_FIFO;
  if (strcmp(m, "shuffle") == 0)
    return DEFER_SHUFFLE;
  if (strcmp(m, "thread") == 0)
    return DEFER_THREAD;
  fprintf(stderr, "CHAT_TEST_STORE=%s: not sync, fifo, shuffle or thread\n",
          m);
  abort();
}

const char *defer_mode_name(defer_mode m) {
  static const char *const names[] = {"sync", "fifo", "shuffle", "thread"};
  return names[m];
}

/* ---- records ---- */

static void *take(rec *r, size_t n) {
  blk *b = malloc(sizeof *b + (n ? n : 1));
  if (!b)
    abort();
  b->next = r->blocks;
  r->blocks = b;
  return b->data;
}

static const char *dup(rec *r, const char *s) {
  if (!s)
    return NULL;
  size_t n = strlen(s) + 1;
  char *c = take(r, n);
  memcpy(c, s, n);
  return c;
}

static const void *dup_mem(rec *r, const void *p, size_t n) {
  if (!p)
    return NULL;
  void *c = take(r, n);
  if (n)
    memcpy(c, p, n);
  return c;
}

static rec *rec_new(defer_store *d, defer_kind kind, chat_op *op) {
  rec *r = calloc(1, sizeof *r);
  if (!r)
    abort();
  r->d = d;
  r->kind = kind;
  r->op = op;
  r->prev = d->tail;
  if (d->tail)
    d->tail->next = r;
  else
    d->head = r;
  d->tail = r;
  d->queued++;
  d->calls++;
  return r;
}

static void rec_unlink(defer_store *d, rec *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    d->head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    d->tail = r->prev;
}

static void rec_free(rec *r) {
  while (r->blocks) {
    blk *b = r->blocks;
    r->blocks = b->next;
    free(b);
  }
  free(r);
}

/* Run the call on the inner module, then complete the op. Loop thread. */
static void rec_run(defer_store *d, rec *r) {
  chat_storage_ops *s = &d->inner;
  chat_presence_ops *p = &d->pinner;
  void *self = s->self;
  chat_err rc;
  switch (r->kind) {
  case DK_CONVERSATION_GET:
    rc = s->conversation_get(self, r->s[0], r->s[1],
                             (chat_conversation_sink)r->emit, r->ctx, NULL);
    break;
  case DK_CONVERSATION_CREATE:
    rc = s->conversation_create(self, &r->cn, r->out1,
                                (chat_conversation_sink)r->emit, r->ctx,
                                NULL);
    break;
  case DK_MEMBER_ADD:
    rc = s->member_add(self, r->s[0], r->s[1], r->i64, NULL);
    break;
  case DK_MEMBER_REMOVE:
    rc = s->member_remove(self, r->s[0], r->s[1], NULL);
    break;
  case DK_CONVERSATIONS_OF:
    rc = s->conversations_of(self, r->s[0], r->s[1], r->u32,
                             (chat_conversation_sink)r->emit, r->ctx,
                             r->out1, NULL);
    break;
  case DK_APPEND:
    rc = s->append(self, r->msgs, r->n, r->out1, NULL);
    break;
  case DK_MESSAGES:
    rc = s->messages(self, r->s[0], (chat_page_dir)r->dir, r->u64, r->u32,
                     (chat_message_sink)r->emit, r->ctx, NULL);
    break;
  case DK_MAX_MESSAGE_ID:
    rc = s->max_message_id(self, r->out1, NULL);
    break;
  case DK_MARK:
    rc = s->mark(self, &r->mark, r->out1, (chat_mark_sink)r->emit, r->ctx,
                 NULL);
    break;
  case DK_RECEIPTS:
    rc = s->receipts(self, r->s[0], r->u64, r->out1, r->out2,
                     (chat_member_state_sink)r->emit, r->ctx, NULL);
    break;
  case DK_PURGE_RECEIPTS:
    rc = s->purge_receipts(self, r->i64, NULL);
    break;
  case DK_DEVICE_REGISTER:
    rc = s->device_register(self, r->s[0], r->s[1], r->s[2], r->s[3],
                            r->i64, NULL);
    break;
  case DK_PUSH_TARGETS:
    rc = s->push_targets(self, r->s[0], (chat_push_target_sink)r->emit,
                         r->ctx, NULL);
    break;
  case DK_MEDIA_PUT:
    rc = s->media_put(self, r->s[0], r->s[1], r->s[2], r->data, r->len,
                      r->i64, NULL);
    break;
  case DK_MEDIA_GET:
    rc = s->media_get(self, r->s[0], r->s[1], (chat_media_sink)r->emit,
                      r->ctx, NULL);
    break;
  case DK_LOCATE:
    rc = p->locate(p->self, r->s[0], (chat_location_sink)r->emit, r->ctx,
                   NULL);
    break;
  case DK_GET_STATE:
    rc = p->get_state(p->self, r->s[0], r->out1, r->out2, NULL);
    break;
  case DK_MEMBER_CHANGE:
    rc = s->member_change(self, &r->mc, r->out1,
                          (chat_conversation_sink)r->emit, r->ctx, NULL);
    break;
  case DK_MESSAGES_AS:
    rc = s->messages_as(self, r->s[0], r->s[1], (chat_page_dir)r->dir,
                        r->u64, r->u32, (chat_message_sink)r->emit, r->ctx,
                        NULL);
    break;
  case DK_SHADOW_BAN_SET:
    rc = s->shadow_ban_set(self, r->s[0], r->flag, r->i64, NULL);
    break;
  case DK_SHADOW_BANS:
    rc = s->shadow_bans(self, r->u64, r->out1, (chat_user_sink)r->emit,
                        r->ctx, NULL);
    break;
  case DK_PUSH_RECORD:
    rc = s->push_record(self, r->s[0], r->s[1], r->u64, NULL);
    break;
  case DK_PUSH_READ:
    rc = s->push_read(self, r->s[0], r->s[1], r->u64, r->out1, NULL);
    break;
  default:
    abort();
  }
  chat_op *op = r->op;
  rec_free(r);
  chat_op_complete(op, rc);
}

/* ---- the storage wrapper ---- */

#define D ((defer_store *)self)

static chat_err w_conv_get(void *self, const char *c, const char *viewer,
                           chat_conversation_sink emit, void *ctx,
                           chat_op *op) {
  rec *r = rec_new(D, DK_CONVERSATION_GET, op);
  r->s[0] = dup(r, c);
  r->s[1] = dup(r, viewer);
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err w_conv_create(void *self, const chat_conversation_new *c,
                              bool *existed, chat_conversation_sink emit,
                              void *ctx, chat_op *op) {
  rec *r = rec_new(D, DK_CONVERSATION_CREATE, op);
  r->cn = *c;
  r->cn.conversation_id = dup(r, c->conversation_id);
  r->cn.created_by = dup(r, c->created_by);
  if (c->name.ptr)
    r->cn.name.ptr = dup_mem(r, c->name.ptr, c->name.len);
  const char **m = take(r, c->n_members * sizeof *m);
  for (size_t i = 0; i < c->n_members; i++)
    m[i] = dup(r, c->members[i]);
  r->cn.members = m;
  r->out1 = existed;
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err w_member_add(void *self, const char *c, const char *u,
                             int64_t now, chat_op *op) {
  rec *r = rec_new(D, DK_MEMBER_ADD, op);
  r->s[0] = dup(r, c);
  r->s[1] = dup(r, u);
  r->i64 = now;
  return CHAT_PENDING;
}

static chat_err w_member_remove(void *self, const char *c, const char *u,
                                chat_op *op) {
  rec *r = rec_new(D, DK_MEMBER_REMOVE, op);
  r->s[0] = dup(r, c);
  r->s[1] = dup(r, u);
  return CHAT_PENDING;
}

static chat_err w_convs_of(void *self, const char *u, const char *cursor,
                           uint32_t limit, chat_conversation_sink emit,
                           void *ctx, char *next, chat_op *op) {
  rec *r = rec_new(D, DK_CONVERSATIONS_OF, op);
  r->s[0] = dup(r, u);
  r->s[1] = dup(r, cursor);
  r->u32 = limit;
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  r->out1 = next;
  return CHAT_PENDING;
}

static chat_err w_append(void *self, const chat_msg_in *msgs, size_t n,
                         chat_append_result *res, chat_op *op) {
  rec *r = rec_new(D, DK_APPEND, op);
  chat_msg_in *m = take(r, n * sizeof *m);
  for (size_t i = 0; i < n; i++) {
    m[i] = msgs[i];
    m[i].conversation_id = dup(r, msgs[i].conversation_id);
    m[i].sender_id = dup(r, msgs[i].sender_id);
    m[i].client_msg_id = dup(r, msgs[i].client_msg_id);
    m[i].target_sender = dup(r, msgs[i].target_sender);
    m[i].body.ptr = dup_mem(r, msgs[i].body.ptr ? msgs[i].body.ptr : "",
                            msgs[i].body.len);
    const char **refs = take(r, msgs[i].n_media_refs * sizeof *refs);
    for (size_t k = 0; k < msgs[i].n_media_refs; k++)
      refs[k] = dup(r, msgs[i].media_refs[k]);
    m[i].media_refs = refs;
  }
  r->msgs = m;
  r->n = n;
  r->out1 = res;
  return CHAT_PENDING;
}

static chat_err w_messages(void *self, const char *c, chat_page_dir dir,
                           uint64_t anchor, uint32_t limit,
                           chat_message_sink emit, void *ctx, chat_op *op) {
  rec *r = rec_new(D, DK_MESSAGES, op);
  r->s[0] = dup(r, c);
  r->dir = dir;
  r->u64 = anchor;
  r->u32 = limit;
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err w_max_id(void *self, uint64_t *out, chat_op *op) {
  if (!op) /* a host's direct call: answer now */
    return D->inner.max_message_id(D->inner.self, out, NULL);
  rec *r = rec_new(D, DK_MAX_MESSAGE_ID, op);
  r->out1 = out;
  return CHAT_PENDING;
}

static chat_err w_mark(void *self, const chat_mark_in *in, bool *adv,
                       chat_mark_sink emit, void *ctx, chat_op *op) {
  rec *r = rec_new(D, DK_MARK, op);
  r->mark = *in;
  r->mark.conversation_id = dup(r, in->conversation_id);
  r->mark.member_id = dup(r, in->member_id);
  r->s[0] = r->mark.conversation_id;
  r->out1 = adv;
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err w_receipts(void *self, const char *c, uint64_t id,
                           uint32_t *dl, uint32_t *rd,
                           chat_member_state_sink emit, void *ctx,
                           chat_op *op) {
  rec *r = rec_new(D, DK_RECEIPTS, op);
  r->s[0] = dup(r, c);
  r->u64 = id;
  r->out1 = dl;
  r->out2 = rd;
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err w_purge(void *self, int64_t before, chat_op *op) {
  rec *r = rec_new(D, DK_PURGE_RECEIPTS, op);
  r->i64 = before;
  return CHAT_PENDING;
}

static chat_err w_dev_reg(void *self, const char *u, const char *dev,
                          const char *pl, const char *tok, int64_t now,
                          chat_op *op) {
  rec *r = rec_new(D, DK_DEVICE_REGISTER, op);
  r->s[0] = dup(r, u);
  r->s[1] = dup(r, dev);
  r->s[2] = dup(r, pl);
  r->s[3] = dup(r, tok);
  r->i64 = now;
  return CHAT_PENDING;
}

static chat_err w_targets(void *self, const char *u,
                          chat_push_target_sink emit, void *ctx,
                          chat_op *op) {
  rec *r = rec_new(D, DK_PUSH_TARGETS, op);
  r->s[0] = dup(r, u);
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err w_media_put(void *self, const char *id, const char *owner,
                            const char *ct, const void *data, size_t len,
                            int64_t now, chat_op *op) {
  rec *r = rec_new(D, DK_MEDIA_PUT, op);
  r->s[0] = dup(r, id);
  r->s[1] = dup(r, owner);
  r->s[2] = dup(r, ct);
  r->data = dup_mem(r, data ? data : "", len);
  r->len = len;
  r->i64 = now;
  return CHAT_PENDING;
}

static chat_err w_media_get(void *self, const char *id, const char *reader,
                            chat_media_sink emit, void *ctx, chat_op *op) {
  rec *r = rec_new(D, DK_MEDIA_GET, op);
  r->s[0] = dup(r, id);
  r->s[1] = dup(r, reader);
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err w_member_change(void *self, const chat_member_change *ch,
                                chat_member_change_result *res,
                                chat_conversation_sink emit, void *ctx,
                                chat_op *op) {
  rec *r = rec_new(D, DK_MEMBER_CHANGE, op);
  r->mc = *ch;
  r->mc.conversation_id = dup(r, ch->conversation_id);
  r->mc.actor_id = dup(r, ch->actor_id);
  r->mc.user_id = dup(r, ch->user_id);
  r->mc.body.ptr = dup_mem(r, ch->body.ptr ? ch->body.ptr : "",
                           ch->body.len);
  r->mc.promote_suffix.ptr =
      dup_mem(r, ch->promote_suffix.ptr ? ch->promote_suffix.ptr : "",
              ch->promote_suffix.len);
  r->s[0] = r->mc.conversation_id;
  r->out1 = res;
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err w_messages_as(void *self, const char *c, const char *viewer,
                              chat_page_dir dir, uint64_t anchor,
                              uint32_t limit, chat_message_sink emit,
                              void *ctx, chat_op *op) {
  rec *r = rec_new(D, DK_MESSAGES_AS, op);
  r->s[0] = dup(r, c);
  r->s[1] = dup(r, viewer);
  r->dir = dir;
  r->u64 = anchor;
  r->u32 = limit;
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err w_ban_set(void *self, const char *u, bool banned, int64_t now,
                          chat_op *op) {
  if (!op) /* an operator tool's direct call: answer now */
    return D->inner.shadow_ban_set(D->inner.self, u, banned, now, NULL);
  rec *r = rec_new(D, DK_SHADOW_BAN_SET, op);
  r->s[0] = dup(r, u);
  r->flag = banned;
  r->i64 = now;
  return CHAT_PENDING;
}

static chat_err w_bans(void *self, uint64_t known, uint64_t *version,
                       chat_user_sink emit, void *ctx, chat_op *op) {
  rec *r = rec_new(D, DK_SHADOW_BANS, op);
  r->u64 = known;
  r->out1 = version;
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err w_push_record(void *self, const char *c, const char *u,
                              uint64_t id, chat_op *op) {
  rec *r = rec_new(D, DK_PUSH_RECORD, op);
  r->s[0] = dup(r, c);
  r->s[1] = dup(r, u);
  r->u64 = id;
  return CHAT_PENDING;
}

static chat_err w_push_read(void *self, const char *c, const char *u,
                            uint64_t read, uint64_t *clear, chat_op *op) {
  rec *r = rec_new(D, DK_PUSH_READ, op);
  r->s[0] = dup(r, c);
  r->s[1] = dup(r, u);
  r->u64 = read;
  r->out1 = clear;
  return CHAT_PENDING;
}

/* ---- the presence wrapper ---- */

static chat_err p_online(void *self, const char *u, const char *dev,
                         const char *gw) {
  return D->pinner.device_online(D->pinner.self, u, dev, gw);
}

static chat_err p_offline(void *self, const char *u, const char *dev,
                          const char *gw) {
  return D->pinner.device_offline(D->pinner.self, u, dev, gw);
}

static chat_err p_set_state(void *self, const char *u,
                            chat_presence_state st, int64_t la) {
  return D->pinner.set_state(D->pinner.self, u, st, la);
}

static chat_err p_locate(void *self, const char *u, chat_location_sink emit,
                         void *ctx, chat_op *op) {
  rec *r = rec_new(D, DK_LOCATE, op);
  r->s[0] = dup(r, u);
  r->emit = (any_fn)emit;
  r->ctx = ctx;
  return CHAT_PENDING;
}

static chat_err p_get_state(void *self, const char *u,
                            chat_presence_state *st, int64_t *la,
                            chat_op *op) {
  rec *r = rec_new(D, DK_GET_STATE, op);
  r->s[0] = dup(r, u);
  r->out1 = st;
  r->out2 = la;
  return CHAT_PENDING;
}

#undef D

/* ---- the worker thread (DEFER_THREAD) ---- */

static void on_posted(void *user_data, chat_op *op) {
  (void)op;
  rec *r = user_data;
  defer_store *d = r->d;
  rec_unlink(d, r);
  rec_run(d, r);
}

static void *worker(void *arg) {
  defer_store *d = arg;
  pthread_mutex_lock(&d->mu);
  for (;;) {
    while (!d->th_stop && d->done_work == d->n_work)
      pthread_cond_wait(&d->cv, &d->mu);
    if (d->th_stop)
      break;
    rec *r = d->work[d->done_work];
    pthread_mutex_unlock(&d->mu);
    /* From this thread, as a libpq or Redis reader would. */
    chat_op_post(r->op, on_posted, r);
    pthread_mutex_lock(&d->mu);
    d->done_work++;
    pthread_cond_broadcast(&d->cv);
  }
  pthread_mutex_unlock(&d->mu);
  return NULL;
}

/* ---- lifetime ---- */

static void release(defer_store *d) {
  if (--d->refs > 0)
    return;
  if (d->th_started) {
    pthread_mutex_lock(&d->mu);
    d->th_stop = true;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->th, NULL);
  }
  /* Queued and posted calls are dropped: the server frees their ops. */
  while (d->head) {
    rec *r = d->head;
    rec_unlink(d, r);
    rec_free(r);
  }
  free(d->work);
  pthread_mutex_destroy(&d->mu);
  pthread_cond_destroy(&d->cv);
  free(d);
}

static void w_destroy(void *self) {
  defer_store *d = self;
  if (d->inner.destroy)
    d->inner.destroy(d->inner.self);
  d->inner.destroy = NULL;
  release(d);
}

static void p_destroy(void *self) {
  defer_store *d = self;
  if (d->pinner.destroy)
    d->pinner.destroy(d->pinner.self);
  d->pinner.destroy = NULL;
  release(d);
}

defer_store *defer_store_new(const chat_storage_ops *inner, defer_mode mode,
                             uint64_t seed, chat_storage_ops *out) {
  defer_store *d = calloc(1, sizeof *d);
  if (!d)
    abort();
  d->refs = 1;
  d->mode = mode;
  d->rng = seed ? seed : 1;
  d->inner = *inner;
  pthread_mutex_init(&d->mu, NULL);
  pthread_cond_init(&d->cv, NULL);
  if (mode == DEFER_THREAD) {
    if (pthread_create(&d->th, NULL, worker, d) != 0)
      abort();
    d->th_started = true;
  }
  *out = (chat_storage_ops){
      .version = CHAT_STORAGE_OPS_V1,
      .self = d,
      .conversation_get = w_conv_get,
      .conversation_create = inner->conversation_create ? w_conv_create
                                                        : NULL,
      .member_add = inner->member_add ? w_member_add : NULL,
      .member_remove = inner->member_remove ? w_member_remove : NULL,
      .conversations_of = w_convs_of,
      .append = w_append,
      .messages = w_messages,
      .max_message_id = w_max_id,
      .mark = w_mark,
      .receipts = inner->receipts ? w_receipts : NULL,
      .purge_receipts = inner->purge_receipts ? w_purge : NULL,
      .device_register = inner->device_register ? w_dev_reg : NULL,
      .push_targets = inner->push_targets ? w_targets : NULL,
      .media_put = inner->media_put ? w_media_put : NULL,
      .media_get = inner->media_get ? w_media_get : NULL,
      .destroy = w_destroy,
      .member_change = inner->member_change ? w_member_change : NULL,
      .messages_as = inner->messages_as ? w_messages_as : NULL,
      .shadow_ban_set = inner->shadow_ban_set ? w_ban_set : NULL,
      .shadow_bans = inner->shadow_bans ? w_bans : NULL,
      .push_record = inner->push_record ? w_push_record : NULL,
      .push_read = inner->push_read ? w_push_read : NULL};
  return d;
}

void defer_store_wrap_presence(defer_store *d, const chat_presence_ops *inner,
                               chat_presence_ops *out) {
  d->refs++;
  d->pinner = *inner;
  *out = (chat_presence_ops){
      .version = CHAT_PRESENCE_OPS_V1,
      .self = d,
      .device_online = inner->device_online ? p_online : NULL,
      .device_offline = inner->device_offline ? p_offline : NULL,
      .locate = inner->locate ? p_locate : NULL,
      .set_state = inner->set_state ? p_set_state : NULL,
      .get_state = inner->get_state ? p_get_state : NULL,
      .destroy = p_destroy};
}

static uint64_t rand64(defer_store *d) {
  uint64_t z = (d->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* The queued records to complete now, in the order to complete them. */
static size_t pick(defer_store *d, rec ***out,
                   bool (*pred)(const defer_call_info *, void *), void *ud) {
  size_t n = 0;
  rec **v = malloc((d->queued ? d->queued : 1) * sizeof *v);
  if (!v)
    abort();
  for (rec *r = d->head; r; r = r->next) {
    if (r->state != R_QUEUED)
      continue;
    if (pred) {
      defer_call_info ci = {r->kind, r->s[0] ? r->s[0] : ""};
      if (!pred(&ci, ud))
        continue;
    }
    v[n++] = r;
  }
  if (!pred && d->mode == DEFER_SHUFFLE)
    for (size_t i = n; i > 1; i--) {
      size_t k = (size_t)(rand64(d) % i);
      rec *t = v[i - 1];
      v[i - 1] = v[k];
      v[k] = t;
    }
  *out = v;
  return n;
}

static size_t complete(defer_store *d, rec **v, size_t n) {
  if (d->mode == DEFER_THREAD) {
    /* Hand them to the worker and wait until every one is posted; the
     * caller runs them with chat_server_run_posted(). */
    for (size_t i = 0; i < n; i++) {
      v[i]->state = R_POSTED;
      d->queued--;
    }
    pthread_mutex_lock(&d->mu);
    free(d->work);
    d->work = v;
    d->n_work = n;
    d->done_work = 0;
    pthread_cond_broadcast(&d->cv);
    while (d->done_work < d->n_work)
      pthread_cond_wait(&d->cv, &d->mu);
    d->work = NULL;
    d->n_work = d->done_work = 0;
    pthread_mutex_unlock(&d->mu);
    free(v);
    return n;
  }
  for (size_t i = 0; i < n; i++) {
    rec *r = v[i];
    rec_unlink(d, r);
    d->queued--;
    rec_run(d, r);
  }
  free(v);
  return n;
}

size_t defer_store_run(defer_store *d) {
  rec **v;
  size_t n = pick(d, &v, NULL, NULL);
  return complete(d, v, n);
}

size_t defer_store_run_where(defer_store *d,
                             bool (*pred)(const defer_call_info *c, void *ud),
                             void *ud) {
  rec **v;
  size_t n = pick(d, &v, pred, ud);
  return complete(d, v, n);
}

size_t defer_store_pending(const defer_store *d) { return d->queued; }

size_t defer_store_pending_where(const defer_store *d,
                                 bool (*pred)(const defer_call_info *c,
                                              void *ud),
                                 void *ud) {
  size_t n = 0;
  for (const rec *r = d->head; r; r = r->next) {
    defer_call_info ci = {r->kind, r->s[0] ? r->s[0] : ""};
    n += r->state == R_QUEUED && pred(&ci, ud);
  }
  return n;
}

size_t defer_store_calls(const defer_store *d) { return d->calls; }

/* Conversation cache: type and sorted member list, so that membership is
 * checked in memory on the hot paths (send, receipts, typing). Member
 * changes made through this server invalidate the entry, and other
 * gateways are told over the bus (rest.c); an entry is also reloaded once it
 * is older than CONV_TTL_MS, which bounds how long a lost bus message or a
 * change made behind the server's back can leave it stale. The cache is
 * dropped whole when it grows past its bound.
 *
 * A miss starts one load (storage.conversation_get); every frame or request
 * that needs the same conversation meanwhile waits on that load instead of
 * starting its own. Entries are refcounted, so a waiter can use one while
 * another waiter's continuation changes the cache. */
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

#define MAX_CACHED 20000
#define CONV_TTL_MS 30000

static void entry_free(chat_server *srv, conv_entry *e) {
  for (size_t i = 0; i < e->n_members; i++)
    chat__free(&srv->a, e->members[i]);
  chat__free(&srv->a, e->members);
  for (size_t i = 0; i < e->n_admins; i++)
    chat__free(&srv->a, e->admins[i]);
  chat__free(&srv->a, e->admins);
  chat__free(&srv->a, e);
}

void chat__conv_ref(conv_entry *c) { c->refs++; }

void chat__conv_unref(chat_server *srv, conv_entry *c) {
  if (c && --c->refs == 0)
    entry_free(srv, c);
}

typedef struct waiter {
  chat__job *job; /* referenced */
  chat__conv_cb cb;
} waiter;

/* One conversation_get in flight and everyone waiting for it. */
typedef struct load {
  chat__job base;
  chat_server *srv; /* for the sink */
  char id[CHAT_ID_BUF];
  conv_entry *e;  /* built by the sink */
  bool oom;
  bool stale;     /* forgotten while loading: answer, do not cache */
  bool listed;    /* in srv->loads */
  waiter *w;
  size_t n_w, cap_w;
} load;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void load_emit(chat_server *srv, load *ld, const chat_conversation *c) {
  conv_entry *e = chat__calloc(&srv->a, 1, sizeof *e);
  if (!e || (c->n_members &&
             !(e->members = chat__calloc(&srv->a, c->n_members,
                                         sizeof *e->members)))) {
    chat__free(&srv->a, e);
    ld->oom = true;
    return;
  }
  e->refs = 1;
  e->type = c->type;
  for (size_t i = 0; i < c->n_members; i++) {
    e->members[i] = chat__strndup(&srv->a, c->members[i],
                                  strlen(c->members[i]));
    if (!e->members[i]) {
      e->n_members = i;
      entry_free(srv, e);
      ld->oom = true;
      return;
    }
  }
  e->n_members = c->n_members;
  if (e->n_members > 1)
    qsort(e->members, e->n_members, sizeof *e->members, cmp_str);
  /* Admins: who may remove others and delete any message (section 8). */
  if (c->n_admins &&
      !(e->admins = chat__calloc(&srv->a, c->n_admins, sizeof *e->admins))) {
    entry_free(srv, e);
    ld->oom = true;
    return;
  }
  for (size_t i = 0; i < c->n_admins; i++) {
    e->admins[i] = chat__strndup(&srv->a, c->admins[i],
                                 strlen(c->admins[i]));
    if (!e->admins[i]) {
      entry_free(srv, e);
      ld->oom = true;
      return;
    }
    e->n_admins = i + 1;
  }
  if (e->n_admins > 1)
    qsort(e->admins, e->n_admins, sizeof *e->admins, cmp_str);
  if (ld->e) /* a store that emits twice: keep the last */
    chat__conv_unref(srv, ld->e);
  ld->e = e;
}

static void load_release(chat_server *srv, chat__job *j) {
  load *ld = (load *)j;
  if (ld->listed)
    chat__map_del(&srv->loads, ld->id, strlen(ld->id), NULL);
  for (size_t i = 0; i < ld->n_w; i++)
    chat__job_unref(srv, ld->w[i].job);
  chat__free(&srv->a, ld->w);
  if (ld->e)
    chat__conv_unref(srv, ld->e);
  chat__free(&srv->a, ld);
}

static void sink(void *ctx, const chat_conversation *c) {
  load *ld = ctx;
  load_emit(ld->srv, ld, c);
}

static void add_to_cache(chat_server *srv, const char *id, conv_entry *e) {
  if (chat__map_len(&srv->convs) >= MAX_CACHED)
    chat__convs_free(srv);
  void *old = NULL;
  chat__conv_ref(e);
  if (chat__map_put(&srv->convs, id, strlen(id), e, &old) != CHAT_OK) {
    chat__conv_unref(srv, e);
    return;
  }
  if (old)
    chat__conv_unref(srv, old);
}

static void load_done(chat_server *srv, chat__job *j, uint32_t idx,
                      chat_err rc) {
  (void)idx;
  load *ld = (load *)j;
  if (ld->listed) {
    chat__map_del(&srv->loads, ld->id, strlen(ld->id), NULL);
    ld->listed = false;
  }
  if (rc == CHAT_OK && (ld->oom || !ld->e))
    rc = ld->oom ? CHAT_ERR_NOMEM : CHAT_ERR_MODULE;
  if (rc != CHAT_OK && rc != CHAT_ERR_NOT_FOUND && rc != CHAT_ERR_NOMEM) {
    srv->st.store_errors_total++;
    rc = CHAT_ERR_MODULE;
  }
  conv_entry *e = rc == CHAT_OK ? ld->e : NULL;
  if (e) {
    e->loaded_ms = srv->clock_ms;
    if (!ld->stale)
      add_to_cache(srv, ld->id, e);
  }
  /* Waiters may add more waiters to other loads, or forget this one: take
   * the list out first. */
  waiter *w = ld->w;
  size_t n = ld->n_w;
  ld->w = NULL;
  ld->n_w = ld->cap_w = 0;
  for (size_t i = 0; i < n; i++) {
    w[i].cb(srv, w[i].job, e, rc);
    chat__job_unref(srv, w[i].job);
  }
  chat__free(&srv->a, w);
}

static bool add_waiter(chat_server *srv, load *ld, chat__job *j,
                       chat__conv_cb cb) {
  if (ld->n_w == ld->cap_w) {
    size_t cap = ld->cap_w ? ld->cap_w * 2 : 4;
    waiter *w = chat__realloc(&srv->a, ld->w, cap * sizeof *w);
    if (!w)
      return false;
    ld->w = w;
    ld->cap_w = cap;
  }
  chat__job_ref(j);
  ld->w[ld->n_w++] = (waiter){j, cb};
  return true;
}

bool chat__conv_load(chat_server *srv, const char *conv_id, chat__job *j,
                     chat__conv_cb cb) {
  size_t klen = strlen(conv_id);
  void **slot = chat__map_get(&srv->convs, conv_id, klen);
  if (slot) {
    conv_entry *old = *slot;
    if (srv->clock_ms - old->loaded_ms < CONV_TTL_MS &&
        old->loaded_ms <= srv->clock_ms) {
      chat__conv_ref(old);
      cb(srv, j, old, CHAT_OK);
      chat__conv_unref(srv, old);
      return true;
    }
    chat__conv_forget(srv, conv_id);
  }
  if (klen >= CHAT_ID_BUF) {
    cb(srv, j, NULL, CHAT_ERR_NOT_FOUND);
    return true;
  }
  slot = chat__map_get(&srv->loads, conv_id, klen);
  if (slot) {
    if (add_waiter(srv, *slot, j, cb))
      return false;
    cb(srv, j, NULL, CHAT_ERR_NOMEM);
    return true;
  }
  load *ld = chat__calloc(&srv->a, 1, sizeof *ld);
  if (!ld) {
    cb(srv, j, NULL, CHAT_ERR_NOMEM);
    return true;
  }
  chat__job_init(&ld->base, load_release);
  ld->srv = srv;
  memcpy(ld->id, conv_id, klen + 1);
  if (!add_waiter(srv, ld, j, cb) ||
      chat__map_put(&srv->loads, conv_id, klen, ld, NULL) != CHAT_OK) {
    chat__job_unref(srv, &ld->base);
    cb(srv, j, NULL, CHAT_ERR_NOMEM);
    return true;
  }
  ld->listed = true;
  /* Whether our own callback ran decides the answer, not the load: a
   * load finished at once has answered every waiter, this one included. */
  chat_op *op;
  bool now = CHAT__CALL(srv, &ld->base, load_done, 0, op,
                        srv->store.conversation_get(srv->store.self, ld->id,
                                                    NULL, sink, ld,
                                                    op));
  chat__job_unref(srv, &ld->base);
  return now;
}

bool chat__conv_has_member(const conv_entry *c, const char *user_id) {
  return bsearch(&user_id, c->members, c->n_members, sizeof *c->members,
                 cmp_str) != NULL;
}

bool chat__conv_is_admin(const conv_entry *c, const char *user_id) {
  return c->n_admins &&
         bsearch(&user_id, c->admins, c->n_admins, sizeof *c->admins,
                 cmp_str) != NULL;
}

void chat__conv_forget(chat_server *srv, const char *conv_id) {
  size_t klen = strlen(conv_id);
  void *old;
  if (chat__map_del(&srv->convs, conv_id, klen, &old))
    chat__conv_unref(srv, old);
  /* A load that started before the change may read the old members. */
  void **slot = chat__map_get(&srv->loads, conv_id, klen);
  if (slot)
    ((load *)*slot)->stale = true;
}

void chat__convs_free(chat_server *srv) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->convs, &it, &k, &kl, &v))
    chat__conv_unref(srv, v);
  chat__map_free(&srv->convs);
  chat__map_init(&srv->convs, &srv->a, srv->convs.seed);
}

bool chat__conv_check_member(chat_session *s, const conv_entry *c,
                             chat_err err, const char *ref) {
  if (!c) {
    if (err == CHAT_ERR_NOT_FOUND)
      chat__sess_error(s, CHAT_WIRE_NO_SUCH_CONVERSATION,
                       "no such conversation", ref, 0);
    else
      chat__sess_error(s, CHAT_WIRE_INTERNAL, "storage unavailable", ref, 0);
    return false;
  }
  if (!chat__conv_has_member(c, s->id.user_id)) {
    chat__sess_error(s, CHAT_WIRE_NOT_MEMBER,
                     "not a member of this conversation", ref, 0);
    return false;
  }
  return true;
}

/* Conversation cache: type and sorted member list, so that membership is
 * checked in memory on the hot paths (send, receipts, typing). Member
 * changes made through this server invalidate the entry, and other
 * gateways are told over the bus (rest.c); an entry is also reloaded once it
 * is older than CONV_TTL_MS, which bounds how long a lost bus message or a
 * change made behind the server's back can leave it stale. The cache is
 * dropped whole when it grows past its bound. */
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

#define MAX_CACHED 20000
#define CONV_TTL_MS 30000

static void entry_free(chat_server *srv, conv_entry *e) {
  if (!e)
    return;
  for (size_t i = 0; i < e->n_members; i++)
    chat__free(&srv->a, e->members[i]);
  chat__free(&srv->a, e->members);
  chat__free(&srv->a, e);
}

typedef struct load_ctx {
  chat_server *srv;
  conv_entry *e;
  bool oom;
} load_ctx;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void on_conv(void *ctx, const chat_conversation *c) {
  load_ctx *lc = ctx;
  conv_entry *e = chat__calloc(&lc->srv->a, 1, sizeof *e);
  if (!e || (c->n_members &&
             !(e->members = chat__calloc(&lc->srv->a, c->n_members,
                                         sizeof *e->members)))) {
    chat__free(&lc->srv->a, e);
    lc->oom = true;
    return;
  }
  e->type = c->type;
  for (size_t i = 0; i < c->n_members; i++) {
    e->members[i] = chat__strndup(&lc->srv->a, c->members[i],
                                  strlen(c->members[i]));
    if (!e->members[i]) {
      e->n_members = i;
      entry_free(lc->srv, e);
      lc->oom = true;
      return;
    }
  }
  e->n_members = c->n_members;
  qsort(e->members, e->n_members, sizeof *e->members, cmp_str);
  entry_free(lc->srv, lc->e); /* a store that emits twice: keep the last */
  lc->e = e;
}

const conv_entry *chat__conv_get(chat_server *srv, const char *conv_id,
                                 chat_err *err) {
  size_t klen = strlen(conv_id);
  void **slot = chat__map_get(&srv->convs, conv_id, klen);
  if (slot) {
    conv_entry *old = *slot;
    if (srv->clock_ms - old->loaded_ms < CONV_TTL_MS &&
        old->loaded_ms <= srv->clock_ms)
      return old;
    chat__conv_forget(srv, conv_id);
  }
  load_ctx lc = {srv, NULL, false};
  chat_err rc = srv->store.conversation_get(srv->store.self, conv_id, NULL,
                                            on_conv, &lc);
  if (rc == CHAT_OK && (lc.oom || !lc.e))
    rc = lc.oom ? CHAT_ERR_NOMEM : CHAT_ERR_MODULE;
  if (rc != CHAT_OK) {
    entry_free(srv, lc.e);
    if (rc != CHAT_ERR_NOT_FOUND && rc != CHAT_ERR_NOMEM) {
      srv->st.store_errors_total++;
      rc = CHAT_ERR_MODULE;
    }
    *err = rc;
    return NULL;
  }
  lc.e->loaded_ms = srv->clock_ms;
  if (chat__map_len(&srv->convs) >= MAX_CACHED)
    chat__convs_free(srv);
  if (chat__map_put(&srv->convs, conv_id, klen, lc.e, NULL) != CHAT_OK) {
    entry_free(srv, lc.e);
    *err = CHAT_ERR_NOMEM;
    return NULL;
  }
  return lc.e;
}

bool chat__conv_has_member(const conv_entry *c, const char *user_id) {
  return bsearch(&user_id, c->members, c->n_members, sizeof *c->members,
                 cmp_str) != NULL;
}

void chat__conv_forget(chat_server *srv, const char *conv_id) {
  void *old;
  if (chat__map_del(&srv->convs, conv_id, strlen(conv_id), &old))
    entry_free(srv, old);
}

void chat__convs_free(chat_server *srv) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->convs, &it, &k, &kl, &v))
    entry_free(srv, v);
  chat__map_free(&srv->convs);
  chat__map_init(&srv->convs, &srv->a, srv->convs.seed);
}

const conv_entry *chat__conv_for_member(chat_session *s, const char *conv_id,
                                        const char *ref) {
  chat_err err = CHAT_OK;
  const conv_entry *c = chat__conv_get(s->srv, conv_id, &err);
  if (!c) {
    if (err == CHAT_ERR_NOT_FOUND)
      chat__sess_error(s, CHAT_WIRE_NO_SUCH_CONVERSATION,
                       "no such conversation", ref, 0);
    else
      chat__sess_error(s, CHAT_WIRE_INTERNAL, "storage unavailable", ref, 0);
    return NULL;
  }
  if (!chat__conv_has_member(c, s->id.user_id)) {
    chat__sess_error(s, CHAT_WIRE_NOT_MEMBER,
                     "not a member of this conversation", ref, 0);
    return NULL;
  }
  return c;
}

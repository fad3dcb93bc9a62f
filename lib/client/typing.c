/* Typing: our own indicator (is_typing:true at most once per
 * typing_refresh_ms while keys come, false after typing_idle_ms of quiet or
 * on send, nothing in groups over typing_max_members or while offline),
 * and peers' indicators, expired by the client itself typing_expire_ms
 * after their last true (PROTOCOL.md 4.8). */
#include "client/client_internal.h"

#include <string.h>

static chat__mytyping *typing_get(chat_client *c, const char *conv,
                                  bool create) {
  size_t n = strlen(conv);
  void **v = chat__map_get(&c->typing, conv, n);
  if (v)
    return *v;
  if (!create)
    return NULL;
  chat__mytyping *t = chat__calloc(&c->a, 1, sizeof *t + n + 1);
  if (!t)
    return NULL;
  memcpy(t->conv, conv, n + 1);
  if (chat__map_put(&c->typing, conv, n, t, NULL)) {
    chat__free(&c->a, t);
    return NULL;
  }
  return t;
}

static chat_err queue_typing(chat_client *c, const char *conv, bool on) {
  chat_typing t = {.conversation_id = conv, .is_typing = on};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_TYPING,
                  .typing = &t};
  return chat__client_queue_frame(c, &f, NULL);
}

chat_err chat_client_typing(chat_client *c, const char *conv,
                            chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (e)
    return e;
  if (!chat__client_online(c))
    return CHAT_OK;
  chat_conversation_type type = CHAT_CONVERSATION_DIRECT;
  uint32_t n = 0;
  e = c->st->get_conversation(c->st->self, conv, &type, &n);
  /* Typing is a nicety: an unknown conversation still gets it, but a large
   * group never does (PROTOCOL.md 4.8). */
  if (e == CHAT_OK && n > c->s.typing_max_members)
    return CHAT_OK;
  chat__mytyping *t = typing_get(c, conv, true);
  if (!t)
    return chat__client_fail(c, CHAT_ERR_NOMEM, "out of memory");
  if (!t->active || now - t->last_true >= c->s.typing_refresh_ms) {
    e = queue_typing(c, conv, true);
    if (e)
      return chat__client_fail(c, e, "cannot queue the typing frame: %s",
                               chat_strerror(e));
    t->active = true;
    t->last_true = now;
  }
  t->last_key = now;
  return CHAT_OK;
}

static void stop(chat_client *c, chat__mytyping *t) {
  if (!t->active)
    return;
  t->active = false;
  if (chat__client_online(c))
    (void)queue_typing(c, t->conv, false);
}

void chat__client_typing_stop(chat_client *c, const char *conv) {
  chat__mytyping *t = typing_get(c, conv, false);
  if (t)
    stop(c, t);
}

/* Stop, one at a time, every indicator that `due` selects. The walk
 * restarts after each stop: queueing a frame can run on_wants, and the app
 * may call chat_client_typing() from there, which inserts into the map. */
static void stop_each(chat_client *c, chat_time_ms now, bool all) {
  for (;;) {
    size_t it = 0;
    void *v;
    chat__mytyping *due = NULL;
    while (chat__map_next(&c->typing, &it, NULL, NULL, &v)) {
      chat__mytyping *t = v;
      if (t->active &&
          (all || now >= t->last_key + c->s.typing_idle_ms)) {
        due = t;
        break;
      }
    }
    if (!due)
      return;
    stop(c, due);
  }
}

void chat__client_typing_stop_all(chat_client *c) {
  stop_each(c, 0, true);
}

void chat__client_typing_reset(chat_client *c) {
  size_t it = 0;
  void *v;
  while (chat__map_next(&c->typing, &it, NULL, NULL, &v))
    ((chat__mytyping *)v)->active = false;
}

void chat__client_typing_timer(chat_client *c, chat_time_ms now) {
  stop_each(c, now, false);
}

chat_time_ms chat__client_typing_deadline(const chat_client *c) {
  chat_time_ms d = CHAT_TIME_NEVER;
  size_t it = 0;
  void *v;
  while (chat__map_next(&c->typing, &it, NULL, NULL, &v)) {
    const chat__mytyping *t = v;
    if (t->active && t->last_key + c->s.typing_idle_ms < d)
      d = t->last_key + c->s.typing_idle_ms;
  }
  return d;
}

/* ---- peers ---- */

/* "conversation user": ids never hold a space. */
static size_t peer_key(char *buf, const char *conv, const char *user) {
  size_t a = strlen(conv), b = strlen(user);
  memcpy(buf, conv, a);
  buf[a] = ' ';
  memcpy(buf + a + 1, user, b);
  buf[a + 1 + b] = 0;
  return a + 1 + b;
}

static void peer_free(chat_client *c, chat__peer *p) {
  chat__free(&c->a, p->conv);
  chat__free(&c->a, p->user);
  chat__free(&c->a, p);
}

/* Unlink p, report the stop, free it. */
static void peer_stopped(chat_client *c, chat__peer *p) {
  char key[2 * CHAT__CLIENT_ID_BUF];
  size_t n = peer_key(key, p->conv, p->user);
  chat__map_del(&c->peers, key, n, NULL);
  if (c->cb.on_typing)
    c->cb.on_typing(c->ud, c, p->conv, p->user, false);
  peer_free(c, p);
}

void chat__client_peer_typing(chat_client *c, const chat_typing *ty,
                              chat_time_ms now) {
  if (strlen(ty->conversation_id) > 64 || strlen(ty->user_id) > 64)
    return; /* the codec checked the ids: never happens */
  char key[2 * CHAT__CLIENT_ID_BUF];
  size_t n = peer_key(key, ty->conversation_id, ty->user_id);
  void **v = chat__map_get(&c->peers, key, n);
  chat__peer *p = v ? *v : NULL;
  if (ty->is_typing) {
    bool fresh = p == NULL;
    if (!p) {
      p = chat__calloc(&c->a, 1, sizeof *p);
      if (!p)
        return;
      p->conv = chat__strndup(&c->a, ty->conversation_id,
                              strlen(ty->conversation_id));
      p->user = chat__strndup(&c->a, ty->user_id, strlen(ty->user_id));
      if (!p->conv || !p->user || chat__map_put(&c->peers, key, n, p, NULL)) {
        peer_free(c, p);
        return;
      }
    }
    p->expires = now + c->s.typing_expire_ms;
    if (fresh && c->cb.on_typing)
      c->cb.on_typing(c->ud, c, ty->conversation_id, ty->user_id, true);
    return;
  }
  if (p)
    peer_stopped(c, p);
}

void chat__client_peers_expire(chat_client *c, chat_time_ms now, bool all) {
  /* Restart the walk after each stop: the callback may change the map. */
  for (;;) {
    size_t it = 0;
    void *v;
    chat__peer *due = NULL;
    while (chat__map_next(&c->peers, &it, NULL, NULL, &v))
      if (all || ((chat__peer *)v)->expires <= now) {
        due = v;
        break;
      }
    if (!due)
      return;
    peer_stopped(c, due);
  }
}

chat_time_ms chat__client_peers_deadline(const chat_client *c) {
  chat_time_ms d = CHAT_TIME_NEVER;
  size_t it = 0;
  void *v;
  while (chat__map_next(&c->peers, &it, NULL, NULL, &v))
    if (((chat__peer *)v)->expires < d)
      d = ((chat__peer *)v)->expires;
  return d;
}

void chat__client_typing_free(chat_client *c) {
  size_t it = 0;
  void *v;
  while (chat__map_next(&c->typing, &it, NULL, NULL, &v))
    chat__free(&c->a, v);
  chat__map_free(&c->typing);
  it = 0;
  while (chat__map_next(&c->peers, &it, NULL, NULL, &v))
    peer_free(c, v);
  chat__map_free(&c->peers);
}

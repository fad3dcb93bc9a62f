/* Presence (PROTOCOL.md 4.9) for the users connected to this gateway,
 * subscriptions, and typing relay (4.8). Presence lives in memory (and in
 * the presence module for other gateways), never in the message store.
 *
 * online: a device is connected and active; idle: presence_idle_ms without
 * activity; offline: presence_offline_ms (the grace against flicker) after
 * the last device left, or presence_idle_offline_ms without activity.
 * With sticky routing a user's devices share a gateway, so the gateway that
 * holds them decides the state. */
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

typedef struct watchers {
  chat_session **v;
  size_t n, cap;
} watchers;

static user_entry *user_get(chat_server *srv, const char *user) {
  void **slot = chat__map_get(&srv->users, user, strlen(user));
  return slot ? *slot : NULL;
}

size_t chat__deliver_local(chat_server *srv, chat__shared_frame *f,
                           const char *user_id, const char *except_device) {
  user_entry *ue = user_get(srv, user_id);
  size_t n = 0;
  for (chat_session *s = ue ? ue->sessions : NULL; s; s = s->user_next) {
    if (except_device && strcmp(s->id.device_id, except_device) == 0)
      continue;
    chat__sess_queue(s, f);
    n++;
  }
  return n;
}

static void push_state(chat_server *srv, user_entry *ue) {
  if (srv->has_presence && srv->presence.set_state)
    srv->presence.set_state(srv->presence.self, ue->user_id, ue->state,
                            ue->last_active_wall);
}

/* Tell every local subscriber of the user about its new state. */
static void notify_watchers(chat_server *srv, const char *user,
                            chat_presence_state state, int64_t last_active,
                            bool has_last_active) {
  void **slot = chat__map_get(&srv->watchers, user, strlen(user));
  watchers *w = slot ? *slot : NULL;
  if (!w || w->n == 0)
    return;
  chat_presence p = {.user_id = user, .state = state,
                     .has_last_active = has_last_active,
                     .last_active_ts = last_active};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_PRESENCE,
                  .presence = &p};
  chat__shared_frame *sf = chat__frame_make(srv, &f);
  if (!sf)
    return;
  for (size_t i = 0; i < w->n; i++)
    chat__sess_queue(w->v[i], sf);
  chat__frame_unref(srv, sf);
}

static void set_state(chat_server *srv, user_entry *ue,
                      chat_presence_state st) {
  if (ue->state == st)
    return;
  ue->state = st;
  push_state(srv, ue);
  notify_watchers(srv, ue->user_id, st, ue->last_active_wall, true);
}

static void want_check(chat_server *srv, chat_time_ms at) {
  if (at < srv->next_presence_check)
    srv->next_presence_check = at;
}

chat_err chat__presence_attach(chat_session *s, chat_time_ms now) {
  chat_server *srv = s->srv;
  user_entry *ue = user_get(srv, s->id.user_id);
  if (!ue) {
    ue = chat__calloc(&srv->a, 1, sizeof *ue);
    if (!ue)
      return CHAT_ERR_NOMEM;
    memcpy(ue->user_id, s->id.user_id, sizeof ue->user_id);
    ue->state = CHAT_PRESENCE_OFFLINE;
    if (chat__map_put(&srv->users, ue->user_id, strlen(ue->user_id), ue,
                      NULL) != CHAT_OK) {
      chat__free(&srv->a, ue);
      return CHAT_ERR_NOMEM;
    }
  }
  s->user = ue;
  s->user_next = ue->sessions;
  ue->sessions = s;
  ue->n_sessions++;
  ue->offline_at = CHAT_TIME_NEVER;
  ue->last_activity = now;
  ue->last_active_wall = chat__srv_wall(srv);
  if (srv->has_presence &&
      srv->presence.device_online(srv->presence.self, s->id.user_id,
                                  s->id.device_id, srv->gateway_id) != CHAT_OK)
    srv->st.bus_publish_errors_total++;
  set_state(srv, ue, CHAT_PRESENCE_ONLINE);
  want_check(srv, now + srv->s.presence_idle_ms);
  return CHAT_OK;
}

static void unwatch(chat_session *s) {
  chat_server *srv = s->srv;
  for (size_t i = 0; i < s->n_subs; i++) {
    const char *u = s->subs[i];
    void **slot = chat__map_get(&srv->watchers, u, strlen(u));
    watchers *w = slot ? *slot : NULL;
    if (!w)
      continue;
    for (size_t j = 0; j < w->n; j++)
      if (w->v[j] == s) {
        w->v[j] = w->v[--w->n];
        break;
      }
    if (w->n == 0) {
      chat__map_del(&srv->watchers, u, strlen(u), NULL);
      chat__free(&srv->a, w->v);
      chat__free(&srv->a, w);
    }
  }
  s->n_subs = 0;
}

void chat__presence_detach(chat_session *s, chat_time_ms now) {
  chat_server *srv = s->srv;
  unwatch(s);
  user_entry *ue = s->user;
  if (!ue)
    return;
  for (chat_session **pp = &ue->sessions; *pp; pp = &(*pp)->user_next)
    if (*pp == s) {
      *pp = s->user_next;
      break;
    }
  ue->n_sessions--;
  s->user = NULL;
  if (srv->has_presence)
    srv->presence.device_offline(srv->presence.self, s->id.user_id,
                                 s->id.device_id, srv->gateway_id);
  if (ue->n_sessions == 0) {
    ue->offline_at = now + srv->s.presence_offline_ms;
    want_check(srv, ue->offline_at);
  }
}

void chat__presence_activity(chat_session *s, chat_time_ms now) {
  user_entry *ue = s->user;
  if (!ue)
    return;
  ue->last_activity = now;
  ue->last_active_wall = chat__srv_wall(s->srv);
  if (ue->state != CHAT_PRESENCE_ONLINE) {
    set_state(s->srv, ue, CHAT_PRESENCE_ONLINE);
    want_check(s->srv, now + s->srv->s.presence_idle_ms);
  }
}

chat_time_ms chat__presence_deadline(const chat_server *srv) {
  return srv->next_presence_check;
}

void chat__presence_tick(chat_server *srv, chat_time_ms now) {
  if (srv->next_presence_check > now)
    return;
  chat_time_ms next = CHAT_TIME_NEVER;
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->users, &it, &k, &kl, &v)) {
    user_entry *ue = v;
    if (ue->n_sessions == 0) {
      if (ue->offline_at <= now) {
        set_state(srv, ue, CHAT_PRESENCE_OFFLINE);
        chat__map_del(&srv->users, k, kl, NULL);
        chat__free(&srv->a, ue);
      } else if (ue->offline_at < next) {
        next = ue->offline_at;
      }
      continue;
    }
    chat_time_ms idle_at = ue->last_activity + srv->s.presence_idle_ms;
    chat_time_ms gone_at = ue->last_activity + srv->s.presence_idle_offline_ms;
    if (ue->state == CHAT_PRESENCE_ONLINE && idle_at <= now)
      set_state(srv, ue, CHAT_PRESENCE_IDLE);
    if (ue->state == CHAT_PRESENCE_IDLE && gone_at <= now)
      set_state(srv, ue, CHAT_PRESENCE_OFFLINE);
    chat_time_ms due = ue->state == CHAT_PRESENCE_ONLINE ? idle_at
                       : ue->state == CHAT_PRESENCE_IDLE ? gone_at
                                                          : CHAT_TIME_NEVER;
    if (due < next)
      next = due;
  }
  srv->next_presence_check = next;
}

/* One presence_subscribe frame: the new set is installed at once, and
 * each user's current state is sent in the order listed, asking the
 * registry for users not connected here. */
typedef struct sub_job {
  chat__job base;
  chat_session *s;  /* referenced */
  char (*users)[CHAT_ID_BUF];
  size_t n, i;
  bool running, pending;
  chat_err rc;
  chat_presence_state state;
  int64_t last_active;
} sub_job;

static void sub_release(chat_server *srv, chat__job *j) {
  sub_job *sj = (sub_job *)j;
  chat__sess_unref(srv, sj->s);
  chat__free(&srv->a, sj->users);
  chat__free(&srv->a, sj);
}

static void send_presence(chat_session *s, const chat_presence *p) {
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_PRESENCE,
                  .presence = p};
  chat__sess_send(s, &f);
}

static void sub_run(chat_server *srv, sub_job *j);

static void on_state(chat_server *srv, chat__job *job, uint32_t idx,
                     chat_err rc) {
  (void)idx;
  sub_job *j = (sub_job *)job;
  chat_presence p = {.user_id = j->users[j->i],
                     .state = CHAT_PRESENCE_OFFLINE};
  if (rc == CHAT_OK) {
    p.state = j->state;
    p.has_last_active = true;
    p.last_active_ts = j->last_active;
  }
  send_presence(j->s, &p);
  j->i++;
  j->pending = false;
  sub_run(srv, j);
}

static void sub_run(chat_server *srv, sub_job *j) {
  if (j->running)
    return;
  j->running = true;
  chat__job_ref(&j->base);
  while (!j->pending && j->i < j->n && !j->s->dead) {
    const char *u = j->users[j->i];
    user_entry *ue = user_get(srv, u);
    if (ue || !srv->has_presence || !srv->presence.get_state) {
      /* Known here, or nobody else to ask. */
      chat_presence p = {.user_id = u, .state = CHAT_PRESENCE_OFFLINE};
      if (ue) {
        p.state = ue->state;
        p.has_last_active = true;
        p.last_active_ts = ue->last_active_wall;
      }
      send_presence(j->s, &p);
      j->i++;
      continue;
    }
    j->pending = true;
    chat_op *op;
    CHAT__CALL(srv, &j->base, on_state, 0, op,
               srv->presence.get_state(srv->presence.self, u, &j->state,
                                       &j->last_active, op));
  }
  if (!j->pending && (j->i >= j->n || j->s->dead) && j->n != SIZE_MAX) {
    j->n = SIZE_MAX; /* done once */
    chat__sess_frame_done(j->s);
  }
  j->running = false;
  chat__job_unref(srv, &j->base);
}

void chat__on_subscribe(chat_session *s, const chat_presence_subscribe *ps,
                        chat_time_ms now) {
  (void)now;
  chat_server *srv = s->srv;
  unwatch(s);
  sub_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (j && ps->n_user_ids)
    j->users = chat__calloc(&srv->a, ps->n_user_ids, sizeof *j->users);
  if (ps->n_user_ids > 0 && j && j->users) {
    char(*subs)[CHAT_ID_BUF] =
        chat__realloc(&srv->a, s->subs, ps->n_user_ids * sizeof *subs);
    if (subs)
      s->subs = subs;
    else
      chat__free(&srv->a, j->users), j->users = NULL;
  }
  if (!j || (ps->n_user_ids && !j->users)) {
    chat__free(&srv->a, j);
    chat__sess_error(s, CHAT_WIRE_INTERNAL, "out of memory",
                     "presence_subscribe", 0);
    chat__sess_frame_done(s);
    return;
  }
  chat__job_init(&j->base, sub_release);
  j->s = s;
  chat__sess_ref(s);
  for (size_t i = 0; i < ps->n_user_ids; i++) {
    const char *u = ps->user_ids[i];
    bool dup = false;
    for (size_t k = 0; k < s->n_subs && !dup; k++)
      dup = strcmp(s->subs[k], u) == 0;
    if (dup)
      continue;
    void **slot = chat__map_get(&srv->watchers, u, strlen(u));
    watchers *w = slot ? *slot : NULL;
    if (!w) {
      w = chat__calloc(&srv->a, 1, sizeof *w);
      if (!w || chat__map_put(&srv->watchers, u, strlen(u), w, NULL) !=
                    CHAT_OK) {
        chat__free(&srv->a, w);
        continue;
      }
    }
    if (w->n == w->cap) {
      size_t cap = w->cap ? w->cap * 2 : 4;
      chat_session **v = chat__realloc(&srv->a, w->v, cap * sizeof *v);
      if (!v)
        continue;
      w->v = v;
      w->cap = cap;
    }
    w->v[w->n++] = s;
    memcpy(s->subs[s->n_subs++], u, strlen(u) + 1);
    memcpy(j->users[j->n++], u, strlen(u) + 1);
  }
  sub_run(srv, j);
  chat__job_unref(srv, &j->base);
}

#define TYPING_BURST 5
#define TYPING_REFILL_MS 1000

/* An SDK sends `true` at most every 3 s and one `false`; anything much
 * faster is a misbehaving client, and its excess is dropped silently
 * (typing is ephemeral, and the sender has nothing to retry). */
static bool typing_take(chat_session *s, chat_time_ms now) {
  if (!s->typing_seen || now < s->typing_at) {
    s->typing_seen = true;
    s->typing_at = now;
    s->typing_tokens = TYPING_BURST;
  } else {
    chat_time_ms add = (now - s->typing_at) / TYPING_REFILL_MS;
    if (add > 0) {
      s->typing_tokens = add >= TYPING_BURST || s->typing_tokens + add >=
                                                     TYPING_BURST
                             ? TYPING_BURST
                             : s->typing_tokens + (uint32_t)add;
      s->typing_at += add * TYPING_REFILL_MS;
    }
  }
  if (s->typing_tokens == 0)
    return false;
  s->typing_tokens--;
  return true;
}

typedef struct typing_job {
  chat__job base;
  chat_session *s; /* referenced */
  char conv[CHAT_ID_BUF];
  bool is_typing;
} typing_job;

static void typing_release(chat_server *srv, chat__job *j) {
  typing_job *tj = (typing_job *)j;
  chat__sess_unref(srv, tj->s);
  chat__free(&srv->a, tj);
}

static void on_typing_conv(chat_server *srv, chat__job *job,
                           const conv_entry *c, chat_err err) {
  typing_job *j = (typing_job *)job;
  chat_session *s = j->s;
  if (!chat__conv_check_member(s, c, err, "typing") ||
      !typing_take(s, srv->clock_ms) ||
      /* Typing is never stored and not relayed in large groups. */
      (c->type == CHAT_CONVERSATION_GROUP &&
       c->n_members > srv->s.typing_max_members) ||
      /* A shadow-banned user's typing would reveal messages nobody
       * receives (PROTOCOL.md section 8). */
      chat__banned(srv, s->id.user_id)) {
    chat__sess_frame_done(s);
    return;
  }
  chat_typing out = {.conversation_id = j->conv,
                     .user_id = s->id.user_id,
                     .is_typing = j->is_typing};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_TYPING,
                  .typing = &out};
  chat__shared_frame *sf = chat__frame_make(srv, &f);
  const char *stack[64];
  const char **others = stack;
  if (sf && c->n_members > 64 &&
      !(others = chat__alloc(&srv->a, c->n_members * sizeof *others))) {
    chat__frame_unref(srv, sf);
    sf = NULL;
  }
  if (sf) {
    size_t n = 0;
    for (size_t i = 0; i < c->n_members; i++)
      if (strcmp(c->members[i], s->id.user_id) != 0)
        others[n++] = c->members[i];
    chat__deliver(srv, sf, others, n, NULL, NULL, NULL);
    chat__frame_unref(srv, sf);
    if (others != stack)
      chat__free(&srv->a, others);
  }
  chat__sess_frame_done(s);
}

void chat__on_typing(chat_session *s, const chat_typing *t,
                     chat_time_ms now) {
  (void)now;
  chat_server *srv = s->srv;
  typing_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (!j) {
    chat__sess_frame_done(s); /* typing is ephemeral: nothing to retry */
    return;
  }
  chat__job_init(&j->base, typing_release);
  j->s = s;
  chat__sess_ref(s);
  snprintf(j->conv, sizeof j->conv, "%s", t->conversation_id);
  j->is_typing = t->is_typing;
  chat__conv_load(srv, j->conv, &j->base, on_typing_conv);
  chat__job_unref(srv, &j->base);
}

void chat__presence_free(chat_server *srv) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->users, &it, &k, &kl, &v))
    chat__free(&srv->a, v);
  it = 0;
  while (chat__map_next(&srv->watchers, &it, &k, &kl, &v)) {
    watchers *w = v;
    chat__free(&srv->a, w->v);
    chat__free(&srv->a, w);
  }
}

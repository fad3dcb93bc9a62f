/* Fan-out: one encoded frame to many users' devices. Local sessions get
 * the shared frame directly; users on other gateways (per the presence
 * registry) get one bus message per gateway; users with no device anywhere
 * are reported so that the caller can hand them to push, which runs later,
 * after every online delivery (PROTOCOL.md 4.4 and 4.11). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_internal.h"

/* ---- locating remote devices ---- */

typedef struct remote {
  const char *gw;   /* owned */
  uint32_t idx;     /* index into the job's users */
  const char *user; /* set when every locate has answered */
} remote;

/* One delivery that asks the presence registry where each user is. Local
 * sessions get the frame at once; the bus messages and the pushes wait
 * until every locate has answered. */
typedef struct deliver_job {
  chat__job base;
  chat__shared_frame *f;      /* referenced */
  const char **users;         /* the caller's until a locate pends */
  char *owned;                /* the users' strings once copied */
  const char **owned_users;
  size_t n_users;
  uint8_t *flags;             /* per user: LOCAL, FOUND */
  char except_user[CHAT_ID_BUF];
  char except_device[CHAT_ID_BUF];
  bool has_except;
  bool has_push;
  char push_conv[CHAT_ID_BUF];
  char push_sender[CHAT_ID_BUF];
  uint64_t push_message_id;
  remote *out;
  size_t n, cap;
  bool oom;
  bool users_lost;            /* no memory to copy them: publish nothing */
  size_t waiting;             /* locates not answered, plus one guard */
} deliver_job;

enum { U_LOCAL = 1, U_FOUND = 2 };

static void deliver_release(chat_server *srv, chat__job *j) {
  deliver_job *dj = (deliver_job *)j;
  for (size_t i = 0; i < dj->n; i++)
    chat__free(&srv->a, (void *)dj->out[i].gw);
  chat__free(&srv->a, dj->out);
  chat__free(&srv->a, dj->flags);
  chat__free(&srv->a, dj->owned);
  chat__free(&srv->a, dj->owned_users);
  chat__frame_unref(srv, dj->f);
  chat__free(&srv->a, dj);
}

/* The sink context of a locate is its op: it carries the job and which
 * user the call is for. */
static void on_location(void *ctx, const char *gw, const char *device) {
  (void)device;
  chat_op *op = ctx;
  chat_server *srv = op->srv;
  deliver_job *j = (deliver_job *)op->job;
  j->flags[op->idx] |= U_FOUND;
  if (strcmp(gw, srv->gateway_id) == 0)
    return; /* our own sessions are delivered locally */
  if (j->n == j->cap) {
    size_t cap = j->cap ? j->cap * 2 : 16;
    remote *r = chat__realloc(&srv->a, j->out, cap * sizeof *r);
    if (!r) {
      j->oom = true;
      return;
    }
    j->out = r;
    j->cap = cap;
  }
  char *g = chat__strndup(&srv->a, gw, strlen(gw));
  if (!g) {
    j->oom = true;
    return;
  }
  j->out[j->n].gw = g;
  j->out[j->n].idx = op->idx;
  j->out[j->n].user = NULL;
  j->n++;
}

static int cmp_remote(const void *a, const void *b) {
  const remote *x = a, *y = b;
  int c = strcmp(x->gw, y->gw);
  return c ? c : strcmp(x->user, y->user);
}

/* Envelope: {"k":"deliver","to":[users],"xu":user,"xd":device,"f":frame}.
 * The other kind, {"k":"forget","c":conversation_id}, comes from
 * chat__bus_forget. */
static void publish_group(chat_server *srv, const deliver_job *j,
                          const remote *r, size_t n) {
  chat__buf_reset(&srv->tmp);
  chat__jw w;
  chat__jw_init(&w, &srv->tmp);
  chat__jw_obj_begin(&w);
  chat__jw_key(&w, "k");
  chat__jw_str(&w, "deliver", 7);
  chat__jw_key(&w, "to");
  chat__jw_arr_begin(&w);
  for (size_t i = 0; i < n; i++)
    if (i == 0 || strcmp(r[i].user, r[i - 1].user) != 0)
      chat__jw_str(&w, r[i].user, strlen(r[i].user));
  chat__jw_arr_end(&w);
  if (j->has_except) {
    chat__jw_key(&w, "xu");
    chat__jw_str(&w, j->except_user, strlen(j->except_user));
    chat__jw_key(&w, "xd");
    chat__jw_str(&w, j->except_device, strlen(j->except_device));
  }
  chat__jw_key(&w, "f");
  chat__jw_raw(&w, j->f->data, j->f->len);
  chat__jw_obj_end(&w);
  if (srv->tmp.oom) {
    srv->st.bus_publish_errors_total++;
    return;
  }
  if (srv->bus.publish(srv->bus.self, r[0].gw, srv->tmp.data, srv->tmp.len) ==
      CHAT_OK)
    srv->st.bus_published_total++;
  else
    srv->st.bus_publish_errors_total++;
}

/* Every locate has answered: one bus message per gateway, then pushes. */
static void deliver_finish(chat_server *srv, deliver_job *j) {
  if (j->users_lost) {
    srv->st.bus_publish_errors_total++;
    return;
  }
  if (j->n > 0 && !j->oom) {
    for (size_t i = 0; i < j->n; i++)
      j->out[i].user = j->users[j->out[i].idx];
    qsort(j->out, j->n, sizeof *j->out, cmp_remote);
    size_t start = 0;
    for (size_t i = 1; i <= j->n; i++)
      if (i == j->n || strcmp(j->out[i].gw, j->out[start].gw) != 0) {
        publish_group(srv, j, j->out + start, i - start);
        start = i;
      }
  } else if (j->oom) {
    srv->st.bus_publish_errors_total++;
  }
  if (!j->has_push)
    return;
  for (size_t i = 0; i < j->n_users; i++)
    if (!(j->flags[i] & (U_LOCAL | U_FOUND)) &&
        strcmp(j->users[i], j->push_sender) != 0)
      chat__push_queue(srv, j->users[i], j->push_conv, j->push_sender,
                       j->push_message_id);
}

static void on_located(chat_server *srv, chat__job *job, uint32_t idx,
                       chat_err rc) {
  (void)idx;
  deliver_job *j = (deliver_job *)job;
  if (rc != CHAT_OK)
    srv->st.bus_publish_errors_total++;
  if (--j->waiting == 0)
    deliver_finish(srv, j);
}

/* A locate went pending: the caller's user list dies when chat__deliver
 * returns, so copy it. False when out of memory. */
static bool own_users(chat_server *srv, deliver_job *j) {
  if (j->owned_users)
    return true;
  size_t bytes = 0;
  for (size_t i = 0; i < j->n_users; i++)
    bytes += strlen(j->users[i]) + 1;
  j->owned = chat__alloc(&srv->a, bytes ? bytes : 1);
  j->owned_users = chat__alloc(&srv->a, j->n_users * sizeof *j->owned_users);
  if (!j->owned || !j->owned_users)
    return false;
  char *w = j->owned;
  for (size_t i = 0; i < j->n_users; i++) {
    size_t n = strlen(j->users[i]) + 1;
    memcpy(w, j->users[i], n);
    j->owned_users[i] = w;
    w += n;
  }
  j->users = j->owned_users;
  return true;
}

static void push_offline_now(chat_server *srv, const char *const *users,
                             size_t n, const uint8_t *local,
                             const chat__push_info *push) {
  for (size_t i = 0; i < n; i++)
    if (!local[i] && strcmp(users[i], push->sender) != 0)
      chat__push_queue(srv, users[i], push->conv, push->sender,
                       push->message_id);
}

void chat__deliver(chat_server *srv, chat__shared_frame *f,
                   const char *const *users, size_t n_users,
                   const char *except_user, const char *except_device,
                   const chat__push_info *push) {
  bool via_bus = srv->has_presence && srv->has_bus;
  uint8_t stack[64];
  uint8_t *local = stack;
  if (n_users > sizeof stack) {
    local = chat__calloc(&srv->a, n_users, 1);
    if (!local) {
      srv->st.bus_publish_errors_total++;
      return;
    }
  }
  for (size_t i = 0; i < n_users; i++) {
    const char *u = users[i];
    bool is_except = except_user && strcmp(u, except_user) == 0;
    void **slot = chat__map_get(&srv->users, u, strlen(u));
    const user_entry *ue = slot ? *slot : NULL;
    local[i] = ue && ue->n_sessions > 0;
    if (local[i])
      srv->st.deliveries_total += chat__deliver_local(
          srv, f, u, is_except ? except_device : NULL);
  }
  if (!via_bus) {
    if (push)
      push_offline_now(srv, users, n_users, local, push);
    if (local != stack)
      chat__free(&srv->a, local);
    return;
  }
  deliver_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  uint8_t *flags = chat__calloc(&srv->a, n_users ? n_users : 1, 1);
  if (!j || !flags || n_users > UINT32_MAX) {
    chat__free(&srv->a, j);
    chat__free(&srv->a, flags);
    if (local != stack)
      chat__free(&srv->a, local);
    srv->st.bus_publish_errors_total++;
    return;
  }
  chat__job_init(&j->base, deliver_release);
  chat__frame_ref(f);
  j->f = f;
  j->users = (const char **)users;
  j->n_users = n_users;
  j->flags = flags;
  for (size_t i = 0; i < n_users; i++)
    flags[i] = local[i] ? U_LOCAL : 0;
  if (local != stack)
    chat__free(&srv->a, local);
  if (except_user && except_device) {
    j->has_except = true;
    snprintf(j->except_user, sizeof j->except_user, "%s", except_user);
    snprintf(j->except_device, sizeof j->except_device, "%s",
             except_device);
  }
  if (push) {
    j->has_push = true;
    snprintf(j->push_conv, sizeof j->push_conv, "%s", push->conv);
    snprintf(j->push_sender, sizeof j->push_sender, "%s", push->sender);
    j->push_message_id = push->message_id;
  }
  /* Every locate is issued at once (a network registry answers them in
   * parallel); the guard keeps the job from finishing before the last one
   * is out. */
  j->waiting = 1;
  for (size_t i = 0; i < n_users; i++) {
    j->waiting++;
    chat_op *op = chat__op_new(srv, &j->base, on_located, (uint32_t)i);
    if (!op) {
      chat__op_nomem(srv, &j->base, on_located, (uint32_t)i);
      continue;
    }
    /* The op is the sink's context (it names the user). */
    chat_err rc = srv->presence.locate(srv->presence.self, j->users[i],
                                       on_location, op, op);
    if (!chat__op_call(srv, op, rc) && !own_users(srv, j))
      j->users_lost = true;
  }
  if (--j->waiting == 0)
    deliver_finish(srv, j);
  chat__job_unref(srv, &j->base);
}

/* ---- the bus, inbound ---- */

static bool is_id(const chat__json *v) {
  return v->kind == CHAT__JSON_STRING && chat_id_valid(v->str, v->len);
}

chat_err chat__bus_in(chat_server *srv, const char *msg, size_t len,
                      chat_time_ms now) {
  (void)now;
  chat__arena ar;
  chat__arena_init(&ar, &srv->a);
  chat__json *root;
  chat_err rc = chat__json_parse(&ar, msg, len, 8, &root, NULL);
  const chat__json *k = NULL, *to = NULL, *fr = NULL, *xu = NULL, *xd = NULL;
  if (rc == CHAT_OK) {
    k = chat__json_get(root, "k");
    to = chat__json_get(root, "to");
    fr = chat__json_get(root, "f");
    xu = chat__json_get(root, "xu");
    xd = chat__json_get(root, "xd");
  }
  /* {"k":"forget","c":conversation_id}: another gateway changed the
   * conversation's members (rest.c); drop the cached member list. */
  if (rc == CHAT_OK && k && k->kind == CHAT__JSON_STRING &&
      strcmp(k->str, "forget") == 0) {
    const chat__json *c = chat__json_get(root, "c");
    bool good = c && is_id(c);
    if (good)
      chat__conv_forget(srv, c->str);
    else
      chat__srv_log(srv, CHAT_LOG_WARN, "bus: dropped a malformed message");
    chat__arena_free(&ar);
    return good ? CHAT_OK : CHAT_ERR_INVAL;
  }
  bool ok = rc == CHAT_OK && k && k->kind == CHAT__JSON_STRING &&
            strcmp(k->str, "deliver") == 0 && to &&
            to->kind == CHAT__JSON_ARRAY && fr &&
            fr->kind == CHAT__JSON_OBJECT && (!xu || is_id(xu)) &&
            (!xd || is_id(xd));
  for (const chat__json *u = ok ? to->child : NULL; u; u = u->next)
    ok = ok && is_id(u);
  /* The frame goes to devices as it is, so it must be one that a client
   * accepts: decode it as a server-to-client frame first. The decoder is
   * free here: the bus is fed by the host between frames, never from
   * inside a session's frame handling. */
  if (ok) {
    const chat_frame *dummy;
    rc = chat_codec_decode(srv->codec, CHAT_DIR_TO_CLIENT, fr->raw,
                           fr->raw_len, &dummy, NULL);
    ok = rc == CHAT_OK;
  }
  if (!ok) {
    chat__arena_free(&ar);
    chat__srv_log(srv, CHAT_LOG_WARN, "bus: dropped a malformed message");
    return rc == CHAT_ERR_NOMEM ? CHAT_ERR_NOMEM : CHAT_ERR_INVAL;
  }
  chat__shared_frame *f = chat__frame_copy(srv, fr->raw, fr->raw_len);
  if (!f) {
    chat__arena_free(&ar);
    return CHAT_ERR_NOMEM;
  }
  for (const chat__json *u = to->child; u; u = u->next) {
    const char *except =
        xu && xd && strcmp(xu->str, u->str) == 0 ? xd->str : NULL;
    srv->st.deliveries_total += chat__deliver_local(srv, f, u->str, except);
  }
  chat__frame_unref(srv, f);
  chat__arena_free(&ar);
  return CHAT_OK;
}

/* ---- push ---- */

void chat__push_queue(chat_server *srv, const char *user, const char *conv,
                      const char *sender, uint64_t message_id) {
  if (!srv->has_push || !srv->store.push_targets)
    return;
  if (srv->n_pushes == srv->cap_pushes) {
    size_t cap = srv->cap_pushes ? srv->cap_pushes * 2 : 64;
    push_job *j = chat__realloc(&srv->a, srv->pushes, cap * sizeof *j);
    if (!j) {
      srv->st.push_errors_total++;
      return;
    }
    srv->pushes = j;
    srv->cap_pushes = cap;
  }
  push_job *j = &srv->pushes[srv->n_pushes++];
  snprintf(j->user, sizeof j->user, "%s", user);
  snprintf(j->conv, sizeof j->conv, "%s", conv);
  snprintf(j->sender, sizeof j->sender, "%s", sender);
  j->message_id = message_id;
  j->notified = false;
}

/* The registered devices of every queued user, then one notify each.
 * The lookups go out together; the notes follow as each answers. */
typedef struct push_run_job {
  chat__job base;
  push_job *jobs;
  size_t n;
} push_run_job;

static void push_run_release(chat_server *srv, chat__job *j) {
  push_run_job *pj = (push_run_job *)j;
  chat__free(&srv->a, pj->jobs);
  chat__free(&srv->a, pj);
}

static void on_target(void *ctx, const char *device, const char *platform,
                      const char *token) {
  chat_op *op = ctx;
  chat_server *srv = op->srv;
  const push_job *job = &((push_run_job *)op->job)->jobs[op->idx];
  /* The preview names the sender, never the body (PROTOCOL.md 4.11). */
  char preview[96];
  snprintf(preview, sizeof preview, "New message from %s", job->sender);
  chat_push_note n = {.user_id = job->user,
                      .device_id = device,
                      .platform = platform,
                      .push_token = token,
                      .conversation_id = job->conv,
                      .sender_id = job->sender,
                      .message_id = job->message_id,
                      .preview = {preview, strlen(preview)}};
  if (srv->push.notify(srv->push.self, &n) == CHAT_OK) {
    srv->st.push_total++;
    ((push_run_job *)op->job)->jobs[op->idx].notified = true;
  } else {
    srv->st.push_errors_total++;
  }
}

static void on_recorded(chat_server *srv, chat__job *job, uint32_t idx,
                        chat_err rc) {
  (void)job;
  (void)idx;
  if (rc != CHAT_OK)
    srv->st.store_errors_total++;
}

/* Receipt-aware push needs both halves: remembering who was pushed, and
 * clearing when they read. */
static bool push_clears(const chat_server *srv) {
  return srv->has_push && srv->push.clear && srv->store.push_record &&
         srv->store.push_read && srv->store.push_targets;
}

static void on_targets(chat_server *srv, chat__job *job, uint32_t idx,
                       chat_err rc) {
  if (rc != CHAT_OK)
    srv->st.push_errors_total++;
  push_job *pj = &((push_run_job *)job)->jobs[idx];
  if (rc != CHAT_OK || !pj->notified || !push_clears(srv))
    return;
  /* The member's read mark will clear this notification later. */
  chat_op *op;
  CHAT__CALL(srv, job, on_recorded, idx, op,
             srv->store.push_record(srv->store.self, pj->conv, pj->user,
                                    pj->message_id, op));
}

void chat__push_run(chat_server *srv) {
  if (srv->n_pushes == 0)
    return;
  push_run_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (!j) {
    srv->st.push_errors_total += srv->n_pushes;
    srv->n_pushes = 0;
    return;
  }
  chat__job_init(&j->base, push_run_release);
  j->jobs = srv->pushes;
  j->n = srv->n_pushes;
  srv->pushes = NULL;
  srv->n_pushes = srv->cap_pushes = 0;
  for (size_t i = 0; i < j->n && i < UINT32_MAX; i++) {
    chat_op *op = chat__op_new(srv, &j->base, on_targets, (uint32_t)i);
    if (!op) {
      srv->st.push_errors_total++;
      continue;
    }
    chat__op_call(srv, op,
                  srv->store.push_targets(srv->store.self, j->jobs[i].user,
                                          on_target, op, op));
  }
  chat__job_unref(srv, &j->base);
}

/* ---- receipt-aware push: clears ---- */

typedef struct clear_job {
  chat__job base;
  char user[CHAT_ID_BUF];
  char conv[CHAT_ID_BUF];
  uint64_t up_to;
} clear_job;

static void clear_release(chat_server *srv, chat__job *j) {
  chat__free(&srv->a, j);
}

static void on_clear_target(void *ctx, const char *device,
                            const char *platform, const char *token) {
  chat_op *op = ctx;
  chat_server *srv = op->srv;
  const clear_job *j = (const clear_job *)op->job;
  chat_push_clear c = {.user_id = j->user,
                       .device_id = device,
                       .platform = platform,
                       .push_token = token,
                       .conversation_id = j->conv,
                       .up_to = j->up_to};
  if (srv->push.clear(srv->push.self, &c) == CHAT_OK)
    srv->st.push_clears_total++;
  else
    srv->st.push_errors_total++;
}

static void on_clear_targets(chat_server *srv, chat__job *job, uint32_t idx,
                             chat_err rc) {
  (void)job;
  (void)idx;
  if (rc != CHAT_OK)
    srv->st.push_errors_total++;
}

void chat__push_clear(chat_server *srv, const char *user, const char *conv,
                      uint64_t up_to) {
  if (!push_clears(srv) || strlen(user) >= CHAT_ID_BUF ||
      strlen(conv) >= CHAT_ID_BUF)
    return;
  clear_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (!j) {
    srv->st.push_errors_total++;
    return;
  }
  chat__job_init(&j->base, clear_release);
  memcpy(j->user, user, strlen(user) + 1);
  memcpy(j->conv, conv, strlen(conv) + 1);
  j->up_to = up_to;
  chat_op *op = chat__op_new(srv, &j->base, on_clear_targets, 0);
  if (!op)
    srv->st.push_errors_total++;
  else
    chat__op_call(srv, op,
                  srv->store.push_targets(srv->store.self, j->user,
                                          on_clear_target, op, op));
  chat__job_unref(srv, &j->base);
}

void chat__push_free(chat_server *srv) {
  chat__free(&srv->a, srv->pushes);
  srv->pushes = NULL;
  srv->n_pushes = srv->cap_pushes = 0;
}

/* ---- membership changes, to other gateways ---- */

/* Every gateway keeps its own membership cache (convs.c). After a member
 * change, each gateway holding a device of a member, or of the user added
 * or removed, is told to forget the conversation: {"k":"forget","c":id}.
 * The bus is fire-and-forget, like every other bus message. */
typedef struct forget_job {
  chat__job base;
  char conv[CHAT_ID_BUF];
  char (*users)[CHAT_ID_BUF];
  size_t n_users;
  char (*gw)[CHAT_ID_BUF];
  size_t n, cap;
  bool oom;
  size_t waiting;
} forget_job;

static void forget_release(chat_server *srv, chat__job *j) {
  forget_job *fj = (forget_job *)j;
  chat__free(&srv->a, fj->users);
  chat__free(&srv->a, fj->gw);
  chat__free(&srv->a, fj);
}

static void on_gateway(void *ctx, const char *gw, const char *device) {
  (void)device;
  chat_op *op = ctx;
  chat_server *srv = op->srv;
  forget_job *j = (forget_job *)op->job;
  if (strcmp(gw, srv->gateway_id) == 0 || strlen(gw) >= CHAT_ID_BUF)
    return;
  for (size_t i = 0; i < j->n; i++)
    if (strcmp(j->gw[i], gw) == 0)
      return;
  if (j->n == j->cap) {
    size_t cap = j->cap ? j->cap * 2 : 8;
    char(*v)[CHAT_ID_BUF] = chat__realloc(&srv->a, j->gw, cap * sizeof *v);
    if (!v) {
      j->oom = true;
      return;
    }
    j->gw = v;
    j->cap = cap;
  }
  memcpy(j->gw[j->n++], gw, strlen(gw) + 1);
}

static void forget_publish(chat_server *srv, forget_job *j) {
  if (j->oom)
    srv->st.bus_publish_errors_total++;
  chat__buf_reset(&srv->tmp);
  chat__jw w;
  chat__jw_init(&w, &srv->tmp);
  chat__jw_obj_begin(&w);
  chat__jw_key(&w, "k");
  chat__jw_str(&w, "forget", 6);
  chat__jw_key(&w, "c");
  chat__jw_str(&w, j->conv, strlen(j->conv));
  chat__jw_obj_end(&w);
  for (size_t i = 0; i < j->n; i++) {
    if (!srv->tmp.oom && srv->bus.publish(srv->bus.self, j->gw[i],
                                          srv->tmp.data,
                                          srv->tmp.len) == CHAT_OK)
      srv->st.bus_published_total++;
    else
      srv->st.bus_publish_errors_total++;
  }
}

static void on_forget_located(chat_server *srv, chat__job *job, uint32_t idx,
                              chat_err rc) {
  (void)idx;
  forget_job *j = (forget_job *)job;
  if (rc != CHAT_OK)
    srv->st.bus_publish_errors_total++;
  if (--j->waiting == 0)
    forget_publish(srv, j);
}

void chat__bus_forget(chat_server *srv, const char *conv,
                      const char *const *users, size_t n, const char *user) {
  if (!srv->has_presence || !srv->has_bus)
    return;
  forget_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (j)
    j->users = chat__calloc(&srv->a, n + 1, sizeof *j->users);
  if (!j || !j->users || strlen(conv) >= CHAT_ID_BUF) {
    if (j)
      chat__free(&srv->a, j->users);
    chat__free(&srv->a, j);
    srv->st.bus_publish_errors_total++;
    return;
  }
  chat__job_init(&j->base, forget_release);
  snprintf(j->conv, sizeof j->conv, "%s", conv);
  for (size_t i = 0; i < n; i++)
    snprintf(j->users[i], sizeof j->users[i], "%s", users[i]);
  snprintf(j->users[n], sizeof j->users[n], "%s", user);
  j->n_users = n + 1;
  j->waiting = 1;
  for (size_t i = 0; i < j->n_users; i++) {
    j->waiting++;
    chat_op *op = chat__op_new(srv, &j->base, on_forget_located, 0);
    if (!op) {
      chat__op_nomem(srv, &j->base, on_forget_located, 0);
      continue;
    }
    chat__op_call(srv, op,
                  srv->presence.locate(srv->presence.self, j->users[i],
                                       on_gateway, op, op));
  }
  if (--j->waiting == 0)
    forget_publish(srv, j);
  chat__job_unref(srv, &j->base);
}

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
  const char *gw;   /* in the fan-out arena */
  const char *user; /* borrowed from the caller's list */
} remote;

typedef struct locate_ctx {
  chat_server *srv;
  const char *user;
  remote *out;
  size_t n, cap;
  bool any;
  bool oom;
} locate_ctx;

static void on_location(void *ctx, const char *gw, const char *device) {
  (void)device;
  locate_ctx *lc = ctx;
  lc->any = true;
  if (strcmp(gw, lc->srv->gateway_id) == 0)
    return; /* our own sessions are delivered locally */
  if (lc->n == lc->cap) {
    size_t cap = lc->cap ? lc->cap * 2 : 16;
    remote *r = chat__realloc(&lc->srv->a, lc->out, cap * sizeof *r);
    if (!r) {
      lc->oom = true;
      return;
    }
    lc->out = r;
    lc->cap = cap;
  }
  char *g = chat__strndup(&lc->srv->a, gw, strlen(gw));
  if (!g) {
    lc->oom = true;
    return;
  }
  lc->out[lc->n].gw = g;
  lc->out[lc->n].user = lc->user;
  lc->n++;
}

static int cmp_remote(const void *a, const void *b) {
  const remote *x = a, *y = b;
  int c = strcmp(x->gw, y->gw);
  return c ? c : strcmp(x->user, y->user);
}

/* Envelope: {"k":"deliver","to":[users],"xu":user,"xd":device,"f":frame}.
 * The other kind, {"k":"forget","c":conversation_id}, comes from rest.c. */
static void publish_group(chat_server *srv, const remote *r, size_t n,
                          chat__shared_frame *f, const char *xu,
                          const char *xd) {
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
  if (xu && xd) {
    chat__jw_key(&w, "xu");
    chat__jw_str(&w, xu, strlen(xu));
    chat__jw_key(&w, "xd");
    chat__jw_str(&w, xd, strlen(xd));
  }
  chat__jw_key(&w, "f");
  chat__jw_raw(&w, f->data, f->len);
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

void chat__deliver(chat_server *srv, chat__shared_frame *f,
                   const char *const *users, size_t n_users,
                   const char *except_user, const char *except_device,
                   chat__offline_fn offline, void *ctx) {
  locate_ctx lc = {.srv = srv};
  for (size_t i = 0; i < n_users; i++) {
    const char *u = users[i];
    bool is_except = except_user && strcmp(u, except_user) == 0;
    void **slot = chat__map_get(&srv->users, u, strlen(u));
    const user_entry *ue = slot ? *slot : NULL;
    bool local = ue && ue->n_sessions > 0;
    if (local)
      srv->st.deliveries_total += chat__deliver_local(
          srv, f, u, is_except ? except_device : NULL);
    lc.user = u;
    lc.any = false;
    if (srv->has_presence && srv->has_bus &&
        srv->presence.locate(srv->presence.self, u, on_location, &lc) !=
            CHAT_OK)
      srv->st.bus_publish_errors_total++;
    if (!local && !lc.any && offline)
      offline(srv, u, ctx);
  }
  if (lc.n > 0 && !lc.oom) {
    qsort(lc.out, lc.n, sizeof *lc.out, cmp_remote);
    size_t start = 0;
    for (size_t i = 1; i <= lc.n; i++)
      if (i == lc.n || strcmp(lc.out[i].gw, lc.out[start].gw) != 0) {
        publish_group(srv, lc.out + start, i - start, f, except_user,
                      except_device);
        start = i;
      }
  } else if (lc.oom) {
    srv->st.bus_publish_errors_total++;
  }
  for (size_t i = 0; i < lc.n; i++)
    chat__free(&srv->a, (void *)lc.out[i].gw);
  chat__free(&srv->a, lc.out);
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
}

typedef struct target_ctx {
  chat_server *srv;
  const push_job *job;
  const char *preview;
} target_ctx;

static void on_target(void *ctx, const char *device, const char *platform,
                      const char *token) {
  target_ctx *tc = ctx;
  chat_server *srv = tc->srv;
  chat_push_note n = {.user_id = tc->job->user,
                      .device_id = device,
                      .platform = platform,
                      .push_token = token,
                      .conversation_id = tc->job->conv,
                      .sender_id = tc->job->sender,
                      .message_id = tc->job->message_id,
                      .preview = {tc->preview, strlen(tc->preview)}};
  if (srv->push.notify(srv->push.self, &n) == CHAT_OK)
    srv->st.push_total++;
  else
    srv->st.push_errors_total++;
}

void chat__push_run(chat_server *srv) {
  for (size_t i = 0; i < srv->n_pushes; i++) {
    const push_job *j = &srv->pushes[i];
    /* The preview names the sender, never the body (PROTOCOL.md 4.11). */
    char preview[96];
    snprintf(preview, sizeof preview, "New message from %s", j->sender);
    target_ctx tc = {srv, j, preview};
    if (srv->store.push_targets(srv->store.self, j->user, on_target, &tc) !=
        CHAT_OK)
      srv->st.push_errors_total++;
  }
  srv->n_pushes = 0;
}

void chat__push_free(chat_server *srv) {
  chat__free(&srv->a, srv->pushes);
  srv->pushes = NULL;
  srv->n_pushes = srv->cap_pushes = 0;
}

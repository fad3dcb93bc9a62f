/* The send path of the seed's "Alice sends to Bob": validate, check
 * membership, rate limit, queue; then, at the next timer, mint ids and
 * commit every waiting send in ONE store transaction (group commit), ack
 * each after the commit (PROTOCOL.md 4.1), and fan out (4.4). */
#include <string.h>

#include "server_internal.h"

static void pending_free(chat_server *srv, pending_send *p) {
  chat__free(&srv->a, p->strings);
  chat__free(&srv->a, p->refs);
}

/* Copy a decoded send (which dies with the next decode) into one block. */
static chat_err pending_fill(chat_server *srv, pending_send *p,
                             const chat_session *s, const chat_send *m) {
  size_t need = strlen(m->client_msg_id) + 1 + strlen(m->conversation_id) +
                1 + strlen(s->id.user_id) + 1 + m->body.len + 1;
  for (size_t i = 0; i < m->n_media_refs; i++)
    need += strlen(m->media_refs[i]) + 1;
  memset(p, 0, sizeof *p);
  p->strings = chat__alloc(&srv->a, need);
  if (m->n_media_refs)
    p->refs = chat__calloc(&srv->a, m->n_media_refs, sizeof *p->refs);
  if (!p->strings || (m->n_media_refs && !p->refs)) {
    pending_free(srv, p);
    return CHAT_ERR_NOMEM;
  }
  char *w = p->strings;
#define PUT(dst, src, n)                                                       \
  do {                                                                         \
    memcpy(w, src, n);                                                         \
    w[n] = 0;                                                                  \
    dst = w;                                                                   \
    w += (n) + 1;                                                              \
  } while (0)
  PUT(p->msg.client_msg_id, m->client_msg_id, strlen(m->client_msg_id));
  PUT(p->msg.conversation_id, m->conversation_id, strlen(m->conversation_id));
  PUT(p->msg.sender_id, s->id.user_id, strlen(s->id.user_id));
  PUT(p->msg.body.ptr, m->body.ptr, m->body.len);
  for (size_t i = 0; i < m->n_media_refs; i++)
    PUT(p->refs[i], m->media_refs[i], strlen(m->media_refs[i]));
#undef PUT
  p->msg.body.len = m->body.len;
  p->msg.has_reply_to = m->has_reply_to;
  p->msg.reply_to = m->reply_to;
  p->msg.media_refs = p->refs;
  p->msg.n_media_refs = m->n_media_refs;
  p->msg.body_type = m->body_type;
  return CHAT_OK;
}

void chat__on_send(chat_session *s, const chat_send *m, chat_time_ms now) {
  chat_server *srv = s->srv;
  const char *ref = m->client_msg_id;
  if (!chat__conv_for_member(s, m->conversation_id, ref))
    return;
  /* Referencing a blob shares it with the conversation (media_get's rule),
   * so the sender must be able to read it already. Unknown and unreadable
   * get one answer, as over REST. */
  for (size_t i = 0; i < m->n_media_refs && srv->store.media_get; i++) {
    chat_err rc = srv->store.media_get(srv->store.self, m->media_refs[i],
                                       s->id.user_id, NULL, NULL);
    if (rc == CHAT_ERR_NOT_FOUND || rc == CHAT_ERR_DENIED) {
      chat__sess_error(s, CHAT_WIRE_BAD_ID, "unknown media_refs entry", ref,
                       0);
      return;
    }
    if (rc != CHAT_OK) {
      srv->st.store_errors_total++;
      chat__sess_error(s, CHAT_WIRE_INTERNAL, "storage unavailable", ref, 0);
      return;
    }
  }
  uint64_t retry = 0;
  if (!chat__rate_take(srv, s->id.user_id, m->conversation_id, now, &retry)) {
    chat__sess_error(s, CHAT_WIRE_RATE_LIMITED,
                     "too many messages to this conversation", ref, retry);
    return;
  }
  if (srv->n_sends == srv->cap_sends) {
    size_t cap = srv->cap_sends ? srv->cap_sends * 2 : 64;
    pending_send *n = chat__realloc(&srv->a, srv->sends, cap * sizeof *n);
    if (!n)
      goto oom;
    srv->sends = n;
    srv->cap_sends = cap;
  }
  pending_send *p = &srv->sends[srv->n_sends];
  if (pending_fill(srv, p, s, m) != CHAT_OK)
    goto oom;
  p->sess = s;
  memcpy(p->device, s->id.device_id, sizeof p->device);
  srv->n_sends++;
  return;
oom:
  chat__rate_refund(srv, s->id.user_id, m->conversation_id);
  chat__sess_error(s, CHAT_WIRE_INTERNAL, "out of memory", ref, 0);
}

void chat__sends_forget_session(chat_server *srv, chat_session *s) {
  /* The send is still committed; only its ack has nowhere to go (the
   * client retries with the same client_msg_id and gets a duplicate ack). */
  for (size_t i = 0; i < srv->n_sends; i++)
    if (srv->sends[i].sess == s)
      srv->sends[i].sess = NULL;
}

void chat__sends_free(chat_server *srv) {
  for (size_t i = 0; i < srv->n_sends; i++)
    pending_free(srv, &srv->sends[i]);
  chat__free(&srv->a, srv->sends);
  srv->sends = NULL;
  srv->n_sends = srv->cap_sends = 0;
  for (size_t i = 0; i < srv->n_fanouts; i++)
    pending_free(srv, &srv->fanouts[i].send);
  chat__free(&srv->a, srv->fanouts);
  srv->fanouts = NULL;
  srv->n_fanouts = srv->cap_fanouts = 0;
}

/* Members other than the sender with no device anywhere get a push. */
typedef struct push_ctx {
  const char *conv;
  const char *sender;
  uint64_t message_id;
} push_ctx;

static void on_offline(chat_server *srv, const char *user, void *ctx) {
  push_ctx *pc = ctx;
  if (strcmp(user, pc->sender) != 0)
    chat__push_queue(srv, user, pc->conv, pc->sender, pc->message_id);
}

static void fan_out(chat_server *srv, const pending_send *p,
                    const chat_append_result *r) {
  chat_err err = CHAT_OK;
  const conv_entry *c = chat__conv_get(srv, p->msg.conversation_id, &err);
  if (!c)
    return; /* the message is stored; members catch up by resume */
  chat_message m = {.message_id = r->message_id,
                    .conversation_id = p->msg.conversation_id,
                    .sender_id = p->msg.sender_id,
                    .body = p->msg.body,
                    .server_ts = r->server_ts,
                    .client_msg_id = p->msg.client_msg_id,
                    .has_reply_to = p->msg.has_reply_to,
                    .reply_to = p->msg.reply_to,
                    .media_refs = p->msg.media_refs,
                    .n_media_refs = p->msg.n_media_refs,
                    .body_type = p->msg.body_type};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_MESSAGE,
                  .message = &m};
  chat__shared_frame *sf = chat__frame_make(srv, &f);
  if (!sf)
    return;
  /* Every member's devices, the sender's other devices included; only the
   * sending device is skipped (it has the ack). */
  const char *device = p->device;
  push_ctx pc = {p->msg.conversation_id, p->msg.sender_id, r->message_id};
  chat__deliver(srv, sf, (const char *const *)c->members, c->n_members,
                p->msg.sender_id, device, on_offline, &pc);
  chat__frame_unref(srv, sf);
}

chat_err chat__flush_sends(chat_server *srv, chat_time_ms now) {
  (void)now;
  size_t n = srv->n_sends < srv->s.max_batch ? srv->n_sends
                                             : srv->s.max_batch;
  if (n == 0)
    return CHAT_OK;
  chat__arena_reset(&srv->scratch);
  chat_msg_in *msgs = chat__arena_alloc(&srv->scratch, n * sizeof *msgs);
  chat_append_result *res =
      chat__arena_alloc(&srv->scratch, n * sizeof *res);
  if (!msgs || !res)
    return CHAT_ERR_NOMEM;
  /* Ids are minted in queue order, so within a conversation they increase
   * in commit order, and one sender's messages keep their send order. */
  int64_t wall = chat__srv_wall(srv);
  for (size_t i = 0; i < n; i++) {
    msgs[i] = srv->sends[i].msg;
    if (chat_snowflake_next(srv->ids, wall, &msgs[i].message_id) != CHAT_OK)
      return CHAT_ERR_FATAL;
    msgs[i].server_ts = wall;
    memset(&res[i], 0, sizeof res[i]);
  }
  chat_err rc = srv->store.append(srv->store.self, msgs, n, res);
  srv->st.commits_total++;
  for (size_t i = 0; i < n; i++) {
    pending_send *p = &srv->sends[i];
    if (rc != CHAT_OK) {
      /* Nothing of the batch is stored: refund and tell each sender, who
       * retries with the same client_msg_id. */
      srv->st.store_errors_total++;
      chat__rate_refund(srv, p->msg.sender_id, p->msg.conversation_id);
      if (p->sess)
        chat__sess_error(p->sess, CHAT_WIRE_INTERNAL, "storage failed",
                         p->msg.client_msg_id, 0);
      continue;
    }
    if (res[i].duplicate) {
      srv->st.sends_duplicate_total++;
      chat__rate_refund(srv, p->msg.sender_id, p->msg.conversation_id);
    } else {
      srv->st.sends_committed_total++;
    }
    if (p->sess) {
      chat_ack a = {.client_msg_id = p->msg.client_msg_id,
                    .message_id = res[i].message_id,
                    .server_ts = res[i].server_ts,
                    .duplicate = res[i].duplicate};
      chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_ACK,
                      .ack = &a};
      chat__sess_send(p->sess, &f);
    }
  }
  /* Fan-out waits for the next timer round, so that the host writes these
   * acks before any delivery work: send latency does not depend on who
   * receives (PROTOCOL.md 4.4). Without room to queue it, deliver now. */
  for (size_t i = 0; i < n; i++) {
    pending_send *p = &srv->sends[i];
    if (rc != CHAT_OK || res[i].duplicate) {
      pending_free(srv, p);
      continue;
    }
    if (srv->n_fanouts == srv->cap_fanouts) {
      size_t cap = srv->cap_fanouts ? srv->cap_fanouts * 2 : 64;
      pending_fanout *q =
          chat__realloc(&srv->a, srv->fanouts, cap * sizeof *q);
      if (!q) {
        fan_out(srv, p, &res[i]);
        pending_free(srv, p);
        continue;
      }
      srv->fanouts = q;
      srv->cap_fanouts = cap;
    }
    srv->fanouts[srv->n_fanouts].send = *p;
    srv->fanouts[srv->n_fanouts].res = res[i];
    srv->n_fanouts++;
  }
  memmove(srv->sends, srv->sends + n, (srv->n_sends - n) * sizeof *srv->sends);
  srv->n_sends -= n;
  return CHAT_OK;
}

void chat__run_fanouts(chat_server *srv) {
  /* Taken out first: fan-out may not add to this list, but keep it simple
   * to reason about. */
  pending_fanout *list = srv->fanouts;
  size_t n = srv->n_fanouts;
  srv->fanouts = NULL;
  srv->n_fanouts = srv->cap_fanouts = 0;
  for (size_t i = 0; i < n; i++) {
    fan_out(srv, &list[i].send, &list[i].res);
    pending_free(srv, &list[i].send);
  }
  chat__free(&srv->a, list);
}

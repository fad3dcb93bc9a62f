/* The send path of the seed's "Alice sends to Bob": validate, check
 * membership and media, rate limit, queue; then, at the next timer, mint
 * ids and commit every waiting send in ONE store transaction (group
 * commit), ack each after the commit (PROTOCOL.md 4.1), and fan out (4.4).
 *
 * `edit` and `delete` (section 8) take the same path: they are entries of
 * the log with their own ids, acked once durable, idempotent by
 * client_msg_id. The store checks them against their target inside the
 * commit, after its dedup lookup (so a retry is always a duplicate), and
 * refuses one entry without failing the batch; the refusal is answered
 * where the ack would have been.
 *
 * At most one commit is in flight. Sends that arrive while it is pending
 * form the next batch, which starts when it completes (pipelined group
 * commit): ids are minted at the start of each batch, so within a
 * conversation they still grow in commit order. */
#include <string.h>

#include "server_internal.h"

void chat__pending_free(chat_server *srv, pending_send *p) {
  chat__free(&srv->a, p->strings);
  chat__free(&srv->a, p->refs);
  p->strings = NULL;
  p->refs = NULL;
  if (p->sess)
    chat__sess_unref(srv, p->sess);
  p->sess = NULL;
}

/* Copy a decoded send, edit or delete (which dies with the next decode)
 * into one block. */
static chat_err pending_fill(chat_server *srv, pending_send *p,
                             const chat_session *s, const chat_send *m) {
  size_t need = strlen(m->client_msg_id) + 1 + strlen(m->conversation_id) +
                1 + strlen(s->id.user_id) + 1 + m->body.len + 1;
  for (size_t i = 0; i < m->n_media_refs; i++)
    need += strlen(m->media_refs[i]) + 1;
  /* media_refs are checked for every send: the block is also what an edit
   * or delete uses, with none. */
  memset(p, 0, sizeof *p);
  p->strings = chat__alloc(&srv->a, need);
  if (m->n_media_refs)
    p->refs = chat__calloc(&srv->a, m->n_media_refs, sizeof *p->refs);
  if (!p->strings || (m->n_media_refs && !p->refs)) {
    chat__pending_free(srv, p);
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
  p->msg.sender_kind = s->id.kind;
  return CHAT_OK;
}

/* ---- one send frame: membership, media, rate limit, queue ---- */

typedef struct send_job {
  chat__job base;
  chat_session *s; /* referenced through p.sess */
  pending_send p;
  size_t media_i;  /* next media_refs entry to check */
  bool in_call;    /* a media check is being issued right now */
  bool finished;
} send_job;

static bool is_entry(const chat_msg_in *m) {
  return m->body_type == CHAT_BODY_EDIT || m->body_type == CHAT_BODY_DELETE;
}

static void send_release(chat_server *srv, chat__job *j) {
  send_job *sj = (send_job *)j;
  chat__pending_free(srv, &sj->p);
  chat__free(&srv->a, sj);
}

static void send_finish(send_job *j) {
  if (j->finished)
    return;
  j->finished = true;
  chat__sess_frame_done(j->s);
}

static void send_fail(send_job *j, chat_wire_error code, const char *msg) {
  chat__sess_error(j->s, code, msg, j->p.msg.client_msg_id, 0);
  send_finish(j);
}

static void send_enqueue(chat_server *srv, send_job *j) {
  chat_session *s = j->s;
  const char *conv = j->p.msg.conversation_id;
  uint64_t retry = 0;
  if (!chat__rate_take(srv, s->id.user_id, conv, chat__sess_rate(s),
                       srv->clock_ms, &retry)) {
    chat__sess_error(s, CHAT_WIRE_RATE_LIMITED,
                     "too many messages to this conversation",
                     j->p.msg.client_msg_id, retry);
    send_finish(j);
    return;
  }
  if (srv->n_sends == srv->cap_sends) {
    size_t cap = srv->cap_sends ? srv->cap_sends * 2 : 64;
    pending_send *n = chat__realloc(&srv->a, srv->sends, cap * sizeof *n);
    if (!n) {
      chat__rate_refund(srv, s->id.user_id, conv);
      send_fail(j, CHAT_WIRE_INTERNAL, "out of memory");
      return;
    }
    srv->sends = n;
    srv->cap_sends = cap;
  }
  /* The pending send (and its session reference) moves to the queue. */
  srv->sends[srv->n_sends++] = j->p;
  memset(&j->p, 0, sizeof j->p);
  send_finish(j);
}

static void send_media_next(chat_server *srv, send_job *j);

/* Referencing a blob shares it with the conversation (media_get's rule),
 * so the sender must be able to read it already. Unknown and unreadable
 * get one answer, as over REST. */
static void on_media_checked(chat_server *srv, chat__job *job, uint32_t idx,
                             chat_err rc) {
  (void)idx;
  send_job *j = (send_job *)job;
  j->media_i++;
  if (rc == CHAT_ERR_NOT_FOUND || rc == CHAT_ERR_DENIED) {
    send_fail(j, CHAT_WIRE_BAD_ID, "unknown media_refs entry");
    return;
  }
  if (rc != CHAT_OK) {
    srv->st.store_errors_total++;
    send_fail(j, CHAT_WIRE_INTERNAL, "storage unavailable");
    return;
  }
  if (!j->in_call)
    send_media_next(srv, j);
}

static void send_media_next(chat_server *srv, send_job *j) {
  while (!j->finished && srv->store.media_get &&
         j->media_i < j->p.msg.n_media_refs) {
    chat_op *op;
    j->in_call = true;
    bool now = CHAT__CALL(
        srv, &j->base, on_media_checked, 0, op,
        srv->store.media_get(srv->store.self, j->p.refs[j->media_i],
                             j->s->id.user_id, NULL, NULL, op));
    j->in_call = false;
    if (!now)
      return; /* on_media_checked goes on */
  }
  if (!j->finished)
    send_enqueue(srv, j);
}

static void on_send_conv(chat_server *srv, chat__job *job,
                         const conv_entry *c, chat_err err) {
  send_job *j = (send_job *)job;
  if (!chat__conv_check_member(j->s, c, err, j->p.msg.client_msg_id)) {
    send_finish(j);
    return;
  }
  chat_msg_in *m = &j->p.msg;
  if (m->body_type == CHAT_BODY_EDIT) {
    /* Only the sender, within the window from the target's server_ts;
     * the store checks both against the target. */
    int64_t wall = chat__srv_wall(srv);
    uint64_t w = srv->s.edit_window_ms;
    m->target_sender = m->sender_id;
    m->target_min_ts = wall > 0 && (uint64_t)wall > w ? wall - (int64_t)w : 1;
  } else if (m->body_type == CHAT_BODY_DELETE) {
    /* The sender; in a group, an admin may delete any message. */
    bool admin = c->type == CHAT_CONVERSATION_GROUP &&
                 chat__conv_is_admin(c, m->sender_id);
    m->target_sender = admin ? NULL : m->sender_id;
    m->target_min_ts = 0;
  }
  send_media_next(srv, j);
}

static void start_send(chat_session *s, const chat_send *m,
                       bool has_target, uint64_t target_id) {
  chat_server *srv = s->srv;
  send_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (!j || pending_fill(srv, &j->p, s, m) != CHAT_OK) {
    chat__free(&srv->a, j);
    chat__sess_error(s, CHAT_WIRE_INTERNAL, "out of memory",
                     m->client_msg_id, 0);
    chat__sess_frame_done(s);
    return;
  }
  j->p.msg.has_target_id = has_target;
  j->p.msg.target_id = target_id;
  chat__job_init(&j->base, send_release);
  j->s = s;
  chat__sess_ref(s);
  j->p.sess = s;
  memcpy(j->p.device, s->id.device_id, sizeof j->p.device);
  chat__conv_load(srv, j->p.msg.conversation_id, &j->base, on_send_conv);
  chat__job_unref(srv, &j->base);
}

void chat__on_send(chat_session *s, const chat_send *m, chat_time_ms now) {
  (void)now;
  start_send(s, m, false, 0);
}

void chat__on_edit(chat_session *s, const chat_edit *m, chat_time_ms now) {
  (void)now;
  chat_send as = {.client_msg_id = m->client_msg_id,
                  .conversation_id = m->conversation_id,
                  .body = m->body,
                  .body_type = CHAT_BODY_EDIT};
  start_send(s, &as, true, m->target_id);
}

void chat__on_delete(chat_session *s, const chat_delete *m,
                     chat_time_ms now) {
  (void)now;
  chat_send as = {.client_msg_id = m->client_msg_id,
                  .conversation_id = m->conversation_id,
                  .body = {"", 0},
                  .body_type = CHAT_BODY_DELETE};
  start_send(s, &as, true, m->target_id);
}

/* ---- group commit ---- */

typedef struct commit_job {
  chat__job base;
  pending_send *sends;
  size_t n;
  chat_msg_in *msgs;
  chat_append_result *res;
} commit_job;

static void commit_release(chat_server *srv, chat__job *j) {
  commit_job *cj = (commit_job *)j;
  for (size_t i = 0; i < cj->n; i++)
    chat__pending_free(srv, &cj->sends[i]);
  chat__free(&srv->a, cj->sends);
  chat__free(&srv->a, cj->msgs);
  chat__free(&srv->a, cj->res);
  chat__free(&srv->a, cj);
}

/* Members other than the sender with no device anywhere get a push. */
typedef struct fanout_job {
  chat__job base;
  pending_send p;
  chat_append_result r;
} fanout_job;

static void fanout_release(chat_server *srv, chat__job *j) {
  fanout_job *fj = (fanout_job *)j;
  chat__pending_free(srv, &fj->p);
  chat__free(&srv->a, fj);
}

void chat__deliver_message(chat_server *srv, const chat_message *m,
                           const char *const *members, size_t n_members,
                           const char *except_device, bool push,
                           bool withheld) {
  chat_frame f = {.version = CHAT_FRAME_V2, .type = CHAT_FRAME_MESSAGE,
                  .message = m};
  chat__shared_frame *sf = chat__frame_make(srv, &f);
  if (!sf)
    return; /* stored; members catch up by resume */
  const char *sender = m->sender_id;
  if (withheld) {
    /* Shadow ban: stored and acked as usual, but only the sender's own
     * devices see it, and nobody is pushed (PROTOCOL.md section 8). */
    srv->st.shadow_withheld_total++;
    chat__deliver(srv, sf, &sender, 1, sender, except_device, NULL);
  } else {
    /* Every member's devices, the sender's other devices included; only
     * the sending device is skipped (it has the ack). */
    chat__push_info pi = {m->conversation_id, sender, m->message_id};
    chat__deliver(srv, sf, members, n_members, sender, except_device,
                  push ? &pi : NULL);
  }
  chat__frame_unref(srv, sf);
}

static void on_fanout_conv(chat_server *srv, chat__job *job,
                           const conv_entry *c, chat_err err) {
  (void)err;
  fanout_job *j = (fanout_job *)job;
  if (!c)
    return; /* the message is stored; members catch up by resume */
  const pending_send *p = &j->p;
  chat_message m = {.message_id = j->r.message_id,
                    .conversation_id = p->msg.conversation_id,
                    .sender_id = p->msg.sender_id,
                    .body = p->msg.body,
                    .server_ts = j->r.server_ts,
                    .client_msg_id = p->msg.client_msg_id,
                    .has_reply_to = p->msg.has_reply_to,
                    .reply_to = p->msg.reply_to,
                    .media_refs = p->msg.media_refs,
                    .n_media_refs = p->msg.n_media_refs,
                    .body_type = p->msg.body_type,
                    .has_target_id = p->msg.has_target_id,
                    .target_id = p->msg.target_id,
                    .sender_kind = p->msg.sender_kind};
  if (p->msg.body_type == CHAT_BODY_DELETE)
    m.body = (chat_str){"", 0};
  /* Edits and deletes change what a notification would show; they are
   * not pushed. */
  chat__deliver_message(srv, &m, (const char *const *)c->members,
                        c->n_members, p->device, !is_entry(&p->msg),
                        j->r.withheld);
}

static void fan_out(chat_server *srv, pending_send *p,
                    const chat_append_result *r) {
  fanout_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (!j) {
    chat__pending_free(srv, p);
    return; /* stored; members catch up by resume */
  }
  chat__job_init(&j->base, fanout_release);
  j->p = *p;
  j->r = *r;
  memset(p, 0, sizeof *p);
  chat__conv_load(srv, j->p.msg.conversation_id, &j->base, on_fanout_conv);
  chat__job_unref(srv, &j->base);
}

static void on_committed(chat_server *srv, chat__job *job, uint32_t idx,
                         chat_err rc) {
  (void)idx;
  commit_job *j = (commit_job *)job;
  srv->commit_busy = false;
  srv->st.commits_total++;
  if (rc != CHAT_OK)
    srv->st.store_errors_total++;
  for (size_t i = 0; i < j->n; i++) {
    pending_send *p = &j->sends[i];
    if (rc != CHAT_OK) {
      /* Nothing of the batch is stored: refund and tell each sender, who
       * retries with the same client_msg_id. */
      chat__rate_refund(srv, p->msg.sender_id, p->msg.conversation_id);
      chat__sess_error(p->sess, CHAT_WIRE_INTERNAL, "storage failed",
                       p->msg.client_msg_id, 0);
      continue;
    }
    chat_err status = j->res[i].status;
    if (status != CHAT_OK) {
      /* An edit or delete its target refused: nothing stored for it. */
      srv->st.edits_refused_total++;
      chat__rate_refund(srv, p->msg.sender_id, p->msg.conversation_id);
      bool edit = p->msg.body_type == CHAT_BODY_EDIT;
      if (status == CHAT_ERR_DENIED)
        chat__sess_error(p->sess, CHAT_WIRE_FORBIDDEN,
                         edit ? "only the sender may edit a message, "
                                "within the edit window"
                              : "only the sender, or a group admin, may "
                                "delete a message",
                         p->msg.client_msg_id, 0);
      else if (status == CHAT_ERR_NOT_FOUND)
        chat__sess_error(p->sess, CHAT_WIRE_NOT_FOUND,
                         "no such message to edit or delete (or it was "
                         "deleted)",
                         p->msg.client_msg_id, 0);
      else
        chat__sess_error(p->sess, CHAT_WIRE_INTERNAL, "storage failed",
                         p->msg.client_msg_id, 0);
      continue;
    }
    if (j->res[i].duplicate) {
      srv->st.sends_duplicate_total++;
      chat__rate_refund(srv, p->msg.sender_id, p->msg.conversation_id);
    } else if (p->msg.body_type == CHAT_BODY_EDIT) {
      srv->st.edits_committed_total++;
    } else if (p->msg.body_type == CHAT_BODY_DELETE) {
      srv->st.deletes_committed_total++;
    } else {
      srv->st.sends_committed_total++;
    }
    chat_ack a = {.client_msg_id = p->msg.client_msg_id,
                  .message_id = j->res[i].message_id,
                  .server_ts = j->res[i].server_ts,
                  .duplicate = j->res[i].duplicate};
    chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_ACK,
                    .ack = &a};
    chat__sess_send(p->sess, &f);
  }
  /* Fan-out waits for the next timer round, so that the host writes these
   * acks before any delivery work: send latency does not depend on who
   * receives (PROTOCOL.md 4.4). Without room to queue it, deliver now. */
  for (size_t i = 0; i < j->n; i++) {
    pending_send *p = &j->sends[i];
    if (rc != CHAT_OK || j->res[i].duplicate || j->res[i].status != CHAT_OK)
      continue; /* freed with the job */
    if (srv->n_fanouts == srv->cap_fanouts) {
      size_t cap = srv->cap_fanouts ? srv->cap_fanouts * 2 : 64;
      pending_fanout *q =
          chat__realloc(&srv->a, srv->fanouts, cap * sizeof *q);
      if (!q) {
        fan_out(srv, p, &j->res[i]);
        continue;
      }
      srv->fanouts = q;
      srv->cap_fanouts = cap;
    }
    srv->fanouts[srv->n_fanouts].send = *p;
    srv->fanouts[srv->n_fanouts].res = j->res[i];
    srv->n_fanouts++;
    memset(p, 0, sizeof *p);
  }
  chat__drain_check(srv);
}

chat_err chat__flush_sends(chat_server *srv, chat_time_ms now) {
  (void)now;
  /* Nothing commits before the ban list is known: a banned sender's
   * message must never reach others. */
  if (!chat__can_commit(srv))
    return CHAT_OK;
  size_t n = srv->n_sends < srv->s.max_batch ? srv->n_sends
                                             : srv->s.max_batch;
  if (n == 0)
    return CHAT_OK;
  commit_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (j) {
    j->sends = chat__alloc(&srv->a, n * sizeof *j->sends);
    j->msgs = chat__alloc(&srv->a, n * sizeof *j->msgs);
    j->res = chat__calloc(&srv->a, n, sizeof *j->res);
  }
  if (!j || !j->sends || !j->msgs || !j->res) {
    if (j) {
      chat__free(&srv->a, j->sends);
      chat__free(&srv->a, j->msgs);
      chat__free(&srv->a, j->res);
    }
    chat__free(&srv->a, j);
    return CHAT_ERR_NOMEM;
  }
  /* Ids are minted in queue order, so within a conversation they increase
   * in commit order, and one sender's messages keep their send order. */
  int64_t wall = chat__srv_wall(srv);
  uint64_t ids[1];
  for (size_t i = 0; i < n; i++) {
    if (chat_snowflake_next(srv->ids, wall, ids) != CHAT_OK) {
      chat__free(&srv->a, j->sends);
      chat__free(&srv->a, j->msgs);
      chat__free(&srv->a, j->res);
      chat__free(&srv->a, j);
      return CHAT_ERR_FATAL;
    }
    j->msgs[i] = srv->sends[i].msg;
    j->msgs[i].message_id = ids[0];
    j->msgs[i].server_ts = wall;
  }
  chat__job_init(&j->base, commit_release);
  memcpy(j->sends, srv->sends, n * sizeof *j->sends);
  j->n = n;
  memmove(srv->sends, srv->sends + n, (srv->n_sends - n) * sizeof *srv->sends);
  srv->n_sends -= n;
  srv->commit_busy = true;
  chat_op *op;
  CHAT__CALL(srv, &j->base, on_committed, 0, op,
             srv->store.append(srv->store.self, j->msgs, n, j->res, op));
  chat__job_unref(srv, &j->base);
  return CHAT_OK;
}

void chat__sends_free(chat_server *srv) {
  for (size_t i = 0; i < srv->n_sends; i++)
    chat__pending_free(srv, &srv->sends[i]);
  chat__free(&srv->a, srv->sends);
  srv->sends = NULL;
  srv->n_sends = srv->cap_sends = 0;
  for (size_t i = 0; i < srv->n_fanouts; i++)
    chat__pending_free(srv, &srv->fanouts[i].send);
  chat__free(&srv->a, srv->fanouts);
  srv->fanouts = NULL;
  srv->n_fanouts = srv->cap_fanouts = 0;
}

void chat__run_fanouts(chat_server *srv) {
  /* Taken out first: a fan-out that completes at once may commit nothing,
   * but keep the list simple to reason about. */
  pending_fanout *list = srv->fanouts;
  size_t n = srv->n_fanouts;
  srv->fanouts = NULL;
  srv->n_fanouts = srv->cap_fanouts = 0;
  for (size_t i = 0; i < n; i++)
    fan_out(srv, &list[i].send, &list[i].res);
  chat__free(&srv->a, list);
}

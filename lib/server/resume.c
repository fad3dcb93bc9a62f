/* Resume (PROTOCOL.md 4.6): the client says what it has; the server fills
 * each gap from the store, oldest first, within the caps, or says
 * `resume_failed` so that the client pages REST history instead. There is
 * no per-device queue on the server. */
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

#define HISTORY_CHUNK 200

typedef struct collect {
  chat_server *srv;
  chat__arena *ar;
  chat_message *msgs;
  size_t n, cap;
  bool oom;
} collect;

static const char *dup_str(chat__arena *ar, const char *s, bool *oom) {
  if (!s)
    return NULL;
  char *d = chat__arena_strndup(ar, s, strlen(s));
  if (!d)
    *oom = true;
  return d;
}

/* The store lends each message for the callback only: copy it. */
static void on_message(void *ctx, const chat_message *m) {
  collect *c = ctx;
  if (c->oom)
    return;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    chat_message *n = chat__arena_alloc(c->ar, cap * sizeof *n);
    if (!n) {
      c->oom = true;
      return;
    }
    if (c->n)
      memcpy(n, c->msgs, c->n * sizeof *n);
    c->msgs = n;
    c->cap = cap;
  }
  chat_message *d = &c->msgs[c->n];
  *d = *m;
  d->conversation_id = dup_str(c->ar, m->conversation_id, &c->oom);
  d->sender_id = dup_str(c->ar, m->sender_id, &c->oom);
  d->client_msg_id = dup_str(c->ar, m->client_msg_id, &c->oom);
  char *body = chat__arena_strndup(c->ar, m->body.ptr ? m->body.ptr : "",
                                   m->body.len);
  const char **refs =
      m->n_media_refs
          ? chat__arena_alloc(c->ar, m->n_media_refs * sizeof *refs)
          : NULL;
  if (!body || (m->n_media_refs && !refs)) {
    c->oom = true;
    return;
  }
  d->body.ptr = body;
  for (size_t i = 0; i < m->n_media_refs; i++)
    refs[i] = dup_str(c->ar, m->media_refs[i], &c->oom);
  d->media_refs = refs;
  c->n++;
}

static void resume_failed(chat_session *s, const char *conv,
                          const char *reason) {
  chat_resume_failed rf = {.conversation_id = conv,
                           .reason = {reason, strlen(reason)}};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUME_FAILED,
                  .resume_failed = &rf};
  chat__sess_send(s, &f);
}

typedef enum hist_rc {
  HIST_SENT,
  HIST_TOO_BIG, /* over the frame limit or the session's queue budget */
  HIST_FAILED   /* out of memory, or a stored message that will not encode */
} hist_rc;

/* History in frames that fit: up to HISTORY_CHUNK messages each, halved
 * while the encoding is over the frame limit. A gap's frames are all made
 * before any is queued, and queued only when every one encoded and
 * together they fit in half of the session's queue limits: a history with
 * a hole would look complete to the client, and an answer past the queue
 * limit would close the session (1013) on this resume and on every retry
 * with the same marks. The other half is left for live traffic. */
static hist_rc send_history(chat_session *s, const char *conv,
                            const chat_message *m, size_t n) {
  chat_server *srv = s->srv;
  chat__shared_frame **fs = chat__alloc(&srv->a, n * sizeof *fs);
  if (!fs)
    return HIST_FAILED;
  size_t nf = 0;
  uint64_t bytes = 0;
  hist_rc rc = HIST_SENT;
  size_t start = 0;
  while (start < n && rc == HIST_SENT) {
    size_t k = n - start < HISTORY_CHUNK ? n - start : HISTORY_CHUNK;
    for (;;) {
      chat_history h = {.conversation_id = conv, .messages = m + start,
                        .n_messages = k, .complete = start + k == n};
      chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_HISTORY,
                      .history = &h};
      const char *json;
      size_t len;
      chat_err erc = chat_codec_encode(srv->enc, &f, &json, &len);
      if (erc == CHAT_ERR_FRAME_TOO_LARGE && k > 1) {
        k /= 2;
        continue;
      }
      if (erc != CHAT_OK) {
        /* One message alone over the frame limit still reads over REST. */
        chat__srv_log(srv, CHAT_LOG_ERROR, "history %s: %s", conv,
                      chat_err_name(erc));
        rc = erc == CHAT_ERR_FRAME_TOO_LARGE ? HIST_TOO_BIG : HIST_FAILED;
        break;
      }
      chat__shared_frame *sf = chat__frame_copy(srv, json, len);
      if (!sf) {
        rc = HIST_FAILED;
        break;
      }
      fs[nf++] = sf;
      bytes += len;
      /* Stop encoding as soon as it is clear the gap will not fit. */
      if (s->q_bytes + bytes > srv->s.max_queued_bytes / 2 ||
          s->q_frames + nf > srv->s.max_queued_frames / 2)
        rc = HIST_TOO_BIG;
      break;
    }
    start += k;
  }
  for (size_t i = 0; i < nf; i++) {
    if (rc == HIST_SENT)
      chat__sess_queue(s, fs[i]);
    chat__frame_unref(srv, fs[i]); /* frees those queued nowhere */
  }
  chat__free(&srv->a, fs);
  return rc;
}

/* Whether a message written at ts is past the age cap at wall. Computed
 * without wrapping, so that a cap of UINT64_MAX means "no cap". */
static bool too_old(int64_t wall, int64_t ts, uint64_t max_age) {
  return ts < wall && (uint64_t)wall - (uint64_t)ts > max_age;
}

/* A resume answer may use half the session's outbound queue (the other
 * half is for live traffic); past that the session would be closed with
 * 1013 on this resume and on every retry. */
static bool over_budget(const chat_session *s) {
  const chat_server *srv = s->srv;
  return s->q_bytes >= srv->s.max_queued_bytes / 2 ||
         s->q_frames >= srv->s.max_queued_frames / 2;
}

/* Fill one gap: messages after `after`, within both caps. Returns the
 * number of messages sent. */
static size_t fill_gap(chat_session *s, const char *conv, uint64_t after,
                       int64_t wall) {
  chat_server *srv = s->srv;
  chat__arena ar;
  chat__arena_init(&ar, &srv->a);
  collect c = {.srv = srv, .ar = &ar};
  uint32_t cap = srv->s.resume_max_messages;
  /* One past the cap tells that the gap is over it; a cap of UINT32_MAX
   * must not wrap to a limit of 0. */
  uint32_t limit = cap < UINT32_MAX ? cap + 1 : UINT32_MAX;
  chat_err rc = srv->store.messages(srv->store.self, conv, CHAT_PAGE_AFTER,
                                    after, limit, on_message, &c);
  size_t sent = 0;
  if (rc != CHAT_OK || c.oom) {
    srv->st.store_errors_total += rc != CHAT_OK;
    chat__sess_error(s, CHAT_WIRE_INTERNAL, "storage failed", "resume", 0);
  } else if (c.n > cap ||
             (c.n > 0 && too_old(wall, c.msgs[0].server_ts,
                                 srv->s.resume_max_age_ms))) {
    /* Past either cap the client pages REST history instead. */
    resume_failed(s, conv, "too_old");
  } else if (c.n > 0) {
    hist_rc hr = send_history(s, conv, c.msgs, c.n);
    if (hr == HIST_SENT)
      sent = c.n;
    else if (hr == HIST_TOO_BIG)
      resume_failed(s, conv, "too_old");
    else
      chat__sess_error(s, CHAT_WIRE_INTERNAL, "history failed", "resume", 0);
  }
  chat__arena_free(&ar);
  return sent;
}

typedef struct unlisted {
  chat_session *s;
  chat__map *listed;
  bool has_since;
  chat__arena *ar;
  const char **ids; /* conversations to fill from `since` */
  size_t n, cap;
  uint32_t frames;
  bool oom;
  uint32_t seen; /* conversations on this page */
  bool cut;      /* stopped at the queue budget */
} unlisted;

static void on_conversation(void *ctx, const chat_conversation *c) {
  unlisted *u = ctx;
  u->seen++;
  if (chat__map_get(u->listed, c->conversation_id,
                    strlen(c->conversation_id)))
    return;
  if (u->cut)
    return;
  if (!u->has_since) {
    if (over_budget(u->s)) {
      u->cut = true;
      return;
    }
    chat_frame f = {.version = CHAT_FRAME_V1,
                    .type = CHAT_FRAME_CONVERSATION, .conversation = c};
    chat__sess_send(u->s, &f);
    u->frames++;
    return;
  }
  /* The store is mid-iteration: remember the id, fill the gap after. */
  if (u->n == u->cap) {
    size_t cap = u->cap ? u->cap * 2 : 32;
    const char **n = chat__arena_alloc(u->ar, cap * sizeof *n);
    if (!n) {
      u->oom = true;
      return;
    }
    if (u->n)
      memcpy(n, u->ids, u->n * sizeof *n);
    u->ids = n;
    u->cap = cap;
  }
  u->ids[u->n] = chat__arena_strndup(u->ar, c->conversation_id,
                                     strlen(c->conversation_id));
  if (!u->ids[u->n])
    u->oom = true;
  else
    u->n++;
}

void chat__on_resume(chat_session *s, const chat_resume *r,
                     chat_time_ms now) {
  (void)now;
  chat_server *srv = s->srv;
  int64_t wall = chat__srv_wall(srv);
  uint32_t convs = 0, msgs = 0;
  chat__map listed;
  chat__map_init(&listed, &srv->a, srv->users.seed ^ 0xa5a5a5a5u);
  bool oom = false;

  bool cut = false;
  for (size_t i = 0; i < r->n_last_seen; i++) {
    const char *conv = r->last_seen[i].conversation_id;
    if (over_budget(s)) {
      cut = true;
      break;
    }
    if (chat__map_put(&listed, conv, strlen(conv), (void *)1, NULL) !=
        CHAT_OK)
      oom = true;
    chat_err err = CHAT_OK;
    const conv_entry *c = chat__conv_get(srv, conv, &err);
    if (!c && err == CHAT_ERR_NOT_FOUND) {
      resume_failed(s, conv, "no_such_conversation");
      continue;
    }
    if (!c) {
      chat__sess_error(s, CHAT_WIRE_INTERNAL, "storage failed", "resume", 0);
      continue;
    }
    if (!chat__conv_has_member(c, s->id.user_id)) {
      resume_failed(s, conv, "not_member");
      continue;
    }
    size_t n = fill_gap(s, conv, r->last_seen[i].message_id, wall);
    convs += n > 0;
    msgs += (uint32_t)n;
  }

  /* Conversations the client did not list: new ones get a `conversation`
   * frame, or with `since` their messages after it. */
  chat__arena ar;
  chat__arena_init(&ar, &srv->a);
  unlisted u = {.s = s, .listed = &listed, .has_since = r->has_since,
                .ar = &ar};
  char cursor[CHAT_CURSOR_BUF] = "";
  char next[CHAT_CURSOR_BUF];
  for (int page = 0; page < 1000 && !oom && !cut && !u.cut; page++) {
    u.seen = 0;
    next[0] = 0;
    chat_err rc = srv->store.conversations_of(
        srv->store.self, s->id.user_id, cursor, 200, on_conversation, &u,
        next);
    if (rc != CHAT_OK) {
      srv->st.store_errors_total++;
      chat__sess_error(s, CHAT_WIRE_INTERNAL, "storage failed", "resume", 0);
      break;
    }
    if (!next[0] || u.seen == 0)
      break;
    memcpy(cursor, next, sizeof cursor);
  }
  convs += u.frames;
  for (size_t i = 0; i < u.n && !cut; i++) {
    if (over_budget(s)) {
      cut = true;
      break;
    }
    size_t n = fill_gap(s, u.ids[i], r->since, wall);
    convs += n > 0;
    msgs += (uint32_t)n;
  }
  if (oom || u.oom)
    chat__sess_error(s, CHAT_WIRE_INTERNAL, "out of memory", "resume", 0);
  /* What did not fit is for REST: the conversation list, then history. */
  if (cut || u.cut)
    chat__sess_error(s, CHAT_WIRE_TOO_LARGE,
                     "resume answer over the session's queue; page "
                     "GET /api/v1/conversations and their messages",
                     "resume", 0);
  chat__arena_free(&ar);
  chat__map_free(&listed);

  srv->st.resume_messages_total += msgs;
  chat_resumed done = {.conversations = convs, .messages = msgs};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUMED,
                  .resumed = &done};
  chat__sess_send(s, &f);
}

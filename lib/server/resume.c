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

/* What a resume answer has put in the session's queue: what was there
 * when it started plus every frame it queued since. The budget is counted
 * this way, not from the queue as it is, because with a store that answers
 * later the transport drains the queue between the steps: the cut must not
 * depend on how fast the client reads. */
typedef struct budget {
  uint64_t bytes;
  uint64_t frames;
} budget;

/* Frames queued to s by fn, added to u. The queue cannot drain within one
 * call, so the difference is exactly what was queued. */
static void count_since(const chat_session *s, budget *u, uint32_t f0,
                        uint64_t b0) {
  if (s->q_frames > f0)
    u->frames += s->q_frames - f0;
  if (s->q_bytes > b0)
    u->bytes += s->q_bytes - b0;
}

static void send_counted(chat_session *s, budget *u, const chat_frame *f) {
  uint32_t f0 = s->q_frames;
  uint64_t b0 = s->q_bytes;
  chat__sess_send(s, f);
  count_since(s, u, f0, b0);
}

static void error_counted(chat_session *s, budget *u, chat_wire_error code,
                          const char *msg) {
  uint32_t f0 = s->q_frames;
  uint64_t b0 = s->q_bytes;
  chat__sess_error(s, code, msg, "resume", 0);
  count_since(s, u, f0, b0);
}

static void resume_failed(chat_session *s, budget *u, const char *conv,
                          const char *reason) {
  chat_resume_failed rf = {.conversation_id = conv,
                           .reason = {reason, strlen(reason)}};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUME_FAILED,
                  .resume_failed = &rf};
  send_counted(s, u, &f);
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
static hist_rc send_history(chat_session *s, budget *u, const char *conv,
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
      if (u->bytes + bytes > srv->s.max_queued_bytes / 2 ||
          u->frames + nf > srv->s.max_queued_frames / 2)
        rc = HIST_TOO_BIG;
      break;
    }
    start += k;
  }
  uint32_t f0 = s->q_frames;
  uint64_t b0 = s->q_bytes;
  for (size_t i = 0; i < nf; i++) {
    if (rc == HIST_SENT)
      chat__sess_queue(s, fs[i]);
    chat__frame_unref(srv, fs[i]); /* frees those queued nowhere */
  }
  count_since(s, u, f0, b0);
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
static bool over_budget(const chat_server *srv, const budget *u) {
  return u->bytes >= srv->s.max_queued_bytes / 2 ||
         u->frames >= srv->s.max_queued_frames / 2;
}

/* One resume frame, as a small state machine: each step makes at most one
 * module call, whose completion stores its result and lets the machine go
 * on (at once when the module answered at once). */
enum {
  PH_LISTED,       /* next conversation the client listed */
  PH_LISTED_CHECK, /* its membership is known */
  PH_LISTED_GAP,   /* its gap is read */
  PH_PAGE,         /* next page of the user's conversations */
  PH_PAGE_DONE,
  PH_UNLISTED,     /* next unlisted conversation to fill from `since` */
  PH_UNLISTED_GAP,
  PH_END
};

typedef struct last_seen {
  const char *conv; /* in the job's arena */
  uint64_t message_id;
} last_seen;

typedef struct resume_job {
  chat__job base;
  chat_session *s; /* referenced */
  chat__arena ar;  /* the request's copies and the unlisted ids */
  chat__arena gap_ar;
  last_seen *ls;
  size_t n_ls;
  bool has_since;
  uint64_t since;
  int64_t wall;
  chat__map listed;
  int phase;
  size_t i;
  bool running;    /* resume_run is on the stack */
  bool pending;    /* a module call has not answered */
  bool oom, cut;
  uint32_t convs, msgs;
  budget used;
  /* the call in progress */
  chat_err rc;
  bool found, member;
  collect c;
  /* conversation pages */
  int page;
  char cursor[CHAT_CURSOR_BUF];
  char next[CHAT_CURSOR_BUF];
  uint32_t seen;   /* conversations on this page */
  uint32_t frames; /* `conversation` frames sent */
  bool page_cut;   /* stopped at the queue budget */
  const char **ids; /* conversations to fill from `since` */
  size_t n_ids, cap_ids;
} resume_job;

static void resume_release(chat_server *srv, chat__job *j) {
  resume_job *rj = (resume_job *)j;
  chat__arena_free(&rj->ar);
  chat__arena_free(&rj->gap_ar);
  chat__map_free(&rj->listed);
  chat__sess_unref(srv, rj->s);
  chat__free(&srv->a, rj);
}

static void resume_run(chat_server *srv, resume_job *j);

static void on_answer(chat_server *srv, chat__job *job, uint32_t idx,
                      chat_err rc) {
  (void)idx;
  resume_job *j = (resume_job *)job;
  j->rc = rc;
  j->pending = false;
  resume_run(srv, j);
}

static void on_resume_conv(chat_server *srv, chat__job *job,
                           const conv_entry *c, chat_err err) {
  resume_job *j = (resume_job *)job;
  j->found = c != NULL;
  j->rc = err;
  j->member = c && chat__conv_has_member(c, j->s->id.user_id);
  j->pending = false;
  resume_run(srv, j);
}

/* Read one gap: messages after `after`, one past the cap. */
static void gap_start(chat_server *srv, resume_job *j, const char *conv,
                      uint64_t after) {
  chat__arena_reset(&j->gap_ar);
  j->c = (collect){.srv = srv, .ar = &j->gap_ar};
  uint32_t cap = srv->s.resume_max_messages;
  /* One past the cap tells that the gap is over it; a cap of UINT32_MAX
   * must not wrap to a limit of 0. */
  uint32_t limit = cap < UINT32_MAX ? cap + 1 : UINT32_MAX;
  j->pending = true;
  chat_op *op;
  /* As this user sees it: a shadow-banned sender's messages reach only
   * that sender (PROTOCOL.md section 8). */
  if (srv->store.messages_as)
    CHAT__CALL(srv, &j->base, on_answer, 0, op,
               srv->store.messages_as(srv->store.self, conv,
                                      j->s->id.user_id, CHAT_PAGE_AFTER,
                                      after, limit, on_message, &j->c, op));
  else
    CHAT__CALL(srv, &j->base, on_answer, 0, op,
               srv->store.messages(srv->store.self, conv, CHAT_PAGE_AFTER,
                                   after, limit, on_message, &j->c, op));
}

/* Answer one gap within both caps. Returns the number of messages sent. */
static size_t gap_finish(chat_server *srv, resume_job *j, const char *conv) {
  chat_session *s = j->s;
  collect *c = &j->c;
  uint32_t cap = srv->s.resume_max_messages;
  size_t sent = 0;
  if (j->rc != CHAT_OK || c->oom) {
    srv->st.store_errors_total += j->rc != CHAT_OK;
    error_counted(s, &j->used, CHAT_WIRE_INTERNAL, "storage failed");
  } else if (c->n > cap ||
             (c->n > 0 && too_old(j->wall, c->msgs[0].server_ts,
                                  srv->s.resume_max_age_ms))) {
    /* Past either cap the client pages REST history instead. */
    resume_failed(s, &j->used, conv, "too_old");
  } else if (c->n > 0) {
    hist_rc hr = send_history(s, &j->used, conv, c->msgs, c->n);
    if (hr == HIST_SENT)
      sent = c->n;
    else if (hr == HIST_TOO_BIG)
      resume_failed(s, &j->used, conv, "too_old");
    else
      error_counted(s, &j->used, CHAT_WIRE_INTERNAL, "history failed");
  }
  chat__arena_reset(&j->gap_ar);
  j->c = (collect){0};
  return sent;
}

static void on_conversation(void *ctx, const chat_conversation *c) {
  resume_job *u = ctx;
  u->seen++;
  if (chat__map_get(&u->listed, c->conversation_id,
                    strlen(c->conversation_id)))
    return;
  if (u->page_cut)
    return;
  if (!u->has_since) {
    if (over_budget(u->s->srv, &u->used)) {
      u->page_cut = true;
      return;
    }
    chat_frame f = {.version = CHAT_FRAME_V1,
                    .type = CHAT_FRAME_CONVERSATION, .conversation = c};
    send_counted(u->s, &u->used, &f);
    u->frames++;
    return;
  }
  /* The store is mid-iteration: remember the id, fill the gap after. */
  if (u->n_ids == u->cap_ids) {
    size_t cap = u->cap_ids ? u->cap_ids * 2 : 32;
    const char **n = chat__arena_alloc(&u->ar, cap * sizeof *n);
    if (!n) {
      u->oom = true;
      return;
    }
    if (u->n_ids)
      memcpy(n, u->ids, u->n_ids * sizeof *n);
    u->ids = n;
    u->cap_ids = cap;
  }
  u->ids[u->n_ids] = chat__arena_strndup(&u->ar, c->conversation_id,
                                         strlen(c->conversation_id));
  if (!u->ids[u->n_ids])
    u->oom = true;
  else
    u->n_ids++;
}

static void resume_end(chat_server *srv, resume_job *j) {
  chat_session *s = j->s;
  if (j->oom)
    chat__sess_error(s, CHAT_WIRE_INTERNAL, "out of memory", "resume", 0);
  /* What did not fit is for REST: the conversation list, then history. */
  if (j->cut || j->page_cut)
    chat__sess_error(s, CHAT_WIRE_TOO_LARGE,
                     "resume answer over the session's queue; page "
                     "GET /api/v1/conversations and their messages",
                     "resume", 0);
  srv->st.resume_messages_total += j->msgs;
  chat_resumed done = {.conversations = j->convs, .messages = j->msgs};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUMED,
                  .resumed = &done};
  chat__sess_send(s, &f);
  chat__sess_frame_done(s);
}

/* One step: either progress without a call, or issue one call. */
static void resume_step(chat_server *srv, resume_job *j) {
  chat_session *s = j->s;
  if (s->dead && j->phase != PH_END) {
    /* Nobody to answer: stop reading the store. */
    j->phase = PH_END;
    chat__sess_frame_done(s);
    j->i = SIZE_MAX;
    return;
  }
  switch (j->phase) {
  case PH_LISTED: {
    if (j->i >= j->n_ls) {
      j->phase = PH_PAGE;
      return;
    }
    if (over_budget(srv, &j->used)) {
      j->cut = true;
      j->phase = PH_END;
      return;
    }
    const char *conv = j->ls[j->i].conv;
    if (chat__map_put(&j->listed, conv, strlen(conv), (void *)1, NULL) !=
        CHAT_OK)
      j->oom = true;
    j->phase = PH_LISTED_CHECK;
    j->pending = true;
    chat__conv_load(srv, conv, &j->base, on_resume_conv);
    return;
  }
  case PH_LISTED_CHECK: {
    const char *conv = j->ls[j->i].conv;
    if (!j->found && j->rc == CHAT_ERR_NOT_FOUND) {
      resume_failed(s, &j->used, conv, "no_such_conversation");
    } else if (!j->found) {
      error_counted(s, &j->used, CHAT_WIRE_INTERNAL, "storage failed");
    } else if (!j->member) {
      resume_failed(s, &j->used, conv, "not_member");
    } else {
      j->phase = PH_LISTED_GAP;
      gap_start(srv, j, conv, j->ls[j->i].message_id);
      return;
    }
    j->i++;
    j->phase = PH_LISTED;
    return;
  }
  case PH_LISTED_GAP: {
    size_t n = gap_finish(srv, j, j->ls[j->i].conv);
    j->convs += n > 0;
    j->msgs += (uint32_t)n;
    j->i++;
    j->phase = PH_LISTED;
    return;
  }
  case PH_PAGE:
    /* Conversations the client did not list: new ones get a
     * `conversation` frame, or with `since` their messages after it. A
     * `since` of the largest id (a paced resume's round, PROTOCOL.md
     * section 8) has nothing after it: the user's conversations are not
     * even listed. */
    if (j->oom || j->cut || j->page_cut || j->page >= 1000 ||
        (j->has_since && j->since >= (uint64_t)INT64_MAX)) {
      j->phase = PH_UNLISTED;
      j->convs += j->frames;
      j->i = 0;
      return;
    }
    j->seen = 0;
    j->next[0] = 0;
    j->phase = PH_PAGE_DONE;
    j->pending = true;
    chat_op *op;
    CHAT__CALL(srv, &j->base, on_answer, 0, op,
               srv->store.conversations_of(srv->store.self, s->id.user_id,
                                           j->cursor, 200, on_conversation,
                                           j, j->next, op));
    return;
  case PH_PAGE_DONE:
    if (j->rc != CHAT_OK) {
      srv->st.store_errors_total++;
      error_counted(s, &j->used, CHAT_WIRE_INTERNAL, "storage failed");
    } else if (j->next[0] && j->seen > 0) {
      memcpy(j->cursor, j->next, sizeof j->cursor);
      j->cursor[sizeof j->cursor - 1] = 0;
      j->page++;
      j->phase = PH_PAGE;
      return;
    }
    j->phase = PH_UNLISTED;
    j->convs += j->frames;
    j->i = 0;
    return;
  case PH_UNLISTED:
    if (j->i >= j->n_ids || j->cut) {
      j->phase = PH_END;
      return;
    }
    if (over_budget(srv, &j->used)) {
      j->cut = true;
      j->phase = PH_END;
      return;
    }
    j->phase = PH_UNLISTED_GAP;
    gap_start(srv, j, j->ids[j->i], j->since);
    return;
  case PH_UNLISTED_GAP: {
    size_t n = gap_finish(srv, j, j->ids[j->i]);
    j->convs += n > 0;
    j->msgs += (uint32_t)n;
    j->i++;
    j->phase = PH_UNLISTED;
    return;
  }
  default:
    return;
  }
}

static void resume_run(chat_server *srv, resume_job *j) {
  if (j->running)
    return; /* an answer that came at once: the loop below goes on */
  j->running = true;
  chat__job_ref(&j->base);
  while (!j->pending && j->phase != PH_END)
    resume_step(srv, j);
  if (!j->pending && j->phase == PH_END && j->i != SIZE_MAX) {
    j->i = SIZE_MAX; /* answered once */
    resume_end(srv, j);
  }
  j->running = false;
  chat__job_unref(srv, &j->base);
}

void chat__on_resume(chat_session *s, const chat_resume *r,
                     chat_time_ms now) {
  (void)now;
  chat_server *srv = s->srv;
  resume_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (!j) {
    chat__sess_error(s, CHAT_WIRE_INTERNAL, "out of memory", "resume", 0);
    chat__sess_frame_done(s);
    return;
  }
  chat__job_init(&j->base, resume_release);
  j->s = s;
  chat__sess_ref(s);
  chat__arena_init(&j->ar, &srv->a);
  chat__arena_init(&j->gap_ar, &srv->a);
  chat__map_init(&j->listed, &srv->a, srv->users.seed ^ 0xa5a5a5a5u);
  j->wall = chat__srv_wall(srv);
  j->used = (budget){s->q_bytes, s->q_frames};
  j->has_since = r->has_since;
  j->since = r->since;
  /* The decoded frame dies with the next decode: copy the list. */
  if (r->n_last_seen) {
    j->ls = chat__arena_alloc(&j->ar, r->n_last_seen * sizeof *j->ls);
    if (!j->ls)
      j->oom = true;
  }
  for (size_t i = 0; i < r->n_last_seen && j->ls; i++) {
    const char *conv = r->last_seen[i].conversation_id;
    j->ls[i].conv = chat__arena_strndup(&j->ar, conv, strlen(conv));
    j->ls[i].message_id = r->last_seen[i].message_id;
    if (!j->ls[i].conv) {
      j->oom = true;
      break;
    }
    j->n_ls = i + 1;
  }
  if (j->oom)
    j->phase = PH_END;
  resume_run(srv, j);
  chat__job_unref(srv, &j->base);
}

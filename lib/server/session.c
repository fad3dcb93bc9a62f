/* One connection: hello, inbound limits, the bounded outbound queue and
 * close codes. */
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

/* ---- shared frames ---- */

chat__shared_frame *chat__frame_copy(chat_server *srv, const char *json,
                                     size_t len) {
  if (len > UINT32_MAX)
    return NULL;
  chat__shared_frame *f = chat__alloc(&srv->a, sizeof *f + len);
  if (!f)
    return NULL;
  f->refs = 1; /* the caller's */
  f->len = (uint32_t)len;
  memcpy(f->data, json, len);
  return f;
}

chat__shared_frame *chat__frame_make(chat_server *srv, const chat_frame *fr) {
  const char *json;
  size_t len;
  chat_err rc = chat_codec_encode(srv->enc, fr, &json, &len);
  if (rc != CHAT_OK) {
    /* Our own frames always encode; this is a bug or an oversized body
     * that slipped past the limits, so say so instead of going quiet. */
    chat__srv_log(srv, CHAT_LOG_ERROR, "encode %s: %s",
                  chat_frame_type_name(fr->type), chat_err_name(rc));
    return NULL;
  }
  return chat__frame_copy(srv, json, len);
}

void chat__frame_ref(chat__shared_frame *f) { f->refs++; }

void chat__frame_unref(chat_server *srv, chat__shared_frame *f) {
  if (f && --f->refs == 0)
    chat__free(&srv->a, f);
}

/* ---- queue ---- */

/* Fires when the queue goes from empty to non-empty, and once when the
 * session starts closing: the host needs one wake-up per transition, and a
 * host that stops pulling early is woken again by the next frame. */
static void notify(chat_session *s) {
  chat_server *srv = s->srv;
  if (!s->dead && srv->cbs.on_session_wants)
    srv->cbs.on_session_wants(srv->user_data, srv, s, s->user_data);
}

bool chat__sess_closing(const chat_session *s) { return s->close_code != 0; }

void chat__sess_close(chat_session *s, uint16_t code, const char *reason) {
  if (s->close_code || s->dead)
    return;
  s->close_code = code;
  s->close_reason = reason;
  notify(s);
}

static void queue_clear(chat_session *s) {
  outq_item *it = s->q_head;
  while (it) {
    outq_item *next = it->next;
    chat__frame_unref(s->srv, it->frame);
    chat__free(&s->srv->a, it);
    it = next;
  }
  s->q_head = s->q_tail = NULL;
  s->q_frames = 0;
  s->q_bytes = 0;
}

void chat__sess_queue(chat_session *s, chat__shared_frame *f) {
  chat_server *srv = s->srv;
  if (!f || s->dead || chat__sess_closing(s))
    return;
  /* A reader that cannot keep up is cut loose rather than allowed to hold
   * memory for everyone: it resumes from its own store later. */
  if (s->q_frames >= srv->s.max_queued_frames ||
      s->q_bytes + f->len > srv->s.max_queued_bytes) {
    srv->st.slow_closes_total++;
    queue_clear(s);
    chat__sess_goaway(s, "overload", srv->s.overload_retry_after_ms, 1013,
                      "outbound queue full");
    return;
  }
  outq_item *it = chat__alloc(&srv->a, sizeof *it);
  if (!it) {
    queue_clear(s);
    chat__sess_close(s, 1011, "out of memory");
    return;
  }
  chat__frame_ref(f);
  it->frame = f;
  it->next = NULL;
  bool was_empty = s->q_head == NULL;
  if (s->q_tail)
    s->q_tail->next = it;
  else
    s->q_head = it;
  s->q_tail = it;
  s->q_frames++;
  s->q_bytes += f->len;
  srv->st.frames_out_total++;
  if (was_empty)
    notify(s);
}

void chat__sess_send(chat_session *s, const chat_frame *f) {
  if (s->dead || chat__sess_closing(s))
    return;
  chat__shared_frame *sf = chat__frame_make(s->srv, f);
  chat__sess_queue(s, sf);
  chat__frame_unref(s->srv, sf);
}

void chat__sess_goaway(chat_session *s, const char *reason,
                       uint64_t retry_after_ms, uint16_t code,
                       const char *why) {
  chat_server *srv = s->srv;
  if (s->dead || chat__sess_closing(s))
    return;
  chat_goaway g = {.reason = {reason, strlen(reason)},
                   .retry_after_ms = retry_after_ms};
  chat_frame f = {.version = CHAT_FRAME_V2, .type = CHAT_FRAME_GOAWAY,
                  .goaway = &g};
  chat__shared_frame *sf = chat__frame_make(srv, &f);
  if (sf) {
    /* The advice must reach the client: what it has not read yet it gets
     * again by resume, the goaway it cannot. */
    if (s->q_frames >= srv->s.max_queued_frames ||
        s->q_bytes + sf->len > srv->s.max_queued_bytes)
      queue_clear(s);
    chat__sess_queue(s, sf);
    chat__frame_unref(srv, sf);
    srv->st.goaway_total++;
  }
  chat__sess_close(s, code, why);
}

uint32_t chat__sess_rate(const chat_session *s) {
  return s->id.kind == CHAT_SENDER_BOT ? s->srv->s.bot_rate_per_minute
                                       : s->srv->s.rate_per_minute;
}

void chat__sess_error(chat_session *s, chat_wire_error code, const char *msg,
                      const char *ref, uint64_t retry_after_ms) {
  chat_error_frame e = {.wire = code,
                        .message = {msg, strlen(msg)},
                        .ref = {ref, ref ? strlen(ref) : 0},
                        .has_retry_after = retry_after_ms > 0,
                        .retry_after_ms = retry_after_ms};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_ERROR,
                  .error = &e};
  chat__sess_send(s, &f);
}

/* ---- lifetime ---- */

void chat__sess_ref(chat_session *s) { s->refs++; }

static void inq_clear(chat_session *s) {
  inq_item *it = s->in_head;
  while (it) {
    inq_item *next = it->next;
    chat__free(&s->srv->a, it);
    it = next;
  }
  s->in_head = s->in_tail = NULL;
  s->in_frames = 0;
  s->in_bytes = 0;
}

void chat__sess_unref(chat_server *srv, chat_session *s) {
  if (!s || --s->refs > 0)
    return;
  queue_clear(s);
  inq_clear(s);
  if (s->lent)
    chat__frame_unref(srv, s->lent);
  chat__free(&srv->a, s->subs);
  chat__free(&srv->a, s);
}

/* ---- public session API ---- */

chat_err chat_server_open_session(chat_server *srv, chat_session **out,
                                  const chat_identity *id, void *user_data,
                                  chat_time_ms now) {
  if (!out)
    return srv ? chat__srv_fail(srv, CHAT_ERR_INVAL, "out: NULL")
               : CHAT_ERR_INVAL;
  *out = NULL;
  if (!srv)
    return CHAT_ERR_INVAL;
  if (!id)
    return chat__srv_fail(srv, CHAT_ERR_INVAL, "identity: NULL");
  if (!chat__version_ok(id->version, CHAT_IDENTITY_V1)) {
    chat_errbuf e;
    chat__version_refused(&e, "identity", id->version, CHAT_IDENTITY_V1);
    return chat__srv_fail(srv, CHAT_ERR_INVAL, "%s", e.msg);
  }
  if (!chat_id_valid(id->user_id, strnlen(id->user_id, CHAT_ID_BUF)))
    return chat__srv_fail(srv, CHAT_ERR_INVAL,
                          "identity.user_id: not a valid id");
  if (!chat_id_valid(id->device_id, strnlen(id->device_id, CHAT_ID_BUF)))
    return chat__srv_fail(srv, CHAT_ERR_INVAL,
                          "identity.device_id: not a valid id");
  if (id->kind != CHAT_SENDER_USER && id->kind != CHAT_SENDER_BOT)
    return chat__srv_fail(srv, CHAT_ERR_INVAL,
                          "identity.kind: %d is not user (0) or bot (1)",
                          (int)id->kind);
  if (srv->draining)
    return chat__srv_fail(srv, CHAT_ERR_STATE, "server: draining");
  chat__srv_clock(srv, now);
  chat_session *s = chat__calloc(&srv->a, 1, sizeof *s);
  if (!s)
    return CHAT_ERR_NOMEM;
  chat__enter(srv);
  s->srv = srv;
  s->refs = 1;
  s->id = *id;
  s->id.version = CHAT_IDENTITY_V1;
  s->user_data = user_data;
  s->garbage_window = now;
  s->expires_at = CHAT_TIME_NEVER;
  s->exp_idx = SIZE_MAX;
  /* Session ids carry the gateway so they stay unique across the fleet;
   * the counter goes first so that cutting a long gateway id to the 64-byte
   * id limit keeps them unique. */
  char sid[CHAT_ID_BUF + 24];
  snprintf(sid, sizeof sid, "s%llu.%s",
           (unsigned long long)++srv->session_counter, srv->gateway_id);
  memcpy(s->session_id, sid, sizeof s->session_id - 1);
  s->session_id[sizeof s->session_id - 1] = 0;
  chat_err rc = chat__presence_attach(s, now);
  if (rc != CHAT_OK) {
    chat__free(&srv->a, s);
    chat__leave(srv);
    return rc;
  }
  s->all_next = srv->sessions;
  if (srv->sessions)
    srv->sessions->all_prev = s;
  srv->sessions = s;
  srv->st.sessions_open++;
  srv->st.sessions_opened_total++;

  /* The credential's expiry holds for the whole session (PROTOCOL.md
   * section 8): the wall-clock time left is turned into a deadline on the
   * host's monotonic clock now, once. */
  int64_t wall = chat__srv_wall(srv);
  bool expired = false;
  if (id->expires_ms > 0) {
    if (id->expires_ms <= wall) {
      expired = true;
    } else {
      uint64_t left = (uint64_t)(id->expires_ms - wall);
      s->expires_at = left < CHAT_TIME_NEVER - now ? now + left
                                                   : CHAT_TIME_NEVER - 1;
      chat__expiry_add(srv, s);
    }
  }
  if (expired) {
    srv->st.sessions_expired_total++;
    chat__sess_close(s, 4001, "token_expired");
  } else {
    chat_hello h = {.user_id = s->id.user_id,
                    .device_id = s->id.device_id,
                    .session_id = s->session_id,
                    .server_ts = wall,
                    .heartbeat_ms = srv->s.heartbeat_ms,
                    .limits = {.max_body_bytes = srv->s.max_body_bytes,
                               .max_frame_bytes = srv->s.max_frame_bytes,
                               .rate_per_minute = chat__sess_rate(s),
                               .resume_max_messages =
                                   srv->s.resume_max_messages,
                               .resume_max_age_ms =
                                   srv->s.resume_max_age_ms},
                    .has_resume_batch_hint = srv->s.resume_batch_hint > 0,
                    .resume_batch_hint = srv->s.resume_batch_hint};
    chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_HELLO,
                    .hello = &h};
    chat__sess_send(s, &f);
  }
  *out = s;
  chat__leave(srv);
  return CHAT_OK;
}

/* A refused frame: answer it, and close a peer that keeps sending garbage
 * (PROTOCOL.md section 3). The window restarts each minute. */
static void refused(chat_session *s, const chat_decode_error *e,
                    chat_time_ms now) {
  chat_server *srv = s->srv;
  srv->st.frames_refused_total++;
  if (now - s->garbage_window >= 60000 || now < s->garbage_window) {
    s->garbage_window = now;
    s->garbage = 0;
  }
  if (++s->garbage > srv->s.garbage_per_minute) {
    chat__sess_close(s, 1008, "too many bad frames");
    return;
  }
  chat__sess_error(s, e->wire, e->message, e->ref, 0);
}

/* Decode and dispatch one frame. The handler marks the session busy while
 * it waits on a module. */
static chat_err handle(chat_session *s, const char *json, size_t len,
                       chat_time_ms now) {
  chat_server *srv = s->srv;
  const chat_frame *f;
  chat_decode_error e;
  chat_err rc = chat_codec_decode(srv->codec, CHAT_DIR_TO_SERVER, json, len,
                                  &f, &e);
  switch (rc) {
  case CHAT_OK:
    break;
  case CHAT_ERR_FRAME_TOO_LARGE:
    srv->st.frames_refused_total++;
    chat__sess_close(s, 1009, "frame too large");
    return CHAT_OK;
  case CHAT_ERR_BAD_UTF8:
    srv->st.frames_refused_total++;
    chat__sess_close(s, 1007, "invalid UTF-8");
    return CHAT_OK;
  case CHAT_ERR_NOMEM:
    chat__sess_close(s, 1011, "out of memory");
    return CHAT_ERR_NOMEM;
  default:
    refused(s, &e, now);
    return CHAT_OK;
  }
  if (f->type != CHAT_FRAME_PING)
    chat__presence_activity(s, now);
  s->busy = true;
  chat__dispatch(s, f, now);
  return CHAT_OK;
}

void chat__sess_frame_done(chat_session *s) {
  s->busy = false;
  /* Frames that waited go on from the ready loop (chat__sess_pump), never
   * from inside the continuation that got here: that one may still be
   * using a conversation entry or the decoder's last frame. */
  if (s->in_head && !s->pump_queued && !s->dead) {
    chat_server *srv = s->srv;
    s->pump_queued = true;
    s->pump_next = NULL;
    chat__sess_ref(s);
    if (srv->pump_tail)
      srv->pump_tail->pump_next = s;
    else
      srv->pump_head = s;
    srv->pump_tail = s;
  }
}

bool chat__sess_pump(chat_server *srv) {
  chat_session *s = srv->pump_head;
  if (!s)
    return false;
  srv->pump_head = s->pump_next;
  if (!srv->pump_head)
    srv->pump_tail = NULL;
  s->pump_queued = false;
  while (!s->busy && !s->dead && s->in_head && !chat__sess_closing(s)) {
    inq_item *it = s->in_head;
    s->in_head = it->next;
    if (!s->in_head)
      s->in_tail = NULL;
    s->in_frames--;
    s->in_bytes -= it->len;
    (void)handle(s, it->data, it->len, srv->clock_ms);
    chat__free(&srv->a, it);
  }
  if (chat__sess_closing(s))
    inq_clear(s);
  chat__sess_unref(srv, s);
  return true;
}

/* Hold a frame behind the one that waits: the client's order is the order
 * of handling. */
static void hold(chat_session *s, const char *json, size_t len) {
  chat_server *srv = s->srv;
  if (s->in_frames >= srv->s.max_waiting_frames ||
      s->in_bytes + len > srv->s.max_queued_bytes) {
    srv->st.slow_closes_total++;
    inq_clear(s);
    chat__sess_goaway(s, "overload", srv->s.overload_retry_after_ms, 1013,
                      "too many frames waiting");
    return;
  }
  inq_item *it = chat__alloc(&srv->a, sizeof *it + len);
  if (!it) {
    inq_clear(s);
    chat__sess_close(s, 1011, "out of memory");
    return;
  }
  it->next = NULL;
  it->len = len;
  if (len)
    memcpy(it->data, json, len);
  if (s->in_tail)
    s->in_tail->next = it;
  else
    s->in_head = it;
  s->in_tail = it;
  s->in_frames++;
  s->in_bytes += len;
}

chat_err chat_session_on_frame(chat_session *s, const char *json, size_t len,
                               chat_time_ms now) {
  if (!s)
    return CHAT_ERR_INVAL;
  chat_server *srv = s->srv;
  if (!json && len)
    return chat__srv_fail(srv, CHAT_ERR_INVAL, "json: NULL with len %zu",
                          len);
  if (chat__sess_closing(s))
    return chat__srv_fail(srv, CHAT_ERR_STATE, "session: closing (%u)",
                          (unsigned)s->close_code);
  chat__srv_clock(srv, now);
  srv->st.frames_in_total++;
  chat__enter(srv);
  chat_err rc = CHAT_OK;
  if (s->busy || s->in_head) {
    /* The frame is not decoded yet: a frame over the limit must not be
     * held in memory, and waiting frames are bounded in bytes. */
    if (len > srv->s.max_frame_bytes) {
      srv->st.frames_refused_total++;
      chat__sess_close(s, 1009, "frame too large");
    } else {
      hold(s, json ? json : "", len);
    }
  } else {
    rc = handle(s, json ? json : "", len, now);
  }
  chat__leave(srv);
  return rc;
}

chat_err chat_session_next_frame(chat_session *s, const char **json,
                                 size_t *len) {
  if (!s)
    return CHAT_ERR_INVAL;
  if (!json || !len)
    return chat__srv_fail(s->srv, CHAT_ERR_INVAL, "%s: NULL",
                          !json ? "json" : "len");
  chat_server *srv = s->srv;
  if (s->lent) {
    chat__frame_unref(srv, s->lent);
    s->lent = NULL;
  }
  outq_item *it = s->q_head;
  if (!it) {
    *json = NULL;
    *len = 0;
    return CHAT_ERR_AGAIN;
  }
  s->q_head = it->next;
  if (!s->q_head)
    s->q_tail = NULL;
  s->q_frames--;
  s->q_bytes -= it->frame->len;
  s->lent = it->frame;
  chat__free(&srv->a, it);
  *json = s->lent->data;
  *len = s->lent->len;
  return CHAT_OK;
}

uint32_t chat_session_wants(const chat_session *s) {
  if (!s)
    return 0;
  uint32_t w = s->q_head ? CHAT_WANT_WRITE : 0;
  /* Queued frames go out first (an error frame explains the close). */
  if (s->close_code && !s->q_head)
    w |= CHAT_WANT_CLOSE;
  return w;
}

uint16_t chat_session_close_code(const chat_session *s, const char **reason) {
  if (reason)
    *reason = s && s->close_code ? s->close_reason : "";
  return s && s->close_code ? s->close_code : 1000;
}

void *chat_session_user_data(const chat_session *s) {
  return s ? s->user_data : NULL;
}

void chat_server_close_session(chat_server *srv, chat_session *s,
                               chat_time_ms now) {
  if (!srv || !s || s->dead)
    return;
  chat__enter(srv);
  chat__srv_clock(srv, now);
  chat__expiry_remove(srv, s);
  chat__presence_detach(s, now);
  if (s->all_prev)
    s->all_prev->all_next = s->all_next;
  else
    srv->sessions = s->all_next;
  if (s->all_next)
    s->all_next->all_prev = s->all_prev;
  s->all_prev = s->all_next = NULL;
  s->dead = true;
  queue_clear(s);
  inq_clear(s);
  srv->st.sessions_open--;
  srv->st.sessions_closed_total++;
  chat__sess_unref(srv, s);
  chat__leave(srv);
}

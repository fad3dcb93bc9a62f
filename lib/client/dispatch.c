/* Inbound frames: decode, then hand each type to its concern. `hello`
 * starts the resume; before it nothing else is accepted. */
#include "client/client_internal.h"

#include <string.h>

static void on_hello(chat_client *c, const chat_hello *h, chat_time_ms now) {
  char *uid;
  if (chat__client_dup(c, h->user_id, &uid)) {
    c->want_close = true;
    return;
  }
  chat__free(&c->a, c->user_id);
  c->user_id = uid;
  c->heartbeat_ms = h->heartbeat_ms;
  c->max_body_bytes = h->limits.max_body_bytes ? h->limits.max_body_bytes
                                               : CHAT__CLIENT_DEF_MAX_BODY;
  c->ready_at = now;
  c->resumed = false;
  c->resume_msgs = 0;
  /* Paced resumes (section 8): this many conversations per resume frame. */
  c->resume_batch = h->has_resume_batch_hint ? h->resume_batch_hint : 0;
  c->resume_round = 0;
  chat__client_resume_reset(c);
  /* resume goes first, then the outbox in order, presence and marks; the
   * callbacks run after, so a send made from one queues behind them. */
  c->state = CHAT_CLIENT_RESUMING;
  chat_err e = chat__client_resume_send(c);
  chat__client_outbox_flush(c, now);
  chat__client_presence_send(c);
  chat__client_marks_flush(c, now);
  c->state = CHAT_CLIENT_HANDSHAKE;
  chat__client_set_state(c, CHAT_CLIENT_RESUMING);
  if (e)
    chat__client_error(c, e, NULL, "cannot build resume", 0, false);
  if (c->cb.on_hello)
    c->cb.on_hello(c->ud, c, h);
}

static void on_error_frame(chat_client *c, const chat_error_frame *ef,
                           chat_time_ms now) {
  chat_client_error ce = {.err = CHAT_OK, .wire = ef,
                          .message = ef->message.ptr ? ef->message.ptr : ""};
  /* The server's resume answer stopped at its queue budget (too many
   * conversations): what it left out comes over REST. */
  if (ef->wire == CHAT_WIRE_TOO_LARGE && ef->ref.ptr && ef->ref.len == 6 &&
      memcmp(ef->ref.ptr, "resume", 6) == 0) {
    chat_err e = chat__creq_sync(c);
    if (e)
      chat__client_error(c, e, NULL, "cannot start the REST sync", 0, false);
    if (c->cb.on_error)
      c->cb.on_error(c->ud, c, &ce);
    return;
  }
  if (chat__client_outbox_refused(c, ef, now))
    return;
  if (c->cb.on_error)
    c->cb.on_error(c->ud, c, &ce);
}

/* Does the conversation list this user (unknown before hello: yes)? */
static bool member_of(const chat_client *c, const chat_conversation *conv) {
  if (!c->user_id)
    return true;
  for (size_t i = 0; i < conv->n_members; i++)
    if (strcmp(conv->members[i], c->user_id) == 0)
      return true;
  return false;
}

static void on_live_message(chat_client *c, const chat_message *m,
                            chat_time_ms now) {
  bool raise = c->state == CHAT_CLIENT_READY &&
               !chat__creq_gap_is_open(c, m->conversation_id);
  uint64_t max_id = 0;
  chat__client_store_message(c, m, CHAT_ORIGIN_LIVE, raise, &max_id);
  if (!chat__client_is_own(c, m))
    chat__client_auto_delivered(c, m->conversation_id, max_id, now);
}

static void on_receipt(chat_client *c, const chat_receipt *r) {
  if (c->st->set_receipt(c->st->self, r->conversation_id, r->message_id,
                         (int)r->state))
    chat__client_error(c, CHAT_ERR_MODULE, r->conversation_id,
                       "cannot store a receipt", 0, false);
  if (c->cb.on_receipt)
    c->cb.on_receipt(c->ud, c, r);
}

static void dispatch(chat_client *c, const chat_frame *f, chat_time_ms now) {
  if (c->state == CHAT_CLIENT_HANDSHAKE) {
    if (f->type == CHAT_FRAME_HELLO)
      on_hello(c, f->hello, now);
    else
      chat__client_error(c, CHAT_ERR_STATE, NULL,
                         "frame before hello ignored", 0, false);
    return;
  }
  switch (f->type) {
  case CHAT_FRAME_HELLO:
    chat__client_error(c, CHAT_ERR_STATE, NULL, "second hello ignored", 0,
                       false);
    break;
  case CHAT_FRAME_ACK:
    chat__client_outbox_ack(c, f->ack);
    break;
  case CHAT_FRAME_MESSAGE:
    on_live_message(c, f->message, now);
    break;
  case CHAT_FRAME_RECEIPT:
    on_receipt(c, f->receipt);
    break;
  case CHAT_FRAME_HISTORY:
    chat__client_on_history(c, f->history, now);
    break;
  case CHAT_FRAME_RESUME_FAILED:
    chat__client_on_resume_failed(c, f->resume_failed, now);
    break;
  case CHAT_FRAME_RESUMED:
    chat__client_on_resumed(c, now);
    break;
  case CHAT_FRAME_TYPING:
    if (f->typing->user_id)
      chat__client_peer_typing(c, f->typing, now);
    break;
  case CHAT_FRAME_PRESENCE:
    if (c->cb.on_presence)
      c->cb.on_presence(c->ud, c, f->presence);
    break;
  case CHAT_FRAME_STATE_CHANGE:
    chat__client_marks_state_change(c, f->state_change);
    if (c->cb.on_state_change)
      c->cb.on_state_change(c->ud, c, f->state_change);
    break;
  case CHAT_FRAME_CONVERSATION:
    chat__client_put_conversation(c, f->conversation);
    if (!member_of(c, f->conversation))
      /* Removed (or left from another device): stop resuming it. */
      chat__client_left(c, f->conversation->conversation_id);
    break;
  case CHAT_FRAME_ERROR:
    on_error_frame(c, f->error, now);
    break;
  case CHAT_FRAME_PONG:
    break;
  case CHAT_FRAME_GOAWAY:
    /* The close follows; closed() then waits as the server asked. */
    c->goaway = true;
    c->goaway_ms = f->goaway->retry_after_ms;
    chat__client_log(c, CHAT_LOG_INFO, "the server is going away:",
                     f->goaway->reason.ptr, NULL);
    break;
  default:
    chat__client_error(c, CHAT_ERR_UNKNOWN_TYPE, NULL,
                       "unexpected frame type", 0, false);
    break;
  }
}

chat_err chat_client_on_frame(chat_client *c, const char *json, size_t len,
                              chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (!json && len > 0)
    return chat__client_fail(c, CHAT_ERR_INVAL, "json: NULL with len %zu",
                             len);
  if (c->state != CHAT_CLIENT_HANDSHAKE && c->state != CHAT_CLIENT_RESUMING &&
      c->state != CHAT_CLIENT_READY)
    return chat__client_fail(c, CHAT_ERR_STATE,
                             "on_frame: no connection is open (state %s)",
                             chat_client_state_name(c->state));
  c->last_in = now;
  const chat_frame *f;
  chat_decode_error de;
  chat_err e = chat_codec_decode(c->dec, CHAT_DIR_TO_CLIENT, json, len, &f,
                                 &de);
  if (e == CHAT_ERR_NOMEM)
    return chat__client_fail(c, e, "out of memory decoding a frame");
  if (e) {
    chat__client_error(c, e, NULL, de.message ? de.message : chat_strerror(e),
                       0, false);
    return CHAT_OK;
  }
  dispatch(c, f, now);
  return CHAT_OK;
}

/* Frame type -> handler. Every handler either acts or answers with an
 * `error` frame; a refused frame changes nothing. Every handler ends with
 * chat__sess_frame_done(), at once or from its last continuation. */
#include "server_internal.h"

void chat__dispatch(chat_session *s, const chat_frame *f, chat_time_ms now) {
  chat__srv_clock(s->srv, now);
  switch (f->type) {
  case CHAT_FRAME_SEND:
    chat__on_send(s, f->send, now);
    break;
  case CHAT_FRAME_EDIT:
    chat__on_edit(s, f->edit, now);
    break;
  case CHAT_FRAME_DELETE:
    chat__on_delete(s, f->deletion, now);
    break;
  case CHAT_FRAME_DELIVERED:
  case CHAT_FRAME_READ:
    chat__on_mark(s, f->type, f->mark, now);
    break;
  case CHAT_FRAME_TYPING:
    chat__on_typing(s, f->typing, now);
    break;
  case CHAT_FRAME_RESUME:
    chat__on_resume(s, f->resume, now);
    break;
  case CHAT_FRAME_PRESENCE_SUBSCRIBE:
    chat__on_subscribe(s, f->presence_subscribe, now);
    break;
  case CHAT_FRAME_PING: {
    chat_frame pong = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_PONG,
                       .ping = f->ping};
    chat__sess_send(s, &pong);
    chat__sess_frame_done(s);
    break;
  }
  default:
    /* The decoder only lets client frame types through in this direction. */
    chat__sess_error(s, CHAT_WIRE_UNKNOWN_TYPE, "type not accepted",
                     chat_frame_type_name(f->type), 0);
    chat__sess_frame_done(s);
    break;
  }
}

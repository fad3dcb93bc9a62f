/* Shared between the codec's object code, decoder and encoder. */
#ifndef CHAT__FRAME_INTERNAL_H
#define CHAT__FRAME_INTERNAL_H

#include <chat/frame.h>

#include "common/arena.h"
#include "common/buf.h"

/* Fixed limits on free text that the wire contract leaves open. They keep a
 * hostile peer from parking megabytes in fields nobody displays. */
#define CHAT__MAX_NAME_BYTES 256     /* conversation name */
#define CHAT__MAX_MESSAGE_BYTES 1024 /* error.message */
#define CHAT__MAX_CODE_BYTES 64      /* error.code, resume_failed.reason */
#define CHAT__MAX_REF_BYTES 64       /* error.ref: a client_msg_id or a type */
#define CHAT__MAX_NONCE_BYTES 256    /* ping/pong nonce, as JSON text */

struct chat_codec {
  chat_allocator a;
  chat_codec_settings s; /* every zero already replaced by its default */
  chat__arena arena;     /* what the last decode lent out */
  chat__arena scratch;   /* encoder's own scratch (nonce validation) */
  chat__buf out;         /* what the last encode lent out */
  char errmsg[192];
};

struct chat__jw;
/* The message and conversation objects of PROTOCOL.md, braces included,
 * for REST bodies (same field names and order as in frames). */
void chat__jw_message_object(struct chat__jw *w, const chat_message *m);
void chat__jw_conversation_object(struct chat__jw *w,
                                  const chat_conversation *c);

/* Maps a wire name to its type; CHAT_FRAME_NONE when unknown. */
chat_frame_type chat__frame_type_lookup(const char *name, size_t len);

#endif

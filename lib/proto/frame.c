/* The codec object, the frame-type table and the wire-error names. */
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "frame_internal.h"

typedef struct type_entry {
  const char *name;
  uint8_t len;
  int8_t dir; /* CHAT_DIR_TO_SERVER, CHAT_DIR_TO_CLIENT, or 2 for both */
} type_entry;

#define BOTH 2
/* Indexed by chat_frame_type. */
static const type_entry types[] = {
  [CHAT_FRAME_NONE] = {NULL, 0, -1},
  [CHAT_FRAME_SEND] = {"send", 4, CHAT_DIR_TO_SERVER},
  [CHAT_FRAME_DELIVERED] = {"delivered", 9, CHAT_DIR_TO_SERVER},
  [CHAT_FRAME_READ] = {"read", 4, CHAT_DIR_TO_SERVER},
  [CHAT_FRAME_TYPING] = {"typing", 6, BOTH},
  [CHAT_FRAME_RESUME] = {"resume", 6, CHAT_DIR_TO_SERVER},
  [CHAT_FRAME_PRESENCE_SUBSCRIBE] = {"presence_subscribe", 18,
                                     CHAT_DIR_TO_SERVER},
  [CHAT_FRAME_PING] = {"ping", 4, CHAT_DIR_TO_SERVER},
  [CHAT_FRAME_HELLO] = {"hello", 5, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_ACK] = {"ack", 3, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_MESSAGE] = {"message", 7, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_RECEIPT] = {"receipt", 7, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_HISTORY] = {"history", 7, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_RESUME_FAILED] = {"resume_failed", 13, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_RESUMED] = {"resumed", 7, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_PRESENCE] = {"presence", 8, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_STATE_CHANGE] = {"state_change", 12, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_CONVERSATION] = {"conversation", 12, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_ERROR] = {"error", 5, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_PONG] = {"pong", 4, CHAT_DIR_TO_CLIENT},
  [CHAT_FRAME_EDIT] = {"edit", 4, CHAT_DIR_TO_SERVER},
  [CHAT_FRAME_DELETE] = {"delete", 6, CHAT_DIR_TO_SERVER},
  [CHAT_FRAME_GOAWAY] = {"goaway", 6, CHAT_DIR_TO_CLIENT},
};
#define N_TYPES (sizeof types / sizeof types[0])

const char *chat_frame_type_name(chat_frame_type t) {
  return (unsigned)t < N_TYPES ? types[t].name : NULL;
}

int chat_frame_type_direction(chat_frame_type t) {
  if ((unsigned)t >= N_TYPES || t == CHAT_FRAME_NONE)
    return -1;
  return types[t].dir == BOTH ? CHAT_DIR_TO_SERVER : types[t].dir;
}

chat_frame_type chat__frame_type_lookup(const char *name, size_t len) {
  /* Two dozen entries: a length check first makes the scan cheap. */
  for (size_t i = 1; i < N_TYPES; i++)
    if (types[i].len == len && memcmp(types[i].name, name, len) == 0)
      return (chat_frame_type)i;
  return CHAT_FRAME_NONE;
}

static const char *const wire_names[] = {
  [CHAT_WIRE_OTHER] = NULL,
  [CHAT_WIRE_BAD_FRAME] = "bad_frame",
  [CHAT_WIRE_UNKNOWN_TYPE] = "unknown_type",
  [CHAT_WIRE_TOO_LARGE] = "too_large",
  [CHAT_WIRE_NOT_MEMBER] = "not_member",
  [CHAT_WIRE_NO_SUCH_CONVERSATION] = "no_such_conversation",
  [CHAT_WIRE_RATE_LIMITED] = "rate_limited",
  [CHAT_WIRE_BAD_ID] = "bad_id",
  [CHAT_WIRE_INTERNAL] = "internal",
  [CHAT_WIRE_FORBIDDEN] = "forbidden",
  [CHAT_WIRE_NOT_FOUND] = "not_found",
};
#define N_WIRE (sizeof wire_names / sizeof wire_names[0])

const char *chat_wire_error_str(chat_wire_error e) {
  return (unsigned)e < N_WIRE ? wire_names[e] : NULL;
}

chat_wire_error chat_wire_error_from_str(const char *code, size_t len) {
  if (!code)
    return CHAT_WIRE_OTHER;
  for (size_t w = 1; w < N_WIRE; w++)
    if (strlen(wire_names[w]) == len && memcmp(wire_names[w], code, len) == 0)
      return (chat_wire_error)w;
  return CHAT_WIRE_OTHER;
}

chat_wire_error chat_wire_error_from_err(chat_err e) {
  switch (e) {
  case CHAT_ERR_UNKNOWN_TYPE:
    return CHAT_WIRE_UNKNOWN_TYPE;
  case CHAT_ERR_BAD_ID:
  case CHAT_ERR_BAD_MESSAGE_ID:
    return CHAT_WIRE_BAD_ID;
  case CHAT_ERR_TOO_LARGE:
  case CHAT_ERR_TOO_MANY:
  case CHAT_ERR_FRAME_TOO_LARGE:
    return CHAT_WIRE_TOO_LARGE;
  case CHAT_ERR_JSON:
  case CHAT_ERR_NOT_OBJECT:
  case CHAT_ERR_NO_TYPE:
  case CHAT_ERR_MISSING_FIELD:
  case CHAT_ERR_FIELD_TYPE:
  case CHAT_ERR_BAD_VALUE:
  case CHAT_ERR_BAD_UTF8:
  case CHAT_ERR_TOO_DEEP:
  case CHAT_ERR_DUPLICATE_KEY:
  case CHAT_ERR_BAD_NUMBER:
    return CHAT_WIRE_BAD_FRAME;
  default:
    return CHAT_WIRE_INTERNAL;
  }
}

static uint32_t or_default(uint32_t v, uint32_t def) { return v ? v : def; }

chat_err chat_codec_new(chat_codec **out, const chat_codec_settings *settings,
                        const chat_allocator *alloc, chat_errbuf *err) {
  if (!out)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "out: NULL");
  *out = NULL;
  if (settings &&
      !chat__version_ok(settings->version, CHAT_CODEC_SETTINGS_V1))
    return chat__version_refused(err, "settings", settings->version,
                                 CHAT_CODEC_SETTINGS_V1);
  chat_allocator a;
  chat_err rc = chat__allocator_init(&a, alloc);
  if (rc != CHAT_OK)
    return chat__errbuf_set(err, rc,
                            "alloc: alloc, resize and release must all be "
                            "set");
  chat_codec *c = chat__calloc(&a, 1, sizeof *c);
  if (!c)
    return chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
  c->a = a;
  chat_codec_settings s = {0};
  if (settings)
    s = *settings;
  s.version = CHAT_CODEC_SETTINGS_V1;
  s.max_frame_bytes = or_default(s.max_frame_bytes, 131072);
  s.max_body_bytes = or_default(s.max_body_bytes, 65536);
  s.max_presence_ids = or_default(s.max_presence_ids, 100);
  s.max_resume_entries = or_default(s.max_resume_entries, 4096);
  s.max_media_refs = or_default(s.max_media_refs, 32);
  s.max_members = or_default(s.max_members, 1024);
  s.max_history = or_default(s.max_history, 1000);
  s.max_depth = or_default(s.max_depth, 16);
  s.max_frame_bytes_to_client =
      or_default(s.max_frame_bytes_to_client, 1048576);
  c->s = s;
  /* The arenas and buffer keep a pointer to c->a, which lives as long as
   * they do. */
  chat__arena_init(&c->arena, &c->a);
  chat__arena_init(&c->scratch, &c->a);
  chat__buf_init(&c->out, &c->a);
  *out = c;
  return CHAT_OK;
}

void chat_codec_free(chat_codec *c) {
  if (!c)
    return;
  chat__arena_free(&c->arena);
  chat__arena_free(&c->scratch);
  chat__buf_free(&c->out);
  chat_allocator a = c->a;
  chat__free(&a, c);
}

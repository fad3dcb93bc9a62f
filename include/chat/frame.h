/* The chat.v1 frame codec: every frame of PROTOCOL.md sections 2, 3 and 8
 * as a typed C struct, decoded strictly from JSON and encoded back.
 *
 * Ownership: a chat_codec owns one decode arena and one encode buffer.
 * Everything a decode returns (the chat_frame, its payload struct, every
 * string and array it points to) is owned by the codec and stays valid until
 * the next chat_codec_decode() or chat_codec_free() on that codec. Likewise
 * the text an encode returns stays valid until the next chat_codec_encode()
 * or chat_codec_free(). Decode and encode do not invalidate each other.
 * Structs the caller passes to chat_codec_encode() are only read during the
 * call.
 *
 * Threads: a codec may be used from one thread at a time; separate codecs
 * are independent. */
#ifndef CHAT_FRAME_H
#define CHAT_FRAME_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Basic types */

/** Text that may hold any UTF-8, including U+0000. ptr is NUL-terminated as
 * a convenience, but len is authoritative. ptr == NULL means "absent" where
 * a field is optional. */
typedef struct chat_str {
  const char *ptr;
  size_t len;
} chat_str;

/** Frame types. Values are stable (append-only). `typing` exists in both
 * directions with one struct; the server-to-client form adds user_id.
 * EDIT, DELETE and GOAWAY are the additions of PROTOCOL.md section 8; their
 * payloads live in the CHAT_FRAME_V2 fields of chat_frame. */
typedef enum chat_frame_type {
  CHAT_FRAME_NONE = 0,
  /* client to server (PROTOCOL.md section 2) */
  CHAT_FRAME_SEND = 1,
  CHAT_FRAME_DELIVERED = 2,
  CHAT_FRAME_READ = 3,
  CHAT_FRAME_TYPING = 4, /* both directions */
  CHAT_FRAME_RESUME = 5,
  CHAT_FRAME_PRESENCE_SUBSCRIBE = 6,
  CHAT_FRAME_PING = 7,
  /* server to client (PROTOCOL.md section 3) */
  CHAT_FRAME_HELLO = 8,
  CHAT_FRAME_ACK = 9,
  CHAT_FRAME_MESSAGE = 10,
  CHAT_FRAME_RECEIPT = 11,
  CHAT_FRAME_HISTORY = 12,
  CHAT_FRAME_RESUME_FAILED = 13,
  CHAT_FRAME_RESUMED = 14,
  CHAT_FRAME_PRESENCE = 15,
  CHAT_FRAME_STATE_CHANGE = 16,
  CHAT_FRAME_CONVERSATION = 17,
  CHAT_FRAME_ERROR = 18,
  CHAT_FRAME_PONG = 19,
  /* section 8: client to server */
  CHAT_FRAME_EDIT = 20,
  CHAT_FRAME_DELETE = 21,
  /* section 8: server to client */
  CHAT_FRAME_GOAWAY = 22
} chat_frame_type;

/** The wire name ("presence_subscribe"), or NULL for an unknown value. */
CHAT_API const char *chat_frame_type_name(chat_frame_type t);

/** Direction a frame travels in; decoders accept only their direction. */
typedef enum chat_direction {
  CHAT_DIR_TO_SERVER = 0, /* client -> server frames */
  CHAT_DIR_TO_CLIENT = 1  /* server -> client frames */
} chat_direction;

/** A message's body_type. SYSTEM, EDIT and DELETE are made by the server
 * only: a client's `send` carrying one is refused. An EDIT or DELETE
 * message is a log entry of its own that names its target (target_id). */
typedef enum chat_body_type {
  CHAT_BODY_TEXT = 0, /* the default when body_type is absent */
  CHAT_BODY_MEDIA = 1,
  CHAT_BODY_SYSTEM = 2, /* server-only: refused in a client's send */
  CHAT_BODY_EDIT = 3,   /* server-only: body is the target's new body */
  CHAT_BODY_DELETE = 4  /* server-only: body is empty */
} chat_body_type;

/** Who sent a message (PROTOCOL.md section 8). On the wire `sender_kind`
 * is absent for users and "bot" for bots; the encoder never writes "user",
 * and the decoder reads "user" as CHAT_SENDER_USER. */
typedef enum chat_sender_kind {
  CHAT_SENDER_USER = 0,
  CHAT_SENDER_BOT = 1
} chat_sender_kind;

typedef enum chat_receipt_state {
  CHAT_RECEIPT_NONE = 0, /* sent only: no receipt yet (never on the wire) */
  CHAT_RECEIPT_DELIVERED = 1,
  CHAT_RECEIPT_READ = 2
} chat_receipt_state;

typedef enum chat_presence_state {
  CHAT_PRESENCE_OFFLINE = 0,
  CHAT_PRESENCE_ONLINE = 1,
  CHAT_PRESENCE_IDLE = 2
} chat_presence_state;

typedef enum chat_conversation_type {
  CHAT_CONVERSATION_DIRECT = 1,
  CHAT_CONVERSATION_GROUP = 2
} chat_conversation_type;

/** The `code` of an error frame (PROTOCOL.md section 3). A separate namespace
 * from chat_err. CHAT_WIRE_OTHER stands for a code this library version does
 * not know (a newer server); the text is kept in chat_error_frame.code. */
typedef enum chat_wire_error {
  CHAT_WIRE_OTHER = 0,
  CHAT_WIRE_BAD_FRAME = 1,
  CHAT_WIRE_UNKNOWN_TYPE = 2,
  CHAT_WIRE_TOO_LARGE = 3,
  CHAT_WIRE_NOT_MEMBER = 4,
  CHAT_WIRE_NO_SUCH_CONVERSATION = 5,
  CHAT_WIRE_RATE_LIMITED = 6,
  CHAT_WIRE_BAD_ID = 7,
  CHAT_WIRE_INTERNAL = 8,
  /* section 8 */
  CHAT_WIRE_FORBIDDEN = 9, /* the caller may not do this (edit, admin) */
  CHAT_WIRE_NOT_FOUND = 10 /* edit/delete: no such target message */
} chat_wire_error;

/** "bad_frame" etc.; NULL for CHAT_WIRE_OTHER or an unknown value. */
CHAT_API const char *chat_wire_error_str(chat_wire_error e);

/** The way back from chat_wire_error_str(): the value whose code is the
 * @p len bytes at @p code ("not_found" -> CHAT_WIRE_NOT_FOUND), or
 * CHAT_WIRE_OTHER for a code this version does not know (or NULL). Also
 * fits the `code` of REST error bodies that share a name with a wire code.
 * @since 1.0 */
CHAT_API chat_wire_error chat_wire_error_from_str(const char *code,
                                                  size_t len);

/** The wire code that answers a decode failure (PROTOCOL.md section 7):
 * CHAT_ERR_UNKNOWN_TYPE -> unknown_type; BAD_ID and BAD_MESSAGE_ID -> bad_id;
 * TOO_LARGE and TOO_MANY -> too_large; NOMEM and anything unexpected ->
 * internal; every other decode error -> bad_frame. */
CHAT_API chat_wire_error chat_wire_error_from_err(chat_err e);

/* ------------------------------------------------------------------------
 * Payloads. Ids are NUL-terminated strings that passed the id rules of
 * PROTOCOL.md section 1; message ids are integers in 0..INT64_MAX (the
 * Snowflake layout uses 63 bits, and SQL BIGINT is signed). Optional fields:
 * a NULL pointer, or a has_* flag next to the value. */

/** client -> server `send`. body_type may be TEXT or MEDIA (MEDIA needs at
 * least one media_refs entry). */
typedef struct chat_send {
  const char *client_msg_id;
  const char *conversation_id;
  chat_str body;
  bool has_reply_to;
  uint64_t reply_to;
  const char *const *media_refs; /* media ids; NULL when absent */
  size_t n_media_refs;
  chat_body_type body_type;
} chat_send;

/** client -> server `edit` (PROTOCOL.md section 8): replace the body of
 * the sender's own message target_id. Acked like `send` (idempotent by
 * client_msg_id); the body follows the send body's limits. */
typedef struct chat_edit {
  const char *client_msg_id;
  const char *conversation_id;
  uint64_t target_id;
  chat_str body;
} chat_edit;

/** client -> server `delete` (PROTOCOL.md section 8): erase message
 * target_id (the sender's own, or any message when the caller is a group
 * admin). Acked like `send`. The frame field is chat_frame.deletion, since
 * `delete` is a C++ keyword. */
typedef struct chat_delete {
  const char *client_msg_id;
  const char *conversation_id;
  uint64_t target_id;
} chat_delete;

/** client -> server `delivered` and `read` (the frame type tells which) */
typedef struct chat_mark {
  const char *conversation_id;
  uint64_t up_to_message_id;
} chat_mark;

/** `typing` in both directions; user_id is NULL client -> server and
 * required server -> client. */
typedef struct chat_typing {
  const char *conversation_id;
  const char *user_id;
  bool is_typing;
} chat_typing;

typedef struct chat_resume_entry {
  const char *conversation_id;
  uint64_t message_id;
} chat_resume_entry;

/** client -> server `resume`; last_seen keeps the JSON object's order, and a
 * conversation listed twice is refused (CHAT_ERR_DUPLICATE_KEY). */
typedef struct chat_resume {
  const chat_resume_entry *last_seen;
  size_t n_last_seen;
  bool has_since;
  uint64_t since;
} chat_resume;

/** client -> server `presence_subscribe` */
typedef struct chat_presence_subscribe {
  const char *const *user_ids;
  size_t n_user_ids;
} chat_presence_subscribe;

/** `ping` (client -> server) and `pong` (server -> client). A nonce may be a
 * JSON string or number; it is carried as its exact JSON text (quotes and
 * escapes included) so that pong echoes it byte for byte. */
typedef struct chat_ping {
  chat_str nonce_json; /* ptr NULL when absent */
} chat_ping;

typedef struct chat_limits {
  uint32_t max_body_bytes;
  uint32_t max_frame_bytes;
  uint32_t rate_per_minute;
  uint32_t resume_max_messages;
  uint64_t resume_max_age_ms;
} chat_limits;

/** server -> client `hello` */
typedef struct chat_hello {
  const char *user_id;
  const char *device_id;
  const char *session_id;
  int64_t server_ts;
  uint32_t heartbeat_ms;
  chat_limits limits;
  /* Section 8 additions. On the wire resume_batch_hint is a member of
   * `limits`, but chat_limits is embedded by value here and has no version,
   * so it is frozen (the ABI rule for unversioned structs): growing it would
   * move every field after it. Fields of `limits` added later go here, at
   * the end of chat_hello.
   * resume_batch_hint: how many conversations the server would like one
   * `resume` frame to catch up (1 or more); absent when the server does not
   * pace resumes. */
  bool has_resume_batch_hint;
  uint32_t resume_batch_hint;
} chat_hello;

/** server -> client `ack` */
typedef struct chat_ack {
  const char *client_msg_id;
  uint64_t message_id;
  int64_t server_ts;
  bool duplicate;
} chat_ack;

/** server -> client `message`, each element of `history`, a conversation's
 * last_message, and the message objects of REST history. client_msg_id is
 * NULL for server-made (system) messages.
 *
 * Section 8 fields, all zero when absent:
 * - target_id: the message an EDIT or DELETE entry applies to; required
 *   with those body types and refused with any other.
 * - sender_kind: CHAT_SENDER_BOT for a bot's message.
 * - edited_ts, deleted: the state of a message read back from the store
 *   (REST history, `history` frames, last_message): when it was last
 *   edited (Unix ms), and whether it was deleted (its body is then empty).
 *   Live `message` frames never carry them. */
typedef struct chat_message {
  uint64_t message_id;
  const char *conversation_id;
  const char *sender_id;
  chat_str body;
  int64_t server_ts;
  const char *client_msg_id;
  bool has_reply_to;
  uint64_t reply_to;
  const char *const *media_refs;
  size_t n_media_refs;
  chat_body_type body_type;
  /* section 8 */
  bool has_target_id;
  uint64_t target_id;
  chat_sender_kind sender_kind;
  bool has_edited_ts;
  int64_t edited_ts;
  bool deleted;
} chat_message;

/** server -> client `receipt`; counts only for groups. */
typedef struct chat_receipt {
  const char *conversation_id;
  uint64_t message_id;
  chat_receipt_state state;
  const char *member_id;
  bool has_counts;
  uint32_t delivered_count;
  uint32_t read_count;
} chat_receipt;

/** server -> client `history`; messages oldest first. */
typedef struct chat_history {
  const char *conversation_id;
  const chat_message *messages;
  size_t n_messages;
  bool complete;
} chat_history;

/** server -> client `resume_failed`; reason is "too_old" today, kept as text
 * so newer servers' reasons pass through. */
typedef struct chat_resume_failed {
  const char *conversation_id;
  chat_str reason;
} chat_resume_failed;

/** server -> client `goaway` (PROTOCOL.md section 8): the server is about
 * to close this session on purpose (1012 drain, 1013 overload). The client
 * waits a uniformly random delay in [0, retry_after_ms] before it
 * reconnects, instead of its own backoff. reason is "drain" or "overload"
 * today, kept as text so newer servers' reasons pass through. */
typedef struct chat_goaway {
  chat_str reason;
  uint64_t retry_after_ms; /* 0..INT64_MAX */
} chat_goaway;

/** server -> client `resumed` */
typedef struct chat_resumed {
  uint32_t conversations;
  uint32_t messages;
} chat_resumed;

/** server -> client `presence`; has_last_active is false for JSON null. */
typedef struct chat_presence {
  const char *user_id;
  chat_presence_state state;
  bool has_last_active;
  int64_t last_active_ts;
} chat_presence;

/** server -> client `state_change` */
typedef struct chat_state_change {
  const char *conversation_id;
  uint64_t last_read_message_id;
} chat_state_change;

/** The conversation object of PROTOCOL.md section 5, as nested in the
 * `conversation` frame. name is absent (ptr NULL) for JSON null or a missing
 * name; last_message is NULL for JSON null. admins (section 8) has the same
 * limit as members; an object without it (an older server) decodes with
 * n_admins 0, and the encoder always writes it (empty for direct chats). */
typedef struct chat_conversation {
  const char *conversation_id;
  chat_conversation_type type;
  chat_str name;
  const char *const *members;
  size_t n_members;
  const chat_message *last_message;
  uint32_t unread_count;
  bool has_last_read;
  uint64_t last_read_message_id;
  /* section 8 */
  const char *const *admins;
  size_t n_admins;
} chat_conversation;

/** server -> client `error`. code is the wire text; wire is its enum value
 * (CHAT_WIRE_OTHER for a code this version does not know). When encoding,
 * code may be NULL and wire is used. ref is NULL when absent. */
typedef struct chat_error_frame {
  chat_wire_error wire;
  const char *code;
  chat_str message;
  chat_str ref;
  bool has_retry_after;
  uint64_t retry_after_ms;
} chat_error_frame;

/** A frame: its type and a pointer to the payload for that type; every other
 * payload pointer is NULL. `delivered` and `read` share `mark`; `ping` and
 * `pong` share `ping`. version says which payload fields the struct has:
 * new ones are only ever appended, and the encoder reads them only from
 * frames whose version says they are there (an EDIT, DELETE or GOAWAY frame
 * needs CHAT_FRAME_V2). Decoded frames carry the newest version. */
#define CHAT_FRAME_V1 1
#define CHAT_FRAME_V2 2 /* edit, deletion, goaway (PROTOCOL.md section 8) */
typedef struct chat_frame {
  uint32_t version;
  chat_frame_type type;
  const chat_send *send;
  const chat_mark *mark;
  const chat_typing *typing;
  const chat_resume *resume;
  const chat_presence_subscribe *presence_subscribe;
  const chat_ping *ping;
  const chat_hello *hello;
  const chat_ack *ack;
  const chat_message *message;
  const chat_receipt *receipt;
  const chat_history *history;
  const chat_resume_failed *resume_failed;
  const chat_resumed *resumed;
  const chat_presence *presence;
  const chat_state_change *state_change;
  const chat_conversation *conversation;
  const chat_error_frame *error;
  /* since CHAT_FRAME_V2 */
  const chat_edit *edit;
  const chat_delete *deletion; /* `delete`, a C++ keyword */
  const chat_goaway *goaway;
} chat_frame;

/* ------------------------------------------------------------------------
 * Codec */

/** Limits the decoder enforces. Zero in any field means its default. */
#define CHAT_CODEC_SETTINGS_V1 1
typedef struct chat_codec_settings {
  uint32_t version;             /* CHAT_CODEC_SETTINGS_V1 */
  uint32_t max_frame_bytes;     /* a frame to the server; default 131072 */
  uint32_t max_body_bytes;      /* decoded body; default 65536 (64 KiB) */
  uint32_t max_presence_ids;    /* presence_subscribe; default 100 */
  uint32_t max_resume_entries;  /* resume.last_seen; default 4096 */
  uint32_t max_media_refs;      /* per message; default 32 */
  uint32_t max_members;         /* members, admins; default 1024 */
  uint32_t max_history;         /* messages in one history frame; default 1000 */
  uint32_t max_depth;           /* JSON nesting; default 16 */
  /* A frame to the client: larger, since a 64 KiB body of control
   * characters escapes to six times its size and history frames batch
   * messages. Default 1048576 (1 MiB). */
  uint32_t max_frame_bytes_to_client;
} chat_codec_settings;

typedef struct chat_codec chat_codec;

/** What went wrong in the last failed decode, for an `error` frame.
 * message is a short, static-or-codec-owned text ("missing field
 * \"conversation_id\""); ref is what error.ref should carry (the
 * client_msg_id of a send that carried a valid one, otherwise the frame's
 * type, or NULL when even that is unknown); field names the offending field
 * or NULL. All three stay valid until the next decode or chat_codec_free(). */
typedef struct chat_decode_error {
  chat_err err;
  chat_wire_error wire;
  const char *message;
  const char *ref;
  const char *field;
} chat_decode_error;

/** Create a codec. @p settings and @p alloc are copied (NULL: defaults and
 * libc). On failure *out is set to NULL and @p err (may be NULL) says which
 * argument was refused.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL out is NULL, settings->version is 0 or newer than
 *         this library knows, or alloc is half filled
 * @retval CHAT_ERR_NOMEM
 * @since 1.0 */
CHAT_API chat_err chat_codec_new(chat_codec **out,
                                 const chat_codec_settings *settings,
                                 const chat_allocator *alloc,
                                 chat_errbuf *err);

/** Free the codec and everything it lent out. NULL is a no-op. */
CHAT_API void chat_codec_free(chat_codec *codec);

/** Decode one frame travelling in direction @p dir. @p json need not be
 * NUL-terminated; it is only read during the call. On success *out points
 * to a codec-owned frame (see the file comment for its lifetime). On
 * failure *out is NULL and, when @p err is not NULL, *err says why.
 * Unknown extra fields are ignored.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL codec, json (with len > 0) or out is NULL
 * @retval CHAT_ERR_FRAME_TOO_LARGE len over the limit for @p dir
 * @retval CHAT_ERR_BAD_UTF8 bytes that are not UTF-8
 * @retval CHAT_ERR_JSON, CHAT_ERR_TOO_DEEP, CHAT_ERR_DUPLICATE_KEY
 * @retval CHAT_ERR_NOT_OBJECT, CHAT_ERR_NO_TYPE, CHAT_ERR_UNKNOWN_TYPE
 * @retval CHAT_ERR_MISSING_FIELD, CHAT_ERR_FIELD_TYPE, CHAT_ERR_BAD_VALUE
 * @retval CHAT_ERR_BAD_ID, CHAT_ERR_BAD_MESSAGE_ID, CHAT_ERR_BAD_NUMBER
 * @retval CHAT_ERR_TOO_LARGE body over max_body_bytes (or an over-long text)
 * @retval CHAT_ERR_TOO_MANY a list over its limit
 * @retval CHAT_ERR_NOMEM
 * @since 0.1 */
CHAT_API chat_err chat_codec_decode(chat_codec *codec, chat_direction dir,
                                   const char *json, size_t len,
                                   const chat_frame **out,
                                   chat_decode_error *err);

/** Encode @p frame as one JSON object (no trailing newline). The text is
 * codec-owned (see the file comment) and is NOT NUL-terminated.
 * Encoding validates what it writes as strictly as decoding reads it, so an
 * encoded frame always decodes again.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL argument, unknown frame version or type, a
 *         type newer than the frame's version, the payload pointer for the
 *         type is NULL, or a required field is NULL
 * @retval CHAT_ERR_BAD_ID, CHAT_ERR_BAD_MESSAGE_ID, CHAT_ERR_BAD_UTF8,
 *         CHAT_ERR_BAD_VALUE, CHAT_ERR_TOO_LARGE, CHAT_ERR_TOO_MANY a field
 *         that this codec would refuse to decode
 * @retval CHAT_ERR_FRAME_TOO_LARGE the encoded frame is over the limit for
 *         its direction (a server splits history into smaller frames)
 * @retval CHAT_ERR_NOMEM
 * @since 0.1 */
CHAT_API chat_err chat_codec_encode(chat_codec *codec, const chat_frame *frame,
                                    const char **json, size_t *len);

/** Which direction a frame type travels in; `typing` answers TO_SERVER and
 * is valid in both. Returns -1 for an unknown type. */
CHAT_API int chat_frame_type_direction(chat_frame_type t);

/* ------------------------------------------------------------------------
 * Id rules (PROTOCOL.md section 1), for hosts that validate outside frames */

/** True for 1..64 bytes of [A-Za-z0-9_.:@-]: user, device, conversation,
 * client_msg_id and media ids. */
CHAT_API bool chat_id_valid(const char *s, size_t len);

/** Parse a canonical decimal message id (no sign, no leading zeros, at most
 * INT64_MAX).
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL s or out is NULL
 * @retval CHAT_ERR_BAD_MESSAGE_ID */
CHAT_API chat_err chat_message_id_parse(const char *s, size_t len,
                                        uint64_t *out);

/** Format @p id in canonical decimal into @p buf (at least 21 bytes),
 * NUL-terminated; returns the length, or 0 when id > INT64_MAX or buf is
 * NULL. */
CHAT_API size_t chat_message_id_format(uint64_t id, char *buf);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_FRAME_H */

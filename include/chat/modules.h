/* Server modules: the host-supplied objects behind which libchat's server
 * core keeps everything external (PROTOCOL.md section 4 rules live in the
 * core; durable state, routing and notifications live here).
 *
 * Every module is a versioned vtable with the same shape:
 *   uint32_t version;   the CHAT_*_OPS_V<n> the caller filled in
 *   void *self;         the module instance, first argument of every method
 *   ... methods ...
 *   void (*destroy)(void *self);   called once from chat_server_free()
 * The server copies the struct when it is installed; fields are only ever
 * appended, and the server reads only fields of the version given. A NULL
 * method means "not supported" and has a documented default.
 *
 * Threads and lifetimes: methods are called on the thread that is inside a
 * chat_server_* call. Every pointer passed to a method (strings, structs,
 * arrays) is borrowed for the duration of that call. Every pointer passed to
 * an emit callback is borrowed for the duration of that callback. Methods
 * return promptly: a V1 module completes synchronously.
 *
 * The server never calls a module from inside that module's own emit
 * callback, so a module need not be re-entrant (the SQLite store is).
 *
 * Errors: CHAT_OK, or CHAT_ERR_NOT_FOUND / CHAT_ERR_DENIED / CHAT_ERR_CONFLICT
 * where a method's comment says so, CHAT_ERR_INVAL for arguments a method
 * cannot use (a NULL required pointer, a malformed cursor), CHAT_ERR_NOMEM,
 * or CHAT_ERR_MODULE for any other failure (the server answers `internal`
 * and changes nothing it has not been told succeeded). */
#ifndef CHAT_MODULES_H
#define CHAT_MODULES_H

#include "common.h"
#include "frame.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Longest id (PROTOCOL.md section 1) plus its NUL. */
#define CHAT_ID_BUF 65

/** Who a connection or REST request is: one user and one device. */
typedef struct chat_identity {
  char user_id[CHAT_ID_BUF];
  char device_id[CHAT_ID_BUF];
  int64_t expires_ms; /* Unix ms; 0 when the credential does not expire */
} chat_identity;

/* ------------------------------------------------------------------------
 * Storage: conversations, members, messages, receipts, devices, media. */

typedef void (*chat_conversation_sink)(void *ctx, const chat_conversation *c);
typedef void (*chat_message_sink)(void *ctx, const chat_message *m);

/** A conversation to create. A direct conversation has exactly two
 * members; the store returns the existing one for the same pair. */
typedef struct chat_conversation_new {
  const char *conversation_id; /* proposed id (used when new) */
  chat_conversation_type type;
  chat_str name;               /* ptr NULL: no name */
  const char *created_by;
  const char *const *members;  /* includes created_by, no duplicates */
  size_t n_members;
  int64_t now_ms;
} chat_conversation_new;

/** One message to commit. message_id and server_ts are minted by the
 * server; on a duplicate (sender_id, client_msg_id) the store keeps and
 * reports the original's. A store shared by several writers keeps ids
 * growing in commit order within a conversation: when message_id is not
 * above the conversation's last id it stores and reports last + 1. */
typedef struct chat_msg_in {
  uint64_t message_id;
  int64_t server_ts;
  const char *conversation_id;
  const char *sender_id;
  const char *client_msg_id;
  chat_str body;
  bool has_reply_to;
  uint64_t reply_to;
  const char *const *media_refs;
  size_t n_media_refs;
  chat_body_type body_type;
} chat_msg_in;

typedef struct chat_append_result {
  uint64_t message_id; /* the stored id: the original one for a duplicate */
  int64_t server_ts;
  bool duplicate;
} chat_append_result;

typedef enum chat_page_dir {
  CHAT_PAGE_LATEST = 0, /* newest first, from the end */
  CHAT_PAGE_BEFORE = 1, /* newest first, ids < anchor */
  CHAT_PAGE_AFTER = 2   /* oldest first, ids > anchor */
} chat_page_dir;

/** A member's receipt mark to apply (PROTOCOL.md section 4.5 and 4.7). */
typedef struct chat_mark_in {
  const char *conversation_id;
  const char *member_id;
  chat_receipt_state state;
  uint64_t up_to;      /* high-water mark; lower or equal marks change nothing */
  int64_t now_ms;
  bool group;          /* per-member rows and per-message counters */
  bool track_delivered; /* false in groups over the delivered threshold:
                          delivered marks are dropped, read still counts
                          readers as delivered */
} chat_mark_in;

/** For each sender whose messages the mark newly covers: the sender's
 * latest message at or below the mark, and (groups) its cumulative
 * counters after the update. */
typedef struct chat_mark_update {
  const char *sender_id;
  uint64_t message_id;
  uint32_t delivered;
  uint32_t read;
} chat_mark_update;

typedef void (*chat_mark_sink)(void *ctx, const chat_mark_update *u);
typedef void (*chat_member_state_sink)(void *ctx, const char *member_id,
                                       int state /* 0 sent, 1 delivered,
                                                    2 read */);
typedef void (*chat_push_target_sink)(void *ctx, const char *device_id,
                                      const char *platform,
                                      const char *push_token);
typedef void (*chat_media_sink)(void *ctx, const char *content_type,
                                const void *data, size_t len);

#define CHAT_STORAGE_OPS_V1 1
typedef struct chat_storage_ops {
  uint32_t version; /* CHAT_STORAGE_OPS_V1 */
  void *self;

  /** The conversation as seen by @p viewer (unread_count and
   * last_read_message_id are the viewer's; viewer may be NULL), with all
   * members. CHAT_ERR_NOT_FOUND when unknown. */
  chat_err (*conversation_get)(void *self, const char *conversation_id,
                               const char *viewer, chat_conversation_sink emit,
                               void *ctx);

  /** Create, or for a direct pair that exists already return the existing
   * conversation with *existed = true. Emits the conversation as seen by
   * created_by. */
  chat_err (*conversation_create)(void *self, const chat_conversation_new *c,
                                  bool *existed, chat_conversation_sink emit,
                                  void *ctx);

  /** Add a member (idempotent: an existing member is CHAT_OK). */
  chat_err (*member_add)(void *self, const char *conversation_id,
                         const char *user_id, int64_t now_ms);

  /** Remove a member; CHAT_ERR_NOT_FOUND when not a member. */
  chat_err (*member_remove)(void *self, const char *conversation_id,
                            const char *user_id);

  /** The user's conversations, most recent activity first, at most
   * @p limit, starting after @p cursor (NULL or "" for the first page).
   * Writes the cursor of the next page into next_cursor (a buffer of
   * CHAT_CURSOR_BUF bytes), or "" when this was the last page. */
  chat_err (*conversations_of)(void *self, const char *user_id,
                               const char *cursor, uint32_t limit,
                               chat_conversation_sink emit, void *ctx,
                               char *next_cursor);

  /** Commit @p n messages in ONE transaction (group commit) and fill
   * results[i] for each. Returns only after the commit is durable. On any
   * error nothing of the batch is stored; a (conversation, message_id)
   * that exists already is CHAT_ERR_CONFLICT. */
  chat_err (*append)(void *self, const chat_msg_in *msgs, size_t n,
                     chat_append_result *results);

  /** Page through a conversation's messages (see chat_page_dir); emits at
   * most @p limit messages. An unknown conversation emits nothing. */
  chat_err (*messages)(void *self, const char *conversation_id,
                       chat_page_dir dir, uint64_t anchor, uint32_t limit,
                       chat_message_sink emit, void *ctx);

  /** Largest message id stored (0 when empty), so a restarted server never
   * mints below it. */
  chat_err (*max_message_id)(void *self, uint64_t *out);

  /** Apply a receipt mark in one transaction. *advanced is false when the
   * mark did not move (it is not higher than the stored one, or the member
   * is not a member); emits one update per sender whose messages the mark
   * newly covers. in->group must match the conversation's stored type (the
   * server passes it from its membership cache). A member who leaves and
   * rejoins starts with no marks. */
  chat_err (*mark)(void *self, const chat_mark_in *in, bool *advanced,
                   chat_mark_sink emit, void *ctx);

  /** Cumulative counters of one message, and (when emit is not NULL) each
   * other member's state for it. CHAT_ERR_NOT_FOUND for an unknown
   * message. */
  chat_err (*receipts)(void *self, const char *conversation_id,
                       uint64_t message_id, uint32_t *delivered,
                       uint32_t *read, chat_member_state_sink emit,
                       void *ctx);

  /** Delete group receipt rows written before @p before_ms. */
  chat_err (*purge_receipts)(void *self, int64_t before_ms);

  /** Tie a push token to a user's device (replacing an earlier one). */
  chat_err (*device_register)(void *self, const char *user_id,
                              const char *device_id, const char *platform,
                              const char *push_token, int64_t now_ms);

  /** The user's registered push devices. */
  chat_err (*push_targets)(void *self, const char *user_id,
                           chat_push_target_sink emit, void *ctx);

  /** Store a media blob; CHAT_ERR_CONFLICT when the id exists. */
  chat_err (*media_put)(void *self, const char *media_id,
                        const char *owner_id, const char *content_type,
                        const void *data, size_t len, int64_t now_ms);

  /** Read a blob for @p reader: its owner, or a member of a conversation
   * with a message that references it. CHAT_ERR_NOT_FOUND when unknown,
   * CHAT_ERR_DENIED when the reader may not see it. With @p emit NULL only
   * the check is made (the send path asks it of every media_refs entry, so
   * a user cannot share a blob they cannot read), without reading bytes. */
  chat_err (*media_get)(void *self, const char *media_id, const char *reader,
                        chat_media_sink emit, void *ctx);

  void (*destroy)(void *self);
} chat_storage_ops;

#define CHAT_CURSOR_BUF 128

/* ------------------------------------------------------------------------
 * Presence registry: which gateways hold a user's devices, and the user's
 * presence state, shared by every gateway. NULL methods: single node (the
 * server knows only its own sessions). */
typedef void (*chat_location_sink)(void *ctx, const char *gateway_id,
                                   const char *device_id);

#define CHAT_PRESENCE_OPS_V1 1
typedef struct chat_presence_ops {
  uint32_t version; /* CHAT_PRESENCE_OPS_V1 */
  void *self;
  chat_err (*device_online)(void *self, const char *user_id,
                            const char *device_id, const char *gateway_id);
  chat_err (*device_offline)(void *self, const char *user_id,
                             const char *device_id, const char *gateway_id);
  /** Every (gateway, device) of the user that is connected anywhere. */
  chat_err (*locate)(void *self, const char *user_id, chat_location_sink emit,
                     void *ctx);
  chat_err (*set_state)(void *self, const char *user_id,
                        chat_presence_state state, int64_t last_active_ms);
  /** CHAT_ERR_NOT_FOUND for a user never seen. */
  chat_err (*get_state)(void *self, const char *user_id,
                        chat_presence_state *state, int64_t *last_active_ms);
  void (*destroy)(void *self);
} chat_presence_ops;

/* ------------------------------------------------------------------------
 * Routing bus: fire-and-forget messages to another gateway (PROTOCOL.md
 * section 4.4; a lost one is recovered by resume). The receiving host hands
 * each message to chat_server_bus_deliver(). NULL publish: single node. */
#define CHAT_BUS_OPS_V1 1
typedef struct chat_bus_ops {
  uint32_t version; /* CHAT_BUS_OPS_V1 */
  void *self;
  chat_err (*publish)(void *self, const char *gateway_id, const char *msg,
                      size_t len);
  void (*destroy)(void *self);
} chat_bus_ops;

/* ------------------------------------------------------------------------
 * Push: offline members' devices (PROTOCOL.md section 4.11). Called off the
 * send path; a failure is counted and never delays online delivery. */
typedef struct chat_push_note {
  const char *user_id;
  const char *device_id;
  const char *platform;   /* "apns", "fcm" or "webpush" */
  const char *push_token;
  const char *conversation_id;
  const char *sender_id;
  uint64_t message_id;
  chat_str preview;       /* names the sender, never the body */
} chat_push_note;

#define CHAT_PUSH_OPS_V1 1
typedef struct chat_push_ops {
  uint32_t version; /* CHAT_PUSH_OPS_V1 */
  void *self;
  chat_err (*notify)(void *self, const chat_push_note *note);
  void (*destroy)(void *self);
} chat_push_ops;

/* ------------------------------------------------------------------------
 * Auth: a bearer token to an identity, before the WebSocket upgrade. */
#define CHAT_AUTH_OPS_V1 1
typedef struct chat_auth_ops {
  uint32_t version; /* CHAT_AUTH_OPS_V1 */
  void *self;
  /** CHAT_OK with *out filled, or CHAT_ERR_AUTH for a missing, malformed,
   * forged or expired token. */
  chat_err (*verify)(void *self, const char *token, size_t len,
                     int64_t now_ms, chat_identity *out);
  void (*destroy)(void *self);
} chat_auth_ops;

#ifdef __cplusplus
}
#endif
#endif /* CHAT_MODULES_H */

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
 * appended, and the server reads only fields of the version given (0 or a
 * version newer than the library knows is refused with CHAT_ERR_INVAL). A
 * NULL method means "not supported" and has a documented default. Every
 * function pointer takes its context first: self for methods, ctx for
 * emit sinks.
 *
 * Threads: methods are called on the server's loop thread (the thread that
 * is inside a chat_server_* call). Emit sinks and chat_op_complete() are
 * called on the loop thread only; chat_op_post() and chat_server_post()
 * are the calls a module's own threads may make.
 *
 * Synchronous or asynchronous (CHAT_PENDING). Every storage method, and
 * presence.locate and presence.get_state, take a trailing `chat_op *op`
 * and do one of two things:
 *   - finish now: call emit for each row (if any), fill the outputs and
 *     return CHAT_OK or an error. The op is then never used again.
 *   - return CHAT_PENDING and complete the op exactly once, later, on the
 *     loop thread: call emit for each row, fill the outputs, then
 *     chat_op_complete(op, status). A module whose answer arrives on
 *     another thread (a libpq worker, a Redis reader, a tokio runtime)
 *     hands it over with chat_op_post(op, fn, user_data): fn then runs on
 *     the loop thread, where it emits and completes.
 * Lifetimes for a pending method: the arguments (strings, structs,
 * arrays, the `data` of media_put) are borrowed for the call only, so a
 * pending method copies what it needs before returning. The outputs
 * (`results` of append, `bool *existed`, `bool *advanced`, counters,
 * `next_cursor`, `uint64_t *out`, presence state) and the emit sink with
 * its ctx stay valid until the op completes. The op itself is the
 * server's: the module never frees it, and must not touch it after
 * completing it. After destroy(self) returns, the module never touches an
 * op again, posts nothing and calls nothing back; the server frees the ops
 * still in flight (their emits and completions never come).
 * op is never NULL when the server calls a method. A host that calls a
 * module directly (a health check, a test) may pass NULL; the module then
 * answers synchronously, or CHAT_ERR_INVAL when it cannot.
 *
 * Fire-and-forget methods (bus.publish, presence.device_online,
 * presence.device_offline, presence.set_state, push.notify) take no op:
 * nothing waits for them, so they must not block (queue internally and
 * return). Their return value is only counted (bus_publish_errors_total,
 * push_errors_total). auth.verify is synchronous: the transport must
 * decide on the WebSocket upgrade inside the request.
 *
 * The server never calls a module from inside that module's own emit
 * callback, so a module need not be re-entrant (the SQLite store is).
 *
 * Errors: CHAT_OK, or CHAT_ERR_NOT_FOUND / CHAT_ERR_DENIED / CHAT_ERR_CONFLICT
 * where a method's comment says so, CHAT_ERR_INVAL for arguments a method
 * cannot use (a NULL required pointer, a malformed cursor), CHAT_ERR_NOMEM,
 * or CHAT_ERR_MODULE for any other failure (the server answers `internal`
 * and changes nothing it has not been told succeeded). The same codes are
 * the status of chat_op_complete(). */
#ifndef CHAT_MODULES_H
#define CHAT_MODULES_H

#include "common.h"
#include "frame.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Longest id (PROTOCOL.md section 1) plus its NUL. */
#define CHAT_ID_BUF 65

/** Who a connection or REST request is: one user and one device.
 * Filled by the library in chat_server_authenticate() (only the fields of
 * the version the caller set), and by an auth module's verify(). Read by
 * chat_server_open_session() and chat_server_http(), which refuse 0 or an
 * unknown version. @since 1.0 */
#define CHAT_IDENTITY_V1 1
typedef struct chat_identity {
  uint32_t version; /* CHAT_IDENTITY_V1 */
  char user_id[CHAT_ID_BUF];
  char device_id[CHAT_ID_BUF];
  /* Unix wall-clock ms when the credential expires; 0: never. An open
   * session is closed with 4001 "token_expired" when it passes. */
  int64_t expires_ms;
  chat_sender_kind kind; /* user or bot (frame.h, PROTOCOL.md section 8) */
} chat_identity;

/* ------------------------------------------------------------------------
 * Asynchronous completion */

/** One module call in flight. Owned by the server: a module keeps the
 * pointer until it completes the op, and never frees it. @since 1.0 */
typedef struct chat_op chat_op;

/** Finish a method that returned CHAT_PENDING: its emits have been made
 * and its outputs filled. @p status is CHAT_OK or the error the method
 * would have returned (CHAT_PENDING counts as CHAT_ERR_MODULE). Call it
 * exactly once per pending op, on the loop thread: from a chat_op_post()
 * function, or from the module's own callback on that thread. The server
 * runs what waited on the op before this returns when no chat_server_*
 * call is in progress, otherwise when that call returns.
 * @since 1.0 */
CHAT_API void chat_op_complete(chat_op *op, chat_err status);

/** From any thread: run fn(user_data, op) on the loop thread soon, at the
 * host's next chat_server_run_posted() or chat_server_on_timer() (fn then
 * emits the rows and calls chat_op_complete()). Lock-free, never fails
 * (the op carries its own queue link), and calls env.wake. Post an op at
 * most once at a time; after destroy() a module posts nothing.
 * @since 1.0 */
CHAT_API void chat_op_post(chat_op *op,
                           void (*fn)(void *user_data, chat_op *op),
                           void *user_data);

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
  /* Section 8 abuse control (appended in 1.0). A NEW direct conversation
   * is "cold" when the other member has never sent a message (any
   * body_type but SYSTEM, EDIT, DELETE) in a conversation created_by is a
   * member of now. With cold_direct_limit > 0, creating a cold one when
   * created_by already created cold_direct_limit cold direct conversations
   * at or after cold_direct_since_ms is refused with CHAT_ERR_RATE_LIMITED
   * and nothing is created; count and insert are one transaction, so
   * concurrent requests cannot pass the cap together. An existing pair
   * (*existed) and groups are never refused. 0: no cap. */
  uint32_t cold_direct_limit;
  int64_t cold_direct_since_ms;
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
  /* Section 8 (appended in 1.0). sender_kind is stored with the message
   * and read back (CHAT_SENDER_BOT for a bot's). has_target_id is set
   * exactly for body_type CHAT_BODY_EDIT and CHAT_BODY_DELETE: the entry
   * edits or deletes message target_id of the same conversation, and the
   * two guards below are checked against that target (see append). */
  chat_sender_kind sender_kind;
  bool has_target_id;
  uint64_t target_id;
  const char *target_sender; /* NULL: any sender (a group admin's delete) */
  int64_t target_min_ts;     /* 0: none; else the target's server_ts must
                                be at or after it (the edit window) */
} chat_msg_in;

typedef struct chat_append_result {
  uint64_t message_id; /* the stored id: the original one for a duplicate */
  int64_t server_ts;
  bool duplicate;
  /* Appended in 1.0: CHAT_OK, or for an entry with a target that was
   * refused (nothing stored for it, the rest of the batch commits):
   * CHAT_ERR_NOT_FOUND or CHAT_ERR_DENIED (see append). */
  chat_err status;
  /* Appended in 1.0: the sender was shadow-banned when the message was
   * stored (see append); the server delivers it to the sender's own
   * devices only. */
  bool withheld;
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
/** One member's state for a message: CHAT_RECEIPT_NONE (sent only),
 * CHAT_RECEIPT_DELIVERED or CHAT_RECEIPT_READ. */
typedef void (*chat_member_state_sink)(void *ctx, const char *member_id,
                                       chat_receipt_state state);
typedef void (*chat_push_target_sink)(void *ctx, const char *device_id,
                                      const char *platform,
                                      const char *push_token);
typedef void (*chat_media_sink)(void *ctx, const char *content_type,
                                const void *data, size_t len);

/** Size of the next_cursor buffer of conversations_of(). */
#define CHAT_CURSOR_BUF 128

/** A user id, borrowed for the callback (shadow_bans). @since 1.0 */
typedef void (*chat_user_sink)(void *ctx, const char *user_id);

/** What member_change does (PROTOCOL.md sections 5 and 8). @since 1.0 */
typedef enum chat_member_op {
  CHAT_MEMBER_ADD = 1,          /* user joins the group */
  CHAT_MEMBER_REMOVE = 2,       /* user leaves or is removed */
  CHAT_MEMBER_ADMIN_GRANT = 3,  /* user becomes an admin */
  CHAT_MEMBER_ADMIN_REVOKE = 4  /* user stops being an admin */
} chat_member_op;

/** One change of a group's members or admins, with the system messages
 * that record it in the conversation's log. The server decides which
 * guards apply (its rules); the store checks them inside the change's
 * transaction, against the rows as they are then. @since 1.0 */
typedef struct chat_member_change {
  const char *conversation_id;
  chat_member_op op;
  const char *actor_id;      /* who makes the change */
  const char *user_id;       /* whom it is about (may equal actor_id) */
  int64_t now_ms;            /* joined_at of an added member */
  bool actor_must_be_admin;  /* CHAT_ERR_DENIED unless actor is an admin */
  bool protect_creator;      /* CHAT_ERR_DENIED when user_id created the
                                conversation */
  uint32_t max_members;      /* ADD: CHAT_ERR_CONFLICT when the group has
                                this many members; 0: no cap */
  /* The change's system message: body_type SYSTEM, sender actor_id, no
   * client_msg_id, server_ts. It is stored as append stores a message:
   * its id raised past the conversation's last id when it does not grow,
   * withheld when actor_id is shadow-banned. */
  uint64_t message_id;
  int64_t server_ts;
  chat_str body;
  /* When the change leaves a group with members but without an admin
   * (REMOVE or REVOKE of the last admin), the member with the earliest
   * join (ties: the smallest user_id; for REVOKE, not user_id itself)
   * becomes admin in the same transaction, recorded by a second system
   * message: id promote_message_id (same rule), sender actor_id, body the
   * promoted user's id followed by promote_suffix. */
  uint64_t promote_message_id;
  chat_str promote_suffix;
} chat_member_change;

typedef struct chat_member_change_result {
  bool changed;                 /* false: nothing to do (ADD of a member,
                                   GRANT of an admin, REVOKE of a
                                   non-admin); nothing stored */
  chat_append_result message;   /* the change's system message */
  bool promoted;                /* an automatic promotion happened */
  char promoted_user[CHAT_ID_BUF];
  chat_append_result promote_message;
} chat_member_change_result;

#define CHAT_STORAGE_OPS_V1 1
typedef struct chat_storage_ops {
  uint32_t version; /* CHAT_STORAGE_OPS_V1 */
  void *self;

  /** The conversation as seen by @p viewer (unread_count and
   * last_read_message_id are the viewer's; viewer may be NULL), with all
   * members, in the order they joined, and its admins (section 8; empty
   * for a direct conversation). last_message is the newest message of
   * body_type TEXT, MEDIA or SYSTEM the viewer may see (a withheld one,
   * see append, only by its sender; with viewer NULL, by nobody), read
   * back with its current state; unread_count counts the TEXT and MEDIA
   * messages of other senders after the viewer's read mark that are not
   * withheld. CHAT_ERR_NOT_FOUND when unknown. Required. */
  chat_err (*conversation_get)(void *self, const char *conversation_id,
                               const char *viewer, chat_conversation_sink emit,
                               void *ctx, chat_op *op);

  /** Create, or for a direct pair that exists already return the existing
   * conversation with *existed = true. Emits the conversation as seen by
   * created_by. A new group's creator is its first admin (section 8).
   * CHAT_ERR_CONFLICT when the proposed id is taken; CHAT_ERR_RATE_LIMITED
   * for the cold-direct cap (see chat_conversation_new). NULL: REST
   * answers 501. */
  chat_err (*conversation_create)(void *self, const chat_conversation_new *c,
                                  bool *existed, chat_conversation_sink emit,
                                  void *ctx, chat_op *op);

  /** Add a member (idempotent: an existing member is CHAT_OK).
   * CHAT_ERR_NOT_FOUND for an unknown conversation. NULL: REST 501.
   * Superseded by member_change (which the server uses when it is set). */
  chat_err (*member_add)(void *self, const char *conversation_id,
                         const char *user_id, int64_t now_ms, chat_op *op);

  /** Remove a member; CHAT_ERR_NOT_FOUND when not a member. NULL: 501.
   * Superseded by member_change (which the server uses when it is set). */
  chat_err (*member_remove)(void *self, const char *conversation_id,
                            const char *user_id, chat_op *op);

  /** The user's conversations, most recent activity first, at most
   * @p limit, starting after @p cursor (NULL or "" for the first page),
   * each as conversation_get shows it to @p user_id.
   * Writes the cursor of the next page into next_cursor (a buffer of
   * CHAT_CURSOR_BUF bytes), or "" when this was the last page;
   * CHAT_ERR_INVAL for a malformed cursor. Required. */
  chat_err (*conversations_of)(void *self, const char *user_id,
                               const char *cursor, uint32_t limit,
                               chat_conversation_sink emit, void *ctx,
                               char *next_cursor, chat_op *op);

  /** Commit @p n messages in ONE transaction (group commit) and fill
   * results[i] for each. Completes only after the commit is durable (the
   * server acks then). On any error nothing of the batch is stored; a
   * (conversation, message_id) that exists already is CHAT_ERR_CONFLICT.
   * The server has at most one append in flight. Required.
   *
   * Every message is stored with its sender_kind, and the store remembers
   * that its sender has written in the conversation (for the cold-direct
   * cap of conversation_create; SYSTEM, EDIT and DELETE entries do not
   * count).
   *
   * Shadow bans (section 8), decided inside this transaction against the
   * ban list (shadow_ban_set) as it is at the commit: a message whose
   * sender is banned then is stored "withheld" (results[i].withheld =
   * true) for good. A withheld message is read back only by its sender
   * (messages_as, last_message, unread counts), covers no receipt update
   * of mark(), does not count as having written, and does not move the
   * chat list's activity order; a withheld edit or delete entry is not
   * applied to its target. Unbanning withholds nothing further and
   * reveals nothing withheld before.
   *
   * Edit and delete entries (has_target_id; PROTOCOL.md section 8), in
   * this order inside the batch's transaction, so that a retry is always
   * answered as a duplicate whatever happened to the target since:
   *   1. (sender_id, client_msg_id) stored already: the original's id and
   *      ts with duplicate = true, status CHAT_OK, nothing else.
   *   2. results[i].status = CHAT_ERR_NOT_FOUND, nothing stored for the
   *      entry, when the target is not a message of this conversation,
   *      is not CHAT_BODY_TEXT or CHAT_BODY_MEDIA (system messages and
   *      other edit or delete entries cannot be targets), or is deleted.
   *   3. results[i].status = CHAT_ERR_DENIED, nothing stored, when
   *      target_sender is set and is not the target's sender, or
   *      target_min_ts > 0 and the target's server_ts is below it.
   *   4. Otherwise the entry is stored like any message (an id that does
   *      not grow is raised as above; a DELETE's body is stored empty
   *      whatever it holds) and applied to the target in place:
   *      EDIT: the target's body becomes the entry's body and its
   *      edited_ts the entry's server_ts; the bodies of earlier EDIT
   *      entries of that target are erased (set empty).
   *      DELETE: the target's body is erased, it is marked deleted, and
   *      its media references are dropped; the bodies of every EDIT entry
   *      of the target are erased. "Erased" means the bytes are gone from
   *      the store (overwritten), not hidden by a flag.
   * Messages read back (messages, messages_as, last_message) carry the
   * target's current state: has_edited_ts/edited_ts, deleted (with an
   * empty body), and the entries' has_target_id/target_id. */
  chat_err (*append)(void *self, const chat_msg_in *msgs, size_t n,
                     chat_append_result *results, chat_op *op);

  /** Page through a conversation's messages (see chat_page_dir); emits at
   * most @p limit messages. An unknown conversation emits nothing. Every
   * message, withheld ones included (messages_as is the view of one
   * reader). Required. */
  chat_err (*messages)(void *self, const char *conversation_id,
                       chat_page_dir dir, uint64_t anchor, uint32_t limit,
                       chat_message_sink emit, void *ctx, chat_op *op);

  /** Largest message id stored (0 when empty), so a restarted server never
   * mints below it. Called once by chat_server_new(); while it is pending
   * the server commits nothing and REST calls that mint ids answer 503.
   * Required. */
  chat_err (*max_message_id)(void *self, uint64_t *out, chat_op *op);

  /** Apply a receipt mark in one transaction. *advanced is false when the
   * mark did not move (it is not higher than the stored one, or the member
   * is not a member); emits one update per sender whose messages the mark
   * newly covers, withheld messages excepted (see append). in->group
   * must match the conversation's stored type (the server passes it from
   * its membership cache). A member who leaves and rejoins starts with no
   * marks. Required. */
  chat_err (*mark)(void *self, const chat_mark_in *in, bool *advanced,
                   chat_mark_sink emit, void *ctx, chat_op *op);

  /** Cumulative counters of one message, and (when emit is not NULL) each
   * other member's state for it. CHAT_ERR_NOT_FOUND for an unknown
   * message. NULL: group receipts carry the counts of the mark, and REST
   * answers 501. */
  chat_err (*receipts)(void *self, const char *conversation_id,
                       uint64_t message_id, uint32_t *delivered,
                       uint32_t *read, chat_member_state_sink emit,
                       void *ctx, chat_op *op);

  /** Delete group receipt rows written before @p before_ms (hourly).
   * NULL: rows are kept. */
  chat_err (*purge_receipts)(void *self, int64_t before_ms, chat_op *op);

  /** Tie a push token to a user's device (replacing an earlier one).
   * NULL: REST answers 501. */
  chat_err (*device_register)(void *self, const char *user_id,
                              const char *device_id, const char *platform,
                              const char *push_token, int64_t now_ms,
                              chat_op *op);

  /** The user's registered push devices. NULL: no push. */
  chat_err (*push_targets)(void *self, const char *user_id,
                           chat_push_target_sink emit, void *ctx,
                           chat_op *op);

  /** Store a media blob; CHAT_ERR_CONFLICT when the id exists. NULL:
   * REST answers 501. */
  chat_err (*media_put)(void *self, const char *media_id,
                        const char *owner_id, const char *content_type,
                        const void *data, size_t len, int64_t now_ms,
                        chat_op *op);

  /** Read a blob for @p reader: its owner, or a member of a conversation
   * with a message that references it. CHAT_ERR_NOT_FOUND when unknown,
   * CHAT_ERR_DENIED when the reader may not see it. With @p emit NULL only
   * the check is made (the send path asks it of every media_refs entry, so
   * a user cannot share a blob they cannot read), without reading bytes.
   * NULL: media_refs are not checked and REST answers 501. */
  chat_err (*media_get)(void *self, const char *media_id, const char *reader,
                        chat_media_sink emit, void *ctx, chat_op *op);

  void (*destroy)(void *self);

  /* ---- Appended in 1.0 for PROTOCOL.md section 8. Each may be NULL; the
   * comment says what the server does then. ---- */

  /** Apply one member or admin change in ONE transaction, with its system
   * message(s), durable before it completes. Checks, in this order:
   * CHAT_ERR_NOT_FOUND for an unknown conversation; CHAT_ERR_CONFLICT for
   * a direct conversation; the guards of @p ch (CHAT_ERR_DENIED);
   * CHAT_ERR_NOT_FOUND when REMOVE, GRANT or REVOKE names a non-member;
   * CHAT_ERR_CONFLICT for ADD to a full group, and for a REVOKE that would
   * leave the group without an admin and with no one else to promote. Any
   * error changes nothing.
   * ADD inserts the member (no marks, not an admin, joined now); REMOVE
   * deletes the member with its marks and admin right; GRANT and REVOKE
   * set the right. A change that changes nothing stores nothing and sets
   * res->changed = false. Otherwise res->message (and, after a promotion,
   * res->promoted, promoted_user and promote_message) describe what was
   * stored. Emits the conversation after the change as seen by actor_id
   * (conversation_get), changed or not.
   * NULL: members change through member_add/member_remove without system
   * messages, only members may remove themselves, and the admin routes
   * answer 501. */
  chat_err (*member_change)(void *self, const chat_member_change *ch,
                            chat_member_change_result *res,
                            chat_conversation_sink emit, void *ctx,
                            chat_op *op);

  /** messages() as @p viewer sees it: a withheld message (see append) is
   * emitted only when the viewer is its sender (viewer NULL: never), and
   * @p limit counts the messages emitted. Resume and REST history use it.
   * NULL: the server uses messages(), and shadow bans do not hide
   * history. */
  chat_err (*messages_as)(void *self, const char *conversation_id,
                          const char *viewer, chat_page_dir dir,
                          uint64_t anchor, uint32_t limit,
                          chat_message_sink emit, void *ctx, chat_op *op);

  /** Shadow-ban (@p banned true) or unban a user, durably; idempotent.
   * Every change bumps the ban list's version (see shadow_bans), and
   * append consults the list from its next commit on. Operator tools call
   * it directly (`chatd ban`, with op NULL); the server never does. NULL:
   * no shadow bans. */
  chat_err (*shadow_ban_set)(void *self, const char *user_id, bool banned,
                             int64_t now_ms, chat_op *op);

  /** The shadow-banned users. *version receives the ban list's version, a
   * number that changes (and is never 0) whenever the list does; when it
   * differs from @p known_version every banned user is emitted, otherwise
   * nothing is. The server polls it (settings.ban_poll_ms, starting with
   * known_version 0) for what append does not decide: the typing relay.
   * NULL: nobody's typing is held back. */
  chat_err (*shadow_bans)(void *self, uint64_t known_version,
                          uint64_t *version, chat_user_sink emit, void *ctx,
                          chat_op *op);

  /** Receipt-aware push: @p user_id was sent a push about @p message_id
   * of the conversation. Records it on the member (durably, cheaply: a
   * high-water mark is enough, e.g. the lowest and highest pushed ids not
   * yet cleared). A non-member is ignored. NULL (or push_read NULL): no
   * push clears. */
  chat_err (*push_record)(void *self, const char *conversation_id,
                          const char *user_id, uint64_t message_id,
                          chat_op *op);

  /** Receipt-aware push: the member's read mark advanced to
   * @p read_up_to. When read_up_to is at or above the lowest message
   * recorded by push_record and not cleared yet, *clear_up_to =
   * read_up_to and every recorded message at or below it counts as
   * cleared; otherwise *clear_up_to = 0 (nothing to clear). One
   * transaction. A store may keep only the lowest and highest uncleared
   * ids (after a partial clear the lowest becomes read_up_to + 1): the
   * occasional clear that covers no pushed message removes nothing on the
   * device. The server then calls push.clear for each of the user's push
   * devices. */
  chat_err (*push_read)(void *self, const char *conversation_id,
                        const char *user_id, uint64_t read_up_to,
                        uint64_t *clear_up_to, chat_op *op);
} chat_storage_ops;

/* ------------------------------------------------------------------------
 * Presence registry: which gateways hold a user's devices, and the user's
 * presence state, shared by every gateway. Without locate, device_online
 * and device_offline the module is ignored: single node (the server knows
 * only its own sessions). */
typedef void (*chat_location_sink)(void *ctx, const char *gateway_id,
                                   const char *device_id);

#define CHAT_PRESENCE_OPS_V1 1
typedef struct chat_presence_ops {
  uint32_t version; /* CHAT_PRESENCE_OPS_V1 */
  void *self;
  /** Fire-and-forget: a device connected to / left @p gateway_id. */
  chat_err (*device_online)(void *self, const char *user_id,
                            const char *device_id, const char *gateway_id);
  chat_err (*device_offline)(void *self, const char *user_id,
                             const char *device_id, const char *gateway_id);
  /** Every (gateway, device) of the user that is connected anywhere. */
  chat_err (*locate)(void *self, const char *user_id, chat_location_sink emit,
                     void *ctx, chat_op *op);
  /** Fire-and-forget: the user's state as decided by this gateway. May be
   * NULL. */
  chat_err (*set_state)(void *self, const char *user_id,
                        chat_presence_state state, int64_t last_active_ms);
  /** CHAT_ERR_NOT_FOUND for a user never seen. May be NULL (unknown users
   * read as offline). */
  chat_err (*get_state)(void *self, const char *user_id,
                        chat_presence_state *state, int64_t *last_active_ms,
                        chat_op *op);
  void (*destroy)(void *self);
} chat_presence_ops;

/* ------------------------------------------------------------------------
 * Routing bus: fire-and-forget messages to another gateway (PROTOCOL.md
 * section 4.4; a lost one is recovered by resume). The receiving host hands
 * each message to chat_server_bus_deliver() (a bus thread uses
 * chat_server_post() to get there). NULL publish: single node. */
#define CHAT_BUS_OPS_V1 1
typedef struct chat_bus_ops {
  uint32_t version; /* CHAT_BUS_OPS_V1 */
  void *self;
  /** Fire-and-forget; @p msg is borrowed for the call. */
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

/** Receipt-aware push (PROTOCOL.md section 8): remove the notifications
 * of @p conversation_id up to message @p up_to from one device. @since 1.0 */
typedef struct chat_push_clear {
  const char *user_id;
  const char *device_id;
  const char *platform;   /* "apns", "fcm" or "webpush" */
  const char *push_token;
  const char *conversation_id;
  uint64_t up_to;         /* the highest message id read */
} chat_push_clear;

#define CHAT_PUSH_OPS_V1 1
typedef struct chat_push_ops {
  uint32_t version; /* CHAT_PUSH_OPS_V1 */
  void *self;
  /** Fire-and-forget; @p note is borrowed for the call. Never called for
   * a bot's devices (bots register none), for system, edit and delete
   * entries, or for messages of a shadow-banned sender. */
  chat_err (*notify)(void *self, const chat_push_note *note);
  void (*destroy)(void *self);
  /** Appended in 1.0. Fire-and-forget; @p c is borrowed for the call.
   * Called once per registered device of a member whose read mark passed
   * messages that member was pushed about (storage push_record and
   * push_read). NULL: no clears. */
  chat_err (*clear)(void *self, const chat_push_clear *c);
} chat_push_ops;

/* ------------------------------------------------------------------------
 * Auth: a bearer token to an identity, before the WebSocket upgrade.
 * Synchronous: the upgrade is decided inside the HTTP request. Without an
 * auth module the server refuses every token (CHAT_ERR_AUTH). */
#define CHAT_AUTH_OPS_V1 1
typedef struct chat_auth_ops {
  uint32_t version; /* CHAT_AUTH_OPS_V1 */
  void *self;
  /** CHAT_OK with *out filled, or CHAT_ERR_AUTH for a missing, malformed,
   * forged or expired token. @p now_ms is Unix wall-clock ms (env.wall_ms),
   * the clock of expires_ms. *out arrives zeroed with out->version set to
   * the newest CHAT_IDENTITY_V<n> the server knows; fill user_id,
   * device_id, expires_ms and kind (the fields of CHAT_IDENTITY_V1). */
  chat_err (*verify)(void *self, const char *token, size_t len,
                     int64_t now_ms, chat_identity *out);
  void (*destroy)(void *self);
} chat_auth_ops;

#ifdef __cplusplus
}
#endif
#endif /* CHAT_MODULES_H */

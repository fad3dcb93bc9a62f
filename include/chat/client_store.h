/* The client's local store as a module: what a chat_client keeps on the
 * device (messages, last_seen per conversation, the outbox of unacked
 * sends, receipt marks, the conversation list), behind a versioned vtable
 * so an app can bring its own (a platform database, an encrypted store).
 * chat_sqlite_client_store_open() (include/chat/sqlite.h) is the default.
 *
 * Shape (the same as the server modules of include/chat/modules.h): a
 * struct of `version`, `self` and methods taking `self` first; sinks that
 * the store calls back take their `ctx` first. Every method is required in
 * V1 except destroy; V2 appends the methods of PROTOCOL.md section 8 (edit
 * and delete), required in a V2 store. The client reads a V1 struct only
 * up to its V1 fields.
 *
 * Ownership: chat_client_new() copies the ops struct; from its CHAT_OK on
 * the client owns the store and calls destroy(self) from
 * chat_client_free(). When chat_client_new() fails the caller still owns
 * it. Arguments are borrowed for the call only: a store copies what it
 * keeps. Pointers a store hands to a sink are the store's, valid until the
 * sink returns.
 *
 * Threads: the client calls its store only from inside chat_client_*
 * calls, on the calling thread, one call at a time. Calls nest: a sink of
 * an each_* walk may call any method of the same store, including another
 * walk (the app lists messages from inside a message callback, or sends
 * from one), and the outer walk must go on unharmed. Rows written during a
 * walk may or may not be seen by it.
 *
 * Errors: CHAT_OK, or CHAT_ERR_MODULE when the store failed (the client
 * reports it and, for writes the app asked for, refuses the operation),
 * CHAT_ERR_NOMEM when out of memory. get_conversation also answers
 * CHAT_ERR_NOT_FOUND. A failed write changes nothing. Any other code is
 * taken as CHAT_ERR_MODULE.
 *
 * A conformance suite (tests/unit/test_client_store_conformance.c) runs
 * the same cases against the SQLite store and the in-memory reference
 * store of tests/support/memory_client_store.c; a new store should pass
 * it too. */
#ifndef CHAT_CLIENT_STORE_H
#define CHAT_CLIENT_STORE_H

#include "common.h"
#include "frame.h"

#ifdef __cplusplus
extern "C" {
#endif

/** One unacked send. seq orders the outbox: each_outbox() hands entries
 * out in increasing seq, which is the order outbox_add() was called in
 * (the store assigns it; outbox_add() ignores the field). The struct is
 * frozen: later fields go into a new struct under a new ops version. */
typedef struct chat_client_outbox_entry {
  int64_t seq;
  const char *client_msg_id;   /* 1..64 bytes, unique in the outbox */
  const char *conversation_id;
  chat_str body;               /* UTF-8, may be empty */
} chat_client_outbox_entry;

/** What an outbox entry asks the server for (CHAT_CLIENT_STORE_OPS_V2;
 * PROTOCOL.md section 8). Values are stable. @since 1.0 */
typedef enum chat_client_outbox_kind {
  CHAT_CLIENT_OUTBOX_SEND = 0,   /* a `send` */
  CHAT_CLIENT_OUTBOX_EDIT = 1,   /* an `edit`: body replaces target_id's */
  CHAT_CLIENT_OUTBOX_DELETE = 2  /* a `delete` of target_id; body empty */
} chat_client_outbox_kind;

/** One unacked send, edit or delete, for the outbox methods of
 * CHAT_CLIENT_STORE_OPS_V2. The fields of chat_client_outbox_entry, then
 * what the entry asks for. Frozen like chat_client_outbox_entry.
 * @since 1.0 */
typedef struct chat_client_outbox_entry_v2 {
  int64_t seq;
  const char *client_msg_id;   /* 1..64 bytes, unique in the outbox */
  const char *conversation_id;
  chat_str body;               /* UTF-8, may be empty (always for DELETE) */
  chat_client_outbox_kind kind;
  uint64_t target_id;          /* EDIT and DELETE: the message; SEND: 0 */
} chat_client_outbox_entry_v2;

#define CHAT_CLIENT_STORE_OPS_V1 1
/* V2 appends the methods of PROTOCOL.md section 8 (edit and delete): the
 * outbox with edits and deletes, one message by id, applying edit and
 * delete entries, and forgetting a conversation's last_seen. A V1 store
 * still works: the client then stores edit and delete entries as they
 * are, without applying them, and refuses chat_client_edit() and
 * chat_client_delete(). @since 1.0 */
#define CHAT_CLIENT_STORE_OPS_V2 2

typedef struct chat_client_store_ops {
  uint32_t version; /* CHAT_CLIENT_STORE_OPS_V1 or _V2 */
  void *self;       /* the store instance, first argument of every method */

  /* ---- messages ---- */

  /* Store m unless (conversation_id, message_id) is there already (the
   * stored copy is kept). *inserted says which. own: a message of this
   * user (their receipt state starts at CHAT_RECEIPT_NONE). Keep every
   * field of m except media_refs (section 8 ones included: target_id,
   * sender_kind, edited_ts, deleted). */
  chat_err (*put_message)(void *self, const chat_message *m, bool own,
                          bool *inserted);
  /* Up to `limit` (0: 50) messages of a conversation with message_id <
   * `before` (0: no bound), the newest such, handed to fn oldest first,
   * with own and receipt state as stored. */
  chat_err (*each_message)(void *self, const char *conversation_id,
                           uint64_t before, uint32_t limit,
                           void (*fn)(void *ctx, const chat_message *m,
                                      bool own, chat_receipt_state state),
                           void *ctx);
  /* Own messages of the conversation with message_id <= up_to: state =
   * max(stored state, state). Never lowers a state. */
  chat_err (*set_receipt)(void *self, const char *conversation_id,
                          uint64_t up_to, chat_receipt_state state);

  /* ---- last_seen: the newest message id the device holds without a gap,
   * per conversation; only ever raised ---- */

  /* *out = 0 for a conversation without one (still CHAT_OK). */
  chat_err (*get_last_seen)(void *self, const char *conversation_id,
                            uint64_t *out);
  /* last_seen = max(last_seen, id). */
  chat_err (*set_last_seen)(void *self, const char *conversation_id,
                            uint64_t id);
  chat_err (*each_last_seen)(void *self,
                             void (*fn)(void *ctx,
                                        const char *conversation_id,
                                        uint64_t id),
                             void *ctx);

  /* ---- the outbox ---- */

  /* Append e (a send); CHAT_ERR_MODULE when e->client_msg_id is there
   * already. */
  chat_err (*outbox_add)(void *self, const chat_client_outbox_entry *e);
  /* Remove one entry, of any kind; removing an unknown id is CHAT_OK. */
  chat_err (*outbox_remove)(void *self, const char *client_msg_id);
  /* The sends of the outbox, in seq order. A V2 store leaves out its
   * edits and deletes here (each_outbox_v2 has every entry), so that
   * nothing reading the V1 shape can take an edit for a send. */
  chat_err (*each_outbox)(void *self,
                          void (*fn)(void *ctx,
                                     const chat_client_outbox_entry *e),
                          void *ctx);

  /* ---- receipt marks: per conversation and kind (DELIVERED or READ),
   * the high-water mark the app set (want) and what was written to a
   * socket (sent) ---- */

  /* Replace the pair of (conversation_id, kind). */
  chat_err (*set_mark)(void *self, const char *conversation_id,
                       chat_receipt_state kind, uint64_t want,
                       uint64_t sent);
  chat_err (*each_mark)(void *self,
                        void (*fn)(void *ctx, const char *conversation_id,
                                   chat_receipt_state kind, uint64_t want,
                                   uint64_t sent),
                        void *ctx);

  /* ---- conversations (PROTOCOL.md section 5) ---- */

  /* Insert or replace. Activity for each_conversation's order is the
   * newer of last_message's id and the newest stored message. */
  chat_err (*put_conversation)(void *self, const chat_conversation *conv);
  /* Type and member count; CHAT_ERR_NOT_FOUND (with *n_members 0) when
   * the conversation is unknown. */
  chat_err (*get_conversation)(void *self, const char *conversation_id,
                               chat_conversation_type *type,
                               uint32_t *n_members);
  /* Every stored conversation, most recent activity first (ties: by id),
   * with everything put_conversation() was given (admins included) except
   * last_message, which is not kept: it is NULL here. */
  chat_err (*each_conversation)(void *self,
                                void (*fn)(void *ctx,
                                           const chat_conversation *conv),
                                void *ctx);

  /* Release the store. NULL: nothing to release. After it returns the
   * client never calls the store again. */
  void (*destroy)(void *self);

  /* ---- CHAT_CLIENT_STORE_OPS_V2: edit and delete (PROTOCOL.md section
   * 8). Every method below is required in a V2 store; a V1 struct does
   * not have them. ---- */

  /* Append e, of any kind, to the same outbox as outbox_add (one seq
   * order for both; outbox_add's entries are SEND). CHAT_ERR_MODULE when
   * e->client_msg_id is there already. */
  chat_err (*outbox_add_v2)(void *self,
                            const chat_client_outbox_entry_v2 *e);
  /* Every outbox entry, sends, edits and deletes, in seq order. With a V2
   * store the client loads its outbox from here. */
  chat_err (*each_outbox_v2)(void *self,
                             void (*fn)(void *ctx,
                                        const chat_client_outbox_entry_v2 *e),
                             void *ctx);

  /* The stored message (conversation_id, message_id), handed to fn once
   * as each_message would; CHAT_ERR_NOT_FOUND (fn not called) when it is
   * not stored. */
  chat_err (*get_message)(void *self, const char *conversation_id,
                          uint64_t message_id,
                          void (*fn)(void *ctx, const chat_message *m,
                                     bool own, chat_receipt_state state),
                          void *ctx);

  /* Bring the stored message (conversation_id, message_id), the target,
   * up to date with the edit and delete entries the store holds that
   * name it (stored messages with body_type CHAT_BODY_EDIT or
   * CHAT_BODY_DELETE and that target_id, in the same conversation).
   * The result depends only on the target as first stored and the set of
   * entries, never on the order they were stored in, so calling it after
   * every put_message of a target or an entry converges:
   * - nothing happens (*changed false) when the target is not stored or
   *   is not a TEXT or MEDIA message (entries and system messages are
   *   never targets);
   * - deleted: when the target is marked deleted, or a DELETE entry names
   *   it, its body is erased (set empty, the old bytes overwritten, not
   *   hidden), it is marked deleted, and the bodies of every EDIT entry
   *   naming it are erased too. Nothing brings a deleted target back;
   * - edited: otherwise the EDIT entry with the highest message_id, W,
   *   is applied (body := W's body, edited_ts := W's server_ts) unless the
   *   target already holds W or a later one: when the target's body came
   *   from an entry, W applies if its id is higher than that entry's;
   *   when it came with the target itself (edited_ts as the server read
   *   it back), W applies if W's server_ts is at or after that
   *   edited_ts.
   * *changed says whether the target's state changed (its body,
   * edited_ts or deleted); erasing the bodies of edit entries does not
   * count. A failure changes nothing. */
  chat_err (*apply_changes)(void *self, const char *conversation_id,
                            uint64_t message_id, bool *changed);

  /* Forget the conversation's last_seen (the user is no longer a member:
   * resume stops asking for it). Its messages stay. Forgetting one that
   * has none is CHAT_OK. */
  chat_err (*forget_last_seen)(void *self, const char *conversation_id);
} chat_client_store_ops;

#ifdef __cplusplus
}
#endif
#endif /* CHAT_CLIENT_STORE_H */

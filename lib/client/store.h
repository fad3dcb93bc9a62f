/* The client's local store, behind a small vtable so the client core stays
 * testable and free of SQLite (lib/backends/sqlite/client_store.c is the
 * default implementation). Every method returns CHAT_OK or CHAT_ERR_MODULE
 * (CHAT_ERR_NOMEM where it allocates); a failed write changes nothing.
 * Strings handed to callbacks are borrowed for the callback only. */
#ifndef CHAT__CLIENT_STORE_H
#define CHAT__CLIENT_STORE_H

#include <chat/client.h>

/* One unacked send. */
typedef struct chat__outbox_entry {
  int64_t seq; /* order of sending */
  const char *client_msg_id;
  const char *conversation_id;
  chat_str body;
} chat__outbox_entry;

typedef struct chat__cstore_ops {
  void *self;
  /* Store a message unless (conversation_id, message_id) is there already;
   * *inserted says which. own marks messages of this user. */
  chat_err (*put_message)(void *self, const chat_message *m, bool own,
                          bool *inserted);
  /* Messages of a conversation below `before` (0: newest), oldest first;
   * own and receipt state as stored. */
  chat_err (*each_message)(void *self, const char *conversation_id,
                           uint64_t before, uint32_t limit,
                           void (*fn)(const chat_message *m, bool own,
                                      int state, void *ud),
                           void *ud);
  /* Own messages of conversation up to `up_to`: receipt state = max(state,
   * s). */
  chat_err (*set_receipt)(void *self, const char *conversation_id,
                          uint64_t up_to, int state);
  /* last_seen: only ever raised. */
  chat_err (*get_last_seen)(void *self, const char *conversation_id,
                            uint64_t *out);
  chat_err (*set_last_seen)(void *self, const char *conversation_id,
                            uint64_t id);
  chat_err (*each_last_seen)(void *self,
                             void (*fn)(const char *conversation_id,
                                        uint64_t id, void *ud),
                             void *ud);
  /* Outbox, in seq order. */
  chat_err (*outbox_add)(void *self, const chat__outbox_entry *e);
  chat_err (*outbox_remove)(void *self, const char *client_msg_id);
  chat_err (*each_outbox)(void *self,
                          void (*fn)(const chat__outbox_entry *e, void *ud),
                          void *ud);
  /* Receipt marks: kind 1 delivered, 2 read; want is the high-water mark the
   * app set, sent what has been written to a socket. */
  chat_err (*set_mark)(void *self, const char *conversation_id, int kind,
                       uint64_t want, uint64_t sent);
  chat_err (*each_mark)(void *self,
                        void (*fn)(const char *conversation_id, int kind,
                                   uint64_t want, uint64_t sent, void *ud),
                        void *ud);
  /* Conversations (the list of PROTOCOL.md section 5). */
  chat_err (*put_conversation)(void *self, const chat_conversation *conv);
  /* *n_members 0 and CHAT_ERR_NOT_FOUND when unknown. */
  chat_err (*get_conversation)(void *self, const char *conversation_id,
                               chat_conversation_type *type,
                               uint32_t *n_members);
  chat_err (*each_conversation)(void *self,
                                void (*fn)(const chat_conversation *conv,
                                           void *ud),
                                void *ud);
  void (*destroy)(void *self);
} chat__cstore_ops;

struct chat_client_store {
  chat__cstore_ops ops;
};

#endif

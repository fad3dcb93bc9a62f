/* A storage (and presence) module that answers later: every call that
 * takes an op is copied and returns CHAT_PENDING, and completes when the
 * test says so, by running the wrapped synchronous module on the copy and
 * calling chat_op_complete(). It models a network-backed module (libpq on a
 * worker thread, a Redis client) as modules.h describes one:
 *   - arguments are copied before CHAT_PENDING is returned (the caller's
 *     die with the call; the copies are what the inner module sees);
 *   - emits and completions happen on the loop thread only;
 *   - DEFER_THREAD: a worker thread hands each completion over with
 *     chat_op_post(), and the loop thread runs it in
 *     chat_server_run_posted();
 *   - after destroy() nothing is touched: queued calls are dropped.
 * Fire-and-forget presence methods (device_online, ...) pass straight
 * through. */
#ifndef CHAT_TEST_DEFER_STORE_H
#define CHAT_TEST_DEFER_STORE_H

#include <chat/modules.h>
#include <chat/server.h>

typedef enum defer_mode {
  DEFER_OFF = 0,  /* not used: the inner module is installed as it is */
  DEFER_FIFO,     /* completes in call order */
  DEFER_SHUFFLE,  /* completes in a seeded random order */
  DEFER_THREAD    /* FIFO, handed over by a worker thread */
} defer_mode;

/* The mode named by CHAT_TEST_STORE ("sync", "fifo", "shuffle", "thread");
 * DEFER_OFF when unset. */
defer_mode defer_mode_from_env(void);
const char *defer_mode_name(defer_mode m);

typedef enum defer_kind {
  DK_CONVERSATION_GET,
  DK_CONVERSATION_CREATE,
  DK_MEMBER_ADD,
  DK_MEMBER_REMOVE,
  DK_CONVERSATIONS_OF,
  DK_APPEND,
  DK_MESSAGES,
  DK_MAX_MESSAGE_ID,
  DK_MARK,
  DK_RECEIPTS,
  DK_PURGE_RECEIPTS,
  DK_DEVICE_REGISTER,
  DK_PUSH_TARGETS,
  DK_MEDIA_PUT,
  DK_MEDIA_GET,
  DK_LOCATE,
  DK_GET_STATE,
  /* section 8 */
  DK_MEMBER_CHANGE,
  DK_MESSAGES_AS,
  DK_SHADOW_BAN_SET,
  DK_SHADOW_BANS,
  DK_PUSH_RECORD,
  DK_PUSH_READ
} defer_kind;

/* What a queued call is about, for tests that complete some calls only. */
typedef struct defer_call_info {
  defer_kind kind;
  const char *key; /* conversation, user or media id; "" when none */
} defer_call_info;

typedef struct defer_store defer_store;

/* Wrap @p inner (the wrapper owns it from here: its destroy is called from
 * the wrapper's). *out is the ops to install. */
defer_store *defer_store_new(const chat_storage_ops *inner, defer_mode mode,
                             uint64_t seed, chat_storage_ops *out);
/* Wrap a presence module on the same queue (locate and get_state defer;
 * the rest pass through). The wrapper owns @p inner. */
void defer_store_wrap_presence(defer_store *d, const chat_presence_ops *inner,
                               chat_presence_ops *out);

/* Complete every call queued now (not those they queue): in call order or
 * shuffled; DEFER_THREAD waits until the worker has posted them all, and
 * the caller then runs chat_server_run_posted(). Returns how many. */
size_t defer_store_run(defer_store *d);
/* Complete the queued calls for which pred says true, in call order. */
size_t defer_store_run_where(defer_store *d,
                             bool (*pred)(const defer_call_info *c, void *ud),
                             void *ud);
size_t defer_store_pending(const defer_store *d);
/* Queued calls for which pred says true. */
size_t defer_store_pending_where(const defer_store *d,
                                 bool (*pred)(const defer_call_info *c,
                                              void *ud),
                                 void *ud);
/* Calls made through the wrapper so far (each answered CHAT_PENDING). */
size_t defer_store_calls(const defer_store *d);

#endif

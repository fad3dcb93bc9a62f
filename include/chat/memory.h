/* In-process presence registry and routing bus: the single-node defaults,
 * and a way to run several chat_server instances (gateways) in one process
 * with real cross-gateway routing, for tests and demos.
 *
 * A chat_memory_hub owns the state; the ops it hands out borrow it, so the
 * hub must outlive every server they are installed in. Their destroy
 * methods do nothing; chat_memory_hub_free() releases everything.
 * Threads: a hub and everything using it belong to one thread at a time. */
#ifndef CHAT_MEMORY_H
#define CHAT_MEMORY_H

#include "modules.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chat_memory_hub chat_memory_hub;

/** @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_NOMEM */
CHAT_API chat_err chat_memory_hub_new(chat_memory_hub **out,
                                      const chat_allocator *alloc);

/** Free the hub, its registry and any undelivered bus messages. NULL is a
 * no-op. */
CHAT_API void chat_memory_hub_free(chat_memory_hub *hub);

/** Presence ops backed by the hub (shared by every server given them). */
CHAT_API chat_err chat_memory_presence_ops(chat_memory_hub *hub,
                                           chat_presence_ops *out);

/** Bus ops backed by the hub. publish() queues the message for the named
 * gateway; nothing is delivered until chat_memory_hub_drain(). A queue
 * holds at most 65,536 messages; past that publish() drops the message and
 * returns CHAT_ERR_AGAIN (the bus is fire-and-forget; resume recovers). */
CHAT_API chat_err chat_memory_bus_ops(chat_memory_hub *hub,
                                      chat_bus_ops *out);

typedef void (*chat_memory_deliver_fn)(void *user_data, const char *msg,
                                       size_t len);

/** Hand every message queued for @p gateway_id to @p fn, oldest first, and
 * forget them. Messages published while draining wait for the next drain.
 * Returns the number delivered. */
CHAT_API size_t chat_memory_hub_drain(chat_memory_hub *hub,
                                      const char *gateway_id,
                                      chat_memory_deliver_fn fn,
                                      void *user_data);

/** Messages queued for @p gateway_id. */
CHAT_API size_t chat_memory_hub_pending(const chat_memory_hub *hub,
                                        const char *gateway_id);

/* ------------------------------------------------------------------------
 * Push backends */

/** Push ops that append each note to the file at @p path as one JSON line
 * {"user_id","device_id","conversation_id","sender_id","preview",
 * "platform","message_id"} (chatd --push-log), and each receipt-aware
 * clear (push.clear, PROTOCOL.md section 8) as a line
 * {"type":"clear","user_id","device_id","conversation_id","platform",
 * "up_to"}, flushed per line. The file is opened for appending now and
 * closed by destroy.
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_MODULE cannot open
 * @retval CHAT_ERR_NOMEM */
CHAT_API chat_err chat_push_file_open(chat_push_ops *out, const char *path,
                                      const chat_allocator *alloc);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_MEMORY_H */

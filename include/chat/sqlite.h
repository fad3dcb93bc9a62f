/* The embedded default store: chat_storage_ops on SQLite (WAL mode, every
 * append committed before it returns, versioned schema migrations).
 * Installed only when libchat is built with SQLite. */
#ifndef CHAT_SQLITE_H
#define CHAT_SQLITE_H

#include "client_store.h"
#include "modules.h"

#ifdef __cplusplus
extern "C" {
#endif

/** How hard a commit waits for the disk. FULL (the default) fsyncs every
 * commit, so an acked message survives power loss; NORMAL survives a
 * process crash (SIGKILL) but may lose the last commits on power loss. */
typedef enum chat_sqlite_sync {
  CHAT_SQLITE_SYNC_FULL = 0,
  CHAT_SQLITE_SYNC_NORMAL = 1
} chat_sqlite_sync;

#define CHAT_SQLITE_OPTIONS_V1 1
typedef struct chat_sqlite_options {
  uint32_t version;      /* CHAT_SQLITE_OPTIONS_V1 */
  chat_sqlite_sync sync; /* default FULL */
  uint32_t busy_timeout_ms; /* default 5000 */
} chat_sqlite_options;

/** Open (creating and migrating as needed) the database at @p path
 * (":memory:" for a private in-memory database) and fill @p out with its
 * storage ops. Every method finishes before it returns (it never answers
 * CHAT_PENDING and ignores its op, which may be NULL when a host calls it
 * directly). The store is released by out->destroy(out->self), which
 * chat_server_free() calls once the ops are installed. @p options and
 * @p alloc are copied (NULL: defaults and libc).
 * @param err may be NULL; on failure one line naming what was wrong
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL out or path is NULL, options version 0 or
 *         unknown, or an unknown sync mode
 * @retval CHAT_ERR_MODULE SQLite could not open or migrate the database
 *         (including a schema newer than this library knows)
 * @retval CHAT_ERR_NOMEM
 * @since 0.1 */
CHAT_API chat_err chat_sqlite_storage_open(chat_storage_ops *out,
                                           const char *path,
                                           const chat_sqlite_options *options,
                                           const chat_allocator *alloc,
                                           chat_errbuf *err);

/** Open (creating and migrating as needed) a client's local store at
 * @p path (":memory:" for a private in-memory one): messages, last_seen,
 * the outbox of unacked sends, receipt marks and the conversation list.
 * Fills @p out with its ops (include/chat/client_store.h): hand them to
 * chat_client_new(), which then owns the store, or release it with
 * out->destroy(out->self). @p alloc is copied (NULL: libc) and used for
 * the store's own memory (SQLite's is SQLite's). One store belongs to one
 * client and is used from that client's thread. The file is in WAL mode
 * with synchronous=NORMAL: it survives the app being killed; a power loss
 * may lose the last writes, which only means a message is fetched again or
 * a send retried (both idempotent).
 * @p err (may be NULL) receives one line on failure (the path and
 * SQLite's reason); it is untouched on success.
 * @retval CHAT_OK *out set
 * @retval CHAT_ERR_INVAL out or path is NULL (*out zeroed)
 * @retval CHAT_ERR_MODULE SQLite could not open or migrate the file
 *         (including a schema newer than this library knows)
 * @retval CHAT_ERR_NOMEM
 * @since 1.0 */
CHAT_API chat_err chat_sqlite_client_store_open(chat_client_store_ops *out,
                                                const char *path,
                                                const chat_allocator *alloc,
                                                chat_errbuf *err);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_SQLITE_H */

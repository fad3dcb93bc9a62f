/* An in-memory chat_client_store_ops: the reference implementation of
 * include/chat/client_store.h that the conformance suite holds the SQLite
 * store to, and a store for tests that want no SQLite. Plain arrays,
 * linear scans: correctness over speed. Walks hand out a private copy of
 * their rows, so a sink may call anything on the store. */
#ifndef CHAT_TEST_MEMORY_CLIENT_STORE_H
#define CHAT_TEST_MEMORY_CLIENT_STORE_H

#include <chat/client_store.h>

/* Fill out (CHAT_CLIENT_STORE_OPS_V2); release with
 * out->destroy(out->self). CHAT_ERR_NOMEM only. */
chat_err memory_client_store_open(chat_client_store_ops *out);

/* The same store as a V1 one (version CHAT_CLIENT_STORE_OPS_V1, the V2
 * methods NULL): what a store written against 1.0's first ops looks like
 * to the client. */
chat_err memory_client_store_open_v1(chat_client_store_ops *out);

/* A wrapper around another store whose writes can be made to fail with
 * CHAT_ERR_MODULE (reads keep working), for tests of the client's
 * behaviour on store failures. It owns `inner` (destroyed with it). */
typedef struct failing_store failing_store;
chat_err failing_store_wrap(chat_client_store_ops *out,
                            const chat_client_store_ops *inner,
                            failing_store **handle);
void failing_store_set(failing_store *f, bool fail);
/* Make only the named write method fail ("apply_changes"); NULL: none. */
void failing_store_set_only(failing_store *f, const char *method);
/* Writes refused since the wrapper was made. */
unsigned failing_store_refused(const failing_store *f);

#endif

/* What the tests may see of the SQLite client store besides its ops. */
#ifndef CHAT__SQLITE_CLIENT_STORE_INTERNAL_H
#define CHAT__SQLITE_CLIENT_STORE_INTERNAL_H

#include <chat/common.h>

/* How many SQL statements the store (ops.self) has compiled since it was
 * opened: a fixed handful however many calls it serves, plus one for each
 * walk nested inside a walk of the same kind. */
uint64_t chat__sqlite_client_store_prepares(void *self);

/* How many times the store truncated its WAL after erasing bytes
 * (apply_changes deleting a message). */
uint64_t chat__sqlite_client_store_checkpoints(void *self);

#endif

/* The client's local store on SQLite (chat_sqlite_client_store_open(),
 * include/chat/client_store.h).
 *
 * One connection, WAL journal for files, synchronous=NORMAL (the store must
 * survive the app being killed, and a lost last write on power loss only
 * means a message is fetched again or a send is retried: both are
 * idempotent). Every write is a single statement, so it is atomic on its
 * own.
 *
 * Statements are compiled once and cached, one per kind. Walks (each_*)
 * call back into the app, which may call the store again, even for another
 * walk of the same kind: a cached statement that is mid-walk is never
 * reset; the nested call compiles a statement of its own and finalizes it
 * after. Rows handed to a sink live in an arena reset per row; a nested
 * walk uses its own arena so the outer row stays intact.
 *
 * Media references of stored messages are not kept (the app asks the server
 * for media by id); everything else of a message is.
 *
 * Erasing (PROTOCOL.md section 8: a deleted body is gone from the store,
 * not hidden): secure_delete is on, so SQLite overwrites the bytes a row
 * gave up; and after an erase the WAL is checkpointed and truncated, so no
 * older copy of the page survives in it. The checkpoint waits until no
 * walk of this connection is active (a walk holds a read transaction). */
#include <chat/sqlite.h>

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "backends/sqlite/client_store_internal.h"
#include "common/alloc.h"
#include "common/arena.h"
#include "common/check.h"

#define SCHEMA_VERSION 3

static const char schema_v1[] =
  "CREATE TABLE messages("
  " conversation_id TEXT NOT NULL,"
  " message_id INTEGER NOT NULL,"
  " sender_id TEXT NOT NULL,"
  " client_msg_id TEXT,"
  " body BLOB NOT NULL,"
  " body_type INTEGER NOT NULL,"
  " reply_to INTEGER,"
  " server_ts INTEGER NOT NULL,"
  " own INTEGER NOT NULL,"
  " state INTEGER NOT NULL DEFAULT 0,"
  " PRIMARY KEY(conversation_id, message_id)) WITHOUT ROWID;"
  "CREATE TABLE last_seen("
  " conversation_id TEXT PRIMARY KEY,"
  " message_id INTEGER NOT NULL) WITHOUT ROWID;"
  /* seq is the rowid: sends keep the order they were made in. */
  "CREATE TABLE outbox("
  " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
  " client_msg_id TEXT NOT NULL UNIQUE,"
  " conversation_id TEXT NOT NULL,"
  " body BLOB NOT NULL);"
  "CREATE TABLE marks("
  " conversation_id TEXT NOT NULL,"
  " kind INTEGER NOT NULL,"
  " want INTEGER NOT NULL,"
  " sent INTEGER NOT NULL,"
  " PRIMARY KEY(conversation_id, kind)) WITHOUT ROWID;"
  /* members is the id list joined by spaces (ids never hold one). */
  "CREATE TABLE conversations("
  " conversation_id TEXT PRIMARY KEY,"
  " type INTEGER NOT NULL,"
  " name TEXT,"
  " members TEXT NOT NULL,"
  " n_members INTEGER NOT NULL,"
  " unread_count INTEGER NOT NULL,"
  " last_read INTEGER,"
  " activity INTEGER NOT NULL) WITHOUT ROWID;";

/* Version 2: the section 8 state of a message (edit and delete entries
 * name their target; bots; edited and deleted messages read back) and a
 * group's admins (joined by spaces, like members). */
static const char schema_v2[] =
  "ALTER TABLE messages ADD COLUMN target_id INTEGER;"
  "ALTER TABLE messages ADD COLUMN sender_kind INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE messages ADD COLUMN edited_ts INTEGER;"
  "ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE conversations ADD COLUMN admins TEXT NOT NULL DEFAULT '';";

/* Version 3: edits and deletes applied in place (CHAT_CLIENT_STORE_OPS_V2).
 * edit_id is the message id of the edit entry whose body the message holds
 * (0: its own, or the one the server read back with it); the index finds
 * the entries that name a target; outbox entries say what they ask for. */
static const char schema_v3[] =
  "ALTER TABLE messages ADD COLUMN edit_id INTEGER NOT NULL DEFAULT 0;"
  "CREATE INDEX messages_by_target ON messages(conversation_id, target_id)"
  " WHERE target_id IS NOT NULL;"
  "ALTER TABLE outbox ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE outbox ADD COLUMN target_id INTEGER NOT NULL DEFAULT 0;";

/* The statements, one per kind; each is cached in cstore.cache. */
enum {
  Q_PUT_MESSAGE,
  Q_EACH_MESSAGE,
  Q_SET_RECEIPT,
  Q_GET_LAST_SEEN,
  Q_SET_LAST_SEEN,
  Q_EACH_LAST_SEEN,
  Q_OUTBOX_ADD,
  Q_OUTBOX_REMOVE,
  Q_EACH_OUTBOX,
  Q_SET_MARK,
  Q_EACH_MARK,
  Q_PUT_CONVERSATION,
  Q_GET_CONVERSATION,
  Q_EACH_CONVERSATION,
  /* V2 */
  Q_OUTBOX_ADD_V2,
  Q_EACH_OUTBOX_V2,
  Q_GET_MESSAGE,
  Q_TARGET,
  Q_HAS_DELETE,
  Q_ERASE_TARGET,
  Q_ERASE_EDITS,
  Q_LAST_EDIT,
  Q_SET_EDIT,
  Q_FORGET_LAST_SEEN,
  Q_SAVEPOINT,
  Q_RELEASE,
  Q_ROLLBACK_TO,
  Q_COUNT
};

/* The columns each_message and get_message hand out, in row_message()'s
 * order. */
#define MESSAGE_COLUMNS                                                        \
  "message_id, sender_id, client_msg_id, body, body_type, reply_to,"          \
  " server_ts, own, state, target_id, sender_kind, edited_ts, deleted"

static const char *const sql_of[Q_COUNT] = {
  [Q_PUT_MESSAGE] =
    "INSERT OR IGNORE INTO messages(conversation_id, message_id, sender_id,"
    " client_msg_id, body, body_type, reply_to, server_ts, own, target_id,"
    " sender_kind, edited_ts, deleted)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
  /* The newest `limit` below `before`, handed out oldest first. */
  [Q_EACH_MESSAGE] =
    "SELECT * FROM (SELECT " MESSAGE_COLUMNS " FROM messages"
    " WHERE conversation_id = ?1 AND message_id <= ?2"
    " ORDER BY message_id DESC LIMIT ?3) ORDER BY message_id",
  [Q_SET_RECEIPT] =
    "UPDATE messages SET state = ?3 WHERE conversation_id = ?1"
    " AND message_id <= ?2 AND own = 1 AND state < ?3",
  [Q_GET_LAST_SEEN] =
    "SELECT message_id FROM last_seen WHERE conversation_id = ?1",
  [Q_SET_LAST_SEEN] =
    "INSERT INTO last_seen(conversation_id, message_id) VALUES(?1, ?2)"
    " ON CONFLICT(conversation_id) DO UPDATE SET"
    " message_id = max(message_id, excluded.message_id)",
  [Q_EACH_LAST_SEEN] =
    "SELECT conversation_id, message_id FROM last_seen"
    " ORDER BY conversation_id",
  [Q_OUTBOX_ADD] =
    "INSERT INTO outbox(client_msg_id, conversation_id, body)"
    " VALUES(?1, ?2, ?3)",
  [Q_OUTBOX_REMOVE] = "DELETE FROM outbox WHERE client_msg_id = ?1",
  /* V1's walk: sends only (kind 0). */
  [Q_EACH_OUTBOX] =
    "SELECT seq, client_msg_id, conversation_id, body FROM outbox"
    " WHERE kind = 0 ORDER BY seq",
  [Q_SET_MARK] =
    "INSERT OR REPLACE INTO marks(conversation_id, kind, want, sent)"
    " VALUES(?1, ?2, ?3, ?4)",
  [Q_EACH_MARK] =
    "SELECT conversation_id, kind, want, sent FROM marks"
    " ORDER BY conversation_id, kind",
  [Q_PUT_CONVERSATION] =
    "INSERT OR REPLACE INTO conversations(conversation_id, type, name,"
    " members, n_members, unread_count, last_read, activity, admins)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
  [Q_GET_CONVERSATION] =
    "SELECT type, n_members FROM conversations WHERE conversation_id = ?1",
  /* Activity: the newest stored message, else the list's last message. */
  [Q_EACH_CONVERSATION] =
    "SELECT c.conversation_id, c.type, c.name, c.members, c.n_members,"
    " c.unread_count, c.last_read, c.admins, max(c.activity, coalesce((SELECT"
    " max(message_id) FROM messages m WHERE m.conversation_id ="
    " c.conversation_id), 0)) AS act FROM conversations c"
    " ORDER BY act DESC, c.conversation_id",
  [Q_OUTBOX_ADD_V2] =
    "INSERT INTO outbox(client_msg_id, conversation_id, body, kind,"
    " target_id) VALUES(?1, ?2, ?3, ?4, ?5)",
  [Q_EACH_OUTBOX_V2] =
    "SELECT seq, client_msg_id, conversation_id, body, kind, target_id"
    " FROM outbox ORDER BY seq",
  [Q_GET_MESSAGE] =
    "SELECT " MESSAGE_COLUMNS " FROM messages"
    " WHERE conversation_id = ?1 AND message_id = ?2",
  [Q_TARGET] =
    "SELECT body_type, deleted, edit_id, edited_ts, body FROM messages"
    " WHERE conversation_id = ?1 AND message_id = ?2",
  [Q_HAS_DELETE] =
    "SELECT 1 FROM messages WHERE conversation_id = ?1 AND target_id = ?2"
    " AND body_type = 4 LIMIT 1",
  [Q_ERASE_TARGET] =
    "UPDATE messages SET body = X'', deleted = 1"
    " WHERE conversation_id = ?1 AND message_id = ?2"
    " AND (deleted = 0 OR length(body) > 0)",
  [Q_ERASE_EDITS] =
    "UPDATE messages SET body = X''"
    " WHERE conversation_id = ?1 AND target_id = ?2 AND body_type = 3"
    " AND length(body) > 0",
  [Q_LAST_EDIT] =
    "SELECT message_id, server_ts, body FROM messages"
    " WHERE conversation_id = ?1 AND target_id = ?2 AND body_type = 3"
    " ORDER BY message_id DESC LIMIT 1",
  [Q_SET_EDIT] =
    "UPDATE messages SET body = ?3, edited_ts = ?4, edit_id = ?5"
    " WHERE conversation_id = ?1 AND message_id = ?2",
  [Q_FORGET_LAST_SEEN] = "DELETE FROM last_seen WHERE conversation_id = ?1",
  [Q_SAVEPOINT] = "SAVEPOINT apply_changes",
  [Q_RELEASE] = "RELEASE apply_changes",
  [Q_ROLLBACK_TO] = "ROLLBACK TO apply_changes",
};

typedef struct cstore {
  chat_allocator alloc;
  sqlite3 *db;
  sqlite3_stmt *cache[Q_COUNT];
  bool busy[Q_COUNT];   /* cache[k] is bound or mid-walk */
  unsigned walks;       /* each_* walks in progress */
  chat__arena scratch;  /* rows of the outermost walk */
  uint64_t prepares;    /* statements compiled so far */
  bool wal;             /* a file in WAL mode (not ":memory:") */
  bool checkpoint_due;  /* bytes were erased: truncate the WAL */
  uint64_t checkpoints; /* WAL truncations done (tests) */
} cstore;

static chat_err sqerr(int rc) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW)
    return CHAT_OK;
  return (rc & 0xff) == SQLITE_NOMEM ? CHAT_ERR_NOMEM : CHAT_ERR_MODULE;
}

/* The statement of kind k, reset and unbound: the cached one, or, when a
 * walk further up the stack is using it, a fresh one. */
static chat_err stmt_get(cstore *s, int k, sqlite3_stmt **st) {
  if (!s->busy[k] && s->cache[k]) {
    s->busy[k] = true;
    *st = s->cache[k];
    return CHAT_OK;
  }
  bool keep = !s->busy[k];
  int rc = sqlite3_prepare_v3(s->db, sql_of[k], -1,
                              keep ? SQLITE_PREPARE_PERSISTENT : 0, st, NULL);
  if (rc != SQLITE_OK) {
    *st = NULL;
    return sqerr(rc);
  }
  s->prepares++;
  if (keep) {
    s->cache[k] = *st;
    s->busy[k] = true;
  }
  return CHAT_OK;
}

/* Done with st: a cached statement is reset (releasing its read
 * transaction) for the next call, a fresh one finalized. */
static void stmt_put(cstore *s, int k, sqlite3_stmt *st) {
  if (st == s->cache[k]) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    s->busy[k] = false;
  } else {
    sqlite3_finalize(st);
  }
}

static void bind_text(sqlite3_stmt *st, int i, const char *t) {
  if (t)
    sqlite3_bind_text(st, i, t, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null(st, i);
}

static void bind_blob(sqlite3_stmt *st, int i, const char *p, size_t n) {
  sqlite3_bind_blob64(st, i, p ? p : "", (sqlite3_uint64)n,
                      SQLITE_TRANSIENT);
}

/* Step a write statement of kind k to completion and give it back. */
static chat_err run(cstore *s, int k, sqlite3_stmt *st, int *changes) {
  int rc = sqlite3_step(st);
  if (changes)
    *changes = rc == SQLITE_DONE ? sqlite3_changes(s->db) : 0;
  stmt_put(s, k, st);
  return rc == SQLITE_DONE ? CHAT_OK : sqerr(rc);
}

/* A walk's row memory: the store's scratch arena for the outermost walk,
 * the caller's own (local) for a nested one. */
static chat__arena *walk_begin(cstore *s, chat__arena *local) {
  chat__arena *ar = &s->scratch;
  if (s->walks > 0) {
    chat__arena_init(local, &s->alloc);
    ar = local;
  }
  s->walks++;
  return ar;
}

/* After an erase: copy every page into the database file and truncate
 * the WAL, so the erased bytes survive in no older page image. Not while a
 * walk holds a read transaction (the checkpoint could not finish): the
 * outermost walk's end does it then. Best effort: another process reading
 * the file can make it fail, and the next erase tries again. */
static void checkpoint(cstore *s) {
  if (!s->checkpoint_due || s->walks > 0)
    return;
  s->checkpoint_due = false;
  if (!s->wal)
    return;
  if (sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE,
                                NULL, NULL) == SQLITE_OK)
    s->checkpoints++;
  else
    s->checkpoint_due = true;
}

static void walk_end(cstore *s, chat__arena *ar) {
  s->walks--;
  if (ar == &s->scratch)
    chat__arena_reset(ar);
  else
    chat__arena_free(ar);
}

static const char *col_text(chat__arena *ar, sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  if (!t)
    return NULL;
  return chat__arena_strndup(ar, (const char *)t,
                             (size_t)sqlite3_column_bytes(st, i));
}

/* ------------------------------------------------------------------------
 * Messages */

static chat_err put_message(void *self, const chat_message *m, bool own,
                            bool *inserted) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_PUT_MESSAGE, &st);
  if (e)
    return e;
  bind_text(st, 1, m->conversation_id);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)m->message_id);
  bind_text(st, 3, m->sender_id);
  bind_text(st, 4, m->client_msg_id);
  bind_blob(st, 5, m->body.ptr, m->body.len);
  sqlite3_bind_int(st, 6, (int)m->body_type);
  if (m->has_reply_to)
    sqlite3_bind_int64(st, 7, (sqlite3_int64)m->reply_to);
  else
    sqlite3_bind_null(st, 7);
  sqlite3_bind_int64(st, 8, m->server_ts);
  sqlite3_bind_int(st, 9, own ? 1 : 0);
  if (m->has_target_id)
    sqlite3_bind_int64(st, 10, (sqlite3_int64)m->target_id);
  else
    sqlite3_bind_null(st, 10);
  sqlite3_bind_int(st, 11, (int)m->sender_kind);
  if (m->has_edited_ts)
    sqlite3_bind_int64(st, 12, m->edited_ts);
  else
    sqlite3_bind_null(st, 12);
  sqlite3_bind_int(st, 13, m->deleted ? 1 : 0);
  int changes;
  e = run(s, Q_PUT_MESSAGE, st, &changes);
  if (!e && inserted)
    *inserted = changes > 0;
  return e;
}

static chat_receipt_state as_state(int v) {
  return v >= CHAT_RECEIPT_NONE && v <= CHAT_RECEIPT_READ
             ? (chat_receipt_state)v
             : CHAT_RECEIPT_NONE;
}

/* Hand the current row (MESSAGE_COLUMNS) to fn; SQLITE_ROW when done,
 * SQLITE_NOMEM when the arena is out of memory. */
static int row_message(chat__arena *ar, sqlite3_stmt *st, const char *conv,
                       void (*fn)(void *, const chat_message *, bool,
                                  chat_receipt_state),
                       void *ctx) {
  chat_message m;
  memset(&m, 0, sizeof m);
  m.conversation_id = conv;
  m.message_id = (uint64_t)sqlite3_column_int64(st, 0);
  m.sender_id = col_text(ar, st, 1);
  m.client_msg_id = col_text(ar, st, 2);
  size_t n = (size_t)sqlite3_column_bytes(st, 3);
  const void *b = sqlite3_column_blob(st, 3);
  char *body = chat__arena_alloc(ar, n + 1);
  if (!body || !m.sender_id)
    return SQLITE_NOMEM;
  if (n)
    memcpy(body, b, n);
  body[n] = 0;
  m.body.ptr = body;
  m.body.len = n;
  m.body_type = (chat_body_type)sqlite3_column_int(st, 4);
  if (sqlite3_column_type(st, 5) != SQLITE_NULL) {
    m.has_reply_to = true;
    m.reply_to = (uint64_t)sqlite3_column_int64(st, 5);
  }
  m.server_ts = sqlite3_column_int64(st, 6);
  if (sqlite3_column_type(st, 9) != SQLITE_NULL) {
    m.has_target_id = true;
    m.target_id = (uint64_t)sqlite3_column_int64(st, 9);
  }
  m.sender_kind = (chat_sender_kind)sqlite3_column_int(st, 10);
  if (sqlite3_column_type(st, 11) != SQLITE_NULL) {
    m.has_edited_ts = true;
    m.edited_ts = sqlite3_column_int64(st, 11);
  }
  m.deleted = sqlite3_column_int(st, 12) != 0;
  fn(ctx, &m, sqlite3_column_int(st, 7) != 0,
     as_state(sqlite3_column_int(st, 8)));
  return SQLITE_ROW;
}

static chat_err each_message(void *self, const char *conv, uint64_t before,
                             uint32_t limit,
                             void (*fn)(void *, const chat_message *, bool,
                                        chat_receipt_state),
                             void *ctx) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_EACH_MESSAGE, &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  /* The newest id wanted, inclusive, so that the index bounds the scan:
   * below `before`, or every id (2^63-1 included) when there is none. */
  sqlite3_bind_int64(st, 2, before && before - 1 < INT64_MAX
                                ? (sqlite3_int64)(before - 1)
                                : INT64_MAX);
  sqlite3_bind_int64(st, 3, limit ? limit : 50);
  chat__arena local;
  chat__arena *ar = walk_begin(s, &local);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(ar);
    rc = row_message(ar, st, conv, fn, ctx);
    if (rc != SQLITE_ROW)
      break;
  }
  walk_end(s, ar);
  stmt_put(s, Q_EACH_MESSAGE, st);
  checkpoint(s);
  return sqerr(rc);
}

static chat_err set_receipt(void *self, const char *conv, uint64_t up_to,
                            chat_receipt_state state) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_SET_RECEIPT, &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)up_to);
  sqlite3_bind_int(st, 3, (int)state);
  return run(s, Q_SET_RECEIPT, st, NULL);
}

/* ------------------------------------------------------------------------
 * last_seen */

static chat_err get_last_seen(void *self, const char *conv, uint64_t *out) {
  cstore *s = self;
  sqlite3_stmt *st;
  *out = 0;
  chat_err e = stmt_get(s, Q_GET_LAST_SEEN, &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    *out = (uint64_t)sqlite3_column_int64(st, 0);
  stmt_put(s, Q_GET_LAST_SEEN, st);
  return sqerr(rc);
}

static chat_err set_last_seen(void *self, const char *conv, uint64_t id) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_SET_LAST_SEEN, &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
  return run(s, Q_SET_LAST_SEEN, st, NULL);
}

static chat_err each_last_seen(void *self,
                               void (*fn)(void *, const char *, uint64_t),
                               void *ctx) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_EACH_LAST_SEEN, &st);
  if (e)
    return e;
  chat__arena local;
  chat__arena *ar = walk_begin(s, &local);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(ar);
    const char *conv = col_text(ar, st, 0);
    if (!conv) {
      rc = SQLITE_NOMEM;
      break;
    }
    fn(ctx, conv, (uint64_t)sqlite3_column_int64(st, 1));
  }
  walk_end(s, ar);
  stmt_put(s, Q_EACH_LAST_SEEN, st);
  checkpoint(s);
  return sqerr(rc);
}

/* ------------------------------------------------------------------------
 * Outbox */

static chat_err outbox_add(void *self, const chat_client_outbox_entry *en) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_OUTBOX_ADD, &st);
  if (e)
    return e;
  bind_text(st, 1, en->client_msg_id);
  bind_text(st, 2, en->conversation_id);
  bind_blob(st, 3, en->body.ptr, en->body.len);
  return run(s, Q_OUTBOX_ADD, st, NULL);
}

static chat_err outbox_remove(void *self, const char *client_msg_id) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_OUTBOX_REMOVE, &st);
  if (e)
    return e;
  bind_text(st, 1, client_msg_id);
  return run(s, Q_OUTBOX_REMOVE, st, NULL);
}

static chat_err each_outbox(void *self,
                            void (*fn)(void *,
                                       const chat_client_outbox_entry *),
                            void *ctx) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_EACH_OUTBOX, &st);
  if (e)
    return e;
  chat__arena local;
  chat__arena *ar = walk_begin(s, &local);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(ar);
    chat_client_outbox_entry en;
    en.seq = sqlite3_column_int64(st, 0);
    en.client_msg_id = col_text(ar, st, 1);
    en.conversation_id = col_text(ar, st, 2);
    size_t n = (size_t)sqlite3_column_bytes(st, 3);
    char *body = chat__arena_alloc(ar, n + 1);
    if (!body || !en.client_msg_id || !en.conversation_id) {
      rc = SQLITE_NOMEM;
      break;
    }
    if (n)
      memcpy(body, sqlite3_column_blob(st, 3), n);
    body[n] = 0;
    en.body.ptr = body;
    en.body.len = n;
    fn(ctx, &en);
  }
  walk_end(s, ar);
  stmt_put(s, Q_EACH_OUTBOX, st);
  checkpoint(s);
  return sqerr(rc);
}

/* ------------------------------------------------------------------------
 * Receipt marks */

static chat_err set_mark(void *self, const char *conv, chat_receipt_state kind,
                         uint64_t want, uint64_t sent) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_SET_MARK, &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  sqlite3_bind_int(st, 2, (int)kind);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)want);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)sent);
  return run(s, Q_SET_MARK, st, NULL);
}

static chat_err each_mark(void *self,
                          void (*fn)(void *, const char *, chat_receipt_state,
                                     uint64_t, uint64_t),
                          void *ctx) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_EACH_MARK, &st);
  if (e)
    return e;
  chat__arena local;
  chat__arena *ar = walk_begin(s, &local);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(ar);
    const char *conv = col_text(ar, st, 0);
    if (!conv) {
      rc = SQLITE_NOMEM;
      break;
    }
    fn(ctx, conv, as_state(sqlite3_column_int(st, 1)),
       (uint64_t)sqlite3_column_int64(st, 2),
       (uint64_t)sqlite3_column_int64(st, 3));
  }
  walk_end(s, ar);
  stmt_put(s, Q_EACH_MARK, st);
  checkpoint(s);
  return sqerr(rc);
}

/* ------------------------------------------------------------------------
 * Conversations */

/* ids joined by single spaces (ids never hold one), in s->alloc memory:
 * not an arena, since this may run inside a walk's sink. */
static char *join_ids(cstore *s, const char *const *ids, size_t n) {
  size_t len = 1;
  for (size_t i = 0; i < n; i++)
    len += strlen(ids[i]) + 1;
  char *out = chat__alloc(&s->alloc, len);
  if (!out)
    return NULL;
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    size_t k = strlen(ids[i]);
    if (i)
      out[at++] = ' ';
    memcpy(out + at, ids[i], k);
    at += k;
  }
  out[at] = 0;
  return out;
}

/* Split a joined list in place into at most max ids (arena memory). */
static const char **split_ids(chat__arena *ar, char *joined, size_t max,
                              size_t *n) {
  const char **ids = chat__arena_alloc(ar, (max + 1) * sizeof *ids);
  *n = 0;
  if (!ids || !joined)
    return ids;
  for (char *p = joined; *p && *n < max;) {
    ids[(*n)++] = p;
    char *sp = strchr(p, ' ');
    if (!sp)
      break;
    *sp = 0;
    p = sp + 1;
  }
  return ids;
}

static chat_err put_conversation(void *self, const chat_conversation *c) {
  cstore *s = self;
  char *members = join_ids(s, c->members, c->n_members);
  char *admins = join_ids(s, c->admins, c->n_admins);
  sqlite3_stmt *st = NULL;
  chat_err e = members && admins ? stmt_get(s, Q_PUT_CONVERSATION, &st)
                                 : CHAT_ERR_NOMEM;
  if (!e) {
    bind_text(st, 1, c->conversation_id);
    sqlite3_bind_int(st, 2, (int)c->type);
    if (c->name.ptr)
      sqlite3_bind_text64(st, 3, c->name.ptr, (sqlite3_uint64)c->name.len,
                          SQLITE_TRANSIENT, SQLITE_UTF8);
    else
      sqlite3_bind_null(st, 3);
    bind_text(st, 4, members);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)c->n_members);
    sqlite3_bind_int64(st, 6, c->unread_count);
    if (c->has_last_read)
      sqlite3_bind_int64(st, 7, (sqlite3_int64)c->last_read_message_id);
    else
      sqlite3_bind_null(st, 7);
    sqlite3_bind_int64(st, 8, c->last_message
                                  ? (sqlite3_int64)c->last_message->message_id
                                  : 0);
    bind_text(st, 9, admins);
    e = run(s, Q_PUT_CONVERSATION, st, NULL);
  }
  chat__free(&s->alloc, members);
  chat__free(&s->alloc, admins);
  return e;
}

static chat_err get_conversation(void *self, const char *conv,
                                 chat_conversation_type *type,
                                 uint32_t *n_members) {
  cstore *s = self;
  sqlite3_stmt *st;
  *n_members = 0;
  chat_err e = stmt_get(s, Q_GET_CONVERSATION, &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *type = (chat_conversation_type)sqlite3_column_int(st, 0);
    *n_members = (uint32_t)sqlite3_column_int64(st, 1);
  }
  stmt_put(s, Q_GET_CONVERSATION, st);
  if (rc == SQLITE_DONE)
    return CHAT_ERR_NOT_FOUND;
  return sqerr(rc);
}

static chat_err each_conversation(void *self,
                                  void (*fn)(void *,
                                             const chat_conversation *),
                                  void *ctx) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_EACH_CONVERSATION, &st);
  if (e)
    return e;
  chat__arena local;
  chat__arena *ar = walk_begin(s, &local);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(ar);
    chat_conversation c;
    memset(&c, 0, sizeof c);
    c.conversation_id = col_text(ar, st, 0);
    c.type = (chat_conversation_type)sqlite3_column_int(st, 1);
    c.name.ptr = col_text(ar, st, 2);
    c.name.len = c.name.ptr ? (size_t)sqlite3_column_bytes(st, 2) : 0;
    char *members = (char *)col_text(ar, st, 3);
    char *admins = (char *)col_text(ar, st, 7);
    size_t n = (size_t)sqlite3_column_int64(st, 4);
    const char **ids = split_ids(ar, members, n, &c.n_members);
    /* Admins are members: no more of them than members. */
    const char **adm = split_ids(ar, admins, n, &c.n_admins);
    if (!c.conversation_id || !members || !ids || !admins || !adm) {
      rc = SQLITE_NOMEM;
      break;
    }
    c.members = ids;
    c.admins = adm;
    c.unread_count = (uint32_t)sqlite3_column_int64(st, 5);
    if (sqlite3_column_type(st, 6) != SQLITE_NULL) {
      c.has_last_read = true;
      c.last_read_message_id = (uint64_t)sqlite3_column_int64(st, 6);
    }
    fn(ctx, &c);
  }
  walk_end(s, ar);
  stmt_put(s, Q_EACH_CONVERSATION, st);
  checkpoint(s);
  return sqerr(rc);
}

/* ------------------------------------------------------------------------
 * V2: the outbox with edits and deletes, one message, applying edit and
 * delete entries (PROTOCOL.md section 8) */

static chat_err outbox_add_v2(void *self,
                              const chat_client_outbox_entry_v2 *en) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_OUTBOX_ADD_V2, &st);
  if (e)
    return e;
  bind_text(st, 1, en->client_msg_id);
  bind_text(st, 2, en->conversation_id);
  bind_blob(st, 3, en->body.ptr, en->body.len);
  sqlite3_bind_int(st, 4, (int)en->kind);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)en->target_id);
  return run(s, Q_OUTBOX_ADD_V2, st, NULL);
}

static chat_client_outbox_kind as_kind(int v) {
  return v == CHAT_CLIENT_OUTBOX_EDIT     ? CHAT_CLIENT_OUTBOX_EDIT
         : v == CHAT_CLIENT_OUTBOX_DELETE ? CHAT_CLIENT_OUTBOX_DELETE
                                          : CHAT_CLIENT_OUTBOX_SEND;
}

static chat_err each_outbox_v2(void *self,
                               void (*fn)(void *,
                                          const chat_client_outbox_entry_v2 *),
                               void *ctx) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_EACH_OUTBOX_V2, &st);
  if (e)
    return e;
  chat__arena local;
  chat__arena *ar = walk_begin(s, &local);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(ar);
    chat_client_outbox_entry_v2 en;
    memset(&en, 0, sizeof en);
    en.seq = sqlite3_column_int64(st, 0);
    en.client_msg_id = col_text(ar, st, 1);
    en.conversation_id = col_text(ar, st, 2);
    size_t n = (size_t)sqlite3_column_bytes(st, 3);
    char *body = chat__arena_alloc(ar, n + 1);
    if (!body || !en.client_msg_id || !en.conversation_id) {
      rc = SQLITE_NOMEM;
      break;
    }
    if (n)
      memcpy(body, sqlite3_column_blob(st, 3), n);
    body[n] = 0;
    en.body.ptr = body;
    en.body.len = n;
    en.kind = as_kind(sqlite3_column_int(st, 4));
    en.target_id = (uint64_t)sqlite3_column_int64(st, 5);
    fn(ctx, &en);
  }
  walk_end(s, ar);
  stmt_put(s, Q_EACH_OUTBOX_V2, st);
  checkpoint(s);
  return sqerr(rc);
}

static chat_err get_message(void *self, const char *conv, uint64_t id,
                            void (*fn)(void *, const chat_message *, bool,
                                       chat_receipt_state),
                            void *ctx) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_GET_MESSAGE, &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
  chat__arena local;
  chat__arena *ar = walk_begin(s, &local);
  int rc = sqlite3_step(st);
  bool found = rc == SQLITE_ROW;
  if (found)
    rc = row_message(ar, st, conv, fn, ctx);
  walk_end(s, ar);
  stmt_put(s, Q_GET_MESSAGE, st);
  checkpoint(s);
  if (rc == SQLITE_DONE)
    return CHAT_ERR_NOT_FOUND;
  return sqerr(rc);
}

/* Run a statement of kind k bound to (conversation, id) and nothing else
 * to completion; *changes (may be NULL) gets the rows it changed. */
static chat_err run_conv_id(cstore *s, int k, const char *conv, uint64_t id,
                            int *changes) {
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, k, &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
  return run(s, k, st, changes);
}

/* The target's state as stored. */
typedef struct target {
  chat_body_type type;
  bool deleted;
  uint64_t edit_id;
  bool has_edited_ts;
  int64_t edited_ts;
} target;

/* What apply_changes does, inside its savepoint. */
static chat_err apply_in(cstore *s, const char *conv, uint64_t id,
                         bool *changed) {
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_TARGET, &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
  int rc = sqlite3_step(st);
  target t = {0};
  size_t body_len = 0;
  char *body = NULL;
  if (rc == SQLITE_ROW) {
    t.type = (chat_body_type)sqlite3_column_int(st, 0);
    t.deleted = sqlite3_column_int(st, 1) != 0;
    t.edit_id = (uint64_t)sqlite3_column_int64(st, 2);
    t.has_edited_ts = sqlite3_column_type(st, 3) != SQLITE_NULL;
    t.edited_ts = sqlite3_column_int64(st, 3);
    body_len = (size_t)sqlite3_column_bytes(st, 4);
    body = chat__alloc(&s->alloc, body_len + 1);
    if (body && body_len)
      memcpy(body, sqlite3_column_blob(st, 4), body_len);
    if (!body)
      rc = SQLITE_NOMEM;
  }
  stmt_put(s, Q_TARGET, st);
  if (rc != SQLITE_ROW) {
    /* Not stored (DONE) or a failure. */
    chat__free(&s->alloc, body);
    return rc == SQLITE_DONE ? CHAT_OK : sqerr(rc);
  }
  if (t.type != CHAT_BODY_TEXT && t.type != CHAT_BODY_MEDIA) {
    chat__free(&s->alloc, body);
    return CHAT_OK;
  }

  bool del = t.deleted;
  if (!del) {
    e = stmt_get(s, Q_HAS_DELETE, &st);
    if (e) {
      chat__free(&s->alloc, body);
      return e;
    }
    bind_text(st, 1, conv);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
    rc = sqlite3_step(st);
    del = rc == SQLITE_ROW;
    stmt_put(s, Q_HAS_DELETE, st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
      chat__free(&s->alloc, body);
      return sqerr(rc);
    }
  }
  if (del) {
    chat__free(&s->alloc, body);
    int a = 0, b = 0;
    e = run_conv_id(s, Q_ERASE_TARGET, conv, id, &a);
    if (!e)
      e = run_conv_id(s, Q_ERASE_EDITS, conv, id, &b);
    if (!e && (a || b))
      s->checkpoint_due = true;
    if (!e && a)
      *changed = true;
    return e;
  }

  /* The newest edit entry, and whether the target holds it already. */
  e = stmt_get(s, Q_LAST_EDIT, &st);
  if (e) {
    chat__free(&s->alloc, body);
    return e;
  }
  bind_text(st, 1, conv);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    uint64_t w_id = (uint64_t)sqlite3_column_int64(st, 0);
    int64_t w_ts = sqlite3_column_int64(st, 1);
    bool apply = t.edit_id ? w_id > t.edit_id
                           : !t.has_edited_ts || w_ts >= t.edited_ts;
    if (apply) {
      /* A copy: the row is about to change under the statement. */
      size_t n = (size_t)sqlite3_column_bytes(st, 2);
      char *w_body = chat__alloc(&s->alloc, n + 1);
      if (w_body && n)
        memcpy(w_body, sqlite3_column_blob(st, 2), n);
      bool same = w_body && t.has_edited_ts && t.edited_ts == w_ts &&
                  n == body_len && (n == 0 || memcmp(w_body, body, n) == 0);
      sqlite3_stmt *up = NULL;
      e = w_body ? stmt_get(s, Q_SET_EDIT, &up) : CHAT_ERR_NOMEM;
      if (!e) {
        bind_text(up, 1, conv);
        sqlite3_bind_int64(up, 2, (sqlite3_int64)id);
        bind_blob(up, 3, w_body, n);
        sqlite3_bind_int64(up, 4, w_ts);
        sqlite3_bind_int64(up, 5, (sqlite3_int64)w_id);
        e = run(s, Q_SET_EDIT, up, NULL);
      }
      chat__free(&s->alloc, w_body);
      if (!e && !same)
        *changed = true;
    }
  }
  stmt_put(s, Q_LAST_EDIT, st);
  chat__free(&s->alloc, body);
  if (!e && rc != SQLITE_ROW && rc != SQLITE_DONE)
    e = sqerr(rc);
  return e;
}

static chat_err apply_changes(void *self, const char *conv, uint64_t id,
                              bool *changed) {
  cstore *s = self;
  *changed = false;
  /* One savepoint: a failure half way changes nothing (it nests inside a
   * walk's read transaction too). */
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_SAVEPOINT, &st);
  if (e)
    return e;
  e = run(s, Q_SAVEPOINT, st, NULL);
  if (e)
    return e;
  bool due = s->checkpoint_due;
  e = apply_in(s, conv, id, changed);
  int k = e ? Q_ROLLBACK_TO : Q_RELEASE;
  chat_err e2 = stmt_get(s, k, &st);
  if (!e2)
    e2 = run(s, k, st, NULL);
  if (e) {
    /* Rolled back (and released below): nothing changed. */
    if (!e2 && stmt_get(s, Q_RELEASE, &st) == CHAT_OK)
      (void)run(s, Q_RELEASE, st, NULL);
    *changed = false;
    s->checkpoint_due = due;
    return e;
  }
  if (e2) {
    /* The release failed: undo it all rather than leave it open. */
    if (stmt_get(s, Q_ROLLBACK_TO, &st) == CHAT_OK)
      (void)run(s, Q_ROLLBACK_TO, st, NULL);
    if (stmt_get(s, Q_RELEASE, &st) == CHAT_OK)
      (void)run(s, Q_RELEASE, st, NULL);
    *changed = false;
    s->checkpoint_due = due;
    return e2;
  }
  checkpoint(s);
  return CHAT_OK;
}

static chat_err forget_last_seen(void *self, const char *conv) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = stmt_get(s, Q_FORGET_LAST_SEEN, &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  return run(s, Q_FORGET_LAST_SEEN, st, NULL);
}

/* ------------------------------------------------------------------------
 * Open and close */

uint64_t chat__sqlite_client_store_prepares(void *self) {
  return ((cstore *)self)->prepares;
}

uint64_t chat__sqlite_client_store_checkpoints(void *self) {
  return ((cstore *)self)->checkpoints;
}

static void destroy(void *self) {
  cstore *s = self;
  if (!s)
    return;
  for (int k = 0; k < Q_COUNT; k++)
    sqlite3_finalize(s->cache[k]);
  sqlite3_close_v2(s->db);
  chat__arena_free(&s->scratch);
  chat_allocator a = s->alloc;
  chat__free(&a, s);
}

static chat_err exec(sqlite3 *db, const char *sql) {
  return sqerr(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

static chat_err user_version(sqlite3 *db, int64_t *v) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
  if (rc != SQLITE_OK)
    return sqerr(rc);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    *v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return rc == SQLITE_ROW ? CHAT_OK : sqerr(rc);
}

static chat_err migrate(sqlite3 *db, chat_errbuf *err, const char *path) {
  int64_t v = 0;
  chat_err e = user_version(db, &v);
  if (e)
    return e;
  if (v == SCHEMA_VERSION)
    return CHAT_OK;
  if (v > SCHEMA_VERSION || v < 0)
    /* A newer libchat's file: do not touch it. */
    return chat__errbuf_set(err, CHAT_ERR_MODULE,
                            "path: %s has schema %lld; this library knows "
                            "1..%d",
                            path, (long long)v, SCHEMA_VERSION);
  if ((e = exec(db, "BEGIN IMMEDIATE")))
    return e;
  e = user_version(db, &v);
  if (!e && v == 0)
    e = exec(db, schema_v1);
  if (!e && v < 2)
    e = exec(db, schema_v2);
  if (!e && v < 3)
    e = exec(db, schema_v3);
  if (!e && v < SCHEMA_VERSION)
    e = exec(db, "PRAGMA user_version = 3");
  if (!e)
    e = exec(db, "COMMIT");
  if (e && !sqlite3_get_autocommit(db))
    (void)exec(db, "ROLLBACK");
  return e;
}

chat_err chat_sqlite_client_store_open(chat_client_store_ops *out,
                                       const char *path,
                                       const chat_allocator *alloc,
                                       chat_errbuf *err) {
  if (!out)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "out: required");
  memset(out, 0, sizeof *out);
  if (!path)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "path: required");
  chat_allocator a;
  chat_err e = chat__allocator_init(&a, alloc);
  if (e)
    return chat__errbuf_set(err, e, "alloc: alloc, resize and release are "
                                    "all required");
  cstore *s = chat__calloc(&a, 1, sizeof *s);
  if (!s)
    return chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
  s->alloc = a;
  chat__arena_init(&s->scratch, &s->alloc);
  int rc = sqlite3_open_v2(path, &s->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                               SQLITE_OPEN_NOMUTEX,
                           NULL);
  e = sqerr(rc);
  if (!e) {
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    /* WAL for files; a private in-memory database stays "memory". */
    e = exec(s->db, "PRAGMA journal_mode = WAL");
  }
  if (!e)
    e = exec(s->db, "PRAGMA synchronous = NORMAL");
  /* Erased bodies are overwritten, not left in free space (section 8). */
  if (!e)
    e = exec(s->db, "PRAGMA secure_delete = ON");
  if (!e) {
    /* A file (WAL); a private in-memory database has no name. */
    const char *fn = sqlite3_db_filename(s->db, "main");
    s->wal = fn && fn[0];
  }
  chat_errbuf mig = {{0}};
  if (!e)
    e = migrate(s->db, &mig, path);
  if (e) {
    if (mig.msg[0])
      chat__errbuf_set(err, e, "%s", mig.msg);
    else if (e == CHAT_ERR_NOMEM)
      chat__errbuf_set(err, e, "out of memory");
    else
      chat__errbuf_set(err, e, "path: %s: %s", path,
                       s->db ? sqlite3_errmsg(s->db) : "cannot open");
    destroy(s);
    return e;
  }
  out->version = CHAT_CLIENT_STORE_OPS_V2;
  out->self = s;
  out->put_message = put_message;
  out->each_message = each_message;
  out->set_receipt = set_receipt;
  out->get_last_seen = get_last_seen;
  out->set_last_seen = set_last_seen;
  out->each_last_seen = each_last_seen;
  out->outbox_add = outbox_add;
  out->outbox_remove = outbox_remove;
  out->each_outbox = each_outbox;
  out->set_mark = set_mark;
  out->each_mark = each_mark;
  out->put_conversation = put_conversation;
  out->get_conversation = get_conversation;
  out->each_conversation = each_conversation;
  out->destroy = destroy;
  out->outbox_add_v2 = outbox_add_v2;
  out->each_outbox_v2 = each_outbox_v2;
  out->get_message = get_message;
  out->apply_changes = apply_changes;
  out->forget_last_seen = forget_last_seen;
  return CHAT_OK;
}

/* The client's local store on SQLite (chat_sqlite_client_store_open()).
 *
 * One connection, WAL journal for files, synchronous=NORMAL (the store must
 * survive the app being killed, and a lost last write on power loss only
 * means a message is fetched again or a send is retried: both are
 * idempotent). Every write is a single statement, so it is atomic on its
 * own. Statements are prepared per call: a phone client writes a handful of
 * rows a second, and prepare-per-call keeps every path free of cached state.
 *
 * Media references of stored messages are not kept (the app asks the server
 * for media by id); everything else of a message is. */
#include <chat/sqlite.h>

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "client/store.h"
#include "common/alloc.h"
#include "common/arena.h"

#define SCHEMA_VERSION 1

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

typedef struct cstore {
  chat_client_store pub; /* first: the public handle points here */
  chat_allocator alloc;
  sqlite3 *db;
  chat__arena scratch; /* rows handed to callbacks */
} cstore;

static chat_err sqerr(int rc) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW)
    return CHAT_OK;
  return (rc & 0xff) == SQLITE_NOMEM ? CHAT_ERR_NOMEM : CHAT_ERR_MODULE;
}

static chat_err prep(cstore *s, const char *sql, sqlite3_stmt **st) {
  return sqerr(sqlite3_prepare_v2(s->db, sql, -1, st, NULL));
}

static void bind_text(sqlite3_stmt *st, int i, const char *t) {
  if (t)
    sqlite3_bind_text(st, i, t, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null(st, i);
}

/* Step a write statement to completion and finalize it. */
static chat_err run(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? CHAT_OK : sqerr(rc);
}

static const char *col_text(cstore *s, sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  if (!t)
    return NULL;
  return chat__arena_strndup(&s->scratch, (const char *)t,
                             (size_t)sqlite3_column_bytes(st, i));
}

/* ------------------------------------------------------------------------
 * Messages */

static chat_err put_message(void *self, const chat_message *m, bool own,
                            bool *inserted) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = prep(s,
    "INSERT OR IGNORE INTO messages(conversation_id, message_id, sender_id,"
    " client_msg_id, body, body_type, reply_to, server_ts, own)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", &st);
  if (e)
    return e;
  bind_text(st, 1, m->conversation_id);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)m->message_id);
  bind_text(st, 3, m->sender_id);
  bind_text(st, 4, m->client_msg_id);
  sqlite3_bind_blob(st, 5, m->body.ptr ? m->body.ptr : "", (int)m->body.len,
                    SQLITE_TRANSIENT);
  sqlite3_bind_int(st, 6, (int)m->body_type);
  if (m->has_reply_to)
    sqlite3_bind_int64(st, 7, (sqlite3_int64)m->reply_to);
  else
    sqlite3_bind_null(st, 7);
  sqlite3_bind_int64(st, 8, m->server_ts);
  sqlite3_bind_int(st, 9, own ? 1 : 0);
  e = run(st);
  if (!e && inserted)
    *inserted = sqlite3_changes(s->db) > 0;
  return e;
}

static chat_err each_message(void *self, const char *conv, uint64_t before,
                             uint32_t limit,
                             void (*fn)(const chat_message *, bool, int,
                                        void *),
                             void *ud) {
  cstore *s = self;
  sqlite3_stmt *st;
  /* The newest `limit` below `before`, handed out oldest first. */
  chat_err e = prep(s,
    "SELECT * FROM (SELECT message_id, sender_id, client_msg_id, body,"
    " body_type, reply_to, server_ts, own, state FROM messages"
    " WHERE conversation_id = ?1 AND message_id < ?2"
    " ORDER BY message_id DESC LIMIT ?3) ORDER BY message_id", &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  sqlite3_bind_int64(st, 2, before ? (sqlite3_int64)before : INT64_MAX);
  sqlite3_bind_int64(st, 3, limit ? limit : 50);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(&s->scratch);
    chat_message m;
    memset(&m, 0, sizeof m);
    m.conversation_id = conv;
    m.message_id = (uint64_t)sqlite3_column_int64(st, 0);
    m.sender_id = col_text(s, st, 1);
    m.client_msg_id = col_text(s, st, 2);
    size_t n = (size_t)sqlite3_column_bytes(st, 3);
    const void *b = sqlite3_column_blob(st, 3);
    char *body = chat__arena_alloc(&s->scratch, n + 1);
    if (!body || !m.sender_id) {
      sqlite3_finalize(st);
      return CHAT_ERR_NOMEM;
    }
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
    fn(&m, sqlite3_column_int(st, 7) != 0, sqlite3_column_int(st, 8), ud);
  }
  sqlite3_finalize(st);
  return sqerr(rc);
}

static chat_err set_receipt(void *self, const char *conv, uint64_t up_to,
                            int state) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = prep(s,
    "UPDATE messages SET state = ?3 WHERE conversation_id = ?1"
    " AND message_id <= ?2 AND own = 1 AND state < ?3", &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)up_to);
  sqlite3_bind_int(st, 3, state);
  return run(st);
}

/* ------------------------------------------------------------------------
 * last_seen */

static chat_err get_last_seen(void *self, const char *conv, uint64_t *out) {
  cstore *s = self;
  sqlite3_stmt *st;
  *out = 0;
  chat_err e = prep(s, "SELECT message_id FROM last_seen"
                       " WHERE conversation_id = ?1", &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW)
    *out = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return sqerr(rc);
}

static chat_err set_last_seen(void *self, const char *conv, uint64_t id) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = prep(s,
    "INSERT INTO last_seen(conversation_id, message_id) VALUES(?1, ?2)"
    " ON CONFLICT(conversation_id) DO UPDATE SET"
    " message_id = max(message_id, excluded.message_id)", &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)id);
  return run(st);
}

static chat_err each_last_seen(void *self,
                               void (*fn)(const char *, uint64_t, void *),
                               void *ud) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = prep(s, "SELECT conversation_id, message_id FROM last_seen"
                       " ORDER BY conversation_id", &st);
  if (e)
    return e;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(&s->scratch);
    const char *conv = col_text(s, st, 0);
    if (!conv) {
      sqlite3_finalize(st);
      return CHAT_ERR_NOMEM;
    }
    fn(conv, (uint64_t)sqlite3_column_int64(st, 1), ud);
  }
  sqlite3_finalize(st);
  return sqerr(rc);
}

/* ------------------------------------------------------------------------
 * Outbox */

static chat_err outbox_add(void *self, const chat__outbox_entry *en) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = prep(s, "INSERT INTO outbox(client_msg_id, conversation_id,"
                       " body) VALUES(?1, ?2, ?3)", &st);
  if (e)
    return e;
  bind_text(st, 1, en->client_msg_id);
  bind_text(st, 2, en->conversation_id);
  sqlite3_bind_blob(st, 3, en->body.ptr ? en->body.ptr : "",
                    (int)en->body.len, SQLITE_TRANSIENT);
  return run(st);
}

static chat_err outbox_remove(void *self, const char *client_msg_id) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = prep(s, "DELETE FROM outbox WHERE client_msg_id = ?1", &st);
  if (e)
    return e;
  bind_text(st, 1, client_msg_id);
  return run(st);
}

static chat_err each_outbox(void *self,
                            void (*fn)(const chat__outbox_entry *, void *),
                            void *ud) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = prep(s, "SELECT seq, client_msg_id, conversation_id, body"
                       " FROM outbox ORDER BY seq", &st);
  if (e)
    return e;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(&s->scratch);
    chat__outbox_entry en;
    en.seq = sqlite3_column_int64(st, 0);
    en.client_msg_id = col_text(s, st, 1);
    en.conversation_id = col_text(s, st, 2);
    size_t n = (size_t)sqlite3_column_bytes(st, 3);
    char *body = chat__arena_alloc(&s->scratch, n + 1);
    if (!body || !en.client_msg_id || !en.conversation_id) {
      sqlite3_finalize(st);
      return CHAT_ERR_NOMEM;
    }
    if (n)
      memcpy(body, sqlite3_column_blob(st, 3), n);
    body[n] = 0;
    en.body.ptr = body;
    en.body.len = n;
    fn(&en, ud);
  }
  sqlite3_finalize(st);
  return sqerr(rc);
}

/* ------------------------------------------------------------------------
 * Receipt marks */

static chat_err set_mark(void *self, const char *conv, int kind,
                         uint64_t want, uint64_t sent) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = prep(s, "INSERT OR REPLACE INTO marks(conversation_id, kind,"
                       " want, sent) VALUES(?1, ?2, ?3, ?4)", &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  sqlite3_bind_int(st, 2, kind);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)want);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)sent);
  return run(st);
}

static chat_err each_mark(void *self,
                          void (*fn)(const char *, int, uint64_t, uint64_t,
                                     void *),
                          void *ud) {
  cstore *s = self;
  sqlite3_stmt *st;
  chat_err e = prep(s, "SELECT conversation_id, kind, want, sent FROM marks"
                       " ORDER BY conversation_id, kind", &st);
  if (e)
    return e;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(&s->scratch);
    const char *conv = col_text(s, st, 0);
    if (!conv) {
      sqlite3_finalize(st);
      return CHAT_ERR_NOMEM;
    }
    fn(conv, sqlite3_column_int(st, 1),
       (uint64_t)sqlite3_column_int64(st, 2),
       (uint64_t)sqlite3_column_int64(st, 3), ud);
  }
  sqlite3_finalize(st);
  return sqerr(rc);
}

/* ------------------------------------------------------------------------
 * Conversations */

static chat_err put_conversation(void *self, const chat_conversation *c) {
  cstore *s = self;
  size_t n = 1;
  for (size_t i = 0; i < c->n_members; i++)
    n += strlen(c->members[i]) + 1;
  /* Not the scratch arena: this may run inside an each_* callback. */
  char *members = chat__alloc(&s->alloc, n);
  if (!members)
    return CHAT_ERR_NOMEM;
  size_t at = 0;
  for (size_t i = 0; i < c->n_members; i++) {
    size_t k = strlen(c->members[i]);
    if (i)
      members[at++] = ' ';
    memcpy(members + at, c->members[i], k);
    at += k;
  }
  members[at] = 0;
  sqlite3_stmt *st;
  chat_err e = prep(s,
    "INSERT OR REPLACE INTO conversations(conversation_id, type, name,"
    " members, n_members, unread_count, last_read, activity)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", &st);
  if (e) {
    chat__free(&s->alloc, members);
    return e;
  }
  bind_text(st, 1, c->conversation_id);
  sqlite3_bind_int(st, 2, (int)c->type);
  if (c->name.ptr)
    sqlite3_bind_text(st, 3, c->name.ptr, (int)c->name.len,
                      SQLITE_TRANSIENT);
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
  e = run(st);
  chat__free(&s->alloc, members);
  return e;
}

static chat_err get_conversation(void *self, const char *conv,
                                 chat_conversation_type *type,
                                 uint32_t *n_members) {
  cstore *s = self;
  sqlite3_stmt *st;
  *n_members = 0;
  chat_err e = prep(s, "SELECT type, n_members FROM conversations"
                       " WHERE conversation_id = ?1", &st);
  if (e)
    return e;
  bind_text(st, 1, conv);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *type = (chat_conversation_type)sqlite3_column_int(st, 0);
    *n_members = (uint32_t)sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE)
    return CHAT_ERR_NOT_FOUND;
  return sqerr(rc);
}

static chat_err each_conversation(void *self,
                                  void (*fn)(const chat_conversation *,
                                             void *),
                                  void *ud) {
  cstore *s = self;
  sqlite3_stmt *st;
  /* Activity: the newest stored message, else the list's last message. */
  chat_err e = prep(s,
    "SELECT c.conversation_id, c.type, c.name, c.members, c.n_members,"
    " c.unread_count, c.last_read, max(c.activity, coalesce((SELECT"
    " max(message_id) FROM messages m WHERE m.conversation_id ="
    " c.conversation_id), 0)) AS act FROM conversations c"
    " ORDER BY act DESC, c.conversation_id", &st);
  if (e)
    return e;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    chat__arena_reset(&s->scratch);
    chat_conversation c;
    memset(&c, 0, sizeof c);
    c.conversation_id = col_text(s, st, 0);
    c.type = (chat_conversation_type)sqlite3_column_int(st, 1);
    c.name.ptr = col_text(s, st, 2);
    c.name.len = c.name.ptr ? strlen(c.name.ptr) : 0;
    char *members = (char *)col_text(s, st, 3);
    size_t n = (size_t)sqlite3_column_int64(st, 4);
    const char **ids = chat__arena_alloc(&s->scratch, (n + 1) * sizeof *ids);
    if (!c.conversation_id || !members || !ids) {
      sqlite3_finalize(st);
      return CHAT_ERR_NOMEM;
    }
    size_t k = 0;
    for (char *p = members; *p && k < n;) {
      ids[k++] = p;
      char *sp = strchr(p, ' ');
      if (!sp)
        break;
      *sp = 0;
      p = sp + 1;
    }
    c.members = ids;
    c.n_members = k;
    c.unread_count = (uint32_t)sqlite3_column_int64(st, 5);
    if (sqlite3_column_type(st, 6) != SQLITE_NULL) {
      c.has_last_read = true;
      c.last_read_message_id = (uint64_t)sqlite3_column_int64(st, 6);
    }
    fn(&c, ud);
  }
  sqlite3_finalize(st);
  return sqerr(rc);
}

/* ------------------------------------------------------------------------
 * Open and close */

static void destroy(void *self) {
  cstore *s = self;
  if (!s)
    return;
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

static chat_err migrate(sqlite3 *db) {
  int64_t v = 0;
  chat_err e = user_version(db, &v);
  if (e)
    return e;
  if (v == SCHEMA_VERSION)
    return CHAT_OK;
  if (v > SCHEMA_VERSION || v < 0)
    return CHAT_ERR_MODULE; /* a newer libchat's file: do not touch it */
  if ((e = exec(db, "BEGIN IMMEDIATE")))
    return e;
  e = user_version(db, &v);
  if (!e && v == 0)
    e = exec(db, schema_v1);
  if (!e && v < SCHEMA_VERSION)
    e = exec(db, "PRAGMA user_version = 1");
  if (!e)
    e = exec(db, "COMMIT");
  if (e && !sqlite3_get_autocommit(db))
    (void)exec(db, "ROLLBACK");
  return e;
}

chat_err chat_sqlite_client_store_open(chat_client_store **out,
                                       const char *path,
                                       const chat_allocator *alloc) {
  if (!out)
    return CHAT_ERR_INVAL;
  *out = NULL;
  if (!path)
    return CHAT_ERR_INVAL;
  chat_allocator a;
  chat_err e = chat__allocator_init(&a, alloc);
  if (e)
    return e;
  cstore *s = chat__calloc(&a, 1, sizeof *s);
  if (!s)
    return CHAT_ERR_NOMEM;
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
  if (!e)
    e = migrate(s->db);
  if (e) {
    destroy(s);
    return e;
  }
  chat__cstore_ops *o = &s->pub.ops;
  o->self = s;
  o->put_message = put_message;
  o->each_message = each_message;
  o->set_receipt = set_receipt;
  o->get_last_seen = get_last_seen;
  o->set_last_seen = set_last_seen;
  o->each_last_seen = each_last_seen;
  o->outbox_add = outbox_add;
  o->outbox_remove = outbox_remove;
  o->each_outbox = each_outbox;
  o->set_mark = set_mark;
  o->each_mark = each_mark;
  o->put_conversation = put_conversation;
  o->get_conversation = get_conversation;
  o->each_conversation = each_conversation;
  o->destroy = destroy;
  *out = &s->pub;
  return CHAT_OK;
}

/* chat_storage_ops on SQLite: the embedded default store.
 *
 * One connection per store, WAL journal, every write method one
 * transaction (BEGIN IMMEDIATE ... COMMIT), so a crash at any point leaves
 * either all or none of a call's changes. Statements are prepared on first
 * use and kept for the life of the store.
 *
 * Re-entrancy: every method finishes all of its SQL (statements reset,
 * transaction ended) before it calls an emit callback, and hands the
 * callback copies made in a scratch arena. A callback may therefore call
 * back into the store, and the copies stay put while it does: the arena is
 * only reset when the outermost call returns.
 *
 * SQLite's own allocations go through its process-global allocator, which
 * libchat never reconfigures (STYLE 2.7); everything this file allocates
 * goes through the store's copied chat_allocator. */
#include <chat/sqlite.h>

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/check.h"
#include "common/arena.h"

#define SCHEMA_VERSION 2
#define DEFAULT_BUSY_MS 5000
/* Scratch memory above this is returned to the allocator after a call, so
 * one large page does not pin its memory for the life of the store. */
#define SCRATCH_KEEP (1u << 20)

/* Schema v1. messages is clustered on (conversation_id, message_id), so
 * "the latest 50" and every receipt range is one index range scan. meta
 * holds the largest id ever stored, so max_message_id() needs no scan. */
static const char schema_v1[] =
  "CREATE TABLE conversations("
  " conversation_id TEXT PRIMARY KEY,"
  " type INTEGER NOT NULL,"
  " name TEXT,"
  " created_by TEXT NOT NULL,"
  " created_at INTEGER NOT NULL,"
  " direct_key TEXT UNIQUE,"
  " last_message_id INTEGER,"
  " last_message_ts INTEGER,"
  " last_activity INTEGER NOT NULL);"
  "CREATE TABLE members("
  " conversation_id TEXT NOT NULL,"
  " user_id TEXT NOT NULL,"
  " joined_at INTEGER NOT NULL,"
  " last_read_message_id INTEGER,"
  " delivered_up_to INTEGER NOT NULL DEFAULT 0,"
  " read_up_to INTEGER NOT NULL DEFAULT 0,"
  " PRIMARY KEY(conversation_id, user_id)) WITHOUT ROWID;"
  "CREATE INDEX members_by_user ON members(user_id);"
  "CREATE INDEX members_by_join ON members(conversation_id, joined_at,"
  " user_id);"
  "CREATE TABLE messages("
  " conversation_id TEXT NOT NULL,"
  " message_id INTEGER NOT NULL,"
  " sender_id TEXT NOT NULL,"
  " client_msg_id TEXT,"
  " body BLOB NOT NULL,"
  " body_type INTEGER NOT NULL,"
  " reply_to INTEGER,"
  " server_ts INTEGER NOT NULL,"
  " media_count INTEGER NOT NULL DEFAULT 0,"
  " delivered_at INTEGER,"
  " read_at INTEGER,"
  " delivered_count INTEGER NOT NULL DEFAULT 0,"
  " read_count INTEGER NOT NULL DEFAULT 0,"
  " PRIMARY KEY(conversation_id, message_id)) WITHOUT ROWID;"
  /* The dedup key of PROTOCOL.md 4.2; NULL client_msg_ids (system
   * messages) never collide. */
  "CREATE UNIQUE INDEX messages_dedup ON messages(sender_id,"
  " client_msg_id);"
  "CREATE TABLE message_media("
  " conversation_id TEXT NOT NULL,"
  " message_id INTEGER NOT NULL,"
  " idx INTEGER NOT NULL,"
  " media_id TEXT NOT NULL,"
  " PRIMARY KEY(conversation_id, message_id, idx)) WITHOUT ROWID;"
  "CREATE INDEX message_media_by_media ON message_media(media_id);"
  "CREATE TABLE group_receipts("
  " conversation_id TEXT NOT NULL,"
  " message_id INTEGER NOT NULL,"
  " member_id TEXT NOT NULL,"
  " state INTEGER NOT NULL,"
  " state_ts INTEGER NOT NULL,"
  " PRIMARY KEY(conversation_id, message_id, member_id)) WITHOUT ROWID;"
  "CREATE INDEX group_receipts_by_ts ON group_receipts(state_ts);"
  "CREATE TABLE devices("
  " user_id TEXT NOT NULL,"
  " device_id TEXT NOT NULL,"
  " platform TEXT,"
  " push_token TEXT,"
  " updated_at INTEGER NOT NULL,"
  " PRIMARY KEY(user_id, device_id)) WITHOUT ROWID;"
  "CREATE TABLE media("
  " media_id TEXT PRIMARY KEY,"
  " owner_id TEXT NOT NULL,"
  " content_type TEXT,"
  " data BLOB NOT NULL,"
  " created_at INTEGER NOT NULL);"
  "CREATE TABLE meta(max_message_id INTEGER NOT NULL);"
  "INSERT INTO meta VALUES(0);";

/* Schema v2: PROTOCOL.md section 8. A new database is created as v1 and
 * migrated, so this migration runs in every test.
 * - members.is_admin (group admins); existing groups get their creator
 *   as admin when still a member, otherwise their longest-standing member.
 * - members.push_lo/push_hi: the lowest and highest message ids the
 *   member was pushed about and has not read yet (0: none), for
 *   receipt-aware push.
 * - messages.sender_kind, target_id (edit and delete entries), edited_ts
 *   and deleted: the state of a message that was edited or deleted.
 * - conversations.cold: a direct conversation started with a user who had
 *   never written to its creator, for the daily cap on those.
 * - writers: who has written in which conversation, which answers "has
 *   this user ever sent the creator a message" without scanning messages.
 * - bans (shadow bans) and meta.bans_version, which every change bumps so
 *   that polling gateways reread the list only when it changed;
 *   messages.shadowed marks what was stored while its sender was banned
 *   (seen by that sender only). */
static const char migrate_1_to_2[] =
  "ALTER TABLE members ADD COLUMN is_admin INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE members ADD COLUMN push_lo INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE members ADD COLUMN push_hi INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE messages ADD COLUMN sender_kind INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE messages ADD COLUMN target_id INTEGER;"
  "ALTER TABLE messages ADD COLUMN edited_ts INTEGER;"
  "ALTER TABLE messages ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE messages ADD COLUMN shadowed INTEGER NOT NULL DEFAULT 0;"
  "ALTER TABLE conversations ADD COLUMN cold INTEGER NOT NULL DEFAULT 0;"
  "CREATE INDEX messages_by_target ON messages(conversation_id, target_id)"
  " WHERE target_id IS NOT NULL;"
  "CREATE INDEX conversations_cold ON conversations(created_by, created_at)"
  " WHERE cold = 1;"
  "CREATE TABLE writers("
  " sender_id TEXT NOT NULL,"
  " conversation_id TEXT NOT NULL,"
  " PRIMARY KEY(sender_id, conversation_id)) WITHOUT ROWID;"
  "INSERT OR IGNORE INTO writers SELECT DISTINCT sender_id, conversation_id"
  " FROM messages WHERE body_type IN (0, 1);"
  "CREATE TABLE bans("
  " user_id TEXT PRIMARY KEY,"
  " created_at INTEGER NOT NULL) WITHOUT ROWID;"
  "ALTER TABLE meta ADD COLUMN bans_version INTEGER NOT NULL DEFAULT 1;"
  "UPDATE members SET is_admin = 1 WHERE EXISTS(SELECT 1"
  " FROM conversations c WHERE c.conversation_id = members.conversation_id"
  " AND c.type = 2 AND c.created_by = members.user_id);"
  "UPDATE members SET is_admin = 1 WHERE (conversation_id, user_id) IN"
  " (SELECT c.conversation_id, (SELECT m.user_id FROM members m"
  " WHERE m.conversation_id = c.conversation_id"
  " ORDER BY m.joined_at, m.user_id LIMIT 1) FROM conversations c"
  " WHERE c.type = 2 AND NOT EXISTS(SELECT 1 FROM members a"
  " WHERE a.conversation_id = c.conversation_id AND a.is_admin = 1));";

/* Columns of every message query, in the order row_message() reads them;
 * T qualifies them ("" or a table alias and its dot). */
#define MSG_COLS_OF(T)                                                   \
  T "conversation_id, " T "message_id, " T "sender_id, "                 \
  T "client_msg_id, " T "body, " T "body_type, " T "reply_to, "          \
  T "server_ts, " T "media_count, " T "sender_kind, " T "target_id, "    \
  T "edited_ts, " T "deleted"
#define MSG_COLS MSG_COLS_OF("")

/* A message ?V may see: what was stored while its sender was
 * shadow-banned is seen by that sender only (?V NULL: by nobody). T
 * qualifies the columns. */
#define VISIBLE_TO(T, V)                                                  \
  " AND (" T "shadowed = 0 OR " T "sender_id = " V ")"

/* What a chat list shows as the last message, and what counts as unread:
 * edit and delete entries are applied to their targets, not shown. */
#define SHOWN_TYPES " IN (0, 1, 2)"
#define UNREAD_TYPES " IN (0, 1)"

/* The message range a receipt mark newly covers, minus the member's own
 * messages: ?1 conversation, (?2, ?3] ids, ?4 member. */
#define MARK_RANGE                                                       \
  " WHERE conversation_id = ?1 AND message_id > ?2 AND message_id <= ?3" \
  " AND sender_id <> ?4"

/* The newest message of conversation C that viewer V is shown in a chat
 * list: one backwards step on the primary key in the common case. */
#define LAST_SHOWN(C, V)                                                  \
  "(SELECT message_id FROM messages WHERE conversation_id = " C           \
  " AND body_type" SHOWN_TYPES VISIBLE_TO("", V)                          \
  " ORDER BY message_id DESC LIMIT 1)"

/* The chat list: a page of ?1's conversations, most recent activity
 * first, at most ?2 (KEYSET: those after a cursor), every row complete, so
 * one statement serves a page of any length. The page is chosen first and
 * the subqueries run for its rows only: the unread count is a range of the
 * messages key, the last message is reached through the denormalized
 * last_message_id. Lists are joined by char(0), which no id (a C string)
 * holds; SQLite keeps a subquery's ORDER BY when it feeds group_concat().
 * Rows come unordered, since an ORDER BY here would copy every column into
 * a sorter: convs_tx() orders the page. Columns: enum list_col. */
#define CONV_LIST(KEYSET)                                                 \
  "WITH page(cid, act) AS (SELECT c.conversation_id, c.last_activity"     \
  " FROM members m JOIN conversations c"                                  \
  " ON c.conversation_id = m.conversation_id WHERE m.user_id = ?1" KEYSET \
  " ORDER BY c.last_activity DESC, c.conversation_id DESC LIMIT ?2)"      \
  " SELECT page.cid, page.act, c.type, c.name, me.last_read_message_id,"  \
  " (SELECT count(*) FROM messages WHERE conversation_id = page.cid"      \
  " AND message_id > coalesce(me.last_read_message_id, 0)"                \
  " AND sender_id <> ?1 AND body_type" UNREAD_TYPES                       \
  " AND shadowed = 0),"                                                   \
  " (SELECT group_concat(user_id, char(0)) FROM (SELECT user_id"          \
  " FROM members WHERE conversation_id = page.cid"                        \
  " ORDER BY joined_at, user_id)),"                                       \
  " (SELECT group_concat(user_id, char(0)) FROM (SELECT user_id"          \
  " FROM members WHERE conversation_id = page.cid AND is_admin = 1"       \
  " ORDER BY joined_at, user_id)),"                                       \
  " (SELECT group_concat(media_id, char(0)) FROM (SELECT media_id"        \
  " FROM message_media WHERE lm.media_count > 0"                          \
  " AND conversation_id = lm.conversation_id"                             \
  " AND message_id = lm.message_id ORDER BY idx)), " MSG_COLS_OF("lm.")   \
  " FROM page JOIN conversations c ON c.conversation_id = page.cid"       \
  " JOIN members me ON me.conversation_id = page.cid AND me.user_id = ?1" \
  " LEFT JOIN messages lm ON lm.conversation_id = page.cid"               \
  " AND lm.message_id = " LAST_SHOWN("page.cid", "?1")

enum list_col {
  L_CID, L_ACTIVITY, L_TYPE, L_NAME, L_LAST_READ, L_UNREAD, L_MEMBERS,
  L_ADMINS, L_MEDIA,
  L_MSG /* MSG_COLS of the last message, NULL when none */
};

#define STMTS(X)                                                          \
  X(BEGIN_READ, "BEGIN")                                                  \
  X(BEGIN_WRITE, "BEGIN IMMEDIATE")                                       \
  X(COMMIT, "COMMIT")                                                     \
  X(SYNC_NORMAL, "PRAGMA synchronous = NORMAL")                           \
  X(SYNC_FULL, "PRAGMA synchronous = FULL")                               \
  X(ROLLBACK, "ROLLBACK")                                                 \
  X(CONV_ROW, "SELECT type, name, last_message_id FROM conversations"     \
              " WHERE conversation_id = ?1")                              \
  X(CONV_MEMBERS, "SELECT user_id, is_admin FROM members"                \
                  " WHERE conversation_id = ?1"                           \
                  " ORDER BY joined_at, user_id")                         \
  X(CONV_META, "SELECT type, created_by FROM conversations"               \
               " WHERE conversation_id = ?1")                             \
  X(MEMBER_ROW, "SELECT last_read_message_id, delivered_up_to,"           \
                " read_up_to FROM members"                                \
                " WHERE conversation_id = ?1 AND user_id = ?2")           \
  X(UNREAD, "SELECT count(*) FROM messages WHERE conversation_id = ?1"    \
            " AND message_id > ?2 AND sender_id <> ?3"                    \
            " AND body_type" UNREAD_TYPES " AND shadowed = 0")           \
  X(LAST_SHOWN_MSG, "SELECT " MSG_COLS " FROM messages"                   \
                    " WHERE conversation_id = ?1 AND message_id = "       \
                    LAST_SHOWN("?1", "?2"))                               \
  X(DIRECT_FIND, "SELECT conversation_id FROM conversations"              \
                 " WHERE direct_key = ?1")                                \
  X(CONV_INSERT, "INSERT INTO conversations(conversation_id, type, name," \
                 " created_by, created_at, direct_key, last_activity,"    \
                 " cold) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?5, ?7)")         \
  /* Has ?1 written in a conversation ?2 is a member of? */               \
  X(PEER_WROTE, "SELECT 1 FROM writers w JOIN members m"                  \
                " ON m.conversation_id = w.conversation_id"               \
                " AND m.user_id = ?2 WHERE w.sender_id = ?1 LIMIT 1")     \
  X(COLD_COUNT, "SELECT count(*) FROM conversations WHERE created_by = ?1" \
                " AND cold = 1 AND created_at >= ?2")                     \
  X(WRITER_INSERT, "INSERT OR IGNORE INTO writers(sender_id,"             \
                   " conversation_id) VALUES(?1, ?2)")                    \
  X(CONV_EXISTS, "SELECT 1 FROM conversations WHERE conversation_id = ?1") \
  X(MEMBER_INSERT, "INSERT OR IGNORE INTO members(conversation_id,"       \
                   " user_id, joined_at, is_admin) VALUES(?1, ?2, ?3, ?4)") \
  X(MEMBER_ADMIN, "SELECT is_admin FROM members"                          \
                  " WHERE conversation_id = ?1 AND user_id = ?2")         \
  X(MEMBER_COUNT, "SELECT count(*) FROM members"                          \
                  " WHERE conversation_id = ?1")                          \
  X(MEMBER_SET_ADMIN, "UPDATE members SET is_admin = ?3"                  \
                      " WHERE conversation_id = ?1 AND user_id = ?2")     \
  X(ADMIN_ANY, "SELECT 1 FROM members WHERE conversation_id = ?1"         \
               " AND is_admin = 1 LIMIT 1")                               \
  /* The longest-standing member, other than ?2. */                       \
  X(PROMOTE_PICK, "SELECT user_id FROM members WHERE conversation_id = ?1" \
                  " AND user_id <> ?2 ORDER BY joined_at, user_id LIMIT 1") \
  X(MEMBER_DELETE, "DELETE FROM members WHERE conversation_id = ?1"       \
                   " AND user_id = ?2")                                   \
  X(CONVS_FIRST, CONV_LIST(""))                                           \
  X(CONVS_AFTER, CONV_LIST(" AND (c.last_activity, c.conversation_id)"    \
                           " < (?3, ?4)"))                                \
  X(DEDUP_FIND, "SELECT message_id, server_ts FROM messages"              \
                " WHERE sender_id = ?1 AND client_msg_id = ?2")           \
  /* A repeated (sender, client_msg_id) inserts nothing; any other       \
   * conflict (a reused message id) is an error. */                       \
  X(MSG_INSERT, "INSERT INTO messages(conversation_id, message_id,"       \
                " sender_id, client_msg_id, body, body_type, reply_to,"   \
                " server_ts, media_count, sender_kind, target_id,"        \
                " shadowed)"                                              \
                " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11,"   \
                " ?12)"                                                   \
                " ON CONFLICT(sender_id, client_msg_id) DO NOTHING")      \
  X(TARGET_ROW, "SELECT sender_id, body_type, server_ts, deleted"         \
                " FROM messages WHERE conversation_id = ?1"               \
                " AND message_id = ?2")                                   \
  X(TARGET_EDIT, "UPDATE messages SET body = ?3, edited_ts = ?4"          \
                 " WHERE conversation_id = ?1 AND message_id = ?2")       \
  X(TARGET_DELETE, "UPDATE messages SET body = x'', deleted = 1,"         \
                   " edited_ts = NULL, media_count = 0"                   \
                   " WHERE conversation_id = ?1 AND message_id = ?2")     \
  X(TARGET_MEDIA_DROP, "DELETE FROM message_media"                        \
                       " WHERE conversation_id = ?1 AND message_id = ?2") \
  /* The bodies of the target's edit entries other than ?3. */            \
  X(EDITS_ERASE, "UPDATE messages SET body = x''"                         \
                 " WHERE conversation_id = ?1 AND target_id = ?2"         \
                 " AND body_type = 3 AND message_id <> ?3"                \
                 " AND length(body) > 0")                                 \
  X(MEDIA_REF_INSERT, "INSERT INTO message_media(conversation_id,"        \
                      " message_id, idx, media_id) VALUES(?1, ?2, ?3, ?4)") \
  /* Edit and delete entries move the last id (marks and resume cover    \
   * them) but not the chat list's order: ?4 is 0 for them. */            \
  X(CONV_BUMP, "UPDATE conversations SET last_message_id = ?2,"           \
               " last_message_ts = ?3,"                                   \
               " last_activity = max(coalesce(last_activity, ?4), ?4)"    \
               " WHERE conversation_id = ?1"                              \
               " AND (last_message_id IS NULL OR last_message_id < ?2)")  \
  X(MAX_BUMP, "UPDATE meta SET max_message_id = ?1"                       \
              " WHERE max_message_id < ?1")                               \
  X(MAX_GET, "SELECT max_message_id FROM meta")                           \
  X(MSG_LATEST, "SELECT " MSG_COLS " FROM messages"                       \
                " WHERE conversation_id = ?1"                             \
                " ORDER BY message_id DESC LIMIT ?2")                     \
  X(MSG_BEFORE, "SELECT " MSG_COLS " FROM messages"                       \
                " WHERE conversation_id = ?1 AND message_id < ?2"         \
                " ORDER BY message_id DESC LIMIT ?3")                     \
  X(MSG_AFTER, "SELECT " MSG_COLS " FROM messages"                        \
               " WHERE conversation_id = ?1 AND message_id > ?2"          \
               " ORDER BY message_id ASC LIMIT ?3")                       \
  X(MSGV_LATEST, "SELECT " MSG_COLS " FROM messages"                      \
                 " WHERE conversation_id = ?1" VISIBLE_TO("", "?3")       \
                 " ORDER BY message_id DESC LIMIT ?2")                    \
  X(MSGV_BEFORE, "SELECT " MSG_COLS " FROM messages"                      \
                 " WHERE conversation_id = ?1 AND message_id < ?2"        \
                 VISIBLE_TO("", "?4")                                     \
                 " ORDER BY message_id DESC LIMIT ?3")                    \
  X(MSGV_AFTER, "SELECT " MSG_COLS " FROM messages"                       \
                " WHERE conversation_id = ?1 AND message_id > ?2"         \
                VISIBLE_TO("", "?4")                                      \
                " ORDER BY message_id ASC LIMIT ?3")                      \
  X(MEDIA_REFS, "SELECT media_id FROM message_media"                      \
                " WHERE conversation_id = ?1 AND message_id = ?2"         \
                " ORDER BY idx")                                          \
  X(LAST_ID, "SELECT last_message_id FROM conversations"                  \
             " WHERE conversation_id = ?1")                               \
  X(MARK_READ, "UPDATE members SET read_up_to = ?3,"                      \
               " last_read_message_id = ?3,"                              \
               " delivered_up_to = max(delivered_up_to, ?3)"              \
               " WHERE conversation_id = ?1 AND user_id = ?2")            \
  X(MARK_DELIVERED, "UPDATE members SET delivered_up_to = ?3"             \
                    " WHERE conversation_id = ?1 AND user_id = ?2")       \
  X(DIRECT_DELIVERED, "UPDATE messages SET delivered_at = ?5" MARK_RANGE  \
                      " AND delivered_at IS NULL")                        \
  X(DIRECT_READ, "UPDATE messages SET read_at = ?5" MARK_RANGE            \
                 " AND read_at IS NULL")                                  \
  X(GROUP_DELIVERED, "UPDATE messages"                                    \
                     " SET delivered_count = delivered_count + 1"         \
                     MARK_RANGE)                                          \
  X(GROUP_READ, "UPDATE messages SET read_count = read_count + 1"         \
                MARK_RANGE)                                               \
  X(GROUP_RECEIPT, "INSERT OR REPLACE INTO group_receipts(conversation_id," \
                   " message_id, member_id, state, state_ts)"             \
                   " VALUES(?1, ?2, ?3, ?4, ?5)")                         \
  /* SQLite takes the bare columns from the row that holds max(). */      \
  X(MARK_UPDATES, "SELECT sender_id, max(message_id), delivered_count,"   \
                  " read_count, delivered_at IS NOT NULL,"                \
                  " read_at IS NOT NULL FROM messages" MARK_RANGE         \
                  " AND shadowed = 0"                                     \
                  " GROUP BY sender_id ORDER BY sender_id")               \
  X(RECEIPT_MSG, "SELECT m.sender_id, m.delivered_count, m.read_count,"   \
                 " m.delivered_at IS NOT NULL, m.read_at IS NOT NULL,"    \
                 " c.type FROM messages m LEFT JOIN conversations c"      \
                 " ON c.conversation_id = m.conversation_id"              \
                 " WHERE m.conversation_id = ?1 AND m.message_id = ?2")   \
  X(RECEIPT_MEMBERS, "SELECT user_id, CASE WHEN read_up_to >= ?2 THEN 2"  \
                     " WHEN delivered_up_to >= ?2 THEN 1 ELSE 0 END"      \
                     " FROM members WHERE conversation_id = ?1"           \
                     " AND user_id <> ?3 ORDER BY joined_at, user_id")    \
  X(PURGE, "DELETE FROM group_receipts WHERE state_ts < ?1")              \
  X(DEVICE_UPSERT, "INSERT INTO devices(user_id, device_id, platform,"    \
                   " push_token, updated_at) VALUES(?1, ?2, ?3, ?4, ?5)"  \
                   " ON CONFLICT(user_id, device_id) DO UPDATE SET"       \
                   " platform = excluded.platform,"                       \
                   " push_token = excluded.push_token,"                   \
                   " updated_at = excluded.updated_at")                   \
  X(PUSH_TARGETS, "SELECT device_id, platform, push_token FROM devices"   \
                  " WHERE user_id = ?1 AND push_token IS NOT NULL"        \
                  " AND push_token <> '' ORDER BY device_id")             \
  X(MEDIA_PUT, "INSERT INTO media(media_id, owner_id, content_type, data," \
               " created_at) VALUES(?1, ?2, ?3, ?4, ?5)")                 \
  X(MEDIA_GET, "SELECT owner_id = ?2 OR EXISTS(SELECT 1"                  \
               " FROM message_media r JOIN members m"                     \
               " ON m.conversation_id = r.conversation_id"                \
               " WHERE r.media_id = ?1 AND m.user_id = ?2),"              \
               " content_type, data FROM media WHERE media_id = ?1")      \
  X(BAN_INSERT, "INSERT OR IGNORE INTO bans(user_id, created_at)"         \
                " VALUES(?1, ?2)")                                        \
  X(BAN_DELETE, "DELETE FROM bans WHERE user_id = ?1")                    \
  X(BANNED, "SELECT 1 FROM bans WHERE user_id = ?1")                      \
  X(BANS_BUMP, "UPDATE meta SET bans_version = bans_version + 1")         \
  X(BANS_VERSION, "SELECT bans_version FROM meta")                        \
  X(BANS_LIST, "SELECT user_id FROM bans ORDER BY user_id")               \
  X(PUSH_RECORD, "UPDATE members SET"                                     \
                 " push_lo = CASE WHEN push_lo = 0 OR push_lo > ?3"       \
                 " THEN ?3 ELSE push_lo END,"                             \
                 " push_hi = max(push_hi, ?3)"                            \
                 " WHERE conversation_id = ?1 AND user_id = ?2")          \
  X(PUSH_ROW, "SELECT push_lo, push_hi FROM members"                      \
              " WHERE conversation_id = ?1 AND user_id = ?2")             \
  X(PUSH_SET, "UPDATE members SET push_lo = ?3, push_hi = ?4"             \
              " WHERE conversation_id = ?1 AND user_id = ?2")

enum stmt_id {
#define STMT_ENUM(name, sql) S_##name,
  STMTS(STMT_ENUM)
#undef STMT_ENUM
  S_COUNT
};

static const char *const stmt_sql[S_COUNT] = {
#define STMT_SQL(name, sql) sql,
  STMTS(STMT_SQL)
#undef STMT_SQL
};

typedef struct store {
  chat_allocator alloc;
  sqlite3 *db;
  sqlite3_stmt *stmt[S_COUNT];
  chat__arena scratch;
  size_t scratch_bytes; /* requested since the last reset */
  unsigned depth;       /* nesting of method calls (see the file comment) */
  bool full;            /* CHAT_SQLITE_SYNC_FULL: messages fsync per commit */
  bool relaxed;         /* synchronous=NORMAL is still set after a mark */
} store;

/* ------------------------------------------------------------------------
 * Errors, statements, transactions */

static chat_err sqerr(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_ROW:
  case SQLITE_DONE:
    return CHAT_OK;
  case SQLITE_NOMEM:
    return CHAT_ERR_NOMEM;
  case SQLITE_CONSTRAINT:
    return CHAT_ERR_CONFLICT;
  default:
    return CHAT_ERR_MODULE;
  }
}

/* Forget a statement's row and bindings, so bound pointers borrowed from
 * the caller are never looked at again. */
static void finish(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Bind ?1, ?2, ... from a format: 's' const char * (NULL binds NULL),
 * 't' const char *, size_t (text of that length; NULL binds NULL),
 * 'b' const void *, size_t (a blob, empty when NULL), 'i' int64_t,
 * 'u' uint64_t (at most INT64_MAX, checked by the caller), 'o' int,
 * uint64_t (the id when the int is non-zero, else NULL). Every pointer
 * is SQLITE_STATIC: callers finish() the statement before returning. */
static int vbind(sqlite3_stmt *st, const char *fmt, va_list ap) {
  int rc = SQLITE_OK;
  for (int i = 1; *fmt && rc == SQLITE_OK; fmt++, i++) {
    switch (*fmt) {
    case 's': {
      const char *v = va_arg(ap, const char *);
      rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC)
             : sqlite3_bind_null(st, i);
      break;
    }
    case 't': {
      const char *v = va_arg(ap, const char *);
      size_t n = va_arg(ap, size_t);
      rc = !v ? sqlite3_bind_null(st, i)
              : sqlite3_bind_text64(st, i, v, n, SQLITE_STATIC, SQLITE_UTF8);
      break;
    }
    case 'b': {
      const void *v = va_arg(ap, const void *);
      size_t n = va_arg(ap, size_t);
      /* A NULL pointer would bind SQL NULL; an empty body is a blob. */
      rc = sqlite3_bind_blob64(st, i, v ? v : "", v ? n : 0, SQLITE_STATIC);
      break;
    }
    case 'i':
      rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
      break;
    case 'u':
      rc = sqlite3_bind_int64(st, i, (sqlite3_int64)va_arg(ap, uint64_t));
      break;
    case 'o': { /* an optional id: int has, uint64_t value */
      int has = va_arg(ap, int);
      uint64_t v = va_arg(ap, uint64_t);
      rc = has ? sqlite3_bind_int64(st, i, (sqlite3_int64)v)
               : sqlite3_bind_null(st, i);
      break;
    }
    default:
      rc = SQLITE_MISUSE;
    }
  }
  return rc;
}

/* The statement for @p id, prepared on first use, bound from @p fmt. */
static chat_err query(store *s, enum stmt_id id, sqlite3_stmt **out,
                      const char *fmt, ...) {
  if (!s->stmt[id]) {
    int rc = sqlite3_prepare_v3(s->db, stmt_sql[id], -1,
                                SQLITE_PREPARE_PERSISTENT, &s->stmt[id],
                                NULL);
    if (rc != SQLITE_OK) {
      s->stmt[id] = NULL;
      return sqerr(rc);
    }
  }
  sqlite3_stmt *st = s->stmt[id];
  va_list ap;
  va_start(ap, fmt);
  int rc = vbind(st, fmt, ap);
  va_end(ap);
  if (rc != SQLITE_OK) {
    finish(st);
    return sqerr(rc);
  }
  *out = st;
  return CHAT_OK;
}

/* Step a statement that returns no rows (or whose rows do not matter) to
 * its end and finish it. A constraint violation is CHAT_ERR_CONFLICT. */
static chat_err run(sqlite3_stmt *st) {
  int rc = SQLITE_DONE;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
  }
  finish(st);
  return sqerr(rc);
}

/* The first row's column 0 as an integer; *found false when there is no
 * row (or the value is NULL). Finishes the statement. */
static chat_err one_int(sqlite3_stmt *st, bool *found, int64_t *v) {
  int rc = sqlite3_step(st);
  *found = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
  *v = *found ? sqlite3_column_int64(st, 0) : 0;
  finish(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? CHAT_OK : sqerr(rc);
}

static chat_err exec_id(store *s, enum stmt_id id) {
  sqlite3_stmt *st;
  chat_err e = query(s, id, &st, "");
  return e ? e : run(st);
}

static chat_err begin(store *s, bool write) {
  return exec_id(s, write ? S_BEGIN_WRITE : S_BEGIN_READ);
}

/* End a transaction: COMMIT when @p e is CHAT_OK, otherwise (or when the
 * commit fails) ROLLBACK. Returns the outcome. */
static chat_err end(store *s, chat_err e) {
  if (e == CHAT_OK) {
    e = exec_id(s, S_COMMIT);
    if (e == CHAT_OK)
      return CHAT_OK;
  }
  /* Some errors (SQLITE_FULL, IOERR, NOMEM) roll back by themselves. */
  if (!sqlite3_get_autocommit(s->db))
    (void)exec_id(s, S_ROLLBACK);
  return e;
}

/* ------------------------------------------------------------------------
 * Scratch copies handed to emit callbacks */

static void enter(store *s) {
  s->depth++;
}

static void leave(store *s) {
  if (--s->depth > 0)
    return;
  if (s->scratch_bytes > SCRATCH_KEEP)
    chat__arena_free(&s->scratch);
  else
    chat__arena_reset(&s->scratch);
  s->scratch_bytes = 0;
}

static void *salloc(store *s, size_t n) {
  s->scratch_bytes += n;
  return chat__arena_alloc(&s->scratch, n);
}

static const char *sdup(store *s, const void *p, size_t n) {
  s->scratch_bytes += n + 1;
  return chat__arena_strndup(&s->scratch, p ? p : "", p ? n : 0);
}

/* Grow an arena array of @p size-byte elements to hold one more. */
static chat_err push(store *s, void **arr, size_t *n, size_t *cap,
                     size_t size) {
  if (*n < *cap)
    return CHAT_OK;
  size_t ncap = *cap ? *cap * 2 : 16;
  if (ncap > SIZE_MAX / size)
    return CHAT_ERR_NOMEM;
  void *p = salloc(s, ncap * size);
  if (!p)
    return CHAT_ERR_NOMEM;
  if (*n)
    memcpy(p, *arr, *n * size);
  *arr = p;
  *cap = ncap;
  return CHAT_OK;
}

/* Column @p i as a scratch copy; NULL for SQL NULL. */
static chat_err col_str(store *s, sqlite3_stmt *st, int i, const char **out,
                        size_t *len) {
  *out = NULL;
  if (len)
    *len = 0;
  if (sqlite3_column_type(st, i) == SQLITE_NULL)
    return CHAT_OK;
  const void *p = sqlite3_column_blob(st, i);
  size_t n = (size_t)sqlite3_column_bytes(st, i);
  if (!p && n)
    return CHAT_ERR_NOMEM;
  if (!(*out = sdup(s, p, n)))
    return CHAT_ERR_NOMEM;
  if (len)
    *len = n;
  return CHAT_OK;
}

static bool id_ok(uint64_t id) {
  return id <= (uint64_t)INT64_MAX;
}

/* ------------------------------------------------------------------------
 * Messages as chat_message */

static chat_err load_media(store *s, chat_message *m, size_t count) {
  sqlite3_stmt *st;
  chat_err e = query(s, S_MEDIA_REFS, &st, "su", m->conversation_id,
                     m->message_id);
  if (e)
    return e;
  const char **refs = salloc(s, count * sizeof *refs);
  size_t n = 0;
  int rc = SQLITE_DONE;
  if (!refs)
    e = CHAT_ERR_NOMEM;
  while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW && n < count)
    e = col_str(s, st, 0, &refs[n++], NULL);
  if (!e && rc != SQLITE_ROW && rc != SQLITE_DONE)
    e = sqerr(rc);
  finish(st);
  m->media_refs = refs;
  m->n_media_refs = n;
  return e;
}

/* The MSG_COLS from column @p at on, all but the media refs, whose stored
 * number goes to *media (the statement stays on its row). */
static chat_err row_message_at(store *s, sqlite3_stmt *st, int at,
                               chat_message *m, int64_t *media) {
  memset(m, 0, sizeof *m);
  size_t body_len;
  chat_err e = col_str(s, st, at, &m->conversation_id, NULL);
  if (!e)
    e = col_str(s, st, at + 2, &m->sender_id, NULL);
  if (!e)
    e = col_str(s, st, at + 3, &m->client_msg_id, NULL);
  if (!e)
    e = col_str(s, st, at + 4, &m->body.ptr, &body_len);
  if (e)
    return e;
  m->body.len = body_len;
  if (!m->body.ptr && !(m->body.ptr = sdup(s, "", 0)))
    return CHAT_ERR_NOMEM;
  m->message_id = (uint64_t)sqlite3_column_int64(st, at + 1);
  m->body_type = (chat_body_type)sqlite3_column_int(st, at + 5);
  m->has_reply_to = sqlite3_column_type(st, at + 6) != SQLITE_NULL;
  m->reply_to = (uint64_t)sqlite3_column_int64(st, at + 6);
  m->server_ts = sqlite3_column_int64(st, at + 7);
  *media = sqlite3_column_int64(st, at + 8);
  m->sender_kind = sqlite3_column_int(st, at + 9) == CHAT_SENDER_BOT
                       ? CHAT_SENDER_BOT
                       : CHAT_SENDER_USER;
  m->has_target_id = sqlite3_column_type(st, at + 10) != SQLITE_NULL;
  m->target_id = (uint64_t)sqlite3_column_int64(st, at + 10);
  m->has_edited_ts = sqlite3_column_type(st, at + 11) != SQLITE_NULL;
  m->edited_ts = sqlite3_column_int64(st, at + 11);
  m->deleted = sqlite3_column_int(st, at + 12) != 0;
  return CHAT_OK;
}

/* A row of MSG_COLS (the statement stays on its row). */
static chat_err row_message(store *s, sqlite3_stmt *st, chat_message *m) {
  int64_t count;
  chat_err e = row_message_at(s, st, 0, m, &count);
  return e || count <= 0 ? e : load_media(s, m, (size_t)count);
}

/* A group_concat(x, char(0)) column as at most @p max items. They point
 * into one scratch copy of the text, where each separator ends an item;
 * NULL (no rows) is no items. */
static chat_err col_list(store *s, sqlite3_stmt *st, int i, size_t max,
                         const char *const **out, size_t *n) {
  const char *text;
  size_t len;
  *out = NULL;
  *n = 0;
  chat_err e = col_str(s, st, i, &text, &len);
  if (e || !text || max == 0)
    return e;
  size_t count = 1;
  for (size_t k = 0; k < len; k++)
    count += text[k] == '\0';
  if (count > max)
    count = max;
  const char **items = salloc(s, count * sizeof *items);
  if (!items)
    return CHAT_ERR_NOMEM;
  for (size_t k = 0; k < count; k++) {
    items[k] = text;
    text += strlen(text) + 1;
  }
  *out = items;
  *n = count;
  return CHAT_OK;
}

/* Step a message query to its end, collecting every row. */
static chat_err collect_messages(store *s, sqlite3_stmt *st,
                                 chat_message **out, size_t *n) {
  chat_message *arr = NULL;
  size_t cap = 0;
  chat_err e = CHAT_OK;
  int rc = SQLITE_DONE;
  *n = 0;
  while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    e = push(s, (void **)&arr, n, &cap, sizeof *arr);
    if (!e)
      e = row_message(s, st, &arr[(*n)++]);
  }
  if (!e && rc != SQLITE_DONE)
    e = sqerr(rc);
  finish(st);
  *out = arr;
  return e;
}

/* ------------------------------------------------------------------------
 * Conversations as seen by a viewer */

static chat_err load_view(store *s, const char *cid, const char *viewer,
                          chat_conversation **out) {
  chat_conversation *c = salloc(s, sizeof *c);
  if (!c)
    return CHAT_ERR_NOMEM;
  memset(c, 0, sizeof *c);
  sqlite3_stmt *st;
  chat_err e = query(s, S_CONV_ROW, &st, "s", cid);
  if (e)
    return e;
  int rc = sqlite3_step(st);
  bool has_last = false;
  if (rc == SQLITE_ROW) {
    c->type = (chat_conversation_type)sqlite3_column_int(st, 0);
    e = col_str(s, st, 1, &c->name.ptr, &c->name.len);
    has_last = sqlite3_column_type(st, 2) != SQLITE_NULL;
  } else {
    e = rc == SQLITE_DONE ? CHAT_ERR_NOT_FOUND : sqerr(rc);
  }
  finish(st);
  if (e || !(c->conversation_id = sdup(s, cid, strlen(cid))))
    return e ? e : CHAT_ERR_NOMEM;

  if ((e = query(s, S_CONV_MEMBERS, &st, "s", cid)))
    return e;
  const char **members = NULL, **admins = NULL;
  size_t cap = 0, cap_admins = 0;
  while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    e = push(s, (void **)&members, &c->n_members, &cap, sizeof *members);
    if (!e)
      e = col_str(s, st, 0, &members[c->n_members++], NULL);
    if (!e && sqlite3_column_int(st, 1) &&
        !(e = push(s, (void **)&admins, &c->n_admins, &cap_admins,
                   sizeof *admins)))
      admins[c->n_admins++] = members[c->n_members - 1];
  }
  if (!e && rc != SQLITE_DONE)
    e = sqerr(rc);
  finish(st);
  if (e)
    return e;
  c->members = members;
  c->admins = admins;

  /* The newest message the viewer is shown, not the log's last entry
   * (an edit, or a shadow-banned sender's message, may be that). */
  if (has_last) {
    if ((e = query(s, S_LAST_SHOWN_MSG, &st, "ss", cid, viewer)))
      return e;
    chat_message *m;
    size_t n;
    if ((e = collect_messages(s, st, &m, &n)))
      return e;
    c->last_message = n ? m : NULL;
  }

  *out = c;
  if (!viewer)
    return CHAT_OK;
  if ((e = query(s, S_MEMBER_ROW, &st, "ss", cid, viewer)))
    return e;
  rc = sqlite3_step(st);
  bool member = rc == SQLITE_ROW;
  int64_t read_mark = 0;
  if (member) {
    c->has_last_read = sqlite3_column_type(st, 0) != SQLITE_NULL;
    read_mark = sqlite3_column_int64(st, 0);
    c->last_read_message_id = (uint64_t)read_mark;
  } else if (rc != SQLITE_DONE) {
    e = sqerr(rc);
  }
  finish(st);
  if (e || !member) /* a non-member viewer has no marks and no unread */
    return e;
  if ((e = query(s, S_UNREAD, &st, "sis", cid, read_mark, viewer)))
    return e;
  bool found;
  int64_t unread;
  if ((e = one_int(st, &found, &unread)))
    return e;
  c->unread_count = unread > UINT32_MAX ? UINT32_MAX : (uint32_t)unread;
  return CHAT_OK;
}

static chat_err conversation_get(void *self, const char *conversation_id,
                                 const char *viewer,
                                 chat_conversation_sink emit, void *ctx,
                                 chat_op *op) {
  (void)op; /* every method of this store finishes before it returns */
  store *s = self;
  if (!s || !conversation_id)
    return CHAT_ERR_INVAL;
  enter(s);
  chat_conversation *c = NULL;
  chat_err e = begin(s, false);
  if (!e)
    e = end(s, load_view(s, conversation_id, viewer, &c));
  if (!e && emit)
    emit(ctx, c);
  leave(s);
  return e;
}

/* The direct_key of a pair: both ids in byte order, joined by "\n" (which
 * no id may contain). */
static const char *direct_key(store *s, const char *a, const char *b) {
  if (strcmp(a, b) > 0) {
    const char *t = a;
    a = b;
    b = t;
  }
  size_t la = strlen(a), lb = strlen(b);
  char *k = salloc(s, la + lb + 2);
  if (!k)
    return NULL;
  memcpy(k, a, la);
  k[la] = '\n';
  memcpy(k + la + 1, b, lb + 1);
  return k;
}

static chat_err create_tx(store *s, const chat_conversation_new *c,
                          bool *existed, chat_conversation **view) {
  const char *key = NULL;
  const char *cid = c->conversation_id;
  sqlite3_stmt *st;
  chat_err e;
  if (c->type == CHAT_CONVERSATION_DIRECT) {
    if (!(key = direct_key(s, c->members[0], c->members[1])))
      return CHAT_ERR_NOMEM;
    if ((e = query(s, S_DIRECT_FIND, &st, "s", key)))
      return e;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      *existed = true;
      e = col_str(s, st, 0, &cid, NULL);
    } else if (rc != SQLITE_DONE) {
      e = sqerr(rc);
    }
    finish(st);
    if (e)
      return e;
    if (*existed)
      return load_view(s, cid, c->created_by, view);
  }
  /* A new direct conversation with someone who never wrote to the
   * creator is "cold", and capped per creator (PROTOCOL.md section 8).
   * Counted and inserted in this one transaction. */
  bool cold = false;
  if (c->type == CHAT_CONVERSATION_DIRECT) {
    const char *peer = strcmp(c->members[0], c->created_by) == 0
                           ? c->members[1]
                           : c->members[0];
    bool wrote;
    int64_t v;
    if ((e = query(s, S_PEER_WROTE, &st, "ss", peer, c->created_by)) ||
        (e = one_int(st, &wrote, &v)))
      return e;
    cold = !wrote;
    if (cold && c->cold_direct_limit > 0) {
      bool found;
      int64_t n = 0;
      if ((e = query(s, S_COLD_COUNT, &st, "si", c->created_by,
                     c->cold_direct_since_ms)) ||
          (e = one_int(st, &found, &n)))
        return e;
      if (n >= (int64_t)c->cold_direct_limit)
        return CHAT_ERR_RATE_LIMITED;
    }
  }
  /* A proposed id that is taken fails the primary key: CONFLICT. */
  if ((e = query(s, S_CONV_INSERT, &st, "sitsisi", cid, (int64_t)c->type,
                 c->name.ptr, c->name.len, c->created_by, c->now_ms, key,
                 (int64_t)cold)) ||
      (e = run(st)))
    return e;
  /* A group's creator is its first admin. */
  bool group = c->type == CHAT_CONVERSATION_GROUP;
  for (size_t i = 0; i < c->n_members; i++) {
    int64_t admin = group && strcmp(c->members[i], c->created_by) == 0;
    if ((e = query(s, S_MEMBER_INSERT, &st, "ssii", cid, c->members[i],
                   c->now_ms, admin)) ||
        (e = run(st)))
      return e;
  }
  return load_view(s, cid, c->created_by, view);
}

static chat_err conversation_create(void *self, const chat_conversation_new *c,
                                    bool *existed, chat_conversation_sink emit,
                                    void *ctx, chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !c || !c->conversation_id || !c->created_by ||
      (c->n_members && !c->members))
    return CHAT_ERR_INVAL;
  if (c->type != CHAT_CONVERSATION_DIRECT &&
      c->type != CHAT_CONVERSATION_GROUP)
    return CHAT_ERR_INVAL;
  for (size_t i = 0; i < c->n_members; i++)
    if (!c->members[i])
      return CHAT_ERR_INVAL;
  if (c->type == CHAT_CONVERSATION_DIRECT &&
      (c->n_members != 2 || strcmp(c->members[0], c->members[1]) == 0))
    return CHAT_ERR_INVAL;
  bool dummy;
  if (!existed)
    existed = &dummy;
  *existed = false;
  enter(s);
  chat_conversation *view = NULL;
  /* The view is built before COMMIT, so a failure to build it (NOMEM)
   * rolls the creation back instead of reporting a half-done call. */
  chat_err e = begin(s, true);
  if (!e)
    e = end(s, create_tx(s, c, existed, &view));
  if (e)
    *existed = false;
  else if (emit)
    emit(ctx, view);
  leave(s);
  return e;
}

static chat_err member_add_tx(store *s, const char *cid, const char *uid,
                              int64_t now_ms) {
  sqlite3_stmt *st;
  bool found;
  int64_t v;
  chat_err e = query(s, S_CONV_EXISTS, &st, "s", cid);
  if (!e)
    e = one_int(st, &found, &v);
  if (!e && !found)
    e = CHAT_ERR_NOT_FOUND;
  if (!e)
    e = query(s, S_MEMBER_INSERT, &st, "ssii", cid, uid, now_ms,
              (int64_t)0);
  return e ? e : run(st);
}

static chat_err member_add(void *self, const char *conversation_id,
                           const char *user_id, int64_t now_ms, chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !conversation_id || !user_id)
    return CHAT_ERR_INVAL;
  chat_err e = begin(s, true);
  return e ? e : end(s, member_add_tx(s, conversation_id, user_id, now_ms));
}

/* A cursor is "<last_activity>:<conversation_id>" of the last conversation
 * of the previous page, the keyset of the ORDER BY. */
static bool parse_cursor(const char *cur, int64_t *activity,
                         const char **cid) {
  const char *p = cur;
  bool neg = *p == '-';
  p += neg;
  if (*p < '0' || *p > '9' || (*p == '0' && p[1] != ':'))
    return false;
  uint64_t v = 0;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (v > ((uint64_t)INT64_MAX - (uint64_t)(*p - '0')) / 10)
      return false;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  if (*p != ':' || (neg && v == 0) || !chat_id_valid(p + 1, strlen(p + 1)))
    return false;
  *activity = neg ? -(int64_t)v : (int64_t)v;
  *cid = p + 1;
  return true;
}

/* A CONV_LIST row as its viewer's conversation. */
static chat_err row_conversation(store *s, sqlite3_stmt *st,
                                 chat_conversation *c) {
  memset(c, 0, sizeof *c);
  c->type = (chat_conversation_type)sqlite3_column_int(st, L_TYPE);
  c->has_last_read = sqlite3_column_type(st, L_LAST_READ) != SQLITE_NULL;
  c->last_read_message_id =
    (uint64_t)sqlite3_column_int64(st, L_LAST_READ);
  int64_t unread = sqlite3_column_int64(st, L_UNREAD);
  c->unread_count = unread > UINT32_MAX ? UINT32_MAX : (uint32_t)unread;
  chat_err e = col_str(s, st, L_CID, &c->conversation_id, NULL);
  if (!e)
    e = col_str(s, st, L_NAME, &c->name.ptr, &c->name.len);
  if (!e)
    e = col_list(s, st, L_MEMBERS, SIZE_MAX, &c->members, &c->n_members);
  if (!e)
    e = col_list(s, st, L_ADMINS, SIZE_MAX, &c->admins, &c->n_admins);
  /* The LEFT JOIN found no last message. */
  if (e || sqlite3_column_type(st, L_MSG + 1) == SQLITE_NULL)
    return e;
  chat_message *m = salloc(s, sizeof *m);
  if (!m)
    return CHAT_ERR_NOMEM;
  int64_t count;
  if ((e = row_message_at(s, st, L_MSG, m, &count)))
    return e;
  if (count > 0 && (e = col_list(s, st, L_MEDIA, (size_t)count,
                                 &m->media_refs, &m->n_media_refs)))
    return e;
  c->last_message = m;
  return CHAT_OK;
}

typedef struct list_row {
  chat_conversation c;
  int64_t activity;
} list_row;

/* The ORDER BY of CONV_LIST's page: activity, then id, both descending
 * (strcmp orders NUL-free strings as SQLite's BINARY collation does). */
static int list_order(const void *a, const void *b) {
  const list_row *x = a, *y = b;
  if (x->activity != y->activity)
    return x->activity < y->activity ? 1 : -1;
  return strcmp(y->c.conversation_id, x->c.conversation_id);
}

static chat_err convs_tx(store *s, const char *uid, const char *cursor,
                         uint32_t limit, list_row **rows, size_t *n_rows,
                         char *next_cursor) {
  int64_t activity = 0;
  const char *after = NULL;
  if (cursor && *cursor && !parse_cursor(cursor, &activity, &after))
    return CHAT_ERR_INVAL;
  /* One row past the page tells whether another page follows. */
  int64_t want = (int64_t)limit + 1;
  sqlite3_stmt *st;
  chat_err e = after ? query(s, S_CONVS_AFTER, &st, "siis", uid, want,
                             activity, after)
                     : query(s, S_CONVS_FIRST, &st, "si", uid, want);
  if (e)
    return e;
  list_row *v = NULL;
  size_t n = 0, cap = 0;
  int rc = SQLITE_DONE;
  while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (!(e = push(s, (void **)&v, &n, &cap, sizeof *v))) {
      v[n].activity = sqlite3_column_int64(st, L_ACTIVITY);
      e = row_conversation(s, st, &v[n++].c);
    }
  }
  if (!e && rc != SQLITE_DONE)
    e = sqerr(rc);
  finish(st);
  if (e)
    return e;
  if (n > 1)
    qsort(v, n, sizeof *v, list_order);
  if (n > limit) {
    n = limit;
    int len = snprintf(next_cursor, CHAT_CURSOR_BUF, "%lld:%s",
                       (long long)v[n - 1].activity,
                       v[n - 1].c.conversation_id);
    if (len < 0 || len >= CHAT_CURSOR_BUF)
      return CHAT_ERR_MODULE; /* ids are at most 64 bytes: cannot happen */
  }
  *rows = v;
  *n_rows = n;
  return CHAT_OK;
}

static chat_err conversations_of(void *self, const char *user_id,
                                 const char *cursor, uint32_t limit,
                                 chat_conversation_sink emit, void *ctx,
                                 char *next_cursor, chat_op *op) {
  (void)op;
  store *s = self;
  if (next_cursor)
    next_cursor[0] = '\0';
  if (!s || !user_id || !next_cursor || limit == 0)
    return CHAT_ERR_INVAL;
  enter(s);
  list_row *rows = NULL;
  size_t n = 0;
  chat_err e = begin(s, false);
  if (!e)
    e = end(s, convs_tx(s, user_id, cursor, limit, &rows, &n, next_cursor));
  if (e)
    next_cursor[0] = '\0';
  for (size_t i = 0; !e && emit && i < n; i++)
    emit(ctx, &rows[i].c);
  leave(s);
  return e;
}

/* ------------------------------------------------------------------------
 * Messages */

/* Where a conversation's last message moves to, for one run of a batch's
 * messages in that conversation: one UPDATE per run, not per message. */
typedef struct bump {
  const char *cid;
  uint64_t id;
  int64_t ts;
  int64_t act; /* newest server_ts of a shown message (0: none) */
} bump;

static chat_err flush_bump(store *s, bump *b) {
  if (!b->cid)
    return CHAT_OK;
  sqlite3_stmt *st;
  chat_err e = query(s, S_CONV_BUMP, &st, "suii", b->cid, b->id, b->ts,
                     b->act);
  b->cid = NULL;
  b->act = 0;
  return e ? e : run(st);
}

/* The id a message is stored under: the minted one, raised past the
 * conversation's last id when another writer (a second gateway on this
 * file) committed a later-minted id first. Ids then grow in commit order
 * within a conversation, which resume's "after last_seen" relies on. */
static chat_err commit_id(store *s, const chat_msg_in *m, const bump *b,
                          uint64_t *id) {
  uint64_t last = 0;
  if (b->cid && strcmp(b->cid, m->conversation_id) == 0) {
    last = b->id;
  } else {
    sqlite3_stmt *st;
    bool found;
    int64_t v = 0;
    chat_err e = query(s, S_LAST_ID, &st, "s", m->conversation_id);
    if (e || (e = one_int(st, &found, &v)))
      return e;
    last = found && v > 0 ? (uint64_t)v : 0;
  }
  *id = m->message_id;
  if (*id <= last) {
    if (last >= (uint64_t)INT64_MAX)
      return CHAT_ERR_MODULE;
    *id = last + 1;
  }
  return CHAT_OK;
}

/* The original of a repeated (sender, client_msg_id), if any: an earlier
 * commit, or an earlier message of this batch (visible inside the
 * transaction). */
static chat_err dedup_find(store *s, const chat_msg_in *m,
                           chat_append_result *r, bool *found) {
  sqlite3_stmt *st;
  *found = false;
  chat_err e = query(s, S_DEDUP_FIND, &st, "ss", m->sender_id,
                     m->client_msg_id);
  if (e)
    return e;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *found = true;
    r->message_id = (uint64_t)sqlite3_column_int64(st, 0);
    r->server_ts = sqlite3_column_int64(st, 1);
    r->duplicate = true;
    r->status = CHAT_OK;
    r->withheld = false; /* a duplicate is not delivered again anyway */
  }
  finish(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? CHAT_OK : sqerr(rc);
}

/* May the edit or delete entry @p m be applied to its target? *status
 * says no (NOT_FOUND, DENIED) in the order modules.h gives. */
static chat_err target_check(store *s, const chat_msg_in *m,
                             chat_err *status) {
  sqlite3_stmt *st;
  *status = CHAT_OK;
  chat_err e = query(s, S_TARGET_ROW, &st, "su", m->conversation_id,
                     m->target_id);
  if (e)
    return e;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    int type = sqlite3_column_int(st, 1);
    const unsigned char *sender = sqlite3_column_text(st, 0);
    if ((type != CHAT_BODY_TEXT && type != CHAT_BODY_MEDIA) ||
        sqlite3_column_int(st, 3) != 0)
      *status = CHAT_ERR_NOT_FOUND;
    else if (m->target_sender &&
             (!sender || strcmp((const char *)sender, m->target_sender)))
      *status = CHAT_ERR_DENIED;
    else if (m->target_min_ts > 0 &&
             sqlite3_column_int64(st, 2) < m->target_min_ts)
      *status = CHAT_ERR_DENIED;
  } else if (rc == SQLITE_DONE) {
    *status = CHAT_ERR_NOT_FOUND;
  }
  finish(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? CHAT_OK : sqerr(rc);
}

/* Apply a stored edit (@p id) or delete entry to its target in place; the
 * superseded bodies are overwritten, not flagged (PROTOCOL.md section 8:
 * a deleted body is erased from the store). */
static chat_err target_apply(store *s, const chat_msg_in *m, uint64_t id) {
  sqlite3_stmt *st;
  const char *cid = m->conversation_id;
  chat_err e;
  if (m->body_type == CHAT_BODY_EDIT) {
    if ((e = query(s, S_TARGET_EDIT, &st, "subi", cid, m->target_id,
                   m->body.ptr, m->body.len, m->server_ts)) ||
        (e = run(st)))
      return e;
  } else {
    if ((e = query(s, S_TARGET_DELETE, &st, "su", cid, m->target_id)) ||
        (e = run(st)) ||
        (e = query(s, S_TARGET_MEDIA_DROP, &st, "su", cid, m->target_id)) ||
        (e = run(st)))
      return e;
    id = 0; /* every edit of it */
  }
  if ((e = query(s, S_EDITS_ERASE, &st, "suu", cid, m->target_id, id)))
    return e;
  return run(st);
}

static chat_err append_one(store *s, const chat_msg_in *m,
                           chat_append_result *r, bump *b) {
  sqlite3_stmt *st;
  uint64_t id;
  chat_err e;
  r->status = CHAT_OK;
  bool targeted = m->has_target_id;
  if (targeted) {
    /* A retry is answered as one before the target is looked at: the
     * target may have been deleted, or the window passed, since the
     * original was stored. */
    bool found = false;
    if (m->client_msg_id && (e = dedup_find(s, m, r, &found)))
      return e;
    if (found)
      return CHAT_OK;
    chat_err status;
    if ((e = target_check(s, m, &status)))
      return e;
    if (status != CHAT_OK) {
      r->status = status;
      r->message_id = 0;
      r->server_ts = 0;
      r->duplicate = false;
      r->withheld = false;
      return CHAT_OK;
    }
  }
  if ((e = commit_id(s, m, b, &id)))
    return e;
  /* Stored while its sender is shadow-banned: seen by that sender only,
   * decided here, in the commit, against the ban list as it is now. */
  bool shadowed;
  int64_t v;
  if ((e = query(s, S_BANNED, &st, "s", m->sender_id)) ||
      (e = one_int(st, &shadowed, &v)))
    return e;
  /* A delete entry carries no body, whatever it was given. */
  bool del = m->body_type == CHAT_BODY_DELETE;
  e = query(s, S_MSG_INSERT, &st, "sussbioiiioi", m->conversation_id, id,
            m->sender_id, m->client_msg_id, del ? "" : m->body.ptr,
            del ? (size_t)0 : m->body.len, (int64_t)m->body_type,
            (int)m->has_reply_to, m->reply_to, m->server_ts,
            (int64_t)m->n_media_refs, (int64_t)m->sender_kind,
            (int)targeted, m->target_id, (int64_t)shadowed);
  if (e || (e = run(st)))
    return e;
  if (sqlite3_changes(s->db) == 0) {
    bool found;
    if ((e = dedup_find(s, m, r, &found)))
      return e;
    return found ? CHAT_OK : CHAT_ERR_MODULE;
  }
  for (size_t i = 0; i < m->n_media_refs; i++) {
    if ((e = query(s, S_MEDIA_REF_INSERT, &st, "suis", m->conversation_id,
                   id, (int64_t)i, m->media_refs[i])) ||
        (e = run(st)))
      return e;
  }
  /* A withheld edit or delete changes nothing others read back; its
   * sender's devices apply it from the entry, which they do see. */
  if (targeted && !shadowed && (e = target_apply(s, m, id)))
    return e;
  /* Who has written where: the cold-direct cap's "never wrote to me". */
  if ((m->body_type == CHAT_BODY_TEXT || m->body_type == CHAT_BODY_MEDIA) &&
      !shadowed &&
      ((e = query(s, S_WRITER_INSERT, &st, "ss", m->sender_id,
                  m->conversation_id)) ||
       (e = run(st))))
    return e;
  if (b->cid && strcmp(b->cid, m->conversation_id) != 0 &&
      (e = flush_bump(s, b)))
    return e;
  if (!b->cid || id > b->id) {
    b->cid = m->conversation_id;
    b->id = id;
    b->ts = m->server_ts;
  }
  /* The chat list's order moves for what others are shown. */
  if (!targeted && !shadowed && m->server_ts > b->act)
    b->act = m->server_ts;
  r->message_id = id;
  r->server_ts = m->server_ts;
  r->duplicate = false;
  r->withheld = shadowed;
  return CHAT_OK;
}

static chat_err append_tx(store *s, const chat_msg_in *msgs, size_t n,
                          chat_append_result *results) {
  uint64_t max_id = 0;
  bump b = {NULL, 0, 0, 0};
  for (size_t i = 0; i < n; i++) {
    chat_err e = append_one(s, &msgs[i], &results[i], &b);
    if (e)
      return e;
    if (!results[i].duplicate && results[i].message_id > max_id)
      max_id = results[i].message_id;
  }
  chat_err e = flush_bump(s, &b);
  if (e || max_id == 0)
    return e;
  sqlite3_stmt *st;
  e = query(s, S_MAX_BUMP, &st, "u", max_id);
  return e ? e : run(st);
}

static chat_err append(void *self, const chat_msg_in *msgs, size_t n,
                       chat_append_result *results, chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || (n && (!msgs || !results)))
    return CHAT_ERR_INVAL;
  for (size_t i = 0; i < n; i++) {
    const chat_msg_in *m = &msgs[i];
    if (!m->conversation_id || !m->sender_id || !id_ok(m->message_id) ||
        (m->has_reply_to && !id_ok(m->reply_to)) ||
        (m->body.len && !m->body.ptr) || (m->n_media_refs && !m->media_refs))
      return CHAT_ERR_INVAL;
    /* Edit and delete entries, and only they, name a target. */
    bool entry = m->body_type == CHAT_BODY_EDIT ||
                 m->body_type == CHAT_BODY_DELETE;
    if (entry != m->has_target_id ||
        (m->has_target_id && !id_ok(m->target_id)) ||
        (m->sender_kind != CHAT_SENDER_USER &&
         m->sender_kind != CHAT_SENDER_BOT))
      return CHAT_ERR_INVAL;
    for (size_t j = 0; j < m->n_media_refs; j++)
      if (!m->media_refs[j])
        return CHAT_ERR_INVAL;
  }
  if (n == 0)
    return CHAT_OK;
  /* A mark could not put FULL back: no message commits without it. */
  if (s->relaxed) {
    if (exec_id(s, S_SYNC_FULL))
      return CHAT_ERR_MODULE;
    s->relaxed = false;
  }
  chat_err e = begin(s, true);
  return e ? e : end(s, append_tx(s, msgs, n, results));
}

/* ------------------------------------------------------------------------
 * Members and admins (PROTOCOL.md section 8) */

/* Whether (cid, uid) is a member, and an admin. */
static chat_err member_admin(store *s, const char *cid, const char *uid,
                             bool *member, bool *admin) {
  sqlite3_stmt *st;
  int64_t v = 0;
  chat_err e = query(s, S_MEMBER_ADMIN, &st, "ss", cid, uid);
  if (!e)
    e = one_int(st, member, &v);
  *admin = !e && *member && v != 0;
  return e;
}

/* A group keeps an admin (PROTOCOL.md section 8): when it has members but
 * none is an admin, the longest-standing one other than @p except becomes
 * one. *promoted is that member (a scratch copy), or NULL when the group
 * has an admin or no other member. */
static chat_err keep_an_admin(store *s, const char *cid, const char *except,
                              const char **promoted) {
  sqlite3_stmt *st;
  bool any;
  int64_t v;
  *promoted = NULL;
  chat_err e = query(s, S_ADMIN_ANY, &st, "s", cid);
  if (e || (e = one_int(st, &any, &v)) || any)
    return e;
  if ((e = query(s, S_PROMOTE_PICK, &st, "ss", cid, except)))
    return e;
  int rc = sqlite3_step(st);
  const char *pick = NULL;
  if (rc == SQLITE_ROW)
    e = col_str(s, st, 0, &pick, NULL);
  else if (rc != SQLITE_DONE)
    e = sqerr(rc);
  finish(st);
  if (e || !pick)
    return e;
  if ((e = query(s, S_MEMBER_SET_ADMIN, &st, "ssi", cid, pick, (int64_t)1)) ||
      (e = run(st)))
    return e;
  *promoted = pick;
  return CHAT_OK;
}

static chat_err member_remove_tx(store *s, const char *cid, const char *uid) {
  sqlite3_stmt *st;
  chat_err e = query(s, S_MEMBER_DELETE, &st, "ss", cid, uid);
  if (e || (e = run(st)))
    return e;
  if (sqlite3_changes(s->db) == 0)
    return CHAT_ERR_NOT_FOUND;
  bool found;
  int64_t type;
  if ((e = query(s, S_CONV_ROW, &st, "s", cid)) ||
      (e = one_int(st, &found, &type)))
    return e;
  const char *promoted;
  return found && type == CHAT_CONVERSATION_GROUP
             ? keep_an_admin(s, cid, uid, &promoted)
             : CHAT_OK;
}

static chat_err member_remove(void *self, const char *conversation_id,
                              const char *user_id, chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !conversation_id || !user_id)
    return CHAT_ERR_INVAL;
  enter(s);
  chat_err e = begin(s, true);
  if (!e)
    e = end(s, member_remove_tx(s, conversation_id, user_id));
  leave(s);
  return e;
}

/* A system message recording a member change, stored as append stores
 * one (its id raised when it does not grow). */
static chat_err system_message(store *s, const chat_member_change *ch,
                               uint64_t id, const char *prefix, chat_str body,
                               chat_append_result *r, bump *b) {
  size_t pl = prefix ? strlen(prefix) : 0;
  char *text = salloc(s, pl + body.len + 1);
  if (!text)
    return CHAT_ERR_NOMEM;
  if (pl)
    memcpy(text, prefix, pl);
  if (body.len)
    memcpy(text + pl, body.ptr, body.len);
  text[pl + body.len] = 0;
  chat_msg_in m = {.message_id = id,
                   .server_ts = ch->server_ts,
                   .conversation_id = ch->conversation_id,
                   .sender_id = ch->actor_id,
                   .body = {text, pl + body.len},
                   .body_type = CHAT_BODY_SYSTEM};
  return append_one(s, &m, r, b);
}

static chat_err member_change_tx(store *s, const chat_member_change *ch,
                                 chat_member_change_result *res,
                                 chat_conversation **view) {
  const char *cid = ch->conversation_id, *user = ch->user_id;
  sqlite3_stmt *st;
  chat_err e = query(s, S_CONV_META, &st, "s", cid);
  if (e)
    return e;
  int rc = sqlite3_step(st);
  int type = 0;
  const char *creator = NULL;
  if (rc == SQLITE_ROW) {
    type = sqlite3_column_int(st, 0);
    e = col_str(s, st, 1, &creator, NULL);
  } else {
    e = rc == SQLITE_DONE ? CHAT_ERR_NOT_FOUND : sqerr(rc);
  }
  finish(st);
  if (e)
    return e;
  if (type != CHAT_CONVERSATION_GROUP)
    return CHAT_ERR_CONFLICT;
  bool member, admin;
  if (ch->actor_must_be_admin) {
    if ((e = member_admin(s, cid, ch->actor_id, &member, &admin)))
      return e;
    if (!admin)
      return CHAT_ERR_DENIED;
  }
  if (ch->protect_creator && creator && strcmp(creator, user) == 0)
    return CHAT_ERR_DENIED;
  if ((e = member_admin(s, cid, user, &member, &admin)))
    return e;
  if (!member && ch->op != CHAT_MEMBER_ADD)
    return CHAT_ERR_NOT_FOUND;
  bool changed = false;
  switch (ch->op) {
  case CHAT_MEMBER_ADD:
    if (member)
      break;
    if (ch->max_members > 0) {
      bool found;
      int64_t n = 0;
      if ((e = query(s, S_MEMBER_COUNT, &st, "s", cid)) ||
          (e = one_int(st, &found, &n)))
        return e;
      if (n >= (int64_t)ch->max_members)
        return CHAT_ERR_CONFLICT;
    }
    e = query(s, S_MEMBER_INSERT, &st, "ssii", cid, user, ch->now_ms,
              (int64_t)0);
    changed = true;
    break;
  case CHAT_MEMBER_REMOVE:
    e = query(s, S_MEMBER_DELETE, &st, "ss", cid, user);
    changed = true;
    break;
  case CHAT_MEMBER_ADMIN_GRANT:
  case CHAT_MEMBER_ADMIN_REVOKE: {
    bool grant = ch->op == CHAT_MEMBER_ADMIN_GRANT;
    if (admin == grant)
      break;
    e = query(s, S_MEMBER_SET_ADMIN, &st, "ssi", cid, user, (int64_t)grant);
    changed = true;
    break;
  }
  default:
    return CHAT_ERR_INVAL;
  }
  if (e || (changed && (e = run(st))))
    return e;
  res->changed = changed;
  if (changed) {
    bump b = {NULL, 0, 0, 0};
    if ((e = system_message(s, ch, ch->message_id, NULL, ch->body,
                            &res->message, &b)))
      return e;
    uint64_t max_id = res->message.message_id;
    if (ch->op == CHAT_MEMBER_REMOVE || ch->op == CHAT_MEMBER_ADMIN_REVOKE) {
      const char *promoted;
      if ((e = keep_an_admin(s, cid, user, &promoted)))
        return e;
      bool any = promoted != NULL;
      if (!promoted && ch->op == CHAT_MEMBER_ADMIN_REVOKE) {
        /* No admin left and nobody else to make one: the last member may
         * not step down. */
        int64_t v;
        if ((e = query(s, S_ADMIN_ANY, &st, "s", cid)) ||
            (e = one_int(st, &any, &v)))
          return e;
        if (!any)
          return CHAT_ERR_CONFLICT;
      }
      if (promoted) {
        res->promoted = true;
        snprintf(res->promoted_user, sizeof res->promoted_user, "%s",
                 promoted);
        if ((e = system_message(s, ch, ch->promote_message_id, promoted,
                                ch->promote_suffix, &res->promote_message,
                                &b)))
          return e;
        if (res->promote_message.message_id > max_id)
          max_id = res->promote_message.message_id;
      }
    }
    if ((e = flush_bump(s, &b)) ||
        (e = query(s, S_MAX_BUMP, &st, "u", max_id)) || (e = run(st)))
      return e;
  }
  return load_view(s, cid, ch->actor_id, view);
}

static chat_err member_change(void *self, const chat_member_change *ch,
                              chat_member_change_result *res,
                              chat_conversation_sink emit, void *ctx,
                              chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !ch || !res || !ch->conversation_id || !ch->actor_id ||
      !ch->user_id || ch->op < CHAT_MEMBER_ADD ||
      ch->op > CHAT_MEMBER_ADMIN_REVOKE || !id_ok(ch->message_id) ||
      !id_ok(ch->promote_message_id) || (ch->body.len && !ch->body.ptr) ||
      (ch->promote_suffix.len && !ch->promote_suffix.ptr))
    return CHAT_ERR_INVAL;
  memset(res, 0, sizeof *res);
  if (s->relaxed) {
    if (exec_id(s, S_SYNC_FULL))
      return CHAT_ERR_MODULE;
    s->relaxed = false;
  }
  enter(s);
  chat_conversation *view = NULL;
  chat_err e = begin(s, true);
  if (!e)
    e = end(s, member_change_tx(s, ch, res, &view));
  if (e)
    memset(res, 0, sizeof *res);
  else if (emit)
    emit(ctx, view);
  leave(s);
  return e;
}

/* messages() and messages_as(): the same pages, the second without the
 * messages of shadow-banned senders other than @p viewer. */
static chat_err page(store *s, const char *conversation_id, bool as,
                     const char *viewer, chat_page_dir dir, uint64_t anchor,
                     uint32_t limit, chat_message_sink emit, void *ctx) {
  if (!s || !conversation_id)
    return CHAT_ERR_INVAL;
  if (limit == 0)
    return CHAT_OK;
  sqlite3_stmt *st = NULL;
  chat_err e;
  if (dir == CHAT_PAGE_BEFORE && !id_ok(anchor))
    dir = CHAT_PAGE_LATEST; /* every id is below it */
  if (dir == CHAT_PAGE_AFTER && !id_ok(anchor))
    return CHAT_OK; /* no id is above it */
  enter(s);
  chat_message *rows = NULL;
  size_t n = 0;
  if (!(e = begin(s, false))) {
    switch (dir) {
    case CHAT_PAGE_LATEST:
      e = as ? query(s, S_MSGV_LATEST, &st, "sis", conversation_id,
                     (int64_t)limit, viewer)
             : query(s, S_MSG_LATEST, &st, "si", conversation_id,
                     (int64_t)limit);
      break;
    case CHAT_PAGE_BEFORE:
      e = as ? query(s, S_MSGV_BEFORE, &st, "suis", conversation_id, anchor,
                     (int64_t)limit, viewer)
             : query(s, S_MSG_BEFORE, &st, "sui", conversation_id, anchor,
                     (int64_t)limit);
      break;
    case CHAT_PAGE_AFTER:
      e = as ? query(s, S_MSGV_AFTER, &st, "suis", conversation_id, anchor,
                     (int64_t)limit, viewer)
             : query(s, S_MSG_AFTER, &st, "sui", conversation_id, anchor,
                     (int64_t)limit);
      break;
    default:
      e = CHAT_ERR_INVAL;
    }
    if (!e)
      e = collect_messages(s, st, &rows, &n);
    e = end(s, e);
  }
  for (size_t i = 0; !e && emit && i < n; i++)
    emit(ctx, &rows[i]);
  leave(s);
  return e;
}

static chat_err messages(void *self, const char *conversation_id,
                         chat_page_dir dir, uint64_t anchor, uint32_t limit,
                         chat_message_sink emit, void *ctx, chat_op *op) {
  (void)op;
  return page(self, conversation_id, false, NULL, dir, anchor, limit, emit,
              ctx);
}

static chat_err messages_as(void *self, const char *conversation_id,
                            const char *viewer, chat_page_dir dir,
                            uint64_t anchor, uint32_t limit,
                            chat_message_sink emit, void *ctx, chat_op *op) {
  (void)op;
  return page(self, conversation_id, true, viewer, dir, anchor, limit, emit,
              ctx);
}

static chat_err max_message_id(void *self, uint64_t *out, chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !out)
    return CHAT_ERR_INVAL;
  sqlite3_stmt *st;
  bool found;
  int64_t v = 0;
  chat_err e = query(s, S_MAX_GET, &st, "");
  if (!e)
    e = one_int(st, &found, &v);
  *out = e ? 0 : (uint64_t)v;
  return e;
}

/* ------------------------------------------------------------------------
 * Receipts */

static chat_err mark_tx(store *s, const chat_mark_in *in, bool *advanced,
                        chat_mark_update **ups, size_t *n_ups) {
  const char *cid = in->conversation_id, *who = in->member_id;
  sqlite3_stmt *st;
  bool found;
  int64_t last;
  chat_err e = query(s, S_LAST_ID, &st, "s", cid);
  if (e || (e = one_int(st, &found, &last)) || !found)
    return e;
  /* A client cannot mark messages that do not exist yet. */
  int64_t up_to = in->up_to > (uint64_t)last ? last : (int64_t)in->up_to;

  if ((e = query(s, S_MEMBER_ROW, &st, "ss", cid, who)))
    return e;
  int rc = sqlite3_step(st);
  int64_t old_del = 0, old_read = 0;
  if (rc == SQLITE_ROW) {
    old_del = sqlite3_column_int64(st, 1);
    old_read = sqlite3_column_int64(st, 2);
  }
  finish(st);
  if (rc != SQLITE_ROW) /* not a member: nothing to mark */
    return rc == SQLITE_DONE ? CHAT_OK : sqerr(rc);

  bool read = in->state == CHAT_RECEIPT_READ;
  int64_t old = read ? old_read : old_del;
  if (up_to <= old || (!read && !in->track_delivered))
    return CHAT_OK;
  /* Reading implies delivery, even where delivered marks are dropped. */
  int64_t new_del = up_to > old_del ? up_to : old_del;
  if ((e = query(s, read ? S_MARK_READ : S_MARK_DELIVERED, &st, "ssi", cid,
                 who, up_to)) ||
      (e = run(st)))
    return e;
  if (new_del > old_del) {
    e = in->group ? query(s, S_GROUP_DELIVERED, &st, "siis", cid, old_del,
                          new_del, who)
                  : query(s, S_DIRECT_DELIVERED, &st, "siisi", cid, old_del,
                          new_del, who, in->now_ms);
    if (e || (e = run(st)))
      return e;
  }
  if (read) {
    e = in->group ? query(s, S_GROUP_READ, &st, "siis", cid, old_read, up_to,
                          who)
                  : query(s, S_DIRECT_READ, &st, "siisi", cid, old_read,
                          up_to, who, in->now_ms);
    if (e || (e = run(st)))
      return e;
  }
  if (in->group &&
      ((e = query(s, S_GROUP_RECEIPT, &st, "sisii", cid, up_to, who,
                  (int64_t)in->state, in->now_ms)) ||
       (e = run(st))))
    return e;

  if ((e = query(s, S_MARK_UPDATES, &st, "siis", cid, old, up_to, who)))
    return e;
  chat_mark_update *arr = NULL;
  size_t cap = 0;
  while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    e = push(s, (void **)&arr, n_ups, &cap, sizeof *arr);
    if (e)
      break;
    chat_mark_update *u = &arr[(*n_ups)++];
    e = col_str(s, st, 0, &u->sender_id, NULL);
    u->message_id = (uint64_t)sqlite3_column_int64(st, 1);
    if (in->group) {
      u->delivered = (uint32_t)sqlite3_column_int64(st, 2);
      u->read = (uint32_t)sqlite3_column_int64(st, 3);
    } else {
      u->delivered = (uint32_t)sqlite3_column_int(st, 4);
      u->read = (uint32_t)sqlite3_column_int(st, 5);
    }
  }
  if (!e && rc != SQLITE_DONE)
    e = sqerr(rc);
  finish(st);
  *ups = arr;
  *advanced = e == CHAT_OK;
  return e;
}

static chat_err mark(void *self, const chat_mark_in *in, bool *advanced,
                     chat_mark_sink emit, void *ctx, chat_op *op) {
  (void)op;
  store *s = self;
  bool dummy;
  if (!advanced)
    advanced = &dummy;
  *advanced = false;
  if (!s || !in || !in->conversation_id || !in->member_id ||
      (in->state != CHAT_RECEIPT_DELIVERED && in->state != CHAT_RECEIPT_READ))
    return CHAT_ERR_INVAL;
  enter(s);
  chat_mark_update *ups = NULL;
  size_t n = 0;
  /* A receipt mark is a high-water mark, not a message: it commits without
   * an fsync of its own (synchronous=NORMAL for this transaction) and
   * becomes durable with the next message commit, which fsyncs the whole
   * WAL. A 1,000-member group reading one message is then 1,000 commits
   * but not 1,000 fsyncs. A power loss may forget marks made since the
   * last message commit, never a message; a process crash loses nothing. */
  bool relaxed = s->full && !exec_id(s, S_SYNC_NORMAL);
  chat_err e = begin(s, true);
  if (!e)
    e = end(s, mark_tx(s, in, advanced, &ups, &n));
  /* If FULL cannot be restored now, append() restores it before any
   * message commits, or refuses to commit. */
  if (relaxed)
    s->relaxed = exec_id(s, S_SYNC_FULL) != CHAT_OK;
  if (e)
    *advanced = false;
  /* Updates are announced only once they are committed. */
  for (size_t i = 0; !e && emit && i < n; i++)
    emit(ctx, &ups[i]);
  leave(s);
  return e;
}

typedef struct member_state {
  const char *id;
  int state;
} member_state;

static chat_err receipts_tx(store *s, const char *cid, uint64_t id,
                            uint32_t *delivered, uint32_t *read, bool want,
                            member_state **states, size_t *n) {
  sqlite3_stmt *st;
  chat_err e = query(s, S_RECEIPT_MSG, &st, "su", cid, id);
  if (e)
    return e;
  int rc = sqlite3_step(st);
  const char *sender = NULL;
  if (rc == SQLITE_ROW) {
    if (sqlite3_column_int(st, 5) == CHAT_CONVERSATION_GROUP) {
      *delivered = (uint32_t)sqlite3_column_int64(st, 1);
      *read = (uint32_t)sqlite3_column_int64(st, 2);
    } else {
      *delivered = (uint32_t)sqlite3_column_int(st, 3);
      *read = (uint32_t)sqlite3_column_int(st, 4);
    }
    if (want)
      e = col_str(s, st, 0, &sender, NULL);
  } else {
    e = rc == SQLITE_DONE ? CHAT_ERR_NOT_FOUND : sqerr(rc);
  }
  finish(st);
  if (e || !want)
    return e;
  if ((e = query(s, S_RECEIPT_MEMBERS, &st, "sus", cid, id, sender)))
    return e;
  member_state *arr = NULL;
  size_t cap = 0;
  while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    e = push(s, (void **)&arr, n, &cap, sizeof *arr);
    if (!e) {
      arr[*n].state = sqlite3_column_int(st, 1);
      e = col_str(s, st, 0, &arr[(*n)++].id, NULL);
    }
  }
  if (!e && rc != SQLITE_DONE)
    e = sqerr(rc);
  finish(st);
  *states = arr;
  return e;
}

static chat_err receipts(void *self, const char *conversation_id,
                         uint64_t message_id, uint32_t *delivered,
                         uint32_t *read, chat_member_state_sink emit,
                         void *ctx, chat_op *op) {
  (void)op;
  store *s = self;
  uint32_t d = 0, r = 0;
  if (!s || !conversation_id)
    return CHAT_ERR_INVAL;
  if (!id_ok(message_id))
    return CHAT_ERR_NOT_FOUND;
  enter(s);
  member_state *states = NULL;
  size_t n = 0;
  chat_err e = begin(s, false);
  if (!e)
    e = end(s, receipts_tx(s, conversation_id, message_id, &d, &r,
                           emit != NULL, &states, &n));
  if (!e) {
    if (delivered)
      *delivered = d;
    if (read)
      *read = r;
    for (size_t i = 0; emit && i < n; i++)
      emit(ctx, states[i].id, (chat_receipt_state)states[i].state);
  }
  leave(s);
  return e;
}

static chat_err purge_receipts(void *self, int64_t before_ms, chat_op *op) {
  (void)op;
  store *s = self;
  if (!s)
    return CHAT_ERR_INVAL;
  sqlite3_stmt *st;
  chat_err e = query(s, S_PURGE, &st, "i", before_ms);
  return e ? e : run(st);
}

/* ------------------------------------------------------------------------
 * Shadow bans (PROTOCOL.md section 8). `chatd ban` writes them from
 * another process; the server polls shadow_bans(), which rereads the list
 * only when meta.bans_version moved. */

static chat_err shadow_ban_set(void *self, const char *user_id, bool banned,
                               int64_t now_ms, chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !user_id || !chat_id_valid(user_id, strlen(user_id)))
    return CHAT_ERR_INVAL;
  sqlite3_stmt *st;
  chat_err e = begin(s, true);
  if (e)
    return e;
  e = banned ? query(s, S_BAN_INSERT, &st, "si", user_id, now_ms)
             : query(s, S_BAN_DELETE, &st, "s", user_id);
  if (!e && !(e = run(st)) && sqlite3_changes(s->db) > 0 &&
      !(e = query(s, S_BANS_BUMP, &st, "")))
    e = run(st);
  return end(s, e);
}

static chat_err bans_tx(store *s, uint64_t known, uint64_t *version,
                        const char ***users, size_t *n) {
  sqlite3_stmt *st;
  bool found;
  int64_t v = 0;
  chat_err e = query(s, S_BANS_VERSION, &st, "");
  if (e || (e = one_int(st, &found, &v)))
    return e;
  *version = (uint64_t)v;
  if ((uint64_t)v == known)
    return CHAT_OK;
  if ((e = query(s, S_BANS_LIST, &st, "")))
    return e;
  size_t cap = 0;
  int rc = SQLITE_DONE;
  while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    e = push(s, (void **)users, n, &cap, sizeof **users);
    if (!e)
      e = col_str(s, st, 0, &(*users)[(*n)++], NULL);
  }
  if (!e && rc != SQLITE_DONE)
    e = sqerr(rc);
  finish(st);
  return e;
}

static chat_err shadow_bans(void *self, uint64_t known_version,
                            uint64_t *version, chat_user_sink emit, void *ctx,
                            chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !version)
    return CHAT_ERR_INVAL;
  enter(s);
  const char **users = NULL;
  size_t n = 0;
  chat_err e = begin(s, false);
  if (!e)
    e = end(s, bans_tx(s, known_version, version, &users, &n));
  for (size_t i = 0; !e && emit && i < n; i++)
    emit(ctx, users[i]);
  leave(s);
  return e;
}

/* ------------------------------------------------------------------------
 * Receipt-aware push: per member, the lowest and highest ids pushed and
 * not read yet (push_lo, push_hi; 0 when none). Like marks, these commit
 * without an fsync of their own (see mark()). */

static bool relax(store *s) {
  return s->full && !exec_id(s, S_SYNC_NORMAL);
}

static void unrelax(store *s, bool relaxed) {
  if (relaxed)
    s->relaxed = exec_id(s, S_SYNC_FULL) != CHAT_OK;
}

static chat_err push_record(void *self, const char *conversation_id,
                            const char *user_id, uint64_t message_id,
                            chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !conversation_id || !user_id || !id_ok(message_id) ||
      message_id == 0)
    return CHAT_ERR_INVAL;
  bool relaxed = relax(s);
  sqlite3_stmt *st;
  chat_err e = begin(s, true);
  if (!e) {
    e = query(s, S_PUSH_RECORD, &st, "ssu", conversation_id, user_id,
              message_id);
    e = end(s, e ? e : run(st));
  }
  unrelax(s, relaxed);
  return e;
}

static chat_err push_read_tx(store *s, const char *cid, const char *uid,
                             uint64_t read, uint64_t *clear) {
  sqlite3_stmt *st;
  chat_err e = query(s, S_PUSH_ROW, &st, "ss", cid, uid);
  if (e)
    return e;
  int rc = sqlite3_step(st);
  int64_t lo = 0, hi = 0;
  if (rc == SQLITE_ROW) {
    lo = sqlite3_column_int64(st, 0);
    hi = sqlite3_column_int64(st, 1);
  }
  finish(st);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return sqerr(rc);
  if (lo <= 0 || read < (uint64_t)lo)
    return CHAT_OK;
  *clear = read;
  /* What is left uncleared lies above the mark (if anything does). */
  if (read >= (uint64_t)hi)
    lo = hi = 0;
  else
    lo = (int64_t)read + 1;
  if ((e = query(s, S_PUSH_SET, &st, "ssii", cid, uid, lo, hi)))
    return e;
  return run(st);
}

static chat_err push_read(void *self, const char *conversation_id,
                          const char *user_id, uint64_t read_up_to,
                          uint64_t *clear_up_to, chat_op *op) {
  (void)op;
  store *s = self;
  if (clear_up_to)
    *clear_up_to = 0;
  if (!s || !conversation_id || !user_id || !clear_up_to)
    return CHAT_ERR_INVAL;
  if (!id_ok(read_up_to) || read_up_to == 0)
    return CHAT_OK;
  bool relaxed = relax(s);
  chat_err e = begin(s, true);
  if (!e)
    e = end(s, push_read_tx(s, conversation_id, user_id, read_up_to,
                            clear_up_to));
  unrelax(s, relaxed);
  if (e)
    *clear_up_to = 0;
  return e;
}

/* ------------------------------------------------------------------------
 * Devices and media */

static chat_err device_register(void *self, const char *user_id,
                                const char *device_id, const char *platform,
                                const char *push_token, int64_t now_ms,
                                chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !user_id || !device_id)
    return CHAT_ERR_INVAL;
  sqlite3_stmt *st;
  chat_err e = query(s, S_DEVICE_UPSERT, &st, "ssssi", user_id, device_id,
                     platform, push_token, now_ms);
  return e ? e : run(st);
}

typedef struct push_row {
  const char *device, *platform, *token;
} push_row;

static chat_err push_targets(void *self, const char *user_id,
                             chat_push_target_sink emit, void *ctx,
                             chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !user_id)
    return CHAT_ERR_INVAL;
  enter(s);
  sqlite3_stmt *st;
  push_row *rows = NULL;
  size_t n = 0, cap = 0;
  int rc = SQLITE_DONE;
  chat_err e = query(s, S_PUSH_TARGETS, &st, "s", user_id);
  if (!e) {
    while (!e && (rc = sqlite3_step(st)) == SQLITE_ROW) {
      e = push(s, (void **)&rows, &n, &cap, sizeof *rows);
      if (e)
        break;
      push_row *r = &rows[n++];
      if (!(e = col_str(s, st, 0, &r->device, NULL)) &&
          !(e = col_str(s, st, 1, &r->platform, NULL)))
        e = col_str(s, st, 2, &r->token, NULL);
    }
    if (!e && rc != SQLITE_DONE)
      e = sqerr(rc);
    finish(st);
  }
  for (size_t i = 0; !e && emit && i < n; i++)
    emit(ctx, rows[i].device, rows[i].platform, rows[i].token);
  leave(s);
  return e;
}

static chat_err media_put(void *self, const char *media_id,
                          const char *owner_id, const char *content_type,
                          const void *data, size_t len, int64_t now_ms,
                          chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !media_id || !owner_id || (len && !data))
    return CHAT_ERR_INVAL;
  sqlite3_stmt *st;
  /* The primary key turns an existing id into CHAT_ERR_CONFLICT. */
  chat_err e = query(s, S_MEDIA_PUT, &st, "sssbi", media_id, owner_id,
                     content_type, data, len, now_ms);
  return e ? e : run(st);
}

static chat_err media_get(void *self, const char *media_id,
                          const char *reader, chat_media_sink emit,
                          void *ctx, chat_op *op) {
  (void)op;
  store *s = self;
  if (!s || !media_id)
    return CHAT_ERR_INVAL;
  enter(s);
  sqlite3_stmt *st;
  const char *type = NULL, *data = NULL;
  size_t len = 0;
  chat_err e = query(s, S_MEDIA_GET, &st, "ss", media_id, reader);
  if (!e) {
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_int(st, 0) == 0)
      e = CHAT_ERR_DENIED;
    else if (rc == SQLITE_ROW && !emit)
      e = CHAT_OK; /* a check only: the blob is never read */
    else if (rc == SQLITE_ROW && !(e = col_str(s, st, 1, &type, NULL)))
      e = col_str(s, st, 2, &data, &len);
    else if (rc != SQLITE_ROW)
      e = rc == SQLITE_DONE ? CHAT_ERR_NOT_FOUND : sqerr(rc);
    finish(st);
  }
  if (!e && emit)
    emit(ctx, type, data ? data : "", len);
  leave(s);
  return e;
}

/* ------------------------------------------------------------------------
 * Open, migrate, destroy */

static void destroy(void *self) {
  store *s = self;
  if (!s)
    return;
  for (int i = 0; i < S_COUNT; i++)
    sqlite3_finalize(s->stmt[i]);
  sqlite3_close_v2(s->db);
  chat__arena_free(&s->scratch);
  chat_allocator a = s->alloc;
  chat__free(&a, s);
}

/* The single integer a one-row PRAGMA returns, or its text in @p text. */
static chat_err pragma(sqlite3 *db, const char *sql, int64_t *num,
                       char *text, size_t text_len) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK)
    return sqerr(rc);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    if (num)
      *num = sqlite3_column_int64(st, 0);
    if (text) {
      const unsigned char *t = sqlite3_column_text(st, 0);
      snprintf(text, text_len, "%s", t ? (const char *)t : "");
    }
  }
  sqlite3_finalize(st);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? CHAT_OK : sqerr(rc);
}

static chat_err exec(sqlite3 *db, const char *sql) {
  return sqerr(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

/* Bring the schema to SCHEMA_VERSION. The version is read again inside
 * the write transaction, so two processes opening a new file at once do
 * not both create it. */
static chat_err migrate(sqlite3 *db, int64_t v) {
  chat_err e;
  if (v == SCHEMA_VERSION)
    return CHAT_OK;
  if ((e = exec(db, "BEGIN IMMEDIATE")))
    return e;
  e = pragma(db, "PRAGMA user_version", &v, NULL, 0);
  if (!e && v > SCHEMA_VERSION)
    e = CHAT_ERR_MODULE;
  if (!e && v == 0)
    e = exec(db, schema_v1);
  if (!e && v < 2)
    e = exec(db, migrate_1_to_2);
  /* Future versions: if (!e && v < 3) e = exec(db, migrate_2_to_3); */
  if (!e && v < SCHEMA_VERSION)
    e = exec(db, "PRAGMA user_version = 2");
  if (!e)
    e = exec(db, "COMMIT");
  if (e && !sqlite3_get_autocommit(db))
    (void)exec(db, "ROLLBACK");
  return e;
}

static chat_err configure(sqlite3 *db, const chat_sqlite_options *o) {
  sqlite3_extended_result_codes(db, 1);
  int rc = sqlite3_busy_timeout(db, (int)(o->busy_timeout_ms > INT32_MAX
                                              ? INT32_MAX
                                              : o->busy_timeout_ms));
  if (rc != SQLITE_OK)
    return sqerr(rc);
  /* A schema from a newer libchat is refused before anything, the
   * journal mode included, is changed in the file. */
  int64_t v = 0;
  chat_err e = pragma(db, "PRAGMA user_version", &v, NULL, 0);
  if (!e && (v > SCHEMA_VERSION || v < 0))
    e = CHAT_ERR_MODULE;
  if (e)
    return e;
  char mode[16];
  e = pragma(db, "PRAGMA journal_mode = WAL", NULL, mode, sizeof mode);
  /* A private in-memory database stays in "memory" mode. */
  if (!e && strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
    e = CHAT_ERR_MODULE;
  if (!e)
    e = exec(db, o->sync == CHAT_SQLITE_SYNC_NORMAL
                     ? "PRAGMA synchronous = NORMAL"
                     : "PRAGMA synchronous = FULL");
  /* A deleted message's body is erased, not hidden (PROTOCOL.md section
   * 8): SQLite then overwrites freed content with zeros instead of leaving
   * it in free space. */
  if (!e)
    e = exec(db, "PRAGMA secure_delete = ON");
  return e ? e : migrate(db, v);
}

chat_err chat_sqlite_storage_open(chat_storage_ops *out, const char *path,
                                  const chat_sqlite_options *options,
                                  const chat_allocator *alloc,
                                  chat_errbuf *err) {
  if (!out || !path)
    return chat__errbuf_set(err, CHAT_ERR_INVAL, "%s: NULL",
                            !out ? "out" : "path");
  memset(out, 0, sizeof *out);
  chat_sqlite_options o = {CHAT_SQLITE_OPTIONS_V1, CHAT_SQLITE_SYNC_FULL,
                           DEFAULT_BUSY_MS};
  if (options) {
    if (!chat__version_ok(options->version, CHAT_SQLITE_OPTIONS_V1))
      return chat__version_refused(err, "options", options->version,
                                   CHAT_SQLITE_OPTIONS_V1);
    if (options->sync != CHAT_SQLITE_SYNC_FULL &&
        options->sync != CHAT_SQLITE_SYNC_NORMAL)
      return chat__errbuf_set(err, CHAT_ERR_INVAL,
                              "options.sync: %d is not FULL (0) or NORMAL "
                              "(1)",
                              (int)options->sync);
    o.sync = options->sync;
    if (options->busy_timeout_ms)
      o.busy_timeout_ms = options->busy_timeout_ms;
  }
  chat_allocator a;
  chat_err e = chat__allocator_init(&a, alloc);
  if (e)
    return chat__errbuf_set(err, e,
                            "alloc: alloc, resize and release must all be "
                            "set");
  store *s = chat__calloc(&a, 1, sizeof *s);
  if (!s)
    return chat__errbuf_set(err, CHAT_ERR_NOMEM, "out of memory");
  s->alloc = a;
  chat__arena_init(&s->scratch, &s->alloc);
  /* One connection used by one thread at a time (docs/threading.md). */
  int rc = sqlite3_open_v2(path, &s->db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                               SQLITE_OPEN_NOMUTEX,
                           NULL);
  e = rc == SQLITE_OK ? CHAT_OK : rc == SQLITE_NOMEM ? CHAT_ERR_NOMEM
                                                     : CHAT_ERR_MODULE;
  if (e)
    chat__errbuf_set(err, e, "%s: SQLite cannot open it: %s", path,
                     s->db ? sqlite3_errmsg(s->db) : "out of memory");
  if (!e) {
    e = configure(s->db, &o);
    if (e)
      chat__errbuf_set(err, e,
                       "%s: cannot set up or migrate the database (%s%s)",
                       path, sqlite3_errmsg(s->db),
                       e == CHAT_ERR_MODULE ? "; a newer schema?" : "");
  }
  if (e) {
    destroy(s);
    return e;
  }
  s->full = o.sync == CHAT_SQLITE_SYNC_FULL;
  out->version = CHAT_STORAGE_OPS_V1;
  out->self = s;
  out->conversation_get = conversation_get;
  out->conversation_create = conversation_create;
  out->member_add = member_add;
  out->member_remove = member_remove;
  out->conversations_of = conversations_of;
  out->append = append;
  out->messages = messages;
  out->max_message_id = max_message_id;
  out->mark = mark;
  out->receipts = receipts;
  out->purge_receipts = purge_receipts;
  out->device_register = device_register;
  out->push_targets = push_targets;
  out->media_put = media_put;
  out->media_get = media_get;
  out->destroy = destroy;
  out->member_change = member_change;
  out->messages_as = messages_as;
  out->shadow_ban_set = shadow_ban_set;
  out->shadow_bans = shadow_bans;
  out->push_record = push_record;
  out->push_read = push_read;
  return CHAT_OK;
}

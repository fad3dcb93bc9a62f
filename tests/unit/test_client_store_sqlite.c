/* The SQLite client store beyond the conformance suite
 * (lib/backends/sqlite/client_store.c): statements are compiled once and
 * reused, a nested walk compiles its own and leaves the cached one alone,
 * the store survives reopening, and opening refuses with a reason. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

#include <chat/sqlite.h>

#include "backends/sqlite/client_store_internal.h"
#include "client_harness.h"

static ch_dir dir;
static chat_client_store_ops S;

static void setup(void) {
  ch_dir_make(&dir);
  cr_assert_eq(chat_sqlite_client_store_open(&S, dir.path, NULL, NULL),
               CHAT_OK);
}

static void teardown(void) {
  if (S.destroy)
    S.destroy(S.self);
  ch_dir_remove(&dir);
}

TestSuite(sqlite_store, .init = setup, .fini = teardown);

static void put(uint64_t id) {
  chat_message m = {.message_id = id, .conversation_id = "c",
                    .sender_id = "bob", .body = {"hi", 2}, .server_ts = 1};
  bool ins;
  cr_assert_eq(S.put_message(S.self, &m, false, &ins), CHAT_OK);
}

static void count(void *ctx, const chat_message *m, bool own,
                  chat_receipt_state st) {
  (void)m, (void)own, (void)st;
  (*(int *)ctx)++;
}

static uint64_t walk_apply_target;

static void apply_inside(void *ctx, const chat_message *m, bool own,
                         chat_receipt_state st) {
  count(ctx, m, own, st);
  if (*(int *)ctx == 1) {
    bool changed;
    cr_assert_eq(S.apply_changes(S.self, "c", walk_apply_target, &changed),
                 CHAT_OK);
    cr_assert(changed);
  }
}

Test(sqlite_store, statements_are_compiled_once) {
  uint64_t p0 = chat__sqlite_client_store_prepares(S.self);
  put(1);
  int n = 0;
  cr_assert_eq(S.each_message(S.self, "c", 0, 0, count, &n), CHAT_OK);
  uint64_t p1 = chat__sqlite_client_store_prepares(S.self);
  cr_assert_eq(p1 - p0, 2, "one statement per kind used");
  for (uint64_t id = 2; id <= 500; id++) {
    put(id);
    uint64_t ls;
    cr_assert_eq(S.set_last_seen(S.self, "c", id), CHAT_OK);
    cr_assert_eq(S.get_last_seen(S.self, "c", &ls), CHAT_OK);
    cr_assert_eq(ls, id);
  }
  n = 0;
  cr_assert_eq(S.each_message(S.self, "c", 0, 1000, count, &n), CHAT_OK);
  cr_assert_eq(n, 500);
  cr_assert_eq(chat__sqlite_client_store_prepares(S.self), p1 + 2,
               "1,500 calls more, two new kinds: two more compiles");
}

static void nested(void *ctx, const chat_message *m, bool own,
                   chat_receipt_state st) {
  (void)own, (void)st;
  int *n = ctx;
  (*n)++;
  uint64_t id = m->message_id;
  int inner = 0;
  cr_assert_eq(S.each_message(S.self, "c", 0, 0, count, &inner), CHAT_OK);
  cr_assert_eq(inner, 3);
  cr_assert_eq(m->message_id, id);
}

Test(sqlite_store, a_nested_walk_leaves_the_cached_statement_alone) {
  put(1);
  put(2);
  put(3);
  int n = 0;
  cr_assert_eq(S.each_message(S.self, "c", 0, 0, count, &n), CHAT_OK);
  uint64_t p0 = chat__sqlite_client_store_prepares(S.self);
  n = 0;
  cr_assert_eq(S.each_message(S.self, "c", 0, 0, nested, &n), CHAT_OK);
  cr_assert_eq(n, 3, "the outer walk saw every row");
  cr_assert_eq(chat__sqlite_client_store_prepares(S.self), p0 + 3,
               "each nested walk compiled its own");
  /* And the cached one is free again. */
  n = 0;
  cr_assert_eq(S.each_message(S.self, "c", 0, 0, count, &n), CHAT_OK);
  cr_assert_eq(n, 3);
  cr_assert_eq(chat__sqlite_client_store_prepares(S.self), p0 + 3);
}

Test(sqlite_store, survives_reopening) {
  put(7);
  cr_assert_eq(S.set_last_seen(S.self, "c", 7), CHAT_OK);
  chat_client_outbox_entry e = {.client_msg_id = "m1",
                                .conversation_id = "c",
                                .body = {"x", 1}};
  cr_assert_eq(S.outbox_add(S.self, &e), CHAT_OK);
  S.destroy(S.self);
  cr_assert_eq(chat_sqlite_client_store_open(&S, dir.path, NULL, NULL),
               CHAT_OK);
  uint64_t ls;
  cr_assert_eq(S.get_last_seen(S.self, "c", &ls), CHAT_OK);
  cr_assert_eq(ls, 7);
  int n = 0;
  cr_assert_eq(S.each_message(S.self, "c", 0, 0, count, &n), CHAT_OK);
  cr_assert_eq(n, 1);
}

Test(sqlite_store, open_refuses_with_a_reason) {
  chat_client_store_ops o;
  chat_errbuf err;
  memset(&o, 0x5a, sizeof o);
  cr_assert_eq(chat_sqlite_client_store_open(&o, NULL, NULL, &err),
               CHAT_ERR_INVAL);
  cr_assert_str_eq(err.msg, "path: required");
  cr_assert_null(o.self, "zeroed");
  cr_assert_eq(chat_sqlite_client_store_open(NULL, "x", NULL, &err),
               CHAT_ERR_INVAL);
  /* A directory is not a database. */
  cr_assert_eq(chat_sqlite_client_store_open(&o, dir.dir, NULL, &err),
               CHAT_ERR_MODULE);
  cr_assert(strstr(err.msg, dir.dir), "%s", err.msg);
  cr_assert_null(o.put_message);
  /* A file from a newer libchat is left alone. */
  S.destroy(S.self);
  S.destroy = NULL;
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(dir.path, &db), SQLITE_OK);
  cr_assert_eq(sqlite3_exec(db, "PRAGMA user_version = 9", NULL, NULL, NULL),
               SQLITE_OK);
  sqlite3_close(db);
  cr_assert_eq(chat_sqlite_client_store_open(&o, dir.path, NULL, &err),
               CHAT_ERR_MODULE);
  cr_assert(strstr(err.msg, "schema 9"), "%s", err.msg);
}

static void one_box(void *ctx, const chat_client_outbox_entry_v2 *e) {
  struct {
    int n;
    chat_client_outbox_kind kind;
    uint64_t target;
  } *o = ctx;
  o->n++;
  o->kind = e->kind;
  o->target = e->target_id;
}

/* A store file from before section 8 (schema 1) is migrated in place: its
 * messages keep everything and read back with the new fields at their
 * defaults. */
Test(sqlite_store, schema_1_files_are_migrated) {
  S.destroy(S.self);
  S.destroy = NULL;
  ch_dir_remove(&dir);
  ch_dir_make(&dir);
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(dir.path, &db), SQLITE_OK);
  const char *v1 =
      "CREATE TABLE messages(conversation_id TEXT NOT NULL, message_id "
      "INTEGER NOT NULL, sender_id TEXT NOT NULL, client_msg_id TEXT, body "
      "BLOB NOT NULL, body_type INTEGER NOT NULL, reply_to INTEGER, "
      "server_ts INTEGER NOT NULL, own INTEGER NOT NULL, state INTEGER NOT "
      "NULL DEFAULT 0, PRIMARY KEY(conversation_id, message_id)) WITHOUT "
      "ROWID;"
      "CREATE TABLE last_seen(conversation_id TEXT PRIMARY KEY, message_id "
      "INTEGER NOT NULL) WITHOUT ROWID;"
      "CREATE TABLE outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, "
      "client_msg_id TEXT NOT NULL UNIQUE, conversation_id TEXT NOT NULL, "
      "body BLOB NOT NULL);"
      "CREATE TABLE marks(conversation_id TEXT NOT NULL, kind INTEGER NOT "
      "NULL, want INTEGER NOT NULL, sent INTEGER NOT NULL, PRIMARY "
      "KEY(conversation_id, kind)) WITHOUT ROWID;"
      "CREATE TABLE conversations(conversation_id TEXT PRIMARY KEY, type "
      "INTEGER NOT NULL, name TEXT, members TEXT NOT NULL, n_members INTEGER "
      "NOT NULL, unread_count INTEGER NOT NULL, last_read INTEGER, activity "
      "INTEGER NOT NULL) WITHOUT ROWID;"
      "INSERT INTO messages VALUES('c', 4, 'bob', 'k', 'old', 0, NULL, 9, 1, "
      "2);"
      "INSERT INTO outbox(client_msg_id, conversation_id, body) VALUES("
      "'q1', 'c', 'queued before the upgrade');"
      "PRAGMA user_version = 1;";
  cr_assert_eq(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  cr_assert_eq(chat_sqlite_client_store_open(&S, dir.path, NULL, NULL),
               CHAT_OK);
  int n = 0;
  cr_assert_eq(S.each_message(S.self, "c", 0, 0, count, &n), CHAT_OK);
  cr_assert_eq(n, 1);
  chat_message m = {.message_id = 5, .conversation_id = "c",
                    .sender_id = "bot", .body = {"", 0}, .server_ts = 1,
                    .sender_kind = CHAT_SENDER_BOT, .deleted = true};
  bool ins;
  cr_assert_eq(S.put_message(S.self, &m, false, &ins), CHAT_OK);
  cr_assert(ins);
  /* A send queued before the upgrade is a send in the V2 outbox. */
  struct {
    int n;
    chat_client_outbox_kind kind;
    uint64_t target;
  } ob = {0, CHAT_CLIENT_OUTBOX_DELETE, 99};
  cr_assert_eq(S.each_outbox_v2(S.self, one_box, &ob), CHAT_OK);
  cr_assert_eq(ob.n, 1);
  cr_assert_eq(ob.kind, CHAT_CLIENT_OUTBOX_SEND);
  cr_assert_eq(ob.target, 0);
  S.destroy(S.self);
  cr_assert_eq(sqlite3_open(dir.path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL),
               SQLITE_OK);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  cr_assert_eq(sqlite3_column_int(st, 0), 3);
  sqlite3_finalize(st);
  sqlite3_close(db);
  cr_assert_eq(chat_sqlite_client_store_open(&S, dir.path, NULL, NULL),
               CHAT_OK);
}

/* Whether `needle` occurs anywhere in the file at path (absent: no). */
static bool file_holds(const char *path, const char *needle) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return false;
  size_t n = strlen(needle), have = 0, cap = 1 << 16;
  char *buf = malloc(cap);
  cr_assert_not_null(buf);
  size_t got;
  while ((got = fread(buf + have, 1, cap - have, f)) > 0) {
    have += got;
    if (have == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      cr_assert_not_null(buf);
    }
  }
  fclose(f);
  bool found = false;
  for (size_t i = 0; !found && i + n <= have; i++)
    found = memcmp(buf + i, needle, n) == 0;
  free(buf);
  return found;
}

static bool store_files_hold(const char *needle) {
  char p[200];
  bool any = file_holds(dir.path, needle);
  snprintf(p, sizeof p, "%s-wal", dir.path);
  any = any || file_holds(p, needle);
  snprintf(p, sizeof p, "%s-journal", dir.path);
  return any || file_holds(p, needle);
}

/* PROTOCOL.md section 8: a deleted body is erased from the store, not
 * hidden. The bytes of the message and of its edits are gone from the
 * database file and its WAL, also when they had spread over overflow
 * pages, and also when the delete was applied from inside a walk. */
Test(sqlite_store, a_deleted_body_leaves_no_bytes_in_the_files) {
  static char big[6000];
  for (size_t i = 0; i + 12 <= sizeof big - 1; i += 12)
    memcpy(big + i, "BIGSECRET-42", 12);
  chat_message t = {.message_id = 10, .conversation_id = "c",
                    .sender_id = "bob", .body = {"SMALLSECRET-7", 13},
                    .server_ts = 1};
  chat_message t2 = {.message_id = 20, .conversation_id = "c",
                     .sender_id = "bob", .body = {big, strlen(big)},
                     .server_ts = 2};
  chat_message e = {.message_id = 11, .conversation_id = "c",
                    .sender_id = "bob", .body = {"EDITSECRET-9", 12},
                    .server_ts = 3, .body_type = CHAT_BODY_EDIT,
                    .has_target_id = true, .target_id = 10};
  bool ins, changed;
  cr_assert_eq(S.put_message(S.self, &t, false, &ins), CHAT_OK);
  cr_assert_eq(S.put_message(S.self, &t2, false, &ins), CHAT_OK);
  cr_assert_eq(S.put_message(S.self, &e, false, &ins), CHAT_OK);
  cr_assert_eq(S.apply_changes(S.self, "c", 10, &changed), CHAT_OK);
  cr_assert(changed);
  for (int i = 0; i < 50; i++)
    put(100 + (uint64_t)i); /* more pages, more WAL frames */
  /* Both secrets are on disk now (WAL or main file). */
  cr_assert(store_files_hold("EDITSECRET-9"));
  cr_assert(store_files_hold("BIGSECRET-42"));
  uint64_t cp = chat__sqlite_client_store_checkpoints(S.self);

  chat_message d = {.message_id = 12, .conversation_id = "c",
                    .sender_id = "alice", .body = {"", 0}, .server_ts = 4,
                    .body_type = CHAT_BODY_DELETE, .has_target_id = true,
                    .target_id = 10};
  cr_assert_eq(S.put_message(S.self, &d, false, &ins), CHAT_OK);
  cr_assert_eq(S.apply_changes(S.self, "c", 10, &changed), CHAT_OK);
  cr_assert(changed);
  cr_assert_eq(chat__sqlite_client_store_checkpoints(S.self), cp + 1);
  cr_assert_not(store_files_hold("SMALLSECRET-7"));
  cr_assert_not(store_files_hold("EDITSECRET-9"));

  /* The big one is deleted from inside a walk: the WAL is truncated once
   * the walk is over. */
  chat_message d2 = d;
  d2.message_id = 21;
  d2.target_id = 20;
  cr_assert_eq(S.put_message(S.self, &d2, false, &ins), CHAT_OK);
  walk_apply_target = 20;
  int n = 0;
  cr_assert_eq(S.each_message(S.self, "c", 0, 3, apply_inside, &n), CHAT_OK);
  cr_assert_eq(n, 3);
  cr_assert_eq(chat__sqlite_client_store_checkpoints(S.self), cp + 2);
  cr_assert_not(store_files_hold("BIGSECRET-42"));
  /* Still a working store with everything else in it. */
  S.destroy(S.self);
  cr_assert_eq(chat_sqlite_client_store_open(&S, dir.path, NULL, NULL),
               CHAT_OK);
  n = 0;
  cr_assert_eq(S.each_message(S.self, "c", 0, 1000, count, &n), CHAT_OK);
  cr_assert_eq(n, 55);
}

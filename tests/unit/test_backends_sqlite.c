/* The SQLite store (lib/backends/sqlite/store.c) against the storage
 * contract of include/chat/modules.h. Most tests use a private ":memory:"
 * database; durability, migration and crash tests use files in a fresh
 * directory under /tmp, and read the file with SQLite directly where the
 * rule is about what is on disk. */
#include <criterion/criterion.h>

#include <chat/modules.h>
#include <chat/sqlite.h>
#include <errno.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fail_alloc.h"

/* ------------------------------------------------------------------------
 * Fixtures */

static char dir[64];
static char db_path[128];

static void make_dir(void) {
  snprintf(dir, sizeof dir, "/tmp/chat-sqlite-XXXXXX");
  cr_assert_not_null(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
  snprintf(db_path, sizeof db_path, "%s/chat.db", dir);
}

static void remove_dir(void) {
  static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
  char p[160];
  for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
    snprintf(p, sizeof p, "%s%s", db_path, suffix[i]);
    unlink(p);
  }
  rmdir(dir);
}

TestSuite(sqlite_file, .init = make_dir, .fini = remove_dir);

static chat_storage_ops open_path(const char *path) {
  chat_storage_ops ops;
  chat_err e = chat_sqlite_storage_open(&ops, path, NULL, NULL, NULL);
  cr_assert_eq(e, CHAT_OK, "open %s: %s", path, chat_err_name(e));
  return ops;
}

static chat_storage_ops open_mem(void) {
  return open_path(":memory:");
}

static void close_ops(chat_storage_ops *ops) {
  ops->destroy(ops->self);
}

/* What SQLite itself says about the file: one integer or text result. */
static int64_t file_int(const char *sql) {
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK,
               "%s: %s", sql, sqlite3_errmsg(db));
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW, "%s", sql);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* ------------------------------------------------------------------------
 * Capturing sinks */

#define MAX_CAP 64
#define MAX_MEMBERS 16

typedef struct conv_view {
  char id[CHAT_ID_BUF];
  int type;
  bool has_name;
  char name[64];
  size_t name_len;
  size_t n_members;
  char members[MAX_MEMBERS][CHAT_ID_BUF];
  bool has_last;
  uint64_t last_id;
  char last_body[64];
  size_t last_body_len;
  size_t last_n_media;
  char last_media[4][CHAT_ID_BUF];
  char last_sender[CHAT_ID_BUF];
  bool last_has_cmid;
  char last_cmid[CHAT_ID_BUF];
  int64_t last_ts;
  int last_body_type;
  bool last_has_reply;
  uint64_t last_reply_to;
  uint32_t unread;
  bool has_last_read;
  uint64_t last_read;
  size_t n_admins;
  char admins[MAX_MEMBERS][CHAT_ID_BUF];
  bool last_deleted;
  bool last_has_edited;
  int64_t last_edited;
} conv_view;

typedef struct conv_cap {
  int n;
  conv_view v[MAX_CAP];
} conv_cap;

static void view_of(const chat_conversation *c, conv_view *v) {
  memset(v, 0, sizeof *v);
  snprintf(v->id, sizeof v->id, "%s", c->conversation_id);
  v->type = c->type;
  v->has_name = c->name.ptr != NULL;
  if (c->name.ptr) {
    cr_assert_lt(c->name.len, sizeof v->name);
    memcpy(v->name, c->name.ptr, c->name.len);
    v->name_len = c->name.len;
  }
  v->n_members = c->n_members;
  for (size_t i = 0; i < c->n_members && i < MAX_MEMBERS; i++)
    snprintf(v->members[i], CHAT_ID_BUF, "%s", c->members[i]);
  v->has_last = c->last_message != NULL;
  if (c->last_message) {
    const chat_message *m = c->last_message;
    v->last_id = m->message_id;
    cr_assert_lt(m->body.len, sizeof v->last_body);
    memcpy(v->last_body, m->body.ptr, m->body.len);
    v->last_body_len = m->body.len;
    v->last_n_media = m->n_media_refs;
    for (size_t i = 0; i < m->n_media_refs && i < 4; i++)
      snprintf(v->last_media[i], CHAT_ID_BUF, "%s", m->media_refs[i]);
    snprintf(v->last_sender, CHAT_ID_BUF, "%s", m->sender_id);
    v->last_has_cmid = m->client_msg_id != NULL;
    if (m->client_msg_id)
      snprintf(v->last_cmid, CHAT_ID_BUF, "%s", m->client_msg_id);
    v->last_ts = m->server_ts;
    v->last_body_type = m->body_type;
    v->last_has_reply = m->has_reply_to;
    v->last_reply_to = m->reply_to;
    v->last_deleted = m->deleted;
    v->last_has_edited = m->has_edited_ts;
    v->last_edited = m->edited_ts;
    cr_assert_str_eq(m->conversation_id, c->conversation_id);
  }
  v->n_admins = c->n_admins;
  for (size_t i = 0; i < c->n_admins && i < MAX_MEMBERS; i++)
    snprintf(v->admins[i], CHAT_ID_BUF, "%s", c->admins[i]);
  v->unread = c->unread_count;
  v->has_last_read = c->has_last_read;
  v->last_read = c->last_read_message_id;
}

static void on_conv(void *ctx, const chat_conversation *c) {
  conv_cap *cap = ctx;
  cr_assert_lt(cap->n, MAX_CAP);
  view_of(c, &cap->v[cap->n++]);
}

typedef struct msg_view {
  uint64_t id;
  char conv[CHAT_ID_BUF];
  char sender[CHAT_ID_BUF];
  bool has_cmid;
  char cmid[CHAT_ID_BUF];
  char body[64];
  size_t body_len;
  int64_t ts;
  bool has_reply;
  uint64_t reply_to;
  int body_type;
  size_t n_media;
  char media[4][CHAT_ID_BUF];
  int sender_kind;
  bool has_target;
  uint64_t target;
  bool has_edited;
  int64_t edited;
  bool deleted;
} msg_view;

typedef struct msg_cap {
  int n;
  msg_view v[MAX_CAP];
} msg_cap;

static void on_msg(void *ctx, const chat_message *m) {
  msg_cap *cap = ctx;
  cr_assert_lt(cap->n, MAX_CAP);
  msg_view *v = &cap->v[cap->n++];
  memset(v, 0, sizeof *v);
  v->id = m->message_id;
  snprintf(v->conv, sizeof v->conv, "%s", m->conversation_id);
  snprintf(v->sender, sizeof v->sender, "%s", m->sender_id);
  v->has_cmid = m->client_msg_id != NULL;
  if (m->client_msg_id)
    snprintf(v->cmid, sizeof v->cmid, "%s", m->client_msg_id);
  cr_assert_not_null(m->body.ptr);
  cr_assert_eq(m->body.ptr[m->body.len], '\0', "body is NUL-terminated");
  /* Long bodies are kept in part; body_len is the real length. */
  memcpy(v->body, m->body.ptr,
         m->body.len < sizeof v->body ? m->body.len : sizeof v->body);
  v->body_len = m->body.len;
  v->ts = m->server_ts;
  v->has_reply = m->has_reply_to;
  v->reply_to = m->reply_to;
  v->body_type = m->body_type;
  v->n_media = m->n_media_refs;
  for (size_t i = 0; i < m->n_media_refs && i < 4; i++)
    snprintf(v->media[i], CHAT_ID_BUF, "%s", m->media_refs[i]);
  v->sender_kind = m->sender_kind;
  v->has_target = m->has_target_id;
  v->target = m->target_id;
  v->has_edited = m->has_edited_ts;
  v->edited = m->edited_ts;
  v->deleted = m->deleted;
}

typedef struct upd_cap {
  int n;
  struct {
    char sender[CHAT_ID_BUF];
    uint64_t id;
    uint32_t delivered, read;
  } v[MAX_CAP];
} upd_cap;

static void on_upd(void *ctx, const chat_mark_update *u) {
  upd_cap *cap = ctx;
  cr_assert_lt(cap->n, MAX_CAP);
  snprintf(cap->v[cap->n].sender, CHAT_ID_BUF, "%s", u->sender_id);
  cap->v[cap->n].id = u->message_id;
  cap->v[cap->n].delivered = u->delivered;
  cap->v[cap->n].read = u->read;
  cap->n++;
}

typedef struct state_cap {
  int n;
  int count[3];
  struct {
    char member[CHAT_ID_BUF];
    int state;
  } v[MAX_CAP];
} state_cap;

static void on_state(void *ctx, const char *member,
                     chat_receipt_state state) {
  state_cap *cap = ctx;
  cr_assert(state == CHAT_RECEIPT_NONE || state == CHAT_RECEIPT_DELIVERED ||
            state == CHAT_RECEIPT_READ);
  cap->count[state]++;
  if (cap->n < MAX_CAP) {
    snprintf(cap->v[cap->n].member, CHAT_ID_BUF, "%s", member);
    cap->v[cap->n].state = (int)state;
  }
  cap->n++;
}

/* ------------------------------------------------------------------------
 * Helpers */

static chat_err create(chat_storage_ops *ops, const char *id,
                       chat_conversation_type type, const char *by,
                       const char *const *members, size_t n, int64_t now,
                       bool *existed, conv_cap *cap) {
  chat_conversation_new c = {0};
  c.conversation_id = id;
  c.type = type;
  c.created_by = by;
  c.members = members;
  c.n_members = n;
  c.now_ms = now;
  return ops->conversation_create(ops->self, &c, existed,
                                  cap ? on_conv : NULL, cap, NULL);
}

static void group(chat_storage_ops *ops, const char *id,
                  const char *const *members, size_t n) {
  bool existed;
  cr_assert_eq(create(ops, id, CHAT_CONVERSATION_GROUP, members[0], members,
                      n, 1000, &existed, NULL),
               CHAT_OK);
  cr_assert_not(existed);
}

static chat_msg_in msg(const char *conv, uint64_t id, const char *sender,
                       const char *cmid) {
  chat_msg_in m = {0};
  m.conversation_id = conv;
  m.message_id = id;
  m.server_ts = 1000000 + (int64_t)id;
  m.sender_id = sender;
  m.client_msg_id = cmid;
  m.body.ptr = "hi";
  m.body.len = 2;
  return m;
}

static chat_append_result put(chat_storage_ops *ops, const char *conv,
                              uint64_t id, const char *sender,
                              const char *cmid) {
  chat_msg_in m = msg(conv, id, sender, cmid);
  chat_append_result r;
  chat_err e = ops->append(ops->self, &m, 1, &r, NULL);
  cr_assert_eq(e, CHAT_OK, "append %llu: %s", (unsigned long long)id,
               chat_err_name(e));
  return r;
}

static conv_view get(chat_storage_ops *ops, const char *conv,
                     const char *viewer) {
  conv_cap cap = {0};
  chat_err e = ops->conversation_get(ops->self, conv, viewer, on_conv, &cap, NULL);
  cr_assert_eq(e, CHAT_OK, "get %s: %s", conv, chat_err_name(e));
  cr_assert_eq(cap.n, 1);
  return cap.v[0];
}

static bool mark_ex(chat_storage_ops *ops, const char *conv,
                    const char *member, chat_receipt_state state,
                    uint64_t up_to, bool grp, bool track, int64_t now,
                    upd_cap *cap) {
  chat_mark_in in = {0};
  in.conversation_id = conv;
  in.member_id = member;
  in.state = state;
  in.up_to = up_to;
  in.now_ms = now;
  in.group = grp;
  in.track_delivered = track;
  bool advanced = true;
  chat_err e = ops->mark(ops->self, &in, &advanced, cap ? on_upd : NULL, cap, NULL);
  cr_assert_eq(e, CHAT_OK, "mark: %s", chat_err_name(e));
  return advanced;
}

static bool mark(chat_storage_ops *ops, const char *conv, const char *member,
                 chat_receipt_state state, uint64_t up_to, bool grp,
                 upd_cap *cap) {
  return mark_ex(ops, conv, member, state, up_to, grp, true, 5000, cap);
}

static void counts(chat_storage_ops *ops, const char *conv, uint64_t id,
                   uint32_t want_delivered, uint32_t want_read) {
  uint32_t d = 99, r = 99;
  chat_err e = ops->receipts(ops->self, conv, id, &d, &r, NULL, NULL, NULL);
  cr_assert_eq(e, CHAT_OK, "receipts %llu: %s", (unsigned long long)id,
               chat_err_name(e));
  cr_assert_eq(d, want_delivered, "message %llu delivered %u, want %u",
               (unsigned long long)id, d, want_delivered);
  cr_assert_eq(r, want_read, "message %llu read %u, want %u",
               (unsigned long long)id, r, want_read);
}

static const char *const ab[] = {"alice", "bob"};

/* ------------------------------------------------------------------------
 * Open and schema */

Test(sqlite_file, migrates_empty_file_and_reopens) {
  FILE *f = fopen(db_path, "w"); /* an empty file is an empty database */
  cr_assert_not_null(f);
  fclose(f);
  chat_storage_ops ops = open_path(db_path);
  cr_assert_eq(ops.version, CHAT_STORAGE_OPS_V1);
  group(&ops, "g", ab, 2);
  put(&ops, "g", 7, "alice", "c1");
  close_ops(&ops);

  cr_assert_eq(file_int("PRAGMA user_version"), 2);
  cr_assert_eq(file_int("SELECT count(*) FROM sqlite_master"
                        " WHERE name = 'messages'"),
               1);
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);

  /* Reopening finds version 2 and migrates nothing; the data is there. */
  ops = open_path(db_path);
  conv_view v = get(&ops, "g", "bob");
  cr_assert(v.has_last);
  cr_assert_eq(v.last_id, 7);
  cr_assert_eq(v.n_members, 2);
  uint64_t max = 0;
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, 7);
  close_ops(&ops);
  cr_assert_eq(file_int("PRAGMA user_version"), 2);
}

Test(sqlite_file, refuses_newer_schema) {
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
  cr_assert_eq(sqlite3_exec(db, "CREATE TABLE future(x);"
                                "PRAGMA user_version = 3;",
                            NULL, NULL, NULL),
               SQLITE_OK);
  sqlite3_close(db);
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat_storage_ops ops;
  cr_assert_eq(chat_sqlite_storage_open(&ops, db_path, NULL, &fa.a, NULL),
               CHAT_ERR_MODULE);
  cr_assert_eq(fa.live, 0, "a failed open frees everything");
  cr_assert_eq(file_int("PRAGMA user_version"), 3, "the file is untouched");
  cr_assert_eq(file_int("SELECT count(*) FROM sqlite_master"), 1);
  /* Not even switched to WAL, which an older libchat has no business
   * deciding for a newer one's file. */
  cr_assert_eq(file_int("SELECT count(*) FROM pragma_journal_mode"
                        " WHERE journal_mode = 'delete'"),
               1);
}

Test(sqlite_file, refuses_a_file_that_is_not_a_database) {
  FILE *f = fopen(db_path, "w");
  cr_assert_not_null(f);
  for (int i = 0; i < 256; i++)
    fputs("this is not an SQLite database ", f);
  fclose(f);
  chat_storage_ops ops;
  cr_assert_eq(chat_sqlite_storage_open(&ops, db_path, NULL, NULL, NULL),
               CHAT_ERR_MODULE);
}

Test(sqlite, open_checks_arguments) {
  chat_storage_ops ops;
  chat_errbuf eb = {{0}};
  cr_assert_eq(chat_sqlite_storage_open(NULL, ":memory:", NULL, NULL, &eb),
               CHAT_ERR_INVAL);
  cr_assert_str_eq(eb.msg, "out: NULL");
  cr_assert_eq(chat_sqlite_storage_open(&ops, NULL, NULL, NULL, NULL),
               CHAT_ERR_INVAL);
  chat_sqlite_options o = {CHAT_SQLITE_OPTIONS_V1, (chat_sqlite_sync)7, 0};
  cr_assert_eq(chat_sqlite_storage_open(&ops, ":memory:", &o, NULL, &eb),
               CHAT_ERR_INVAL);
  cr_assert(strstr(eb.msg, "options.sync: 7"), "%s", eb.msg);
  chat_allocator half = {0};
  cr_assert_eq(chat_sqlite_storage_open(&ops, ":memory:", NULL, &half, &eb),
               CHAT_ERR_INVAL);
  cr_assert(strstr(eb.msg, "alloc:"), "%s", eb.msg);
  o.sync = CHAT_SQLITE_SYNC_NORMAL;
  o.busy_timeout_ms = 100;
  memset(&eb, 0, sizeof eb);
  cr_assert_eq(chat_sqlite_storage_open(&ops, ":memory:", &o, NULL, &eb),
               CHAT_OK);
  cr_assert_str_eq(eb.msg, "", "untouched on success");
  close_ops(&ops);
}

/* The one version rule (docs/abi.md) for chat_sqlite_options. */
Test(sqlite, options_version_rule) {
  chat_storage_ops ops;
  chat_errbuf eb;
  chat_sqlite_options o = {0, CHAT_SQLITE_SYNC_FULL, 0};
  cr_assert_eq(chat_sqlite_storage_open(&ops, ":memory:", &o, NULL, &eb),
               CHAT_ERR_INVAL);
  cr_assert_str_eq(eb.msg,
                   "options.version: 0 (set it from its CHAT_*_V macro)");
  o.version = CHAT_SQLITE_OPTIONS_V1 + 1;
  cr_assert_eq(chat_sqlite_storage_open(&ops, ":memory:", &o, NULL, &eb),
               CHAT_ERR_INVAL);
  cr_assert(strstr(eb.msg, "options.version: 2 is newer"), "%s", eb.msg);
  o.version = CHAT_SQLITE_OPTIONS_V1;
  cr_assert_eq(chat_sqlite_storage_open(&ops, ":memory:", &o, NULL, &eb),
               CHAT_OK);
  close_ops(&ops);
}

Test(sqlite_file, open_failure_names_the_path) {
  chat_storage_ops ops;
  chat_errbuf eb = {{0}};
  cr_assert_eq(chat_sqlite_storage_open(&ops, dir, NULL, NULL, &eb),
               CHAT_ERR_MODULE);
  cr_assert(strstr(eb.msg, dir), "%s", eb.msg);
}

Test(sqlite_file, directory_path_is_a_module_error) {
  chat_storage_ops ops;
  cr_assert_eq(chat_sqlite_storage_open(&ops, dir, NULL, NULL, NULL),
               CHAT_ERR_MODULE);
}

/* ------------------------------------------------------------------------
 * Conversations */

Test(sqlite, direct_pair_is_created_once_in_either_order) {
  chat_storage_ops ops = open_mem();
  conv_cap cap = {0};
  bool existed = true;
  cr_assert_eq(create(&ops, "d1", CHAT_CONVERSATION_DIRECT, "alice", ab, 2,
                      1000, &existed, &cap),
               CHAT_OK);
  cr_assert_not(existed);
  cr_assert_str_eq(cap.v[0].id, "d1");
  cr_assert_eq(cap.v[0].type, CHAT_CONVERSATION_DIRECT);

  const char *const ba[] = {"bob", "alice"};
  cr_assert_eq(create(&ops, "d2", CHAT_CONVERSATION_DIRECT, "bob", ba, 2,
                      2000, &existed, &cap),
               CHAT_OK);
  cr_assert(existed);
  cr_assert_eq(cap.n, 2);
  cr_assert_str_eq(cap.v[1].id, "d1", "the existing id, not the proposed");
  cr_assert_eq(ops.conversation_get(ops.self, "d2", NULL, on_conv, &cap, NULL),
               CHAT_ERR_NOT_FOUND);
  cr_assert_eq(cap.n, 2, "nothing emitted for an unknown conversation");

  /* A different pair is a different conversation. */
  const char *const ac[] = {"alice", "carol"};
  cr_assert_eq(create(&ops, "d3", CHAT_CONVERSATION_DIRECT, "alice", ac, 2,
                      3000, &existed, NULL),
               CHAT_OK);
  cr_assert_not(existed);
  /* A direct conversation needs two distinct members. */
  const char *const aa[] = {"alice", "alice"};
  cr_assert_eq(create(&ops, "d4", CHAT_CONVERSATION_DIRECT, "alice", aa, 2,
                      3000, &existed, NULL),
               CHAT_ERR_INVAL);
  cr_assert_eq(create(&ops, "d4", CHAT_CONVERSATION_DIRECT, "alice", ab, 1,
                      3000, &existed, NULL),
               CHAT_ERR_INVAL);
  close_ops(&ops);
}

Test(sqlite, existing_direct_is_emitted_as_seen_by_the_creator) {
  chat_storage_ops ops = open_mem();
  bool existed;
  cr_assert_eq(create(&ops, "d1", CHAT_CONVERSATION_DIRECT, "alice", ab, 2,
                      1000, &existed, NULL),
               CHAT_OK);
  put(&ops, "d1", 10, "alice", "a1");
  put(&ops, "d1", 11, "alice", "a2");
  conv_cap cap = {0};
  const char *const ba[] = {"bob", "alice"};
  cr_assert_eq(create(&ops, "dx", CHAT_CONVERSATION_DIRECT, "bob", ba, 2,
                      2000, &existed, &cap),
               CHAT_OK);
  cr_assert(existed);
  cr_assert_eq(cap.v[0].unread, 2, "bob's unread count");
  cr_assert_eq(cap.v[0].last_id, 11);
  close_ops(&ops);
}

Test(sqlite, proposed_id_that_exists_is_a_conflict) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g1", ab, 2);
  bool existed = true;
  const char *const cd[] = {"carol", "dave"};
  cr_assert_eq(create(&ops, "g1", CHAT_CONVERSATION_GROUP, "carol", cd, 2,
                      2000, &existed, NULL),
               CHAT_ERR_CONFLICT);
  cr_assert_not(existed);
  cr_assert_eq(create(&ops, "g1", CHAT_CONVERSATION_DIRECT, "carol", cd, 2,
                      2000, &existed, NULL),
               CHAT_ERR_CONFLICT);
  /* Nothing of the refused creations was kept. */
  conv_view v = get(&ops, "g1", "alice");
  cr_assert_eq(v.n_members, 2);
  cr_assert_str_eq(v.members[0], "alice");
  conv_cap cap = {0};
  char next[CHAT_CURSOR_BUF];
  cr_assert_eq(ops.conversations_of(ops.self, "carol", NULL, 10, on_conv,
                                    &cap, next, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 0);
  /* The direct pair was not recorded either: it can be created now. */
  cr_assert_eq(create(&ops, "d1", CHAT_CONVERSATION_DIRECT, "carol", cd, 2,
                      2000, &existed, NULL),
               CHAT_OK);
  cr_assert_not(existed);
  close_ops(&ops);
}

Test(sqlite, group_create_emits_all_members_in_join_order) {
  chat_storage_ops ops = open_mem();
  const char *const m[] = {"zed", "amy", "bob"};
  chat_conversation_new c = {0};
  c.conversation_id = "g1";
  c.type = CHAT_CONVERSATION_GROUP;
  c.name.ptr = "te\0am";
  c.name.len = 5;
  c.created_by = "zed";
  c.members = m;
  c.n_members = 3;
  c.now_ms = 1000;
  conv_cap cap = {0};
  bool existed = true;
  cr_assert_eq(ops.conversation_create(ops.self, &c, &existed, on_conv, &cap, NULL),
               CHAT_OK);
  cr_assert_not(existed);
  cr_assert_eq(cap.n, 1);
  conv_view v = cap.v[0];
  cr_assert_str_eq(v.id, "g1");
  cr_assert_eq(v.type, CHAT_CONVERSATION_GROUP);
  cr_assert(v.has_name);
  cr_assert_eq(v.name_len, 5);
  cr_assert_eq(memcmp(v.name, "te\0am", 5), 0);
  /* Same joined_at: ordered by user id. */
  cr_assert_eq(v.n_members, 3);
  cr_assert_str_eq(v.members[0], "amy");
  cr_assert_str_eq(v.members[1], "bob");
  cr_assert_str_eq(v.members[2], "zed");
  cr_assert_not(v.has_last);
  cr_assert_eq(v.unread, 0);
  cr_assert_not(v.has_last_read);

  /* A later member comes after them, whatever its id. */
  cr_assert_eq(ops.member_add(ops.self, "g1", "aaron", 2000, NULL), CHAT_OK);
  v = get(&ops, "g1", NULL);
  cr_assert_eq(v.n_members, 4);
  cr_assert_str_eq(v.members[3], "aaron");
  /* A nameless group has a NULL name. */
  group(&ops, "g2", ab, 2);
  cr_assert_not(get(&ops, "g2", NULL).has_name);
  close_ops(&ops);
}

Test(sqlite, member_add_is_idempotent_and_remove_needs_a_member) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  cr_assert_eq(ops.member_add(ops.self, "g", "carol", 2000, NULL), CHAT_OK);
  cr_assert_eq(ops.member_add(ops.self, "g", "carol", 3000, NULL), CHAT_OK);
  cr_assert_eq(ops.member_add(ops.self, "g", "alice", 3000, NULL), CHAT_OK);
  conv_view v = get(&ops, "g", NULL);
  cr_assert_eq(v.n_members, 3);
  cr_assert_str_eq(v.members[2], "carol");
  cr_assert_eq(ops.member_add(ops.self, "nope", "carol", 2000, NULL),
               CHAT_ERR_NOT_FOUND);

  /* Membership survives an idempotent add with its marks intact. */
  put(&ops, "g", 5, "alice", "m5");
  cr_assert(mark(&ops, "g", "carol", CHAT_RECEIPT_READ, 5, true, NULL));
  cr_assert_eq(ops.member_add(ops.self, "g", "carol", 4000, NULL), CHAT_OK);
  v = get(&ops, "g", "carol");
  cr_assert(v.has_last_read);
  cr_assert_eq(v.last_read, 5);

  cr_assert_eq(ops.member_remove(ops.self, "g", "carol", NULL), CHAT_OK);
  cr_assert_eq(ops.member_remove(ops.self, "g", "carol", NULL), CHAT_ERR_NOT_FOUND);
  cr_assert_eq(ops.member_remove(ops.self, "nope", "alice", NULL),
               CHAT_ERR_NOT_FOUND);
  v = get(&ops, "g", "carol");
  cr_assert_eq(v.n_members, 2);
  cr_assert_not(v.has_last_read, "a non-member viewer has no read mark");
  cr_assert_eq(v.unread, 0);
  close_ops(&ops);
}

Test(sqlite, conversations_of_pages_in_activity_order) {
  chat_storage_ops ops = open_mem();
  char ids[25][16];
  for (int i = 0; i < 25; i++) {
    snprintf(ids[i], sizeof ids[i], "c%02d", i);
    const char *const m[] = {"u", i % 2 ? "v" : "w"};
    chat_conversation_new c = {0};
    c.conversation_id = ids[i];
    c.type = CHAT_CONVERSATION_GROUP;
    c.created_by = "u";
    c.members = m;
    c.n_members = 2;
    /* Groups of three share a created_at, so the id breaks ties. */
    c.now_ms = 1000 + (i / 3) * 10;
    cr_assert_eq(ops.conversation_create(ops.self, &c, NULL, NULL, NULL, NULL),
                 CHAT_OK);
  }
  /* A conversation u is not in does not show up. */
  const char *const vw[] = {"v", "w"};
  group(&ops, "other", vw, 2);
  /* A message moves c03 to the front (last_activity = its server_ts). */
  put(&ops, "c03", 1, "v", "x");

  char cursor[CHAT_CURSOR_BUF] = "";
  conv_cap all = {0};
  int pages = 0;
  for (;;) {
    conv_cap cap = {0};
    char next[CHAT_CURSOR_BUF];
    memset(next, 'x', sizeof next);
    cr_assert_eq(ops.conversations_of(ops.self, "u", cursor, 10, on_conv,
                                      &cap, next, NULL),
                 CHAT_OK);
    pages++;
    cr_assert_leq(cap.n, 10);
    for (int i = 0; i < cap.n; i++)
      all.v[all.n++] = cap.v[i];
    if (next[0] == '\0')
      break;
    cr_assert_eq(cap.n, 10, "only the last page is short");
    cr_assert_lt(strlen(next), CHAT_CURSOR_BUF);
    strcpy(cursor, next);
    cr_assert_lt(pages, 5);
  }
  cr_assert_eq(pages, 3);
  cr_assert_eq(all.n, 25, "none missed");
  cr_assert_str_eq(all.v[0].id, "c03");
  cr_assert(all.v[0].has_last);
  cr_assert_eq(all.v[0].unread, 1, "as seen by u");
  /* The rest: created_at descending, then id descending; each id once. */
  int expect[24], k = 0;
  for (int g = 8; g >= 0; g--)
    for (int i = 2; i >= 0; i--)
      if (g * 3 + i < 25 && g * 3 + i != 3)
        expect[k++] = g * 3 + i;
  cr_assert_eq(k, 24);
  for (int i = 0; i < 24; i++)
    cr_assert_str_eq(all.v[i + 1].id, ids[expect[i]], "position %d", i + 1);
  for (int i = 0; i < 25; i++) {
    cr_assert_eq(all.v[i].n_members, 2);
    cr_assert_str_eq(all.v[i].members[0], "u");
  }

  /* A page that ends exactly at the end has no next cursor. */
  conv_cap cap = {0};
  char next[CHAT_CURSOR_BUF];
  cr_assert_eq(ops.conversations_of(ops.self, "u", "", 25, on_conv, &cap,
                                    next, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 25);
  cr_assert_str_eq(next, "");
  cr_assert_eq(ops.conversations_of(ops.self, "nobody", NULL, 10, on_conv,
                                    &cap, next, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 25);
  close_ops(&ops);
}

Test(sqlite, conversations_of_refuses_malformed_cursors) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  static const char *const bad[] = {
    "abc", "12", ":g", "12:", "012:g", "-0:g", "+1:g", " 1:g", "1:g h",
    "1:g\n", "99999999999999999999:g", "1:" /* empty id */,
    "1:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    conv_cap cap = {0};
    char next[CHAT_CURSOR_BUF] = "junk";
    cr_assert_eq(ops.conversations_of(ops.self, "alice", bad[i], 10, on_conv,
                                      &cap, next, NULL),
                 CHAT_ERR_INVAL, "cursor \"%s\"", bad[i]);
    cr_assert_eq(cap.n, 0);
    cr_assert_str_eq(next, "");
  }
  /* Well-formed cursors, including a negative activity, are accepted. */
  conv_cap cap = {0};
  char next[CHAT_CURSOR_BUF];
  cr_assert_eq(ops.conversations_of(ops.self, "alice", "-5:zz", 10, on_conv,
                                    &cap, next, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 0);
  cr_assert_eq(ops.conversations_of(ops.self, "alice", "1001:zz", 10,
                                    on_conv, &cap, next, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 1, "1000:g sorts after 1001:zz");
  close_ops(&ops);
}

/* ------------------------------------------------------------------------
 * The chat list is one statement per page
 *
 * A trace hook sees every statement the store's connection runs: it is
 * installed by sqlite3_auto_extension() on each connection opened while it
 * is registered, which is only the store's own. Plans are read on a second
 * connection of the test's to the same file. */

#define TRACE_KEEP 4

static struct {
  int tx;    /* BEGIN, COMMIT, ROLLBACK */
  int other; /* every other statement */
  char sql[TRACE_KEEP][4096]; /* the first others' text */
} traced;

static int on_trace(unsigned type, void *ctx, void *stmt, void *x) {
  (void)type;
  (void)ctx;
  (void)x;
  const char *sql = sqlite3_sql(stmt);
  if (strncmp(sql, "BEGIN", 5) == 0 || strcmp(sql, "COMMIT") == 0 ||
      strcmp(sql, "ROLLBACK") == 0) {
    traced.tx++;
    return 0;
  }
  if (traced.other < TRACE_KEEP) {
    size_t len = strlen(sql);
    cr_assert_lt(len, sizeof traced.sql[0]);
    memcpy(traced.sql[traced.other], sql, len + 1);
  }
  traced.other++;
  return 0;
}

static int trace_hook(sqlite3 *db, char **err,
                      const sqlite3_api_routines *api) {
  (void)err;
  (void)api;
  return sqlite3_trace_v2(db, SQLITE_TRACE_STMT, on_trace, NULL);
}

/* The store on db_path, tracing; NORMAL sync keeps the setup quick. */
static chat_storage_ops open_traced(void) {
  /* SQLite's documented way to pass an entry point of this shape. */
  void (*hook)(void) = (void (*)(void))trace_hook;
  cr_assert_eq(sqlite3_auto_extension(hook), SQLITE_OK);
  chat_sqlite_options o = {CHAT_SQLITE_OPTIONS_V1, CHAT_SQLITE_SYNC_NORMAL,
                           0};
  chat_storage_ops ops;
  chat_err e = chat_sqlite_storage_open(&ops, db_path, &o, NULL, NULL);
  sqlite3_cancel_auto_extension(hook);
  cr_assert_eq(e, CHAT_OK, "open: %s", chat_err_name(e));
  return ops;
}

static void trace_reset(void) {
  memset(&traced, 0, sizeof traced);
}

/* EXPLAIN QUERY PLAN of @p sql: one step's detail per line. */
static void query_plan(const char *sql, char *out, size_t len) {
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
  char *eqp = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
  cr_assert_not_null(eqp);
  sqlite3_stmt *st;
  cr_assert_eq(sqlite3_prepare_v2(db, eqp, -1, &st, NULL), SQLITE_OK,
               "%s: %s", sql, sqlite3_errmsg(db));
  size_t used = 0;
  out[0] = '\0';
  while (sqlite3_step(st) == SQLITE_ROW) {
    int n = snprintf(out + used, len - used, "%s\n",
                     (const char *)sqlite3_column_text(st, 3));
    cr_assert(n > 0 && (size_t)n < len - used, "plan too long");
    used += (size_t)n;
  }
  sqlite3_finalize(st);
  sqlite3_free(eqp);
  sqlite3_close(db);
}

/* The first SCAN in @p plan of anything but a result the statement builds
 * itself (a MATERIALIZE or CO-ROUTINE step): a full scan of a table or an
 * index. NULL when there is none. */
static const char *table_scan(const char *plan, char *line, size_t len) {
  char built[16][64];
  int n_built = 0;
  for (const char *p = plan; *p;) {
    const char *eol = strchr(p, '\n');
    size_t n = (size_t)(eol - p);
    cr_assert_lt(n, len);
    memcpy(line, p, n);
    line[n] = '\0';
    p = eol + 1;
    char name[64];
    if (sscanf(line, "MATERIALIZE %63s", name) == 1 ||
        sscanf(line, "CO-ROUTINE %63s", name) == 1) {
      cr_assert_lt(n_built, 16);
      snprintf(built[n_built++], sizeof built[0], "%s", name);
    } else if (sscanf(line, "SCAN %63s", name) == 1) {
      bool own = false;
      for (int i = 0; i < n_built; i++)
        own = own || strcmp(built[i], name) == 0;
      if (!own)
        return line;
    }
  }
  return NULL;
}

enum { CONVS = 300, PAGE = 200 };

/* Collects whole chat list pages (more than conv_cap holds). */
typedef struct conv_page {
  int n;
  conv_view *v;
} conv_page;

static void on_page(void *ctx, const chat_conversation *c) {
  conv_page *pg = ctx;
  cr_assert_lt(pg->n, CONVS);
  view_of(c, &pg->v[pg->n++]);
}

static void same_view(const conv_view *a, const conv_view *b) {
  cr_assert_str_eq(a->id, b->id);
  cr_assert_eq(a->type, b->type, "%s", a->id);
  cr_assert_eq(a->has_name, b->has_name, "%s", a->id);
  cr_assert_eq(a->name_len, b->name_len, "%s", a->id);
  cr_assert_eq(memcmp(a->name, b->name, a->name_len), 0, "%s", a->id);
  cr_assert_eq(a->n_members, b->n_members, "%s", a->id);
  for (size_t i = 0; i < a->n_members && i < MAX_MEMBERS; i++)
    cr_assert_str_eq(a->members[i], b->members[i], "%s member %zu", a->id,
                     i);
  cr_assert_eq(a->has_last, b->has_last, "%s", a->id);
  cr_assert_eq(a->last_id, b->last_id, "%s", a->id);
  cr_assert_eq(a->last_body_len, b->last_body_len, "%s", a->id);
  cr_assert_eq(memcmp(a->last_body, b->last_body, a->last_body_len), 0);
  cr_assert_eq(a->last_n_media, b->last_n_media, "%s", a->id);
  for (size_t i = 0; i < a->last_n_media && i < 4; i++)
    cr_assert_str_eq(a->last_media[i], b->last_media[i], "%s", a->id);
  cr_assert_str_eq(a->last_sender, b->last_sender, "%s", a->id);
  cr_assert_eq(a->last_has_cmid, b->last_has_cmid, "%s", a->id);
  cr_assert_str_eq(a->last_cmid, b->last_cmid, "%s", a->id);
  cr_assert_eq(a->last_ts, b->last_ts, "%s", a->id);
  cr_assert_eq(a->last_body_type, b->last_body_type, "%s", a->id);
  cr_assert_eq(a->last_has_reply, b->last_has_reply, "%s", a->id);
  cr_assert_eq(a->last_reply_to, b->last_reply_to, "%s", a->id);
  cr_assert_eq(a->unread, b->unread, "%s", a->id);
  cr_assert_eq(a->has_last_read, b->has_last_read, "%s", a->id);
  cr_assert_eq(a->last_read, b->last_read, "%s", a->id);
}

/* u's 300 conversations: every third has three messages (the last one
 * from the peer, every ninth with media refs), every sixth is read up to
 * its first message, every tenth has a member who joined later. Pairs
 * share a created_at, so ids break ties. Newest first, the list is the
 * conversations with messages and then the rest, each by index down. */
static void chat_list_fixture(chat_storage_ops *ops) {
  static char ids[CONVS][8], peers[CONVS][8], cmids[CONVS][3][8];
  static chat_msg_in msgs[CONVS * 3];
  static const char *const refs[] = {"m1", "m0", "m1"};
  size_t n = 0;
  for (int i = 0; i < CONVS; i++) {
    snprintf(ids[i], sizeof ids[i], "c%03d", i);
    snprintf(peers[i], sizeof peers[i], "p%03d", i);
    const char *const m[] = {"u", peers[i]};
    chat_conversation_new c = {0};
    c.conversation_id = ids[i];
    c.type = i % 2 ? CHAT_CONVERSATION_GROUP : CHAT_CONVERSATION_DIRECT;
    if (i % 4 == 1) {
      c.name.ptr = ids[i];
      c.name.len = strlen(ids[i]);
    }
    c.created_by = "u";
    c.members = m;
    c.n_members = 2;
    c.now_ms = 1000 + i / 2;
    cr_assert_eq(ops->conversation_create(ops->self, &c, NULL, NULL, NULL, NULL),
                 CHAT_OK);
    if (i % 10 == 0)
      cr_assert_eq(ops->member_add(ops->self, ids[i], "a-late", 5000, NULL),
                   CHAT_OK);
    if (i % 3)
      continue;
    for (int k = 0; k < 3; k++) {
      snprintf(cmids[i][k], sizeof cmids[i][k], "%d-%d", i, k);
      msgs[n] = msg(ids[i], 10000 + 3 * (uint64_t)i + (uint64_t)k,
                    k == 1 ? "u" : peers[i], cmids[i][k]);
      if (k == 2 && i % 9 == 0) {
        msgs[n].media_refs = refs;
        msgs[n].n_media_refs = 3;
        msgs[n].has_reply_to = true;
        msgs[n].reply_to = msgs[n - 1].message_id;
      }
      n++;
    }
  }
  static chat_append_result res[CONVS * 3];
  cr_assert_eq(ops->append(ops->self, msgs, n, res, NULL), CHAT_OK);
  for (int i = 0; i < CONVS; i += 6)
    cr_assert(mark(ops, ids[i], "u", CHAT_RECEIPT_READ,
                   10000 + 3 * (uint64_t)i, i % 2, NULL));
}

Test(sqlite_file, chat_list_page_is_one_statement) {
  chat_storage_ops ops = open_traced();
  chat_list_fixture(&ops);
  conv_page pg = {0, calloc(CONVS, sizeof *pg.v)};
  cr_assert_not_null(pg.v);
  char cursor[CHAT_CURSOR_BUF] = "", next[CHAT_CURSOR_BUF];
  int shown[2];
  for (int page = 0; page < 2; page++) {
    int before = pg.n;
    trace_reset();
    cr_assert_eq(ops.conversations_of(ops.self, "u", cursor, PAGE, on_page,
                                      &pg, next, NULL),
                 CHAT_OK);
    shown[page] = pg.n - before;
    /* BEGIN, the chat list, COMMIT: the same for 200 rows as for 1. */
    cr_assert_eq(traced.other, 1, "page %d ran %d statements", page + 1,
                 traced.other);
    cr_assert_eq(traced.tx, 2);
    strcpy(cursor, next);
  }
  cr_assert_eq(shown[0], PAGE);
  cr_assert_eq(shown[1], CONVS - PAGE);
  cr_assert_str_eq(cursor, "", "the second page was the last");

  /* The order, and each row as conversation_get() sees it for u. */
  int k = 0;
  for (int with_msgs = 1; with_msgs >= 0; with_msgs--)
    for (int i = CONVS - 1; i >= 0; i--) {
      if ((i % 3 == 0) != with_msgs)
        continue;
      char id[8];
      snprintf(id, sizeof id, "c%03d", i);
      cr_assert_str_eq(pg.v[k].id, id, "position %d", k);
      conv_view want = get(&ops, id, "u");
      same_view(&pg.v[k], &want);
      k++;
    }
  /* What the fixture put in c000, spelled out. */
  const conv_view *v = &pg.v[CONVS / 3 - 1];
  cr_assert_str_eq(v->id, "c000");
  cr_assert_eq(v->n_members, 3);
  cr_assert_str_eq(v->members[0], "p000");
  cr_assert_str_eq(v->members[1], "u");
  cr_assert_str_eq(v->members[2], "a-late", "joined last, listed last");
  cr_assert_eq(v->last_id, 10002);
  cr_assert_eq(v->last_n_media, 3);
  cr_assert_str_eq(v->last_media[0], "m1");
  cr_assert_str_eq(v->last_media[1], "m0");
  cr_assert_str_eq(v->last_media[2], "m1");
  cr_assert(v->last_has_reply);
  cr_assert(v->has_last_read);
  cr_assert_eq(v->last_read, 10000);
  cr_assert_eq(v->unread, 1, "u's own message 10001 does not count");
  v = &pg.v[CONVS / 3 - 2];
  cr_assert_str_eq(v->id, "c003");
  cr_assert_eq(v->unread, 2);
  cr_assert_not(v->has_last_read);
  cr_assert_eq(v->last_n_media, 0);
  cr_assert_not(pg.v[CONVS / 3].has_last);
  close_ops(&ops);
  free(pg.v);
}

Test(sqlite_file, chat_list_plan_searches_messages_by_key) {
  chat_storage_ops ops = open_traced();
  chat_list_fixture(&ops);
  char sql[2][sizeof traced.sql[0]], next[CHAT_CURSOR_BUF];
  for (int i = 0; i < 2; i++) {
    trace_reset();
    /* The first page, then one after a cursor: two statements. */
    cr_assert_eq(ops.conversations_of(ops.self, "u", i ? "1005:c007" : NULL,
                                      PAGE, NULL, NULL, next, NULL),
                 CHAT_OK);
    cr_assert_eq(traced.other, 1);
    memcpy(sql[i], traced.sql[0], sizeof sql[i]);
  }
  cr_assert_str_neq(sql[0], sql[1]);
  close_ops(&ops);
  for (int i = 0; i < 2; i++) {
    char plan[4096], line[256];
    query_plan(sql[i], plan, sizeof plan);
    cr_log_info("chat list plan:\n%s", plan);
    const char *scan = table_scan(plan, line, sizeof line);
    cr_assert_null(scan, "full scan \"%s\" in\n%s", scan, plan);
    /* The unread count is a range of the messages primary key. */
    cr_assert_not_null(strstr(plan, "SEARCH messages USING PRIMARY KEY"
                                    " (conversation_id=? AND message_id>?)"),
                       "%s", plan);
  }
}

Test(sqlite_file, latest_page_plan_is_a_key_range_without_sort) {
  chat_storage_ops ops = open_traced();
  group(&ops, "g", ab, 2);
  for (uint64_t id = 1; id <= 60; id++)
    put(&ops, "g", id, id % 2 ? "alice" : "bob", NULL);
  put(&ops, "h", 61, "alice", NULL);
  msg_cap cap = {0};
  trace_reset();
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_LATEST, 0, 50, NULL,
                            NULL, NULL),
               CHAT_OK);
  cr_assert_eq(traced.other, 1, "no media: one statement");
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_LATEST, 0, 50, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 50);
  cr_assert_eq(cap.v[0].id, 60);
  cr_assert_eq(cap.v[49].id, 11);
  close_ops(&ops);
  char plan[1024], line[256];
  query_plan(traced.sql[0], plan, sizeof plan);
  cr_log_info("latest 50 plan:\n%s", plan);
  cr_assert_null(table_scan(plan, line, sizeof line), "%s", plan);
  cr_assert_null(strstr(plan, "TEMP B-TREE"), "%s", plan);
  cr_assert_eq(strncmp(plan, "SEARCH ", 7), 0, "%s", plan);
  cr_assert_not_null(strstr(plan, "messages USING PRIMARY KEY"
                                  " (conversation_id=?)\n"),
                     "%s", plan);
  cr_assert_eq(strchr(plan, '\n')[1], '\0', "one step: %s", plan);
}

/* Checks a thousand-member conversation's members in join order. */
typedef struct big_check {
  int n;
  const char *const *want;
  size_t n_want;
} big_check;

static void on_big(void *ctx, const chat_conversation *c) {
  big_check *bc = ctx;
  bc->n++;
  if (strcmp(c->conversation_id, "big") != 0)
    return;
  cr_assert_eq(c->n_members, bc->n_want);
  for (size_t i = 0; i < c->n_members; i++)
    cr_assert_str_eq(c->members[i], bc->want[i], "member %zu", i);
}

Test(sqlite, chat_list_has_every_member_in_join_order) {
  chat_storage_ops ops = open_mem();
  enum { N = 1024 };
  static char names[N][12];
  static const char *create_order[N - 1], *want[N];
  /* Created in reverse id order, at one time: listed by id. */
  for (int i = 0; i < N - 1; i++) {
    snprintf(names[i], sizeof names[i], "m%04d", i);
    create_order[N - 2 - i] = names[i];
    want[i] = names[i];
  }
  group(&ops, "big", create_order, N - 1);
  /* A later member comes last whatever its id. */
  cr_assert_eq(ops.member_add(ops.self, "big", "a", 2000, NULL), CHAT_OK);
  want[N - 1] = "a";
  const char *const small[] = {"m0000", "zed"};
  group(&ops, "small", small, 2);
  put(&ops, "small", 5, "zed", "s");
  big_check bc = {0, want, N};
  char next[CHAT_CURSOR_BUF];
  cr_assert_eq(ops.conversations_of(ops.self, "a", NULL, 10, on_big, &bc,
                                    next, NULL),
               CHAT_OK);
  cr_assert_eq(bc.n, 1);
  bc.n = 0;
  cr_assert_eq(ops.conversations_of(ops.self, "m0000", NULL, 10, on_big, &bc,
                                    next, NULL),
               CHAT_OK);
  cr_assert_eq(bc.n, 2);
  close_ops(&ops);
}

/* ------------------------------------------------------------------------
 * Append */

Test(sqlite, append_batch_dedups_within_the_batch) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  chat_msg_in m[4] = {
    msg("g", 10, "alice", "x"),
    msg("g", 11, "bob", "x"),   /* another sender: not a duplicate */
    msg("g", 12, "alice", "x"), /* repeats the first */
    msg("g", 13, "alice", "y"),
  };
  chat_append_result r[4];
  cr_assert_eq(ops.append(ops.self, m, 4, r, NULL), CHAT_OK);
  cr_assert_not(r[0].duplicate);
  cr_assert_not(r[1].duplicate);
  cr_assert(r[2].duplicate);
  cr_assert_eq(r[2].message_id, 10);
  cr_assert_eq(r[2].server_ts, m[0].server_ts);
  cr_assert_not(r[3].duplicate);
  cr_assert_eq(r[3].message_id, 13);
  cr_assert_eq(r[3].server_ts, m[3].server_ts);

  msg_cap cap = {0};
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_AFTER, 0, 100, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 3);
  cr_assert_eq(cap.v[0].id, 10);
  cr_assert_eq(cap.v[1].id, 11);
  cr_assert_eq(cap.v[2].id, 13);
  cr_assert_eq(get(&ops, "g", NULL).last_id, 13);
  uint64_t max;
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, 13, "the duplicate's id was never stored");
  close_ops(&ops);
}

Test(sqlite_file, append_duplicate_after_reopen_returns_the_original) {
  chat_storage_ops ops = open_path(db_path);
  group(&ops, "g", ab, 2);
  chat_append_result r = put(&ops, "g", 100, "alice", "retry-me");
  cr_assert_not(r.duplicate);
  close_ops(&ops);

  ops = open_path(db_path);
  chat_msg_in m = msg("g", 900, "alice", "retry-me");
  m.server_ts += 3 * 3600 * 1000; /* hours later */
  m.body.ptr = "different";
  m.body.len = 9;
  cr_assert_eq(ops.append(ops.self, &m, 1, &r, NULL), CHAT_OK);
  cr_assert(r.duplicate);
  cr_assert_eq(r.message_id, 100);
  cr_assert_eq(r.server_ts, 1000000 + 100);
  msg_cap cap = {0};
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_LATEST, 0, 10, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 1);
  cr_assert_eq(cap.v[0].id, 100);
  cr_assert_eq(cap.v[0].body_len, 2, "the original is kept");
  uint64_t max;
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, 100);
  close_ops(&ops);
}

Test(sqlite, append_is_all_or_nothing) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  group(&ops, "h", ab, 2);
  put(&ops, "g", 5, "bob", "b5");
  /* h's last id is the largest there is: no id can be raised past it. */
  chat_msg_in top = msg("h", 1, "bob", "hmax");
  top.message_id = (uint64_t)INT64_MAX;
  chat_append_result tr;
  cr_assert_eq(ops.append(ops.self, &top, 1, &tr, NULL), CHAT_OK);
  const char *media[] = {"m1"};
  chat_msg_in m[3] = {
    msg("g", 6, "alice", "a6"),
    msg("g", 7, "alice", "a7"),
    msg("h", 5, "alice", "a5"), /* fails: nothing after INT64_MAX */
  };
  m[1].media_refs = media;
  m[1].n_media_refs = 1;
  chat_append_result r[3];
  chat_err e = ops.append(ops.self, m, 3, r, NULL);
  cr_assert(e == CHAT_ERR_CONFLICT || e == CHAT_ERR_MODULE, "%s",
            chat_err_name(e));
  msg_cap cap = {0};
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_LATEST, 0, 10, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 1, "the first two were rolled back");
  cr_assert_eq(get(&ops, "g", NULL).last_id, 5);
  uint64_t max;
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, (uint64_t)INT64_MAX);
  /* The rolled-back client_msg_ids are free; the media ref is gone. */
  cr_assert_eq(ops.media_put(ops.self, "m1", "carol", "a/b", "x", 1, 1, NULL),
               CHAT_OK);
  cr_assert_eq(ops.media_get(ops.self, "m1", "alice", NULL, NULL, NULL),
               CHAT_ERR_DENIED);
  cr_assert_not(put(&ops, "g", 8, "alice", "a6").duplicate);

  /* Invalid input is refused before anything is written. */
  chat_msg_in bad = msg("g", (uint64_t)INT64_MAX + 1, "alice", "z");
  cr_assert_eq(ops.append(ops.self, &bad, 1, r, NULL), CHAT_ERR_INVAL);
  bad = msg(NULL, 9, "alice", "z");
  cr_assert_eq(ops.append(ops.self, &bad, 1, r, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(ops.append(ops.self, NULL, 0, NULL, NULL), CHAT_OK);
  close_ops(&ops);
}

Test(sqlite, body_with_nul_bytes_round_trips) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  static const char body[] = "a\0b\0\xff";
  chat_msg_in m[2] = {msg("g", 1, "alice", "n1"), msg("g", 2, "alice", "n2")};
  m[0].body.ptr = body;
  m[0].body.len = 5;
  m[1].body.ptr = NULL; /* empty */
  m[1].body.len = 0;
  chat_append_result r[2];
  cr_assert_eq(ops.append(ops.self, m, 2, r, NULL), CHAT_OK);
  msg_cap cap = {0};
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_AFTER, 0, 10, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 2);
  cr_assert_eq(cap.v[0].body_len, 5);
  cr_assert_eq(memcmp(cap.v[0].body, body, 5), 0);
  cr_assert_eq(cap.v[1].body_len, 0);

  put(&ops, "g", 3, "bob", "n3");
  m[0].message_id = 4;
  m[0].client_msg_id = "n4";
  cr_assert_eq(ops.append(ops.self, m, 1, r, NULL), CHAT_OK);
  conv_view v = get(&ops, "g", NULL);
  cr_assert_eq(v.last_body_len, 5);
  cr_assert_eq(memcmp(v.last_body, body, 5), 0);
  close_ops(&ops);
}

/* ------------------------------------------------------------------------
 * Messages */

Test(sqlite, messages_page_in_three_directions) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  group(&ops, "h", ab, 2);
  const char *m1[] = {"img-1"};
  const char *m3[] = {"img-3a", "img-3b", "img-3a"};
  for (uint64_t id = 101; id <= 110; id++) {
    char cmid[16];
    snprintf(cmid, sizeof cmid, "c%llu", (unsigned long long)id);
    chat_msg_in m = msg("g", id, id % 2 ? "alice" : "bob", cmid);
    if (id == 104) {
      m.media_refs = m1;
      m.n_media_refs = 1;
      m.body_type = CHAT_BODY_MEDIA;
      m.has_reply_to = true;
      m.reply_to = 101;
    }
    if (id == 108) {
      m.media_refs = m3;
      m.n_media_refs = 3;
    }
    if (id == 109) {
      m.client_msg_id = NULL;
      m.body_type = CHAT_BODY_SYSTEM;
    }
    chat_append_result r;
    cr_assert_eq(ops.append(ops.self, &m, 1, &r, NULL), CHAT_OK);
  }
  put(&ops, "h", 200, "alice", "other");

  msg_cap cap = {0};
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_LATEST, 0, 3, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 3);
  cr_assert_eq(cap.v[0].id, 110);
  cr_assert_eq(cap.v[1].id, 109);
  cr_assert_eq(cap.v[2].id, 108);
  cr_assert_not(cap.v[1].has_cmid, "a system message has no client_msg_id");
  cr_assert_eq(cap.v[1].body_type, CHAT_BODY_SYSTEM);
  cr_assert_eq(cap.v[2].n_media, 3);
  cr_assert_str_eq(cap.v[2].media[0], "img-3a");
  cr_assert_str_eq(cap.v[2].media[1], "img-3b");
  cr_assert_str_eq(cap.v[2].media[2], "img-3a");
  cr_assert_str_eq(cap.v[2].cmid, "c108");
  cr_assert_str_eq(cap.v[2].sender, "bob");
  cr_assert_str_eq(cap.v[2].conv, "g");
  cr_assert_eq(cap.v[2].ts, 1000108);

  cap.n = 0;
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_BEFORE, 108, 3, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 3);
  cr_assert_eq(cap.v[0].id, 107);
  cr_assert_eq(cap.v[1].id, 106);
  cr_assert_eq(cap.v[2].id, 105);

  cap.n = 0;
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_AFTER, 102, 3, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 3);
  cr_assert_eq(cap.v[0].id, 103);
  cr_assert_eq(cap.v[1].id, 104);
  cr_assert_eq(cap.v[2].id, 105);
  cr_assert_eq(cap.v[1].n_media, 1);
  cr_assert_str_eq(cap.v[1].media[0], "img-1");
  cr_assert(cap.v[1].has_reply);
  cr_assert_eq(cap.v[1].reply_to, 101);
  cr_assert_eq(cap.v[1].body_type, CHAT_BODY_MEDIA);
  cr_assert_not(cap.v[0].has_reply);
  cr_assert_eq(cap.v[0].n_media, 0);

  /* Ends and edges. */
  cap.n = 0;
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_AFTER, 110, 3, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_BEFORE, 101, 3, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(ops.messages(ops.self, "nope", CHAT_PAGE_LATEST, 0, 3,
                            on_msg, &cap, NULL),
               CHAT_OK);
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_LATEST, 0, 0, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 0);
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_BEFORE, UINT64_MAX, 2,
                            on_msg, &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 2);
  cr_assert_eq(cap.v[0].id, 110);
  cap.n = 0;
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_AFTER, 0, 100, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 10, "only this conversation's messages");
  cr_assert_eq(ops.messages(ops.self, "g", (chat_page_dir)9, 0, 100, on_msg,
                            &cap, NULL),
               CHAT_ERR_INVAL);

  /* The conversation's last message carries its media too. */
  conv_view v = get(&ops, "g", "alice");
  cr_assert_eq(v.last_id, 110);
  cr_assert_eq(v.last_n_media, 0);
  put(&ops, "g", 111, "bob", "c111");
  close_ops(&ops);
}

Test(sqlite, last_message_only_moves_up) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  group(&ops, "h", ab, 2);
  put(&ops, "g", 20, "alice", "late");
  put(&ops, "h", 15, "alice", "mid");
  /* A lower id committed later (say, minted by a gateway whose clock
   * lags) is raised past the last one: ids grow in commit order. */
  cr_assert_eq(put(&ops, "g", 10, "bob", "early").message_id, 21);
  conv_view v = get(&ops, "g", "alice");
  cr_assert_eq(v.last_id, 21);
  cr_assert_eq(v.unread, 1);
  conv_cap cap = {0};
  char next[CHAT_CURSOR_BUF];
  cr_assert_eq(ops.conversations_of(ops.self, "alice", NULL, 10, on_conv,
                                    &cap, next, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 2);
  cr_assert_str_eq(cap.v[0].id, "g");
  cr_assert_str_eq(cap.v[1].id, "h");
  uint64_t max;
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, 21);
  close_ops(&ops);
}

Test(sqlite, append_batch_spanning_conversations_bumps_each) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  group(&ops, "h", ab, 2);
  chat_msg_in m[5] = {
    msg("g", 5, "alice", "1"), msg("g", 3, "alice", "2"),
    msg("h", 6, "alice", "3"), msg("h", 4, "bob", "4"),
    msg("g", 2, "bob", "5"),
  };
  chat_append_result r[5];
  cr_assert_eq(ops.append(ops.self, m, 5, r, NULL), CHAT_OK);
  /* Lower ids later in a conversation are raised past its last one. */
  cr_assert_eq(r[1].message_id, 6);
  cr_assert_eq(r[3].message_id, 7);
  cr_assert_eq(r[4].message_id, 7);
  cr_assert_eq(get(&ops, "g", NULL).last_id, 7);
  cr_assert_eq(get(&ops, "h", NULL).last_id, 7);
  msg_cap cap = {0};
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_AFTER, 0, 10, on_msg,
                            &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 3);
  cr_assert_eq(cap.v[0].id, 5);
  cr_assert_eq(cap.v[2].id, 7);
  uint64_t max;
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, 7);
  close_ops(&ops);
}

Test(sqlite, max_message_id_spans_conversations) {
  chat_storage_ops ops = open_mem();
  uint64_t max = 99;
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, 0);
  put(&ops, "a", 50, "u", "1");
  put(&ops, "b", 70, "u", "2");
  put(&ops, "a", 60, "u", "3");
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, 70);
  close_ops(&ops);
}

/* ------------------------------------------------------------------------
 * Receipt marks */

Test(sqlite, marks_that_do_not_advance_change_nothing) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  for (uint64_t id = 1; id <= 6; id++) {
    char c[8];
    snprintf(c, sizeof c, "m%llu", (unsigned long long)id);
    put(&ops, "g", id, "alice", c);
  }
  upd_cap u = {0};
  cr_assert(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, 5, true, &u));
  cr_assert_eq(u.n, 1);
  cr_assert_not(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, 5, true, &u));
  cr_assert_not(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, 3, true, &u));
  /* Reading to 5 delivered to 5 as well. */
  cr_assert_not(mark(&ops, "g", "bob", CHAT_RECEIPT_DELIVERED, 4, true, &u));
  cr_assert_not(mark(&ops, "g", "bob", CHAT_RECEIPT_DELIVERED, 5, true, &u));
  cr_assert_eq(u.n, 1, "no updates for marks that did not move");
  for (uint64_t id = 1; id <= 5; id++)
    counts(&ops, "g", id, 1, 1);
  counts(&ops, "g", 6, 0, 0);
  cr_assert(mark(&ops, "g", "bob", CHAT_RECEIPT_DELIVERED, 6, true, &u));
  counts(&ops, "g", 6, 1, 0);
  counts(&ops, "g", 5, 1, 1);

  /* Not a member, or an unknown conversation: nothing moves. */
  cr_assert_not(mark(&ops, "g", "carol", CHAT_RECEIPT_READ, 6, true, &u));
  cr_assert_not(mark(&ops, "nope", "bob", CHAT_RECEIPT_READ, 6, true, &u));
  counts(&ops, "g", 6, 1, 0);
  /* A state that is not delivered or read is refused. */
  chat_mark_in in = {0};
  in.conversation_id = "g";
  in.member_id = "bob";
  in.state = (chat_receipt_state)3;
  in.up_to = 6;
  bool adv = true;
  cr_assert_eq(ops.mark(ops.self, &in, &adv, NULL, NULL, NULL), CHAT_ERR_INVAL);
  cr_assert_not(adv);
  close_ops(&ops);
}

Test(sqlite, marks_are_capped_at_the_last_message) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  cr_assert_not(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, 50, true, NULL),
                "nothing to read in an empty conversation");
  put(&ops, "g", 10, "alice", "a");
  upd_cap u = {0};
  cr_assert(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, 1000, true, &u));
  cr_assert_eq(u.n, 1);
  cr_assert_eq(u.v[0].id, 10);
  conv_view v = get(&ops, "g", "bob");
  cr_assert_eq(v.last_read, 10, "not the future id 1000");
  /* A new message can still be marked. */
  put(&ops, "g", 20, "alice", "b");
  cr_assert_eq(get(&ops, "g", "bob").unread, 1);
  cr_assert(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, 1000, true, NULL));
  v = get(&ops, "g", "bob");
  cr_assert_eq(v.last_read, 20);
  cr_assert_eq(v.unread, 0);
  counts(&ops, "g", 20, 1, 1);
  cr_assert_not(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, UINT64_MAX, true,
                     NULL));
  close_ops(&ops);
}

Test(sqlite_file, direct_marks_stamp_delivered_at_and_read_at) {
  chat_storage_ops ops = open_path(db_path);
  bool existed;
  cr_assert_eq(create(&ops, "d", CHAT_CONVERSATION_DIRECT, "alice", ab, 2,
                      1000, &existed, NULL),
               CHAT_OK);
  put(&ops, "d", 1, "alice", "a1");
  put(&ops, "d", 2, "alice", "a2");
  put(&ops, "d", 3, "alice", "a3");
  put(&ops, "d", 4, "bob", "b4");

  upd_cap u = {0};
  cr_assert(mark_ex(&ops, "d", "bob", CHAT_RECEIPT_DELIVERED, 2, false, true,
                    7000, &u));
  cr_assert_eq(u.n, 1);
  cr_assert_str_eq(u.v[0].sender, "alice");
  cr_assert_eq(u.v[0].id, 2);
  cr_assert_eq(u.v[0].delivered, 1);
  cr_assert_eq(u.v[0].read, 0);
  counts(&ops, "d", 1, 1, 0);
  counts(&ops, "d", 3, 0, 0);

  u.n = 0;
  cr_assert(mark_ex(&ops, "d", "bob", CHAT_RECEIPT_READ, 4, false, true,
                    9000, &u));
  cr_assert_eq(u.n, 1, "bob's own message is not reported");
  cr_assert_str_eq(u.v[0].sender, "alice");
  cr_assert_eq(u.v[0].id, 3);
  cr_assert_eq(u.v[0].delivered, 1, "read implies delivered");
  cr_assert_eq(u.v[0].read, 1);
  counts(&ops, "d", 1, 1, 1);
  counts(&ops, "d", 3, 1, 1);
  counts(&ops, "d", 4, 0, 0);
  /* Marks restart for a member who leaves and comes back, but the stamps
   * on the messages are not moved by the repeat. */
  cr_assert_eq(ops.member_remove(ops.self, "d", "bob", NULL), CHAT_OK);
  cr_assert_eq(ops.member_add(ops.self, "d", "bob", 10000, NULL), CHAT_OK);
  cr_assert(mark_ex(&ops, "d", "bob", CHAT_RECEIPT_READ, 4, false, true,
                    11000, NULL));
  close_ops(&ops);

  /* The first stamp is kept; the member's own message is untouched; no
   * group rows or counters for a direct chat. */
  cr_assert_eq(file_int("SELECT delivered_at FROM messages"
                        " WHERE message_id = 1"),
               7000);
  cr_assert_eq(file_int("SELECT delivered_at FROM messages"
                        " WHERE message_id = 3"),
               9000);
  cr_assert_eq(file_int("SELECT read_at FROM messages WHERE message_id = 2"),
               9000);
  cr_assert_eq(file_int("SELECT count(*) FROM messages WHERE message_id = 4"
                        " AND delivered_at IS NULL AND read_at IS NULL"),
               1);
  cr_assert_eq(file_int("SELECT count(*) FROM group_receipts"), 0);
  cr_assert_eq(file_int("SELECT sum(delivered_count + read_count)"
                        " FROM messages"),
               0);
}

Test(sqlite, read_implies_delivered_in_groups) {
  chat_storage_ops ops = open_mem();
  const char *const m[] = {"alice", "bob", "carol"};
  group(&ops, "g", m, 3);
  put(&ops, "g", 1, "alice", "a1");
  put(&ops, "g", 2, "alice", "a2");
  cr_assert(mark(&ops, "g", "bob", CHAT_RECEIPT_DELIVERED, 1, true, NULL));
  upd_cap u = {0};
  cr_assert(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, 2, true, &u));
  /* Message 1: delivered once (not twice), read once. */
  counts(&ops, "g", 1, 1, 1);
  counts(&ops, "g", 2, 1, 1);
  cr_assert_eq(u.n, 1);
  cr_assert_eq(u.v[0].id, 2);
  cr_assert_eq(u.v[0].delivered, 1);
  cr_assert_eq(u.v[0].read, 1);
  cr_assert_not(mark(&ops, "g", "bob", CHAT_RECEIPT_DELIVERED, 2, true,
                     NULL));
  cr_assert(mark(&ops, "g", "carol", CHAT_RECEIPT_READ, 2, true, NULL));
  counts(&ops, "g", 1, 2, 2);
  counts(&ops, "g", 2, 2, 2);
  close_ops(&ops);
}

Test(sqlite, group_counters_are_exact_for_a_thousand_members) {
  chat_storage_ops ops = open_mem();
  enum { N = 1000, READERS = 640 };
  static char names[N + 1][12];
  static const char *ids[N + 1];
  snprintf(names[0], sizeof names[0], "sender");
  ids[0] = names[0];
  for (int i = 1; i <= N; i++) {
    snprintf(names[i], sizeof names[i], "u%04d", i);
    ids[i] = names[i];
  }
  group(&ops, "big", ids, N + 1);
  put(&ops, "big", 41, "sender", "old");
  put(&ops, "big", 42, "sender", "hello");
  /* Everyone has seen message 41 already. */
  for (int i = 1; i <= N; i++)
    cr_assert(mark(&ops, "big", ids[i], CHAT_RECEIPT_READ, 41, true, NULL));

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 1; i <= N; i++) {
    upd_cap u = {0};
    cr_assert(mark(&ops, "big", ids[i], CHAT_RECEIPT_DELIVERED, 42, true,
                   &u));
    cr_assert_eq(u.n, 1);
    cr_assert_str_eq(u.v[0].sender, "sender");
    cr_assert_eq(u.v[0].id, 42);
    cr_assert_eq(u.v[0].delivered, (uint32_t)i);
    cr_assert_eq(u.v[0].read, 0);
  }
  for (int i = 1; i <= READERS; i++) {
    upd_cap u = {0};
    cr_assert(mark(&ops, "big", ids[i], CHAT_RECEIPT_READ, 42, true, &u));
    cr_assert_eq(u.n, 1);
    cr_assert_eq(u.v[0].delivered, N);
    cr_assert_eq(u.v[0].read, (uint32_t)i);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
              (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
  cr_log_info("%d marks in %.1f ms", N + READERS, ms);

  counts(&ops, "big", 42, N, READERS);
  counts(&ops, "big", 41, N, N);
  state_cap st = {0};
  uint32_t d, r;
  cr_assert_eq(ops.receipts(ops.self, "big", 42, &d, &r, on_state, &st, NULL),
               CHAT_OK);
  cr_assert_eq(st.n, N, "every member but the sender");
  cr_assert_eq(st.count[2], READERS);
  cr_assert_eq(st.count[1], N - READERS);
  cr_assert_eq(st.count[0], 0);
  for (int i = 0; i < MAX_CAP; i++)
    cr_assert_str_neq(st.v[i].member, "sender");
  /* The conversation emits all of its members. */
  cr_assert_eq(get(&ops, "big", "u0001").n_members, N + 1);
  close_ops(&ops);
}

Test(sqlite, untracked_delivered_is_dropped_but_read_counts_both) {
  chat_storage_ops ops = open_mem();
  const char *const m[] = {"alice", "bob", "carol"};
  group(&ops, "g", m, 3);
  put(&ops, "g", 1, "alice", "a1");
  upd_cap u = {0};
  cr_assert_not(mark_ex(&ops, "g", "bob", CHAT_RECEIPT_DELIVERED, 1, true,
                        false, 5000, &u));
  cr_assert_eq(u.n, 0);
  counts(&ops, "g", 1, 0, 0);
  state_cap st = {0};
  cr_assert_eq(ops.receipts(ops.self, "g", 1, NULL, NULL, on_state, &st, NULL),
               CHAT_OK);
  cr_assert_eq(st.count[0], 2, "bob is still at sent");
  cr_assert(mark_ex(&ops, "g", "bob", CHAT_RECEIPT_READ, 1, true, false,
                    5000, &u));
  counts(&ops, "g", 1, 1, 1);
  cr_assert_eq(u.n, 1);
  cr_assert_eq(u.v[0].delivered, 1);
  cr_assert_eq(u.v[0].read, 1);
  close_ops(&ops);
}

Test(sqlite_file, group_mark_writes_one_receipt_row_and_purge_expires_it) {
  chat_storage_ops ops = open_path(db_path);
  const char *const m[] = {"alice", "bob", "carol"};
  group(&ops, "g", m, 3);
  for (uint64_t id = 1; id <= 4; id++) {
    char c[8];
    snprintf(c, sizeof c, "m%llu", (unsigned long long)id);
    put(&ops, "g", id, "alice", c);
  }
  cr_assert(mark_ex(&ops, "g", "bob", CHAT_RECEIPT_DELIVERED, 3, true, true,
                    1000, NULL));
  cr_assert(mark_ex(&ops, "g", "carol", CHAT_RECEIPT_READ, 99, true, true,
                    5000, NULL));
  cr_assert(mark_ex(&ops, "g", "bob", CHAT_RECEIPT_READ, 3, true, true,
                    6000, NULL));
  cr_assert_eq(file_int("SELECT count(*) FROM group_receipts"), 2,
               "bob's read replaced his delivered row for message 3");
  cr_assert_eq(file_int("SELECT state * 100000 + state_ts FROM group_receipts"
                        " WHERE conversation_id = 'g' AND member_id = 'bob'"
                        " AND message_id = 3"),
               2 * 100000 + 6000);
  cr_assert_eq(file_int("SELECT message_id FROM group_receipts"
                        " WHERE member_id = 'carol' AND state = 2"),
               4, "the capped mark");
  cr_assert_eq(ops.purge_receipts(ops.self, 5000, NULL), CHAT_OK);
  cr_assert_eq(file_int("SELECT count(*) FROM group_receipts"), 2,
               "nothing older than 5000");
  cr_assert_eq(ops.purge_receipts(ops.self, 5001, NULL), CHAT_OK);
  cr_assert_eq(file_int("SELECT count(*) FROM group_receipts"), 1);
  cr_assert_eq(file_int("SELECT state_ts FROM group_receipts"), 6000);
  /* Counters outlive the rows. */
  counts(&ops, "g", 3, 2, 2);
  cr_assert_eq(ops.purge_receipts(ops.self, INT64_MAX, NULL), CHAT_OK);
  cr_assert_eq(file_int("SELECT count(*) FROM group_receipts"), 0);
  counts(&ops, "g", 3, 2, 2);
  close_ops(&ops);
}

Test(sqlite, mark_emits_one_update_per_other_sender) {
  chat_storage_ops ops = open_mem();
  const char *const m[] = {"ann", "ben", "rex"};
  group(&ops, "g", m, 3);
  put(&ops, "g", 1, "ann", "1");
  put(&ops, "g", 2, "ben", "2");
  put(&ops, "g", 3, "ann", "3");
  put(&ops, "g", 4, "rex", "4");
  put(&ops, "g", 5, "ann", "5");
  put(&ops, "g", 6, "ben", "6");
  upd_cap u = {0};
  cr_assert(mark(&ops, "g", "rex", CHAT_RECEIPT_READ, 5, true, &u));
  cr_assert_eq(u.n, 2, "ann and ben, not rex himself");
  cr_assert_str_eq(u.v[0].sender, "ann");
  cr_assert_eq(u.v[0].id, 5);
  cr_assert_eq(u.v[0].delivered, 1);
  cr_assert_eq(u.v[0].read, 1);
  cr_assert_str_eq(u.v[1].sender, "ben");
  cr_assert_eq(u.v[1].id, 2);

  /* Only senders with messages in the newly covered range. */
  u.n = 0;
  cr_assert(mark(&ops, "g", "rex", CHAT_RECEIPT_READ, 6, true, &u));
  cr_assert_eq(u.n, 1);
  cr_assert_str_eq(u.v[0].sender, "ben");
  cr_assert_eq(u.v[0].id, 6);

  /* ann reads: her counters do not move for her own messages. */
  u.n = 0;
  cr_assert(mark(&ops, "g", "ann", CHAT_RECEIPT_READ, 6, true, &u));
  cr_assert_eq(u.n, 2);
  cr_assert_str_eq(u.v[0].sender, "ben");
  cr_assert_eq(u.v[0].id, 6);
  cr_assert_eq(u.v[0].read, 2);
  cr_assert_str_eq(u.v[1].sender, "rex");
  cr_assert_eq(u.v[1].id, 4);
  cr_assert_eq(u.v[1].read, 1);
  counts(&ops, "g", 5, 1, 1);
  close_ops(&ops);
}

/* ------------------------------------------------------------------------
 * Receipts, unread counts */

Test(sqlite, receipts_report_each_other_members_state) {
  chat_storage_ops ops = open_mem();
  const char *const m[] = {"ann", "ben", "cat", "dan"};
  group(&ops, "g", m, 4);
  put(&ops, "g", 1, "ann", "1");
  put(&ops, "g", 2, "ann", "2");
  cr_assert(mark(&ops, "g", "ben", CHAT_RECEIPT_DELIVERED, 2, true, NULL));
  cr_assert(mark(&ops, "g", "cat", CHAT_RECEIPT_READ, 1, true, NULL));

  state_cap st = {0};
  uint32_t d = 9, r = 9;
  cr_assert_eq(ops.receipts(ops.self, "g", 2, &d, &r, on_state, &st, NULL),
               CHAT_OK);
  cr_assert_eq(d, 1);
  cr_assert_eq(r, 0);
  cr_assert_eq(st.n, 3);
  cr_assert_str_eq(st.v[0].member, "ben");
  cr_assert_eq(st.v[0].state, 1);
  cr_assert_str_eq(st.v[1].member, "cat");
  cr_assert_eq(st.v[1].state, 0, "cat's marks stop at message 1");
  cr_assert_str_eq(st.v[2].member, "dan");
  cr_assert_eq(st.v[2].state, 0);

  memset(&st, 0, sizeof st);
  cr_assert_eq(ops.receipts(ops.self, "g", 1, &d, &r, on_state, &st, NULL),
               CHAT_OK);
  cr_assert_eq(d, 2);
  cr_assert_eq(r, 1);
  cr_assert_eq(st.v[0].state, 1);
  cr_assert_eq(st.v[1].state, 2);
  cr_assert_eq(st.v[2].state, 0);

  cr_assert_eq(ops.receipts(ops.self, "g", 3, &d, &r, NULL, NULL, NULL),
               CHAT_ERR_NOT_FOUND);
  cr_assert_eq(ops.receipts(ops.self, "zz", 1, &d, &r, NULL, NULL, NULL),
               CHAT_ERR_NOT_FOUND);
  cr_assert_eq(ops.receipts(ops.self, "g", UINT64_MAX, &d, &r, NULL, NULL, NULL),
               CHAT_ERR_NOT_FOUND);
  close_ops(&ops);
}

Test(sqlite, direct_receipts_use_the_conversation_type) {
  chat_storage_ops ops = open_mem();
  bool existed;
  cr_assert_eq(create(&ops, "d", CHAT_CONVERSATION_DIRECT, "alice", ab, 2,
                      1000, &existed, NULL),
               CHAT_OK);
  put(&ops, "d", 1, "alice", "1");
  /* A direct conversation marked as a group would bump counters; the
   * receipts answer for a direct chat still reads the timestamps. */
  cr_assert(mark(&ops, "d", "bob", CHAT_RECEIPT_DELIVERED, 1, false, NULL));
  state_cap st = {0};
  uint32_t d = 9, r = 9;
  cr_assert_eq(ops.receipts(ops.self, "d", 1, &d, &r, on_state, &st, NULL),
               CHAT_OK);
  cr_assert_eq(d, 1);
  cr_assert_eq(r, 0);
  cr_assert_eq(st.n, 1);
  cr_assert_str_eq(st.v[0].member, "bob");
  cr_assert_eq(st.v[0].state, 1);
  close_ops(&ops);
}

Test(sqlite, unread_count_and_last_read_follow_the_read_mark) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", ab, 2);
  put(&ops, "g", 1, "alice", "1");
  put(&ops, "g", 2, "alice", "2");
  put(&ops, "g", 3, "bob", "3");
  put(&ops, "g", 4, "alice", "4");
  conv_view v = get(&ops, "g", "bob");
  cr_assert_eq(v.unread, 3, "alice's three; bob's own does not count");
  cr_assert_not(v.has_last_read);
  v = get(&ops, "g", "alice");
  cr_assert_eq(v.unread, 1);
  v = get(&ops, "g", NULL);
  cr_assert_eq(v.unread, 0);
  cr_assert_not(v.has_last_read);

  cr_assert(mark(&ops, "g", "bob", CHAT_RECEIPT_DELIVERED, 4, true, NULL));
  cr_assert_eq(get(&ops, "g", "bob").unread, 3, "delivered is not read");
  cr_assert(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, 2, true, NULL));
  v = get(&ops, "g", "bob");
  cr_assert(v.has_last_read);
  cr_assert_eq(v.last_read, 2);
  cr_assert_eq(v.unread, 1);

  conv_cap cap = {0};
  char next[CHAT_CURSOR_BUF];
  cr_assert_eq(ops.conversations_of(ops.self, "bob", NULL, 5, on_conv, &cap,
                                    next, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 1);
  cr_assert(cap.v[0].has_last_read);
  cr_assert_eq(cap.v[0].last_read, 2);
  cr_assert_eq(cap.v[0].unread, 1);
  cr_assert(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, 4, true, NULL));
  cr_assert_eq(get(&ops, "g", "bob").unread, 0);
  close_ops(&ops);
}

/* ------------------------------------------------------------------------
 * Devices and media */

typedef struct push_cap {
  int n;
  char v[8][3][80];
} push_cap;

static void on_push(void *ctx, const char *device, const char *platform,
                    const char *token) {
  push_cap *cap = ctx;
  cr_assert_lt(cap->n, 8);
  snprintf(cap->v[cap->n][0], 80, "%s", device);
  snprintf(cap->v[cap->n][1], 80, "%s", platform);
  snprintf(cap->v[cap->n][2], 80, "%s", token);
  cap->n++;
}

Test(sqlite, push_targets_are_the_users_devices_with_a_token) {
  chat_storage_ops ops = open_mem();
  cr_assert_eq(ops.device_register(ops.self, "alice", "phone", "apns",
                                   "tok-1", 1, NULL),
               CHAT_OK);
  cr_assert_eq(ops.device_register(ops.self, "alice", "laptop", "webpush",
                                   NULL, 2, NULL),
               CHAT_OK);
  cr_assert_eq(ops.device_register(ops.self, "alice", "tablet", "fcm",
                                   "tok-2", 3, NULL),
               CHAT_OK);
  cr_assert_eq(ops.device_register(ops.self, "bob", "phone", "fcm", "tok-3",
                                   4, NULL),
               CHAT_OK);
  /* Registering again replaces the token and platform. */
  cr_assert_eq(ops.device_register(ops.self, "alice", "phone", "fcm",
                                   "tok-1b", 5, NULL),
               CHAT_OK);
  push_cap cap = {0};
  cr_assert_eq(ops.push_targets(ops.self, "alice", on_push, &cap, NULL), CHAT_OK);
  cr_assert_eq(cap.n, 2);
  cr_assert_str_eq(cap.v[0][0], "phone");
  cr_assert_str_eq(cap.v[0][1], "fcm");
  cr_assert_str_eq(cap.v[0][2], "tok-1b");
  cr_assert_str_eq(cap.v[1][0], "tablet");
  cr_assert_str_eq(cap.v[1][2], "tok-2");
  cap.n = 0;
  cr_assert_eq(ops.push_targets(ops.self, "nobody", on_push, &cap, NULL), CHAT_OK);
  cr_assert_eq(cap.n, 0);
  close_ops(&ops);
}

typedef struct media_cap {
  int n;
  char type[32];
  char data[16];
  size_t len;
} media_cap;

static void on_media(void *ctx, const char *type, const void *data,
                     size_t len) {
  media_cap *cap = ctx;
  cap->n++;
  snprintf(cap->type, sizeof cap->type, "%s", type ? type : "(null)");
  cr_assert_leq(len, sizeof cap->data);
  memcpy(cap->data, data, len);
  cap->len = len;
}

Test(sqlite, media_is_for_its_owner_and_members_of_referencing_chats) {
  chat_storage_ops ops = open_mem();
  static const char bytes[] = "\x89PNG\0\1\2";
  cr_assert_eq(ops.media_put(ops.self, "img", "alice", "image/png", bytes, 7,
                             1, NULL),
               CHAT_OK);
  cr_assert_eq(ops.media_put(ops.self, "img", "carol", "text/plain", "x", 1,
                             2, NULL),
               CHAT_ERR_CONFLICT);
  media_cap cap = {0};
  cr_assert_eq(ops.media_get(ops.self, "img", "alice", on_media, &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 1);
  cr_assert_str_eq(cap.type, "image/png");
  cr_assert_eq(cap.len, 7);
  cr_assert_eq(memcmp(cap.data, bytes, 7), 0);
  /* Not referenced yet: only the owner. */
  cr_assert_eq(ops.media_get(ops.self, "img", "bob", on_media, &cap, NULL),
               CHAT_ERR_DENIED);

  const char *const m[] = {"alice", "bob"};
  group(&ops, "g", m, 2);
  chat_msg_in in = msg("g", 1, "alice", "pic");
  const char *refs[] = {"img"};
  in.media_refs = refs;
  in.n_media_refs = 1;
  chat_append_result r;
  cr_assert_eq(ops.append(ops.self, &in, 1, &r, NULL), CHAT_OK);
  cr_assert_eq(ops.media_get(ops.self, "img", "bob", on_media, &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 2);
  cr_assert_eq(ops.media_get(ops.self, "img", "carol", on_media, &cap, NULL),
               CHAT_ERR_DENIED);
  cr_assert_eq(ops.media_get(ops.self, "img", NULL, on_media, &cap, NULL),
               CHAT_ERR_DENIED);
  cr_assert_eq(ops.media_get(ops.self, "nope", "alice", on_media, &cap, NULL),
               CHAT_ERR_NOT_FOUND);
  cr_assert_eq(cap.n, 2, "refusals emit nothing");
  /* Leaving the conversation ends access. */
  cr_assert_eq(ops.member_remove(ops.self, "g", "bob", NULL), CHAT_OK);
  cr_assert_eq(ops.media_get(ops.self, "img", "bob", on_media, &cap, NULL),
               CHAT_ERR_DENIED);
  /* An empty blob is a blob. */
  cr_assert_eq(ops.media_put(ops.self, "empty", "bob", "a/b", NULL, 0, 3, NULL),
               CHAT_OK);
  cr_assert_eq(ops.media_get(ops.self, "empty", "bob", on_media, &cap, NULL),
               CHAT_OK);
  cr_assert_eq(cap.len, 0);
  close_ops(&ops);
}

/* ------------------------------------------------------------------------
 * Re-entrancy: emit callbacks may call the store */

typedef struct reenter {
  chat_storage_ops *ops;
  int convs;
  int msgs;
  char seen[MAX_CAP][CHAT_ID_BUF];
} reenter;

static void count_msg(void *ctx, const chat_message *m) {
  reenter *re = ctx;
  (void)m;
  re->msgs++;
}

static void nested(void *ctx, const chat_conversation *c) {
  reenter *re = ctx;
  char id[CHAT_ID_BUF];
  snprintf(id, sizeof id, "%s", c->conversation_id);
  /* Calls that prepare, bind and scratch-allocate while the outer call's
   * emitted data must stay intact. */
  conv_cap cap = {0};
  cr_assert_eq(re->ops->conversation_get(re->ops->self, id, "u", on_conv,
                                         &cap, NULL),
               CHAT_OK);
  cr_assert_eq(re->ops->messages(re->ops->self, id, CHAT_PAGE_LATEST, 0, 50,
                                 count_msg, re, NULL),
               CHAT_OK);
  cr_assert_not_null(re->ops->append);
  chat_msg_in m = msg(id, 1000 + (uint64_t)re->convs, "u", NULL);
  chat_append_result r;
  cr_assert_eq(re->ops->append(re->ops->self, &m, 1, &r, NULL), CHAT_OK);
  cr_assert_str_eq(c->conversation_id, id);
  snprintf(re->seen[re->convs++], CHAT_ID_BUF, "%s", c->conversation_id);
}

Test(sqlite, emit_callbacks_may_call_back_into_the_store) {
  chat_storage_ops ops = open_mem();
  const char *const m[] = {"u", "v"};
  char id[8];
  for (int i = 0; i < 5; i++) {
    snprintf(id, sizeof id, "c%d", i);
    group(&ops, id, m, 2);
    put(&ops, id, 10 + (uint64_t)i, "v", id);
  }
  reenter re = {&ops, 0, 0, {{0}}};
  char next[CHAT_CURSOR_BUF];
  cr_assert_eq(ops.conversations_of(ops.self, "u", NULL, 10, nested, &re,
                                    next, NULL),
               CHAT_OK);
  cr_assert_eq(re.convs, 5);
  cr_assert_eq(re.msgs, 5, "each nested page sees its one message");
  /* The nested appends landed (one per conversation). */
  uint64_t max;
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, 1004);
  for (int i = 0; i < 5; i++) {
    snprintf(id, sizeof id, "c%d", 4 - i);
    cr_assert_str_eq(re.seen[i], id, "most recent first");
  }
  close_ops(&ops);
}

/* ------------------------------------------------------------------------
 * Durability and crash consistency */

Test(sqlite_file, appended_messages_survive_close_and_reopen) {
  chat_sqlite_options o = {CHAT_SQLITE_OPTIONS_V1, CHAT_SQLITE_SYNC_FULL, 0};
  for (int pass = 0; pass < 2; pass++) {
    chat_storage_ops ops;
    cr_assert_eq(chat_sqlite_storage_open(&ops, db_path, &o, NULL, NULL), CHAT_OK);
    if (pass == 0) {
      group(&ops, "g", ab, 2);
      chat_msg_in m[3] = {msg("g", 1, "alice", "1"), msg("g", 2, "bob", "2"),
                          msg("g", 3, "alice", "3")};
      chat_append_result r[3];
      cr_assert_eq(ops.append(ops.self, m, 3, r, NULL), CHAT_OK);
      cr_assert(mark(&ops, "g", "bob", CHAT_RECEIPT_READ, 3, true, NULL));
      cr_assert_eq(ops.device_register(ops.self, "bob", "p", "fcm", "t", 1, NULL),
                   CHAT_OK);
      cr_assert_eq(ops.media_put(ops.self, "m", "bob", "a/b", "xyz", 3, 1, NULL),
                   CHAT_OK);
    } else {
      msg_cap cap = {0};
      cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_AFTER, 0, 10,
                                on_msg, &cap, NULL),
                   CHAT_OK);
      cr_assert_eq(cap.n, 3);
      conv_view v = get(&ops, "g", "bob");
      cr_assert_eq(v.last_read, 3);
      counts(&ops, "g", 3, 1, 1);
      push_cap pc = {0};
      cr_assert_eq(ops.push_targets(ops.self, "bob", on_push, &pc, NULL), CHAT_OK);
      cr_assert_eq(pc.n, 1);
      media_cap mc = {0};
      cr_assert_eq(ops.media_get(ops.self, "m", "bob", on_media, &mc, NULL),
                   CHAT_OK);
      cr_assert_eq(mc.len, 3);
    }
    close_ops(&ops);
    o.sync = CHAT_SQLITE_SYNC_NORMAL; /* both modes survive a clean close */
  }
}

enum { BATCH = 10 };

static void crash_child(int fd) {
  chat_storage_ops ops;
  if (chat_sqlite_storage_open(&ops, db_path, NULL, NULL, NULL) != CHAT_OK)
    _exit(1);
  for (uint64_t b = 0;; b++) {
    char cmid[BATCH][24];
    chat_msg_in m[BATCH];
    chat_append_result r[BATCH];
    for (int i = 0; i < BATCH; i++) {
      snprintf(cmid[i], sizeof cmid[i], "b%llu-%d", (unsigned long long)b, i);
      m[i] = msg("g", b * BATCH + (uint64_t)i + 1, "alice", cmid[i]);
    }
    if (ops.append(ops.self, m, BATCH, r, NULL) != CHAT_OK)
      _exit(2);
    if (b == 0 && write(fd, "x", 1) != 1)
      _exit(3);
  }
}

Test(sqlite_file, sigkill_leaves_whole_batches) {
  int pfd[2];
  cr_assert_eq(pipe(pfd), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    close(pfd[0]);
    crash_child(pfd[1]);
  }
  close(pfd[1]);
  char c;
  ssize_t got = read(pfd[0], &c, 1);
  close(pfd[0]);
  if (got == 1) {
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  kill(pid, SIGKILL);
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert_eq(got, 1, "the child committed its first batch");
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
            "the child was killed mid-loop (status %d)", status);

  sqlite3 *db;
  cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
  sqlite3_stmt *st;
  sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
  cr_assert_eq(sqlite3_step(st), SQLITE_ROW);
  cr_assert_str_eq((const char *)sqlite3_column_text(st, 0), "ok");
  sqlite3_finalize(st);
  /* Per batch: how many of its messages exist. */
  sqlite3_prepare_v2(db,
                     "SELECT CAST(substr(client_msg_id, 2,"
                     " instr(client_msg_id, '-') - 2) AS INTEGER) AS b,"
                     " count(*) FROM messages GROUP BY b ORDER BY b",
                     -1, &st, NULL);
  int64_t batches = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    cr_assert_eq(sqlite3_column_int64(st, 0), batches,
                 "committed batches form a prefix");
    cr_assert_eq(sqlite3_column_int(st, 1), BATCH, "batch %lld is partial",
                 (long long)batches);
    batches++;
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  cr_assert_geq(batches, 1);
  cr_log_info("%lld batches committed before SIGKILL", (long long)batches);

  /* The store opens on the recovered file and agrees. */
  chat_storage_ops ops = open_path(db_path);
  uint64_t max;
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, (uint64_t)batches * BATCH);
  chat_msg_in m = msg("g", 1, "alice", "b0-0");
  chat_append_result r;
  cr_assert_eq(ops.append(ops.self, &m, 1, &r, NULL), CHAT_OK);
  cr_assert(r.duplicate);
  close_ops(&ops);
}

/* ------------------------------------------------------------------------
 * Out of memory */

Test(sqlite, open_fails_cleanly_at_every_allocation) {
  long n = 0;
  for (;; n++) {
    fail_alloc fa;
    fail_alloc_init(&fa, n);
    chat_storage_ops ops;
    chat_err e = chat_sqlite_storage_open(&ops, ":memory:", NULL, &fa.a, NULL);
    if (e == CHAT_OK) {
      cr_assert_eq(fa.count, n, "the run that fails nothing");
      ops.destroy(ops.self);
      cr_assert_eq(fa.live, 0);
      break;
    }
    cr_assert(e == CHAT_ERR_NOMEM || e == CHAT_ERR_MODULE,
              "allocation %ld: %s", n, chat_err_name(e));
    cr_assert_eq(fa.live, 0, "allocation %ld leaked", n);
    cr_assert_lt(n, 1000);
  }
  cr_assert_geq(n, 1);
}

static void on_user(void *ctx, const char *user) {
  (void)ctx;
  cr_assert_not_null(user);
}

static void on_msg_any(void *ctx, const chat_message *m) {
  (void)ctx;
  cr_assert_not_null(m);
}

/* Every store call of a small scenario, with allocation k failing: each
 * call answers CHAT_OK or CHAT_ERR_NOMEM, a failed write leaves nothing
 * behind, and destroy frees every block. */
static long oom_scenario(long fail_at) {
  fail_alloc fa;
  fail_alloc_init(&fa, fail_at);
  chat_storage_ops ops;
  chat_err e = chat_sqlite_storage_open(&ops, ":memory:", NULL, &fa.a, NULL);
  if (e != CHAT_OK) {
    cr_assert_eq(e, CHAT_ERR_NOMEM);
    cr_assert_eq(fa.live, 0);
    return fa.count;
  }
#define OK_OR_NOMEM(call)                                                  \
  do {                                                                     \
    chat_err e_ = (call);                                                  \
    cr_assert(e_ == CHAT_OK || e_ == CHAT_ERR_NOMEM, "%s at %ld: %s",      \
              #call, fail_at, chat_err_name(e_));                          \
  } while (0)
  static const char *const m[] = {"alice", "bob", "carol"};
  conv_cap cap = {0};
  bool existed;
  e = create(&ops, "g", CHAT_CONVERSATION_GROUP, "alice", m, 3, 1, &existed,
             &cap);
  cr_assert(e == CHAT_OK || e == CHAT_ERR_NOMEM);
  if (e == CHAT_ERR_NOMEM) {
    cr_assert_eq(cap.n, 0);
    cr_assert_eq(ops.conversation_get(ops.self, "g", NULL, NULL, NULL, NULL),
                 CHAT_ERR_NOT_FOUND, "a failed create is rolled back");
    OK_OR_NOMEM(create(&ops, "g", CHAT_CONVERSATION_GROUP, "alice", m, 3, 1,
                       &existed, NULL));
  }
  static char big[3000];
  memset(big, 'b', sizeof big);
  const char *refs[] = {"img", "img2"};
  chat_msg_in in[3] = {msg("g", 1, "alice", "1"), msg("g", 2, "bob", "2"),
                       msg("g", 3, "alice", "3")};
  in[1].body.ptr = big;
  in[1].body.len = sizeof big;
  in[2].media_refs = refs;
  in[2].n_media_refs = 2;
  chat_append_result r[3];
  OK_OR_NOMEM(ops.append(ops.self, in, 3, r, NULL));
  OK_OR_NOMEM(ops.media_put(ops.self, "img", "alice", "a/b", big, 2000, 1, NULL));
  OK_OR_NOMEM(ops.conversation_get(ops.self, "g", "bob", on_conv, &cap, NULL));
  char next[CHAT_CURSOR_BUF];
  OK_OR_NOMEM(ops.conversations_of(ops.self, "bob", NULL, 1, on_conv, &cap,
                                   next, NULL));
  msg_cap mc = {0};
  /* The 3000-byte body needs a scratch chunk of its own. */
  OK_OR_NOMEM(ops.messages(ops.self, "g", CHAT_PAGE_AFTER, 1, 1, on_msg,
                           &mc, NULL));
  upd_cap u = {0};
  chat_mark_in mk = {"g", "bob", CHAT_RECEIPT_READ, 3, 5, true, true};
  bool adv;
  e = ops.mark(ops.self, &mk, &adv, on_upd, &u, NULL);
  cr_assert(e == CHAT_OK || e == CHAT_ERR_NOMEM);
  if (e == CHAT_ERR_NOMEM) {
    cr_assert_not(adv);
    cr_assert_eq(u.n, 0);
    uint32_t d = 9, rd = 9;
    if (ops.receipts(ops.self, "g", 1, &d, &rd, NULL, NULL, NULL) == CHAT_OK)
      cr_assert_eq(rd, 0, "a failed mark is rolled back");
  }
  state_cap st = {0};
  OK_OR_NOMEM(ops.receipts(ops.self, "g", 1, NULL, NULL, on_state, &st, NULL));
  OK_OR_NOMEM(ops.device_register(ops.self, "bob", "p", "fcm", "t", 1, NULL));
  push_cap pc = {0};
  OK_OR_NOMEM(ops.push_targets(ops.self, "bob", on_push, &pc, NULL));
  OK_OR_NOMEM(ops.media_get(ops.self, "img", "alice", NULL, NULL, NULL));
  OK_OR_NOMEM(ops.messages(ops.self, "g", CHAT_PAGE_LATEST, 0, 3, NULL,
                           NULL, NULL));
  /* Section 8: an edit and a delete entry, a member change, bans, the
   * reader's view and the push marks. */
  chat_msg_in ed[2] = {msg("g", 10, "alice", "e1"),
                       msg("g", 11, "alice", "d1")};
  ed[0].body_type = CHAT_BODY_EDIT;
  ed[0].has_target_id = true;
  ed[0].target_id = 1;
  ed[0].target_sender = "alice";
  ed[1].body_type = CHAT_BODY_DELETE;
  ed[1].has_target_id = true;
  ed[1].target_id = 3;
  OK_OR_NOMEM(ops.append(ops.self, ed, 2, r, NULL));
  chat_member_change ch = {.conversation_id = "g",
                           .op = CHAT_MEMBER_REMOVE,
                           .actor_id = "alice",
                           .user_id = "alice",
                           .message_id = 20,
                           .server_ts = 5,
                           .body = {"alice left", 10},
                           .promote_message_id = 21,
                           .promote_suffix = {" is now an admin", 16}};
  chat_member_change_result res;
  OK_OR_NOMEM(ops.member_change(ops.self, &ch, &res, on_conv, &cap, NULL));
  OK_OR_NOMEM(ops.shadow_ban_set(ops.self, "bob", true, 1, NULL));
  uint64_t ver = 0;
  OK_OR_NOMEM(ops.shadow_bans(ops.self, 0, &ver, on_user, NULL, NULL));
  OK_OR_NOMEM(ops.messages_as(ops.self, "g", "carol", CHAT_PAGE_LATEST, 0, 5,
                              on_msg_any, NULL, NULL));
  OK_OR_NOMEM(ops.push_record(ops.self, "g", "carol", 2, NULL));
  uint64_t clear;
  OK_OR_NOMEM(ops.push_read(ops.self, "g", "carol", 3, &clear, NULL));
#undef OK_OR_NOMEM
  ops.destroy(ops.self);
  cr_assert_eq(fa.live, 0, "leak with allocation %ld failing", fail_at);
  return fa.count;
}

Test(sqlite, every_call_survives_each_failed_allocation) {
  long total = oom_scenario(-1);
  cr_assert_gt(total, 3, "the scenario allocates (%ld)", total);
  for (long k = 0; k < total; k++)
    oom_scenario(k);
}

/* Two gateways on one file mint ids independently; one that commits a
 * smaller id after a larger one is raised past it, so that ids grow in
 * commit order and a resume "after last_seen" cannot skip it. */
Test(sqlite, a_late_smaller_id_is_raised_past_the_last_one) {
  chat_storage_ops ops = open_mem();
  bool existed;
  cr_assert_eq(create(&ops, "d1", CHAT_CONVERSATION_DIRECT, "alice", ab, 2,
                      1000, &existed, NULL),
               CHAT_OK);
  cr_assert_eq(create(&ops, "d2", CHAT_CONVERSATION_DIRECT, "alice",
                      (const char *const[]){"alice", "carol"}, 2, 1000,
                      &existed, NULL),
               CHAT_OK);
  cr_assert_eq(put(&ops, "d1", 500, "alice", "a1").message_id, 500);
  chat_append_result r = put(&ops, "d1", 400, "bob", "b1");
  cr_assert_eq(r.message_id, 501);
  cr_assert_not(r.duplicate);
  /* Within one batch too, and other conversations keep their own ids. */
  chat_msg_in m[3] = {msg("d1", 450, "bob", "b2"), msg("d2", 300, "alice", "c1"),
                      msg("d1", 460, "bob", "b3")};
  chat_append_result rr[3];
  cr_assert_eq(ops.append(ops.self, m, 3, rr, NULL), CHAT_OK);
  cr_assert_eq(rr[0].message_id, 502);
  cr_assert_eq(rr[1].message_id, 300);
  cr_assert_eq(rr[2].message_id, 503);
  /* A retry reports the stored id, not the minted one. */
  r = put(&ops, "d1", 999, "bob", "b1");
  cr_assert(r.duplicate);
  cr_assert_eq(r.message_id, 501);
  ops.destroy(ops.self);
}

/* ---- fsyncs, counted by a VFS that wraps the default one ---- */

typedef struct sync_file {
  sqlite3_file base;
  sqlite3_file *real; /* follows this struct in the same allocation */
} sync_file;

static sqlite3_vfs *real_vfs;
static sqlite3_io_methods sync_methods;
static unsigned n_syncs;

static int sf_close(sqlite3_file *f) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods ? s->real->pMethods->xClose(s->real) : SQLITE_OK;
}
static int sf_read(sqlite3_file *f, void *b, int n, sqlite3_int64 o) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xRead(s->real, b, n, o);
}
static int sf_write(sqlite3_file *f, const void *b, int n, sqlite3_int64 o) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xWrite(s->real, b, n, o);
}
static int sf_truncate(sqlite3_file *f, sqlite3_int64 n) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xTruncate(s->real, n);
}
static int sf_sync(sqlite3_file *f, int flags) {
  sync_file *s = (sync_file *)f;
  n_syncs++;
  return s->real->pMethods->xSync(s->real, flags);
}
static int sf_size(sqlite3_file *f, sqlite3_int64 *n) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xFileSize(s->real, n);
}
static int sf_lock(sqlite3_file *f, int l) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xLock(s->real, l);
}
static int sf_unlock(sqlite3_file *f, int l) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xUnlock(s->real, l);
}
static int sf_check(sqlite3_file *f, int *out) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xCheckReservedLock(s->real, out);
}
static int sf_fcntl(sqlite3_file *f, int op, void *arg) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xFileControl(s->real, op, arg);
}
static int sf_sector(sqlite3_file *f) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xSectorSize(s->real);
}
static int sf_dev(sqlite3_file *f) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xDeviceCharacteristics(s->real);
}
static int sf_shm_map(sqlite3_file *f, int pg, int sz, int ext,
                      void volatile **pp) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xShmMap(s->real, pg, sz, ext, pp);
}
static int sf_shm_lock(sqlite3_file *f, int off, int n, int flags) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xShmLock(s->real, off, n, flags);
}
static void sf_shm_barrier(sqlite3_file *f) {
  sync_file *s = (sync_file *)f;
  s->real->pMethods->xShmBarrier(s->real);
}
static int sf_shm_unmap(sqlite3_file *f, int del) {
  sync_file *s = (sync_file *)f;
  return s->real->pMethods->xShmUnmap(s->real, del);
}

static int sv_open(sqlite3_vfs *v, const char *name, sqlite3_file *f,
                   int flags, int *out) {
  (void)v;
  sync_file *s = (sync_file *)f;
  s->real = (sqlite3_file *)(s + 1);
  int rc = real_vfs->xOpen(real_vfs, name, s->real, flags, out);
  /* Version 2 methods: no xFetch/xUnfetch, so SQLite does not mmap. */
  s->base.pMethods = rc == SQLITE_OK ? &sync_methods : NULL;
  return rc;
}

static sqlite3_vfs sync_vfs;

/* Installs the counting VFS as the default one (once per process). */
static void count_syncs(void) {
  if (real_vfs)
    return;
  real_vfs = sqlite3_vfs_find(NULL);
  cr_assert_not_null(real_vfs);
  sync_methods = (sqlite3_io_methods){
      .iVersion = 2, .xClose = sf_close, .xRead = sf_read,
      .xWrite = sf_write, .xTruncate = sf_truncate, .xSync = sf_sync,
      .xFileSize = sf_size, .xLock = sf_lock, .xUnlock = sf_unlock,
      .xCheckReservedLock = sf_check, .xFileControl = sf_fcntl,
      .xSectorSize = sf_sector, .xDeviceCharacteristics = sf_dev,
      .xShmMap = sf_shm_map, .xShmLock = sf_shm_lock,
      .xShmBarrier = sf_shm_barrier, .xShmUnmap = sf_shm_unmap};
  sync_vfs = *real_vfs;
  sync_vfs.zName = "chat-count-syncs";
  sync_vfs.szOsFile = (int)sizeof(sync_file) + real_vfs->szOsFile;
  sync_vfs.xOpen = sv_open;
  cr_assert_eq(sqlite3_vfs_register(&sync_vfs, 1), SQLITE_OK);
}

/* With synchronous=FULL every message commit is fsynced, but receipt marks
 * are not: 100 marks cost no fsync, and the next message commit fsyncs
 * (which makes the marks before it durable too). */
Test(sqlite_file, marks_ride_on_the_next_message_fsync) {
  count_syncs();
  chat_storage_ops ops = open_path(db_path);
  const char *const members[] = {"alice", "bob", "carol"};
  group(&ops, "g", members, 3);
  put(&ops, "g", 10, "alice", "m10");
  for (uint64_t i = 0; i < 100; i++)
    put(&ops, "g", 11 + i, "alice", NULL);
  unsigned before = n_syncs;
  for (uint64_t i = 0; i < 100; i++)
    mark(&ops, "g", i % 2 ? "bob" : "carol", CHAT_RECEIPT_READ, 11 + i, true,
         NULL);
  cr_assert_eq(n_syncs, before, "%u fsyncs for 100 marks", n_syncs - before);
  put(&ops, "g", 500, "alice", "m500");
  cr_assert_geq(n_syncs, before + 1, "the message commit was not fsynced");
  /* And the marks are there, on disk, after a reopen. */
  close_ops(&ops);
  ops = open_path(db_path);
  conv_view v = get(&ops, "g", "bob");
  cr_assert_eq(v.unread, 1, "bob read up to 110 of 111 messages");
  close_ops(&ops);
}

/* ------------------------------------------------------------------------
 * PROTOCOL.md section 8: edits and deletes, admins, bots, shadow bans, the
 * cold-direct cap and receipt-aware push. */

static const char *const abc[] = {"alice", "bob", "carol"};

/* An edit (body non-NULL) or delete entry of sender for target. */
static chat_msg_in entry(const char *conv, uint64_t id, const char *sender,
                         const char *cmid, uint64_t target,
                         const char *body) {
  chat_msg_in m = msg(conv, id, sender, cmid);
  m.body_type = body ? CHAT_BODY_EDIT : CHAT_BODY_DELETE;
  m.body.ptr = body ? body : "";
  m.body.len = body ? strlen(body) : 0;
  m.has_target_id = true;
  m.target_id = target;
  m.target_sender = sender;
  return m;
}

static chat_append_result put_one(chat_storage_ops *ops, chat_msg_in *m) {
  chat_append_result r;
  memset(&r, 0x5a, sizeof r);
  chat_err e = ops->append(ops->self, m, 1, &r, NULL);
  cr_assert_eq(e, CHAT_OK, "append: %s", chat_err_name(e));
  return r;
}

static msg_view one_msg(chat_storage_ops *ops, const char *conv,
                        uint64_t id) {
  msg_cap mc = {0};
  cr_assert_eq(ops->messages(ops->self, conv, CHAT_PAGE_AFTER, id - 1, 1,
                             on_msg, &mc, NULL),
               CHAT_OK);
  cr_assert_eq(mc.n, 1);
  cr_assert_eq(mc.v[0].id, id, "message %llu", (unsigned long long)id);
  return mc.v[0];
}

Test(sqlite, edit_replaces_the_body_in_place_and_erases_earlier_edits) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  put(&ops, "g", 10, "alice", "m1");
  chat_msg_in e1 = entry("g", 20, "alice", "e1", 10, "first fix");
  chat_append_result r = put_one(&ops, &e1);
  cr_assert_eq(r.status, CHAT_OK);
  cr_assert_eq(r.message_id, 20);
  cr_assert_not(r.duplicate);
  msg_view t = one_msg(&ops, "g", 10);
  cr_assert_str_eq(t.body, "first fix");
  cr_assert(t.has_edited);
  cr_assert_eq(t.edited, e1.server_ts);
  cr_assert_not(t.deleted);
  msg_view ev = one_msg(&ops, "g", 20);
  cr_assert_eq(ev.body_type, CHAT_BODY_EDIT);
  cr_assert(ev.has_target);
  cr_assert_eq(ev.target, 10);
  cr_assert_str_eq(ev.body, "first fix");
  cr_assert_str_eq(ev.cmid, "e1");

  chat_msg_in e2 = entry("g", 30, "alice", "e2", 10, "second fix");
  cr_assert_eq(put_one(&ops, &e2).status, CHAT_OK);
  t = one_msg(&ops, "g", 10);
  cr_assert_str_eq(t.body, "second fix");
  cr_assert_eq(t.edited, e2.server_ts);
  /* The superseded text is gone from the store, not only from the
   * target: the first edit entry keeps its place, without its body. */
  ev = one_msg(&ops, "g", 20);
  cr_assert_eq(ev.body_len, 0);
  cr_assert_eq(one_msg(&ops, "g", 30).body_len, 10);
  /* Edit entries are not the chat list's last message nor unread. */
  conv_view v = get(&ops, "g", "bob");
  cr_assert(v.has_last);
  cr_assert_eq(v.last_id, 10);
  cr_assert_str_eq(v.last_body, "second fix");
  cr_assert(v.last_has_edited);
  cr_assert_eq(v.unread, 1);
  close_ops(&ops);
}

Test(sqlite, delete_erases_the_body_media_and_every_edit) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  cr_assert_eq(ops.media_put(ops.self, "img", "alice", "image/png", "PNG", 3,
                             1, NULL),
               CHAT_OK);
  chat_msg_in m = msg("g", 10, "alice", "m1");
  const char *refs[] = {"img"};
  m.body_type = CHAT_BODY_MEDIA;
  m.media_refs = refs;
  m.n_media_refs = 1;
  put_one(&ops, &m);
  cr_assert_eq(ops.media_get(ops.self, "img", "bob", NULL, NULL, NULL),
               CHAT_OK, "bob reads the picture through the message");
  chat_msg_in e = entry("g", 20, "alice", "e1", 10, "caption");
  put_one(&ops, &e);
  chat_msg_in d = entry("g", 30, "alice", "d1", 10, NULL);
  d.body.ptr = "ignored";
  d.body.len = 7;
  chat_append_result r = put_one(&ops, &d);
  cr_assert_eq(r.status, CHAT_OK);
  msg_view t = one_msg(&ops, "g", 10);
  cr_assert(t.deleted);
  cr_assert_eq(t.body_len, 0);
  cr_assert_eq(t.n_media, 0);
  cr_assert_not(t.has_edited);
  cr_assert_eq(one_msg(&ops, "g", 20).body_len, 0, "the edit's text too");
  msg_view dv = one_msg(&ops, "g", 30);
  cr_assert_eq(dv.body_type, CHAT_BODY_DELETE);
  cr_assert_eq(dv.body_len, 0, "a delete entry stores no body");
  cr_assert_eq(dv.target, 10);
  cr_assert_eq(ops.media_get(ops.self, "img", "bob", NULL, NULL, NULL),
               CHAT_ERR_DENIED, "no message shares the picture any more");
  cr_assert_eq(ops.media_get(ops.self, "img", "alice", NULL, NULL, NULL),
               CHAT_OK, "its owner keeps it");
  conv_view v = get(&ops, "g", "bob");
  cr_assert_eq(v.last_id, 10);
  cr_assert(v.last_deleted);
  cr_assert_eq(v.last_body_len, 0);
  close_ops(&ops);
}

/* "Erased, not hidden": after a delete and a checkpoint, the bytes of the
 * body are nowhere in the database file. */
Test(sqlite_file, deleted_bodies_leave_no_bytes_on_disk) {
  chat_storage_ops ops = open_path(db_path);
  group(&ops, "g", abc, 3);
  static const char secret[] = "SECRET-body-7f3a9c-do-not-keep";
  static const char edited[] = "EDITED-body-41be02-do-not-keep";
  chat_msg_in m = msg("g", 10, "alice", "m1");
  m.body.ptr = secret;
  m.body.len = sizeof secret - 1;
  put_one(&ops, &m);
  chat_msg_in e = entry("g", 20, "alice", "e1", 10, edited);
  put_one(&ops, &e);
  chat_msg_in d = entry("g", 30, "alice", "d1", 10, NULL);
  put_one(&ops, &d);
  close_ops(&ops);
  /* Fold the log into the file and empty it, as SQLite does over time. */
  cr_assert_eq(file_int("PRAGMA wal_checkpoint(TRUNCATE)"), 0);
  for (int k = 0; k < 2; k++) {
    char p[160];
    snprintf(p, sizeof p, "%s%s", db_path, k ? "-wal" : "");
    FILE *f = fopen(p, "rb");
    if (!f)
      continue;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    for (int w = 0; w < 2; w++) {
      const char *needle = w ? edited : secret;
      size_t nl = strlen(needle);
      for (size_t i = 0; i + nl <= n; i++)
        cr_assert(memcmp(buf + i, needle, nl) != 0,
                  "%s still holds \"%s\" at %zu", p, needle, i);
    }
  }
}

Test(sqlite, edit_and_delete_targets_are_checked_after_the_dedup) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  put(&ops, "g", 10, "alice", "m1");
  put(&ops, "g", 11, "bob", "b1");
  chat_msg_in sys = msg("g", 12, "alice", NULL);
  sys.body_type = CHAT_BODY_SYSTEM;
  put_one(&ops, &sys);
  /* Not a message of this conversation. */
  chat_msg_in x = entry("g", 20, "alice", "x1", 999, "no");
  cr_assert_eq(put_one(&ops, &x).status, CHAT_ERR_NOT_FOUND);
  /* Another sender's message, with the sender guard. */
  x = entry("g", 21, "alice", "x2", 11, "mine now");
  chat_append_result r = put_one(&ops, &x);
  cr_assert_eq(r.status, CHAT_ERR_DENIED);
  cr_assert_eq(r.message_id, 0, "nothing is stored");
  /* A system message, and an edit entry, are not targets. */
  x = entry("g", 22, "alice", "x3", 12, NULL);
  x.target_sender = NULL;
  cr_assert_eq(put_one(&ops, &x).status, CHAT_ERR_NOT_FOUND);
  chat_msg_in ok = entry("g", 23, "alice", "e1", 10, "fixed");
  cr_assert_eq(put_one(&ops, &ok).status, CHAT_OK);
  x = entry("g", 24, "alice", "x4", 23, "edit of an edit");
  cr_assert_eq(put_one(&ops, &x).status, CHAT_ERR_NOT_FOUND);
  /* Past the window. */
  x = entry("g", 25, "alice", "x5", 10, "late");
  x.target_min_ts = msg("g", 10, "a", NULL).server_ts + 1;
  cr_assert_eq(put_one(&ops, &x).status, CHAT_ERR_DENIED);
  /* An admin's delete has no sender guard. */
  chat_msg_in del = entry("g", 26, "alice", "d1", 11, NULL);
  del.target_sender = NULL;
  cr_assert_eq(put_one(&ops, &del).status, CHAT_OK);
  cr_assert(one_msg(&ops, "g", 11).deleted);
  /* A deleted target is gone for new entries ... */
  x = entry("g", 27, "bob", "b-edit", 11, "back?");
  cr_assert_eq(put_one(&ops, &x).status, CHAT_ERR_NOT_FOUND);
  x = entry("g", 28, "alice", "d2", 11, NULL);
  x.target_sender = NULL;
  cr_assert_eq(put_one(&ops, &x).status, CHAT_ERR_NOT_FOUND);
  /* ... but a retry of what was stored is its duplicate, whatever
   * happened to the target and whatever the guards say now. */
  chat_msg_in retry = entry("g", 40, "alice", "d1", 11, NULL);
  retry.target_sender = "someone-else";
  r = put_one(&ops, &retry);
  cr_assert_eq(r.status, CHAT_OK);
  cr_assert(r.duplicate);
  cr_assert_eq(r.message_id, 26);
  retry = entry("g", 41, "alice", "e1", 10, "fixed");
  retry.target_min_ts = INT64_MAX;
  r = put_one(&ops, &retry);
  cr_assert(r.duplicate);
  cr_assert_eq(r.message_id, 23);
  /* The refused entries took no client_msg_id: x2 may be used again. */
  x = entry("g", 50, "alice", "x2", 10, "now for my own");
  r = put_one(&ops, &x);
  cr_assert_eq(r.status, CHAT_OK);
  cr_assert_not(r.duplicate);
  close_ops(&ops);
}

/* One refused entry does not fail its batch. */
Test(sqlite, a_refused_entry_leaves_the_rest_of_the_batch) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  put(&ops, "g", 10, "alice", "m1");
  chat_msg_in b[3] = {msg("g", 20, "bob", "b1"),
                      entry("g", 21, "bob", "bad", 10, "not mine"),
                      entry("g", 22, "alice", "e1", 10, "mine")};
  chat_append_result r[3];
  cr_assert_eq(ops.append(ops.self, b, 3, r, NULL), CHAT_OK);
  cr_assert_eq(r[0].status, CHAT_OK);
  cr_assert_eq(r[0].message_id, 20);
  cr_assert_eq(r[1].status, CHAT_ERR_DENIED);
  cr_assert_eq(r[2].status, CHAT_OK);
  cr_assert_eq(r[2].message_id, 22);
  msg_cap mc = {0};
  cr_assert_eq(ops.messages(ops.self, "g", CHAT_PAGE_LATEST, 0, 10, on_msg,
                            &mc, NULL),
               CHAT_OK);
  cr_assert_eq(mc.n, 3, "m1, b1 and the edit");
  uint64_t max = 0;
  cr_assert_eq(ops.max_message_id(ops.self, &max, NULL), CHAT_OK);
  cr_assert_eq(max, 22);
  close_ops(&ops);
}

Test(sqlite, entries_are_checked_for_shape) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  put(&ops, "g", 10, "alice", "m1");
  chat_append_result r;
  chat_msg_in m = entry("g", 20, "alice", "e", 10, "x");
  m.has_target_id = false; /* an edit without a target */
  cr_assert_eq(ops.append(ops.self, &m, 1, &r, NULL), CHAT_ERR_INVAL);
  m = msg("g", 21, "alice", "t");
  m.has_target_id = true; /* a text message with one */
  m.target_id = 10;
  cr_assert_eq(ops.append(ops.self, &m, 1, &r, NULL), CHAT_ERR_INVAL);
  m = msg("g", 22, "alice", "k");
  m.sender_kind = (chat_sender_kind)7;
  cr_assert_eq(ops.append(ops.self, &m, 1, &r, NULL), CHAT_ERR_INVAL);
  close_ops(&ops);
}

Test(sqlite, sender_kind_is_stored_and_read_back) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  chat_msg_in m = msg("g", 10, "weather", "w1");
  m.sender_kind = CHAT_SENDER_BOT;
  put_one(&ops, &m);
  put(&ops, "g", 11, "alice", "a1");
  cr_assert_eq(one_msg(&ops, "g", 10).sender_kind, CHAT_SENDER_BOT);
  cr_assert_eq(one_msg(&ops, "g", 11).sender_kind, CHAT_SENDER_USER);
  close_ops(&ops);
}

/* ---- admins ---- */

static chat_err change(chat_storage_ops *ops, const char *conv,
                       chat_member_op op, const char *actor,
                       const char *user, bool need_admin, bool protect,
                       uint64_t id, chat_member_change_result *res,
                       conv_cap *cap) {
  chat_member_change ch = {.conversation_id = conv,
                           .op = op,
                           .actor_id = actor,
                           .user_id = user,
                           .now_ms = (int64_t)id * 10,
                           .actor_must_be_admin = need_admin,
                           .protect_creator = protect,
                           .max_members = 4,
                           .message_id = id,
                           .server_ts = 2000000 + (int64_t)id,
                           .body = {"changed", 7},
                           .promote_message_id = id + 1,
                           .promote_suffix = {" is now an admin", 16}};
  chat_member_change_result dummy;
  return ops->member_change(ops->self, &ch, res ? res : &dummy,
                            cap ? on_conv : NULL, cap, NULL);
}

static bool has_admin(const conv_view *v, const char *user) {
  for (size_t i = 0; i < v->n_admins; i++)
    if (strcmp(v->admins[i], user) == 0)
      return true;
  return false;
}

Test(sqlite, the_creator_is_a_groups_first_admin) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  conv_view v = get(&ops, "g", "bob");
  cr_assert_eq(v.n_admins, 1);
  cr_assert_str_eq(v.admins[0], "alice");
  bool existed;
  cr_assert_eq(create(&ops, "d", CHAT_CONVERSATION_DIRECT, "alice", ab, 2, 1,
                      &existed, NULL),
               CHAT_OK);
  cr_assert_eq(get(&ops, "d", "alice").n_admins, 0);
  /* The chat list carries them too. */
  conv_cap cap = {0};
  char next[CHAT_CURSOR_BUF];
  cr_assert_eq(ops.conversations_of(ops.self, "carol", NULL, 10, on_conv,
                                    &cap, next, NULL),
               CHAT_OK);
  cr_assert_eq(cap.n, 1);
  cr_assert_eq(cap.v[0].n_admins, 1);
  cr_assert_str_eq(cap.v[0].admins[0], "alice");
  close_ops(&ops);
}

Test(sqlite, member_changes_store_a_system_message_each) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  put(&ops, "g", 50, "bob", "b1");
  chat_member_change_result res;
  conv_cap cap = {0};
  /* A grant by an admin: stored with its message; id 40 is raised past
   * the conversation's last id (50). */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADMIN_GRANT, "alice", "bob",
                      true, false, 40, &res, &cap),
               CHAT_OK);
  cr_assert(res.changed);
  cr_assert_eq(res.message.message_id, 51);
  cr_assert_not(res.promoted);
  cr_assert_eq(cap.n, 1);
  cr_assert(has_admin(&cap.v[0], "bob"));
  msg_view sm = one_msg(&ops, "g", 51);
  cr_assert_eq(sm.body_type, CHAT_BODY_SYSTEM);
  cr_assert_str_eq(sm.sender, "alice");
  cr_assert_str_eq(sm.body, "changed");
  cr_assert_not(sm.has_cmid);
  /* Granting again changes nothing and stores nothing. */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADMIN_GRANT, "alice", "bob",
                      true, false, 60, &res, NULL),
               CHAT_OK);
  cr_assert_not(res.changed);
  msg_cap mc = {0};
  ops.messages(ops.self, "g", CHAT_PAGE_AFTER, 51, 10, on_msg, &mc, NULL);
  cr_assert_eq(mc.n, 0);
  /* Add dave (any member may add), then a non-admin's guarded change is
   * refused. */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADD, "carol", "dave", false,
                      false, 70, &res, NULL),
               CHAT_OK);
  cr_assert(res.changed);
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_REMOVE, "carol", "dave", true,
                      true, 80, &res, NULL),
               CHAT_ERR_DENIED);
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADMIN_GRANT, "carol", "carol",
                      true, false, 81, &res, NULL),
               CHAT_ERR_DENIED);
  /* The creator is protected from others, admins included. */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_REMOVE, "bob", "alice", true,
                      true, 82, &res, NULL),
               CHAT_ERR_DENIED);
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADMIN_REVOKE, "bob", "alice",
                      true, true, 83, &res, NULL),
               CHAT_ERR_DENIED);
  /* Non-members and a full group. */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADMIN_GRANT, "alice", "zoe",
                      true, false, 84, &res, NULL),
               CHAT_ERR_NOT_FOUND);
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADD, "alice", "erin", false,
                      false, 85, &res, NULL),
               CHAT_ERR_CONFLICT, "max_members is 4");
  cr_assert_eq(change(&ops, "nope", CHAT_MEMBER_ADD, "alice", "erin", false,
                      false, 86, &res, NULL),
               CHAT_ERR_NOT_FOUND);
  bool existed;
  create(&ops, "d", CHAT_CONVERSATION_DIRECT, "alice", ab, 2, 1, &existed,
         NULL);
  cr_assert_eq(change(&ops, "d", CHAT_MEMBER_REMOVE, "alice", "alice", false,
                      false, 87, &res, NULL),
               CHAT_ERR_CONFLICT);
  /* A refused change stored nothing. */
  mc.n = 0;
  ops.messages(ops.self, "g", CHAT_PAGE_AFTER, 51, 10, on_msg, &mc, NULL);
  cr_assert_eq(mc.n, 1, "only dave's addition");
  /* An admin removes another member. */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_REMOVE, "bob", "dave", true,
                      true, 90, &res, &cap),
               CHAT_OK);
  conv_view v = get(&ops, "g", NULL);
  cr_assert_eq(v.n_members, 3);
  close_ops(&ops);
}

Test(sqlite, a_group_keeps_an_admin) {
  chat_storage_ops ops = open_mem();
  bool existed;
  /* Join order: alice, bob and dave at 500, carol later. */
  cr_assert_eq(create(&ops, "g", CHAT_CONVERSATION_GROUP, "alice",
                      (const char *const[]){"alice", "dave", "bob"}, 3, 500,
                      &existed, NULL),
               CHAT_OK);
  chat_member_change_result res;
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADD, "alice", "carol", false,
                      false, 100, &res, NULL),
               CHAT_OK);
  /* The last admin leaves: the longest-standing member (ties by id:
   * bob before dave) becomes admin, with a second system message. */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_REMOVE, "alice", "alice",
                      false, false, 200, &res, NULL),
               CHAT_OK);
  cr_assert(res.promoted);
  cr_assert_str_eq(res.promoted_user, "bob");
  cr_assert_eq(res.promote_message.message_id, 201);
  msg_view pm = one_msg(&ops, "g", 201);
  cr_assert_str_eq(pm.body, "bob is now an admin");
  cr_assert_str_eq(pm.sender, "alice", "the admin who left");
  conv_view v = get(&ops, "g", "bob");
  cr_assert_eq(v.n_admins, 1);
  cr_assert_str_eq(v.admins[0], "bob");
  /* bob steps down: dave (joined before carol) is promoted. */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADMIN_REVOKE, "bob", "bob",
                      false, false, 300, &res, NULL),
               CHAT_OK);
  cr_assert(res.promoted);
  cr_assert_str_eq(res.promoted_user, "dave");
  /* An admin who is not the last steps down without a promotion. */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADMIN_GRANT, "dave", "carol",
                      true, false, 400, &res, NULL),
               CHAT_OK);
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADMIN_REVOKE, "dave", "dave",
                      false, false, 500, &res, NULL),
               CHAT_OK);
  cr_assert_not(res.promoted);
  /* The last member cannot step down: nobody would be left to promote. */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_REMOVE, "carol", "bob", true,
                      true, 600, &res, NULL),
               CHAT_OK);
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_REMOVE, "carol", "dave", true,
                      true, 700, &res, NULL),
               CHAT_OK);
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_ADMIN_REVOKE, "carol", "carol",
                      false, false, 800, &res, NULL),
               CHAT_ERR_CONFLICT);
  v = get(&ops, "g", "carol");
  cr_assert_eq(v.n_admins, 1, "unchanged by the refusal");
  /* ... but may leave: an empty group needs no admin. */
  cr_assert_eq(change(&ops, "g", CHAT_MEMBER_REMOVE, "carol", "carol", false,
                      false, 900, &res, NULL),
               CHAT_OK);
  cr_assert_not(res.promoted);
  cr_assert_eq(get(&ops, "g", NULL).n_members, 0);
  close_ops(&ops);
}

/* The older member_remove keeps the rule too (without a message). */
Test(sqlite, member_remove_also_keeps_an_admin) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  cr_assert_eq(ops.member_remove(ops.self, "g", "alice", NULL), CHAT_OK);
  conv_view v = get(&ops, "g", NULL);
  cr_assert_eq(v.n_admins, 1);
  cr_assert_str_eq(v.admins[0], "bob");
  close_ops(&ops);
}

/* A v1 database (before section 8) migrates: groups get an admin, old
 * messages are users' and count as "written". */
Test(sqlite_file, migrates_a_v1_database_with_data) {
  sqlite3 *db;
  cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
  static const char v1[] =
      "CREATE TABLE conversations(conversation_id TEXT PRIMARY KEY,"
      " type INTEGER NOT NULL, name TEXT, created_by TEXT NOT NULL,"
      " created_at INTEGER NOT NULL, direct_key TEXT UNIQUE,"
      " last_message_id INTEGER, last_message_ts INTEGER,"
      " last_activity INTEGER NOT NULL);"
      "CREATE TABLE members(conversation_id TEXT NOT NULL,"
      " user_id TEXT NOT NULL, joined_at INTEGER NOT NULL,"
      " last_read_message_id INTEGER,"
      " delivered_up_to INTEGER NOT NULL DEFAULT 0,"
      " read_up_to INTEGER NOT NULL DEFAULT 0,"
      " PRIMARY KEY(conversation_id, user_id)) WITHOUT ROWID;"
      "CREATE INDEX members_by_user ON members(user_id);"
      "CREATE INDEX members_by_join ON members(conversation_id, joined_at,"
      " user_id);"
      "CREATE TABLE messages(conversation_id TEXT NOT NULL,"
      " message_id INTEGER NOT NULL, sender_id TEXT NOT NULL,"
      " client_msg_id TEXT, body BLOB NOT NULL, body_type INTEGER NOT NULL,"
      " reply_to INTEGER, server_ts INTEGER NOT NULL,"
      " media_count INTEGER NOT NULL DEFAULT 0, delivered_at INTEGER,"
      " read_at INTEGER, delivered_count INTEGER NOT NULL DEFAULT 0,"
      " read_count INTEGER NOT NULL DEFAULT 0,"
      " PRIMARY KEY(conversation_id, message_id)) WITHOUT ROWID;"
      "CREATE UNIQUE INDEX messages_dedup ON messages(sender_id,"
      " client_msg_id);"
      "CREATE TABLE message_media(conversation_id TEXT NOT NULL,"
      " message_id INTEGER NOT NULL, idx INTEGER NOT NULL,"
      " media_id TEXT NOT NULL,"
      " PRIMARY KEY(conversation_id, message_id, idx)) WITHOUT ROWID;"
      "CREATE INDEX message_media_by_media ON message_media(media_id);"
      "CREATE TABLE group_receipts(conversation_id TEXT NOT NULL,"
      " message_id INTEGER NOT NULL, member_id TEXT NOT NULL,"
      " state INTEGER NOT NULL, state_ts INTEGER NOT NULL,"
      " PRIMARY KEY(conversation_id, message_id, member_id)) WITHOUT ROWID;"
      "CREATE INDEX group_receipts_by_ts ON group_receipts(state_ts);"
      "CREATE TABLE devices(user_id TEXT NOT NULL, device_id TEXT NOT NULL,"
      " platform TEXT, push_token TEXT, updated_at INTEGER NOT NULL,"
      " PRIMARY KEY(user_id, device_id)) WITHOUT ROWID;"
      "CREATE TABLE media(media_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL,"
      " content_type TEXT, data BLOB NOT NULL, created_at INTEGER NOT NULL);"
      "CREATE TABLE meta(max_message_id INTEGER NOT NULL);"
      "INSERT INTO meta VALUES(7);"
      /* g1: its creator is still there; g2: its creator left, carol is
       * the longest-standing member; d: a direct chat. */
      "INSERT INTO conversations VALUES('g1', 2, 'one', 'alice', 1, NULL,"
      " 7, 7, 7);"
      "INSERT INTO conversations VALUES('g2', 2, 'two', 'zed', 1, NULL,"
      " NULL, NULL, 1);"
      "INSERT INTO conversations VALUES('d', 1, NULL, 'alice', 1,"
      " 'alice\nbob', NULL, NULL, 1);"
      "INSERT INTO members(conversation_id, user_id, joined_at) VALUES"
      " ('g1', 'alice', 1), ('g1', 'bob', 1), ('g2', 'dave', 5),"
      " ('g2', 'carol', 2), ('d', 'alice', 1), ('d', 'bob', 1);"
      "INSERT INTO messages(conversation_id, message_id, sender_id,"
      " client_msg_id, body, body_type, server_ts) VALUES"
      " ('g1', 7, 'bob', 'b7', 'old', 0, 7);"
      "PRAGMA user_version = 1;";
  cr_assert_eq(sqlite3_exec(db, v1, NULL, NULL, NULL), SQLITE_OK, "%s",
               sqlite3_errmsg(db));
  sqlite3_close(db);
  chat_storage_ops ops = open_path(db_path);
  conv_view v = get(&ops, "g1", "bob");
  cr_assert_eq(v.n_admins, 1);
  cr_assert_str_eq(v.admins[0], "alice");
  cr_assert_eq(v.last_id, 7);
  cr_assert_str_eq(v.last_body, "old");
  v = get(&ops, "g2", NULL);
  cr_assert_eq(v.n_admins, 1);
  cr_assert_str_eq(v.admins[0], "carol");
  cr_assert_eq(get(&ops, "d", NULL).n_admins, 0);
  cr_assert_eq(one_msg(&ops, "g1", 7).sender_kind, CHAT_SENDER_USER);
  /* bob wrote to alice in g1 before: a direct chat with him is not cold,
   * even with a cap of 1 already used up. */
  chat_conversation_new c = {.conversation_id = "d2",
                             .type = CHAT_CONVERSATION_DIRECT,
                             .created_by = "alice",
                             .members = (const char *const[]){"alice", "x"},
                             .n_members = 2,
                             .now_ms = 10,
                             .cold_direct_limit = 1,
                             .cold_direct_since_ms = 0};
  bool existed;
  cr_assert_eq(ops.conversation_create(ops.self, &c, &existed, NULL, NULL,
                                       NULL),
               CHAT_OK);
  c.conversation_id = "d3";
  c.members = (const char *const[]){"alice", "y"};
  cr_assert_eq(ops.conversation_create(ops.self, &c, &existed, NULL, NULL,
                                       NULL),
               CHAT_ERR_RATE_LIMITED);
  close_ops(&ops);
  cr_assert_eq(file_int("PRAGMA user_version"), 2);
  cr_assert_eq(file_int("SELECT count(*) FROM writers WHERE sender_id = 'bob'"
                        " AND conversation_id = 'g1'"),
               1);
}

/* ---- the cap on cold direct conversations ---- */

static chat_err direct(chat_storage_ops *ops, const char *id, const char *by,
                       const char *peer, int64_t now, uint32_t limit,
                       int64_t since, bool *existed) {
  const char *m[] = {by, peer};
  chat_conversation_new c = {.conversation_id = id,
                             .type = CHAT_CONVERSATION_DIRECT,
                             .created_by = by,
                             .members = m,
                             .n_members = 2,
                             .now_ms = now,
                             .cold_direct_limit = limit,
                             .cold_direct_since_ms = since};
  return ops->conversation_create(ops->self, &c, existed, NULL, NULL, NULL);
}

Test(sqlite, cold_direct_conversations_are_capped_per_window) {
  chat_storage_ops ops = open_mem();
  bool existed;
  cr_assert_eq(direct(&ops, "d1", "spam", "u1", 100, 2, 50, &existed),
               CHAT_OK);
  cr_assert_eq(direct(&ops, "d2", "spam", "u2", 110, 2, 50, &existed),
               CHAT_OK);
  cr_assert_eq(direct(&ops, "d3", "spam", "u3", 120, 2, 50, &existed),
               CHAT_ERR_RATE_LIMITED);
  cr_assert_eq(ops.conversation_get(ops.self, "d3", NULL, NULL, NULL, NULL),
               CHAT_ERR_NOT_FOUND, "nothing was created");
  /* An existing pair is returned, never refused. */
  cr_assert_eq(direct(&ops, "dx", "spam", "u1", 130, 2, 50, &existed),
               CHAT_OK);
  cr_assert(existed);
  /* Someone who wrote to spam (u1 in d1) is not cold: group with u4,
   * where u4 writes, then a direct chat with u4 is not counted. */
  group(&ops, "g", (const char *const[]){"u4", "spam"}, 2);
  put(&ops, "g", 10, "u4", "hello");
  cr_assert_eq(direct(&ops, "d4", "spam", "u4", 140, 2, 50, &existed),
               CHAT_OK);
  cr_assert_not(existed);
  /* A system message does not count as writing. */
  group(&ops, "g2", (const char *const[]){"u5", "spam"}, 2);
  chat_msg_in sys = msg("g2", 20, "u5", NULL);
  sys.body_type = CHAT_BODY_SYSTEM;
  put_one(&ops, &sys);
  cr_assert_eq(direct(&ops, "d5", "spam", "u5", 150, 2, 50, &existed),
               CHAT_ERR_RATE_LIMITED);
  /* A new window (a new day) starts the count again; 0 is no cap. */
  cr_assert_eq(direct(&ops, "d5", "spam", "u5", 200, 2, 150, &existed),
               CHAT_OK);
  cr_assert_eq(direct(&ops, "d6", "spam", "u6", 210, 0, 0, &existed),
               CHAT_OK);
  /* The cap is the creator's: others are not affected. */
  cr_assert_eq(direct(&ops, "d7", "u7", "u8", 210, 1, 0, &existed), CHAT_OK);
  close_ops(&ops);
}

/* ---- shadow bans ---- */

typedef struct user_cap {
  int n;
  char v[8][CHAT_ID_BUF];
} user_cap;

static void on_user_cap(void *ctx, const char *user) {
  user_cap *c = ctx;
  cr_assert_lt(c->n, 8);
  snprintf(c->v[c->n++], CHAT_ID_BUF, "%s", user);
}

Test(sqlite, shadow_ban_list_is_versioned) {
  chat_storage_ops ops = open_mem();
  uint64_t v0 = 0, v = 0;
  user_cap uc = {0};
  cr_assert_eq(ops.shadow_bans(ops.self, 0, &v0, on_user_cap, &uc, NULL),
               CHAT_OK);
  cr_assert_neq(v0, 0);
  cr_assert_eq(uc.n, 0);
  cr_assert_eq(ops.shadow_ban_set(ops.self, "spam", true, 1, NULL), CHAT_OK);
  cr_assert_eq(ops.shadow_ban_set(ops.self, "spam", true, 2, NULL), CHAT_OK,
               "idempotent");
  cr_assert_eq(ops.shadow_ban_set(ops.self, "troll", true, 3, NULL),
               CHAT_OK);
  cr_assert_eq(ops.shadow_bans(ops.self, v0, &v, on_user_cap, &uc, NULL),
               CHAT_OK);
  cr_assert_neq(v, v0);
  cr_assert_eq(uc.n, 2);
  cr_assert_str_eq(uc.v[0], "spam");
  cr_assert_str_eq(uc.v[1], "troll");
  /* Unchanged: nothing emitted. */
  uint64_t v2 = 0;
  uc.n = 0;
  cr_assert_eq(ops.shadow_bans(ops.self, v, &v2, on_user_cap, &uc, NULL),
               CHAT_OK);
  cr_assert_eq(v2, v);
  cr_assert_eq(uc.n, 0);
  /* Unbanning a user not banned changes nothing either. */
  cr_assert_eq(ops.shadow_ban_set(ops.self, "nobody", false, 4, NULL),
               CHAT_OK);
  cr_assert_eq(ops.shadow_bans(ops.self, v, &v2, on_user_cap, &uc, NULL),
               CHAT_OK);
  cr_assert_eq(v2, v);
  cr_assert_eq(ops.shadow_ban_set(ops.self, "spam", false, 5, NULL), CHAT_OK);
  cr_assert_eq(ops.shadow_bans(ops.self, v, &v2, on_user_cap, &uc, NULL),
               CHAT_OK);
  cr_assert_eq(uc.n, 1);
  cr_assert_str_eq(uc.v[0], "troll");
  cr_assert_eq(ops.shadow_ban_set(ops.self, "bad id", true, 5, NULL),
               CHAT_ERR_INVAL);
  close_ops(&ops);
}

/* Another process (chatd ban) writes the ban into the file; a store that
 * is open already sees the new version at its next read. */
Test(sqlite_file, a_ban_from_another_connection_is_seen) {
  chat_storage_ops srv = open_path(db_path);
  uint64_t v0, v1;
  cr_assert_eq(srv.shadow_bans(srv.self, 0, &v0, NULL, NULL, NULL), CHAT_OK);
  chat_storage_ops tool = open_path(db_path);
  cr_assert_eq(tool.shadow_ban_set(tool.self, "spam", true, 1, NULL),
               CHAT_OK);
  close_ops(&tool);
  user_cap uc = {0};
  cr_assert_eq(srv.shadow_bans(srv.self, v0, &v1, on_user_cap, &uc, NULL),
               CHAT_OK);
  cr_assert_neq(v1, v0);
  cr_assert_eq(uc.n, 1);
  close_ops(&srv);
}

Test(sqlite, shadow_banned_messages_are_seen_by_their_sender_only) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  put(&ops, "g", 10, "alice", "a1");
  put(&ops, "g", 15, "bob", "b0");
  cr_assert_eq(ops.shadow_ban_set(ops.self, "bob", true, 1, NULL), CHAT_OK);
  cr_assert(put(&ops, "g", 20, "bob", "b1").withheld);
  cr_assert(put(&ops, "g", 30, "bob", "b2").withheld);
  cr_assert_not(put(&ops, "g", 35, "alice", "a2").withheld);
  /* A withheld edit is stored, but changes nothing others read back. */
  chat_msg_in e = entry("g", 36, "bob", "e1", 15, "edited while banned");
  chat_append_result er = put_one(&ops, &e);
  cr_assert_eq(er.status, CHAT_OK);
  cr_assert(er.withheld);
  cr_assert_str_eq(one_msg(&ops, "g", 15).body, "hi");
  /* Others: not in history, unread or last_message; what bob sent
   * before the ban stays. */
  msg_cap mc = {0};
  cr_assert_eq(ops.messages_as(ops.self, "g", "carol", CHAT_PAGE_LATEST, 0,
                               10, on_msg, &mc, NULL),
               CHAT_OK);
  cr_assert_eq(mc.n, 3);
  cr_assert_eq(mc.v[0].id, 35);
  cr_assert_eq(mc.v[1].id, 15);
  cr_assert_eq(mc.v[2].id, 10);
  /* limit counts what is emitted: the one message after 15 is 35. */
  mc.n = 0;
  ops.messages_as(ops.self, "g", "carol", CHAT_PAGE_AFTER, 15, 1, on_msg,
                  &mc, NULL);
  cr_assert_eq(mc.n, 1);
  cr_assert_eq(mc.v[0].id, 35);
  mc.n = 0;
  ops.messages_as(ops.self, "g", "carol", CHAT_PAGE_BEFORE, 35, 10, on_msg,
                  &mc, NULL);
  cr_assert_eq(mc.n, 2);
  put(&ops, "g", 37, "bob", "b-late"); /* still banned: withheld */
  conv_view v = get(&ops, "g", "carol");
  cr_assert_eq(v.last_id, 35);
  cr_assert_eq(v.unread, 3, "10, 15 and 35");
  v = get(&ops, "g", NULL);
  cr_assert_eq(v.last_id, 35, "a view for nobody hides them too");
  conv_cap cap = {0};
  char next[CHAT_CURSOR_BUF];
  ops.conversations_of(ops.self, "carol", NULL, 10, on_conv, &cap, next,
                       NULL);
  cr_assert_eq(cap.v[0].last_id, 35);
  cr_assert_eq(cap.v[0].unread, 3);
  /* The sender sees everything, as if nothing had happened. */
  mc.n = 0;
  ops.messages_as(ops.self, "g", "bob", CHAT_PAGE_LATEST, 0, 10, on_msg, &mc,
                  NULL);
  cr_assert_eq(mc.n, 7);
  cr_assert_eq(get(&ops, "g", "bob").last_id, 37);
  /* The raw log has everything. */
  mc.n = 0;
  ops.messages(ops.self, "g", CHAT_PAGE_LATEST, 0, 10, on_msg, &mc, NULL);
  cr_assert_eq(mc.n, 7);
  /* Reads tell the banned sender about what was delivered only. */
  upd_cap u = {0};
  mark(&ops, "g", "carol", CHAT_RECEIPT_READ, 37, true, &u);
  cr_assert_eq(u.n, 2);
  cr_assert_str_eq(u.v[0].sender, "alice");
  cr_assert_str_eq(u.v[1].sender, "bob");
  cr_assert_eq(u.v[1].id, 15, "not the withheld 20, 30, 36, 37");
  /* Unbanned: what was withheld stays withheld (nobody received it live
   * either); what comes next is delivered. */
  ops.shadow_ban_set(ops.self, "bob", false, 2, NULL);
  chat_msg_in m4 = msg("g", 40, "bob", "b3");
  cr_assert_not(put_one(&ops, &m4).withheld);
  mc.n = 0;
  ops.messages_as(ops.self, "g", "carol", CHAT_PAGE_LATEST, 0, 10, on_msg,
                  &mc, NULL);
  cr_assert_eq(mc.n, 4, "40, 35, 15 and 10");
  cr_assert_eq(mc.v[0].id, 40);
  cr_assert_eq(mc.v[1].id, 35);
  close_ops(&ops);
}

/* ---- receipt-aware push ---- */

Test(sqlite, push_marks_say_when_a_read_passes_a_pushed_message) {
  chat_storage_ops ops = open_mem();
  group(&ops, "g", abc, 3);
  uint64_t clear = 99;
  cr_assert_eq(ops.push_read(ops.self, "g", "bob", 50, &clear, NULL),
               CHAT_OK);
  cr_assert_eq(clear, 0, "nothing was pushed");
  ops.push_record(ops.self, "g", "bob", 20, NULL);
  ops.push_record(ops.self, "g", "bob", 40, NULL);
  cr_assert_eq(ops.push_read(ops.self, "g", "bob", 10, &clear, NULL),
               CHAT_OK);
  cr_assert_eq(clear, 0, "below the pushed messages");
  cr_assert_eq(ops.push_read(ops.self, "g", "bob", 30, &clear, NULL),
               CHAT_OK);
  cr_assert_eq(clear, 30, "passes 20");
  cr_assert_eq(ops.push_read(ops.self, "g", "bob", 45, &clear, NULL),
               CHAT_OK);
  cr_assert_eq(clear, 45, "passes 40");
  cr_assert_eq(ops.push_read(ops.self, "g", "bob", 60, &clear, NULL),
               CHAT_OK);
  cr_assert_eq(clear, 0, "everything was cleared");
  /* Per member and per conversation; non-members are ignored. */
  ops.push_record(ops.self, "g", "carol", 70, NULL);
  cr_assert_eq(ops.push_record(ops.self, "g", "zoe", 70, NULL), CHAT_OK);
  ops.push_read(ops.self, "g", "bob", 80, &clear, NULL);
  cr_assert_eq(clear, 0);
  ops.push_read(ops.self, "g", "carol", 80, &clear, NULL);
  cr_assert_eq(clear, 80);
  cr_assert_eq(ops.push_record(ops.self, "g", "bob", 0, NULL),
               CHAT_ERR_INVAL);
  close_ops(&ops);
}

/* One conformance suite for include/chat/client_store.h, run against every
 * implementation: the SQLite store (lib/backends/sqlite/client_store.c)
 * and the in-memory reference store (tests/support/memory_client_store.c).
 * Each case is written once (CASE) and registered for both. A new store
 * joins by adding an opener to OPENERS.
 *
 * What it holds a store to is what the header promises: dedup on
 * (conversation, message id) keeping the first copy, windows of messages
 * handed out oldest first, receipt states that only rise and only on own
 * messages, last_seen that only rises, the outbox in order with unique
 * ids, marks replaced per (conversation, kind), conversations ordered by
 * activity, and walks whose sinks call back into the store, nested walks
 * of the same kind included, without harm to the outer walk. And the V2
 * methods (PROTOCOL.md section 8): one outbox order for sends, edits and
 * deletes (V1's walk sees the sends only), one message by id, and edit and
 * delete entries applied to their target with a result that does not
 * depend on the order target and entries were stored in. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chat/sqlite.h>

#include "memory_client_store.h"

static chat_err open_sqlite(chat_client_store_ops *out) {
  return chat_sqlite_client_store_open(out, ":memory:", NULL, NULL);
}

static chat_err open_memory(chat_client_store_ops *out) {
  return memory_client_store_open(out);
}

static chat_client_store_ops S;

#define OPENERS(X) X(sqlite, open_sqlite) X(memory, open_memory)

#define REGISTER(impl, opener)                                                 \
  static void impl##_init(void) {                                              \
    cr_assert_eq(opener(&S), CHAT_OK);                                         \
    cr_assert_eq(S.version, CHAT_CLIENT_STORE_OPS_V2);                         \
  }
OPENERS(REGISTER)

static void fini(void) {
  S.destroy(S.self);
}

#define ONE_IMPL(impl, opener, name)                                           \
  Test(impl, name, .init = impl##_init, .fini = fini) { name##_case(); }
#define CASE(name)                                                             \
  static void name##_case(void);                                               \
  ONE_IMPL(sqlite, open_sqlite, name)                                          \
  ONE_IMPL(memory, open_memory, name)                                          \
  static void name##_case(void)

/* ---- helpers ---- */

static chat_message mk(const char *conv, uint64_t id, const char *sender,
                       const char *body) {
  return (chat_message){.message_id = id, .conversation_id = conv,
                        .sender_id = sender, .body = {body, strlen(body)},
                        .server_ts = 1700000000000 + (int64_t)id,
                        .client_msg_id = "k1"};
}

static void put(const char *conv, uint64_t id, bool own) {
  char body[32];
  snprintf(body, sizeof body, "m%llu", (unsigned long long)id);
  chat_message m = mk(conv, id, own ? "me" : "bob", body);
  bool ins = false;
  cr_assert_eq(S.put_message(S.self, &m, own, &ins), CHAT_OK);
  cr_assert(ins);
}

typedef struct row {
  uint64_t id;
  bool own;
  chat_receipt_state state;
  char body[64];
} row;

typedef struct rows {
  row r[64];
  size_t n;
} rows;

static void collect_msg(void *ctx, const chat_message *m, bool own,
                        chat_receipt_state st) {
  rows *out = ctx;
  cr_assert_lt(out->n, 64);
  row *r = &out->r[out->n++];
  r->id = m->message_id;
  r->own = own;
  r->state = st;
  snprintf(r->body, sizeof r->body, "%.*s", (int)m->body.len, m->body.ptr);
}

static rows list(const char *conv, uint64_t before, uint32_t limit) {
  rows out = {.n = 0};
  cr_assert_eq(S.each_message(S.self, conv, before, limit, collect_msg, &out),
               CHAT_OK);
  return out;
}

/* ---- messages ---- */

CASE(put_message_keeps_the_first_copy) {
  chat_message a = mk("c", 5, "bob", "first");
  chat_message b = mk("c", 5, "bob", "second");
  bool ins = false;
  cr_assert_eq(S.put_message(S.self, &a, false, &ins), CHAT_OK);
  cr_assert(ins);
  cr_assert_eq(S.put_message(S.self, &b, false, &ins), CHAT_OK);
  cr_assert_not(ins, "the same (conversation, id) is a duplicate");
  /* The same id in another conversation is another message. */
  b.conversation_id = "d";
  cr_assert_eq(S.put_message(S.self, &b, false, &ins), CHAT_OK);
  cr_assert(ins);
  rows r = list("c", 0, 0);
  cr_assert_eq(r.n, 1);
  cr_assert_str_eq(r.r[0].body, "first");
}

typedef struct full {
  chat_message m;
  char sender[16], cmid[16], body[32];
  size_t body_len;
  const char *const *refs;
  bool own;
  int n;
} full;

static void keep_full(void *ctx, const chat_message *m, bool own,
                      chat_receipt_state st) {
  (void)st;
  full *f = ctx;
  f->n++;
  f->m = *m;
  f->own = own;
  snprintf(f->sender, sizeof f->sender, "%s", m->sender_id);
  snprintf(f->cmid, sizeof f->cmid, "%s", m->client_msg_id ? m->client_msg_id
                                                           : "(null)");
  cr_assert_leq(m->body.len, sizeof f->body);
  memcpy(f->body, m->body.ptr, m->body.len);
  f->body_len = m->body.len;
  f->refs = m->media_refs;
}

CASE(every_field_but_media_refs_round_trips) {
  static const char body[] = "a\0b \xe2\x82\xac";
  const char *refs[] = {"media1"};
  chat_message m = {.message_id = 9223372036854775807ull,
                    .conversation_id = "conv:1@x",
                    .sender_id = "bob",
                    .body = {body, sizeof body - 1},
                    .server_ts = -5,
                    .client_msg_id = "cm-1",
                    .has_reply_to = true,
                    .reply_to = 42,
                    .media_refs = refs,
                    .n_media_refs = 1,
                    .body_type = CHAT_BODY_MEDIA};
  bool ins;
  cr_assert_eq(S.put_message(S.self, &m, true, &ins), CHAT_OK);
  full f = {.n = 0};
  cr_assert_eq(S.each_message(S.self, "conv:1@x", 0, 0, keep_full, &f),
               CHAT_OK);
  cr_assert_eq(f.n, 1);
  cr_assert_eq(f.m.message_id, m.message_id);
  cr_assert_str_eq(f.sender, "bob");
  cr_assert_str_eq(f.cmid, "cm-1");
  cr_assert_eq(f.body_len, sizeof body - 1, "a NUL inside the body stays");
  cr_assert_eq(memcmp(f.body, body, f.body_len), 0);
  cr_assert_eq(f.m.server_ts, -5);
  cr_assert(f.m.has_reply_to);
  cr_assert_eq(f.m.reply_to, 42);
  cr_assert_eq(f.m.body_type, CHAT_BODY_MEDIA);
  cr_assert(f.own);
  cr_assert_eq(f.m.n_media_refs, 0, "media refs are not kept");
  cr_assert_not(f.m.has_target_id);
  cr_assert_eq(f.m.sender_kind, CHAT_SENDER_USER);
  cr_assert_not(f.m.has_edited_ts);
  cr_assert_not(f.m.deleted);
  /* Section 8 state: an edit entry by a bot, a deleted message. */
  chat_message e = mk("c3", 7, "bot1", "new");
  e.body_type = CHAT_BODY_EDIT;
  e.has_target_id = true;
  e.target_id = 6;
  e.sender_kind = CHAT_SENDER_BOT;
  chat_message d = mk("c3", 6, "bob", "");
  d.deleted = true;
  d.has_edited_ts = true;
  d.edited_ts = 1700000000123;
  cr_assert_eq(S.put_message(S.self, &e, false, &ins), CHAT_OK);
  cr_assert_eq(S.put_message(S.self, &d, false, &ins), CHAT_OK);
  f.n = 0;
  cr_assert_eq(S.each_message(S.self, "c3", 7, 0, keep_full, &f), CHAT_OK);
  cr_assert_eq(f.n, 1);
  cr_assert(f.m.deleted);
  cr_assert(f.m.has_edited_ts);
  cr_assert_eq(f.m.edited_ts, 1700000000123);
  f.n = 0;
  cr_assert_eq(S.each_message(S.self, "c3", 0, 1, keep_full, &f), CHAT_OK);
  cr_assert_eq(f.m.body_type, CHAT_BODY_EDIT);
  cr_assert(f.m.has_target_id);
  cr_assert_eq(f.m.target_id, 6);
  cr_assert_eq(f.m.sender_kind, CHAT_SENDER_BOT);
  /* No client_msg_id, no reply_to. */
  chat_message n = mk("c2", 1, "bob", "");
  n.client_msg_id = NULL;
  cr_assert_eq(S.put_message(S.self, &n, false, &ins), CHAT_OK);
  f.n = 0;
  cr_assert_eq(S.each_message(S.self, "c2", 0, 0, keep_full, &f), CHAT_OK);
  cr_assert_eq(f.n, 1);
  cr_assert_str_eq(f.cmid, "(null)");
  cr_assert_not(f.m.has_reply_to);
  cr_assert_eq(f.body_len, 0);
}

CASE(each_message_hands_out_the_newest_window_oldest_first) {
  for (uint64_t id = 10; id >= 1; id--)
    put("c", id, false);
  put("other", 100, false);
  rows r = list("c", 0, 3);
  cr_assert_eq(r.n, 3);
  cr_assert_eq(r.r[0].id, 8);
  cr_assert_eq(r.r[2].id, 10);
  r = list("c", 5, 2);
  cr_assert_eq(r.n, 2);
  cr_assert_eq(r.r[0].id, 3);
  cr_assert_eq(r.r[1].id, 4);
  r = list("c", 0, 0);
  cr_assert_eq(r.n, 10, "limit 0 is 50");
  for (size_t i = 0; i < r.n; i++)
    cr_assert_eq(r.r[i].id, i + 1);
  cr_assert_eq(list("nope", 0, 0).n, 0);
  cr_assert_eq(list("c", 1, 0).n, 0);
}

CASE(receipts_rise_on_own_messages_only) {
  put("c", 1, true);
  put("c", 2, true);
  put("c", 3, false);
  put("c", 4, true);
  rows r = list("c", 0, 0);
  for (size_t i = 0; i < r.n; i++)
    cr_assert_eq(r.r[i].state, CHAT_RECEIPT_NONE, "sent only at first");
  cr_assert_eq(S.set_receipt(S.self, "c", 3, CHAT_RECEIPT_READ), CHAT_OK);
  cr_assert_eq(S.set_receipt(S.self, "c", 4, CHAT_RECEIPT_DELIVERED),
               CHAT_OK);
  r = list("c", 0, 0);
  cr_assert_eq(r.r[0].state, CHAT_RECEIPT_READ);
  cr_assert_eq(r.r[1].state, CHAT_RECEIPT_READ, "never lowered");
  cr_assert_eq(r.r[2].state, CHAT_RECEIPT_NONE, "not own");
  cr_assert_eq(r.r[3].state, CHAT_RECEIPT_DELIVERED);
  cr_assert_eq(S.set_receipt(S.self, "other", 9, CHAT_RECEIPT_READ),
               CHAT_OK);
  cr_assert_eq(list("c", 0, 0).r[3].state, CHAT_RECEIPT_DELIVERED);
}

/* ---- last_seen ---- */

typedef struct seen_list {
  char conv[8][16];
  uint64_t id[8];
  size_t n;
} seen_list;

static void collect_seen(void *ctx, const char *conv, uint64_t id) {
  seen_list *l = ctx;
  cr_assert_lt(l->n, 8);
  snprintf(l->conv[l->n], 16, "%s", conv);
  l->id[l->n++] = id;
}

static uint64_t seen_of(const seen_list *l, const char *conv) {
  for (size_t i = 0; i < l->n; i++)
    if (strcmp(l->conv[i], conv) == 0)
      return l->id[i];
  return 0;
}

CASE(last_seen_only_rises) {
  uint64_t v = 99;
  cr_assert_eq(S.get_last_seen(S.self, "c", &v), CHAT_OK);
  cr_assert_eq(v, 0, "unknown: 0");
  cr_assert_eq(S.set_last_seen(S.self, "c", 10), CHAT_OK);
  cr_assert_eq(S.set_last_seen(S.self, "c", 7), CHAT_OK);
  cr_assert_eq(S.set_last_seen(S.self, "d", 3), CHAT_OK);
  cr_assert_eq(S.get_last_seen(S.self, "c", &v), CHAT_OK);
  cr_assert_eq(v, 10);
  cr_assert_eq(S.set_last_seen(S.self, "c", 11), CHAT_OK);
  seen_list l = {.n = 0};
  cr_assert_eq(S.each_last_seen(S.self, collect_seen, &l), CHAT_OK);
  cr_assert_eq(l.n, 2);
  cr_assert_eq(seen_of(&l, "c"), 11);
  cr_assert_eq(seen_of(&l, "d"), 3);
}

/* ---- outbox ---- */

typedef struct box_list {
  char id[8][16];
  char conv[8][16];
  char body[8][16];
  int64_t seq[8];
  size_t n;
} box_list;

static void collect_box(void *ctx, const chat_client_outbox_entry *e) {
  box_list *l = ctx;
  cr_assert_lt(l->n, 8);
  snprintf(l->id[l->n], 16, "%s", e->client_msg_id);
  snprintf(l->conv[l->n], 16, "%s", e->conversation_id);
  snprintf(l->body[l->n], 16, "%.*s", (int)e->body.len, e->body.ptr);
  l->seq[l->n++] = e->seq;
}

static void add(const char *id, const char *conv, const char *body) {
  chat_client_outbox_entry e = {.client_msg_id = id, .conversation_id = conv,
                                .body = {body, strlen(body)}};
  cr_assert_eq(S.outbox_add(S.self, &e), CHAT_OK);
}

static box_list boxed(void) {
  box_list l = {.n = 0};
  cr_assert_eq(S.each_outbox(S.self, collect_box, &l), CHAT_OK);
  return l;
}

CASE(outbox_keeps_order_and_unique_ids) {
  add("m3", "c", "three");
  add("m1", "d", "one");
  add("m2", "c", "");
  box_list l = boxed();
  cr_assert_eq(l.n, 3);
  cr_assert_str_eq(l.id[0], "m3");
  cr_assert_str_eq(l.id[1], "m1");
  cr_assert_str_eq(l.id[2], "m2");
  cr_assert_str_eq(l.conv[1], "d");
  cr_assert_str_eq(l.body[0], "three");
  cr_assert_str_eq(l.body[2], "");
  cr_assert_lt(l.seq[0], l.seq[1]);
  cr_assert_lt(l.seq[1], l.seq[2]);
  /* A second entry with the same id is refused and changes nothing. */
  chat_client_outbox_entry dup = {.client_msg_id = "m1",
                                  .conversation_id = "x",
                                  .body = {"y", 1}};
  cr_assert_eq(S.outbox_add(S.self, &dup), CHAT_ERR_MODULE);
  cr_assert_eq(boxed().n, 3);
  cr_assert_eq(S.outbox_remove(S.self, "m1"), CHAT_OK);
  cr_assert_eq(S.outbox_remove(S.self, "never"), CHAT_OK);
  l = boxed();
  cr_assert_eq(l.n, 2);
  cr_assert_str_eq(l.id[0], "m3");
  cr_assert_str_eq(l.id[1], "m2");
  /* Later additions come after, whatever was removed. */
  add("m1", "d", "again");
  l = boxed();
  cr_assert_str_eq(l.id[2], "m1");
  cr_assert_gt(l.seq[2], l.seq[1]);
}

/* ---- marks ---- */

typedef struct mark_list {
  char conv[8][16];
  chat_receipt_state kind[8];
  uint64_t want[8], sent[8];
  size_t n;
} mark_list;

static void collect_mark(void *ctx, const char *conv, chat_receipt_state k,
                         uint64_t want, uint64_t sent) {
  mark_list *l = ctx;
  cr_assert_lt(l->n, 8);
  snprintf(l->conv[l->n], 16, "%s", conv);
  l->kind[l->n] = k;
  l->want[l->n] = want;
  l->sent[l->n++] = sent;
}

CASE(marks_are_replaced_per_conversation_and_kind) {
  cr_assert_eq(S.set_mark(S.self, "c", CHAT_RECEIPT_READ, 5, 0), CHAT_OK);
  cr_assert_eq(S.set_mark(S.self, "c", CHAT_RECEIPT_DELIVERED, 7, 7),
               CHAT_OK);
  cr_assert_eq(S.set_mark(S.self, "c", CHAT_RECEIPT_READ, 9, 5), CHAT_OK);
  cr_assert_eq(S.set_mark(S.self, "d", CHAT_RECEIPT_READ, 1, 1), CHAT_OK);
  mark_list l = {.n = 0};
  cr_assert_eq(S.each_mark(S.self, collect_mark, &l), CHAT_OK);
  cr_assert_eq(l.n, 3);
  bool seen_read = false, seen_del = false;
  for (size_t i = 0; i < l.n; i++) {
    if (strcmp(l.conv[i], "c") == 0 && l.kind[i] == CHAT_RECEIPT_READ) {
      cr_assert_eq(l.want[i], 9);
      cr_assert_eq(l.sent[i], 5);
      seen_read = true;
    }
    if (strcmp(l.conv[i], "c") == 0 && l.kind[i] == CHAT_RECEIPT_DELIVERED) {
      cr_assert_eq(l.want[i], 7);
      seen_del = true;
    }
  }
  cr_assert(seen_read && seen_del);
}

/* ---- conversations ---- */

static void put_conv(const char *id, chat_conversation_type t,
                     const char *name, const char *const *members, size_t n,
                     uint64_t last) {
  chat_message lm = mk(id, last, "bob", "x");
  chat_conversation c = {.conversation_id = id, .type = t,
                         .name = {name, name ? strlen(name) : 0},
                         .members = members, .n_members = n,
                         .admins = t == CHAT_CONVERSATION_GROUP ? members + 1
                                                                : NULL,
                         .n_admins = t == CHAT_CONVERSATION_GROUP ? n - 1 : 0,
                         .last_message = last ? &lm : NULL,
                         .unread_count = 3, .has_last_read = last > 1,
                         .last_read_message_id = last - 1};
  cr_assert_eq(S.put_conversation(S.self, &c), CHAT_OK);
}

typedef struct conv_list {
  char id[8][16];
  char name[8][16];
  bool has_name[8];
  size_t n_members[8];
  char first[8][16];
  uint32_t unread[8];
  bool has_last_read[8];
  uint64_t last_read[8];
  bool has_last_message[8];
  size_t n_admins[8];
  char last_admin[8][16];
  size_t n;
} conv_list;

static void collect_conv(void *ctx, const chat_conversation *c) {
  conv_list *l = ctx;
  cr_assert_lt(l->n, 8);
  size_t i = l->n++;
  snprintf(l->id[i], 16, "%s", c->conversation_id);
  l->has_name[i] = c->name.ptr != NULL;
  snprintf(l->name[i], 16, "%.*s", (int)c->name.len,
           c->name.ptr ? c->name.ptr : "");
  l->n_members[i] = c->n_members;
  snprintf(l->first[i], 16, "%s", c->n_members ? c->members[0] : "");
  l->unread[i] = c->unread_count;
  l->has_last_read[i] = c->has_last_read;
  l->last_read[i] = c->last_read_message_id;
  l->has_last_message[i] = c->last_message != NULL;
  l->n_admins[i] = c->n_admins;
  snprintf(l->last_admin[i], 16, "%s",
           c->n_admins ? c->admins[c->n_admins - 1] : "");
}

CASE(conversations_by_activity) {
  const char *two[] = {"me", "bob"};
  const char *three[] = {"me", "bob", "carol"};
  put_conv("a", CHAT_CONVERSATION_DIRECT, NULL, two, 2, 5);
  put_conv("b", CHAT_CONVERSATION_GROUP, "Group", three, 3, 9);
  put_conv("c", CHAT_CONVERSATION_GROUP, "", three, 3, 0);
  put_conv("z", CHAT_CONVERSATION_DIRECT, NULL, two, 2, 5);
  chat_conversation_type t = CHAT_CONVERSATION_DIRECT;
  uint32_t n = 0;
  cr_assert_eq(S.get_conversation(S.self, "b", &t, &n), CHAT_OK);
  cr_assert_eq(t, CHAT_CONVERSATION_GROUP);
  cr_assert_eq(n, 3);
  n = 7;
  cr_assert_eq(S.get_conversation(S.self, "nope", &t, &n),
               CHAT_ERR_NOT_FOUND);
  cr_assert_eq(n, 0);
  conv_list l = {.n = 0};
  cr_assert_eq(S.each_conversation(S.self, collect_conv, &l), CHAT_OK);
  cr_assert_eq(l.n, 4);
  cr_assert_str_eq(l.id[0], "b");
  cr_assert_str_eq(l.id[1], "a", "ties by id");
  cr_assert_str_eq(l.id[2], "z");
  cr_assert_str_eq(l.id[3], "c");
  cr_assert(l.has_name[0]);
  cr_assert_str_eq(l.name[0], "Group");
  cr_assert_not(l.has_name[1], "null name stays null");
  cr_assert(l.has_name[3], "an empty name is a name");
  cr_assert_eq(l.n_members[0], 3);
  cr_assert_str_eq(l.first[0], "me");
  cr_assert_eq(l.unread[0], 3);
  cr_assert(l.has_last_read[0]);
  cr_assert_eq(l.last_read[0], 8);
  cr_assert_not(l.has_last_read[3]);
  cr_assert_not(l.has_last_message[0], "last_message is not kept");
  cr_assert_eq(l.n_admins[0], 2);
  cr_assert_str_eq(l.last_admin[0], "carol");
  cr_assert_eq(l.n_admins[1], 0);
  /* A stored message newer than the list's last message moves it up; a
   * put replaces. */
  put("z", 50, false);
  put_conv("a", CHAT_CONVERSATION_DIRECT, NULL, three, 3, 6);
  memset(&l, 0, sizeof l);
  cr_assert_eq(S.each_conversation(S.self, collect_conv, &l), CHAT_OK);
  cr_assert_eq(l.n, 4);
  cr_assert_str_eq(l.id[0], "z");
  cr_assert_str_eq(l.id[1], "b");
  cr_assert_str_eq(l.id[2], "a");
  cr_assert_eq(l.n_members[2], 3);
}

/* ---- re-entrant walks ---- */

typedef struct nest {
  int depth;
  rows outer;
  size_t inner_rows;
} nest;

/* The outer walk's sink: check the row is intact after nested calls of
 * every kind, including a nested walk of the same kind and writes. */
static void nested_msg(void *ctx, const chat_message *m, bool own,
                       chat_receipt_state st) {
  nest *n = ctx;
  char before[64];
  snprintf(before, sizeof before, "%.*s", (int)m->body.len, m->body.ptr);
  uint64_t id = m->message_id;
  if (n->depth == 0) {
    n->depth++;
    rows inner = list("c", 0, 0);
    n->inner_rows += inner.n;
    put("c", 1000 + id, false); /* a write during the walk */
    static int k;
    char cmid[16];
    snprintf(cmid, sizeof cmid, "n%d", ++k);
    add(cmid, "c", "x");
    uint64_t ls;
    cr_assert_eq(S.get_last_seen(S.self, "c", &ls), CHAT_OK);
    cr_assert_eq(S.set_last_seen(S.self, "c", id), CHAT_OK);
    n->depth--;
  }
  cr_assert_eq(m->message_id, id);
  cr_assert_str_eq(m->conversation_id, "c");
  char after[64];
  snprintf(after, sizeof after, "%.*s", (int)m->body.len, m->body.ptr);
  cr_assert_str_eq(after, before, "the outer row survives nested calls");
  collect_msg(&n->outer, m, own, st);
}

CASE(walks_survive_nested_calls) {
  put("c", 1, false);
  put("c", 2, false);
  put("c", 3, false);
  nest n = {.depth = 0};
  cr_assert_eq(S.each_message(S.self, "c", 0, 3, nested_msg, &n), CHAT_OK);
  /* Rows written during the walk may or may not be seen; the three that
   * were there are seen, in order, intact. */
  cr_assert_geq(n.outer.n, 3);
  cr_assert_eq(n.outer.r[0].id, 1);
  cr_assert_str_eq(n.outer.r[0].body, "m1");
  cr_assert_geq(n.inner_rows, 9);
  cr_assert_eq(boxed().n, 3);
  uint64_t ls;
  cr_assert_eq(S.get_last_seen(S.self, "c", &ls), CHAT_OK);
  cr_assert_eq(ls, 3);
  /* The store still serves plain calls after it all. */
  cr_assert_geq(list("c", 0, 0).n, 6);
}

static int outer_count;

static void nested_conv(void *ctx, const chat_conversation *c) {
  conv_list *l = ctx;
  char id[16];
  snprintf(id, sizeof id, "%s", c->conversation_id);
  conv_list inner = {.n = 0};
  cr_assert_eq(S.each_conversation(S.self, collect_conv, &inner), CHAT_OK);
  cr_assert_eq(inner.n, 2);
  cr_assert_str_eq(c->conversation_id, id);
  outer_count++;
  collect_conv(l, c);
}

static void nested_box(void *ctx, const chat_client_outbox_entry *e) {
  char id[16];
  snprintf(id, sizeof id, "%s", e->client_msg_id);
  cr_assert_eq(boxed().n, 2);
  cr_assert_str_eq(e->client_msg_id, id);
  collect_box(ctx, e);
}

static void nested_mark(void *ctx, const char *conv, chat_receipt_state k,
                        uint64_t want, uint64_t sent) {
  char id[16];
  snprintf(id, sizeof id, "%s", conv);
  mark_list inner = {.n = 0};
  cr_assert_eq(S.each_mark(S.self, collect_mark, &inner), CHAT_OK);
  cr_assert_eq(S.set_mark(S.self, conv, k, want, sent), CHAT_OK);
  cr_assert_str_eq(conv, id);
  collect_mark(ctx, conv, k, want, sent);
}

static void nested_seen(void *ctx, const char *conv, uint64_t v) {
  char id[16];
  snprintf(id, sizeof id, "%s", conv);
  seen_list inner = {.n = 0};
  cr_assert_eq(S.each_last_seen(S.self, collect_seen, &inner), CHAT_OK);
  cr_assert_eq(inner.n, 2);
  cr_assert_str_eq(conv, id);
  collect_seen(ctx, conv, v);
}

CASE(every_walk_nests_in_itself) {
  const char *two[] = {"me", "bob"};
  put_conv("a", CHAT_CONVERSATION_DIRECT, NULL, two, 2, 1);
  put_conv("b", CHAT_CONVERSATION_DIRECT, NULL, two, 2, 2);
  conv_list cl = {.n = 0};
  outer_count = 0;
  cr_assert_eq(S.each_conversation(S.self, nested_conv, &cl), CHAT_OK);
  cr_assert_eq(outer_count, 2);
  add("x1", "a", "1");
  add("x2", "b", "2");
  box_list bl = {.n = 0};
  cr_assert_eq(S.each_outbox(S.self, nested_box, &bl), CHAT_OK);
  cr_assert_eq(bl.n, 2);
  cr_assert_eq(S.set_mark(S.self, "a", CHAT_RECEIPT_READ, 4, 2), CHAT_OK);
  cr_assert_eq(S.set_mark(S.self, "b", CHAT_RECEIPT_READ, 5, 5), CHAT_OK);
  mark_list ml = {.n = 0};
  cr_assert_eq(S.each_mark(S.self, nested_mark, &ml), CHAT_OK);
  cr_assert_eq(ml.n, 2);
  cr_assert_eq(S.set_last_seen(S.self, "a", 1), CHAT_OK);
  cr_assert_eq(S.set_last_seen(S.self, "b", 2), CHAT_OK);
  seen_list sl = {.n = 0};
  cr_assert_eq(S.each_last_seen(S.self, nested_seen, &sl), CHAT_OK);
  cr_assert_eq(sl.n, 2);
}

/* ---- V2: the outbox with edits and deletes ---- */

typedef struct box2_list {
  char id[8][16];
  char body[8][16];
  chat_client_outbox_kind kind[8];
  uint64_t target[8];
  int64_t seq[8];
  size_t n;
} box2_list;

static void collect_box2(void *ctx, const chat_client_outbox_entry_v2 *e) {
  box2_list *l = ctx;
  cr_assert_lt(l->n, 8);
  snprintf(l->id[l->n], 16, "%s", e->client_msg_id);
  snprintf(l->body[l->n], 16, "%.*s", (int)e->body.len, e->body.ptr);
  l->kind[l->n] = e->kind;
  l->target[l->n] = e->target_id;
  l->seq[l->n++] = e->seq;
}

static void add2(const char *id, chat_client_outbox_kind k, uint64_t target,
                 const char *body) {
  chat_client_outbox_entry_v2 e = {.client_msg_id = id,
                                   .conversation_id = "c",
                                   .body = {body, strlen(body)},
                                   .kind = k,
                                   .target_id = target};
  cr_assert_eq(S.outbox_add_v2(S.self, &e), CHAT_OK);
}

static box2_list boxed2(void) {
  box2_list l = {.n = 0};
  cr_assert_eq(S.each_outbox_v2(S.self, collect_box2, &l), CHAT_OK);
  return l;
}

CASE(outbox_v2_keeps_every_kind_in_one_order) {
  add("s1", "c", "first");
  add2("e1", CHAT_CLIENT_OUTBOX_EDIT, 42, "fixed");
  add2("d1", CHAT_CLIENT_OUTBOX_DELETE, 43, "");
  add2("s2", CHAT_CLIENT_OUTBOX_SEND, 0, "second");
  box2_list l = boxed2();
  cr_assert_eq(l.n, 4);
  const char *ids[] = {"s1", "e1", "d1", "s2"};
  chat_client_outbox_kind kinds[] = {
      CHAT_CLIENT_OUTBOX_SEND, CHAT_CLIENT_OUTBOX_EDIT,
      CHAT_CLIENT_OUTBOX_DELETE, CHAT_CLIENT_OUTBOX_SEND};
  uint64_t targets[] = {0, 42, 43, 0};
  for (size_t i = 0; i < 4; i++) {
    cr_assert_str_eq(l.id[i], ids[i]);
    cr_assert_eq(l.kind[i], kinds[i]);
    cr_assert_eq(l.target[i], targets[i]);
    if (i)
      cr_assert_lt(l.seq[i - 1], l.seq[i]);
  }
  cr_assert_str_eq(l.body[1], "fixed");
  cr_assert_str_eq(l.body[2], "");
  /* V1's walk hands out the sends only: nothing can take an edit for a
   * send. */
  box_list v1 = boxed();
  cr_assert_eq(v1.n, 2);
  cr_assert_str_eq(v1.id[0], "s1");
  cr_assert_str_eq(v1.id[1], "s2");
  /* One id space for both adds. */
  chat_client_outbox_entry_v2 dup = {.client_msg_id = "s1",
                                     .conversation_id = "c",
                                     .kind = CHAT_CLIENT_OUTBOX_DELETE,
                                     .target_id = 1};
  cr_assert_eq(S.outbox_add_v2(S.self, &dup), CHAT_ERR_MODULE);
  chat_client_outbox_entry dup1 = {.client_msg_id = "e1",
                                   .conversation_id = "c"};
  cr_assert_eq(S.outbox_add(S.self, &dup1), CHAT_ERR_MODULE);
  cr_assert_eq(S.outbox_remove(S.self, "e1"), CHAT_OK);
  l = boxed2();
  cr_assert_eq(l.n, 3);
  cr_assert_str_eq(l.id[1], "d1");
}

/* ---- V2: one message ---- */

CASE(get_message_finds_exactly_one) {
  chat_message m = mk("c", 7, "bob", "seven");
  m.has_reply_to = true;
  m.reply_to = 3;
  m.sender_kind = CHAT_SENDER_BOT;
  bool ins;
  cr_assert_eq(S.put_message(S.self, &m, true, &ins), CHAT_OK);
  put("c", 8, false);
  put("d", 7, false);
  cr_assert_eq(S.set_receipt(S.self, "c", 7, CHAT_RECEIPT_READ), CHAT_OK);
  full f = {.n = 0};
  cr_assert_eq(S.get_message(S.self, "c", 7, keep_full, &f), CHAT_OK);
  cr_assert_eq(f.n, 1);
  cr_assert_eq(f.m.message_id, 7);
  cr_assert_str_eq(f.sender, "bob");
  cr_assert_eq(f.body_len, 5);
  cr_assert_eq(memcmp(f.body, "seven", 5), 0);
  cr_assert(f.own);
  cr_assert(f.m.has_reply_to);
  cr_assert_eq(f.m.reply_to, 3);
  cr_assert_eq(f.m.sender_kind, CHAT_SENDER_BOT);
  rows r = {.n = 0};
  cr_assert_eq(S.get_message(S.self, "c", 7, collect_msg, &r), CHAT_OK);
  cr_assert_eq(r.r[0].state, CHAT_RECEIPT_READ);
  f.n = 0;
  cr_assert_eq(S.get_message(S.self, "c", 9, keep_full, &f),
               CHAT_ERR_NOT_FOUND);
  cr_assert_eq(S.get_message(S.self, "e", 7, keep_full, &f),
               CHAT_ERR_NOT_FOUND);
  cr_assert_eq(f.n, 0, "the sink is not called for a miss");
}

/* ---- V2: edit and delete entries applied ---- */

/* One log entry of conversation conv: an edit (body) or a delete of
 * target. Its server_ts grows with its id. */
static chat_message entry(const char *conv, uint64_t id, chat_body_type t,
                          uint64_t target, const char *body) {
  chat_message m = mk(conv, id, "bob", body);
  m.body_type = t;
  m.has_target_id = true;
  m.target_id = target;
  return m;
}

static void store(const chat_message *m) {
  bool ins;
  cr_assert_eq(S.put_message(S.self, m, false, &ins), CHAT_OK);
}

static bool apply(const char *conv, uint64_t target) {
  bool changed = true;
  cr_assert_eq(S.apply_changes(S.self, conv, target, &changed), CHAT_OK);
  return changed;
}

/* The target as stored now. */
static full state_of(const char *conv, uint64_t id) {
  full f = {.n = 0};
  cr_assert_eq(S.get_message(S.self, conv, id, keep_full, &f), CHAT_OK);
  f.body[f.body_len < sizeof f.body ? f.body_len : sizeof f.body - 1] = 0;
  return f;
}

CASE(an_edit_replaces_the_body_once) {
  put("c", 10, false);
  cr_assert_not(apply("c", 10), "no entries: nothing to do");
  chat_message e = entry("c", 11, CHAT_BODY_EDIT, 10, "fixed");
  store(&e);
  cr_assert(apply("c", 10));
  full f = state_of("c", 10);
  cr_assert_str_eq(f.body, "fixed");
  cr_assert(f.m.has_edited_ts);
  cr_assert_eq(f.m.edited_ts, e.server_ts, "edited when the entry was made");
  cr_assert_not(f.m.deleted);
  cr_assert_not(apply("c", 10), "applying twice changes nothing");
  cr_assert_not(apply("c", 11), "an entry is never a target");
  cr_assert_not(apply("c", 99), "an unknown target is no error");
  cr_assert_not(apply("d", 10), "nor one in another conversation");
  /* The entry keeps its own body; only deletes erase it. */
  cr_assert_str_eq(state_of("c", 11).body, "fixed");
}

/* Every order of storing a target and its entries, applying after every
 * put as the client does, ends in the same state. */
static void permute(size_t *a, size_t n, size_t k,
                    void (*fn)(const size_t *, size_t, void *), void *ctx) {
  if (k == n) {
    fn(a, n, ctx);
    return;
  }
  for (size_t i = k; i < n; i++) {
    size_t t = a[k];
    a[k] = a[i];
    a[i] = t;
    permute(a, n, k + 1, fn, ctx);
    a[i] = a[k];
    a[k] = t;
  }
}

typedef struct order_run {
  const chat_message *items; /* items[0] is the target */
  int runs;
} order_run;

static void store_in_order(const size_t *order, size_t n, void *ctx) {
  order_run *o = ctx;
  char conv[32];
  snprintf(conv, sizeof conv, "p%d", o->runs++);
  for (size_t i = 0; i < n; i++) {
    chat_message m = o->items[order[i]];
    m.conversation_id = conv;
    store(&m);
    (void)apply(conv, m.has_target_id ? m.target_id : m.message_id);
  }
}

CASE(the_newest_edit_wins_in_any_order) {
  chat_message items[] = {
      mk("", 10, "bob", "original"),
      entry("", 11, CHAT_BODY_EDIT, 10, "edit 11"),
      entry("", 13, CHAT_BODY_EDIT, 10, "edit 13"),
      entry("", 12, CHAT_BODY_EDIT, 10, "edit 12"),
  };
  size_t idx[] = {0, 1, 2, 3};
  order_run o = {.items = items};
  permute(idx, 4, 0, store_in_order, &o);
  cr_assert_eq(o.runs, 24);
  for (int i = 0; i < o.runs; i++) {
    char conv[32];
    snprintf(conv, sizeof conv, "p%d", i);
    full f = state_of(conv, 10);
    cr_assert_str_eq(f.body, "edit 13", "order %d", i);
    cr_assert_eq(f.m.edited_ts, items[2].server_ts);
    cr_assert_not(f.m.deleted);
  }
}

typedef struct scan {
  const char *secret;
  int hits, edits_with_body;
  bool target_deleted;
} scan;

static void scan_row(void *ctx, const chat_message *m, bool own,
                     chat_receipt_state st) {
  (void)own, (void)st;
  scan *s = ctx;
  for (size_t i = 0; i + strlen(s->secret) <= m->body.len; i++)
    if (memcmp(m->body.ptr + i, s->secret, strlen(s->secret)) == 0)
      s->hits++;
  if (m->body_type == CHAT_BODY_EDIT && m->body.len)
    s->edits_with_body++;
  if (m->message_id == 10)
    s->target_deleted = m->deleted && m->body.len == 0;
}

CASE(a_delete_erases_everything_in_any_order) {
  /* An edit older than the delete and one "after" it (as a server that
   * raced could never send, and a client must still not resurrect). */
  chat_message items[] = {
      mk("", 10, "bob", "secret original"),
      entry("", 11, CHAT_BODY_EDIT, 10, "secret edit 11"),
      entry("", 12, CHAT_BODY_DELETE, 10, ""),
      entry("", 13, CHAT_BODY_EDIT, 10, "secret edit 13"),
  };
  size_t idx[] = {0, 1, 2, 3};
  order_run o = {.items = items};
  permute(idx, 4, 0, store_in_order, &o);
  for (int i = 0; i < o.runs; i++) {
    char conv[32];
    snprintf(conv, sizeof conv, "p%d", i);
    scan s = {.secret = "secret"};
    cr_assert_eq(S.each_message(S.self, conv, 0, 0, scan_row, &s), CHAT_OK);
    cr_assert(s.target_deleted, "order %d: the target is deleted", i);
    cr_assert_eq(s.hits, 0, "order %d: no erased body survives", i);
    cr_assert_eq(s.edits_with_body, 0, "order %d", i);
  }
}

CASE(nothing_brings_a_deleted_message_back) {
  chat_message t = mk("c", 10, "bob", "");
  t.deleted = true; /* read back from the server deleted */
  store(&t);
  chat_message e = entry("c", 11, CHAT_BODY_EDIT, 10, "back?");
  store(&e);
  cr_assert_not(apply("c", 10), "the target stays as it was");
  full f = state_of("c", 10);
  cr_assert(f.m.deleted);
  cr_assert_eq(f.body_len, 0);
  cr_assert_eq(state_of("c", 11).body_len, 0,
               "an edit of a deleted message is erased too");
  cr_assert_not(apply("c", 10));
  /* Deleted by an entry, then an edit arrives: ignored. */
  put("c", 20, false);
  chat_message d = entry("c", 21, CHAT_BODY_DELETE, 20, "");
  store(&d);
  cr_assert(apply("c", 20));
  chat_message late = entry("c", 22, CHAT_BODY_EDIT, 20, "late");
  store(&late);
  cr_assert_not(apply("c", 20));
  cr_assert_eq(state_of("c", 22).body_len, 0, "erased all the same");
  f = state_of("c", 20);
  cr_assert(f.m.deleted);
  cr_assert_eq(f.body_len, 0);
  cr_assert_not(f.m.has_edited_ts);
}

CASE(a_target_read_back_edited_keeps_its_newer_state) {
  /* The server read the target back after an edit at ts 500: body and
   * edited_ts are its current state. */
  chat_message t = mk("c", 10, "bob", "current");
  t.has_edited_ts = true;
  t.edited_ts = 1700000000500;
  store(&t);
  /* An older edit entry (its body erased by the server since) does not
   * win over it. */
  chat_message old = entry("c", 11, CHAT_BODY_EDIT, 10, "");
  old.server_ts = 1700000000400;
  store(&old);
  cr_assert_not(apply("c", 10));
  full f = state_of("c", 10);
  cr_assert_str_eq(f.body, "current");
  cr_assert_eq(f.m.edited_ts, 1700000000500);
  /* The entry that made that state changes nothing visible. */
  chat_message same = entry("c", 12, CHAT_BODY_EDIT, 10, "current");
  same.server_ts = 1700000000500;
  store(&same);
  cr_assert_not(apply("c", 10));
  /* A later one wins, and from then on entry ids decide. */
  chat_message later = entry("c", 14, CHAT_BODY_EDIT, 10, "later");
  later.server_ts = 1700000000600;
  store(&later);
  cr_assert(apply("c", 10));
  cr_assert_str_eq(state_of("c", 10).body, "later");
  chat_message between = entry("c", 13, CHAT_BODY_EDIT, 10, "between");
  between.server_ts = 1700000000700; /* a clock step back: ids rule */
  store(&between);
  cr_assert_not(apply("c", 10));
  cr_assert_str_eq(state_of("c", 10).body, "later");
}

CASE(only_text_and_media_messages_are_targets) {
  chat_message sys = mk("c", 10, "alice", "alice added bob");
  sys.body_type = CHAT_BODY_SYSTEM;
  sys.client_msg_id = NULL;
  store(&sys);
  chat_message e = entry("c", 11, CHAT_BODY_EDIT, 10, "rewritten");
  store(&e);
  chat_message d = entry("c", 12, CHAT_BODY_DELETE, 11, "");
  store(&d);
  cr_assert_not(apply("c", 10));
  cr_assert_not(apply("c", 11));
  cr_assert_str_eq(state_of("c", 10).body, "alice added bob");
  cr_assert_str_eq(state_of("c", 11).body, "rewritten");
  /* Media messages are. */
  chat_message m = mk("c", 20, "bob", "caption");
  m.body_type = CHAT_BODY_MEDIA;
  store(&m);
  chat_message e2 = entry("c", 21, CHAT_BODY_EDIT, 20, "new caption");
  store(&e2);
  cr_assert(apply("c", 20));
  cr_assert_str_eq(state_of("c", 20).body, "new caption");
}

CASE(forget_last_seen_drops_one_conversation) {
  cr_assert_eq(S.set_last_seen(S.self, "c", 10), CHAT_OK);
  cr_assert_eq(S.set_last_seen(S.self, "d", 20), CHAT_OK);
  put("c", 10, false);
  cr_assert_eq(S.forget_last_seen(S.self, "c"), CHAT_OK);
  cr_assert_eq(S.forget_last_seen(S.self, "never"), CHAT_OK);
  seen_list l = {.n = 0};
  cr_assert_eq(S.each_last_seen(S.self, collect_seen, &l), CHAT_OK);
  cr_assert_eq(l.n, 1);
  cr_assert_str_eq(l.conv[0], "d");
  uint64_t v = 1;
  cr_assert_eq(S.get_last_seen(S.self, "c", &v), CHAT_OK);
  cr_assert_eq(v, 0);
  cr_assert_eq(list("c", 0, 0).n, 1, "the messages stay");
  /* It may start again. */
  cr_assert_eq(S.set_last_seen(S.self, "c", 5), CHAT_OK);
  cr_assert_eq(S.get_last_seen(S.self, "c", &v), CHAT_OK);
  cr_assert_eq(v, 5);
}

/* Applying and reading one message from inside a walk's sink: the outer
 * row stays intact and the change is made. */
static void nested_apply(void *ctx, const chat_message *m, bool own,
                         chat_receipt_state st) {
  char before[64];
  snprintf(before, sizeof before, "%.*s", (int)m->body.len, m->body.ptr);
  if (m->message_id == 1) {
    chat_message d = entry("c", 100, CHAT_BODY_DELETE, 2, "");
    store(&d);
    cr_assert(apply("c", 2));
    full f = state_of("c", 2);
    cr_assert(f.m.deleted);
    box2_list l = boxed2();
    (void)l;
  }
  char after[64];
  snprintf(after, sizeof after, "%.*s", (int)m->body.len, m->body.ptr);
  cr_assert_str_eq(after, before);
  collect_msg(ctx, m, own, st);
}

CASE(apply_changes_nests_in_a_walk) {
  put("c", 1, false);
  put("c", 2, false);
  put("c", 3, false);
  rows r = {.n = 0};
  cr_assert_eq(S.each_message(S.self, "c", 0, 3, nested_apply, &r), CHAT_OK);
  cr_assert_geq(r.n, 3);
  cr_assert_str_eq(r.r[0].body, "m1");
  full f = state_of("c", 2);
  cr_assert(f.m.deleted);
  cr_assert_eq(f.body_len, 0);
  cr_assert_str_eq(state_of("c", 3).body, "m3");
}

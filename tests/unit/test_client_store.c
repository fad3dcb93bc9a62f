/* Messages into the store (lib/client/store.c), with edit and delete
 * entries applied to their targets (PROTOCOL.md section 8): the state a
 * device ends in does not depend on the order the target and its entries
 * arrive in, nor on where they come from (live, resume history, REST
 * pages); a deleted body is gone; the app hears of each entry through
 * on_message and of the target's change through on_message_changed, once
 * per real change; a target that arrives after its entries is reported as
 * it is now. Also: local reads (get_message, pending edits in
 * list_messages) and a system message learnt through resume refreshing
 * its conversation. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_harness.h"

static ch h;

static void setup(void) {
  memset(&h, 0, sizeof h);
  cr_assert_eq(ch_open(&h, ":memory:", NULL), CHAT_OK);
}

static void teardown(void) {
  ch_close(&h);
  ch_reset_log(&h);
}

TestSuite(store, .init = setup, .fini = teardown);

/* The stored message as the app reads it back. */
typedef struct got {
  int n;
  char body[128];
  size_t body_len;
  bool deleted, edited, own, pending;
  int64_t edited_ts;
  chat_body_type type;
  uint64_t target;
} got;

static void keep(void *ud, const chat_client_message *cm) {
  got *g = ud;
  const chat_message *m = cm->message;
  g->n++;
  g->body_len = m->body.len;
  snprintf(g->body, sizeof g->body, "%.*s", (int)m->body.len, m->body.ptr);
  g->deleted = m->deleted;
  g->edited = m->has_edited_ts;
  g->edited_ts = m->edited_ts;
  g->own = cm->own;
  g->pending = cm->pending;
  g->type = m->body_type;
  g->target = m->target_id;
}

static got get(const char *conv, uint64_t id) {
  got g = {.n = 0};
  cr_assert_eq(chat_client_get_message(h.c, conv, id, keep, &g), CHAT_OK,
               "%s", chat_client_errmsg(h.c));
  cr_assert_eq(g.n, 1);
  return g;
}

static size_t count_ev_a(const char *kind, const char *a) {
  size_t n = 0;
  for (size_t i = 0; i < h.n_ev; i++)
    n += strcmp(h.ev[i].kind, kind) == 0 && strcmp(h.ev[i].a, a) == 0;
  return n;
}

Test(store, an_edit_replaces_the_body_and_is_reported) {
  ch_connect(&h);
  ch_msg(&h, "c", "10", "bob");
  ch_entry(&h, "c", "11", "bob", "edit", "10", "fixed");
  /* The entry first, as the log entry it is; then the target's change. */
  cr_assert_eq(ch_count_ev(&h, "message"), 2);
  const ch_event *m = ch_last_ev(&h, "message");
  cr_assert_str_eq(m->a, "11");
  const ch_event *chg = ch_last_ev(&h, "changed");
  cr_assert_not_null(chg);
  cr_assert_str_eq(chg->a, "10");
  cr_assert_str_eq(chg->body, "fixed");
  cr_assert(chg->edited);
  cr_assert_not(chg->flag);
  cr_assert_gt(chg - h.ev, m - h.ev, "changed after the entry's message");
  got g = get("c", 10);
  cr_assert_str_eq(g.body, "fixed");
  cr_assert(g.edited);
  cr_assert_eq(g.edited_ts, 11, "edited when the entry was made");
  /* A repeat changes nothing and is not reported. */
  ch_entry(&h, "c", "11", "bob", "edit", "10", "fixed");
  cr_assert_eq(ch_count_ev(&h, "changed"), 1);
  cr_assert_eq(ch_count_ev(&h, "message"), 2);
  /* The entry moved last_seen like any message. */
  uint64_t ls;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 11);
}

Test(store, a_delete_erases_the_target_and_its_edits) {
  ch_connect(&h);
  ch_msg(&h, "c", "10", "bob");
  ch_entry(&h, "c", "11", "bob", "edit", "10", "secret edit");
  ch_entry(&h, "c", "12", "carol", "delete", "10", "");
  const ch_event *chg = ch_last_ev(&h, "changed");
  cr_assert_str_eq(chg->a, "10");
  cr_assert(chg->flag, "deleted");
  cr_assert_str_eq(chg->body, "");
  got t = get("c", 10);
  cr_assert(t.deleted);
  cr_assert_eq(t.body_len, 0);
  got e = get("c", 11);
  cr_assert_eq(e.type, CHAT_BODY_EDIT);
  cr_assert_eq(e.body_len, 0, "the edit's body is erased too");
  /* Nothing brings it back: a later edit (a server would refuse it, a
   * device must still ignore it) changes nothing. */
  ch_entry(&h, "c", "13", "bob", "edit", "10", "back again");
  cr_assert_eq(ch_count_ev(&h, "changed"), 2);
  t = get("c", 10);
  cr_assert(t.deleted);
  cr_assert_eq(t.body_len, 0);
  cr_assert_eq(get("c", 13).body_len, 0);
}

/* ---- order independence ---- */

typedef struct item {
  const char *id, *kind, *target, *body; /* kind NULL: the target */
} item;

static void deliver(const item *it) {
  if (!it->kind) {
    char f[256];
    snprintf(f, sizeof f,
             "{\"type\":\"message\",\"message_id\":\"%s\",\"conversation_id\":"
             "\"c\",\"sender_id\":\"bob\",\"body\":\"%s\",\"server_ts\":%s,"
             "\"client_msg_id\":\"x%s\"}",
             it->id, it->body, it->id, it->id);
    ch_feed(&h, f);
  } else {
    ch_entry(&h, "c", it->id, "bob", it->kind, it->target, it->body);
  }
}

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

typedef struct want {
  const item *items;
  const char *body;
  bool deleted;
  int runs;
} want;

/* One order on a fresh client: the target ends as wanted, and what the
 * app was told agrees with it (the last report of the target, whether
 * on_message or on_message_changed, is the final state). */
static void run_order(const size_t *order, size_t n, void *ctx) {
  want *w = ctx;
  w->runs++;
  ch_close(&h);
  ch_reset_log(&h);
  cr_assert_eq(ch_open(&h, ":memory:", NULL), CHAT_OK);
  ch_connect(&h);
  for (size_t i = 0; i < n; i++)
    deliver(&w->items[order[i]]);
  got g = get("c", 10);
  cr_assert_str_eq(g.body, w->body, "run %d", w->runs);
  cr_assert_eq(g.deleted, w->deleted, "run %d", w->runs);
  const ch_event *last = NULL;
  for (size_t i = 0; i < h.n_ev; i++)
    if ((strcmp(h.ev[i].kind, "changed") == 0 ||
         strcmp(h.ev[i].kind, "message") == 0) &&
        strcmp(h.ev[i].a, "10") == 0)
      last = &h.ev[i];
  cr_assert_not_null(last);
  cr_assert_str_eq(last->body, w->body, "run %d: the app's last word",
                   w->runs);
  cr_assert_eq(last->flag, w->deleted, "run %d", w->runs);
  cr_assert_eq(count_ev_a("message", "10"), 1, "the target once");
}

Test(store, the_newest_edit_wins_whatever_the_order) {
  const item items[] = {
      {"10", NULL, NULL, "original"},
      {"11", "edit", "10", "edit eleven"},
      {"13", "edit", "10", "edit thirteen"},
      {"12", "edit", "10", "edit twelve"},
  };
  size_t idx[] = {0, 1, 2, 3};
  want w = {.items = items, .body = "edit thirteen", .deleted = false};
  permute(idx, 4, 0, run_order, &w);
  cr_assert_eq(w.runs, 24);
}

Test(store, a_delete_wins_whatever_the_order) {
  const item items[] = {
      {"10", NULL, NULL, "original"},
      {"11", "edit", "10", "edit eleven"},
      {"12", "delete", "10", ""},
      {"13", "edit", "10", "edit thirteen"},
  };
  size_t idx[] = {0, 1, 2, 3};
  want w = {.items = items, .body = "", .deleted = true};
  permute(idx, 4, 0, run_order, &w);
  cr_assert_eq(w.runs, 24);
}

/* An edit known before its target: the target, paged in later from REST
 * (older history), already carries the edit when the app meets it, and no
 * change is reported for a message the app had never seen. */
Test(store, an_entry_before_its_target_older_history) {
  ch_connect(&h);
  ch_entry(&h, "c", "20", "bob", "edit", "10", "edited early");
  cr_assert_eq(ch_count_ev(&h, "changed"), 0, "no target yet");
  uint32_t id;
  cr_assert_eq(chat_client_load_older(h.c, "c", 20, 50, &id, h.now),
               CHAT_OK);
  chat_client_request r = {.version = CHAT_CLIENT_REQUEST_V1};
  cr_assert_eq(chat_client_next_request(h.c, &r), CHAT_OK);
  const char *page =
      "{\"messages\":[{\"message_id\":\"10\",\"conversation_id\":\"c\","
      "\"sender_id\":\"bob\",\"body\":\"original\",\"server_ts\":10,"
      "\"client_msg_id\":\"x10\"}],\"has_more\":false}";
  cr_assert_eq(chat_client_on_response(h.c, r.id, 200, page, strlen(page),
                                       h.now),
               CHAT_OK);
  const ch_event *m = ch_last_ev(&h, "message");
  cr_assert_str_eq(m->a, "10");
  cr_assert_eq(m->n, CHAT_ORIGIN_OLDER);
  cr_assert_str_eq(m->body, "edited early", "reported as it is now");
  cr_assert(m->edited);
  cr_assert_eq(ch_count_ev(&h, "changed"), 0);
  cr_assert_str_eq(get("c", 10).body, "edited early");
}

/* A media message whose edit came first keeps its media references in
 * what the app is told (the store does not keep them; the frame has
 * them). */
Test(store, a_media_message_edited_early_keeps_its_media) {
  ch_connect(&h);
  ch_entry(&h, "c", "20", "bob", "edit", "10", "new caption");
  ch_feed(&h, "{\"type\":\"message\",\"message_id\":\"10\","
              "\"conversation_id\":\"c\",\"sender_id\":\"bob\",\"body\":"
              "\"caption\",\"server_ts\":10,\"client_msg_id\":\"x10\","
              "\"body_type\":\"media\",\"media_refs\":[\"m1\",\"m2\"]}");
  const ch_event *m = ch_last_ev(&h, "message");
  cr_assert_str_eq(m->a, "10");
  cr_assert_str_eq(m->body, "new caption");
  cr_assert_eq(m->refs, 2);
}

/* The target read back from the server with its current state (REST
 * history of a device whose gap was over the resume cap), and the entries
 * in the same pages: the device converges, with a delete the body never
 * lands anywhere. */
Test(store, a_rest_gap_converges_on_the_current_state) {
  ch_connect(&h);
  ch_msg(&h, "c", "5", "bob");
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_feed(&h, "{\"type\":\"resume_failed\",\"conversation_id\":\"c\","
              "\"reason\":\"too_old\"}");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  chat_client_request r = {.version = CHAT_CLIENT_REQUEST_V1};
  cr_assert_eq(chat_client_next_request(h.c, &r), CHAT_OK);
  cr_assert(strstr(r.path, "after=5"));
  /* 10 edited twice (the first edit's body erased by the server), 20
   * deleted after an edit (both bodies erased), then the entries. */
  const char *page =
      "{\"messages\":["
      "{\"message_id\":\"10\",\"conversation_id\":\"c\",\"sender_id\":"
      "\"bob\",\"body\":\"second\",\"server_ts\":10,\"client_msg_id\":"
      "\"a\",\"edited_ts\":12},"
      "{\"message_id\":\"11\",\"conversation_id\":\"c\",\"sender_id\":"
      "\"bob\",\"body\":\"\",\"server_ts\":11,\"client_msg_id\":\"b\","
      "\"body_type\":\"edit\",\"target_id\":\"10\"},"
      "{\"message_id\":\"12\",\"conversation_id\":\"c\",\"sender_id\":"
      "\"bob\",\"body\":\"second\",\"server_ts\":12,\"client_msg_id\":\"c\","
      "\"body_type\":\"edit\",\"target_id\":\"10\"},"
      "{\"message_id\":\"20\",\"conversation_id\":\"c\",\"sender_id\":"
      "\"bob\",\"body\":\"\",\"server_ts\":20,\"client_msg_id\":\"d\","
      "\"deleted\":true},"
      "{\"message_id\":\"21\",\"conversation_id\":\"c\",\"sender_id\":"
      "\"bob\",\"body\":\"\",\"server_ts\":21,\"client_msg_id\":\"e\","
      "\"body_type\":\"edit\",\"target_id\":\"20\"},"
      "{\"message_id\":\"22\",\"conversation_id\":\"c\",\"sender_id\":"
      "\"alice\",\"body\":\"\",\"server_ts\":22,\"client_msg_id\":\"f\","
      "\"body_type\":\"delete\",\"target_id\":\"20\"}"
      "],\"has_more\":false}";
  cr_assert_eq(chat_client_on_response(h.c, r.id, 200, page, strlen(page),
                                       h.now),
               CHAT_OK);
  got a = get("c", 10);
  cr_assert_str_eq(a.body, "second");
  cr_assert_eq(a.edited_ts, 12);
  got b = get("c", 20);
  cr_assert(b.deleted);
  cr_assert_eq(b.body_len, 0);
  /* The erased first edit did not blank 10 on the way: it was never
   * reported with an empty body. */
  for (size_t i = 0; i < h.n_ev; i++)
    if (strcmp(h.ev[i].kind, "changed") == 0 &&
        strcmp(h.ev[i].a, "10") == 0)
      cr_assert_str_neq(h.ev[i].body, "");
  uint64_t ls;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 22);
}

/* Resume history brings the entries of an edit and a delete made while
 * the device was away; it converges and the app hears each change. */
Test(store, resume_history_applies_entries) {
  ch_connect(&h);
  ch_msg(&h, "c", "10", "bob");
  ch_msg(&h, "c", "11", "bob");
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_reset_log(&h);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_feed(&h,
          "{\"type\":\"history\",\"conversation_id\":\"c\",\"messages\":["
          "{\"message_id\":\"12\",\"conversation_id\":\"c\",\"sender_id\":"
          "\"bob\",\"body\":\"better\",\"server_ts\":12,\"client_msg_id\":"
          "\"e\",\"body_type\":\"edit\",\"target_id\":\"10\"},"
          "{\"message_id\":\"13\",\"conversation_id\":\"c\",\"sender_id\":"
          "\"bob\",\"body\":\"\",\"server_ts\":13,\"client_msg_id\":\"d\","
          "\"body_type\":\"delete\",\"target_id\":\"11\"}],"
          "\"complete\":true}");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":1,\"messages\":2}");
  cr_assert_eq(ch_count_ev(&h, "changed"), 2);
  cr_assert_str_eq(get("c", 10).body, "better");
  cr_assert(get("c", 11).deleted);
  cr_assert_eq(ch_last_ev(&h, "message")->n, CHAT_ORIGIN_RESUME);
}

/* A store write failing while an entry is applied leaves last_seen behind
 * it: the next resume brings the entry again (a duplicate to the store)
 * and it is applied then. */
Test(store, an_entry_not_applied_is_applied_when_it_comes_again) {
  ch_connect(&h);
  ch_msg(&h, "c", "10", "bob");
  ch_entry(&h, "c", "11", "bob", "edit", "10", "v2");
  /* That worked; now a second edit that is stored but whose application
   * fails. */
  failing_store_set_only(h.fail, "apply_changes");
  ch_entry(&h, "c", "12", "bob", "edit", "10", "v3");
  failing_store_set_only(h.fail, NULL);
  cr_assert_eq(failing_store_refused(h.fail), 1);
  cr_assert_eq(ch_last_ev(&h, "error")->n, CHAT_ERR_MODULE);
  cr_assert_str_eq(get("c", 10).body, "v2");
  uint64_t ls;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 11, "not past the entry that did not land");
  ch_entry(&h, "c", "12", "bob", "edit", "10", "v3");
  cr_assert_str_eq(get("c", 10).body, "v3");
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 12);
}

Test(store, get_message_reads_one_or_says_not_found) {
  ch_connect(&h);
  ch_msg(&h, "c", "10", "bob");
  got g = get("c", 10);
  cr_assert_str_eq(g.body, "hi 10");
  cr_assert_not(g.own);
  got none = {.n = 0};
  cr_assert_eq(chat_client_get_message(h.c, "c", 11, keep, &none),
               CHAT_ERR_NOT_FOUND);
  cr_assert_eq(none.n, 0);
  cr_assert(strstr(chat_client_errmsg(h.c), "11"));
  cr_assert_eq(chat_client_get_message(h.c, "bad id", 10, keep, &none),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_get_message(h.c, "c", 10, NULL, NULL),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_get_message(NULL, "c", 10, keep, &none),
               CHAT_ERR_INVAL);
}

typedef struct listed {
  got g[16];
  size_t n;
} listed;

static void keep_all(void *ud, const chat_client_message *cm) {
  listed *l = ud;
  cr_assert_lt(l->n, 16);
  keep(&l->g[l->n++], cm);
}

/* Unacked edits and deletes are listed after the stored messages, as
 * pending entries naming their target. */
Test(store, pending_edits_and_deletes_are_listed) {
  ch_connect(&h);
  ch_msg(&h, "c", "10", "bob");
  char a[CHAT_CLIENT_MSG_ID_BUF], b[CHAT_CLIENT_MSG_ID_BUF];
  cr_assert_eq(chat_client_edit(h.c, "c", 9, "new", 3, a, h.now), CHAT_OK);
  cr_assert_eq(chat_client_delete(h.c, "c", 8, b, h.now), CHAT_OK);
  listed l = {.n = 0};
  cr_assert_eq(chat_client_list_messages(h.c, "c", 0, 50, keep_all, &l),
               CHAT_OK);
  cr_assert_eq(l.n, 3);
  cr_assert_eq(l.g[1].type, CHAT_BODY_EDIT);
  cr_assert_eq(l.g[1].target, 9);
  cr_assert_str_eq(l.g[1].body, "new");
  cr_assert(l.g[1].pending);
  cr_assert_eq(l.g[2].type, CHAT_BODY_DELETE);
  cr_assert_eq(l.g[2].target, 8);
}

/* A system message (a member or admin change) learnt through resume
 * fetches its conversation anew; one request for several of them. */
Test(store, a_system_message_through_resume_refreshes_its_conversation) {
  ch_connect(&h);
  ch_msg(&h, "g", "10", "bob");
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_reset_log(&h);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_feed(&h,
          "{\"type\":\"history\",\"conversation_id\":\"g\",\"messages\":["
          "{\"message_id\":\"11\",\"conversation_id\":\"g\",\"sender_id\":"
          "\"bob\",\"body\":\"bob made carol an admin\",\"server_ts\":11,"
          "\"body_type\":\"system\"},"
          "{\"message_id\":\"12\",\"conversation_id\":\"g\",\"sender_id\":"
          "\"bob\",\"body\":\"bob removed dave\",\"server_ts\":12,"
          "\"body_type\":\"system\"}],\"complete\":true}");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":1,\"messages\":2}");
  chat_client_request r = {.version = CHAT_CLIENT_REQUEST_V1};
  cr_assert_eq(chat_client_next_request(h.c, &r), CHAT_OK);
  cr_assert_str_eq(r.method, "GET");
  cr_assert_str_eq(r.path, "/api/v1/conversations/g");
  chat_client_request r2 = {.version = CHAT_CLIENT_REQUEST_V1};
  cr_assert_eq(chat_client_next_request(h.c, &r2), CHAT_ERR_AGAIN,
               "one refresh for both changes");
  const char *conv =
      "{\"conversation_id\":\"g\",\"type\":\"group\",\"name\":\"G\","
      "\"members\":[\"alice\",\"bob\",\"carol\"],\"admins\":[\"bob\","
      "\"carol\"],\"last_message\":null,\"unread_count\":0,"
      "\"last_read_message_id\":null}";
  cr_assert_eq(chat_client_on_response(h.c, r.id, 200, conv, strlen(conv),
                                       h.now),
               CHAT_OK);
  const ch_event *e = ch_last_ev(&h, "conversation");
  cr_assert_str_eq(e->a, "g");
  cr_assert_eq(e->n, 3);
  cr_assert_eq(ch_count_ev(&h, "done"), 0, "nobody asked: nobody told");
  /* A live system message comes with its own `conversation` frame: no
   * refresh. */
  ch_feed(&h, "{\"type\":\"message\",\"message_id\":\"13\","
              "\"conversation_id\":\"g\",\"sender_id\":\"bob\",\"body\":"
              "\"bob added erin\",\"server_ts\":13,\"body_type\":\"system\"}");
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
}

static void keep_kind(void *ud, const chat_client_message *cm) {
  struct {
    chat_sender_kind k[4];
    size_t n;
  } *ks = ud;
  if (ks->n < 4)
    ks->k[ks->n++] = cm->message->sender_kind;
}

/* A bot's messages keep sender_kind in the store (section 8). */
Test(store, a_bots_messages_keep_their_kind) {
  ch_connect(&h);
  ch_feed(&h, "{\"type\":\"message\",\"message_id\":\"10\","
              "\"conversation_id\":\"g\",\"sender_id\":\"weather\",\"body\":"
              "\"Sunny\",\"server_ts\":10,\"client_msg_id\":\"w-1\","
              "\"sender_kind\":\"bot\"}");
  ch_msg(&h, "g", "11", "bob");
  struct {
    chat_sender_kind k[4];
    size_t n;
  } ks = {.n = 0};
  cr_assert_eq(chat_client_list_messages(h.c, "g", 0, 10, keep_kind, &ks),
               CHAT_OK);
  cr_assert_eq(ks.n, 2);
  cr_assert_eq(ks.k[0], CHAT_SENDER_BOT);
  cr_assert_eq(ks.k[1], CHAT_SENDER_USER);
}

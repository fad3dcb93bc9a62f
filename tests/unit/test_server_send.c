/* The send path: ack only after commit, group commit, idempotent retries,
 * order, membership, the rate limit, fan-out and push (PROTOCOL.md 4.1-4.4,
 * 4.10, 4.11). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "server_harness.h"

static harness h;
static const char *conv;

static void setup(void) {
  harness_init(&h, NULL);
  const char *bob[] = {"bob"};
  static char id[65];
  snprintf(id, sizeof id, "%s", harness_create(&h, "alice", "direct", bob, 1));
  conv = id;
}
static void teardown(void) { harness_fini(&h); }

TestSuite(send, .init = setup, .fini = teardown);

static void send(dev *d, const char *cmid, const char *body) {
  dev_sendf(d,
            "{\"type\":\"send\",\"client_msg_id\":\"%s\","
            "\"conversation_id\":\"%s\",\"body\":\"%s\"}",
            cmid, conv, body);
}

static int history_count(void) {
  char path[128];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/messages", conv);
  const char *body;
  cr_assert_eq(harness_http(&h, "alice", "GET", path, "limit=200", NULL,
                            &body),
               200);
  int n = 0;
  for (const char *p = body; (p = strstr(p, "\"message_id\"")); p++)
    n++;
  return n;
}

Test(send, ack_only_after_commit) {
  dev *a = dev_open(&h, "alice", "phone");
  dev_drain(a);
  send(a, "m1", "are you home?");
  /* Accepted, but not yet committed: no ack, nothing stored. */
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 0);
  cr_assert_eq(h.appends, 0);
  cr_assert_eq(chat_server_next_deadline(h.srv), 0, "a send is due at once");
  harness_tick(&h);
  cr_assert_eq(h.appends, 1);
  const chat_frame *f = dev_expect(a, CHAT_FRAME_ACK);
  cr_assert_str_eq(f->ack->client_msg_id, "m1");
  cr_assert_gt(f->ack->message_id, 0);
  cr_assert_eq(f->ack->server_ts, h.fe.wall_ms);
  cr_assert_not(f->ack->duplicate);
  cr_assert_eq(history_count(), 1);
}

Test(send, sends_that_arrive_together_share_one_commit) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  char id[16];
  for (int i = 0; i < 40; i++) {
    snprintf(id, sizeof id, "a%d", i);
    send(a, id, "x");
    snprintf(id, sizeof id, "b%d", i);
    send(b, id, "y");
  }
  harness_tick(&h);
  cr_assert_eq(h.appends, 1, "80 sends, %u commits", h.appends);
  cr_assert_eq(h.last_batch, 80);
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 40);
  cr_assert_eq(dev_count(b, CHAT_FRAME_ACK), 40);
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.commits_total, 1);
  cr_assert_eq(st.sends_committed_total, 80);
}

Test(send, batches_are_capped_by_max_batch) {
  harness_fini(&h);
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .max_batch = 16};
  harness_init(&h, &s);
  const char *bob[] = {"bob"};
  conv = harness_create(&h, "alice", "direct", bob, 1);
  static char c2[65];
  snprintf(c2, sizeof c2, "%s", conv);
  conv = c2;
  dev *a = dev_open(&h, "alice", "phone");
  char id[16];
  for (int i = 0; i < 40; i++) {
    snprintf(id, sizeof id, "m%d", i);
    send(a, id, "x");
  }
  harness_tick(&h);
  cr_assert_eq(h.appends, 3);
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 40);
}

Test(send, delivered_to_every_device_but_the_sending_one) {
  dev *a1 = dev_open(&h, "alice", "phone");
  dev *a2 = dev_open(&h, "alice", "laptop");
  dev *b1 = dev_open(&h, "bob", "phone");
  dev *b2 = dev_open(&h, "bob", "tablet");
  dev *c = dev_open(&h, "carol", "phone");
  dev_drain(a1);
  dev_drain(a2);
  dev_drain(b1);
  dev_drain(b2);
  dev_drain(c);
  send(a1, "m1", "hi \\\"bob\\\"");
  harness_tick(&h);
  uint64_t id = dev_expect(a1, CHAT_FRAME_ACK)->ack->message_id;
  cr_assert_eq(dev_count(a1, CHAT_FRAME_MESSAGE), 0);
  for (int i = 0; i < 3; i++) {
    dev *d = i == 0 ? a2 : i == 1 ? b1 : b2;
    const chat_frame *f = dev_expect(d, CHAT_FRAME_MESSAGE);
    cr_assert_eq(f->message->message_id, id);
    cr_assert_str_eq(f->message->sender_id, "alice");
    cr_assert_str_eq(f->message->client_msg_id, "m1");
    cr_assert_str_eq(f->message->body.ptr, "hi \"bob\"");
    cr_assert_str_eq(f->message->conversation_id, conv);
  }
  cr_assert_eq(dev_count(c, CHAT_FRAME_MESSAGE), 0, "not a member");
}

Test(send, retry_hours_later_is_a_duplicate_with_the_original_ids) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  send(a, "m1", "once");
  harness_tick(&h);
  const chat_frame *f = dev_expect(a, CHAT_FRAME_ACK);
  uint64_t id = f->ack->message_id;
  int64_t ts = f->ack->server_ts;
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 1);
  dev_drain(b);

  harness_advance(&h, 3ull * 3600 * 1000);
  /* The retry comes from a new connection, as after a crash. */
  dev_close(a);
  dev *a2 = dev_open(&h, "alice", "phone");
  send(a2, "m1", "once");
  harness_tick(&h);
  f = dev_expect(a2, CHAT_FRAME_ACK);
  cr_assert(f->ack->duplicate);
  cr_assert_eq(f->ack->message_id, id);
  cr_assert_eq(f->ack->server_ts, ts);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 0, "delivered twice");
  cr_assert_eq(history_count(), 1, "stored twice");
}

Test(send, duplicate_within_one_batch) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  send(a, "same", "one");
  send(a, "same", "one");
  harness_tick(&h);
  const chat_frame *f1 = dev_expect(a, CHAT_FRAME_ACK);
  uint64_t id = f1->ack->message_id;
  cr_assert_not(f1->ack->duplicate);
  const chat_frame *f2 = dev_expect(a, CHAT_FRAME_ACK);
  cr_assert(f2->ack->duplicate);
  cr_assert_eq(f2->ack->message_id, id);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 1);
}

Test(send, order_under_interleaved_senders) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev *watch = dev_open(&h, "bob", "laptop");
  dev_drain(watch);
  char id[16];
  for (int round = 0; round < 5; round++) {
    for (int i = 0; i < 7; i++) {
      snprintf(id, sizeof id, "a%d-%d", round, i);
      send(a, id, "a");
      snprintf(id, sizeof id, "b%d-%d", round, i);
      send(b, id, "b");
    }
    harness_tick(&h);
  }
  /* The watcher sees alice's messages and bob's own (bob's other device)
   * with strictly increasing ids, each sender's in send order. */
  uint64_t last = 0;
  int last_a = -1, last_b = -1, n = 0;
  const chat_frame *f;
  while ((f = dev_next(watch))) {
    if (f->type != CHAT_FRAME_MESSAGE)
      continue;
    cr_assert_gt(f->message->message_id, last);
    last = f->message->message_id;
    int r, i;
    sscanf(f->message->client_msg_id + 1, "%d-%d", &r, &i);
    int seq = r * 7 + i;
    int *lp = f->message->client_msg_id[0] == 'a' ? &last_a : &last_b;
    cr_assert_gt(seq, *lp, "send order broken");
    *lp = seq;
    n++;
  }
  cr_assert_eq(n, 70);
}

Test(send, unknown_conversation_and_non_member_refused) {
  dev *c = dev_open(&h, "carol", "phone");
  dev_drain(c);
  send(c, "m1", "let me in");
  const chat_frame *f = dev_expect(c, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_NOT_MEMBER);
  cr_assert_str_eq(f->error->ref.ptr, "m1");
  dev_send(c, "{\"type\":\"send\",\"client_msg_id\":\"m2\","
              "\"conversation_id\":\"nope\",\"body\":\"x\"}");
  f = dev_expect(c, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_NO_SUCH_CONVERSATION);
  harness_tick(&h);
  cr_assert_eq(h.appends, 0);
  cr_assert_eq(history_count(), 0);
}

Test(send, rate_limit_with_retry_after) {
  dev *a = dev_open(&h, "alice", "phone");
  dev_drain(a);
  char id[16];
  for (int i = 0; i < 60; i++) {
    snprintf(id, sizeof id, "m%d", i);
    send(a, id, "x");
  }
  send(a, "m60", "x");
  const chat_frame *f = dev_expect(a, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_RATE_LIMITED);
  cr_assert_str_eq(f->error->ref.ptr, "m60");
  cr_assert(f->error->has_retry_after);
  uint64_t retry = f->error->retry_after_ms;
  cr_assert(retry > 0 && retry <= 1001, "retry_after_ms %llu",
            (unsigned long long)retry);
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 60);
  cr_assert_eq(history_count(), 60, "the refused send must not be stored");
  dev_drain(a);
  /* Other conversations have their own bucket. */
  const char *carol[] = {"carol"};
  char other[65];
  snprintf(other, sizeof other, "%s",
           harness_create(&h, "alice", "direct", carol, 1));
  dev_sendf(a, "{\"type\":\"send\",\"client_msg_id\":\"o1\","
               "\"conversation_id\":\"%s\",\"body\":\"x\"}", other);
  harness_tick(&h);
  cr_assert_eq(dev_expect(a, CHAT_FRAME_ACK)->ack->client_msg_id[0], 'o');
  /* After the advised wait the same conversation accepts again. */
  harness_advance(&h, retry);
  dev_drain(a);
  send(a, "m60", "x");
  harness_tick(&h);
  f = dev_expect(a, CHAT_FRAME_ACK);
  cr_assert_str_eq(f->ack->client_msg_id, "m60");
}

Test(send, storage_failure_answers_internal_and_acks_nothing) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(a);
  dev_drain(b);
  h.fail_append = true;
  send(a, "m1", "x");
  harness_tick(&h);
  const chat_frame *f = dev_expect(a, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_INTERNAL);
  cr_assert_str_eq(f->error->ref.ptr, "m1");
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 0);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 0);
  /* The client retries with the same id once the store is back. */
  h.fail_append = false;
  send(a, "m1", "x");
  harness_tick(&h);
  f = dev_expect(a, CHAT_FRAME_ACK);
  cr_assert_not(f->ack->duplicate);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 1);
}

Test(send, closed_sender_still_commits) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  send(a, "m1", "x");
  dev_close(a);
  harness_tick(&h);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 1);
  cr_assert_eq(history_count(), 1);
}

Test(send, push_only_for_members_with_no_online_device) {
  const char *members[] = {"bob", "carol", "dave"};
  static char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", members, 3));
  /* carol and dave registered push tokens; only bob is online. */
  cr_assert_eq(harness_http(&h, "carol", "POST", "/api/v1/devices", NULL,
                            "{\"platform\":\"fcm\",\"push_token\":\"tok-c\"}",
                            NULL),
               200);
  cr_assert_eq(harness_http(&h, "dave", "POST", "/api/v1/devices", NULL,
                            "{\"platform\":\"apns\",\"push_token\":\"tok-d\"}",
                            NULL),
               200);
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev *d = dev_open(&h, "dave", "phone");
  dev_close(d); /* dave was online, but left */
  harness_advance(&h, 10000);
  dev_sendf(a, "{\"type\":\"send\",\"client_msg_id\":\"g1\","
               "\"conversation_id\":\"%s\",\"body\":\"secret body\"}", g);
  harness_tick(&h);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 1);
  cr_assert_eq(h.n_pushes, 2, "pushes: %zu", h.n_pushes);
  for (size_t i = 0; i < h.n_pushes; i++) {
    push_rec *p = &h.pushes[i];
    cr_assert(strcmp(p->user, "carol") == 0 || strcmp(p->user, "dave") == 0);
    cr_assert_str_eq(p->sender, "alice");
    cr_assert_str_eq(p->conv, g);
    cr_assert_str_eq(p->device, "rest"); /* the device that registered */
    cr_assert_not_null(strstr(p->preview, "alice"));
    cr_assert_null(strstr(p->preview, "secret"));
  }
}

Test(send, message_frames_share_one_encoding) {
  /* 30 devices of one member: the fan-out encodes once and queues the same
   * bytes everywhere. */
  dev *a = dev_open(&h, "alice", "phone");
  dev *bs[30];
  char name[16];
  for (int i = 0; i < 30; i++) {
    snprintf(name, sizeof name, "d%d", i);
    bs[i] = dev_open(&h, "bob", name);
    dev_drain(bs[i]);
  }
  send(a, "m1", "x");
  harness_tick(&h);
  const char *first = NULL;
  for (int i = 0; i < 30; i++) {
    dev_expect(bs[i], CHAT_FRAME_MESSAGE);
    if (!first)
      first = dev_last_raw(bs[i]);
    else
      cr_assert_str_eq(dev_last_raw(bs[i]), first);
  }
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.deliveries_total, 30);
}

/* PROTOCOL.md 4.4: the round that commits and acks does no delivery work,
 * so the host writes the ack before any fan-out, whatever the group size. */
Test(send, fan_out_runs_in_the_round_after_the_ack) {
  enum { N = 1000 };
  static char names[N][16];
  static const char *members[N];
  for (int i = 0; i < N - 1; i++) {
    snprintf(names[i], sizeof names[i], "m%d", i);
    members[i] = names[i];
  }
  static char g[65];
  snprintf(g, sizeof g, "%s",
           harness_create(&h, "alice", "group", members, N - 1));
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "m1", "phone");
  dev_drain(a);
  dev_drain(b);
  dev_sendf(a, "{\"type\":\"send\",\"client_msg_id\":\"g1\","
               "\"conversation_id\":\"%s\",\"body\":\"hi all\"}", g);
  /* Round 1: commit and ack only. */
  cr_assert_eq(chat_server_on_timer(h.srv, h.now), CHAT_OK);
  harness_pump(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 1);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 0);
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.deliveries_total, 0);
  /* The delivery round is due at once. */
  cr_assert_eq(chat_server_next_deadline(h.srv), 0);
  cr_assert_eq(chat_server_on_timer(h.srv, h.now), CHAT_OK);
  harness_pump(&h);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 1);
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.deliveries_total, 1);
}

/* ------------------------------------------------------------------------
 * PROTOCOL.md section 8: edit and delete entries, bots, shadow bans. A
 * group of alice (creator, so admin), bob and carol. */

static char grp[65];

static void entries_setup(void) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .edit_window_ms = 60000};
  harness_init(&h, &s);
  const char *m[] = {"bob", "carol"};
  snprintf(grp, sizeof grp, "%s", harness_create(&h, "alice", "group", m, 2));
  conv = grp;
}

TestSuite(entries, .init = entries_setup, .fini = teardown);

static uint64_t acked(dev *d, const char *cmid) {
  harness_tick(&h);
  const chat_frame *f = dev_expect(d, CHAT_FRAME_ACK);
  cr_assert_str_eq(f->ack->client_msg_id, cmid);
  return f->ack->message_id;
}

static uint64_t post(dev *d, const char *cmid, const char *body) {
  send(d, cmid, body);
  return acked(d, cmid);
}

static void edit(dev *d, const char *cmid, uint64_t target,
                 const char *body) {
  dev_sendf(d,
            "{\"type\":\"edit\",\"client_msg_id\":\"%s\","
            "\"conversation_id\":\"%s\",\"target_id\":\"%llu\","
            "\"body\":\"%s\"}",
            cmid, conv, (unsigned long long)target, body);
}

static void del(dev *d, const char *cmid, uint64_t target) {
  dev_sendf(d,
            "{\"type\":\"delete\",\"client_msg_id\":\"%s\","
            "\"conversation_id\":\"%s\",\"target_id\":\"%llu\"}",
            cmid, conv, (unsigned long long)target);
}

static void expect_refused(dev *d, const char *cmid, chat_wire_error code) {
  harness_tick(&h);
  const chat_frame *f = dev_expect(d, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, code, "code %s: %s", f->error->code,
               f->error->message.ptr);
  cr_assert_str_eq(f->error->ref.ptr, cmid);
  cr_assert_eq(dev_count(d, CHAT_FRAME_ACK), 0);
}

/* The REST history (newest first), parsed with the library's decoder
 * through a `history` frame would be circular; look at the JSON. */
static const char *history_json(const char *user) {
  char path[128];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/messages", conv);
  const char *body;
  cr_assert_eq(harness_http(&h, user, "GET", path, "limit=200", NULL, &body),
               200);
  return body;
}

Test(entries, an_edit_is_acked_stored_delivered_and_applied) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *a2 = dev_open(&h, "alice", "laptop");
  dev *b = dev_open(&h, "bob", "phone");
  uint64_t m1 = post(a, "m1", "see you at 8");
  harness_tick(&h);
  dev_drain(a);
  dev_drain(a2);
  dev_drain(b);
  edit(a, "e1", m1, "see you at 8:30");
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 0, "acked only once durable");
  uint64_t e1 = acked(a, "e1");
  cr_assert_gt(e1, m1, "a new entry of the same log");
  harness_tick(&h);
  for (int i = 0; i < 2; i++) {
    dev *d = i ? b : a2;
    const chat_frame *f = dev_expect(d, CHAT_FRAME_MESSAGE);
    const chat_message *m = f->message;
    cr_assert_eq(m->message_id, e1);
    cr_assert_eq(m->body_type, CHAT_BODY_EDIT);
    cr_assert(m->has_target_id);
    cr_assert_eq(m->target_id, m1);
    cr_assert_str_eq(m->body.ptr, "see you at 8:30");
    cr_assert_str_eq(m->client_msg_id, "e1");
    cr_assert_not(m->has_edited_ts, "live frames carry no state");
    cr_assert_not(m->deleted);
  }
  cr_assert_eq(dev_count(a, CHAT_FRAME_MESSAGE), 0, "not to the sender");
  /* Read back: the target with its current body and edited_ts, then the
   * entry. */
  const char *hist = history_json("bob");
  char want[128];
  snprintf(want, sizeof want,
           "\"message_id\":\"%llu\",\"conversation_id\":\"%s\","
           "\"sender_id\":\"alice\",\"body\":\"see you at 8:30\"",
           (unsigned long long)m1, conv);
  cr_assert_not_null(strstr(hist, want), "%s", hist);
  cr_assert_not_null(strstr(hist, "\"edited_ts\":"), "%s", hist);
  cr_assert_null(strstr(hist, "see you at 8\""), "the old body is gone");
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.edits_committed_total, 1);
  cr_assert_eq(st.sends_committed_total, 1);
}

Test(entries, edit_and_delete_retries_are_duplicates) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  uint64_t m1 = post(a, "m1", "x");
  edit(a, "e1", m1, "y");
  uint64_t e1 = acked(a, "e1");
  harness_tick(&h);
  del(a, "d1", m1);
  uint64_t d1 = acked(a, "d1");
  harness_tick(&h);
  dev_drain(b);
  /* Both retried after the target is gone: the original acks. */
  edit(a, "e1", m1, "y");
  harness_tick(&h);
  const chat_frame *f = dev_expect(a, CHAT_FRAME_ACK);
  cr_assert(f->ack->duplicate);
  cr_assert_eq(f->ack->message_id, e1);
  del(a, "d1", m1);
  harness_tick(&h);
  f = dev_expect(a, CHAT_FRAME_ACK);
  cr_assert(f->ack->duplicate);
  cr_assert_eq(f->ack->message_id, d1);
  harness_tick(&h);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 0, "nothing delivered twice");
}

Test(entries, only_the_sender_edits_and_only_within_the_window) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  uint64_t mb = post(b, "b1", "bob's");
  /* Not even an admin edits someone else's message. */
  edit(a, "e1", mb, "alice's now");
  expect_refused(a, "e1", CHAT_WIRE_FORBIDDEN);
  uint64_t ma = post(a, "a1", "typo");
  harness_advance(&h, 59000);
  edit(a, "e2", ma, "fixed");
  acked(a, "e2");
  harness_advance(&h, 2000);
  edit(a, "e3", ma, "too late");
  expect_refused(a, "e3", CHAT_WIRE_FORBIDDEN);
  cr_assert_null(strstr(history_json("bob"), "too late"));
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.edits_refused_total, 2);
}

Test(entries, unknown_or_unsuitable_targets_are_not_found) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  edit(a, "e1", 123456, "nothing there");
  expect_refused(a, "e1", CHAT_WIRE_NOT_FOUND);
  del(a, "d1", 123456);
  expect_refused(a, "d1", CHAT_WIRE_NOT_FOUND);
  /* A system message (bob's addition of dave) is not a target. */
  char path[128];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/members", conv);
  cr_assert_eq(harness_http(&h, "bob", "POST", path, NULL,
                            "{\"user_id\":\"dave\"}", NULL),
               200);
  harness_tick(&h);
  const chat_frame *f = dev_expect(a, CHAT_FRAME_MESSAGE);
  cr_assert_eq(f->message->body_type, CHAT_BODY_SYSTEM);
  uint64_t sys = f->message->message_id;
  del(a, "d2", sys);
  expect_refused(a, "d2", CHAT_WIRE_NOT_FOUND);
  /* Nor is an edit entry; nor a deleted message. */
  uint64_t m1 = post(a, "m1", "x");
  edit(a, "e2", m1, "y");
  uint64_t e2 = acked(a, "e2");
  del(a, "d3", e2);
  expect_refused(a, "d3", CHAT_WIRE_NOT_FOUND);
  del(a, "d4", m1);
  acked(a, "d4");
  edit(a, "e3", m1, "back from the dead");
  expect_refused(a, "e3", CHAT_WIRE_NOT_FOUND);
  /* A message of another conversation is unknown here. */
  const char *carol[] = {"carol"};
  char other[65];
  snprintf(other, sizeof other, "%s",
           harness_create(&h, "bob", "direct", carol, 1));
  const char *keep = conv;
  conv = other;
  uint64_t mo = post(b, "o1", "elsewhere");
  conv = keep;
  del(b, "d5", mo);
  expect_refused(b, "d5", CHAT_WIRE_NOT_FOUND);
}

Test(entries, delete_by_the_sender_or_a_group_admin) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev *c = dev_open(&h, "carol", "phone");
  uint64_t mb = post(b, "b1", "bob's secret");
  uint64_t mc = post(c, "c1", "carol's");
  harness_tick(&h);
  dev_drain(a);
  dev_drain(b);
  dev_drain(c);
  /* carol is no admin: not bob's message. */
  del(c, "x1", mb);
  expect_refused(c, "x1", CHAT_WIRE_FORBIDDEN);
  /* alice is: any message. */
  del(a, "d1", mb);
  uint64_t d1 = acked(a, "d1");
  harness_tick(&h);
  for (int i = 0; i < 2; i++) {
    dev *d = i ? c : b;
    const chat_frame *f = dev_expect(d, CHAT_FRAME_MESSAGE);
    cr_assert_eq(f->message->message_id, d1);
    cr_assert_eq(f->message->body_type, CHAT_BODY_DELETE);
    cr_assert_eq(f->message->body.len, 0);
    cr_assert_eq(f->message->target_id, mb);
    cr_assert_str_eq(f->message->sender_id, "alice");
  }
  /* The sender deletes their own. */
  del(c, "d2", mc);
  acked(c, "d2");
  const char *hist = history_json("bob");
  cr_assert_null(strstr(hist, "bob's secret"), "%s", hist);
  char want[96];
  snprintf(want, sizeof want, "\"message_id\":\"%llu\"",
           (unsigned long long)mb);
  const char *t = strstr(hist, want);
  cr_assert_not_null(t);
  const char *end = strchr(t, '}');
  cr_assert_not_null(strstr(t, "\"deleted\":true"));
  cr_assert_lt(strstr(t, "\"deleted\":true"), end, "on the target");
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.deletes_committed_total, 2);
}

Test(entries, in_a_direct_chat_only_the_sender_deletes) {
  const char *bob[] = {"bob"};
  char d[65];
  snprintf(d, sizeof d, "%s", harness_create(&h, "alice", "direct", bob, 1));
  conv = d;
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  uint64_t mb = post(b, "b1", "x");
  del(a, "d1", mb);
  expect_refused(a, "d1", CHAT_WIRE_FORBIDDEN);
  conv = grp;
}

Test(entries, edits_and_deletes_are_never_pushed) {
  cr_assert_eq(harness_http(&h, "carol", "POST", "/api/v1/devices", NULL,
                            "{\"platform\":\"fcm\",\"push_token\":\"t\"}",
                            NULL),
               200);
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t m1 = post(a, "m1", "x");
  harness_tick(&h);
  cr_assert_eq(h.n_pushes, 1, "the message itself");
  edit(a, "e1", m1, "y");
  acked(a, "e1");
  del(a, "d1", m1);
  acked(a, "d1");
  harness_tick(&h);
  cr_assert_eq(h.n_pushes, 1);
}

Test(entries, edits_share_the_send_quota) {
  harness_fini(&h);
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .rate_per_minute = 2};
  harness_init(&h, &s);
  const char *m[] = {"bob"};
  snprintf(grp, sizeof grp, "%s", harness_create(&h, "alice", "group", m, 1));
  conv = grp;
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t m1 = post(a, "m1", "x");
  edit(a, "e1", m1, "y");
  acked(a, "e1");
  edit(a, "e2", m1, "z");
  harness_tick(&h);
  const chat_frame *f = dev_expect(a, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_RATE_LIMITED);
  cr_assert_str_eq(f->error->ref.ptr, "e2");
}

/* ---- bots ---- */

Test(entries, a_bots_messages_say_so_and_it_has_its_own_quota) {
  harness_fini(&h);
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .rate_per_minute = 3,
                            .bot_rate_per_minute = 10};
  harness_init(&h, &s);
  const char *m[] = {"bob", "weather"};
  snprintf(grp, sizeof grp, "%s", harness_create(&h, "alice", "group", m, 2));
  conv = grp;
  dev *w = dev_open_kind(&h, "weather", "bot", CHAT_SENDER_BOT);
  const chat_frame *hello = dev_expect(w, CHAT_FRAME_HELLO);
  cr_assert_eq(hello->hello->limits.rate_per_minute, 10);
  dev *a = dev_open(&h, "alice", "phone");
  cr_assert_eq(dev_expect(a, CHAT_FRAME_HELLO)->hello->limits.rate_per_minute,
               3);
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  char id[16];
  for (int i = 0; i < 10; i++) {
    snprintf(id, sizeof id, "w%d", i);
    post(w, id, "sunny");
  }
  send(w, "w10", "one too many");
  harness_tick(&h);
  cr_assert_eq(dev_expect(w, CHAT_FRAME_ERROR)->error->wire,
               CHAT_WIRE_RATE_LIMITED);
  harness_tick(&h);
  const chat_frame *f = dev_expect(b, CHAT_FRAME_MESSAGE);
  cr_assert_eq(f->message->sender_kind, CHAT_SENDER_BOT);
  cr_assert_not_null(strstr(dev_last_raw(b), "\"sender_kind\":\"bot\""));
  /* People's messages say nothing. */
  dev_drain(b);
  post(a, "a1", "hi");
  harness_tick(&h);
  f = dev_expect(b, CHAT_FRAME_MESSAGE);
  cr_assert_eq(f->message->sender_kind, CHAT_SENDER_USER);
  cr_assert_null(strstr(dev_last_raw(b), "sender_kind"));
  /* History keeps it. */
  cr_assert_not_null(strstr(history_json("bob"), "\"sender_kind\":\"bot\""));
}

/* ---- shadow bans ---- */

Test(entries, a_shadow_banned_senders_messages_reach_only_their_devices) {
  cr_assert_eq(harness_http(&h, "carol", "POST", "/api/v1/devices", NULL,
                            "{\"platform\":\"fcm\",\"push_token\":\"t\"}",
                            NULL),
               200);
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev *b2 = dev_open(&h, "bob", "laptop");
  uint64_t before = post(b, "b0", "before the ban");
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_MESSAGE), 1);
  cr_assert_eq(h.n_pushes, 1);
  harness_ban(&h, "bob", true);
  dev_drain(a);
  dev_drain(b2);
  /* Acked and stored as usual ... */
  uint64_t id = post(b, "b1", "spam spam");
  harness_tick(&h);
  /* ... seen by bob's other device, by nobody else, pushed to nobody. */
  cr_assert_eq(dev_expect(b2, CHAT_FRAME_MESSAGE)->message->message_id, id);
  cr_assert_eq(dev_count(a, CHAT_FRAME_MESSAGE), 0);
  cr_assert_eq(h.n_pushes, 1);
  /* Typing neither. */
  dev_sendf(b, "{\"type\":\"typing\",\"conversation_id\":\"%s\","
               "\"is_typing\":true}", conv);
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_TYPING), 0);
  /* History: bob sees his messages, alice does not. */
  cr_assert_not_null(strstr(history_json("bob"), "spam spam"));
  const char *ha = history_json("alice");
  cr_assert_null(strstr(ha, "spam spam"), "%s", ha);
  cr_assert_not_null(strstr(ha, "before the ban"), "%s", ha);
  /* Edits and deletes of a banned sender are withheld the same way. */
  edit(b, "e1", before, "edited while banned");
  acked(b, "e1");
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_MESSAGE), 0);
  cr_assert_eq(dev_count(b2, CHAT_FRAME_MESSAGE), 1);
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.shadow_banned_users, 1);
  cr_assert_eq(st.shadow_withheld_total, 2);
  /* Unbanned: delivered again. */
  harness_ban(&h, "bob", false);
  post(b, "b2", "reformed");
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_MESSAGE), 1);
  cr_assert_eq(h.n_pushes, 2);
}

/* A ban written to the store by another process (chatd ban) applies to
 * the next commit; the typing relay learns of it at the next poll. */
Test(entries, a_ban_from_another_process_applies_at_the_next_commit) {
  harness_fini(&h);
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .ban_poll_ms = 3000};
  harness_init(&h, &s);
  const char *m[] = {"bob"};
  snprintf(grp, sizeof grp, "%s", harness_create(&h, "alice", "group", m, 1));
  conv = grp;
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(a);
  post(b, "b0", "delivered");
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_MESSAGE), 1);
  dev_drain(a);
  cr_assert_eq(h.inner.shadow_ban_set(h.inner.self, "bob", true, 1, NULL),
               CHAT_OK);
  post(b, "b1", "withheld at once");
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_MESSAGE), 0);
  /* Typing still goes out until the poll ... */
  dev_sendf(b, "{\"type\":\"typing\",\"conversation_id\":\"%s\","
               "\"is_typing\":true}", conv);
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_TYPING), 1);
  dev_drain(a);
  /* ... and not after it. */
  harness_advance(&h, 3000);
  harness_settle(&h);
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.shadow_banned_users, 1);
  dev_sendf(b, "{\"type\":\"typing\",\"conversation_id\":\"%s\","
               "\"is_typing\":false}", conv);
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_TYPING), 0);
}

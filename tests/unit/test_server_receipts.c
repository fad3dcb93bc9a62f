/* Receipts (PROTOCOL.md 4.5), read sync (4.7) and the clarifications of
 * section 7: high-water marks, coalesced receipt frames, exact cumulative
 * group counters, the delivered threshold for large groups, state_change
 * to the user's other devices, and receipt expiry. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_harness.h"

#define FLUSH_MS 250 /* the default receipt_flush_ms */
#define DAY_MS (24ull * 3600 * 1000)

static harness h;
static char conv[65]; /* direct: alice and bob */

static void setup(void) {
  harness_init(&h, NULL);
  const char *bob[] = {"bob"};
  snprintf(conv, sizeof conv, "%s",
           harness_create(&h, "alice", "direct", bob, 1));
}
static void teardown(void) { harness_fini(&h); }

TestSuite(receipts, .init = setup, .fini = teardown, .timeout = 240);

/* ---- helpers ---- */

/* Post one message from d to cv, commit it, and return its id. Frames that
 * arrived at d before the ack are skipped. */
static uint64_t post(dev *d, const char *cv) {
  static unsigned seq;
  dev_sendf(d,
            "{\"type\":\"send\",\"client_msg_id\":\"c%u\","
            "\"conversation_id\":\"%s\",\"body\":\"hello\"}",
            seq++, cv);
  harness_tick(&h);
  const chat_frame *f = dev_expect(d, CHAT_FRAME_ACK);
  cr_assert_not(f->ack->duplicate);
  return f->ack->message_id;
}

/* A `delivered` or `read` frame. */
static void mark(dev *d, const char *type, const char *cv, uint64_t up_to) {
  dev_sendf(d,
            "{\"type\":\"%s\",\"conversation_id\":\"%s\","
            "\"up_to_message_id\":\"%" PRIu64 "\"}",
            type, cv, up_to);
}

/* Open a device for user, send one mark, close it again. */
static void mark_once(const char *user, const char *type, const char *cv,
                      uint64_t up_to) {
  dev *d = dev_open(&h, user, "m");
  mark(d, type, cv, up_to);
  cr_assert_eq(dev_count(d, CHAT_FRAME_ERROR), 0, "%s: %s refused", user,
               type);
  dev_close(d);
}

static cJSON *rest(const char *user, const char *path, const char *query,
                   int want) {
  const char *body;
  int st = harness_http(&h, user, "GET", path, query, NULL, &body);
  cr_assert_eq(st, want, "GET %s: %d %s", path, st, body);
  cJSON *j = cJSON_Parse(body);
  cr_assert_not_null(j, "not JSON: %s", body);
  return j;
}

static int num(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  cr_assert(cJSON_IsNumber(v), "no number \"%s\"", key);
  return v->valueint;
}

/* The REST receipts answer for one message; the caller frees it. */
static cJSON *receipts_of(const char *user, const char *cv, uint64_t mid,
                          int *delivered, int *read) {
  char path[160];
  snprintf(path, sizeof path,
           "/api/v1/conversations/%s/messages/%" PRIu64 "/receipts", cv, mid);
  cJSON *j = rest(user, path, NULL, 200);
  *delivered = num(j, "delivered");
  *read = num(j, "read");
  return j;
}

static void expect_counts(const char *cv, uint64_t mid, int delivered,
                          int read) {
  int d, r;
  cJSON_Delete(receipts_of("alice", cv, mid, &d, &r));
  cr_assert_eq(d, delivered, "message %" PRIu64 ": delivered %d, want %d",
               mid, d, delivered);
  cr_assert_eq(r, read, "message %" PRIu64 ": read %d, want %d", mid, r,
               read);
}

/* A member's state ("sent", "delivered", "read") in a receipts answer, or
 * NULL when the member is not listed. */
static const char *member_state(const cJSON *j, const char *user) {
  const cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "members");
  cr_assert(cJSON_IsArray(ms), "no members list");
  const cJSON *m;
  cJSON_ArrayForEach(m, ms) {
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(m, "user_id");
    if (cJSON_IsString(u) && strcmp(u->valuestring, user) == 0) {
      const cJSON *s = cJSON_GetObjectItemCaseSensitive(m, "state");
      cr_assert(cJSON_IsString(s));
      return s->valuestring;
    }
  }
  return NULL;
}

static void expect_state(const char *cv, uint64_t mid, const char *user,
                         const char *state) {
  int d, r;
  cJSON *j = receipts_of("alice", cv, mid, &d, &r);
  const char *s = member_state(j, user);
  cr_assert_not_null(s, "%s not listed", user);
  cr_assert_str_eq(s, state, "message %" PRIu64 ": %s is %s, want %s", mid,
                   user, s, state);
  cJSON_Delete(j);
}

/* The user's view of cv in GET /api/v1/conversations: unread_count and
 * last_read_message_id (0 for null, with *has_read false). */
static void conv_view(const char *user, const char *cv, int *unread,
                      uint64_t *last_read, bool *has_read) {
  cJSON *j = rest(user, "/api/v1/conversations", "limit=200", 200);
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, "conversations");
  cr_assert(cJSON_IsArray(list));
  const cJSON *c, *found = NULL;
  cJSON_ArrayForEach(c, list) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "conversation_id");
    if (cJSON_IsString(id) && strcmp(id->valuestring, cv) == 0)
      found = c;
  }
  cr_assert_not_null(found, "%s not in %s's conversations", cv, user);
  *unread = num(found, "unread_count");
  const cJSON *lr =
      cJSON_GetObjectItemCaseSensitive(found, "last_read_message_id");
  cr_assert(cJSON_IsNull(lr) || cJSON_IsString(lr),
            "last_read_message_id must be a string or null");
  *has_read = cJSON_IsString(lr);
  *last_read = *has_read ? strtoull(lr->valuestring, NULL, 10) : 0;
  cJSON_Delete(j);
}

static uint64_t applied(void) {
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  return st.receipts_applied_total;
}

/* A group created by alice with members u000..u<n-1> (n + 1 in all). */
static const char *make_group(size_t n, char *out) {
  char(*names)[8] = calloc(n, sizeof *names);
  const char **ids = calloc(n, sizeof *ids);
  for (size_t i = 0; i < n; i++) {
    snprintf(names[i], sizeof names[i], "u%03zu", i);
    ids[i] = names[i];
  }
  snprintf(out, 65, "%s", harness_create(&h, "alice", "group", ids, n));
  free(ids);
  free(names);
  return out;
}

static const char *uname(size_t i) {
  static char b[4][8];
  static int k;
  char *s = b[k++ % 4];
  snprintf(s, 8, "u%03zu", i);
  return s;
}

/* ---- direct chats ---- */

Test(receipts, direct_delivered_reaches_the_senders_devices_after_interval) {
  dev *a1 = dev_open(&h, "alice", "phone");
  dev *a2 = dev_open(&h, "alice", "laptop");
  dev *b = dev_open(&h, "bob", "phone");
  uint64_t m1 = post(a1, conv);
  uint64_t m2 = post(a1, conv);
  uint64_t mb = post(b, conv); /* bob's own message, newest below the mark */
  uint64_t m3 = post(a1, conv);
  dev_drain(a1);
  dev_drain(a2);
  dev_drain(b);
  mark(b, "delivered", conv, mb);
  harness_tick(&h);
  harness_advance(&h, FLUSH_MS - 1);
  cr_assert_eq(dev_count(a1, CHAT_FRAME_RECEIPT), 0, "before the interval");
  cr_assert_eq(dev_count(a2, CHAT_FRAME_RECEIPT), 0, "before the interval");
  harness_advance(&h, 1);
  dev *as[] = {a1, a2};
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(dev_count(as[i], CHAT_FRAME_RECEIPT), 1);
    const chat_receipt *r = dev_expect(as[i], CHAT_FRAME_RECEIPT)->receipt;
    cr_assert_str_eq(r->conversation_id, conv);
    cr_assert_eq(r->state, CHAT_RECEIPT_DELIVERED);
    cr_assert_str_eq(r->member_id, "bob");
    cr_assert_eq(r->message_id, m2, "alice's latest message <= the mark");
    cr_assert_not(r->has_counts, "direct chats have no counts");
    cr_assert_null(strstr(dev_last_raw(as[i]), "\"counts\""));
  }
  cr_assert_eq(dev_count(b, CHAT_FRAME_RECEIPT), 0, "not to the marker");
  harness_advance(&h, 10 * FLUSH_MS);
  cr_assert_eq(dev_count(a1, CHAT_FRAME_RECEIPT), 0, "exactly one frame");
  /* Stored on the messages: m1 and m2 delivered, m3 (past the mark) not. */
  expect_counts(conv, m1, 1, 0);
  expect_counts(conv, m2, 1, 0);
  expect_counts(conv, m3, 0, 0);
  expect_state(conv, m2, "bob", "delivered");
  expect_state(conv, m3, "bob", "sent");
}

Test(receipts, direct_read_reaches_the_senders_devices_after_interval) {
  dev *a1 = dev_open(&h, "alice", "phone");
  dev *a2 = dev_open(&h, "alice", "laptop");
  dev *b = dev_open(&h, "bob", "phone");
  uint64_t m1 = post(a1, conv);
  uint64_t m2 = post(a1, conv);
  uint64_t m3 = post(a1, conv);
  dev_drain(a1);
  dev_drain(a2);
  mark(b, "read", conv, m2);
  harness_advance(&h, FLUSH_MS - 1);
  cr_assert_eq(dev_count(a1, CHAT_FRAME_RECEIPT), 0, "before the interval");
  cr_assert_eq(dev_count(a2, CHAT_FRAME_RECEIPT), 0, "before the interval");
  harness_advance(&h, 1);
  dev *as[] = {a1, a2};
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(dev_count(as[i], CHAT_FRAME_RECEIPT), 1);
    const chat_receipt *r = dev_expect(as[i], CHAT_FRAME_RECEIPT)->receipt;
    cr_assert_str_eq(r->conversation_id, conv);
    cr_assert_eq(r->state, CHAT_RECEIPT_READ);
    cr_assert_str_eq(r->member_id, "bob");
    cr_assert_eq(r->message_id, m2);
    cr_assert_not(r->has_counts);
  }
  harness_advance(&h, 10 * FLUSH_MS);
  cr_assert_eq(dev_count(a1, CHAT_FRAME_RECEIPT), 0, "exactly one frame");
  /* Reading implies delivery (section 7: readers count as delivered). */
  expect_counts(conv, m1, 1, 1);
  expect_counts(conv, m2, 1, 1);
  expect_counts(conv, m3, 0, 0);
  expect_state(conv, m2, "bob", "read");
  expect_state(conv, m3, "bob", "sent");
}

Test(receipts, delivered_and_read_in_one_interval_at_most_once_each) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  post(a, conv);
  uint64_t m2 = post(a, conv);
  dev_drain(a);
  mark(b, "delivered", conv, m2);
  mark(b, "read", conv, m2);
  harness_advance(&h, FLUSH_MS);
  size_t delivered = 0, read = 0;
  const chat_frame *f;
  while ((f = dev_next(a))) {
    if (f->type != CHAT_FRAME_RECEIPT)
      continue;
    cr_assert_eq(f->receipt->message_id, m2);
    cr_assert_str_eq(f->receipt->member_id, "bob");
    if (f->receipt->state == CHAT_RECEIPT_READ)
      read++;
    else
      delivered++;
  }
  cr_assert_eq(read, 1, "%zu read receipts", read);
  cr_assert_leq(delivered, 1, "%zu delivered receipts", delivered);
  harness_advance(&h, 10 * FLUSH_MS);
  cr_assert_eq(dev_count(a, CHAT_FRAME_RECEIPT), 0);
}

Test(receipts, backwards_and_repeated_marks_change_nothing) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b1 = dev_open(&h, "bob", "phone");
  dev *b2 = dev_open(&h, "bob", "laptop");
  uint64_t m1 = post(a, conv);
  uint64_t m2 = post(a, conv);
  uint64_t m3 = post(a, conv);
  mark(b1, "delivered", conv, m3);
  mark(b1, "read", conv, m2);
  harness_advance(&h, FLUSH_MS);
  dev_drain(a);
  dev_drain(b1);
  dev_drain(b2);
  uint64_t before = applied();

  mark(b1, "delivered", conv, m1); /* backwards */
  mark(b1, "delivered", conv, m3); /* repeated */
  mark(b1, "read", conv, m1);      /* backwards */
  mark(b1, "read", conv, m2);      /* repeated */
  mark(b2, "read", conv, m1);      /* backwards, from another device */
  harness_advance(&h, 4 * FLUSH_MS);
  cr_assert_eq(dev_count(a, CHAT_FRAME_RECEIPT), 0);
  cr_assert_eq(dev_count(b1, CHAT_FRAME_STATE_CHANGE), 0);
  cr_assert_eq(dev_count(b2, CHAT_FRAME_STATE_CHANGE), 0);
  cr_assert_eq(dev_count(b1, CHAT_FRAME_ERROR), 0, "ignored, not refused");
  cr_assert_eq(applied(), before, "the store must not have moved");
  /* The stored marks are where they were. */
  expect_state(conv, m3, "bob", "delivered");
  expect_state(conv, m2, "bob", "read");
  expect_state(conv, m1, "bob", "read");
  expect_counts(conv, m3, 1, 0);
  expect_counts(conv, m2, 1, 1);
  int unread;
  uint64_t last;
  bool has;
  conv_view("bob", conv, &unread, &last, &has);
  cr_assert(has);
  cr_assert_eq(last, m2);
  cr_assert_eq(unread, 1);
}

Test(receipts, mark_past_the_newest_message_is_capped) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b1 = dev_open(&h, "bob", "phone");
  dev *b2 = dev_open(&h, "bob", "laptop");
  uint64_t m1 = post(a, conv);
  uint64_t m2 = post(a, conv);
  dev_drain(a);
  dev_drain(b2);
  const uint64_t future = UINT64_C(9223372036854775807);
  mark(b1, "delivered", conv, future);
  mark(b1, "read", conv, future);
  harness_advance(&h, FLUSH_MS);
  cr_assert_eq(dev_count(b1, CHAT_FRAME_ERROR), 0);
  /* Receipts name real messages. */
  const chat_frame *f;
  size_t n = 0;
  while ((f = dev_next(a)))
    if (f->type == CHAT_FRAME_RECEIPT) {
      cr_assert_eq(f->receipt->message_id, m2);
      n++;
    }
  cr_assert_geq(n, 1);
  /* The other device learns the real read mark, not the future one. */
  f = dev_expect(b2, CHAT_FRAME_STATE_CHANGE);
  cr_assert_eq(f->state_change->last_read_message_id, m2,
               "state_change carries %" PRIu64 ", the newest message is "
               "%" PRIu64,
               f->state_change->last_read_message_id, m2);
  int unread;
  uint64_t last;
  bool has;
  conv_view("bob", conv, &unread, &last, &has);
  cr_assert(has);
  cr_assert_eq(last, m2, "last_read_message_id %" PRIu64, last);
  cr_assert_eq(unread, 0);

  /* A message written after the mark is neither delivered nor read. */
  uint64_t m3 = post(a, conv);
  cr_assert_gt(m3, m2);
  expect_counts(conv, m1, 1, 1);
  expect_counts(conv, m2, 1, 1);
  expect_counts(conv, m3, 0, 0);
  expect_state(conv, m3, "bob", "sent");
  conv_view("bob", conv, &unread, &last, &has);
  cr_assert_eq(last, m2);
  cr_assert_eq(unread, 1);
  harness_advance(&h, 4 * FLUSH_MS);
  dev_drain(a);
  /* And marking it later is progress, not a repeat of the capped mark. */
  mark(b1, "read", conv, m3);
  harness_advance(&h, FLUSH_MS);
  f = dev_expect(a, CHAT_FRAME_RECEIPT);
  cr_assert_eq(f->receipt->message_id, m3);
  cr_assert_eq(f->receipt->state, CHAT_RECEIPT_READ);
  expect_counts(conv, m3, 1, 1);
}

Test(receipts, twenty_marks_in_one_interval_make_one_frame) {
  dev *a1 = dev_open(&h, "alice", "phone");
  dev *a2 = dev_open(&h, "alice", "laptop");
  dev *b = dev_open(&h, "bob", "phone");
  uint64_t ids[20];
  for (int i = 0; i < 20; i++)
    ids[i] = post(a1, conv);
  dev_drain(a1);
  dev_drain(a2);
  chat_server_stats st0 = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st0);
  for (int i = 0; i < 20; i++)
    mark(b, "delivered", conv, ids[i]);
  harness_advance(&h, FLUSH_MS);
  dev *as[] = {a1, a2};
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(dev_count(as[i], CHAT_FRAME_RECEIPT), 1, "%zu frames",
                 dev_count(as[i], CHAT_FRAME_RECEIPT));
    const chat_receipt *r = dev_expect(as[i], CHAT_FRAME_RECEIPT)->receipt;
    cr_assert_eq(r->message_id, ids[19], "the highest mark");
    cr_assert_eq(r->state, CHAT_RECEIPT_DELIVERED);
  }
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.receipts_applied_total - st0.receipts_applied_total, 20);
  cr_assert_eq(st.receipt_frames_total - st0.receipt_frames_total, 1);
  for (int i = 0; i < 20; i++)
    expect_counts(conv, ids[i], 1, 0);
}

Test(receipts, one_mark_covers_every_sender_in_a_group) {
  const char *members[] = {"bob", "carol"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", members, 2));
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev *c = dev_open(&h, "carol", "phone");
  uint64_t a1 = post(a, g);
  uint64_t c1 = post(c, g);
  uint64_t a2 = post(a, g);
  uint64_t b1 = post(b, g);
  (void)a1;
  dev_drain(a);
  dev_drain(b);
  dev_drain(c);
  mark(b, "read", g, b1);
  harness_advance(&h, FLUSH_MS);
  const chat_receipt *r = dev_expect(a, CHAT_FRAME_RECEIPT)->receipt;
  cr_assert_eq(r->message_id, a2);
  cr_assert_str_eq(r->member_id, "bob");
  cr_assert(r->has_counts, "groups carry counts");
  cr_assert_eq(r->delivered_count, 1);
  cr_assert_eq(r->read_count, 1);
  r = dev_expect(c, CHAT_FRAME_RECEIPT)->receipt;
  cr_assert_eq(r->message_id, c1);
  cr_assert_eq(r->state, CHAT_RECEIPT_READ);
  cr_assert_eq(dev_count(a, CHAT_FRAME_RECEIPT), 0);
  cr_assert_eq(dev_count(c, CHAT_FRAME_RECEIPT), 0);
  cr_assert_eq(dev_count(b, CHAT_FRAME_RECEIPT), 0, "own messages");
}

/* ---- groups ---- */

/* Every receipt frame waiting at d must name `newest` and carry the current
 * counts of that message (no marks are in flight while it is checked).
 * Returns the number of receipt frames. */
static size_t check_frames_against_rest(dev *d, const char *cv,
                                        uint64_t newest) {
  const chat_frame *f;
  size_t n = 0;
  while ((f = dev_next(d))) {
    if (f->type != CHAT_FRAME_RECEIPT)
      continue;
    n++;
    chat_receipt r = *f->receipt;
    cr_assert_eq(r.message_id, newest,
                 "a coalesced frame names the highest mark");
    cr_assert(r.has_counts);
    cr_assert_str_eq(r.conversation_id, cv);
    int dl, rd;
    cJSON_Delete(receipts_of("alice", cv, r.message_id, &dl, &rd));
    cr_assert_eq(r.delivered_count, (uint32_t)dl,
                 "%s frame for %" PRIu64 ": delivered %u, stored %d",
                 r.state == CHAT_RECEIPT_READ ? "read" : "delivered",
                 r.message_id, r.delivered_count, dl);
    cr_assert_eq(r.read_count, (uint32_t)rd,
                 "%s frame for %" PRIu64 ": read %u, stored %d",
                 r.state == CHAT_RECEIPT_READ ? "read" : "delivered",
                 r.message_id, r.read_count, rd);
  }
  return n;
}

Test(receipts, group_counts_are_exact_and_cumulative) {
  char g[65];
  make_group(199, g); /* 200 members: delivered is kept */
  dev *a = dev_open(&h, "alice", "phone");
  dev *watch = dev_open(&h, "u000", "watch"); /* another member */
  uint64_t g1 = post(a, g);
  uint64_t g2 = post(a, g);
  dev_drain(a);
  dev_drain(watch);
  for (size_t i = 0; i < 100; i++)
    mark_once(uname(i), "delivered", g, g2);
  for (size_t i = 100; i < 150; i++)
    mark_once(uname(i), "delivered", g, g1);
  for (size_t i = 0; i < 40; i++) /* deliverers who read on */
    mark_once(uname(i), "read", g, g2);
  for (size_t i = 150; i < 170; i++) /* readers who never said delivered */
    mark_once(uname(i), "read", g, g1);
  /* Marks that change nothing must not count twice. */
  mark_once(uname(0), "delivered", g, g2);
  mark_once(uname(0), "read", g, g1);
  mark_once(uname(150), "delivered", g, g1);

  expect_counts(g, g1, 170, 60);
  expect_counts(g, g2, 100, 40);
  harness_advance(&h, FLUSH_MS);
  size_t n = check_frames_against_rest(a, g, g2);
  cr_assert_geq(n, 1);
  cr_assert_leq(n, 2, "one frame per state at most, got %zu", n);
  cr_assert_eq(dev_count(watch, CHAT_FRAME_RECEIPT), 0,
               "receipts go to the sender only");

  int d, r;
  cJSON *j = receipts_of("alice", g, g1, &d, &r);
  cr_assert_eq(cJSON_GetArraySize(
                   cJSON_GetObjectItemCaseSensitive(j, "members")),
               199, "every member but the sender");
  cr_assert_str_eq(member_state(j, "u000"), "read");
  cr_assert_str_eq(member_state(j, "u120"), "delivered");
  cr_assert_str_eq(member_state(j, "u160"), "read");
  cr_assert_str_eq(member_state(j, "u198"), "sent");
  cJSON_Delete(j);
  j = receipts_of("alice", g, g2, &d, &r);
  cr_assert_str_eq(member_state(j, "u050"), "delivered");
  cr_assert_str_eq(member_state(j, "u120"), "sent");
  cr_assert_str_eq(member_state(j, "u160"), "sent");
  cJSON_Delete(j);
}

Test(receipts, group_of_1000_counts_are_exact) {
  char g[65];
  make_group(999, g);
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t g1 = post(a, g);
  dev_drain(a);
  /* Members need a session to send frames, not to be counted: each opens,
   * marks and leaves. */
  for (size_t i = 0; i < 999; i++)
    mark_once(uname(i), i < 600 ? "read" : "delivered", g, g1);
  harness_advance(&h, FLUSH_MS);
  cr_assert_eq(dev_count(a, CHAT_FRAME_RECEIPT), 1,
               "%zu receipt frames for 600 reads in one interval",
               dev_count(a, CHAT_FRAME_RECEIPT));
  const chat_receipt *r = dev_expect(a, CHAT_FRAME_RECEIPT)->receipt;
  cr_assert_eq(r->state, CHAT_RECEIPT_READ);
  cr_assert_eq(r->message_id, g1);
  cr_assert_str_eq(r->member_id, "u599", "the latest reader");
  cr_assert(r->has_counts);
  cr_assert_eq(r->delivered_count, 600, "readers count as delivered");
  cr_assert_eq(r->read_count, 600);
  expect_counts(g, g1, 600, 600);
}

Test(receipts, groups_over_256_drop_delivered_but_count_reads) {
  char at[65], over[65];
  make_group(255, at);   /* 256 members: the threshold itself */
  make_group(256, over); /* 257 members */
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t m_at = post(a, at);
  uint64_t m_over = post(a, over);
  dev_drain(a);

  uint64_t before = applied();
  mark_once("u000", "delivered", over, m_over);
  mark_once("u001", "delivered", over, m_over);
  harness_advance(&h, FLUSH_MS);
  cr_assert_eq(dev_count(a, CHAT_FRAME_RECEIPT), 0, "delivered is dropped");
  cr_assert_eq(applied(), before);
  expect_counts(over, m_over, 0, 0);

  mark_once("u000", "delivered", at, m_at);
  harness_advance(&h, FLUSH_MS);
  const chat_receipt *r = dev_expect(a, CHAT_FRAME_RECEIPT)->receipt;
  cr_assert_eq(r->state, CHAT_RECEIPT_DELIVERED);
  cr_assert_eq(r->message_id, m_at);
  cr_assert_eq(r->delivered_count, 1);
  cr_assert_eq(r->read_count, 0);
  expect_counts(at, m_at, 1, 0);

  /* Reads still count in the large group, and count as delivered. */
  mark_once("u001", "read", over, m_over);
  mark_once("u002", "read", over, m_over);
  harness_advance(&h, FLUSH_MS);
  r = dev_expect(a, CHAT_FRAME_RECEIPT)->receipt;
  cr_assert_eq(r->state, CHAT_RECEIPT_READ);
  cr_assert_eq(r->message_id, m_over);
  cr_assert(r->has_counts);
  cr_assert_eq(r->delivered_count, 2);
  cr_assert_eq(r->read_count, 2);
  cr_assert_eq(dev_count(a, CHAT_FRAME_RECEIPT), 0);
  expect_counts(over, m_over, 2, 2);
}

Test(receipts, rest_lists_members_only_where_delivered_exists) {
  const char *bc[] = {"bob", "carol"};
  char small[65], big[65];
  snprintf(small, sizeof small, "%s",
           harness_create(&h, "alice", "group", bc, 2));
  make_group(299, big);
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t md = post(a, conv);
  uint64_t ms = post(a, small);
  uint64_t mb = post(a, big);
  mark_once("bob", "read", conv, md);
  mark_once("carol", "delivered", small, ms);
  mark_once("u007", "read", big, mb);

  int d, r;
  cJSON *j = receipts_of("alice", conv, md, &d, &r);
  cr_assert_eq(cJSON_GetArraySize(
                   cJSON_GetObjectItemCaseSensitive(j, "members")), 1);
  cr_assert_str_eq(member_state(j, "bob"), "read");
  cr_assert_eq(d, 1);
  cr_assert_eq(r, 1);
  cJSON_Delete(j);

  j = receipts_of("alice", small, ms, &d, &r);
  cr_assert_eq(cJSON_GetArraySize(
                   cJSON_GetObjectItemCaseSensitive(j, "members")), 2);
  cr_assert_str_eq(member_state(j, "bob"), "sent");
  cr_assert_str_eq(member_state(j, "carol"), "delivered");
  cr_assert_eq(d, 1);
  cr_assert_eq(r, 0);
  cJSON_Delete(j);

  j = receipts_of("alice", big, mb, &d, &r);
  cr_assert_null(cJSON_GetObjectItemCaseSensitive(j, "members"),
                 "no per-member states over 256 members");
  cr_assert_eq(d, 1);
  cr_assert_eq(r, 1);
  cJSON_Delete(j);

  /* Any member may ask; outsiders may not. */
  j = receipts_of("carol", small, ms, &d, &r);
  cJSON_Delete(j);
  char path[160];
  snprintf(path, sizeof path,
           "/api/v1/conversations/%s/messages/%" PRIu64 "/receipts", small,
           ms);
  cJSON_Delete(rest("dave", path, NULL, 403));
}

/* ---- read sync ---- */

Test(receipts, read_syncs_to_the_users_other_devices_and_unread) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b1 = dev_open(&h, "bob", "phone");
  dev *b2 = dev_open(&h, "bob", "laptop");
  uint64_t m1 = post(a, conv);
  uint64_t m2 = post(a, conv);
  int unread;
  uint64_t last;
  bool has;
  conv_view("bob", conv, &unread, &last, &has);
  cr_assert_not(has, "last_read_message_id is null before the first read");
  cr_assert_eq(unread, 2);
  dev_drain(a);
  dev_drain(b1);
  dev_drain(b2);

  mark(b1, "read", conv, m1);
  harness_advance(&h, FLUSH_MS);
  const chat_frame *f = dev_expect(b2, CHAT_FRAME_STATE_CHANGE);
  cr_assert_str_eq(f->state_change->conversation_id, conv);
  cr_assert_eq(f->state_change->last_read_message_id, m1);
  cr_assert_eq(dev_count(b2, CHAT_FRAME_STATE_CHANGE), 0);
  cr_assert_eq(dev_count(b1, CHAT_FRAME_STATE_CHANGE), 0,
               "not to the device that read");
  cr_assert_eq(dev_count(a, CHAT_FRAME_STATE_CHANGE), 0, "not to others");
  conv_view("bob", conv, &unread, &last, &has);
  cr_assert(has);
  cr_assert_eq(last, m1);
  cr_assert_eq(unread, 1);
  /* alice's own view is untouched by bob's reads. */
  conv_view("alice", conv, &unread, &last, &has);
  cr_assert_not(has);

  /* The laptop reads on; the phone follows. */
  mark(b2, "read", conv, m2);
  harness_advance(&h, FLUSH_MS);
  f = dev_expect(b1, CHAT_FRAME_STATE_CHANGE);
  cr_assert_eq(f->state_change->last_read_message_id, m2);
  cr_assert_eq(dev_count(b2, CHAT_FRAME_STATE_CHANGE), 0);
  conv_view("bob", conv, &unread, &last, &has);
  cr_assert_eq(last, m2);
  cr_assert_eq(unread, 0);
  /* bob's own messages are never unread to him; alice's are. */
  post(b1, conv);
  conv_view("bob", conv, &unread, &last, &has);
  cr_assert_eq(unread, 0);
  post(a, conv);
  conv_view("bob", conv, &unread, &last, &has);
  cr_assert_eq(unread, 1);
  cr_assert_eq(last, m2);
}

Test(receipts, delivered_does_not_sync_or_clear_unread) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b1 = dev_open(&h, "bob", "phone");
  dev *b2 = dev_open(&h, "bob", "laptop");
  uint64_t m1 = post(a, conv);
  dev_drain(b2);
  mark(b1, "delivered", conv, m1);
  harness_advance(&h, FLUSH_MS);
  cr_assert_eq(dev_count(b2, CHAT_FRAME_STATE_CHANGE), 0);
  int unread;
  uint64_t last;
  bool has;
  conv_view("bob", conv, &unread, &last, &has);
  cr_assert_not(has);
  cr_assert_eq(unread, 1);
}

/* ---- expiry and refusals ---- */

Test(receipts, group_receipt_rows_are_purged_after_90_days) {
  harness_tick(&h);
  cr_assert_eq(h.purged_before, h.fe.wall_ms - (int64_t)(90 * DAY_MS),
               "purged before %" PRId64, h.purged_before);
  int64_t first = h.purged_before;
  h.purged_before = 0;
  harness_advance(&h, 30 * 60 * 1000);
  cr_assert_eq(h.purged_before, 0, "the purge runs hourly, not constantly");
  harness_advance(&h, 30 * 60 * 1000);
  cr_assert_eq(h.purged_before, h.fe.wall_ms - (int64_t)(90 * DAY_MS));
  cr_assert_eq(h.purged_before, first + 3600 * 1000);
  harness_advance(&h, 3600 * 1000 + 1);
  cr_assert_eq(h.purged_before, first + 2 * 3600 * 1000);
}

Test(receipts, receipt_ttl_is_configurable) {
  harness_fini(&h);
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .receipt_ttl_ms = DAY_MS};
  harness_init(&h, &s);
  harness_advance(&h, 3600 * 1000 + 1);
  cr_assert_neq(h.purged_before, 0);
  cr_assert_eq(h.purged_before,
               h.fe.wall_ms - 1 - (int64_t)DAY_MS,
               "cutoff %" PRId64 ", wall %" PRId64, h.purged_before,
               h.fe.wall_ms);
}

Test(receipts, non_member_marks_are_refused) {
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t m1 = post(a, conv);
  dev_drain(a);
  dev *c = dev_open(&h, "carol", "phone");
  dev_drain(c);
  uint64_t before = applied();
  mark(c, "delivered", conv, m1);
  const chat_frame *f = dev_expect(c, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_NOT_MEMBER);
  cr_assert_str_eq(f->error->code, "not_member");
  cr_assert_str_eq(f->error->ref.ptr, "delivered");
  mark(c, "read", conv, m1);
  f = dev_expect(c, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_NOT_MEMBER);
  cr_assert_str_eq(f->error->ref.ptr, "read");
  mark(c, "read", "no-such-conv", m1);
  f = dev_expect(c, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_NO_SUCH_CONVERSATION);
  cr_assert_str_eq(f->error->ref.ptr, "read");
  cr_assert_not(c->closed);
  harness_advance(&h, FLUSH_MS);
  cr_assert_eq(dev_count(a, CHAT_FRAME_RECEIPT), 0);
  cr_assert_eq(applied(), before);
  expect_counts(conv, m1, 0, 0);
}

/* ------------------------------------------------------------------------
 * PROTOCOL.md section 8: bots produce no read receipts; receipt-aware
 * push. */

Test(receipts, a_bots_read_marks_are_dropped) {
  const char *m[] = {"bob", "weather"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 2));
  dev *a = dev_open(&h, "alice", "phone");
  dev *w = dev_open_kind(&h, "weather", "bot", CHAT_SENDER_BOT);
  dev *w2 = dev_open_kind(&h, "weather", "bot2", CHAT_SENDER_BOT);
  uint64_t id = post(a, g);
  harness_tick(&h);
  dev_drain(a);
  dev_drain(w2);
  mark(w, "read", g, id);
  harness_advance(&h, 2 * FLUSH_MS);
  cr_assert_eq(dev_count(w, CHAT_FRAME_ERROR), 0, "dropped, not refused");
  cr_assert_eq(dev_count(a, CHAT_FRAME_RECEIPT), 0, "no read receipt");
  cr_assert_eq(dev_count(w2, CHAT_FRAME_STATE_CHANGE), 0);
  uint32_t d = 9, r = 9;
  cr_assert_eq(h.inner.receipts(h.inner.self, g, id, &d, &r, NULL, NULL,
                                NULL),
               CHAT_OK);
  cr_assert_eq(r, 0, "nothing stored");
  /* A bot's delivered marks still count. */
  mark(w, "delivered", g, id);
  harness_advance(&h, 2 * FLUSH_MS);
  const chat_frame *f = dev_expect(a, CHAT_FRAME_RECEIPT);
  cr_assert_eq(f->receipt->state, CHAT_RECEIPT_DELIVERED);
  cr_assert_str_eq(f->receipt->member_id, "weather");
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.bot_reads_dropped_total, 1);
}

Test(receipts, reading_clears_what_was_pushed_on_every_device) {
  /* bob has two push devices and no device online. */
  for (int i = 0; i < 2; i++) {
    h.http_kind = CHAT_SENDER_USER;
    chat_identity id = {.version = CHAT_IDENTITY_V1};
    snprintf(id.user_id, sizeof id.user_id, "bob");
    snprintf(id.device_id, sizeof id.device_id, i ? "tablet" : "phone");
    const char *body = "{\"platform\":\"fcm\",\"push_token\":\"tok\"}";
    chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                             .method = "POST",
                             .path = "/api/v1/devices",
                             .body = body,
                             .body_len = strlen(body),
                             .identity = &id};
    chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
    if (chat_server_http(h.srv, &req, &resp, h.now) == CHAT_PENDING) {
      harness_settle(&h);
      resp.status = h.http_status;
    }
    cr_assert_eq(resp.status, 200);
  }
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t m1 = post(a, conv);
  uint64_t m2 = post(a, conv);
  harness_settle(&h);
  cr_assert_eq(h.n_pushes, 4, "two messages, two devices");
  /* bob reads on his laptop (no push device): both pushed devices are
   * told to clear. */
  dev *b = dev_open(&h, "bob", "laptop");
  mark(b, "read", conv, m1);
  harness_settle(&h);
  cr_assert_eq(h.n_clears, 2);
  for (size_t i = 0; i < 2; i++) {
    cr_assert_str_eq(h.clears[i].user, "bob");
    cr_assert_str_eq(h.clears[i].conv, conv);
    cr_assert_eq(h.clears[i].up_to, m1);
  }
  cr_assert(strcmp(h.clears[0].device, h.clears[1].device) != 0);
  mark(b, "read", conv, m2);
  harness_settle(&h);
  cr_assert_eq(h.n_clears, 4);
  cr_assert_eq(h.clears[3].up_to, m2);
  /* A message bob saw live was not pushed: reading it clears nothing. */
  uint64_t m3 = post(a, conv);
  harness_settle(&h);
  cr_assert_eq(h.n_pushes, 4);
  mark(b, "read", conv, m3);
  harness_settle(&h);
  cr_assert_eq(h.n_clears, 4);
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.push_clears_total, 4);
}

/* alice's own read (she was never pushed) clears nothing; nor does a
 * `delivered`. */
Test(receipts, only_reads_of_pushed_messages_clear) {
  cr_assert_eq(harness_http(&h, "bob", "POST", "/api/v1/devices", NULL,
                            "{\"platform\":\"apns\",\"push_token\":\"t\"}",
                            NULL),
               200);
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t m1 = post(a, conv);
  harness_settle(&h);
  cr_assert_eq(h.n_pushes, 1);
  mark_once("bob", "delivered", conv, m1);
  harness_settle(&h);
  cr_assert_eq(h.n_clears, 0);
  mark(a, "read", conv, m1);
  harness_settle(&h);
  cr_assert_eq(h.n_clears, 0);
  mark_once("bob", "read", conv, m1);
  harness_settle(&h);
  cr_assert_eq(h.n_clears, 1);
}

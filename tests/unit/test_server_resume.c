/* Resume (PROTOCOL.md 4.6): each listed gap filled oldest first within the
 * count and age caps or answered with resume_failed, unlisted
 * conversations by `since` or a `conversation` frame, history split into
 * frames that fit, `resumed` last, and live delivery afterwards. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_harness.h"

static harness h;
/* abc: direct alice-bob; xyz: group alice, bob, carol; def: group alice,
 * bob. Each has one message bob has seen (seen_*). */
static char abc[65], xyz[65], def[65];
static uint64_t seen_abc, seen_xyz, seen_def;

static uint64_t post(dev *d, const char *cv);

static void start(const chat_server_settings *s) {
  harness_init(&h, s);
  const char *bob[] = {"bob"};
  const char *bc[] = {"bob", "carol"};
  snprintf(abc, sizeof abc, "%s", harness_create(&h, "alice", "direct", bob,
                                                 1));
  snprintf(xyz, sizeof xyz, "%s", harness_create(&h, "alice", "group", bc, 2));
  snprintf(def, sizeof def, "%s", harness_create(&h, "alice", "group", bob,
                                                 1));
  dev *a = dev_open(&h, "alice", "seed");
  seen_abc = post(a, abc);
  seen_xyz = post(a, xyz);
  seen_def = post(a, def);
  dev_close(a);
}

static void restart(const chat_server_settings *s) {
  harness_fini(&h);
  start(s);
}

static void setup(void) { start(NULL); }
static void teardown(void) { harness_fini(&h); }

TestSuite(resume, .init = setup, .fini = teardown, .timeout = 240);

/* ---- helpers ---- */

static unsigned cmid_seq;

/* Post one message and commit it; returns its id. */
static uint64_t post(dev *d, const char *cv) {
  dev_sendf(d,
            "{\"type\":\"send\",\"client_msg_id\":\"r%u\","
            "\"conversation_id\":\"%s\",\"body\":\"msg %u\"}",
            cmid_seq, cv, cmid_seq);
  cmid_seq++;
  harness_tick(&h);
  const chat_frame *f = dev_expect(d, CHAT_FRAME_ACK);
  cr_assert_not(f->ack->duplicate);
  return f->ack->message_id;
}

/* Post n messages (committed together in groups) and record their ids in
 * commit order. */
static void post_n(dev *d, const char *cv, size_t n, uint64_t *ids) {
  size_t done = 0;
  while (done < n) {
    size_t k = n - done < 50 ? n - done : 50;
    for (size_t i = 0; i < k; i++) {
      dev_sendf(d,
                "{\"type\":\"send\",\"client_msg_id\":\"r%u\","
                "\"conversation_id\":\"%s\",\"body\":\"msg %u\"}",
                cmid_seq, cv, cmid_seq);
      cmid_seq++;
    }
    harness_tick(&h);
    for (size_t i = 0; i < k; i++) {
      const chat_frame *f = dev_expect(d, CHAT_FRAME_ACK);
      cr_assert_not(f->ack->duplicate);
      uint64_t id = f->ack->message_id;
      if (ids)
        ids[done + i] = id;
    }
    done += k;
  }
}

typedef struct entry {
  const char *conv;
  uint64_t id;
} entry;

/* Send a resume frame; since 0 means absent. */
static void resume(dev *d, const entry *e, size_t n, uint64_t since) {
  char buf[4096];
  int k = snprintf(buf, sizeof buf, "{\"type\":\"resume\",\"last_seen\":{");
  for (size_t i = 0; i < n; i++)
    k += snprintf(buf + k, sizeof buf - (size_t)k, "%s\"%s\":\"%" PRIu64 "\"",
                  i ? "," : "", e[i].conv, e[i].id);
  k += snprintf(buf + k, sizeof buf - (size_t)k, "}");
  if (since)
    k += snprintf(buf + k, sizeof buf - (size_t)k,
                  ",\"since\":\"%" PRIu64 "\"", since);
  snprintf(buf + k, sizeof buf - (size_t)k, "}");
  dev_send(d, buf);
}

#define MAX_IDS 1200
#define MAX_CONVS 8

typedef struct hist {
  char conv[65];
  uint64_t ids[MAX_IDS];
  size_t n;
  unsigned frames;
  unsigned complete_frames;
  bool last_complete;    /* the latest frame of this conversation */
  size_t max_per_frame;
} hist;

typedef struct answer {
  hist hs[MAX_CONVS];
  size_t n_hist;
  char failed[MAX_CONVS][65];
  char reason[MAX_CONVS][32];
  size_t n_failed;
  char convs[MAX_CONVS][65]; /* conversation frames */
  chat_conversation_type conv_type[MAX_CONVS];
  size_t n_convs;
  uint32_t r_convs, r_msgs;
} answer;

static answer ans;

static hist *hist_of(answer *a, const char *conv) {
  for (size_t i = 0; i < a->n_hist; i++)
    if (strcmp(a->hs[i].conv, conv) == 0)
      return &a->hs[i];
  return NULL;
}

/* Read the whole resume answer: every frame up to `resumed`, which must be
 * the last one. Other frame types (errors included) fail the test. */
static answer *collect(dev *d) {
  answer *a = &ans;
  memset(a, 0, sizeof *a);
  const chat_frame *f;
  bool done = false;
  while (!done && (f = dev_next(d))) {
    switch (f->type) {
    case CHAT_FRAME_HISTORY: {
      const chat_history *hs = f->history;
      hist *x = hist_of(a, hs->conversation_id);
      if (!x) {
        cr_assert_lt(a->n_hist, MAX_CONVS);
        x = &a->hs[a->n_hist++];
        snprintf(x->conv, sizeof x->conv, "%s", hs->conversation_id);
      }
      cr_assert_not(x->last_complete,
                    "history for %s after its complete frame", x->conv);
      cr_assert_gt(hs->n_messages, 0, "an empty history frame");
      for (size_t i = 0; i < hs->n_messages; i++) {
        const chat_message *m = &hs->messages[i];
        cr_assert_str_eq(m->conversation_id, hs->conversation_id);
        cr_assert_str_eq(m->sender_id, "alice");
        cr_assert_not_null(m->client_msg_id);
        cr_assert_eq(strncmp(m->body.ptr, "msg ", 4), 0);
        cr_assert_str_eq(m->body.ptr + 4, m->client_msg_id + 1,
                         "body and client_msg_id of one message");
        cr_assert_lt(x->n, MAX_IDS);
        x->ids[x->n++] = m->message_id;
      }
      x->frames++;
      x->complete_frames += hs->complete;
      x->last_complete = hs->complete;
      if (hs->n_messages > x->max_per_frame)
        x->max_per_frame = hs->n_messages;
      break;
    }
    case CHAT_FRAME_RESUME_FAILED:
      cr_assert_lt(a->n_failed, MAX_CONVS);
      snprintf(a->failed[a->n_failed], 65, "%s",
               f->resume_failed->conversation_id);
      snprintf(a->reason[a->n_failed], 32, "%.*s",
               (int)f->resume_failed->reason.len,
               f->resume_failed->reason.ptr);
      a->n_failed++;
      break;
    case CHAT_FRAME_CONVERSATION:
      cr_assert_lt(a->n_convs, MAX_CONVS);
      snprintf(a->convs[a->n_convs], 65, "%s",
               f->conversation->conversation_id);
      a->conv_type[a->n_convs] = f->conversation->type;
      a->n_convs++;
      break;
    case CHAT_FRAME_RESUMED:
      a->r_convs = f->resumed->conversations;
      a->r_msgs = f->resumed->messages;
      done = true;
      break;
    case CHAT_FRAME_HELLO:
      break;
    default:
      cr_assert_fail("unexpected frame in a resume answer: %s",
                     dev_last_raw(d));
    }
  }
  cr_assert(done, "no resumed frame");
  cr_assert_null(dev_next(d), "frames after resumed: %s", dev_last_raw(d));
  for (size_t i = 0; i < a->n_hist; i++) {
    cr_assert(a->hs[i].last_complete, "%s: last history frame not complete",
              a->hs[i].conv);
    cr_assert_eq(a->hs[i].complete_frames, 1, "%s: %u complete frames",
                 a->hs[i].conv, a->hs[i].complete_frames);
  }
  return a;
}

/* The history of conv must be exactly want[0..n), in that order. */
static void expect_history(answer *a, const char *conv, const uint64_t *want,
                           size_t n) {
  hist *x = hist_of(a, conv);
  if (n == 0) {
    cr_assert_null(x, "unexpected history for %s", conv);
    return;
  }
  cr_assert_not_null(x, "no history for %s", conv);
  cr_assert_eq(x->n, n, "%s: %zu messages, want %zu", conv, x->n, n);
  for (size_t i = 0; i < n; i++)
    cr_assert_eq(x->ids[i], want[i], "%s: message %zu is %" PRIu64
                 ", want %" PRIu64, conv, i, x->ids[i], want[i]);
}

static const char *failure(answer *a, const char *conv) {
  for (size_t i = 0; i < a->n_failed; i++)
    if (strcmp(a->failed[i], conv) == 0)
      return a->reason[i];
  return NULL;
}

static size_t conv_frames(answer *a, const char *conv) {
  size_t n = 0;
  for (size_t i = 0; i < a->n_convs; i++)
    n += strcmp(a->convs[i], conv) == 0;
  return n;
}

/* bob comes back on his phone and resumes. */
static dev *bob_back(void) {
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  return b;
}

/* ---- tests ---- */

Test(resume, returns_exactly_the_missed_messages_oldest_first) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev_close(b);
  uint64_t in_abc[7], in_xyz[13];
  /* Interleaved, so that each conversation's share must be picked out. */
  for (int i = 0; i < 13; i++) {
    if (i < 7)
      in_abc[i] = post(a, abc);
    in_xyz[i] = post(a, xyz);
  }
  b = bob_back();
  entry e[] = {{abc, seen_abc}, {xyz, seen_xyz}, {def, seen_def}};
  resume(b, e, 3, 0);
  answer *r = collect(b);
  expect_history(r, abc, in_abc, 7);
  expect_history(r, xyz, in_xyz, 13);
  expect_history(r, def, NULL, 0);
  cr_assert_eq(r->n_failed, 0);
  cr_assert_eq(r->n_convs, 0, "every conversation was listed");
  cr_assert_eq(r->r_convs, 2);
  cr_assert_eq(r->r_msgs, 20);
}

Test(resume, gap_starts_after_last_seen_not_at_the_beginning) {
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t ids[6];
  post_n(a, abc, 6, ids);
  dev *b = bob_back();
  /* bob has the first three of the six. */
  entry e[] = {{abc, ids[2]}, {xyz, seen_xyz}, {def, seen_def}};
  resume(b, e, 3, 0);
  answer *r = collect(b);
  expect_history(r, abc, ids + 3, 3);
  cr_assert_eq(r->r_msgs, 3);
  cr_assert_eq(r->r_convs, 1);
}

Test(resume, nothing_missed_gives_just_resumed) {
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}, {xyz, seen_xyz}, {def, seen_def}};
  resume(b, e, 3, 0);
  answer *r = collect(b);
  cr_assert_eq(r->n_hist, 0);
  cr_assert_eq(r->n_failed, 0);
  cr_assert_eq(r->n_convs, 0);
  cr_assert_eq(r->r_convs, 0);
  cr_assert_eq(r->r_msgs, 0);
  /* Resuming again is harmless and gives the same answer. */
  resume(b, e, 3, 0);
  r = collect(b);
  cr_assert_eq(r->n_hist, 0);
  cr_assert_eq(r->r_msgs, 0);
}

Test(resume, over_the_count_cap_fails_that_conversation_only) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .resume_max_messages = 5};
  restart(&s);
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t in_xyz[5], in_def[3];
  post_n(a, abc, 6, NULL); /* one over the cap */
  post_n(a, xyz, 5, in_xyz); /* exactly the cap */
  post_n(a, def, 3, in_def);
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}, {xyz, seen_xyz}, {def, seen_def}};
  resume(b, e, 3, 0);
  answer *r = collect(b);
  const char *why = failure(r, abc);
  cr_assert_not_null(why, "no resume_failed for the conversation over the cap");
  cr_assert_str_eq(why, "too_old");
  cr_assert_eq(r->n_failed, 1);
  expect_history(r, abc, NULL, 0);
  expect_history(r, xyz, in_xyz, 5);
  expect_history(r, def, in_def, 3);
  cr_assert_eq(r->r_convs, 2);
  cr_assert_eq(r->r_msgs, 8);
}

Test(resume, over_the_age_cap_fails_that_conversation_only) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .resume_max_age_ms = 60000};
  restart(&s);
  dev *a = dev_open(&h, "alice", "phone");
  /* The def gap is older than the cap too, but bob has that part. */
  uint64_t old_abc = post(a, abc);
  uint64_t old_def = post(a, def);
  (void)old_abc;
  harness_advance(&h, 1000);
  uint64_t edge = post(a, xyz); /* exactly at the cap when bob resumes */
  harness_advance(&h, 60000);
  uint64_t new_abc = post(a, abc);
  uint64_t new_def = post(a, def);
  uint64_t new_xyz = post(a, xyz);
  (void)new_abc;
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}, {xyz, seen_xyz}, {def, old_def}};
  resume(b, e, 3, 0);
  answer *r = collect(b);
  const char *why = failure(r, abc);
  cr_assert_not_null(why, "no resume_failed for the gap over the age cap");
  cr_assert_str_eq(why, "too_old");
  cr_assert_eq(r->n_failed, 1);
  expect_history(r, abc, NULL, 0);
  uint64_t want_xyz[] = {edge, new_xyz};
  expect_history(r, xyz, want_xyz, 2);
  expect_history(r, def, &new_def, 1);
  cr_assert_eq(r->r_convs, 2);
  cr_assert_eq(r->r_msgs, 3);
}

Test(resume, unlisted_conversations_with_since_get_messages_after_it) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  uint64_t x1 = post(a, xyz); /* bob saw it: the `since` point */
  dev_close(b);
  uint64_t in_abc[2], in_xyz[3], in_def[4];
  post_n(a, abc, 2, in_abc);
  post_n(a, xyz, 3, in_xyz);
  post_n(a, def, 4, in_def);
  b = bob_back();
  entry e[] = {{abc, seen_abc}};
  resume(b, e, 1, x1);
  answer *r = collect(b);
  expect_history(r, abc, in_abc, 2);
  /* x1 itself and def's seed are at or before since. */
  expect_history(r, xyz, in_xyz, 3);
  expect_history(r, def, in_def, 4);
  cr_assert_eq(r->n_convs, 0, "since was given: no conversation frames");
  cr_assert_eq(r->n_failed, 0);
  cr_assert_eq(r->r_convs, 3);
  cr_assert_eq(r->r_msgs, 9);
}

Test(resume, unlisted_gap_over_the_cap_fails_too) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .resume_max_messages = 5};
  restart(&s);
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t in_def[2];
  post_n(a, xyz, 6, NULL);
  post_n(a, def, 2, in_def);
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}};
  resume(b, e, 1, seen_abc);
  answer *r = collect(b);
  const char *why = failure(r, xyz);
  cr_assert_not_null(why);
  cr_assert_str_eq(why, "too_old");
  expect_history(r, xyz, NULL, 0);
  uint64_t want_def[] = {seen_def, in_def[0], in_def[1]};
  expect_history(r, def, want_def, 3);
  cr_assert_eq(r->r_msgs, 3);
}

Test(resume, every_unlisted_conversation_is_announced_once) {
  /* More conversations than one page of the store's listing. */
  const char *bob[] = {"bob"};
  char name[16];
  for (int i = 0; i < 250; i++) {
    snprintf(name, sizeof name, "friend%03d", i);
    harness_create(&h, name, "direct", bob, 1);
  }
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}};
  resume(b, e, 1, 0);
  size_t n = 0, dup = 0;
  static char seen[300][65];
  const chat_frame *f;
  bool done = false;
  while (!done && (f = dev_next(b))) {
    if (f->type == CHAT_FRAME_RESUMED) {
      done = true;
    } else if (f->type == CHAT_FRAME_CONVERSATION) {
      const char *id = f->conversation->conversation_id;
      cr_assert_str_neq(id, abc, "abc was listed");
      for (size_t i = 0; i < n; i++)
        dup += strcmp(seen[i], id) == 0;
      cr_assert_lt(n, 300);
      snprintf(seen[n++], 65, "%s", id);
    } else {
      cr_assert_fail("unexpected %s", dev_last_raw(b));
    }
  }
  cr_assert(done);
  cr_assert_eq(dup, 0, "%zu conversations announced twice", dup);
  cr_assert_eq(n, 252, "%zu conversation frames", n); /* 250, xyz, def */
}

Test(resume, unlisted_conversations_without_since_get_conversation_frames) {
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t in_abc[2];
  post_n(a, abc, 2, in_abc);
  post_n(a, xyz, 3, NULL);
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}};
  resume(b, e, 1, 0);
  answer *r = collect(b);
  expect_history(r, abc, in_abc, 2);
  expect_history(r, xyz, NULL, 0);
  expect_history(r, def, NULL, 0);
  cr_assert_eq(conv_frames(r, xyz), 1);
  cr_assert_eq(conv_frames(r, def), 1);
  cr_assert_eq(conv_frames(r, abc), 0, "abc was listed");
  cr_assert_eq(r->n_convs, 2);
  for (size_t i = 0; i < r->n_convs; i++)
    cr_assert_eq(r->conv_type[i], CHAT_CONVERSATION_GROUP);
  cr_assert_eq(r->r_msgs, 2);
  /* A conversation bob is not in is never announced to him. */
  const char *cd[] = {"carol"};
  char other[65];
  snprintf(other, sizeof other, "%s",
           harness_create(&h, "alice", "direct", cd, 1));
  resume(b, e, 1, 0);
  r = collect(b);
  cr_assert_eq(conv_frames(r, other), 0);
  cr_assert_eq(r->n_convs, 2);
}

Test(resume, unknown_conversation_fails_with_no_such_conversation) {
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t in_abc[2];
  post_n(a, abc, 2, in_abc);
  dev *b = bob_back();
  entry e[] = {{"no-such-conv", seen_abc}, {abc, seen_abc},
               {xyz, seen_xyz}, {def, seen_def}};
  resume(b, e, 4, 0);
  answer *r = collect(b);
  const char *why = failure(r, "no-such-conv");
  cr_assert_not_null(why);
  cr_assert_str_eq(why, "no_such_conversation");
  cr_assert_eq(r->n_failed, 1);
  expect_history(r, abc, in_abc, 2);
  cr_assert_eq(r->r_msgs, 2);
}

Test(resume, non_member_fails_with_not_member_and_sees_nothing) {
  dev *a = dev_open(&h, "alice", "phone");
  post_n(a, abc, 3, NULL);
  uint64_t in_xyz[2];
  post_n(a, xyz, 2, in_xyz);
  dev *c = dev_open(&h, "carol", "phone");
  dev_drain(c);
  /* carol is in xyz only; abc is alice and bob's. */
  entry e[] = {{abc, seen_abc}, {xyz, seen_xyz}};
  resume(c, e, 2, 0);
  answer *r = collect(c);
  const char *why = failure(r, abc);
  cr_assert_not_null(why);
  cr_assert_str_eq(why, "not_member");
  cr_assert_eq(r->n_failed, 1);
  expect_history(r, abc, NULL, 0);
  expect_history(r, xyz, in_xyz, 2);
  cr_assert_eq(r->r_convs, 1);
  cr_assert_eq(r->r_msgs, 2);
}

Test(resume, long_gaps_come_in_several_history_frames) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .rate_per_minute = 1000};
  restart(&s);
  dev *a = dev_open(&h, "alice", "phone");
  static uint64_t ids[450];
  post_n(a, abc, 450, ids);
  for (size_t i = 1; i < 450; i++)
    cr_assert_gt(ids[i], ids[i - 1]);
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}, {xyz, seen_xyz}, {def, seen_def}};
  resume(b, e, 3, 0);
  answer *r = collect(b);
  hist *x = hist_of(r, abc);
  cr_assert_not_null(x);
  cr_assert_geq(x->frames, 3, "%u frames for 450 messages", x->frames);
  cr_assert_leq(x->max_per_frame, 200, "%zu messages in one frame",
                x->max_per_frame);
  /* collect() checked: only the last frame is complete. */
  expect_history(r, abc, ids, 450);
  cr_assert_eq(r->r_convs, 1);
  cr_assert_eq(r->r_msgs, 450);
}

Test(resume, history_frames_stay_under_the_frame_limit) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .rate_per_minute = 1000};
  restart(&s);
  dev *a = dev_open(&h, "alice", "phone");
  /* 300 messages of 8 KiB: 200 of them would be 1.6 MiB, over the 1 MiB
   * a client decodes. */
  enum { N = 300, BODY = 8192 };
  static uint64_t ids[N];
  char *frame = malloc(BODY + 256);
  for (int i = 0; i < N; i++) {
    int k = snprintf(frame, 256,
                     "{\"type\":\"send\",\"client_msg_id\":\"big%d\","
                     "\"conversation_id\":\"%s\",\"body\":\"",
                     i, abc);
    memset(frame + k, 'a' + i % 26, BODY);
    snprintf(frame + k + BODY, 8, "\"}");
    dev_send(a, frame);
    if (i % 50 == 49)
      harness_tick(&h);
  }
  free(frame);
  harness_tick(&h);
  for (int i = 0; i < N; i++)
    ids[i] = dev_expect(a, CHAT_FRAME_ACK)->ack->message_id;
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}, {xyz, seen_xyz}, {def, seen_def}};
  resume(b, e, 3, 0);
  size_t got = 0, frames = 0;
  const chat_frame *f;
  bool done = false;
  while (!done && (f = dev_next(b))) {
    if (f->type == CHAT_FRAME_RESUMED) {
      cr_assert_eq(f->resumed->messages, N);
      done = true;
      continue;
    }
    if (f->type != CHAT_FRAME_HISTORY)
      continue;
    cr_assert_leq(strlen(dev_last_raw(b)), 1048576u);
    frames++;
    for (size_t i = 0; i < f->history->n_messages; i++) {
      const chat_message *m = &f->history->messages[i];
      cr_assert_lt(got, (size_t)N);
      cr_assert_eq(m->message_id, ids[got]);
      cr_assert_eq(m->body.len, BODY);
      cr_assert_eq(m->body.ptr[0], 'a' + (int)got % 26);
      got++;
    }
    cr_assert_eq(f->history->complete, got == N);
  }
  cr_assert(done);
  cr_assert_eq(got, N);
  cr_assert_geq(frames, 3, "%zu frames: 200 such messages do not fit one",
                frames);
}

Test(resume, caps_at_their_largest_values_do_not_wrap) {
  /* "As many as there are" and "however old": neither may wrap around
   * into "none" or "all too old". */
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .resume_max_messages = UINT32_MAX,
                            .resume_max_age_ms = UINT64_MAX};
  restart(&s);
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t ids[3];
  post_n(a, abc, 3, ids);
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}, {xyz, seen_xyz}, {def, seen_def}};
  resume(b, e, 3, 0);
  answer *r = collect(b);
  cr_assert_eq(r->n_failed, 0, "resume_failed %s: %s", r->failed[0],
               r->reason[0]);
  expect_history(r, abc, ids, 3);
  cr_assert_eq(r->r_msgs, 3);
}

Test(resume, an_answer_too_big_for_the_session_fails_instead_of_closing) {
  /* 200 messages of 8 KiB are 1.6 MiB of history; the session may queue
   * only 1 MiB. Queueing it all would close the session (1013), and the
   * client, resuming again with the same marks, would never get in. */
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .rate_per_minute = 1000,
                            .max_queued_bytes = 1 << 20};
  restart(&s);
  dev *a = dev_open(&h, "alice", "phone");
  enum { N = 200, BODY = 8192 };
  char *frame = malloc(BODY + 256);
  for (int i = 0; i < N; i++) {
    int k = snprintf(frame, 256,
                     "{\"type\":\"send\",\"client_msg_id\":\"big%d\","
                     "\"conversation_id\":\"%s\",\"body\":\"",
                     i, abc);
    memset(frame + k, 'x', BODY);
    snprintf(frame + k + BODY, 8, "\"}");
    dev_send(a, frame);
    if (i % 50 == 49)
      harness_tick(&h);
  }
  free(frame);
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), N);
  dev_drain(a);
  uint64_t in_xyz[3];
  post_n(a, xyz, 3, in_xyz);
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}, {xyz, seen_xyz}, {def, seen_def}};
  resume(b, e, 3, 0);
  cr_assert_not(b->closed, "the session was closed with %u", b->close_code);
  answer *r = collect(b);
  const char *why = failure(r, abc);
  cr_assert_not_null(why, "no resume_failed for the oversized gap");
  cr_assert_str_eq(why, "too_old");
  expect_history(r, abc, NULL, 0);
  expect_history(r, xyz, in_xyz, 3);
  cr_assert_eq(r->r_msgs, 3);
  dev_send(b, "{\"type\":\"ping\"}");
  dev_expect(b, CHAT_FRAME_PONG);
}

Test(resume, later_messages_arrive_live_without_duplicates) {
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t missed[4];
  post_n(a, abc, 4, missed);
  dev *b = bob_back();
  entry e[] = {{abc, seen_abc}, {xyz, seen_xyz}, {def, seen_def}};
  resume(b, e, 3, 0);
  answer *r = collect(b);
  expect_history(r, abc, missed, 4);
  uint64_t live[3];
  live[0] = post(a, abc);
  live[1] = post(a, xyz);
  live[2] = post(a, abc);
  for (int i = 0; i < 3; i++) {
    const chat_frame *f = dev_next(b);
    cr_assert_not_null(f, "live message %d missing", i);
    cr_assert_eq(f->type, CHAT_FRAME_MESSAGE, "got %s", dev_last_raw(b));
    cr_assert_eq(f->message->message_id, live[i]);
    for (int k = 0; k < 4; k++)
      cr_assert_neq(f->message->message_id, missed[k], "a resumed message "
                    "delivered again");
  }
  harness_advance(&h, 1000);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 0);
  cr_assert_eq(dev_count(b, CHAT_FRAME_HISTORY), 0);
}

/* More conversations than half the session's queue can announce: the
 * answer stops at the budget, says so (error too_large, ref resume) and
 * still ends with `resumed`; the session stays open, so the client can go
 * to REST instead of being closed with 1013 on every retry. Both without
 * `since` (conversation frames) and with it (one history frame each). */
Test(resume, too_many_conversations_stop_at_the_queue_budget) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .rate_per_minute = 1000,
                            .max_queued_frames = 64};
  restart(&s);
  const char *bob[] = {"bob"};
  char name[16];
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "friend%03d", i);
    char cv[65];
    snprintf(cv, sizeof cv, "%s", harness_create(&h, name, "direct", bob, 1));
    dev *f = dev_open(&h, name, "phone");
    post(f, cv);
    dev_close(f);
  }
  for (int with_since = 0; with_since < 2; with_since++) {
    dev *b = bob_back();
    resume(b, NULL, 0, with_since ? 1 : 0);
    cr_assert_not(b->closed, "closed with %u", b->close_code);
    size_t convs = 0, n_hist = 0, too_large = 0;
    bool done = false;
    const chat_frame *f;
    while (!done && (f = dev_next(b))) {
      if (f->type == CHAT_FRAME_RESUMED)
        done = true;
      else if (f->type == CHAT_FRAME_CONVERSATION)
        convs++;
      else if (f->type == CHAT_FRAME_HISTORY)
        n_hist++;
      else if (f->type == CHAT_FRAME_ERROR &&
               f->error->wire == CHAT_WIRE_TOO_LARGE)
        too_large += strncmp(f->error->ref.ptr, "resume", 6) == 0;
      else
        cr_assert_fail("unexpected %s", dev_last_raw(b));
    }
    cr_assert(done);
    cr_assert_eq(too_large, 1);
    cr_assert_leq(convs + n_hist, 33, "%zu frames", convs + n_hist);
    cr_assert_geq(convs + n_hist, 16, "%zu frames", convs + n_hist);
    cr_assert_eq(with_since ? convs : n_hist, 0);
    dev_send(b, "{\"type\":\"ping\"}");
    dev_expect(b, CHAT_FRAME_PONG);
    dev_close(b);
  }
}

/* ------------------------------------------------------------------------
 * PROTOCOL.md section 8: edits, deletes and admin changes travel through
 * resume; withheld messages do not; paced resumes. */

static void edit_or_delete(dev *d, const char *type, const char *cmid,
                           const char *cv, uint64_t target,
                           const char *body) {
  dev_sendf(d,
            "{\"type\":\"%s\",\"client_msg_id\":\"%s\","
            "\"conversation_id\":\"%s\",\"target_id\":\"%" PRIu64 "\"%s%s%s}",
            type, cmid, cv, target, body ? ",\"body\":\"" : "",
            body ? body : "", body ? "\"" : "");
  harness_tick(&h);
  const chat_frame *f = dev_expect(d, CHAT_FRAME_ACK);
  cr_assert_str_eq(f->ack->client_msg_id, cmid);
}

Test(resume, an_offline_device_converges_on_edits_deletes_and_admin_changes) {
  dev *a = dev_open(&h, "alice", "phone");
  uint64_t m1 = post(a, xyz);
  uint64_t m2 = post(a, xyz);
  /* bob's phone has everything up to m2, then goes away. */
  edit_or_delete(a, "edit", "e1", xyz, m1, "msg 1 fixed");
  edit_or_delete(a, "delete", "d1", xyz, m2, NULL);
  char path[128];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/admins", xyz);
  cr_assert_eq(harness_http(&h, "alice", "POST", path, NULL,
                            "{\"user_id\":\"carol\"}", NULL),
               200);
  harness_settle(&h);
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  entry e[] = {{xyz, m2}};
  resume(b, e, 1, 0);
  harness_settle(&h);
  /* One history frame: the edit, the delete and the system message, in
   * log order, each as stored. */
  const chat_frame *f = dev_expect(b, CHAT_FRAME_HISTORY);
  const chat_history *hs = f->history;
  cr_assert_str_eq(hs->conversation_id, xyz);
  cr_assert(hs->complete);
  cr_assert_eq(hs->n_messages, 3);
  const chat_message *m = hs->messages;
  cr_assert_eq(m[0].body_type, CHAT_BODY_EDIT);
  cr_assert_eq(m[0].target_id, m1);
  cr_assert_str_eq(m[0].body.ptr, "msg 1 fixed");
  cr_assert_eq(m[1].body_type, CHAT_BODY_DELETE);
  cr_assert_eq(m[1].target_id, m2);
  cr_assert_eq(m[1].body.len, 0);
  cr_assert_eq(m[2].body_type, CHAT_BODY_SYSTEM);
  cr_assert_str_eq(m[2].body.ptr, "alice made carol an admin");
  cr_assert_str_eq(m[2].sender_id, "alice");
  cr_assert(m[0].message_id < m[1].message_id &&
            m[1].message_id < m[2].message_id);
  f = dev_expect(b, CHAT_FRAME_RESUMED);
  cr_assert_eq(f->resumed->messages, 3);
  /* From further back, the targets come with their current state. */
  dev_drain(b);
  entry e0[] = {{xyz, seen_xyz}};
  resume(b, e0, 1, 0);
  harness_settle(&h);
  f = dev_expect(b, CHAT_FRAME_HISTORY);
  hs = f->history;
  cr_assert_eq(hs->n_messages, 5);
  cr_assert_eq(hs->messages[0].message_id, m1);
  cr_assert_str_eq(hs->messages[0].body.ptr, "msg 1 fixed");
  cr_assert(hs->messages[0].has_edited_ts);
  cr_assert_eq(hs->messages[1].message_id, m2);
  cr_assert(hs->messages[1].deleted);
  cr_assert_eq(hs->messages[1].body.len, 0);
}

Test(resume, withheld_messages_are_not_resumed_by_others) {
  dev *a = dev_open(&h, "alice", "phone");
  harness_ban(&h, "alice", true);
  uint64_t hidden = post(a, xyz);
  harness_ban(&h, "alice", false);
  uint64_t shown = post(a, xyz);
  harness_settle(&h);
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  entry e[] = {{xyz, seen_xyz}};
  resume(b, e, 1, 0);
  answer *an = collect(b);
  hist *x = hist_of(an, xyz);
  cr_assert_not_null(x);
  cr_assert_eq(x->n, 1);
  cr_assert_eq(x->ids[0], shown);
  /* alice's other device gets both. */
  dev *a2 = dev_open(&h, "alice", "laptop");
  dev_drain(a2);
  resume(a2, e, 1, 0);
  an = collect(a2);
  x = hist_of(an, xyz);
  cr_assert_eq(x->n, 2);
  cr_assert_eq(x->ids[0], hidden);
}

/* A paced resume's rounds before the last say since = the largest id:
 * the server answers for the listed conversations only and does not even
 * list the user's others. */
Test(resume, since_the_largest_id_answers_the_listed_conversations_only) {
  dev *a = dev_open(&h, "alice", "phone");
  post(a, abc);
  uint64_t n_xyz = post(a, xyz);
  post(a, def);
  harness_settle(&h);
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  unsigned before = h.convs_of_calls;
  entry e[] = {{xyz, seen_xyz}};
  resume(b, e, 1, UINT64_C(9223372036854775807));
  answer *an = collect(b);
  cr_assert_eq(an->n_hist, 1);
  cr_assert_str_eq(an->hs[0].conv, xyz);
  cr_assert_eq(an->hs[0].ids[0], n_xyz);
  cr_assert_eq(an->n_convs, 0);
  cr_assert_eq(an->r_convs, 1);
  cr_assert_eq(h.convs_of_calls, before, "the user's list was not read");
  /* The last round, with the real since, brings the rest. */
  entry all[] = {{abc, seen_abc}, {xyz, n_xyz}, {def, seen_def}};
  resume(b, all, 3, seen_abc);
  an = collect(b);
  cr_assert_eq(an->n_hist, 2);
  cr_assert_eq(an->r_msgs, 2);
}

Test(resume, hello_carries_the_batch_hint_when_set) {
  dev *a = dev_open(&h, "alice", "phone");
  const chat_frame *f = dev_expect(a, CHAT_FRAME_HELLO);
  cr_assert_not(f->hello->has_resume_batch_hint);
  cr_assert_null(strstr(dev_last_raw(a), "resume_batch_hint"));
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .resume_batch_hint = 25};
  restart(&s);
  a = dev_open(&h, "alice", "phone");
  f = dev_expect(a, CHAT_FRAME_HELLO);
  cr_assert(f->hello->has_resume_batch_hint);
  cr_assert_eq(f->hello->resume_batch_hint, 25);
}

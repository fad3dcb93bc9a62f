/* Presence and typing: subscriptions and their snapshot, online / idle /
 * offline with the default and with custom timings, the grace against
 * flicker, and the typing relay (PROTOCOL.md 4.8, 4.9 and section 7). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "server_harness.h"

#define MIN (60ull * 1000)

static harness h;

static void setup(void) { harness_init(&h, NULL); }
static void teardown(void) { harness_fini(&h); }

TestSuite(presence, .init = setup, .fini = teardown);
TestSuite(typing, .init = setup, .fini = teardown);

static void restart(const chat_server_settings *s) {
  harness_fini(&h);
  harness_init(&h, s);
}

static void subscribe(dev *d, const char *ids_json) {
  dev_sendf(d, "{\"type\":\"presence_subscribe\",\"user_ids\":%s}", ids_json);
}

/* The next presence frame, which must be about user and in state st. */
static const chat_presence *expect_presence(dev *d, const char *user,
                                            chat_presence_state st) {
  const chat_frame *f = dev_expect(d, CHAT_FRAME_PRESENCE);
  cr_assert_str_eq(f->presence->user_id, user, "presence for %s, not %s",
                   f->presence->user_id, user);
  cr_assert_eq(f->presence->state, st, "%s: state %d, expected %d", user,
               (int)f->presence->state, (int)st);
  return f->presence;
}

static size_t n_presence(dev *d) { return dev_count(d, CHAT_FRAME_PRESENCE); }

/* A watcher that has taken its hello and subscribe snapshot. */
static dev *watcher(const char *ids_json) {
  dev *w = dev_open(&h, "watcher", "phone");
  subscribe(w, ids_json);
  dev_drain(w);
  return w;
}

/* ---- subscriptions ---- */

Test(presence, subscribe_answers_once_per_user_at_once) {
  int64_t alice_at = h.fe.wall_ms;
  dev *a = dev_open(&h, "alice", "phone");
  (void)a;
  /* Time passes, so "last active" and "now" differ. */
  harness_advance(&h, 60000);
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  subscribe(b, "[\"alice\",\"carol\"]");
  /* No timer needed: the snapshot is part of the answer. */
  cr_assert_eq(n_presence(b), 2);
  const chat_presence *p = expect_presence(b, "alice", CHAT_PRESENCE_ONLINE);
  cr_assert(p->has_last_active);
  cr_assert_eq(p->last_active_ts, alice_at);
  p = expect_presence(b, "carol", CHAT_PRESENCE_OFFLINE);
  cr_assert_not(p->has_last_active, "carol was never seen");
  cr_assert_not_null(strstr(dev_last_raw(b), "\"last_active_ts\":null"),
                     "%s", dev_last_raw(b));
}

Test(presence, duplicate_ids_give_one_frame) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  subscribe(b, "[\"alice\",\"alice\",\"carol\",\"alice\",\"carol\"]");
  cr_assert_eq(n_presence(b), 2);
  expect_presence(b, "alice", CHAT_PRESENCE_ONLINE);
  expect_presence(b, "carol", CHAT_PRESENCE_OFFLINE);
  /* And one frame per change, not one per duplicate. */
  dev_close(a);
  harness_advance(&h, 5000);
  cr_assert_eq(n_presence(b), 1);
  expect_presence(b, "alice", CHAT_PRESENCE_OFFLINE);
}

Test(presence, resubscribing_replaces_the_set) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  subscribe(b, "[\"alice\",\"carol\"]");
  dev_drain(b);
  subscribe(b, "[\"carol\",\"dave\"]");
  /* The new set's snapshot, and nothing about alice. */
  cr_assert_eq(n_presence(b), 2);
  expect_presence(b, "carol", CHAT_PRESENCE_OFFLINE);
  expect_presence(b, "dave", CHAT_PRESENCE_OFFLINE);
  dev_close(a);
  harness_advance(&h, 10000);
  cr_assert_eq(n_presence(b), 0, "alice was dropped from the set");
  dev *c = dev_open(&h, "carol", "phone");
  (void)c;
  expect_presence(b, "carol", CHAT_PRESENCE_ONLINE);
  /* An empty list drops everything. */
  subscribe(b, "[]");
  cr_assert_eq(n_presence(b), 0);
  dev_open(&h, "dave", "phone");
  harness_advance(&h, 10000);
  cr_assert_eq(n_presence(b), 0);
}

Test(presence, a_closed_watcher_is_forgotten) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b1 = dev_open(&h, "bob", "phone");
  dev *b2 = dev_open(&h, "bob", "laptop");
  subscribe(b1, "[\"alice\"]");
  subscribe(b2, "[\"alice\"]");
  dev_drain(b2);
  dev_close(b1);
  /* A change after the close reaches the remaining watcher only (under
   * ASan a stale watcher entry would be a use after free). */
  dev_close(a);
  harness_advance(&h, 5000);
  expect_presence(b2, "alice", CHAT_PRESENCE_OFFLINE);
}

Test(presence, only_subscribers_get_frames) {
  dev *b = dev_open(&h, "bob", "phone");
  dev *c = dev_open(&h, "carol", "phone");
  subscribe(b, "[\"alice\"]");
  dev_drain(b);
  dev_drain(c);
  dev *a = dev_open(&h, "alice", "phone");
  expect_presence(b, "alice", CHAT_PRESENCE_ONLINE);
  cr_assert_eq(n_presence(c), 0);
  cr_assert_eq(n_presence(a), 0);
}

/* ---- online, idle, offline with the default timings ---- */

Test(presence, online_on_connect) {
  dev *w = watcher("[\"alice\"]");
  harness_advance(&h, 1234);
  int64_t at = h.fe.wall_ms;
  dev_open(&h, "alice", "phone");
  const chat_presence *p = expect_presence(w, "alice", CHAT_PRESENCE_ONLINE);
  cr_assert(p->has_last_active);
  cr_assert_eq(p->last_active_ts, at);
  cr_assert_eq(n_presence(w), 0, "one frame per change");
}

Test(presence, idle_after_five_minutes_without_activity) {
  int64_t at = h.fe.wall_ms;
  dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  harness_advance(&h, 5 * MIN - 1);
  cr_assert_eq(n_presence(w), 0, "idle too early");
  harness_advance(&h, 1);
  const chat_presence *p = expect_presence(w, "alice", CHAT_PRESENCE_IDLE);
  cr_assert(p->has_last_active);
  cr_assert_eq(p->last_active_ts, at, "last_active_ts is the last activity");
  cr_assert_eq(n_presence(w), 0);
}

Test(presence, ping_is_not_activity) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  for (int i = 0; i < 4; i++) {
    harness_advance(&h, MIN);
    dev_send(a, "{\"type\":\"ping\"}");
    dev_expect(a, CHAT_FRAME_PONG);
  }
  harness_advance(&h, MIN);
  expect_presence(w, "alice", CHAT_PRESENCE_IDLE);
}

Test(presence, any_other_frame_is_activity) {
  const char *bob[] = {"bob"};
  char conv[65];
  snprintf(conv, sizeof conv, "%s",
           harness_create(&h, "alice", "direct", bob, 1));
  dev *a = dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  /* Activity at 4 min pushes idle to 9 min. */
  harness_advance(&h, 4 * MIN);
  dev_sendf(a, "{\"type\":\"typing\",\"conversation_id\":\"%s\","
               "\"is_typing\":true}", conv);
  harness_advance(&h, 5 * MIN - 1);
  cr_assert_eq(n_presence(w), 0, "typing did not count as activity");
  harness_advance(&h, 1);
  expect_presence(w, "alice", CHAT_PRESENCE_IDLE);
  /* Even a refused frame is the user being there. */
  dev_send(a, "{\"type\":\"read\",\"conversation_id\":\"nope\","
              "\"up_to_message_id\":\"1\"}");
  expect_presence(w, "alice", CHAT_PRESENCE_ONLINE);
}

Test(presence, typing_brings_an_idle_user_back_online) {
  const char *bob[] = {"bob"};
  char conv[65];
  snprintf(conv, sizeof conv, "%s",
           harness_create(&h, "alice", "direct", bob, 1));
  dev *a = dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  harness_advance(&h, 6 * MIN);
  expect_presence(w, "alice", CHAT_PRESENCE_IDLE);
  int64_t at = h.fe.wall_ms;
  dev_sendf(a, "{\"type\":\"typing\",\"conversation_id\":\"%s\","
               "\"is_typing\":true}", conv);
  const chat_presence *p = expect_presence(w, "alice", CHAT_PRESENCE_ONLINE);
  cr_assert_eq(p->last_active_ts, at);
  /* And the idle clock starts again from there. */
  harness_advance(&h, 5 * MIN - 1);
  cr_assert_eq(n_presence(w), 0);
  harness_advance(&h, 1);
  expect_presence(w, "alice", CHAT_PRESENCE_IDLE);
}

Test(presence, offline_after_fifteen_minutes_without_activity) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  harness_advance(&h, 5 * MIN);
  expect_presence(w, "alice", CHAT_PRESENCE_IDLE);
  harness_advance(&h, 10 * MIN - 1);
  cr_assert_eq(n_presence(w), 0, "offline too early");
  harness_advance(&h, 1);
  expect_presence(w, "alice", CHAT_PRESENCE_OFFLINE);
  cr_assert_not(a->closed, "offline by idleness keeps the connection");
  harness_advance(&h, 60 * MIN);
  cr_assert_eq(n_presence(w), 0);
  /* Back from offline by a frame. */
  dev_send(a, "{\"type\":\"presence_subscribe\",\"user_ids\":[]}");
  expect_presence(w, "alice", CHAT_PRESENCE_ONLINE);
}

Test(presence, last_device_leaving_is_offline_only_after_the_grace) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  dev_close(a);
  harness_tick(&h);
  cr_assert_eq(n_presence(w), 0, "offline before the grace");
  harness_advance(&h, 4999);
  cr_assert_eq(n_presence(w), 0, "offline before the grace");
  harness_advance(&h, 1);
  expect_presence(w, "alice", CHAT_PRESENCE_OFFLINE);
  cr_assert_eq(n_presence(w), 0);
}

Test(presence, reconnect_within_the_grace_does_not_flicker) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  dev_close(a);
  harness_advance(&h, 3000);
  dev_open(&h, "alice", "phone");
  harness_advance(&h, 60000);
  cr_assert_eq(n_presence(w), 0, "a reconnect within the grace flickered");
  /* Still online for a newcomer. */
  dev *w2 = dev_open(&h, "w2", "phone");
  dev_drain(w2);
  subscribe(w2, "[\"alice\"]");
  expect_presence(w2, "alice", CHAT_PRESENCE_ONLINE);
}

Test(presence, a_second_device_keeps_the_user_online) {
  dev *a1 = dev_open(&h, "alice", "phone");
  dev *a2 = dev_open(&h, "alice", "laptop");
  dev *w = watcher("[\"alice\"]");
  dev_close(a1);
  harness_advance(&h, 60000);
  cr_assert_eq(n_presence(w), 0, "one device is still connected");
  dev *w2 = dev_open(&h, "w2", "phone");
  dev_drain(w2);
  subscribe(w2, "[\"alice\"]");
  expect_presence(w2, "alice", CHAT_PRESENCE_ONLINE);
  dev_close(a2);
  harness_advance(&h, 5000);
  expect_presence(w, "alice", CHAT_PRESENCE_OFFLINE);
}

Test(presence, idle_user_leaving_goes_offline_after_the_grace) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  harness_advance(&h, 5 * MIN);
  expect_presence(w, "alice", CHAT_PRESENCE_IDLE);
  dev_close(a);
  harness_advance(&h, 4999);
  cr_assert_eq(n_presence(w), 0);
  harness_advance(&h, 1);
  expect_presence(w, "alice", CHAT_PRESENCE_OFFLINE);
}

/* ---- custom timings ---- */

Test(presence, custom_idle_and_idle_offline) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .presence_idle_ms = 1000,
                            .presence_idle_offline_ms = 3000};
  restart(&s);
  dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  harness_advance(&h, 999);
  cr_assert_eq(n_presence(w), 0);
  harness_advance(&h, 1);
  expect_presence(w, "alice", CHAT_PRESENCE_IDLE);
  harness_advance(&h, 1999);
  cr_assert_eq(n_presence(w), 0);
  harness_advance(&h, 1);
  expect_presence(w, "alice", CHAT_PRESENCE_OFFLINE);
}

Test(presence, custom_offline_grace) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .presence_offline_ms = 30000};
  restart(&s);
  dev *a = dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  dev_close(a);
  harness_advance(&h, 29999);
  cr_assert_eq(n_presence(w), 0, "offline before the 30 s grace");
  /* A reconnect late in the long grace still does not flicker. */
  a = dev_open(&h, "alice", "phone");
  harness_advance(&h, 60000);
  cr_assert_eq(n_presence(w), 0);
  dev_close(a);
  harness_advance(&h, 29999);
  cr_assert_eq(n_presence(w), 0);
  harness_advance(&h, 1);
  expect_presence(w, "alice", CHAT_PRESENCE_OFFLINE);
}

Test(presence, short_grace) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .presence_offline_ms = 10};
  restart(&s);
  dev *a = dev_open(&h, "alice", "phone");
  dev *w = watcher("[\"alice\"]");
  dev_close(a);
  harness_advance(&h, 9);
  cr_assert_eq(n_presence(w), 0);
  harness_advance(&h, 1);
  expect_presence(w, "alice", CHAT_PRESENCE_OFFLINE);
}

/* ---- with a presence registry (the hub) ---- */

Test(presence, a_user_seen_before_keeps_last_active_ts) {
  harness_fini(&h);
  chat_memory_hub *hub;
  cr_assert_eq(chat_memory_hub_new(&hub, NULL), CHAT_OK);
  chat_presence_ops pr;
  cr_assert_eq(chat_memory_presence_ops(hub, &pr), CHAT_OK);
  harness_init_full(&h, NULL, &pr, NULL);
  int64_t at = h.fe.wall_ms;
  dev *a = dev_open(&h, "alice", "phone");
  harness_advance(&h, 60000);
  dev_close(a);
  harness_advance(&h, 5 * MIN);
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  subscribe(b, "[\"alice\",\"carol\"]");
  const chat_presence *p = expect_presence(b, "alice", CHAT_PRESENCE_OFFLINE);
  cr_assert(p->has_last_active, "alice was seen: last_active_ts is known");
  cr_assert_eq(p->last_active_ts, at);
  p = expect_presence(b, "carol", CHAT_PRESENCE_OFFLINE);
  cr_assert_not(p->has_last_active);
  harness_fini(&h);
  chat_memory_hub_free(hub);
  harness_init(&h, NULL); /* for teardown */
}

/* ---- typing ---- */

static char conv[65];

static void direct_ab(void) {
  const char *bob[] = {"bob"};
  snprintf(conv, sizeof conv, "%s",
           harness_create(&h, "alice", "direct", bob, 1));
}

static void typing(dev *d, const char *c, bool on) {
  dev_sendf(d, "{\"type\":\"typing\",\"conversation_id\":\"%s\","
               "\"is_typing\":%s}", c, on ? "true" : "false");
}

Test(typing, relayed_to_the_other_members_devices_only) {
  direct_ab();
  dev *a1 = dev_open(&h, "alice", "phone");
  dev *a2 = dev_open(&h, "alice", "laptop");
  dev *b1 = dev_open(&h, "bob", "phone");
  dev *b2 = dev_open(&h, "bob", "tablet");
  dev *c = dev_open(&h, "carol", "phone");
  dev *all[] = {a1, a2, b1, b2, c};
  for (size_t i = 0; i < 5; i++)
    dev_drain(all[i]);
  typing(a1, conv, true);
  for (int i = 0; i < 2; i++) {
    dev *d = i ? b2 : b1;
    const chat_frame *f = dev_expect(d, CHAT_FRAME_TYPING);
    cr_assert_str_eq(f->typing->conversation_id, conv);
    cr_assert_str_eq(f->typing->user_id, "alice");
    cr_assert(f->typing->is_typing);
    cr_assert_eq(dev_count(d, CHAT_FRAME_NONE), 0);
  }
  cr_assert_eq(dev_count(a1, CHAT_FRAME_NONE), 0, "echoed to the typer");
  cr_assert_eq(dev_count(a2, CHAT_FRAME_NONE), 0,
               "sent to the typer's other device");
  cr_assert_eq(dev_count(c, CHAT_FRAME_NONE), 0, "sent to a non-member");
  typing(a1, conv, false);
  const chat_frame *f = dev_expect(b1, CHAT_FRAME_TYPING);
  cr_assert_not(f->typing->is_typing);
  /* And the other way round. */
  typing(b2, conv, true);
  f = dev_expect(a1, CHAT_FRAME_TYPING);
  cr_assert_str_eq(f->typing->user_id, "bob");
  dev_expect(a2, CHAT_FRAME_TYPING);
  cr_assert_eq(dev_count(b1, CHAT_FRAME_TYPING), 0);
}

/* A group of alice and n - 1 others; bob is one of them. */
static void group_of(size_t n) {
  static char names[1100][16];
  const char *m[1100];
  m[0] = "bob";
  for (size_t i = 1; i + 1 < n; i++) {
    snprintf(names[i], sizeof names[i], "u%zu", i);
    m[i] = names[i];
  }
  snprintf(conv, sizeof conv, "%s",
           harness_create(&h, "alice", "group", m, n - 1));
}

Test(typing, relayed_in_a_group_of_fifty) {
  group_of(50);
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev *u = dev_open(&h, "u48", "phone");
  dev_drain(b);
  dev_drain(u);
  typing(a, conv, true);
  cr_assert_eq(dev_expect(b, CHAT_FRAME_TYPING)->typing->is_typing, true);
  dev_expect(u, CHAT_FRAME_TYPING);
}

Test(typing, not_relayed_in_a_group_of_fifty_one) {
  group_of(51);
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev *u = dev_open(&h, "u49", "phone");
  dev_drain(a);
  dev_drain(b);
  dev_drain(u);
  typing(a, conv, true);
  typing(b, conv, true);
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_NONE), 0, "%s", dev_last_raw(a));
  cr_assert_eq(dev_count(b, CHAT_FRAME_NONE), 0);
  cr_assert_eq(dev_count(u, CHAT_FRAME_NONE), 0);
}

Test(typing, group_limit_is_configurable) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .typing_max_members = 3};
  restart(&s);
  group_of(3);
  char small[65];
  snprintf(small, sizeof small, "%s", conv);
  group_of(4);
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  typing(a, conv, true);
  cr_assert_eq(dev_count(b, CHAT_FRAME_TYPING), 0);
  typing(a, small, true);
  cr_assert_str_eq(dev_expect(b, CHAT_FRAME_TYPING)->typing->conversation_id,
                   small);
}

Test(typing, never_stored) {
  direct_ab();
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  typing(a, conv, true);
  typing(b, conv, true);
  typing(a, conv, false);
  harness_advance(&h, 1000);
  cr_assert_eq(h.appends, 0, "typing reached the store");
  char path[128];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/messages", conv);
  const char *body;
  cr_assert_eq(harness_http(&h, "bob", "GET", path, NULL, NULL, &body), 200);
  cr_assert_str_eq(body, "{\"messages\":[],\"has_more\":false}");
  snprintf(path, sizeof path, "/api/v1/conversations/%s", conv);
  cr_assert_eq(harness_http(&h, "bob", "GET", path, NULL, NULL, &body), 200);
  cr_assert_not_null(strstr(body, "\"last_message\":null"), "%s", body);
  cr_assert_not_null(strstr(body, "\"unread_count\":0"), "%s", body);
}

Test(typing, non_member_is_refused) {
  direct_ab();
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev *c = dev_open(&h, "carol", "phone");
  dev_drain(a);
  dev_drain(b);
  dev_drain(c);
  typing(c, conv, true);
  const chat_frame *f = dev_expect(c, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_NOT_MEMBER);
  cr_assert_str_eq(f->error->code, "not_member");
  cr_assert_str_eq(f->error->ref.ptr, "typing");
  cr_assert_eq(dev_count(a, CHAT_FRAME_NONE), 0);
  cr_assert_eq(dev_count(b, CHAT_FRAME_NONE), 0);
  cr_assert_not(c->closed);
  typing(c, "nope", true);
  f = dev_expect(c, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_NO_SUCH_CONVERSATION);
}

/* A client hammering typing frames gets a burst of 5 relayed, then one a
 * second; the rest is dropped without an error (typing is ephemeral). */
Test(typing, a_flood_is_cut_to_one_a_second) {
  direct_ab();
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(a);
  dev_drain(b);
  for (int i = 0; i < 100; i++)
    typing(a, conv, i % 2 == 0);
  cr_assert_eq(dev_count(b, CHAT_FRAME_TYPING), 5);
  cr_assert_eq(dev_count(a, CHAT_FRAME_NONE), 0, "no error for typing");
  dev_drain(b);
  harness_advance(&h, 3000);
  for (int i = 0; i < 100; i++)
    typing(a, conv, true);
  cr_assert_eq(dev_count(b, CHAT_FRAME_TYPING), 3);
  dev_drain(b);
  harness_advance(&h, 60000);
  for (int i = 0; i < 100; i++)
    typing(a, conv, true);
  cr_assert_eq(dev_count(b, CHAT_FRAME_TYPING), 5, "the burst is capped");
}

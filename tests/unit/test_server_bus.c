/* Several gateways (PROTOCOL.md 4.4): two servers, "gw1" and "gw2", in
 * one process, sharing a chat_memory_hub (presence registry and bus) and
 * one SQLite database file. A message reaches the devices on the other
 * gateway once that gateway's bus queue is drained into
 * chat_server_bus_deliver(); one bus message per gateway per message;
 * receipts, read sync and typing cross too; push is only for users with no
 * device on any gateway. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server_harness.h"

static harness g1, g2;
static chat_memory_hub *hub;
static char db[64];

static void setup(void) {
  snprintf(db, sizeof db, "/tmp/chat-bus-XXXXXX");
  int fd = mkstemp(db);
  cr_assert_geq(fd, 0);
  close(fd);
  cr_assert_eq(chat_memory_hub_new(&hub, NULL), CHAT_OK);
  chat_presence_ops pr;
  chat_bus_ops bus;
  cr_assert_eq(chat_memory_presence_ops(hub, &pr), CHAT_OK);
  cr_assert_eq(chat_memory_bus_ops(hub, &bus), CHAT_OK);
  /* Distinct machine ids keep Snowflake ids unique across the two. */
  chat_server_settings s1 = {.version = CHAT_SERVER_SETTINGS_V1,
                             .machine_id = 1, .gateway_id = "gw1"};
  chat_server_settings s2 = {.version = CHAT_SERVER_SETTINGS_V1,
                             .machine_id = 2, .gateway_id = "gw2"};
  harness_init_path(&g1, &s1, &pr, &bus, db);
  harness_init_path(&g2, &s2, &pr, &bus, db);
  cr_assert_str_eq(g1.gw, "gw1");
  cr_assert_str_eq(g2.gw, "gw2");
}

static void teardown(void) {
  harness_fini(&g1);
  harness_fini(&g2);
  chat_memory_hub_free(hub);
  char p[96];
  unlink(db);
  snprintf(p, sizeof p, "%s-wal", db);
  unlink(p);
  snprintf(p, sizeof p, "%s-shm", db);
  unlink(p);
}

TestSuite(bus, .init = setup, .fini = teardown);

/* Both gateways share the wall clock and the monotonic one. */
static void advance(uint64_t ms) {
  harness_advance(&g1, ms);
  harness_advance(&g2, ms);
}

static void tick(void) {
  harness_tick(&g1);
  harness_tick(&g2);
}

/* Deliver everything queued on the bus, both ways, until quiet. */
static void pump_bus(void) {
  for (int i = 0; i < 8; i++) {
    size_t n = harness_bus_pump(&g1, hub) + harness_bus_pump(&g2, hub);
    tick();
    if (n == 0)
      return;
  }
  cr_assert_fail("the bus does not settle");
}

static uint64_t send_msg(dev *d, const char *conv, const char *cmid,
                         const char *body) {
  dev_sendf(d, "{\"type\":\"send\",\"client_msg_id\":\"%s\","
               "\"conversation_id\":\"%s\",\"body\":\"%s\"}",
            cmid, conv, body);
  harness_tick(d->h);
  const chat_frame *f = dev_expect(d, CHAT_FRAME_ACK);
  cr_assert_str_eq(f->ack->client_msg_id, cmid);
  return f->ack->message_id;
}

static char conv[65];

static void direct_ab(void) {
  const char *bob[] = {"bob"};
  snprintf(conv, sizeof conv, "%s",
           harness_create(&g1, "alice", "direct", bob, 1));
}

Test(bus, direct_message_reaches_the_other_gateway) {
  direct_ab();
  dev *a1 = dev_open(&g1, "alice", "phone");
  dev *b = dev_open(&g2, "bob", "phone");
  dev *a2 = dev_open(&g2, "alice", "laptop");
  pump_bus();
  dev_drain(a1);
  dev_drain(b);
  dev_drain(a2);
  uint64_t id = send_msg(a1, conv, "m1", "over the bus");
  /* Nothing on gw2 until its queue is drained, and one message for it. */
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 0);
  cr_assert_eq(chat_memory_hub_pending(hub, "gw2"), 1);
  cr_assert_eq(chat_memory_hub_pending(hub, "gw1"), 0,
               "a gateway publishes nothing to itself");
  cr_assert_eq(harness_bus_pump(&g2, hub), 1);
  for (int i = 0; i < 2; i++) {
    dev *d = i ? a2 : b;
    const chat_frame *f = dev_expect(d, CHAT_FRAME_MESSAGE);
    cr_assert_eq(f->message->message_id, id);
    cr_assert_str_eq(f->message->conversation_id, conv);
    cr_assert_str_eq(f->message->sender_id, "alice");
    cr_assert_str_eq(f->message->client_msg_id, "m1");
    cr_assert_str_eq(f->message->body.ptr, "over the bus");
    cr_assert_eq(dev_count(d, CHAT_FRAME_MESSAGE), 0, "delivered twice");
  }
  pump_bus();
  cr_assert_eq(dev_count(a1, CHAT_FRAME_MESSAGE), 0,
               "the sending device got its own message");
  /* The other direction, and the shared store. */
  uint64_t id2 = send_msg(b, conv, "b1", "back");
  cr_assert_gt(id2, id);
  cr_assert_eq(dev_count(a2, CHAT_FRAME_MESSAGE), 1, "local on gw2");
  pump_bus();
  cr_assert_eq(dev_expect(a1, CHAT_FRAME_MESSAGE)->message->message_id, id2);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 0);
  char path[128];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/messages", conv);
  const char *body;
  cr_assert_eq(harness_http(&g1, "alice", "GET", path, NULL, NULL, &body),
               200);
  cr_assert_not_null(strstr(body, "over the bus"));
  cr_assert_not_null(strstr(body, "\"back\""));
}

Test(bus, the_sending_device_is_skipped_on_every_gateway) {
  direct_ab();
  dev *a1 = dev_open(&g1, "alice", "phone");
  /* The same device is still connected on gw2 too (a reconnect that moved
   * gateways before the old socket closed), next to another device. */
  dev *stale = dev_open(&g2, "alice", "phone");
  dev *a2 = dev_open(&g2, "alice", "tablet");
  dev *a3 = dev_open(&g1, "alice", "laptop");
  pump_bus();
  dev_drain(a1);
  dev_drain(stale);
  dev_drain(a2);
  dev_drain(a3);
  send_msg(a1, conv, "m1", "x");
  pump_bus();
  cr_assert_eq(dev_count(a1, CHAT_FRAME_MESSAGE), 0);
  cr_assert_eq(dev_count(stale, CHAT_FRAME_MESSAGE), 0,
               "the sending device got its own message through the bus");
  cr_assert_eq(dev_count(a2, CHAT_FRAME_MESSAGE), 1);
  cr_assert_eq(dev_count(a3, CHAT_FRAME_MESSAGE), 1);
}

Test(bus, one_bus_message_per_gateway_per_message) {
  const char *m[] = {"bob", "carol", "dave", "erin"};
  snprintf(conv, sizeof conv, "%s",
           harness_create(&g1, "alice", "group", m, 4));
  dev *a = dev_open(&g1, "alice", "phone");
  dev *e = dev_open(&g1, "erin", "phone");
  /* Three members with five devices on gw2... */
  dev *on2[] = {dev_open(&g2, "bob", "phone"), dev_open(&g2, "bob", "laptop"),
                dev_open(&g2, "carol", "phone"),
                dev_open(&g2, "dave", "phone"),
                dev_open(&g2, "dave", "watch")};
  /* ...and a third gateway that only the registry knows of. */
  chat_presence_ops pr;
  chat_memory_presence_ops(hub, &pr);
  cr_assert_eq(pr.device_online(pr.self, "carol", "tv", "gw3"), CHAT_OK);
  cr_assert_eq(pr.device_online(pr.self, "dave", "car", "gw3"), CHAT_OK);
  pump_bus();
  for (size_t i = 0; i < 5; i++)
    dev_drain(on2[i]);
  dev_drain(e);
  /* Three sends committed together. */
  for (int i = 0; i < 3; i++) {
    char id[8];
    snprintf(id, sizeof id, "g%d", i);
    dev_sendf(a, "{\"type\":\"send\",\"client_msg_id\":\"%s\","
                 "\"conversation_id\":\"%s\",\"body\":\"x\"}", id, conv);
  }
  harness_tick(&g1);
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 3);
  cr_assert_eq(chat_memory_hub_pending(hub, "gw2"), 3);
  cr_assert_eq(chat_memory_hub_pending(hub, "gw3"), 3);
  cr_assert_eq(chat_memory_hub_pending(hub, "gw1"), 0);
  cr_assert_eq(dev_count(e, CHAT_FRAME_MESSAGE), 3, "local member");
  cr_assert_eq(harness_bus_pump(&g2, hub), 3);
  for (size_t i = 0; i < 5; i++)
    cr_assert_eq(dev_count(on2[i], CHAT_FRAME_MESSAGE), 3, "device %zu", i);
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(g1.srv, &st);
  cr_assert_eq(st.bus_published_total, 6);
  cr_assert_eq(st.bus_publish_errors_total, 0);
}

Test(bus, receipts_cross_gateways) {
  direct_ab();
  dev *a = dev_open(&g1, "alice", "phone");
  dev *b = dev_open(&g2, "bob", "phone");
  pump_bus();
  uint64_t id = send_msg(a, conv, "m1", "x");
  pump_bus();
  dev_expect(b, CHAT_FRAME_MESSAGE);
  dev_drain(a);
  dev_sendf(b, "{\"type\":\"delivered\",\"conversation_id\":\"%s\","
               "\"up_to_message_id\":\"%llu\"}", conv,
            (unsigned long long)id);
  advance(1000); /* the receipt flush */
  cr_assert_eq(dev_count(a, CHAT_FRAME_RECEIPT), 0, "before the bus");
  pump_bus();
  const chat_frame *f = dev_expect(a, CHAT_FRAME_RECEIPT);
  cr_assert_str_eq(f->receipt->conversation_id, conv);
  cr_assert_eq(f->receipt->message_id, id);
  cr_assert_eq(f->receipt->state, CHAT_RECEIPT_DELIVERED);
  cr_assert_str_eq(f->receipt->member_id, "bob");
  dev_sendf(b, "{\"type\":\"read\",\"conversation_id\":\"%s\","
               "\"up_to_message_id\":\"%llu\"}", conv,
            (unsigned long long)id);
  advance(1000);
  pump_bus();
  f = dev_expect(a, CHAT_FRAME_RECEIPT);
  cr_assert_eq(f->receipt->state, CHAT_RECEIPT_READ);
  cr_assert_eq(f->receipt->message_id, id);
  cr_assert_eq(dev_count(b, CHAT_FRAME_RECEIPT), 0);
}

Test(bus, read_sync_crosses_gateways) {
  direct_ab();
  dev *a = dev_open(&g1, "alice", "phone");
  dev *b1 = dev_open(&g2, "bob", "phone");
  dev *b2 = dev_open(&g1, "bob", "laptop");
  dev *b3 = dev_open(&g2, "bob", "tablet");
  pump_bus();
  uint64_t id = send_msg(a, conv, "m1", "x");
  pump_bus();
  dev_drain(b1);
  dev_drain(b2);
  dev_drain(b3);
  dev_sendf(b1, "{\"type\":\"read\",\"conversation_id\":\"%s\","
                "\"up_to_message_id\":\"%llu\"}", conv,
            (unsigned long long)id);
  tick();
  cr_assert_eq(dev_count(b2, CHAT_FRAME_STATE_CHANGE), 0, "before the bus");
  pump_bus();
  for (int i = 0; i < 2; i++) {
    const chat_frame *f = dev_expect(i ? b3 : b2, CHAT_FRAME_STATE_CHANGE);
    cr_assert_str_eq(f->state_change->conversation_id, conv);
    cr_assert_eq(f->state_change->last_read_message_id, id);
  }
  cr_assert_eq(dev_count(b1, CHAT_FRAME_STATE_CHANGE), 0,
               "the reading device needs no sync");
  cr_assert_eq(dev_count(a, CHAT_FRAME_STATE_CHANGE), 0);
}

Test(bus, typing_and_new_conversations_cross_gateways) {
  dev *a = dev_open(&g1, "alice", "phone");
  dev *b = dev_open(&g2, "bob", "phone");
  pump_bus();
  dev_drain(b);
  direct_ab();
  pump_bus();
  const chat_frame *f = dev_expect(b, CHAT_FRAME_CONVERSATION);
  cr_assert_str_eq(f->conversation->conversation_id, conv);
  dev_sendf(a, "{\"type\":\"typing\",\"conversation_id\":\"%s\","
               "\"is_typing\":true}", conv);
  pump_bus();
  f = dev_expect(b, CHAT_FRAME_TYPING);
  cr_assert_str_eq(f->typing->user_id, "alice");
  cr_assert_eq(dev_count(a, CHAT_FRAME_TYPING), 0);
}

Test(bus, presence_snapshot_comes_from_the_registry) {
  int64_t at = g1.fe.wall_ms;
  dev_open(&g1, "alice", "phone");
  advance(1000);
  dev *b = dev_open(&g2, "bob", "phone");
  pump_bus();
  dev_drain(b);
  dev_send(b, "{\"type\":\"presence_subscribe\",\"user_ids\":[\"alice\"]}");
  const chat_frame *f = dev_expect(b, CHAT_FRAME_PRESENCE);
  cr_assert_str_eq(f->presence->user_id, "alice");
  cr_assert_eq(f->presence->state, CHAT_PRESENCE_ONLINE);
  cr_assert(f->presence->has_last_active);
  cr_assert_eq(f->presence->last_active_ts, at);
}

/* The bus messages queued for gw2, as text. */
static char captured[8][4096];
static size_t n_captured;

static void capture(void *ud, const char *msg, size_t len) {
  (void)ud;
  cr_assert_lt(n_captured, 8);
  cr_assert_lt(len, sizeof captured[0]);
  memcpy(captured[n_captured], msg, len);
  captured[n_captured++][len] = 0;
}

/* s with the first occurrence of from replaced by to (static buffer). */
static const char *replace(const char *s, const char *from, const char *to) {
  static char out[32][4096];
  static int slot;
  char *o = out[slot++ % 32];
  const char *p = strstr(s, from);
  cr_assert_not_null(p, "%s not in %s", from, s);
  snprintf(o, 4096, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from));
  return o;
}

Test(bus, malformed_messages_are_refused_and_change_nothing) {
  direct_ab();
  dev *a = dev_open(&g1, "alice", "phone");
  dev *b = dev_open(&g2, "bob", "phone");
  pump_bus();
  dev_drain(b);
  send_msg(a, conv, "m1", "hello");
  n_captured = 0;
  cr_assert_eq(chat_memory_hub_drain(hub, "gw2", capture, NULL), 1);
  const char *env = captured[0];
  char truncated[4096], trailing[4096];
  snprintf(truncated, sizeof truncated, "%.*s", (int)strlen(env) - 1, env);
  snprintf(trailing, sizeof trailing, "%s x", env);
  const char *bad[] = {
    "",
    "not json",
    "[]",
    "{}",
    "null",
    truncated,
    trailing,
    replace(env, "\"deliver\"", "\"other\""),
    replace(env, "\"k\":\"deliver\"", "\"k\":1"),
    replace(env, "\"to\":[\"bob\"]", "\"to\":\"bob\""),
    replace(env, "\"to\":[\"bob\"]", "\"to\":[5]"),
    replace(env, "\"to\":[\"bob\"]", "\"to\":[\"bob\",null]"),
    replace(env, "\"to\":[\"bob\"]", "\"to\":[\"not an id\"]"),
    replace(env, "\"xu\":\"alice\"", "\"xu\":5"),
    replace(env, "\"xd\":\"phone\"", "\"xd\":[]"),
    replace(env, "\"type\":\"message\"", "\"type\":\"nonsense\""),
    replace(env, "\"type\":\"message\"", "\"type\":\"send\""),
    replace(env, "\"sender_id\":\"alice\",", ""),
    replace(env, "\"body\":\"hello\"", "\"body\":5"),
    "{\"k\":\"deliver\",\"to\":[\"bob\"]}",
    "{\"k\":\"deliver\",\"to\":[\"bob\"],\"f\":\"x\"}",
    "{\"k\":\"deliver\",\"to\":[\"bob\"],\"f\":{}}",
    "{\"k\":\"forget\"}",
    "{\"k\":\"forget\",\"c\":5}",
    "{\"k\":\"forget\",\"c\":\"not an id\"}",
  };
  chat_server_stats before = {.version = CHAT_SERVER_STATS_V1};
  chat_server_stats after = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(g2.srv, &before);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    chat_err rc = chat_server_bus_deliver(g2.srv, bad[i], strlen(bad[i]),
                                          g2.now);
    cr_assert_eq(rc, CHAT_ERR_INVAL, "accepted %s: %s", bad[i],
                 chat_err_name(rc));
    harness_pump(&g2);
    cr_assert_eq(dev_count(b, CHAT_FRAME_NONE), 0, "delivered %s", bad[i]);
  }
  chat_server_get_stats(g2.srv, &after);
  cr_assert_eq(after.deliveries_total, before.deliveries_total);
  cr_assert_eq(after.frames_out_total, before.frames_out_total);
  cr_assert_eq(chat_server_bus_deliver(g2.srv, NULL, 5, g2.now),
               CHAT_ERR_INVAL);
  /* The genuine message still goes through afterwards. */
  cr_assert_eq(chat_server_bus_deliver(g2.srv, env, strlen(env), g2.now),
               CHAT_OK);
  const chat_frame *f = dev_expect(b, CHAT_FRAME_MESSAGE);
  cr_assert_str_eq(f->message->body.ptr, "hello");
  cr_assert_eq(dev_count(b, CHAT_FRAME_NONE), 0);
}

static void register_token(harness *g, const char *user, const char *tok) {
  char body[96];
  snprintf(body, sizeof body, "{\"platform\":\"fcm\",\"push_token\":\"%s\"}",
           tok);
  cr_assert_eq(harness_http(g, user, "POST", "/api/v1/devices", NULL, body,
                            NULL),
               200);
}

Test(bus, push_only_for_users_with_no_device_on_any_gateway) {
  const char *m[] = {"bob", "carol", "dave", "erin"};
  snprintf(conv, sizeof conv, "%s",
           harness_create(&g1, "alice", "group", m, 4));
  register_token(&g1, "bob", "tok-b");
  register_token(&g1, "carol", "tok-c");
  register_token(&g1, "dave", "tok-d");
  register_token(&g2, "erin", "tok-e");
  dev *a = dev_open(&g1, "alice", "phone");
  dev *b = dev_open(&g2, "bob", "phone");   /* online on the other gateway */
  dev *d = dev_open(&g1, "dave", "phone");  /* online here */
  dev *e = dev_open(&g2, "erin", "phone");  /* was online on gw2, left */
  dev_close(e);
  advance(10000);
  pump_bus();
  dev_drain(b);
  dev_drain(d);
  send_msg(a, conv, "g1", "secret body");
  pump_bus();
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 1);
  cr_assert_eq(dev_count(d, CHAT_FRAME_MESSAGE), 1);
  cr_assert_eq(g1.n_pushes, 2, "pushes: %zu", g1.n_pushes);
  bool carol = false, erin = false;
  for (size_t i = 0; i < g1.n_pushes; i++) {
    push_rec *p = &g1.pushes[i];
    carol |= strcmp(p->user, "carol") == 0;
    erin |= strcmp(p->user, "erin") == 0;
    cr_assert_str_eq(p->sender, "alice");
    cr_assert_str_eq(p->conv, conv);
    cr_assert_null(strstr(p->preview, "secret"));
  }
  cr_assert(carol && erin, "carol %d, erin %d", carol, erin);
  cr_assert_eq(g2.n_pushes, 0, "the receiving gateway pushes nothing");
}

Test(bus, a_user_in_the_offline_grace_elsewhere_is_pushed) {
  /* erin's last device left gw2 a moment ago: her presence is still in
   * its grace, but no device can take the message. */
  const char *m[] = {"erin"};
  snprintf(conv, sizeof conv, "%s",
           harness_create(&g1, "alice", "direct", m, 1));
  register_token(&g1, "erin", "tok-e");
  dev *a = dev_open(&g1, "alice", "phone");
  dev *e = dev_open(&g2, "erin", "phone");
  pump_bus();
  dev_close(e);
  send_msg(a, conv, "m1", "x");
  pump_bus();
  cr_assert_eq(g1.n_pushes, 1);
  cr_assert_str_eq(g1.pushes[0].user, "erin");
}

/* Membership changed through one gateway holds on every gateway: each
 * keeps a membership cache, and a change must not leave the others with a
 * stale one. */
Test(bus, membership_changes_reach_every_gateway) {
  const char *m[] = {"bob", "carol"};
  snprintf(conv, sizeof conv, "%s",
           harness_create(&g1, "alice", "group", m, 2));
  dev *a = dev_open(&g1, "alice", "phone");
  dev *b = dev_open(&g2, "bob", "phone");
  dev *c = dev_open(&g2, "carol", "phone");
  dev *d = dev_open(&g2, "dave", "phone");
  pump_bus();
  /* gw2 learns the member list: bob sends, dave is refused. */
  send_msg(b, conv, "b1", "hi");
  dev_sendf(d, "{\"type\":\"send\",\"client_msg_id\":\"d0\","
               "\"conversation_id\":\"%s\",\"body\":\"x\"}", conv);
  cr_assert_eq(dev_expect(d, CHAT_FRAME_ERROR)->error->wire,
               CHAT_WIRE_NOT_MEMBER);
  pump_bus();
  /* Through gw1: bob leaves, dave is added. */
  char path[160];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/members/bob", conv);
  cr_assert_eq(harness_http(&g1, "bob", "DELETE", path, NULL, NULL, NULL),
               200);
  snprintf(path, sizeof path, "/api/v1/conversations/%s/members", conv);
  cr_assert_eq(harness_http(&g1, "alice", "POST", path, NULL,
                            "{\"user_id\":\"dave\"}", NULL),
               200);
  pump_bus();
  dev_expect(d, CHAT_FRAME_CONVERSATION);
  dev_drain(b);
  dev_drain(d);
  dev_sendf(b, "{\"type\":\"send\",\"client_msg_id\":\"b2\","
               "\"conversation_id\":\"%s\",\"body\":\"still here?\"}", conv);
  harness_tick(&g2);
  const chat_frame *f = dev_expect(b, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_NOT_MEMBER,
               "gw2 still thinks bob is a member");
  cr_assert_eq(dev_count(b, CHAT_FRAME_ACK), 0);
  send_msg(d, conv, "d1", "hello");
  /* carol's message from gw2 goes to the new member list. */
  dev_drain(b);
  dev_drain(d);
  send_msg(c, conv, "c1", "welcome dave");
  pump_bus();
  cr_assert_eq(dev_count(d, CHAT_FRAME_MESSAGE), 1);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 0,
               "bob left but still receives through gw2");
  /* Besides the three messages, alice saw both changes as system
   * messages (section 8), in order. */
  const char *want[] = {"hi", "bob left", "alice added dave", "hello",
                        "welcome dave"};
  for (size_t i = 0; i < 5; i++) {
    const chat_frame *got = dev_expect(a, CHAT_FRAME_MESSAGE);
    cr_assert_str_eq(got->message->body.ptr, want[i]);
    cr_assert_eq(got->message->body_type,
                 i == 1 || i == 2 ? CHAT_BODY_SYSTEM : CHAT_BODY_TEXT);
  }
  cr_assert_eq(dev_count(a, CHAT_FRAME_MESSAGE), 0);
}

/* A change the bus never carried (a lost message, or a store edited by
 * another tool) is picked up once the cached member list is 30 s old. */
Test(bus, a_cached_member_list_expires) {
  const char *m[] = {"bob"};
  snprintf(conv, sizeof conv, "%s",
           harness_create(&g1, "alice", "group", m, 1));
  dev *d = dev_open(&g2, "dave", "phone");
  pump_bus();
  dev_sendf(d, "{\"type\":\"send\",\"client_msg_id\":\"d0\","
               "\"conversation_id\":\"%s\",\"body\":\"x\"}", conv);
  cr_assert_eq(dev_expect(d, CHAT_FRAME_ERROR)->error->wire,
               CHAT_WIRE_NOT_MEMBER);
  cr_assert_eq(g2.inner.member_add(g2.inner.self, conv, "dave", 0, NULL), CHAT_OK);
  advance(10000);
  dev_sendf(d, "{\"type\":\"send\",\"client_msg_id\":\"d1\","
               "\"conversation_id\":\"%s\",\"body\":\"x\"}", conv);
  tick();
  cr_assert_eq(dev_expect(d, CHAT_FRAME_ERROR)->error->wire,
               CHAT_WIRE_NOT_MEMBER, "the cache is fresh: still refused");
  advance(21000);
  send_msg(d, conv, "d2", "now a member");
}

/* A bus message naming a user twice, to a session with room for one frame:
 * the second copy closes the session (1013) and clears its queue, which
 * held the frame being delivered. The frame must outlive that (run under
 * ASan to see the difference). */
Test(bus_edge, a_repeated_recipient_on_a_full_queue) {
  static harness h;
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .max_queued_frames = 1};
  harness_init(&h, &s);
  dev *b = dev_open(&h, "bob", "phone");
  dev *b2 = dev_open(&h, "bob", "tablet");
  const char *msg =
      "{\"k\":\"deliver\",\"to\":[\"bob\",\"bob\",\"bob\"],\"f\":{\"type\":"
      "\"typing\",\"conversation_id\":\"c1\",\"user_id\":\"alice\","
      "\"is_typing\":true}}";
  cr_assert_eq(chat_server_bus_deliver(h.srv, msg, strlen(msg), h.now),
               CHAT_OK);
  harness_pump(&h);
  cr_assert(b->closed && b2->closed);
  cr_assert_eq(b->close_code, 1013);
  harness_fini(&h);
}

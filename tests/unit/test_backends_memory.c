/* lib/backends/memory/hub.c: the in-process presence registry and bus,
 * shared by two gateways "gw1" and "gw2" as two chat_server instances would
 * share it. */
#include <chat/memory.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail_alloc.h"

/* ---- helpers ---- */

typedef struct located {
  int n;
  char gw[16][CHAT_ID_BUF];
  char dev[16][CHAT_ID_BUF];
} located;

static void on_location(void *ctx, const char *gateway_id,
                        const char *device_id) {
  located *l = ctx;
  cr_assert_lt(l->n, 16);
  snprintf(l->gw[l->n], CHAT_ID_BUF, "%s", gateway_id);
  snprintf(l->dev[l->n], CHAT_ID_BUF, "%s", device_id);
  l->n++;
}

static located locate(const chat_presence_ops *p, const char *user) {
  located l = {0};
  cr_assert_eq(p->locate(p->self, user, on_location, &l, NULL), CHAT_OK);
  return l;
}

static bool has(const located *l, const char *gw, const char *dev) {
  int hits = 0;
  for (int i = 0; i < l->n; i++)
    hits += !strcmp(l->gw[i], gw) && !strcmp(l->dev[i], dev);
  cr_assert_leq(hits, 1, "(%s, %s) emitted %d times", gw, dev, hits);
  return hits == 1;
}

typedef struct inbox {
  size_t n;
  char msgs[64][64];
  size_t lens[64];
  /* During a drain: publish these through bus (msg text) to gateway. */
  const chat_bus_ops *bus;
  const char *republish_to;
  chat_memory_hub *hub;
  const char *nested_drain;
} inbox;

static void on_deliver(void *user_data, const char *msg, size_t len) {
  inbox *in = user_data;
  cr_assert_lt(in->n, 64);
  cr_assert_lt(len, 64);
  cr_assert_eq(msg[len], '\0', "delivered messages are NUL-terminated");
  memcpy(in->msgs[in->n], msg, len + 1);
  in->lens[in->n] = len;
  in->n++;
  if (in->republish_to) {
    char echo[64];
    int n = snprintf(echo, sizeof echo, "re:%s", msg);
    cr_assert_eq(in->bus->publish(in->bus->self, in->republish_to, echo,
                                  (size_t)n),
                 CHAT_OK);
  }
  if (in->nested_drain) {
    const char *gw = in->nested_drain;
    in->nested_drain = NULL; /* once */
    chat_memory_hub_drain(in->hub, gw, on_deliver, in);
  }
}

static chat_err pub(const chat_bus_ops *bus, const char *gw, const char *s) {
  return bus->publish(bus->self, gw, s, strlen(s));
}

typedef struct fixture {
  chat_memory_hub *hub;
  chat_presence_ops p;
  chat_bus_ops bus;
} fixture;

static void setup(fixture *f, const chat_allocator *a) {
  cr_assert_eq(chat_memory_hub_new(&f->hub, a), CHAT_OK);
  cr_assert_eq(chat_memory_presence_ops(f->hub, &f->p), CHAT_OK);
  cr_assert_eq(chat_memory_bus_ops(f->hub, &f->bus), CHAT_OK);
}

/* ---- lifecycle ---- */

Test(memory_hub, new_free_and_ops) {
  cr_assert_eq(chat_memory_hub_new(NULL, NULL), CHAT_ERR_INVAL);
  chat_allocator partial = {0};
  chat_memory_hub *hub = (chat_memory_hub *)1;
  cr_assert_eq(chat_memory_hub_new(&hub, &partial), CHAT_ERR_INVAL);
  cr_assert_null(hub);
  chat_memory_hub_free(NULL);

  fixture f;
  setup(&f, NULL);
  cr_assert_eq(f.p.version, CHAT_PRESENCE_OPS_V1);
  cr_assert_eq(f.p.self, f.hub);
  cr_assert(f.p.device_online && f.p.device_offline && f.p.locate &&
            f.p.set_state && f.p.get_state && f.p.destroy);
  cr_assert_eq(f.bus.version, CHAT_BUS_OPS_V1);
  cr_assert_eq(f.bus.self, f.hub);
  cr_assert(f.bus.publish && f.bus.destroy);
  cr_assert_eq(chat_memory_presence_ops(NULL, &f.p), CHAT_ERR_INVAL);
  cr_assert_eq(chat_memory_presence_ops(f.hub, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(chat_memory_bus_ops(NULL, &f.bus), CHAT_ERR_INVAL);
  cr_assert_eq(chat_memory_bus_ops(f.hub, NULL), CHAT_ERR_INVAL);

  /* destroy does nothing: the hub still works after it. */
  cr_assert_eq(f.p.device_online(f.p.self, "u", "d", "gw1"), CHAT_OK);
  cr_assert_eq(pub(&f.bus, "gw1", "x"), CHAT_OK);
  f.p.destroy(f.p.self);
  f.bus.destroy(f.bus.self);
  cr_assert_eq(locate(&f.p, "u").n, 1);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 1);
  chat_memory_hub_free(f.hub);
}

Test(memory_hub, all_memory_through_the_allocator) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  fixture f;
  setup(&f, &fa.a);
  cr_assert_eq(f.p.device_online(f.p.self, "alice", "phone", "gw1"),
               CHAT_OK);
  cr_assert_eq(f.p.set_state(f.p.self, "alice", CHAT_PRESENCE_ONLINE, 5),
               CHAT_OK);
  cr_assert_eq(pub(&f.bus, "gw2", "hello"), CHAT_OK);
  cr_assert_gt(fa.live, 0);
  long count = fa.count;
  chat_memory_hub_free(f.hub);
  cr_assert_eq(fa.count, count);
  cr_assert_eq(fa.live, 0);
}

/* ---- presence ---- */

Test(memory_presence, online_offline_locate_across_gateways) {
  fixture f;
  setup(&f, NULL);
  const chat_presence_ops *p = &f.p;
  cr_assert_eq(locate(p, "alice").n, 0, "unknown user: nothing, CHAT_OK");

  cr_assert_eq(p->device_online(p->self, "alice", "phone", "gw1"), CHAT_OK);
  cr_assert_eq(p->device_online(p->self, "alice", "laptop", "gw2"), CHAT_OK);
  cr_assert_eq(p->device_online(p->self, "bob", "phone", "gw1"), CHAT_OK);
  /* Again: a set, so no duplicate. */
  cr_assert_eq(p->device_online(p->self, "alice", "phone", "gw1"), CHAT_OK);

  located l = locate(p, "alice");
  cr_assert_eq(l.n, 2);
  cr_assert(has(&l, "gw1", "phone"));
  cr_assert(has(&l, "gw2", "laptop"));
  l = locate(p, "bob");
  cr_assert_eq(l.n, 1);
  cr_assert(has(&l, "gw1", "phone"));

  /* A device reconnecting to the other gateway before its old session is
   * gone is in both places until the old one goes offline. */
  cr_assert_eq(p->device_online(p->self, "alice", "phone", "gw2"), CHAT_OK);
  l = locate(p, "alice");
  cr_assert_eq(l.n, 3);
  cr_assert(has(&l, "gw1", "phone") && has(&l, "gw2", "phone"));

  /* Offline names the exact connection. */
  cr_assert_eq(p->device_offline(p->self, "alice", "phone", "gw1"), CHAT_OK);
  l = locate(p, "alice");
  cr_assert_eq(l.n, 2);
  cr_assert(has(&l, "gw2", "phone") && has(&l, "gw2", "laptop"));
  cr_assert_not(has(&l, "gw1", "phone"));

  /* Unknown connections and users are already offline. */
  cr_assert_eq(p->device_offline(p->self, "alice", "tablet", "gw1"), CHAT_OK);
  cr_assert_eq(p->device_offline(p->self, "alice", "laptop", "gw1"), CHAT_OK);
  cr_assert_eq(p->device_offline(p->self, "carol", "x", "gw1"), CHAT_OK);
  cr_assert_eq(locate(p, "alice").n, 2);

  cr_assert_eq(p->device_offline(p->self, "alice", "phone", "gw2"), CHAT_OK);
  cr_assert_eq(p->device_offline(p->self, "alice", "laptop", "gw2"), CHAT_OK);
  cr_assert_eq(locate(p, "alice").n, 0);
  cr_assert_eq(locate(p, "bob").n, 1, "other users untouched");
  /* And back. */
  cr_assert_eq(p->device_online(p->self, "alice", "laptop", "gw1"), CHAT_OK);
  l = locate(p, "alice");
  cr_assert_eq(l.n, 1);
  cr_assert(has(&l, "gw1", "laptop"));
  chat_memory_hub_free(f.hub);
}

Test(memory_presence, ids_that_share_prefixes_stay_apart) {
  /* The connection key joins gateway and device; ("gw1", "a.b") and
   * ("gw1a", ".b")-like pairs must not alias. */
  fixture f;
  setup(&f, NULL);
  const chat_presence_ops *p = &f.p;
  cr_assert_eq(p->device_online(p->self, "u", "ab", "gw"), CHAT_OK);
  cr_assert_eq(p->device_online(p->self, "u", "b", "gwa"), CHAT_OK);
  cr_assert_eq(p->device_online(p->self, "u", "gwab", "x"), CHAT_OK);
  located l = locate(p, "u");
  cr_assert_eq(l.n, 3);
  cr_assert(has(&l, "gw", "ab") && has(&l, "gwa", "b") && has(&l, "x", "gwab"));
  cr_assert_eq(p->device_offline(p->self, "u", "b", "gwa"), CHAT_OK);
  l = locate(p, "u");
  cr_assert_eq(l.n, 2);
  cr_assert(has(&l, "gw", "ab"));
  chat_memory_hub_free(f.hub);
}

Test(memory_presence, many_devices_and_users) {
  fixture f;
  setup(&f, NULL);
  const chat_presence_ops *p = &f.p;
  char user[32], dev[32];
  for (int u = 0; u < 300; u++) {
    snprintf(user, sizeof user, "user%d", u);
    for (int d = 0; d < u % 5; d++) {
      snprintf(dev, sizeof dev, "dev%d", d);
      cr_assert_eq(p->device_online(p->self, user, dev, d % 2 ? "gw2" : "gw1"),
                   CHAT_OK);
    }
  }
  for (int u = 0; u < 300; u++) {
    snprintf(user, sizeof user, "user%d", u);
    located l = locate(p, user);
    cr_assert_eq(l.n, u % 5);
    for (int d = 0; d < u % 5; d++) {
      snprintf(dev, sizeof dev, "dev%d", d);
      cr_assert(has(&l, d % 2 ? "gw2" : "gw1", dev));
    }
  }
  chat_memory_hub_free(f.hub);
}

Test(memory_presence, state_get_and_set) {
  fixture f;
  setup(&f, NULL);
  const chat_presence_ops *p = &f.p;
  chat_presence_state st = CHAT_PRESENCE_IDLE;
  int64_t last = 42;
  cr_assert_eq(p->get_state(p->self, "alice", &st, &last, NULL),
               CHAT_ERR_NOT_FOUND);
  cr_assert_eq(st, CHAT_PRESENCE_IDLE, "untouched on NOT_FOUND");
  cr_assert_eq(last, 42);

  /* Being connected is not a state record. */
  cr_assert_eq(p->device_online(p->self, "alice", "phone", "gw1"), CHAT_OK);
  cr_assert_eq(p->get_state(p->self, "alice", &st, &last, NULL),
               CHAT_ERR_NOT_FOUND);

  cr_assert_eq(p->set_state(p->self, "alice", CHAT_PRESENCE_ONLINE,
                            1700000000000),
               CHAT_OK);
  cr_assert_eq(p->get_state(p->self, "alice", &st, &last, NULL), CHAT_OK);
  cr_assert_eq(st, CHAT_PRESENCE_ONLINE);
  cr_assert_eq(last, 1700000000000);

  cr_assert_eq(p->set_state(p->self, "alice", CHAT_PRESENCE_IDLE,
                            1700000300000),
               CHAT_OK);
  cr_assert_eq(p->get_state(p->self, "alice", &st, &last, NULL), CHAT_OK);
  cr_assert_eq(st, CHAT_PRESENCE_IDLE);
  cr_assert_eq(last, 1700000300000);

  /* The record outlives the connections, and is per user. */
  cr_assert_eq(p->device_offline(p->self, "alice", "phone", "gw1"), CHAT_OK);
  cr_assert_eq(p->set_state(p->self, "alice", CHAT_PRESENCE_OFFLINE,
                            1700000400000),
               CHAT_OK);
  cr_assert_eq(p->get_state(p->self, "alice", &st, &last, NULL), CHAT_OK);
  cr_assert_eq(st, CHAT_PRESENCE_OFFLINE);
  cr_assert_eq(last, 1700000400000);
  cr_assert_eq(p->get_state(p->self, "bob", &st, &last, NULL), CHAT_ERR_NOT_FOUND);

  /* A state set for a never-connected user, seen from the other gateway's
   * copy of the ops (the same hub). */
  chat_presence_ops p2;
  cr_assert_eq(chat_memory_presence_ops(f.hub, &p2), CHAT_OK);
  cr_assert_eq(p2.set_state(p2.self, "bob", CHAT_PRESENCE_ONLINE, -1),
               CHAT_OK);
  cr_assert_eq(p->get_state(p->self, "bob", &st, &last, NULL), CHAT_OK);
  cr_assert_eq(st, CHAT_PRESENCE_ONLINE);
  cr_assert_eq(last, -1);
  chat_memory_hub_free(f.hub);
}

typedef struct offline_all {
  const chat_presence_ops *p;
  const char *user;
  int n;
} offline_all;

static void take_offline(void *ctx, const char *gateway_id,
                         const char *device_id) {
  offline_all *o = ctx;
  o->n++;
  /* Copies: the strings belong to the entry being removed. */
  char gw[CHAT_ID_BUF], dev[CHAT_ID_BUF];
  snprintf(gw, sizeof gw, "%s", gateway_id);
  snprintf(dev, sizeof dev, "%s", device_id);
  cr_assert_eq(o->p->device_offline(o->p->self, o->user, dev, gw), CHAT_OK);
  /* Other users come and go too (the users map may grow). */
  char other[CHAT_ID_BUF + 16];
  for (int i = 0; i < 20; i++) {
    snprintf(other, sizeof other, "%s-other%d", dev, i);
    cr_assert_eq(o->p->device_online(o->p->self, other, "d", gw), CHAT_OK);
  }
}

Test(memory_presence, locate_callback_may_call_back_into_the_hub) {
  fixture f;
  setup(&f, NULL);
  const chat_presence_ops *p = &f.p;
  char dev[32];
  for (int i = 0; i < 10; i++) {
    snprintf(dev, sizeof dev, "d%d", i);
    cr_assert_eq(p->device_online(p->self, "alice", dev, "gw1"), CHAT_OK);
  }
  offline_all o = {p, "alice", 0};
  cr_assert_eq(p->locate(p->self, "alice", take_offline, &o, NULL), CHAT_OK);
  cr_assert_eq(o.n, 10);
  cr_assert_eq(locate(p, "alice").n, 0);
  cr_assert_eq(locate(p, "d3-other7").n, 1);
  cr_assert_eq(p->device_online(p->self, "alice", "d0", "gw2"), CHAT_OK);
  cr_assert_eq(locate(p, "alice").n, 1);
  chat_memory_hub_free(f.hub);
}

Test(memory_presence, invalid_arguments) {
  fixture f;
  setup(&f, NULL);
  const chat_presence_ops *p = &f.p;
  void *s = p->self;
  char too_long[66];
  memset(too_long, 'a', 65);
  too_long[65] = '\0';
  const char *bad[] = {NULL, "", "has space", "new\nline", "caf\xc3\xa9",
                       too_long};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    const char *b = bad[i];
    cr_assert_eq(p->device_online(s, b, "d", "gw1"), CHAT_ERR_INVAL, "%zu", i);
    cr_assert_eq(p->device_online(s, "u", b, "gw1"), CHAT_ERR_INVAL, "%zu", i);
    cr_assert_eq(p->device_online(s, "u", "d", b), CHAT_ERR_INVAL, "%zu", i);
    cr_assert_eq(p->device_offline(s, b, "d", "gw1"), CHAT_ERR_INVAL);
    cr_assert_eq(p->device_offline(s, "u", b, "gw1"), CHAT_ERR_INVAL);
    cr_assert_eq(p->device_offline(s, "u", "d", b), CHAT_ERR_INVAL);
    located l = {0};
    cr_assert_eq(p->locate(s, b, on_location, &l, NULL), CHAT_ERR_INVAL);
    cr_assert_eq(p->set_state(s, b, CHAT_PRESENCE_ONLINE, 0), CHAT_ERR_INVAL);
    chat_presence_state st;
    int64_t last;
    cr_assert_eq(p->get_state(s, b, &st, &last, NULL), CHAT_ERR_INVAL);
  }
  /* The longest valid id is fine. */
  too_long[64] = '\0';
  cr_assert_eq(p->device_online(s, too_long, too_long, too_long), CHAT_OK);
  located l = locate(p, too_long);
  cr_assert_eq(l.n, 1);
  cr_assert(has(&l, too_long, too_long));

  cr_assert_eq(p->locate(s, "u", NULL, NULL, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(p->locate(NULL, "u", on_location, &l, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(p->set_state(s, "u", (chat_presence_state)3, 0),
               CHAT_ERR_INVAL);
  cr_assert_eq(p->set_state(s, "u", (chat_presence_state)-1, 0),
               CHAT_ERR_INVAL);
  chat_presence_state st;
  int64_t last;
  cr_assert_eq(p->set_state(s, "u", CHAT_PRESENCE_IDLE, 0), CHAT_OK);
  cr_assert_eq(p->get_state(s, "u", NULL, &last, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(p->get_state(s, "u", &st, NULL, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(p->device_online(NULL, "u", "d", "gw1"), CHAT_ERR_INVAL);
  chat_memory_hub_free(f.hub);
}

/* ---- bus ---- */

Test(memory_bus, fifo_per_gateway) {
  fixture f;
  setup(&f, NULL);
  cr_assert_eq(pub(&f.bus, "gw1", "one"), CHAT_OK);
  cr_assert_eq(pub(&f.bus, "gw2", "A"), CHAT_OK);
  cr_assert_eq(pub(&f.bus, "gw1", "two"), CHAT_OK);
  cr_assert_eq(pub(&f.bus, "gw1", "three"), CHAT_OK);
  cr_assert_eq(pub(&f.bus, "gw2", "B"), CHAT_OK);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 3);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw2"), 2);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw3"), 0);

  inbox in = {0};
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw1", on_deliver, &in), 3);
  cr_assert_eq(in.n, 3);
  cr_assert_str_eq(in.msgs[0], "one");
  cr_assert_str_eq(in.msgs[1], "two");
  cr_assert_str_eq(in.msgs[2], "three");
  cr_assert_eq(in.lens[2], 5);
  /* Draining gw1 leaves gw2 alone. */
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 0);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw2"), 2);
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw1", on_deliver, &in), 0);
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw3", on_deliver, &in), 0);

  inbox in2 = {0};
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw2", on_deliver, &in2), 2);
  cr_assert_str_eq(in2.msgs[0], "A");
  cr_assert_str_eq(in2.msgs[1], "B");
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw2"), 0);

  /* The queue keeps working after being emptied. */
  cr_assert_eq(pub(&f.bus, "gw1", "four"), CHAT_OK);
  inbox in3 = {0};
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw1", on_deliver, &in3), 1);
  cr_assert_str_eq(in3.msgs[0], "four");
  chat_memory_hub_free(f.hub);
}

Test(memory_bus, messages_are_copied_exactly) {
  fixture f;
  setup(&f, NULL);
  char buf[] = "{\"type\":\"x\"}";
  cr_assert_eq(f.bus.publish(f.bus.self, "gw1", buf, strlen(buf)), CHAT_OK);
  memset(buf, '!', strlen(buf));
  /* Bytes, not C strings: embedded NULs and an empty message survive. */
  cr_assert_eq(f.bus.publish(f.bus.self, "gw1", "a\0b", 3), CHAT_OK);
  cr_assert_eq(f.bus.publish(f.bus.self, "gw1", "", 0), CHAT_OK);
  inbox in = {0};
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw1", on_deliver, &in), 3);
  cr_assert_str_eq(in.msgs[0], "{\"type\":\"x\"}");
  cr_assert_eq(in.lens[1], 3);
  cr_assert_eq(memcmp(in.msgs[1], "a\0b", 4), 0);
  cr_assert_eq(in.lens[2], 0);
  chat_memory_hub_free(f.hub);
}

Test(memory_bus, publishes_during_a_drain_wait_for_the_next) {
  fixture f;
  setup(&f, NULL);
  cr_assert_eq(pub(&f.bus, "gw1", "a"), CHAT_OK);
  cr_assert_eq(pub(&f.bus, "gw1", "b"), CHAT_OK);
  cr_assert_eq(pub(&f.bus, "gw2", "z"), CHAT_OK);

  /* Each delivery on gw1 publishes an echo to gw1 itself and ... */
  inbox in = {0};
  in.bus = &f.bus;
  in.republish_to = "gw1";
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw1", on_deliver, &in), 2);
  cr_assert_eq(in.n, 2);
  cr_assert_str_eq(in.msgs[0], "a");
  cr_assert_str_eq(in.msgs[1], "b");
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 2);

  /* ... the next drain gets them, in order. */
  in.republish_to = NULL;
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw1", on_deliver, &in), 2);
  cr_assert_str_eq(in.msgs[2], "re:a");
  cr_assert_str_eq(in.msgs[3], "re:b");
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 0);

  /* Publishing to another gateway from a drain: queued there. */
  inbox in2 = {0};
  in2.bus = &f.bus;
  in2.republish_to = "gw1";
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw2", on_deliver, &in2), 1);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 1);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw2"), 0);
  chat_memory_hub_free(f.hub);
}

Test(memory_bus, drain_inside_a_drain) {
  fixture f;
  setup(&f, NULL);
  for (int i = 0; i < 4; i++) {
    char m[8];
    snprintf(m, sizeof m, "m%d", i);
    cr_assert_eq(pub(&f.bus, "gw1", m), CHAT_OK);
  }
  /* The first delivery publishes "re:m0" and then drains gw1 again: the
   * inner drain takes m1..m3 and re:m0 (queued before it started), while
   * each of those echoes waits. The outer drain then finds nothing of its
   * own left. */
  inbox in = {0};
  in.bus = &f.bus;
  in.republish_to = "gw1";
  in.hub = f.hub;
  in.nested_drain = "gw1";
  size_t outer = chat_memory_hub_drain(f.hub, "gw1", on_deliver, &in);
  cr_assert_eq(outer, 1);
  cr_assert_eq(in.n, 5);
  const char *want[] = {"m0", "m1", "m2", "m3", "re:m0"};
  for (int i = 0; i < 5; i++)
    cr_assert_str_eq(in.msgs[i], want[i]);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 4);
  chat_memory_hub_free(f.hub);
}

static void count_only(void *user_data, const char *msg, size_t len) {
  size_t *n = user_data;
  char want[16];
  int wl = snprintf(want, sizeof want, "%zu", *n);
  if ((size_t)wl != len || memcmp(msg, want, len) != 0)
    cr_assert_fail("message %zu out of order: %.*s", *n, (int)len, msg);
  (*n)++;
}

Test(memory_bus, queue_cap_drops_with_again) {
  fixture f;
  setup(&f, NULL);
  char m[16];
  for (size_t i = 0; i < 65536; i++) {
    int n = snprintf(m, sizeof m, "%zu", i);
    if (f.bus.publish(f.bus.self, "gw1", m, (size_t)n) != CHAT_OK)
      cr_assert_fail("publish %zu refused", i);
  }
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 65536);
  cr_assert_eq(pub(&f.bus, "gw1", "over"), CHAT_ERR_AGAIN);
  cr_assert_eq(pub(&f.bus, "gw1", "over"), CHAT_ERR_AGAIN);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 65536);
  /* Per gateway: gw2 is not affected. */
  cr_assert_eq(pub(&f.bus, "gw2", "fine"), CHAT_OK);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw2"), 1);

  size_t seen = 0;
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw1", count_only, &seen), 65536);
  cr_assert_eq(seen, 65536, "the dropped ones never arrive");
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 0);
  cr_assert_eq(pub(&f.bus, "gw1", "0"), CHAT_OK);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 1);
  chat_memory_hub_free(f.hub);
}

Test(memory_bus, invalid_arguments) {
  fixture f;
  setup(&f, NULL);
  void *s = f.bus.self;
  cr_assert_eq(f.bus.publish(s, NULL, "x", 1), CHAT_ERR_INVAL);
  cr_assert_eq(f.bus.publish(s, "", "x", 1), CHAT_ERR_INVAL);
  cr_assert_eq(f.bus.publish(s, "gw 1", "x", 1), CHAT_ERR_INVAL);
  cr_assert_eq(f.bus.publish(s, "gw1", NULL, 0), CHAT_ERR_INVAL);
  cr_assert_eq(f.bus.publish(s, "gw1", NULL, 5), CHAT_ERR_INVAL);
  cr_assert_eq(f.bus.publish(NULL, "gw1", "x", 1), CHAT_ERR_INVAL);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 0);

  cr_assert_eq(pub(&f.bus, "gw1", "x"), CHAT_OK);
  inbox in = {0};
  cr_assert_eq(chat_memory_hub_drain(NULL, "gw1", on_deliver, &in), 0);
  cr_assert_eq(chat_memory_hub_drain(f.hub, NULL, on_deliver, &in), 0);
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw 1", on_deliver, &in), 0);
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw1", NULL, &in), 0);
  cr_assert_eq(chat_memory_hub_pending(NULL, "gw1"), 0);
  cr_assert_eq(chat_memory_hub_pending(f.hub, NULL), 0);
  cr_assert_eq(chat_memory_hub_pending(f.hub, "gw1"), 1, "nothing lost");
  cr_assert_eq(in.n, 0);
  chat_memory_hub_free(f.hub);
}

Test(memory_bus, free_with_undelivered_messages) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  fixture f;
  setup(&f, &fa.a);
  char m[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(m, sizeof m, "message %d", i);
    cr_assert_eq(pub(&f.bus, i % 3 ? "gw1" : "gw2", m), CHAT_OK);
  }
  inbox in = {0};
  cr_assert_eq(pub(&f.bus, "gw3", "y"), CHAT_OK);
  cr_assert_eq(chat_memory_hub_drain(f.hub, "gw3", on_deliver, &in), 1);
  chat_memory_hub_free(f.hub); /* ASan would report what this forgot */
  cr_assert_eq(fa.live, 0);
}

/* ---- out of memory ---- */

/* A scenario touching every allocation site; each failure must be
 * CHAT_ERR_NOMEM with nothing half-done, and the hub must stay usable. */
Test(memory_hub, every_failing_allocation) {
  bool finished = false;
  for (long fail_at = 0; !finished; fail_at++) {
    fail_alloc fa;
    fail_alloc_init(&fa, fail_at);
    chat_memory_hub *hub;
    chat_err e = chat_memory_hub_new(&hub, &fa.a);
    if (e == CHAT_ERR_NOMEM) {
      cr_assert_null(hub);
      cr_assert_eq(fa.live, 0);
      continue;
    }
    cr_assert_eq(e, CHAT_OK);
    chat_presence_ops p;
    chat_bus_ops bus;
    chat_memory_presence_ops(hub, &p);
    chat_memory_bus_ops(hub, &bus);
    int failures = 0;
    char user[16], dev[16];
    for (int i = 0; i < 12; i++) {
      snprintf(user, sizeof user, "u%d", i % 4);
      snprintf(dev, sizeof dev, "d%d", i);
      size_t before = (size_t)locate(&p, user).n;
      e = p.device_online(p.self, user, dev, i % 2 ? "gw1" : "gw2");
      if (e == CHAT_ERR_NOMEM) {
        failures++;
        cr_assert_eq((size_t)locate(&p, user).n, before);
        e = p.device_online(p.self, user, dev, i % 2 ? "gw1" : "gw2");
      }
      cr_assert_eq(e, CHAT_OK, "fail_at %ld", fail_at);
      cr_assert_eq((size_t)locate(&p, user).n, before + 1);

      snprintf(user, sizeof user, "s%d", i);
      e = p.set_state(p.self, user, CHAT_PRESENCE_ONLINE, i);
      if (e == CHAT_ERR_NOMEM) {
        failures++;
        chat_presence_state st;
        int64_t last;
        cr_assert_eq(p.get_state(p.self, user, &st, &last, NULL),
                     CHAT_ERR_NOT_FOUND);
        e = p.set_state(p.self, user, CHAT_PRESENCE_ONLINE, i);
      }
      cr_assert_eq(e, CHAT_OK);

      const char *gw = i % 3 ? "gw1" : "gw2";
      size_t pending = chat_memory_hub_pending(hub, gw);
      e = pub(&bus, gw, "payload");
      if (e == CHAT_ERR_NOMEM) {
        failures++;
        cr_assert_eq(chat_memory_hub_pending(hub, gw), pending);
        e = pub(&bus, gw, "payload");
      }
      cr_assert_eq(e, CHAT_OK);
      cr_assert_eq(chat_memory_hub_pending(hub, gw), pending + 1);
    }
    cr_assert_leq(failures, 1);
    inbox in = {0};
    cr_assert_eq(chat_memory_hub_drain(hub, "gw1", on_deliver, &in), 8);
    finished = fa.count <= fail_at;
    chat_memory_hub_free(hub);
    cr_assert_eq(fa.live, 0, "fail_at %ld leaked %ld", fail_at, fa.live);
  }
}

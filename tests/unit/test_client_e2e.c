/* The client core against the real server core, socket-free: frames and
 * REST requests are carried by hand between tests/support/client_harness
 * and tests/support/server_harness. Proves the two agree on the wire:
 * hello and resume, sends and acks (also a retry answered with
 * duplicate:true, stored once), live delivery with the automatic delivered
 * receipt, read, and a resume gap over the server's cap closed by REST
 * paging. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_harness.h"
#include "server_harness.h"

static harness hs;

typedef struct peer_link {
  ch c;
  const char *user, *device;
  dev *d;          /* the client's server session, NULL when offline */
  size_t read_at;  /* first of d's frames not yet fed to the client */
  size_t sent_at;  /* first of the client's frames not yet carried */
  bool drop_next;  /* lose the server's next frames (a dying socket) */
} peer_link;

static peer_link alice, bob;

static void setup(void) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .resume_max_messages = 3};
  harness_init(&hs, &s);
  memset(&alice, 0, sizeof alice);
  memset(&bob, 0, sizeof bob);
  alice.user = "alice", alice.device = "phone";
  bob.user = "bob", bob.device = "laptop";
  cr_assert_eq(ch_open(&alice.c, ":memory:", NULL), CHAT_OK);
  cr_assert_eq(ch_open(&bob.c, ":memory:", NULL), CHAT_OK);
}

static void teardown(void) {
  ch_close(&alice.c);
  ch_reset_log(&alice.c);
  ch_close(&bob.c);
  ch_reset_log(&bob.c);
  harness_fini(&hs);
}

TestSuite(e2e, .init = setup, .fini = teardown);

/* Strip "?query" off a request path into its own buffer. */
static void split_path(const char *full, char *path, char *query) {
  const char *q = strchr(full, '?');
  size_t n = q ? (size_t)(q - full) : strlen(full);
  memcpy(path, full, n);
  path[n] = 0;
  snprintf(query, 512, "%s", q ? q + 1 : "");
}

/* Move frames both ways and serve REST until nothing moves. */
static void pump(peer_link *l) {
  for (int round = 0; round < 100; round++) {
    bool moved = false;
    uint32_t w = chat_client_wants(l->c.c);
    if ((w & CHAT_CLIENT_WANT_CONNECT) && !l->d) {
      chat_client_on_connecting(l->c.c, l->c.now);
      l->d = dev_open(&hs, l->user, l->device);
      l->read_at = 0;
      chat_client_on_open(l->c.c, l->c.now);
      moved = true;
    }
    /* ch_advance drains too: carry whatever was written since the last
     * time (frames written while no session exists die with the socket). */
    ch_drain(&l->c);
    for (; l->sent_at < l->c.n_out; l->sent_at++) {
      if (l->d)
        dev_send(l->d, l->c.out[l->sent_at]);
      moved = true;
    }
    if (l->d && (chat_client_wants(l->c.c) & CHAT_CLIENT_WANT_CLOSE)) {
      dev_close(l->d);
      l->d = NULL;
      chat_client_on_close(l->c.c, 1000, l->c.now);
      moved = true;
    }
    chat_client_request rq = {.version = CHAT_CLIENT_REQUEST_V1};
    while (chat_client_next_request(l->c.c, &rq) == CHAT_OK) {
      char path[512], query[512];
      split_path(rq.path, path, query);
      const char *body;
      int st = harness_http(&hs, l->user, rq.method, path,
                            query[0] ? query : NULL, rq.body, &body);
      chat_client_on_response(l->c.c, rq.id, st, body, strlen(body),
                              l->c.now);
      moved = true;
    }
    harness_tick(&hs);
    while (l->d && l->read_at < l->d->n_frames) {
      const char *f = l->d->frames[l->read_at++];
      if (!l->drop_next)
        ch_feed(&l->c, f);
      moved = true;
    }
    if (!moved)
      return;
  }
  cr_assert_fail("the link never went quiet");
}

static void pump_all(void) {
  for (int i = 0; i < 3; i++) {
    pump(&alice);
    pump(&bob);
  }
}

static void advance(uint64_t ms) {
  for (uint64_t t = 0; t < ms; t += 100) {
    harness_advance(&hs, 100);
    ch_advance(&alice.c, 100);
    ch_advance(&bob.c, 100);
    pump_all();
  }
}

static void drop(peer_link *l) {
  if (l->d) {
    dev_close(l->d);
    l->d = NULL;
  }
  chat_client_on_close(l->c.c, 1006, l->c.now);
}

static void connect_both(void) {
  chat_client_start(alice.c.c, alice.c.now);
  chat_client_start(bob.c.c, bob.c.now);
  pump_all();
  cr_assert_eq(chat_client_get_state(alice.c.c), CHAT_CLIENT_READY);
  cr_assert_eq(chat_client_get_state(bob.c.c), CHAT_CLIENT_READY);
}

static char conv[80];

static void create_direct(void) {
  const char *m[] = {"bob"};
  uint32_t id;
  cr_assert_eq(chat_client_create_conversation(alice.c.c, NULL, m, 1, &id,
                                               alice.c.now), CHAT_OK);
  pump_all();
  const ch_event *e = ch_last_ev(&alice.c, "conversation");
  cr_assert_not_null(e);
  snprintf(conv, sizeof conv, "%s", e->a);
}

Test(e2e, send_deliver_receipts) {
  connect_both();
  create_direct();
  char id[CHAT_CLIENT_MSG_ID_BUF];
  cr_assert_eq(chat_client_send(alice.c.c, conv, "hi bob", 6, id,
                                alice.c.now), CHAT_OK);
  pump_all();
  advance(300);
  cr_assert_eq(ch_count_ev(&alice.c, "ack"), 1);
  cr_assert_eq(ch_count_ev(&bob.c, "message"), 1);
  /* bob's client marked it delivered; the server told alice. */
  advance(1500);
  const ch_event *r = ch_last_ev(&alice.c, "receipt");
  cr_assert_not_null(r, "delivered receipt");
  uint64_t ls;
  chat_client_last_seen(bob.c.c, conv, &ls);
  cr_assert_gt(ls, 0);
  chat_client_mark_read(bob.c.c, conv, ls, bob.c.now);
  advance(1500);
  cr_assert_geq(ch_count_ev(&alice.c, "receipt"), 2);
}

Test(e2e, retry_after_lost_ack_is_stored_once) {
  connect_both();
  create_direct();
  char id[CHAT_CLIENT_MSG_ID_BUF];
  /* The ack is lost with the socket: the server stored the message. */
  alice.drop_next = true;
  chat_client_send(alice.c.c, conv, "once", 4, id, alice.c.now);
  pump(&alice);
  advance(300);
  cr_assert_eq(ch_count_ev(&alice.c, "ack"), 0);
  cr_assert_eq(chat_client_outbox_len(alice.c.c), 1);
  alice.drop_next = false;
  drop(&alice);
  advance(2000); /* backoff, reconnect, resend with the same id */
  cr_assert_eq(chat_client_get_state(alice.c.c), CHAT_CLIENT_READY);
  const ch_event *a = ch_last_ev(&alice.c, "ack");
  cr_assert_not_null(a);
  cr_assert_str_eq(a->a, id);
  cr_assert(a->flag, "duplicate:true");
  cr_assert_eq(chat_client_outbox_len(alice.c.c), 0);
  /* Stored once. */
  char path[128];
  snprintf(path, sizeof path, "/api/v1/conversations/%s/messages", conv);
  const char *body;
  cr_assert_eq(harness_http(&hs, "bob", "GET", path, NULL, NULL, &body), 200);
  cr_assert_eq(strstr(strstr(body, "\"once\"") + 1, "\"once\""), NULL);
  cr_assert_eq(ch_count_ev(&bob.c, "message"), 1);
}

Test(e2e, gap_over_cap_paged_from_rest) {
  connect_both();
  create_direct();
  chat_client_send(alice.c.c, conv, "seen", 4, NULL, alice.c.now);
  advance(300);
  cr_assert_eq(ch_count_ev(&bob.c, "message"), 1);
  drop(&bob);
  chat_client_stop(bob.c.c, bob.c.now);
  /* Six while bob is away: over the server's resume cap of 3. */
  for (int i = 0; i < 6; i++) {
    char b[16];
    snprintf(b, sizeof b, "gap %d", i);
    chat_client_send(alice.c.c, conv, b, strlen(b), NULL, alice.c.now);
    advance(100);
  }
  cr_assert_eq(ch_count_ev(&alice.c, "ack"), 7);
  chat_client_start(bob.c.c, bob.c.now);
  advance(500);
  cr_assert_eq(ch_count_ev(&bob.c, "message"), 7);
  cr_assert_eq(ch_last_ev(&bob.c, "message")->n, CHAT_ORIGIN_REST);
  const ch_event *p = ch_last_ev(&bob.c, "progress");
  cr_assert(p->flag, "caught up");
  /* bob's last_seen is the newest message he has. */
  uint64_t ls;
  chat_client_last_seen(bob.c.c, conv, &ls);
  cr_assert_eq(ls, strtoull(ch_last_ev(&bob.c, "message")->a, NULL, 10));
}

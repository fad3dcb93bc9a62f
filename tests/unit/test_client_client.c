/* The client's connection life: reconnect backoff (full jitter, reset after
 * a stable connection, network hint), hello and the resume frame built from
 * the store, the outbox flushed in order with stable client_msg_ids across
 * reconnects and process restarts, acks (duplicate ones too), error frames
 * for sends, heartbeats, and inbound garbage. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

TestSuite(client, .init = setup, .fini = teardown);

static void msg(const char *conv, const char *id, const char *sender) {
  char f[512];
  snprintf(f, sizeof f,
           "{\"type\":\"message\",\"message_id\":\"%s\",\"conversation_id\":"
           "\"%s\",\"sender_id\":\"%s\",\"body\":\"hi %s\",\"server_ts\":"
           "1700000000001,\"client_msg_id\":\"x%s\"}",
           id, conv, sender, id, id);
  ch_feed(&h, f);
}

static void ack(const char *cmid, const char *id, bool dup) {
  char f[256];
  snprintf(f, sizeof f,
           "{\"type\":\"ack\",\"client_msg_id\":\"%s\",\"message_id\":\"%s\","
           "\"server_ts\":1700000000002%s}",
           cmid, id, dup ? ",\"duplicate\":true" : "");
  ch_feed(&h, f);
}

/* The reconnect delay after the failure that just happened. */
static chat_time_ms backoff_delay(void) {
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_BACKOFF);
  return chat_client_next_deadline(h.c) - h.now;
}

static void fail_connect(void) {
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
  cr_assert_eq(chat_client_on_connecting(h.c, h.now), CHAT_OK);
  chat_client_on_close(h.c, 0, h.now);
}

Test(client, backoff_follows_full_jitter_schedule) {
  /* A twin of the client's env: the client draws 4 bytes per delay and
   * nothing else here, so the twin predicts every delay exactly. */
  fake_env twin;
  fake_env_init(&twin, 0, 42);
  chat_client_start(h.c, h.now);
  for (uint32_t attempt = 0; attempt < 10; attempt++) {
    fail_connect();
    uint32_t want;
    cr_assert_eq(chat_backoff_next(NULL, attempt, &twin.env, &want), CHAT_OK);
    chat_time_ms got = backoff_delay();
    cr_assert_eq(got, want, "attempt %u: %llu != %u", attempt,
                 (unsigned long long)got, want);
    cr_assert_geq(got, 100, "never a tight loop");
    uint64_t ceiling = 1000ull << attempt;
    cr_assert_leq(got, ceiling > 60000 ? 60000 : ceiling);
    cr_assert_eq(chat_client_backoff_attempt(h.c), attempt + 1);
    /* Nothing happens before the deadline, then it wants to connect. */
    ch_advance(&h, got - 1);
    cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
    ch_advance(&h, 1);
    cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
  }
}

Test(client, backoff_grows_then_caps) {
  chat_client_start(h.c, h.now);
  chat_time_ms maxd = 0;
  for (int i = 0; i < 30; i++) {
    fail_connect();
    chat_time_ms d = backoff_delay();
    cr_assert_leq(d, 60000);
    if (d > maxd)
      maxd = d;
    ch_advance(&h, d);
  }
  /* With 30 full-jitter draws under a 60 s cap, some land past 30 s. */
  cr_assert_gt(maxd, 30000);
}

Test(client, stable_connection_resets_backoff) {
  chat_client_start(h.c, h.now);
  for (int i = 0; i < 5; i++) {
    fail_connect();
    ch_advance(&h, backoff_delay());
  }
  cr_assert_eq(chat_client_backoff_attempt(h.c), 5);
  /* A connection that dies after 5 s does not reset the schedule. */
  chat_client_on_connecting(h.c, h.now);
  chat_client_on_open(h.c, h.now);
  ch_hello(&h, 0);
  ch_advance(&h, 5000);
  chat_client_on_close(h.c, 1006, h.now);
  cr_assert_eq(chat_client_backoff_attempt(h.c), 6);
  ch_advance(&h, backoff_delay());
  /* One that stays up 30 s does. */
  chat_client_on_connecting(h.c, h.now);
  chat_client_on_open(h.c, h.now);
  ch_hello(&h, 0);
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  ch_advance(&h, 30000);
  cr_assert_eq(chat_client_backoff_attempt(h.c), 0);
  chat_client_on_close(h.c, 1006, h.now);
  cr_assert_leq(backoff_delay(), 1000);
}

Test(client, network_hint_reconnects_at_once) {
  chat_client_start(h.c, h.now);
  for (int i = 0; i < 8; i++) {
    fail_connect();
    if (i < 7)
      ch_advance(&h, backoff_delay());
  }
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
  chat_client_hint_network_up(h.c, h.now);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
  /* Outside BACKOFF the hint changes nothing. */
  chat_client_on_connecting(h.c, h.now);
  chat_client_hint_network_up(h.c, h.now);
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
}

Test(client, refused_token_stops_reconnecting_until_start) {
  ch_advance(&h, 1);
  chat_client_start(h.c, h.now);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
  cr_assert_eq(chat_client_on_connecting(h.c, h.now), CHAT_OK);
  cr_assert_eq(chat_client_on_refused(h.c, 401, h.now), CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  cr_assert_str_eq(chat_client_state_name(CHAT_CLIENT_UNAUTHORIZED),
                   "unauthorized");
  const ch_event *e = ch_last_ev(&h, "error");
  cr_assert_not_null(e);
  cr_assert_eq(e->n, CHAT_ERR_AUTH);
  cr_assert_not(e->flag, "not retrying by itself");
  /* Nothing is due and nothing is wanted, however long we wait, and an
   * OS network hint does not revive a refused token. */
  cr_assert_eq(chat_client_wants(h.c), 0);
  cr_assert_eq(chat_client_next_deadline(h.c), CHAT_TIME_NEVER);
  ch_advance(&h, 3600 * 1000);
  chat_client_hint_network_up(h.c, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  cr_assert_eq(chat_client_wants(h.c), 0);
  /* A refused attempt is over: a late close changes nothing. */
  cr_assert_eq(chat_client_on_close(h.c, 0, h.now), CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  cr_assert_eq(chat_client_on_refused(h.c, 401, h.now), CHAT_ERR_STATE);
  /* Sends made meanwhile wait in the outbox... */
  cr_assert_eq(chat_client_send(h.c, "c1", "queued", 6, NULL, h.now),
               CHAT_OK);
  cr_assert_eq(chat_client_outbox_len(h.c), 1);
  /* ... until the app starts again (with a new token in its transport). */
  cr_assert_eq(chat_client_start(h.c, h.now), CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_CONNECTING);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
  chat_client_on_connecting(h.c, h.now);
  chat_client_on_open(h.c, h.now);
  ch_hello(&h, 0);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "send", 0), 1);
}

Test(client, refused_token_then_stop_is_idle) {
  chat_client_start(h.c, h.now);
  chat_client_on_connecting(h.c, h.now);
  chat_client_on_refused(h.c, 401, h.now);
  cr_assert_eq(chat_client_stop(h.c, h.now), CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_IDLE);
  cr_assert_eq(chat_client_wants(h.c), 0);
}

Test(client, refused_upgrade_other_status_backs_off) {
  chat_client_start(h.c, h.now);
  chat_client_on_connecting(h.c, h.now);
  cr_assert_eq(chat_client_on_refused(h.c, 503, h.now), CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_BACKOFF);
  cr_assert_null(ch_last_ev(&h, "error"));
  ch_advance(&h, backoff_delay());
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
}

Test(client, refused_checks_arguments_and_state) {
  cr_assert_eq(chat_client_on_refused(NULL, 401, h.now), CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_on_refused(h.c, 0, h.now), CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_on_refused(h.c, 600, h.now), CHAT_ERR_INVAL);
  /* No attempt in progress: nothing changes. */
  cr_assert_eq(chat_client_on_refused(h.c, 401, h.now), CHAT_ERR_STATE);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_IDLE);
  chat_client_start(h.c, h.now);
  cr_assert_eq(chat_client_on_refused(h.c, 401, h.now), CHAT_ERR_STATE);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_CONNECTING);
  /* Stopped while the attempt was under way: IDLE, not UNAUTHORIZED. */
  chat_client_on_connecting(h.c, h.now);
  chat_client_stop(h.c, h.now);
  cr_assert_eq(chat_client_on_refused(h.c, 401, h.now), CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_IDLE);
}

Test(client, hello_timeout_closes_and_backs_off) {
  ch_open_socket(&h);
  ch_advance(&h, 9999);
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CLOSE);
  ch_advance(&h, 1);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CLOSE);
  chat_client_on_close(h.c, 1000, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_BACKOFF);
}

Test(client, states_in_order) {
  ch_connect(&h);
  int want[] = {CHAT_CLIENT_CONNECTING, CHAT_CLIENT_HANDSHAKE,
                CHAT_CLIENT_RESUMING, CHAT_CLIENT_READY};
  size_t k = 0;
  for (size_t i = 0; i < h.n_ev; i++)
    if (strcmp(h.ev[i].kind, "state") == 0) {
      cr_assert_lt(k, 4);
      cr_assert_eq(h.ev[i].n, want[k++]);
    }
  cr_assert_eq(k, 4);
  chat_client_stop(h.c, h.now);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CLOSE);
  chat_client_on_close(h.c, 1000, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_IDLE);
  cr_assert_eq(chat_client_next_deadline(h.c), CHAT_TIME_NEVER);
}

Test(client, fresh_resume_has_no_since) {
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  const char *r = ch_nth_type(&h, "resume", 0);
  cr_assert_not_null(r);
  cJSON *j = cJSON_Parse(r);
  cr_assert_not_null(j);
  cr_assert(cJSON_IsObject(cJSON_GetObjectItem(j, "last_seen")));
  cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(j, "last_seen")), 0);
  cr_assert_null(cJSON_GetObjectItem(j, "since"));
  cJSON_Delete(j);
}

Test(client, resume_lists_last_seen_from_store) {
  ch_connect(&h);
  msg("conv_a", "10", "bob");
  msg("conv_a", "12", "bob");
  msg("conv_b", "7", "carol");
  chat_client_on_close(h.c, 1006, h.now);
  ch_reset_log(&h);
  ch_advance(&h, 60000);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "resume", 0), 1);
  cJSON *j = cJSON_Parse(ch_nth_type(&h, "resume", 0));
  cJSON *ls = cJSON_GetObjectItem(j, "last_seen");
  cr_assert_eq(cJSON_GetArraySize(ls), 2);
  cr_assert_str_eq(cJSON_GetObjectItem(ls, "conv_a")->valuestring, "12");
  cr_assert_str_eq(cJSON_GetObjectItem(ls, "conv_b")->valuestring, "7");
  cr_assert_str_eq(cJSON_GetObjectItem(j, "since")->valuestring, "12");
  cJSON_Delete(j);
}

Test(client, resume_after_history_uses_newest) {
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_feed(&h, "{\"type\":\"history\",\"conversation_id\":\"c1\",\"messages\":["
              "{\"message_id\":\"5\",\"conversation_id\":\"c1\",\"sender_id\":"
              "\"bob\",\"body\":\"a\",\"server_ts\":1,\"client_msg_id\":\"q\"},"
              "{\"message_id\":\"9\",\"conversation_id\":\"c1\",\"sender_id\":"
              "\"bob\",\"body\":\"b\",\"server_ts\":2,\"client_msg_id\":\"r\"}"
              "],\"complete\":true}");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":1,\"messages\":2}");
  cr_assert_eq(ch_count_ev(&h, "message"), 2);
  cr_assert_eq(ch_last_ev(&h, "message")->n, CHAT_ORIGIN_RESUME);
  cr_assert(ch_last_ev(&h, "progress")->flag, "complete");
  uint64_t ls;
  chat_client_last_seen(h.c, "c1", &ls);
  cr_assert_eq(ls, 9);
  /* The same history again (a second resume) reports nothing new. */
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_feed(&h, "{\"type\":\"history\",\"conversation_id\":\"c1\",\"messages\":["
              "{\"message_id\":\"9\",\"conversation_id\":\"c1\",\"sender_id\":"
              "\"bob\",\"body\":\"b\",\"server_ts\":2,\"client_msg_id\":\"r\"}"
              "],\"complete\":true}");
  cr_assert_eq(ch_count_ev(&h, "message"), 2);
}

Test(client, resume_lists_at_most_4096_most_recent) {
  ch_connect(&h);
  char conv[32], id[32];
  for (int i = 1; i <= 4100; i++) {
    snprintf(conv, sizeof conv, "k%d", i);
    snprintf(id, sizeof id, "%d", i);
    msg(conv, id, "bob");
  }
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_reset_log(&h);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  cJSON *j = cJSON_Parse(ch_nth_type(&h, "resume", 0));
  cJSON *ls = cJSON_GetObjectItem(j, "last_seen");
  cr_assert_eq(cJSON_GetArraySize(ls), 4096);
  cr_assert_not_null(cJSON_GetObjectItem(ls, "k4100"));
  cr_assert_not_null(cJSON_GetObjectItem(ls, "k5"));
  cr_assert_null(cJSON_GetObjectItem(ls, "k4"));
  /* since covers the conversations left out (k1..k4). */
  cr_assert_str_eq(cJSON_GetObjectItem(j, "since")->valuestring, "1");
  cJSON_Delete(j);
}

Test(client, resume_fits_the_frame_limit) {
  ch_connect(&h);
  char conv[80], id[32];
  for (int i = 1; i <= 3000; i++) {
    /* 64-byte ids: 3000 of them pass 128 KiB. */
    snprintf(conv, sizeof conv, "%060d%04d", 0, i);
    snprintf(id, sizeof id, "%d", i);
    msg(conv, id, "bob");
  }
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_reset_log(&h);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  const char *r = ch_nth_type(&h, "resume", 0);
  cr_assert_not_null(r);
  cr_assert_leq(strlen(r), 131072);
  cJSON *j = cJSON_Parse(r);
  cJSON *ls = cJSON_GetObjectItem(j, "last_seen");
  cr_assert_gt(cJSON_GetArraySize(ls), 500);
  snprintf(conv, sizeof conv, "%060d%04d", 0, 3000);
  cr_assert_not_null(cJSON_GetObjectItem(ls, conv), "the newest is kept");
  cJSON_Delete(j);
}

Test(client, outbox_flushes_in_order_with_same_ids) {
  char id[3][CHAT_CLIENT_MSG_ID_BUF];
  for (int i = 0; i < 3; i++) {
    char body[16];
    snprintf(body, sizeof body, "m%d", i);
    cr_assert_eq(chat_client_send(h.c, "conv_a", body, strlen(body), id[i],
                                  h.now), CHAT_OK);
  }
  cr_assert_eq(chat_client_outbox_len(h.c), 3);
  cr_assert_eq(ch_drain(&h), 0, "nothing is written while offline");
  for (int round = 0; round < 2; round++) {
    ch_open_socket(&h);
    ch_hello(&h, 0);
    ch_drain(&h);
    /* resume first, then the three sends in order, same ids each time. */
    size_t base = h.n_out - 3;
    cr_assert_eq(ch_count_type(&h, "resume", 0), (size_t)round + 1);
    cr_assert_eq(ch_count_type(&h, "send", base), 3);
    for (int i = 0; i < 3; i++) {
      cJSON *j = cJSON_Parse(h.out[base + (size_t)i]);
      cr_assert_str_eq(cJSON_GetObjectItem(j, "client_msg_id")->valuestring,
                       id[i]);
      char body[16];
      snprintf(body, sizeof body, "m%d", i);
      cr_assert_str_eq(cJSON_GetObjectItem(j, "body")->valuestring, body);
      cJSON_Delete(j);
    }
    cr_assert_eq(strstr(h.out[base - 1], "\"resume\"") != NULL, true);
    chat_client_on_close(h.c, 1006, h.now);
    ch_advance(&h, 60000);
  }
  /* An ack removes its entry; the rest go out again. */
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  ack(id[1], "100", false);
  cr_assert_eq(chat_client_outbox_len(h.c), 2);
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  size_t before = h.n_out;
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "send", before), 2);
  cr_assert(strstr(h.out[h.n_out - 2], id[0]));
  cr_assert(strstr(h.out[h.n_out - 1], id[2]));
}

Test(client, send_while_ready_goes_out_at_once) {
  ch_connect(&h);
  char id[CHAT_CLIENT_MSG_ID_BUF];
  cr_assert_eq(chat_client_send(h.c, "conv_a", "hey", 3, id, h.now), CHAT_OK);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_WRITE);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "send", 0), 1);
  cr_assert(strstr(ch_nth_type(&h, "send", 0), id));
  cr_assert(chat_id_valid(id, strlen(id)));
}

Test(client, send_validates_input) {
  char id[CHAT_CLIENT_MSG_ID_BUF];
  cr_assert_eq(chat_client_send(h.c, "bad conv", "x", 1, id, 0),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_send(h.c, "c", "\xff", 1, id, 0), CHAT_ERR_INVAL);
  char *big = calloc(1, 65537);
  memset(big, 'a', 65536 + 1);
  cr_assert_eq(chat_client_send(h.c, "c", big, 65537, id, 0),
               CHAT_ERR_TOO_LARGE);
  free(big);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
}

Test(client, duplicate_ack_is_idempotent) {
  ch_connect(&h);
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "conv_a", "hey", 3, id, h.now);
  ch_drain(&h);
  ack(id, "500", false);
  cr_assert_eq(ch_count_ev(&h, "ack"), 1);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  /* The retry's answer arrives too: nothing changes, nothing fails. */
  ack(id, "500", true);
  ack(id, "500", true);
  cr_assert_eq(ch_count_ev(&h, "ack"), 1);
  cr_assert_eq(ch_count_ev(&h, "error"), 0);
}

Test(client, duplicate_ack_for_pending_send_counts_once) {
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "conv_a", "hey", 3, id, h.now);
  ch_connect(&h);
  ack(id, "77", true); /* the first try was stored before a disconnect */
  cr_assert_eq(ch_count_ev(&h, "ack"), 1);
  cr_assert(ch_last_ev(&h, "ack")->flag);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  size_t before = h.n_out;
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "send", before), 0);
}

static void count_msg(const chat_client_message *m, void *ud) {
  int *n = ud;
  if (m->own && !m->pending && m->message->message_id == 77 &&
      m->message->body.len == 3)
    (*n)++;
}

Test(client, acked_send_is_stored_as_own) {
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "conv_a", "hey", 3, id, h.now);
  ch_connect(&h);
  ack(id, "77", false);
  int n = 0;
  cr_assert_eq(chat_client_list_messages(h.c, "conv_a", 0, 10, count_msg, &n),
               CHAT_OK);
  cr_assert_eq(n, 1);
  /* An ack never raises last_seen: other members' earlier messages may
   * still be on their way. */
  uint64_t ls = 1;
  chat_client_last_seen(h.c, "conv_a", &ls);
  cr_assert_eq(ls, 0);
}

Test(client, rate_limited_send_is_retried_later) {
  ch_connect(&h);
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "conv_a", "hey", 3, id, h.now);
  ch_drain(&h);
  char f[256];
  snprintf(f, sizeof f,
           "{\"type\":\"error\",\"code\":\"rate_limited\",\"message\":\"slow\","
           "\"ref\":\"%s\",\"retry_after_ms\":1500}", id);
  ch_feed(&h, f);
  const ch_event *e = ch_last_ev(&h, "error");
  cr_assert_not_null(e);
  cr_assert_str_eq(e->a, id);
  cr_assert_str_eq(e->b, "rate_limited");
  cr_assert(e->flag, "retrying");
  ch_advance(&h, 1499);
  cr_assert_eq(ch_count_type(&h, "send", 0), 1);
  ch_advance(&h, 1);
  cr_assert_eq(ch_count_type(&h, "send", 0), 2);
  cr_assert(strstr(ch_nth_type(&h, "send", 1), id));
}

Test(client, refused_send_leaves_outbox) {
  ch_connect(&h);
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "conv_a", "hey", 3, id, h.now);
  ch_drain(&h);
  char f[256];
  snprintf(f, sizeof f,
           "{\"type\":\"error\",\"code\":\"not_member\",\"message\":\"no\","
           "\"ref\":\"%s\"}", id);
  ch_feed(&h, f);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  cr_assert_not(ch_last_ev(&h, "error")->flag);
  ch_advance(&h, 60000);
  cr_assert_eq(ch_count_type(&h, "send", 0), 1);
}

Test(client, heartbeat_pings_and_detects_silence) {
  ch_open_socket(&h);
  ch_hello(&h, 1000);
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  ch_drain(&h);
  ch_advance(&h, 1000);
  cr_assert_eq(ch_count_type(&h, "ping", 0), 1);
  ch_feed(&h, "{\"type\":\"pong\"}");
  ch_advance(&h, 1000);
  cr_assert_eq(ch_count_type(&h, "ping", 0), 2);
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CLOSE);
  ch_advance(&h, 1000); /* 2 s since the pong: dead */
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CLOSE);
}

Test(client, malformed_frames_are_reported_not_fatal) {
  const char *bad[] = {
      "", "not json", "[1,2]", "{}", "{\"type\":7}",
      "{\"type\":\"send\",\"client_msg_id\":\"a\",\"conversation_id\":\"c\","
      "\"body\":\"x\"}",
      "{\"type\":\"nope\"}",
      "{\"type\":\"ack\",\"client_msg_id\":\"a\"}",
      "{\"type\":\"message\",\"message_id\":\"01\",\"conversation_id\":\"c\","
      "\"sender_id\":\"b\",\"body\":\"x\",\"server_ts\":1}",
      "{\"type\":\"history\",\"conversation_id\":\"c\",\"messages\":{},"
      "\"complete\":true}",
      "{\"type\":\"typing\",\"conversation_id\":\"c\",\"is_typing\":1}",
      "{\"type\":\"pong\",\"nonce\":\"\xc3\x28\"}",
      "{\"type\":\"hello\"}",
  };
  size_t n = sizeof bad / sizeof bad[0];
  /* Before hello: everything but a valid hello is refused. */
  ch_open_socket(&h);
  for (size_t i = 0; i < n; i++)
    ch_feed(&h, bad[i]);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_HANDSHAKE);
  cr_assert_eq(ch_count_ev(&h, "error"), n);
  ch_hello(&h, 0);
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  size_t before = ch_count_ev(&h, "error");
  for (size_t i = 0; i < n; i++)
    ch_feed(&h, bad[i]);
  cr_assert_eq(ch_count_ev(&h, "error") - before, n);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_READY);
  cr_assert_eq(ch_count_ev(&h, "message"), 0);
  /* Over the frame limit. */
  size_t big = (1u << 20) + 10;
  char *f = malloc(big);
  memset(f, ' ', big);
  f[0] = '{';
  f[big - 1] = '}';
  cr_assert_eq(chat_client_on_frame(h.c, f, big, h.now), CHAT_OK);
  free(f);
  cr_assert_eq(ch_last_ev(&h, "error")->n, CHAT_ERR_FRAME_TOO_LARGE);
  /* And the client still works. */
  msg("c", "5", "bob");
  cr_assert_eq(ch_count_ev(&h, "message"), 1);
}

Test(client, frames_without_socket_are_refused) {
  cr_assert_eq(chat_client_on_frame(h.c, "{}", 2, 0), CHAT_ERR_STATE);
  cr_assert_eq(chat_client_on_frame(NULL, "{}", 2, 0), CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_on_frame(h.c, NULL, 2, 0), CHAT_ERR_INVAL);
}

Test(client, live_messages_dedup_and_raise_last_seen) {
  ch_connect(&h);
  msg("c", "5", "bob");
  msg("c", "5", "bob");
  msg("c", "8", "bob");
  cr_assert_eq(ch_count_ev(&h, "message"), 2);
  uint64_t ls;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 8);
}

Test(client, live_message_during_resume_keeps_last_seen) {
  ch_open_socket(&h);
  ch_hello(&h, 0);
  msg("c", "50", "bob"); /* before the history of c has arrived */
  uint64_t ls = 1;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 0);
  cr_assert_eq(ch_count_ev(&h, "message"), 1);
}

Test(client, new_checks_arguments) {
  chat_client *c;
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1};
  chat_client_store *st;
  cr_assert_eq(chat_sqlite_client_store_open(&st, ":memory:", NULL), CHAT_OK);
  /* No env.random. */
  cr_assert_eq(chat_client_new(&c, &s, NULL, NULL, st, NULL), CHAT_ERR_INVAL);
  cr_assert_null(c);
  s.env = h.fe.env;
  s.version = 99;
  cr_assert_eq(chat_client_new(&c, &s, NULL, NULL, st, NULL), CHAT_ERR_INVAL);
  s.version = CHAT_CLIENT_SETTINGS_V1;
  cr_assert_eq(chat_client_new(&c, &s, NULL, NULL, NULL, NULL),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_new(&c, &s, NULL, NULL, st, NULL), CHAT_OK);
  chat_client_free(c); /* frees st too */
  chat_client_free(NULL);
  chat_client_store_free(NULL);
}

Test(client, store_failure_refuses_and_loses_nothing) {
  ch_connect(&h);
  msg("c", "5", "bob");
  ch_store_fail(&h, true);
  char id[CHAT_CLIENT_MSG_ID_BUF];
  size_t before = h.n_out;
  cr_assert_eq(chat_client_send(h.c, "c", "x", 1, id, h.now),
               CHAT_ERR_MODULE);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  cr_assert_eq(chat_client_mark_read(h.c, "c", 5, h.now), CHAT_ERR_MODULE);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "send", before), 0);
  cr_assert_eq(ch_count_type(&h, "read", before), 0);
  /* An inbound message is still shown, reported, and not counted as seen,
   * so the next resume asks for it again. */
  msg("c", "6", "bob");
  cr_assert_eq(ch_count_ev(&h, "message"), 2);
  cr_assert_eq(ch_last_ev(&h, "error")->n, CHAT_ERR_MODULE);
  ch_store_fail(&h, false);
  uint64_t ls;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 5);
  /* Working again: the same calls succeed. */
  cr_assert_eq(chat_client_send(h.c, "c", "x", 1, id, h.now), CHAT_OK);
  cr_assert_eq(chat_client_mark_read(h.c, "c", 5, h.now), CHAT_OK);
  ch_advance(&h, 1000); /* the delivered mark of 5 used this second */
  cr_assert_eq(ch_count_type(&h, "send", before), 1);
  cr_assert_eq(ch_count_type(&h, "read", before), 1);
}

Test(client, ack_with_failing_store_keeps_outbox_durable) {
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "c", "x", 1, id, h.now);
  ch_connect(&h);
  ch_store_fail(&h, true);
  ack(id, "9", false);
  ch_store_fail(&h, false);
  /* Acked in memory, reported, but still in the stored outbox: a restart
   * sends it again and the server answers duplicate:true. */
  cr_assert_eq(ch_count_ev(&h, "ack"), 1);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  cr_assert_geq(ch_count_ev(&h, "error"), 1);
}

/* ------------------------------------------------------------------------
 * Restart survival on a file store */

static char dir[64];
static char path[128];

static void file_setup(void) {
  memset(&h, 0, sizeof h);
  snprintf(dir, sizeof dir, "/tmp/chat-client-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/client.db", dir);
  cr_assert_eq(ch_open(&h, path, NULL), CHAT_OK);
}

static void file_teardown(void) {
  ch_close(&h);
  ch_reset_log(&h);
  char p[160];
  const char *sfx[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s%s", path, sfx[i]);
    unlink(p);
  }
  rmdir(dir);
}

TestSuite(client_file, .init = file_setup, .fini = file_teardown);

Test(client_file, outbox_survives_restart) {
  char id[2][CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "conv_a", "first", 5, id[0], h.now);
  chat_client_send(h.c, "conv_b", "second", 6, id[1], h.now);
  ch_connect(&h); /* sent once, never acked */
  cr_assert_eq(ch_count_type(&h, "send", 0), 2);
  ch_close(&h);   /* the process dies */
  ch_reset_log(&h);
  cr_assert_eq(ch_open(&h, path, NULL), CHAT_OK);
  cr_assert_eq(chat_client_outbox_len(h.c), 2);
  ch_connect(&h);
  cr_assert_eq(ch_count_type(&h, "send", 0), 2);
  cr_assert(strstr(ch_nth_type(&h, "send", 0), id[0]));
  cr_assert(strstr(ch_nth_type(&h, "send", 1), id[1]));
  /* An ack, then another restart: only the unacked one is left. */
  ack(id[0], "900", false);
  ch_close(&h);
  ch_reset_log(&h);
  cr_assert_eq(ch_open(&h, path, NULL), CHAT_OK);
  cr_assert_eq(chat_client_outbox_len(h.c), 1);
  ch_connect(&h);
  cr_assert_eq(ch_count_type(&h, "send", 0), 1);
  cr_assert(strstr(ch_nth_type(&h, "send", 0), id[1]));
}

Test(client_file, last_seen_survives_restart) {
  ch_connect(&h);
  msg("conv_a", "41", "bob");
  ch_close(&h);
  ch_reset_log(&h);
  cr_assert_eq(ch_open(&h, path, NULL), CHAT_OK);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  cr_assert(strstr(ch_nth_type(&h, "resume", 0), "\"conv_a\":\"41\""));
}

Test(client_file, unreadable_store_is_a_module_error) {
  ch_close(&h);
  /* A directory is not a database. */
  chat_client_store *st;
  cr_assert_eq(chat_sqlite_client_store_open(&st, dir, NULL),
               CHAT_ERR_MODULE);
  cr_assert_null(st);
  cr_assert_eq(ch_open(&h, path, NULL), CHAT_OK);
}

/* The connection state machine (lib/client/conn.c): reconnect backoff
 * (full jitter, reset after a stable connection, network hint), a token
 * refused on the upgrade, the hello timeout, the states in order, and
 * heartbeats. */
#include <cjson/cJSON.h>
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

TestSuite(conn, .init = setup, .fini = teardown);

static chat_time_ms backoff_delay(void) {
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_BACKOFF);
  return chat_client_next_deadline(h.c) - h.now;
}

static void fail_connect(void) {
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
  cr_assert_eq(chat_client_on_connecting(h.c, h.now), CHAT_OK);
  chat_client_on_close(h.c, 0, h.now);
}

Test(conn, backoff_follows_full_jitter_schedule) {
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

Test(conn, backoff_grows_then_caps) {
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

Test(conn, stable_connection_resets_backoff) {
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

Test(conn, network_hint_reconnects_at_once) {
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

Test(conn, refused_token_stops_reconnecting_until_start) {
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

Test(conn, refused_token_then_stop_is_idle) {
  chat_client_start(h.c, h.now);
  chat_client_on_connecting(h.c, h.now);
  chat_client_on_refused(h.c, 401, h.now);
  cr_assert_eq(chat_client_stop(h.c, h.now), CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_IDLE);
  cr_assert_eq(chat_client_wants(h.c), 0);
}

Test(conn, refused_upgrade_other_status_backs_off) {
  chat_client_start(h.c, h.now);
  chat_client_on_connecting(h.c, h.now);
  cr_assert_eq(chat_client_on_refused(h.c, 503, h.now), CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_BACKOFF);
  cr_assert_null(ch_last_ev(&h, "error"));
  ch_advance(&h, backoff_delay());
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
}

Test(conn, refused_checks_arguments_and_state) {
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

Test(conn, hello_timeout_closes_and_backs_off) {
  ch_open_socket(&h);
  ch_advance(&h, 9999);
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CLOSE);
  ch_advance(&h, 1);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CLOSE);
  chat_client_on_close(h.c, 1000, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_BACKOFF);
}

Test(conn, states_in_order) {
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

Test(conn, heartbeat_pings_and_detects_silence) {
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

/* ------------------------------------------------------------------------
 * The token (PROTOCOL.md section 8, API-1.0.md R9): held by the client,
 * refused (401) or expired (4001) tokens stop reconnects until the app
 * gives a new one, which reconnects and resumes with outbox and marks
 * intact. */

static void set_token(const char *t) {
  cr_assert_eq(chat_client_set_token(h.c, t, strlen(t), h.now), CHAT_OK,
               "%s", chat_client_errmsg(h.c));
}

static const char *token_now(void) {
  const char *t;
  size_t n;
  cr_assert_eq(chat_client_token(h.c, &t, &n), CHAT_OK);
  cr_assert_eq(strlen(t), n);
  return t;
}

Test(conn, token_is_copied_and_checked) {
  const char *t;
  size_t n = 7;
  cr_assert_eq(chat_client_token(h.c, &t, &n), CHAT_ERR_NOT_FOUND);
  cr_assert_null(t);
  cr_assert_eq(n, 0);
  cr_assert_eq(chat_client_token(h.c, NULL, &n), CHAT_ERR_INVAL);
  char buf[] = "abc.DEF-123_~+/=";
  cr_assert_eq(chat_client_set_token(h.c, buf, 3, h.now), CHAT_OK);
  buf[0] = 'X';
  cr_assert_str_eq(token_now(), "abc", "copied, NUL-terminated");
  set_token(buf);
  cr_assert_str_eq(token_now(), buf);
  const char *bad[] = {"has space", "new\nline", "tab\t", "\x7f", "\xc3\xa9"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_eq(chat_client_set_token(h.c, bad[i], strlen(bad[i]), h.now),
                 CHAT_ERR_INVAL, "%s", bad[i]);
    cr_assert(strstr(chat_client_errmsg(h.c), "token"));
  }
  cr_assert_eq(chat_client_set_token(h.c, "x", 0, h.now), CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_set_token(h.c, NULL, 3, h.now), CHAT_ERR_INVAL);
  char *big = malloc(CHAT_CLIENT_TOKEN_MAX + 1);
  memset(big, 'a', CHAT_CLIENT_TOKEN_MAX + 1);
  cr_assert_eq(chat_client_set_token(h.c, big, CHAT_CLIENT_TOKEN_MAX + 1,
                                     h.now), CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_set_token(h.c, big, CHAT_CLIENT_TOKEN_MAX, h.now),
               CHAT_OK);
  free(big);
  cr_assert_str_eq(chat_client_state_name(chat_client_get_state(h.c)),
                   "idle", "setting a token connects nothing by itself");
}

/* Connected, a send waiting in the outbox and a read mark not yet sent,
 * then the server closes with 4001. */
static char pending_id[CHAT_CLIENT_MSG_ID_BUF];

static void expire_with_work_pending(void) {
  set_token("t1");
  ch_connect(&h);
  /* Queued while connected but never written: the socket dies first. */
  cr_assert_eq(chat_client_send(h.c, "c", "kept", 4, pending_id, h.now),
               CHAT_OK);
  cr_assert_eq(chat_client_mark_read(h.c, "c", 9, h.now), CHAT_OK);
  ch_reset_log(&h);
  chat_client_on_close(h.c, 4001, h.now);
}

Test(conn, expired_token_waits_for_a_new_one) {
  expire_with_work_pending();
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  cr_assert_eq(ch_count_ev(&h, "auth"), 1);
  cr_assert_eq(ch_last_ev(&h, "auth")->n, CHAT_AUTH_EXPIRED);
  const ch_event *e = ch_last_ev(&h, "error");
  cr_assert_eq(e->n, CHAT_ERR_AUTH);
  cr_assert_eq(e->http, 0);
  /* No reconnect with the old token, however long. */
  cr_assert_eq(chat_client_wants(h.c), 0);
  cr_assert_eq(chat_client_next_deadline(h.c), CHAT_TIME_NEVER);
  ch_advance(&h, 3600 * 1000);
  chat_client_hint_network_up(h.c, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  cr_assert_eq(ch_count_ev(&h, "auth"), 1, "told once");
  /* The same token again is refused; a new one reconnects at once. */
  cr_assert_eq(chat_client_set_token(h.c, "t1", 2, h.now), CHAT_ERR_INVAL);
  cr_assert(strstr(chat_client_errmsg(h.c), "refused"));
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  set_token("t2");
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_CONNECTING);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
  cr_assert_str_eq(token_now(), "t2");
  /* And resumes: resume first, then the outbox and the mark. */
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "resume", 0), 1);
  cr_assert_eq(ch_count_type(&h, "send", 0), 1);
  cr_assert(strstr(ch_nth_type(&h, "send", 0), pending_id));
  cr_assert_eq(ch_count_with(&h, "read", "\"up_to_message_id\":\"9\"", 0), 1);
  cr_assert_eq(chat_client_outbox_len(h.c), 1);
}

Test(conn, refused_upgrade_asks_for_a_token) {
  set_token("old");
  chat_client_start(h.c, h.now);
  chat_client_on_connecting(h.c, h.now);
  cr_assert_eq(chat_client_on_refused(h.c, 401, h.now), CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  cr_assert_eq(ch_last_ev(&h, "auth")->n, CHAT_AUTH_REFUSED);
  cr_assert_eq(ch_last_ev(&h, "error")->http, 401);
  set_token("new");
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_CONNECTING);
  cr_assert_eq(ch_count_ev(&h, "auth"), 1);
}

/* A token handed over from inside on_auth_required itself. */
Test(conn, token_from_inside_the_callback) {
  set_token("old");
  h.token_on_auth = "fresh";
  ch_connect(&h);
  chat_client_on_close(h.c, 4001, h.now);
  cr_assert_eq(ch_count_ev(&h, "auth"), 1);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_CONNECTING);
  cr_assert_str_eq(token_now(), "fresh");
  ch_open_socket(&h);
  ch_hello(&h, 0);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_RESUMING);
}

/* A connection opened with a token the app has replaced since: its 4001
 * or 401 is about the old token, so the client just reconnects with the
 * new one, at once and without bothering the app. */
Test(conn, stale_token_refusal_just_reconnects) {
  set_token("t1");
  ch_connect(&h);
  set_token("t2"); /* proactive refresh; the session keeps t1 */
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_READY);
  chat_client_on_close(h.c, 4001, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_CONNECTING);
  cr_assert_eq(ch_count_ev(&h, "auth"), 0);
  cr_assert_eq(chat_client_on_connecting(h.c, h.now), CHAT_OK);
  set_token("t3");
  cr_assert_eq(chat_client_on_refused(h.c, 401, h.now), CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_CONNECTING);
  cr_assert_eq(ch_count_ev(&h, "auth"), 0);
  /* With the current token, the same refusal is the app's business. */
  chat_client_on_connecting(h.c, h.now);
  chat_client_on_refused(h.c, 401, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  cr_assert_eq(ch_count_ev(&h, "auth"), 1);
}

Test(conn, other_close_codes_back_off_as_before) {
  set_token("t1");
  ch_connect(&h);
  chat_client_on_close(h.c, 4000, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_BACKOFF);
  cr_assert_eq(ch_count_ev(&h, "auth"), 0);
}

Test(conn, stopped_while_unauthorized_then_token) {
  set_token("t1");
  ch_connect(&h);
  chat_client_on_close(h.c, 4001, h.now);
  chat_client_stop(h.c, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_IDLE);
  set_token("t2");
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_IDLE,
               "stopped stays stopped");
  chat_client_start(h.c, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_CONNECTING);
}

/* Section 8: `goaway` before a deliberate close makes the client wait a
 * uniformly random delay in [0, retry_after_ms] instead of its backoff,
 * without growing the attempt counter. */
Test(conn, goaway_spreads_the_reconnect) {
  chat_time_ms lo = CHAT_TIME_NEVER, hi = 0;
  for (int i = 0; i < 40; i++) {
    ch_connect(&h);
    ch_feed(&h, "{\"type\":\"goaway\",\"reason\":\"drain\","
                "\"retry_after_ms\":30000}");
    cr_assert_eq(ch_count_ev(&h, "error"), 0, "not an error");
    chat_client_on_close(h.c, 1012, h.now);
    cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_BACKOFF);
    cr_assert_eq(chat_client_backoff_attempt(h.c), 0);
    chat_time_ms d = chat_client_next_deadline(h.c) - h.now;
    cr_assert_leq(d, 30000);
    if (d < lo)
      lo = d;
    if (d > hi)
      hi = d;
    ch_advance(&h, d);
    cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
    ch_reset_log(&h);
  }
  cr_assert_lt(lo, 10000, "spread low");
  cr_assert_gt(hi, 20000, "spread high");
  /* Only the close after a goaway: the next one backs off as usual. */
  ch_connect(&h);
  chat_client_on_close(h.c, 1006, h.now);
  cr_assert_eq(chat_client_backoff_attempt(h.c), 1);
  /* retry_after_ms 0: back at once. */
  ch_advance(&h, 60000);
  ch_connect(&h);
  ch_feed(&h, "{\"type\":\"goaway\",\"reason\":\"overload\","
              "\"retry_after_ms\":0}");
  chat_client_on_close(h.c, 1013, h.now);
  cr_assert_eq(chat_client_next_deadline(h.c), h.now);
}

/* Section 8, in detail: the wait after a goaway is one uniform draw in
 * [0, retry_after_ms] from the env's randomness (a twin env predicts it
 * exactly), nothing connects a millisecond before it, sends made meanwhile
 * wait in the outbox and go out after the reconnect, an unknown reason is
 * handled the same, and a reconnect that then fails backs off from the
 * first step. The draws spread evenly over the window. */
Test(conn, goaway_waits_one_uniform_draw_then_backs_off_afresh) {
  fake_env twin;
  fake_env_init(&twin, 0, 42);
  int buckets[10] = {0};
  const int rounds = 400;
  for (int i = 0; i < rounds; i++) {
    ch_connect(&h);
    ch_feed(&h, i % 2 ? "{\"type\":\"goaway\",\"reason\":\"drain\","
                        "\"retry_after_ms\":10000}"
                      : "{\"type\":\"goaway\",\"reason\":\"upgrade\","
                        "\"retry_after_ms\":10000}");
    char id[CHAT_CLIENT_MSG_ID_BUF];
    /* The client_msg_id draws 12 bytes: the twin draws them too. */
    cr_assert_eq(chat_client_send(h.c, "c", "after goaway", 12, id, h.now),
                 CHAT_OK);
    uint8_t skip[12];
    twin.env.random(twin.env.user_data, skip, sizeof skip);
    chat_client_on_close(h.c, 1012, h.now);
    uint8_t b[8];
    twin.env.random(twin.env.user_data, b, sizeof b);
    uint64_t r = 0;
    for (int k = 0; k < 8; k++)
      r |= (uint64_t)b[k] << (8 * k);
    chat_time_ms want = r % 10001;
    chat_time_ms d = chat_client_next_deadline(h.c) - h.now;
    cr_assert_eq(d, want, "round %d: the draw", i);
    buckets[d * 10 / 10001]++;
    if (d > 0) {
      ch_advance(&h, d - 1);
      cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT,
                    "not before the drawn delay");
    }
    ch_advance(&h, d > 0 ? 1 : 0);
    cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
    size_t from = h.n_out;
    ch_connect(&h);
    cr_assert_eq(ch_count_with(&h, "send", id, from), 1,
                 "the send waited for the reconnect");
    ch_ack(&h, id, "1", false);
    chat_client_on_close(h.c, 1006, h.now);
    /* A plain close afterwards: the normal backoff (the twin keeps step:
     * it draws 4 bytes for each backoff delay). */
    uint8_t bo[4];
    twin.env.random(twin.env.user_data, bo, sizeof bo);
    ch_advance(&h, 60000);
    ch_reset_log(&h);
  }
  for (int k = 0; k < 10; k++)
    cr_assert(buckets[k] >= rounds / 10 / 2 && buckets[k] <= rounds / 10 * 2,
              "bucket %d holds %d of %d draws", k, buckets[k], rounds);
  /* After the goaway wait, a failed attempt backs off from step 0. */
  ch_connect(&h);
  ch_feed(&h, "{\"type\":\"goaway\",\"reason\":\"overload\","
              "\"retry_after_ms\":500}");
  chat_client_on_close(h.c, 1013, h.now);
  ch_advance(&h, 500);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
  fail_connect();
  cr_assert_eq(chat_client_backoff_attempt(h.c), 1);
  cr_assert_leq(chat_client_next_deadline(h.c) - h.now, 1000,
                "the first step's ceiling");
}

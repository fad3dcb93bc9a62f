/* Server sessions: hello, ping, refusals that keep the connection, and the
 * three close codes of PROTOCOL.md section 3, the slow-reader cut and
 * draining. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_harness.h"

static harness h;

static void setup(void) { harness_init(&h, NULL); }
static void teardown(void) { harness_fini(&h); }

TestSuite(session, .init = setup, .fini = teardown);

Test(session, hello_is_first_with_limits) {
  dev *a = dev_open(&h, "alice", "phone");
  const chat_frame *f = dev_next(a);
  cr_assert_not_null(f);
  cr_assert_eq(f->type, CHAT_FRAME_HELLO);
  cr_assert_str_eq(f->hello->user_id, "alice");
  cr_assert_str_eq(f->hello->device_id, "phone");
  cr_assert_gt(strlen(f->hello->session_id), 0);
  cr_assert_eq(f->hello->server_ts, h.fe.wall_ms);
  cr_assert_eq(f->hello->limits.max_body_bytes, 65536);
  cr_assert_eq(f->hello->limits.max_frame_bytes, 131072);
  cr_assert_eq(f->hello->limits.rate_per_minute, 60);
  cr_assert_eq(f->hello->limits.resume_max_messages, 1000);
  cr_assert_eq(f->hello->limits.resume_max_age_ms, 604800000ull);
  cr_assert_gt(f->hello->heartbeat_ms, 0);
}

Test(session, session_ids_are_unique) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "alice", "laptop");
  char first[65];
  strcpy(first, dev_expect(a, CHAT_FRAME_HELLO)->hello->session_id);
  cr_assert_str_neq(first, dev_expect(b, CHAT_FRAME_HELLO)->hello->session_id);
}

Test(session, ping_pong_echoes_nonce) {
  dev *a = dev_open(&h, "alice", "phone");
  dev_drain(a);
  dev_send(a, "{\"type\":\"ping\",\"nonce\":\"n-1\"}");
  const chat_frame *f = dev_expect(a, CHAT_FRAME_PONG);
  cr_assert_str_eq(f->ping->nonce_json.ptr, "\"n-1\"");
  dev_send(a, "{\"type\":\"ping\"}");
  cr_assert_null(dev_expect(a, CHAT_FRAME_PONG)->ping->nonce_json.ptr);
}

Test(session, malformed_frames_get_errors_and_connection_stays) {
  dev *a = dev_open(&h, "alice", "phone");
  dev_drain(a);
  struct {
    const char *json, *code, *ref;
  } cases[] = {
    {"not json", "bad_frame", NULL},
    {"{\"type\":\"ack\"}", "unknown_type", "ack"},
    {"{\"type\":\"send\",\"client_msg_id\":\"m1\",\"conversation_id\":\"a b\","
     "\"body\":\"x\"}", "bad_id", "m1"},
    {"{\"type\":\"read\",\"conversation_id\":\"c\"}", "bad_frame", "read"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    dev_send(a, cases[i].json);
    const chat_frame *f = dev_expect(a, CHAT_FRAME_ERROR);
    cr_assert_str_eq(f->error->code, cases[i].code, "%s", cases[i].json);
    if (cases[i].ref)
      cr_assert_str_eq(f->error->ref.ptr, cases[i].ref);
    else
      cr_assert_null(f->error->ref.ptr);
    cr_assert_not(a->closed);
  }
  /* A list over its limit (101 presence ids) is too_large. */
  char buf[2048];
  int k = snprintf(buf, sizeof buf,
                   "{\"type\":\"presence_subscribe\",\"user_ids\":[");
  for (int i = 0; i < 101; i++)
    k += snprintf(buf + k, sizeof buf - (size_t)k, "%s\"u%d\"", i ? "," : "",
                  i);
  snprintf(buf + k, sizeof buf - (size_t)k, "]}");
  dev_send(a, buf);
  const chat_frame *e = dev_expect(a, CHAT_FRAME_ERROR);
  cr_assert_str_eq(e->error->code, "too_large");
  cr_assert_str_eq(e->error->ref.ptr, "presence_subscribe");
  dev_send(a, "{\"type\":\"ping\"}");
  dev_expect(a, CHAT_FRAME_PONG);
}

Test(session, oversize_frame_closes_1009) {
  dev *a = dev_open(&h, "alice", "phone");
  size_t n = 131072 + 1;
  char *big = malloc(n + 1);
  memset(big, ' ', n);
  memcpy(big, "{\"type\":\"ping\"}", 15);
  big[n] = 0;
  dev_send(a, big);
  free(big);
  cr_assert(a->closed);
  cr_assert_eq(a->close_code, 1009);
}

Test(session, invalid_utf8_closes_1007) {
  dev *a = dev_open(&h, "alice", "phone");
  dev_send(a, "{\"type\":\"ping\",\"nonce\":\"\xc3\x28\"}");
  cr_assert(a->closed);
  cr_assert_eq(a->close_code, 1007);
}

Test(session, garbage_flood_closes_1008) {
  dev *a = dev_open(&h, "alice", "phone");
  int sent = 0;
  while (!a->closed && sent < 1000) {
    dev_send(a, "garbage");
    sent++;
  }
  cr_assert(a->closed);
  cr_assert_eq(a->close_code, 1008);
  cr_assert_eq(sent, 31, "closed after %d frames", sent); /* default 30/min */
}

Test(session, garbage_counter_resets_each_minute) {
  dev *a = dev_open(&h, "alice", "phone");
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 30; i++)
      dev_send(a, "garbage");
    cr_assert_not(a->closed);
    harness_advance(&h, 60001);
  }
}

Test(session, slow_reader_is_closed_1013) {
  harness_fini(&h);
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .max_queued_frames = 8};
  harness_init(&h, &s);
  dev *a = dev_open(&h, "alice", "phone");
  /* Queue frames without reading them: the harness pumps on every send,
   * so push directly through the API instead. */
  chat_session *sess = a->sess;
  for (int i = 0; i < 20; i++)
    chat_session_on_frame(sess, "{\"type\":\"ping\"}", 15, h.now);
  /* An overload close (PROTOCOL.md section 8): what was queued is dropped
   * (the client resumes it), and goaway tells it when to come back. */
  cr_assert_eq(chat_session_close_code(sess, NULL), 1013);
  cr_assert_eq(chat_session_wants(sess), CHAT_WANT_WRITE,
               "goaway goes out before the close");
  const char *json;
  size_t len;
  cr_assert_eq(chat_session_next_frame(sess, &json, &len), CHAT_OK);
  cr_assert_eq(strncmp(json, "{\"type\":\"goaway\",\"reason\":\"overload\","
                             "\"retry_after_ms\":5000}", len), 0,
               "%.*s", (int)len, json);
  cr_assert_eq(chat_session_next_frame(sess, &json, &len), CHAT_ERR_AGAIN);
  cr_assert(chat_session_wants(sess) & CHAT_WANT_CLOSE);
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.slow_closes_total, 1);
  cr_assert_eq(st.goaway_total, 1);
}

Test(session, drain_sends_goaway_then_closes_1012_and_refuses_new) {
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(a);
  dev_drain(b);
  chat_server_drain(h.srv, h.now);
  harness_pump(&h);
  cr_assert(a->closed && b->closed);
  for (int i = 0; i < 2; i++) {
    dev *d = i ? b : a;
    cr_assert_eq(d->close_code, 1012);
    const chat_frame *f = dev_next(d);
    cr_assert_not_null(f, "goaway before the close");
    cr_assert_eq(f->type, CHAT_FRAME_GOAWAY);
    cr_assert_eq(f->goaway->reason.len, 5);
    cr_assert_str_eq(f->goaway->reason.ptr, "drain");
    cr_assert_eq(f->goaway->retry_after_ms, 10000, "the default spread");
    cr_assert_null(dev_next(d), "goaway is the last frame");
  }
  chat_identity id = {CHAT_IDENTITY_V1, "carol", "phone", 0, CHAT_SENDER_USER};
  chat_session *s;
  cr_assert_eq(chat_server_open_session(h.srv, &s, &id, NULL, h.now),
               CHAT_ERR_STATE);
}

Test(session, drain_spread_is_the_setting) {
  harness_fini(&h);
  chat_server_settings st = {.version = CHAT_SERVER_SETTINGS_V1,
                             .drain_retry_after_ms = 2500};
  harness_init(&h, &st);
  dev *a = dev_open(&h, "alice", "phone");
  dev_drain(a);
  chat_server_drain(h.srv, h.now);
  harness_pump(&h);
  cr_assert_eq(dev_expect(a, CHAT_FRAME_GOAWAY)->goaway->retry_after_ms,
               2500);
  cr_assert_eq(a->close_code, 1012);
}

Test(session, drain_without_goaway_closes_1001) {
  harness_fini(&h);
  chat_server_settings st = {.version = CHAT_SERVER_SETTINGS_V1,
                             .drain_retry_after_ms = CHAT_SERVER_NO_GOAWAY};
  harness_init(&h, &st);
  dev *a = dev_open(&h, "alice", "phone");
  dev_drain(a);
  chat_server_drain(h.srv, h.now);
  harness_pump(&h);
  cr_assert(a->closed);
  cr_assert_eq(a->close_code, 1001);
  cr_assert_eq(dev_count(a, CHAT_FRAME_GOAWAY), 0);
}

/* A drain commits and acks what was accepted before goaway goes out, so a
 * client that honours goaway loses nothing it was acked for and resends
 * nothing that was stored. */
Test(session, drain_acks_pending_sends_before_goaway) {
  const char *bob[] = {"bob"};
  char c[65];
  snprintf(c, sizeof c, "%s", harness_create(&h, "alice", "direct", bob, 1));
  dev *a = dev_open(&h, "alice", "phone");
  dev_drain(a);
  dev_sendf(a, "{\"type\":\"send\",\"client_msg_id\":\"last\","
               "\"conversation_id\":\"%s\",\"body\":\"x\"}", c);
  chat_server_drain(h.srv, h.now);
  harness_settle(&h);
  cr_assert(a->closed);
  cr_assert_eq(a->close_code, 1012);
  const chat_frame *f = dev_next(a);
  cr_assert_not_null(f);
  cr_assert_eq(f->type, CHAT_FRAME_ACK, "the ack comes first");
  f = dev_next(a);
  cr_assert_not_null(f);
  cr_assert_eq(f->type, CHAT_FRAME_GOAWAY);
}

Test(session, bad_identity_refused) {
  chat_identity id = {CHAT_IDENTITY_V1, "has space", "phone", 0, CHAT_SENDER_USER};
  chat_session *s = (chat_session *)1;
  cr_assert_eq(chat_server_open_session(h.srv, &s, &id, NULL, h.now),
               CHAT_ERR_INVAL);
  cr_assert_null(s);
  chat_identity k = {CHAT_IDENTITY_V1, "bot", "phone", 0,
                     (chat_sender_kind)2};
  cr_assert_eq(chat_server_open_session(h.srv, &s, &k, NULL, h.now),
               CHAT_ERR_INVAL);
  cr_assert(strstr(chat_server_errmsg(h.srv), "identity.kind"));
}

Test(session, wants_callback_fires_once_per_batch) {
  dev *a = dev_open(&h, "alice", "phone");
  (void)a;
  unsigned before = h.wants_calls;
  chat_session *sess = a->sess;
  chat_session_on_frame(sess, "{\"type\":\"ping\"}", 15, h.now);
  chat_session_on_frame(sess, "{\"type\":\"ping\"}", 15, h.now);
  cr_assert_eq(h.wants_calls, before + 1);
  harness_pump(&h);
  chat_session_on_frame(sess, "{\"type\":\"ping\"}", 15, h.now);
  cr_assert_eq(h.wants_calls, before + 2);
}

Test(session, authenticate_without_auth_module_refuses) {
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  cr_assert_eq(chat_server_authenticate(h.srv, "tok", 3, &id), CHAT_ERR_AUTH);
  cr_assert_eq(id.user_id[0], 0);
}

Test(session, wants_fires_when_the_queue_refills_after_the_last_frame) {
  dev *a = dev_open(&h, "alice", "phone");
  chat_session *sess = a->sess;
  const char *j;
  size_t n;
  while (chat_session_next_frame(sess, &j, &n) == CHAT_OK)
    ;
  unsigned base = h.wants_calls;
  chat_session_on_frame(sess, "{\"type\":\"ping\"}", 15, h.now);
  chat_session_on_frame(sess, "{\"type\":\"ping\"}", 15, h.now);
  cr_assert_eq(h.wants_calls, base + 1);
  /* Take both frames but never see CHAT_ERR_AGAIN. */
  cr_assert_eq(chat_session_next_frame(sess, &j, &n), CHAT_OK);
  cr_assert_eq(chat_session_wants(sess) & CHAT_WANT_WRITE, CHAT_WANT_WRITE);
  cr_assert_eq(chat_session_next_frame(sess, &j, &n), CHAT_OK);
  cr_assert_eq(chat_session_wants(sess), 0);
  chat_session_on_frame(sess, "{\"type\":\"ping\"}", 15, h.now);
  cr_assert_eq(h.wants_calls, base + 2, "a refilled queue must wake the host");
}

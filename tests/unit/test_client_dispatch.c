/* Inbound frames (lib/client/dispatch.c): garbage is reported and never
 * fatal, frames without a socket are refused, live messages are stored
 * once and raise last_seen only when contiguous. */
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

TestSuite(dispatch, .init = setup, .fini = teardown);

Test(dispatch, malformed_frames_are_reported_not_fatal) {
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
  ch_msg(&h, "c", "5", "bob");
  cr_assert_eq(ch_count_ev(&h, "message"), 1);
}

Test(dispatch, frames_without_socket_are_refused) {
  cr_assert_eq(chat_client_on_frame(h.c, "{}", 2, 0), CHAT_ERR_STATE);
  cr_assert_eq(chat_client_on_frame(NULL, "{}", 2, 0), CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_on_frame(h.c, NULL, 2, 0), CHAT_ERR_INVAL);
}

Test(dispatch, live_messages_dedup_and_raise_last_seen) {
  ch_connect(&h);
  ch_msg(&h, "c", "5", "bob");
  ch_msg(&h, "c", "5", "bob");
  ch_msg(&h, "c", "8", "bob");
  cr_assert_eq(ch_count_ev(&h, "message"), 2);
  uint64_t ls;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 8);
}

Test(dispatch, live_message_during_resume_keeps_last_seen) {
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_msg(&h, "c", "50", "bob"); /* before the history of c has arrived */
  uint64_t ls = 1;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 0);
  cr_assert_eq(ch_count_ev(&h, "message"), 1);
}

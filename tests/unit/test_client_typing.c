/* Typing (lib/client/typing.c): is_typing:true at most once per 3 s while
 * keys come, false after 5 s of quiet or on send, nothing in groups over
 * 50; a peer's typing expires 5 s after its last true. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_harness.h"

static ch h;

static void setup(void) {
  memset(&h, 0, sizeof h);
  cr_assert_eq(ch_open(&h, ":memory:", NULL), CHAT_OK);
  ch_connect(&h);
  ch_reset_log(&h);
}

static void teardown(void) {
  ch_close(&h);
  ch_reset_log(&h);
}

TestSuite(typing, .init = setup, .fini = teardown);

static size_t typing_frames(bool on) {
  size_t n = 0;
  for (size_t i = 0; i < h.n_out; i++)
    if (strstr(h.out[i], "\"type\":\"typing\"") &&
        strstr(h.out[i], on ? "\"is_typing\":true" : "\"is_typing\":false"))
      n++;
  return n;
}

Test(typing, true_at_most_every_three_seconds) {
  /* A keystroke every 500 ms for 7 s: true at 0, 3000 and 6000. */
  for (int t = 0; t <= 7000; t += 500) {
    cr_assert_eq(chat_client_typing(h.c, "c", h.now), CHAT_OK);
    ch_advance(&h, 500);
    size_t want = (size_t)(t / 3000 + 1);
    cr_assert_eq(typing_frames(true), want, "at %d ms", t);
  }
  cr_assert_eq(typing_frames(false), 0);
}

Test(typing, false_after_five_quiet_seconds) {
  chat_client_typing(h.c, "c", h.now);
  ch_advance(&h, 2000);
  chat_client_typing(h.c, "c", h.now); /* last key at 2000 */
  ch_advance(&h, 4999);
  cr_assert_eq(typing_frames(false), 0);
  ch_advance(&h, 1);
  cr_assert_eq(typing_frames(false), 1);
  ch_advance(&h, 60000);
  cr_assert_eq(typing_frames(false), 1, "once");
  cr_assert_eq(typing_frames(true), 1);
  /* Typing again starts over with true at once. */
  chat_client_typing(h.c, "c", h.now);
  ch_drain(&h);
  cr_assert_eq(typing_frames(true), 2);
}

Test(typing, send_stops_typing_first) {
  chat_client_typing(h.c, "c", h.now);
  ch_advance(&h, 100);
  chat_client_send(h.c, "c", "hi", 2, NULL, h.now);
  ch_drain(&h);
  cr_assert_eq(h.n_out, 3);
  cr_assert(strstr(h.out[1], "\"is_typing\":false"));
  cr_assert(strstr(h.out[2], "\"type\":\"send\""));
  ch_advance(&h, 60000);
  cr_assert_eq(typing_frames(false), 1);
}

static void group_of(const char *conv, int n) {
  char f[8192];
  size_t k = (size_t)snprintf(f, sizeof f,
                              "{\"type\":\"conversation\",\"conversation\":{"
                              "\"conversation_id\":\"%s\",\"type\":\"group\","
                              "\"name\":\"g\",\"members\":[", conv);
  for (int i = 0; i < n; i++)
    k += (size_t)snprintf(f + k, sizeof f - k, "%s\"u%d\"", i ? "," : "", i);
  snprintf(f + k, sizeof f - k, "],\"last_message\":null,\"unread_count\":0,"
           "\"last_read_message_id\":null}}");
  ch_feed(&h, f);
}

Test(typing, nothing_in_large_groups) {
  group_of("big", 51);
  group_of("ok", 50);
  chat_client_typing(h.c, "big", h.now);
  ch_drain(&h);
  cr_assert_eq(typing_frames(true), 0);
  chat_client_typing(h.c, "ok", h.now);
  ch_drain(&h);
  cr_assert_eq(typing_frames(true), 1);
}

Test(typing, nothing_while_offline) {
  chat_client_on_close(h.c, 1006, h.now);
  cr_assert_eq(chat_client_typing(h.c, "c", h.now), CHAT_OK);
  ch_advance(&h, 10000);
  cr_assert_eq(typing_frames(true) + typing_frames(false), 0);
}

static void peer(const char *user, bool on) {
  char f[256];
  snprintf(f, sizeof f, "{\"type\":\"typing\",\"conversation_id\":\"c\","
           "\"user_id\":\"%s\",\"is_typing\":%s}", user, on ? "true" : "false");
  ch_feed(&h, f);
}

Test(typing, peer_typing_expires_after_five_seconds) {
  peer("bob", true);
  cr_assert_eq(ch_count_ev(&h, "typing"), 1);
  cr_assert_eq(ch_last_ev(&h, "typing")->n, 1);
  ch_advance(&h, 3000);
  peer("bob", true); /* refresh: no new event, later expiry */
  cr_assert_eq(ch_count_ev(&h, "typing"), 1);
  ch_advance(&h, 4999);
  cr_assert_eq(ch_count_ev(&h, "typing"), 1);
  ch_advance(&h, 1);
  cr_assert_eq(ch_count_ev(&h, "typing"), 2);
  cr_assert_eq(ch_last_ev(&h, "typing")->n, 0);
  cr_assert_str_eq(ch_last_ev(&h, "typing")->b, "bob");
  cr_assert_eq(chat_client_next_deadline(h.c), CHAT_TIME_NEVER);
}

Test(typing, peer_false_stops_at_once) {
  peer("bob", true);
  peer("carol", true);
  peer("bob", false);
  cr_assert_eq(ch_count_ev(&h, "typing"), 3);
  cr_assert_str_eq(ch_last_ev(&h, "typing")->b, "bob");
  peer("bob", false); /* already stopped: nothing */
  cr_assert_eq(ch_count_ev(&h, "typing"), 3);
  /* A disconnect stops everyone. */
  chat_client_on_close(h.c, 1006, h.now);
  cr_assert_eq(ch_count_ev(&h, "typing"), 4);
  cr_assert_str_eq(ch_last_ev(&h, "typing")->b, "carol");
}

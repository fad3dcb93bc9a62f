/* Presence (lib/client/presence.c): the subscription is sent when
 * connected and again after every reconnect; clearing it tells the server;
 * at most 100 valid ids. */
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

TestSuite(presence, .init = setup, .fini = teardown);

Test(presence, presence_resubscribed_after_reconnect) {
  const char *ids[] = {"bob", "carol"};
  cr_assert_eq(chat_client_watch_presence(h.c, ids, 2, h.now), CHAT_OK);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "presence_subscribe", 0), 1);
  cr_assert(strstr(ch_nth_type(&h, "presence_subscribe", 0),
                   "\"user_ids\":[\"bob\",\"carol\"]"));
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_connect(&h);
  cr_assert_eq(ch_count_type(&h, "presence_subscribe", 0), 2);
  ch_feed(&h, "{\"type\":\"presence\",\"user_id\":\"bob\",\"state\":"
              "\"online\",\"last_active_ts\":1}");
  cr_assert_str_eq(ch_last_ev(&h, "presence")->a, "bob");
  /* Clearing tells the server; a cleared set is not re-sent. */
  chat_client_watch_presence(h.c, NULL, 0, h.now);
  ch_drain(&h);
  cr_assert(strstr(ch_nth_type(&h, "presence_subscribe", 2),
                   "\"user_ids\":[]"));
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_connect(&h);
  cr_assert_eq(ch_count_type(&h, "presence_subscribe", 0), 3);
}

Test(presence, presence_limits) {
  const char *many[101];
  for (int i = 0; i < 101; i++)
    many[i] = "u";
  cr_assert_eq(chat_client_watch_presence(h.c, many, 101, h.now),
               CHAT_ERR_TOO_MANY);
  const char *bad[] = {"no spaces"};
  cr_assert_eq(chat_client_watch_presence(h.c, bad, 1, h.now),
               CHAT_ERR_INVAL);
}

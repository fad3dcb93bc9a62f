/* Resume (lib/client/resume.c): the resume frame built from the store's
 * last_seen map (no since on a fresh device; at most 4096 entries, the
 * most recent, under the frame limit), history stored and deduplicated,
 * last_seen surviving a restart. */
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

TestSuite(resume, .init = setup, .fini = teardown);

Test(resume, fresh_resume_has_no_since) {
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

Test(resume, resume_lists_last_seen_from_store) {
  ch_connect(&h);
  ch_msg(&h, "conv_a", "10", "bob");
  ch_msg(&h, "conv_a", "12", "bob");
  ch_msg(&h, "conv_b", "7", "carol");
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

Test(resume, resume_after_history_uses_newest) {
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

Test(resume, resume_lists_at_most_4096_most_recent) {
  ch_connect(&h);
  char conv[32], id[32];
  for (int i = 1; i <= 4100; i++) {
    snprintf(conv, sizeof conv, "k%d", i);
    snprintf(id, sizeof id, "%d", i);
    ch_msg(&h, conv, id, "bob");
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

Test(resume, resume_fits_the_frame_limit) {
  ch_connect(&h);
  char conv[80], id[32];
  for (int i = 1; i <= 3000; i++) {
    /* 64-byte ids: 3000 of them pass 128 KiB. */
    snprintf(conv, sizeof conv, "%060d%04d", 0, i);
    snprintf(id, sizeof id, "%d", i);
    ch_msg(&h, conv, id, "bob");
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

/* ------------------------------------------------------------------------
 * Restart survival on a file store */

static ch_dir dir;

static void file_setup(void) {
  memset(&h, 0, sizeof h);
  ch_dir_make(&dir);
  cr_assert_eq(ch_open(&h, dir.path, NULL), CHAT_OK);
}

static void file_teardown(void) {
  ch_close(&h);
  ch_reset_log(&h);
  ch_dir_remove(&dir);
}

TestSuite(resume_file, .init = file_setup, .fini = file_teardown);

Test(resume_file, last_seen_survives_restart) {
  ch_connect(&h);
  ch_msg(&h, "conv_a", "41", "bob");
  ch_close(&h);
  ch_reset_log(&h);
  cr_assert_eq(ch_open(&h, dir.path, NULL), CHAT_OK);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  cr_assert(strstr(ch_nth_type(&h, "resume", 0), "\"conv_a\":\"41\""));
}

/* Resume (lib/client/resume.c): the resume frame built from the store's
 * last_seen map (no since on a fresh device; at most 4096 entries, the
 * most recent, under the frame limit), history stored and deduplicated,
 * last_seen surviving a restart, and paced resumes in rounds when hello
 * carries resume_batch_hint (section 8). */
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

/* ------------------------------------------------------------------------
 * Paced resumes (PROTOCOL.md section 8): hello's resume_batch_hint */

static void hello_with_hint(int hint) {
  char extra[48] = "";
  if (hint)
    snprintf(extra, sizeof extra, ",\"resume_batch_hint\":%d", hint);
  char f[512];
  snprintf(f, sizeof f,
           "{\"type\":\"hello\",\"user_id\":\"alice\",\"device_id\":\"phone\","
           "\"session_id\":\"s1\",\"server_ts\":1700000000000,"
           "\"heartbeat_ms\":0,\"limits\":{\"max_body_bytes\":65536,"
           "\"max_frame_bytes\":131072,\"rate_per_minute\":60,"
           "\"resume_max_messages\":1000,\"resume_max_age_ms\":604800000%s}}",
           extra);
  ch_feed(&h, f);
}

/* A device that holds conversations c1..c7, c<k> last seen at id k. */
static void seven_conversations(void) {
  ch_connect(&h);
  for (int k = 1; k <= 7; k++) {
    char conv[8], id[8];
    snprintf(conv, sizeof conv, "c%d", k);
    snprintf(id, sizeof id, "%d", k);
    ch_msg(&h, conv, id, "bob");
  }
  chat_client_on_close(h.c, 1012, h.now);
  ch_advance(&h, 60000);
  ch_reset_log(&h);
}

/* The conversations a resume frame lists, in its order ("c7 c6 c5"), and
 * its since ("" when absent). */
static void listed(const char *json, char *convs, size_t cap, char *since,
                   size_t scap) {
  cJSON *j = cJSON_Parse(json);
  cr_assert_not_null(j);
  convs[0] = 0;
  cJSON *e;
  cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "last_seen")) {
    if (convs[0])
      strncat(convs, " ", cap - strlen(convs) - 1);
    strncat(convs, e->string, cap - strlen(convs) - 1);
  }
  cJSON *s = cJSON_GetObjectItem(j, "since");
  snprintf(since, scap, "%s", s ? s->valuestring : "");
  cJSON_Delete(j);
}

Test(resume, a_batch_hint_paces_the_resume_in_rounds) {
  seven_conversations();
  ch_open_socket(&h);
  hello_with_hint(3);
  ch_drain(&h);
  char convs[128], since[32];
  cr_assert_eq(ch_count_type(&h, "resume", 0), 1, "one round at a time");
  listed(ch_nth_type(&h, "resume", 0), convs, sizeof convs, since,
         sizeof since);
  cr_assert_str_eq(convs, "c7 c6 c5", "the most recently active first");
  cr_assert_str_eq(since, "9223372036854775807");
  /* The round's answer; live traffic goes on meanwhile. */
  ch_feed(&h, "{\"type\":\"history\",\"conversation_id\":\"c7\",\"messages\":"
              "[{\"message_id\":\"70\",\"conversation_id\":\"c7\","
              "\"sender_id\":\"bob\",\"body\":\"x\",\"server_ts\":1}],"
              "\"complete\":true}");
  ch_msg(&h, "c1", "71", "bob");
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_RESUMING);
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":1,\"messages\":1}");
  ch_drain(&h);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_RESUMING);
  cr_assert_eq(ch_count_type(&h, "resume", 0), 2);
  listed(ch_nth_type(&h, "resume", 1), convs, sizeof convs, since,
         sizeof since);
  cr_assert_str_eq(convs, "c4 c3 c2");
  cr_assert_str_eq(since, "9223372036854775807");
  for (size_t i = 0; i < h.n_ev; i++)
    if (strcmp(h.ev[i].kind, "progress") == 0)
      cr_assert_not(h.ev[i].flag, "not complete before the last round");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  ch_drain(&h);
  /* The last round: everything, with the last_seen it has now, and the
   * real since. */
  cr_assert_eq(ch_count_type(&h, "resume", 0), 3);
  const char *last = ch_nth_type(&h, "resume", 2);
  listed(last, convs, sizeof convs, since, sizeof since);
  cr_assert_eq(strlen(convs), strlen("c1 c2 c3 c4 c5 c6 c7"), "%s", convs);
  cr_assert(strstr(last, "\"c7\":\"70\""), "%s", last);
  cr_assert_str_eq(since, "70");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_READY);
  cr_assert(ch_last_ev(&h, "progress")->flag, "complete");
  cr_assert_eq(ch_count_type(&h, "resume", 0), 3);
}

Test(resume, no_hint_or_few_conversations_is_one_resume) {
  seven_conversations();
  for (int hint = 0; hint <= 7; hint += 7) {
    ch_open_socket(&h);
    hello_with_hint(hint);
    ch_drain(&h);
    cr_assert_eq(ch_count_type(&h, "resume", 0), 1, "hint %d", hint);
    char convs[128], since[32];
    listed(ch_nth_type(&h, "resume", 0), convs, sizeof convs, since,
           sizeof since);
    cr_assert_eq(strlen(convs), strlen("c1 c2 c3 c4 c5 c6 c7"));
    cr_assert_str_eq(since, "7");
    ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
    cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_READY);
    chat_client_on_close(h.c, 1006, h.now);
    ch_advance(&h, 60000);
    ch_reset_log(&h);
  }
}

/* A connection lost between rounds starts over at the first round. */
Test(resume, rounds_start_over_after_a_reconnect) {
  seven_conversations();
  ch_open_socket(&h);
  hello_with_hint(2);
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "resume", 0), 2);
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_reset_log(&h);
  ch_open_socket(&h);
  hello_with_hint(2);
  ch_drain(&h);
  char convs[128], since[32];
  listed(ch_nth_type(&h, "resume", 0), convs, sizeof convs, since,
         sizeof since);
  cr_assert_str_eq(convs, "c7 c6");
  /* 7 conversations in batches of 2: four rounds, the last lists all. */
  for (int round = 1; round < 4; round++) {
    ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
    ch_drain(&h);
  }
  cr_assert_eq(ch_count_type(&h, "resume", 0), 4);
  listed(ch_nth_type(&h, "resume", 3), convs, sizeof convs, since,
         sizeof since);
  cr_assert_str_eq(since, "7");
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_RESUMING);
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_READY);
}

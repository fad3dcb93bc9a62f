/* The outbox (lib/client/outbox.c): unacked sends flushed in order with
 * stable client_msg_ids across reconnects and process restarts, acks
 * (duplicate ones too), rate-limited sends retried, refused sends dropped,
 * and an ack the store cannot record. */
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

TestSuite(outbox, .init = setup, .fini = teardown);

static void count_msg(void *ud, const chat_client_message *m) {
  int *n = ud;
  if (m->own && !m->pending && m->message->message_id == 77 &&
      m->message->body.len == 3)
    (*n)++;
}

Test(outbox, outbox_flushes_in_order_with_same_ids) {
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
  ch_ack(&h, id[1], "100", false);
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

Test(outbox, duplicate_ack_is_idempotent) {
  ch_connect(&h);
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "conv_a", "hey", 3, id, h.now);
  ch_drain(&h);
  ch_ack(&h, id, "500", false);
  cr_assert_eq(ch_count_ev(&h, "ack"), 1);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  /* The retry's answer arrives too: nothing changes, nothing fails. */
  ch_ack(&h, id, "500", true);
  ch_ack(&h, id, "500", true);
  cr_assert_eq(ch_count_ev(&h, "ack"), 1);
  cr_assert_eq(ch_count_ev(&h, "error"), 0);
}

Test(outbox, duplicate_ack_for_pending_send_counts_once) {
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "conv_a", "hey", 3, id, h.now);
  ch_connect(&h);
  ch_ack(&h, id, "77", true); /* the first try was stored before a disconnect */
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

Test(outbox, acked_send_is_stored_as_own) {
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "conv_a", "hey", 3, id, h.now);
  ch_connect(&h);
  ch_ack(&h, id, "77", false);
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

Test(outbox, rate_limited_send_is_retried_later) {
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

Test(outbox, refused_send_leaves_outbox) {
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

Test(outbox, ack_with_failing_store_keeps_outbox_durable) {
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "c", "x", 1, id, h.now);
  ch_connect(&h);
  ch_store_fail(&h, true);
  ch_ack(&h, id, "9", false);
  ch_store_fail(&h, false);
  /* Acked in memory, reported, but still in the stored outbox: a restart
   * sends it again and the server answers duplicate:true. */
  cr_assert_eq(ch_count_ev(&h, "ack"), 1);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  cr_assert_geq(ch_count_ev(&h, "error"), 1);
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

TestSuite(outbox_file, .init = file_setup, .fini = file_teardown);

Test(outbox_file, outbox_survives_restart) {
  char id[2][CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "conv_a", "first", 5, id[0], h.now);
  chat_client_send(h.c, "conv_b", "second", 6, id[1], h.now);
  ch_connect(&h); /* sent once, never acked */
  cr_assert_eq(ch_count_type(&h, "send", 0), 2);
  ch_close(&h);   /* the process dies */
  ch_reset_log(&h);
  cr_assert_eq(ch_open(&h, dir.path, NULL), CHAT_OK);
  cr_assert_eq(chat_client_outbox_len(h.c), 2);
  ch_connect(&h);
  cr_assert_eq(ch_count_type(&h, "send", 0), 2);
  cr_assert(strstr(ch_nth_type(&h, "send", 0), id[0]));
  cr_assert(strstr(ch_nth_type(&h, "send", 1), id[1]));
  /* An ack, then another restart: only the unacked one is left. */
  ch_ack(&h, id[0], "900", false);
  ch_close(&h);
  ch_reset_log(&h);
  cr_assert_eq(ch_open(&h, dir.path, NULL), CHAT_OK);
  cr_assert_eq(chat_client_outbox_len(h.c), 1);
  ch_connect(&h);
  cr_assert_eq(ch_count_type(&h, "send", 0), 1);
  cr_assert(strstr(ch_nth_type(&h, "send", 0), id[1]));
}

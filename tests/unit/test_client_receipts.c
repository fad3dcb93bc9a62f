/* Receipt marks: high-water marks, at most one flush (a delivered and/or a
 * read frame) per conversation per receipt_interval_ms, persisted so they
 * survive disconnects and restarts; the automatic delivered mark; read sync from other devices;
 * receipts for our own messages. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client_harness.h"

static ch h;
static ch_dir dir;
#define path dir.path

static void setup(void) {
  memset(&h, 0, sizeof h);
  ch_dir_make(&dir);
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1,
                            .manual_delivered = true};
  cr_assert_eq(ch_open(&h, path, &s), CHAT_OK);
}

static void teardown(void) {
  ch_close(&h);
  ch_reset_log(&h);
  ch_dir_remove(&dir);
}

TestSuite(receipts, .init = setup, .fini = teardown);

/* up_to of the i-th frame of a type in conversation conv; 0 if none. */
static uint64_t nth_mark(const char *type, const char *conv, size_t i) {
  for (size_t k = 0;; k++) {
    const char *f = ch_nth_type(&h, type, k);
    if (!f)
      return 0;
    cJSON *j = cJSON_Parse(f);
    bool match = strcmp(cJSON_GetObjectItem(j, "conversation_id")->valuestring,
                        conv) == 0;
    uint64_t v = strtoull(
        cJSON_GetObjectItem(j, "up_to_message_id")->valuestring, NULL, 10);
    cJSON_Delete(j);
    if (match && i-- == 0)
      return v;
  }
}

static size_t count_marks(const char *type, const char *conv) {
  size_t n = 0;
  while (nth_mark(type, conv, n))
    n++;
  return n;
}

Test(receipts, batched_once_per_interval) {
  ch_connect(&h);
  chat_client_mark_read(h.c, "c", 1, h.now);
  ch_drain(&h);
  cr_assert_eq(count_marks("read", "c"), 1, "the first goes out at once");
  for (int i = 2; i <= 9; i++) {
    ch_advance(&h, 100);
    chat_client_mark_read(h.c, "c", (uint64_t)i, h.now);
  }
  ch_drain(&h);
  cr_assert_eq(count_marks("read", "c"), 1, "nothing within the second");
  ch_advance(&h, 199); /* t = 999 */
  cr_assert_eq(count_marks("read", "c"), 1);
  ch_advance(&h, 1); /* t = 1000 */
  cr_assert_eq(count_marks("read", "c"), 2);
  cr_assert_eq(nth_mark("read", "c", 1), 9, "one frame covers all");
  ch_advance(&h, 10000);
  cr_assert_eq(count_marks("read", "c"), 2, "nothing new, nothing sent");
}

Test(receipts, one_flush_per_conversation) {
  ch_connect(&h);
  chat_client_mark_read(h.c, "a", 5, h.now);
  chat_client_mark_read(h.c, "b", 6, h.now);
  chat_client_mark_delivered(h.c, "a", 7, h.now);
  ch_drain(&h);
  /* Conversations are independent... */
  cr_assert_eq(nth_mark("read", "a", 0), 5);
  cr_assert_eq(nth_mark("read", "b", 0), 6);
  /* ...but a conversation's window covers both kinds. */
  cr_assert_eq(count_marks("delivered", "a"), 0);
  ch_advance(&h, 999);
  cr_assert_eq(count_marks("delivered", "a"), 0);
  ch_advance(&h, 1);
  cr_assert_eq(nth_mark("delivered", "a", 0), 7);
  /* Both kinds pending at once go out in the same flush. */
  chat_client_mark_read(h.c, "c", 1, h.now); /* t = 1000: flushed */
  ch_advance(&h, 100);
  chat_client_mark_delivered(h.c, "c", 8, h.now);
  chat_client_mark_read(h.c, "c", 8, h.now);
  ch_advance(&h, 899); /* t = 1999 */
  cr_assert_eq(count_marks("delivered", "c"), 0);
  cr_assert_eq(count_marks("read", "c"), 1);
  ch_advance(&h, 1);
  cr_assert_eq(nth_mark("delivered", "c", 0), 8);
  cr_assert_eq(nth_mark("read", "c", 1), 8);
}

Test(receipts, backwards_marks_are_ignored) {
  ch_connect(&h);
  chat_client_mark_read(h.c, "c", 50, h.now);
  ch_advance(&h, 5000);
  chat_client_mark_read(h.c, "c", 40, h.now);
  chat_client_mark_read(h.c, "c", 50, h.now);
  ch_advance(&h, 5000);
  cr_assert_eq(count_marks("read", "c"), 1);
  cr_assert_eq(chat_client_mark_read(h.c, "bad id", 5, h.now),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_mark_read(h.c, "c", 0, h.now), CHAT_ERR_INVAL);
}

Test(receipts, offline_marks_go_out_after_connect) {
  chat_client_mark_read(h.c, "c", 12, h.now);
  cr_assert_eq(ch_drain(&h), 0);
  ch_connect(&h);
  cr_assert_eq(nth_mark("read", "c", 0), 12);
}

Test(receipts, unwritten_mark_survives_disconnect) {
  ch_connect(&h);
  chat_client_mark_read(h.c, "c", 3, h.now);
  /* Queued but the socket dies before the host writes it. */
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  cr_assert_eq(count_marks("read", "c"), 0);
  ch_connect(&h);
  cr_assert_eq(count_marks("read", "c"), 1);
  cr_assert_eq(nth_mark("read", "c", 0), 3);
  /* Once written it is not repeated on the next connection. */
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_connect(&h);
  cr_assert_eq(count_marks("read", "c"), 1);
}

Test(receipts, marks_survive_restart) {
  chat_client_mark_read(h.c, "c", 21, h.now);
  chat_client_mark_delivered(h.c, "c", 22, h.now);
  ch_close(&h);
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1,
                            .manual_delivered = true};
  cr_assert_eq(ch_open(&h, path, &s), CHAT_OK);
  ch_connect(&h);
  cr_assert_eq(nth_mark("read", "c", 0), 21);
  cr_assert_eq(nth_mark("delivered", "c", 0), 22);
  /* Sent: a second restart sends nothing. */
  ch_close(&h);
  ch_reset_log(&h);
  cr_assert_eq(ch_open(&h, path, &s), CHAT_OK);
  ch_connect(&h);
  cr_assert_eq(count_marks("read", "c"), 0);
  cr_assert_eq(count_marks("delivered", "c"), 0);
}

Test(receipts, read_sync_from_other_device) {
  ch_connect(&h);
  ch_feed(&h, "{\"type\":\"state_change\",\"conversation_id\":\"c\","
              "\"last_read_message_id\":\"30\"}");
  cr_assert_eq(ch_count_ev(&h, "state_change"), 1);
  /* The server has 30 already: marking up to it sends nothing. */
  chat_client_mark_read(h.c, "c", 30, h.now);
  ch_drain(&h);
  cr_assert_eq(count_marks("read", "c"), 0);
  chat_client_mark_read(h.c, "c", 31, h.now);
  ch_drain(&h);
  cr_assert_eq(nth_mark("read", "c", 0), 31);
}

static void state_of(void *ud, const chat_client_message *m) {
  int *st = ud;
  if (m->own)
    st[m->message->message_id] = (int)m->state;
}

Test(receipts, receipts_update_own_messages) {
  char id1[CHAT_CLIENT_MSG_ID_BUF], id2[CHAT_CLIENT_MSG_ID_BUF];
  ch_connect(&h);
  chat_client_send(h.c, "c", "one", 3, id1, h.now);
  chat_client_send(h.c, "c", "two", 3, id2, h.now);
  char f[256];
  snprintf(f, sizeof f, "{\"type\":\"ack\",\"client_msg_id\":\"%s\","
           "\"message_id\":\"3\",\"server_ts\":1}", id1);
  ch_feed(&h, f);
  snprintf(f, sizeof f, "{\"type\":\"ack\",\"client_msg_id\":\"%s\","
           "\"message_id\":\"4\",\"server_ts\":2}", id2);
  ch_feed(&h, f);
  ch_feed(&h, "{\"type\":\"receipt\",\"conversation_id\":\"c\",\"message_id\":"
              "\"4\",\"state\":\"delivered\",\"member_id\":\"bob\"}");
  ch_feed(&h, "{\"type\":\"receipt\",\"conversation_id\":\"c\",\"message_id\":"
              "\"3\",\"state\":\"read\",\"member_id\":\"bob\","
              "\"counts\":{\"delivered\":2,\"read\":1}}");
  cr_assert_eq(ch_count_ev(&h, "receipt"), 2);
  cr_assert_eq(ch_last_ev(&h, "receipt")->n, 1);
  int st[8] = {0};
  chat_client_list_messages(h.c, "c", 0, 10, state_of, st);
  cr_assert_eq(st[3], CHAT_RECEIPT_READ);
  cr_assert_eq(st[4], CHAT_RECEIPT_DELIVERED);
}

/* The default: the client claims delivery itself. */
Test(receipts, automatic_delivered) {
  ch_close(&h);
  cr_assert_eq(ch_open(&h, path, NULL), CHAT_OK);
  ch_connect(&h);
  ch_feed(&h, "{\"type\":\"message\",\"message_id\":\"8\",\"conversation_id\":"
              "\"c\",\"sender_id\":\"bob\",\"body\":\"x\",\"server_ts\":1,"
              "\"client_msg_id\":\"z\"}");
  ch_feed(&h, "{\"type\":\"message\",\"message_id\":\"9\",\"conversation_id\":"
              "\"c\",\"sender_id\":\"bob\",\"body\":\"x\",\"server_ts\":1,"
              "\"client_msg_id\":\"y\"}");
  ch_drain(&h);
  cr_assert_eq(nth_mark("delivered", "c", 0), 8);
  ch_advance(&h, 1000);
  cr_assert_eq(nth_mark("delivered", "c", 1), 9);
  cr_assert_eq(count_marks("read", "c"), 0);
}

/* chat_client_send() (lib/client/send.c): out at once when connected,
 * input validated, and nothing accepted when the store cannot record
 * it. */
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

TestSuite(send, .init = setup, .fini = teardown);

Test(send, send_while_ready_goes_out_at_once) {
  ch_connect(&h);
  char id[CHAT_CLIENT_MSG_ID_BUF];
  cr_assert_eq(chat_client_send(h.c, "conv_a", "hey", 3, id, h.now), CHAT_OK);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_WRITE);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "send", 0), 1);
  cr_assert(strstr(ch_nth_type(&h, "send", 0), id));
  cr_assert(chat_id_valid(id, strlen(id)));
}

Test(send, send_validates_input) {
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

Test(send, store_failure_refuses_and_loses_nothing) {
  ch_connect(&h);
  ch_msg(&h, "c", "5", "bob");
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
  ch_msg(&h, "c", "6", "bob");
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

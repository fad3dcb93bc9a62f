/* chat_client_send(), chat_client_edit() and chat_client_delete()
 * (lib/client/send.c): out at once when connected as their frames, input
 * validated, and nothing accepted when the store cannot record it. */
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

/* ---- edit and delete (PROTOCOL.md section 8) ---- */

Test(send, edit_and_delete_go_out_as_their_frames) {
  ch_connect(&h);
  char e[CHAT_CLIENT_MSG_ID_BUF], d[CHAT_CLIENT_MSG_ID_BUF];
  cr_assert_eq(chat_client_edit(h.c, "c", 42, "better", 6, e, h.now),
               CHAT_OK);
  cr_assert_eq(chat_client_delete(h.c, "c", 43, d, h.now), CHAT_OK);
  cr_assert_str_neq(e, d);
  ch_drain(&h);
  cJSON *j = cJSON_Parse(ch_nth_type(&h, "edit", 0));
  cr_assert_not_null(j);
  cr_assert_str_eq(cJSON_GetObjectItem(j, "client_msg_id")->valuestring, e);
  cr_assert_str_eq(cJSON_GetObjectItem(j, "conversation_id")->valuestring,
                   "c");
  cr_assert_str_eq(cJSON_GetObjectItem(j, "target_id")->valuestring, "42");
  cr_assert_str_eq(cJSON_GetObjectItem(j, "body")->valuestring, "better");
  cJSON_Delete(j);
  j = cJSON_Parse(ch_nth_type(&h, "delete", 0));
  cr_assert_str_eq(cJSON_GetObjectItem(j, "client_msg_id")->valuestring, d);
  cr_assert_str_eq(cJSON_GetObjectItem(j, "target_id")->valuestring, "43");
  cr_assert_null(cJSON_GetObjectItem(j, "body"), "a delete has no body");
  cJSON_Delete(j);
  cr_assert_eq(chat_client_outbox_len(h.c), 2);
  cr_assert_eq(ch_count_type(&h, "send", 0), 0);
}

Test(send, edit_and_delete_validate_input) {
  char id[CHAT_CLIENT_MSG_ID_BUF];
  cr_assert_eq(chat_client_edit(h.c, "bad conv", 1, "x", 1, id, 0),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_edit(h.c, "c", 0, "x", 1, id, 0), CHAT_ERR_INVAL);
  cr_assert(strstr(chat_client_errmsg(h.c), "target_id"));
  cr_assert_eq(chat_client_edit(h.c, "c", (uint64_t)INT64_MAX + 1, "x", 1,
                                id, 0),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_edit(h.c, "c", 1, "\xff", 1, id, 0),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_edit(h.c, "c", 1, NULL, 1, id, 0),
               CHAT_ERR_INVAL);
  char *big = calloc(1, 65537);
  memset(big, 'a', 65537);
  cr_assert_eq(chat_client_edit(h.c, "c", 1, big, 65537, id, 0),
               CHAT_ERR_TOO_LARGE);
  free(big);
  cr_assert_eq(chat_client_delete(h.c, "c", 0, id, 0), CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_delete(NULL, "c", 1, id, 0), CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_edit(NULL, "c", 1, "x", 1, id, 0),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  /* The largest id is fine, an empty edit body too. */
  cr_assert_eq(chat_client_edit(h.c, "c", (uint64_t)INT64_MAX, "", 0, NULL,
                                0),
               CHAT_OK);
}

Test(send, a_store_failure_refuses_an_edit) {
  ch_store_fail(&h, true);
  cr_assert_eq(chat_client_edit(h.c, "c", 5, "x", 1, NULL, h.now),
               CHAT_ERR_MODULE);
  cr_assert_eq(chat_client_delete(h.c, "c", 5, NULL, h.now),
               CHAT_ERR_MODULE);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  ch_store_fail(&h, false);
  ch_connect(&h);
  cr_assert_eq(ch_count_type(&h, "edit", 0) + ch_count_type(&h, "delete", 0),
               0);
}

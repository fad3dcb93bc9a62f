/* The outbox (lib/client/outbox.c): unacked sends flushed in order with
 * stable client_msg_ids across reconnects and process restarts, acks
 * (duplicate ones too), rate-limited sends retried, refused sends dropped,
 * and an ack the store cannot record. Edits and deletes (section 8) the
 * same way, applied to the local copy on their ack; their refusals say
 * which entry and target they were. */
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

/* ------------------------------------------------------------------------
 * Edits and deletes (PROTOCOL.md section 8) through the outbox */

typedef struct stored {
  int n;
  char body[64];
  bool deleted, edited;
} stored;

static void keep_one(void *ud, const chat_client_message *m) {
  stored *s = ud;
  s->n++;
  snprintf(s->body, sizeof s->body, "%.*s", (int)m->message->body.len,
           m->message->body.ptr);
  s->deleted = m->message->deleted;
  s->edited = m->message->has_edited_ts;
}

static stored stored_msg(const char *conv, uint64_t id) {
  stored s = {.n = 0};
  cr_assert_eq(chat_client_get_message(h.c, conv, id, keep_one, &s), CHAT_OK);
  return s;
}

/* Our own message, then our edit of it: out in order with the sends,
 * again after a reconnect with the same id, and on the ack the edit is
 * applied to the local copy and reported. */
Test(outbox, an_edit_is_retried_then_applied_on_its_ack) {
  ch_connect(&h);
  char s1[CHAT_CLIENT_MSG_ID_BUF], e1[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "c", "tpyo", 4, s1, h.now);
  ch_ack(&h, s1, "50", false);
  cr_assert_str_eq(stored_msg("c", 50).body, "tpyo");
  cr_assert_eq(chat_client_edit(h.c, "c", 50, "typo", 4, e1, h.now), CHAT_OK);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "edit", 0), 1);
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  size_t from = h.n_out;
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "edit", from), 1, "sent again");
  cr_assert(strstr(h.out[h.n_out - 1], e1), "with the same id");
  cr_assert_eq(chat_client_outbox_len(h.c), 1);
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  /* The server stored it before the first connection dropped. */
  ch_ack(&h, e1, "51", true);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  const ch_event *a = ch_last_ev(&h, "ack");
  const ch_event *c = ch_last_ev(&h, "changed");
  cr_assert_str_eq(a->a, e1);
  cr_assert_not_null(c);
  cr_assert_str_eq(c->a, "50");
  cr_assert_str_eq(c->body, "typo");
  cr_assert(c->edited);
  cr_assert_gt(c - h.ev, a - h.ev, "changed after the ack");
  stored s = stored_msg("c", 50);
  cr_assert_str_eq(s.body, "typo");
  cr_assert(s.edited);
  /* The entry itself is in the store, as ours. */
  cr_assert_eq(stored_msg("c", 51).n, 1);
  /* A second (crossing) ack changes nothing more. */
  ch_ack(&h, e1, "51", true);
  cr_assert_eq(ch_count_ev(&h, "changed"), 1);
}

Test(outbox, a_delete_acked_erases_the_local_copy) {
  ch_connect(&h);
  ch_msg(&h, "g", "70", "bob"); /* an admin deletes bob's message */
  char d[CHAT_CLIENT_MSG_ID_BUF];
  cr_assert_eq(chat_client_delete(h.c, "g", 70, d, h.now), CHAT_OK);
  cr_assert_str_eq(stored_msg("g", 70).body, "hi 70",
                   "nothing changes before the ack");
  ch_ack(&h, d, "71", false);
  stored s = stored_msg("g", 70);
  cr_assert(s.deleted);
  cr_assert_str_eq(s.body, "");
  cr_assert(ch_last_ev(&h, "changed")->flag);
}

/* forbidden and not_found end the entry: it leaves the outbox, the app
 * hears which edit or delete it was, and it is not sent again. */
Test(outbox, a_refused_edit_or_delete_leaves_the_outbox) {
  ch_connect(&h);
  char e[CHAT_CLIENT_MSG_ID_BUF], d[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_edit(h.c, "c", 30, "mine now", 8, e, h.now);
  chat_client_delete(h.c, "c", 31, d, h.now);
  char f[256];
  snprintf(f, sizeof f,
           "{\"type\":\"error\",\"code\":\"forbidden\",\"message\":\"not "
           "yours\",\"ref\":\"%s\"}",
           e);
  ch_feed(&h, f);
  const ch_event *er = ch_last_ev(&h, "error");
  cr_assert_str_eq(er->a, e);
  cr_assert_str_eq(er->b, "forbidden");
  cr_assert_eq(er->op, CHAT_FRAME_EDIT);
  cr_assert_eq(er->target, 30);
  cr_assert_not(er->flag, "not retried");
  snprintf(f, sizeof f,
           "{\"type\":\"error\",\"code\":\"not_found\",\"message\":\"no such "
           "message\",\"ref\":\"%s\"}",
           d);
  ch_feed(&h, f);
  er = ch_last_ev(&h, "error");
  cr_assert_str_eq(er->b, "not_found");
  cr_assert_eq(er->op, CHAT_FRAME_DELETE);
  cr_assert_eq(er->target, 31);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  size_t from = h.n_out;
  ch_connect(&h);
  cr_assert_eq(ch_count_type(&h, "edit", from) +
                   ch_count_type(&h, "delete", from),
               0);
  /* A refused send says it was a send. */
  char s[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "c", "x", 1, s, h.now);
  snprintf(f, sizeof f,
           "{\"type\":\"error\",\"code\":\"not_member\",\"message\":\"no\","
           "\"ref\":\"%s\"}",
           s);
  ch_feed(&h, f);
  cr_assert_eq(ch_last_ev(&h, "error")->op, CHAT_FRAME_SEND);
  cr_assert_eq(ch_last_ev(&h, "error")->target, 0);
}

Test(outbox, a_rate_limited_delete_is_retried_with_its_id) {
  ch_connect(&h);
  char d[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_delete(h.c, "c", 31, d, h.now);
  ch_drain(&h);
  cr_assert_eq(ch_count_type(&h, "delete", 0), 1);
  char f[256];
  snprintf(f, sizeof f,
           "{\"type\":\"error\",\"code\":\"rate_limited\",\"message\":\"slow"
           "\",\"ref\":\"%s\",\"retry_after_ms\":1500}",
           d);
  ch_feed(&h, f);
  cr_assert(ch_last_ev(&h, "error")->flag, "retrying");
  size_t from = h.n_out;
  ch_advance(&h, 1499);
  cr_assert_eq(ch_count_type(&h, "delete", from), 0);
  ch_advance(&h, 1);
  cr_assert_eq(ch_count_type(&h, "delete", from), 1);
  cr_assert(strstr(h.out[h.n_out - 1], d));
}

/* An edit and a delete queued offline survive the process, go out in
 * order with their ids after the restart, and apply on their acks. */
Test(outbox_file, edits_and_deletes_survive_restart) {
  ch_connect(&h);
  ch_msg(&h, "c", "10", "alice"); /* our own, from another device */
  ch_msg(&h, "c", "11", "alice");
  chat_client_on_close(h.c, 1006, h.now);
  char s[CHAT_CLIENT_MSG_ID_BUF], e[CHAT_CLIENT_MSG_ID_BUF],
      d[CHAT_CLIENT_MSG_ID_BUF];
  chat_client_send(h.c, "c", "before", 6, s, h.now);
  chat_client_edit(h.c, "c", 10, "edited offline", 14, e, h.now);
  chat_client_delete(h.c, "c", 11, d, h.now);
  ch_close(&h); /* the process dies */
  ch_reset_log(&h);
  cr_assert_eq(ch_open(&h, dir.path, NULL), CHAT_OK);
  cr_assert_eq(chat_client_outbox_len(h.c), 3);
  ch_connect(&h);
  /* send, edit, delete: the order they were made in. */
  size_t i_s = 0, i_e = 0, i_d = 0;
  for (size_t i = 0; i < h.n_out; i++) {
    if (strstr(h.out[i], s))
      i_s = i;
    if (strstr(h.out[i], e))
      i_e = i;
    if (strstr(h.out[i], d))
      i_d = i;
  }
  cr_assert(i_s && i_e && i_d);
  cr_assert(i_s < i_e && i_e < i_d);
  cr_assert(strstr(h.out[i_e], "\"type\":\"edit\""));
  cr_assert(strstr(h.out[i_e], "\"target_id\":\"10\""));
  cr_assert(strstr(h.out[i_e], "edited offline"));
  cr_assert(strstr(h.out[i_d], "\"type\":\"delete\""));
  ch_ack(&h, s, "20", false);
  ch_ack(&h, e, "21", false);
  ch_ack(&h, d, "22", false);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  cr_assert_str_eq(stored_msg("c", 10).body, "edited offline");
  cr_assert(stored_msg("c", 11).deleted);
  /* And after one more restart nothing is left to send. */
  ch_close(&h);
  ch_reset_log(&h);
  cr_assert_eq(ch_open(&h, dir.path, NULL), CHAT_OK);
  cr_assert_eq(chat_client_outbox_len(h.c), 0);
  cr_assert(stored_msg("c", 11).deleted);
}

/* OOM torture (STYLE 2.11): one scenario touching every part of the client
 * (outbox, resume, live messages, REST gap paging, marks, typing, peers,
 * presence, acks, error frames, timers, reconnect; edits, deletes and
 * admin calls) is run once per
 * allocation with that allocation failing. Every run must end without a
 * crash and with every block the client and its store allocated released
 * (ASan builds also check for stray frees and leaks). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "client_harness.h"
#include "fail_alloc.h"

static void scenario(ch *h) {
  char id1[CHAT_CLIENT_MSG_ID_BUF] = "", id2[CHAT_CLIENT_MSG_ID_BUF] = "";
  chat_client_send(h->c, "c", "one", 3, id1, h->now);
  chat_client_send(h->c, "c", "two", 3, id2, h->now);
  chat_client_mark_read(h->c, "c", 3, h->now);
  const char *ids[] = {"bob", "carol"};
  chat_client_watch_presence(h->c, ids, 2, h->now);
  ch_open_socket(h);
  ch_hello(h, 1000);
  ch_feed(h, "{\"type\":\"history\",\"conversation_id\":\"c\",\"messages\":["
             "{\"message_id\":\"5\",\"conversation_id\":\"c\",\"sender_id\":"
             "\"bob\",\"body\":\"a\",\"server_ts\":1,\"client_msg_id\":\"q\"}"
             "],\"complete\":false}");
  ch_feed(h, "{\"type\":\"resume_failed\",\"conversation_id\":\"d\","
             "\"reason\":\"too_old\"}");
  ch_feed(h, "{\"type\":\"resumed\",\"conversations\":1,\"messages\":1}");
  ch_feed(h, "{\"type\":\"conversation\",\"conversation\":{"
             "\"conversation_id\":\"c\",\"type\":\"group\",\"name\":\"g\","
             "\"members\":[\"alice\",\"bob\"],\"last_message\":null,"
             "\"unread_count\":0,\"last_read_message_id\":null}}");
  ch_feed(h, "{\"type\":\"message\",\"message_id\":\"7\",\"conversation_id\":"
             "\"c\",\"sender_id\":\"bob\",\"body\":\"b\",\"server_ts\":1,"
             "\"client_msg_id\":\"r\"}");
  ch_feed(h, "{\"type\":\"typing\",\"conversation_id\":\"c\",\"user_id\":"
             "\"bob\",\"is_typing\":true}");
  chat_client_typing(h->c, "c", h->now);
  ch_drain(h);
  chat_client_request r = {.version = CHAT_CLIENT_REQUEST_V1};
  for (int i = 0; i < 4 &&
                  chat_client_next_request(h->c, &r) == CHAT_OK; i++) {
    const char *page =
        "{\"messages\":[{\"message_id\":\"8\",\"conversation_id\":\"c\","
        "\"sender_id\":\"bob\",\"body\":\"p\",\"server_ts\":1,"
        "\"client_msg_id\":\"s\"}],\"has_more\":false}";
    chat_client_on_response(h->c, r.id, 200, page, strlen(page), h->now);
  }
  uint32_t rid;
  chat_client_fetch_conversations(h->c, &rid, h->now);
  if (chat_client_next_request(h->c, &r) == CHAT_OK)
    chat_client_on_response(h->c, r.id, 503, NULL, 0, h->now);
  char f[256];
  snprintf(f, sizeof f, "{\"type\":\"ack\",\"client_msg_id\":\"%s\","
           "\"message_id\":\"9\",\"server_ts\":1}", id1);
  ch_feed(h, f);
  snprintf(f, sizeof f, "{\"type\":\"error\",\"code\":\"rate_limited\","
           "\"message\":\"m\",\"ref\":\"%s\",\"retry_after_ms\":5}", id2);
  ch_feed(h, f);
  ch_feed(h, "not json");
  /* Section 8: an edit and a delete through the outbox, entries applied
   * live (one before its target), admin and member calls. */
  char e1[CHAT_CLIENT_MSG_ID_BUF] = "", d1[CHAT_CLIENT_MSG_ID_BUF] = "";
  chat_client_edit(h->c, "c", 9, "one!", 4, e1, h->now);
  chat_client_delete(h->c, "c", 7, d1, h->now);
  snprintf(f, sizeof f, "{\"type\":\"ack\",\"client_msg_id\":\"%s\","
           "\"message_id\":\"10\",\"server_ts\":2}", e1);
  ch_feed(h, f);
  snprintf(f, sizeof f, "{\"type\":\"error\",\"code\":\"forbidden\","
           "\"message\":\"m\",\"ref\":\"%s\"}", d1);
  ch_feed(h, f);
  ch_entry(h, "c", "11", "bob", "edit", "8", "p2");
  ch_entry(h, "c", "12", "bob", "delete", "5", "");
  ch_entry(h, "c", "13", "bob", "edit", "20", "early");
  ch_msg(h, "c", "20", "bob");
  chat_client_add_admin(h->c, "c", "bob", &rid, h->now);
  chat_client_remove_member(h->c, "c", "carol", &rid, h->now);
  chat_client_leave(h->c, "d", &rid, h->now);
  for (int i = 0; i < 6 &&
                  chat_client_next_request(h->c, &r) == CHAT_OK; i++) {
    const char *conv =
        strstr(r.path, "admins") || strcmp(r.method, "GET") == 0
            ? "{\"conversation_id\":\"c\",\"type\":\"group\","
              "\"name\":\"g\",\"members\":[\"alice\",\"bob\"],"
              "\"admins\":[\"alice\",\"bob\"],\"last_message\":null,"
              "\"unread_count\":0,\"last_read_message_id\":null}"
            : "{\"removed\":true}";
    chat_client_on_response(h->c, r.id, 200, conv, strlen(conv), h->now);
  }
  ch_advance(h, 3000);
  chat_client_on_close(h->c, 1006, h->now);
  ch_advance(h, 70000);
  ch_connect(h);
}

Test(client_oom, every_allocation_may_fail) {
  static ch h;
  long total = -1;
  for (long fail_at = -1;; fail_at++) {
    memset(&h, 0, sizeof h);
    fail_alloc fa;
    fail_alloc_init(&fa, fail_at);
    if (ch_open_alloc(&h, ":memory:", NULL, &fa.a) == CHAT_OK) {
      scenario(&h);
      if (fail_at == -1) {
        /* Without failures the scenario reaches every part. */
        cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_READY);
        cr_assert_eq(ch_count_ev(&h, "ack"), 2);
        cr_assert_geq(ch_count_ev(&h, "changed"), 3);
        cr_assert_eq(ch_count_ev(&h, "done"), 3);
        cr_assert_geq(ch_count_ev(&h, "message"), 3);
        cr_assert_geq(ch_count_type(&h, "send", 0), 3);
      }
      ch_close(&h);
    }
    ch_reset_log(&h);
    cr_assert_eq(fa.live, 0, "fail_at %ld: %ld blocks leaked", fail_at,
                 fa.live);
    if (fail_at == -1) {
      total = fa.count;
      cr_assert_gt(total, 20);
      cr_log_info("%ld allocations", total);
    } else if (fail_at >= total) {
      break;
    }
  }
}

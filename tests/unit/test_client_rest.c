/* REST as data: resume gaps (resume_failed, or a history that never
 * completed) are paged with ?after= until has_more is false; transient
 * failures are retried after a backoff delay, refusals are final; the
 * conversation list, create and older history land in the store and the
 * callbacks. */
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

TestSuite(rest, .init = setup, .fini = teardown);

static void live(const char *conv, uint64_t id) {
  char f[512];
  snprintf(f, sizeof f,
           "{\"type\":\"message\",\"message_id\":\"%llu\",\"conversation_id\":"
           "\"%s\",\"sender_id\":\"bob\",\"body\":\"b\",\"server_ts\":1,"
           "\"client_msg_id\":\"k%llu\"}",
           (unsigned long long)id, conv, (unsigned long long)id);
  ch_feed(&h, f);
}

/* A REST page of messages lo..hi of conv (oldest first unless reverse). */
static char *page(const char *conv, uint64_t lo, uint64_t hi, bool more,
                  bool reverse) {
  size_t cap = 256 + (hi - lo + 1) * 200;
  char *b = malloc(cap);
  size_t k = (size_t)snprintf(b, cap, "{\"messages\":[");
  for (uint64_t i = 0; lo && i <= hi - lo; i++) {
    uint64_t id = reverse ? hi - i : lo + i;
    k += (size_t)snprintf(b + k, cap - k,
                          "%s{\"message_id\":\"%llu\",\"conversation_id\":"
                          "\"%s\",\"sender_id\":\"bob\",\"body\":\"p\","
                          "\"server_ts\":1,\"client_msg_id\":\"r%llu\"}",
                          i ? "," : "", (unsigned long long)id, conv,
                          (unsigned long long)id);
  }
  snprintf(b + k, cap - k, "],\"has_more\":%s}", more ? "true" : "false");
  return b;
}

static chat_client_request take(void) {
  chat_client_request r = {.version = CHAT_CLIENT_REQUEST_V1};
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
  cr_assert_eq(chat_client_next_request(h.c, &r), CHAT_OK);
  return r;
}

static void answer(uint32_t id, int status, char *body) {
  cr_assert_eq(chat_client_on_response(h.c, id, status, body,
                                       body ? strlen(body) : 0, h.now),
               CHAT_OK);
  free(body);
}

/* Connected, with conv "c" seen up to 10 before this connection. */
static void resume_with_seen(void) {
  ch_connect(&h);
  live("c", 10);
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_reset_log(&h);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
}

Test(rest, resume_failed_pages_until_gap_closed) {
  resume_with_seen();
  ch_feed(&h, "{\"type\":\"resume_failed\",\"conversation_id\":\"c\","
              "\"reason\":\"too_old\"}");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_READY);
  cr_assert_not(ch_last_ev(&h, "progress")->flag, "not complete yet");
  cr_assert_eq(ch_last_ev(&h, "progress")->n, 1);

  chat_client_request r = take();
  cr_assert_str_eq(r.method, "GET");
  cr_assert_str_eq(r.path,
                   "/api/v1/conversations/c/messages?after=10&limit=200");
  cr_assert_null(r.body);
  /* Only one request at a time per gap. */
  chat_client_request r2 = {.version = CHAT_CLIENT_REQUEST_V1};
  cr_assert_eq(chat_client_next_request(h.c, &r2), CHAT_ERR_AGAIN);
  answer(r.id, 200, page("c", 11, 13, true, false));
  cr_assert_eq(ch_count_ev(&h, "message"), 3);
  cr_assert_eq(ch_last_ev(&h, "message")->n, CHAT_ORIGIN_REST);
  uint64_t ls;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 13);

  r = take();
  cr_assert_str_eq(r.path,
                   "/api/v1/conversations/c/messages?after=13&limit=200");
  answer(r.id, 200, page("c", 14, 15, false, false));
  cr_assert_eq(ch_count_ev(&h, "message"), 5);
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 15);
  cr_assert(ch_last_ev(&h, "progress")->flag, "complete");
  cr_assert_eq(ch_last_ev(&h, "progress")->n, 0);
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
  /* The pages also make this device claim delivery (13 at once, 15 after
   * the receipt interval). */
  ch_advance(&h, 1000);
  const char *d = NULL;
  for (size_t i = 0; (d = ch_nth_type(&h, "delivered", i)); i++)
    if (strstr(d, "\"up_to_message_id\":\"15\""))
      break;
  cr_assert_not_null(d);
}

Test(rest, incomplete_history_opens_gap) {
  resume_with_seen();
  ch_feed(&h, "{\"type\":\"history\",\"conversation_id\":\"c\",\"messages\":["
              "{\"message_id\":\"11\",\"conversation_id\":\"c\",\"sender_id\":"
              "\"bob\",\"body\":\"a\",\"server_ts\":1,\"client_msg_id\":\"q\"}"
              "],\"complete\":false}");
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":1,\"messages\":1}");
  chat_client_request r = take();
  cr_assert_str_eq(r.path,
                   "/api/v1/conversations/c/messages?after=11&limit=200");
  answer(r.id, 200, page("c", 12, 12, false, false));
  cr_assert(ch_last_ev(&h, "progress")->flag);
}

Test(rest, complete_history_needs_no_rest) {
  resume_with_seen();
  ch_feed(&h, "{\"type\":\"history\",\"conversation_id\":\"c\",\"messages\":["
              "{\"message_id\":\"11\",\"conversation_id\":\"c\",\"sender_id\":"
              "\"bob\",\"body\":\"a\",\"server_ts\":1,\"client_msg_id\":\"q\"}"
              "],\"complete\":false}");
  ch_feed(&h, "{\"type\":\"history\",\"conversation_id\":\"c\",\"messages\":["
              "{\"message_id\":\"12\",\"conversation_id\":\"c\",\"sender_id\":"
              "\"bob\",\"body\":\"a\",\"server_ts\":1,\"client_msg_id\":\"r\"}"
              "],\"complete\":true}");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":1,\"messages\":2}");
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
  cr_assert(ch_last_ev(&h, "progress")->flag);
}

Test(rest, not_member_is_not_paged) {
  resume_with_seen();
  ch_feed(&h, "{\"type\":\"resume_failed\",\"conversation_id\":\"c\","
              "\"reason\":\"not_member\"}");
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
  cr_assert_eq(ch_count_ev(&h, "error"), 1);
}

Test(rest, transient_failures_back_off) {
  resume_with_seen();
  ch_feed(&h, "{\"type\":\"resume_failed\",\"conversation_id\":\"c\","
              "\"reason\":\"too_old\"}");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  chat_client_request r = take();
  answer(r.id, 503, strdup("{}"));
  cr_assert(ch_last_ev(&h, "error")->flag, "retrying");
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST,
                "not at once");
  chat_time_ms d = chat_client_next_deadline(h.c);
  cr_assert_geq(d, h.now + 100);
  cr_assert_leq(d, h.now + 1000);
  ch_advance(&h, d - h.now);
  r = take();
  cr_assert_str_eq(r.path,
                   "/api/v1/conversations/c/messages?after=10&limit=200");
  answer(r.id, 0, NULL); /* no answer at all */
  ch_advance(&h, 2000);
  r = take();
  answer(r.id, 200, page("c", 11, 11, false, false));
  cr_assert(ch_last_ev(&h, "progress")->flag);
}

Test(rest, refusal_is_final) {
  resume_with_seen();
  ch_feed(&h, "{\"type\":\"resume_failed\",\"conversation_id\":\"c\","
              "\"reason\":\"too_old\"}");
  chat_client_request r = take();
  answer(r.id, 403, strdup("{\"error\":{\"code\":\"not_member\"}}"));
  cr_assert_not(ch_last_ev(&h, "error")->flag);
  ch_advance(&h, 120000);
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
  /* A stale or unknown answer is refused. */
  cr_assert_eq(chat_client_on_response(h.c, r.id, 200, "{}", 2, h.now),
               CHAT_ERR_NOT_FOUND);
}

Test(rest, malformed_page_is_reported) {
  resume_with_seen();
  ch_feed(&h, "{\"type\":\"resume_failed\",\"conversation_id\":\"c\","
              "\"reason\":\"too_old\"}");
  chat_client_request r = take();
  answer(r.id, 200, strdup("{\"messages\":[{\"message_id\":1}]}"));
  cr_assert_eq(ch_count_ev(&h, "message"), 0);
  cr_assert_neq(ch_last_ev(&h, "error")->n, CHAT_OK);
  r.id = 0;
}

Test(rest, live_messages_during_gap_do_not_skip_it) {
  resume_with_seen();
  ch_feed(&h, "{\"type\":\"resume_failed\",\"conversation_id\":\"c\","
              "\"reason\":\"too_old\"}");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  live("c", 500);
  uint64_t ls;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 10, "the gap 11..499 is still open");
  chat_client_request r = take();
  cr_assert(strstr(r.path, "after=10"));
  /* The page includes 500 too: stored once, reported once. */
  char *b = page("c", 498, 500, false, false);
  answer(r.id, 200, b);
  cr_assert_eq(ch_count_ev(&h, "message"), 1 + 2);
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 500);
}

Test(rest, conversation_list_and_create) {
  uint32_t id;
  cr_assert_eq(chat_client_fetch_conversations(h.c, &id, h.now), CHAT_OK);
  chat_client_request r = take();
  cr_assert_eq(r.id, id);
  cr_assert_str_eq(r.path, "/api/v1/conversations?limit=100");
#define CONV                                                             \
  "{\"conversation_id\":\"%s\",\"type\":\"group\",\"name\":\"G\","         \
  "\"members\":[\"alice\",\"bob\",\"carol\"],\"last_message\":null,"        \
  "\"unread_count\":0,\"last_read_message_id\":null}"
  char body[1024], c1[256], c2[256];
  snprintf(c1, sizeof c1, CONV, "g1");
  snprintf(c2, sizeof c2, CONV, "g2");
  snprintf(body, sizeof body,
           "{\"conversations\":[%s,%s],\"next_cursor\":\"5:g2@x\"}", c1, c2);
  answer(r.id, 200, strdup(body));
  cr_assert_eq(ch_count_ev(&h, "conversation"), 2);
  cr_assert_eq(ch_last_ev(&h, "conversation")->n, 3);
  r = take();
  cr_assert_str_eq(r.path,
                   "/api/v1/conversations?limit=100&cursor=5%3Ag2%40x");
  answer(r.id, 200, strdup("{\"conversations\":[],\"next_cursor\":null}"));
  cr_assert_eq(ch_count_ev(&h, "done"), 1);
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_OK);

  const char *members[] = {"bob"};
  cr_assert_eq(chat_client_create_conversation(h.c, NULL, members, 1, &id,
                                               h.now), CHAT_OK);
  r = take();
  cr_assert_str_eq(r.method, "POST");
  cr_assert_str_eq(r.path, "/api/v1/conversations");
  cr_assert_str_eq(r.body, "{\"type\":\"direct\",\"members\":[\"bob\"]}");
  cr_assert_eq(r.body_len, strlen(r.body));
  snprintf(c1, sizeof c1,
           "{\"conversation_id\":\"d1\",\"type\":\"direct\",\"name\":null,"
           "\"members\":[\"alice\",\"bob\"],\"last_message\":null,"
           "\"unread_count\":0,\"last_read_message_id\":null}");
  answer(r.id, 201, strdup(c1));
  cr_assert_str_eq(ch_last_ev(&h, "conversation")->a, "d1");
  cr_assert_eq(chat_client_create_conversation(h.c, NULL, members, 0, &id,
                                               h.now), CHAT_ERR_INVAL);
}

static void collect(void *ud, const chat_conversation *c) {
  char *out = ud;
  strcat(out, c->conversation_id);
  strcat(out, " ");
}

Test(rest, stored_conversations_are_listed) {
  ch_connect(&h);
  ch_feed(&h, "{\"type\":\"conversation\",\"conversation\":{"
              "\"conversation_id\":\"old\",\"type\":\"direct\",\"name\":null,"
              "\"members\":[\"alice\",\"bob\"],\"last_message\":null,"
              "\"unread_count\":0,\"last_read_message_id\":null}}");
  ch_feed(&h, "{\"type\":\"conversation\",\"conversation\":{"
              "\"conversation_id\":\"new\",\"type\":\"direct\",\"name\":null,"
              "\"members\":[\"alice\",\"carol\"],\"last_message\":null,"
              "\"unread_count\":0,\"last_read_message_id\":null}}");
  live("old", 3);
  live("new", 7);
  char out[128] = "";
  cr_assert_eq(chat_client_list_conversations(h.c, collect, out), CHAT_OK);
  cr_assert_str_eq(out, "new old ");
}

Test(rest, older_history_is_stored_oldest_first) {
  uint32_t id;
  cr_assert_eq(chat_client_load_older(h.c, "c", 100, 3, &id, h.now), CHAT_OK);
  chat_client_request r = take();
  cr_assert_str_eq(r.path,
                   "/api/v1/conversations/c/messages?before=100&limit=3");
  answer(r.id, 200, page("c", 97, 99, true, true));
  cr_assert_eq(ch_count_ev(&h, "message"), 3);
  cr_assert_str_eq(h.ev[0].a, "97");
  cr_assert_eq(h.ev[0].n, CHAT_ORIGIN_OLDER);
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_OK);
  uint64_t ls;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 0, "older pages say nothing about the newest");
}

Test(rest, app_requests_give_up_after_retries) {
  uint32_t id;
  chat_client_fetch_conversations(h.c, &id, h.now);
  for (int i = 0; i < 5; i++) {
    ch_advance(&h, 120000);
    chat_client_request r = take();
    answer(r.id, 500, NULL);
  }
  cr_assert_eq(ch_count_ev(&h, "done"), 1);
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_ERR_MODULE);
  ch_advance(&h, 120000);
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
}

/* The server cut its resume answer short (error too_large, ref resume):
 * the client walks the conversation list over REST and pages every
 * conversation with messages past its last_seen, without bothering the
 * app's request callback. */
Test(rest, a_resume_cut_short_is_completed_over_rest) {
  resume_with_seen();
  ch_feed(&h, "{\"type\":\"error\",\"code\":\"too_large\",\"message\":\"m\","
              "\"ref\":\"resume\"}");
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  chat_client_request r = take();
  cr_assert_str_eq(r.method, "GET");
  cr_assert_str_eq(r.path, "/api/v1/conversations?limit=100");
  const char *body =
      "{\"conversations\":["
      "{\"conversation_id\":\"c\",\"type\":\"direct\",\"name\":null,"
      "\"members\":[\"alice\",\"bob\"],\"last_message\":{\"message_id\":\"20\","
      "\"conversation_id\":\"c\",\"sender_id\":\"bob\",\"body\":\"x\","
      "\"server_ts\":1,\"client_msg_id\":\"k20\"},\"unread_count\":1,"
      "\"last_read_message_id\":null},"
      "{\"conversation_id\":\"q\",\"type\":\"direct\",\"name\":null,"
      "\"members\":[\"alice\",\"bob\"],\"last_message\":null,"
      "\"unread_count\":0,\"last_read_message_id\":null}"
      "],\"next_cursor\":null}";
  answer(r.id, 200, strdup(body));
  cr_assert_eq(ch_count_ev(&h, "done"), 0);
  r = take();
  cr_assert_str_eq(r.path,
                   "/api/v1/conversations/c/messages?after=10&limit=200");
  answer(r.id, 200, page("c", 11, 20, false, false));
  uint64_t ls;
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 20);
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST,
                "q has no messages: nothing to page");
  cr_assert(ch_last_ev(&h, "progress")->flag, "complete");
}

/* R3: the caller sets the request's version; 0 and newer are refused (with
 * a reason), and nothing is handed out or taken off the queue. */
Test(rest, request_version_is_checked) {
  uint32_t id;
  cr_assert_eq(chat_client_fetch_conversations(h.c, &id, h.now), CHAT_OK);
  uint32_t bad[] = {0, CHAT_CLIENT_REQUEST_V1 + 1};
  for (size_t i = 0; i < 2; i++) {
    chat_client_request r;
    memset(&r, 0x5a, sizeof r);
    r.version = bad[i];
    cr_assert_eq(chat_client_next_request(h.c, &r), CHAT_ERR_INVAL);
    cr_assert(strstr(chat_client_errmsg(h.c), "out.version"), "%s",
              chat_client_errmsg(h.c));
    cr_assert_eq(r.id, 0x5a5a5a5a, "nothing written");
    cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST, "still queued");
  }
  chat_client_request r = take();
  cr_assert_eq(r.version, CHAT_CLIENT_REQUEST_V1);
  cr_assert_eq(r.id, id);
}

/* A page holding a message of another conversation is refused whole:
 * filing it would put it in the wrong chat. */
Test(rest, page_of_another_conversation_is_refused) {
  resume_with_seen();
  ch_feed(&h, "{\"type\":\"resume_failed\",\"conversation_id\":\"c\","
              "\"reason\":\"too_old\"}");
  chat_client_request r = take();
  char *b = page("c", 11, 12, false, false);
  char *p = strstr(b, "\"conversation_id\":\"c\"");
  cr_assert_not_null(p);
  p[19] = 'x'; /* "c" -> "x" in the first message */
  answer(r.id, 200, b);
  cr_assert_eq(ch_count_ev(&h, "message"), 0);
  const ch_event *e = ch_last_ev(&h, "error");
  cr_assert_eq(e->n, CHAT_ERR_BAD_VALUE);
}

/* A REST 401 is no module error: the request is held (not failed), the
 * client goes UNAUTHORIZED, closes its socket and asks for a token; the
 * request goes out again after the new token. */
Test(rest, unauthorized_answer_holds_the_request) {
  chat_client_set_token(h.c, "t1", 2, h.now);
  ch_connect(&h);
  uint32_t id;
  cr_assert_eq(chat_client_fetch_conversations(h.c, &id, h.now), CHAT_OK);
  cr_assert_eq(chat_client_load_older(h.c, "c", 0, 10, NULL, h.now),
               CHAT_OK);
  chat_client_request r1 = take(), r2 = take();
  cr_assert_eq(chat_client_on_response(h.c, r1.id, 401, "{}", 2, h.now),
               CHAT_OK);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  cr_assert_eq(ch_count_ev(&h, "auth"), 1);
  cr_assert_eq(ch_last_ev(&h, "auth")->n, CHAT_AUTH_REFUSED);
  cr_assert_eq(ch_count_ev(&h, "done"), 0, "not failed");
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CLOSE,
            "the socket goes too");
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
  chat_client_request rx = {.version = CHAT_CLIENT_REQUEST_V1};
  cr_assert_eq(chat_client_next_request(h.c, &rx), CHAT_ERR_AGAIN);
  /* The other request in flight meets the same answer: told once. */
  cr_assert_eq(chat_client_on_response(h.c, r2.id, 401, NULL, 0, h.now),
               CHAT_OK);
  cr_assert_eq(ch_count_ev(&h, "auth"), 1);
  /* The socket closes: no backoff, still waiting for a token. */
  chat_client_on_close(h.c, 1000, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  cr_assert_eq(chat_client_next_deadline(h.c), CHAT_TIME_NEVER);
  ch_advance(&h, 600000);
  cr_assert_eq(chat_client_wants(h.c), 0);
  /* A new token: both requests go out again, and the client connects. */
  cr_assert_eq(chat_client_set_token(h.c, "t2", 2, h.now), CHAT_OK);
  cr_assert(chat_client_wants(h.c) & CHAT_CLIENT_WANT_CONNECT);
  chat_client_request a = take(), b = take();
  cr_assert_eq(a.id, r1.id);
  cr_assert_str_eq(a.path, "/api/v1/conversations?limit=100");
  cr_assert_eq(b.id, r2.id);
  answer(a.id, 200, strdup("{\"conversations\":[],\"next_cursor\":null}"));
  cr_assert_eq(ch_count_ev(&h, "done"), 1);
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_OK);
}

/* The app replaced the token after the request went out: its 401 is about
 * the old token, and the request simply goes out again. */
Test(rest, unauthorized_with_a_replaced_token_retries_at_once) {
  chat_client_set_token(h.c, "t1", 2, h.now);
  uint32_t id;
  chat_client_fetch_conversations(h.c, &id, h.now);
  chat_client_request r = take();
  chat_client_set_token(h.c, "t2", 2, h.now);
  answer(r.id, 401, NULL);
  cr_assert_eq(ch_count_ev(&h, "auth"), 0);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_IDLE);
  r = take();
  cr_assert_eq(r.id, id);
}

/* Not started: a 401 still asks for a token; the new one sends the held
 * request and leaves the client IDLE. */
Test(rest, unauthorized_while_idle) {
  chat_client_set_token(h.c, "t1", 2, h.now);
  uint32_t id;
  chat_client_fetch_conversations(h.c, &id, h.now);
  answer(take().id, 401, NULL);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_UNAUTHORIZED);
  cr_assert_eq(ch_count_ev(&h, "auth"), 1);
  chat_client_set_token(h.c, "t2", 2, h.now);
  cr_assert_eq(chat_client_get_state(h.c), CHAT_CLIENT_IDLE);
  cr_assert_eq(take().id, id);
}

Test(rest, register_device) {
  uint32_t id = 0;
  cr_assert_eq(chat_client_register_device(h.c, "fcm", "tok:1/\"x\"", &id,
                                           h.now), CHAT_OK);
  chat_client_request r = take();
  cr_assert_eq(r.id, id);
  cr_assert_str_eq(r.method, "POST");
  cr_assert_str_eq(r.path, "/api/v1/devices");
  cr_assert_str_eq(r.body,
                   "{\"platform\":\"fcm\",\"push_token\":\"tok:1/\\\"x\\\"\"}");
  answer(r.id, 200, strdup("{\"device_id\":\"phone\",\"platform\":\"fcm\"}"));
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_OK);
  /* A server without push support says 501: final, not retried. */
  cr_assert_eq(chat_client_register_device(h.c, "apns", "t", &id, h.now),
               CHAT_OK);
  answer(take().id, 501, strdup("{\"error\":{\"code\":\"internal\"}}"));
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_ERR_MODULE);
  ch_advance(&h, 120000);
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
  cr_assert_eq(chat_client_register_device(h.c, "sms", "t", &id, h.now),
               CHAT_ERR_INVAL);
  cr_assert(strstr(chat_client_errmsg(h.c), "platform"));
  cr_assert_eq(chat_client_register_device(h.c, "fcm", "", &id, h.now),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_register_device(h.c, "fcm", NULL, &id, h.now),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_register_device(h.c, "fcm", "\xff", &id, h.now),
               CHAT_ERR_INVAL);
}

/* ------------------------------------------------------------------------
 * Members and admins (PROTOCOL.md section 8) */

#define GROUP(members, admins)                                                 \
  "{\"conversation_id\":\"g\",\"type\":\"group\",\"name\":\"G\","              \
  "\"members\":[" members "],\"admins\":[" admins "],"                          \
  "\"last_message\":null,\"unread_count\":0,\"last_read_message_id\":null}"

typedef struct conv_seen {
  int n;
  char members[128], admins[128];
} conv_seen;

static void join(char *out, size_t cap, const char *const *ids, size_t n) {
  out[0] = 0;
  for (size_t i = 0; i < n; i++) {
    strncat(out, ids[i], cap - strlen(out) - 2);
    if (i + 1 < n)
      strcat(out, ",");
  }
}

static void find_g(void *ud, const chat_conversation *c) {
  conv_seen *s = ud;
  if (strcmp(c->conversation_id, "g") != 0)
    return;
  s->n++;
  join(s->members, sizeof s->members, c->members, c->n_members);
  join(s->admins, sizeof s->admins, c->admins, c->n_admins);
}

static conv_seen stored_g(void) {
  conv_seen s = {.n = 0};
  cr_assert_eq(chat_client_list_conversations(h.c, find_g, &s), CHAT_OK);
  return s;
}

Test(rest, add_and_remove_admin) {
  uint32_t id;
  cr_assert_eq(chat_client_add_admin(h.c, "g", "bob", &id, h.now), CHAT_OK);
  chat_client_request r = take();
  cr_assert_eq(r.id, id);
  cr_assert_str_eq(r.method, "POST");
  cr_assert_str_eq(r.path, "/api/v1/conversations/g/admins");
  cr_assert_str_eq(r.body, "{\"user_id\":\"bob\"}");
  answer(r.id, 200, strdup(GROUP("\"alice\",\"bob\"", "\"alice\",\"bob\"")));
  cr_assert_str_eq(ch_last_ev(&h, "conversation")->a, "g");
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_OK);
  conv_seen s = stored_g();
  cr_assert_eq(s.n, 1);
  cr_assert_str_eq(s.admins, "alice,bob", "admins are kept in the store");

  cr_assert_eq(chat_client_remove_admin(h.c, "g", "bob", &id, h.now),
               CHAT_OK);
  r = take();
  cr_assert_str_eq(r.method, "DELETE");
  cr_assert_str_eq(r.path, "/api/v1/conversations/g/admins/bob");
  cr_assert_null(r.body);
  answer(r.id, 200, strdup(GROUP("\"alice\",\"bob\"", "\"alice\"")));
  cr_assert_str_eq(stored_g().admins, "alice");
  cr_assert_eq(ch_count_ev(&h, "done"), 2);

  cr_assert_eq(chat_client_add_admin(h.c, "bad id", "bob", &id, h.now),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_add_admin(h.c, "g", NULL, &id, h.now),
               CHAT_ERR_INVAL);
  cr_assert(strstr(chat_client_errmsg(h.c), "user_id"));
  cr_assert_eq(chat_client_remove_admin(h.c, "g", "b b", &id, h.now),
               CHAT_ERR_INVAL);
}

/* What a refusal becomes in on_request_done, with the server's words in
 * on_error. */
Test(rest, member_and_admin_refusals) {
  struct {
    int status;
    const char *body;
    chat_err want;
  } cases[] = {
      {403, "{\"error\":{\"code\":\"forbidden\",\"message\":\"only an admin "
            "may make admins\"}}", CHAT_ERR_DENIED},
      {403, "{\"error\":{\"code\":\"not_member\",\"message\":\"no\"}}",
       CHAT_ERR_NOT_FOUND},
      {404, "{\"error\":{\"code\":\"not_found\",\"message\":\"not a "
            "member\"}}", CHAT_ERR_NOT_FOUND},
      {409, "{\"error\":{\"code\":\"conflict\",\"message\":\"a group keeps "
            "at least one admin\"}}", CHAT_ERR_CONFLICT},
      {400, "not json", CHAT_ERR_MODULE},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint32_t id;
    cr_assert_eq(chat_client_add_admin(h.c, "g", "bob", &id, h.now),
                 CHAT_OK);
    chat_client_request r = take();
    answer(r.id, cases[i].status, strdup(cases[i].body));
    const ch_event *d = ch_last_ev(&h, "done");
    cr_assert_eq(d->n, cases[i].want, "case %zu", i);
    const ch_event *e = ch_last_ev(&h, "error");
    cr_assert_eq(e->http, cases[i].status);
    cr_assert_not(e->flag, "not retried");
  }
  cr_assert_eq(stored_g().n, 0, "nothing stored");
}

Test(rest, remove_member_then_fetches_the_result) {
  uint32_t id;
  cr_assert_eq(chat_client_remove_member(h.c, "g", "carol", &id, h.now),
               CHAT_OK);
  chat_client_request r = take();
  cr_assert_str_eq(r.method, "DELETE");
  cr_assert_str_eq(r.path, "/api/v1/conversations/g/members/carol");
  answer(r.id, 200,
         strdup("{\"conversation_id\":\"g\",\"user_id\":\"carol\","
                "\"removed\":true}"));
  cr_assert_eq(ch_count_ev(&h, "done"), 0, "not done before the fetch");
  r = take();
  cr_assert_eq(r.id, id, "the same request, fetching the result");
  cr_assert_str_eq(r.method, "GET");
  cr_assert_str_eq(r.path, "/api/v1/conversations/g");
  cr_assert_null(r.body);
  answer(r.id, 200, strdup(GROUP("\"alice\",\"bob\"", "\"alice\"")));
  cr_assert_eq(ch_count_ev(&h, "done"), 1);
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_OK);
  cr_assert_str_eq(stored_g().members, "alice,bob");
}

/* A removal retried after its first answer was lost is answered 404 (the
 * first one did it): that is success. */
Test(rest, a_retried_removal_that_already_happened_succeeds) {
  uint32_t id;
  cr_assert_eq(chat_client_remove_member(h.c, "g", "carol", &id, h.now),
               CHAT_OK);
  chat_client_request r = take();
  answer(r.id, 0, NULL);
  ch_advance(&h, 2000);
  r = take();
  cr_assert_str_eq(r.path, "/api/v1/conversations/g/members/carol");
  answer(r.id, 404, strdup("{\"error\":{\"code\":\"not_found\","
                           "\"message\":\"not a member\"}}"));
  r = take();
  cr_assert_str_eq(r.path, "/api/v1/conversations/g");
  answer(r.id, 200, strdup(GROUP("\"alice\",\"bob\"", "\"alice\"")));
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_OK);
}

/* Leaving: the stored copy drops the user and resume stops asking for the
 * conversation; its messages stay. */
Test(rest, leave_stops_resuming_the_conversation) {
  uint32_t id;
  cr_assert_eq(chat_client_leave(h.c, "g", &id, h.now), CHAT_ERR_STATE,
               "the user id comes with hello");
  ch_connect(&h);
  ch_feed(&h, "{\"type\":\"conversation\",\"conversation\":" GROUP(
                  "\"alice\",\"bob\"", "\"alice\"") "}");
  live("g", 5);
  live("c", 6);
  cr_assert_eq(chat_client_leave(h.c, "g", &id, h.now), CHAT_OK);
  chat_client_request r = take();
  cr_assert_str_eq(r.method, "DELETE");
  cr_assert_str_eq(r.path, "/api/v1/conversations/g/members/alice");
  answer(r.id, 200,
         strdup("{\"conversation_id\":\"g\",\"user_id\":\"alice\","
                "\"removed\":true}"));
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_OK);
  conv_seen s = stored_g();
  cr_assert_str_eq(s.members, "bob");
  cr_assert_str_eq(s.admins, "");
  cr_assert_str_eq(ch_last_ev(&h, "conversation")->a, "g");
  uint64_t ls = 1;
  chat_client_last_seen(h.c, "g", &ls);
  cr_assert_eq(ls, 0);
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  size_t from = h.n_out;
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_drain(&h);
  const char *res = NULL;
  for (size_t i = from; i < h.n_out; i++)
    if (strstr(h.out[i], "\"type\":\"resume\""))
      res = h.out[i];
  cr_assert_not_null(res);
  cr_assert(strstr(res, "\"c\":\"6\""), "%s", res);
  cr_assert_null(strstr(res, "\"g\""), "%s", res);
  /* chat_client_remove_member with one's own id is a leave. */
  cr_assert_eq(chat_client_remove_member(h.c, "c", "alice", &id, h.now),
               CHAT_OK);
  r = take();
  answer(r.id, 403, strdup("{\"error\":{\"code\":\"not_member\"}}"));
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_OK,
               "already out (left on another device): done");
  chat_client_last_seen(h.c, "c", &ls);
  cr_assert_eq(ls, 0);
}

/* Removed while away: resume says not_member; the device stops asking and
 * its copy no longer lists the user. A `conversation` frame without the
 * user (removed while online) does the same. */
Test(rest, removed_while_away_or_online) {
  ch_connect(&h);
  ch_feed(&h, "{\"type\":\"conversation\",\"conversation\":" GROUP(
                  "\"alice\",\"bob\"", "\"bob\"") "}");
  live("g", 5);
  chat_client_on_close(h.c, 1006, h.now);
  ch_advance(&h, 60000);
  ch_open_socket(&h);
  ch_hello(&h, 0);
  ch_feed(&h, "{\"type\":\"resume_failed\",\"conversation_id\":\"g\","
              "\"reason\":\"not_member\"}");
  cr_assert_str_eq(stored_g().members, "bob");
  uint64_t ls = 1;
  chat_client_last_seen(h.c, "g", &ls);
  cr_assert_eq(ls, 0);
  ch_feed(&h, "{\"type\":\"resumed\",\"conversations\":0,\"messages\":0}");
  /* Added back, then removed live. */
  ch_feed(&h, "{\"type\":\"conversation\",\"conversation\":" GROUP(
                  "\"alice\",\"bob\"", "\"bob\"") "}");
  live("g", 9);
  chat_client_last_seen(h.c, "g", &ls);
  cr_assert_eq(ls, 9);
  ch_feed(&h, "{\"type\":\"conversation\",\"conversation\":" GROUP(
                  "\"bob\"", "\"bob\"") "}");
  chat_client_last_seen(h.c, "g", &ls);
  cr_assert_eq(ls, 0);
  cr_assert_str_eq(stored_g().members, "bob");
}

Test(rest, fetch_conversation_checks_the_answer) {
  uint32_t id;
  cr_assert_eq(chat_client_fetch_conversation(h.c, "g", &id, h.now), CHAT_OK);
  chat_client_request r = take();
  cr_assert_str_eq(r.path, "/api/v1/conversations/g");
  answer(r.id, 200,
         strdup("{\"conversation_id\":\"other\",\"type\":\"direct\","
                "\"name\":null,\"members\":[\"a\",\"b\"],\"admins\":[],"
                "\"last_message\":null,\"unread_count\":0,"
                "\"last_read_message_id\":null}"));
  cr_assert_neq(ch_last_ev(&h, "done")->n, CHAT_OK);
  cr_assert_eq(ch_count_ev(&h, "conversation"), 0, "not stored");
  cr_assert_eq(chat_client_fetch_conversation(h.c, "bad id", &id, h.now),
               CHAT_ERR_INVAL);
}

/* The daily cap on new direct conversations (section 8) answers 429: not
 * retried, reported as CHAT_ERR_RATE_LIMITED. */
Test(rest, a_capped_create_is_not_retried) {
  const char *members[] = {"stranger"};
  uint32_t id;
  cr_assert_eq(chat_client_create_conversation(h.c, NULL, members, 1, &id,
                                               h.now),
               CHAT_OK);
  chat_client_request r = take();
  answer(r.id, 429, strdup("{\"error\":{\"code\":\"rate_limited\","
                           "\"message\":\"too many new direct "
                           "conversations today\"}}"));
  cr_assert_eq(ch_last_ev(&h, "done")->n, CHAT_ERR_RATE_LIMITED);
  cr_assert_not(ch_last_ev(&h, "error")->flag);
  ch_advance(&h, 120000);
  cr_assert_not(chat_client_wants(h.c) & CHAT_CLIENT_WANT_REST);
}

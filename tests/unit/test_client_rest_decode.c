/* REST answer bodies (lib/client/rest_decode.c): the message and
 * conversation objects are held to the frame rules, optional nulls are
 * absent, unknown members ignored, and every refusal names its field path
 * and rule. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "client/client_internal.h"

static chat_allocator libc;
static chat__arena ar;
static chat__rest_answer a;
static char why[256];
static const chat__rest_limits lim = {.max_answer_bytes = 1u << 20,
                                      .max_items = 4,
                                      .max_body_bytes = 16,
                                      .max_members = 3,
                                      .max_media_refs = 2};

static void setup(void) {
  chat__allocator_init(&libc, NULL);
  chat__arena_init(&ar, &libc);
}

static void teardown(void) {
  chat__arena_free(&ar);
}

TestSuite(rest_decode, .init = setup, .fini = teardown);

static chat_err dec(chat__rest_kind k, const char *body) {
  return chat__rest_decode(&ar, k, body, strlen(body), &lim, &a, why,
                           sizeof why);
}

#define MSG(id, extra)                                                         \
  "{\"message_id\":\"" id "\",\"conversation_id\":\"c\",\"sender_id\":"       \
  "\"bob\",\"body\":\"hi\",\"server_ts\":17" extra "}"

#define CONV(id, extra)                                                        \
  "{\"conversation_id\":\"" id "\",\"type\":\"group\",\"name\":\"G\","        \
  "\"members\":[\"a\",\"b\"],\"last_message\":null,\"unread_count\":2,"       \
  "\"last_read_message_id\":null" extra "}"

Test(rest_decode, a_messages_page) {
  cr_assert_eq(dec(CHAT__REST_MESSAGES,
                   "{\"messages\":[" MSG("5", "") "," MSG(
                       "6", ",\"client_msg_id\":\"k\",\"reply_to\":\"5\","
                            "\"media_refs\":[\"m1\",\"m2\"],\"body_type\":"
                            "\"media\",\"future_field\":{\"x\":[1]}") "],"
                   "\"has_more\":true,\"extra\":1}"),
               CHAT_OK, "%s", why);
  cr_assert_eq(a.n_messages, 2);
  cr_assert(a.has_more);
  const chat_message *m = &a.messages[1];
  cr_assert_eq(m->message_id, 6);
  cr_assert_str_eq(m->conversation_id, "c");
  cr_assert_str_eq(m->sender_id, "bob");
  cr_assert_eq(m->body.len, 2);
  cr_assert_eq(m->server_ts, 17);
  cr_assert_str_eq(m->client_msg_id, "k");
  cr_assert(m->has_reply_to);
  cr_assert_eq(m->reply_to, 5);
  cr_assert_eq(m->n_media_refs, 2);
  cr_assert_str_eq(m->media_refs[1], "m2");
  cr_assert_eq(m->body_type, CHAT_BODY_MEDIA);
  cr_assert_null(a.messages[0].client_msg_id);
  cr_assert_not(a.messages[0].has_reply_to);
  /* has_more absent or null: false. Nulls count as absent. */
  cr_assert_eq(dec(CHAT__REST_MESSAGES,
                   "{\"messages\":[" MSG(
                       "1", ",\"client_msg_id\":null,\"reply_to\":null") "],"
                   "\"has_more\":null}"),
               CHAT_OK, "%s", why);
  cr_assert_not(a.has_more);
  cr_assert_eq(dec(CHAT__REST_MESSAGES, "{\"messages\":[]}"), CHAT_OK);
  cr_assert_eq(a.n_messages, 0);
}

/* Each refusal: its code and the start of its text. */
static void refused(chat__rest_kind k, const char *body, chat_err want,
                    const char *text) {
  chat_err e = dec(k, body);
  cr_assert_eq(e, want, "%s -> %s (%s)", body, chat_err_name(e), why);
  cr_assert(strncmp(why, text, strlen(text)) == 0, "%s: \"%s\" is not \"%s\"",
            body, why, text);
}

Test(rest_decode, refusals_name_the_field) {
  refused(CHAT__REST_MESSAGES, "", CHAT_ERR_JSON, "malformed JSON");
  refused(CHAT__REST_MESSAGES, "{\"messages\":[]} x", CHAT_ERR_JSON,
          "malformed JSON at byte");
  refused(CHAT__REST_MESSAGES, "[]", CHAT_ERR_NOT_OBJECT, "the answer");
  refused(CHAT__REST_MESSAGES, "{\"messages\":[\"\xff\"]}", CHAT_ERR_BAD_UTF8,
          "invalid UTF-8");
  refused(CHAT__REST_MESSAGES, "{\"messages\":[],\"messages\":[]}",
          CHAT_ERR_DUPLICATE_KEY, "duplicate key");
  refused(CHAT__REST_MESSAGES,
          "{\"a\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}",
          CHAT_ERR_TOO_DEEP, "JSON nested");
  refused(CHAT__REST_MESSAGES, "{}", CHAT_ERR_MISSING_FIELD,
          "messages: missing");
  refused(CHAT__REST_MESSAGES, "{\"messages\":{}}", CHAT_ERR_FIELD_TYPE,
          "messages: must be an array, not an object");
  refused(CHAT__REST_MESSAGES, "{\"messages\":[1,2,3,4,5]}", CHAT_ERR_TOO_MANY,
          "messages: 5 entries; the limit is 4");
  refused(CHAT__REST_MESSAGES, "{\"messages\":[" MSG("1", "") ",7]}",
          CHAT_ERR_FIELD_TYPE, "messages[1]: must be an object");
  refused(CHAT__REST_MESSAGES, "{\"messages\":[" MSG("01", "") "]}",
          CHAT_ERR_BAD_MESSAGE_ID, "messages[0].message_id: not a canonical");
  refused(CHAT__REST_MESSAGES,
          "{\"messages\":[{\"message_id\":\"1\",\"conversation_id\":\"c c\","
          "\"sender_id\":\"b\",\"body\":\"\",\"server_ts\":1}]}",
          CHAT_ERR_BAD_ID, "messages[0].conversation_id: not 1..64");
  refused(CHAT__REST_MESSAGES,
          "{\"messages\":[{\"message_id\":\"1\",\"conversation_id\":\"c\","
          "\"body\":\"\",\"server_ts\":1}]}",
          CHAT_ERR_MISSING_FIELD, "messages[0].sender_id: missing");
  refused(CHAT__REST_MESSAGES,
          "{\"messages\":[{\"message_id\":\"1\",\"conversation_id\":\"c\","
          "\"sender_id\":\"b\",\"body\":\"0123456789abcdefX\","
          "\"server_ts\":1}]}",
          CHAT_ERR_TOO_LARGE, "messages[0].body: 17 bytes is over 16");
  refused(CHAT__REST_MESSAGES,
          "{\"messages\":[{\"message_id\":\"1\",\"conversation_id\":\"c\","
          "\"sender_id\":\"b\",\"body\":\"\",\"server_ts\":1.5}]}",
          CHAT_ERR_BAD_NUMBER, "messages[0].server_ts:");
  refused(CHAT__REST_MESSAGES,
          "{\"messages\":[" MSG("1", ",\"body_type\":\"gif\"") "]}",
          CHAT_ERR_BAD_VALUE, "messages[0].body_type: must be");
  refused(CHAT__REST_MESSAGES,
          "{\"messages\":[" MSG("2", ",\"body_type\":\"edit\"") "]}",
          CHAT_ERR_MISSING_FIELD, "messages[0].target_id: missing");
  refused(CHAT__REST_MESSAGES,
          "{\"messages\":[" MSG("2", ",\"target_id\":\"1\"") "]}",
          CHAT_ERR_BAD_VALUE, "messages[0].target_id: only for");
  refused(CHAT__REST_MESSAGES,
          "{\"messages\":[" MSG("2", ",\"deleted\":true") "]}",
          CHAT_ERR_BAD_VALUE, "messages[0].body: a deleted message");
  refused(CHAT__REST_MESSAGES,
          "{\"messages\":[" MSG("2", ",\"sender_kind\":\"robot\"") "]}",
          CHAT_ERR_BAD_VALUE, "messages[0].sender_kind: must be");
  refused(CHAT__REST_MESSAGES,
          "{\"messages\":[" MSG("1", ",\"media_refs\":[\"a\",\"b\",\"c\"]")
          "]}",
          CHAT_ERR_TOO_MANY, "messages[0].media_refs: 3 entries");
  refused(CHAT__REST_MESSAGES, "{\"messages\":[],\"has_more\":1}",
          CHAT_ERR_FIELD_TYPE, "has_more: must be a boolean");
}

/* Section 8: edit and delete entries, bots, edited and deleted state, and
 * group admins. */
Test(rest_decode, section_8_fields) {
  cr_assert_eq(
      dec(CHAT__REST_MESSAGES,
          "{\"messages\":[" MSG("7", ",\"body_type\":\"edit\","
                                     "\"target_id\":\"5\",\"sender_kind\":"
                                     "\"bot\"") ","
          "{\"message_id\":\"8\",\"conversation_id\":\"c\",\"sender_id\":"
          "\"bob\",\"body\":\"\",\"server_ts\":1,\"deleted\":true,"
          "\"edited_ts\":99}]}"),
      CHAT_OK, "%s", why);
  cr_assert_eq(a.messages[0].body_type, CHAT_BODY_EDIT);
  cr_assert(a.messages[0].has_target_id);
  cr_assert_eq(a.messages[0].target_id, 5);
  cr_assert_eq(a.messages[0].sender_kind, CHAT_SENDER_BOT);
  cr_assert(a.messages[1].deleted);
  cr_assert(a.messages[1].has_edited_ts);
  cr_assert_eq(a.messages[1].edited_ts, 99);
  cr_assert_eq(dec(CHAT__REST_CONVERSATION,
                   CONV("g", ",\"admins\":[\"a\"]")), CHAT_OK, "%s", why);
  cr_assert_eq(a.conversation->n_admins, 1);
  cr_assert_str_eq(a.conversation->admins[0], "a");
}

Test(rest_decode, conversations) {
  cr_assert_eq(dec(CHAT__REST_CONVERSATIONS,
                   "{\"conversations\":[" CONV("g1", "") "," CONV(
                       "g2", ",\"admins\":[\"a\"]") "],\"next_cursor\":"
                   "\"5:g2@x\"}"),
               CHAT_OK, "%s", why);
  cr_assert_eq(a.n_conversations, 2);
  cr_assert_str_eq(a.conversations[1].conversation_id, "g2");
  cr_assert_eq(a.conversations[0].type, CHAT_CONVERSATION_GROUP);
  cr_assert_eq(a.conversations[0].n_members, 2);
  cr_assert_eq(a.conversations[0].unread_count, 2);
  cr_assert_not(a.conversations[0].has_last_read);
  cr_assert_null(a.conversations[0].last_message);
  cr_assert_eq(a.next_cursor.len, 6);
  cr_assert_eq(memcmp(a.next_cursor.ptr, "5:g2@x", 6), 0);
  cr_assert_eq(dec(CHAT__REST_CONVERSATIONS,
                   "{\"conversations\":[],\"next_cursor\":null}"),
               CHAT_OK);
  cr_assert_null(a.next_cursor.ptr, "the last page");
  /* One conversation, with its last message. */
  cr_assert_eq(dec(CHAT__REST_CONVERSATION,
                   "{\"conversation_id\":\"d1\",\"type\":\"direct\","
                   "\"name\":null,\"members\":[\"a\",\"b\"],"
                   "\"last_message\":" MSG("9", "") ","
                   "\"unread_count\":0,\"last_read_message_id\":\"8\"}"),
               CHAT_OK, "%s", why);
  cr_assert_not_null(a.conversation);
  cr_assert_null(a.conversation->name.ptr);
  cr_assert_eq(a.conversation->last_message->message_id, 9);
  cr_assert(a.conversation->has_last_read);
  cr_assert_eq(a.conversation->last_read_message_id, 8);
  refused(CHAT__REST_CONVERSATIONS,
          "{\"conversations\":[" CONV("g1", "") "," CONV("g 2", "") "]}",
          CHAT_ERR_BAD_ID, "conversations[1].conversation_id:");
  refused(CHAT__REST_CONVERSATIONS,
          "{\"conversations\":[{\"conversation_id\":\"g\",\"type\":\"room\","
          "\"members\":[]}]}",
          CHAT_ERR_BAD_VALUE, "conversations[0].type: must be");
  refused(CHAT__REST_CONVERSATIONS,
          "{\"conversations\":[{\"conversation_id\":\"g\",\"type\":\"group\","
          "\"members\":[\"a\",\"b\",\"c\",\"d\"]}]}",
          CHAT_ERR_TOO_MANY, "conversations[0].members: 4 entries");
  refused(CHAT__REST_CONVERSATIONS,
          "{\"conversations\":[{\"conversation_id\":\"g\",\"type\":\"group\","
          "\"members\":[],\"last_message\":{\"message_id\":\"1\"}}]}",
          CHAT_ERR_MISSING_FIELD,
          "conversations[0].last_message.conversation_id: missing");
  refused(CHAT__REST_CONVERSATION,
          "{\"conversation_id\":\"d\",\"type\":\"direct\",\"members\":[],"
          "\"unread_count\":-1}",
          CHAT_ERR_BAD_NUMBER, "unread_count:");
  char big[1200];
  int k = snprintf(big, sizeof big, "{\"conversations\":[],\"next_cursor\":\"");
  memset(big + k, 'x', 600);
  strcpy(big + k + 600, "\"}");
  refused(CHAT__REST_CONVERSATIONS, big, CHAT_ERR_TOO_LARGE, "next_cursor:");
}

Test(rest_decode, error_objects) {
  cr_assert_eq(dec(CHAT__REST_ERROR,
                   "{\"error\":{\"code\":\"not_member\",\"message\":\"no\"}}"),
               CHAT_OK);
  cr_assert_eq(a.error_code.len, 10);
  cr_assert_eq(memcmp(a.error_message.ptr, "no", 2), 0);
  cr_assert_eq(dec(CHAT__REST_ERROR, "{}"), CHAT_OK);
  cr_assert_null(a.error_code.ptr);
  refused(CHAT__REST_ERROR, "{\"error\":\"x\"}", CHAT_ERR_FIELD_TYPE,
          "error: must be an object");
}

Test(rest_decode, answer_size_limit) {
  chat__rest_limits small = lim;
  small.max_answer_bytes = 10;
  const char *body = "{\"messages\":[]}";
  cr_assert_eq(chat__rest_decode(&ar, CHAT__REST_MESSAGES, body, strlen(body),
                                 &small, &a, why, sizeof why),
               CHAT_ERR_TOO_LARGE);
  cr_assert(strstr(why, "is over 10"));
  /* err may be NULL. */
  cr_assert_eq(chat__rest_decode(&ar, CHAT__REST_MESSAGES, "[", 1, &lim, &a,
                                 NULL, 0),
               CHAT_ERR_JSON);
}

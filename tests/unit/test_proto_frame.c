/* Frame codec: every frame type round-trips (struct -> JSON -> struct ->
 * the same JSON), hand-written frames decode to the right fields, and
 * encoded output is read identically by an independent parser (cJSON). */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include <chat/frame.h>

#include "fail_alloc.h"

static chat_codec *codec;

static void setup(void) {
  cr_assert_eq(chat_codec_new(&codec, NULL, NULL), CHAT_OK);
}
static void teardown(void) { chat_codec_free(codec); }

TestSuite(frame, .init = setup, .fini = teardown);

#define S(lit) ((chat_str){lit, sizeof(lit) - 1})

/* Encode f, decode it in its direction, re-encode the decoded frame and
 * require identical bytes. Returns the decoded frame (valid until the next
 * decode) and leaves the first encoding in *json_out (a malloc'd copy). */
static const chat_frame *round_trip(const chat_frame *f, chat_direction dir,
                                    char **json_out) {
  const char *j;
  size_t n;
  chat_err rc = chat_codec_encode(codec, f, &j, &n);
  cr_assert_eq(rc, CHAT_OK, "encode %s: %s", chat_frame_type_name(f->type),
               chat_err_name(rc));
  char *first = strndup(j, n);
  const chat_frame *d;
  chat_decode_error err;
  rc = chat_codec_decode(codec, dir, first, n, &d, &err);
  cr_assert_eq(rc, CHAT_OK, "decode %s: %s (%s)", first, chat_err_name(rc),
               err.message ? err.message : "");
  cr_assert_eq(d->type, f->type);
  cr_assert_eq(d->version, CHAT_FRAME_V1);
  rc = chat_codec_encode(codec, d, &j, &n);
  cr_assert_eq(rc, CHAT_OK);
  cr_assert_eq(n, strlen(first), "re-encoded length differs:\n%s\n%.*s",
               first, (int)n, j);
  cr_assert(memcmp(j, first, n) == 0, "re-encoded differs:\n%s\n%.*s", first,
            (int)n, j);
  /* The independent parser must accept it and see the same type. */
  cJSON *cj = cJSON_ParseWithLength(first, strlen(first));
  cr_assert_not_null(cj, "cJSON rejects %s", first);
  cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cj, "type")->valuestring,
                   chat_frame_type_name(f->type));
  cJSON_Delete(cj);
  if (json_out)
    *json_out = first;
  else
    free(first);
  return d;
}

static const chat_frame *decode_ok(chat_direction dir, const char *json) {
  const chat_frame *f;
  chat_decode_error err;
  chat_err rc = chat_codec_decode(codec, dir, json, strlen(json), &f, &err);
  cr_assert_eq(rc, CHAT_OK, "decode %s: %s (%s)", json, chat_err_name(rc),
               err.message ? err.message : "");
  return f;
}

static void encode_eq(const chat_frame *f, const char *expect) {
  const char *j;
  size_t n;
  chat_err rc = chat_codec_encode(codec, f, &j, &n);
  cr_assert_eq(rc, CHAT_OK, "%s", chat_err_name(rc));
  cr_assert(n == strlen(expect) && memcmp(j, expect, n) == 0,
            "got:\n%.*s\nwant:\n%s", (int)n, j, expect);
}

/* ---------------- client -> server ---------------- */

Test(frame, send_round_trip_full) {
  const char *refs[] = {"m_1", "m.2"};
  chat_send s = {.client_msg_id = "abc-1",
                 .conversation_id = "conv_abc",
                 .body = S("are you home? \xe2\x9c\x93 \"q\" \\ \n\t\x01"),
                 .has_reply_to = true,
                 .reply_to = 9187190,
                 .media_refs = refs,
                 .n_media_refs = 2,
                 .body_type = CHAT_BODY_MEDIA};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_SEND,
                  .send = &s};
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert_str_eq(d->send->client_msg_id, "abc-1");
  cr_assert_str_eq(d->send->conversation_id, "conv_abc");
  cr_assert_eq(d->send->body.len, s.body.len);
  cr_assert(memcmp(d->send->body.ptr, s.body.ptr, s.body.len) == 0);
  cr_assert(d->send->has_reply_to);
  cr_assert_eq(d->send->reply_to, 9187190);
  cr_assert_eq(d->send->n_media_refs, 2);
  cr_assert_str_eq(d->send->media_refs[1], "m.2");
  cr_assert_eq(d->send->body_type, CHAT_BODY_MEDIA);
}

Test(frame, send_minimal_exact_bytes) {
  chat_send s = {.client_msg_id = "uuid", .conversation_id = "conv_abc",
                 .body = S("hi")};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_SEND,
                  .send = &s};
  encode_eq(&f, "{\"type\":\"send\",\"client_msg_id\":\"uuid\","
                "\"conversation_id\":\"conv_abc\",\"body\":\"hi\"}");
  round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
}

Test(frame, send_seed_example_decodes) {
  const chat_frame *f = decode_ok(
      CHAT_DIR_TO_SERVER,
      "{ \"type\": \"send\", \"client_msg_id\": \"uuid\", "
      "\"conversation_id\": \"conv_abc\", \"body\": \"hi\" }");
  cr_assert_eq(f->type, CHAT_FRAME_SEND);
  cr_assert_not_null(f->send);
  cr_assert_null(f->ack);
  cr_assert_eq(f->send->body.len, 2);
  cr_assert_str_eq(f->send->body.ptr, "hi");
  cr_assert_not(f->send->has_reply_to);
  cr_assert_null(f->send->media_refs);
  cr_assert_eq(f->send->body_type, CHAT_BODY_TEXT);
}

Test(frame, send_body_with_nul_and_escapes) {
  const chat_frame *f = decode_ok(
      CHAT_DIR_TO_SERVER,
      "{\"type\":\"send\",\"client_msg_id\":\"a\",\"conversation_id\":\"c\","
      "\"body\":\"x\\u0000y\\ud83d\\ude00\\/\"}");
  cr_assert_eq(f->send->body.len, 8);
  cr_assert(memcmp(f->send->body.ptr, "x\0y\xf0\x9f\x98\x80/", 8) == 0);
}

Test(frame, optional_nulls_are_absent_and_unknown_fields_ignored) {
  const chat_frame *f = decode_ok(
      CHAT_DIR_TO_SERVER,
      "{\"type\":\"send\",\"client_msg_id\":\"a\",\"conversation_id\":\"c\","
      "\"body\":\"b\",\"reply_to\":null,\"media_refs\":null,"
      "\"body_type\":null,\"x_future\":{\"deep\":[1,2,{}]},\"z\":1.5e3}");
  cr_assert_not(f->send->has_reply_to);
  cr_assert_eq(f->send->n_media_refs, 0);
  cr_assert_eq(f->send->body_type, CHAT_BODY_TEXT);
}

Test(frame, delivered_and_read) {
  chat_mark m = {.conversation_id = "conv_abc",
                 .up_to_message_id = 9187202};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_DELIVERED,
                  .mark = &m};
  encode_eq(&f, "{\"type\":\"delivered\",\"conversation_id\":\"conv_abc\","
                "\"up_to_message_id\":\"9187202\"}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert_eq(d->mark->up_to_message_id, 9187202);
  f.type = CHAT_FRAME_READ;
  d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert_eq(d->type, CHAT_FRAME_READ);
  cr_assert_str_eq(d->mark->conversation_id, "conv_abc");
}

Test(frame, message_id_extremes) {
  chat_mark m = {.conversation_id = "c", .up_to_message_id = 0};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_READ,
                  .mark = &m};
  cr_assert_eq(round_trip(&f, CHAT_DIR_TO_SERVER, NULL)
                   ->mark->up_to_message_id,
               0);
  m.up_to_message_id = INT64_MAX;
  cr_assert_eq(round_trip(&f, CHAT_DIR_TO_SERVER, NULL)
                   ->mark->up_to_message_id,
               (uint64_t)INT64_MAX);
  m.up_to_message_id = (uint64_t)INT64_MAX + 1;
  const char *j;
  size_t n;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_MESSAGE_ID);
}

Test(frame, typing_both_directions) {
  chat_typing t = {.conversation_id = "conv_abc", .is_typing = true};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_TYPING,
                  .typing = &t};
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert(d->typing->is_typing);
  cr_assert_null(d->typing->user_id);
  t.user_id = "bob";
  t.is_typing = false;
  d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_str_eq(d->typing->user_id, "bob");
  cr_assert_not(d->typing->is_typing);
}

Test(frame, resume_keeps_order_and_since) {
  chat_resume_entry e[] = {{"conv_abc", 9187190}, {"conv_xyz", 8800041}};
  chat_resume r = {.last_seen = e, .n_last_seen = 2, .has_since = true,
                   .since = 1234};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUME,
                  .resume = &r};
  encode_eq(&f, "{\"type\":\"resume\",\"last_seen\":{\"conv_abc\":\"9187190\","
                "\"conv_xyz\":\"8800041\"},\"since\":\"1234\"}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert_eq(d->resume->n_last_seen, 2);
  cr_assert_str_eq(d->resume->last_seen[0].conversation_id, "conv_abc");
  cr_assert_eq(d->resume->last_seen[1].message_id, 8800041);
  cr_assert(d->resume->has_since);
  cr_assert_eq(d->resume->since, 1234);
}

Test(frame, resume_empty_and_large) {
  chat_resume r = {0};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUME,
                  .resume = &r};
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert_eq(d->resume->n_last_seen, 0);
  cr_assert_not(d->resume->has_since);

  /* 2,000 conversations: the duplicate check must stay fast and exact. */
  enum { N = 2000 };
  static char names[N][16];
  static chat_resume_entry es[N];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof names[i], "c%d", i);
    es[i].conversation_id = names[i];
    es[i].message_id = (uint64_t)i * 7;
  }
  r.last_seen = es;
  r.n_last_seen = N;
  d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert_eq(d->resume->n_last_seen, N);
  cr_assert_str_eq(d->resume->last_seen[N - 1].conversation_id, "c1999");
  cr_assert_eq(d->resume->last_seen[N - 1].message_id, 1999 * 7);
  /* The encoder refuses a duplicate, like the decoder. */
  es[N - 1].conversation_id = names[5];
  const char *j;
  size_t n;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_DUPLICATE_KEY);
}

Test(frame, presence_subscribe) {
  const char *ids[] = {"alice", "bob", "carol@x"};
  chat_presence_subscribe p = {.user_ids = ids, .n_user_ids = 3};
  chat_frame f = {.version = CHAT_FRAME_V1,
                  .type = CHAT_FRAME_PRESENCE_SUBSCRIBE,
                  .presence_subscribe = &p};
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert_eq(d->presence_subscribe->n_user_ids, 3);
  cr_assert_str_eq(d->presence_subscribe->user_ids[2], "carol@x");
  p.n_user_ids = 0;
  d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert_eq(d->presence_subscribe->n_user_ids, 0);
}

Test(frame, ping_nonce_echoed_verbatim) {
  chat_ping p = {0};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_PING,
                  .ping = &p};
  encode_eq(&f, "{\"type\":\"ping\"}");
  cr_assert_null(round_trip(&f, CHAT_DIR_TO_SERVER, NULL)->ping->nonce_json.ptr);

  const chat_frame *d = decode_ok(
      CHAT_DIR_TO_SERVER, "{\"type\":\"ping\",\"nonce\":\"a\\u0062\"}");
  cr_assert_eq(d->ping->nonce_json.len, 9);
  cr_assert_str_eq(d->ping->nonce_json.ptr, "\"a\\u0062\"");
  /* The server answers with a pong carrying the same bytes. */
  chat_ping echo = *d->ping;
  chat_frame pong = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_PONG,
                     .ping = &echo};
  encode_eq(&pong, "{\"type\":\"pong\",\"nonce\":\"a\\u0062\"}");
  d = round_trip(&pong, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_str_eq(d->ping->nonce_json.ptr, "\"a\\u0062\"");

  d = decode_ok(CHAT_DIR_TO_SERVER, "{\"type\":\"ping\",\"nonce\":1.5e3}");
  cr_assert_str_eq(d->ping->nonce_json.ptr, "1.5e3");

  /* A nonce that is not exactly one string or number is refused. */
  const char *j;
  size_t n;
  const char *bad[] = {"{}", "1 2", "\"a\" ", "true", "\"unterminated", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    p.nonce_json = (chat_str){bad[i], strlen(bad[i])};
    f.ping = &p;
    cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE,
                 "nonce %s", bad[i]);
  }
}

/* ---------------- server -> client ---------------- */

static chat_limits default_limits(void) {
  return (chat_limits){.max_body_bytes = 65536,
                       .max_frame_bytes = 131072,
                       .rate_per_minute = 60,
                       .resume_max_messages = 1000,
                       .resume_max_age_ms = 604800000};
}

Test(frame, hello) {
  chat_hello h = {.user_id = "alice", .device_id = "phone-1",
                  .session_id = "s:42", .server_ts = 1716000000123,
                  .heartbeat_ms = 30000, .limits = default_limits()};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_HELLO,
                  .hello = &h};
  encode_eq(&f,
            "{\"type\":\"hello\",\"user_id\":\"alice\",\"device_id\":"
            "\"phone-1\",\"session_id\":\"s:42\",\"server_ts\":1716000000123,"
            "\"heartbeat_ms\":30000,\"limits\":{\"max_body_bytes\":65536,"
            "\"max_frame_bytes\":131072,\"rate_per_minute\":60,"
            "\"resume_max_messages\":1000,\"resume_max_age_ms\":604800000}}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->hello->server_ts, 1716000000123);
  cr_assert_eq(d->hello->limits.resume_max_age_ms, 604800000);
  cr_assert_eq(d->hello->limits.rate_per_minute, 60);
}

Test(frame, ack_and_duplicate) {
  chat_ack a = {.client_msg_id = "uuid", .message_id = 9187202,
                .server_ts = 1716000000123};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_ACK,
                  .ack = &a};
  encode_eq(&f, "{\"type\":\"ack\",\"client_msg_id\":\"uuid\",\"message_id\":"
                "\"9187202\",\"server_ts\":1716000000123}");
  cr_assert_not(round_trip(&f, CHAT_DIR_TO_CLIENT, NULL)->ack->duplicate);
  a.duplicate = true;
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert(d->ack->duplicate);
  cr_assert_eq(d->ack->message_id, 9187202);
}

Test(frame, message_full_and_system) {
  const char *refs[] = {"media_1"};
  chat_message m = {.message_id = 9187202, .conversation_id = "conv_abc",
                    .sender_id = "user_alice", .body = S("hi"),
                    .server_ts = 1716000000123, .client_msg_id = "uuid",
                    .has_reply_to = true, .reply_to = 9187190,
                    .media_refs = refs, .n_media_refs = 1,
                    .body_type = CHAT_BODY_MEDIA};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_MESSAGE,
                  .message = &m};
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_str_eq(d->message->sender_id, "user_alice");
  cr_assert_str_eq(d->message->client_msg_id, "uuid");
  cr_assert_eq(d->message->reply_to, 9187190);
  cr_assert_str_eq(d->message->media_refs[0], "media_1");

  chat_message sys = {.message_id = 1, .conversation_id = "g",
                      .sender_id = "system", .body = S("bob joined"),
                      .server_ts = 5, .body_type = CHAT_BODY_SYSTEM};
  f.message = &sys;
  d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_null(d->message->client_msg_id);
  cr_assert_eq(d->message->body_type, CHAT_BODY_SYSTEM);
}

Test(frame, receipt_direct_and_group) {
  chat_receipt r = {.conversation_id = "conv_abc", .message_id = 9187202,
                    .state = CHAT_RECEIPT_DELIVERED, .member_id = "user_bob"};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RECEIPT,
                  .receipt = &r};
  encode_eq(&f, "{\"type\":\"receipt\",\"conversation_id\":\"conv_abc\","
                "\"message_id\":\"9187202\",\"state\":\"delivered\","
                "\"member_id\":\"user_bob\"}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_not(d->receipt->has_counts);
  r.state = CHAT_RECEIPT_READ;
  r.has_counts = true;
  r.delivered_count = 800;
  r.read_count = 640;
  d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->receipt->state, CHAT_RECEIPT_READ);
  cr_assert(d->receipt->has_counts);
  cr_assert_eq(d->receipt->delivered_count, 800);
  cr_assert_eq(d->receipt->read_count, 640);
}

Test(frame, history_many_messages) {
  enum { N = 50 };
  chat_message ms[N];
  char bodies[N][32];
  for (int i = 0; i < N; i++) {
    snprintf(bodies[i], sizeof bodies[i], "message %d", i);
    ms[i] = (chat_message){.message_id = 1000 + (uint64_t)i,
                           .conversation_id = "conv_xyz",
                           .sender_id = i % 2 ? "alice" : "bob",
                           .body = {bodies[i], strlen(bodies[i])},
                           .server_ts = 1716000000000 + i};
  }
  chat_history h = {.conversation_id = "conv_xyz", .messages = ms,
                    .n_messages = N, .complete = true};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_HISTORY,
                  .history = &h};
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->history->n_messages, N);
  cr_assert(d->history->complete);
  cr_assert_eq(d->history->messages[N - 1].message_id, 1000 + N - 1);
  cr_assert_str_eq(d->history->messages[7].body.ptr, "message 7");
  /* One message of another conversation would be filed in the wrong chat. */
  ms[3].conversation_id = "conv_abc";
  const char *j;
  size_t n;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
}

Test(frame, resume_answers) {
  chat_resume_failed rf = {.conversation_id = "conv_abc",
                           .reason = S("too_old")};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUME_FAILED,
                  .resume_failed = &rf};
  encode_eq(&f, "{\"type\":\"resume_failed\",\"conversation_id\":"
                "\"conv_abc\",\"reason\":\"too_old\"}");
  cr_assert_str_eq(round_trip(&f, CHAT_DIR_TO_CLIENT, NULL)
                       ->resume_failed->reason.ptr,
                   "too_old");
  chat_resumed rs = {.conversations = 4, .messages = 20};
  chat_frame g = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUMED,
                  .resumed = &rs};
  encode_eq(&g, "{\"type\":\"resumed\",\"conversations\":4,\"messages\":20}");
  cr_assert_eq(round_trip(&g, CHAT_DIR_TO_CLIENT, NULL)->resumed->messages,
               20);
}

Test(frame, presence_with_and_without_last_active) {
  chat_presence p = {.user_id = "bob", .state = CHAT_PRESENCE_IDLE,
                     .has_last_active = true, .last_active_ts = 1716000000};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_PRESENCE,
                  .presence = &p};
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->presence->state, CHAT_PRESENCE_IDLE);
  cr_assert_eq(d->presence->last_active_ts, 1716000000);
  p.state = CHAT_PRESENCE_OFFLINE;
  p.has_last_active = false;
  encode_eq(&f, "{\"type\":\"presence\",\"user_id\":\"bob\",\"state\":"
                "\"offline\",\"last_active_ts\":null}");
  d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_not(d->presence->has_last_active);
  p.state = CHAT_PRESENCE_ONLINE;
  cr_assert_eq(round_trip(&f, CHAT_DIR_TO_CLIENT, NULL)->presence->state,
               CHAT_PRESENCE_ONLINE);
}

Test(frame, state_change) {
  chat_state_change s = {.conversation_id = "conv_abc",
                         .last_read_message_id = 42};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_STATE_CHANGE,
                  .state_change = &s};
  cr_assert_eq(round_trip(&f, CHAT_DIR_TO_CLIENT, NULL)
                   ->state_change->last_read_message_id,
               42);
}

Test(frame, conversation_nested) {
  const char *members[] = {"alice", "bob", "carol"};
  chat_message last = {.message_id = 77, .conversation_id = "g1",
                       .sender_id = "bob", .body = S("yo"), .server_ts = 9,
                       .client_msg_id = "c1"};
  chat_conversation c = {.conversation_id = "g1",
                         .type = CHAT_CONVERSATION_GROUP,
                         .name = S("Friends \xf0\x9f\x8e\x89"),
                         .members = members, .n_members = 3,
                         .last_message = &last, .unread_count = 3,
                         .has_last_read = true, .last_read_message_id = 70};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_CONVERSATION,
                  .conversation = &c};
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  const chat_conversation *dc = d->conversation;
  cr_assert_eq(dc->type, CHAT_CONVERSATION_GROUP);
  cr_assert_str_eq(dc->name.ptr, "Friends \xf0\x9f\x8e\x89");
  cr_assert_eq(dc->n_members, 3);
  cr_assert_str_eq(dc->last_message->body.ptr, "yo");
  cr_assert_eq(dc->unread_count, 3);
  cr_assert_eq(dc->last_read_message_id, 70);

  chat_conversation direct = {.conversation_id = "d1",
                              .type = CHAT_CONVERSATION_DIRECT,
                              .members = members, .n_members = 2};
  f.conversation = &direct;
  encode_eq(&f, "{\"type\":\"conversation\",\"conversation\":{"
                "\"conversation_id\":\"d1\",\"type\":\"direct\",\"name\":null,"
                "\"members\":[\"alice\",\"bob\"],\"last_message\":null,"
                "\"unread_count\":0,\"last_read_message_id\":null}}");
  d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_null(d->conversation->name.ptr);
  cr_assert_null(d->conversation->last_message);
  cr_assert_not(d->conversation->has_last_read);
}

Test(frame, error_frames) {
  chat_error_frame e = {.wire = CHAT_WIRE_RATE_LIMITED,
                        .message = S("slow down"), .ref = S("uuid"),
                        .has_retry_after = true, .retry_after_ms = 1500};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_ERROR,
                  .error = &e};
  encode_eq(&f, "{\"type\":\"error\",\"code\":\"rate_limited\",\"message\":"
                "\"slow down\",\"ref\":\"uuid\",\"retry_after_ms\":1500}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->error->wire, CHAT_WIRE_RATE_LIMITED);
  cr_assert_str_eq(d->error->code, "rate_limited");
  cr_assert_eq(d->error->retry_after_ms, 1500);
  /* A code from a newer server passes through as text. */
  d = decode_ok(CHAT_DIR_TO_CLIENT,
                "{\"type\":\"error\",\"code\":\"quota_exceeded\","
                "\"message\":\"m\"}");
  cr_assert_eq(d->error->wire, CHAT_WIRE_OTHER);
  cr_assert_str_eq(d->error->code, "quota_exceeded");
  cr_assert_null(d->error->ref.ptr);
  /* Every known code maps both ways. */
  for (int w = CHAT_WIRE_BAD_FRAME; w <= CHAT_WIRE_INTERNAL; w++) {
    chat_error_frame x = {.wire = (chat_wire_error)w, .message = S("m")};
    f.error = &x;
    cr_assert_eq((int)round_trip(&f, CHAT_DIR_TO_CLIENT, NULL)->error->wire, w);
  }
}

/* ---------------- codec behaviour ---------------- */

Test(frame, type_names_and_directions) {
  for (int t = CHAT_FRAME_SEND; t <= CHAT_FRAME_PONG; t++) {
    const char *name = chat_frame_type_name((chat_frame_type)t);
    cr_assert_not_null(name);
    int dir = chat_frame_type_direction((chat_frame_type)t);
    cr_assert(dir == (t <= CHAT_FRAME_PING ? CHAT_DIR_TO_SERVER
                                           : CHAT_DIR_TO_CLIENT),
              "%s", name);
  }
  cr_assert_null(chat_frame_type_name(CHAT_FRAME_NONE));
  cr_assert_null(chat_frame_type_name((chat_frame_type)99));
  cr_assert_eq(chat_frame_type_direction((chat_frame_type)99), -1);
}

Test(frame, decode_output_lives_until_next_decode_and_survives_encode) {
  const chat_frame *a = decode_ok(
      CHAT_DIR_TO_SERVER, "{\"type\":\"read\",\"conversation_id\":\"c1\","
                          "\"up_to_message_id\":\"5\"}");
  chat_mark m = {.conversation_id = "other", .up_to_message_id = 6};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_DELIVERED,
                  .mark = &m};
  const char *j;
  size_t n;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_OK);
  cr_assert_str_eq(a->mark->conversation_id, "c1");
}

Test(frame, encode_rejects_bad_input) {
  const char *j = "x";
  size_t n = 7;
  chat_send s = {.client_msg_id = "ok", .conversation_id = "bad id",
                 .body = S("b")};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_SEND,
                  .send = &s};
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_ID);
  cr_assert_null(j);
  cr_assert_eq(n, 0);
  s.conversation_id = "c";
  s.body = (chat_str){"\xc0\xaf", 2};
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_UTF8);
  s.body = (chat_str){NULL, 0};
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  s.body = S("b");
  s.body_type = CHAT_BODY_SYSTEM;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
  s.body_type = CHAT_BODY_MEDIA; /* without media_refs */
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
  s.body_type = CHAT_BODY_TEXT;
  f.send = NULL;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  f.send = &s;
  f.version = 0;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  f.version = CHAT_FRAME_V1;
  f.type = (chat_frame_type)77;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  cr_assert_eq(chat_codec_encode(NULL, &f, &j, &n), CHAT_ERR_INVAL);
  cr_assert_eq(chat_codec_encode(codec, NULL, &j, &n), CHAT_ERR_INVAL);
}

Test(frame, encode_enforces_decoder_limits) {
  chat_codec *small;
  chat_codec_settings cs = {.version = CHAT_CODEC_SETTINGS_V1,
                            .max_body_bytes = 8, .max_presence_ids = 2,
                            .max_frame_bytes = 120};
  cr_assert_eq(chat_codec_new(&small, &cs, NULL), CHAT_OK);
  const char *j;
  size_t n;
  chat_send s = {.client_msg_id = "a", .conversation_id = "c",
                 .body = S("123456789")};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_SEND,
                  .send = &s};
  cr_assert_eq(chat_codec_encode(small, &f, &j, &n), CHAT_ERR_TOO_LARGE);
  s.body = S("12345678");
  cr_assert_eq(chat_codec_encode(small, &f, &j, &n), CHAT_OK);
  /* The whole frame over max_frame_bytes (control characters escape to
   * six bytes each). */
  s.body = S("\x01\x01\x01\x01\x01\x01\x01\x01");
  cr_assert_eq(chat_codec_encode(small, &f, &j, &n), CHAT_OK);
  s.client_msg_id = "a-much-longer-client-message-id-0123456789";
  cr_assert_eq(chat_codec_encode(small, &f, &j, &n),
               CHAT_ERR_FRAME_TOO_LARGE);
  const char *ids[] = {"a", "b", "c"};
  chat_presence_subscribe p = {.user_ids = ids, .n_user_ids = 3};
  chat_frame g = {.version = CHAT_FRAME_V1,
                  .type = CHAT_FRAME_PRESENCE_SUBSCRIBE,
                  .presence_subscribe = &p};
  cr_assert_eq(chat_codec_encode(small, &g, &j, &n), CHAT_ERR_TOO_MANY);
  chat_codec_free(small);
}

Test(frame, settings_version_checked) {
  chat_codec *c = (chat_codec *)1;
  chat_codec_settings cs = {.version = 99};
  cr_assert_eq(chat_codec_new(&c, &cs, NULL), CHAT_ERR_INVAL);
  cr_assert_null(c);
  cr_assert_eq(chat_codec_new(NULL, NULL, NULL), CHAT_ERR_INVAL);
  chat_codec_free(NULL);
}

/* OOM torture: fail each allocation of a decode-and-encode scenario in turn;
 * every failure must surface as CHAT_ERR_NOMEM, and nothing may leak. */
Test(frame, oom_torture) {
  const char *in =
      "{\"type\":\"history\",\"conversation_id\":\"c\",\"complete\":false,"
      "\"messages\":[{\"message_id\":\"1\",\"conversation_id\":\"c\","
      "\"sender_id\":\"a\",\"body\":\"x\\n\",\"server_ts\":1,"
      "\"media_refs\":[\"m1\",\"m2\"]}]}";
  long total = -1;
  for (long fail_at = 0;; fail_at++) {
    fail_alloc fa;
    fail_alloc_init(&fa, fail_at);
    chat_codec *c;
    chat_err rc = chat_codec_new(&c, NULL, &fa.a);
    if (rc == CHAT_OK) {
      const chat_frame *f;
      rc = chat_codec_decode(c, CHAT_DIR_TO_CLIENT, in, strlen(in), &f, NULL);
      if (rc == CHAT_OK) {
        const char *j;
        size_t n;
        rc = chat_codec_encode(c, f, &j, &n);
      }
      chat_codec_free(c);
    }
    cr_assert_eq(fa.live, 0, "leak with allocation %ld failing", fail_at);
    if (fa.count <= fail_at) { /* nothing failed: the scenario is done */
      cr_assert_eq(rc, CHAT_OK);
      total = fail_at;
      break;
    }
    cr_assert_eq(rc, CHAT_ERR_NOMEM, "allocation %ld: %s", fail_at,
                 chat_err_name(rc));
  }
  cr_assert_gt(total, 2);
}

/* A warmed-up codec decodes and encodes without touching the allocator. */
Test(frame, steady_state_does_not_allocate) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat_codec *c;
  cr_assert_eq(chat_codec_new(&c, NULL, &fa.a), CHAT_OK);
  const char *in = "{\"type\":\"send\",\"client_msg_id\":\"c-123\","
                   "\"conversation_id\":\"conv_abc\",\"body\":\"hello\"}";
  const chat_frame *f;
  const char *j;
  size_t n;
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(chat_codec_decode(c, CHAT_DIR_TO_SERVER, in, strlen(in), &f,
                                   NULL),
                 CHAT_OK);
    cr_assert_eq(chat_codec_encode(c, f, &j, &n), CHAT_OK);
  }
  long before = fa.count;
  for (int i = 0; i < 100; i++) {
    cr_assert_eq(chat_codec_decode(c, CHAT_DIR_TO_SERVER, in, strlen(in), &f,
                                   NULL),
                 CHAT_OK);
    cr_assert_eq(chat_codec_encode(c, f, &j, &n), CHAT_OK);
  }
  cr_assert_eq(fa.count, before);
  chat_codec_free(c);
  cr_assert_eq(fa.live, 0);
}

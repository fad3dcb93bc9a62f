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
  cr_assert_eq(chat_codec_new(&codec, NULL, NULL, NULL), CHAT_OK);
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
  cr_assert_eq(d->version, CHAT_FRAME_V2);
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
                "\"members\":[\"alice\",\"bob\"],\"admins\":[],"
                "\"last_message\":null,"
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
  /* Every known code maps both ways, section 8's included. */
  for (int w = CHAT_WIRE_BAD_FRAME; w <= CHAT_WIRE_NOT_FOUND; w++) {
    chat_error_frame x = {.wire = (chat_wire_error)w, .message = S("m")};
    f.error = &x;
    cr_assert_eq((int)round_trip(&f, CHAT_DIR_TO_CLIENT, NULL)->error->wire, w);
  }
}

/* ---------------- PROTOCOL.md section 8 ---------------- */

Test(frame, edit_round_trip_and_exact_bytes) {
  chat_edit x = {.client_msg_id = "e-1", .conversation_id = "conv_abc",
                 .target_id = 9187202,
                 .body = S("fixed typo \xe2\x9c\x93 \"q\"\n")};
  chat_frame f = {.version = CHAT_FRAME_V2, .type = CHAT_FRAME_EDIT,
                  .edit = &x};
  encode_eq(&f, "{\"type\":\"edit\",\"client_msg_id\":\"e-1\","
                "\"conversation_id\":\"conv_abc\",\"target_id\":\"9187202\","
                "\"body\":\"fixed typo \xe2\x9c\x93 \\\"q\\\"\\n\"}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert_not_null(d->edit);
  cr_assert_null(d->send);
  cr_assert_null(d->deletion);
  cr_assert_str_eq(d->edit->client_msg_id, "e-1");
  cr_assert_str_eq(d->edit->conversation_id, "conv_abc");
  cr_assert_eq(d->edit->target_id, 9187202);
  cr_assert_eq(d->edit->body.len, x.body.len);
  cr_assert(memcmp(d->edit->body.ptr, x.body.ptr, x.body.len) == 0);
  /* An empty body is an edit too (a media caption removed). */
  x.body = S("");
  cr_assert_eq(round_trip(&f, CHAT_DIR_TO_SERVER, NULL)->edit->body.len, 0);
}

Test(frame, delete_round_trip_and_exact_bytes) {
  chat_delete x = {.client_msg_id = "d-1", .conversation_id = "g1",
                   .target_id = (uint64_t)INT64_MAX};
  chat_frame f = {.version = CHAT_FRAME_V2, .type = CHAT_FRAME_DELETE,
                  .deletion = &x};
  encode_eq(&f, "{\"type\":\"delete\",\"client_msg_id\":\"d-1\","
                "\"conversation_id\":\"g1\","
                "\"target_id\":\"9223372036854775807\"}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_SERVER, NULL);
  cr_assert_not_null(d->deletion);
  cr_assert_null(d->edit);
  cr_assert_str_eq(d->deletion->client_msg_id, "d-1");
  cr_assert_str_eq(d->deletion->conversation_id, "g1");
  cr_assert_eq(d->deletion->target_id, (uint64_t)INT64_MAX);
  /* A body on a delete is an unknown member: ignored. */
  d = decode_ok(CHAT_DIR_TO_SERVER,
                "{\"type\":\"delete\",\"client_msg_id\":\"d\","
                "\"conversation_id\":\"c\",\"target_id\":\"0\","
                "\"body\":\"x\"}");
  cr_assert_eq(d->deletion->target_id, 0);
}

Test(frame, edit_and_delete_encoder_refusals) {
  const char *j;
  size_t n;
  chat_edit x = {.client_msg_id = "e", .conversation_id = "c",
                 .target_id = 1, .body = S("b")};
  chat_frame f = {.version = CHAT_FRAME_V2, .type = CHAT_FRAME_EDIT,
                  .edit = &x};
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_OK);
  x.target_id = (uint64_t)INT64_MAX + 1;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_MESSAGE_ID);
  x.target_id = 1;
  x.client_msg_id = "no/slash";
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_ID);
  x.client_msg_id = NULL;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  x.client_msg_id = "e";
  x.conversation_id = "a b";
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_ID);
  x.conversation_id = "c";
  x.body = (chat_str){NULL, 0};
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  x.body = (chat_str){"\xff", 1};
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_UTF8);
  x.body = S("b");
  /* A V1 frame has no edit field: the type is newer than the struct. */
  f.version = CHAT_FRAME_V1;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  f.version = CHAT_FRAME_V2;
  f.edit = NULL;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);

  chat_delete y = {.client_msg_id = "d", .conversation_id = "c",
                   .target_id = (uint64_t)-1};
  chat_frame g = {.version = CHAT_FRAME_V2, .type = CHAT_FRAME_DELETE,
                  .deletion = &y};
  cr_assert_eq(chat_codec_encode(codec, &g, &j, &n), CHAT_ERR_BAD_MESSAGE_ID);
  y.target_id = 5;
  y.conversation_id = "";
  cr_assert_eq(chat_codec_encode(codec, &g, &j, &n), CHAT_ERR_BAD_ID);
  y.conversation_id = "c";
  g.version = CHAT_FRAME_V1;
  cr_assert_eq(chat_codec_encode(codec, &g, &j, &n), CHAT_ERR_INVAL);
  g.version = CHAT_FRAME_V2;
  cr_assert_eq(chat_codec_encode(codec, &g, &j, &n), CHAT_OK);

  /* The encoder enforces the body limit on an edit like on a send. */
  chat_codec *small;
  chat_codec_settings cs = {.version = CHAT_CODEC_SETTINGS_V1,
                            .max_body_bytes = 4};
  cr_assert_eq(chat_codec_new(&small, &cs, NULL, NULL), CHAT_OK);
  f.edit = &x;
  x.body = S("12345");
  cr_assert_eq(chat_codec_encode(small, &f, &j, &n), CHAT_ERR_TOO_LARGE);
  x.body = S("1234");
  cr_assert_eq(chat_codec_encode(small, &f, &j, &n), CHAT_OK);
  chat_codec_free(small);
}

Test(frame, send_may_not_use_server_body_types) {
  const char *j;
  size_t n;
  chat_send s = {.client_msg_id = "a", .conversation_id = "c",
                 .body = S("")};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_SEND,
                  .send = &s};
  chat_body_type server_only[] = {CHAT_BODY_SYSTEM, CHAT_BODY_EDIT,
                                  CHAT_BODY_DELETE, (chat_body_type)9};
  for (size_t i = 0; i < 4; i++) {
    s.body_type = server_only[i];
    cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE,
                 "body_type %d", (int)server_only[i]);
  }
}

Test(frame, message_edit_delete_and_bot) {
  chat_message ed = {.message_id = 9187300, .conversation_id = "conv_abc",
                     .sender_id = "alice", .body = S("new text"),
                     .server_ts = 1716000000200, .client_msg_id = "e-1",
                     .body_type = CHAT_BODY_EDIT, .has_target_id = true,
                     .target_id = 9187202};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_MESSAGE,
                  .message = &ed};
  encode_eq(&f, "{\"type\":\"message\",\"message_id\":\"9187300\","
                "\"conversation_id\":\"conv_abc\",\"sender_id\":\"alice\","
                "\"body\":\"new text\",\"server_ts\":1716000000200,"
                "\"client_msg_id\":\"e-1\",\"body_type\":\"edit\","
                "\"target_id\":\"9187202\"}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->message->body_type, CHAT_BODY_EDIT);
  cr_assert(d->message->has_target_id);
  cr_assert_eq(d->message->target_id, 9187202);
  cr_assert_eq(d->message->sender_kind, CHAT_SENDER_USER);
  cr_assert_not(d->message->has_edited_ts);
  cr_assert_not(d->message->deleted);

  chat_message del = {.message_id = 9187301, .conversation_id = "conv_abc",
                      .sender_id = "admin", .body = S(""), .server_ts = 7,
                      .client_msg_id = "d-1", .body_type = CHAT_BODY_DELETE,
                      .has_target_id = true, .target_id = 9187202};
  f.message = &del;
  d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->message->body_type, CHAT_BODY_DELETE);
  cr_assert_eq(d->message->target_id, 9187202);
  cr_assert_eq(d->message->body.len, 0);

  chat_message bot = {.message_id = 5, .conversation_id = "c",
                      .sender_id = "weather-bot", .body = S("sunny"),
                      .server_ts = 9, .client_msg_id = "b1",
                      .sender_kind = CHAT_SENDER_BOT};
  f.message = &bot;
  encode_eq(&f, "{\"type\":\"message\",\"message_id\":\"5\","
                "\"conversation_id\":\"c\",\"sender_id\":\"weather-bot\","
                "\"body\":\"sunny\",\"server_ts\":9,\"client_msg_id\":\"b1\","
                "\"sender_kind\":\"bot\"}");
  cr_assert_eq(round_trip(&f, CHAT_DIR_TO_CLIENT, NULL)->message->sender_kind,
               CHAT_SENDER_BOT);
  /* A bot may edit too: both fields together. */
  ed.sender_kind = CHAT_SENDER_BOT;
  f.message = &ed;
  d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->message->sender_kind, CHAT_SENDER_BOT);
  cr_assert_eq(d->message->body_type, CHAT_BODY_EDIT);

  /* "user" is accepted when read (another server may write it), never
   * written: the re-encoding leaves it out. */
  d = decode_ok(CHAT_DIR_TO_CLIENT,
                "{\"type\":\"message\",\"message_id\":\"1\","
                "\"conversation_id\":\"c\",\"sender_id\":\"u\",\"body\":\"b\","
                "\"server_ts\":1,\"sender_kind\":\"user\","
                "\"target_id\":null,\"edited_ts\":null,\"deleted\":false}");
  cr_assert_eq(d->message->sender_kind, CHAT_SENDER_USER);
  cr_assert_not(d->message->has_target_id);
  cr_assert_not(d->message->deleted);
  chat_message copy = *d->message;
  f.message = &copy;
  encode_eq(&f, "{\"type\":\"message\",\"message_id\":\"1\","
                "\"conversation_id\":\"c\",\"sender_id\":\"u\",\"body\":\"b\","
                "\"server_ts\":1}");
}

Test(frame, message_edited_and_deleted_state) {
  /* The shape REST history gives a target: the current body and when it
   * was edited, or deleted with the body gone. */
  chat_message ms[] = {
      {.message_id = 10, .conversation_id = "g", .sender_id = "a",
       .body = S("second wording"), .server_ts = 100, .client_msg_id = "m1",
       .has_edited_ts = true, .edited_ts = 160},
      {.message_id = 11, .conversation_id = "g", .sender_id = "b",
       .body = S(""), .server_ts = 110, .client_msg_id = "m2",
       .deleted = true},
      {.message_id = 12, .conversation_id = "g", .sender_id = "a",
       .body = S("second wording"), .server_ts = 160, .client_msg_id = "e1",
       .body_type = CHAT_BODY_EDIT, .has_target_id = true, .target_id = 10},
      {.message_id = 13, .conversation_id = "g", .sender_id = "b",
       .body = S(""), .server_ts = 170, .client_msg_id = "d1",
       .body_type = CHAT_BODY_DELETE, .has_target_id = true,
       .target_id = 11},
  };
  chat_history h = {.conversation_id = "g", .messages = ms, .n_messages = 4,
                    .complete = true};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_HISTORY,
                  .history = &h};
  char *json;
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, &json);
  cr_assert(strstr(json, "\"client_msg_id\":\"m1\",\"edited_ts\":160}"),
            "%s", json);
  cr_assert(strstr(json, "\"client_msg_id\":\"m2\",\"deleted\":true}"), "%s",
            json);
  free(json);
  const chat_message *m = d->history->messages;
  cr_assert(m[0].has_edited_ts);
  cr_assert_eq(m[0].edited_ts, 160);
  cr_assert_not(m[0].deleted);
  cr_assert(m[1].deleted);
  cr_assert_not(m[1].has_edited_ts);
  cr_assert_eq(m[2].body_type, CHAT_BODY_EDIT);
  cr_assert_eq(m[2].target_id, 10);
  cr_assert_eq(m[3].body_type, CHAT_BODY_DELETE);
  cr_assert_eq(m[3].target_id, 11);

  /* The same fields on a conversation's last_message. */
  const char *members[] = {"a", "b"};
  chat_conversation c = {.conversation_id = "g",
                         .type = CHAT_CONVERSATION_GROUP,
                         .members = members, .n_members = 2,
                         .last_message = &ms[1]};
  chat_frame g = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_CONVERSATION,
                  .conversation = &c};
  d = round_trip(&g, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert(d->conversation->last_message->deleted);
}

Test(frame, message_section8_encoder_refusals) {
  const char *j;
  size_t n;
  chat_message m = {.message_id = 2, .conversation_id = "c",
                    .sender_id = "s", .body = S("b"), .server_ts = 1,
                    .body_type = CHAT_BODY_EDIT};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_MESSAGE,
                  .message = &m};
  /* edit without its target */
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
  m.has_target_id = true;
  m.target_id = 1;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_OK);
  m.target_id = (uint64_t)INT64_MAX + 1;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_MESSAGE_ID);
  m.target_id = 1;
  /* a target on an ordinary message */
  m.body_type = CHAT_BODY_TEXT;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
  /* a delete entry with a body */
  m.body_type = CHAT_BODY_DELETE;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
  m.body = S("");
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_OK);
  /* a deleted message that kept its body */
  m.body_type = CHAT_BODY_TEXT;
  m.has_target_id = false;
  m.deleted = true;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_OK);
  m.body = S("x");
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
  m.deleted = false;
  m.sender_kind = (chat_sender_kind)2;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
  m.sender_kind = CHAT_SENDER_BOT;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_OK);
  m.body_type = (chat_body_type)5;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
}

Test(frame, goaway_round_trip_and_unknown_reason) {
  chat_goaway g = {.reason = S("drain"), .retry_after_ms = 30000};
  chat_frame f = {.version = CHAT_FRAME_V2, .type = CHAT_FRAME_GOAWAY,
                  .goaway = &g};
  encode_eq(&f, "{\"type\":\"goaway\",\"reason\":\"drain\","
                "\"retry_after_ms\":30000}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_not_null(d->goaway);
  cr_assert_str_eq(d->goaway->reason.ptr, "drain");
  cr_assert_eq(d->goaway->retry_after_ms, 30000);
  g.reason = S("overload");
  g.retry_after_ms = 0;
  d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_str_eq(d->goaway->reason.ptr, "overload");
  cr_assert_eq(d->goaway->retry_after_ms, 0);
  g.retry_after_ms = (uint64_t)INT64_MAX;
  cr_assert_eq(round_trip(&f, CHAT_DIR_TO_CLIENT, NULL)
                   ->goaway->retry_after_ms,
               (uint64_t)INT64_MAX);
  /* A reason from a newer server passes through as text. */
  d = decode_ok(CHAT_DIR_TO_CLIENT,
                "{\"type\":\"goaway\",\"reason\":\"rebalance\","
                "\"retry_after_ms\":5}");
  cr_assert_eq(d->goaway->reason.len, 9);
  cr_assert_str_eq(d->goaway->reason.ptr, "rebalance");

  const char *j;
  size_t n;
  g.retry_after_ms = (uint64_t)INT64_MAX + 1;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
  g.retry_after_ms = 1;
  g.reason = S("");
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  g.reason = (chat_str){NULL, 0};
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  g.reason = (chat_str){"dr\0in", 5};
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
  g.reason = S("0123456789012345678901234567890123456789012345678901234567"
               "890123456789");
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_TOO_LARGE);
  g.reason = S("drain");
  f.version = CHAT_FRAME_V1;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  f.version = CHAT_FRAME_V2;
  f.goaway = NULL;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
}

Test(frame, resume_failed_reason_with_nul_is_refused_by_the_encoder) {
  /* The decoder refuses it, so the encoder must not write it. */
  chat_resume_failed rf = {.conversation_id = "c",
                           .reason = {"too\0old", 7}};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUME_FAILED,
                  .resume_failed = &rf};
  const char *j;
  size_t n;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
}

Test(frame, hello_resume_batch_hint) {
  chat_hello h = {.user_id = "alice", .device_id = "phone-1",
                  .session_id = "s:42", .server_ts = 1716000000123,
                  .heartbeat_ms = 30000, .limits = default_limits(),
                  .has_resume_batch_hint = true, .resume_batch_hint = 50};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_HELLO,
                  .hello = &h};
  encode_eq(&f,
            "{\"type\":\"hello\",\"user_id\":\"alice\",\"device_id\":"
            "\"phone-1\",\"session_id\":\"s:42\",\"server_ts\":1716000000123,"
            "\"heartbeat_ms\":30000,\"limits\":{\"max_body_bytes\":65536,"
            "\"max_frame_bytes\":131072,\"rate_per_minute\":60,"
            "\"resume_max_messages\":1000,\"resume_max_age_ms\":604800000,"
            "\"resume_batch_hint\":50}}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert(d->hello->has_resume_batch_hint);
  cr_assert_eq(d->hello->resume_batch_hint, 50);
  cr_assert_eq(d->hello->limits.resume_max_messages, 1000);
  h.resume_batch_hint = UINT32_MAX;
  cr_assert_eq(round_trip(&f, CHAT_DIR_TO_CLIENT, NULL)
                   ->hello->resume_batch_hint,
               UINT32_MAX);
  /* Absent: an older server, or one that does not pace resumes. */
  h.has_resume_batch_hint = false;
  d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_not(d->hello->has_resume_batch_hint);
  cr_assert_eq(d->hello->resume_batch_hint, 0);
  /* Zero asks for nothing and is refused both ways. */
  h.has_resume_batch_hint = true;
  h.resume_batch_hint = 0;
  const char *j;
  size_t n;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_VALUE);
}

Test(frame, conversation_admins) {
  const char *members[] = {"alice", "bob", "carol"};
  const char *admins[] = {"alice", "carol"};
  chat_conversation c = {.conversation_id = "g1",
                         .type = CHAT_CONVERSATION_GROUP,
                         .name = S("Team"), .members = members,
                         .n_members = 3, .admins = admins, .n_admins = 2};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_CONVERSATION,
                  .conversation = &c};
  encode_eq(&f, "{\"type\":\"conversation\",\"conversation\":{"
                "\"conversation_id\":\"g1\",\"type\":\"group\",\"name\":"
                "\"Team\",\"members\":[\"alice\",\"bob\",\"carol\"],"
                "\"admins\":[\"alice\",\"carol\"],\"last_message\":null,"
                "\"unread_count\":0,\"last_read_message_id\":null}}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->conversation->n_admins, 2);
  cr_assert_str_eq(d->conversation->admins[0], "alice");
  cr_assert_str_eq(d->conversation->admins[1], "carol");
  /* An older server's object has no admins. */
  d = decode_ok(CHAT_DIR_TO_CLIENT,
                "{\"type\":\"conversation\",\"conversation\":{"
                "\"conversation_id\":\"g1\",\"type\":\"group\","
                "\"members\":[\"a\"]}}");
  cr_assert_eq(d->conversation->n_admins, 0);
  /* Same limits as members, and ids are checked. */
  const char *j;
  size_t n;
  admins[1] = "car ol";
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_BAD_ID);
  admins[1] = "carol";
  c.admins = NULL;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  chat_codec *small;
  chat_codec_settings cs = {.version = CHAT_CODEC_SETTINGS_V1,
                            .max_members = 3};
  cr_assert_eq(chat_codec_new(&small, &cs, NULL, NULL), CHAT_OK);
  const char *four[] = {"a", "b", "c", "d"};
  c.admins = four;
  c.n_admins = 4;
  cr_assert_eq(chat_codec_encode(small, &f, &j, &n), CHAT_ERR_TOO_MANY);
  c.n_admins = 3;
  cr_assert_eq(chat_codec_encode(small, &f, &j, &n), CHAT_OK);
  chat_codec_free(small);
}

Test(frame, wire_errors_forbidden_and_not_found) {
  chat_error_frame e = {.wire = CHAT_WIRE_FORBIDDEN,
                        .message = S("only the sender may edit"),
                        .ref = S("e-1")};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_ERROR,
                  .error = &e};
  encode_eq(&f, "{\"type\":\"error\",\"code\":\"forbidden\",\"message\":"
                "\"only the sender may edit\",\"ref\":\"e-1\"}");
  const chat_frame *d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->error->wire, CHAT_WIRE_FORBIDDEN);
  cr_assert_str_eq(d->error->ref.ptr, "e-1");
  e.wire = CHAT_WIRE_NOT_FOUND;
  d = round_trip(&f, CHAT_DIR_TO_CLIENT, NULL);
  cr_assert_eq(d->error->wire, CHAT_WIRE_NOT_FOUND);
  cr_assert_str_eq(d->error->code, "not_found");
  /* Earlier values did not move. */
  cr_assert_eq(CHAT_WIRE_INTERNAL, 8);
  cr_assert_eq(CHAT_WIRE_FORBIDDEN, 9);
  cr_assert_eq(CHAT_WIRE_NOT_FOUND, 10);
}

Test(frame, wire_error_from_str_is_the_way_back) {
  for (int w = CHAT_WIRE_BAD_FRAME; w <= CHAT_WIRE_NOT_FOUND; w++) {
    const char *s = chat_wire_error_str((chat_wire_error)w);
    cr_assert_not_null(s);
    cr_assert_eq((int)chat_wire_error_from_str(s, strlen(s)), w, "%s", s);
  }
  cr_assert_eq(chat_wire_error_from_str("forbidden", 9), CHAT_WIRE_FORBIDDEN);
  cr_assert_eq(chat_wire_error_from_str("not_found", 9), CHAT_WIRE_NOT_FOUND);
  /* Length counts: a prefix or a longer text is another code. */
  cr_assert_eq(chat_wire_error_from_str("not_found", 8), CHAT_WIRE_OTHER);
  cr_assert_eq(chat_wire_error_from_str("not_foundx", 10), CHAT_WIRE_OTHER);
  cr_assert_eq(chat_wire_error_from_str("quota", 5), CHAT_WIRE_OTHER);
  cr_assert_eq(chat_wire_error_from_str("", 0), CHAT_WIRE_OTHER);
  cr_assert_eq(chat_wire_error_from_str(NULL, 3), CHAT_WIRE_OTHER);
}

/* An independent parser reads the section 8 fields as written. */
Test(frame, section8_fields_read_by_cjson) {
  chat_message m = {.message_id = 9, .conversation_id = "c",
                    .sender_id = "bot1", .body = S(""), .server_ts = 3,
                    .client_msg_id = "x", .body_type = CHAT_BODY_DELETE,
                    .has_target_id = true, .target_id = 7,
                    .sender_kind = CHAT_SENDER_BOT, .has_edited_ts = true,
                    .edited_ts = -5, .deleted = true};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_MESSAGE,
                  .message = &m};
  char *json;
  round_trip(&f, CHAT_DIR_TO_CLIENT, &json);
  cJSON *cj = cJSON_Parse(json);
  cr_assert_not_null(cj);
  cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cj, "body_type")
                       ->valuestring,
                   "delete");
  cr_assert_str_eq(
      cJSON_GetObjectItemCaseSensitive(cj, "target_id")->valuestring, "7");
  cr_assert_str_eq(
      cJSON_GetObjectItemCaseSensitive(cj, "sender_kind")->valuestring,
      "bot");
  cr_assert_eq(
      cJSON_GetObjectItemCaseSensitive(cj, "edited_ts")->valuedouble, -5);
  cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cj, "deleted")));
  cJSON_Delete(cj);
  free(json);
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
  /* Section 8 appended three; the earlier values did not move. */
  cr_assert_eq(CHAT_FRAME_PONG, 19);
  cr_assert_str_eq(chat_frame_type_name(CHAT_FRAME_EDIT), "edit");
  cr_assert_str_eq(chat_frame_type_name(CHAT_FRAME_DELETE), "delete");
  cr_assert_str_eq(chat_frame_type_name(CHAT_FRAME_GOAWAY), "goaway");
  cr_assert_eq(chat_frame_type_direction(CHAT_FRAME_EDIT), CHAT_DIR_TO_SERVER);
  cr_assert_eq(chat_frame_type_direction(CHAT_FRAME_DELETE),
               CHAT_DIR_TO_SERVER);
  cr_assert_eq(chat_frame_type_direction(CHAT_FRAME_GOAWAY),
               CHAT_DIR_TO_CLIENT);
  cr_assert_null(chat_frame_type_name((chat_frame_type)23));
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
  /* One rule for every versioned struct: newer than the library is
   * refused, every known version accepted. */
  f.version = CHAT_FRAME_V2 + 1;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_ERR_INVAL);
  f.version = CHAT_FRAME_V2;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_OK);
  f.version = CHAT_FRAME_V1;
  cr_assert_eq(chat_codec_encode(codec, &f, &j, &n), CHAT_OK);
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
  cr_assert_eq(chat_codec_new(&small, &cs, NULL, NULL), CHAT_OK);
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
  chat_errbuf e = {{0}};
  chat_codec_settings cs = {.version = CHAT_CODEC_SETTINGS_V1 + 1};
  cr_assert_eq(chat_codec_new(&c, &cs, NULL, &e), CHAT_ERR_INVAL);
  cr_assert_null(c);
  cr_assert(strstr(e.msg, "settings.version") != NULL, "%s", e.msg);
  cs.version = 0;
  e.msg[0] = 0;
  cr_assert_eq(chat_codec_new(&c, &cs, NULL, &e), CHAT_ERR_INVAL);
  cr_assert(strstr(e.msg, "settings.version: 0") != NULL, "%s", e.msg);
  chat_allocator half = {.alloc = NULL};
  e.msg[0] = 0;
  cr_assert_eq(chat_codec_new(&c, NULL, &half, &e), CHAT_ERR_INVAL);
  cr_assert(strstr(e.msg, "alloc") != NULL, "%s", e.msg);
  cs.version = CHAT_CODEC_SETTINGS_V1;
  strcpy(e.msg, "untouched");
  cr_assert_eq(chat_codec_new(&c, &cs, NULL, &e), CHAT_OK);
  cr_assert_str_eq(e.msg, "untouched");
  chat_codec_free(c);
  cr_assert_eq(chat_codec_new(NULL, NULL, NULL, NULL), CHAT_ERR_INVAL);
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
    chat_err rc = chat_codec_new(&c, NULL, &fa.a, NULL);
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
  cr_assert_eq(chat_codec_new(&c, NULL, &fa.a, NULL), CHAT_OK);
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

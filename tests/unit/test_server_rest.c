/* The REST API (PROTOCOL.md section 5 and the REST clarifications of
 * section 7): identity, conversations, history paging, members, receipts,
 * devices, media and routing. Answers are read with cJSON, independently
 * of the library's own JSON code. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server_harness.h"

static harness h;

static void setup(void) { harness_init(&h, NULL); }
static void teardown(void) { harness_fini(&h); }

TestSuite(rest, .init = setup, .fini = teardown);

static void restart(const chat_server_settings *s) {
  harness_fini(&h);
  harness_init(&h, s);
}

/* ---- helpers ---- */

/* One REST call whose answer must have @p status and be a JSON object;
 * returns the parsed answer (cJSON_Delete it). */
static cJSON *call(const char *user, const char *method, const char *path,
                   const char *query, const char *body, int status) {
  const char *out;
  int got = harness_http(&h, user, method, path, query, body, &out);
  cr_assert_eq(got, status, "%s %s?%s: %d, expected %d: %s", method, path,
               query ? query : "", got, status, out);
  cJSON *j = cJSON_Parse(out);
  cr_assert(cJSON_IsObject(j), "%s %s: not a JSON object: %s", method, path,
            out);
  return j;
}

/* An error answer: {"error":{"code":"...","message":"..."}} and nothing
 * else. Returns the code (static copy). */
static const char *error_of(cJSON *j) {
  static char code[64];
  cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
  cr_assert(cJSON_IsObject(e), "no error object");
  cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
  cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
  cr_assert(cJSON_IsString(c) && c->valuestring[0], "error.code");
  cr_assert(cJSON_IsString(m) && m->valuestring[0], "error.message");
  cr_assert_eq(cJSON_GetArraySize(j), 1, "only \"error\" at the top");
  snprintf(code, sizeof code, "%s", c->valuestring);
  return code;
}

static void expect_error(const char *user, const char *method,
                         const char *path, const char *query,
                         const char *body, int status, const char *code) {
  cJSON *j = call(user, method, path, query, body, status);
  const char *c = error_of(j);
  if (code)
    cr_assert_str_eq(c, code, "%s %s", method, path);
  cJSON_Delete(j);
}

static const char *str_of(cJSON *obj, const char *key) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  cr_assert(cJSON_IsString(v), "\"%s\" is not a string", key);
  return v->valuestring;
}

static double num_of(cJSON *obj, const char *key) {
  cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  cr_assert(cJSON_IsNumber(v), "\"%s\" is not a number", key);
  return v->valuedouble;
}

static bool has_member(cJSON *conv, const char *user) {
  cJSON *m = cJSON_GetObjectItemCaseSensitive(conv, "members");
  cr_assert(cJSON_IsArray(m));
  int n = 0;
  cJSON *it;
  cJSON_ArrayForEach(it, m) {
    cr_assert(cJSON_IsString(it));
    n += strcmp(it->valuestring, user) == 0;
  }
  cr_assert_leq(n, 1, "%s listed %d times", user, n);
  return n == 1;
}

static char *dup_id(const char *s) {
  char *d = strdup(s);
  cr_assert_not_null(d);
  return d;
}

static const char *conv_path(const char *conv, const char *tail) {
  static char p[4][256];
  static int slot;
  char *out = p[slot++ % 4];
  snprintf(out, 256, "/api/v1/conversations/%s%s", conv, tail ? tail : "");
  return out;
}

static const char *direct(const char *a, const char *b) {
  const char *m[] = {b};
  return harness_create(&h, a, "direct", m, 1);
}

/* Send through a device and commit; returns the message id. */
static uint64_t send_msg(dev *d, const char *conv, const char *cmid,
                         const char *body) {
  dev_sendf(d, "{\"type\":\"send\",\"client_msg_id\":\"%s\","
               "\"conversation_id\":\"%s\",\"body\":\"%s\"}",
            cmid, conv, body);
  harness_tick(&h);
  const chat_frame *f = dev_expect(d, CHAT_FRAME_ACK);
  cr_assert_str_eq(f->ack->client_msg_id, cmid);
  return f->ack->message_id;
}

static uint64_t id_of(cJSON *msg) {
  uint64_t id = strtoull(str_of(msg, "message_id"), NULL, 10);
  cr_assert_gt(id, 0);
  return id;
}

/* ---- identity and routing ---- */

Test(rest, no_identity_is_401_everywhere) {
  const char *bob[] = {"bob"};
  char conv[65];
  snprintf(conv, sizeof conv, "%s",
           harness_create(&h, "alice", "direct", bob, 1));
  struct {
    const char *method, *path, *body;
  } routes[] = {
    {"GET", "/api/v1/conversations", NULL},
    {"POST", "/api/v1/conversations",
     "{\"type\":\"direct\",\"members\":[\"bob\"]}"},
    {"GET", conv_path(conv, NULL), NULL},
    {"GET", conv_path(conv, "/messages"), NULL},
    {"POST", conv_path(conv, "/members"), "{\"user_id\":\"carol\"}"},
    {"DELETE", conv_path(conv, "/members/alice"), NULL},
    {"POST", "/api/v1/devices", "{\"platform\":\"fcm\",\"push_token\":\"t\"}"},
    {"POST", "/api/v1/media", "bytes"},
    {"GET", "/api/v1/media/m1", NULL},
    {"GET", "/api/v1/nope", NULL},
  };
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
    expect_error(NULL, routes[i].method, routes[i].path, NULL,
                 routes[i].body, 401, NULL);
  /* An identity without a user is no identity. */
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = "GET",
                           .path = "/api/v1/conversations",
                           .identity = &id};
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_OK);
  cr_assert_eq(resp.status, 401);
  /* Nothing changed: alice still has exactly the one conversation. */
  cJSON *j = call("alice", "GET", "/api/v1/conversations", NULL, NULL, 200);
  cr_assert_eq(
      cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "conversations")),
      1);
  cJSON_Delete(j);
}

Test(rest, unknown_route_is_404) {
  const char *conv = direct("alice", "bob");
  const char *paths[] = {
    "/api/v1/nope",
    "/api/v2/conversations",
    "/",
    "/api/v1",
    "/api/v1/",
    "/api/v1/devices/extra",
    "/api/v1/media/m1/extra",
    "/api/v1/conversations/a/b/c/d/e/f/g/h/i",
  };
  for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
    expect_error("alice", "GET", paths[i], NULL, NULL, 404, NULL);
  /* Under a conversation, a path no route has is unknown, not a wrong
   * method. */
  expect_error("alice", "GET", conv_path(conv, "/nonsense"), NULL, NULL, 404,
               NULL);
  expect_error("alice", "GET", conv_path(conv, "/messages/1/nonsense"), NULL,
               NULL, 404, NULL);
  expect_error("alice", "POST", conv_path(conv, "/nonsense/x"), NULL, "{}",
               404, NULL);
}

Test(rest, wrong_method_is_405) {
  const char *conv = direct("alice", "bob");
  struct {
    const char *method, *path;
  } cases[] = {
    {"PUT", "/api/v1/conversations"},
    {"DELETE", "/api/v1/conversations"},
    {"POST", conv_path(conv, NULL)},
    {"DELETE", conv_path(conv, "/messages")},
    {"GET", conv_path(conv, "/members")},
    {"GET", conv_path(conv, "/members/alice")},
    {"POST", conv_path(conv, "/messages/1/receipts")},
    {"GET", "/api/v1/devices"},
    {"GET", "/api/v1/media"},
    {"DELETE", "/api/v1/media/m1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    expect_error("alice", cases[i].method, cases[i].path, NULL, "{}", 405,
                 NULL);
}

Test(rest, percent_encoded_path_segments) {
  const char *m[] = {"u:bob", "carol"};
  char conv[65];
  snprintf(conv, sizeof conv, "%s",
           harness_create(&h, "alice", "group", m, 2));
  /* %3A for ':' in a user id. */
  cJSON *j = call("u:bob", "DELETE", conv_path(conv, "/members/u%3Abob"),
                  NULL, NULL, 200);
  cJSON_Delete(j);
  j = call("alice", "GET", conv_path(conv, NULL), NULL, NULL, 200);
  cr_assert_not(has_member(j, "u:bob"));
  cr_assert(has_member(j, "carol"));
  cJSON_Delete(j);
  /* Any byte of an id may be escaped, in either case. */
  char enc[160];
  snprintf(enc, sizeof enc, "/api/v1/conversations/%%%02x%s", conv[0],
           conv + 1);
  j = call("alice", "GET", enc, NULL, NULL, 200);
  cr_assert_str_eq(str_of(j, "conversation_id"), conv);
  cJSON_Delete(j);
  snprintf(enc, sizeof enc, "/api/v1/conversations/%%%02X%s/messages",
           conv[0], conv + 1);
  cJSON_Delete(call("alice", "GET", enc, NULL, NULL, 200));
  /* A broken escape is not an id. */
  expect_error("alice", "GET", "/api/v1/conversations/c%zz", NULL, NULL, 404,
               NULL);
}

/* ---- creating conversations ---- */

Test(rest, direct_is_created_once_per_pair) {
  cJSON *j = call("alice", "POST", "/api/v1/conversations", NULL,
                  "{\"type\":\"direct\",\"members\":[\"bob\"]}", 201);
  char *id = dup_id(str_of(j, "conversation_id"));
  cr_assert_str_eq(str_of(j, "type"), "direct");
  cr_assert(has_member(j, "alice") && has_member(j, "bob"));
  cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j,
                                                                   "members")),
               2);
  cJSON_Delete(j);
  /* The same pair again, from either side: 200 and the same id. */
  j = call("alice", "POST", "/api/v1/conversations", NULL,
           "{\"type\":\"direct\",\"members\":[\"bob\"]}", 200);
  cr_assert_str_eq(str_of(j, "conversation_id"), id);
  cJSON_Delete(j);
  j = call("bob", "POST", "/api/v1/conversations", NULL,
           "{\"type\":\"direct\",\"members\":[\"alice\"]}", 200);
  cr_assert_str_eq(str_of(j, "conversation_id"), id);
  cJSON_Delete(j);
  /* The caller may name themself too. */
  j = call("bob", "POST", "/api/v1/conversations", NULL,
           "{\"type\":\"direct\",\"members\":[\"bob\",\"alice\"]}", 200);
  cr_assert_str_eq(str_of(j, "conversation_id"), id);
  cJSON_Delete(j);
  /* Another pair is another conversation. */
  j = call("alice", "POST", "/api/v1/conversations", NULL,
           "{\"type\":\"direct\",\"members\":[\"carol\"]}", 201);
  cr_assert_str_neq(str_of(j, "conversation_id"), id);
  cJSON_Delete(j);
  free(id);
}

Test(rest, group_with_name_and_the_caller_as_member) {
  dev *b = dev_open(&h, "bob", "phone");
  dev *a = dev_open(&h, "alice", "phone");
  dev_drain(a);
  dev_drain(b);
  cJSON *j = call("alice", "POST", "/api/v1/conversations", NULL,
                  "{\"type\":\"group\",\"name\":\"Trip \\u00e9\","
                  "\"members\":[\"bob\",\"carol\",\"bob\"]}",
                  201);
  cr_assert_str_eq(str_of(j, "type"), "group");
  cr_assert_str_eq(str_of(j, "name"), "Trip \xc3\xa9");
  cr_assert(has_member(j, "alice"), "the caller is always a member");
  cr_assert(has_member(j, "bob") && has_member(j, "carol"));
  cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j,
                                                                   "members")),
               3);
  cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "last_message")));
  char *id = dup_id(str_of(j, "conversation_id"));
  cJSON_Delete(j);
  /* The other members' devices learn of it; the creator has the answer. */
  const chat_frame *f = dev_expect(b, CHAT_FRAME_CONVERSATION);
  cr_assert_str_eq(f->conversation->conversation_id, id);
  cr_assert_eq(dev_count(a, CHAT_FRAME_CONVERSATION), 0);
  /* A second group with the same members is a new conversation. */
  j = call("alice", "POST", "/api/v1/conversations", NULL,
           "{\"type\":\"group\",\"members\":[\"bob\",\"carol\"]}", 201);
  cr_assert_str_neq(str_of(j, "conversation_id"), id);
  cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "name")));
  cr_assert(has_member(j, "alice"));
  cJSON_Delete(j);
  /* A group of one: just the caller. */
  j = call("alice", "POST", "/api/v1/conversations", NULL,
           "{\"type\":\"group\",\"name\":\"notes\",\"members\":[]}", 201);
  cr_assert(has_member(j, "alice"));
  cJSON_Delete(j);
  free(id);
}

Test(rest, bad_bodies_are_400) {
  const char *bodies[] = {
    NULL,
    "",
    "not json",
    "[]",
    "\"direct\"",
    "{\"type\":\"direct\",\"members\":[\"bob\"]} trailing",
    "{}",
    "{\"members\":[\"bob\"]}",
    "{\"type\":\"channel\",\"members\":[\"bob\"]}",
    "{\"type\":7,\"members\":[\"bob\"]}",
    "{\"type\":\"direct\"}",
    "{\"type\":\"direct\",\"members\":\"bob\"}",
    "{\"type\":\"direct\",\"members\":[1]}",
    "{\"type\":\"direct\",\"members\":[null]}",
    "{\"type\":\"direct\",\"members\":[\"has space\"]}",
    "{\"type\":\"direct\",\"members\":[\"\"]}",
    "{\"type\":\"direct\",\"members\":[]}",
    "{\"type\":\"direct\",\"members\":[\"alice\"]}",
    "{\"type\":\"direct\",\"members\":[\"bob\",\"carol\"]}",
    "{\"type\":\"group\",\"name\":5,\"members\":[\"bob\"]}",
    "{\"type\":\"group\",\"name\":\"x\",\"members\":[\"bob\",\"a/b\"]}",
    "{\"type\":\"group\",\"members\":{\"bob\":true}}",
  };
  for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
    expect_error("alice", "POST", "/api/v1/conversations", NULL, bodies[i],
                 400, NULL);
  cJSON *j = call("alice", "GET", "/api/v1/conversations", NULL, NULL, 200);
  cr_assert_eq(
      cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "conversations")),
      0, "a refused request created something");
  cJSON_Delete(j);
}

/* A body for a group of the listed ids plus n generated ones. */
static char *group_body(const char *listed, size_t n) {
  size_t cap = n * 16 + 256;
  char *b = malloc(cap);
  int k = snprintf(b, cap, "{\"type\":\"group\",\"members\":[%s", listed);
  for (size_t i = 0; i < n; i++)
    k += snprintf(b + k, cap - (size_t)k, "%s\"u%zu\"",
                  (i || listed[0]) ? "," : "", i);
  snprintf(b + k, cap - (size_t)k, "]}");
  return b;
}

Test(rest, too_many_members_is_413) {
  /* Default limit 1,024 members, the caller included. */
  char *b = group_body("", 1024);
  expect_error("alice", "POST", "/api/v1/conversations", NULL, b, 413, NULL);
  free(b);
  b = group_body("", 1023);
  cJSON *j = call("alice", "POST", "/api/v1/conversations", NULL, b, 201);
  cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j,
                                                                   "members")),
               1024);
  cJSON_Delete(j);
  free(b);
}

Test(rest, member_limit_counts_distinct_members) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .max_group_members = 4};
  restart(&s);
  expect_error("alice", "POST", "/api/v1/conversations", NULL,
               "{\"type\":\"group\",\"members\":[\"b\",\"c\",\"d\",\"e\"]}",
               413, NULL);
  /* Four members once the caller is counted: within the limit. */
  cJSON_Delete(call("alice", "POST", "/api/v1/conversations", NULL,
                    "{\"type\":\"group\",\"members\":"
                    "[\"b\",\"c\",\"d\"]}",
                    201));
  cJSON *j = call("alice", "POST", "/api/v1/conversations", NULL,
                  "{\"type\":\"group\",\"members\":"
                  "[\"alice\",\"b\",\"c\",\"d\"]}",
                  201);
  cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j,
                                                                   "members")),
               4);
  cJSON_Delete(j);
}

/* ---- listing conversations ---- */

static cJSON *list(const char *user, const char *query) {
  return call(user, "GET", "/api/v1/conversations", query, NULL, 200);
}

static cJSON *convs_of(cJSON *page) {
  cJSON *c = cJSON_GetObjectItemCaseSensitive(page, "conversations");
  cr_assert(cJSON_IsArray(c));
  return c;
}

Test(rest, conversations_most_recent_activity_first) {
  char c1[65], c2[65], c3[65];
  snprintf(c1, sizeof c1, "%s", direct("alice", "bob"));
  harness_advance(&h, 10);
  snprintf(c2, sizeof c2, "%s", direct("alice", "carol"));
  harness_advance(&h, 10);
  snprintf(c3, sizeof c3, "%s", direct("dave", "alice"));
  harness_advance(&h, 10);
  cJSON *j = list("alice", NULL);
  cJSON *cs = convs_of(j);
  cr_assert_eq(cJSON_GetArraySize(cs), 3);
  cr_assert_str_eq(str_of(cJSON_GetArrayItem(cs, 0), "conversation_id"), c3);
  cr_assert_str_eq(str_of(cJSON_GetArrayItem(cs, 1), "conversation_id"), c2);
  cr_assert_str_eq(str_of(cJSON_GetArrayItem(cs, 2), "conversation_id"), c1);
  cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "next_cursor")));
  cJSON_Delete(j);
  /* A message moves its conversation to the top. */
  dev *b = dev_open(&h, "bob", "phone");
  send_msg(b, c1, "m1", "hello");
  harness_advance(&h, 10);
  j = list("alice", NULL);
  cs = convs_of(j);
  cr_assert_str_eq(str_of(cJSON_GetArrayItem(cs, 0), "conversation_id"), c1);
  cr_assert_str_eq(str_of(cJSON_GetArrayItem(cs, 1), "conversation_id"), c3);
  cr_assert_str_eq(str_of(cJSON_GetArrayItem(cs, 2), "conversation_id"), c2);
  cJSON_Delete(j);
  /* Only the caller's conversations. */
  j = list("carol", NULL);
  cs = convs_of(j);
  cr_assert_eq(cJSON_GetArraySize(cs), 1);
  cr_assert_str_eq(str_of(cJSON_GetArrayItem(cs, 0), "conversation_id"), c2);
  cJSON_Delete(j);
}

static cJSON *find_conv(cJSON *page, const char *id) {
  cJSON *it;
  cJSON_ArrayForEach(it, convs_of(page)) {
    if (strcmp(str_of(it, "conversation_id"), id) == 0)
      return it;
  }
  cr_assert_fail("conversation %s not listed", id);
  return NULL;
}

Test(rest, unread_count_last_read_and_last_message) {
  char c[65];
  snprintf(c, sizeof c, "%s", direct("alice", "bob"));
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  cJSON *j = list("bob", NULL);
  cJSON *v = find_conv(j, c);
  cr_assert_eq(num_of(v, "unread_count"), 0);
  cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(v, "last_message")));
  cr_assert(cJSON_IsNull(
      cJSON_GetObjectItemCaseSensitive(v, "last_read_message_id")));
  cJSON_Delete(j);

  uint64_t m1 = send_msg(a, c, "a1", "one");
  uint64_t m2 = send_msg(a, c, "a2", "two");
  uint64_t m3 = send_msg(a, c, "a3", "three");
  uint64_t m4 = send_msg(b, c, "b1", "bob here");
  (void)m1;
  (void)m3;
  /* Other members' messages after the read mark. */
  j = list("bob", NULL);
  v = find_conv(j, c);
  cr_assert_eq(num_of(v, "unread_count"), 3);
  cr_assert(cJSON_IsNull(
      cJSON_GetObjectItemCaseSensitive(v, "last_read_message_id")),
      "null before the first read");
  cJSON *last = cJSON_GetObjectItemCaseSensitive(v, "last_message");
  cr_assert(cJSON_IsObject(last));
  cr_assert_eq(id_of(last), m4);
  cr_assert_str_eq(str_of(last, "sender_id"), "bob");
  cr_assert_str_eq(str_of(last, "body"), "bob here");
  cr_assert_str_eq(str_of(last, "conversation_id"), c);
  cJSON_Delete(j);
  j = list("alice", NULL);
  cr_assert_eq(num_of(find_conv(j, c), "unread_count"), 1);
  cJSON_Delete(j);

  /* bob reads up to alice's second message. */
  dev_sendf(b, "{\"type\":\"read\",\"conversation_id\":\"%s\","
               "\"up_to_message_id\":\"%llu\"}", c, (unsigned long long)m2);
  harness_tick(&h);
  j = list("bob", NULL);
  v = find_conv(j, c);
  cr_assert_eq(num_of(v, "unread_count"), 1);
  char want[24];
  snprintf(want, sizeof want, "%llu", (unsigned long long)m2);
  cr_assert_str_eq(str_of(v, "last_read_message_id"), want);
  cJSON_Delete(j);
  dev_sendf(b, "{\"type\":\"read\",\"conversation_id\":\"%s\","
               "\"up_to_message_id\":\"%llu\"}", c, (unsigned long long)m4);
  harness_tick(&h);
  j = list("bob", NULL);
  cr_assert_eq(num_of(find_conv(j, c), "unread_count"), 0);
  cJSON_Delete(j);
  /* alice's view is her own. */
  j = list("alice", NULL);
  v = find_conv(j, c);
  cr_assert_eq(num_of(v, "unread_count"), 1);
  cr_assert(cJSON_IsNull(
      cJSON_GetObjectItemCaseSensitive(v, "last_read_message_id")));
  cJSON_Delete(j);
}

/* Walk every page of alice's conversations with @p limit; returns how many
 * ids were seen, each appended to ids[]. */
static size_t walk(size_t limit, char ids[][65], size_t max, size_t *pages) {
  char cursor[256] = "";
  size_t n = 0;
  *pages = 0;
  for (;;) {
    char q[320];
    if (cursor[0])
      snprintf(q, sizeof q, "limit=%zu&cursor=%s", limit, cursor);
    else
      snprintf(q, sizeof q, "limit=%zu", limit);
    cJSON *j = list("alice", q);
    (*pages)++;
    cr_assert_leq(*pages, 50, "paging does not end");
    cJSON *cs = convs_of(j);
    cr_assert_leq((size_t)cJSON_GetArraySize(cs), limit);
    cJSON *it;
    cJSON_ArrayForEach(it, cs) {
      cr_assert_lt(n, max);
      snprintf(ids[n++], 65, "%s", str_of(it, "conversation_id"));
    }
    cJSON *next = cJSON_GetObjectItemCaseSensitive(j, "next_cursor");
    if (cJSON_IsNull(next)) {
      cJSON_Delete(j);
      return n;
    }
    cr_assert(cJSON_IsString(next) && next->valuestring[0]);
    cr_assert_eq((size_t)cJSON_GetArraySize(cs), limit,
                 "a short page that is not the last");
    snprintf(cursor, sizeof cursor, "%s", next->valuestring);
    cJSON_Delete(j);
  }
}

Test(rest, conversations_page_through_25) {
  char made[25][65];
  for (int i = 0; i < 25; i++) {
    char other[16];
    snprintf(other, sizeof other, "p%d", i);
    snprintf(made[i], 65, "%s", direct("alice", other));
    /* Several conversations share a timestamp: the order must still be
     * total across pages. */
    if (i % 3 == 2)
      harness_advance(&h, 7);
  }
  /* The reference order: everything on one page. */
  static char all[64][65];
  cJSON *j = list("alice", "limit=200");
  int total = cJSON_GetArraySize(convs_of(j));
  cr_assert_eq(total, 25);
  for (int i = 0; i < total; i++)
    snprintf(all[i], 65, "%s",
             str_of(cJSON_GetArrayItem(convs_of(j), i), "conversation_id"));
  cJSON_Delete(j);
  size_t limits[] = {7, 5, 1, 24, 25};
  for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
    static char seen[64][65];
    size_t pages;
    size_t n = walk(limits[l], seen, 64, &pages);
    cr_assert_eq(n, 25, "limit %zu: %zu conversations", limits[l], n);
    cr_assert_eq(pages, (25 + limits[l] - 1) / limits[l], "limit %zu",
                 limits[l]);
    for (size_t i = 0; i < n; i++)
      cr_assert_str_eq(seen[i], all[i], "limit %zu: position %zu", limits[l],
                       i);
  }
  /* Every conversation made appears once. */
  for (int i = 0; i < 25; i++) {
    int found = 0;
    for (int k = 0; k < 25; k++)
      found += strcmp(made[i], all[k]) == 0;
    cr_assert_eq(found, 1, "%s", made[i]);
  }
  /* The default page is 50: one page. */
  j = list("alice", NULL);
  cr_assert_eq(cJSON_GetArraySize(convs_of(j)), 25);
  cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "next_cursor")));
  cJSON_Delete(j);
}

Test(rest, bad_limit_or_cursor_is_400) {
  direct("alice", "bob");
  const char *queries[] = {"limit=0",   "limit=201", "limit=abc",
                           "limit=-1",  "limit=",    "limit=5x",
                           "limit=1e3", "cursor=garbage",
                           "cursor=12:has%20space", "limit=%zz"};
  for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++)
    expect_error("alice", "GET", "/api/v1/conversations", queries[i], NULL,
                 400, NULL);
  cJSON_Delete(list("alice", "limit=200"));
  cJSON_Delete(list("alice", "limit=1"));
}

/* ---- history ---- */

static char hconv[65];
static uint64_t hids[260]; /* oldest first */

/* n messages in a direct chat of alice and bob, alternating senders. */
static void history_of(size_t n) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .rate_per_minute = 100000};
  restart(&s);
  snprintf(hconv, sizeof hconv, "%s", direct("alice", "bob"));
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  for (size_t i = 0; i < n; i++) {
    char cmid[16];
    snprintf(cmid, sizeof cmid, "m%zu", i);
    dev_sendf(i % 2 ? b : a,
              "{\"type\":\"send\",\"client_msg_id\":\"%s\","
              "\"conversation_id\":\"%s\",\"body\":\"n%zu\"}",
              cmid, hconv, i);
  }
  harness_tick(&h);
  size_t k = 0;
  /* Acks come per device; ids rise in send order, so sort by cmid. */
  for (int pass = 0; pass < 2; pass++) {
    dev *d = pass ? b : a;
    const chat_frame *f;
    while ((f = dev_next(d))) {
      if (f->type != CHAT_FRAME_ACK)
        continue;
      size_t i = strtoul(f->ack->client_msg_id + 1, NULL, 10);
      cr_assert_lt(i, n);
      hids[i] = f->ack->message_id;
      k++;
    }
  }
  cr_assert_eq(k, n);
  for (size_t i = 1; i < n; i++)
    cr_assert_gt(hids[i], hids[i - 1]);
}

/* A page of history: checks the shape, returns the messages array. */
static cJSON *page(cJSON *j, bool *has_more) {
  cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "messages");
  cr_assert(cJSON_IsArray(m));
  cJSON *hm = cJSON_GetObjectItemCaseSensitive(j, "has_more");
  cr_assert(cJSON_IsBool(hm));
  *has_more = cJSON_IsTrue(hm);
  return m;
}

static cJSON *history(const char *query) {
  return call("alice", "GET", conv_path(hconv, "/messages"), query, NULL,
              200);
}

/* The page holds hids[from], hids[from + step], ... (count of them). */
static void expect_ids(cJSON *msgs, size_t from, int step, size_t count) {
  cr_assert_eq((size_t)cJSON_GetArraySize(msgs), count, "page of %d, not %zu",
               cJSON_GetArraySize(msgs), count);
  for (size_t i = 0; i < count; i++) {
    cJSON *m = cJSON_GetArrayItem(msgs, (int)i);
    size_t want = from + (size_t)((long)i * step);
    cr_assert_eq(id_of(m), hids[want], "position %zu", i);
    char body[16];
    snprintf(body, sizeof body, "n%zu", want);
    cr_assert_str_eq(str_of(m, "body"), body);
    cr_assert_str_eq(str_of(m, "conversation_id"), hconv);
    cr_assert_str_eq(str_of(m, "sender_id"), want % 2 ? "bob" : "alice");
    cr_assert(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(m,
                                                             "server_ts")));
  }
}

Test(rest, history_default_is_the_newest_50_newest_first) {
  history_of(60);
  bool more;
  cJSON *j = history(NULL);
  expect_ids(page(j, &more), 59, -1, 50);
  cr_assert(more);
  cJSON_Delete(j);
  /* And the rest, before the oldest of that page. */
  char q[64];
  snprintf(q, sizeof q, "before=%llu", (unsigned long long)hids[10]);
  j = history(q);
  expect_ids(page(j, &more), 9, -1, 10);
  cr_assert_not(more);
  cJSON_Delete(j);
}

Test(rest, history_after_is_oldest_first) {
  history_of(12);
  bool more;
  char q[64];
  snprintf(q, sizeof q, "after=%llu&limit=5", (unsigned long long)hids[3]);
  cJSON *j = history(q);
  expect_ids(page(j, &more), 4, 1, 5);
  cr_assert(more);
  cJSON_Delete(j);
  snprintf(q, sizeof q, "after=%llu&limit=5", (unsigned long long)hids[8]);
  j = history(q);
  expect_ids(page(j, &more), 9, 1, 3);
  cr_assert_not(more);
  cJSON_Delete(j);
  /* after=0 starts at the beginning. */
  j = history("after=0&limit=4");
  expect_ids(page(j, &more), 0, 1, 4);
  cr_assert(more);
  cJSON_Delete(j);
}

Test(rest, history_has_more_at_the_boundaries) {
  history_of(10);
  bool more;
  cJSON *j = history("limit=10");
  expect_ids(page(j, &more), 9, -1, 10);
  cr_assert_not(more, "exactly limit messages: nothing more");
  cJSON_Delete(j);
  j = history("limit=9");
  expect_ids(page(j, &more), 9, -1, 9);
  cr_assert(more);
  cJSON_Delete(j);
  char q[64];
  snprintf(q, sizeof q, "before=%llu&limit=3", (unsigned long long)hids[3]);
  j = history(q);
  expect_ids(page(j, &more), 2, -1, 3);
  cr_assert_not(more, "the page ends at the first message");
  cJSON_Delete(j);
  snprintf(q, sizeof q, "before=%llu&limit=2", (unsigned long long)hids[3]);
  j = history(q);
  expect_ids(page(j, &more), 2, -1, 2);
  cr_assert(more);
  cJSON_Delete(j);
  snprintf(q, sizeof q, "after=%llu&limit=3", (unsigned long long)hids[6]);
  j = history(q);
  expect_ids(page(j, &more), 7, 1, 3);
  cr_assert_not(more, "the page ends at the last message");
  cJSON_Delete(j);
  snprintf(q, sizeof q, "before=%llu", (unsigned long long)hids[0]);
  j = history(q);
  expect_ids(page(j, &more), 0, 1, 0);
  cr_assert_not(more);
  cJSON_Delete(j);
  snprintf(q, sizeof q, "after=%llu", (unsigned long long)hids[9]);
  j = history(q);
  expect_ids(page(j, &more), 0, 1, 0);
  cr_assert_not(more);
  cJSON_Delete(j);
}

Test(rest, history_limit_is_at_most_200) {
  history_of(205);
  bool more;
  cJSON *j = history("limit=200");
  expect_ids(page(j, &more), 204, -1, 200);
  cr_assert(more);
  cJSON_Delete(j);
  expect_error("alice", "GET", conv_path(hconv, "/messages"), "limit=201",
               NULL, 400, NULL);
  expect_error("alice", "GET", conv_path(hconv, "/messages"), "limit=0", NULL,
               400, NULL);
  j = history("after=0&limit=200");
  expect_ids(page(j, &more), 0, 1, 200);
  cr_assert(more);
  cJSON_Delete(j);
}

Test(rest, history_refusals) {
  history_of(3);
  const char *p = conv_path(hconv, "/messages");
  char q[96];
  snprintf(q, sizeof q, "before=%llu&after=%llu", (unsigned long long)hids[2],
           (unsigned long long)hids[0]);
  expect_error("alice", "GET", p, q, NULL, 400, NULL);
  const char *bad[] = {"before=abc", "before=01", "after=-1", "before=",
                       "after=99999999999999999999", "before=1.5",
                       "after=%zz"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_error("alice", "GET", p, bad[i], NULL, 400, NULL);
  expect_error("alice", "GET", "/api/v1/conversations/c404/messages", NULL,
               NULL, 404, NULL);
  expect_error("carol", "GET", p, NULL, NULL, 403, NULL);
  expect_error("carol", "GET", conv_path(hconv, NULL), NULL, NULL, 403, NULL);
  /* An id that breaks the id rules cannot name a conversation. */
  expect_error("alice", "GET", "/api/v1/conversations/a%20b/messages", NULL,
               NULL, 404, NULL);
}

/* ---- members ---- */

Test(rest, add_member_to_a_group) {
  const char *m[] = {"bob"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 1));
  dev *a = dev_open(&h, "alice", "phone");
  dev *d1 = dev_open(&h, "dave", "phone");
  dev *d2 = dev_open(&h, "dave", "tablet");
  /* dave is refused first, which caches the membership... */
  dev_sendf(d1, "{\"type\":\"send\",\"client_msg_id\":\"x\","
                "\"conversation_id\":\"%s\",\"body\":\"hi\"}", g);
  cr_assert_eq(dev_expect(d1, CHAT_FRAME_ERROR)->error->wire,
               CHAT_WIRE_NOT_MEMBER);
  send_msg(a, g, "a1", "before dave");
  dev_drain(d1);
  dev_drain(d2);
  /* ...then added. */
  cJSON *j = call("alice", "POST", conv_path(g, "/members"), NULL,
                  "{\"user_id\":\"dave\"}", 200);
  cr_assert_str_eq(str_of(j, "conversation_id"), g);
  cr_assert(has_member(j, "dave"));
  cJSON_Delete(j);
  for (int i = 0; i < 2; i++) {
    const chat_frame *f = dev_expect(i ? d2 : d1, CHAT_FRAME_CONVERSATION);
    cr_assert_str_eq(f->conversation->conversation_id, g);
    cr_assert_eq(f->conversation->type, CHAT_CONVERSATION_GROUP);
    bool found = false;
    for (size_t k = 0; k < f->conversation->n_members; k++)
      found |= strcmp(f->conversation->members[k], "dave") == 0;
    cr_assert(found);
  }
  /* dave can send now, and his send reaches alice. */
  dev_drain(a);
  send_msg(d1, g, "d1", "hello all");
  cr_assert_str_eq(dev_expect(a, CHAT_FRAME_MESSAGE)->message->sender_id,
                   "dave");
  cr_assert_eq(dev_count(d2, CHAT_FRAME_MESSAGE), 1);
  /* Adding again changes nothing and announces nothing. */
  dev_drain(d1);
  cJSON_Delete(call("alice", "POST", conv_path(g, "/members"), NULL,
                    "{\"user_id\":\"dave\"}", 200));
  cr_assert_eq(dev_count(d1, CHAT_FRAME_CONVERSATION), 0);
}

Test(rest, add_member_refusals) {
  const char *m[] = {"bob"};
  char g[65], d[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 1));
  snprintf(d, sizeof d, "%s", direct("alice", "bob"));
  expect_error("alice", "POST", conv_path(d, "/members"), NULL,
               "{\"user_id\":\"carol\"}", 409, NULL);
  expect_error("carol", "POST", conv_path(g, "/members"), NULL,
               "{\"user_id\":\"carol\"}", 403, NULL);
  expect_error("alice", "POST", "/api/v1/conversations/c404/members", NULL,
               "{\"user_id\":\"carol\"}", 404, NULL);
  const char *bad[] = {NULL, "{}", "{\"user_id\":5}", "{\"user_id\":\"a b\"}",
                       "nope"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_error("alice", "POST", conv_path(g, "/members"), NULL, bad[i], 400,
                 NULL);
  /* Nobody was added. */
  cJSON *j = call("alice", "GET", conv_path(g, NULL), NULL, NULL, 200);
  cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j,
                                                                   "members")),
               2);
  cJSON_Delete(j);
  j = call("alice", "GET", conv_path(d, NULL), NULL, NULL, 200);
  cr_assert_not(has_member(j, "carol"));
  cJSON_Delete(j);
}

Test(rest, remove_member) {
  const char *m[] = {"bob", "carol"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 2));
  dev *b = dev_open(&h, "bob", "phone");
  dev *c = dev_open(&h, "carol", "phone");
  /* bob's membership is cached by a send. */
  send_msg(b, g, "b1", "bye soon");
  /* Removing someone else is for admins only (alice created the group),
   * and a refusal changes nothing. */
  expect_error("bob", "DELETE", conv_path(g, "/members/carol"), NULL, NULL,
               403, "forbidden");
  send_msg(c, g, "c1", "still here");
  /* Removing oneself works. */
  cJSON_Delete(call("bob", "DELETE", conv_path(g, "/members/bob"), NULL, NULL,
                    200));
  dev_drain(b);
  dev_sendf(b, "{\"type\":\"send\",\"client_msg_id\":\"b2\","
               "\"conversation_id\":\"%s\",\"body\":\"hi\"}", g);
  harness_tick(&h);
  const chat_frame *f = dev_expect(b, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_NOT_MEMBER);
  cr_assert_str_eq(f->error->ref.ptr, "b2");
  cr_assert_eq(dev_count(b, CHAT_FRAME_ACK), 0);
  expect_error("bob", "GET", conv_path(g, "/messages"), NULL, NULL, 403,
               NULL);
  /* bob no longer receives the group's messages. */
  send_msg(c, g, "c2", "after bob");
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 0);
  cJSON *j = call("alice", "GET", conv_path(g, NULL), NULL, NULL, 200);
  cr_assert_not(has_member(j, "bob"));
  cr_assert(has_member(j, "carol"));
  cJSON_Delete(j);
  /* A non-member cannot remove anyone, themself included. */
  expect_error("bob", "DELETE", conv_path(g, "/members/bob"), NULL, NULL, 403,
               NULL);
  expect_error("dave", "DELETE", conv_path(g, "/members/alice"), NULL, NULL,
               403, NULL);
}

/* ---- receipts ---- */

static cJSON *receipts(const char *user, const char *conv, uint64_t id) {
  char tail[64];
  snprintf(tail, sizeof tail, "/messages/%llu/receipts",
           (unsigned long long)id);
  return call(user, "GET", conv_path(conv, tail), NULL, NULL, 200);
}

static const char *member_state(cJSON *j, const char *user) {
  cJSON *ms = cJSON_GetObjectItemCaseSensitive(j, "members");
  cr_assert(cJSON_IsArray(ms));
  cJSON *it;
  cJSON_ArrayForEach(it, ms) {
    if (strcmp(str_of(it, "user_id"), user) == 0)
      return str_of(it, "state");
  }
  cr_assert_fail("%s not in members", user);
  return NULL;
}

Test(rest, receipts_of_a_direct_message) {
  char c[65];
  snprintf(c, sizeof c, "%s", direct("alice", "bob"));
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  uint64_t id = send_msg(a, c, "a1", "hi");
  cJSON *j = receipts("alice", c, id);
  cr_assert_eq(num_of(j, "delivered"), 0);
  cr_assert_eq(num_of(j, "read"), 0);
  cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j,
                                                                   "members")),
               1, "the other member only");
  cr_assert_str_eq(member_state(j, "bob"), "sent");
  cJSON_Delete(j);
  dev_sendf(b, "{\"type\":\"delivered\",\"conversation_id\":\"%s\","
               "\"up_to_message_id\":\"%llu\"}", c, (unsigned long long)id);
  harness_tick(&h);
  j = receipts("alice", c, id);
  cr_assert_eq(num_of(j, "delivered"), 1);
  cr_assert_eq(num_of(j, "read"), 0);
  cr_assert_str_eq(member_state(j, "bob"), "delivered");
  cJSON_Delete(j);
  dev_sendf(b, "{\"type\":\"read\",\"conversation_id\":\"%s\","
               "\"up_to_message_id\":\"%llu\"}", c, (unsigned long long)id);
  harness_tick(&h);
  /* Cumulative: a reader counts as delivered too. Members see it too. */
  j = receipts("bob", c, id);
  cr_assert_eq(num_of(j, "delivered"), 1);
  cr_assert_eq(num_of(j, "read"), 1);
  cr_assert_str_eq(member_state(j, "bob"), "read");
  cJSON_Delete(j);
  char tail[64];
  snprintf(tail, sizeof tail, "/messages/%llu/receipts",
           (unsigned long long)id + 1);
  expect_error("alice", "GET", conv_path(c, tail), NULL, NULL, 404, NULL);
  expect_error("alice", "GET", conv_path(c, "/messages/x1/receipts"), NULL,
               NULL, 400, NULL);
  snprintf(tail, sizeof tail, "/messages/%llu/receipts",
           (unsigned long long)id);
  expect_error("carol", "GET", conv_path(c, tail), NULL, NULL, 403, NULL);
}

Test(rest, receipts_of_a_group_message) {
  const char *m[] = {"bob", "carol"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 2));
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  uint64_t id = send_msg(a, g, "a1", "hi");
  dev_sendf(b, "{\"type\":\"read\",\"conversation_id\":\"%s\","
               "\"up_to_message_id\":\"%llu\"}", g, (unsigned long long)id);
  harness_tick(&h);
  cJSON *j = receipts("alice", g, id);
  cr_assert_eq(num_of(j, "delivered"), 1);
  cr_assert_eq(num_of(j, "read"), 1);
  cr_assert_str_eq(member_state(j, "bob"), "read");
  cr_assert_str_eq(member_state(j, "carol"), "sent");
  cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j,
                                                                   "members")),
               2);
  cJSON_Delete(j);
}

/* ---- devices ---- */

Test(rest, device_registration) {
  const char *ok[] = {"apns", "fcm", "webpush"};
  for (size_t i = 0; i < 3; i++) {
    char body[96];
    snprintf(body, sizeof body, "{\"platform\":\"%s\",\"push_token\":\"t%zu\"}",
             ok[i], i);
    cJSON_Delete(call("alice", "POST", "/api/v1/devices", NULL, body, 200));
  }
  const char *bad[] = {
    NULL,
    "nope",
    "{}",
    "{\"platform\":\"sms\",\"push_token\":\"t\"}",
    "{\"platform\":\"APNS\",\"push_token\":\"t\"}",
    "{\"platform\":\"\",\"push_token\":\"t\"}",
    "{\"platform\":1,\"push_token\":\"t\"}",
    "{\"push_token\":\"t\"}",
    "{\"platform\":\"fcm\",\"push_token\":\"\"}",
    "{\"platform\":\"fcm\"}",
    "{\"platform\":\"fcm\",\"push_token\":7}",
    "{\"platform\":\"fcm\",\"push_token\":null}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_error("bob", "POST", "/api/v1/devices", NULL, bad[i], 400, NULL);
  /* The registrations are used: an offline alice gets a push, the refused
   * bob none. */
  char c[65];
  snprintf(c, sizeof c, "%s", direct("carol", "alice"));
  dev *cd = dev_open(&h, "carol", "phone");
  send_msg(cd, c, "c1", "x");
  cr_assert_eq(h.n_pushes, 1, "pushes: %zu", h.n_pushes);
  cr_assert_str_eq(h.pushes[0].user, "alice");
  char c2[65];
  snprintf(c2, sizeof c2, "%s", direct("carol", "bob"));
  send_msg(cd, c2, "c2", "x");
  cr_assert_eq(h.n_pushes, 1);
}

/* ---- media ---- */

static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
                                    '\n', 0,    1,   2,   0xff, 0};

static int upload(const char *user, const char *ctype, const void *data,
                  size_t len, char *media_id) {
  const void *out;
  int st = harness_http_raw(&h, user, "POST", "/api/v1/media", NULL, ctype,
                            data, len, &out, NULL, NULL);
  if (media_id && st == 201) {
    cJSON *j = cJSON_Parse(out);
    cr_assert(cJSON_IsObject(j), "%s", (const char *)out);
    snprintf(media_id, 65, "%s", str_of(j, "media_id"));
    cr_assert(chat_id_valid(media_id, strlen(media_id)));
    cJSON_Delete(j);
  }
  return st;
}

static int download(const char *user, const char *media_id, const void **out,
                    size_t *len, const char **ctype) {
  char path[128];
  snprintf(path, sizeof path, "/api/v1/media/%s", media_id);
  return harness_http_raw(&h, user, "GET", path, NULL, NULL, NULL, 0, out,
                          len, ctype);
}

Test(rest, media_upload_and_download) {
  char id[65];
  cr_assert_eq(upload("alice", "image/png", png, sizeof png, id), 201);
  const void *out;
  size_t len;
  const char *ctype;
  cr_assert_eq(download("alice", id, &out, &len, &ctype), 200);
  cr_assert_eq(len, sizeof png);
  cr_assert_eq(memcmp(out, png, sizeof png), 0, "not the uploaded bytes");
  cr_assert_str_eq(ctype, "image/png");
  /* Two uploads, two ids. */
  char id2[65];
  cr_assert_eq(upload("alice", "text/plain; charset=utf-8", "hello", 5, id2),
               201);
  cr_assert_str_neq(id, id2);
  cr_assert_eq(download("alice", id2, &out, &len, &ctype), 200);
  cr_assert_eq(len, 5);
  cr_assert_eq(memcmp(out, "hello", 5), 0);
  cr_assert_str_eq(ctype, "text/plain; charset=utf-8");
}

Test(rest, media_visible_to_members_of_a_conversation_that_references_it) {
  char c[65];
  snprintf(c, sizeof c, "%s", direct("alice", "bob"));
  char id[65];
  cr_assert_eq(upload("alice", "image/png", png, sizeof png, id), 201);
  const void *out;
  size_t len;
  const char *ctype;
  /* Not shared yet. */
  cr_assert_eq(download("bob", id, &out, &len, &ctype), 404);
  cJSON *j = cJSON_Parse(out);
  cr_assert_not_null(j);
  error_of(j);
  cJSON_Delete(j);
  dev *a = dev_open(&h, "alice", "phone");
  dev_sendf(a, "{\"type\":\"send\",\"client_msg_id\":\"p1\","
               "\"conversation_id\":\"%s\",\"body\":\"photo\","
               "\"body_type\":\"media\",\"media_refs\":[\"%s\"]}", c, id);
  harness_tick(&h);
  dev_expect(a, CHAT_FRAME_ACK);
  cr_assert_eq(download("bob", id, &out, &len, &ctype), 200);
  cr_assert_eq(len, sizeof png);
  cr_assert_eq(memcmp(out, png, sizeof png), 0);
  cr_assert_str_eq(ctype, "image/png");
  /* A stranger is refused; an unknown id is unknown. */
  cr_assert_eq(download("carol", id, &out, &len, &ctype), 404);
  cr_assert_eq(download("alice", "m404", &out, &len, &ctype), 404);
  cr_assert_eq(download("alice", "a%20b", &out, &len, &ctype), 404);
}

/* A send cannot share a blob its sender cannot read: otherwise anyone
 * could reference a stranger's media id in a chat of their own and then
 * download it as a member. */
Test(rest, media_cannot_be_shared_by_a_stranger) {
  char id[65];
  cr_assert_eq(upload("alice", "image/png", png, sizeof png, id), 201);
  char c[65];
  snprintf(c, sizeof c, "%s", direct("mallory", "eve"));
  dev *m = dev_open(&h, "mallory", "phone");
  const char *refs[] = {id, "m404"};
  for (size_t i = 0; i < 2; i++) {
    dev_sendf(m, "{\"type\":\"send\",\"client_msg_id\":\"s%zu\","
                 "\"conversation_id\":\"%s\",\"body\":\"x\","
                 "\"body_type\":\"media\",\"media_refs\":[\"%s\"]}",
              i, c, refs[i]);
    harness_tick(&h);
    const chat_frame *f = dev_expect(m, CHAT_FRAME_ERROR);
    cr_assert_eq(f->error->wire, CHAT_WIRE_BAD_ID);
    cr_assert_eq(dev_count(m, CHAT_FRAME_ACK), 0);
  }
  const void *out;
  size_t len;
  const char *ctype;
  cr_assert_eq(download("mallory", id, &out, &len, &ctype), 404);
  cr_assert_eq(download("eve", id, &out, &len, &ctype), 404);
  cr_assert_eq(download("alice", id, &out, &len, &ctype), 200);
}

Test(rest, media_size_limits) {
  const void *out;
  cr_assert_eq(harness_http_raw(&h, "alice", "POST", "/api/v1/media", NULL,
                                "image/png", NULL, 0, &out, NULL, NULL),
               400);
  cJSON *j = cJSON_Parse(out);
  cr_assert_not_null(j);
  error_of(j);
  cJSON_Delete(j);
  size_t max = 10u << 20;
  char *big = malloc(max + 1);
  cr_assert_not_null(big);
  memset(big, 'x', max + 1);
  cr_assert_eq(upload("alice", "application/octet-stream", big, max + 1,
                      NULL),
               413);
  char id[65];
  cr_assert_eq(upload("alice", "application/octet-stream", big, max, id), 201,
               "exactly 10 MiB is allowed");
  free(big);
}

/* ------------------------------------------------------------------------
 * PROTOCOL.md section 8: group admins, the cap on new direct
 * conversations, bots and push, history under a shadow ban. */

static bool has_admin(cJSON *conv, const char *user) {
  cJSON *m = cJSON_GetObjectItemCaseSensitive(conv, "admins");
  cr_assert(cJSON_IsArray(m), "no admins array");
  cJSON *it;
  cJSON_ArrayForEach(it, m) if (strcmp(it->valuestring, user) == 0) return
      true;
  return false;
}

static int n_admins(cJSON *conv) {
  return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(conv, "admins"));
}

/* The system messages of a conversation's history, oldest first, as
 * "sender: body" lines joined by '|'. */
static const char *system_log(const char *user, const char *conv) {
  static char out[2048];
  out[0] = 0;
  cJSON *j = call(user, "GET", conv_path(conv, "/messages"), "limit=200",
                  NULL, 200);
  cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
  for (int i = cJSON_GetArraySize(msgs) - 1; i >= 0; i--) {
    cJSON *m = cJSON_GetArrayItem(msgs, i);
    cJSON *bt = cJSON_GetObjectItemCaseSensitive(m, "body_type");
    if (!cJSON_IsString(bt) || strcmp(bt->valuestring, "system") != 0)
      continue;
    cr_assert_null(cJSON_GetObjectItemCaseSensitive(m, "client_msg_id"),
                   "system messages have no client_msg_id");
    size_t k = strlen(out);
    snprintf(out + k, sizeof out - k, "%s%s: %s", k ? "|" : "",
             str_of(m, "sender_id"), str_of(m, "body"));
  }
  cJSON_Delete(j);
  return out;
}

Test(rest, conversations_carry_their_admins) {
  const char *m[] = {"bob", "carol"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 2));
  cJSON *j = call("bob", "GET", conv_path(g, NULL), NULL, NULL, 200);
  cr_assert_eq(n_admins(j), 1);
  cr_assert(has_admin(j, "alice"), "the creator is the first admin");
  cJSON_Delete(j);
  const char *d = direct("alice", "bob");
  j = call("alice", "GET", conv_path(d, NULL), NULL, NULL, 200);
  cr_assert_eq(n_admins(j), 0, "a direct conversation has none");
  cJSON_Delete(j);
  j = call("carol", "GET", "/api/v1/conversations", NULL, NULL, 200);
  cJSON *c0 = cJSON_GetArrayItem(
      cJSON_GetObjectItemCaseSensitive(j, "conversations"), 0);
  cr_assert(has_admin(c0, "alice"));
  cJSON_Delete(j);
}

Test(rest, only_admins_grant_admin) {
  const char *m[] = {"bob", "carol"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 2));
  dev *c = dev_open(&h, "carol", "phone");
  dev_drain(c);
  expect_error("bob", "POST", conv_path(g, "/admins"), NULL,
               "{\"user_id\":\"bob\"}", 403, "forbidden");
  expect_error("alice", "POST", conv_path(g, "/admins"), NULL,
               "{\"user_id\":\"zoe\"}", 404, "not_found");
  expect_error("alice", "POST", conv_path(g, "/admins"), NULL,
               "{\"user\":\"bob\"}", 400, "bad_request");
  expect_error("zoe", "POST", conv_path(g, "/admins"), NULL,
               "{\"user_id\":\"zoe\"}", 403, "not_member");
  expect_error("alice", "POST", conv_path("nope", "/admins"), NULL,
               "{\"user_id\":\"bob\"}", 404, "not_found");
  expect_error("alice", "GET", conv_path(g, "/admins"), NULL, NULL, 405,
               "method_not_allowed");
  const char *d = direct("alice", "bob");
  expect_error("alice", "POST", conv_path(d, "/admins"), NULL,
               "{\"user_id\":\"bob\"}", 409, "conflict");
  cr_assert_eq(dev_count(c, CHAT_FRAME_MESSAGE), 0, "refusals change nothing");
  /* An admin grants: 200 with the conversation object. */
  cJSON *j = call("alice", "POST", conv_path(g, "/admins"), NULL,
                  "{\"user_id\":\"bob\"}", 200);
  cr_assert_str_eq(str_of(j, "conversation_id"), g);
  cr_assert(has_admin(j, "bob"));
  cr_assert(has_admin(j, "alice"));
  cJSON_Delete(j);
  /* The online members hear of it: a system message, then the object. */
  harness_tick(&h);
  const chat_frame *f = dev_expect(c, CHAT_FRAME_MESSAGE);
  cr_assert_eq(f->message->body_type, CHAT_BODY_SYSTEM);
  cr_assert_str_eq(f->message->sender_id, "alice");
  cr_assert_str_eq(f->message->body.ptr, "alice made bob an admin");
  cr_assert_null(f->message->client_msg_id);
  f = dev_expect(c, CHAT_FRAME_CONVERSATION);
  cr_assert_eq(f->conversation->n_admins, 2);
  /* Granting again is a no-op: no second message. */
  cJSON_Delete(call("alice", "POST", conv_path(g, "/admins"), NULL,
                    "{\"user_id\":\"bob\"}", 200));
  harness_tick(&h);
  cr_assert_eq(dev_count(c, CHAT_FRAME_MESSAGE), 0);
  /* bob, now an admin, may grant too. */
  cJSON_Delete(call("bob", "POST", conv_path(g, "/admins"), NULL,
                    "{\"user_id\":\"carol\"}", 200));
  cr_assert_str_eq(system_log("carol", g),
                   "alice: alice made bob an admin|bob: bob made carol an "
                   "admin");
}

Test(rest, removing_others_is_for_admins_and_never_the_creator) {
  const char *m[] = {"bob", "carol", "dave"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 3));
  cJSON_Delete(call("alice", "POST", conv_path(g, "/admins"), NULL,
                    "{\"user_id\":\"bob\"}", 200));
  dev *d = dev_open(&h, "dave", "phone");
  dev *c = dev_open(&h, "carol", "phone");
  dev_drain(d);
  dev_drain(c);
  /* carol is no admin; nobody but alice removes alice. */
  expect_error("carol", "DELETE", conv_path(g, "/members/dave"), NULL, NULL,
               403, "forbidden");
  expect_error("bob", "DELETE", conv_path(g, "/members/alice"), NULL, NULL,
               403, "forbidden");
  expect_error("bob", "DELETE", conv_path(g, "/admins/alice"), NULL, NULL,
               403, "forbidden");
  expect_error("bob", "DELETE", conv_path(g, "/members/zoe"), NULL, NULL,
               404, "not_found");
  /* bob removes dave. */
  cJSON *j = call("bob", "DELETE", conv_path(g, "/members/dave"), NULL, NULL,
                  200);
  cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "removed")));
  cr_assert_str_eq(str_of(j, "user_id"), "dave");
  cJSON_Delete(j);
  harness_tick(&h);
  /* dave hears of it (system message, then the object without him);
   * carol too. */
  const chat_frame *f = dev_expect(d, CHAT_FRAME_MESSAGE);
  cr_assert_str_eq(f->message->body.ptr, "bob removed dave");
  f = dev_expect(d, CHAT_FRAME_CONVERSATION);
  for (size_t i = 0; i < f->conversation->n_members; i++)
    cr_assert_str_neq(f->conversation->members[i], "dave");
  dev_expect(c, CHAT_FRAME_MESSAGE);
  dev_expect(c, CHAT_FRAME_CONVERSATION);
  expect_error("dave", "GET", conv_path(g, "/messages"), NULL, NULL, 403,
               "not_member");
  /* An admin may take away another's right, but not the creator's; anyone
   * may give up their own. */
  cJSON_Delete(call("alice", "DELETE", conv_path(g, "/admins/bob"), NULL,
                    NULL, 200));
  j = call("alice", "POST", conv_path(g, "/admins"), NULL,
           "{\"user_id\":\"carol\"}", 200);
  cJSON_Delete(j);
  j = call("carol", "DELETE", conv_path(g, "/admins/carol"), NULL, NULL, 200);
  cr_assert_not(has_admin(j, "carol"));
  cr_assert(has_admin(j, "alice"));
  cJSON_Delete(j);
  /* The creator removes themself. */
  cJSON_Delete(call("alice", "DELETE", conv_path(g, "/members/alice"), NULL,
                    NULL, 200));
  cr_assert_str_eq(system_log("carol", g),
                   "alice: alice made bob an admin|bob: bob removed dave|"
                   "alice: alice removed bob as an admin|alice: alice made "
                   "carol an admin|carol: carol is no longer an admin|"
                   "alice: alice left|alice: bob is now an admin");
}

Test(rest, a_group_keeps_an_admin_when_the_last_one_leaves) {
  const char *m[] = {"bob", "carol"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 2));
  /* carol joined later than bob? Both joined at creation: ties go by
   * id, so bob is the longest-standing. */
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  cJSON_Delete(call("alice", "DELETE", conv_path(g, "/members/alice"), NULL,
                    NULL, 200));
  harness_tick(&h);
  const chat_frame *f = dev_expect(b, CHAT_FRAME_MESSAGE);
  cr_assert_str_eq(f->message->body.ptr, "alice left");
  f = dev_expect(b, CHAT_FRAME_MESSAGE);
  cr_assert_str_eq(f->message->body.ptr, "bob is now an admin");
  cr_assert_str_eq(f->message->sender_id, "alice", "the admin who left");
  f = dev_expect(b, CHAT_FRAME_CONVERSATION);
  cr_assert_eq(f->conversation->n_admins, 1);
  cr_assert_str_eq(f->conversation->admins[0], "bob");
  /* The last admin stepping down hands over too. */
  cJSON *j = call("bob", "DELETE", conv_path(g, "/admins/bob"), NULL, NULL,
                  200);
  cr_assert(has_admin(j, "carol"));
  cr_assert_eq(n_admins(j), 1);
  cJSON_Delete(j);
  /* ... unless nobody is left to take over. */
  cJSON_Delete(call("carol", "DELETE", conv_path(g, "/members/bob"), NULL,
                    NULL, 200));
  expect_error("carol", "DELETE", conv_path(g, "/admins/carol"), NULL, NULL,
               409, "conflict");
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.system_messages_total, 5);
}

Test(rest, adding_a_member_is_a_system_message_and_the_new_members_view) {
  const char *m[] = {"bob"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 1));
  dev *b = dev_open(&h, "bob", "phone");
  dev *c = dev_open(&h, "carol", "phone");
  send_msg(b, g, "b1", "before carol");
  dev_drain(b);
  dev_drain(c);
  cJSON *j = call("bob", "POST", conv_path(g, "/members"), NULL,
                  "{\"user_id\":\"carol\"}", 200);
  cr_assert(has_member(j, "carol"));
  cr_assert(has_admin(j, "alice"));
  cJSON_Delete(j);
  harness_tick(&h);
  const chat_frame *f = dev_expect(c, CHAT_FRAME_MESSAGE);
  cr_assert_str_eq(f->message->body.ptr, "bob added carol");
  f = dev_expect(c, CHAT_FRAME_CONVERSATION);
  cr_assert_eq(f->conversation->unread_count, 1, "carol's own view");
  f = dev_expect(b, CHAT_FRAME_MESSAGE);
  cr_assert_eq(f->message->body_type, CHAT_BODY_SYSTEM);
  dev_expect(b, CHAT_FRAME_CONVERSATION);
  cr_assert_eq(dev_count(c, CHAT_FRAME_CONVERSATION), 0, "only once");
}

/* ---- the cap on cold direct conversations ---- */

Test(rest, new_direct_conversations_with_strangers_are_capped_per_day) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .new_direct_per_day = 2};
  restart(&s);
  direct("spam", "u1");
  direct("spam", "u2");
  const char *out;
  int st = harness_http(&h, "spam", "POST", "/api/v1/conversations", NULL,
                        "{\"type\":\"direct\",\"members\":[\"u3\"]}", &out);
  cr_assert_eq(st, 429, "%s", out);
  cr_assert_not_null(strstr(out, "\"rate_limited\""));
  int64_t day = INT64_C(86400000);
  int64_t left = day - h.fe.wall_ms % day;
  /* Retry-After: until midnight UTC. */
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  snprintf(id.user_id, sizeof id.user_id, "spam");
  snprintf(id.device_id, sizeof id.device_id, "d");
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = "POST",
                           .path = "/api/v1/conversations",
                           .body = "{\"type\":\"direct\",\"members\":[\"u3\"]}",
                           .identity = &id};
  req.body_len = strlen(req.body);
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  chat_err rc = chat_server_http(h.srv, &req, &resp, h.now);
  if (rc == CHAT_PENDING) {
    harness_settle(&h);
    cr_assert(h.http_answered);
    resp.status = h.http_status;
    resp.retry_after_s = h.http_retry_after;
  }
  cr_assert_eq(resp.status, 429);
  cr_assert_eq(resp.retry_after_s, (uint32_t)((left + 999) / 1000));
  /* Existing pairs, groups, and people who wrote to spam are fine. */
  cJSON_Delete(call("spam", "POST", "/api/v1/conversations", NULL,
                    "{\"type\":\"direct\",\"members\":[\"u1\"]}", 200));
  const char *gm[] = {"u4"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "spam", "group", gm, 1));
  dev *u4 = dev_open(&h, "u4", "phone");
  send_msg(u4, g, "hi", "hello spam");
  cJSON_Delete(call("spam", "POST", "/api/v1/conversations", NULL,
                    "{\"type\":\"direct\",\"members\":[\"u4\"]}", 201));
  /* Others are not affected. */
  direct("alice", "u3");
  chat_server_stats stats = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &stats);
  cr_assert_eq(stats.direct_capped_total, 2);
  /* The next day, the count starts again. */
  h.fe.wall_ms += left;
  cJSON_Delete(call("spam", "POST", "/api/v1/conversations", NULL,
                    "{\"type\":\"direct\",\"members\":[\"u3\"]}", 201));
}

Test(rest, the_default_cap_is_50_a_day) {
  char u[16];
  for (int i = 0; i < 50; i++) {
    snprintf(u, sizeof u, "u%d", i);
    direct("spam", u);
  }
  expect_error("spam", "POST", "/api/v1/conversations", NULL,
               "{\"type\":\"direct\",\"members\":[\"u50\"]}", 429,
               "rate_limited");
}

/* ---- bots ---- */

Test(rest, bots_register_no_push_devices) {
  h.http_kind = CHAT_SENDER_BOT;
  expect_error("weather", "POST", "/api/v1/devices", NULL,
               "{\"platform\":\"fcm\",\"push_token\":\"t\"}", 403,
               "forbidden");
  h.http_kind = CHAT_SENDER_USER;
  cJSON_Delete(call("weather", "POST", "/api/v1/devices", NULL,
                    "{\"platform\":\"fcm\",\"push_token\":\"t\"}", 200));
}

/* ---- history under a shadow ban ---- */

Test(rest, history_pages_skip_withheld_messages) {
  const char *m[] = {"bob"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 1));
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  send_msg(a, g, "a1", "one");
  harness_ban(&h, "bob", true);
  char id[16];
  for (int i = 0; i < 5; i++) {
    snprintf(id, sizeof id, "b%d", i);
    send_msg(b, g, id, "hidden");
  }
  send_msg(a, g, "a2", "two");
  /* alice pages two at a time: the hidden five never fill a page. */
  cJSON *j = call("alice", "GET", conv_path(g, "/messages"), "limit=2", NULL,
                  200);
  cJSON *msgs = cJSON_GetObjectItemCaseSensitive(j, "messages");
  cr_assert_eq(cJSON_GetArraySize(msgs), 2);
  cr_assert_str_eq(str_of(cJSON_GetArrayItem(msgs, 0), "body"), "two");
  cr_assert_str_eq(str_of(cJSON_GetArrayItem(msgs, 1), "body"), "one");
  cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "has_more")));
  cJSON_Delete(j);
  j = call("alice", "GET", conv_path(g, NULL), NULL, NULL, 200);
  cr_assert_str_eq(str_of(cJSON_GetObjectItemCaseSensitive(j, "last_message"),
                          "body"),
                   "two");
  cr_assert_eq(num_of(j, "unread_count"), 0);
  cJSON_Delete(j);
  j = call("bob", "GET", conv_path(g, "/messages"), "limit=200", NULL, 200);
  cr_assert_eq(
      cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "messages")), 7);
  cJSON_Delete(j);
}

/* A store without the section 8 methods (each may be NULL): members change
 * through member_add/member_remove without system messages, only members
 * remove themselves, and the admin routes answer 501. */
Test(rest, a_store_without_member_change_keeps_the_older_rules) {
  harness_fini(&h);
  harness_init_basic(&h, NULL);
  const char *m[] = {"bob", "carol"};
  char g[65];
  snprintf(g, sizeof g, "%s", harness_create(&h, "alice", "group", m, 2));
  dev *b = dev_open(&h, "bob", "phone");
  dev_drain(b);
  expect_error("alice", "POST", conv_path(g, "/admins"), NULL,
               "{\"user_id\":\"bob\"}", 501, "internal");
  expect_error("alice", "DELETE", conv_path(g, "/admins/alice"), NULL, NULL,
               501, "internal");
  expect_error("alice", "DELETE", conv_path(g, "/members/carol"), NULL, NULL,
               403, "forbidden");
  cJSON_Delete(call("alice", "POST", conv_path(g, "/members"), NULL,
                    "{\"user_id\":\"dave\"}", 200));
  cJSON *j = call("carol", "DELETE", conv_path(g, "/members/carol"), NULL,
                  NULL, 200);
  cJSON_Delete(j);
  harness_tick(&h);
  cr_assert_eq(dev_count(b, CHAT_FRAME_MESSAGE), 0, "no system messages");
  cr_assert_str_eq(system_log("bob", g), "");
  j = call("bob", "GET", conv_path(g, NULL), NULL, NULL, 200);
  cr_assert(has_member(j, "dave"));
  cr_assert_not(has_member(j, "carol"));
  cJSON_Delete(j);
  /* Nobody is shadow-banned without shadow_bans: sends go through. */
  send_msg(b, g, "b1", "hi");
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.shadow_banned_users, 0);
}

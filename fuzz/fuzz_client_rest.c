/* Fuzz target: the client's REST answer decoder (lib/client/rest_decode.c).
 *
 * The first byte picks the answer kind (messages page, conversation list,
 * one conversation, error object); the rest is the body. Checked on every
 * input: no crash or sanitizer report; an accepted answer is JSON that
 * cJSON (the independent oracle) parses too, honours every limit and id
 * rule, and survives a round trip: written back with the codec's own
 * object writers and decoded again, it gives the same values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "client/client_internal.h"
#include "common/json.h"
#include "common/utf8.h"
#include "proto/frame_internal.h"

static const chat__rest_limits lim = {.max_answer_bytes = 1u << 20,
                                      .max_items = 50,
                                      .max_body_bytes = 4096,
                                      .max_members = 64,
                                      .max_media_refs = 8};

static void check_str(chat_str s, size_t max) {
  if (s.len > max || (s.len && !s.ptr))
    abort();
}

static void check_message(const chat_message *m) {
  if (!chat_id_valid(m->conversation_id, strlen(m->conversation_id)) ||
      !chat_id_valid(m->sender_id, strlen(m->sender_id)) ||
      (m->client_msg_id &&
       !chat_id_valid(m->client_msg_id, strlen(m->client_msg_id))) ||
      m->n_media_refs > lim.max_media_refs || m->message_id > INT64_MAX)
    abort();
  check_str(m->body, lim.max_body_bytes);
  if (!chat__utf8_valid(m->body.ptr ? m->body.ptr : "", m->body.len))
    abort();
  for (size_t i = 0; i < m->n_media_refs; i++)
    if (!chat_id_valid(m->media_refs[i], strlen(m->media_refs[i])))
      abort();
}

static void check_conversation(const chat_conversation *c) {
  if (!chat_id_valid(c->conversation_id, strlen(c->conversation_id)) ||
      c->n_members > lim.max_members || c->n_admins > lim.max_members ||
      (c->type != CHAT_CONVERSATION_DIRECT &&
       c->type != CHAT_CONVERSATION_GROUP))
    abort();
  for (size_t i = 0; i < c->n_members; i++)
    if (!chat_id_valid(c->members[i], strlen(c->members[i])))
      abort();
  if (c->last_message)
    check_message(c->last_message);
}

static bool same_str(chat_str a, chat_str b) {
  return (a.ptr == NULL) == (b.ptr == NULL) && a.len == b.len &&
         (!a.len || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool same_opt(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_message(const chat_message *a, const chat_message *b) {
  if (a->message_id != b->message_id || a->server_ts != b->server_ts ||
      strcmp(a->conversation_id, b->conversation_id) != 0 ||
      strcmp(a->sender_id, b->sender_id) != 0 ||
      !same_opt(a->client_msg_id, b->client_msg_id) ||
      a->has_reply_to != b->has_reply_to ||
      (a->has_reply_to && a->reply_to != b->reply_to) ||
      a->n_media_refs != b->n_media_refs || a->body_type != b->body_type ||
      a->has_target_id != b->has_target_id ||
      (a->has_target_id && a->target_id != b->target_id) ||
      a->sender_kind != b->sender_kind ||
      a->has_edited_ts != b->has_edited_ts ||
      (a->has_edited_ts && a->edited_ts != b->edited_ts) ||
      a->deleted != b->deleted ||
      a->body.len != b->body.len ||
      (a->body.len && memcmp(a->body.ptr, b->body.ptr, a->body.len) != 0))
    return false;
  for (size_t i = 0; i < a->n_media_refs; i++)
    if (strcmp(a->media_refs[i], b->media_refs[i]) != 0)
      return false;
  return true;
}

static bool same_conversation(const chat_conversation *a,
                              const chat_conversation *b) {
  if (strcmp(a->conversation_id, b->conversation_id) != 0 ||
      a->type != b->type || !same_str(a->name, b->name) ||
      a->n_members != b->n_members || a->unread_count != b->unread_count ||
      a->has_last_read != b->has_last_read ||
      (a->has_last_read &&
       a->last_read_message_id != b->last_read_message_id) ||
      (a->last_message == NULL) != (b->last_message == NULL) ||
      (a->last_message && !same_message(a->last_message, b->last_message)))
    return false;
  for (size_t i = 0; i < a->n_members; i++)
    if (strcmp(a->members[i], b->members[i]) != 0)
      return false;
  if (a->n_admins != b->n_admins)
    return false;
  for (size_t i = 0; i < a->n_admins; i++)
    if (strcmp(a->admins[i], b->admins[i]) != 0)
      return false;
  return true;
}

/* Write the answer back as JSON (the codec's object writers). */
static void rewrite(chat__rest_kind k, const chat__rest_answer *a,
                    chat__buf *b) {
  chat__jw w;
  chat__jw_init(&w, b);
  if (k == CHAT__REST_CONVERSATION) {
    chat__jw_conversation_object(&w, a->conversation);
    return;
  }
  chat__jw_obj_begin(&w);
  if (k == CHAT__REST_MESSAGES) {
    chat__jw_key(&w, "messages");
    chat__jw_arr_begin(&w);
    for (size_t i = 0; i < a->n_messages; i++)
      chat__jw_message_object(&w, &a->messages[i]);
    chat__jw_arr_end(&w);
    chat__jw_key(&w, "has_more");
    chat__jw_bool(&w, a->has_more);
  } else {
    chat__jw_key(&w, "conversations");
    chat__jw_arr_begin(&w);
    for (size_t i = 0; i < a->n_conversations; i++)
      chat__jw_conversation_object(&w, &a->conversations[i]);
    chat__jw_arr_end(&w);
    chat__jw_key(&w, "next_cursor");
    if (a->next_cursor.ptr)
      chat__jw_str(&w, a->next_cursor.ptr, a->next_cursor.len);
    else
      chat__jw_null(&w);
  }
  chat__jw_obj_end(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  chat__rest_kind k = (chat__rest_kind)(1 + data[0] % 4);
  const char *body = (const char *)data + 1;
  size_t len = size - 1;
  chat_allocator a0;
  chat__allocator_init(&a0, NULL);
  chat__arena ar;
  chat__arena_init(&ar, &a0);
  chat__rest_answer a;
  char why[256];
  chat_err e = chat__rest_decode(&ar, k, body, len, &lim, &a, why, sizeof why);
  if (e == CHAT_OK) {
    cJSON *j = cJSON_ParseWithLength(body, len);
    if (!j)
      abort(); /* we accepted what the oracle calls malformed */
    cJSON_Delete(j);
    if (a.n_messages > lim.max_items || a.n_conversations > lim.max_items)
      abort();
    for (size_t i = 0; i < a.n_messages; i++)
      check_message(&a.messages[i]);
    for (size_t i = 0; i < a.n_conversations; i++)
      check_conversation(&a.conversations[i]);
    if (a.conversation)
      check_conversation(a.conversation);
    check_str(a.next_cursor, CHAT__REST_MAX_CURSOR);
    if (k != CHAT__REST_ERROR) {
      chat__buf b;
      chat__buf_init(&b, &a0);
      rewrite(k, &a, &b);
      if (b.oom)
        abort();
      chat__arena ar2;
      chat__arena_init(&ar2, &a0);
      chat__rest_answer a2;
      if (chat__rest_decode(&ar2, k, b.data, b.len, &lim, &a2, why,
                            sizeof why) != CHAT_OK)
        abort(); /* what we decoded must be decodable when written back */
      if (a2.n_messages != a.n_messages ||
          a2.n_conversations != a.n_conversations ||
          a2.has_more != a.has_more || !same_str(a2.next_cursor,
                                                  a.next_cursor))
        abort();
      for (size_t i = 0; i < a.n_messages; i++)
        if (!same_message(&a.messages[i], &a2.messages[i]))
          abort();
      for (size_t i = 0; i < a.n_conversations; i++)
        if (!same_conversation(&a.conversations[i], &a2.conversations[i]))
          abort();
      if (a.conversation && !same_conversation(a.conversation,
                                               a2.conversation))
        abort();
      chat__arena_free(&ar2);
      chat__buf_free(&b);
    }
  } else if (!why[0]) {
    abort(); /* every refusal says why */
  }
  chat__arena_free(&ar);
  return 0;
}

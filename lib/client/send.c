/* chat_client_send(), chat_client_edit() and chat_client_delete(): validate,
 * write to the stored outbox first (so the entry survives a crash), then to
 * the outbox in memory, then out if connected. Edits and deletes
 * (PROTOCOL.md section 8) travel exactly like sends: acked, idempotent by
 * client_msg_id, retried after reconnects and restarts. */
#include "client/client_internal.h"

#include <string.h>

#include "common/utf8.h"

static void make_client_msg_id(chat_client *c, char out[32]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t r[12];
  c->env.random(c->env.user_data, r, sizeof r);
  out[0] = 'm';
  for (size_t i = 0; i < sizeof r; i++) {
    out[1 + 2 * i] = hex[r[i] >> 4];
    out[2 + 2 * i] = hex[r[i] & 15];
  }
  out[1 + 2 * sizeof r] = 0;
}

static chat_err check_body(chat_client *c, const char *body, size_t len) {
  if (!body && len)
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "body: NULL with body_len %zu", len);
  if (!chat__utf8_valid(body ? body : "", len))
    return chat__client_fail(c, CHAT_ERR_INVAL, "body: not valid UTF-8");
  if (len > c->max_body_bytes)
    return chat__client_fail(c, CHAT_ERR_TOO_LARGE,
                             "body: %zu bytes is over the server's "
                             "max_body_bytes %u",
                             len, (unsigned)c->max_body_bytes);
  return CHAT_OK;
}

static chat_err check_target(chat_client *c, const char *what,
                             const char *an, uint64_t target_id) {
  if (target_id == 0 || target_id > (uint64_t)INT64_MAX)
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "target_id: %llu is not a message id "
                             "(1..2^63-1)",
                             (unsigned long long)target_id);
  if (!c->v2)
    return chat__client_fail(c, CHAT_ERR_STATE,
                             "%s: the store is a CHAT_CLIENT_STORE_OPS_V1 "
                             "one, whose outbox cannot keep %s %s; give "
                             "the client a V2 store",
                             what, an, what);
  return CHAT_OK;
}

chat_err chat__client_outbox_submit(chat_client *c, const char *conv,
                                    const char *body, size_t len,
                                    chat_client_outbox_kind kind,
                                    uint64_t target_id, char *id_out,
                                    chat_time_ms now) {
  char id[32];
  make_client_msg_id(c, id);
  chat_err e;
  /* Durable first: once this returns CHAT_OK the entry survives a crash.
   * A V2 store keeps every kind; a V1 store only ever gets sends. */
  if (c->v2) {
    chat_client_outbox_entry_v2 en = {.client_msg_id = id,
                                      .conversation_id = conv,
                                      .body = {body ? body : "", len},
                                      .kind = kind,
                                      .target_id = target_id};
    e = c->st->outbox_add_v2(c->st->self, &en);
  } else {
    chat_client_outbox_entry en = {.client_msg_id = id,
                                   .conversation_id = conv,
                                   .body = {body ? body : "", len}};
    e = c->st->outbox_add(c->st->self, &en);
  }
  e = chat__client_store_err(e);
  if (e)
    return chat__client_fail(c, e, e == CHAT_ERR_NOMEM
                                       ? "out of memory"
                                       : "store.outbox_add: failed; the "
                                         "message was not accepted");
  e = chat__client_outbox_append(c, id, conv, body, len, kind, target_id);
  if (e) {
    (void)c->st->outbox_remove(c->st->self, id);
    return chat__client_fail(c, e, "out of memory");
  }
  if (kind == CHAT_CLIENT_OUTBOX_SEND)
    chat__client_typing_stop(c, conv);
  chat__client_outbox_flush(c, now);
  if (c->state == CHAT_CLIENT_READY || c->state == CHAT_CLIENT_RESUMING)
    c->last_out = now;
  if (id_out)
    memcpy(id_out, id, strlen(id) + 1);
  return CHAT_OK;
}

chat_err chat_client_send(chat_client *c, const char *conv, const char *body,
                          size_t body_len, char *client_msg_id_out,
                          chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (!e)
    e = check_body(c, body, body_len);
  if (e)
    return e;
  return chat__client_outbox_submit(c, conv, body, body_len,
                                    CHAT_CLIENT_OUTBOX_SEND, 0,
                                    client_msg_id_out, now);
}

chat_err chat_client_edit(chat_client *c, const char *conv,
                          uint64_t target_id, const char *body,
                          size_t body_len, char *client_msg_id_out,
                          chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (!e)
    e = check_body(c, body, body_len);
  if (!e)
    e = check_target(c, "edit", "an", target_id);
  if (e)
    return e;
  return chat__client_outbox_submit(c, conv, body, body_len,
                                    CHAT_CLIENT_OUTBOX_EDIT, target_id,
                                    client_msg_id_out, now);
}

chat_err chat_client_delete(chat_client *c, const char *conv,
                            uint64_t target_id, char *client_msg_id_out,
                            chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (!e)
    e = check_target(c, "delete", "a", target_id);
  if (e)
    return e;
  return chat__client_outbox_submit(c, conv, "", 0,
                                    CHAT_CLIENT_OUTBOX_DELETE, target_id,
                                    client_msg_id_out, now);
}

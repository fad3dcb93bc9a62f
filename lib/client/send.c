/* chat_client_send(): validate, write to the stored outbox first (so the
 * send survives a crash), then to the outbox in memory, then out if
 * connected. */
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

chat_err chat_client_send(chat_client *c, const char *conv, const char *body,
                          size_t body_len, char *client_msg_id_out,
                          chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  chat_err e = chat__client_check_id(c, "conversation_id", conv);
  if (e)
    return e;
  if (!body && body_len)
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "body: NULL with body_len %zu", body_len);
  if (!chat__utf8_valid(body ? body : "", body_len))
    return chat__client_fail(c, CHAT_ERR_INVAL, "body: not valid UTF-8");
  if (body_len > c->max_body_bytes)
    return chat__client_fail(c, CHAT_ERR_TOO_LARGE,
                             "body: %zu bytes is over the server's "
                             "max_body_bytes %u",
                             body_len, (unsigned)c->max_body_bytes);
  char id[32];
  make_client_msg_id(c, id);
  chat_client_outbox_entry en = {.client_msg_id = id,
                                 .conversation_id = conv,
                                 .body = {body ? body : "", body_len}};
  /* Durable first: once this returns CHAT_OK the send survives a crash. */
  e = chat__client_store_err(c->st->outbox_add(c->st->self, &en));
  if (e)
    return chat__client_fail(c, e, e == CHAT_ERR_NOMEM
                                       ? "out of memory"
                                       : "store.outbox_add: failed; the "
                                         "message was not accepted");
  e = chat__client_outbox_append(c, id, conv, body, body_len);
  if (e) {
    (void)c->st->outbox_remove(c->st->self, id);
    return chat__client_fail(c, e, "out of memory");
  }
  chat__client_typing_stop(c, conv);
  chat__client_outbox_flush(c, now);
  if (c->state == CHAT_CLIENT_READY || c->state == CHAT_CLIENT_RESUMING)
    c->last_out = now;
  if (client_msg_id_out)
    memcpy(client_msg_id_out, id, strlen(id) + 1);
  return CHAT_OK;
}

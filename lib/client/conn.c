/* The connection state machine: IDLE -> CONNECTING -> HANDSHAKE ->
 * RESUMING -> READY, BACKOFF between attempts (full jitter, reset after a
 * stable connection), UNAUTHORIZED after a refused token; heartbeats, the
 * hello timeout, and the one deadline that covers every timer of the
 * client. */
#include "client/client_internal.h"

#include <string.h>

static chat_time_ms tmin(chat_time_ms a, chat_time_ms b) {
  return a < b ? a : b;
}

void chat__client_set_state(chat_client *c, chat_client_state st) {
  if (c->state == st)
    return;
  c->state = st;
  if (c->cb.on_connection)
    c->cb.on_connection(c->ud, c, st);
  chat__client_wants_changed(c);
}

void chat__client_request_close(chat_client *c, const char *why) {
  chat__client_log(c, CHAT_LOG_WARN, "closing:", why, NULL);
  c->want_close = true;
  chat__client_wants_changed(c);
}

void chat__client_auth_lost(chat_client *c, chat_auth_reason why,
                            int http_status, const char *conv) {
  if (c->auth_wait)
    return; /* told once per token */
  c->auth_wait = true;
  c->fast_reconnect = false;
  if (c->sock && !c->want_close)
    chat__client_request_close(c, "the token is no good");
  chat__client_set_state(c, CHAT_CLIENT_UNAUTHORIZED);
  chat__client_error(c, CHAT_ERR_AUTH, conv,
                     why == CHAT_AUTH_EXPIRED
                         ? "the token expired (close 4001)"
                         : "the server refused the token (HTTP 401)",
                     http_status, false);
  if (c->cb.on_auth_required)
    c->cb.on_auth_required(c->ud, c, why);
}

/* Leave UNAUTHORIZED (a new token, or an explicit start): connect now, or
 * once the socket still closing is gone; IDLE when stopped. */
static void auth_resume(chat_client *c) {
  c->auth_wait = false;
  if (c->state == CHAT_CLIENT_UNAUTHORIZED) {
    if (c->sock) {
      c->fast_reconnect = c->started;
    } else if (c->started) {
      c->connect_taken = false;
      chat__client_set_state(c, CHAT_CLIENT_CONNECTING);
    } else {
      chat__client_set_state(c, CHAT_CLIENT_IDLE);
    }
  }
  chat__client_wants_changed(c); /* held REST requests may go out */
}

chat_err chat_client_start(chat_client *c, chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  c->started = true;
  if (c->state == CHAT_CLIENT_UNAUTHORIZED || c->auth_wait)
    auth_resume(c);
  if (c->state == CHAT_CLIENT_IDLE && !c->sock) {
    c->connect_taken = false;
    chat__client_set_state(c, CHAT_CLIENT_CONNECTING);
  }
  return CHAT_OK;
}

chat_err chat_client_stop(chat_client *c, chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  c->started = false;
  c->fast_reconnect = false;
  if (c->sock) {
    if (c->state == CHAT_CLIENT_READY || c->state == CHAT_CLIENT_RESUMING)
      chat__client_typing_stop_all(c);
    c->want_close = true;
    chat__client_wants_changed(c);
  } else {
    chat__client_set_state(c, CHAT_CLIENT_IDLE);
  }
  return CHAT_OK;
}

/* A token the app gives: visible ASCII only, since it goes into an HTTP
 * header and a query string. */
static bool token_ok(const char *t, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e)
      return false;
  return true;
}

chat_err chat_client_set_token(chat_client *c, const char *token, size_t len,
                               chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  if (!token)
    return chat__client_fail(c, CHAT_ERR_INVAL, "token: required");
  if (len == 0 || len > CHAT_CLIENT_TOKEN_MAX)
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "len: %zu is not 1..%d", len,
                             CHAT_CLIENT_TOKEN_MAX);
  if (!token_ok(token, len))
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "token: a byte outside visible ASCII "
                             "(0x21-0x7e)");
  if (c->auth_wait && c->token && c->token_len == len &&
      memcmp(c->token, token, len) == 0)
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "token: the server refused this very token; "
                             "get a fresh one (chat_client_start() retries "
                             "it)");
  char *copy = chat__strndup(&c->a, token, len);
  if (!copy)
    return chat__client_fail(c, CHAT_ERR_NOMEM, "out of memory");
  chat__free(&c->a, c->token);
  c->token = copy;
  c->token_len = len;
  c->token_gen++;
  if (c->auth_wait)
    auth_resume(c);
  return CHAT_OK;
}

chat_err chat_client_token(const chat_client *c, const char **token,
                           size_t *len) {
  if (!c || !token || !len)
    return CHAT_ERR_INVAL;
  *token = c->token;
  *len = c->token ? c->token_len : 0;
  return c->token ? CHAT_OK : CHAT_ERR_NOT_FOUND;
}

uint32_t chat_client_wants(const chat_client *c) {
  if (!c)
    return 0;
  uint32_t w = 0;
  if (c->q_head)
    w |= CHAT_CLIENT_WANT_WRITE;
  if (c->want_close)
    w |= CHAT_CLIENT_WANT_CLOSE;
  if (c->state == CHAT_CLIENT_CONNECTING && !c->connect_taken)
    w |= CHAT_CLIENT_WANT_CONNECT;
  if (chat__creq_ready(c) && !c->auth_wait)
    w |= CHAT_CLIENT_WANT_REST;
  return w;
}

chat_err chat_client_on_connecting(chat_client *c, chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (c->state != CHAT_CLIENT_CONNECTING || c->connect_taken)
    return chat__client_fail(c, CHAT_ERR_STATE,
                             "on_connecting: the client does not want to "
                             "connect (state %s%s)",
                             chat_client_state_name(c->state),
                             c->connect_taken ? ", attempt under way" : "");
  c->connect_taken = true;
  c->sock = true;
  c->conn_token_gen = c->token_gen;
  c->handshake_deadline = now + c->s.hello_timeout_ms;
  return CHAT_OK;
}

chat_err chat_client_on_open(chat_client *c, chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (c->state != CHAT_CLIENT_CONNECTING)
    return chat__client_fail(c, CHAT_ERR_STATE,
                             "on_open: no connection attempt (state %s)",
                             chat_client_state_name(c->state));
  if (!c->connect_taken) {
    c->handshake_deadline = now + c->s.hello_timeout_ms;
    c->conn_token_gen = c->token_gen;
  }
  c->connect_taken = true;
  c->sock = true;
  c->goaway = false;
  c->conn_gen++;
  c->last_in = c->last_out = now;
  c->want_close = false;
  chat__client_set_state(c, CHAT_CLIENT_HANDSHAKE);
  return CHAT_OK;
}

/* The socket closed or the attempt failed. @p why (0: none) says the
 * server found the token no good: reconnecting with it would only be
 * refused again, so the client waits for a new one instead. */
static chat_err closed(chat_client *c, uint16_t ws_code, int why,
                       int http_status, chat_time_ms now) {
  if (!c->sock && !c->want_close)
    return CHAT_OK;
  chat__client_log(c, CHAT_LOG_INFO, "connection closed",
                   ws_code ? "" : "(no code)", NULL);
  bool was_up = c->state == CHAT_CLIENT_RESUMING ||
                c->state == CHAT_CLIENT_READY;
  chat__client_queue_drop(c);
  c->want_close = false;
  c->connect_taken = false;
  c->sock = false;
  chat__client_resume_reset(c);
  chat__client_typing_reset(c);
  chat__client_peers_expire(c, now, true);
  /* A connection that stayed up long enough proves the server healthy:
   * start the schedule over instead of growing the delay. */
  if (was_up && now - c->ready_at >= c->s.stable_after_ms)
    c->attempt = 0;
  if (!c->started) {
    c->fast_reconnect = false;
    chat__client_set_state(c, CHAT_CLIENT_IDLE);
    return CHAT_OK;
  }
  if (why && c->conn_token_gen == c->token_gen) {
    chat__client_auth_lost(c, (chat_auth_reason)why, http_status, NULL);
    return CHAT_OK;
  }
  if (c->auth_wait) {
    /* The socket a REST 401 closed: stay until a new token. */
    chat__client_set_state(c, CHAT_CLIENT_UNAUTHORIZED);
    return CHAT_OK;
  }
  if (why || c->fast_reconnect) {
    /* Refused or expired with a token replaced since, or a new token came
     * while the old socket closed: try the new one at once. */
    c->fast_reconnect = false;
    chat__client_set_state(c, CHAT_CLIENT_CONNECTING);
    return CHAT_OK;
  }
  if (c->goaway) {
    /* A deliberate close (drain, overload) announced by `goaway`: wait a
     * uniformly random delay in [0, retry_after_ms] instead of the backoff,
     * so that a restart's clients do not all return at once; should that
     * reconnect fail, the backoff starts again from its first step
     * (PROTOCOL.md section 8). */
    c->goaway = false;
    c->attempt = 0;
    uint8_t b[8];
    c->env.random(c->env.user_data, b, sizeof b);
    uint64_t r = 0;
    for (int i = 0; i < 8; i++)
      r |= (uint64_t)b[i] << (8 * i);
    uint64_t span = c->goaway_ms;
    c->reconnect_at = now + (span == UINT64_MAX ? r : r % (span + 1));
    chat__client_set_state(c, CHAT_CLIENT_BACKOFF);
    return CHAT_OK;
  }
  uint32_t delay = 0;
  if (chat_backoff_next(&c->backoff, c->attempt, &c->env, &delay))
    delay = c->backoff.cap_ms;
  if (c->attempt < UINT32_MAX)
    c->attempt++;
  c->reconnect_at = now + delay;
  chat__client_set_state(c, CHAT_CLIENT_BACKOFF);
  return CHAT_OK;
}

/* The close code a server sends when the session's token expired
 * (PROTOCOL.md section 8). */
#define CLOSE_TOKEN_EXPIRED 4001

chat_err chat_client_on_close(chat_client *c, uint16_t ws_code,
                              chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  return closed(c, ws_code,
                ws_code == CLOSE_TOKEN_EXPIRED ? CHAT_AUTH_EXPIRED : 0, 0,
                now);
}

chat_err chat_client_on_refused(chat_client *c, int http_status,
                                chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (http_status < 100 || http_status > 599)
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "http_status: %d is not 100..599", http_status);
  if (!(c->sock && (c->state == CHAT_CLIENT_CONNECTING ||
                    c->state == CHAT_CLIENT_UNAUTHORIZED)) &&
      !c->want_close)
    return chat__client_fail(c, CHAT_ERR_STATE,
                             "on_refused: no connection attempt (state %s)",
                             chat_client_state_name(c->state));
  return closed(c, 0, http_status == 401 ? CHAT_AUTH_REFUSED : 0,
                http_status, now);
}

chat_err chat_client_hint_network_up(chat_client *c, chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (c->state == CHAT_CLIENT_BACKOFF) {
    c->reconnect_at = now;
    c->connect_taken = false;
    chat__client_set_state(c, CHAT_CLIENT_CONNECTING);
  }
  return CHAT_OK;
}

chat_time_ms chat_client_next_deadline(const chat_client *c) {
  if (!c)
    return CHAT_TIME_NEVER;
  chat_time_ms d = c->auth_wait ? CHAT_TIME_NEVER : chat__creq_deadline(c);
  switch (c->state) {
  case CHAT_CLIENT_BACKOFF:
    d = tmin(d, c->reconnect_at);
    break;
  case CHAT_CLIENT_CONNECTING:
    if (c->connect_taken && !c->want_close)
      d = tmin(d, c->handshake_deadline);
    break;
  case CHAT_CLIENT_HANDSHAKE:
    if (!c->want_close)
      d = tmin(d, c->handshake_deadline);
    break;
  default:
    break;
  }
  if (chat__client_online(c)) {
    if (c->heartbeat_ms) {
      d = tmin(d, c->last_out + c->heartbeat_ms);
      d = tmin(d, c->last_in + 2ull * c->heartbeat_ms);
    }
    if (c->state == CHAT_CLIENT_READY &&
        c->ready_at + c->s.stable_after_ms > c->ready_at && c->attempt)
      d = tmin(d, c->ready_at + c->s.stable_after_ms);
    d = tmin(d, chat__client_marks_deadline(c));
    d = tmin(d, chat__client_typing_deadline(c));
    d = tmin(d, chat__client_outbox_deadline(c));
  }
  return tmin(d, chat__client_peers_deadline(c));
}

chat_err chat_client_on_timer(chat_client *c, chat_time_ms now) {
  if (!c)
    return CHAT_ERR_INVAL;
  if (c->state == CHAT_CLIENT_BACKOFF && now >= c->reconnect_at) {
    c->connect_taken = false;
    chat__client_set_state(c, CHAT_CLIENT_CONNECTING);
  }
  if (!c->want_close &&
      ((c->state == CHAT_CLIENT_CONNECTING && c->connect_taken) ||
       c->state == CHAT_CLIENT_HANDSHAKE) &&
      now >= c->handshake_deadline)
    chat__client_request_close(c, "no hello in time");
  if (chat__client_online(c)) {
    if (c->heartbeat_ms && now >= c->last_in + 2ull * c->heartbeat_ms) {
      chat__client_request_close(c, "server silent past two heartbeats");
    } else {
      if (c->state == CHAT_CLIENT_READY &&
          now - c->ready_at >= c->s.stable_after_ms)
        c->attempt = 0;
      if (c->heartbeat_ms && now >= c->last_out + c->heartbeat_ms) {
        chat_ping p = {.nonce_json = {NULL, 0}};
        chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_PING,
                        .ping = &p};
        if (chat__client_queue_frame(c, &f, NULL) == CHAT_OK)
          c->last_out = now;
      }
      chat__client_typing_timer(c, now);
      chat__client_outbox_flush(c, now);
      chat__client_marks_flush(c, now);
    }
  }
  chat__client_peers_expire(c, now, false);
  chat__creq_timer(c, now);
  return CHAT_OK;
}

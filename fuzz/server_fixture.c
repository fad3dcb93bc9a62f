#include "server_fixture.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <chat/sqlite.h>

static fixture fx_static;
static chat_codec *oracle; /* the independent decoder for outbound frames */
static chat_codec_settings oracle_cs = {.version = CHAT_CODEC_SETTINGS_V1};
static bool trace; /* FX_TRACE=1: outbound frames and bus envelopes */

void fx_fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("fixture: ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  abort();
}

static chat_err push_notify(void *self, const chat_push_note *n) {
  (void)n;
  ((fixture *)self)->pushes++;
  return CHAT_OK;
}

void fx_advance(fixture *fx, uint64_t ms) {
  fx->now += ms;
  fx->fe.wall_ms += (int64_t)ms;
}

static void loopback(void *ud, const char *msg, size_t len) {
  fixture *fx = ud;
  if (trace)
    fprintf(stderr, "bus %.*s\n", (int)len, msg);
  /* The server wrote this envelope itself, so it must take it back. */
  chat_err rc = chat_server_bus_deliver(fx->srv, msg, len, fx->now);
  if (rc != CHAT_OK)
    fx_fail("own bus envelope refused (%s): %.*s", chat_err_name(rc),
            (int)len, msg);
}

/* Complete what the deferring modules hold (their answers arrive). */
static bool fx_complete(fixture *fx) {
  if (!fx->defer)
    return false;
  size_t n = defer_store_run(fx->defer);
  chat_err rc = chat_server_run_posted(fx->srv, fx->now);
  if (rc != CHAT_OK)
    fx_fail("run_posted: %s", chat_err_name(rc));
  return n > 0;
}

void fx_tick(fixture *fx) {
  /* Sends take two rounds (commit, then fan-out); more than a few rounds
   * at one instant with nothing completing in between means a host loop
   * would spin. */
  int rounds = 0;
  for (int total = 0;; total++) {
    if (total > 100000)
      fx_fail("module calls never settle");
    if (fx_complete(fx))
      rounds = 0;
    if (chat_server_next_deadline(fx->srv) > fx->now) {
      if (fx->defer && defer_store_pending(fx->defer) > 0)
        continue;
      break;
    }
    if (++rounds > 8)
      fx_fail("deadline stays at or before now=%llu",
              (unsigned long long)fx->now);
    chat_err rc = chat_server_on_timer(fx->srv, fx->now);
    if (rc != CHAT_OK)
      fx_fail("on_timer: %s", chat_err_name(rc));
  }
  if (fx->hub)
    chat_memory_hub_drain(fx->hub, FX_REMOTE_GW, loopback, fx);
}

chat_session *fx_open(fixture *fx, const char *user, const char *device) {
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  snprintf(id.user_id, sizeof id.user_id, "%s", user);
  snprintf(id.device_id, sizeof id.device_id, "%s", device);
  chat_session *s;
  chat_err rc = chat_server_open_session(fx->srv, &s, &id, NULL, fx->now);
  if (rc != CHAT_OK)
    fx_fail("open_session %s/%s: %s", user, device, chat_err_name(rc));
  return s;
}

size_t fx_drain(chat_session *s) {
  const char *json;
  size_t len, n = 0;
  while (chat_session_next_frame(s, &json, &len) == CHAT_OK) {
    const chat_frame *f;
    chat_decode_error e;
    chat_err rc =
        chat_codec_decode(oracle, CHAT_DIR_TO_CLIENT, json, len, &f, &e);
    if (trace)
      fprintf(stderr, "<- %p %.*s\n", (void *)s, (int)len, json);
    if (rc != CHAT_OK)
      fx_fail("outbound frame does not decode (%s: %s): %.*s",
              chat_err_name(rc), e.message ? e.message : "",
              (int)(len > 2000 ? 2000 : len), json);
    n++;
  }
  const char *reason;
  uint16_t code = chat_session_close_code(s, &reason);
  switch (code) {
  case 1000: case 1001: case 1007: case 1008: case 1009: case 1011:
  case 1013:
    break;
  default:
    fx_fail("close code %u (%s)", (unsigned)code, reason);
  }
  return n;
}

chat_session *fx_service(fixture *fx, chat_session *s, const char *user,
                         const char *device) {
  fx_drain(s);
  if (!(chat_session_wants(s) & CHAT_WANT_CLOSE))
    return s;
  chat_server_close_session(fx->srv, s, fx->now);
  return fx_open(fx, user, device);
}

char *fx_expand(const fixture *fx, const uint8_t *in, size_t n,
                size_t *out_len, bool nul) {
  /* Two passes: measure, then write, so the buffer is exactly the size. */
  char *out = NULL;
  size_t len = 0;
  for (int pass = 0; pass < 2; pass++) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
      const char *rep = NULL;
      if (in[i] == '@' && i + 1 < n) {
        switch (in[i + 1]) {
        case 'd': rep = fx->direct; break;
        case 'g': rep = fx->group; break;
        case 'o': rep = fx->other; break;
        case '1': rep = fx->msg_group; break;
        case '2': rep = fx->msg_direct; break;
        case 'n': rep = fx->media_own; break;
        case 'm': rep = fx->media_other; break;
        default: break;
        }
      }
      if (rep) {
        size_t rl = strlen(rep);
        if (out)
          memcpy(out + k, rep, rl);
        k += rl;
        i++;
      } else {
        if (out)
          out[k] = (char)in[i];
        k++;
      }
    }
    if (pass == 0) {
      len = k;
      out = malloc(nul ? len + 1 : len ? len : 1);
      if (!out)
        fx_fail("out of memory");
    }
  }
  if (nul)
    out[len] = 0;
  *out_len = len;
  return out;
}

chat_http_response fx_http(fixture *fx, const char *user, const char *method,
                           const char *path, const char *query,
                           const char *content_type, const void *body,
                           size_t body_len) {
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  if (user) {
    snprintf(id.user_id, sizeof id.user_id, "%s", user);
    snprintf(id.device_id, sizeof id.device_id, "phone");
  }
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = method, .path = path, .query = query,
                           .content_type = content_type, .body = body,
                           .body_len = body_len,
                           .identity = user ? &id : NULL};
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  fx->answered = false;
  req.tag = fx;
  chat_err rc = chat_server_http(fx->srv, &req, &resp, fx->now);
  if (rc == CHAT_PENDING && fx->defer) {
    for (int i = 0; i < 1000 && !fx->answered; i++)
      fx_tick(fx);
    if (!fx->answered)
      fx_fail("chat_server_http %s %s: no answer", method, path);
    return fx->answer;
  }
  if (rc != CHAT_OK)
    fx_fail("chat_server_http %s %s: %s", method, path, chat_err_name(rc));
  return resp;
}

/* A REST answer that came later: copied, valid until the next one. */
static void on_http_response(void *user_data, chat_server *srv, void *tag,
                             const chat_http_response *resp) {
  (void)srv;
  fixture *fx = user_data;
  if (tag != fx)
    fx_fail("answer for a tag never used");
  free(fx->answer_body);
  fx->answer_body = malloc(resp->body_len + 1);
  if (!fx->answer_body)
    fx_fail("out of memory");
  if (resp->body_len)
    memcpy(fx->answer_body, resp->body, resp->body_len);
  fx->answer_body[resp->body_len] = 0;
  snprintf(fx->answer_type, sizeof fx->answer_type, "%s",
           resp->content_type ? resp->content_type : "");
  fx->answer = *resp;
  fx->answer.body = fx->answer_body;
  fx->answer.content_type = fx->answer_type;
  fx->answered = true;
}

/* ---- setup ---- */

/* A REST call that must answer want; copies the string field key of the
 * JSON answer into out. */
static void setup_call(fixture *fx, const char *user, const char *path,
                       const char *ct, const char *body, int want,
                       const char *key, char *out, size_t out_size) {
  chat_http_response r = fx_http(fx, user, "POST", path, NULL, ct, body,
                                 strlen(body));
  if (r.status != want)
    fx_fail("setup POST %s: status %d: %.*s", path, r.status,
            (int)r.body_len, (const char *)r.body);
  cJSON *root = cJSON_ParseWithLength(r.body, r.body_len);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!cJSON_IsString(v) || strlen(v->valuestring) >= out_size)
    fx_fail("setup POST %s: no \"%s\" in the answer", path, key);
  snprintf(out, out_size, "%s", v->valuestring);
  cJSON_Delete(root);
}

/* Send one message from s and wait for its ack; its id goes to out. */
static void setup_send(fixture *fx, chat_session *s, const char *frame,
                       char *out, size_t out_size) {
  if (chat_session_on_frame(s, frame, strlen(frame), fx->now) != CHAT_OK)
    fx_fail("setup send refused");
  fx_tick(fx);
  const char *json;
  size_t len;
  while (chat_session_next_frame(s, &json, &len) == CHAT_OK) {
    const chat_frame *f;
    if (chat_codec_decode(oracle, CHAT_DIR_TO_CLIENT, json, len, &f, NULL) ==
            CHAT_OK &&
        f->type == CHAT_FRAME_ACK) {
      snprintf(out, out_size, "%llu", (unsigned long long)f->ack->message_id);
      return;
    }
  }
  fx_fail("setup send: no ack");
}

static void fixture_make(fixture *fx, bool with_bus) {
  unsigned generation = fx->generation + 1;
  memset(fx, 0, sizeof *fx);
  fx->generation = generation;
  /* The same clock and seed every time, so every generation mints the
   * same ids and a reproducer replays alike. */
  fake_env_init(&fx->fe, INT64_C(1800000000000), 42);
  fx->now = 1000000;
  chat_storage_ops store;
  if (chat_sqlite_storage_open(&store, ":memory:", NULL, NULL, NULL) != CHAT_OK)
    fx_fail("sqlite open");
  chat_presence_ops presence;
  chat_bus_ops bus;
  if (with_bus) {
    if (chat_memory_hub_new(&fx->hub, NULL) != CHAT_OK ||
        chat_memory_presence_ops(fx->hub, &presence) != CHAT_OK ||
        chat_memory_bus_ops(fx->hub, &bus) != CHAT_OK ||
        presence.device_online(presence.self, "carol", "laptop",
                               FX_REMOTE_GW) != CHAT_OK)
      fx_fail("memory hub");
  }
  chat_push_ops push = {.version = CHAT_PUSH_OPS_V1, .self = fx,
                        .notify = push_notify};
  fx->mode = defer_mode_from_env();
  if (fx->mode != DEFER_OFF) {
    chat_storage_ops sync_store = store;
    fx->defer = defer_store_new(&sync_store, fx->mode, 42, &store);
    if (with_bus) {
      chat_presence_ops sync_presence = presence;
      defer_store_wrap_presence(fx->defer, &sync_presence, &presence);
    }
  }
  chat_server_callbacks cbs = {.version = CHAT_SERVER_CALLBACKS_V1,
                               .on_http_response = on_http_response};
  /* A small resume cap keeps a resume's cost per input small; the caps'
   * paths are the same at any size. */
  chat_server_settings st = {.version = CHAT_SERVER_SETTINGS_V1,
                             .resume_max_messages = 50,
                             .env = &fx->fe.env};
  chat_server_modules mods = {.version = CHAT_SERVER_MODULES_V1,
                              .storage = &store,
                              .presence = with_bus ? &presence : NULL,
                              .bus = with_bus ? &bus : NULL,
                              .push = &push};
  chat_errbuf eb = {{0}};
  chat_err rc = chat_server_new(&fx->srv, &st, &mods, &cbs, fx, NULL, &eb);
  if (rc != CHAT_OK)
    fx_fail("chat_server_new: %s: %s", chat_err_name(rc), eb.msg);
  if (!oracle && chat_codec_new(&oracle, &oracle_cs, NULL, NULL) != CHAT_OK)
    fx_fail("codec");
  const char *t = getenv("FX_TRACE");
  trace = t && *t && strcmp(t, "0") != 0;
  fx_tick(fx); /* the store's max_message_id may be in flight */

  const char *convs = "/api/v1/conversations";
  setup_call(fx, "alice", convs, NULL,
             "{\"type\":\"direct\",\"members\":[\"bob\"]}", 201,
             "conversation_id", fx->direct, sizeof fx->direct);
  setup_call(fx, "alice", convs, NULL,
             "{\"type\":\"group\",\"name\":\"fuzz\","
             "\"members\":[\"bob\",\"carol\"]}",
             201, "conversation_id", fx->group, sizeof fx->group);
  setup_call(fx, "bob", convs, NULL,
             "{\"type\":\"group\",\"members\":[\"carol\"]}", 201,
             "conversation_id", fx->other, sizeof fx->other);
  setup_call(fx, "alice", "/api/v1/media", "image/png", "\x89PNG fuzz", 201,
             "media_id", fx->media_own, sizeof fx->media_own);
  setup_call(fx, "bob", "/api/v1/media", "text/plain", "bob's", 201,
             "media_id", fx->media_other, sizeof fx->media_other);

  static chat_identity setup_id = {CHAT_IDENTITY_V1, "alice", "setup", 0,
                                   CHAT_SENDER_USER};
  chat_session *s;
  if (chat_server_open_session(fx->srv, &s, &setup_id, &setup_id,
                               fx->now) != CHAT_OK)
    fx_fail("setup session");
  char frame[512];
  snprintf(frame, sizeof frame,
           "{\"type\":\"send\",\"client_msg_id\":\"fx-1\","
           "\"conversation_id\":\"%s\",\"body\":\"pic\","
           "\"media_refs\":[\"%s\"],\"body_type\":\"media\"}",
           fx->group, fx->media_own);
  setup_send(fx, s, frame, fx->msg_group, sizeof fx->msg_group);
  snprintf(frame, sizeof frame,
           "{\"type\":\"send\",\"client_msg_id\":\"fx-2\","
           "\"conversation_id\":\"%s\",\"body\":\"hi bob\"}",
           fx->direct);
  setup_send(fx, s, frame, fx->msg_direct, sizeof fx->msg_direct);
  fx_advance(fx, 10);
  fx_tick(fx);
  fx_drain(s);
  chat_server_close_session(fx->srv, s, fx->now);
  fx_tick(fx);
}

static void fixture_free(fixture *fx) {
  /* The hub must outlive the server that borrows it. */
  chat_server_free(fx->srv);
  chat_memory_hub_free(fx->hub);
  free(fx->answer_body);
  fx->srv = NULL;
  fx->hub = NULL;
  fx->defer = NULL; /* freed by the server (the wrapper's destroy) */
  fx->answer_body = NULL;
}

fixture *fx_get(bool with_bus) {
  fixture *fx = &fx_static;
  if (!fx->srv || fx->inputs >= FX_RECREATE_EVERY) {
    if (fx->srv)
      fixture_free(fx);
    fixture_make(fx, with_bus);
  }
  fx->inputs++;
  return fx;
}

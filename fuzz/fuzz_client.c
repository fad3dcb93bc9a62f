/* Fuzz target: a connected chat_client fed arbitrary inbound data.
 *
 * The input is split at '\n' into chunks. A chunk is one inbound frame,
 * unless it starts with '!', which makes it a host or app action:
 *   !t<ms>   advance the clock (and run due timers)
 *   !c       the socket drops; the client reconnects (hello again)
 *   !r<body> answer the oldest REST request with 200 and <body>
 *   !e<n>    answer the oldest REST request with status n, no body
 *   !s<body> the app sends <body> to conversation "c"
 *   !m<id>   the app marks conversation "c" read up to <id>
 *   !k       a keystroke in conversation "c"
 *   !x       the server closes the session with 4001 (token expired)
 *   !T<tok>  the app hands over a token
 *   !d<tok>  the app registers a push token
 *   !E<id> <body>  the app edits message <id> of "c"
 *   !D<id>   the app deletes message <id> of "c"
 *   !A<user> / !a<user>  the app makes <user> an admin of "c" / not
 *   !R<user> the app removes <user> from "c"
 *   !L       the app leaves "c"
 *   !f       the app fetches conversation "c"
 *   !l       the app lists "c" (stored and pending) and reads one back
 * After every chunk the host drains frames and requests as a real one
 * would. Any crash, sanitizer report or broken invariant is a finding;
 * invariants of section 8: a message reported or listed as deleted has an
 * empty body, and edit and delete frames the client writes name a
 * target. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <chat/client.h>
#include <chat/sqlite.h>

typedef struct fz {
  uint64_t rng;
  chat_time_ms now;
  chat_client *c;
  uint32_t pending[64];
  size_t n_pending;
} fz;

static void fz_random(void *ud, uint8_t *out, size_t n) {
  fz *f = ud;
  while (n--) {
    uint64_t z = (f->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    *out++ = (uint8_t)(z ^ (z >> 31));
  }
}

static int64_t fz_wall(void *ud) {
  return 1700000000000 + (int64_t)((fz *)ud)->now;
}

static const char hello[] =
    "{\"type\":\"hello\",\"user_id\":\"alice\",\"device_id\":\"d\","
    "\"session_id\":\"s\",\"server_ts\":1,\"heartbeat_ms\":30000,\"limits\":{"
    "\"max_body_bytes\":65536,\"max_frame_bytes\":131072,"
    "\"rate_per_minute\":60,\"resume_max_messages\":1000,"
    "\"resume_max_age_ms\":604800000}}";

static bool has(const char *json, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; i + n <= len; i++)
    if (memcmp(json + i, needle, n) == 0)
      return true;
  return false;
}

static void pump(fz *f) {
  const char *json;
  size_t len;
  int guard = 0;
  while (chat_client_next_frame(f->c, &json, &len) == CHAT_OK && guard++ <
         100000) {
    if (len == 0 || json[0] != '{')
      abort(); /* the client only ever writes JSON objects */
    if ((has(json, len, "\"type\":\"edit\"") ||
         has(json, len, "\"type\":\"delete\"")) &&
        !has(json, len, "\"target_id\":\""))
      abort();
  }
  chat_client_request r = {.version = CHAT_CLIENT_REQUEST_V1};
  while (chat_client_next_request(f->c, &r) == CHAT_OK) {
    if (!r.method || !r.path || r.path[0] != '/')
      abort();
    if (f->n_pending < 64)
      f->pending[f->n_pending++] = r.id;
  }
  if (chat_client_wants(f->c) & CHAT_CLIENT_WANT_CLOSE)
    chat_client_on_close(f->c, 1000, f->now);
  if (chat_client_wants(f->c) & CHAT_CLIENT_WANT_CONNECT) {
    chat_client_on_connecting(f->c, f->now);
    chat_client_on_open(f->c, f->now);
    chat_client_on_frame(f->c, hello, sizeof hello - 1, f->now);
  }
}

static void advance(fz *f, chat_time_ms ms) {
  chat_time_ms target = f->now + ms;
  for (int i = 0; i < 1000; i++) {
    chat_time_ms d = chat_client_next_deadline(f->c);
    if (d > target)
      break;
    if (d > f->now)
      f->now = d;
    chat_client_on_timer(f->c, f->now);
    pump(f);
  }
  f->now = target;
}

static uint64_t num(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n && i < 18 && p[i] >= '0' && p[i] <= '9'; i++)
    v = v * 10 + (uint64_t)(p[i] - '0');
  return v;
}

static void answer(fz *f, int status, const uint8_t *body, size_t n) {
  if (f->n_pending == 0)
    return;
  uint32_t id = f->pending[0];
  memmove(f->pending, f->pending + 1, --f->n_pending * sizeof *f->pending);
  chat_client_on_response(f->c, id, status, (const char *)body, n, f->now);
}

/* Section 8: nothing deleted shows a body. */
static void check_message(const chat_message *m) {
  if (m->deleted && m->body.len)
    abort();
}

static void on_message(void *ud, chat_client *c, const chat_message *m,
                       chat_message_origin o) {
  (void)ud, (void)c, (void)o;
  check_message(m);
}

static void on_changed(void *ud, chat_client *c, const chat_message *m) {
  (void)ud, (void)c;
  check_message(m);
  if (!m->deleted && !m->has_edited_ts)
    abort(); /* a change is an edit or a delete */
}

static void on_listed(void *ud, const chat_client_message *m) {
  (void)ud;
  check_message(m->message);
  if (m->pending && m->message->message_id)
    abort();
}

/* "<id> <rest>": the id, and the rest after one space. */
static uint64_t id_and_rest(const uint8_t *arg, size_t an,
                            const uint8_t **rest, size_t *rn) {
  size_t k = 0;
  while (k < an && arg[k] != ' ')
    k++;
  *rest = k < an ? arg + k + 1 : arg + an;
  *rn = k < an ? an - k - 1 : 0;
  return num(arg, k);
}

static void action(fz *f, const uint8_t *p, size_t n) {
  char op = n > 1 ? (char)p[1] : 0;
  const uint8_t *arg = p + 2;
  size_t an = n > 2 ? n - 2 : 0;
  switch (op) {
  case 't':
    advance(f, num(arg, an) % 7200000);
    break;
  case 'c':
    chat_client_on_close(f->c, 1006, f->now);
    chat_client_hint_network_up(f->c, f->now);
    break;
  case 'r':
    answer(f, 200, arg, an);
    break;
  case 'e':
    answer(f, (int)(num(arg, an) % 600), NULL, 0);
    break;
  case 's':
    chat_client_send(f->c, "c", (const char *)arg, an, NULL, f->now);
    break;
  case 'm':
    chat_client_mark_read(f->c, "c", num(arg, an), f->now);
    break;
  case 'k':
    chat_client_typing(f->c, "c", f->now);
    break;
  case 'x':
    chat_client_on_close(f->c, 4001, f->now);
    break;
  case 'T':
    chat_client_set_token(f->c, (const char *)arg, an, f->now);
    break;
  case 'd': {
    char tok[128];
    size_t k = an < sizeof tok - 1 ? an : sizeof tok - 1;
    memcpy(tok, arg, k);
    tok[k] = 0;
    chat_client_register_device(f->c, "fcm", tok, NULL, f->now);
    break;
  }
  case 'E': {
    const uint8_t *body;
    size_t bn;
    uint64_t id = id_and_rest(arg, an, &body, &bn);
    chat_client_edit(f->c, "c", id, (const char *)body, bn, NULL, f->now);
    break;
  }
  case 'D':
    chat_client_delete(f->c, "c", num(arg, an), NULL, f->now);
    break;
  case 'A':
  case 'a':
  case 'R': {
    char user[72];
    size_t k = an < sizeof user - 1 ? an : sizeof user - 1;
    memcpy(user, arg, k);
    user[k] = 0;
    if (op == 'A')
      chat_client_add_admin(f->c, "c", user, NULL, f->now);
    else if (op == 'a')
      chat_client_remove_admin(f->c, "c", user, NULL, f->now);
    else
      chat_client_remove_member(f->c, "c", user, NULL, f->now);
    break;
  }
  case 'L':
    chat_client_leave(f->c, "c", NULL, f->now);
    break;
  case 'f':
    chat_client_fetch_conversation(f->c, "c", NULL, f->now);
    break;
  case 'l':
    chat_client_list_messages(f->c, "c", 0, 200, on_listed, NULL);
    chat_client_get_message(f->c, "c", num(arg, an), on_listed, NULL);
    break;
  default:
    break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fz f;
  memset(&f, 0, sizeof f);
  f.rng = 7;
  chat_env env = {.version = CHAT_ENV_V1, .user_data = &f,
                  .random = fz_random, .wall_ms = fz_wall};
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1, .env = &env};
  chat_client_callbacks cb = {.version = CHAT_CLIENT_CALLBACKS_V2,
                              .on_message = on_message,
                              .on_message_changed = on_changed};
  chat_client_store_ops st;
  if (chat_sqlite_client_store_open(&st, ":memory:", NULL, NULL) != CHAT_OK)
    abort();
  if (chat_client_new(&f.c, &s, &st, &cb, NULL, NULL, NULL) != CHAT_OK)
    abort();
  chat_client_start(f.c, f.now);
  pump(&f);
  const uint8_t *p = data, *end = data + size;
  while (p < end) {
    const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
    if (n > 0 && p[0] == '!')
      action(&f, p, n);
    else
      chat_client_on_frame(f.c, (const char *)p, n, f.now);
    pump(&f);
    p += n + (nl ? 1 : 0);
  }
  advance(&f, 120000);
  /* The state machine never wedges: a started client is connected,
   * connecting or waiting to reconnect, and always has a next step. */
  chat_client_state state = chat_client_get_state(f.c);
  if (state == CHAT_CLIENT_IDLE)
    abort();
  if (state == CHAT_CLIENT_BACKOFF &&
      chat_client_next_deadline(f.c) == CHAT_TIME_NEVER)
    abort();
  chat_client_free(f.c);
  return 0;
}

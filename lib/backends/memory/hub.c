/* In-process presence registry and routing bus (include/chat/memory.h).
 *
 * Presence: user_id -> the set of (gateway_id, device_id) connections, kept
 * in a per-user map keyed "gateway\0device", plus the user's last
 * set_state() record. Bus: gateway_id -> a FIFO of copied messages.
 *
 * The maps are seeded from a constant mixed with the hub's address rather
 * than from randomness: every key is an id of an authenticated user or a
 * gateway id from the host's configuration, so nobody anonymous chooses
 * them, and the hub needs no env. */
#include <chat/memory.h>

#include <string.h>

#include "common/alloc.h"
#include "common/map.h"

/* Bus messages a gateway may have waiting before publish() drops. */
#define QUEUE_MAX 65536

#define HUB_SEED 0x6c69626368617421ull /* "libchat!" */

struct user {
  chat__map conns;  /* "gateway\0device" -> NULL */
  unsigned busy;    /* locate() calls iterating conns right now */
  bool has_state;
  chat_presence_state state;
  int64_t last_active_ms;
};

struct msg {
  struct msg *next;
  uint64_t seq; /* position in its queue, to bound a drain */
  size_t len;
  char data[]; /* len bytes and a NUL */
};

/* A queue lives until the hub is freed, so a drain can hold on to it while
 * its callback publishes or drains. Gateways are few and named by the host,
 * so keeping empty queues costs little. */
struct queue {
  struct msg *head, *tail;
  size_t n;
  uint64_t next_seq;
};

struct chat_memory_hub {
  chat_allocator a;
  chat__map users;  /* user_id -> struct user */
  chat__map queues; /* gateway_id -> struct queue */
};

/* An id by the rules of PROTOCOL.md section 1; the scan stops one byte
 * past the longest valid id, so an unterminated giant is cheap to
 * refuse. */
static bool id_ok(const char *s) {
  return s && chat_id_valid(s, strnlen(s, CHAT_ID_BUF));
}

chat_err chat_memory_hub_new(chat_memory_hub **out,
                             const chat_allocator *alloc) {
  if (!out)
    return CHAT_ERR_INVAL;
  *out = NULL;
  chat_allocator a;
  if (chat__allocator_init(&a, alloc) != CHAT_OK)
    return CHAT_ERR_INVAL;
  chat_memory_hub *hub = chat__alloc(&a, sizeof *hub);
  if (!hub)
    return CHAT_ERR_NOMEM;
  hub->a = a;
  uint64_t seed = HUB_SEED ^ (uint64_t)(uintptr_t)hub;
  chat__map_init(&hub->users, &hub->a, seed);
  chat__map_init(&hub->queues, &hub->a, seed);
  *out = hub;
  return CHAT_OK;
}

static void user_free(chat_memory_hub *hub, struct user *u) {
  chat__map_free(&u->conns);
  chat__free(&hub->a, u);
}

static void queue_clear(chat_memory_hub *hub, struct queue *q) {
  for (struct msg *m = q->head, *next; m; m = next) {
    next = m->next;
    chat__free(&hub->a, m);
  }
  q->head = q->tail = NULL;
  q->n = 0;
}

void chat_memory_hub_free(chat_memory_hub *hub) {
  if (!hub)
    return;
  size_t it = 0;
  void *v;
  while (chat__map_next(&hub->users, &it, NULL, NULL, &v))
    user_free(hub, v);
  it = 0;
  while (chat__map_next(&hub->queues, &it, NULL, NULL, &v)) {
    queue_clear(hub, v);
    chat__free(&hub->a, v);
  }
  chat__map_free(&hub->users);
  chat__map_free(&hub->queues);
  chat_allocator a = hub->a;
  chat__free(&a, hub);
}

/* ------------------------------------------------------------------------
 * Presence */

static struct user *user_find(const chat_memory_hub *hub, const char *id) {
  void **v = chat__map_get(&hub->users, id, strlen(id));
  return v ? *v : NULL;
}

/* The user's record, created empty when absent; *created says which. */
static chat_err user_get(chat_memory_hub *hub, const char *id,
                         struct user **out, bool *created) {
  *created = false;
  if ((*out = user_find(hub, id)))
    return CHAT_OK;
  struct user *u = chat__alloc(&hub->a, sizeof *u);
  if (!u)
    return CHAT_ERR_NOMEM;
  chat__map_init(&u->conns, &hub->a, hub->users.seed);
  u->busy = 0;
  u->has_state = false;
  u->state = CHAT_PRESENCE_OFFLINE;
  u->last_active_ms = 0;
  if (chat__map_put(&hub->users, id, strlen(id), u, NULL) != CHAT_OK) {
    chat__free(&hub->a, u);
    return CHAT_ERR_NOMEM;
  }
  *out = u;
  *created = true;
  return CHAT_OK;
}

/* Forget a user with nothing left to remember, unless a locate() is
 * walking its connections. */
static void user_maybe_drop(chat_memory_hub *hub, const char *id,
                            struct user *u) {
  if (u->busy || u->has_state || chat__map_len(&u->conns))
    return;
  chat__map_del(&hub->users, id, strlen(id), NULL);
  user_free(hub, u);
}

/* "gateway\0device": the NUL cannot occur in an id, so the pair is
 * unambiguous, and the map's own terminator ends the device part. */
static size_t conn_key(char *buf, const char *gateway_id,
                       const char *device_id) {
  size_t g = strlen(gateway_id), d = strlen(device_id);
  memcpy(buf, gateway_id, g + 1);
  memcpy(buf + g + 1, device_id, d);
  return g + 1 + d;
}

static chat_err p_device_online(void *self, const char *user_id,
                                const char *device_id,
                                const char *gateway_id) {
  chat_memory_hub *hub = self;
  if (!hub || !id_ok(user_id) || !id_ok(device_id) || !id_ok(gateway_id))
    return CHAT_ERR_INVAL;
  struct user *u;
  bool created;
  if (user_get(hub, user_id, &u, &created) != CHAT_OK)
    return CHAT_ERR_NOMEM;
  char key[2 * CHAT_ID_BUF];
  size_t klen = conn_key(key, gateway_id, device_id);
  if (chat__map_put(&u->conns, key, klen, NULL, NULL) != CHAT_OK) {
    if (created)
      user_maybe_drop(hub, user_id, u);
    return CHAT_ERR_NOMEM;
  }
  return CHAT_OK;
}

/* Idempotent: an unknown connection is already offline. */
static chat_err p_device_offline(void *self, const char *user_id,
                                 const char *device_id,
                                 const char *gateway_id) {
  chat_memory_hub *hub = self;
  if (!hub || !id_ok(user_id) || !id_ok(device_id) || !id_ok(gateway_id))
    return CHAT_ERR_INVAL;
  struct user *u = user_find(hub, user_id);
  if (!u)
    return CHAT_OK;
  char key[2 * CHAT_ID_BUF];
  size_t klen = conn_key(key, gateway_id, device_id);
  if (chat__map_del(&u->conns, key, klen, NULL))
    user_maybe_drop(hub, user_id, u);
  return CHAT_OK;
}

/* emit may call back into the hub. The user's record is pinned meanwhile;
 * connections the callback adds for the same user may or may not be
 * emitted, and ones it removes are emitted only if already passed. */
static chat_err p_locate(void *self, const char *user_id,
                         chat_location_sink emit, void *ctx, chat_op *op) {
  (void)op; /* the hub answers at once */
  chat_memory_hub *hub = self;
  if (!hub || !id_ok(user_id) || !emit)
    return CHAT_ERR_INVAL;
  struct user *u = user_find(hub, user_id);
  if (!u)
    return CHAT_OK;
  u->busy++;
  size_t it = 0, klen;
  const char *key;
  while (chat__map_next(&u->conns, &it, &key, &klen, NULL)) {
    size_t g = strlen(key);
    emit(ctx, key, key + g + 1);
  }
  u->busy--;
  user_maybe_drop(hub, user_id, u);
  return CHAT_OK;
}

static chat_err p_set_state(void *self, const char *user_id,
                            chat_presence_state state,
                            int64_t last_active_ms) {
  chat_memory_hub *hub = self;
  if (!hub || !id_ok(user_id))
    return CHAT_ERR_INVAL;
  if (state != CHAT_PRESENCE_OFFLINE && state != CHAT_PRESENCE_ONLINE &&
      state != CHAT_PRESENCE_IDLE)
    return CHAT_ERR_INVAL;
  struct user *u;
  bool created;
  if (user_get(hub, user_id, &u, &created) != CHAT_OK)
    return CHAT_ERR_NOMEM;
  u->has_state = true;
  u->state = state;
  u->last_active_ms = last_active_ms;
  return CHAT_OK;
}

static chat_err p_get_state(void *self, const char *user_id,
                            chat_presence_state *state,
                            int64_t *last_active_ms, chat_op *op) {
  (void)op;
  chat_memory_hub *hub = self;
  if (!hub || !id_ok(user_id) || !state || !last_active_ms)
    return CHAT_ERR_INVAL;
  struct user *u = user_find(hub, user_id);
  if (!u || !u->has_state)
    return CHAT_ERR_NOT_FOUND;
  *state = u->state;
  *last_active_ms = u->last_active_ms;
  return CHAT_OK;
}

/* The hub owns the state; chat_memory_hub_free() releases it. */
static void ops_destroy(void *self) {
  (void)self;
}

chat_err chat_memory_presence_ops(chat_memory_hub *hub,
                                  chat_presence_ops *out) {
  if (!hub || !out)
    return CHAT_ERR_INVAL;
  memset(out, 0, sizeof *out);
  out->version = CHAT_PRESENCE_OPS_V1;
  out->self = hub;
  out->device_online = p_device_online;
  out->device_offline = p_device_offline;
  out->locate = p_locate;
  out->set_state = p_set_state;
  out->get_state = p_get_state;
  out->destroy = ops_destroy;
  return CHAT_OK;
}

/* ------------------------------------------------------------------------
 * Bus */

static struct queue *queue_find(const chat_memory_hub *hub, const char *id) {
  void **v = chat__map_get(&hub->queues, id, strlen(id));
  return v ? *v : NULL;
}

static chat_err b_publish(void *self, const char *gateway_id,
                          const char *msg, size_t len) {
  chat_memory_hub *hub = self;
  if (!hub || !id_ok(gateway_id) || !msg)
    return CHAT_ERR_INVAL;
  struct queue *q = queue_find(hub, gateway_id);
  if (q && q->n >= QUEUE_MAX)
    return CHAT_ERR_AGAIN;
  if (len > SIZE_MAX - sizeof(struct msg) - 1)
    return CHAT_ERR_NOMEM;
  struct msg *m = chat__alloc(&hub->a, sizeof *m + len + 1);
  if (!m)
    return CHAT_ERR_NOMEM;
  if (!q) {
    q = chat__alloc(&hub->a, sizeof *q);
    if (!q || chat__map_put(&hub->queues, gateway_id, strlen(gateway_id), q,
                            NULL) != CHAT_OK) {
      chat__free(&hub->a, q);
      chat__free(&hub->a, m);
      return CHAT_ERR_NOMEM;
    }
    q->head = q->tail = NULL;
    q->n = 0;
    q->next_seq = 0;
  }
  m->next = NULL;
  m->seq = q->next_seq++;
  m->len = len;
  memcpy(m->data, msg, len);
  m->data[len] = '\0';
  if (q->tail)
    q->tail->next = m;
  else
    q->head = m;
  q->tail = m;
  q->n++;
  return CHAT_OK;
}

chat_err chat_memory_bus_ops(chat_memory_hub *hub, chat_bus_ops *out) {
  if (!hub || !out)
    return CHAT_ERR_INVAL;
  memset(out, 0, sizeof *out);
  out->version = CHAT_BUS_OPS_V1;
  out->self = hub;
  out->publish = b_publish;
  out->destroy = ops_destroy;
  return CHAT_OK;
}

/* Each message is unlinked before its callback runs, so the callback sees a
 * consistent queue and may publish or even drain again; the sequence bound
 * keeps this drain to what was queued when it started. */
size_t chat_memory_hub_drain(chat_memory_hub *hub, const char *gateway_id,
                             chat_memory_deliver_fn fn, void *user_data) {
  if (!hub || !id_ok(gateway_id) || !fn)
    return 0;
  struct queue *q = queue_find(hub, gateway_id);
  if (!q)
    return 0;
  uint64_t end = q->next_seq;
  size_t delivered = 0;
  while (q->head && q->head->seq < end) {
    struct msg *m = q->head;
    q->head = m->next;
    if (!q->head)
      q->tail = NULL;
    q->n--;
    fn(user_data, m->data, m->len);
    chat__free(&hub->a, m);
    delivered++;
  }
  return delivered;
}

size_t chat_memory_hub_pending(const chat_memory_hub *hub,
                               const char *gateway_id) {
  if (!hub || !id_ok(gateway_id))
    return 0;
  const struct queue *q = queue_find(hub, gateway_id);
  return q ? q->n : 0;
}

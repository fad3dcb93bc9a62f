/* Token buckets per (sender, conversation): rate_per_minute tokens, refilled
 * continuously (PROTOCOL.md 4.10); and per user for REST: rest_burst
 * tokens refilled at rest_rate_per_minute, so any host that calls
 * chat_server_http() gets the same 429s. A full bucket is the same as no
 * bucket, so a periodic sweep drops those and memory follows active users
 * only. */
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

typedef struct bucket {
  double tokens;
  chat_time_ms at; /* when tokens was last brought up to date */
  double cap;      /* tokens a minute, and the bucket's size (a bot's
                      quota differs from a person's) */
} bucket;

#define SWEEP_MS 60000

static size_t make_key(char *key, const char *sender, const char *conv) {
  /* '\n' cannot occur in an id, so the pair is unambiguous. */
  return (size_t)snprintf(key, 2 * CHAT_ID_BUF + 2, "%s\n%s", sender, conv);
}

static void refill(bucket *b, chat_time_ms now) {
  double cap = b->cap;
  if (now > b->at) {
    b->tokens += (double)(now - b->at) * cap / 60000.0;
    if (b->tokens > cap)
      b->tokens = cap;
  }
  b->at = now;
}

bool chat__rate_take(chat_server *srv, const char *sender, const char *conv,
                     uint32_t rate_per_minute, chat_time_ms now,
                     uint64_t *retry_after_ms) {
  char key[2 * CHAT_ID_BUF + 2];
  size_t kl = make_key(key, sender, conv);
  void **slot = chat__map_get(&srv->buckets, key, kl);
  bucket *b;
  if (slot) {
    b = *slot;
    if (b->cap != rate_per_minute) {
      /* The same user under another kind of token: keep what was used,
       * within the new size. */
      b->cap = rate_per_minute;
      if (b->tokens > b->cap)
        b->tokens = b->cap;
    }
    refill(b, now);
  } else {
    b = chat__alloc(&srv->a, sizeof *b);
    /* Without memory for a bucket the send is let through: refusing a user
     * for our own shortage would be worse than a missed limit. */
    if (!b)
      return true;
    b->tokens = rate_per_minute;
    b->cap = rate_per_minute;
    b->at = now;
    if (chat__map_put(&srv->buckets, key, kl, b, NULL) != CHAT_OK) {
      chat__free(&srv->a, b);
      return true;
    }
    if (srv->next_bucket_sweep == CHAT_TIME_NEVER)
      srv->next_bucket_sweep = now + SWEEP_MS;
  }
  if (b->tokens >= 1.0) {
    b->tokens -= 1.0;
    return true;
  }
  double per_ms = b->cap / 60000.0;
  double wait = (1.0 - b->tokens) / per_ms;
  *retry_after_ms = (uint64_t)wait + 1;
  return false;
}

void chat__rate_refund(chat_server *srv, const char *sender,
                       const char *conv) {
  char key[2 * CHAT_ID_BUF + 2];
  size_t kl = make_key(key, sender, conv);
  void **slot = chat__map_get(&srv->buckets, key, kl);
  if (!slot)
    return;
  bucket *b = *slot;
  if (b->tokens + 1.0 <= b->cap)
    b->tokens += 1.0;
}

void chat__rate_sweep(chat_server *srv, chat_time_ms now) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->buckets, &it, &k, &kl, &v)) {
    bucket *b = v;
    refill(b, now);
    if (b->tokens >= b->cap) {
      chat__map_del(&srv->buckets, k, kl, NULL);
      chat__free(&srv->a, b);
    }
  }
  srv->next_bucket_sweep =
      chat__map_len(&srv->buckets) ? now + SWEEP_MS : CHAT_TIME_NEVER;
}

/* ---- REST ---- */

#define REST_SWEEP_MS 10000

static bool rest_unlimited(const chat_server *srv) {
  return srv->s.rest_rate_per_minute == UINT32_MAX;
}

static void rest_refill(const chat_server *srv, bucket *b, chat_time_ms now) {
  double rate = srv->s.rest_rate_per_minute / 60000.0; /* per ms */
  if (now > b->at) {
    b->tokens += (double)(now - b->at) * rate;
    if (b->tokens > srv->s.rest_burst)
      b->tokens = srv->s.rest_burst;
  }
  b->at = now;
}

bool chat__rest_rate_take(chat_server *srv, const char *user,
                          chat_time_ms now, uint32_t *retry_s) {
  if (rest_unlimited(srv))
    return true;
  size_t klen = strlen(user);
  void **slot = chat__map_get(&srv->rest_buckets, user, klen);
  bucket *b = slot ? *slot : NULL;
  if (b) {
    rest_refill(srv, b, now);
  } else {
    b = chat__alloc(&srv->a, sizeof *b);
    /* Out of memory: let the request through rather than fail it. */
    if (!b)
      return true;
    b->tokens = srv->s.rest_burst;
    b->cap = srv->s.rest_burst;
    b->at = now;
    if (chat__map_put(&srv->rest_buckets, user, klen, b, NULL) != CHAT_OK) {
      chat__free(&srv->a, b);
      return true;
    }
    if (srv->next_rest_sweep == CHAT_TIME_NEVER)
      srv->next_rest_sweep = now + REST_SWEEP_MS;
  }
  if (b->tokens >= 1.0) {
    b->tokens -= 1.0;
    return true;
  }
  double rate = srv->s.rest_rate_per_minute / 60000.0;
  double wait_ms = (1.0 - b->tokens) / rate;
  uint32_t s = (uint32_t)(wait_ms / 1000.0);
  if ((double)s * 1000.0 < wait_ms)
    s++;
  *retry_s = s ? s : 1;
  return false;
}

void chat__rest_rate_sweep(chat_server *srv, chat_time_ms now) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->rest_buckets, &it, &k, &kl, &v)) {
    bucket *b = v;
    rest_refill(srv, b, now);
    if (b->tokens >= srv->s.rest_burst) {
      chat__map_del(&srv->rest_buckets, k, kl, NULL);
      chat__free(&srv->a, b);
    }
  }
  srv->next_rest_sweep = chat__map_len(&srv->rest_buckets)
                             ? now + REST_SWEEP_MS
                             : CHAT_TIME_NEVER;
}

void chat__rate_free(chat_server *srv) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->buckets, &it, &k, &kl, &v))
    chat__free(&srv->a, v);
  it = 0;
  while (chat__map_next(&srv->rest_buckets, &it, &k, &kl, &v))
    chat__free(&srv->a, v);
}

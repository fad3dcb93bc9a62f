/* Token buckets per (sender, conversation): rate_per_minute tokens, refilled
 * continuously (PROTOCOL.md 4.10). A full bucket is the same as no bucket,
 * so a periodic sweep drops those and memory follows active senders only. */
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

typedef struct bucket {
  double tokens;
  chat_time_ms at; /* when tokens was last brought up to date */
} bucket;

#define SWEEP_MS 60000

static size_t make_key(char *key, const char *sender, const char *conv) {
  /* '\n' cannot occur in an id, so the pair is unambiguous. */
  return (size_t)snprintf(key, 2 * CHAT_ID_BUF + 2, "%s\n%s", sender, conv);
}

static void refill(const chat_server *srv, bucket *b, chat_time_ms now) {
  double cap = srv->s.rate_per_minute;
  if (now > b->at) {
    b->tokens += (double)(now - b->at) * cap / 60000.0;
    if (b->tokens > cap)
      b->tokens = cap;
  }
  b->at = now;
}

bool chat__rate_take(chat_server *srv, const char *sender, const char *conv,
                     chat_time_ms now, uint64_t *retry_after_ms) {
  char key[2 * CHAT_ID_BUF + 2];
  size_t kl = make_key(key, sender, conv);
  void **slot = chat__map_get(&srv->buckets, key, kl);
  bucket *b;
  if (slot) {
    b = *slot;
    refill(srv, b, now);
  } else {
    b = chat__alloc(&srv->a, sizeof *b);
    /* Without memory for a bucket the send is let through: refusing a user
     * for our own shortage would be worse than a missed limit. */
    if (!b)
      return true;
    b->tokens = srv->s.rate_per_minute;
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
  double per_ms = srv->s.rate_per_minute / 60000.0;
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
  if (b->tokens + 1.0 <= srv->s.rate_per_minute)
    b->tokens += 1.0;
}

void chat__rate_sweep(chat_server *srv, chat_time_ms now) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->buckets, &it, &k, &kl, &v)) {
    bucket *b = v;
    refill(srv, b, now);
    if (b->tokens >= srv->s.rate_per_minute) {
      chat__map_del(&srv->buckets, k, kl, NULL);
      chat__free(&srv->a, b);
    }
  }
  srv->next_bucket_sweep =
      chat__map_len(&srv->buckets) ? now + SWEEP_MS : CHAT_TIME_NEVER;
}

void chat__rate_free(chat_server *srv) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->buckets, &it, &k, &kl, &v))
    chat__free(&srv->a, v);
}

/* String-keyed hash map (open addressing, linear probing, tombstones).
 * Keys are copied into the map; values are opaque pointers the map never
 * frees. The hash is seeded per map, so a peer choosing ids cannot force
 * collisions without knowing the seed. */
#ifndef CHAT__MAP_H
#define CHAT__MAP_H

#include <chat/common.h>

typedef struct chat__map_slot {
  char *key;     /* NULL: empty; (char *)&chat__map_tomb: deleted */
  size_t klen;
  uint64_t hash;
  void *value;
} chat__map_slot;

typedef struct chat__map {
  const chat_allocator *a; /* borrowed from the owner */
  uint64_t seed;
  chat__map_slot *slots;
  size_t cap;   /* 0 or a power of two */
  size_t len;   /* live entries */
  size_t tombs; /* deleted slots not yet reused */
} chat__map;

extern char chat__map_tomb;

void chat__map_init(chat__map *m, const chat_allocator *a, uint64_t seed);
/* Frees the keys and the table, not the values. */
void chat__map_free(chat__map *m);

/* The value's slot for key, or NULL when absent. The pointer is valid until
 * the next put or del. */
void **chat__map_get(const chat__map *m, const char *key, size_t klen);

/* Insert or replace. CHAT_ERR_NOMEM leaves the map unchanged. When
 * old_value is not NULL it receives the replaced value (NULL if new). */
chat_err chat__map_put(chat__map *m, const char *key, size_t klen,
                       void *value, void **old_value);

/* Remove; true when the key was there, its value in *old_value (may be
 * NULL). */
bool chat__map_del(chat__map *m, const char *key, size_t klen,
                   void **old_value);

static inline size_t chat__map_len(const chat__map *m) { return m->len; }

/* Iteration: start with *iter = 0; returns false at the end. Deleting the
 * entry just returned is allowed during iteration; inserting is not. */
bool chat__map_next(const chat__map *m, size_t *iter, const char **key,
                    size_t *klen, void **value);

/* The seeded 64-bit hash the map uses, for callers that shard by key. */
uint64_t chat__hash(uint64_t seed, const void *p, size_t n);

#endif

/* String-keyed hash map: open addressing with linear probing over a
 * power-of-two table. Deleted slots become tombstones so that probe chains
 * running through them stay intact; a rehash (on growth) drops them. */
#include "map.h"

#include <string.h>

#include "alloc.h"

/* Its address marks a deleted slot; no key copy can ever share it. */
char chat__map_tomb;

#define TOMB (&chat__map_tomb)
#define MIN_CAP 8

/* Odd 64-bit multipliers with nothing up the sleeve: 2^64 divided by the
 * golden ratio, and the fractional parts of sqrt(2) (made odd) and
 * sqrt(3). */
#define K1 0x9e3779b97f4a7c15ull
#define K2 0x6a09e667f3bcc909ull
#define K3 0xbb67ae8584caa73bull

/* Multiplication only carries low bits upwards; each xor-shift folds the
 * high bits back down, so every input bit reaches every output bit. */
static uint64_t fold(uint64_t x) {
  x ^= x >> 31;
  x *= K2;
  x ^= x >> 29;
  x *= K3;
  x ^= x >> 32;
  return x;
}

/* A fast seeded hash over 8-byte words, good enough to spread keys and to
 * keep a peer who does not know the seed from planning collisions. It is
 * not a keyed PRF: the ids hashed by libchat come from authenticated users
 * and are at most 64 bytes. */
uint64_t chat__hash(uint64_t seed, const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = fold(seed ^ K1) ^ ((uint64_t)n * K2);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    /* Each step is a bijection of h for a given word, so two keys that
     * differ in one word only never collide. */
    h = (h ^ w) * K1;
    h ^= h >> 29;
    s += 8;
    n -= 8;
  }
  if (n) {
    uint64_t w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * K3;
    h ^= h >> 29;
  }
  return fold(h);
}

void chat__map_init(chat__map *m, const chat_allocator *a, uint64_t seed) {
  m->a = a;
  m->seed = seed;
  m->slots = NULL;
  m->cap = 0;
  m->len = 0;
  m->tombs = 0;
}

void chat__map_free(chat__map *m) {
  for (size_t i = 0; i < m->cap; i++) {
    char *k = m->slots[i].key;
    if (k && k != TOMB)
      chat__free(m->a, k);
  }
  chat__free(m->a, m->slots);
  m->slots = NULL;
  m->cap = 0;
  m->len = 0;
  m->tombs = 0;
}

static bool live(const chat__map_slot *s) {
  return s->key && s->key != TOMB;
}

static bool same(const chat__map_slot *s, const char *key, size_t klen,
                 uint64_t h) {
  return live(s) && s->hash == h && s->klen == klen &&
         (klen == 0 || memcmp(s->key, key, klen) == 0);
}

/* The slot holding key, or SIZE_MAX. When free_slot is not NULL it gets
 * where the key would go: the first tombstone on the chain, else the empty
 * slot that ended it. */
static size_t find(const chat__map *m, const char *key, size_t klen,
                   uint64_t h, size_t *free_slot) {
  size_t mask = m->cap - 1, first_tomb = SIZE_MAX;
  /* The load limit keeps at least one empty slot, so the loop ends. */
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    const chat__map_slot *s = &m->slots[i];
    if (!s->key) {
      if (free_slot)
        *free_slot = first_tomb != SIZE_MAX ? first_tomb : i;
      return SIZE_MAX;
    }
    if (s->key == TOMB) {
      if (first_tomb == SIZE_MAX)
        first_tomb = i;
    } else if (same(s, key, klen, h)) {
      return i;
    }
  }
}

/* Move every live entry into a fresh table with room for at least one
 * more, dropping the tombstones. The table never shrinks: a map that was
 * big once tends to be big again, and growth then costs nothing. */
static chat_err rehash(chat__map *m) {
  size_t cap = m->cap < MIN_CAP ? MIN_CAP : m->cap;
  /* Leave the new table at most half full, so the next rehash is at least
   * a fifth of the table away. */
  while (m->len + 1 > cap / 2) {
    if (cap > SIZE_MAX / 2 / sizeof(chat__map_slot))
      return CHAT_ERR_NOMEM;
    cap *= 2;
  }
  chat__map_slot *slots = chat__calloc(m->a, cap, sizeof *slots);
  if (!slots)
    return CHAT_ERR_NOMEM;
  size_t mask = cap - 1;
  for (size_t i = 0; i < m->cap; i++) {
    if (!live(&m->slots[i]))
      continue;
    size_t j = (size_t)m->slots[i].hash & mask;
    while (slots[j].key)
      j = (j + 1) & mask;
    slots[j] = m->slots[i];
  }
  chat__free(m->a, m->slots);
  m->slots = slots;
  m->cap = cap;
  m->tombs = 0;
  return CHAT_OK;
}

void **chat__map_get(const chat__map *m, const char *key, size_t klen) {
  if (m->len == 0 || (!key && klen))
    return NULL;
  size_t i = find(m, key, klen, chat__hash(m->seed, key, klen), NULL);
  return i == SIZE_MAX ? NULL : &m->slots[i].value;
}

chat_err chat__map_put(chat__map *m, const char *key, size_t klen,
                       void *value, void **old_value) {
  if (!key && klen)
    return CHAT_ERR_INVAL;
  uint64_t h = chat__hash(m->seed, key, klen);
  size_t at = SIZE_MAX;
  if (m->cap) {
    size_t i = find(m, key, klen, h, &at);
    if (i != SIZE_MAX) {
      if (old_value)
        *old_value = m->slots[i].value;
      m->slots[i].value = value;
      return CHAT_OK;
    }
  }
  /* Copy the key before touching the table, so that either failure leaves
   * the map exactly as it was. */
  char *copy = chat__strndup(m->a, key, klen);
  if (!copy)
    return CHAT_ERR_NOMEM;
  /* Tombstones count towards the load: they lengthen probe chains just as
   * live entries do. Reusing one does not raise the load. */
  bool reuse = at != SIZE_MAX && m->slots[at].key == TOMB;
  if (!reuse && (m->len + m->tombs + 1) * 10 > m->cap * 7) {
    chat_err e = rehash(m);
    if (e != CHAT_OK) {
      chat__free(m->a, copy);
      return e;
    }
    find(m, key, klen, h, &at);
  }
  chat__map_slot *s = &m->slots[at];
  if (s->key == TOMB)
    m->tombs--;
  s->key = copy;
  s->klen = klen;
  s->hash = h;
  s->value = value;
  m->len++;
  if (old_value)
    *old_value = NULL;
  return CHAT_OK;
}

bool chat__map_del(chat__map *m, const char *key, size_t klen,
                   void **old_value) {
  if (m->len == 0 || (!key && klen))
    return false;
  size_t i = find(m, key, klen, chat__hash(m->seed, key, klen), NULL);
  if (i == SIZE_MAX)
    return false;
  chat__map_slot *s = &m->slots[i];
  if (old_value)
    *old_value = s->value;
  chat__free(m->a, s->key);
  s->key = TOMB;
  s->value = NULL;
  m->len--;
  m->tombs++;
  /* When the next slot is empty no probe chain runs past this one, so it
   * and the tombstones right before it can become empty again. Entries
   * never move, which keeps deletion during iteration safe. */
  size_t mask = m->cap - 1;
  if (!m->slots[(i + 1) & mask].key) {
    while (m->slots[i].key == TOMB) {
      m->slots[i].key = NULL;
      m->tombs--;
      i = (i - 1) & mask;
    }
  }
  return true;
}

bool chat__map_next(const chat__map *m, size_t *iter, const char **key,
                    size_t *klen, void **value) {
  for (size_t i = *iter; i < m->cap; i++) {
    const chat__map_slot *s = &m->slots[i];
    if (!live(s))
      continue;
    *iter = i + 1;
    if (key)
      *key = s->key;
    if (klen)
      *klen = s->klen;
    if (value)
      *value = s->value;
    return true;
  }
  *iter = m->cap;
  return false;
}

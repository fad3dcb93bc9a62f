/* Snowflake message ids: 41 bits of ms since CHAT_EPOCH_MS, 10 bits of
 * machine id, 12 bits of sequence, top bit 0.
 *
 * The generator keeps one word, the last id it issued (or the floor set by
 * chat_snowflake_observe), and moves it forward with compare-exchange. The
 * next id is the larger of "now with sequence 0" and "the smallest id of this
 * machine above the last one". Taking the larger of the two is what makes the
 * generator monotonic when the clock steps back, and lets a burst of more
 * than 4,096 ids in one ms borrow later ms instead of waiting: the wall
 * clock overtakes the borrowed time later and ids follow it again. */
#include <chat/snowflake.h>

#include <stdatomic.h>

#include "common/alloc.h"

#define MS_BITS 41
#define MACHINE_BITS 10
#define SEQ_BITS 12
#define MACHINE_SHIFT SEQ_BITS
#define MS_SHIFT (SEQ_BITS + MACHINE_BITS)
#define MS_MAX ((UINT64_C(1) << MS_BITS) - 1)
#define ID_MAX ((UINT64_C(1) << 63) - 1)

struct chat_snowflake {
  /* Every later id is above this one. 0 at creation, so id 0 is never
   * issued and can serve callers as "before every message". */
  _Atomic uint64_t last;
  uint32_t machine;
  chat_allocator alloc;
};

uint64_t chat_snowflake_pack(uint64_t ms_since_epoch, uint32_t machine_id,
                             uint32_t sequence) {
  return (ms_since_epoch & MS_MAX) << MS_SHIFT |
         (uint64_t)(machine_id & CHAT_SNOWFLAKE_MAX_MACHINE) << MACHINE_SHIFT |
         (uint64_t)(sequence & CHAT_SNOWFLAKE_MAX_SEQUENCE);
}

void chat_snowflake_unpack(uint64_t id, uint64_t *ms_since_epoch,
                           uint32_t *machine_id, uint32_t *sequence) {
  if (ms_since_epoch)
    *ms_since_epoch = (id >> MS_SHIFT) & MS_MAX;
  if (machine_id)
    *machine_id = (uint32_t)(id >> MACHINE_SHIFT) & CHAT_SNOWFLAKE_MAX_MACHINE;
  if (sequence)
    *sequence = (uint32_t)id & CHAT_SNOWFLAKE_MAX_SEQUENCE;
}

int64_t chat_snowflake_unix_ms(uint64_t id) {
  return (int64_t)((id >> MS_SHIFT) & MS_MAX) + CHAT_EPOCH_MS;
}

chat_err chat_snowflake_new(chat_snowflake **out, uint32_t machine_id,
                            const chat_allocator *alloc) {
  if (!out)
    return CHAT_ERR_INVAL;
  *out = NULL;
  if (machine_id > CHAT_SNOWFLAKE_MAX_MACHINE)
    return CHAT_ERR_INVAL;
  chat_allocator a;
  chat_err rc = chat__allocator_init(&a, alloc);
  if (rc != CHAT_OK)
    return rc;
  chat_snowflake *g = chat__alloc(&a, sizeof *g);
  if (!g)
    return CHAT_ERR_NOMEM;
  atomic_init(&g->last, 0);
  g->machine = machine_id;
  g->alloc = a;
  *out = g;
  return CHAT_OK;
}

void chat_snowflake_free(chat_snowflake *g) {
  if (!g)
    return;
  /* The allocator lives inside the block being released. */
  chat_allocator a = g->alloc;
  chat__free(&a, g);
}

/* The smallest id of `machine` above `last`, or false when that would need
 * a 42nd bit of ms. `last` may belong to another machine (a floor from
 * observe()), so a full sequence, or a higher machine in the same ms, moves
 * on to the next ms rather than carrying into the machine bits. */
static bool successor(uint64_t last, uint32_t machine, uint64_t *next) {
  uint64_t ms;
  uint32_t m, seq;
  chat_snowflake_unpack(last, &ms, &m, &seq);
  if (m < machine) {
    *next = chat_snowflake_pack(ms, machine, 0);
  } else if (m == machine && seq < CHAT_SNOWFLAKE_MAX_SEQUENCE) {
    *next = last + 1;
  } else {
    if (ms == MS_MAX)
      return false;
    *next = chat_snowflake_pack(ms + 1, machine, 0);
  }
  return true;
}

chat_err chat_snowflake_next(chat_snowflake *g, int64_t wall_ms,
                             uint64_t *out) {
  if (!g || !out)
    return CHAT_ERR_INVAL;
  /* Compare before subtracting: wall_ms - CHAT_EPOCH_MS could overflow. */
  uint64_t now = wall_ms > CHAT_EPOCH_MS ? (uint64_t)wall_ms - CHAT_EPOCH_MS
                                         : 0;
  if (now > MS_MAX)
    return CHAT_ERR_STATE;
  uint64_t floor_id = chat_snowflake_pack(now, g->machine, 0);

  /* Relaxed order is enough: the only shared datum is this one word, and
   * the modification order of a single atomic is total, so every successful
   * exchange sees the value left by the one before it. */
  uint64_t last = atomic_load_explicit(&g->last, memory_order_relaxed);
  uint64_t next;
  do {
    if (!successor(last, g->machine, &next))
      return CHAT_ERR_STATE;
    if (next < floor_id)
      next = floor_id;
  } while (!atomic_compare_exchange_weak_explicit(
      &g->last, &last, next, memory_order_relaxed, memory_order_relaxed));
  *out = next;
  return CHAT_OK;
}

void chat_snowflake_observe(chat_snowflake *g, uint64_t id) {
  /* An id with the top bit set was never minted by any generator; taking
   * it as a floor would exhaust this one for good. */
  if (!g || id > ID_MAX)
    return;
  uint64_t last = atomic_load_explicit(&g->last, memory_order_relaxed);
  while (id > last &&
         !atomic_compare_exchange_weak_explicit(&g->last, &last, id,
                                                memory_order_relaxed,
                                                memory_order_relaxed)) {
  }
}

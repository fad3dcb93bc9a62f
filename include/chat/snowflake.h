/* Snowflake message ids (PROTOCOL.md section 1): 41 bits of milliseconds
 * since CHAT_EPOCH_MS, 10 bits of machine id, 12 bits of sequence; the top
 * bit of the 64 is always 0, so every id fits a signed 64-bit integer.
 *
 * A generator never repeats an id and never goes backwards, even when the
 * wall clock steps back or more than 4,096 ids are asked for within one
 * millisecond: it then borrows the next millisecond instead of waiting (the
 * core never sleeps), and its clock catches up with the wall clock later.
 *
 * Threads: chat_snowflake_next() may be called from any number of threads
 * at once on one generator (one C11 atomic compare-and-swap per id; it is
 * lock-free where the platform's 64-bit atomics are). new/free are not concurrent
 * with anything else on the same generator. */
#ifndef CHAT_SNOWFLAKE_H
#define CHAT_SNOWFLAKE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The project's epoch: 2026-01-01T00:00:00Z in Unix ms. 41 bits of ms last
 * about 69.7 years from there. */
#define CHAT_EPOCH_MS INT64_C(1767225600000)
#define CHAT_SNOWFLAKE_MAX_MACHINE 1023u
#define CHAT_SNOWFLAKE_MAX_SEQUENCE 4095u

typedef struct chat_snowflake chat_snowflake;

/** Create a generator for @p machine_id (0..1023). @p alloc is copied
 * (NULL: libc). On failure *out is NULL.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL out is NULL or machine_id > 1023
 * @retval CHAT_ERR_NOMEM
 * @since 0.1 */
CHAT_API chat_err chat_snowflake_new(chat_snowflake **out, uint32_t machine_id,
                                     const chat_allocator *alloc);

/** Free a generator. NULL is a no-op. */
CHAT_API void chat_snowflake_free(chat_snowflake *g);

/** Mint the next id, given the wall clock @p wall_ms (Unix ms; a time
 * before the epoch counts as the epoch). Id 0 is never issued. On error
 * *out is left unchanged.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL g or out is NULL
 * @retval CHAT_ERR_STATE the wall clock is past the 41-bit millisecond range
 *         (year 2095), or the generator has no millisecond left
 * @since 0.1 */
CHAT_API chat_err chat_snowflake_next(chat_snowflake *g, int64_t wall_ms,
                                      uint64_t *out);

/** Raise the generator's floor so that every later id is greater than
 * @p id (for example the largest id found in storage at start-up, in case
 * the clock is behind it). An id with the top bit set is ignored: no
 * Snowflake has it, and taking it would exhaust the generator. Thread-safe
 * like chat_snowflake_next(). */
CHAT_API void chat_snowflake_observe(chat_snowflake *g, uint64_t id);

/** Pack the three fields; ms_since_epoch is masked to 41 bits, machine to 10
 * and sequence to 12. */
CHAT_API uint64_t chat_snowflake_pack(uint64_t ms_since_epoch,
                                      uint32_t machine_id, uint32_t sequence);

/** Split an id into its fields; any out pointer may be NULL. */
CHAT_API void chat_snowflake_unpack(uint64_t id, uint64_t *ms_since_epoch,
                                    uint32_t *machine_id, uint32_t *sequence);

/** Unix ms at which @p id was minted (its timestamp plus the epoch). */
CHAT_API int64_t chat_snowflake_unix_ms(uint64_t id);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_SNOWFLAKE_H */

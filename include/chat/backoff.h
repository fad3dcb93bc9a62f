/* Reconnect backoff: exponential growth with full jitter, as data plus a
 * pure function, so the client core never sleeps and tests are exact.
 *
 * For attempt n (0 for the first retry) the ceiling is
 * min(cap_ms, base_ms * 2^n) and the delay is uniform in
 * [min(floor_ms, ceiling), ceiling]. floor_ms keeps a full-jitter draw from
 * ever producing a tight reconnect loop. */
#ifndef CHAT_BACKOFF_H
#define CHAT_BACKOFF_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHAT_BACKOFF_V1 1
typedef struct chat_backoff {
  uint32_t version;  /* CHAT_BACKOFF_V1 */
  uint32_t base_ms;  /* ceiling of the first retry; default 1000 */
  uint32_t cap_ms;   /* ceiling never grows past this; default 60000 */
  uint32_t floor_ms; /* shortest delay; default 100 */
} chat_backoff;

/** The defaults above (1 s base, 60 s cap, 100 ms floor). */
CHAT_API chat_backoff chat_backoff_default(void);

/** Delay before retry number @p attempt (0-based), given 32 random bits
 * @p rand32. A NULL @p b uses every default; otherwise a zero base_ms or
 * cap_ms is replaced by its own default, field by field, and the other
 * fields are kept (a floor of 0 stays 0; a floor above the ceiling is
 * clamped to it). `version` is not read. Pure: the same arguments always
 * give the same delay. */
CHAT_API uint32_t chat_backoff_delay(const chat_backoff *b, uint32_t attempt,
                                     uint32_t rand32);

/** The ceiling min(cap_ms, base_ms * 2^attempt) for @p attempt. */
CHAT_API uint32_t chat_backoff_ceiling(const chat_backoff *b, uint32_t attempt);

/** chat_backoff_delay() with 32 bits drawn from @p env->random (4 bytes,
 * read little-endian, so a seeded env gives the same delays everywhere).
 * @retval CHAT_OK *delay_ms set
 * @retval CHAT_ERR_INVAL env, env->random or delay_ms is NULL */
CHAT_API chat_err chat_backoff_next(const chat_backoff *b, uint32_t attempt,
                                    const chat_env *env, uint32_t *delay_ms);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_BACKOFF_H */

/* Reconnect backoff: exponential ceiling, full jitter above a floor. */
#include <chat/backoff.h>

chat_backoff chat_backoff_default(void) {
  chat_backoff b = {CHAT_BACKOFF_V1, 1000, 60000, 100};
  return b;
}

/* Fill in the defaults for NULL or zero fields. A zero floor is a valid
 * choice (pure full jitter), so only base and cap fall back. */
static chat_backoff resolve(const chat_backoff *b) {
  chat_backoff d = chat_backoff_default();
  if (!b)
    return d;
  chat_backoff r = *b;
  if (r.base_ms == 0)
    r.base_ms = d.base_ms;
  if (r.cap_ms == 0)
    r.cap_ms = d.cap_ms;
  return r;
}

static uint32_t ceiling(const chat_backoff *r, uint32_t attempt) {
  /* base >= 1, so from 2^32 on the product is past any uint32_t cap; below
   * that, base * 2^attempt < 2^64 and the shift cannot overflow. */
  if (attempt >= 32)
    return r->cap_ms;
  uint64_t c = (uint64_t)r->base_ms << attempt;
  return c < r->cap_ms ? (uint32_t)c : r->cap_ms;
}

uint32_t chat_backoff_ceiling(const chat_backoff *b, uint32_t attempt) {
  chat_backoff r = resolve(b);
  return ceiling(&r, attempt);
}

uint32_t chat_backoff_delay(const chat_backoff *b, uint32_t attempt,
                            uint32_t rand32) {
  chat_backoff r = resolve(b);
  uint32_t hi = ceiling(&r, attempt);
  /* hi <= cap, so this also clamps a floor set above the cap. */
  uint32_t lo = r.floor_ms < hi ? r.floor_ms : hi;
  /* Scale rand32 onto [0, span] by multiply-and-shift rather than modulo:
   * no division, and span + 1 may be 2^32, which a uint32_t modulus
   * cannot express. The product stays below 2^64. */
  uint64_t span = (uint64_t)(hi - lo);
  return lo + (uint32_t)(((uint64_t)rand32 * (span + 1)) >> 32);
}

chat_err chat_backoff_next(const chat_backoff *b, uint32_t attempt,
                           const chat_env *env, uint32_t *delay_ms) {
  if (!env || !env->random || !delay_ms)
    return CHAT_ERR_INVAL;
  uint8_t r[4];
  env->random(env->user_data, r, sizeof r);
  /* Assemble little-endian so a seeded env gives the same delays on every
   * host. */
  uint32_t rand32 = (uint32_t)r[0] | (uint32_t)r[1] << 8 |
                    (uint32_t)r[2] << 16 | (uint32_t)r[3] << 24;
  *delay_ms = chat_backoff_delay(b, attempt, rand32);
  return CHAT_OK;
}

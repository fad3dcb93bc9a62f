/* A deterministic chat_env for tests and fuzzers: a manual wall clock, a
 * seeded PRNG (splitmix64) and captured log lines. */
#ifndef CHAT_TEST_FAKE_ENV_H
#define CHAT_TEST_FAKE_ENV_H

#include <chat/common.h>
#include <stdatomic.h>

typedef struct fake_env {
  int64_t wall_ms;
  uint64_t rng_state;
  char last_log[512];
  int last_log_level;
  unsigned n_logs;
  atomic_uint n_wakes; /* env.wake may be called from any thread */
  chat_env env; /* points back at this struct */
} fake_env;

void fake_env_init(fake_env *fe, int64_t wall_ms, uint64_t seed);
uint64_t fake_env_rand64(fake_env *fe);

#endif

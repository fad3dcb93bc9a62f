#include "fake_env.h"

#include <stdio.h>
#include <string.h>

static int64_t fe_wall(void *ud) { return ((fake_env *)ud)->wall_ms; }

uint64_t fake_env_rand64(fake_env *fe) {
  uint64_t z = (fe->rng_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void fe_random(void *ud, uint8_t *out, size_t n) {
  fake_env *fe = ud;
  while (n > 0) {
    uint64_t r = fake_env_rand64(fe);
    size_t k = n < 8 ? n : 8;
    memcpy(out, &r, k);
    out += k;
    n -= k;
  }
}

static void fe_log(void *ud, int level, const char *msg) {
  fake_env *fe = ud;
  fe->n_logs++;
  fe->last_log_level = level;
  snprintf(fe->last_log, sizeof fe->last_log, "%s", msg);
}

static void fe_wake(void *ud) {
  atomic_fetch_add(&((fake_env *)ud)->n_wakes, 1);
}

void fake_env_init(fake_env *fe, int64_t wall_ms, uint64_t seed) {
  memset(fe, 0, sizeof *fe);
  fe->wall_ms = wall_ms;
  fe->rng_state = seed;
  fe->env.version = CHAT_ENV_V1;
  fe->env.user_data = fe;
  fe->env.wall_ms = fe_wall;
  fe->env.random = fe_random;
  fe->env.log = fe_log;
  fe->env.wake = fe_wake;
}

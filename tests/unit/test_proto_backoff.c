#include <criterion/criterion.h>

#include <chat/backoff.h>

#include "fake_env.h"

static chat_backoff make(uint32_t base, uint32_t cap, uint32_t floor_ms) {
  chat_backoff b = {CHAT_BACKOFF_V1, base, cap, floor_ms};
  return b;
}

static uint32_t rand32(fake_env *fe) {
  return (uint32_t)(fake_env_rand64(fe) >> 32);
}

Test(backoff, defaults) {
  chat_backoff d = chat_backoff_default();
  cr_assert_eq(d.version, CHAT_BACKOFF_V1);
  cr_assert_eq(d.base_ms, 1000);
  cr_assert_eq(d.cap_ms, 60000);
  cr_assert_eq(d.floor_ms, 100);
}

Test(backoff, ceiling_doubles_then_caps) {
  chat_backoff d = chat_backoff_default();
  const uint32_t want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
  for (uint32_t n = 0; n < 8; n++) {
    cr_assert_eq(chat_backoff_ceiling(&d, n), want[n], "attempt %u", n);
    cr_assert_eq(chat_backoff_ceiling(NULL, n), want[n], "attempt %u", n);
  }
  /* A cap exactly on a power of two is reached, not skipped. */
  chat_backoff b = make(250, 4000, 0);
  cr_assert_eq(chat_backoff_ceiling(&b, 3), 2000);
  cr_assert_eq(chat_backoff_ceiling(&b, 4), 4000);
  cr_assert_eq(chat_backoff_ceiling(&b, 5), 4000);
  /* A base above the cap is capped from the first attempt. */
  b = make(9000, 5000, 0);
  cr_assert_eq(chat_backoff_ceiling(&b, 0), 5000);
}

Test(backoff, large_attempts_do_not_overflow) {
  const uint32_t attempts[] = {0, 1, 20, 22, 30, 31, 32, 33, 63, 64, 1000,
                               UINT32_MAX - 1, UINT32_MAX};
  const chat_backoff cases[] = {
      chat_backoff_default(),
      make(1, UINT32_MAX, 0),
      make(UINT32_MAX, UINT32_MAX, 0),
      make(3, 1u << 31, 0),
      make(1u << 31, UINT32_MAX - 1, 0),
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    uint32_t prev = 0;
    for (size_t i = 0; i < sizeof attempts / sizeof *attempts; i++) {
      uint32_t n = attempts[i];
      uint32_t got = chat_backoff_ceiling(&cases[c], n);
      /* Reference: doubling in 64 bits, stopping once past the cap. */
      uint64_t want = cases[c].base_ms;
      for (uint32_t k = 0; k < n && want < cases[c].cap_ms; k++)
        want *= 2;
      if (want > cases[c].cap_ms)
        want = cases[c].cap_ms;
      cr_assert_eq(got, (uint32_t)want, "case %zu attempt %u", c, n);
      cr_assert_geq(got, prev, "ceiling went down at attempt %u", n);
      prev = got;
    }
  }
  /* Base 1, cap max: 2^31 at attempt 31, then the cap from attempt 32. */
  chat_backoff b = make(1, UINT32_MAX, 0);
  cr_assert_eq(chat_backoff_ceiling(&b, 31), 1u << 31);
  cr_assert_eq(chat_backoff_ceiling(&b, 32), UINT32_MAX);
  cr_assert_eq(chat_backoff_ceiling(&b, UINT32_MAX), UINT32_MAX);
}

Test(backoff, zero_base_or_cap_uses_defaults) {
  chat_backoff b = make(0, 0, 100);
  for (uint32_t n = 0; n < 10; n++)
    cr_assert_eq(chat_backoff_ceiling(&b, n), chat_backoff_ceiling(NULL, n));
  b = make(0, 5000, 0);
  cr_assert_eq(chat_backoff_ceiling(&b, 0), 1000);
  cr_assert_eq(chat_backoff_ceiling(&b, 3), 5000);
  b = make(7, 0, 0);
  cr_assert_eq(chat_backoff_ceiling(&b, 1), 14);
  cr_assert_eq(chat_backoff_ceiling(&b, 20), 60000);
  /* The default floor (100) applies with NULL. */
  cr_assert_eq(chat_backoff_delay(NULL, 0, 0), 100);
  cr_assert_eq(chat_backoff_delay(NULL, 0, UINT32_MAX), 1000);
  cr_assert_eq(chat_backoff_delay(NULL, 100, UINT32_MAX), 60000);
}

Test(backoff, extremes_of_rand32) {
  const chat_backoff cases[] = {
      chat_backoff_default(),
      make(1, 1, 0),
      make(1, 1, 1),
      make(10, 10, 10),
      make(1, UINT32_MAX, 0),
      make(UINT32_MAX, UINT32_MAX, 0),
      make(UINT32_MAX, UINT32_MAX, UINT32_MAX),
      make(500, 30000, 750),
  };
  const uint32_t attempts[] = {0, 1, 5, 31, 32, 1000, UINT32_MAX};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    for (size_t i = 0; i < sizeof attempts / sizeof *attempts; i++) {
      uint32_t hi = chat_backoff_ceiling(&cases[c], attempts[i]);
      uint32_t lo = cases[c].floor_ms < hi ? cases[c].floor_ms : hi;
      cr_assert_eq(chat_backoff_delay(&cases[c], attempts[i], 0), lo,
                   "case %zu attempt %u", c, attempts[i]);
      cr_assert_eq(chat_backoff_delay(&cases[c], attempts[i], UINT32_MAX),
                   hi, "case %zu attempt %u", c, attempts[i]);
      uint32_t mid = chat_backoff_delay(&cases[c], attempts[i], 1u << 31);
      cr_assert(mid >= lo && mid <= hi);
    }
  }
}

Test(backoff, full_range_maps_rand32_exactly) {
  /* Span + 1 = 2^32: the scaling must be the identity, which a 32-bit
   * "rand % (span + 1)" would get wrong (division by zero). */
  chat_backoff b = make(UINT32_MAX, UINT32_MAX, 0);
  const uint32_t rs[] = {0, 1, 2, 12345, 1u << 31, UINT32_MAX - 1,
                         UINT32_MAX};
  for (size_t i = 0; i < sizeof rs / sizeof *rs; i++)
    cr_assert_eq(chat_backoff_delay(&b, 0, rs[i]), rs[i]);
  /* A span of one value ignores the random bits. */
  b = make(1000, 1000, 1000);
  cr_assert_eq(chat_backoff_delay(&b, 7, 0), 1000);
  cr_assert_eq(chat_backoff_delay(&b, 7, 0x9e3779b9u), 1000);
  /* Span 1: the lower half of rand32 picks lo, the upper half hi. */
  b = make(2, 2, 1);
  cr_assert_eq(chat_backoff_delay(&b, 0, 0x7fffffffu), 1);
  cr_assert_eq(chat_backoff_delay(&b, 0, 0x80000000u), 2);
}

Test(backoff, random_draws_stay_in_bounds) {
  fake_env fe;
  fake_env_init(&fe, 0, 7);
  chat_backoff d = chat_backoff_default();
  for (int i = 0; i < 100000; i++) {
    uint32_t n = (uint32_t)(fake_env_rand64(&fe) % 40);
    uint32_t r = rand32(&fe);
    uint32_t got = chat_backoff_delay(&d, n, r);
    uint32_t hi = chat_backoff_ceiling(&d, n);
    cr_assert_geq(got, d.floor_ms, "attempt %u rand %u", n, r);
    cr_assert_leq(got, hi, "attempt %u rand %u", n, r);
    /* Monotonic in rand32: a larger draw never gives a shorter delay. */
    if (r < UINT32_MAX)
      cr_assert_leq(got, chat_backoff_delay(&d, n, r + 1));
  }
}

Test(backoff, floor_respected_and_clamped) {
  chat_backoff b = make(1000, 60000, 800);
  for (uint32_t r = 0; r < 4096; r++) {
    cr_assert_geq(chat_backoff_delay(&b, 0, r << 20), 800);
    cr_assert_geq(chat_backoff_delay(&b, 3, r << 20), 800);
  }
  cr_assert_eq(chat_backoff_delay(&b, 0, 0), 800);
  /* A floor above the ceiling of an early attempt pins it to the ceiling. */
  b = make(100, 60000, 5000);
  cr_assert_eq(chat_backoff_delay(&b, 0, 0), 100);
  cr_assert_eq(chat_backoff_delay(&b, 0, UINT32_MAX), 100);
  /* A floor above the cap is clamped to the cap: the delay is the cap. */
  b = make(1000, 2000, 90000);
  for (uint32_t n = 1; n < 40; n++) {
    cr_assert_eq(chat_backoff_delay(&b, n, 0), 2000);
    cr_assert_eq(chat_backoff_delay(&b, n, UINT32_MAX), 2000);
  }
}

Test(backoff, distribution_is_uniform) {
  enum { N = 100000, BUCKETS = 10 };
  fake_env fe;
  fake_env_init(&fe, 0, 2026);
  chat_backoff d = chat_backoff_default();
  const uint32_t attempt = 3; /* [100, 8000] */
  const uint32_t lo = 100, hi = 8000;
  cr_assert_eq(chat_backoff_ceiling(&d, attempt), hi);

  double sum = 0;
  unsigned counts[BUCKETS] = {0};
  for (int i = 0; i < N; i++) {
    uint32_t v = chat_backoff_delay(&d, attempt, rand32(&fe));
    sum += v;
    size_t k = (size_t)((uint64_t)(v - lo) * BUCKETS / (hi - lo + 1));
    counts[k]++;
  }
  double mid = (lo + hi) / 2.0;
  double mean = sum / N;
  cr_assert(mean > mid * 0.98 && mean < mid * 1.02, "mean %f, midpoint %f",
            mean, mid);

  /* 9 degrees of freedom: the 0.999 quantile is 27.9; 40 leaves room for
   * bucket-width rounding yet still catches a skewed mapping. */
  double chi2 = 0, expect = (double)N / BUCKETS;
  for (int k = 0; k < BUCKETS; k++)
    chi2 += (counts[k] - expect) * (counts[k] - expect) / expect;
  cr_assert_lt(chi2, 40.0, "chi-square %f", chi2);
  /* Both ends are actually reached in practice, not just in theory. */
  cr_assert_gt(counts[0], 0);
  cr_assert_gt(counts[BUCKETS - 1], 0);
}

Test(backoff, pure_function) {
  fake_env fe;
  fake_env_init(&fe, 0, 99);
  chat_backoff b = make(300, 45000, 50);
  for (int i = 0; i < 1000; i++) {
    uint32_t n = (uint32_t)(fake_env_rand64(&fe) % 64);
    uint32_t r = rand32(&fe);
    uint32_t a = chat_backoff_delay(&b, n, r);
    cr_assert_eq(chat_backoff_delay(&b, n, r), a);
    chat_backoff copy = b;
    cr_assert_eq(chat_backoff_delay(&copy, n, r), a);
  }
  /* Known values pin the mapping: lo + (r * (span + 1)) >> 32. */
  chat_backoff d = chat_backoff_default();
  cr_assert_eq(chat_backoff_delay(&d, 0, 0x80000000u), 100 + 901 / 2);
  cr_assert_eq(chat_backoff_delay(&d, 2, 0x40000000u), 100 + 3901 / 4);
}

Test(backoff, next_uses_env_random) {
  fake_env a, b;
  fake_env_init(&a, 0, 1234);
  fake_env_init(&b, 0, 1234);
  chat_backoff d = chat_backoff_default();
  uint32_t prev = 0;
  int changes = 0;
  for (uint32_t n = 0; n < 200; n++) {
    uint32_t got = 0;
    cr_assert_eq(chat_backoff_next(&d, n % 8, &a.env, &got), CHAT_OK);
    /* Same seed, same draw: four bytes, assembled little-endian. */
    uint8_t r[4];
    b.env.random(b.env.user_data, r, 4);
    uint32_t r32 = (uint32_t)r[0] | (uint32_t)r[1] << 8 |
                   (uint32_t)r[2] << 16 | (uint32_t)r[3] << 24;
    cr_assert_eq(got, chat_backoff_delay(&d, n % 8, r32));
    cr_assert_leq(got, chat_backoff_ceiling(&d, n % 8));
    changes += got != prev;
    prev = got;
  }
  /* The env's randomness is actually used. */
  cr_assert_gt(changes, 150);
  /* Each call consumed exactly one 8-byte PRNG step of the fake env. */
  cr_assert_eq(a.rng_state, b.rng_state);

  /* NULL b means defaults here too. */
  fake_env_init(&a, 0, 5);
  fake_env_init(&b, 0, 5);
  uint32_t x = 0, y = 0;
  cr_assert_eq(chat_backoff_next(NULL, 4, &a.env, &x), CHAT_OK);
  cr_assert_eq(chat_backoff_next(&d, 4, &b.env, &y), CHAT_OK);
  cr_assert_eq(x, y);
}

Test(backoff, next_rejects_nulls) {
  fake_env fe;
  fake_env_init(&fe, 0, 1);
  uint32_t got = 77;
  cr_assert_eq(chat_backoff_next(NULL, 0, NULL, &got), CHAT_ERR_INVAL);
  cr_assert_eq(chat_backoff_next(NULL, 0, &fe.env, NULL), CHAT_ERR_INVAL);
  chat_env e = fe.env;
  e.random = NULL;
  cr_assert_eq(chat_backoff_next(NULL, 0, &e, &got), CHAT_ERR_INVAL);
  cr_assert_eq(got, 77);
  cr_assert_eq(fe.rng_state, 1, "no randomness drawn on failure");
}

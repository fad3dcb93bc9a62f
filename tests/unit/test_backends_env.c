#include <criterion/criterion.h>

#include <chat/common.h>
#include <chat/snowflake.h>
#include <string.h>
#include <time.h>

Test(env, system_fills_every_field) {
  chat_env e;
  memset(&e, 0xa5, sizeof e); /* garbage that must all be overwritten */
  cr_assert_eq(chat_env_system(&e), CHAT_OK);
  cr_assert_eq(e.version, CHAT_ENV_V1);
  cr_assert_null(e.user_data);
  cr_assert_not_null(e.wall_ms);
  cr_assert_not_null(e.random);
  cr_assert_null(e.log);
  cr_assert_null(e.wake);
  /* Repeated calls are fine (sodium_init returns 1 the second time). */
  chat_env f;
  cr_assert_eq(chat_env_system(&f), CHAT_OK);
  cr_assert_eq(memcmp(&e, &f, sizeof e), 0);
}

Test(env, system_rejects_null) {
  cr_assert_eq(chat_env_system(NULL), CHAT_ERR_INVAL);
}

Test(env, wall_ms_is_unix_milliseconds) {
  chat_env e;
  cr_assert_eq(chat_env_system(&e), CHAT_OK);
  int64_t before = (int64_t)time(NULL) * 1000;
  int64_t w = e.wall_ms(e.user_data);
  int64_t after = (int64_t)time(NULL) * 1000;
  /* time() truncates to seconds, so w may run up to 1 s ahead of it. */
  cr_assert_geq(w, before - 2000, "wall %lld before %lld", (long long)w,
                (long long)before);
  cr_assert_leq(w, after + 2000, "wall %lld after %lld", (long long)w,
                (long long)after);
  /* Not seconds, not microseconds: after the project epoch and within
   * the 41-bit id range. */
  cr_assert_gt(w, CHAT_EPOCH_MS);
  cr_assert_lt(w - CHAT_EPOCH_MS, INT64_C(1) << 41);
  /* It moves forward at the ms scale. */
  struct timespec pause = {0, 20 * 1000 * 1000};
  nanosleep(&pause, NULL);
  int64_t w2 = e.wall_ms(e.user_data);
  cr_assert_geq(w2 - w, 10);
  cr_assert_lt(w2 - w, 5000);
}

Test(env, random_is_random) {
  chat_env e;
  cr_assert_eq(chat_env_system(&e), CHAT_OK);
  uint8_t a[32], b[32], zero[32] = {0};
  memset(a, 0, sizeof a);
  memset(b, 0, sizeof b);
  e.random(e.user_data, a, sizeof a);
  e.random(e.user_data, b, sizeof b);
  cr_assert_neq(memcmp(a, b, sizeof a), 0);
  cr_assert_neq(memcmp(a, zero, sizeof a), 0);
  cr_assert_neq(memcmp(b, zero, sizeof b), 0);

  /* Exactly n bytes are written: a guard byte past the end survives. */
  uint8_t buf[17];
  memset(buf, 0x5a, sizeof buf);
  e.random(e.user_data, buf, 16);
  cr_assert_eq(buf[16], 0x5a);
  e.random(e.user_data, buf, 0); /* n == 0 is allowed */

  /* Over many bytes every bit position is set somewhere and cleared
   * somewhere; a stuck bit or a constant fill would fail this. */
  uint8_t big[4096];
  memset(big, 0, sizeof big);
  e.random(e.user_data, big, sizeof big);
  /* The whole buffer is filled, not a prefix: no 8-byte run left zero
   * (each has a 2^-64 chance). */
  for (size_t i = 0; i < sizeof big; i += 8)
    cr_assert_neq(memcmp(big + i, zero, 8), 0, "bytes %zu.. left zero", i);
  uint8_t any_set = 0, all_set = 0xff;
  for (size_t i = 0; i < sizeof big; i++) {
    any_set |= big[i];
    all_set &= big[i];
  }
  cr_assert_eq(any_set, 0xff);
  cr_assert_eq(all_set, 0x00);
}

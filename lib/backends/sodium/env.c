/* chat_env_system(): the real clock and libsodium's CSPRNG. This is the one
 * place (with the lws transport) that reads a clock; the cores only see
 * what the env hands them. */
#include <chat/common.h>

#include <sodium.h>
#include <string.h>
#include <time.h>

static int64_t system_wall_ms(void *user_data) {
  (void)user_data;
  struct timespec ts;
  /* CLOCK_REALTIME cannot fail on a POSIX system; if it somehow does, 0
   * reads as "before the epoch", which the Snowflake generator clamps and
   * still keeps monotonic. */
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
    return 0;
  return (int64_t)ts.tv_sec * 1000 + (int64_t)(ts.tv_nsec / 1000000);
}

static void system_random(void *user_data, uint8_t *out, size_t n) {
  (void)user_data;
  randombytes_buf(out, n);
}

chat_err chat_env_system(chat_env *out) {
  if (!out)
    return CHAT_ERR_INVAL;
  memset(out, 0, sizeof *out);
  /* Safe to call repeatedly and from several threads; 1 means "already
   * initialised", only -1 is a failure. */
  if (sodium_init() < 0)
    return CHAT_ERR_FATAL;
  out->version = CHAT_ENV_V1;
  out->user_data = NULL;
  out->wall_ms = system_wall_ms;
  out->random = system_random;
  out->log = NULL;
  out->wake = NULL;
  return CHAT_OK;
}

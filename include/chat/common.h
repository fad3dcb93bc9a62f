/* libchat common definitions: export macro, error codes, time, allocator and
 * the environment vtable through which the cores get wall time, randomness
 * and logging. Every other public header includes this one. */
#ifndef CHAT_COMMON_H
#define CHAT_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CHAT_STATIC)
#  define CHAT_API
#elif defined(_WIN32)
#  if defined(CHAT_BUILDING)
#    define CHAT_API __declspec(dllexport)
#  else
#    define CHAT_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__) && defined(CHAT_BUILDING)
#  define CHAT_API __attribute__((visibility("default")))
#else
#  define CHAT_API
#endif

/* ------------------------------------------------------------------------
 * Errors
 *
 * Below 0 is failure, 0 is success, above 0 is a non-failure status. The
 * list is append-only: a retired code keeps its number. Codes at or below
 * CHAT_ERR_FATAL leave the object unusable; only its *_free() may follow.
 *
 * XX(name, value, message) */
#define CHAT_ERR_MAP(XX)                                                       \
  XX(OK, 0, "success")                                                         \
  XX(PENDING, 1, "accepted; completion comes later")                          \
  XX(ERR_INVAL, -1, "invalid argument")                                        \
  XX(ERR_STATE, -2, "not allowed in the current state")                        \
  XX(ERR_AGAIN, -3, "nothing available now; try again later")                 \
  XX(ERR_TOO_LARGE, -4, "value over its size limit")                           \
  XX(ERR_NOT_FOUND, -5, "not found")                                           \
  XX(ERR_MODULE, -6, "a host module reported failure")                         \
  XX(ERR_AUTH, -7, "authentication failed")                                    \
  XX(ERR_DENIED, -8, "not allowed for this user")                              \
  XX(ERR_CONFLICT, -9, "conflicts with existing state")                        \
  XX(ERR_RATE_LIMITED, -10, "rate limit exceeded")                             \
  XX(ERR_JSON, -20, "malformed JSON")                                          \
  XX(ERR_NOT_OBJECT, -21, "frame is not a JSON object")                        \
  XX(ERR_NO_TYPE, -22, "missing or non-string \"type\"")                       \
  XX(ERR_UNKNOWN_TYPE, -23, "frame type not accepted in this direction")       \
  XX(ERR_MISSING_FIELD, -24, "required field missing")                         \
  XX(ERR_FIELD_TYPE, -25, "field has the wrong JSON type")                     \
  XX(ERR_BAD_ID, -26, "id breaks the id rules")                                \
  XX(ERR_BAD_MESSAGE_ID, -27, "message id is not a canonical decimal integer") \
  XX(ERR_BAD_VALUE, -28, "field value not allowed")                            \
  XX(ERR_BAD_UTF8, -29, "invalid UTF-8")                                       \
  XX(ERR_TOO_DEEP, -30, "JSON nested too deeply")                              \
  XX(ERR_TOO_MANY, -31, "list over its length limit")                          \
  XX(ERR_DUPLICATE_KEY, -32, "duplicate key in a JSON object")                 \
  XX(ERR_BAD_NUMBER, -33, "number is not an integer in range")                 \
  XX(ERR_FRAME_TOO_LARGE, -34, "frame over max_frame_bytes")                   \
  XX(ERR_FATAL, -100, "fatal error")                                           \
  XX(ERR_NOMEM, -101, "out of memory")                                         \
  XX(ERR_CALLBACK, -102, "a callback reported failure")

typedef enum chat_err {
#define CHAT__ERR_ENUM(name, value, msg) CHAT_##name = (value),
  CHAT_ERR_MAP(CHAT__ERR_ENUM)
#undef CHAT__ERR_ENUM
} chat_err;

/** Human-readable text for @p e ("out of memory"); never NULL. An unknown
 * code yields "unknown error". The string is static. @since 0.1 */
CHAT_API const char *chat_strerror(chat_err e);

/** The enum constant's name ("CHAT_ERR_NOMEM"); "CHAT_ERR_UNKNOWN" for an
 * unknown code. The string is static. @since 0.1 */
CHAT_API const char *chat_err_name(chat_err e);

/** True when @p e leaves the object unusable (e <= CHAT_ERR_FATAL). @since 0.1 */
CHAT_API bool chat_err_is_fatal(chat_err e);

/** Why a call failed, in one line that names the argument or field and the
 * rule it broke ("settings.machine_id: 2000 is over 1023"), for bindings
 * that raise exceptions with a message. Constructors take an optional
 * chat_errbuf * as their last argument: on failure it holds a
 * NUL-terminated line; on success it is left untouched. Objects keep the
 * detail of their last failed call (chat_server_errmsg(),
 * chat_client_errmsg()). The size is fixed for good. @since 1.0 */
#define CHAT_ERRBUF_SIZE 256
typedef struct chat_errbuf {
  char msg[CHAT_ERRBUF_SIZE];
} chat_errbuf;

/* ------------------------------------------------------------------------
 * Time. The cores never read a clock: every entry point takes `now` from the
 * host's monotonic clock, and wall time comes through chat_env.wall_ms. */
typedef uint64_t chat_time_ms;
#define CHAT_TIME_NEVER UINT64_MAX

/* ------------------------------------------------------------------------
 * Allocator. Per object, copied at creation; NULL everywhere means libc.
 * libchat never installs process-global hooks in its dependencies.
 * resize(NULL, n) must behave like alloc(n); release(NULL) must be a no-op. */
typedef struct chat_allocator {
  void *user_data;
  void *(*alloc)(size_t n, void *user_data);
  void *(*resize)(void *p, size_t n, void *user_data);
  void (*release)(void *p, void *user_data);
} chat_allocator;

/* ------------------------------------------------------------------------
 * Environment: what the cores need from the outside world besides frames.
 * A fake env (manual clock, seeded PRNG) makes every rule deterministic in
 * tests; chat_env_system() (libchat built with libsodium) is the default. */
#define CHAT_ENV_V1 1

enum chat_log_level {
  CHAT_LOG_ERROR = 0,
  CHAT_LOG_WARN = 1,
  CHAT_LOG_INFO = 2,
  CHAT_LOG_DEBUG = 3
};

typedef struct chat_env {
  uint32_t version; /* CHAT_ENV_V1 */
  void *user_data;  /* passed back as the first argument of every method */
  /* Unix time in ms (server_ts, Snowflake ids). */
  int64_t (*wall_ms)(void *user_data);
  /* Fill out[0..n) with unpredictable bytes (jitter, session ids). */
  void (*random)(void *user_data, uint8_t *out, size_t n);
  /* One log line, no trailing newline; msg is borrowed for the call. NULL:
   * silent. */
  void (*log)(void *user_data, int level, const char *msg);
  /* Called from any thread (chat_server_post, chat_op_post) to wake the
   * host loop, which then calls chat_server_run_posted(); may be NULL when
   * no module answers later. */
  void (*wake)(void *user_data);
} chat_env;

/** Fill @p out with the process's real environment: CLOCK_REALTIME for
 * wall_ms, libsodium's randombytes_buf() for random, log and wake NULL.
 * Available when libchat is built with libsodium (the default). On failure
 * *out is zeroed.
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL @p out is NULL
 * @retval CHAT_ERR_FATAL libsodium failed to initialise
 * @since 0.1 */
CHAT_API chat_err chat_env_system(chat_env *out);

/* ------------------------------------------------------------------------
 * Version */

/** CHAT_VERSION_NUM of the library actually loaded (may differ from the
 * header the caller compiled against). @since 0.1 */
CHAT_API uint32_t chat_version(void);

/** "MAJOR.MINOR.PATCH" of the library actually loaded; static. @since 0.1 */
CHAT_API const char *chat_version_string(void);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_COMMON_H */

/* Shared by the server fuzz targets: one chat_server on in-memory SQLite
 * with a fake env, made once and reused across inputs (setting one up per
 * input would cost more than the input), with fixed conversations, media
 * and messages to aim at. Every frame a session queues is checked with an
 * independent codec; anything wrong aborts, which libFuzzer reports.
 *
 * Aliases: the fixture's ids are server-minted Snowflakes that a fuzzer
 * cannot guess, so fx_expand() replaces these two-byte names in inputs:
 *   @d  direct conversation alice-bob
 *   @g  group conversation alice, bob, carol (named "fuzz")
 *   @o  group conversation bob, carol (alice is not a member)
 *   @1  a message in @g (alice's, referencing @n)
 *   @2  a message in @d (alice's)
 *   @n  media uploaded by alice, referenced by @1
 *   @m  media uploaded by bob, shared with nobody
 *
 * FX_TRACE=1 in the environment prints every outbound frame and looped-back
 * bus envelope, for reading what a reproducer does. CHAT_TEST_STORE=fifo,
 * shuffle or thread puts the store and presence behind
 * tests/support/defer_store.h, so every module call answers later and the
 * asynchronous paths get the same inputs (fx_tick completes them). */
#ifndef CHAT_FUZZ_SERVER_FIXTURE_H
#define CHAT_FUZZ_SERVER_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <chat/memory.h>
#include <chat/server.h>

#include "defer_store.h"
#include "fake_env.h"

/* Inputs between fresh servers: the store grows with every input, and a
 * bounded store keeps per-input cost flat. */
#define FX_RECREATE_EVERY 5000

/* The gateway id of a phantom remote device (carol/laptop) when the
 * fixture has a bus: fan-out to @g publishes to it. */
#define FX_REMOTE_GW "gw-remote"

typedef struct fixture {
  fake_env fe;
  chat_server *srv;
  chat_memory_hub *hub; /* NULL unless made with a bus */
  chat_time_ms now;
  unsigned inputs;      /* fx_get() calls since the server was made */
  unsigned generation;  /* bumped on every (re)creation */
  unsigned pushes;      /* notes the push module was handed */
  char direct[CHAT_ID_BUF], group[CHAT_ID_BUF], other[CHAT_ID_BUF];
  char msg_group[24], msg_direct[24];
  char media_own[CHAT_ID_BUF], media_other[CHAT_ID_BUF];
  defer_store *defer;   /* NULL: the modules answer at once */
  defer_mode mode;
  /* The last REST answer that came through on_http_response. */
  bool answered;
  chat_http_response answer;
  char *answer_body;
  char answer_type[256];
} fixture;

/* The fixture, made on first use and again every FX_RECREATE_EVERY calls.
 * with_bus: memory presence + bus with the phantom remote device, and each
 * envelope published to it looped back into chat_server_bus_deliver(),
 * which must accept it. Sessions die with a re-creation: compare
 * fx->generation to notice. */
fixture *fx_get(bool with_bus);

/* Advance the host clock and the wall clock together. */
void fx_advance(fixture *fx, uint64_t ms);

/* Run chat_server_on_timer() while the deadline has passed (aborting if it
 * never settles), then the bus loopback. */
void fx_tick(fixture *fx);

/* Open a session (aborts on failure); its hello is left queued. */
chat_session *fx_open(fixture *fx, const char *user, const char *device);

/* Take every queued frame; abort unless each decodes TO_CLIENT and the
 * close code is a known one. Returns the number of frames taken. */
size_t fx_drain(chat_session *s);

/* Drain, and when the session wants closing close it and open a new one
 * as user/device (a reconnecting client). Returns the live session. */
chat_session *fx_service(fixture *fx, chat_session *s, const char *user,
                         const char *device);

/* Copy in[0..n) with the aliases above expanded into a malloc'd buffer of
 * exactly *out_len bytes, plus a NUL when nul is set (without it, ASan sees
 * a read past the end). Free with free(). */
char *fx_expand(const fixture *fx, const uint8_t *in, size_t n,
                size_t *out_len, bool nul);

/* A REST call; user NULL means no identity. */
chat_http_response fx_http(fixture *fx, const char *user, const char *method,
                           const char *path, const char *query,
                           const char *content_type, const void *body,
                           size_t body_len);

/* Abort with a message (printf-style) on stderr. */
void fx_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2),
                                                  noreturn));

#endif

/* A socket-free server for tests: a chat_server on an in-memory SQLite
 * store with a fake env (manual clocks, seeded randomness), push notes
 * captured, and "devices" whose outbound frames are collected and decoded.
 *
 * CHAT_TEST_STORE (sync, fifo, shuffle, thread) puts the store and the
 * presence module behind tests/support/defer_store.h: every module call
 * then answers CHAT_PENDING and completes when the harness pumps (in call
 * order, shuffled, or handed over by another thread), so every suite that
 * uses the harness runs against synchronous and asynchronous modules
 * alike. harness_hold() stops the automatic completions for tests that
 * complete calls one by one.
 *
 *   harness h; harness_init(&h, NULL);
 *   dev *a = dev_open(&h, "alice", "phone");
 *   dev_send(a, "{\"type\":\"ping\"}");
 *   harness_tick(&h);                       // group commit, timers
 *   const chat_frame *f = dev_expect(a, CHAT_FRAME_PONG);
 *   harness_fini(&h);
 */
#ifndef CHAT_TEST_SERVER_HARNESS_H
#define CHAT_TEST_SERVER_HARNESS_H

#include <chat/chat.h>
#include <chat/memory.h>
#include <chat/server.h>
#include <chat/sqlite.h>

#include "defer_store.h"
#include "fake_env.h"

/* Devices per harness (every dev_open takes a slot; closed ones keep
 * theirs, so that tests can still read what they received). A dev is small:
 * its frames live in a growing heap array. */
#define HARNESS_MAX_DEVS 2048
/* Frames one device may collect before the test fails: a guard against a
 * runaway server, not a memory bound. */
#define HARNESS_MAX_FRAMES 65536

typedef struct harness harness;

typedef struct dev {
  harness *h;
  chat_session *sess;
  chat_identity id;
  char **frames;                    /* raw JSON received, in order */
  size_t n_frames;
  size_t cap_frames;                /* allocated slots of frames */
  size_t next;                      /* first frame not yet taken */
  bool closed;
  uint16_t close_code;
  chat_codec *codec;
} dev;

typedef struct push_rec {
  char user[65], device[65], conv[65], sender[65], preview[128];
  uint64_t message_id;
} push_rec;

/* A receipt-aware push clear (push.clear). */
typedef struct clear_rec {
  char user[65], device[65], conv[65];
  uint64_t up_to;
} clear_rec;

struct harness {
  fake_env fe;
  chat_time_ms now;
  chat_server *srv;
  chat_storage_ops store;
  dev devs[HARNESS_MAX_DEVS];
  size_t n_devs;
  push_rec pushes[1024];
  size_t n_pushes;
  clear_rec clears[256];
  size_t n_clears;
  unsigned wants_calls;
  const char *gateway_id;
  /* Fault injection: the store's append fails while set. */
  bool fail_append;
  unsigned appends;     /* append calls (group commits) */
  unsigned convs_of_calls; /* conversations_of calls */
  size_t last_batch;    /* messages in the last append */
  int64_t purged_before; /* last purge_receipts cutoff; 0 if none */
  chat_storage_ops inner; /* the real store behind the wrapper */
  /* Set by harness_init_path (every init): this server's bus gateway id. */
  char gw[CHAT_ID_BUF];
  /* Asynchronous modules (CHAT_TEST_STORE); NULL when synchronous. */
  defer_mode mode;
  defer_store *defer;
  bool hold;            /* harness_pump completes nothing */
  /* The answer of a REST call that came through on_http_response. */
  void *http_tag;       /* the tag it came for */
  bool http_answered;
  int http_status;
  uint32_t http_retry_after;
  char *http_body;
  size_t http_len;
  char http_type[256];
  unsigned http_callbacks;
  /* The kind of the identity harness_http() calls with (user by
   * default). */
  chat_sender_kind http_kind;
};

/* settings may be NULL (defaults); its env is replaced by the fake one. */
void harness_init(harness *h, const chat_server_settings *settings);
/* The same, with presence and bus ops (for multi-gateway tests). */
void harness_init_full(harness *h, const chat_server_settings *settings,
                       const chat_presence_ops *presence,
                       const chat_bus_ops *bus);
/* The same, on the SQLite database at db_path (":memory:" for a private
 * one), so that two harnesses (gateways) can share one store file. */
void harness_init_path(harness *h, const chat_server_settings *settings,
                       const chat_presence_ops *presence,
                       const chat_bus_ops *bus, const char *db_path);
void harness_fini(harness *h);

/* Stop (true) or resume (false) completing deferred module calls in
 * harness_pump. Only meaningful with CHAT_TEST_STORE set; tests that need
 * it use harness_init_mode(). */
void harness_hold(harness *h, bool hold);
/* Like harness_init, with the deferred module mode chosen by the test;
 * held: complete nothing from the start (not even max_message_id). */
void harness_init_mode(harness *h, const chat_server_settings *settings,
                       defer_mode mode);
void harness_init_held(harness *h, const chat_server_settings *settings,
                       defer_mode mode);
/* Like harness_init, on a store that leaves every method appended for
 * PROTOCOL.md section 8 NULL (member_change, messages_as, shadow bans,
 * push marks): the server's documented defaults. */
void harness_init_basic(harness *h, const chat_server_settings *settings);
/* Complete deferred calls until none is left (tick between rounds too). */
void harness_settle(harness *h);

/* Advance both clocks by ms and run every due timer. */
void harness_advance(harness *h, uint64_t ms);
/* Run timers due now (group commit) and collect output. */
void harness_tick(harness *h);
/* Collect every session's queued output (done by tick/advance too). */
void harness_pump(harness *h);

dev *dev_open(harness *h, const char *user, const char *device);
/* A device whose token says user or bot (CHAT_SENDER_BOT). */
dev *dev_open_kind(harness *h, const char *user, const char *device,
                   chat_sender_kind kind);
void dev_close(dev *d);
void dev_send(dev *d, const char *json);
void dev_sendf(dev *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* The next untaken frame, decoded (valid until the next call on d), or
 * NULL when none is waiting. */
const chat_frame *dev_next(dev *d);
/* The next untaken frame of type t, skipping others; fails the test when
 * there is none. */
const chat_frame *dev_expect(dev *d, chat_frame_type t);
/* Count untaken frames of type t (all types when t is NONE). */
size_t dev_count(dev *d, chat_frame_type t);
/* Forget every frame received so far. */
void dev_drain(dev *d);
/* Raw text of the last frame dev_next/dev_expect returned. */
const char *dev_last_raw(dev *d);

/* A REST call as user/device; returns the status, body in *body (valid
 * until the next call). */
int harness_http(harness *h, const char *user, const char *method,
                 const char *path, const char *query, const char *body,
                 const char **out_body);
/* A REST call with any body and Content-Type (NULL user: no identity).
 * Returns the status; the answer's bytes, length and Content-Type are
 * copied and valid until the next call of harness_http_raw. Each out
 * pointer may be NULL. */
int harness_http_raw(harness *h, const char *user, const char *method,
                     const char *path, const char *query,
                     const char *content_type, const void *body,
                     size_t body_len, const void **out_body,
                     size_t *out_len, const char **out_content_type);

/* Hand every bus message the hub holds for this harness's gateway to
 * chat_server_bus_deliver (each must be accepted), then collect output.
 * Returns the number delivered. */
size_t harness_bus_pump(harness *h, chat_memory_hub *hub);

/* Shadow-ban (or unban) a user in the store, as `chatd ban` does, and
 * let the server's next poll pick it up (advances the clock by the poll
 * interval). */
void harness_ban(harness *h, const char *user, bool banned);

/* Create a conversation through REST and return its id (static buffer
 * per call slot: copy it). */
const char *harness_create(harness *h, const char *creator, const char *type,
                           const char *const *members, size_t n);

#endif

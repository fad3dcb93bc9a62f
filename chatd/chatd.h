/* chatd, the reference server: shared declarations of its two files.
 *   options.c  flags, --config files, --help
 *   main.c     serve, token, ban and unban, logging, signals, the service
 *              loop */
#ifndef CHATD_H
#define CHATD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { CMD_SERVE = 1, CMD_TOKEN = 2, CMD_BAN = 4, CMD_UNBAN = 8 };
enum { TRANSPORT_EPOLL = 0, TRANSPORT_LWS = 1 };

typedef struct chatd_opts {
  int cmd;
  /* serve */
  char host[256];
  uint16_t port;
  char *data_dir;
  char *push_log;
  char *static_dir;
  int log_level;  /* chat_log_level */
  int sync;       /* 0 full, 1 normal */
  int transport;  /* TRANSPORT_EPOLL or TRANSPORT_LWS */
  uint32_t machine_id;
  uint32_t rate_per_minute;
  uint32_t resume_max_messages;
  uint64_t resume_max_age_ms;
  uint64_t presence_idle_ms;
  uint64_t presence_offline_ms;
  uint64_t presence_idle_offline_ms;
  uint32_t max_body_bytes;
  uint32_t max_frame_bytes;
  uint32_t max_group_members;
  uint32_t heartbeat_ms;
  uint32_t idle_timeout_ms;
  uint32_t garbage_per_minute;
  uint32_t max_queued_frames;
  uint32_t max_queued_bytes;
  uint32_t rest_rate_per_minute;
  uint32_t rest_burst;
  uint32_t max_http_body_bytes;
  uint32_t rx_buffer_bytes;
  uint32_t write_budget_bytes;
  uint32_t drain_timeout_ms;
  /* PROTOCOL.md section 8. UINT32_MAX in drain_spread_ms and
   * new_direct_per_day: not given (the core's default). */
  uint64_t edit_window_ms;
  uint32_t bot_rate_per_minute;
  uint32_t new_direct_per_day; /* 0: no cap */
  uint32_t drain_spread_ms;    /* 0: no goaway, close 1001 */
  uint32_t overload_retry_ms;
  uint32_t resume_batch_hint;
  uint32_t ban_poll_ms;
  /* token, ban, unban */
  char *user;
  char *device;
  uint64_t ttl_s;
  bool bot;    /* token --bot */
  bool shadow; /* ban --shadow */
  /* Strings this struct owns (from --config files); freed at exit. */
  char **owned;
  size_t n_owned;
} chatd_opts;

/* Parse argv (and any --config file) into *o. Returns 0 to go on, or an
 * exit status: 0 after --help/--version, 2 for a usage error (the message
 * is printed). */
int chatd_parse(chatd_opts *o, int argc, char **argv, bool *done);
void chatd_opts_free(chatd_opts *o);

#endif

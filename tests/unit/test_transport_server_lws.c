/* The lws adapter's constructors (lib/transport/lws/server_lws.c): the one
 * version rule for chat_lws_settings and chat_lws_listen_options, each
 * refusal with a reason, and the settings the adapter takes from the
 * server instead of repeating them. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <chat/lws.h>

#include "server_harness.h"

static harness h;

static void up(void) { harness_init_mode(&h, NULL, DEFER_OFF); }
static void down(void) { harness_fini(&h); }

TestSuite(lws, .init = up, .fini = down);

Test(lws, settings_version_rule) {
  chat_lws *t = (chat_lws *)&t;
  chat_errbuf eb;
  chat_lws_settings s = {.version = 0};
  cr_assert_eq(chat_lws_new(&t, h.srv, &s, NULL, &eb), CHAT_ERR_INVAL);
  cr_assert_null(t);
  cr_assert_str_eq(eb.msg,
                   "settings.version: 0 (set it from its CHAT_*_V macro)");
  s.version = CHAT_LWS_SETTINGS_V1 + 1;
  cr_assert_eq(chat_lws_new(&t, h.srv, &s, NULL, &eb), CHAT_ERR_INVAL);
  cr_assert(strstr(eb.msg, "settings.version: 2 is newer"), "%s", eb.msg);
  s.version = CHAT_LWS_SETTINGS_V1;
  memset(&eb, 0, sizeof eb);
  cr_assert_eq(chat_lws_new(&t, h.srv, &s, NULL, &eb), CHAT_OK);
  cr_assert_str_eq(eb.msg, "");
  chat_lws_free(t);
}

Test(lws, refusals_say_why) {
  chat_lws *t;
  chat_errbuf eb;
  chat_lws_settings s = {.version = CHAT_LWS_SETTINGS_V1};
  cr_assert_eq(chat_lws_new(NULL, h.srv, &s, NULL, &eb), CHAT_ERR_INVAL);
  cr_assert_str_eq(eb.msg, "out: NULL");
  cr_assert_eq(chat_lws_new(&t, NULL, &s, NULL, &eb), CHAT_ERR_INVAL);
  cr_assert_str_eq(eb.msg, "srv: NULL");
  s.static_dir = "/nonexistent/chat-static";
  cr_assert_eq(chat_lws_new(&t, h.srv, &s, NULL, &eb), CHAT_ERR_INVAL);
  cr_assert(strstr(eb.msg, "settings.static_dir: /nonexistent/chat-static"),
            "%s", eb.msg);
}

Test(lws, listen_options_version_rule) {
  chat_lws *t;
  chat_errbuf eb;
  chat_lws_settings s = {.version = CHAT_LWS_SETTINGS_V1};
  cr_assert_eq(chat_lws_new(&t, h.srv, &s, NULL, NULL), CHAT_OK);
  chat_lws_listen_options o = {.version = 0, .host = "127.0.0.1"};
  cr_assert_eq(chat_lws_listen(t, &o, &eb), CHAT_ERR_INVAL);
  cr_assert_str_eq(eb.msg,
                   "options.version: 0 (set it from its CHAT_*_V macro)");
  o.version = CHAT_LWS_LISTEN_V1 + 1;
  cr_assert_eq(chat_lws_listen(t, &o, &eb), CHAT_ERR_INVAL);
  cr_assert(strstr(eb.msg, "options.version: 2 is newer"), "%s", eb.msg);
  o.version = CHAT_LWS_LISTEN_V1;
  o.rx_buffer_bytes = 100;
  cr_assert_eq(chat_lws_listen(t, &o, &eb), CHAT_ERR_INVAL);
  cr_assert_str_eq(eb.msg, "options.rx_buffer_bytes: 100 is under 128");
  o.rx_buffer_bytes = 0;
  o.host = "not-an-address";
  cr_assert_eq(chat_lws_listen(t, &o, &eb), CHAT_ERR_INVAL);
  cr_assert(strstr(eb.msg, "not an IP address literal"), "%s", eb.msg);
  o.host = "127.0.0.1";
  cr_assert_eq(chat_lws_listen(t, &o, &eb), CHAT_OK);
  cr_assert_gt(chat_lws_port(t), 0);
  cr_assert_eq(chat_lws_listen(t, &o, &eb), CHAT_ERR_STATE);
  cr_assert(strstr(eb.msg, "already listening"), "%s", eb.msg);
  chat_lws_free(t);
}

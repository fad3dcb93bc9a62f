/* lib/common/err.c and version.c: error strings and the library version. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include <chat/common.h>
#include <chat/version.h>

Test(err, names_and_messages_of_known_codes) {
  cr_assert_str_eq(chat_err_name(CHAT_OK), "CHAT_OK");
  cr_assert_str_eq(chat_strerror(CHAT_OK), "success");
  cr_assert_str_eq(chat_err_name(CHAT_PENDING), "CHAT_PENDING");
  cr_assert_str_eq(chat_err_name(CHAT_ERR_NOMEM), "CHAT_ERR_NOMEM");
  cr_assert_str_eq(chat_strerror(CHAT_ERR_NOMEM), "out of memory");
  cr_assert_str_eq(chat_err_name(CHAT_ERR_INVAL), "CHAT_ERR_INVAL");
  cr_assert_str_eq(chat_strerror(CHAT_ERR_INVAL), "invalid argument");
  cr_assert_str_eq(chat_err_name(CHAT_ERR_DUPLICATE_KEY),
                   "CHAT_ERR_DUPLICATE_KEY");
  cr_assert_str_eq(chat_strerror(CHAT_ERR_JSON), "malformed JSON");
  cr_assert_str_eq(chat_err_name(CHAT_ERR_CALLBACK), "CHAT_ERR_CALLBACK");
}

Test(err, unknown_codes) {
  chat_err odd[] = {(chat_err)-19, (chat_err)-99, (chat_err)2, (chat_err)-9999,
                    (chat_err)12345};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    cr_assert_str_eq(chat_strerror(odd[i]), "unknown error");
    cr_assert_str_eq(chat_err_name(odd[i]), "CHAT_ERR_UNKNOWN");
  }
}

/* Every entry of the map: the name is "CHAT_" + its X-macro name, the text
 * is its message, values and names are unique, messages non-empty. */
#define XX(name, value, msg) {CHAT_##name, value, "CHAT_" #name, msg},
static const struct {
  chat_err e;
  int value;
  const char *name;
  const char *msg;
} all[] = {CHAT_ERR_MAP(XX)};
#undef XX
#define N_ALL (sizeof all / sizeof all[0])

Test(err, every_code_in_the_map) {
  cr_assert_geq(N_ALL, 26); /* append-only: it may grow */
  for (size_t i = 0; i < N_ALL; i++) {
    cr_assert_eq((int)all[i].e, all[i].value);
    cr_assert_str_eq(chat_err_name(all[i].e), all[i].name);
    cr_assert_str_eq(chat_strerror(all[i].e), all[i].msg);
    cr_assert_gt(strlen(all[i].msg), 0);
    for (size_t j = 0; j < i; j++) {
      cr_assert_neq(all[i].value, all[j].value, "%s", all[i].name);
      cr_assert_str_neq(all[i].name, all[j].name);
    }
  }
}

Test(err, fatal_is_at_or_below_err_fatal) {
  cr_assert(chat_err_is_fatal(CHAT_ERR_FATAL));
  cr_assert(chat_err_is_fatal(CHAT_ERR_NOMEM));
  cr_assert(chat_err_is_fatal(CHAT_ERR_CALLBACK));
  cr_assert(chat_err_is_fatal((chat_err)-1000));
  cr_assert_not(chat_err_is_fatal(CHAT_OK));
  cr_assert_not(chat_err_is_fatal(CHAT_PENDING));
  cr_assert_not(chat_err_is_fatal(CHAT_ERR_INVAL));
  cr_assert_not(chat_err_is_fatal(CHAT_ERR_JSON));
  cr_assert_not(chat_err_is_fatal(CHAT_ERR_FRAME_TOO_LARGE));
  cr_assert_not(chat_err_is_fatal((chat_err)-99));
  for (size_t i = 0; i < N_ALL; i++)
    cr_assert_eq(chat_err_is_fatal(all[i].e), all[i].value <= -100,
                 "%s", all[i].name);
}

Test(version, number_and_string_match_the_header) {
  cr_assert_eq(chat_version(), (uint32_t)CHAT_VERSION_NUM);
  cr_assert_eq(chat_version() >> 16, (uint32_t)CHAT_VERSION_MAJOR);
  cr_assert_eq((chat_version() >> 8) & 0xFF, (uint32_t)CHAT_VERSION_MINOR);
  cr_assert_eq(chat_version() & 0xFF, (uint32_t)CHAT_VERSION_PATCH);
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", CHAT_VERSION_MAJOR,
           CHAT_VERSION_MINOR, CHAT_VERSION_PATCH);
  cr_assert_str_eq(chat_version_string(), want);
  cr_assert_eq(chat_version_string(), chat_version_string(), "static");
}

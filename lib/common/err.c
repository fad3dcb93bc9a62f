/* Error names and messages, generated from CHAT_ERR_MAP so the enum and its
 * strings can never drift apart. */
#include <chat/common.h>

const char *chat_strerror(chat_err e) {
  switch (e) {
#define XX(name, value, msg) \
  case CHAT_##name:          \
    return msg;
    CHAT_ERR_MAP(XX)
#undef XX
  }
  return "unknown error";
}

const char *chat_err_name(chat_err e) {
  switch (e) {
#define XX(name, value, msg) \
  case CHAT_##name:          \
    return "CHAT_" #name;
    CHAT_ERR_MAP(XX)
#undef XX
  }
  return "CHAT_ERR_UNKNOWN";
}

bool chat_err_is_fatal(chat_err e) {
  return e <= CHAT_ERR_FATAL;
}

/* The version of the library actually loaded, which may differ from the
 * header a caller compiled against. */
#include <chat/common.h>
#include <chat/version.h>

#define STR_(x) #x
#define STR(x) STR_(x)

uint32_t chat_version(void) {
  return CHAT_VERSION_NUM;
}

const char *chat_version_string(void) {
  return STR(CHAT_VERSION_MAJOR) "." STR(CHAT_VERSION_MINOR) "." STR(
      CHAT_VERSION_PATCH);
}

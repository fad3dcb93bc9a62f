/* libchat version numbers. meson reads these with cc.get_define() to set the
 * project version and the SONAME, so this header is the one place they live. */
#ifndef CHAT_VERSION_H
#define CHAT_VERSION_H

#define CHAT_VERSION_MAJOR 1
#define CHAT_VERSION_MINOR 0
#define CHAT_VERSION_PATCH 0

/* Numeric form for compile-time checks: 0xMMmmpp. */
#define CHAT_VERSION_NUM \
  ((CHAT_VERSION_MAJOR << 16) | (CHAT_VERSION_MINOR << 8) | CHAT_VERSION_PATCH)

#endif /* CHAT_VERSION_H */

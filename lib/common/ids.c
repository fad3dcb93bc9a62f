/* Id grammar of PROTOCOL.md section 1. */
#include <chat/frame.h>

#include <string.h>

#define ID_MAX 64

static bool id_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' ||
         c == '@' || c == '-';
}

bool chat_id_valid(const char *s, size_t len) {
  if (!s || len == 0 || len > ID_MAX)
    return false;
  for (size_t i = 0; i < len; i++)
    if (!id_char((unsigned char)s[i]))
      return false;
  return true;
}

chat_err chat_message_id_parse(const char *s, size_t len, uint64_t *out) {
  if (!s || !out)
    return CHAT_ERR_INVAL;
  /* INT64_MAX has 19 digits, so 19 digits cannot overflow uint64_t and
   * only the final comparison is needed. */
  if (len == 0 || len > 19 || (s[0] == '0' && len > 1))
    return CHAT_ERR_BAD_MESSAGE_ID;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned d = (unsigned char)s[i] - (unsigned)'0';
    if (d > 9)
      return CHAT_ERR_BAD_MESSAGE_ID;
    v = v * 10 + d;
  }
  if (v > (uint64_t)INT64_MAX)
    return CHAT_ERR_BAD_MESSAGE_ID;
  *out = v;
  return CHAT_OK;
}

size_t chat_message_id_format(uint64_t id, char *buf) {
  if (!buf || id > (uint64_t)INT64_MAX)
    return 0;
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + id % 10);
    id /= 10;
  } while (id);
  for (size_t i = 0; i < n; i++)
    buf[i] = tmp[n - 1 - i];
  buf[n] = '\0';
  return n;
}

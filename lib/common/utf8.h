#ifndef CHAT__UTF8_H
#define CHAT__UTF8_H

#include <chat/common.h>

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above
 * U+10FFFF. U+0000 is valid. */
bool chat__utf8_valid(const char *s, size_t len);

/* Length of the longest valid prefix of s[0..len): the offset of the first
 * byte that does not start a well-formed sequence, or len when all is valid.
 * For error offsets. */
size_t chat__utf8_valid_prefix(const char *s, size_t len);

/* Append code point cp (<= 0x10FFFF, not a surrogate) as UTF-8 to out;
 * returns the number of bytes written (1..4). */
size_t chat__utf8_encode(uint32_t cp, char *out);

#endif

/* The library's one struct-version rule and its error-detail helper, so
 * every entry point refuses the same things with the same words.
 *
 * Version rule (docs/abi.md): a caller-filled struct carries the
 * CHAT_*_V<n> it was written against. 1..newest is accepted (an older
 * struct is read only up to its own fields); 0 or a version newer than
 * this library knows is CHAT_ERR_INVAL. */
#ifndef CHAT__CHECK_H
#define CHAT__CHECK_H

#include <chat/common.h>

static inline bool chat__version_ok(uint32_t version, uint32_t newest) {
  return version >= 1 && version <= newest;
}

/* Write one line of detail into e (NULL-safe), truncating at
 * CHAT_ERRBUF_SIZE - 1 bytes. Returns rc so a failure path reads
 *   return chat__errbuf_set(err, CHAT_ERR_INVAL, "settings: ...");  */
chat_err chat__errbuf_set(chat_errbuf *e, chat_err rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The detail for a refused struct version, e.g.
 * "settings.version: 7 is not 1..1". */
chat_err chat__version_refused(chat_errbuf *e, const char *what,
                               uint32_t version, uint32_t newest);

#endif

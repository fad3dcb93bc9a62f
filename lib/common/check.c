/* Error details for refused arguments (see check.h). */
#include <stdarg.h>
#include <stdio.h>

#include "common/check.h"

chat_err chat__errbuf_set(chat_errbuf *e, chat_err rc, const char *fmt, ...) {
  if (!e)
    return rc;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  if (n < 0)
    e->msg[0] = 0;
  return rc;
}

chat_err chat__version_refused(chat_errbuf *e, const char *what,
                               uint32_t version, uint32_t newest) {
  if (version == 0)
    return chat__errbuf_set(e, CHAT_ERR_INVAL,
                            "%s.version: 0 (set it from its CHAT_*_V macro)",
                            what);
  return chat__errbuf_set(e, CHAT_ERR_INVAL,
                          "%s.version: %u is newer than this library "
                          "knows (1..%u)",
                          what, version, newest);
}

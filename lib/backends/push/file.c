/* Push backend that appends each note (and each clear) to a file as one
 * JSON line: the stand-in for APNs/FCM in demos (chatd --push-log) and
 * tests. The push token is deliberately not written: the log shows who
 * would be woken, not the credential to wake them. */
#include <chat/memory.h>

#include <stdio.h>
#include <string.h>

#ifndef _WIN32
#include <fcntl.h>
#endif

#include "common/alloc.h"
#include "common/buf.h"
#include "common/json.h"

struct push_file {
  chat_allocator a;
  FILE *f;
  chat__buf line; /* reused across notes */
  bool torn;      /* a failed write may have left half a line */
};

static void str_or_null(chat__jw *w, const char *key, const char *s) {
  chat__jw_key(w, key);
  if (s)
    chat__jw_str(w, s, strlen(s));
  else
    chat__jw_null(w);
}

static chat_err write_line(struct push_file *pf) {
  if (pf->line.oom)
    return CHAT_ERR_NOMEM;
  size_t n = fwrite(pf->line.data, 1, pf->line.len, pf->f);
  /* The line is written in full or reported: stdio buffers, so a full disk
   * often shows only at the flush. */
  if (fflush(pf->f) != 0 || n != pf->line.len) {
    clearerr(pf->f);
    pf->torn = true;
    return CHAT_ERR_MODULE;
  }
  pf->torn = false;
  return CHAT_OK;
}

static chat_err notify(void *self, const chat_push_note *note) {
  struct push_file *pf = self;
  if (!pf || !note)
    return CHAT_ERR_INVAL;
  chat__buf_reset(&pf->line);
  /* Start on a fresh line after a failed write, so one torn line does not
   * swallow the next good one. */
  if (pf->torn)
    chat__buf_putc(&pf->line, '\n');
  chat__jw w;
  chat__jw_init(&w, &pf->line);
  chat__jw_obj_begin(&w);
  str_or_null(&w, "user_id", note->user_id);
  str_or_null(&w, "device_id", note->device_id);
  str_or_null(&w, "conversation_id", note->conversation_id);
  str_or_null(&w, "sender_id", note->sender_id);
  chat__jw_key(&w, "preview");
  if (note->preview.ptr)
    chat__jw_str(&w, note->preview.ptr, note->preview.len);
  else
    chat__jw_null(&w);
  str_or_null(&w, "platform", note->platform);
  chat__jw_key(&w, "message_id");
  chat__jw_uint_str(&w, note->message_id);
  chat__jw_obj_end(&w);
  chat__buf_putc(&pf->line, '\n');
  return write_line(pf);
}

/* Receipt-aware push: the clear goes into the same file as its own line,
 * {"type":"clear","user_id","device_id","conversation_id","platform",
 * "up_to"}, so that tests and demos can see it. */
static chat_err clear(void *self, const chat_push_clear *c) {
  struct push_file *pf = self;
  if (!pf || !c)
    return CHAT_ERR_INVAL;
  chat__buf_reset(&pf->line);
  if (pf->torn)
    chat__buf_putc(&pf->line, '\n');
  chat__jw w;
  chat__jw_init(&w, &pf->line);
  chat__jw_obj_begin(&w);
  chat__jw_key(&w, "type");
  chat__jw_str(&w, "clear", 5);
  str_or_null(&w, "user_id", c->user_id);
  str_or_null(&w, "device_id", c->device_id);
  str_or_null(&w, "conversation_id", c->conversation_id);
  str_or_null(&w, "platform", c->platform);
  chat__jw_key(&w, "up_to");
  chat__jw_uint_str(&w, c->up_to);
  chat__jw_obj_end(&w);
  chat__buf_putc(&pf->line, '\n');
  return write_line(pf);
}

static void destroy(void *self) {
  struct push_file *pf = self;
  if (!pf)
    return;
  fclose(pf->f);
  chat__buf_free(&pf->line);
  chat_allocator a = pf->a;
  chat__free(&a, pf);
}

chat_err chat_push_file_open(chat_push_ops *out, const char *path,
                             const chat_allocator *alloc) {
  if (!out)
    return CHAT_ERR_INVAL;
  memset(out, 0, sizeof *out);
  chat_allocator a;
  if (!path || !*path || chat__allocator_init(&a, alloc) != CHAT_OK)
    return CHAT_ERR_INVAL;
  struct push_file *pf = chat__alloc(&a, sizeof *pf);
  if (!pf)
    return CHAT_ERR_NOMEM;
  pf->a = a;
  pf->torn = false;
  chat__buf_init(&pf->line, &pf->a);
  pf->f = fopen(path, "a");
  if (!pf->f) {
    chat__free(&a, pf);
    return CHAT_ERR_MODULE;
  }
#ifndef _WIN32
  /* A host that forks and execs must not leak the log into the child. */
  fcntl(fileno(pf->f), F_SETFD, FD_CLOEXEC);
#endif
  out->version = CHAT_PUSH_OPS_V1;
  out->self = pf;
  out->notify = notify;
  out->destroy = destroy;
  out->clear = clear;
  return CHAT_OK;
}

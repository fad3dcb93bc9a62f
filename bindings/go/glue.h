/* C side of the Go binding: trampolines that turn libchat's callbacks
 * (context first, a void *) into calls of exported Go functions (a
 * uintptr_t cgo.Handle), and small wrappers so that no Go code converts an
 * integer into a pointer. Only libchat's public API is used. */
#ifndef LIBCHAT_GO_GLUE_H
#define LIBCHAT_GO_GLUE_H

#include <chat/chat.h>
#include <chat/client.h>
#include <chat/server.h>
#include <chat/sodium.h>
#include <chat/sqlite.h>
#include <stdint.h>
#include <stdlib.h>

/* The process's env (libsodium RNG, real wall clock), read once. */
chat_err glue_sys_env(chat_env *out);

/* ---- client ---- */
chat_err glue_client_new(chat_client **out, const char *store_path,
                         const chat_client_settings *s, uintptr_t h,
                         chat_errbuf *err);
chat_err glue_client_list_messages(chat_client *c, const char *conv,
                                   uint64_t before, uint32_t limit,
                                   uintptr_t h);
chat_err glue_client_list_conversations(chat_client *c, uintptr_t h);

/* ---- server ---- */
typedef struct glue_server_opts {
  const char *store_path;
  int sync_normal;
  int push; /* install the Go push hook */
  int presence; /* install the Go presence hook */
  int bus;      /* install the Go bus hook */
} glue_server_opts;
chat_err glue_server_new(chat_server **out, chat_server_settings *s,
                         const glue_server_opts *o, uintptr_t h,
                         chat_errbuf *err);
chat_err glue_open_session(chat_server *srv, chat_session **out,
                           const chat_identity *id, uintptr_t ud,
                           chat_time_ms now);
uintptr_t glue_session_user_data(const chat_session *sess);
chat_err glue_server_http(chat_server *srv, chat_http_request *rq,
                          uintptr_t tag, chat_http_response *resp,
                          chat_time_ms now);
chat_err glue_server_http_cancel(chat_server *srv, uintptr_t tag);
/* Complete a pending presence op from Go: emit the rows, fill the outputs,
 * complete. Loop thread only. */
void glue_locate_emit(uintptr_t op_cookie, const char *gateway_id,
                      const char *device_id);
void glue_locate_complete(uintptr_t op_cookie, chat_err status);
void glue_state_complete(uintptr_t op_cookie, chat_err status, int state,
                         int64_t last_active_ms);
/* chat_op_post from any goroutine: run the completion on the loop. */
void glue_op_post(uintptr_t op_cookie);

/* ---- tokens ---- */
chat_err glue_auth_verify(chat_auth_ops *ops, const char *token, size_t len,
                          int64_t now_ms, chat_identity *out);
void glue_auth_destroy(chat_auth_ops *ops);

/* ---- codec ---- */
const chat_frame *glue_frame_ptr(const chat_frame **pp);

#endif

"""cffi build script (API mode) for the `libchat._native` extension.

API mode: the C compiler reads the installed public headers (<chat/*.h>),
so struct layouts, enum values and macros come from the headers themselves.
The declarations below name only what the binding uses; every struct ends
in `...;`, so a later 1.x header that appends fields changes nothing here.

libchat is found with pkg-config (PKG_CONFIG_PATH / PKG_CONFIG_SYSROOT_DIR,
as scripts/stage.sh prints them), or with LIBCHAT_INCLUDE_DIR and
LIBCHAT_LIB_DIR when pkg-config is not wanted. How the extension finds
libchat.so at run time (see README.md):
  - default: an rpath to the library directory pkg-config named (none for
    the system's own directories, where the loader looks anyway);
  - LIBCHAT_BUNDLE=1: setup.py copies libchat.so.<major> next to the
    extension and the rpath is $ORIGIN, so a wheel carries its libchat.
"""
from __future__ import annotations

import os
import shlex
import subprocess

from cffi import FFI

CDEF = r"""
/* ---- common.h ---- */
typedef enum chat_err {
  CHAT_OK, CHAT_PENDING, CHAT_ERR_INVAL, CHAT_ERR_STATE, CHAT_ERR_AGAIN,
  CHAT_ERR_TOO_LARGE, CHAT_ERR_NOT_FOUND, CHAT_ERR_MODULE, CHAT_ERR_AUTH,
  CHAT_ERR_DENIED, CHAT_ERR_CONFLICT, CHAT_ERR_RATE_LIMITED, CHAT_ERR_JSON,
  CHAT_ERR_NOT_OBJECT, CHAT_ERR_NO_TYPE, CHAT_ERR_UNKNOWN_TYPE,
  CHAT_ERR_MISSING_FIELD, CHAT_ERR_FIELD_TYPE, CHAT_ERR_BAD_ID,
  CHAT_ERR_BAD_MESSAGE_ID, CHAT_ERR_BAD_VALUE, CHAT_ERR_BAD_UTF8,
  CHAT_ERR_TOO_DEEP, CHAT_ERR_TOO_MANY, CHAT_ERR_DUPLICATE_KEY,
  CHAT_ERR_BAD_NUMBER, CHAT_ERR_FRAME_TOO_LARGE, CHAT_ERR_FATAL,
  CHAT_ERR_NOMEM, CHAT_ERR_CALLBACK, ...
} chat_err;
const char *chat_strerror(chat_err e);
const char *chat_err_name(chat_err e);
bool chat_err_is_fatal(chat_err e);
#define CHAT_ERRBUF_SIZE ...
typedef struct chat_errbuf { char msg[...]; } chat_errbuf;
typedef uint64_t chat_time_ms;
#define CHAT_ENV_V1 ...
typedef struct chat_env {
  uint32_t version;
  void *user_data;
  int64_t (*wall_ms)(void *user_data);
  void (*random)(void *user_data, uint8_t *out, size_t n);
  void (*log)(void *user_data, int level, const char *msg);
  void (*wake)(void *user_data);
  ...;
} chat_env;
chat_err chat_env_system(chat_env *out);
uint32_t chat_version(void);
const char *chat_version_string(void);

/* ---- frame.h ---- */
typedef struct chat_str { const char *ptr; size_t len; } chat_str;
typedef enum chat_frame_type { CHAT_FRAME_NONE, CHAT_FRAME_TYPING, ... } chat_frame_type;
typedef enum chat_direction { CHAT_DIR_TO_SERVER, CHAT_DIR_TO_CLIENT, ... } chat_direction;
typedef enum chat_body_type { CHAT_BODY_TEXT, CHAT_BODY_MEDIA, CHAT_BODY_SYSTEM,
  CHAT_BODY_EDIT, CHAT_BODY_DELETE, ... } chat_body_type;
typedef enum chat_sender_kind { CHAT_SENDER_USER, CHAT_SENDER_BOT, ... } chat_sender_kind;
typedef enum chat_receipt_state { CHAT_RECEIPT_NONE, CHAT_RECEIPT_DELIVERED,
  CHAT_RECEIPT_READ, ... } chat_receipt_state;
typedef enum chat_presence_state { CHAT_PRESENCE_OFFLINE, CHAT_PRESENCE_ONLINE,
  CHAT_PRESENCE_IDLE, ... } chat_presence_state;
typedef enum chat_conversation_type { CHAT_CONVERSATION_DIRECT,
  CHAT_CONVERSATION_GROUP, ... } chat_conversation_type;
typedef enum chat_wire_error { CHAT_WIRE_OTHER, ... } chat_wire_error;
const char *chat_wire_error_str(chat_wire_error e);
const char *chat_frame_type_name(chat_frame_type t);
int chat_frame_type_direction(chat_frame_type t);

typedef struct chat_hello {
  const char *user_id; const char *device_id; const char *session_id;
  int64_t server_ts; uint32_t heartbeat_ms; ...;
} chat_hello;
typedef struct chat_ack {
  const char *client_msg_id; uint64_t message_id; int64_t server_ts;
  bool duplicate; ...;
} chat_ack;
typedef struct chat_message {
  uint64_t message_id; const char *conversation_id; const char *sender_id;
  chat_str body; int64_t server_ts; const char *client_msg_id;
  bool has_reply_to; uint64_t reply_to;
  const char *const *media_refs; size_t n_media_refs;
  chat_body_type body_type;
  bool has_target_id; uint64_t target_id; chat_sender_kind sender_kind;
  bool has_edited_ts; int64_t edited_ts; bool deleted;
  ...;
} chat_message;
typedef struct chat_receipt {
  const char *conversation_id; uint64_t message_id; chat_receipt_state state;
  const char *member_id; bool has_counts; uint32_t delivered_count;
  uint32_t read_count; ...;
} chat_receipt;
typedef struct chat_presence {
  const char *user_id; chat_presence_state state; bool has_last_active;
  int64_t last_active_ts; ...;
} chat_presence;
typedef struct chat_state_change {
  const char *conversation_id; uint64_t last_read_message_id; ...;
} chat_state_change;
typedef struct chat_conversation {
  const char *conversation_id; chat_conversation_type type; chat_str name;
  const char *const *members; size_t n_members;
  const chat_message *last_message; uint32_t unread_count;
  bool has_last_read; uint64_t last_read_message_id;
  const char *const *admins; size_t n_admins;
  ...;
} chat_conversation;
typedef struct chat_error_frame {
  chat_wire_error wire; const char *code; chat_str message; chat_str ref;
  bool has_retry_after; uint64_t retry_after_ms; ...;
} chat_error_frame;
typedef struct chat_frame { uint32_t version; chat_frame_type type; ...; } chat_frame;

#define CHAT_CODEC_SETTINGS_V1 ...
typedef struct chat_codec_settings {
  uint32_t version; uint32_t max_frame_bytes; uint32_t max_body_bytes;
  uint32_t max_frame_bytes_to_client; ...;
} chat_codec_settings;
typedef struct chat_codec chat_codec;
typedef struct chat_decode_error {
  chat_err err; chat_wire_error wire; const char *message; const char *ref;
  const char *field; ...;
} chat_decode_error;
chat_err chat_codec_new(chat_codec **out, const chat_codec_settings *settings,
                        const void *alloc, chat_errbuf *err);
void chat_codec_free(chat_codec *codec);
chat_err chat_codec_decode(chat_codec *codec, chat_direction dir,
                           const char *json, size_t len,
                           const chat_frame **out, chat_decode_error *err);
chat_err chat_codec_encode(chat_codec *codec, const chat_frame *frame,
                           const char **json, size_t *len);
bool chat_id_valid(const char *s, size_t len);

/* ---- backoff.h ---- */
#define CHAT_BACKOFF_V1 ...
typedef struct chat_backoff {
  uint32_t version; uint32_t base_ms; uint32_t cap_ms; uint32_t floor_ms; ...;
} chat_backoff;

/* ---- client_store.h / sqlite.h ---- */
typedef struct chat_client_store_ops {
  uint32_t version; void *self; void (*destroy)(void *self); ...;
} chat_client_store_ops;
typedef struct chat_op chat_op;
typedef struct chat_storage_ops {
  uint32_t version; void *self; void (*destroy)(void *self); ...;
} chat_storage_ops;
chat_err chat_sqlite_client_store_open(chat_client_store_ops *out,
    const char *path, const void *alloc, chat_errbuf *err);
#define CHAT_SQLITE_OPTIONS_V1 ...
typedef enum chat_sqlite_sync { CHAT_SQLITE_SYNC_FULL, CHAT_SQLITE_SYNC_NORMAL, ... } chat_sqlite_sync;
typedef struct chat_sqlite_options {
  uint32_t version; chat_sqlite_sync sync; uint32_t busy_timeout_ms; ...;
} chat_sqlite_options;
chat_err chat_sqlite_storage_open(chat_storage_ops *out, const char *path,
    const chat_sqlite_options *options, const void *alloc, chat_errbuf *err);

/* ---- client.h ---- */
typedef struct chat_client chat_client;
typedef enum chat_client_state {
  CHAT_CLIENT_IDLE, CHAT_CLIENT_CONNECTING, CHAT_CLIENT_HANDSHAKE,
  CHAT_CLIENT_RESUMING, CHAT_CLIENT_READY, CHAT_CLIENT_BACKOFF,
  CHAT_CLIENT_UNAUTHORIZED, ...
} chat_client_state;
const char *chat_client_state_name(chat_client_state s);
typedef enum chat_auth_reason { CHAT_AUTH_REFUSED, CHAT_AUTH_EXPIRED, ... } chat_auth_reason;
typedef enum chat_message_origin { CHAT_ORIGIN_LIVE, CHAT_ORIGIN_RESUME,
  CHAT_ORIGIN_REST, CHAT_ORIGIN_OLDER, ... } chat_message_origin;
typedef struct chat_client_error {
  chat_err err; const chat_error_frame *wire; const char *client_msg_id;
  const char *conversation_id; const char *message; int http_status;
  bool retrying; ...;
} chat_client_error;
typedef struct chat_resume_progress {
  const char *conversation_id; uint32_t gaps_open; uint32_t messages;
  bool resumed; bool complete; ...;
} chat_resume_progress;
#define CHAT_CLIENT_CALLBACKS_V1 ...
typedef struct chat_client_callbacks {
  uint32_t version;
  void (*on_connection)(void *, chat_client *, chat_client_state);
  void (*on_hello)(void *, chat_client *, const chat_hello *);
  void (*on_message)(void *, chat_client *, const chat_message *, chat_message_origin);
  void (*on_ack)(void *, chat_client *, const chat_ack *);
  void (*on_receipt)(void *, chat_client *, const chat_receipt *);
  void (*on_typing)(void *, chat_client *, const char *, const char *, bool);
  void (*on_presence)(void *, chat_client *, const chat_presence *);
  void (*on_state_change)(void *, chat_client *, const chat_state_change *);
  void (*on_conversation)(void *, chat_client *, const chat_conversation *);
  void (*on_error)(void *, chat_client *, const chat_client_error *);
  void (*on_resume_progress)(void *, chat_client *, const chat_resume_progress *);
  void (*on_wants)(void *, chat_client *);
  void (*on_request_done)(void *, chat_client *, uint32_t, chat_err);
  void (*on_auth_required)(void *, chat_client *, chat_auth_reason);
  ...;
} chat_client_callbacks;
#define CHAT_CLIENT_SETTINGS_V1 ...
typedef struct chat_client_settings {
  uint32_t version; const chat_env *env; const chat_backoff *backoff;
  uint32_t receipt_interval_ms; uint32_t hello_timeout_ms;
  uint32_t max_frame_bytes; bool manual_delivered; ...;
} chat_client_settings;
chat_err chat_client_new(chat_client **out, const chat_client_settings *settings,
    const chat_client_store_ops *store, const chat_client_callbacks *callbacks,
    void *user_data, const void *alloc, chat_errbuf *err);
void chat_client_free(chat_client *c);
const char *chat_client_errmsg(const chat_client *c);
#define CHAT_CLIENT_TOKEN_MAX ...
chat_err chat_client_set_token(chat_client *c, const char *token, size_t len,
                               chat_time_ms now);
chat_err chat_client_token(const chat_client *c, const char **token, size_t *len);
#define CHAT_CLIENT_WANT_WRITE ...
#define CHAT_CLIENT_WANT_CLOSE ...
#define CHAT_CLIENT_WANT_CONNECT ...
#define CHAT_CLIENT_WANT_REST ...
chat_err chat_client_start(chat_client *c, chat_time_ms now);
chat_err chat_client_stop(chat_client *c, chat_time_ms now);
uint32_t chat_client_wants(const chat_client *c);
chat_err chat_client_on_connecting(chat_client *c, chat_time_ms now);
chat_err chat_client_on_open(chat_client *c, chat_time_ms now);
chat_err chat_client_on_frame(chat_client *c, const char *json, size_t len,
                              chat_time_ms now);
chat_err chat_client_on_close(chat_client *c, uint16_t ws_code, chat_time_ms now);
chat_err chat_client_on_refused(chat_client *c, int http_status, chat_time_ms now);
chat_err chat_client_next_frame(chat_client *c, const char **json, size_t *len);
chat_time_ms chat_client_next_deadline(const chat_client *c);
chat_err chat_client_on_timer(chat_client *c, chat_time_ms now);
chat_err chat_client_hint_network_up(chat_client *c, chat_time_ms now);
chat_client_state chat_client_get_state(const chat_client *c);
#define CHAT_CLIENT_REQUEST_V1 ...
typedef struct chat_client_request {
  uint32_t version; uint32_t id; const char *method; const char *path;
  const char *body; size_t body_len; ...;
} chat_client_request;
chat_err chat_client_next_request(chat_client *c, chat_client_request *out);
chat_err chat_client_on_response(chat_client *c, uint32_t id, int status,
    const char *body, size_t len, chat_time_ms now);
#define CHAT_CLIENT_MSG_ID_BUF ...
chat_err chat_client_send(chat_client *c, const char *conversation_id,
    const char *body, size_t body_len, char *client_msg_id_out, chat_time_ms now);
size_t chat_client_outbox_len(const chat_client *c);
chat_err chat_client_mark_delivered(chat_client *c, const char *conversation_id,
    uint64_t up_to, chat_time_ms now);
chat_err chat_client_mark_read(chat_client *c, const char *conversation_id,
    uint64_t up_to, chat_time_ms now);
chat_err chat_client_typing(chat_client *c, const char *conversation_id,
    chat_time_ms now);
chat_err chat_client_watch_presence(chat_client *c, const char *const *user_ids,
    size_t n, chat_time_ms now);
chat_err chat_client_fetch_conversations(chat_client *c, uint32_t *request_id,
    chat_time_ms now);
chat_err chat_client_create_conversation(chat_client *c, const char *name,
    const char *const *members, size_t n_members, uint32_t *request_id,
    chat_time_ms now);
chat_err chat_client_load_older(chat_client *c, const char *conversation_id,
    uint64_t before, uint32_t limit, uint32_t *request_id, chat_time_ms now);
chat_err chat_client_register_device(chat_client *c, const char *platform,
    const char *push_token, uint32_t *request_id, chat_time_ms now);
typedef struct chat_client_message {
  const chat_message *message; bool own; bool pending;
  chat_receipt_state state; ...;
} chat_client_message;
chat_err chat_client_list_messages(chat_client *c, const char *conversation_id,
    uint64_t before, uint32_t limit,
    void (*fn)(void *user_data, const chat_client_message *m), void *user_data);
chat_err chat_client_list_conversations(chat_client *c,
    void (*fn)(void *user_data, const chat_conversation *conv), void *user_data);
chat_err chat_client_last_seen(chat_client *c, const char *conversation_id,
                               uint64_t *out);

/* ---- modules.h ---- */
#define CHAT_ID_BUF ...
#define CHAT_IDENTITY_V1 ...
typedef struct chat_identity {
  uint32_t version; char user_id[...]; char device_id[...];
  int64_t expires_ms; chat_sender_kind kind; ...;
} chat_identity;
void chat_op_complete(chat_op *op, chat_err status);
void chat_op_post(chat_op *op, void (*fn)(void *user_data, chat_op *op),
                  void *user_data);
typedef void (*chat_location_sink)(void *ctx, const char *gateway_id,
                                   const char *device_id);
#define CHAT_PRESENCE_OPS_V1 ...
typedef struct chat_presence_ops {
  uint32_t version; void *self;
  chat_err (*device_online)(void *self, const char *user_id,
                            const char *device_id, const char *gateway_id);
  chat_err (*device_offline)(void *self, const char *user_id,
                             const char *device_id, const char *gateway_id);
  chat_err (*locate)(void *self, const char *user_id, chat_location_sink emit,
                     void *ctx, chat_op *op);
  chat_err (*set_state)(void *self, const char *user_id,
                        chat_presence_state state, int64_t last_active_ms);
  chat_err (*get_state)(void *self, const char *user_id,
                        chat_presence_state *state, int64_t *last_active_ms,
                        chat_op *op);
  void (*destroy)(void *self);
  ...;
} chat_presence_ops;
typedef struct chat_push_note {
  const char *user_id; const char *device_id; const char *platform;
  const char *push_token; const char *conversation_id; const char *sender_id;
  uint64_t message_id; chat_str preview; ...;
} chat_push_note;
#define CHAT_PUSH_OPS_V1 ...
typedef struct chat_push_ops {
  uint32_t version; void *self;
  chat_err (*notify)(void *self, const chat_push_note *note);
  void (*destroy)(void *self); ...;
} chat_push_ops;
#define CHAT_AUTH_OPS_V1 ...
typedef struct chat_auth_ops {
  uint32_t version; void *self;
  chat_err (*verify)(void *self, const char *token, size_t len,
                     int64_t now_ms, chat_identity *out);
  void (*destroy)(void *self); ...;
} chat_auth_ops;

/* ---- server.h ---- */
typedef struct chat_bus_ops chat_bus_ops;
typedef struct chat_server chat_server;
typedef struct chat_session chat_session;
#define CHAT_SERVER_SETTINGS_V1 ...
typedef struct chat_server_settings {
  uint32_t version; const chat_env *env; uint32_t machine_id;
  const char *gateway_id; uint32_t max_body_bytes; uint32_t max_frame_bytes;
  uint32_t rate_per_minute; uint32_t heartbeat_ms;
  uint64_t presence_offline_ms; uint32_t max_group_members;
  uint32_t rest_rate_per_minute; uint32_t rest_burst; ...;
} chat_server_settings;
#define CHAT_HTTP_RESPONSE_V1 ...
typedef struct chat_http_response {
  uint32_t version; int status; const char *content_type; const void *body;
  size_t body_len; uint32_t retry_after_s; ...;
} chat_http_response;
#define CHAT_SERVER_CALLBACKS_V1 ...
typedef struct chat_server_callbacks {
  uint32_t version;
  void (*on_session_wants)(void *, chat_server *, chat_session *, void *);
  void (*on_http_response)(void *, chat_server *, void *, const chat_http_response *);
  ...;
} chat_server_callbacks;
#define CHAT_SERVER_MODULES_V1 ...
typedef struct chat_server_modules {
  uint32_t version; const chat_storage_ops *storage;
  const chat_presence_ops *presence; const chat_bus_ops *bus;
  const chat_push_ops *push; const chat_auth_ops *auth; ...;
} chat_server_modules;
chat_err chat_server_new(chat_server **out, const chat_server_settings *settings,
    const chat_server_modules *modules, const chat_server_callbacks *callbacks,
    void *user_data, const void *alloc, chat_errbuf *err);
void chat_server_free(chat_server *srv);
const char *chat_server_errmsg(const chat_server *srv);
chat_err chat_server_get_settings(const chat_server *srv, chat_server_settings *out);
chat_err chat_server_authenticate(chat_server *srv, const char *token, size_t len,
                                  chat_identity *out);
chat_err chat_server_open_session(chat_server *srv, chat_session **out,
    const chat_identity *identity, void *session_user_data, chat_time_ms now);
chat_err chat_session_on_frame(chat_session *sess, const char *json, size_t len,
                               chat_time_ms now);
chat_err chat_session_next_frame(chat_session *sess, const char **json, size_t *len);
#define CHAT_WANT_WRITE ...
#define CHAT_WANT_CLOSE ...
uint32_t chat_session_wants(const chat_session *sess);
uint16_t chat_session_close_code(const chat_session *sess, const char **reason);
void chat_server_close_session(chat_server *srv, chat_session *sess, chat_time_ms now);
chat_time_ms chat_server_next_deadline(const chat_server *srv);
chat_err chat_server_on_timer(chat_server *srv, chat_time_ms now);
chat_err chat_server_run_posted(chat_server *srv, chat_time_ms now);
void chat_server_drain(chat_server *srv, chat_time_ms now);
#define CHAT_HTTP_REQUEST_V1 ...
typedef struct chat_http_request {
  uint32_t version; const char *method; const char *path; const char *query;
  const char *content_type; const void *body; size_t body_len;
  const chat_identity *identity; void *tag; ...;
} chat_http_request;
chat_err chat_server_http(chat_server *srv, const chat_http_request *req,
                          chat_http_response *resp, chat_time_ms now);
chat_err chat_server_http_cancel(chat_server *srv, void *tag);
#define CHAT_SERVER_STATS_V1 ...
typedef struct chat_server_stats {
  uint32_t version; uint64_t sessions_open; uint64_t sessions_opened_total;
  uint64_t frames_in_total; uint64_t frames_out_total;
  uint64_t sends_committed_total; uint64_t commits_total;
  uint64_t deliveries_total; uint64_t push_total; uint64_t push_errors_total;
  uint64_t sessions_expired_total; uint64_t ops_in_flight;
  uint64_t ops_pending_total; ...;
} chat_server_stats;
chat_err chat_server_get_stats(const chat_server *srv, chat_server_stats *out);

/* ---- sodium.h ---- */
typedef struct chat_sodium_key chat_sodium_key;
#define CHAT_SODIUM_TOKEN_BUF ...
chat_err chat_sodium_key_load_or_create(chat_sodium_key **out, const char *path,
                                        bool *created, const void *alloc);
void chat_sodium_key_free(chat_sodium_key *key);
chat_err chat_sodium_token_mint(const chat_sodium_key *key, const char *user_id,
    const char *device_id, int64_t expires_ms, char *out, size_t out_size,
    size_t *out_len);
chat_err chat_sodium_auth_ops(chat_auth_ops *out, const chat_sodium_key *key,
                              const void *alloc);

/* ---- callbacks into Python ---- */
extern "Python" {
  void _py_env_log(void *, int, const char *);
  void _py_env_wake(void *);

  void _py_c_connection(void *, chat_client *, chat_client_state);
  void _py_c_hello(void *, chat_client *, const chat_hello *);
  void _py_c_message(void *, chat_client *, const chat_message *, chat_message_origin);
  void _py_c_ack(void *, chat_client *, const chat_ack *);
  void _py_c_receipt(void *, chat_client *, const chat_receipt *);
  void _py_c_typing(void *, chat_client *, const char *, const char *, bool);
  void _py_c_presence(void *, chat_client *, const chat_presence *);
  void _py_c_state_change(void *, chat_client *, const chat_state_change *);
  void _py_c_conversation(void *, chat_client *, const chat_conversation *);
  void _py_c_error(void *, chat_client *, const chat_client_error *);
  void _py_c_resume_progress(void *, chat_client *, const chat_resume_progress *);
  void _py_c_wants(void *, chat_client *);
  void _py_c_request_done(void *, chat_client *, uint32_t, chat_err);
  void _py_c_auth_required(void *, chat_client *, chat_auth_reason);
  void _py_c_list_message(void *, const chat_client_message *);
  void _py_c_list_conversation(void *, const chat_conversation *);

  void _py_s_session_wants(void *, chat_server *, chat_session *, void *);
  void _py_s_http_response(void *, chat_server *, void *, const chat_http_response *);
  chat_err _py_push_notify(void *, const chat_push_note *);
  void _py_module_destroy(void *);
  chat_err _py_pres_online(void *, const char *, const char *, const char *);
  chat_err _py_pres_offline(void *, const char *, const char *, const char *);
  chat_err _py_pres_locate(void *, const char *, chat_location_sink, void *, chat_op *);
  chat_err _py_pres_set_state(void *, const char *, chat_presence_state, int64_t);
  chat_err _py_pres_get_state(void *, const char *, chat_presence_state *, int64_t *, chat_op *);
  void _py_op_posted(void *, chat_op *);
}
"""

SOURCE = r"""
#include <chat/chat.h>
#include <chat/client.h>
#include <chat/client_store.h>
#include <chat/sqlite.h>
#include <chat/sodium.h>
#include <chat/server.h>
#include <chat/modules.h>
#include <chat/frame.h>
"""

SYSTEM_LIBDIRS = {"/usr/lib", "/usr/lib64", "/lib", "/lib64",
                  "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
                  "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu"}


def _pkg_config(*args: str) -> list[str]:
    out = subprocess.run(["pkg-config", *args, "libchat"], check=True,
                         capture_output=True, text=True).stdout
    return shlex.split(out)


def locate() -> tuple[list[str], list[str]]:
    """(include dirs, library dirs) of the libchat to build against."""
    inc = os.environ.get("LIBCHAT_INCLUDE_DIR")
    lib = os.environ.get("LIBCHAT_LIB_DIR")
    if inc and lib:
        return [inc], [lib]
    try:
        cflags = _pkg_config("--cflags-only-I")
        libs = _pkg_config("--libs-only-L")
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(
            "libchat not found: install it (meson install) and make "
            "`pkg-config libchat` work (PKG_CONFIG_PATH; scripts/stage.sh "
            "prints it for a build of the source tree), or set "
            "LIBCHAT_INCLUDE_DIR and LIBCHAT_LIB_DIR") from e
    return ([f[2:] for f in cflags if f.startswith("-I")],
            [f[2:] for f in libs if f.startswith("-L")])


def make_ffi() -> FFI:
    include_dirs, library_dirs = locate()
    bundle = os.environ.get("LIBCHAT_BUNDLE", "") not in ("", "0")
    if bundle:
        rpath = ["$ORIGIN"]
    else:
        rpath = [d for d in library_dirs
                 if os.path.normpath(d) not in SYSTEM_LIBDIRS]
    ffi = FFI()
    ffi.cdef(CDEF)
    ffi.set_source(
        "libchat._native", SOURCE,
        libraries=["chat"],
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        extra_link_args=["-Wl,-rpath," + r for r in rpath],
        extra_compile_args=["-Wno-unused-parameter"])
    return ffi


ffibuilder = make_ffi()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

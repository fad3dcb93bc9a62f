/* C side of the Go binding; see glue.h. Every callback libchat makes lands
 * here and is handed to an exported Go function with the cgo.Handle it
 * was registered with (a uintptr_t, so no Go pointer crosses into C). */
#include "glue.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "_cgo_export.h"

/* ------------------------------------------------------------------ env */

static chat_env sys_env;
static chat_err sys_env_err = CHAT_ERR_FATAL;
static pthread_once_t sys_env_once = PTHREAD_ONCE_INIT;

static void sys_env_init(void) { sys_env_err = chat_env_system(&sys_env); }

chat_err glue_sys_env(chat_env *out) {
  pthread_once(&sys_env_once, sys_env_init);
  if (sys_env_err != CHAT_OK)
    return sys_env_err;
  *out = sys_env;
  return CHAT_OK;
}

static int64_t env_wall_ms(void *ud) {
  (void)ud;
  return sys_env.wall_ms(sys_env.user_data);
}

static void env_random(void *ud, uint8_t *out, size_t n) {
  (void)ud;
  sys_env.random(sys_env.user_data, out, n);
}

static void env_log(void *ud, int level, const char *msg) {
  goLog((uintptr_t)ud, level, (char *)msg);
}

static void env_wake(void *ud) { goServerWake((uintptr_t)ud); }

/* --------------------------------------------------------------- client */

static void cl_connection(void *ud, chat_client *c, chat_client_state s) {
  (void)c;
  goClientConnection((uintptr_t)ud, (int)s);
}
static void cl_hello(void *ud, chat_client *c, const chat_hello *h) {
  (void)c;
  goClientHello((uintptr_t)ud, (chat_hello *)h);
}
static void cl_message(void *ud, chat_client *c, const chat_message *m,
                       chat_message_origin o) {
  (void)c;
  goClientMessage((uintptr_t)ud, (chat_message *)m, (int)o);
}
static void cl_ack(void *ud, chat_client *c, const chat_ack *a) {
  (void)c;
  goClientAck((uintptr_t)ud, (chat_ack *)a);
}
static void cl_receipt(void *ud, chat_client *c, const chat_receipt *r) {
  (void)c;
  goClientReceipt((uintptr_t)ud, (chat_receipt *)r);
}
static void cl_typing(void *ud, chat_client *c, const char *conv,
                      const char *user, bool is_typing) {
  (void)c;
  goClientTyping((uintptr_t)ud, (char *)conv, (char *)user, is_typing);
}
static void cl_presence(void *ud, chat_client *c, const chat_presence *p) {
  (void)c;
  goClientPresence((uintptr_t)ud, (chat_presence *)p);
}
static void cl_state_change(void *ud, chat_client *c,
                            const chat_state_change *s) {
  (void)c;
  goClientStateChange((uintptr_t)ud, (chat_state_change *)s);
}
static void cl_conversation(void *ud, chat_client *c,
                            const chat_conversation *conv) {
  (void)c;
  goClientConversation((uintptr_t)ud, (chat_conversation *)conv);
}
static void cl_error(void *ud, chat_client *c, const chat_client_error *e) {
  (void)c;
  goClientError((uintptr_t)ud, (chat_client_error *)e);
}
static void cl_resume(void *ud, chat_client *c,
                      const chat_resume_progress *p) {
  (void)c;
  goClientResume((uintptr_t)ud, (chat_resume_progress *)p);
}
static void cl_request_done(void *ud, chat_client *c, uint32_t id,
                            chat_err r) {
  (void)c;
  goClientRequestDone((uintptr_t)ud, id, (int)r);
}
static void cl_auth_required(void *ud, chat_client *c, chat_auth_reason r) {
  (void)c;
  goClientAuthRequired((uintptr_t)ud, (int)r);
}

chat_err glue_client_new(chat_client **out, const char *store_path,
                         const chat_client_settings *s, uintptr_t h,
                         chat_errbuf *err) {
  chat_client_store_ops store;
  chat_err e = chat_sqlite_client_store_open(&store, store_path, NULL, err);
  if (e != CHAT_OK)
    return e;
  static const chat_client_callbacks cb = {
      .version = CHAT_CLIENT_CALLBACKS_V1,
      .on_connection = cl_connection,
      .on_hello = cl_hello,
      .on_message = cl_message,
      .on_ack = cl_ack,
      .on_receipt = cl_receipt,
      .on_typing = cl_typing,
      .on_presence = cl_presence,
      .on_state_change = cl_state_change,
      .on_conversation = cl_conversation,
      .on_error = cl_error,
      .on_resume_progress = cl_resume,
      .on_request_done = cl_request_done,
      .on_auth_required = cl_auth_required,
  };
  e = chat_client_new(out, s, &store, &cb, (void *)h, NULL, err);
  if (e != CHAT_OK && store.destroy)
    store.destroy(store.self);
  return e;
}

static void list_msg(void *ud, const chat_client_message *m) {
  goListMessage((uintptr_t)ud, (chat_client_message *)m);
}

chat_err glue_client_list_messages(chat_client *c, const char *conv,
                                   uint64_t before, uint32_t limit,
                                   uintptr_t h) {
  return chat_client_list_messages(c, conv, before, limit, list_msg,
                                   (void *)h);
}

static void list_conv(void *ud, const chat_conversation *conv) {
  goListConversation((uintptr_t)ud, (chat_conversation *)conv);
}

chat_err glue_client_list_conversations(chat_client *c, uintptr_t h) {
  return chat_client_list_conversations(c, list_conv, (void *)h);
}

/* --------------------------------------------------------------- server */

static void sv_wants(void *ud, chat_server *srv, chat_session *sess,
                     void *sess_ud) {
  (void)srv, (void)sess;
  goSessionWants((uintptr_t)ud, (uintptr_t)sess_ud);
}

static void sv_http_response(void *ud, chat_server *srv, void *tag,
                             const chat_http_response *resp) {
  (void)srv;
  goHTTPResponse((uintptr_t)ud, (uintptr_t)tag, (chat_http_response *)resp);
}

static chat_err push_notify(void *self, const chat_push_note *note) {
  return (chat_err)goPushNotify((uintptr_t)self, (chat_push_note *)note);
}

/* A presence call in flight: the op and where its answer goes. Allocated
 * here, freed when it completes (or by the server's free, never: an op
 * still pending at chat_server_free() is the server's, and this record is
 * freed by the Go side's forget). */
typedef struct glue_pop {
  uintptr_t srv; /* the server's handle */
  chat_op *op;
  chat_location_sink emit;
  void *ctx;
  chat_presence_state *state;
  int64_t *last_active;
} glue_pop;

static chat_err pr_online(void *self, const char *user, const char *device,
                          const char *gw) {
  goPresenceOnline((uintptr_t)self, (char *)user, (char *)device, (char *)gw,
                   1);
  return CHAT_OK;
}
static chat_err pr_offline(void *self, const char *user, const char *device,
                           const char *gw) {
  goPresenceOnline((uintptr_t)self, (char *)user, (char *)device, (char *)gw,
                   0);
  return CHAT_OK;
}
static chat_err pr_locate(void *self, const char *user,
                          chat_location_sink emit, void *ctx, chat_op *op) {
  glue_pop *p = calloc(1, sizeof *p);
  if (!p)
    return CHAT_ERR_NOMEM;
  p->srv = (uintptr_t)self;
  p->op = op;
  p->emit = emit;
  p->ctx = ctx;
  goPresenceLocate((uintptr_t)self, (char *)user, (uintptr_t)p);
  return CHAT_PENDING;
}
static chat_err pr_set_state(void *self, const char *user,
                             chat_presence_state st, int64_t last_active) {
  goPresenceSetState((uintptr_t)self, (char *)user, (int)st, last_active);
  return CHAT_OK;
}
static chat_err pr_get_state(void *self, const char *user,
                             chat_presence_state *st, int64_t *last_active,
                             chat_op *op) {
  glue_pop *p = calloc(1, sizeof *p);
  if (!p)
    return CHAT_ERR_NOMEM;
  p->srv = (uintptr_t)self;
  p->op = op;
  p->state = st;
  p->last_active = last_active;
  goPresenceGetState((uintptr_t)self, (char *)user, (uintptr_t)p);
  return CHAT_PENDING;
}

void glue_locate_emit(uintptr_t cookie, const char *gw, const char *dev) {
  glue_pop *p = (glue_pop *)cookie;
  p->emit(p->ctx, gw, dev);
}

void glue_locate_complete(uintptr_t cookie, chat_err status) {
  glue_pop *p = (glue_pop *)cookie;
  chat_op *op = p->op;
  free(p);
  chat_op_complete(op, status);
}

void glue_state_complete(uintptr_t cookie, chat_err status, int state,
                         int64_t last_active) {
  glue_pop *p = (glue_pop *)cookie;
  chat_op *op = p->op;
  if (status == CHAT_OK) {
    *p->state = (chat_presence_state)state;
    *p->last_active = last_active;
  }
  free(p);
  chat_op_complete(op, status);
}

static void op_posted(void *user_data, chat_op *op) {
  (void)op;
  glue_pop *p = user_data;
  goOpPosted(p->srv, (uintptr_t)p);
}

void glue_op_post(uintptr_t cookie) {
  glue_pop *p = (glue_pop *)cookie;
  chat_op_post(p->op, op_posted, p);
}

static chat_err bus_publish(void *self, const char *gw, const char *msg,
                            size_t len) {
  goBusPublish((uintptr_t)self, (char *)gw, (char *)msg, len);
  return CHAT_OK;
}

chat_err glue_server_new(chat_server **out, chat_server_settings *s,
                         const glue_server_opts *o, uintptr_t h,
                         chat_errbuf *err) {
  chat_env env;
  chat_err e = glue_sys_env(&env);
  if (e != CHAT_OK) {
    if (err)
      snprintf(err->msg, sizeof err->msg, "libsodium failed to initialise");
    return e;
  }
  env.user_data = (void *)h;
  env.wall_ms = env_wall_ms;
  env.random = env_random;
  env.log = env_log;
  env.wake = env_wake;
  s->env = &env;

  chat_sqlite_options so = {.version = CHAT_SQLITE_OPTIONS_V1,
                            .sync = o->sync_normal ? CHAT_SQLITE_SYNC_NORMAL
                                                   : CHAT_SQLITE_SYNC_FULL};
  chat_storage_ops store;
  e = chat_sqlite_storage_open(&store, o->store_path, &so, NULL, err);
  if (e != CHAT_OK)
    return e;
  chat_push_ops push = {.version = CHAT_PUSH_OPS_V1,
                        .self = (void *)h,
                        .notify = push_notify};
  chat_presence_ops pres = {.version = CHAT_PRESENCE_OPS_V1,
                            .self = (void *)h,
                            .device_online = pr_online,
                            .device_offline = pr_offline,
                            .locate = pr_locate,
                            .set_state = pr_set_state,
                            .get_state = pr_get_state};
  chat_bus_ops bus = {.version = CHAT_BUS_OPS_V1,
                      .self = (void *)h,
                      .publish = bus_publish};
  chat_server_modules m = {.version = CHAT_SERVER_MODULES_V1,
                           .storage = &store,
                           .presence = o->presence ? &pres : NULL,
                           .bus = o->bus ? &bus : NULL,
                           .push = o->push ? &push : NULL,
                           /* Tokens are checked by the Go auth hook on
                            * the request's goroutine, before anything
                            * reaches the server: no auth module. */
                           .auth = NULL};
  static const chat_server_callbacks cb = {
      .version = CHAT_SERVER_CALLBACKS_V1,
      .on_session_wants = sv_wants,
      .on_http_response = sv_http_response};
  e = chat_server_new(out, s, &m, &cb, (void *)h, NULL, err);
  if (e != CHAT_OK)
    store.destroy(store.self);
  s->env = NULL;
  return e;
}

chat_err glue_open_session(chat_server *srv, chat_session **out,
                           const chat_identity *id, uintptr_t ud,
                           chat_time_ms now) {
  return chat_server_open_session(srv, out, id, (void *)ud, now);
}

uintptr_t glue_session_user_data(const chat_session *sess) {
  return (uintptr_t)chat_session_user_data(sess);
}

chat_err glue_server_http(chat_server *srv, chat_http_request *rq,
                          uintptr_t tag, chat_http_response *resp,
                          chat_time_ms now) {
  rq->tag = (void *)tag;
  return chat_server_http(srv, rq, resp, now);
}

chat_err glue_server_http_cancel(chat_server *srv, uintptr_t tag) {
  return chat_server_http_cancel(srv, (void *)tag);
}

/* --------------------------------------------------------------- tokens */

chat_err glue_auth_verify(chat_auth_ops *ops, const char *token, size_t len,
                          int64_t now_ms, chat_identity *out) {
  return ops->verify(ops->self, token, len, now_ms, out);
}

void glue_auth_destroy(chat_auth_ops *ops) {
  if (ops->destroy)
    ops->destroy(ops->self);
}

const chat_frame *glue_frame_ptr(const chat_frame **pp) { return *pp; }

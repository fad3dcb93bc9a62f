/* The JNI glue between org.libchat (Java) and the sans-I/O chat_client.
 *
 * Built against libchat's public headers only (pkg-config libchat). Every
 * native method is called on one Java thread per client, the client's
 * "core" thread (org.libchat.Core owns a single-thread executor), so the
 * chat_client is touched from one thread only, as include/chat/client.h
 * requires; the JNIEnv of the call in progress is kept in the handle for
 * the callbacks that fire inside it.
 *
 * Java is called back in two ways, both on the core thread, inside a
 * native call: the client's events (NativeEvents.onMessage, ...) and the
 * transport work the client wants (NativeEvents.connect/write/closeSocket/
 * request), which pump() hands over at the end of every entry point. The
 * Java side only records or queues in those methods; it never calls a
 * native method from them (no re-entry into the client).
 *
 * References: each client holds one global reference (its NativeEvents);
 * the classes and method ids cached by JNI_OnLoad hold a few more for the
 * life of the library. Every callback runs inside its own local frame, so
 * a native call that fires thousands of events never piles up local
 * references. liveGlobalRefs() and liveHandles() count what clients hold,
 * for the tests that check nothing is left after close().
 *
 * Strings: ids are ASCII by the protocol's id rules and cross as Java
 * strings; anything else (bodies, names, frames, messages) crosses as UTF-8
 * bytes and is decoded by Java, since JNI's own string calls speak
 * "modified UTF-8", which differs for U+0000 and characters outside the
 * BMP. */
#include <jni.h>

#include <chat/client.h>
#include <chat/sqlite.h>

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PKG "org/libchat/"

/* ---- what JNI_OnLoad caches ---- */

static struct {
  jclass events; /* org.libchat.NativeEvents */
  jmethodID on_connection, on_hello, on_message, on_ack, on_receipt,
      on_typing, on_presence, on_state_change, on_conversation, on_error,
      on_resume_progress, on_request_done, on_auth_required;
  jmethodID connect, write, close_socket, request;
  jclass collector; /* org.libchat.NativeEvents$Collector */
  jmethodID col_message, col_conversation;
  jclass message; /* org.libchat.Message */
  jmethodID message_new;
  jclass conversation; /* org.libchat.Conversation */
  jmethodID conversation_new;
  jclass exception; /* org.libchat.ChatException */
  jmethodID exception_new;
  jclass string;
  jclass native; /* org.libchat.NativeCore */
  jmethodID utf8;
} J;

static atomic_long live_refs;    /* global references held by clients */
static atomic_long live_handles; /* jchat structs not yet freed */

typedef struct jchat {
  chat_client *c;
  JNIEnv *env;   /* the env of the native call in progress */
  jobject sink;  /* global: the client's NativeEvents */
  bool in_pump;
  bool dead;     /* a fatal error: only free() from now on */
} jchat;

static jobject ref_new(JNIEnv *env, jobject o) {
  jobject g = (*env)->NewGlobalRef(env, o);
  if (g)
    atomic_fetch_add(&live_refs, 1);
  return g;
}

static void ref_del(JNIEnv *env, jobject g) {
  if (!g)
    return;
  (*env)->DeleteGlobalRef(env, g);
  atomic_fetch_sub(&live_refs, 1);
}

/* A Java exception left by a callback is the Java side's bug (NativeEvents
 * catches everything): clear it so the next JNI call is legal, and say so
 * once on stderr rather than unwinding through the C client. */
static void swallow(JNIEnv *env) {
  if ((*env)->ExceptionCheck(env)) {
    (*env)->ExceptionDescribe(env); /* prints and clears */
  }
}

/* ---- strings ---- */

/* A Java string of n UTF-8 bytes; NULL for a NULL p. ASCII (no NUL) goes
 * through NewStringUTF, anything else through Java's UTF-8 decoder. */
static jstring jstr_n(JNIEnv *env, const char *p, size_t n) {
  if (!p)
    return NULL;
  bool ascii = true;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)p[i] == 0 || (unsigned char)p[i] > 0x7f) {
      ascii = false;
      break;
    }
  if (ascii && p[n] == '\0')
    return (*env)->NewStringUTF(env, p);
  if (n > INT32_MAX)
    return NULL;
  jbyteArray b = (*env)->NewByteArray(env, (jsize)n);
  if (!b)
    return NULL;
  (*env)->SetByteArrayRegion(env, b, 0, (jsize)n, (const jbyte *)p);
  jstring s = (jstring)(*env)->CallStaticObjectMethod(env, J.native, J.utf8, b);
  swallow(env);
  (*env)->DeleteLocalRef(env, b);
  return s;
}

static jstring jstr(JNIEnv *env, const char *p) {
  return p ? jstr_n(env, p, strlen(p)) : NULL;
}

static jbyteArray jbytes(JNIEnv *env, const char *p, size_t n) {
  if (!p || n > INT32_MAX)
    return NULL;
  jbyteArray b = (*env)->NewByteArray(env, (jsize)n);
  if (b && n)
    (*env)->SetByteArrayRegion(env, b, 0, (jsize)n, (const jbyte *)p);
  return b;
}

static jobjectArray jstrs(JNIEnv *env, const char *const *v, size_t n) {
  if (!v || n > INT32_MAX)
    return NULL;
  jobjectArray a = (*env)->NewObjectArray(env, (jsize)n, J.string, NULL);
  if (!a)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    jstring s = jstr(env, v[i]);
    (*env)->SetObjectArrayElement(env, a, (jsize)i, s);
    (*env)->DeleteLocalRef(env, s);
  }
  return a;
}

/* A NUL-terminated malloc'd copy of a Java byte[] (UTF-8 made by Java);
 * *len its length. NULL for a NULL array (or out of memory, *oom set). */
static char *cbytes(JNIEnv *env, jbyteArray b, size_t *len, bool *oom) {
  *len = 0;
  if (!b)
    return NULL;
  jsize n = (*env)->GetArrayLength(env, b);
  char *p = malloc((size_t)n + 1);
  if (!p) {
    *oom = true;
    return NULL;
  }
  (*env)->GetByteArrayRegion(env, b, 0, n, (jbyte *)p);
  p[n] = '\0';
  *len = (size_t)n;
  return p;
}

/* Java strings that are ids (ASCII by rule; anything else is refused by
 * the client with CHAT_ERR_INVAL, whatever modified UTF-8 made of it). */
typedef struct jutf {
  jstring s;
  const char *p;
} jutf;

static jutf utf_get(JNIEnv *env, jstring s) {
  jutf u = {s, NULL};
  if (s)
    u.p = (*env)->GetStringUTFChars(env, s, NULL);
  return u;
}

static void utf_put(JNIEnv *env, jutf *u) {
  if (u->p)
    (*env)->ReleaseStringUTFChars(env, u->s, u->p);
  u->p = NULL;
}

/* ---- exceptions ---- */

static void throw_rc(JNIEnv *env, chat_err rc, const char *detail) {
  if ((*env)->ExceptionCheck(env))
    return;
  jstring name = (*env)->NewStringUTF(env, chat_err_name(rc));
  jstring msg = jstr(env, detail && *detail ? detail : chat_strerror(rc));
  jobject e = (*env)->NewObject(env, J.exception, J.exception_new, (jint)rc,
                                name, msg);
  if ((*env)->ExceptionCheck(env))
    return; /* that exception (OOM) is the one to see */
  if (e)
    (*env)->Throw(env, (jthrowable)e);
  (*env)->DeleteLocalRef(env, e);
  (*env)->DeleteLocalRef(env, name);
  (*env)->DeleteLocalRef(env, msg);
}

/* Throw for a failed call on the client (its errmsg as the detail). */
static bool failed(jchat *h, chat_err rc) {
  if (rc >= 0)
    return false;
  if (chat_err_is_fatal(rc))
    h->dead = true;
  throw_rc(h->env, rc, chat_client_errmsg(h->c));
  return true;
}

static jchat *H(JNIEnv *env, jlong handle) {
  jchat *h = (jchat *)(intptr_t)handle;
  if (!h) {
    throw_rc(env, CHAT_ERR_STATE, "the client is closed");
    return NULL;
  }
  if (h->dead) {
    throw_rc(env, CHAT_ERR_FATAL, "the client failed fatally; close it");
    return NULL;
  }
  h->env = env;
  return h;
}

/* ---- objects for Java ---- */

static jobject jmessage(JNIEnv *env, const chat_message *m) {
  if (!m)
    return NULL;
  jstring conv = jstr(env, m->conversation_id);
  jstring sender = jstr(env, m->sender_id);
  jbyteArray body = jbytes(env, m->body.ptr ? m->body.ptr : "", m->body.len);
  jstring cmid = jstr(env, m->client_msg_id);
  jobjectArray media = jstrs(env, m->media_refs, m->n_media_refs);
  jobject o = (*env)->CallStaticObjectMethod(
      env, J.message, J.message_new, (jlong)m->message_id, conv, sender, body,
      (jlong)m->server_ts, cmid, m->has_reply_to ? (jlong)m->reply_to : -1,
      (jint)m->body_type, m->has_target_id ? (jlong)m->target_id : -1,
      (jint)m->sender_kind, m->has_edited_ts ? (jlong)m->edited_ts : INT64_MIN,
      (jboolean)m->deleted, media);
  swallow(env);
  (*env)->DeleteLocalRef(env, conv);
  (*env)->DeleteLocalRef(env, sender);
  (*env)->DeleteLocalRef(env, body);
  (*env)->DeleteLocalRef(env, cmid);
  (*env)->DeleteLocalRef(env, media);
  return o;
}

static jobject jconversation(JNIEnv *env, const chat_conversation *cv) {
  jstring id = jstr(env, cv->conversation_id);
  jbyteArray name = cv->name.ptr ? jbytes(env, cv->name.ptr, cv->name.len)
                                 : NULL;
  jobjectArray members = jstrs(env, cv->members, cv->n_members);
  jobjectArray admins = jstrs(env, cv->admins, cv->n_admins);
  jobject last = jmessage(env, cv->last_message);
  jobject o = (*env)->CallStaticObjectMethod(
      env, J.conversation, J.conversation_new, id, (jint)cv->type, name,
      members, admins, last, (jint)cv->unread_count,
      cv->has_last_read ? (jlong)cv->last_read_message_id : -1);
  swallow(env);
  (*env)->DeleteLocalRef(env, id);
  (*env)->DeleteLocalRef(env, name);
  (*env)->DeleteLocalRef(env, members);
  (*env)->DeleteLocalRef(env, admins);
  (*env)->DeleteLocalRef(env, last);
  return o;
}

/* ---- client callbacks: each in its own local frame ---- */

#define ENTER(h)                                                               \
  JNIEnv *env = (h)->env;                                                      \
  if (!env || (*env)->PushLocalFrame(env, 32) != 0) {                          \
    swallow(env);                                                              \
    return;                                                                    \
  }
#define LEAVE()                                                                \
  swallow(env);                                                                \
  (*env)->PopLocalFrame(env, NULL)

static void cb_connection(void *ud, chat_client *c, chat_client_state s) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  (*env)->CallVoidMethod(env, h->sink, J.on_connection, (jint)s);
  LEAVE();
}

static void cb_hello(void *ud, chat_client *c, const chat_hello *hl) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  (*env)->CallVoidMethod(env, h->sink, J.on_hello, jstr(env, hl->user_id),
                         jstr(env, hl->device_id), jstr(env, hl->session_id),
                         (jlong)hl->server_ts, (jint)hl->heartbeat_ms,
                         (jint)hl->limits.max_body_bytes);
  LEAVE();
}

static void cb_message(void *ud, chat_client *c, const chat_message *m,
                       chat_message_origin origin) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  jobject jm = jmessage(env, m);
  if (jm)
    (*env)->CallVoidMethod(env, h->sink, J.on_message, jm, (jint)origin);
  LEAVE();
}

static void cb_ack(void *ud, chat_client *c, const chat_ack *a) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  (*env)->CallVoidMethod(env, h->sink, J.on_ack, jstr(env, a->client_msg_id),
                         (jlong)a->message_id, (jlong)a->server_ts,
                         (jboolean)a->duplicate);
  LEAVE();
}

static void cb_receipt(void *ud, chat_client *c, const chat_receipt *r) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  (*env)->CallVoidMethod(env, h->sink, J.on_receipt,
                         jstr(env, r->conversation_id), (jlong)r->message_id,
                         (jint)r->state, jstr(env, r->member_id),
                         (jboolean)r->has_counts, (jint)r->delivered_count,
                         (jint)r->read_count);
  LEAVE();
}

static void cb_typing(void *ud, chat_client *c, const char *conv,
                      const char *user, bool is_typing) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  (*env)->CallVoidMethod(env, h->sink, J.on_typing, jstr(env, conv),
                         jstr(env, user), (jboolean)is_typing);
  LEAVE();
}

static void cb_presence(void *ud, chat_client *c, const chat_presence *p) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  (*env)->CallVoidMethod(env, h->sink, J.on_presence, jstr(env, p->user_id),
                         (jint)p->state,
                         p->has_last_active ? (jlong)p->last_active_ts
                                            : INT64_MIN);
  LEAVE();
}

static void cb_state_change(void *ud, chat_client *c,
                            const chat_state_change *s) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  (*env)->CallVoidMethod(env, h->sink, J.on_state_change,
                         jstr(env, s->conversation_id),
                         (jlong)s->last_read_message_id);
  LEAVE();
}

static void cb_conversation(void *ud, chat_client *c,
                            const chat_conversation *cv) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  jobject o = jconversation(env, cv);
  if (o)
    (*env)->CallVoidMethod(env, h->sink, J.on_conversation, o);
  LEAVE();
}

static void cb_error(void *ud, chat_client *c, const chat_client_error *e) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  const chat_error_frame *w = e->wire;
  jstring code = NULL;
  jstring wmsg = NULL;
  if (w) {
    code = w->code ? jstr(env, w->code)
                   : jstr(env, chat_wire_error_str(w->wire));
    if (w->message.ptr)
      wmsg = jstr_n(env, w->message.ptr, w->message.len);
  }
  (*env)->CallVoidMethod(
      env, h->sink, J.on_error, (jint)e->err,
      (*env)->NewStringUTF(env, chat_err_name(e->err)), code,
      jstr(env, e->client_msg_id), jstr(env, e->conversation_id),
      wmsg ? wmsg : jstr(env, e->message), (jint)e->http_status,
      (jboolean)e->retrying,
      w && w->has_retry_after ? (jlong)w->retry_after_ms : -1);
  LEAVE();
}

static void cb_resume_progress(void *ud, chat_client *c,
                               const chat_resume_progress *p) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  (*env)->CallVoidMethod(env, h->sink, J.on_resume_progress,
                         jstr(env, p->conversation_id), (jint)p->gaps_open,
                         (jint)p->messages, (jboolean)p->resumed,
                         (jboolean)p->complete);
  LEAVE();
}

static void cb_request_done(void *ud, chat_client *c, uint32_t id,
                            chat_err result) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  (*env)->CallVoidMethod(env, h->sink, J.on_request_done, (jint)id,
                         (jint)result,
                         result == CHAT_OK
                             ? NULL
                             : jstr(env, chat_client_errmsg(c)));
  LEAVE();
}

static void cb_auth_required(void *ud, chat_client *c, chat_auth_reason r) {
  (void)c;
  jchat *h = ud;
  ENTER(h);
  (*env)->CallVoidMethod(env, h->sink, J.on_auth_required, (jint)r);
  LEAVE();
}

/* ---- the transport pump ---- */

static jstring token_of(jchat *h) {
  const char *t;
  size_t n;
  if (chat_client_token(h->c, &t, &n) != CHAT_OK)
    return NULL;
  return jstr_n(h->env, t, n);
}

/* Hand the transport everything the client wants now. Java only starts or
 * queues work here; its answers come back later as native calls. A fatal
 * return of the client marks the handle dead (Java then closes it). */
static void pump(jchat *h, jlong now) {
  JNIEnv *env = h->env;
  if (h->in_pump || h->dead)
    return;
  h->in_pump = true;
  for (int round = 0; round < 8 && !h->dead; round++) {
    uint32_t w = chat_client_wants(h->c);
    bool again = false;
    if (w & CHAT_CLIENT_WANT_CONNECT) {
      if (chat_client_on_connecting(h->c, (chat_time_ms)now) == CHAT_OK) {
        jstring tok = token_of(h);
        (*env)->CallVoidMethod(env, h->sink, J.connect, tok);
        swallow(env);
        (*env)->DeleteLocalRef(env, tok);
      }
      again = true;
    }
    if (w & (CHAT_CLIENT_WANT_WRITE | CHAT_CLIENT_WANT_CLOSE)) {
      const char *json;
      size_t n;
      while (chat_client_next_frame(h->c, &json, &n) == CHAT_OK) {
        jbyteArray b = jbytes(env, json, n);
        if (!b) {
          swallow(env);
          break;
        }
        (*env)->CallVoidMethod(env, h->sink, J.write, b);
        swallow(env);
        (*env)->DeleteLocalRef(env, b);
      }
    }
    if (w & CHAT_CLIENT_WANT_CLOSE) {
      /* Java closes (or abandons) the socket and forgets it at once, so the
       * client hears of the close now; nothing from that socket reaches
       * the client afterwards. */
      (*env)->CallVoidMethod(env, h->sink, J.close_socket);
      swallow(env);
      if (chat_err_is_fatal(
              chat_client_on_close(h->c, 1000, (chat_time_ms)now)))
        h->dead = true;
      again = true;
    }
    if (w & CHAT_CLIENT_WANT_REST) {
      chat_client_request rq = {.version = CHAT_CLIENT_REQUEST_V1};
      while (chat_client_next_request(h->c, &rq) == CHAT_OK) {
        jstring method = jstr(env, rq.method);
        jstring path = jstr(env, rq.path);
        jbyteArray body = rq.body ? jbytes(env, rq.body, rq.body_len) : NULL;
        jstring tok = token_of(h);
        (*env)->CallVoidMethod(env, h->sink, J.request, (jint)rq.id, method,
                               path, body, tok);
        swallow(env);
        (*env)->DeleteLocalRef(env, method);
        (*env)->DeleteLocalRef(env, path);
        (*env)->DeleteLocalRef(env, body);
        (*env)->DeleteLocalRef(env, tok);
      }
      again = true;
    }
    if (!again)
      break;
  }
  h->in_pump = false;
}

/* The end of every entry point that may change what the client wants. */
static jint done(jchat *h, chat_err rc, jlong now) {
  if (chat_err_is_fatal(rc))
    h->dead = true;
  pump(h, now);
  return (jint)rc;
}

/* ---- lifecycle ---- */

JNIEXPORT jint JNICALL JNI_OnLoad(JavaVM *vm, void *reserved) {
  (void)reserved;
  JNIEnv *env;
  if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_6) != JNI_OK)
    return JNI_ERR;
#define CLASS(field, name)                                                     \
  do {                                                                         \
    jclass k = (*env)->FindClass(env, name);                                   \
    if (!k)                                                                    \
      return JNI_ERR;                                                          \
    J.field = (jclass)(*env)->NewGlobalRef(env, k);                            \
    (*env)->DeleteLocalRef(env, k);                                            \
    if (!J.field)                                                              \
      return JNI_ERR;                                                          \
  } while (0)
#define METHOD(field, cls, name, sig)                                          \
  do {                                                                         \
    J.field = (*env)->GetMethodID(env, J.cls, name, sig);                      \
    if (!J.field)                                                              \
      return JNI_ERR;                                                          \
  } while (0)
#define STATIC(field, cls, name, sig)                                          \
  do {                                                                         \
    J.field = (*env)->GetStaticMethodID(env, J.cls, name, sig);                \
    if (!J.field)                                                              \
      return JNI_ERR;                                                          \
  } while (0)
#define S "Ljava/lang/String;"
  CLASS(events, PKG "NativeEvents");
  CLASS(collector, PKG "NativeEvents$Collector");
  CLASS(message, PKG "Message");
  CLASS(conversation, PKG "Conversation");
  CLASS(exception, PKG "ChatException");
  CLASS(string, "java/lang/String");
  CLASS(native, PKG "NativeCore");
  METHOD(on_connection, events, "onConnection", "(I)V");
  METHOD(on_hello, events, "onHello", "(" S S S "JII)V");
  METHOD(on_message, events, "onMessage", "(L" PKG "Message;I)V");
  METHOD(on_ack, events, "onAck", "(" S "JJZ)V");
  METHOD(on_receipt, events, "onReceipt", "(" S "JI" S "ZII)V");
  METHOD(on_typing, events, "onTyping", "(" S S "Z)V");
  METHOD(on_presence, events, "onPresence", "(" S "IJ)V");
  METHOD(on_state_change, events, "onStateChange", "(" S "J)V");
  METHOD(on_conversation, events, "onConversation",
         "(L" PKG "Conversation;)V");
  METHOD(on_error, events, "onError", "(I" S S S S S "IZJ)V");
  METHOD(on_resume_progress, events, "onResumeProgress", "(" S "IIZZ)V");
  METHOD(on_request_done, events, "onRequestDone", "(II" S ")V");
  METHOD(on_auth_required, events, "onAuthRequired", "(I)V");
  METHOD(connect, events, "connect", "(" S ")V");
  METHOD(write, events, "write", "([B)V");
  METHOD(close_socket, events, "closeSocket", "()V");
  METHOD(request, events, "request", "(I" S S "[B" S ")V");
  METHOD(col_message, collector, "message", "(L" PKG "Message;ZZI)V");
  METHOD(col_conversation, collector, "conversation",
         "(L" PKG "Conversation;)V");
  STATIC(message_new, message, "fromNative",
         "(J" S S "[BJ" S "JIJIJZ[" S ")L" PKG "Message;");
  STATIC(conversation_new, conversation, "fromNative",
         "(" S "I[B[" S "[" S "L" PKG "Message;IJ)L" PKG "Conversation;");
  METHOD(exception_new, exception, "<init>", "(I" S S ")V");
  STATIC(utf8, native, "utf8", "([B)" S);
#undef S
#undef CLASS
#undef METHOD
#undef STATIC
  return JNI_VERSION_1_6;
}

JNIEXPORT void JNICALL JNI_OnUnload(JavaVM *vm, void *reserved) {
  (void)reserved;
  JNIEnv *env;
  if ((*vm)->GetEnv(vm, (void **)&env, JNI_VERSION_1_6) != JNI_OK)
    return;
  jclass *all[] = {&J.events,  &J.collector, &J.message, &J.conversation,
                   &J.exception, &J.string,  &J.native};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (*all[i]) {
      (*env)->DeleteGlobalRef(env, *all[i]);
      *all[i] = NULL;
    }
}

#define FN(name) Java_org_libchat_NativeCore_##name

/* opts: receipt_interval_ms, hello_timeout_ms, backoff base, cap, floor
 * (-1: default), stable_after_ms, rest_page_limit, typing_idle_ms,
 * typing_expire_ms; 0 means the default for each. */
JNIEXPORT jlong JNICALL FN(create)(JNIEnv *env, jclass k, jobject sink,
                                   jstring store_path, jintArray opts,
                                   jboolean manual_delivered) {
  (void)k;
  jint o[9] = {0};
  if (opts) {
    jsize n = (*env)->GetArrayLength(env, opts);
    (*env)->GetIntArrayRegion(env, opts, 0, n < 9 ? n : 9, o);
  }
  chat_env cenv;
  chat_err rc = chat_env_system(&cenv);
  if (rc != CHAT_OK) {
    throw_rc(env, rc, "chat_env_system failed");
    return 0;
  }
  chat_backoff bo = chat_backoff_default();
  bo.version = CHAT_BACKOFF_V1;
  if (o[2] > 0)
    bo.base_ms = (uint32_t)o[2];
  if (o[3] > 0)
    bo.cap_ms = (uint32_t)o[3];
  if (o[4] >= 0 && opts && (*env)->GetArrayLength(env, opts) > 4)
    bo.floor_ms = (uint32_t)o[4];
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1,
                            .env = &cenv,
                            .backoff = &bo,
                            .receipt_interval_ms = (uint32_t)o[0],
                            .hello_timeout_ms = (uint32_t)o[1],
                            .stable_after_ms = (uint32_t)o[5],
                            .rest_page_limit = (uint32_t)o[6],
                            .typing_idle_ms = (uint32_t)o[7],
                            .typing_expire_ms = (uint32_t)o[8],
                            .manual_delivered = manual_delivered};
  chat_client_callbacks cb = {
      .version = CHAT_CLIENT_CALLBACKS_V1,
      .on_connection = cb_connection,
      .on_hello = cb_hello,
      .on_message = cb_message,
      .on_ack = cb_ack,
      .on_receipt = cb_receipt,
      .on_typing = cb_typing,
      .on_presence = cb_presence,
      .on_state_change = cb_state_change,
      .on_conversation = cb_conversation,
      .on_error = cb_error,
      .on_resume_progress = cb_resume_progress,
      .on_request_done = cb_request_done,
      .on_auth_required = cb_auth_required,
  };
  jchat *h = calloc(1, sizeof *h);
  if (!h) {
    throw_rc(env, CHAT_ERR_NOMEM, NULL);
    return 0;
  }
  h->env = env;
  jutf path = utf_get(env, store_path);
  if (!path.p) {
    free(h);
    if (!(*env)->ExceptionCheck(env))
      throw_rc(env, CHAT_ERR_INVAL, "store path: required");
    return 0;
  }
  chat_errbuf err = {{0}};
  chat_client_store_ops store;
  rc = chat_sqlite_client_store_open(&store, path.p, NULL, &err);
  utf_put(env, &path);
  if (rc != CHAT_OK) {
    free(h);
    throw_rc(env, rc, err.msg);
    return 0;
  }
  rc = chat_client_new(&h->c, &s, &store, &cb, h, NULL, &err);
  if (rc != CHAT_OK) {
    if (store.destroy)
      store.destroy(store.self);
    free(h);
    throw_rc(env, rc, err.msg);
    return 0;
  }
  h->sink = ref_new(env, sink);
  if (!h->sink) {
    chat_client_free(h->c);
    free(h);
    swallow(env);
    throw_rc(env, CHAT_ERR_NOMEM, "NewGlobalRef");
    return 0;
  }
  atomic_fetch_add(&live_handles, 1);
  return (jlong)(intptr_t)h;
}

/* Free the client (which calls nothing back) and everything of the
 * handle. Safe on 0. */
JNIEXPORT void JNICALL FN(free)(JNIEnv *env, jclass k, jlong handle) {
  (void)k;
  jchat *h = (jchat *)(intptr_t)handle;
  if (!h)
    return;
  chat_client_free(h->c);
  ref_del(env, h->sink);
  free(h);
  atomic_fetch_sub(&live_handles, 1);
}

JNIEXPORT jlong JNICALL FN(liveGlobalRefs)(JNIEnv *env, jclass k) {
  (void)env;
  (void)k;
  return (jlong)atomic_load(&live_refs);
}

JNIEXPORT jlong JNICALL FN(liveHandles)(JNIEnv *env, jclass k) {
  (void)env;
  (void)k;
  return (jlong)atomic_load(&live_handles);
}

JNIEXPORT jstring JNICALL FN(version)(JNIEnv *env, jclass k) {
  (void)k;
  return (*env)->NewStringUTF(env, chat_version_string());
}

JNIEXPORT jstring JNICALL FN(errName)(JNIEnv *env, jclass k, jint rc) {
  (void)k;
  return (*env)->NewStringUTF(env, chat_err_name((chat_err)rc));
}

/* ---- the transport side (rc back to Java; fatal ones kill the handle) */

JNIEXPORT jint JNICALL FN(start)(JNIEnv *env, jclass k, jlong handle,
                                 jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return CHAT_ERR_STATE;
  return done(h, chat_client_start(h->c, (chat_time_ms)now), now);
}

JNIEXPORT jint JNICALL FN(stop)(JNIEnv *env, jclass k, jlong handle,
                                jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return CHAT_ERR_STATE;
  return done(h, chat_client_stop(h->c, (chat_time_ms)now), now);
}

JNIEXPORT void JNICALL FN(setToken)(JNIEnv *env, jclass k, jlong handle,
                                    jstring token, jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return;
  jutf t = utf_get(env, token);
  if (!t.p) {
    if (!(*env)->ExceptionCheck(env))
      throw_rc(env, CHAT_ERR_INVAL, "token: required");
    return;
  }
  chat_err rc = chat_client_set_token(h->c, t.p, strlen(t.p),
                                      (chat_time_ms)now);
  utf_put(env, &t);
  if (!failed(h, rc))
    done(h, rc, now);
}

JNIEXPORT jint JNICALL FN(onOpen)(JNIEnv *env, jclass k, jlong handle,
                                  jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return CHAT_ERR_STATE;
  return done(h, chat_client_on_open(h->c, (chat_time_ms)now), now);
}

JNIEXPORT jint JNICALL FN(onFrame)(JNIEnv *env, jclass k, jlong handle,
                                   jbyteArray data, jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return CHAT_ERR_STATE;
  size_t n;
  bool oom = false;
  char *p = cbytes(env, data, &n, &oom);
  if (!p)
    return oom ? CHAT_ERR_NOMEM : CHAT_ERR_INVAL;
  chat_err rc = chat_client_on_frame(h->c, p, n, (chat_time_ms)now);
  free(p);
  return done(h, rc, now);
}

JNIEXPORT jint JNICALL FN(onClose)(JNIEnv *env, jclass k, jlong handle,
                                   jint code, jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return CHAT_ERR_STATE;
  uint16_t c = code >= 0 && code <= 65535 ? (uint16_t)code : 0;
  return done(h, chat_client_on_close(h->c, c, (chat_time_ms)now), now);
}

JNIEXPORT jint JNICALL FN(onRefused)(JNIEnv *env, jclass k, jlong handle,
                                     jint status, jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return CHAT_ERR_STATE;
  chat_err rc;
  if (status >= 100 && status <= 599)
    rc = chat_client_on_refused(h->c, status, (chat_time_ms)now);
  else
    rc = chat_client_on_close(h->c, 0, (chat_time_ms)now);
  return done(h, rc, now);
}

JNIEXPORT jint JNICALL FN(onResponse)(JNIEnv *env, jclass k, jlong handle,
                                      jint id, jint status, jbyteArray body,
                                      jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return CHAT_ERR_STATE;
  size_t n = 0;
  bool oom = false;
  char *p = cbytes(env, body, &n, &oom);
  if (oom)
    status = 0; /* no answer we can read: retried like one that never came */
  chat_err rc = chat_client_on_response(h->c, (uint32_t)id, status,
                                        p ? p : "", p ? n : 0,
                                        (chat_time_ms)now);
  free(p);
  return done(h, rc, now);
}

JNIEXPORT jint JNICALL FN(onTimer)(JNIEnv *env, jclass k, jlong handle,
                                   jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return CHAT_ERR_STATE;
  return done(h, chat_client_on_timer(h->c, (chat_time_ms)now), now);
}

JNIEXPORT jint JNICALL FN(hintNetworkUp)(JNIEnv *env, jclass k, jlong handle,
                                         jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return CHAT_ERR_STATE;
  return done(h, chat_client_hint_network_up(h->c, (chat_time_ms)now), now);
}

/* -1: nothing waits. */
JNIEXPORT jlong JNICALL FN(nextDeadline)(JNIEnv *env, jclass k,
                                         jlong handle) {
  (void)env;
  (void)k;
  jchat *h = (jchat *)(intptr_t)handle;
  if (!h || h->dead)
    return -1;
  chat_time_ms d = chat_client_next_deadline(h->c);
  return d == CHAT_TIME_NEVER || d > INT64_MAX ? -1 : (jlong)d;
}

JNIEXPORT jboolean JNICALL FN(isDead)(JNIEnv *env, jclass k, jlong handle) {
  (void)env;
  (void)k;
  jchat *h = (jchat *)(intptr_t)handle;
  return h && h->dead;
}

JNIEXPORT jint JNICALL FN(state)(JNIEnv *env, jclass k, jlong handle) {
  (void)env;
  (void)k;
  jchat *h = (jchat *)(intptr_t)handle;
  return h ? (jint)chat_client_get_state(h->c) : 0;
}

JNIEXPORT jint JNICALL FN(outboxLen)(JNIEnv *env, jclass k, jlong handle) {
  (void)env;
  (void)k;
  jchat *h = (jchat *)(intptr_t)handle;
  size_t n = h ? chat_client_outbox_len(h->c) : 0;
  return n > INT32_MAX ? INT32_MAX : (jint)n;
}

JNIEXPORT jstring JNICALL FN(errmsg)(JNIEnv *env, jclass k, jlong handle) {
  (void)k;
  jchat *h = (jchat *)(intptr_t)handle;
  return jstr(env, h ? chat_client_errmsg(h->c) : "");
}

/* ---- the app side (failures throw ChatException) ---- */

JNIEXPORT jstring JNICALL FN(send)(JNIEnv *env, jclass k, jlong handle,
                                   jstring conv, jbyteArray body, jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return NULL;
  size_t n;
  bool oom = false;
  char *b = cbytes(env, body, &n, &oom);
  if (!b) {
    throw_rc(env, oom ? CHAT_ERR_NOMEM : CHAT_ERR_INVAL,
             oom ? NULL : "body: required");
    return NULL;
  }
  jutf cv = utf_get(env, conv);
  char id[CHAT_CLIENT_MSG_ID_BUF];
  chat_err rc = cv.p ? chat_client_send(h->c, cv.p, b, n, id,
                                        (chat_time_ms)now)
                     : CHAT_ERR_INVAL;
  utf_put(env, &cv);
  free(b);
  if (failed(h, rc)) {
    done(h, CHAT_OK, now);
    return NULL;
  }
  done(h, rc, now);
  return (*env)->NewStringUTF(env, id);
}

static void mark(JNIEnv *env, jlong handle, jstring conv, jlong up_to,
                 jlong now, bool read) {
  jchat *h = H(env, handle);
  if (!h)
    return;
  jutf cv = utf_get(env, conv);
  chat_err rc = CHAT_ERR_INVAL;
  if (cv.p && up_to >= 0)
    rc = read ? chat_client_mark_read(h->c, cv.p, (uint64_t)up_to,
                                      (chat_time_ms)now)
              : chat_client_mark_delivered(h->c, cv.p, (uint64_t)up_to,
                                           (chat_time_ms)now);
  utf_put(env, &cv);
  if (!failed(h, rc))
    done(h, rc, now);
}

JNIEXPORT void JNICALL FN(markDelivered)(JNIEnv *env, jclass k, jlong handle,
                                         jstring conv, jlong up_to,
                                         jlong now) {
  (void)k;
  mark(env, handle, conv, up_to, now, false);
}

JNIEXPORT void JNICALL FN(markRead)(JNIEnv *env, jclass k, jlong handle,
                                    jstring conv, jlong up_to, jlong now) {
  (void)k;
  mark(env, handle, conv, up_to, now, true);
}

JNIEXPORT void JNICALL FN(typing)(JNIEnv *env, jclass k, jlong handle,
                                  jstring conv, jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return;
  jutf cv = utf_get(env, conv);
  chat_err rc = cv.p ? chat_client_typing(h->c, cv.p, (chat_time_ms)now)
                     : CHAT_ERR_INVAL;
  utf_put(env, &cv);
  if (!failed(h, rc))
    done(h, rc, now);
}

/* The UTF strings of a String[] (ids), released by ids_put. */
typedef struct jids {
  jutf *v;
  const char **p;
  size_t n;
} jids;

static bool ids_get(JNIEnv *env, jobjectArray a, jids *out) {
  memset(out, 0, sizeof *out);
  if (!a)
    return true;
  jsize n = (*env)->GetArrayLength(env, a);
  out->v = calloc((size_t)n + 1, sizeof *out->v);
  out->p = calloc((size_t)n + 1, sizeof *out->p);
  if (!out->v || !out->p)
    return false;
  for (jsize i = 0; i < n; i++) {
    jstring s = (jstring)(*env)->GetObjectArrayElement(env, a, i);
    out->v[i] = utf_get(env, s);
    out->n = (size_t)i + 1;
    if (!out->v[i].p)
      return false;
    out->p[i] = out->v[i].p;
  }
  return true;
}

static void ids_put(JNIEnv *env, jids *ids) {
  for (size_t i = 0; i < ids->n; i++) {
    utf_put(env, &ids->v[i]);
    (*env)->DeleteLocalRef(env, ids->v[i].s);
  }
  free(ids->v);
  free(ids->p);
  memset(ids, 0, sizeof *ids);
}

JNIEXPORT void JNICALL FN(watchPresence)(JNIEnv *env, jclass k, jlong handle,
                                         jobjectArray users, jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return;
  jids ids;
  chat_err rc = CHAT_ERR_NOMEM;
  if (ids_get(env, users, &ids))
    rc = chat_client_watch_presence(h->c, ids.p, ids.n, (chat_time_ms)now);
  ids_put(env, &ids);
  if (!failed(h, rc))
    done(h, rc, now);
}

JNIEXPORT jint JNICALL FN(fetchConversations)(JNIEnv *env, jclass k,
                                              jlong handle, jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return 0;
  uint32_t id = 0;
  chat_err rc = chat_client_fetch_conversations(h->c, &id, (chat_time_ms)now);
  if (failed(h, rc))
    return 0;
  done(h, rc, now);
  return (jint)id;
}

JNIEXPORT jint JNICALL FN(createConversation)(JNIEnv *env, jclass k,
                                              jlong handle, jbyteArray name,
                                              jobjectArray members,
                                              jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return 0;
  size_t nlen;
  bool oom = false;
  char *nm = cbytes(env, name, &nlen, &oom);
  jids ids = {0};
  uint32_t id = 0;
  chat_err rc = CHAT_ERR_NOMEM;
  if (!oom && ids_get(env, members, &ids))
    rc = chat_client_create_conversation(h->c, nm, ids.p, ids.n, &id,
                                         (chat_time_ms)now);
  ids_put(env, &ids);
  free(nm);
  if (failed(h, rc))
    return 0;
  done(h, rc, now);
  return (jint)id;
}

JNIEXPORT jint JNICALL FN(loadOlder)(JNIEnv *env, jclass k, jlong handle,
                                     jstring conv, jlong before, jint limit,
                                     jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return 0;
  jutf cv = utf_get(env, conv);
  uint32_t id = 0;
  chat_err rc = CHAT_ERR_INVAL;
  if (cv.p && before >= 0 && limit >= 0)
    rc = chat_client_load_older(h->c, cv.p, (uint64_t)before,
                                (uint32_t)limit, &id, (chat_time_ms)now);
  utf_put(env, &cv);
  if (failed(h, rc))
    return 0;
  done(h, rc, now);
  return (jint)id;
}

JNIEXPORT jint JNICALL FN(registerDevice)(JNIEnv *env, jclass k,
                                          jlong handle, jstring platform,
                                          jbyteArray push_token, jlong now) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return 0;
  size_t n;
  bool oom = false;
  char *tok = cbytes(env, push_token, &n, &oom);
  jutf pf = utf_get(env, platform);
  uint32_t id = 0;
  chat_err rc = oom ? CHAT_ERR_NOMEM : CHAT_ERR_INVAL;
  /* A push token with a NUL in it would be cut short: refuse it here. */
  if (tok && pf.p && strlen(tok) == n)
    rc = chat_client_register_device(h->c, pf.p, tok, &id, (chat_time_ms)now);
  utf_put(env, &pf);
  free(tok);
  if (failed(h, rc))
    return 0;
  done(h, rc, now);
  return (jint)id;
}

/* ---- local reads ---- */

typedef struct walk {
  JNIEnv *env;
  jobject collector;
} walk;

static void walk_message(void *ud, const chat_client_message *m) {
  walk *w = ud;
  JNIEnv *env = w->env;
  if ((*env)->ExceptionCheck(env) || (*env)->PushLocalFrame(env, 16) != 0)
    return;
  jobject jm = jmessage(env, m->message);
  if (jm)
    (*env)->CallVoidMethod(env, w->collector, J.col_message, jm,
                           (jboolean)m->own, (jboolean)m->pending,
                           (jint)m->state);
  swallow(env);
  (*env)->PopLocalFrame(env, NULL);
}

static void walk_conversation(void *ud, const chat_conversation *cv) {
  walk *w = ud;
  JNIEnv *env = w->env;
  if ((*env)->ExceptionCheck(env) || (*env)->PushLocalFrame(env, 16) != 0)
    return;
  jobject o = jconversation(env, cv);
  if (o)
    (*env)->CallVoidMethod(env, w->collector, J.col_conversation, o);
  swallow(env);
  (*env)->PopLocalFrame(env, NULL);
}

JNIEXPORT void JNICALL FN(listMessages)(JNIEnv *env, jclass k, jlong handle,
                                        jstring conv, jlong before,
                                        jint limit, jobject collector) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return;
  walk w = {env, collector};
  jutf cv = utf_get(env, conv);
  chat_err rc = CHAT_ERR_INVAL;
  if (cv.p && before >= 0 && limit >= 0)
    rc = chat_client_list_messages(h->c, cv.p, (uint64_t)before,
                                   (uint32_t)limit, walk_message, &w);
  utf_put(env, &cv);
  if (!(*env)->ExceptionCheck(env))
    failed(h, rc);
}

JNIEXPORT void JNICALL FN(listConversations)(JNIEnv *env, jclass k,
                                             jlong handle,
                                             jobject collector) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return;
  walk w = {env, collector};
  chat_err rc = chat_client_list_conversations(h->c, walk_conversation, &w);
  if (!(*env)->ExceptionCheck(env))
    failed(h, rc);
}

JNIEXPORT jlong JNICALL FN(lastSeen)(JNIEnv *env, jclass k, jlong handle,
                                     jstring conv) {
  (void)k;
  jchat *h = H(env, handle);
  if (!h)
    return 0;
  jutf cv = utf_get(env, conv);
  uint64_t v = 0;
  chat_err rc = cv.p ? chat_client_last_seen(h->c, cv.p, &v) : CHAT_ERR_INVAL;
  utf_put(env, &cv);
  if (failed(h, rc))
    return 0;
  return (jlong)v;
}

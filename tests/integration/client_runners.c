/* Client runners against a real chatd, driven by test_client_runner.py.
 *
 *   client_runners two   URL TOKEN_ALICE TOKEN_BOB N
 *     Two clients, each on its own runner on its own service thread. The
 *     main thread hands alice N sends through chat_client_lws_post() (the
 *     only way in from another thread); bob must get all N, in order. Then
 *     the documented shutdown: quit from main, a graceful close and
 *     chat_client_lws_stop() on each service thread, chat_client_lws_free()
 *     from main; the free must call nothing.
 *
 *   client_runners nomem URL TOKEN_ALICE TOKEN_BOB
 *     Alice's client allocator starts failing once she is connected; a
 *     large message from bob makes chat_client_on_frame() fail with
 *     CHAT_ERR_NOMEM, which must stop her runner: run() returns it and
 *     chat_client_lws_errmsg() names the call.
 *
 * Prints one line per milestone and "ok" at the end; exits 0 only then.
 * Every wait has a deadline. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chat/client_lws.h>
#include <chat/sqlite.h>

#define DEADLINE_S 60

static void die(const char *what) {
  fprintf(stderr, "FAIL: %s\n", what);
  fflush(stdout);
  exit(1);
}

/* ---- a switchable allocator ---- */

static atomic_bool failing;

static void *f_alloc(size_t n, void *ud) {
  (void)ud;
  return atomic_load(&failing) ? NULL : malloc(n ? n : 1);
}
static void *f_resize(void *p, size_t n, void *ud) {
  (void)ud;
  return atomic_load(&failing) ? NULL : realloc(p, n ? n : 1);
}
static void f_release(void *p, void *ud) {
  (void)ud;
  free(p);
}

/* ---- one device ---- */

typedef struct dev {
  const char *name;
  chat_client *c;
  chat_client_lws *r;
  pthread_t th;
  chat_err run_rc;
  atomic_int state;
  atomic_int callbacks; /* every callback, to prove free calls none */
  atomic_int messages;  /* from the peer */
  atomic_int acks;
  atomic_int bad_order;
  atomic_int next_seq;
  char conv[80];
  atomic_bool have_conv;
  pthread_t service_id;
  atomic_bool wrong_thread;
} dev;

static dev alice = {.name = "alice"}, bob = {.name = "bob"};

static void on_thread(dev *d) {
  if (!pthread_equal(pthread_self(), d->service_id))
    atomic_store(&d->wrong_thread, true);
  atomic_fetch_add(&d->callbacks, 1);
}

static void on_connection(void *ud, chat_client *c, chat_client_state s) {
  (void)c;
  dev *d = ud;
  on_thread(d);
  atomic_store(&d->state, (int)s);
  printf("%s state %s\n", d->name, chat_client_state_name(s));
}

static void on_message(void *ud, chat_client *c, const chat_message *m,
                       chat_message_origin o) {
  (void)c, (void)o;
  dev *d = ud;
  on_thread(d);
  if (strcmp(m->sender_id, d->name) == 0)
    return;
  int want = atomic_load(&d->next_seq);
  char body[32];
  snprintf(body, sizeof body, "m-%04d", want);
  if (m->body.len >= 2 && memcmp(m->body.ptr, "m-", 2) == 0) {
    if (m->body.len != strlen(body) ||
        memcmp(m->body.ptr, body, m->body.len) != 0)
      atomic_fetch_add(&d->bad_order, 1);
    atomic_fetch_add(&d->next_seq, 1);
  }
  atomic_fetch_add(&d->messages, 1);
}

static void on_ack(void *ud, chat_client *c, const chat_ack *a) {
  (void)c, (void)a;
  dev *d = ud;
  on_thread(d);
  atomic_fetch_add(&d->acks, 1);
}

static void on_conversation(void *ud, chat_client *c,
                            const chat_conversation *cv) {
  (void)c;
  dev *d = ud;
  on_thread(d);
  snprintf(d->conv, sizeof d->conv, "%s", cv->conversation_id);
  atomic_store(&d->have_conv, true);
}

static void on_error(void *ud, chat_client *c, const chat_client_error *e) {
  (void)c;
  dev *d = ud;
  on_thread(d);
  printf("%s error %s %s\n", d->name, chat_err_name(e->err), e->message);
}

static void other(void *ud, chat_client *c) {
  (void)c;
  on_thread(ud);
}

static const chat_client_callbacks cbs = {
    .version = CHAT_CLIENT_CALLBACKS_V1, .on_connection = on_connection,
    .on_message = on_message, .on_ack = on_ack,
    .on_conversation = on_conversation, .on_error = on_error,
    .on_wants = other};

static chat_env env;

static void *service(void *arg) {
  dev *d = arg;
  d->service_id = pthread_self();
  chat_client_start(d->c, chat_client_lws_now());
  d->run_rc = chat_client_lws_run(d->r);
  if (d->run_rc == CHAT_OK) {
    /* Graceful close, then the stop: every callback of this client runs
     * on this thread, before the stop returns. */
    chat_client_stop(d->c, chat_client_lws_now());
    for (int i = 0; i < 200 &&
                    chat_client_get_state(d->c) != CHAT_CLIENT_IDLE;
         i++)
      if (chat_client_lws_service(d->r) != CHAT_OK)
        break;
  }
  chat_client_lws_stop(d->r);
  return NULL;
}

static void open_dev(dev *d, const char *url, const char *token,
                     const chat_allocator *a) {
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1, .env = &env};
  chat_client_store_ops st;
  chat_errbuf err;
  if (chat_sqlite_client_store_open(&st, ":memory:", NULL, &err) != CHAT_OK)
    die(err.msg);
  if (chat_client_new(&d->c, &s, &st, &cbs, d, a, &err) != CHAT_OK)
    die(err.msg);
  if (chat_client_set_token(d->c, token, strlen(token), 0) != CHAT_OK)
    die(chat_client_errmsg(d->c));
  chat_client_lws_settings ls = {.version = CHAT_CLIENT_LWS_SETTINGS_V1,
                                 .url = url};
  if (chat_client_lws_new(&d->r, d->c, &ls, NULL, &err) != CHAT_OK)
    die(err.msg);
  /* service_id is set by the thread itself, before it starts the client:
   * no callback can come earlier. */
  if (pthread_create(&d->th, NULL, service, d) != 0)
    die("pthread_create");
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* Wait until cond() holds, or fail after the deadline. */
static void wait_for(bool (*cond)(void), const char *what) {
  double end = now_s() + DEADLINE_S;
  while (!cond()) {
    if (now_s() > end)
      die(what);
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

static bool both_ready(void) {
  return atomic_load(&alice.state) == CHAT_CLIENT_READY &&
         atomic_load(&bob.state) == CHAT_CLIENT_READY;
}

/* ---- tasks posted from the main thread ---- */

static void create_conv(void *arg, chat_client_lws *r, chat_client *c) {
  (void)arg, (void)r;
  if (!c)
    return;
  const char *m[] = {"bob"};
  if (chat_client_create_conversation(c, NULL, m, 1, NULL,
                                      chat_client_lws_now()) != CHAT_OK)
    die(chat_client_errmsg(c));
}

static bool have_conv(void) {
  return atomic_load(&alice.have_conv);
}

typedef struct send_job {
  dev *d;
  size_t len;
  char body[];
} send_job;

static void do_send(void *arg, chat_client_lws *r, chat_client *c) {
  (void)r;
  send_job *j = arg;
  if (c && chat_client_send(c, j->d->conv[0] ? j->d->conv : alice.conv,
                            j->body, j->len, NULL,
                            chat_client_lws_now()) != CHAT_OK)
    die(chat_client_errmsg(c));
  free(j);
}

static void post_send(dev *d, const char *body, size_t len) {
  send_job *j = malloc(sizeof *j + len);
  if (!j)
    die("malloc");
  j->d = d;
  memcpy(j->body, body, len);
  j->len = len;
  if (chat_client_lws_post(d->r, do_send, j) != CHAT_OK)
    die("post");
}

static int n_sends;
static bool all_in(void) {
  return atomic_load(&bob.messages) >= n_sends &&
         atomic_load(&alice.acks) >= n_sends;
}

static void shut_down(void) {
  chat_client_lws_quit(alice.r);
  chat_client_lws_quit(bob.r);
  pthread_join(alice.th, NULL);
  pthread_join(bob.th, NULL);
  /* Stopped on their threads; freed here. Nothing may be called. */
  int before = atomic_load(&alice.callbacks) + atomic_load(&bob.callbacks);
  chat_client_lws_free(alice.r);
  chat_client_lws_free(bob.r);
  if (atomic_load(&alice.callbacks) + atomic_load(&bob.callbacks) != before)
    die("chat_client_lws_free() called the app");
  if (atomic_load(&alice.wrong_thread) || atomic_load(&bob.wrong_thread))
    die("a callback ran off its service thread");
  printf("freed without callbacks\n");
}

static int two(const char *url, const char *ta, const char *tb, int n) {
  n_sends = n;
  open_dev(&alice, url, ta, NULL);
  open_dev(&bob, url, tb, NULL);
  wait_for(both_ready, "both ready");
  printf("both ready\n");
  if (chat_client_lws_post(alice.r, create_conv, NULL) != CHAT_OK)
    die("post");
  wait_for(have_conv, "conversation");
  for (int i = 0; i < n; i++) {
    char b[32];
    int k = snprintf(b, sizeof b, "m-%04d", i);
    post_send(&alice, b, (size_t)k);
  }
  wait_for(all_in, "all messages");
  if (atomic_load(&bob.bad_order))
    die("out of order");
  printf("delivered %d in order\n", n);
  shut_down();
  if (alice.run_rc != CHAT_OK || bob.run_rc != CHAT_OK)
    die("run() failed");
  chat_client_free(alice.c);
  chat_client_free(bob.c);
  printf("ok\n");
  return 0;
}

static bool alice_stopped(void) {
  return alice.run_rc != CHAT_OK;
}

static bool bob_has_conv(void) {
  return atomic_load(&bob.have_conv) && atomic_load(&alice.acks) > 0 &&
         atomic_load(&bob.messages) > 0;
}

static int nomem(const char *url, const char *ta, const char *tb) {
  static chat_allocator fa = {.alloc = f_alloc, .resize = f_resize,
                              .release = f_release};
  open_dev(&alice, url, ta, &fa);
  open_dev(&bob, url, tb, NULL);
  wait_for(both_ready, "both ready");
  if (chat_client_lws_post(alice.r, create_conv, NULL) != CHAT_OK)
    die("post");
  wait_for(have_conv, "conversation");
  post_send(&alice, "m-0000", 6);
  wait_for(bob_has_conv, "bob has the conversation");
  printf("connected\n");
  atomic_store(&failing, true);
  static char big[60000];
  memset(big, 'x', sizeof big);
  snprintf(bob.conv, sizeof bob.conv, "%s", alice.conv);
  post_send(&bob, big, sizeof big);
  wait_for(alice_stopped, "alice's runner stopped");
  atomic_store(&failing, false);
  printf("run %s: %s\n", chat_err_name(alice.run_rc),
         chat_client_lws_errmsg(alice.r));
  if (alice.run_rc != CHAT_ERR_NOMEM ||
      !strstr(chat_client_lws_errmsg(alice.r), "chat_client_on_frame"))
    die("the fatal error was not reported");
  pthread_join(alice.th, NULL);
  if (chat_client_lws_post(alice.r, create_conv, NULL) != CHAT_ERR_STATE)
    die("a stopped runner took a post");
  chat_client_lws_quit(bob.r);
  pthread_join(bob.th, NULL);
  chat_client_lws_free(alice.r);
  chat_client_lws_free(bob.r);
  chat_client_free(alice.c);
  chat_client_free(bob.c);
  printf("ok\n");
  return 0;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (chat_env_system(&env) != CHAT_OK)
    die("chat_env_system");
  if (argc == 6 && strcmp(argv[1], "two") == 0)
    return two(argv[2], argv[3], argv[4], atoi(argv[5]));
  if (argc == 5 && strcmp(argv[1], "nomem") == 0)
    return nomem(argv[2], argv[3], argv[4]);
  fprintf(stderr, "usage: client_runners two URL TA TB N | nomem URL TA "
                  "TB\n");
  return 2;
}

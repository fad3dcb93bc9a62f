/* The libwebsockets client runner (lib/transport/lws/client_lws.c) without
 * a server: posted tasks run on the service thread, in order, exactly once
 * (cancelled by a stop); stop then free from another thread calls nothing;
 * free never calls into the app; quit works from any thread; several
 * runners, ws:// and wss://, come and go without leaking (the RSS of 50
 * cycles, and LeakSanitizer in sanitizer builds); settings are refused
 * with a reason. The runner against a real chatd is in
 * tests/integration/test_client_runner.py. */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chat/client_lws.h>

#include "fake_env.h"
#include "memory_client_store.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN 1
#endif
#endif
#ifdef ASAN
#include <sanitizer/lsan_interface.h>
#endif

static fake_env fe;
static atomic_int callbacks; /* every client callback, counted */

static void count_conn(void *ud, chat_client *c, chat_client_state s) {
  (void)ud, (void)c, (void)s;
  atomic_fetch_add(&callbacks, 1);
}
static void count_err(void *ud, chat_client *c, const chat_client_error *e) {
  (void)ud, (void)c, (void)e;
  atomic_fetch_add(&callbacks, 1);
}
static void count_wants(void *ud, chat_client *c) {
  (void)ud, (void)c;
  atomic_fetch_add(&callbacks, 1);
}

static chat_client *new_client(void) {
  static const chat_client_callbacks cb = {
      .version = CHAT_CLIENT_CALLBACKS_V1, .on_connection = count_conn,
      .on_error = count_err, .on_wants = count_wants};
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1,
                            .env = &fe.env};
  chat_client_store_ops st;
  cr_assert_eq(memory_client_store_open(&st), CHAT_OK);
  chat_client *c;
  cr_assert_eq(chat_client_new(&c, &s, &st, &cb, NULL, NULL, NULL), CHAT_OK);
  cr_assert_eq(chat_client_set_token(c, "tok", 3, 0), CHAT_OK);
  return c;
}

static chat_client_lws *new_runner(chat_client *c, const char *url) {
  chat_client_lws_settings s = {.version = CHAT_CLIENT_LWS_SETTINGS_V1,
                                .url = url};
  chat_client_lws *r;
  chat_errbuf err;
  cr_assert_eq(chat_client_lws_new(&r, c, &s, NULL, &err), CHAT_OK, "%s",
               err.msg);
  return r;
}

static void setup(void) {
  fake_env_init(&fe, 1700000000000, 7);
  atomic_store(&callbacks, 0);
}

TestSuite(client_lws, .init = setup, .timeout = 60);

/* ---- posts ---- */

typedef struct probe {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t service;
  int ran[64];
  int n;
  int cancelled;
  bool on_service_thread;
  chat_client *seen_c;
} probe;

static probe P = {.mu = PTHREAD_MUTEX_INITIALIZER,
                  .cv = PTHREAD_COND_INITIALIZER,
                  .on_service_thread = true};

typedef struct job {
  int seq;
} job;

static void record(void *arg, chat_client_lws *r, chat_client *c) {
  (void)r;
  job *j = arg;
  pthread_mutex_lock(&P.mu);
  if (c) {
    if (!pthread_equal(pthread_self(), P.service))
      P.on_service_thread = false;
    P.seen_c = c;
    P.ran[P.n++] = j->seq;
  } else {
    P.cancelled++;
  }
  pthread_cond_broadcast(&P.cv);
  pthread_mutex_unlock(&P.mu);
  free(j);
}

static void stop_here(void *arg, chat_client_lws *r, chat_client *c) {
  (void)arg;
  if (c) {
    if (!pthread_equal(pthread_self(), P.service))
      P.on_service_thread = false;
    chat_client_lws_stop(r); /* from inside service(): deferred */
  }
}

static void post_job(chat_client_lws *r, int seq) {
  job *j = malloc(sizeof *j);
  j->seq = seq;
  cr_assert_eq(chat_client_lws_post(r, record, j), CHAT_OK);
}

static chat_err run_result;

static void *service_thread(void *arg) {
  run_result = chat_client_lws_run(arg);
  return NULL;
}

Test(client_lws, posts_run_on_the_service_thread_in_order) {
  chat_client *c = new_client();
  chat_client_lws *r = new_runner(c, "ws://127.0.0.1:1");
  pthread_mutex_lock(&P.mu);
  pthread_create(&P.service, NULL, service_thread, r);
  pthread_mutex_unlock(&P.mu);
  for (int i = 0; i < 40; i++)
    post_job(r, i);
  pthread_mutex_lock(&P.mu);
  while (P.n < 40)
    pthread_cond_wait(&P.cv, &P.mu);
  pthread_mutex_unlock(&P.mu);
  cr_assert(P.on_service_thread, "every task ran on the service thread");
  cr_assert_eq(P.seen_c, c);
  for (int i = 0; i < 40; i++)
    cr_assert_eq(P.ran[i], i, "in posting order");
  /* A task may stop the runner: run() returns, later posts are refused. */
  cr_assert_eq(chat_client_lws_post(r, stop_here, NULL), CHAT_OK);
  pthread_join(P.service, NULL);
  cr_assert_eq(run_result, CHAT_OK);
  cr_assert(P.on_service_thread);
  job j = {99};
  cr_assert_eq(chat_client_lws_post(r, record, &j), CHAT_ERR_STATE);
  cr_assert_eq(chat_client_lws_post(r, NULL, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_lws_post(NULL, record, &j), CHAT_ERR_INVAL);
  cr_assert_eq(chat_client_lws_service(r), CHAT_ERR_STATE);
  cr_assert_eq(chat_client_lws_run(r), CHAT_ERR_STATE);
  chat_client_lws_free(r);
  chat_client_free(c);
}

/* Every successful post runs exactly once: the ones a stop overtakes run
 * cancelled (c NULL) inside the stop, so their arguments are freed. */
Test(client_lws, stop_cancels_what_is_still_posted) {
  chat_client *c = new_client();
  chat_client_lws *r = new_runner(c, "ws://127.0.0.1:1");
  P.service = pthread_self();
  for (int i = 0; i < 5; i++)
    post_job(r, i);
  chat_client_lws_stop(r);
  cr_assert_eq(P.cancelled, 5);
  cr_assert_eq(P.n, 0);
  chat_client_lws_stop(r); /* again: nothing */
  cr_assert_eq(P.cancelled, 5);
  chat_client_lws_free(r);
  chat_client_free(c);
}

Test(client_lws, quit_from_another_thread_and_run_again) {
  chat_client *c = new_client();
  chat_client_lws *r = new_runner(c, "ws://127.0.0.1:1");
  for (int round = 0; round < 2; round++) {
    pthread_t th;
    pthread_mutex_lock(&P.mu);
    P.n = 0;
    pthread_create(&th, NULL, service_thread, r);
    P.service = th;
    pthread_mutex_unlock(&P.mu);
    post_job(r, round);
    pthread_mutex_lock(&P.mu);
    while (P.n < 1)
      pthread_cond_wait(&P.cv, &P.mu);
    pthread_mutex_unlock(&P.mu);
    chat_client_lws_quit(r);
    pthread_join(th, NULL);
    cr_assert_eq(run_result, CHAT_OK);
  }
  chat_client_lws_quit(NULL);
  chat_client_lws_stop(r);
  chat_client_lws_free(r);
  chat_client_free(c);
}

/* ---- stop, then free from any thread ---- */

/* A port that accepts TCP but never answers the upgrade: the runner's
 * attempt stays open, so a free that reported it would call the app. */
static int mute_listener(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  cr_assert_eq(listen(fd, 8), 0);
  socklen_t n = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &n);
  *port = ntohs(a.sin_port);
  return fd;
}

/* Service until the client's attempt is under way. */
static void until_connecting(chat_client_lws *r, chat_client *c) {
  chat_client_start(c, chat_client_lws_now());
  for (int i = 0; i < 50; i++) {
    cr_assert_eq(chat_client_lws_service(r), CHAT_OK);
    if (chat_client_get_state(c) == CHAT_CLIENT_CONNECTING &&
        !(chat_client_wants(c) & CHAT_CLIENT_WANT_CONNECT))
      return;
  }
  cr_assert_fail("no attempt under way");
}

static void *free_elsewhere(void *arg) {
  chat_client_lws_free(arg);
  return NULL;
}

Test(client_lws, free_after_stop_calls_nothing) {
  int port, fd = mute_listener(&port);
  char url[64];
  snprintf(url, sizeof url, "ws://127.0.0.1:%d", port);
  chat_client *c = new_client();
  chat_client_lws *r = new_runner(c, url);
  until_connecting(r, c);
  int before = atomic_load(&callbacks);
  /* The stop tells the client, here and now (the attempt is gone). */
  chat_client_lws_stop(r);
  int at_stop = atomic_load(&callbacks);
  cr_assert_gt(at_stop, before, "the stop reported the attempt");
  cr_assert_eq(chat_client_get_state(c), CHAT_CLIENT_BACKOFF);
  /* Free on another thread, as a finalizer would: nothing is called. */
  pthread_t th;
  pthread_create(&th, NULL, free_elsewhere, r);
  pthread_join(th, NULL);
  cr_assert_eq(atomic_load(&callbacks), at_stop, "free called the app");
  chat_client_free(c);
  close(fd);
}

Test(client_lws, free_without_stop_never_calls_the_app) {
  int port, fd = mute_listener(&port);
  char url[64];
  snprintf(url, sizeof url, "ws://127.0.0.1:%d", port);
  chat_client *c = new_client();
  chat_client_lws *r = new_runner(c, url);
  until_connecting(r, c);
  int before = atomic_load(&callbacks);
  job *j = malloc(sizeof *j);
  j->seq = 1;
  cr_assert_eq(chat_client_lws_post(r, record, j), CHAT_OK);
  chat_client_lws_free(r); /* drops the task unrun */
  cr_assert_eq(atomic_load(&callbacks), before);
  cr_assert_eq(P.n + P.cancelled, 0);
  free(j);
  chat_client_free(c);
  close(fd);
}

/* ---- several runners, no leak ---- */

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long pages = 0, resident = 0;
  if (!f || fscanf(f, "%ld %ld", &pages, &resident) != 2)
    resident = 0;
  if (f)
    fclose(f);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Three runners alive at once (one ws://, two wss://), then freed. Before
 * the runner brought its own SSL_CTX, every wss:// runner but the last
 * one created leaked its OpenSSL context and CA store (~700 KB). */
static void cycle(chat_client *c) {
  chat_client_lws *r[3];
  r[0] = new_runner(c, "ws://127.0.0.1:1");
  r[1] = new_runner(c, "wss://127.0.0.1:1");
  r[2] = new_runner(c, "wss://localhost:2/x");
  for (int i = 0; i < 3; i++) {
    chat_client_lws_stop(r[i]);
    chat_client_lws_free(r[i]);
  }
}

Test(client_lws, runners_come_and_go_without_leaking) {
  chat_client *c = new_client();
  cycle(c);
  long warm = rss_kb();
  for (int i = 0; i < 49; i++)
    cycle(c);
  long grown = rss_kb() - warm;
  cr_log_info("RSS after 1 cycle %ld KB, growth over 49 more: %ld KB", warm,
              grown);
  chat_client_free(c);
#ifdef ASAN
  /* ASan keeps freed memory in quarantine, so RSS says nothing here; its
   * leak checker does. */
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks");
#else
  /* The leak was ~1.4 MB per cycle (70 MB here). */
  cr_assert_lt(grown, 8 * 1024, "RSS grew %ld KB over 49 cycles", grown);
#endif
}

static void *make_and_free(void *arg) {
  (void)arg;
  chat_client *c = new_client();
  for (int i = 0; i < 10; i++)
    cycle(c);
  chat_client_free(c);
  return NULL;
}

/* Two threads creating and freeing runners at once (the process-wide lws
 * state is set once and context creation is serialized). */
Test(client_lws, two_threads_create_runners_at_once) {
  pthread_t a, b;
  pthread_create(&a, NULL, make_and_free, NULL);
  pthread_create(&b, NULL, make_and_free, NULL);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
#ifdef ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "leaks");
#endif
}

/* ---- settings ---- */

static void refused(chat_client *c, const chat_client_lws_settings *s,
                    chat_err want, const char *text) {
  chat_client_lws *r = (chat_client_lws *)&fe;
  chat_errbuf err;
  cr_assert_eq(chat_client_lws_new(&r, c, s, NULL, &err), want, "%s",
               err.msg);
  cr_assert_null(r);
  cr_assert(strstr(err.msg, text), "\"%s\" lacks \"%s\"", err.msg, text);
}

Test(client_lws, settings_are_refused_with_a_reason) {
  chat_client *c = new_client();
  chat_client_lws_settings s = {.version = CHAT_CLIENT_LWS_SETTINGS_V1,
                                .url = "ws://127.0.0.1:1"};
  refused(c, NULL, CHAT_ERR_INVAL, "settings: required");
  refused(NULL, &s, CHAT_ERR_INVAL, "c: required");
  s.version = 0;
  refused(c, &s, CHAT_ERR_INVAL, "settings.version");
  s.version = CHAT_CLIENT_LWS_SETTINGS_V1 + 1;
  refused(c, &s, CHAT_ERR_INVAL, "settings.version");
  s.version = CHAT_CLIENT_LWS_SETTINGS_V1;
  const char *bad[] = {"ftp://x", "ws://", "ws://h:0", "ws://h:70000",
                       "ws://h:1x"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    s.url = bad[i];
    refused(c, &s, CHAT_ERR_INVAL, "settings.url");
  }
  s.url = NULL;
  refused(c, &s, CHAT_ERR_INVAL, "settings.url: required");
  s.url = "wss://127.0.0.1:1";
  s.ca_file = "/nonexistent/ca.pem";
  refused(c, &s, CHAT_ERR_MODULE, "settings.ca_file");
  chat_client_free(c);
  cr_assert_str_eq(chat_client_lws_errmsg(NULL), "");
}

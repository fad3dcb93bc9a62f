/* Module calls that finish later (lib/server/ops.c): chat_op completion
 * in its forms, the posted-work queue (chat_server_post, chat_op_post,
 * from any thread), and what the core promises while calls are pending:
 * one session's slow call holds only that session's later frames, at most
 * one group commit is in flight, REST answers come through the callback
 * (or never, once cancelled), and freeing the server with calls in flight
 * leaks nothing. Most tests run the harness on tests/support/defer_store
 * and complete calls one by one. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "server_harness.h"

static harness h;

static void down(void) { harness_fini(&h); }

TestSuite(ops, .fini = down);

/* ---- posted tasks ---- */

static int order[16];
static size_t n_order;

static void record(void *user_data, chat_server *srv, chat_time_ms now) {
  (void)srv;
  (void)now;
  order[n_order++] = (int)(intptr_t)user_data;
}

Test(ops, posted_tasks_run_in_posting_order_and_wake_the_host) {
  harness_init_mode(&h, NULL, DEFER_OFF);
  harness_tick(&h);
  cr_assert_gt(chat_server_next_deadline(h.srv), h.now, "idle first");
  n_order = 0;
  chat_task t[3] = {{record, (void *)1, NULL},
                    {record, (void *)2, NULL},
                    {record, (void *)3, NULL}};
  unsigned w0 = h.fe.n_wakes;
  for (int i = 0; i < 3; i++)
    chat_server_post(h.srv, &t[i]);
  cr_assert_eq(h.fe.n_wakes, w0 + 3, "every post calls env.wake");
  cr_assert_eq(n_order, 0, "nothing runs before the loop thread asks");
  cr_assert_eq(chat_server_next_deadline(h.srv), 0,
               "posted work makes the deadline now");
  cr_assert_eq(chat_server_run_posted(h.srv, h.now), CHAT_OK);
  cr_assert_eq(n_order, 3);
  cr_assert_eq(order[0], 1);
  cr_assert_eq(order[1], 2);
  cr_assert_eq(order[2], 3);
  cr_assert_gt(chat_server_next_deadline(h.srv), h.now);
  cr_assert_eq(chat_server_run_posted(NULL, 0), CHAT_ERR_INVAL);
}

Test(ops, on_timer_runs_posted_work_too) {
  harness_init_mode(&h, NULL, DEFER_OFF);
  n_order = 0;
  chat_task t = {record, (void *)7, NULL};
  chat_server_post(h.srv, &t);
  cr_assert_eq(chat_server_on_timer(h.srv, h.now), CHAT_OK);
  cr_assert_eq(n_order, 1);
  cr_assert_eq(order[0], 7);
}

static void free_and_repost(void *user_data, chat_server *srv,
                            chat_time_ms now) {
  (void)now;
  chat_task *t = user_data;
  int left = (int)(intptr_t)t->link; /* unused by the library once run */
  (void)left;
  free(t);
  order[n_order++] = 9;
  if (n_order < 3) {
    chat_task *again = malloc(sizeof *again);
    cr_assert_not_null(again);
    *again = (chat_task){free_and_repost, NULL, NULL};
    again->user_data = again;
    chat_server_post(srv, again);
  }
}

Test(ops, a_task_may_free_itself_and_post_more) {
  harness_init_mode(&h, NULL, DEFER_OFF);
  n_order = 0;
  chat_task *t = malloc(sizeof *t);
  cr_assert_not_null(t);
  *t = (chat_task){free_and_repost, NULL, NULL};
  t->user_data = t;
  chat_server_post(h.srv, t);
  for (int i = 0; i < 10 && chat_server_next_deadline(h.srv) == 0; i++)
    chat_server_run_posted(h.srv, h.now);
  cr_assert_eq(n_order, 3, "each repost ran once");
}

/* ---- posts from many threads ---- */

#define THREADS 4
#define PER_THREAD 3000

typedef struct mt_task {
  chat_task t;
  int thread, seq;
} mt_task;

static mt_task tasks[THREADS][PER_THREAD];
static int next_seq[THREADS];
static int ran;

static void mt_run(void *user_data, chat_server *srv, chat_time_ms now) {
  (void)srv;
  (void)now;
  mt_task *m = user_data;
  /* One thread's posts keep their order. */
  cr_assert_eq(m->seq, next_seq[m->thread], "thread %d: %d after %d",
               m->thread, m->seq, next_seq[m->thread] - 1);
  next_seq[m->thread]++;
  ran++;
}

static void *poster(void *arg) {
  int th = (int)(intptr_t)arg;
  for (int i = 0; i < PER_THREAD; i++) {
    mt_task *m = &tasks[th][i];
    m->t = (chat_task){mt_run, m, NULL};
    m->thread = th;
    m->seq = i;
    chat_server_post(h.srv, &m->t);
  }
  return NULL;
}

Test(ops, posts_from_many_threads_all_run_once_in_per_thread_order) {
  harness_init_mode(&h, NULL, DEFER_OFF);
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++)
    cr_assert_eq(pthread_create(&th[i], NULL, poster, (void *)(intptr_t)i),
                 0);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  /* The loop thread drains while the posters post. */
  for (;;) {
    chat_server_run_posted(h.srv, h.now);
    if (ran == THREADS * PER_THREAD)
      break;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 60, "only %d of %d ran", ran,
                 THREADS * PER_THREAD);
  }
  for (int i = 0; i < THREADS; i++)
    pthread_join(th[i], NULL);
  chat_server_run_posted(h.srv, h.now);
  cr_assert_eq(ran, THREADS * PER_THREAD, "nothing ran twice");
  cr_assert_geq(h.fe.n_wakes, THREADS * PER_THREAD);
}

/* ---- op completion in its forms ---- */

static const char *conv_between(const char *a, const char *b) {
  const char *m[] = {b};
  static char id[65];
  snprintf(id, sizeof id, "%s", harness_create(&h, a, "direct", m, 1));
  return id;
}

static chat_storage_ops real;
static chat_op *held_op;
static struct {
  char conv[65];
  chat_conversation_sink emit;
  void *ctx;
} held;

/* Completes its op from inside the method, then says CHAT_PENDING. */
static chat_err early_get(void *self, const char *c, const char *viewer,
                          chat_conversation_sink emit, void *ctx,
                          chat_op *op) {
  chat_err rc = real.conversation_get(self, c, viewer, emit, ctx, NULL);
  chat_op_complete(op, rc);
  return CHAT_PENDING;
}

Test(ops, an_op_completed_inside_its_method_is_taken) {
  harness_init_mode(&h, NULL, DEFER_OFF);
  const char *c = conv_between("alice", "bob");
  real = h.inner;
  h.inner.conversation_get = early_get;
  dev *a = dev_open(&h, "alice", "phone");
  dev_sendf(a,
            "{\"type\":\"send\",\"client_msg_id\":\"m1\","
            "\"conversation_id\":\"%s\",\"body\":\"hi\"}",
            c);
  harness_tick(&h);
  const chat_frame *f = dev_expect(a, CHAT_FRAME_ACK);
  cr_assert_str_eq(f->ack->client_msg_id, "m1");
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.ops_in_flight, 0, "nothing left pending");
}

/* Keeps the op and what to emit; the test completes it. */
static chat_err keep_get(void *self, const char *c, const char *viewer,
                         chat_conversation_sink emit, void *ctx,
                         chat_op *op) {
  (void)self;
  (void)viewer;
  held_op = op;
  snprintf(held.conv, sizeof held.conv, "%s", c);
  held.emit = emit;
  held.ctx = ctx;
  return CHAT_PENDING;
}

static void emit_held(void) {
  cr_assert_eq(real.conversation_get(real.self, held.conv, NULL, held.emit,
                                     held.ctx, NULL),
               CHAT_OK);
}

Test(ops, a_second_completion_is_ignored_and_logged) {
  harness_init_mode(&h, NULL, DEFER_OFF);
  const char *c = conv_between("alice", "bob");
  real = h.inner;
  h.inner.conversation_get = keep_get;
  dev *a = dev_open(&h, "alice", "phone");
  dev_sendf(a,
            "{\"type\":\"send\",\"client_msg_id\":\"m1\","
            "\"conversation_id\":\"%s\",\"body\":\"hi\"}",
            c);
  cr_assert_not_null(held_op);
  chat_server_stats st = {.version = CHAT_SERVER_STATS_V1};
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.ops_in_flight, 1);
  cr_assert_eq(st.ops_pending_total, 1);
  unsigned logs = h.fe.n_logs;
  emit_held();
  chat_op *op = held_op;
  chat_op_complete(op, CHAT_OK);
  chat_op_complete(op, CHAT_OK); /* a module bug: must not run twice */
  cr_assert_gt(h.fe.n_logs, logs);
  cr_assert(strstr(h.fe.last_log, "not pending"), "%s", h.fe.last_log);
  harness_tick(&h);
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 1);
  chat_server_get_stats(h.srv, &st);
  cr_assert_eq(st.ops_in_flight, 0);
}

Test(ops, completing_with_pending_is_a_module_error) {
  harness_init_mode(&h, NULL, DEFER_OFF);
  const char *c = conv_between("alice", "bob");
  real = h.inner;
  h.inner.conversation_get = keep_get;
  dev *a = dev_open(&h, "alice", "phone");
  dev_sendf(a,
            "{\"type\":\"send\",\"client_msg_id\":\"m1\","
            "\"conversation_id\":\"%s\",\"body\":\"hi\"}",
            c);
  chat_op_complete(held_op, CHAT_PENDING);
  harness_pump(&h);
  const chat_frame *f = dev_expect(a, CHAT_FRAME_ERROR);
  cr_assert_eq(f->error->wire, CHAT_WIRE_INTERNAL);
}

/* ---- completions outside any call, and from another thread ---- */

static void send_to(dev *d, const char *conv, const char *cmid) {
  dev_sendf(d,
            "{\"type\":\"send\",\"client_msg_id\":\"%s\","
            "\"conversation_id\":\"%s\",\"body\":\"%s\"}",
            cmid, conv, cmid);
}

Test(ops, a_completion_outside_any_call_runs_at_once_and_wakes) {
  harness_init_mode(&h, NULL, DEFER_FIFO);
  const char *c = conv_between("alice", "bob");
  dev *a = dev_open(&h, "alice", "phone");
  harness_tick(&h);
  harness_hold(&h, true);
  send_to(a, c, "m1");
  cr_assert_eq(defer_store_pending(h.defer), 1, "the membership load");
  unsigned w0 = h.fe.n_wakes;
  cr_assert_eq(defer_store_run(h.defer), 1);
  cr_assert_gt(h.fe.n_wakes, w0, "the host is told its deadline moved");
  cr_assert_eq(chat_server_next_deadline(h.srv), 0, "the send waits");
  harness_tick(&h);
  cr_assert_eq(defer_store_pending(h.defer), 1, "the append");
  defer_store_run(h.defer);
  harness_pump(&h);
  dev_expect(a, CHAT_FRAME_ACK);
}

Test(ops, a_completion_posted_from_a_thread_runs_in_run_posted) {
  harness_init_mode(&h, NULL, DEFER_THREAD);
  const char *c = conv_between("alice", "bob");
  dev *a = dev_open(&h, "alice", "phone");
  harness_tick(&h);
  harness_hold(&h, true);
  send_to(a, c, "m1");
  unsigned w0 = h.fe.n_wakes;
  /* The worker thread posts the completion (chat_op_post) and wakes. */
  cr_assert_eq(defer_store_run(h.defer), 1);
  cr_assert_gt(h.fe.n_wakes, w0, "env.wake from the worker thread");
  cr_assert_eq(chat_server_next_deadline(h.srv), 0, "posted work waits");
  harness_tick(&h); /* on_timer runs the posted completion, then commits */
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 0, "the append is pending");
  defer_store_run(h.defer);
  chat_server_run_posted(h.srv, h.now);
  harness_pump(&h);
  dev_expect(a, CHAT_FRAME_ACK);
}

/* ---- what waits and what goes on ---- */

static bool key_is(const defer_call_info *c, void *ud) {
  return strcmp(c->key, ud) == 0;
}

static bool kind_is(const defer_call_info *c, void *ud) {
  return c->kind == (defer_kind)(intptr_t)ud;
}

Test(ops, a_slow_call_holds_only_its_own_sessions_frames) {
  harness_init_mode(&h, NULL, DEFER_FIFO);
  char x[65], y[65];
  snprintf(x, sizeof x, "%s", conv_between("alice", "bob"));
  snprintf(y, sizeof y, "%s", conv_between("carol", "dave"));
  dev *a = dev_open(&h, "alice", "phone");
  dev *c = dev_open(&h, "carol", "phone");
  harness_tick(&h);
  dev_drain(a);
  dev_drain(c);
  harness_hold(&h, true);
  /* alice: a send whose membership load is slow, then two frames that
   * must wait behind it, in order. */
  send_to(a, x, "a1");
  send_to(a, x, "a2");
  dev_send(a, "{\"type\":\"ping\"}");
  /* carol's load answers; alice's does not. */
  send_to(c, y, "c1");
  dev_send(c, "{\"type\":\"ping\"}");
  cr_assert_eq(defer_store_run_where(h.defer, key_is, y), 1);
  harness_pump(&h);
  dev_expect(c, CHAT_FRAME_PONG);
  cr_assert_eq(dev_count(a, CHAT_FRAME_NONE), 0,
               "alice's later frames wait behind her first");
  harness_tick(&h);
  cr_assert_eq(defer_store_run_where(h.defer, kind_is,
                                     (void *)(intptr_t)DK_APPEND),
               1);
  harness_pump(&h);
  const chat_frame *f = dev_expect(c, CHAT_FRAME_ACK);
  cr_assert_str_eq(f->ack->client_msg_id, "c1");
  cr_assert_eq(dev_count(a, CHAT_FRAME_NONE), 0, "alice still waits");
  /* alice's load answers: her frames go, in the order she sent them. */
  cr_assert_eq(defer_store_run_where(h.defer, key_is, x), 1);
  harness_pump(&h);
  dev_expect(a, CHAT_FRAME_PONG);
  harness_hold(&h, false);
  harness_settle(&h);
  const chat_frame *k1 = dev_expect(a, CHAT_FRAME_ACK);
  uint64_t id1 = k1->ack->message_id;
  cr_assert_str_eq(k1->ack->client_msg_id, "a1");
  const chat_frame *k2 = dev_expect(a, CHAT_FRAME_ACK);
  cr_assert_str_eq(k2->ack->client_msg_id, "a2");
  cr_assert_gt(k2->ack->message_id, id1, "commit order is send order");
}

Test(ops, frames_waiting_behind_a_slow_call_are_bounded) {
  chat_server_settings s = {.version = CHAT_SERVER_SETTINGS_V1,
                            .max_waiting_frames = 4};
  harness_init_mode(&h, &s, DEFER_FIFO);
  const char *x = conv_between("alice", "bob");
  dev *a = dev_open(&h, "alice", "phone");
  harness_tick(&h);
  harness_hold(&h, true);
  send_to(a, x, "a1");
  for (int i = 0; i < 4; i++)
    dev_send(a, "{\"type\":\"ping\"}");
  cr_assert_not(a->closed);
  dev_send(a, "{\"type\":\"ping\"}");
  cr_assert(a->closed);
  cr_assert_eq(a->close_code, 1013);
}

Test(ops, sends_during_a_commit_form_the_next_batch) {
  harness_init_mode(&h, NULL, DEFER_FIFO);
  const char *x = conv_between("alice", "bob");
  dev *a = dev_open(&h, "alice", "phone");
  send_to(a, x, "m0"); /* loads the membership */
  harness_settle(&h);
  dev_drain(a);
  unsigned appends0 = h.appends;
  harness_hold(&h, true);
  void *append = (void *)(intptr_t)DK_APPEND;
  send_to(a, x, "m1");
  send_to(a, x, "m2");
  send_to(a, x, "m3");
  harness_tick(&h);
  cr_assert_eq(defer_store_pending_where(h.defer, kind_is, append), 1,
               "one append in flight");
  send_to(a, x, "m4");
  send_to(a, x, "m5");
  cr_assert_gt(chat_server_next_deadline(h.srv), h.now,
               "sends wait for the commit in flight, not the timer");
  harness_tick(&h);
  cr_assert_eq(defer_store_pending_where(h.defer, kind_is, append), 1,
               "still one append");
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 0, "no ack before durable");
  defer_store_run_where(h.defer, kind_is, append);
  harness_pump(&h);
  cr_assert_eq(h.last_batch, 3);
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 3);
  cr_assert_eq(chat_server_next_deadline(h.srv), 0, "the next batch is due");
  /* The fan-out round of the first batch, then the second commit. */
  for (int i = 0;
       i < 4 && defer_store_pending_where(h.defer, kind_is, append) == 0; i++)
    harness_tick(&h);
  cr_assert_eq(defer_store_pending_where(h.defer, kind_is, append), 1);
  defer_store_run_where(h.defer, kind_is, append);
  harness_pump(&h);
  cr_assert_eq(h.last_batch, 2);
  cr_assert_eq(h.appends, appends0 + 2);
  cr_assert_eq(dev_count(a, CHAT_FRAME_ACK), 5);
}

/* ---- REST answered later ---- */

static int tag1, tag2;

Test(ops, a_rest_answer_comes_later_through_the_callback) {
  harness_init_mode(&h, NULL, DEFER_FIFO);
  harness_hold(&h, true);
  chat_identity id = {CHAT_IDENTITY_V1, "alice", "rest", 0,
                      CHAT_SENDER_USER};
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = "GET",
                           .path = "/api/v1/conversations",
                           .identity = &id,
                           .tag = &tag1};
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1,
                             .status = -1};
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_PENDING);
  cr_assert_eq(resp.status, -1, "untouched while pending");
  cr_assert_eq(h.http_callbacks, 0);
  defer_store_run(h.defer);
  cr_assert_eq(h.http_callbacks, 1);
  cr_assert_eq(h.http_tag, &tag1);
  cr_assert_eq(h.http_status, 200);
  cr_assert(strstr(h.http_body, "\"conversations\":[]"), "%s", h.http_body);
}

Test(ops, a_cancelled_rest_request_never_answers) {
  harness_init_mode(&h, NULL, DEFER_FIFO);
  harness_hold(&h, true);
  chat_identity id = {CHAT_IDENTITY_V1, "alice", "rest", 0,
                      CHAT_SENDER_USER};
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = "POST",
                           .path = "/api/v1/conversations",
                           .content_type = "application/json",
                           .body = "{\"type\":\"group\",\"members\":[\"b\"]}",
                           .identity = &id,
                           .tag = &tag1};
  req.body_len = strlen(req.body);
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_PENDING);
  req.tag = &tag2;
  req.method = "GET";
  req.body = NULL;
  req.body_len = 0;
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_PENDING);
  cr_assert_eq(chat_server_http_cancel(h.srv, &tag1), CHAT_OK);
  cr_assert_eq(chat_server_http_cancel(h.srv, &tag1), CHAT_OK,
               "still pending, already cancelled: harmless");
  cr_assert_eq(chat_server_http_cancel(h.srv, &h), CHAT_ERR_NOT_FOUND);
  harness_hold(&h, false);
  harness_settle(&h);
  cr_assert_eq(h.http_callbacks, 1, "only the request not cancelled");
  cr_assert_eq(h.http_tag, &tag2);
  /* The cancelled create still happened (a call cannot be taken back). */
  const char *body;
  cr_assert_eq(harness_http(&h, "alice", "GET", "/api/v1/conversations",
                            NULL, NULL, &body),
               200);
  cr_assert(strstr(body, "\"type\":\"group\""), "%s", body);
  cr_assert_eq(chat_server_http_cancel(h.srv, &tag2), CHAT_ERR_NOT_FOUND,
               "answered requests are gone");
}

/* ---- the store's max_message_id, answered later ---- */

Test(ops, nothing_mints_ids_before_max_message_id_answers) {
  harness_init_held(&h, NULL, DEFER_FIFO);
  /* max_message_id, and the first read of the shadow-ban list. */
  cr_assert_eq(defer_store_pending(h.defer), 2);
  chat_identity id = {CHAT_IDENTITY_V1, "alice", "rest", 0,
                      CHAT_SENDER_USER};
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = "POST",
                           .path = "/api/v1/conversations",
                           .body = "{\"type\":\"group\",\"members\":[\"b\"]}",
                           .identity = &id};
  req.body_len = strlen(req.body);
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_OK);
  cr_assert_eq(resp.status, 503, "no id may be minted yet");
  defer_store_run(h.defer);
  harness_hold(&h, false);
  const char *b[] = {"bob"};
  harness_create(&h, "alice", "group", b, 1);
}

/* ---- freeing with calls in flight ---- */

static void leave_everything_in_flight(void) {
  const char *x = conv_between("alice", "bob");
  dev *a = dev_open(&h, "alice", "phone");
  dev *b = dev_open(&h, "bob", "phone");
  send_to(a, x, "m0");
  harness_settle(&h);
  harness_hold(&h, true);
  /* A commit in flight, a mark, a resume, a REST call, a load for a
   * conversation nobody has read yet, and a frame waiting behind it. */
  send_to(a, x, "m1");
  harness_tick(&h);
  dev_sendf(b, "{\"type\":\"read\",\"conversation_id\":\"%s\","
               "\"up_to_message_id\":\"1\"}",
            x);
  dev *c = dev_open(&h, "carol", "phone");
  dev_send(c, "{\"type\":\"resume\",\"last_seen\":{}}");
  send_to(c, "c-unknown", "c1");
  chat_identity id = {CHAT_IDENTITY_V1, "bob", "rest", 0, CHAT_SENDER_USER};
  chat_http_request req = {.version = CHAT_HTTP_REQUEST_V1,
                           .method = "GET",
                           .path = "/api/v1/conversations",
                           .identity = &id,
                           .tag = &tag1};
  chat_http_response resp = {.version = CHAT_HTTP_RESPONSE_V1};
  cr_assert_eq(chat_server_http(h.srv, &req, &resp, h.now), CHAT_PENDING);
  cr_assert_geq(defer_store_pending(h.defer), 4);
  dev_close(b); /* a closed session with a call in flight */
}

Test(ops, freeing_with_calls_in_flight_leaks_nothing) {
  harness_init_mode(&h, NULL, DEFER_FIFO);
  leave_everything_in_flight();
  unsigned calls = h.http_callbacks;
  harness_fini(&h);
  cr_assert_eq(h.http_callbacks, calls, "no callback from free");
  /* ASan's leak check (the asan build) proves the rest. */
  harness_init_mode(&h, NULL, DEFER_OFF); /* for the suite's fini */
}

Test(ops, freeing_with_completions_posted_but_not_run_leaks_nothing) {
  harness_init_mode(&h, NULL, DEFER_THREAD);
  leave_everything_in_flight();
  /* Posted by the worker, never run by the loop thread. */
  defer_store_run(h.defer);
  cr_assert_eq(chat_server_next_deadline(h.srv), 0);
  harness_fini(&h);
  harness_init_mode(&h, NULL, DEFER_OFF);
}

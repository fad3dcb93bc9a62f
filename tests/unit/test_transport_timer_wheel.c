/* lib/transport/epoll/timer_wheel.c: nodes fire once, never early, at
 * most a tick late, across turns of the wheel and long sleeps. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "transport/epoll/timer_wheel.h"

typedef struct item {
  chat__tw_node n; /* first */
  uint64_t due;
  uint64_t fired_at;
  int fired;
  int rearm;       /* re-arm this many more times, 1 ms later each */
} item;

typedef struct ctx {
  chat__tw *w;
  uint64_t now;
  int fires;
} ctx;

static void on_fire(void *p, chat__tw_node *n) {
  ctx *c = p;
  item *it = (item *)n;
  it->fired++;
  it->fired_at = c->now;
  c->fires++;
  cr_assert_geq(c->now, it->due, "fired early: due %llu at %llu",
                (unsigned long long)it->due, (unsigned long long)c->now);
  if (it->rearm > 0) {
    it->rearm--;
    it->due = c->now + 1;
    chat__tw_add(c->w, &it->n, it->due);
  }
}

static chat_allocator A;

Test(timer_wheel, fires_once_in_order_within_a_tick) {
  chat__allocator_init(&A, NULL);
  chat__tw w;
  cr_assert_eq(chat__tw_init(&w, &A, 64, 10, 1000), CHAT_OK);
  enum { N = 500 };
  item *its = calloc(N, sizeof *its);
  srand(7);
  for (int i = 0; i < N; i++) {
    /* Up to ~8 turns of the wheel ahead (64 slots x 10 ms). */
    its[i].due = 1000 + (uint64_t)(rand() % 5000);
    chat__tw_add(&w, &its[i].n, its[i].due);
  }
  cr_assert_eq(w.count, N);
  ctx c = {&w, 1000, 0};
  for (uint64_t now = 1000; now <= 7000; now += 3) {
    c.now = now;
    chat__tw_expire(&w, now, on_fire, &c);
    /* Everything due a tick ago or more has fired. */
    for (int i = 0; i < N; i++)
      if (its[i].due + 10 <= now)
        cr_assert_eq(its[i].fired, 1, "item %d due %llu now %llu", i,
                     (unsigned long long)its[i].due,
                     (unsigned long long)now);
  }
  cr_assert_eq(c.fires, N);
  cr_assert_eq(w.count, 0);
  for (int i = 0; i < N; i++)
    cr_assert_leq(its[i].fired_at, its[i].due + 10 + 3);
  cr_assert_eq(chat__tw_next(&w), CHAT_TIME_NEVER);
  chat__tw_free(&w, &A);
  free(its);
}

Test(timer_wheel, move_and_cancel) {
  chat__allocator_init(&A, NULL);
  chat__tw w;
  chat__tw_init(&w, &A, 16, 5, 0);
  item a = {.due = 100}, b = {.due = 50};
  chat__tw_add(&w, &a.n, 100);
  chat__tw_add(&w, &b.n, 50);
  cr_assert(chat__tw_armed(&a.n));
  chat__tw_add(&w, &a.n, 200); /* moved, not armed twice */
  cr_assert_eq(w.count, 2);
  a.due = 200;
  chat__tw_del(&w, &b.n);
  chat__tw_del(&w, &b.n); /* twice is fine */
  cr_assert(!chat__tw_armed(&b.n));
  cr_assert_eq(w.count, 1);
  ctx c = {&w, 0, 0};
  for (c.now = 0; c.now <= 300; c.now++)
    chat__tw_expire(&w, c.now, on_fire, &c);
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(b.fired, 0);
  chat__tw_free(&w, &A);
}

Test(timer_wheel, rearm_for_now_fires_in_the_same_call) {
  chat__allocator_init(&A, NULL);
  chat__tw w;
  chat__tw_init(&w, &A, 8, 10, 0);
  item a = {.due = 20, .rearm = 3};
  chat__tw_add(&w, &a.n, 20);
  ctx c = {&w, 100, 0};
  /* One call at 100: fires at 20's tick, re-arms for 101 (later tick)... */
  chat__tw_expire(&w, 100, on_fire, &c);
  cr_assert_eq(a.fired, 1);
  /* ...which is not due yet; at 200 it and its re-arms all run. */
  for (int k = 0; k < 5; k++) {
    c.now = 200 + (uint64_t)k * 10;
    chat__tw_expire(&w, c.now, on_fire, &c);
  }
  cr_assert_eq(a.fired, 4);
  /* A node armed in the past fires at the next expire, not a turn later. */
  item b = {.due = 0};
  chat__tw_add(&w, &b.n, 0);
  c.now = 251;
  chat__tw_expire(&w, 251, on_fire, &c);
  cr_assert_eq(b.fired, 1);
  chat__tw_free(&w, &A);
}

Test(timer_wheel, long_sleep_and_next) {
  chat__allocator_init(&A, NULL);
  chat__tw w;
  chat__tw_init(&w, &A, 32, 10, 0);
  item a = {.due = 5000}, b = {.due = 1000000};
  chat__tw_add(&w, &a.n, 5000);
  chat__tw_add(&w, &b.n, 1000000);
  uint64_t nx = chat__tw_next(&w);
  cr_assert_leq(nx, 5000);
  ctx c = {&w, 900000, 0};
  chat__tw_expire(&w, 900000, on_fire, &c); /* a long jump */
  cr_assert_eq(a.fired, 1);
  cr_assert_eq(b.fired, 0);
  c.now = 1000010;
  chat__tw_expire(&w, c.now, on_fire, &c);
  cr_assert_eq(b.fired, 1);
  chat__tw_free(&w, &A);
}

static void drop(void *p, chat__tw_node *n) {
  chat__tw_del(p, n);
}

Test(timer_wheel, each_visits_every_node) {
  chat__allocator_init(&A, NULL);
  chat__tw w;
  chat__tw_init(&w, &A, 8, 1, 0);
  item its[50];
  for (int i = 0; i < 50; i++) {
    its[i] = (item){.due = (uint64_t)i * 37};
    chat__tw_add(&w, &its[i].n, its[i].due);
  }
  chat__tw_each(&w, drop, &w);
  cr_assert_eq(w.count, 0);
  for (int i = 0; i < 50; i++)
    cr_assert(!chat__tw_armed(&its[i].n));
  chat__tw_free(&w, &A);
}

Test(timer_wheel, next_is_never_late_through_random_changes) {
  chat__allocator_init(&A, NULL);
  chat__tw w;
  chat__tw_init(&w, &A, 64, 10, 0);
  enum { N = 200 };
  item *its = calloc(N, sizeof *its);
  srand(11);
  ctx c = {&w, 0, 0};
  for (int step = 0; step < 20000; step++) {
    int k = rand() % N;
    int op = rand() % 10;
    if (op < 5) {
      its[k].due = c.now + (uint64_t)(rand() % 3000);
      its[k].fired = 0;
      chat__tw_add(&w, &its[k].n, its[k].due);
    } else if (op < 7) {
      chat__tw_del(&w, &its[k].n);
    } else {
      c.now += (uint64_t)(rand() % 40);
      chat__tw_expire(&w, c.now, on_fire, &c);
    }
    /* The earliest armed node's tick end, by brute force. */
    uint64_t truth = CHAT_TIME_NEVER;
    for (int i = 0; i < N; i++)
      if (chat__tw_armed(&its[i].n)) {
        uint64_t end = its[i].n.tick * 10;
        if (end < truth)
          truth = end;
      }
    uint64_t nx = chat__tw_next(&w);
    cr_assert_leq(nx, truth, "step %d: next %llu, a node ends %llu", step,
                  (unsigned long long)nx, (unsigned long long)truth);
    if (truth == CHAT_TIME_NEVER)
      cr_assert_eq(nx, CHAT_TIME_NEVER);
  }
  free(its);
  chat__tw_free(&w, &A);
}

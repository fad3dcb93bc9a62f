/* A hashed timer wheel: one intrusive node per connection, O(1) to arm,
 * move or cancel, whatever the number of connections. A sorted timer
 * list (lws's validity timer) costs a sorted insert per connection and
 * per re-arm; here re-arming is a pointer swap, and a connection's
 * activity only stores a timestamp that the owner checks when the node
 * fires (lazy re-arm).
 *
 * Time is cut into ticks of tick_ms; a node fires at the first expire
 * call at or after the end of its tick (at most one tick late, never
 * early). Nodes due more than one turn of the wheel ahead wait in their
 * slot and are passed over until their turn comes. */
#ifndef CHAT__EPOLL_TIMER_WHEEL_H
#define CHAT__EPOLL_TIMER_WHEEL_H

#include <chat/common.h>

typedef struct chat__tw_node {
  struct chat__tw_node *next, *prev; /* NULL while not armed */
  uint64_t tick;                     /* the tick it fires in */
} chat__tw_node;

typedef struct chat__tw {
  chat__tw_node *slots; /* sentinels of circular lists */
  uint64_t mask;        /* slots - 1, a power of two minus one */
  uint32_t tick_ms;
  uint64_t tick;        /* the next tick expire will process */
  size_t count;         /* armed nodes */
  uint64_t hint;        /* no node is armed in a tick before this one
                           (UINT64_MAX: unknown); spares chat__tw_next a
                           scan of the wheel on every pass of a loop */
} chat__tw;

/* n_slots is rounded up to a power of two. CHAT_ERR_NOMEM or CHAT_OK. */
chat_err chat__tw_init(chat__tw *w, const chat_allocator *a, size_t n_slots,
                       uint32_t tick_ms, uint64_t now_ms);
void chat__tw_free(chat__tw *w, const chat_allocator *a);

static inline bool chat__tw_armed(const chat__tw_node *n) {
  return n->next != NULL;
}

/* Arm (or move) n to fire at due_ms; a time already past fires at the
 * next expire. */
void chat__tw_add(chat__tw *w, chat__tw_node *n, uint64_t due_ms);
/* Disarm; a node not armed is left alone. */
void chat__tw_del(chat__tw *w, chat__tw_node *n);

/* Fire every node due by now_ms: each is disarmed, then fn(ctx, node) is
 * called; fn may arm it (or any node) again, or free it. */
void chat__tw_expire(chat__tw *w, uint64_t now_ms,
                     void (*fn)(void *ctx, chat__tw_node *n), void *ctx);

/* The earliest time (ms) some node may fire; CHAT_TIME_NEVER when none is
 * armed. May be early (a slot holding only later turns, or a node since
 * disarmed), never late. Remembers what it found, so that a loop asking
 * on every pass scans the wheel only when something changed. */
uint64_t chat__tw_next(chat__tw *w);

/* Call fn for every armed node (in no order). fn may disarm the node it
 * is given and then free it, nothing else; a node fn leaves armed is
 * disarmed after it. For teardown. */
void chat__tw_each(chat__tw *w, void (*fn)(void *ctx, chat__tw_node *n),
                   void *ctx);

#endif

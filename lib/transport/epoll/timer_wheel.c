/* The hashed timer wheel of timer_wheel.h. */
#include "common/alloc.h"
#include "transport/epoll/timer_wheel.h"

chat_err chat__tw_init(chat__tw *w, const chat_allocator *a, size_t n_slots,
                       uint32_t tick_ms, uint64_t now_ms) {
  size_t n = 1;
  while (n < n_slots && n < ((size_t)1 << 20))
    n <<= 1;
  w->slots = chat__calloc(a, n, sizeof *w->slots);
  if (!w->slots)
    return CHAT_ERR_NOMEM;
  for (size_t i = 0; i < n; i++)
    w->slots[i].next = w->slots[i].prev = &w->slots[i];
  w->mask = n - 1;
  w->tick_ms = tick_ms ? tick_ms : 1;
  w->tick = now_ms / w->tick_ms;
  w->count = 0;
  w->hint = UINT64_MAX;
  return CHAT_OK;
}

void chat__tw_free(chat__tw *w, const chat_allocator *a) {
  chat__free(a, w->slots);
  w->slots = NULL;
  w->count = 0;
}

static void link_into(chat__tw_node *head, chat__tw_node *n) {
  n->prev = head->prev;
  n->next = head;
  head->prev->next = n;
  head->prev = n;
}

static void unlink_node(chat__tw_node *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->next = n->prev = NULL;
}

void chat__tw_add(chat__tw *w, chat__tw_node *n, uint64_t due_ms) {
  if (n->next)
    unlink_node(n);
  else
    w->count++;
  /* The tick whose end is at or after due_ms. */
  uint64_t t = due_ms / w->tick_ms + (due_ms % w->tick_ms ? 1 : 0);
  if (t < w->tick)
    t = w->tick;
  n->tick = t;
  link_into(&w->slots[t & w->mask], n);
  if (w->hint != UINT64_MAX && t < w->hint)
    w->hint = t;
}

void chat__tw_del(chat__tw *w, chat__tw_node *n) {
  if (!n->next)
    return;
  unlink_node(n);
  w->count--;
}

void chat__tw_expire(chat__tw *w, uint64_t now_ms,
                     void (*fn)(void *ctx, chat__tw_node *n), void *ctx) {
  uint64_t now_t = now_ms / w->tick_ms;
  /* After a long sleep, one turn visits every slot. */
  if (now_t > w->tick && now_t - w->tick > w->mask + 1)
    w->tick = now_t - w->mask - 1;
  while (w->tick <= now_t && w->count) {
    uint64_t t = w->tick;
    /* Advance first: a node fn arms for "now" lands in the next slot and
     * fires in this call, not a whole turn later. */
    w->tick = t + 1;
    chat__tw_node *head = &w->slots[t & w->mask];
    if (head->next != head) {
      /* Detach the slot first: fn may arm nodes into it again. */
      chat__tw_node local = {head->next, head->prev, 0};
      local.next->prev = &local;
      local.prev->next = &local;
      head->next = head->prev = head;
      while (local.next != &local) {
        chat__tw_node *n = local.next;
        unlink_node(n);
        if (n->tick <= now_t) {
          w->count--;
          fn(ctx, n);
        } else {
          link_into(head, n); /* a later turn */
        }
      }
    }
  }
  if (w->tick <= now_t)
    w->tick = now_t + 1;
}

uint64_t chat__tw_next(chat__tw *w) {
  if (!w->count)
    return CHAT_TIME_NEVER;
  /* Removals leave the hint as it is: early is allowed, late is not. */
  if (w->hint != UINT64_MAX && w->hint >= w->tick)
    return w->hint * w->tick_ms;
  for (uint64_t i = 0; i <= w->mask; i++) {
    uint64_t t = w->tick + i;
    const chat__tw_node *head = &w->slots[t & w->mask];
    if (head->next != head) {
      w->hint = t;
      return t * w->tick_ms;
    }
  }
  /* Every node waits for a later turn: look again next tick. */
  w->hint = UINT64_MAX;
  return w->tick * w->tick_ms;
}

void chat__tw_each(chat__tw *w, void (*fn)(void *ctx, chat__tw_node *n),
                   void *ctx) {
  for (uint64_t s = 0; s <= w->mask; s++) {
    chat__tw_node *head = &w->slots[s];
    while (head->next != head) {
      chat__tw_node *n = head->next;
      fn(ctx, n);
      /* fn must have disarmed or freed it; disarm it if it did not. */
      if (head->next == n)
        chat__tw_del(w, n);
    }
  }
}

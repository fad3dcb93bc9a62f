/* Module calls that may finish later (chat_op), the ready list that runs
 * their continuations, and the lock-free queue through which other threads
 * hand work to the loop thread (chat_op_post, chat_server_post).
 *
 * The queue is a Treiber stack: posters push with a compare-and-swap, the
 * loop thread takes the whole stack with one exchange and reverses it, so
 * there is no ABA problem (nothing is ever popped singly) and no lock. */
#include <string.h>

#include "server_internal.h"

enum {
  OP_FREE = 0, /* in the pool */
  OP_CALLING,  /* the module method is running */
  OP_EARLY,    /* completed before its method returned CHAT_PENDING */
  OP_PENDING,  /* the module owes a completion */
  OP_READY     /* completed; its continuation waits on the ready list */
};

/* Ops kept for reuse: a fan-out to a large group makes one per member. */
#define POOL_MAX 1024

void chat__job_unref(chat_server *srv, chat__job *j) {
  if (j && --j->refs == 0)
    j->release(srv, j);
}

static void live_link(chat_server *srv, chat_op *op) {
  op->prev = NULL;
  op->next = srv->ops_live;
  if (srv->ops_live)
    srv->ops_live->prev = op;
  srv->ops_live = op;
}

static void live_unlink(chat_server *srv, chat_op *op) {
  if (op->prev)
    op->prev->next = op->next;
  else
    srv->ops_live = op->next;
  if (op->next)
    op->next->prev = op->prev;
  op->prev = op->next = NULL;
}

chat_op *chat__op_new(chat_server *srv, chat__job *j, chat__op_fn done,
                      uint32_t idx) {
  chat_op *op = srv->ops_pool;
  if (op) {
    srv->ops_pool = op->next;
    srv->n_pool--;
  } else if (!(op = chat__alloc(&srv->a, sizeof *op))) {
    return NULL;
  }
  memset(op, 0, sizeof *op);
  op->srv = srv;
  op->job = j;
  op->done = done;
  op->idx = idx;
  op->state = OP_CALLING;
  chat__job_ref(j);
  live_link(srv, op);
  return op;
}

/* Back to the pool, dropping the job reference. */
static void op_release(chat_server *srv, chat_op *op) {
  chat__job *j = op->job;
  op->job = NULL;
  op->state = OP_FREE;
  if (srv->n_pool < POOL_MAX) {
    op->next = srv->ops_pool;
    srv->ops_pool = op;
    srv->n_pool++;
  } else {
    chat__free(&srv->a, op);
  }
  chat__job_unref(srv, j);
}

/* Run the continuation; the op's job reference keeps the job alive while
 * it runs. */
static void op_finish(chat_server *srv, chat_op *op, chat_err status) {
  op->done(srv, op->job, op->idx, status);
  op_release(srv, op);
}

bool chat__op_call(chat_server *srv, chat_op *op, chat_err rc) {
  if (rc == CHAT_PENDING) {
    srv->st.ops_pending_total++;
    if (op->state == OP_EARLY) {
      /* Completed from inside its own method: nothing is pending. */
      live_unlink(srv, op);
      op_finish(srv, op, op->status);
      return true;
    }
    op->state = OP_PENDING;
    srv->st.ops_in_flight++;
    return false;
  }
  if (op->state == OP_EARLY)
    chat__srv_log(srv, CHAT_LOG_ERROR,
                  "module completed an op and also returned %s; the return "
                  "value wins",
                  chat_err_name(rc));
  live_unlink(srv, op);
  op_finish(srv, op, rc);
  return true;
}

bool chat__op_nomem(chat_server *srv, chat__job *j, chat__op_fn done,
                    uint32_t idx) {
  chat__job_ref(j);
  done(srv, j, idx, CHAT_ERR_NOMEM);
  chat__job_unref(srv, j);
  return true;
}

/* Run every ready continuation and every session whose frames may go on.
 * Called with depth 1, so that completions made meanwhile queue up here
 * instead of nesting. */
static void run_ready(chat_server *srv) {
  for (;;) {
    chat_op *op = srv->ready_head;
    if (op) {
      srv->ready_head = op->next;
      if (!srv->ready_head)
        srv->ready_tail = NULL;
      op->next = NULL;
      op_finish(srv, op, op->status);
      continue;
    }
    if (!chat__sess_pump(srv))
      break;
  }
}

void chat__leave(chat_server *srv) {
  if (srv->depth == 1 && !srv->freeing)
    run_ready(srv);
  srv->depth--;
}

void chat_op_complete(chat_op *op, chat_err status) {
  if (!op)
    return;
  chat_server *srv = op->srv;
  if (status == CHAT_PENDING)
    status = CHAT_ERR_MODULE;
  switch (op->state) {
  case OP_CALLING:
    op->state = OP_EARLY;
    op->status = status;
    return;
  case OP_PENDING:
    break;
  default:
    chat__srv_log(srv, CHAT_LOG_ERROR,
                  "chat_op_complete on an op that is not pending (completed "
                  "twice?); ignored");
    return;
  }
  srv->st.ops_in_flight--;
  live_unlink(srv, op);
  op->state = OP_READY;
  op->status = status;
  op->next = NULL;
  if (srv->ready_tail)
    srv->ready_tail->next = op;
  else
    srv->ready_head = op;
  srv->ready_tail = op;
  if (srv->depth == 0 && !srv->freeing) {
    /* From the module's own callback on the loop thread, outside any
     * chat_server_* call: run it now, and wake the host, whose deadline
     * may have moved (a commit finished, sends wait for the next one). */
    chat__enter(srv);
    chat__leave(srv);
    if (srv->env.wake)
      srv->env.wake(srv->env.user_data);
  }
}

/* ---- posted work ---- */

static void push_task(chat_server *srv, chat_task *t) {
  chat_task *head = atomic_load_explicit(&srv->posted, memory_order_relaxed);
  do {
    t->link = head;
  } while (!atomic_compare_exchange_weak_explicit(
      &srv->posted, &head, t, memory_order_release, memory_order_relaxed));
  if (srv->env.wake)
    srv->env.wake(srv->env.user_data);
}

static void op_posted(void *user_data, chat_server *srv, chat_time_ms now) {
  (void)srv;
  (void)now;
  chat_op *op = user_data;
  op->post_fn(op->post_ud, op);
}

void chat_op_post(chat_op *op, void (*fn)(void *user_data, chat_op *op),
                  void *user_data) {
  if (!op || !fn)
    return;
  op->post_fn = fn;
  op->post_ud = user_data;
  op->task.fn = op_posted;
  op->task.user_data = op;
  push_task(op->srv, &op->task);
}

void chat_server_post(chat_server *srv, chat_task *task) {
  if (!srv || !task || !task->fn)
    return;
  push_task(srv, task);
}

/* Rounds of taking the stack in one call: tasks that post more tasks must
 * not keep the loop thread here forever; what is left makes the deadline
 * 0, so the host comes back. */
#define POSTED_ROUNDS 16

void chat__posted_run(chat_server *srv, chat_time_ms now) {
  for (int round = 0; round < POSTED_ROUNDS; round++) {
    chat_task *t =
        atomic_exchange_explicit(&srv->posted, NULL, memory_order_acquire);
    if (!t)
      return;
    /* Newest first on the stack: reverse into posting order. */
    chat_task *fifo = NULL;
    while (t) {
      chat_task *next = t->link;
      t->link = fifo;
      fifo = t;
      t = next;
    }
    while (fifo) {
      chat_task *next = fifo->link; /* fn may free the task */
      fifo->link = NULL;
      fifo->fn(fifo->user_data, srv, now);
      fifo = next;
    }
  }
}

bool chat__work_waiting(const chat_server *srv) {
  return srv->ready_head || srv->pump_head ||
         atomic_load_explicit(&((chat_server *)srv)->posted,
                              memory_order_relaxed) != NULL;
}

chat_err chat_server_run_posted(chat_server *srv, chat_time_ms now) {
  if (!srv)
    return CHAT_ERR_INVAL;
  chat__srv_clock(srv, now);
  chat__enter(srv);
  chat__posted_run(srv, now);
  chat__leave(srv);
  return CHAT_OK;
}

void chat__ops_free(chat_server *srv) {
  /* Posted work is dropped: op tasks belong to ops released below, and
   * chat_task structs are the caller's. */
  atomic_store_explicit(&srv->posted, NULL, memory_order_relaxed);
  while (srv->ready_head) {
    chat_op *op = srv->ready_head;
    srv->ready_head = op->next;
    op_release(srv, op);
  }
  srv->ready_tail = NULL;
  while (srv->ops_live) {
    chat_op *op = srv->ops_live;
    live_unlink(srv, op);
    if (op->state == OP_PENDING)
      srv->st.ops_in_flight--;
    op_release(srv, op);
  }
  while (srv->ops_pool) {
    chat_op *op = srv->ops_pool;
    srv->ops_pool = op->next;
    chat__free(&srv->a, op);
  }
  srv->n_pool = 0;
}

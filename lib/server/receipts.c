/* Receipts (PROTOCOL.md 4.5) and read sync (4.7). A member's `delivered` or
 * `read` is a high-water mark applied by the store in one transaction; the
 * resulting receipt frames are coalesced per (sender, conversation, state)
 * and flushed every receipt_flush_ms, so a popular group message costs its
 * sender a handful of frames, not one per reader. */
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

/* One delivered/read frame: membership, the store's mark, read sync. */
typedef struct mark_job {
  chat__job base;
  chat_session *s; /* referenced */
  char conv[CHAT_ID_BUF];
  const char *ref; /* static: the frame type's name */
  chat_receipt_state state;
  uint64_t up_to;
  bool group;
  bool track_delivered;
  bool advanced;
  bool finished;   /* the session's next frames may go */
  uint64_t newest;
  uint64_t clear_up_to; /* receipt-aware push: push_read's answer */
} mark_job;

static void mark_release(chat_server *srv, chat__job *j) {
  mark_job *mj = (mark_job *)j;
  chat__sess_unref(srv, mj->s);
  chat__free(&srv->a, mj);
}

static void mark_finish(mark_job *j) {
  if (j->finished)
    return;
  j->finished = true;
  chat__sess_frame_done(j->s);
}

/* Receipt-aware push (PROTOCOL.md section 8): the read passed messages
 * this member was pushed about; their devices drop those notifications. */
static void on_push_read(chat_server *srv, chat__job *job, uint32_t idx,
                         chat_err rc) {
  (void)idx;
  mark_job *j = (mark_job *)job;
  if (rc != CHAT_OK) {
    srv->st.store_errors_total++;
    return;
  }
  if (j->clear_up_to > 0)
    chat__push_clear(srv, j->s->id.user_id, j->conv, j->clear_up_to);
}

static void on_update(void *ctx, const chat_mark_update *u) {
  chat_op *op = ctx;
  chat_server *srv = op->srv;
  mark_job *mc = (mark_job *)op->job;
  char key[3 * CHAT_ID_BUF + 4];
  size_t kl = (size_t)snprintf(key, sizeof key, "%s\n%s\n%d", u->sender_id,
                               mc->conv, (int)mc->state);
  void **slot = chat__map_get(&srv->receipts, key, kl);
  pending_receipt *p;
  if (slot) {
    p = *slot;
    /* Keep the highest mark; for the same message, the latest counts. */
    if (u->message_id < p->message_id)
      return;
  } else {
    p = chat__calloc(&srv->a, 1, sizeof *p);
    if (!p)
      return; /* the mark is stored; the sender sees it on the next one */
    if (chat__map_put(&srv->receipts, key, kl, p, NULL) != CHAT_OK) {
      chat__free(&srv->a, p);
      return;
    }
    snprintf(p->sender, sizeof p->sender, "%s", u->sender_id);
    snprintf(p->conv, sizeof p->conv, "%s", mc->conv);
    p->state = mc->state;
    p->group = mc->group;
  }
  snprintf(p->member, sizeof p->member, "%s", mc->s->id.user_id);
  p->message_id = u->message_id;
  p->delivered = u->delivered;
  p->read = u->read;
  if (srv->receipt_due == CHAT_TIME_NEVER)
    srv->receipt_due = srv->clock_ms + srv->s.receipt_flush_ms;
}

static void on_newest(void *ctx, const chat_message *m) {
  mark_job *j = ctx;
  j->newest = m->message_id;
}

static void on_newest_done(chat_server *srv, chat__job *job, uint32_t idx,
                           chat_err rc) {
  (void)idx;
  mark_job *j = (mark_job *)job;
  if (rc != CHAT_OK || j->newest == 0) {
    /* Better no sync than a wrong one: the devices still see REST. */
    srv->st.store_errors_total += rc != CHAT_OK;
    mark_finish(j);
    return;
  }
  chat_state_change sc = {.conversation_id = j->conv,
                          .last_read_message_id =
                              j->up_to < j->newest ? j->up_to : j->newest};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_STATE_CHANGE,
                  .state_change = &sc};
  chat__shared_frame *sf = chat__frame_make(srv, &f);
  if (sf) {
    const char *self = j->s->id.user_id;
    chat__deliver(srv, sf, &self, 1, self, j->s->id.device_id, NULL);
    chat__frame_unref(srv, sf);
  }
  mark_finish(j);
  if (srv->has_push && srv->push.clear && srv->store.push_read &&
      srv->store.push_record && srv->store.push_targets) {
    chat_op *op;
    CHAT__CALL(srv, &j->base, on_push_read, 0, op,
               srv->store.push_read(srv->store.self, j->conv,
                                    j->s->id.user_id, sc.last_read_message_id,
                                    &j->clear_up_to, op));
  }
}

static void on_marked(chat_server *srv, chat__job *job, uint32_t idx,
                      chat_err rc) {
  (void)idx;
  mark_job *j = (mark_job *)job;
  if (rc != CHAT_OK) {
    srv->st.store_errors_total++;
    chat__sess_error(j->s, CHAT_WIRE_INTERNAL, "storage failed", j->ref, 0);
    mark_finish(j);
    return;
  }
  if (!j->advanced || j->state != CHAT_RECEIPT_READ) {
    /* Backwards or repeated marks change nothing. */
    srv->st.receipts_applied_total += j->advanced;
    mark_finish(j);
    return;
  }
  srv->st.receipts_applied_total++;
  /* Read sync: the user's other devices clear their unread badge. The
   * store caps a mark at the newest message, so the other devices must
   * learn the capped mark: a mark past the end would make them treat
   * messages written later as read. */
  chat_op *op;
  CHAT__CALL(srv, &j->base, on_newest_done, 0, op,
             srv->store.messages(srv->store.self, j->conv, CHAT_PAGE_LATEST,
                                 0, 1, on_newest, j, op));
}

static void on_mark_conv(chat_server *srv, chat__job *job,
                         const conv_entry *c, chat_err err) {
  mark_job *j = (mark_job *)job;
  if (!chat__conv_check_member(j->s, c, err, j->ref)) {
    mark_finish(j);
    return;
  }
  j->group = c->type == CHAT_CONVERSATION_GROUP;
  j->track_delivered =
      !j->group || c->n_members <= srv->s.delivered_max_members;
  /* Large groups have no "delivered" (only sent and read): drop it before
   * it costs a store round trip. */
  if (j->state == CHAT_RECEIPT_DELIVERED && !j->track_delivered) {
    mark_finish(j);
    return;
  }
  chat_mark_in in = {.conversation_id = j->conv,
                     .member_id = j->s->id.user_id,
                     .state = j->state,
                     .up_to = j->up_to,
                     .now_ms = chat__srv_wall(srv),
                     .group = j->group,
                     .track_delivered = j->track_delivered};
  chat_op *op;
  CHAT__CALL(srv, &j->base, on_marked, 0, op,
             srv->store.mark(srv->store.self, &in, &j->advanced, on_update,
                             op, op));
}

void chat__on_mark(chat_session *s, chat_frame_type t, const chat_mark *m,
                   chat_time_ms now) {
  (void)now;
  chat_server *srv = s->srv;
  const char *ref = chat_frame_type_name(t);
  mark_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (!j) {
    chat__sess_error(s, CHAT_WIRE_INTERNAL, "out of memory", ref, 0);
    chat__sess_frame_done(s);
    return;
  }
  chat__job_init(&j->base, mark_release);
  j->s = s;
  chat__sess_ref(s);
  snprintf(j->conv, sizeof j->conv, "%s", m->conversation_id);
  j->ref = ref;
  j->state = t == CHAT_FRAME_READ ? CHAT_RECEIPT_READ : CHAT_RECEIPT_DELIVERED;
  j->up_to = m->up_to_message_id;
  if (j->state == CHAT_RECEIPT_READ && s->id.kind == CHAT_SENDER_BOT) {
    /* Bots never produce read receipts (PROTOCOL.md section 8): the mark
     * is dropped, without an error (a bot SDK may send it anyway). */
    srv->st.bot_reads_dropped_total++;
    chat__job_unref(srv, &j->base);
    chat__sess_frame_done(s);
    return;
  }
  chat__conv_load(srv, j->conv, &j->base, on_mark_conv);
  chat__job_unref(srv, &j->base);
}

/* ---- the flush: coalesced receipt frames ---- */

/* The counters read back; on failure the mark's own counts stand. */
typedef struct counts {
  uint32_t delivered, read;
} counts;

typedef struct flush_job {
  chat__job base;
  pending_receipt **items;
  counts *got;
  size_t n;
  size_t waiting; /* counter reads not answered, plus one guard */
} flush_job;

static void flush_release(chat_server *srv, chat__job *j) {
  flush_job *fj = (flush_job *)j;
  for (size_t i = 0; i < fj->n; i++)
    chat__free(&srv->a, fj->items[i]);
  chat__free(&srv->a, fj->items);
  chat__free(&srv->a, fj->got);
  chat__free(&srv->a, fj);
}

static void flush_send(chat_server *srv, flush_job *j) {
  for (size_t i = 0; i < j->n; i++) {
    pending_receipt *p = j->items[i];
    chat_receipt r = {.conversation_id = p->conv,
                      .message_id = p->message_id,
                      .state = p->state,
                      .member_id = p->member,
                      .has_counts = p->group,
                      .delivered_count = p->delivered,
                      .read_count = p->read};
    chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RECEIPT,
                    .receipt = &r};
    chat__shared_frame *sf = chat__frame_make(srv, &f);
    if (sf) {
      const char *sender = p->sender;
      chat__deliver(srv, sf, &sender, 1, NULL, NULL, NULL);
      chat__frame_unref(srv, sf);
      srv->st.receipt_frames_total++;
    }
  }
  srv->receipts_busy = false;
}

static void on_counts(chat_server *srv, chat__job *job, uint32_t idx,
                      chat_err rc) {
  flush_job *j = (flush_job *)job;
  if (rc == CHAT_OK) {
    j->items[idx]->delivered = j->got[idx].delivered;
    j->items[idx]->read = j->got[idx].read;
  } else {
    srv->st.store_errors_total++;
  }
  if (--j->waiting == 0)
    flush_send(srv, j);
}

void chat__receipts_flush(chat_server *srv) {
  if (srv->receipts_busy)
    return; /* the next flush waits for this one: frames stay in order */
  srv->receipt_due = CHAT_TIME_NEVER;
  size_t n = chat__map_len(&srv->receipts);
  if (n == 0)
    return;
  flush_job *j = chat__calloc(&srv->a, 1, sizeof *j);
  if (j) {
    j->items = chat__alloc(&srv->a, n * sizeof *j->items);
    j->got = chat__calloc(&srv->a, n, sizeof *j->got);
  }
  if (!j || !j->items || !j->got) {
    if (j) {
      chat__free(&srv->a, j->items);
      chat__free(&srv->a, j->got);
    }
    chat__free(&srv->a, j);
    /* Try again at the next flush time. */
    srv->receipt_due = srv->clock_ms + srv->s.receipt_flush_ms;
    return;
  }
  chat__job_init(&j->base, flush_release);
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->receipts, &it, &k, &kl, &v)) {
    j->items[j->n++] = v;
    chat__map_del(&srv->receipts, k, kl, NULL);
  }
  srv->receipts_busy = true;
  j->waiting = 1;
  for (size_t i = 0; i < j->n && srv->store.receipts; i++) {
    pending_receipt *p = j->items[i];
    /* The counters kept from the mark may be stale by now: a later mark
     * of another state, or of an older message, moves them without
     * naming this message. Counters are O(1) to read, so send them as
     * they are at the flush. */
    if (!p->group)
      continue;
    j->waiting++;
    chat_op *op;
    CHAT__CALL(srv, &j->base, on_counts, (uint32_t)i, op,
               srv->store.receipts(srv->store.self, p->conv, p->message_id,
                                   &j->got[i].delivered, &j->got[i].read,
                                   NULL, NULL, op));
  }
  if (--j->waiting == 0)
    flush_send(srv, j);
  chat__job_unref(srv, &j->base);
}

void chat__receipts_free(chat_server *srv) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->receipts, &it, &k, &kl, &v))
    chat__free(&srv->a, v);
}

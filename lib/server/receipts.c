/* Receipts (PROTOCOL.md 4.5) and read sync (4.7). A member's `delivered` or
 * `read` is a high-water mark applied by the store in one transaction; the
 * resulting receipt frames are coalesced per (sender, conversation, state)
 * and flushed every receipt_flush_ms, so a popular group message costs its
 * sender a handful of frames, not one per reader. */
#include <stdio.h>
#include <string.h>

#include "server_internal.h"

typedef struct mark_ctx {
  chat_server *srv;
  const char *conv;
  const char *member;
  chat_receipt_state state;
  bool group;
  chat_time_ms now;
} mark_ctx;

static void on_update(void *ctx, const chat_mark_update *u) {
  mark_ctx *mc = ctx;
  chat_server *srv = mc->srv;
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
  snprintf(p->member, sizeof p->member, "%s", mc->member);
  p->message_id = u->message_id;
  p->delivered = u->delivered;
  p->read = u->read;
  if (srv->receipt_due == CHAT_TIME_NEVER)
    srv->receipt_due = mc->now + srv->s.receipt_flush_ms;
}

static void on_newest(void *ctx, const chat_message *m) {
  *(uint64_t *)ctx = m->message_id;
}

void chat__on_mark(chat_session *s, chat_frame_type t, const chat_mark *m,
                   chat_time_ms now) {
  chat_server *srv = s->srv;
  const char *ref = chat_frame_type_name(t);
  const conv_entry *c = chat__conv_for_member(s, m->conversation_id, ref);
  if (!c)
    return;
  bool group = c->type == CHAT_CONVERSATION_GROUP;
  bool track_delivered = !group || c->n_members <= srv->s.delivered_max_members;
  chat_receipt_state state =
      t == CHAT_FRAME_READ ? CHAT_RECEIPT_READ : CHAT_RECEIPT_DELIVERED;
  /* Large groups have no "delivered" (only sent and read): drop it before
   * it costs a store round trip. */
  if (state == CHAT_RECEIPT_DELIVERED && !track_delivered)
    return;
  chat_mark_in in = {.conversation_id = m->conversation_id,
                     .member_id = s->id.user_id,
                     .state = state,
                     .up_to = m->up_to_message_id,
                     .now_ms = chat__srv_wall(srv),
                     .group = group,
                     .track_delivered = track_delivered};
  mark_ctx mc = {srv, m->conversation_id, s->id.user_id, state, group, now};
  bool advanced = false;
  chat_err rc = srv->store.mark(srv->store.self, &in, &advanced, on_update,
                                &mc);
  if (rc != CHAT_OK) {
    srv->st.store_errors_total++;
    chat__sess_error(s, CHAT_WIRE_INTERNAL, "storage failed", ref, 0);
    return;
  }
  if (!advanced)
    return; /* backwards or repeated marks change nothing */
  srv->st.receipts_applied_total++;
  if (state != CHAT_RECEIPT_READ)
    return;
  /* Read sync: the user's other devices clear their unread badge. The
   * store caps a mark at the newest message, so the other devices must
   * learn the capped mark: a mark past the end would make them treat
   * messages written later as read. */
  uint64_t newest = 0;
  rc = srv->store.messages(srv->store.self, m->conversation_id,
                           CHAT_PAGE_LATEST, 0, 1, on_newest, &newest);
  if (rc != CHAT_OK || newest == 0) {
    /* Better no sync than a wrong one: the devices still see REST. */
    srv->st.store_errors_total += rc != CHAT_OK;
    return;
  }
  chat_state_change sc = {.conversation_id = m->conversation_id,
                          .last_read_message_id =
                              m->up_to_message_id < newest
                                  ? m->up_to_message_id
                                  : newest};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_STATE_CHANGE,
                  .state_change = &sc};
  chat__shared_frame *sf = chat__frame_make(srv, &f);
  if (!sf)
    return;
  const char *self = s->id.user_id;
  chat__deliver(srv, sf, &self, 1, self, s->id.device_id, NULL, NULL);
  chat__frame_unref(srv, sf);
}

void chat__receipts_flush(chat_server *srv) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->receipts, &it, &k, &kl, &v)) {
    pending_receipt *p = v;
    /* The counters kept from the mark may be stale by now: a later mark
     * of another state, or of an older message, moves them without
     * naming this message. Counters are O(1) to read, so send them as
     * they are at the flush. */
    if (p->group && srv->store.receipts) {
      uint32_t dl, rd;
      if (srv->store.receipts(srv->store.self, p->conv, p->message_id, &dl,
                              &rd, NULL, NULL) == CHAT_OK) {
        p->delivered = dl;
        p->read = rd;
      } else {
        srv->st.store_errors_total++;
      }
    }
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
      chat__deliver(srv, sf, &sender, 1, NULL, NULL, NULL, NULL);
      chat__frame_unref(srv, sf);
      srv->st.receipt_frames_total++;
    }
    chat__map_del(&srv->receipts, k, kl, NULL);
    chat__free(&srv->a, p);
  }
  srv->receipt_due = CHAT_TIME_NEVER;
}

void chat__receipts_free(chat_server *srv) {
  size_t it = 0;
  const char *k;
  size_t kl;
  void *v;
  while (chat__map_next(&srv->receipts, &it, &k, &kl, &v))
    chat__free(&srv->a, v);
}

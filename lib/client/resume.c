/* Catching up after (re)connect: the `resume` frame built from the store's
 * last_seen map, `history` frames, `resume_failed`, `resumed`, and the
 * progress report. Conversations the server could not close over the
 * socket are handed to REST (rest.c). */
#include "client/client_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct resume_build {
  chat_client *c;
  chat_resume_entry *e;
  size_t n, cap;
  uint64_t since;
  bool oom;
} resume_build;

static void resume_cb(void *ctx, const char *conv, uint64_t id) {
  resume_build *b = ctx;
  if (b->oom || id == 0)
    return;
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 16;
    chat_resume_entry *ne = chat__realloc(&b->c->a, b->e, cap * sizeof *ne);
    if (!ne) {
      b->oom = true;
      return;
    }
    b->e = ne;
    b->cap = cap;
  }
  char *copy = chat__strndup(&b->c->a, conv, strlen(conv));
  if (!copy) {
    b->oom = true;
    return;
  }
  b->e[b->n].conversation_id = copy;
  b->e[b->n].message_id = id;
  b->n++;
  if (id > b->since)
    b->since = id;
}

/* Most recently active first (the last id seen stands for activity);
 * ties by id, so that every round of a paced resume cuts the same
 * batches. */
static int newest_first(const void *x, const void *y) {
  const chat_resume_entry *a = x, *b = y;
  if (a->message_id != b->message_id)
    return a->message_id < b->message_id ? 1 : -1;
  return strcmp(a->conversation_id, b->conversation_id);
}

/* The largest message id: a `since` no conversation has anything after. */
#define SINCE_NOTHING ((uint64_t)INT64_MAX)

/* One round of a paced resume (section 8): the batch of round
 * c->resume_round among the conversations sorted most recently active
 * first, and `since` past every id, so that the server answers for the
 * batch only. */
static chat_err send_batch(chat_client *c, resume_build *b) {
  qsort(b->e, b->n, sizeof *b->e, newest_first);
  size_t from = (size_t)c->resume_round * c->resume_batch;
  size_t n = from < b->n ? b->n - from : 0;
  if (n > c->resume_batch)
    n = c->resume_batch;
  chat_resume r = {.last_seen = b->e + from, .n_last_seen = n,
                   .has_since = true, .since = SINCE_NOTHING};
  chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUME,
                  .resume = &r};
  return chat__client_queue_frame(c, &f, NULL);
}

/* The one resume (or the last round of a paced one): every conversation,
 * and the real `since`. */
static chat_err send_full(chat_client *c, resume_build *b) {
  chat_err e = CHAT_OK;
  size_t keep = b->n > CHAT__CLIENT_MAX_RESUME_ENTRIES
                    ? CHAT__CLIENT_MAX_RESUME_ENTRIES
                    : b->n;
  bool sorted = false;
  for (;;) {
    if (keep < b->n && !sorted) {
      qsort(b->e, b->n, sizeof *b->e, newest_first);
      sorted = true;
    }
    /* Unlisted conversations get what is after `since`: when some are
     * left out, `since` must go back to the oldest of them, or the
     * messages between their last_seen and the newest id would be
     * skipped. */
    uint64_t since = keep < b->n ? b->e[b->n - 1].message_id : b->since;
    chat_resume r = {.last_seen = b->e, .n_last_seen = keep,
                     .has_since = since > 0, .since = since};
    chat_frame f = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_RESUME,
                    .resume = &r};
    e = chat__client_queue_frame(c, &f, NULL);
    /* Long conversation ids can pass the frame limit first. */
    if (e != CHAT_ERR_FRAME_TOO_LARGE || keep <= 1)
      return e;
    keep /= 2;
  }
}

/* `resume` from the store's last_seen map; `since` is the newest id this
 * device has seen anywhere, absent on a fresh device (the server then
 * sends a `conversation` frame for each conversation instead). A device
 * with more conversations than a resume may list names the most recently
 * active ones, and `since` covers the rest.
 *
 * When hello asked for paced resumes (resume_batch_hint) and the device
 * holds more conversations than that, the resume goes in rounds: one
 * batch per round, each waiting for the `resumed` of the one before, and
 * a last round that lists every conversation with the real `since`. This
 * sends round c->resume_round and sets c->resume_final when it is the
 * last. */
chat_err chat__client_resume_send(chat_client *c) {
  resume_build b = {.c = c};
  chat_err e = c->st->each_last_seen(c->st->self, resume_cb, &b);
  if (!e && b.oom)
    e = CHAT_ERR_NOMEM;
  c->resume_final = true;
  size_t rounds = c->resume_batch && b.n > c->resume_batch
                      ? (b.n + c->resume_batch - 1) / c->resume_batch
                      : 1;
  if (!e && (size_t)c->resume_round + 1 < rounds) {
    c->resume_final = false;
    e = send_batch(c, &b);
  } else if (!e) {
    e = send_full(c, &b);
  }
  if (e && e != CHAT_ERR_NOMEM && e != CHAT_ERR_FRAME_TOO_LARGE)
    e = CHAT_ERR_MODULE;
  for (size_t i = 0; i < b.n; i++)
    chat__free(&c->a, (char *)b.e[i].conversation_id);
  chat__free(&c->a, b.e);
  return e;
}

/* Remember (or forget) that conv's history stopped before complete:true. */
static void partial_set(chat_client *c, const char *conv, bool on) {
  size_t n = strlen(conv);
  if (on)
    (void)chat__map_put(&c->partial, conv, n, c, NULL);
  else
    chat__map_del(&c->partial, conv, n, NULL);
}

void chat__client_resume_reset(chat_client *c) {
  chat__map_free(&c->partial);
  chat__map_init(&c->partial, &c->a, c->map_seed + 5);
}

void chat__client_resume_free(chat_client *c) {
  chat__map_free(&c->partial);
}

void chat__client_progress(chat_client *c, const char *conv) {
  if (!c->cb.on_resume_progress)
    return;
  uint32_t gaps = chat__creq_gaps(c);
  chat_resume_progress p = {.conversation_id = conv,
                            .gaps_open = gaps,
                            .messages = c->resume_msgs,
                            .resumed = c->resumed,
                            .complete = c->resumed && gaps == 0};
  c->cb.on_resume_progress(c->ud, c, &p);
}

void chat__client_on_history(chat_client *c, const chat_history *h,
                             chat_time_ms now) {
  const char *conv = h->conversation_id;
  bool gap = chat__creq_gap_is_open(c, conv);
  uint64_t max_id = 0;
  for (size_t i = 0; i < h->n_messages; i++) {
    if (strcmp(h->messages[i].conversation_id, conv) != 0) {
      chat__client_error(c, CHAT_ERR_BAD_VALUE, conv,
                         "history message of another conversation", 0,
                         false);
      continue;
    }
    chat__client_store_message(c, &h->messages[i], CHAT_ORIGIN_RESUME, !gap,
                               &max_id);
  }
  partial_set(c, conv, !h->complete);
  chat__client_auto_delivered(c, conv, max_id, now);
  chat__client_progress(c, conv);
}

void chat__client_on_resume_failed(chat_client *c,
                                   const chat_resume_failed *rf,
                                   chat_time_ms now) {
  const char *r = rf->reason.ptr ? rf->reason.ptr : "";
  partial_set(c, rf->conversation_id, false);
  if (strcmp(r, "not_member") == 0 ||
      strcmp(r, "no_such_conversation") == 0) {
    /* Not ours any more (removed while away, or left elsewhere): stop
     * asking for it, and drop the user from the stored copy. */
    chat__client_left(c, rf->conversation_id);
    chat__client_error(c, CHAT_ERR_NOT_FOUND, rf->conversation_id,
                       "resume refused: not a member", 0, false);
    return;
  }
  /* too_old, or a reason this version does not know: page it over REST. */
  chat_err e = chat__creq_gap_open(c, rf->conversation_id, now);
  if (e)
    chat__client_error(c, e, rf->conversation_id,
                       "cannot start REST paging", 0, false);
  chat__client_progress(c, rf->conversation_id);
}

void chat__client_on_resumed(chat_client *c, chat_time_ms now) {
  if (!c->resume_final) {
    /* A round of a paced resume is done: the next one (its history came
     * in like any; a history cut short still opens its REST gap at the
     * end). */
    c->resume_round++;
    chat_err e = chat__client_resume_send(c);
    if (e) {
      chat__client_error(c, e, NULL, "cannot build resume", 0, false);
      chat__client_request_close(c, "cannot build resume");
    }
    return;
  }
  /* A conversation whose history stopped before a complete:true frame has
   * a hole the server did not fill: page it over REST. */
  for (;;) {
    size_t it = 0;
    const char *key;
    size_t klen;
    if (!chat__map_next(&c->partial, &it, &key, &klen, NULL))
      break;
    char conv[CHAT__CLIENT_ID_BUF];
    if (klen >= sizeof conv) {
      chat__map_del(&c->partial, key, klen, NULL);
      continue;
    }
    memcpy(conv, key, klen);
    conv[klen] = 0;
    chat__map_del(&c->partial, conv, klen, NULL);
    (void)chat__creq_gap_open(c, conv, now);
  }
  c->resumed = true;
  chat__client_set_state(c, CHAT_CLIENT_READY);
  chat__client_progress(c, NULL);
}

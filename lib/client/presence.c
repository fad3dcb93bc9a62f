/* The presence subscription: the users on screen, sent when connected and
 * again after every reconnect. */
#include "client/client_internal.h"

#include <stdio.h>
#include <string.h>

static void queue_subscribe(chat_client *c, const char *const *ids,
                            size_t n) {
  chat_presence_subscribe ps = {.user_ids = ids, .n_user_ids = n};
  chat_frame f = {.version = CHAT_FRAME_V1,
                  .type = CHAT_FRAME_PRESENCE_SUBSCRIBE,
                  .presence_subscribe = &ps};
  (void)chat__client_queue_frame(c, &f, NULL);
}

void chat__client_presence_send(chat_client *c) {
  if (!chat__client_online(c) || c->n_presence == 0)
    return;
  queue_subscribe(c, (const char *const *)c->presence, c->n_presence);
}

void chat__client_presence_free(chat_client *c) {
  for (size_t i = 0; i < c->n_presence; i++)
    chat__free(&c->a, c->presence[i]);
  chat__free(&c->a, c->presence);
  c->presence = NULL;
  c->n_presence = 0;
}

chat_err chat_client_watch_presence(chat_client *c,
                                    const char *const *user_ids, size_t n,
                                    chat_time_ms now) {
  (void)now;
  if (!c)
    return CHAT_ERR_INVAL;
  if (n && !user_ids)
    return chat__client_fail(c, CHAT_ERR_INVAL,
                             "user_ids: NULL with n %zu", n);
  if (n > CHAT__CLIENT_MAX_PRESENCE)
    return chat__client_fail(c, CHAT_ERR_TOO_MANY,
                             "n: %zu users; at most %d may be watched", n,
                             CHAT__CLIENT_MAX_PRESENCE);
  for (size_t i = 0; i < n; i++) {
    char what[32];
    snprintf(what, sizeof what, "user_ids[%zu]", i);
    chat_err e = chat__client_check_id(c, what, user_ids[i]);
    if (e)
      return e;
  }
  char **ids = NULL;
  if (n) {
    ids = chat__calloc(&c->a, n, sizeof *ids);
    if (!ids)
      return chat__client_fail(c, CHAT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
      if (!(ids[i] = chat__strndup(&c->a, user_ids[i],
                                   strlen(user_ids[i])))) {
        for (size_t j = 0; j < i; j++)
          chat__free(&c->a, ids[j]);
        chat__free(&c->a, ids);
        return chat__client_fail(c, CHAT_ERR_NOMEM, "out of memory");
      }
  }
  bool had = c->n_presence > 0;
  chat__client_presence_free(c);
  c->presence = ids;
  c->n_presence = n;
  if (n)
    chat__client_presence_send(c);
  else if (had && chat__client_online(c))
    /* An empty list clears the server's subscriptions too. */
    queue_subscribe(c, NULL, 0);
  return CHAT_OK;
}

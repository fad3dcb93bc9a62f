/* chat-cli: a terminal client on the libchat client SDK.
 *
 *   chat-cli --url ws://127.0.0.1:8080 --token TOKEN --db alice.db
 *            [--ca CA.pem] [--insecure]
 *            [--backoff-base-ms N] [--backoff-cap-ms N]
 *
 * wss:// URLs use TLS: --ca names the CA bundle to trust, --insecure
 * accepts a self-signed certificate (for tests on loopback only).
 * --backoff-base-ms and --backoff-cap-ms shape the reconnect schedule
 * (chat_backoff; defaults 1000 and 60000).
 *
 * Commands, one per line on stdin:
 *   list                 fetch and show the conversation list
 *   open CONV            make CONV current and show its stored messages
 *   create USER          a direct conversation with USER
 *   group NAME U1,U2     a group conversation
 *   say TEXT             send TEXT to the current conversation
 *   burst N PREFIX       send N messages "PREFIX-0000", "PREFIX-0001", ...
 *                        to the current conversation at once
 *   older                page older history of the current conversation
 *   read                 mark the current conversation read
 *   type                 a keystroke in the current conversation
 *   watch U1,U2          presence of these users
 *   token TOKEN          give the client a new token (after
 *                        "auth-required"): it reconnects and resumes
 *   device PLATFORM TOK  register a push token (apns, fcm or webpush)
 *   edit ID TEXT         replace the body of your message ID (current
 *                        conversation)
 *   delete ID            delete message ID (yours; any, for a group admin)
 *   members              fetch the current conversation (members, admins)
 *   admin add USER       make USER an admin of the current group
 *   admin remove USER    take the admin right from USER (yourself too)
 *   remove USER          remove USER from the current group (admins)
 *   leave                leave the current group
 *   quit
 * Events are printed one per line, starting with a keyword (state,
 * message, notice, edit, delete, changed, ack, receipt, typing,
 * conversation, presence, error, done, caught-up, auth-required),
 * followed for people by a ✓ sent / ✓✓ delivered / ✓✓ read line:
 *   message CONV ID SENDER ORIGIN BODY   a message; " [edited]" after the
 *                        body when it was edited, "[deleted]" instead of
 *                        the body when deleted; SENDER ends in "[bot]"
 *                        for a bot (PROTOCOL.md section 8)
 *   notice CONV ID SENDER ORIGIN TEXT    a system message (a member or
 *                        admin change)
 *   edit CONV ID SENDER ORIGIN TARGET BODY / delete CONV ID SENDER ORIGIN
 *                        TARGET   an edit or delete entry of the log
 *   changed CONV ID edited BODY / changed CONV ID deleted   a stored
 *                        message changed by one
 *   conversation CONV TYPE M1,M2* [NAME]  members, admins marked with *
 *   reconnect-in MS      after "state backoff": the wait before the next
 *                        attempt
 *
 * Threads: the runner services the client on the main thread; a reader
 * thread hands each stdin line over with chat_client_lws_post(). On quit
 * the client closes gracefully, then the runner is stopped and freed in
 * the documented order (include/chat/client_lws.h). */
#include <chat/client.h>
#include <chat/client_lws.h>
#include <chat/sqlite.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static chat_client_lws *runner;
/* Guards `runner` between the reader thread's posts and its free. */
static pthread_mutex_t runner_mu = PTHREAD_MUTEX_INITIALIZER;

static char current[65];
static uint64_t newest, oldest;
static uint32_t list_req;

static const char *origin_name(chat_message_origin o) {
  switch (o) {
  case CHAT_ORIGIN_LIVE: return "live";
  case CHAT_ORIGIN_RESUME: return "resume";
  case CHAT_ORIGIN_REST: return "rest";
  case CHAT_ORIGIN_OLDER: return "older";
  }
  return "?";
}

static void track(const chat_message *m) {
  if (strcmp(m->conversation_id, current) != 0)
    return;
  if (m->message_id > newest)
    newest = m->message_id;
  if (m->message_id && (!oldest || m->message_id < oldest))
    oldest = m->message_id;
}

static void on_connection(void *ud, chat_client *c, chat_client_state s) {
  (void)ud;
  printf("state %s\n", chat_client_state_name(s));
  /* How long until the next attempt: the backoff, or after a goaway a
   * random wait within the server's retry_after_ms (section 8). */
  if (s == CHAT_CLIENT_BACKOFF) {
    chat_time_ms d = chat_client_next_deadline(c), now = chat_client_lws_now();
    printf("reconnect-in %llu\n", (unsigned long long)(d > now ? d - now : 0));
  }
}

static void on_message(void *ud, chat_client *c, const chat_message *m,
                       chat_message_origin o) {
  (void)c, (void)ud;
  const char *bot = m->sender_kind == CHAT_SENDER_BOT ? "[bot]" : "";
  unsigned long long id = (unsigned long long)m->message_id;
  if (m->body_type == CHAT_BODY_EDIT || m->body_type == CHAT_BODY_DELETE) {
    /* A log entry, not a message to show: its effect comes as
     * "changed". */
    bool edit = m->body_type == CHAT_BODY_EDIT;
    printf("%s %s %llu %s%s %s %llu%s%.*s\n", edit ? "edit" : "delete",
           m->conversation_id, id, m->sender_id, bot, origin_name(o),
           (unsigned long long)m->target_id, edit ? " " : "",
           edit ? (int)m->body.len : 0, m->body.ptr);
  } else if (m->body_type == CHAT_BODY_SYSTEM) {
    printf("notice %s %llu %s %s %.*s\n", m->conversation_id, id,
           m->sender_id, origin_name(o), (int)m->body.len, m->body.ptr);
  } else if (m->deleted) {
    printf("message %s %llu %s%s %s [deleted]\n", m->conversation_id, id,
           m->sender_id, bot, origin_name(o));
  } else {
    printf("message %s %llu %s%s %s %.*s%s\n", m->conversation_id, id,
           m->sender_id, bot, origin_name(o), (int)m->body.len, m->body.ptr,
           m->has_edited_ts ? " [edited]" : "");
  }
  track(m);
}

static void on_changed(void *ud, chat_client *c, const chat_message *m) {
  (void)c, (void)ud;
  if (m->deleted)
    printf("changed %s %llu deleted\n", m->conversation_id,
           (unsigned long long)m->message_id);
  else
    printf("changed %s %llu edited %.*s\n", m->conversation_id,
           (unsigned long long)m->message_id, (int)m->body.len, m->body.ptr);
}

static void on_ack(void *ud, chat_client *c, const chat_ack *a) {
  (void)c, (void)ud;
  printf("ack %s %llu%s\n✓ sent\n", a->client_msg_id,
         (unsigned long long)a->message_id,
         a->duplicate ? " duplicate" : "");
}

static void on_receipt(void *ud, chat_client *c, const chat_receipt *r) {
  (void)c, (void)ud;
  bool read = r->state == CHAT_RECEIPT_READ;
  printf("receipt %s %llu %s %s", r->conversation_id,
         (unsigned long long)r->message_id, r->member_id,
         read ? "read" : "delivered");
  if (r->has_counts)
    printf(" delivered=%u read=%u", (unsigned)r->delivered_count,
           (unsigned)r->read_count);
  printf("\n✓✓ %s\n", read ? "read" : "delivered");
}

static void on_typing(void *ud, chat_client *c, const char *conv,
                      const char *user, bool on) {
  (void)c, (void)ud;
  printf("typing %s %s %s\n", conv, user, on ? "on" : "off");
}

static void on_presence(void *ud, chat_client *c, const chat_presence *p) {
  (void)c, (void)ud;
  static const char *names[] = {"offline", "online", "idle"};
  printf("presence %s %s\n", p->user_id,
         (unsigned)p->state < 3 ? names[p->state] : "?");
}

static void on_state_change(void *ud, chat_client *c,
                            const chat_state_change *s) {
  (void)c, (void)ud;
  printf("read-elsewhere %s %llu\n", s->conversation_id,
         (unsigned long long)s->last_read_message_id);
}

static bool is_admin(const chat_conversation *cv, const char *user) {
  for (size_t i = 0; i < cv->n_admins; i++)
    if (strcmp(cv->admins[i], user) == 0)
      return true;
  return false;
}

static void print_conv(void *ud, const chat_conversation *cv) {
  (void)ud;
  printf("conversation %s %s ", cv->conversation_id,
         cv->type == CHAT_CONVERSATION_GROUP ? "group" : "direct");
  for (size_t i = 0; i < cv->n_members; i++)
    printf("%s%s%s", i ? "," : "", cv->members[i],
           is_admin(cv, cv->members[i]) ? "*" : "");
  if (cv->name.ptr)
    printf(" %.*s", (int)cv->name.len, cv->name.ptr);
  printf("\n");
}

static void on_conversation(void *ud, chat_client *c,
                            const chat_conversation *cv) {
  (void)c;
  print_conv(ud, cv);
}

static void on_error(void *ud, chat_client *c, const chat_client_error *e) {
  (void)c, (void)ud;
  printf("error %s %s%s%s",
         e->wire && e->wire->code ? e->wire->code : chat_err_name(e->err),
         e->message, e->client_msg_id ? " ref=" : "",
         e->client_msg_id ? e->client_msg_id : "");
  if (e->op == CHAT_FRAME_EDIT || e->op == CHAT_FRAME_DELETE)
    printf(" op=%s target=%llu", e->op == CHAT_FRAME_EDIT ? "edit" : "delete",
           (unsigned long long)e->target_id);
  printf("\n");
}

static void on_progress(void *ud, chat_client *c,
                        const chat_resume_progress *p) {
  (void)c, (void)ud;
  if (p->complete)
    printf("caught-up %u\n", (unsigned)p->messages);
}

static void on_done(void *ud, chat_client *c, uint32_t id, chat_err r) {
  printf("done %u %s\n", (unsigned)id, chat_err_name(r));
  if (id == list_req)
    chat_client_list_conversations(c, print_conv, ud);
}

static void show(void *ud, const chat_client_message *m) {
  (void)ud;
  const chat_message *msg = m->message;
  if (msg->body_type == CHAT_BODY_EDIT || msg->body_type == CHAT_BODY_DELETE) {
    /* Entries are applied to their targets, not shown; an unacked one
     * of ours is shown as what it will do. */
    if (m->pending)
      printf("  pending %s of %llu%s%.*s\n",
             msg->body_type == CHAT_BODY_EDIT ? "edit" : "delete",
             (unsigned long long)msg->target_id,
             msg->body_type == CHAT_BODY_EDIT ? ": " : "",
             msg->body_type == CHAT_BODY_EDIT ? (int)msg->body.len : 0,
             msg->body.ptr);
    track(msg);
    return;
  }
  if (msg->body_type == CHAT_BODY_SYSTEM) {
    printf("  %llu * %.*s\n", (unsigned long long)msg->message_id,
           (int)msg->body.len, msg->body.ptr);
    track(msg);
    return;
  }
  if (msg->deleted) {
    printf("  %llu %s: (message deleted)\n",
           (unsigned long long)msg->message_id, msg->sender_id);
    track(msg);
    return;
  }
  const char *edited = msg->has_edited_ts ? " (edited)" : "";
  const char *mark = !m->own ? ""
                     : m->pending ? " (sending)"
                     : m->state == CHAT_RECEIPT_READ ? " ✓✓ read"
                     : m->state == CHAT_RECEIPT_DELIVERED ? " ✓✓ delivered"
                                                          : " ✓ sent";
  printf("  %llu %s%s: %.*s%s%s\n", (unsigned long long)msg->message_id,
         msg->sender_id ? msg->sender_id : "me",
         msg->sender_kind == CHAT_SENDER_BOT ? "[bot]" : "",
         (int)msg->body.len, msg->body.ptr, edited, mark);
  track(msg);
}

/* Split "a,b,c" in place. */
static size_t split(char *s, const char **out, size_t max) {
  size_t n = 0;
  for (char *t = strtok(s, ","); t && n < max; t = strtok(NULL, ","))
    out[n++] = t;
  return n;
}

static void command(chat_client *c, char *line) {
  chat_time_ms now = chat_client_lws_now();
  char *arg = strchr(line, ' ');
  if (arg)
    *arg++ = 0;
  chat_err e = CHAT_OK;
  uint32_t id = 0;
  if (strcmp(line, "list") == 0) {
    e = chat_client_fetch_conversations(c, &list_req, now);
    id = list_req;
  } else if (strcmp(line, "open") == 0 && arg) {
    snprintf(current, sizeof current, "%s", arg);
    newest = oldest = 0;
    printf("opened %s\n", current);
    e = chat_client_list_messages(c, current, 0, 50, show, NULL);
  } else if (strcmp(line, "create") == 0 && arg) {
    const char *m[1] = {arg};
    e = chat_client_create_conversation(c, NULL, m, 1, &id, now);
  } else if (strcmp(line, "group") == 0 && arg) {
    char *list = strchr(arg, ' ');
    const char *m[64];
    size_t n = 0;
    if (list) {
      *list++ = 0;
      n = split(list, m, 64);
    }
    e = chat_client_create_conversation(c, arg, m, n, &id, now);
  } else if (strcmp(line, "say") == 0 && arg && current[0]) {
    char cmid[CHAT_CLIENT_MSG_ID_BUF];
    e = chat_client_send(c, current, arg, strlen(arg), cmid, now);
    if (!e)
      printf("sent %s\n", cmid);
  } else if (strcmp(line, "burst") == 0 && arg && current[0]) {
    char *prefix = strchr(arg, ' ');
    long n = strtol(arg, NULL, 10);
    if (!prefix || n <= 0 || n > 1000000) {
      printf("error usage burst N PREFIX\n");
      return;
    }
    prefix++;
    long i = 0;
    for (; i < n && !e; i++) {
      char body[256];
      int bl = snprintf(body, sizeof body, "%s-%04ld", prefix, i);
      if (bl < 0 || (size_t)bl >= sizeof body) {
        e = CHAT_ERR_TOO_LARGE;
        break;
      }
      e = chat_client_send(c, current, body, (size_t)bl, NULL, now);
    }
    if (!e)
      printf("burst %ld sent\n", i);
  } else if (strcmp(line, "token") == 0 && arg) {
    e = chat_client_set_token(c, arg, strlen(arg), now);
    if (!e)
      printf("token set\n");
  } else if (strcmp(line, "device") == 0 && arg) {
    char *tok = strchr(arg, ' ');
    if (tok)
      *tok++ = 0;
    e = chat_client_register_device(c, arg, tok, &id, now);
  } else if (strcmp(line, "edit") == 0 && arg && current[0]) {
    char *text = strchr(arg, ' ');
    uint64_t target = strtoull(arg, NULL, 10);
    char cmid[CHAT_CLIENT_MSG_ID_BUF];
    e = chat_client_edit(c, current, target, text ? text + 1 : "",
                         text ? strlen(text + 1) : 0, cmid, now);
    if (!e)
      printf("editing %s %llu\n", cmid, (unsigned long long)target);
  } else if (strcmp(line, "delete") == 0 && arg && current[0]) {
    uint64_t target = strtoull(arg, NULL, 10);
    char cmid[CHAT_CLIENT_MSG_ID_BUF];
    e = chat_client_delete(c, current, target, cmid, now);
    if (!e)
      printf("deleting %s %llu\n", cmid, (unsigned long long)target);
  } else if (strcmp(line, "members") == 0 && current[0]) {
    e = chat_client_fetch_conversation(c, current, &id, now);
  } else if (strcmp(line, "admin") == 0 && arg && current[0]) {
    char *user = strchr(arg, ' ');
    if (user)
      *user++ = 0;
    if (user && strcmp(arg, "add") == 0) {
      e = chat_client_add_admin(c, current, user, &id, now);
    } else if (user && strcmp(arg, "remove") == 0) {
      e = chat_client_remove_admin(c, current, user, &id, now);
    } else {
      printf("error usage admin add|remove USER\n");
      return;
    }
  } else if (strcmp(line, "remove") == 0 && arg && current[0]) {
    e = chat_client_remove_member(c, current, arg, &id, now);
  } else if (strcmp(line, "leave") == 0 && current[0]) {
    e = chat_client_leave(c, current, &id, now);
  } else if (strcmp(line, "older") == 0 && current[0]) {
    e = chat_client_load_older(c, current, oldest, 50, &id, now);
  } else if (strcmp(line, "read") == 0 && current[0]) {
    uint64_t up_to = newest;
    if (!up_to)
      chat_client_last_seen(c, current, &up_to);
    e = up_to ? chat_client_mark_read(c, current, up_to, now) : CHAT_OK;
  } else if (strcmp(line, "type") == 0 && current[0]) {
    e = chat_client_typing(c, current, now);
  } else if (strcmp(line, "watch") == 0 && arg) {
    const char *m[100];
    e = chat_client_watch_presence(c, m, split(arg, m, 100), now);
  } else if (strcmp(line, "quit") == 0) {
    chat_client_stop(c, now);
    chat_client_lws_quit(runner);
    return;
  } else if (line[0]) {
    printf("error unknown-command %s\n", line);
    return;
  }
  if (e)
    printf("error %s %s: %s\n", chat_err_name(e), line,
           chat_client_errmsg(c));
  else if (id)
    printf("request %u\n", (unsigned)id);
}

/* A stdin line, run on the service thread (c NULL: the runner stopped
 * before it ran; just free it). */
static void run_line(void *arg, chat_client_lws *r, chat_client *c) {
  (void)r;
  if (c)
    command(c, arg);
  free(arg);
}

static void post_line(const char *s) {
  char *copy = strdup(s);
  pthread_mutex_lock(&runner_mu);
  if (copy && (!runner ||
               chat_client_lws_post(runner, run_line, copy) != CHAT_OK))
    free(copy);
  pthread_mutex_unlock(&runner_mu);
}

static void *reader(void *arg) {
  (void)arg;
  char buf[8192];
  while (fgets(buf, sizeof buf, stdin)) {
    buf[strcspn(buf, "\r\n")] = 0;
    post_line(buf);
  }
  post_line("quit");
  return NULL;
}

static void on_auth(void *ud, chat_client *c, chat_auth_reason why) {
  (void)ud, (void)c;
  printf("auth-required %s\n",
         why == CHAT_AUTH_EXPIRED ? "expired" : "refused");
}

int main(int argc, char **argv) {
  const char *url = NULL, *token = NULL, *db = ":memory:", *ca = NULL;
  uint32_t backoff_base = 0, backoff_cap = 0;
  bool insecure = false;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--insecure") == 0) {
      insecure = true;
      memmove(argv + i, argv + i + 1, (size_t)(argc - i) * sizeof *argv);
      argc--;
      break;
    }
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--ca") == 0)
      ca = argv[i + 1];
    else if (strcmp(argv[i], "--url") == 0)
      url = argv[i + 1];
    else if (strcmp(argv[i], "--token") == 0)
      token = argv[i + 1];
    else if (strcmp(argv[i], "--db") == 0)
      db = argv[i + 1];
    else if (strcmp(argv[i], "--backoff-base-ms") == 0)
      backoff_base = (uint32_t)strtoul(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--backoff-cap-ms") == 0)
      backoff_cap = (uint32_t)strtoul(argv[i + 1], NULL, 10);
  }
  if (!url || !token) {
    fprintf(stderr, "usage: chat-cli --url ws://HOST:PORT --token TOKEN "
                    "[--db FILE] [--ca FILE] [--insecure] "
                    "[--backoff-base-ms N] [--backoff-cap-ms N]\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);

  chat_env env;
  if (chat_env_system(&env) != CHAT_OK)
    return 1;
  /* Zero keeps a field's default. */
  chat_backoff bo = chat_backoff_default();
  if (backoff_base)
    bo.base_ms = backoff_base;
  if (backoff_cap)
    bo.cap_ms = backoff_cap;
  chat_client_settings s = {.version = CHAT_CLIENT_SETTINGS_V1, .env = &env,
                            .backoff = &bo};
  chat_client_callbacks cb = {
      .version = CHAT_CLIENT_CALLBACKS_V2, .on_message_changed = on_changed,
      .on_connection = on_connection, .on_message = on_message,
      .on_ack = on_ack, .on_receipt = on_receipt, .on_typing = on_typing,
      .on_presence = on_presence, .on_state_change = on_state_change,
      .on_conversation = on_conversation, .on_error = on_error,
      .on_resume_progress = on_progress, .on_request_done = on_done,
      .on_auth_required = on_auth};
  chat_client_store_ops store;
  chat_errbuf eb;
  chat_err e = chat_sqlite_client_store_open(&store, db, NULL, &eb);
  if (e) {
    fprintf(stderr, "chat-cli: store %s: %s\n", db, eb.msg);
    return 1;
  }
  chat_client *c;
  if ((e = chat_client_new(&c, &s, &store, &cb, NULL, NULL, &eb))) {
    store.destroy(store.self);
    fprintf(stderr, "chat-cli: %s\n", eb.msg);
    return 1;
  }
  if ((e = chat_client_set_token(c, token, strlen(token),
                                 chat_client_lws_now()))) {
    fprintf(stderr, "chat-cli: %s\n", chat_client_errmsg(c));
    chat_client_free(c);
    return 1;
  }
  chat_client_lws_settings ls = {.version = CHAT_CLIENT_LWS_SETTINGS_V1,
                                 .url = url,
                                 .ca_file = ca,
                                 .allow_self_signed = insecure};
  if ((e = chat_client_lws_new(&runner, c, &ls, NULL, &eb))) {
    chat_client_free(c);
    fprintf(stderr, "chat-cli: %s\n", eb.msg);
    return 1;
  }
  chat_client_start(c, chat_client_lws_now());
  pthread_t th;
  if (pthread_create(&th, NULL, reader, NULL) != 0)
    return 1;
  pthread_detach(th);
  e = chat_client_lws_run(runner);
  if (e)
    fprintf(stderr, "chat-cli: runner: %s\n",
            chat_client_lws_errmsg(runner));
  /* Let a stop's last frames go out and the close complete. */
  for (int i = 0; !e && i < 50 &&
                  chat_client_get_state(c) != CHAT_CLIENT_IDLE &&
                  chat_client_get_state(c) != CHAT_CLIENT_UNAUTHORIZED;
       i++)
    if (chat_client_lws_service(runner) != CHAT_OK)
      break;
  chat_client_lws_stop(runner);
  pthread_mutex_lock(&runner_mu);
  chat_client_lws_free(runner);
  runner = NULL;
  pthread_mutex_unlock(&runner_mu);
  printf("outbox %zu\n", chat_client_outbox_len(c));
  chat_client_free(c);
  return e ? 1 : 0;
}

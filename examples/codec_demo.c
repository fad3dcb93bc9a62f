/* chat-codec-demo: what a chat.v1 server does with a client's frame, before
 * any socket is involved. Each input line is decoded as a client frame; a
 * good frame is printed in canonical form with an `ack` the server would
 * answer a send with, a bad one with the `error` frame the server would
 * send back.
 *
 * Usage: chat-codec-demo            built-in examples, good and bad
 *        chat-codec-demo -          one frame per line from stdin
 *        chat-codec-demo 'JSON'...  the frames given as arguments */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chat/chat.h>

static chat_codec *codec;
static chat_snowflake *ids;

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void print_out(const char *label, const chat_frame *f) {
  const char *json;
  size_t len;
  chat_err rc = chat_codec_encode(codec, f, &json, &len);
  if (rc != CHAT_OK)
    printf("  %s: cannot encode: %s\n", label, chat_strerror(rc));
  else
    printf("  %s %.*s\n", label, (int)len, json);
}

static void handle(const char *line, size_t len) {
  printf("<< %.*s\n", (int)len, line);
  const chat_frame *f;
  chat_decode_error e;
  chat_err rc = chat_codec_decode(codec, CHAT_DIR_TO_SERVER, line, len, &f, &e);
  if (rc != CHAT_OK) {
    /* The session closes on these instead of answering (PROTOCOL.md 3). */
    if (rc == CHAT_ERR_FRAME_TOO_LARGE || rc == CHAT_ERR_BAD_UTF8)
      printf("  (the server closes the connection with %d)\n",
             rc == CHAT_ERR_FRAME_TOO_LARGE ? 1009 : 1007);
    chat_error_frame ef = {.wire = e.wire,
                           .message = {e.message, strlen(e.message)},
                           .ref = {e.ref, e.ref ? strlen(e.ref) : 0}};
    chat_frame out = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_ERROR,
                      .error = &ef};
    printf("  refused: %s (%s)\n", chat_err_name(rc), chat_strerror(rc));
    print_out(">>", &out);
    return;
  }
  /* The decoded frame lives until the next decode; encoding does not
   * disturb it, so it can be printed back in canonical form. */
  printf("  %s frame\n", chat_frame_type_name(f->type));
  print_out("canonical", f);
  if (f->type == CHAT_FRAME_SEND) {
    uint64_t id;
    int64_t ts = wall_ms();
    if (chat_snowflake_next(ids, ts, &id) != CHAT_OK)
      return;
    chat_ack ack = {.client_msg_id = f->send->client_msg_id,
                    .message_id = id, .server_ts = ts};
    chat_frame out = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_ACK,
                      .ack = &ack};
    print_out(">>", &out);
  } else if (f->type == CHAT_FRAME_PING) {
    chat_frame out = {.version = CHAT_FRAME_V1, .type = CHAT_FRAME_PONG,
                      .ping = f->ping};
    print_out(">>", &out);
  }
}

static const char *const examples[] = {
  "{\"type\":\"send\",\"client_msg_id\":\"abc\",\"conversation_id\":"
  "\"conv_abc\",\"body\":\"are you home?\"}",
  "{\"type\":\"resume\",\"last_seen\":{\"conv_abc\":\"9187190\","
  "\"conv_xyz\":\"8800041\"}}",
  "{\"type\":\"ping\",\"nonce\":42}",
  "{\"type\":\"send\",\"client_msg_id\":\"abc\",\"conversation_id\":"
  "\"conv abc\",\"body\":\"hi\"}",
  "{\"type\":\"read\",\"conversation_id\":\"c\",\"up_to_message_id\":9}",
  "{\"type\":\"ack\",\"client_msg_id\":\"x\"}",
  "{\"type\":\"send\",\"body\":\"no ids\"",
};

int main(int argc, char **argv) {
  if (chat_codec_new(&codec, NULL, NULL, NULL) != CHAT_OK ||
      chat_snowflake_new(&ids, 1, NULL) != CHAT_OK)
    return 1;
  printf("libchat %s, frame codec demo (chat.v1)\n\n", chat_version_string());
  if (argc > 1 && strcmp(argv[1], "-") == 0) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) {
      while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
      if (n > 0)
        handle(line, (size_t)n);
    }
    free(line);
  } else if (argc > 1) {
    for (int i = 1; i < argc; i++)
      handle(argv[i], strlen(argv[i]));
  } else {
    for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++)
      handle(examples[i], strlen(examples[i]));
    chat_backoff b = chat_backoff_default();
    printf("\nreconnect backoff ceilings (base %u ms, cap %u ms):",
           b.base_ms, b.cap_ms);
    for (uint32_t a = 0; a < 8; a++)
      printf(" %u", chat_backoff_ceiling(&b, a));
    printf("\n\ntype frames after '-' to try your own: "
           "chat-codec-demo - < frames.txt\n");
  }
  chat_snowflake_free(ids);
  chat_codec_free(codec);
  return 0;
}

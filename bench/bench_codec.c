/* Codec throughput: decode and encode frames/s for a typical `send` (client
 * to server) and `message` (server to client), plus cJSON parsing the same
 * text as a yardstick. Each figure is the median of RUNS timed runs; the
 * min-max spread is printed too, because shared machines are noisy.
 *
 * Usage: bench-codec [runs] [ms-per-run]   (defaults 7 and 300) */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chat/chat.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef enum { OP_DECODE, OP_ENCODE, OP_CJSON } op_kind;

typedef struct job {
  const char *name;
  op_kind op;
  chat_direction dir;
  const char *json;
} job;

static chat_codec *codec;
static volatile size_t sink;

/* One timed run: as many operations as fit in ms milliseconds (checked
 * every 1,024 operations). Returns operations per second. */
static double run_once(const job *j, int ms, const chat_frame *f) {
  size_t len = strlen(j->json);
  size_t ops = 0;
  double t0 = now_s(), deadline = t0 + ms / 1000.0, t;
  do {
    for (int i = 0; i < 1024; i++) {
      const chat_frame *out;
      const char *text;
      size_t n;
      switch (j->op) {
      case OP_DECODE:
        if (chat_codec_decode(codec, j->dir, j->json, len, &out, NULL) !=
            CHAT_OK)
          abort();
        sink += (size_t)out->type;
        break;
      case OP_ENCODE:
        if (chat_codec_encode(codec, f, &text, &n) != CHAT_OK)
          abort();
        sink += n;
        break;
      case OP_CJSON: {
        cJSON *cj = cJSON_ParseWithLength(j->json, len);
        if (!cj)
          abort();
        sink += (size_t)cj->type;
        cJSON_Delete(cj);
        break;
      }
      }
    }
    ops += 1024;
    t = now_s();
  } while (t < deadline);
  return (double)ops / (t - t0);
}

int main(int argc, char **argv) {
  int runs = argc > 1 ? atoi(argv[1]) : 7;
  int ms = argc > 2 ? atoi(argv[2]) : 300;
  if (runs < 1 || runs > 99 || ms < 10 || ms > 10000) {
    fprintf(stderr, "usage: bench-codec [runs 1..99] [ms-per-run 10..10000]\n");
    return 2;
  }
  if (chat_codec_new(&codec, NULL, NULL, NULL) != CHAT_OK)
    return 1;

  const char *send_json =
      "{\"type\":\"send\",\"client_msg_id\":\"5b0c2f3e-8d7a-4c1e-9f6b-"
      "2a1d3e4f5a6b\",\"conversation_id\":\"conv_abc\",\"body\":\"are you "
      "home? I will be there in ten minutes, bring the keys\"}";
  const char *message_json =
      "{\"type\":\"message\",\"message_id\":\"9187202\",\"conversation_id\":"
      "\"conv_abc\",\"sender_id\":\"user_alice\",\"body\":\"are you home? I "
      "will be there in ten minutes, bring the keys\",\"server_ts\":"
      "1716000000123,\"client_msg_id\":\"5b0c2f3e-8d7a-4c1e-9f6b-"
      "2a1d3e4f5a6b\"}";
  const job jobs[] = {
    {"decode send", OP_DECODE, CHAT_DIR_TO_SERVER, send_json},
    {"encode send", OP_ENCODE, CHAT_DIR_TO_SERVER, send_json},
    {"cJSON parse send", OP_CJSON, CHAT_DIR_TO_SERVER, send_json},
    {"decode message", OP_DECODE, CHAT_DIR_TO_CLIENT, message_json},
    {"encode message", OP_ENCODE, CHAT_DIR_TO_CLIENT, message_json},
    {"cJSON parse message", OP_CJSON, CHAT_DIR_TO_CLIENT, message_json},
  };
  printf("libchat %s codec benchmark: %d runs x %d ms, median [min-max]\n",
         chat_version_string(), runs, ms);
  printf("{\"bench\":\"codec\",\"runs\":%d,\"ms_per_run\":%d,\"results\":[",
         runs, ms);
  char human[4096];
  size_t hl = 0;
  for (size_t k = 0; k < sizeof jobs / sizeof jobs[0]; k++) {
    const job *j = &jobs[k];
    /* The encoder needs its own codec's decoded frame as input. */
    static chat_codec *src;
    if (!src && chat_codec_new(&src, NULL, NULL, NULL) != CHAT_OK)
      return 1;
    const chat_frame *f = NULL;
    if (chat_codec_decode(src, j->dir, j->json, strlen(j->json), &f, NULL) !=
        CHAT_OK)
      return 1;
    double r[99];
    run_once(j, ms / 3 + 1, f); /* warm-up */
    for (int i = 0; i < runs; i++)
      r[i] = run_once(j, ms, f);
    qsort(r, (size_t)runs, sizeof r[0], cmp_double);
    double med = r[runs / 2];
    printf("%s{\"name\":\"%s\",\"bytes\":%zu,\"ops_per_s_median\":%.0f,"
           "\"min\":%.0f,\"max\":%.0f}",
           k ? "," : "", j->name, strlen(j->json), med, r[0], r[runs - 1]);
    hl += (size_t)snprintf(human + hl, sizeof human - hl,
                           "  %-20s %4zu B  %10.0f /s  [%.0f-%.0f]  %.0f "
                           "MB/s\n",
                           j->name, strlen(j->json), med, r[0], r[runs - 1],
                           med * (double)strlen(j->json) / 1e6);
  }
  printf("]}\n%s", human);
  chat_codec_free(codec);
  return 0;
}

/* lib/backends/push/file.c: push notes appended to a file as JSON lines,
 * read back and parsed with cJSON as the independent oracle. */
#include <chat/memory.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fail_alloc.h"

/* ---- helpers ---- */

static char *temp_path(void) {
  static char path[64];
  snprintf(path, sizeof path, "/tmp/chat-push-XXXXXX");
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0);
  close(fd);
  return path;
}

/* The whole file, NUL-terminated; *len gets its length. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f);
  static char buf[1 << 16];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

/* Split the file into lines; every line ends with '\n'. */
static int lines_of(char *text, size_t len, char **lines, int max) {
  int n = 0;
  size_t start = 0;
  for (size_t i = 0; i < len; i++) {
    if (text[i] != '\n')
      continue;
    cr_assert_lt(n, max);
    text[i] = '\0';
    lines[n++] = text + start;
    start = i + 1;
  }
  cr_assert_eq(start, len, "the file ends with a complete line");
  return n;
}

static const char *str_field(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  cr_assert(cJSON_IsString(v), "%s is a string", key);
  return v->valuestring;
}

static chat_push_note note_for(const char *user, uint64_t id,
                               const char *preview) {
  chat_push_note n = {
    .user_id = user,
    .device_id = "phone-1",
    .platform = "apns",
    .push_token = "secret-token",
    .conversation_id = "conv:42",
    .sender_id = "bob",
    .message_id = id,
    .preview = {preview, preview ? strlen(preview) : 0},
  };
  return n;
}

/* ---- tests ---- */

Test(push_file, writes_one_json_line_per_note) {
  const char *path = temp_path();
  chat_push_ops ops;
  cr_assert_eq(chat_push_file_open(&ops, path, NULL), CHAT_OK);
  cr_assert_eq(ops.version, CHAT_PUSH_OPS_V1);
  cr_assert(ops.self && ops.notify && ops.destroy);

  chat_push_note a = note_for("alice", 1234567890123ull, "bob sent a photo");
  cr_assert_eq(ops.notify(ops.self, &a), CHAT_OK);
  /* Flushed per line: visible before destroy. */
  size_t len;
  char *text = slurp(path, &len);
  cr_assert_gt(len, 0);
  cr_assert_eq(text[len - 1], '\n');

  chat_push_note b = note_for("carol", UINT64_MAX, "x");
  b.platform = "fcm";
  cr_assert_eq(ops.notify(ops.self, &b), CHAT_OK);
  chat_push_note c = note_for("dave", 0, "y");
  cr_assert_eq(ops.notify(ops.self, &c), CHAT_OK);
  ops.destroy(ops.self);

  text = slurp(path, &len);
  char *lines[8];
  cr_assert_eq(lines_of(text, len, lines, 8), 3);
  cJSON *o = cJSON_Parse(lines[0]);
  cr_assert_not_null(o, "line 1 is JSON: %s", lines[0]);
  cr_assert_str_eq(str_field(o, "user_id"), "alice");
  cr_assert_str_eq(str_field(o, "device_id"), "phone-1");
  cr_assert_str_eq(str_field(o, "conversation_id"), "conv:42");
  cr_assert_str_eq(str_field(o, "sender_id"), "bob");
  cr_assert_str_eq(str_field(o, "preview"), "bob sent a photo");
  cr_assert_str_eq(str_field(o, "platform"), "apns");
  cr_assert_str_eq(str_field(o, "message_id"), "1234567890123");
  cr_assert_null(cJSON_GetObjectItemCaseSensitive(o, "push_token"),
                 "the token is not logged");
  cr_assert_null(strstr(lines[0], "secret-token"));
  cr_assert_eq(cJSON_GetArraySize(o), 7, "exactly the documented fields");
  cJSON_Delete(o);

  o = cJSON_Parse(lines[1]);
  cr_assert_not_null(o);
  cr_assert_str_eq(str_field(o, "user_id"), "carol");
  cr_assert_str_eq(str_field(o, "platform"), "fcm");
  cr_assert_str_eq(str_field(o, "message_id"), "18446744073709551615");
  cJSON_Delete(o);
  o = cJSON_Parse(lines[2]);
  cr_assert_not_null(o);
  cr_assert_str_eq(str_field(o, "message_id"), "0");
  cJSON_Delete(o);
  unlink(path);
}

Test(push_file, escapes_the_preview) {
  const char *path = temp_path();
  chat_push_ops ops;
  cr_assert_eq(chat_push_file_open(&ops, path, NULL), CHAT_OK);
  const char *tricky = "Bob: \"hi\"\nsecond line\t\\ caf\xc3\xa9 "
                       "\xf0\x9f\x98\x80 \x01 \xe2\x80\xa8";
  chat_push_note n = note_for("alice", 7, tricky);
  cr_assert_eq(ops.notify(ops.self, &n), CHAT_OK);
  /* The length is authoritative: an embedded NUL is written escaped. */
  n.preview.ptr = "a\0b";
  n.preview.len = 3;
  cr_assert_eq(ops.notify(ops.self, &n), CHAT_OK);
  ops.destroy(ops.self);

  size_t len;
  char *text = slurp(path, &len);
  char *lines[4];
  cr_assert_eq(lines_of(text, len, lines, 4), 2,
               "a newline in the preview does not split the line");
  cJSON *o = cJSON_Parse(lines[0]);
  cr_assert_not_null(o, "%s", lines[0]);
  cr_assert_str_eq(str_field(o, "preview"), tricky);
  cJSON_Delete(o);
  /* UTF-8 is copied as is; controls and U+2028 are escaped. */
  cr_assert_not_null(strstr(lines[0], "caf\xc3\xa9 \xf0\x9f\x98\x80"));
  cr_assert_not_null(strstr(lines[0], "\\\"hi\\\"\\nsecond"));
  cr_assert_not_null(strstr(lines[0], "\\u2028"));
  cr_assert_not_null(strstr(lines[1], "\"preview\":\"a\\u0000b\""));
  unlink(path);
}

Test(push_file, null_fields_are_written_as_null) {
  const char *path = temp_path();
  chat_push_ops ops;
  cr_assert_eq(chat_push_file_open(&ops, path, NULL), CHAT_OK);
  chat_push_note n = {0};
  n.message_id = 5;
  cr_assert_eq(ops.notify(ops.self, &n), CHAT_OK);
  ops.destroy(ops.self);
  size_t len;
  char *text = slurp(path, &len);
  cJSON *o = cJSON_Parse(text);
  cr_assert_not_null(o, "%s", text);
  const char *keys[] = {"user_id", "device_id", "conversation_id",
                        "sender_id", "preview", "platform"};
  for (size_t i = 0; i < 6; i++)
    cr_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, keys[i])),
              "%s", keys[i]);
  cr_assert_str_eq(str_field(o, "message_id"), "5");
  cJSON_Delete(o);
  /* An empty preview (non-NULL pointer, length 0) is "", not null. */
  cr_assert_eq(chat_push_file_open(&ops, path, NULL), CHAT_OK);
  n.preview.ptr = "";
  cr_assert_eq(ops.notify(ops.self, &n), CHAT_OK);
  ops.destroy(ops.self);
  text = slurp(path, &len);
  char *lines[4];
  cr_assert_eq(lines_of(text, len, lines, 4), 2);
  o = cJSON_Parse(lines[1]);
  cr_assert_str_eq(str_field(o, "preview"), "");
  cJSON_Delete(o);
  unlink(path);
}

Test(push_file, appends_across_opens) {
  const char *path = temp_path();
  FILE *f = fopen(path, "w");
  fputs("existing line\n", f);
  fclose(f);

  for (int round = 0; round < 2; round++) {
    chat_push_ops ops;
    cr_assert_eq(chat_push_file_open(&ops, path, NULL), CHAT_OK);
    chat_push_note n = note_for(round ? "second" : "first", 1, "p");
    cr_assert_eq(ops.notify(ops.self, &n), CHAT_OK);
    ops.destroy(ops.self);
  }
  size_t len;
  char *text = slurp(path, &len);
  char *lines[4];
  cr_assert_eq(lines_of(text, len, lines, 4), 3);
  cr_assert_str_eq(lines[0], "existing line");
  cJSON *o = cJSON_Parse(lines[1]);
  cr_assert_str_eq(str_field(o, "user_id"), "first");
  cJSON_Delete(o);
  o = cJSON_Parse(lines[2]);
  cr_assert_str_eq(str_field(o, "user_id"), "second");
  cJSON_Delete(o);
  unlink(path);
}

Test(push_file, creates_a_missing_file) {
  char path[80];
  snprintf(path, sizeof path, "%s.new", temp_path());
  chat_push_ops ops;
  cr_assert_eq(chat_push_file_open(&ops, path, NULL), CHAT_OK);
  chat_push_note n = note_for("alice", 1, "p");
  cr_assert_eq(ops.notify(ops.self, &n), CHAT_OK);
  ops.destroy(ops.self);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  cr_assert_gt(st.st_size, 0);
  unlink(path);
}

Test(push_file, open_failures) {
  fail_alloc fa;
  fail_alloc_init(&fa, -1);
  chat_push_ops ops;
  memset(&ops, 0xAB, sizeof ops);
  /* A directory cannot be opened for appending. */
  cr_assert_eq(chat_push_file_open(&ops, "/tmp", &fa.a), CHAT_ERR_MODULE);
  cr_assert_null(ops.self, "out is cleared on failure");
  cr_assert_null(ops.notify);
  cr_assert_eq(fa.live, 0);
  cr_assert_eq(chat_push_file_open(&ops, "/nonexistent-dir/x/push.log",
                                   &fa.a),
               CHAT_ERR_MODULE);
  cr_assert_eq(fa.live, 0);

  cr_assert_eq(chat_push_file_open(NULL, "/tmp/x", NULL), CHAT_ERR_INVAL);
  cr_assert_eq(chat_push_file_open(&ops, NULL, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(chat_push_file_open(&ops, "", NULL), CHAT_ERR_INVAL);
  chat_allocator partial = {0};
  partial.alloc = fa.a.alloc;
  cr_assert_eq(chat_push_file_open(&ops, "/tmp/x", &partial),
               CHAT_ERR_INVAL);

  fail_alloc_init(&fa, 0);
  const char *path = temp_path();
  cr_assert_eq(chat_push_file_open(&ops, path, &fa.a), CHAT_ERR_NOMEM);
  cr_assert_eq(fa.live, 0);
  unlink(path);
}

Test(push_file, write_errors_are_module_errors) {
  if (access("/dev/full", W_OK) != 0)
    cr_skip_test("no /dev/full");
  chat_push_ops ops;
  cr_assert_eq(chat_push_file_open(&ops, "/dev/full", NULL), CHAT_OK);
  chat_push_note n = note_for("alice", 1, "p");
  cr_assert_eq(ops.notify(ops.self, &n), CHAT_ERR_MODULE);
  cr_assert_eq(ops.notify(ops.self, &n), CHAT_ERR_MODULE);
  cr_assert_eq(ops.notify(ops.self, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(ops.notify(NULL, &n), CHAT_ERR_INVAL);
  ops.destroy(ops.self);
}

Test(push_file, out_of_memory_while_writing) {
  const char *path = temp_path();
  bool finished = false;
  for (long fail_at = 0; !finished; fail_at++) {
    fail_alloc fa;
    fail_alloc_init(&fa, fail_at);
    chat_push_ops ops;
    chat_err e = chat_push_file_open(&ops, path, &fa.a);
    if (e == CHAT_ERR_NOMEM) {
      cr_assert_eq(fa.live, 0);
      continue;
    }
    cr_assert_eq(e, CHAT_OK);
    /* A preview long enough to need more than one growth of the line. */
    static char big[3000];
    memset(big, 'x', sizeof big - 1);
    chat_push_note n = note_for("alice", 9, big);
    e = ops.notify(ops.self, &n);
    cr_assert(e == CHAT_OK || e == CHAT_ERR_NOMEM, "%d", e);
    if (e == CHAT_ERR_NOMEM)
      cr_assert_eq(ops.notify(ops.self, &n), CHAT_OK, "usable afterwards");
    finished = fa.count <= fail_at;
    ops.destroy(ops.self);
    cr_assert_eq(fa.live, 0);
  }
  /* Every round wrote exactly one complete line, never a partial one. */
  size_t len;
  char *text = slurp(path, &len);
  char *lines[64];
  int n = lines_of(text, len, lines, 64);
  cr_assert_gt(n, 0);
  for (int i = 0; i < n; i++) {
    cJSON *o = cJSON_Parse(lines[i]);
    cr_assert_not_null(o, "line %d", i);
    cJSON_Delete(o);
  }
  unlink(path);
}

/* Receipt-aware push (PROTOCOL.md section 8): a clear is its own line,
 * between the notes, in call order. */
Test(push_file, clears_are_lines_of_their_own) {
  const char *path = temp_path();
  chat_push_ops ops;
  cr_assert_eq(chat_push_file_open(&ops, path, NULL), CHAT_OK);
  cr_assert_not_null(ops.clear);
  chat_push_note n = note_for("alice", 42, "New message from bob");
  cr_assert_eq(ops.notify(ops.self, &n), CHAT_OK);
  chat_push_clear c = {.user_id = "alice",
                       .device_id = "phone-1",
                       .platform = "apns",
                       .push_token = "secret-token",
                       .conversation_id = "conv:42",
                       .up_to = 42};
  cr_assert_eq(ops.clear(ops.self, &c), CHAT_OK);
  cr_assert_eq(ops.clear(ops.self, NULL), CHAT_ERR_INVAL);
  ops.destroy(ops.self);
  size_t len;
  char *text = slurp(path, &len);
  char *lines[4];
  cr_assert_eq(lines_of(text, len, lines, 4), 2);
  cJSON *o = cJSON_Parse(lines[0]);
  cr_assert_null(cJSON_GetObjectItemCaseSensitive(o, "type"),
                 "notes keep their shape");
  cJSON_Delete(o);
  o = cJSON_Parse(lines[1]);
  cr_assert_not_null(o, "%s", lines[1]);
  cr_assert_str_eq(str_field(o, "type"), "clear");
  cr_assert_str_eq(str_field(o, "user_id"), "alice");
  cr_assert_str_eq(str_field(o, "device_id"), "phone-1");
  cr_assert_str_eq(str_field(o, "conversation_id"), "conv:42");
  cr_assert_str_eq(str_field(o, "platform"), "apns");
  cr_assert_str_eq(str_field(o, "up_to"), "42");
  cr_assert_null(strstr(lines[1], "secret-token"));
  cr_assert_eq(cJSON_GetArraySize(o), 6);
  cJSON_Delete(o);
  unlink(path);
}

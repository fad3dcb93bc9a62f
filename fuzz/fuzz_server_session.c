/* Fuzz target: a conversation between two devices. The input is up to 64
 * frames separated by '\n', fed alternately to alice/phone and bob/phone
 * (aliases as in server_fixture.h), with the timers run as a host would.
 * Every frame the server queues must decode as a server-to-client frame,
 * every close code must be a known one, and every bus envelope it publishes
 * must be one it accepts itself. A frame that is exactly "~" moves the clock
 * 61 s (refilled rate buckets, a new garbage window) and "~~" 16 min
 * (presence idle and offline), which no frame could do. */
#include <stdlib.h>
#include <string.h>

#include "server_fixture.h"

#define MAX_FRAMES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const users[2] = {"alice", "bob"};
  fixture *fx = fx_get(true);
  fx_advance(fx, 1000);
  chat_session *s[2];
  for (int i = 0; i < 2; i++)
    s[i] = fx_open(fx, users[i], "phone");

  size_t pos = 0;
  for (int k = 0; k < MAX_FRAMES && pos <= size; k++) {
    const uint8_t *p = data + pos;
    const uint8_t *nl = pos < size ? memchr(p, '\n', size - pos) : NULL;
    size_t len = nl ? (size_t)(nl - p) : size - pos;
    pos += len + 1;
    if (len == 1 && p[0] == '~') {
      fx_advance(fx, 61000);
    } else if (len == 2 && p[0] == '~' && p[1] == '~') {
      fx_advance(fx, 16 * 60000);
    } else {
      size_t n;
      char *frame = fx_expand(fx, p, len, &n, false);
      fx_advance(fx, 20);
      /* fx_service never leaves a closing session in place. */
      chat_err rc = chat_session_on_frame(s[k % 2], frame, n, fx->now);
      free(frame);
      if (rc != CHAT_OK)
        fx_fail("on_frame: %s", chat_err_name(rc));
    }
    fx_tick(fx);
    for (int i = 0; i < 2; i++)
      s[i] = fx_service(fx, s[i], users[i], "phone");
    if (!nl)
      break;
  }

  /* The last round's fan-out, then goodbye. */
  fx_advance(fx, 1);
  fx_tick(fx);
  for (int i = 0; i < 2; i++) {
    fx_drain(s[i]);
    chat_server_close_session(fx->srv, s[i], fx->now);
  }
  fx_tick(fx);
  return 0;
}

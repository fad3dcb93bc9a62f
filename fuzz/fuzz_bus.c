/* Fuzz target: a message from another gateway. The input goes to
 * chat_server_bus_deliver() as it is; the fixture's group members alice,
 * bob and carol each have a session here. The answer must be CHAT_OK or
 * CHAT_ERR_INVAL; a refused message must queue nothing, and every frame an
 * accepted one queues must decode as a server-to-client frame. */
#include "server_fixture.h"

#define N_MEMBERS 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const users[N_MEMBERS] = {"alice", "bob", "carol"};
  static chat_session *s[N_MEMBERS];
  static unsigned generation;
  fixture *fx = fx_get(false);
  if (generation != fx->generation) {
    /* A new server: the old sessions died with the old one. */
    generation = fx->generation;
    for (int i = 0; i < N_MEMBERS; i++)
      s[i] = fx_open(fx, users[i], "phone");
  }
  /* Timers first, and everything already queued out of the way, so that
   * what is queued next is the bus message's doing. */
  fx_advance(fx, 1);
  fx_tick(fx);
  for (int i = 0; i < N_MEMBERS; i++)
    s[i] = fx_service(fx, s[i], users[i], "phone");
  for (int i = 0; i < N_MEMBERS; i++)
    fx_drain(s[i]);

  chat_err rc = chat_server_bus_deliver(fx->srv, (const char *)data, size,
                                        fx->now);
  if (rc != CHAT_OK && rc != CHAT_ERR_INVAL)
    fx_fail("bus_deliver: %s", chat_err_name(rc));
  size_t queued = 0;
  for (int i = 0; i < N_MEMBERS; i++)
    queued += fx_drain(s[i]);
  if (rc != CHAT_OK && queued > 0)
    fx_fail("a refused bus message queued %zu frames", queued);
  return 0;
}

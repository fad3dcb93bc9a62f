/* Fuzz target: frames the server sends to a client. */
#include "fuzz_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_decode(CHAT_DIR_TO_CLIENT, data, size);
}

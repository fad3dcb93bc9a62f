/* Fuzz target: frames a client sends to the server. */
#include "fuzz_decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  return fuzz_decode(CHAT_DIR_TO_SERVER, data, size);
}

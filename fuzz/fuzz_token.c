/* Fuzz target: the Ed25519 bearer-token check (chat_sodium_auth_ops). The
 * key is fixed, so the tokens it minted can sit in the seed corpus: verify()
 * may accept an input only when it is byte for byte one of the unexpired
 * tokens below, with that token's identity. Each input also picks one of
 * them, a byte to flip and a length to cut it to; both changed copies must
 * be refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include <chat/frame.h>
#include <chat/sodium.h>

/* 32 bytes: the Ed25519 seed of the fuzzing key. */
#define SEED "libchat-fuzz-token-fixed-seed-01"
#define NOW_MS INT64_C(1800000000000)

/* What the key mints (Ed25519 signatures are deterministic); init checks
 * it, and make_corpus.py copies these lines into the corpus. */
#define TOKEN_ALICE                                                            \
  "eyJ1IjoiYWxpY2UiLCJkIjoicGhvbmUiLCJleHBfbXMiOjB9."                          \
  "eNSKAE-R2b3WjD9W23-rguBl2yIs9igT3scDtbBxGReeVPaRykGVboL7jW6DwzOTqxlsddPM6" \
  "ec8VaYOrmqLAw"
#define TOKEN_BOB                                                              \
  "eyJ1IjoiYm9iIiwiZCI6InRhYmxldCIsImV4cF9tcyI6NDEwMjQ0NDgwMDAwMH0."          \
  "vHnxenpKLLC-acBaxV9WgupvU2RBbvZv4MTnqfsiLak65JrJsrLVhzuj6AQu5Idjd_DaL8SNJ" \
  "2R1Q7MxeUs1AQ"
/* A bot's (PROTOCOL.md section 8): the payload ends with ,"k":"bot". */
#define TOKEN_WEATHER                                                          \
  "eyJ1Ijoid2VhdGhlciIsImQiOiJib3QiLCJleHBfbXMiOjAsImsiOiJib3QifQ."          \
  "Yz1usIfTaEoM_AgvSsFDfyBIdlMKWpFdduyDEAewDpACwUAFnvTRRZzJiP-yKoCIdqzFnnj3w" \
  "C0LQd5q39DyAA"
#define TOKEN_EXPIRED                                                          \
  "eyJ1IjoiY2Fyb2wiLCJkIjoibGFwdG9wIiwiZXhwX21zIjoxNzAwMDAwMDAwMDAwfQ."      \
  "Cm-YqAlu2nlga461PGwffF7I2KykrqRD0asBg2Ny0JpIAaVSZ2ZbJRA748AR_zjVuesXnK2cK" \
  "nOUUkE27P_gBA"

typedef struct minted {
  const char *token, *user, *device;
  int64_t expires_ms;
  chat_sender_kind kind;
  bool valid; /* at NOW_MS */
} minted;

static const minted tokens[] = {
    {TOKEN_ALICE, "alice", "phone", 0, CHAT_SENDER_USER, true},
    {TOKEN_BOB, "bob", "tablet", INT64_C(4102444800000), CHAT_SENDER_USER,
     true},
    {TOKEN_WEATHER, "weather", "bot", 0, CHAT_SENDER_BOT, true},
    {TOKEN_EXPIRED, "carol", "laptop", INT64_C(1700000000000),
     CHAT_SENDER_USER, false},
};
#define N_TOKENS (sizeof tokens / sizeof tokens[0])
#define N_VALID 3 /* the first three */

static chat_auth_ops auth;

static void die(const char *what) {
  fprintf(stderr, "fuzz_token: %s\n", what);
  abort();
}

/* The public API loads keys from files only, so the fixed key is written
 * in token.c's key file layout (magic, seed, public key) to a private
 * temporary file and loaded from there. */
static chat_sodium_key *fixed_key(void) {
  unsigned char file[8 + crypto_sign_SEEDBYTES + crypto_sign_PUBLICKEYBYTES];
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
  memcpy(file, "CHATKEY1", 8);
  memcpy(file + 8, SEED, crypto_sign_SEEDBYTES);
  crypto_sign_seed_keypair(file + 8 + crypto_sign_SEEDBYTES, sk, file + 8);
  const char *dir = getenv("TMPDIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/fuzz_token.XXXXXX",
           dir && *dir ? dir : "/tmp");
  int fd = mkstemp(path); /* mode 0600, as the loader insists */
  if (fd < 0 || write(fd, file, sizeof file) != (ssize_t)sizeof file)
    die("cannot write the key file");
  close(fd);
  chat_sodium_key *key = NULL;
  bool created = true;
  chat_err rc = chat_sodium_key_load_or_create(&key, path, &created, NULL);
  unlink(path);
  if (rc != CHAT_OK || created)
    die("the fixed key does not load (has the key file layout changed?)");
  return key;
}

static void init(void) {
  if (sodium_init() < 0)
    die("sodium_init");
  chat_sodium_key *key = fixed_key();
  for (size_t i = 0; i < N_TOKENS; i++) {
    char buf[CHAT_SODIUM_TOKEN_BUF];
    size_t len;
    if (chat_sodium_token_mint_kind(key, tokens[i].user, tokens[i].device,
                                    tokens[i].expires_ms, tokens[i].kind,
                                    buf, sizeof buf, &len) != CHAT_OK ||
        len != strlen(tokens[i].token) || memcmp(buf, tokens[i].token, len))
      die("minting no longer gives the tokens above: update them and run "
          "fuzz/make_corpus.py");
  }
  if (chat_sodium_auth_ops(&auth, key, NULL) != CHAT_OK)
    die("auth ops");
  chat_sodium_key_free(key);
  /* A verifier that refuses everything would pass every input below. */
  for (size_t i = 0; i < N_TOKENS; i++) {
    chat_identity id = {.version = CHAT_IDENTITY_V1};
    chat_err rc = auth.verify(auth.self, tokens[i].token,
                              strlen(tokens[i].token), NOW_MS, &id);
    if ((rc == CHAT_OK) != tokens[i].valid)
      die(tokens[i].valid ? "refused a valid token"
                          : "accepted an expired token");
  }
}

static void fail(const char *what, chat_err rc, const char *tok, size_t len) {
  fprintf(stderr, "fuzz_token: %s: %s for %.*s\n", what, chat_err_name(rc),
          (int)len, tok);
  abort();
}

static void check_refused(const char *tok, size_t len, const char *what) {
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  chat_err rc = auth.verify(auth.self, tok, len, NOW_MS, &id);
  if (rc != CHAT_ERR_AUTH)
    fail(what, rc, tok, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!auth.verify)
    init();
  const char *in = (const char *)data;
  chat_identity id = {.version = CHAT_IDENTITY_V1};
  chat_err rc = auth.verify(auth.self, in, size, NOW_MS, &id);
  if (rc == CHAT_OK) {
    const minted *m = NULL;
    for (size_t i = 0; i < N_VALID; i++)
      if (size == strlen(tokens[i].token) && !memcmp(in, tokens[i].token, size))
        m = &tokens[i];
    if (!m)
      fail("accepted an input that the key did not mint", rc, in, size);
    if (strcmp(id.user_id, m->user) || strcmp(id.device_id, m->device) ||
        id.expires_ms != m->expires_ms || id.kind != m->kind ||
        !chat_id_valid(id.user_id, strnlen(id.user_id, sizeof id.user_id)) ||
        !chat_id_valid(id.device_id,
                       strnlen(id.device_id, sizeof id.device_id)))
      fail("accepted a token with the wrong identity", rc, in, size);
  } else if (rc != CHAT_ERR_AUTH) {
    fail("neither CHAT_OK nor CHAT_ERR_AUTH", rc, in, size);
  }

  /* The input steers a change to a valid token: which, where, how. */
  if (size < 2)
    return 0;
  const minted *m = &tokens[data[0] % N_VALID];
  size_t len = strlen(m->token);
  size_t at = (data[1] | (size > 2 ? (size_t)data[2] << 8 : 0)) % len;
  uint8_t x = size > 3 && data[3] ? data[3] : 1;
  /* Exact-size copies, so that ASan sees any read past the end. */
  char *t = malloc(len);
  if (!t)
    die("out of memory");
  memcpy(t, m->token, len);
  t[at] = (char)(t[at] ^ x);
  check_refused(t, len, "a token with a flipped byte");
  memcpy(t, m->token, len);
  check_refused(t, at, "a cut token");
  free(t);
  return 0;
}

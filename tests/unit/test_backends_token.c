/* lib/backends/sodium/token.c: Ed25519 bearer tokens and their key file. */
#include <criterion/criterion.h>

#include <chat/sodium.h>

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOW INT64_C(1750000000000) /* a fixed "now", Unix ms */

static char dir[64];
static char key_path[128];

static void setup(void) {
  strcpy(dir, "/tmp/chat-token-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  snprintf(key_path, sizeof key_path, "%s/token.key", dir);
}

static void teardown(void) {
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(token, .init = setup, .fini = teardown);

static chat_sodium_key *open_key(const char *path, bool *created) {
  chat_sodium_key *k = NULL;
  cr_assert_eq(chat_sodium_key_load_or_create(&k, path, created, NULL),
               CHAT_OK);
  cr_assert_not_null(k);
  return k;
}

static chat_auth_ops ops_of(const chat_sodium_key *k) {
  chat_auth_ops ops;
  cr_assert_eq(chat_sodium_auth_ops(&ops, k, NULL), CHAT_OK);
  cr_assert_eq(ops.version, CHAT_AUTH_OPS_V1);
  cr_assert_not_null(ops.verify);
  cr_assert_not_null(ops.destroy);
  return ops;
}

static chat_err check(const chat_auth_ops *ops, const char *tok,
                      int64_t now, chat_identity *id) {
  return ops->verify(ops->self, tok, strlen(tok), now, id);
}

static void mint(const chat_sodium_key *k, const char *u, const char *d,
                 int64_t exp, char *out) {
  size_t n = 0;
  cr_assert_eq(chat_sodium_token_mint(k, u, d, exp, out,
                                      CHAT_SODIUM_TOKEN_BUF, &n),
               CHAT_OK);
  cr_assert_eq(n, strlen(out));
}

Test(token, round_trip) {
  bool created = false;
  chat_sodium_key *k = open_key(key_path, &created);
  cr_assert(created);
  chat_auth_ops ops = ops_of(k);
  char tok[CHAT_SODIUM_TOKEN_BUF];
  mint(k, "alice", "phone-1", NOW + 60000, tok);
  /* URL-safe: usable in ?access_token= without escaping. */
  for (const char *p = tok; *p; p++)
    cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789-_.",
                     *p),
              "character %c", *p);
  cr_assert_eq(strchr(tok, '.'), strrchr(tok, '.'), "exactly one dot");
  chat_identity id;
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK);
  cr_assert_str_eq(id.user_id, "alice");
  cr_assert_str_eq(id.device_id, "phone-1");
  cr_assert_eq(id.expires_ms, NOW + 60000);
  ops.destroy(ops.self);
  chat_sodium_key_free(k);
}

Test(token, ops_outlive_the_key) {
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_auth_ops ops = ops_of(k);
  char tok[CHAT_SODIUM_TOKEN_BUF];
  mint(k, "a:b@c.d_e-f", "dev", 0, tok);
  chat_sodium_key_free(k);
  chat_identity id;
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK);
  cr_assert_str_eq(id.user_id, "a:b@c.d_e-f");
  cr_assert_eq(id.expires_ms, 0, "0 never expires");
  cr_assert_eq(check(&ops, tok, INT64_MAX, &id), CHAT_OK);
  ops.destroy(ops.self);
}

Test(token, longest_ids_fit_the_buffer) {
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_auth_ops ops = ops_of(k);
  char u[65], d[65];
  memset(u, 'u', 64);
  memset(d, 'd', 64);
  u[64] = d[64] = 0;
  char tok[CHAT_SODIUM_TOKEN_BUF];
  mint(k, u, d, INT64_MAX, tok);
  chat_identity id;
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK);
  cr_assert_str_eq(id.user_id, u);
  cr_assert_str_eq(id.device_id, d);
  ops.destroy(ops.self);
  chat_sodium_key_free(k);
}

Test(token, forged_signature) {
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_auth_ops ops = ops_of(k);
  char tok[CHAT_SODIUM_TOKEN_BUF];
  mint(k, "alice", "phone", NOW + 60000, tok);
  size_t n = strlen(tok);
  char *dot = strchr(tok, '.');
  chat_identity id;
  /* Every single-character change of the signature part is refused. */
  for (char *p = dot + 1; p < tok + n; p++) {
    char saved = *p;
    *p = saved == 'A' ? 'B' : 'A';
    cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_ERR_AUTH, "at %d",
                 (int)(p - tok));
    cr_assert_str_eq(id.user_id, "", "nothing leaks on refusal");
    *p = saved;
  }
  /* And an all-zero signature. */
  char z[CHAT_SODIUM_TOKEN_BUF];
  memcpy(z, tok, (size_t)(dot - tok) + 1);
  memset(z + (dot - tok) + 1, 'A', n - (size_t)(dot - tok) - 1);
  z[n] = 0;
  cr_assert_eq(check(&ops, z, NOW, &id), CHAT_ERR_AUTH);
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK);
  ops.destroy(ops.self);
  chat_sodium_key_free(k);
}

Test(token, flipped_payload_byte) {
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_auth_ops ops = ops_of(k);
  char tok[CHAT_SODIUM_TOKEN_BUF];
  mint(k, "alice", "phone", NOW + 60000, tok);
  char *dot = strchr(tok, '.');
  chat_identity id;
  for (char *p = tok; p < dot; p++) {
    char saved = *p;
    *p = saved == 'x' ? 'y' : 'x';
    cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_ERR_AUTH, "at %d",
                 (int)(p - tok));
    *p = saved;
  }
  /* Alice's signature on Mallory's payload. */
  char other[CHAT_SODIUM_TOKEN_BUF];
  mint(k, "mallory", "phone", NOW + 60000, other);
  char spliced[2 * CHAT_SODIUM_TOKEN_BUF];
  snprintf(spliced, sizeof spliced, "%.*s%s", (int)(strchr(other, '.') - other),
           other, dot);
  cr_assert_eq(check(&ops, spliced, NOW, &id), CHAT_ERR_AUTH);
  ops.destroy(ops.self);
  chat_sodium_key_free(k);
}

Test(token, expired) {
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_auth_ops ops = ops_of(k);
  char tok[CHAT_SODIUM_TOKEN_BUF];
  mint(k, "alice", "phone", NOW, tok);
  chat_identity id;
  cr_assert_eq(check(&ops, tok, NOW - 1, &id), CHAT_OK);
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_ERR_AUTH,
               "expiry is exclusive");
  cr_assert_eq(check(&ops, tok, NOW + 86400000, &id), CHAT_ERR_AUTH);
  ops.destroy(ops.self);
  chat_sodium_key_free(k);
}

Test(token, garbage) {
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_auth_ops ops = ops_of(k);
  char tok[CHAT_SODIUM_TOKEN_BUF];
  mint(k, "alice", "phone", 0, tok);
  const char *bad[] = {
      "", ".", "..", "a", "a.", ".a", "a.b", "Bearer x", "null", "{}",
      "eyJ1IjoiYWxpY2UifQ.AAAA", "!!!!.????", "a.b.c",
  };
  chat_identity id;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_assert_eq(check(&ops, bad[i], NOW, &id), CHAT_ERR_AUTH, "%s", bad[i]);
  /* The right token with extra bytes around it. */
  char buf[2 * CHAT_SODIUM_TOKEN_BUF];
  snprintf(buf, sizeof buf, "%s.", tok);
  cr_assert_eq(check(&ops, buf, NOW, &id), CHAT_ERR_AUTH);
  snprintf(buf, sizeof buf, " %s", tok);
  cr_assert_eq(check(&ops, buf, NOW, &id), CHAT_ERR_AUTH);
  snprintf(buf, sizeof buf, "%s=", tok);
  cr_assert_eq(check(&ops, buf, NOW, &id), CHAT_ERR_AUTH);
  snprintf(buf, sizeof buf, "%sAA", tok);
  cr_assert_eq(check(&ops, buf, NOW, &id), CHAT_ERR_AUTH);
  /* A NUL inside, with the length covering it. */
  size_t n = strlen(tok);
  memcpy(buf, tok, n + 1);
  buf[3] = 0;
  cr_assert_eq(ops.verify(ops.self, buf, n, NOW, &id), CHAT_ERR_AUTH);
  /* Huge input and random bytes. */
  char *big = malloc(100000);
  memset(big, 'A', 99999);
  big[50000] = '.';
  big[99999] = 0;
  cr_assert_eq(check(&ops, big, NOW, &id), CHAT_ERR_AUTH);
  for (int i = 0; i < 200; i++) {
    size_t len = 1 + randombytes_uniform(600);
    randombytes_buf(big, len);
    cr_assert_eq(ops.verify(ops.self, big, len, NOW, &id), CHAT_ERR_AUTH);
  }
  free(big);
  cr_assert_eq(ops.verify(ops.self, NULL, 0, NOW, &id), CHAT_ERR_AUTH);
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK);
  ops.destroy(ops.self);
  chat_sodium_key_free(k);
}

Test(token, wrong_key) {
  char other_path[160];
  snprintf(other_path, sizeof other_path, "%s/other.key", dir);
  chat_sodium_key *k1 = open_key(key_path, NULL);
  chat_sodium_key *k2 = open_key(other_path, NULL);
  chat_auth_ops ops2 = ops_of(k2);
  char tok[CHAT_SODIUM_TOKEN_BUF];
  mint(k1, "alice", "phone", 0, tok);
  chat_identity id;
  cr_assert_eq(check(&ops2, tok, NOW, &id), CHAT_ERR_AUTH);
  ops2.destroy(ops2.self);
  chat_sodium_key_free(k1);
  chat_sodium_key_free(k2);
}

Test(token, key_file_is_private) {
  mode_t old = umask(0);  /* even a careless umask gives 0600 */
  chat_sodium_key *k = open_key(key_path, NULL);
  umask(old);
  struct stat st;
  cr_assert_eq(stat(key_path, &st), 0);
  cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
  cr_assert(S_ISREG(st.st_mode));
  chat_sodium_key_free(k);
  /* No temporary file is left behind. */
  char cmd[200];
  snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
  cr_assert_eq(system(cmd), 0);
}

Test(token, reload_gives_the_same_key) {
  bool created = false;
  chat_sodium_key *k1 = open_key(key_path, &created);
  cr_assert(created);
  char tok[CHAT_SODIUM_TOKEN_BUF];
  mint(k1, "alice", "phone", 0, tok);
  chat_sodium_key_free(k1);
  chat_sodium_key *k2 = open_key(key_path, &created);
  cr_assert_not(created);
  chat_auth_ops ops = ops_of(k2);
  chat_identity id;
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK);
  /* Deterministic signatures: the reloaded key mints the same token. */
  char again[CHAT_SODIUM_TOKEN_BUF];
  mint(k2, "alice", "phone", 0, again);
  cr_assert_str_eq(again, tok);
  ops.destroy(ops.self);
  chat_sodium_key_free(k2);
}

Test(token, open_permissions_are_refused) {
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_sodium_key_free(k);
  cr_assert_eq(chmod(key_path, 0644), 0);
  k = (chat_sodium_key *)1;
  cr_assert_eq(chat_sodium_key_load_or_create(&k, key_path, NULL, NULL),
               CHAT_ERR_DENIED);
  cr_assert_null(k);
  cr_assert_eq(chmod(key_path, 0400), 0);
  k = open_key(key_path, NULL);
  chat_sodium_key_free(k);
}

static void write_file(const char *path, const void *data, size_t n) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, data, n), (ssize_t)n);
  close(fd);
}

Test(token, damaged_key_files_are_refused) {
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_sodium_key_free(k);
  unsigned char good[80];
  int fd = open(key_path, O_RDONLY);
  cr_assert_eq(read(fd, good, sizeof good), 72);
  close(fd);
  unsigned char bad[80];
  chat_sodium_key *out;
  /* Truncated, too long, wrong magic, public half not matching. */
  size_t lens[] = {0, 71, 73};
  for (size_t i = 0; i < 3; i++) {
    memcpy(bad, good, 72);
    bad[72] = 0;
    write_file(key_path, bad, lens[i]);
    cr_assert_eq(chat_sodium_key_load_or_create(&out, key_path, NULL, NULL),
                 CHAT_ERR_MODULE, "length %zu", lens[i]);
  }
  memcpy(bad, good, 72);
  bad[0] ^= 1;
  write_file(key_path, bad, 72);
  cr_assert_eq(chat_sodium_key_load_or_create(&out, key_path, NULL, NULL),
               CHAT_ERR_MODULE);
  memcpy(bad, good, 72);
  bad[71] ^= 1;
  write_file(key_path, bad, 72);
  cr_assert_eq(chat_sodium_key_load_or_create(&out, key_path, NULL, NULL),
               CHAT_ERR_MODULE);
  /* A directory in the way, and a directory that does not exist. */
  char p[200];
  snprintf(p, sizeof p, "%s/sub", dir);
  cr_assert_eq(mkdir(p, 0700), 0);
  cr_assert_eq(chat_sodium_key_load_or_create(&out, p, NULL, NULL),
               CHAT_ERR_MODULE);
  snprintf(p, sizeof p, "%s/missing/token.key", dir);
  cr_assert_eq(chat_sodium_key_load_or_create(&out, p, NULL, NULL),
               CHAT_ERR_MODULE);
}

Test(token, concurrent_first_starts_agree) {
  /* Several processes create the key at once; all end up with one key. */
  enum { N = 6 };
  int fds[N][2];
  pid_t pids[N];
  for (int i = 0; i < N; i++) {
    cr_assert_eq(pipe(fds[i]), 0);
    pids[i] = fork();
    cr_assert_geq(pids[i], 0);
    if (pids[i] == 0) {
      chat_sodium_key *k = NULL;
      char tok[CHAT_SODIUM_TOKEN_BUF] = {0};
      if (chat_sodium_key_load_or_create(&k, key_path, NULL, NULL) ==
          CHAT_OK)
        chat_sodium_token_mint(k, "u", "d", 0, tok, sizeof tok, NULL);
      ssize_t w = write(fds[i][1], tok, sizeof tok);
      _exit(w == (ssize_t)sizeof tok ? 0 : 1);
    }
  }
  char first[CHAT_SODIUM_TOKEN_BUF] = {0};
  for (int i = 0; i < N; i++) {
    char tok[CHAT_SODIUM_TOKEN_BUF];
    cr_assert_eq(read(fds[i][0], tok, sizeof tok), (ssize_t)sizeof tok);
    int status;
    cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_neq(tok[0], 0, "child %d failed", i);
    if (i == 0)
      memcpy(first, tok, sizeof tok);
    else
      cr_assert_str_eq(tok, first);
    close(fds[i][0]);
    close(fds[i][1]);
  }
}

/* A key file written by the test itself, so it can sign payloads that
 * chat_sodium_token_mint() would never produce. */
static void known_key(unsigned char sk[crypto_sign_SECRETKEYBYTES]) {
  unsigned char seed[crypto_sign_SEEDBYTES];
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
  memset(seed, 7, sizeof seed);
  crypto_sign_seed_keypair(pk, sk, seed);
  unsigned char file[72];
  memcpy(file, "CHATKEY1", 8);
  memcpy(file + 8, seed, 32);
  memcpy(file + 40, pk, 32);
  write_file(key_path, file, sizeof file);
}

static void sign_raw(const unsigned char *sk, const char *payload,
                     char *out) {
  unsigned char sig[crypto_sign_BYTES];
  size_t n = strlen(payload);
  crypto_sign_detached(sig, NULL, (const unsigned char *)payload, n, sk);
  const int v = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  sodium_bin2base64(out, 400, (const unsigned char *)payload, n, v);
  size_t k = strlen(out);
  out[k++] = '.';
  sodium_bin2base64(out + k, 200, sig, sizeof sig, v);
}

Test(token, only_the_minted_layout_is_accepted) {
  cr_assert_geq(sodium_init(), 0);
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
  known_key(sk);
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_auth_ops ops = ops_of(k);
  char tok[700];
  chat_identity id;
  sign_raw(sk, "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":0}", tok);
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK, "the file's key signs");
  const char *bad[] = {
      "{\"u\":\"al ice\",\"d\":\"phone\",\"exp_ms\":0}",
      "{\"u\":\"\",\"d\":\"phone\",\"exp_ms\":0}",
      "{\"u\":\"alice\",\"d\":\"\",\"exp_ms\":0}",
      "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":01}",
      "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":-1}",
      "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":}",
      "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":99999999999999999999}",
      "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":0,\"x\":1}",
      "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":0} ",
      "{\"d\":\"phone\",\"u\":\"alice\",\"exp_ms\":0}",
      "{ \"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":0}",
      "{\"u\":\"alice\",\"d\":\"phone\"}",
      "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sign_raw(sk, bad[i], tok);
    cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_ERR_AUTH, "%s", bad[i]);
  }
  ops.destroy(ops.self);
  chat_sodium_key_free(k);
}

Test(token, mint_rejects_bad_input) {
  chat_sodium_key *k = open_key(key_path, NULL);
  char tok[CHAT_SODIUM_TOKEN_BUF];
  size_t n = 99;
  cr_assert_eq(chat_sodium_token_mint(k, "bad id", "d", 0, tok, sizeof tok,
                                      &n),
               CHAT_ERR_INVAL);
  cr_assert_eq(n, 0);
  cr_assert_eq(chat_sodium_token_mint(k, "u", "", 0, tok, sizeof tok, &n),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_sodium_token_mint(k, "u", "d", -5, tok, sizeof tok, &n),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_sodium_token_mint(NULL, "u", "d", 0, tok, sizeof tok,
                                      &n),
               CHAT_ERR_INVAL);
  cr_assert_eq(chat_sodium_token_mint(k, "u", "d", 0, tok, 20, &n),
               CHAT_ERR_TOO_LARGE);
  cr_assert_eq(tok[0], 0);
  chat_sodium_key_free(k);
  chat_sodium_key_free(NULL);
  cr_assert_eq(chat_sodium_key_load_or_create(NULL, key_path, NULL, NULL),
               CHAT_ERR_INVAL);
  chat_sodium_key *out;
  cr_assert_eq(chat_sodium_key_load_or_create(&out, NULL, NULL, NULL),
               CHAT_ERR_INVAL);
  chat_auth_ops ops;
  cr_assert_eq(chat_sodium_auth_ops(&ops, NULL, NULL), CHAT_ERR_INVAL);
  cr_assert_eq(chat_sodium_auth_ops(NULL, NULL, NULL), CHAT_ERR_INVAL);
}

/* A token has one spelling: bytes outside the URL-safe alphabet are refused
 * even where libsodium's decoder would map them onto a valid digit (1.0.18
 * takes some bytes over 0x7F for '_'). */
Test(token, only_the_base64url_alphabet) {
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_auth_ops ops = ops_of(k);
  char tok[CHAT_SODIUM_TOKEN_BUF];
  chat_identity id;
  char *us = NULL;
  /* Signatures are random-looking: some user's token soon holds a '_'. */
  for (int i = 0; i < 1000 && !us; i++) {
    char user[32];
    snprintf(user, sizeof user, "user%d", i);
    mint(k, user, "phone", 0, tok);
    us = strchr(tok, '_');
  }
  cr_assert_not_null(us, "no token with '_' in 1000 tries");
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK);
  for (int c = 0x80; c <= 0xFF; c++) {
    *us = (char)c;
    cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_ERR_AUTH, "byte 0x%02x", c);
  }
  *us = '_';
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK);
  ops.destroy(ops.self);
  chat_sodium_key_free(k);
}

/* PROTOCOL.md section 8: bot tokens say so; a person's token is the same
 * bytes as before bots existed, so old tokens keep verifying. */
Test(token, bot_tokens_carry_their_kind) {
  cr_assert_geq(sodium_init(), 0);
  unsigned char sk[crypto_sign_SECRETKEYBYTES];
  known_key(sk);
  chat_sodium_key *k = open_key(key_path, NULL);
  chat_auth_ops ops = ops_of(k);
  char tok[CHAT_SODIUM_TOKEN_BUF], old[700];
  chat_identity id;
  cr_assert_eq(chat_sodium_token_mint_kind(k, "weather", "bot", 0,
                                           CHAT_SENDER_BOT, tok, sizeof tok,
                                           NULL),
               CHAT_OK);
  memset(&id, 0, sizeof id);
  id.version = CHAT_IDENTITY_V1;
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK);
  cr_assert_eq(id.kind, CHAT_SENDER_BOT);
  cr_assert_str_eq(id.user_id, "weather");
  /* Its payload is the documented one. */
  unsigned char payload[256];
  size_t plen;
  cr_assert_eq(sodium_base642bin(payload, sizeof payload, tok,
                                 (size_t)(strchr(tok, '.') - tok), NULL,
                                 &plen, NULL,
                                 sodium_base64_VARIANT_URLSAFE_NO_PADDING),
               0);
  cr_assert_eq(plen, strlen("{\"u\":\"weather\",\"d\":\"bot\",\"exp_ms\":0,"
                            "\"k\":\"bot\"}"));
  cr_assert_eq(memcmp(payload,
                      "{\"u\":\"weather\",\"d\":\"bot\",\"exp_ms\":0,"
                      "\"k\":\"bot\"}",
                      plen),
               0);
  /* A user token from mint_kind is byte for byte chat_sodium_token_mint's,
   * and one signed in the old layout verifies as a user. */
  char a[CHAT_SODIUM_TOKEN_BUF], b[CHAT_SODIUM_TOKEN_BUF];
  mint(k, "alice", "phone", 123, a);
  cr_assert_eq(chat_sodium_token_mint_kind(k, "alice", "phone", 123,
                                           CHAT_SENDER_USER, b, sizeof b,
                                           NULL),
               CHAT_OK);
  cr_assert_str_eq(a, b);
  sign_raw(sk, "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":0}", old);
  id.kind = CHAT_SENDER_BOT;
  cr_assert_eq(check(&ops, old, NOW, &id), CHAT_OK);
  cr_assert_eq(id.kind, CHAT_SENDER_USER);
  /* Other spellings of a kind are not ours. */
  const char *bad[] = {
      "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":0,\"k\":\"user\"}",
      "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":0,\"k\":\"Bot\"}",
      "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":0,\"k\":\"bot\",}",
      "{\"u\":\"alice\",\"d\":\"phone\",\"exp_ms\":0,\"k\":\"bot\"} ",
      "{\"u\":\"alice\",\"d\":\"phone\",\"k\":\"bot\",\"exp_ms\":0}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    sign_raw(sk, bad[i], old);
    cr_assert_eq(check(&ops, old, NOW, &id), CHAT_ERR_AUTH, "%s", bad[i]);
  }
  cr_assert_eq(chat_sodium_token_mint_kind(k, "a", "b", 0,
                                           (chat_sender_kind)9, tok,
                                           sizeof tok, NULL),
               CHAT_ERR_INVAL);
  /* The longest ids still fit the buffer as a bot. */
  char u[65];
  memset(u, 'u', 64);
  u[64] = 0;
  cr_assert_eq(chat_sodium_token_mint_kind(k, u, u, INT64_MAX,
                                           CHAT_SENDER_BOT, tok, sizeof tok,
                                           NULL),
               CHAT_OK);
  cr_assert_eq(check(&ops, tok, NOW, &id), CHAT_OK);
  cr_assert_eq(id.kind, CHAT_SENDER_BOT);
  ops.destroy(ops.self);
  chat_sodium_key_free(k);
}

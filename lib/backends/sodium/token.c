/* Ed25519 bearer tokens (include/chat/sodium.h): the key file, minting,
 * and the auth module that checks tokens before the WebSocket upgrade. */
#include <chat/frame.h>
#include <chat/sodium.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"

/* Key file: magic, seed, public key. The public half is redundant, which
 * is the point: a damaged file fails the match instead of signing with a
 * different key than the one clients' tokens were minted with. */
#define KEY_MAGIC "CHATKEY1"
#define KEY_MAGIC_LEN 8
#define KEY_FILE_LEN                                                           \
  (KEY_MAGIC_LEN + crypto_sign_SEEDBYTES + crypto_sign_PUBLICKEYBYTES)

/* A payload is at most {"u":"<64>","d":"<64>","exp_ms":<19>,"k":"bot"} =
 * 182 bytes; anything longer is not ours. */
#define PAYLOAD_MAX 192
#define PAYLOAD_B64_MAX                                                        \
  (sodium_base64_ENCODED_LEN(PAYLOAD_MAX,                                      \
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING))
#define SIG_B64_LEN                                                            \
  (sodium_base64_ENCODED_LEN(crypto_sign_BYTES,                                \
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) -       \
   1)

struct chat_sodium_key {
  chat_allocator a;
  unsigned char sk[crypto_sign_SECRETKEYBYTES]; /* seed + public key */
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
};

typedef struct verifier {
  chat_allocator a;
  unsigned char pk[crypto_sign_PUBLICKEYBYTES];
} verifier;

/* ---- key file ---- */

static int read_all(int fd, unsigned char *buf, size_t n, size_t *got) {
  size_t k = 0;
  while (k < n) {
    ssize_t r = read(fd, buf + k, n - k);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -1;
    if (r == 0)
      break;
    k += (size_t)r;
  }
  *got = k;
  return 0;
}

static int write_all(int fd, const unsigned char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, buf, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    buf += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Load path into key. CHAT_ERR_NOT_FOUND when there is no file. */
static chat_err load(chat_sodium_key *key, const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return errno == ENOENT ? CHAT_ERR_NOT_FOUND : CHAT_ERR_MODULE;
  struct stat st;
  chat_err rc = CHAT_OK;
  unsigned char buf[KEY_FILE_LEN + 1];
  size_t got = 0;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    rc = CHAT_ERR_MODULE;
  else if (st.st_mode & (S_IRWXG | S_IRWXO))
    rc = CHAT_ERR_DENIED; /* a signing key others can read is a leaked key */
  else if (read_all(fd, buf, sizeof buf, &got) != 0 || got != KEY_FILE_LEN ||
           memcmp(buf, KEY_MAGIC, KEY_MAGIC_LEN) != 0)
    rc = CHAT_ERR_MODULE;
  close(fd);
  if (rc == CHAT_OK) {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    crypto_sign_seed_keypair(pk, key->sk, buf + KEY_MAGIC_LEN);
    if (sodium_memcmp(pk, buf + KEY_MAGIC_LEN + crypto_sign_SEEDBYTES,
                      sizeof pk) != 0)
      rc = CHAT_ERR_MODULE;
    else
      memcpy(key->pk, pk, sizeof pk);
  }
  sodium_memzero(buf, sizeof buf);
  if (rc != CHAT_OK)
    sodium_memzero(key->sk, sizeof key->sk);
  return rc;
}

static void fsync_dir_of(const char *path) {
  /* The new directory entry must be durable too, or a crash right after
   * the first start could leave tokens signed by a key that is gone. */
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) {
    dir[0] = '.';
    dir[1] = 0;
  } else {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir)
      return;
    memcpy(dir, path, n);
    dir[n] = 0;
  }
  int fd = open(dir, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
}

/* Create a fresh key at path. CHAT_ERR_CONFLICT when someone else created
 * it first (then the caller loads theirs). */
static chat_err create(chat_sodium_key *key, const char *path) {
  char tmp[4200];
  uint32_t r = randombytes_random();
  int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%08" PRIx32, path,
                   (long)getpid(), r);
  if (n < 0 || (size_t)n >= sizeof tmp)
    return CHAT_ERR_MODULE;
  unsigned char buf[KEY_FILE_LEN];
  unsigned char *seed = buf + KEY_MAGIC_LEN;
  memcpy(buf, KEY_MAGIC, KEY_MAGIC_LEN);
  randombytes_buf(seed, crypto_sign_SEEDBYTES);
  crypto_sign_seed_keypair(buf + KEY_MAGIC_LEN + crypto_sign_SEEDBYTES,
                           key->sk, seed);
  memcpy(key->pk, buf + KEY_MAGIC_LEN + crypto_sign_SEEDBYTES,
         sizeof key->pk);

  chat_err rc = CHAT_OK;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = CHAT_ERR_MODULE;
  } else {
    /* The umask may only narrow 0600; fchmod makes it exact. */
    if (fchmod(fd, 0600) != 0 || write_all(fd, buf, sizeof buf) != 0 ||
        fsync(fd) != 0)
      rc = CHAT_ERR_MODULE;
    if (close(fd) != 0)
      rc = CHAT_ERR_MODULE;
    /* link() fails when the name exists: of two processes starting at
     * once, exactly one key wins and the other loads it. */
    if (rc == CHAT_OK && link(tmp, path) != 0)
      rc = errno == EEXIST ? CHAT_ERR_CONFLICT : CHAT_ERR_MODULE;
    (void)unlink(tmp);
    if (rc == CHAT_OK)
      fsync_dir_of(path);
  }
  sodium_memzero(buf, sizeof buf);
  if (rc != CHAT_OK)
    sodium_memzero(key->sk, sizeof key->sk);
  return rc;
}

chat_err chat_sodium_key_load_or_create(chat_sodium_key **out,
                                        const char *path, bool *created,
                                        const chat_allocator *alloc) {
  if (!out)
    return CHAT_ERR_INVAL;
  *out = NULL;
  if (created)
    *created = false;
  if (!path || !*path)
    return CHAT_ERR_INVAL;
  if (sodium_init() < 0)
    return CHAT_ERR_FATAL;
  chat_allocator a;
  if (chat__allocator_init(&a, alloc) != CHAT_OK)
    return CHAT_ERR_INVAL;
  chat_sodium_key *key = chat__calloc(&a, 1, sizeof *key);
  if (!key)
    return CHAT_ERR_NOMEM;
  key->a = a;
  chat_err rc = load(key, path);
  if (rc == CHAT_ERR_NOT_FOUND) {
    rc = create(key, path);
    if (rc == CHAT_OK && created)
      *created = true;
    if (rc == CHAT_ERR_CONFLICT)
      rc = load(key, path);
  }
  if (rc != CHAT_OK) {
    chat_sodium_key_free(key);
    return rc == CHAT_ERR_NOT_FOUND ? CHAT_ERR_MODULE : rc;
  }
  *out = key;
  return CHAT_OK;
}

void chat_sodium_key_free(chat_sodium_key *key) {
  if (!key)
    return;
  chat_allocator a = key->a;
  sodium_memzero(key, sizeof *key);
  chat__free(&a, key);
}

/* ---- minting ---- */

chat_err chat_sodium_token_mint(const chat_sodium_key *key,
                                const char *user_id, const char *device_id,
                                int64_t expires_ms, char *out,
                                size_t out_size, size_t *out_len) {
  return chat_sodium_token_mint_kind(key, user_id, device_id, expires_ms,
                                     CHAT_SENDER_USER, out, out_size,
                                     out_len);
}

chat_err chat_sodium_token_mint_kind(const chat_sodium_key *key,
                                     const char *user_id,
                                     const char *device_id,
                                     int64_t expires_ms,
                                     chat_sender_kind kind, char *out,
                                     size_t out_size, size_t *out_len) {
  if (out_len)
    *out_len = 0;
  if (!key || !user_id || !device_id || !out || expires_ms < 0 ||
      (kind != CHAT_SENDER_USER && kind != CHAT_SENDER_BOT))
    return CHAT_ERR_INVAL;
  if (out_size > 0)
    out[0] = 0;
  if (!chat_id_valid(user_id, strlen(user_id)) ||
      !chat_id_valid(device_id, strlen(device_id)))
    return CHAT_ERR_INVAL;
  char payload[PAYLOAD_MAX + 1];
  /* A person's token keeps the original layout, so tokens minted before
   * bots existed and after are the same bytes. */
  int n = snprintf(payload, sizeof payload,
                   "{\"u\":\"%s\",\"d\":\"%s\",\"exp_ms\":%" PRId64 "%s}",
                   user_id, device_id, expires_ms,
                   kind == CHAT_SENDER_BOT ? ",\"k\":\"bot\"" : "");
  if (n < 0 || (size_t)n > PAYLOAD_MAX)
    return CHAT_ERR_INVAL; /* cannot happen with valid ids */
  size_t plen = (size_t)n;
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, NULL, (const unsigned char *)payload, plen,
                       key->sk);
  const int v = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  size_t p64 = sodium_base64_ENCODED_LEN(plen, v) - 1;
  size_t need = p64 + 1 + SIG_B64_LEN + 1;
  if (out_size < need)
    return CHAT_ERR_TOO_LARGE;
  sodium_bin2base64(out, p64 + 1, (const unsigned char *)payload, plen, v);
  out[p64] = '.';
  sodium_bin2base64(out + p64 + 1, SIG_B64_LEN + 1, sig, sizeof sig, v);
  if (out_len)
    *out_len = need - 1;
  return CHAT_OK;
}

/* ---- verifying ---- */

static bool expect(const char **p, const char *end, const char *lit) {
  size_t n = strlen(lit);
  if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
    return false;
  *p += n;
  return true;
}

/* An id up to the next '"', copied into dst (CHAT_ID_BUF bytes). */
static bool take_id(const char **p, const char *end, char *dst) {
  const char *q = memchr(*p, '"', (size_t)(end - *p));
  if (!q)
    return false;
  size_t n = (size_t)(q - *p);
  if (!chat_id_valid(*p, n))
    return false;
  memcpy(dst, *p, n);
  dst[n] = 0;
  *p = q;
  return true;
}

/* Only the exact layout chat_sodium_token_mint() writes is accepted; the
 * signature already proved we wrote it, so anything else is a bug or a
 * leaked key, and strictness costs nothing. */
static bool parse_payload(const char *p, size_t n, chat_identity *id) {
  id->kind = CHAT_SENDER_USER;
  const char *end = p + n;
  if (!expect(&p, end, "{\"u\":\"") || !take_id(&p, end, id->user_id) ||
      !expect(&p, end, "\",\"d\":\"") || !take_id(&p, end, id->device_id) ||
      !expect(&p, end, "\",\"exp_ms\":"))
    return false;
  const char *digits = p;
  uint64_t v = 0;
  while (p < end && *p >= '0' && *p <= '9') {
    if (v > (uint64_t)(INT64_MAX - (*p - '0')) / 10)
      return false;
    v = v * 10 + (uint64_t)(*p - '0');
    p++;
  }
  size_t nd = (size_t)(p - digits);
  if (nd == 0 || (nd > 1 && digits[0] == '0'))
    return false;
  /* A bot's token says so after the expiry; a person's ends there. */
  if (expect(&p, end, ",\"k\":\"bot\""))
    id->kind = CHAT_SENDER_BOT;
  if (!expect(&p, end, "}") || p != end)
    return false;
  id->expires_ms = (int64_t)v;
  return true;
}

static bool b64url_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static chat_err verify(void *self, const char *token, size_t len,
                       int64_t now_ms, chat_identity *out) {
  const verifier *vf = self;
  if (!out)
    return CHAT_ERR_AUTH;
  /* The server set out->version; the fields after it are ours. */
  uint32_t version = out->version;
  memset(out, 0, sizeof *out);
  out->version = version;
  if (!vf || !token || len == 0 || len > PAYLOAD_B64_MAX + SIG_B64_LEN)
    return CHAT_ERR_AUTH;
  const char *dot = memchr(token, '.', len);
  if (!dot)
    return CHAT_ERR_AUTH;
  size_t p64 = (size_t)(dot - token);
  size_t s64 = len - p64 - 1;
  if (p64 == 0 || s64 != SIG_B64_LEN)
    return CHAT_ERR_AUTH;
  /* libsodium 1.0.18 sign-extends bytes over 0x7F while decoding and takes
   * some of them for '_', so a token could have more than one spelling:
   * check the alphabet first. */
  for (size_t i = 0; i < len; i++)
    if (i != p64 && !b64url_char((unsigned char)token[i]))
      return CHAT_ERR_AUTH;
  const int v = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  unsigned char payload[PAYLOAD_MAX];
  unsigned char sig[crypto_sign_BYTES];
  size_t plen = 0, slen = 0;
  /* A NULL end pointer makes libsodium insist on consuming every
   * character; it also refuses non-zero padding bits, so each token has
   * one spelling. */
  if (sodium_base642bin(payload, sizeof payload, token, p64, NULL, &plen,
                        NULL, v) != 0 ||
      sodium_base642bin(sig, sizeof sig, dot + 1, s64, NULL, &slen, NULL,
                        v) != 0 ||
      slen != sizeof sig)
    return CHAT_ERR_AUTH;
  if (crypto_sign_verify_detached(sig, payload, plen, vf->pk) != 0)
    return CHAT_ERR_AUTH;
  chat_identity id;
  memset(&id, 0, sizeof id);
  if (!parse_payload((const char *)payload, plen, &id))
    return CHAT_ERR_AUTH;
  if (id.expires_ms != 0 && now_ms >= id.expires_ms)
    return CHAT_ERR_AUTH;
  id.version = version;
  *out = id;
  return CHAT_OK;
}

static void verifier_destroy(void *self) {
  verifier *vf = self;
  if (!vf)
    return;
  chat_allocator a = vf->a;
  chat__free(&a, vf);
}

chat_err chat_sodium_auth_ops(chat_auth_ops *out, const chat_sodium_key *key,
                              const chat_allocator *alloc) {
  if (!out)
    return CHAT_ERR_INVAL;
  memset(out, 0, sizeof *out);
  if (!key)
    return CHAT_ERR_INVAL;
  chat_allocator a;
  if (chat__allocator_init(&a, alloc) != CHAT_OK)
    return CHAT_ERR_INVAL;
  verifier *vf = chat__alloc(&a, sizeof *vf);
  if (!vf)
    return CHAT_ERR_NOMEM;
  vf->a = a;
  memcpy(vf->pk, key->pk, sizeof vf->pk);
  out->version = CHAT_AUTH_OPS_V1;
  out->self = vf;
  out->verify = verify;
  out->destroy = verifier_destroy;
  return CHAT_OK;
}

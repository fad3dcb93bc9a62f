/* Bearer tokens signed with Ed25519 (libsodium): the default auth module
 * of chatd. A token names one user and one device and carries an expiry:
 *
 *   base64url(payload) "." base64url(signature)
 *   payload   = {"u":"<user_id>","d":"<device_id>","exp_ms":<unix ms>}
 *               (exactly this byte layout; exp_ms 0 means "never expires"),
 *               or for a bot (PROTOCOL.md section 8)
 *               {"u":"<user_id>","d":"<device_id>","exp_ms":<ms>,"k":"bot"}
 *   signature = Ed25519 over the payload bytes (64 bytes)
 *
 * base64url is RFC 4648 section 5 without padding. The signing key lives
 * in one file (chatd keeps it at <data-dir>/token.key, mode 0600); whoever
 * holds it can mint tokens, whoever holds the public half can check them.
 * Installed only when libchat is built with libsodium. */
#ifndef CHAT_SODIUM_H
#define CHAT_SODIUM_H

#include "modules.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A token signing key (Ed25519 secret key with its public half). */
typedef struct chat_sodium_key chat_sodium_key;

/** Longest token chat_sodium_token_mint() writes, plus its NUL. */
#define CHAT_SODIUM_TOKEN_BUF 512

/** Load the signing key at @p path, or create it there (mode 0600, written
 * to a temporary file and linked into place, so a crash or a concurrent
 * start never leaves a half-written key and two starts agree on one key).
 * A key file that others may read or write (group or world permission
 * bits), that has the wrong size, or whose halves do not match is refused.
 * @p created (may be NULL) tells whether this call created the file.
 * @retval CHAT_OK *out is the key; free it with chat_sodium_key_free()
 * @retval CHAT_ERR_INVAL NULL out or path
 * @retval CHAT_ERR_DENIED the file's permissions are too open
 * @retval CHAT_ERR_MODULE the file cannot be read or created, or is not a
 *         key file
 * @retval CHAT_ERR_FATAL libsodium failed to initialise
 * @retval CHAT_ERR_NOMEM
 * @since 0.1 */
CHAT_API chat_err chat_sodium_key_load_or_create(chat_sodium_key **out,
                                                 const char *path,
                                                 bool *created,
                                                 const chat_allocator *alloc);

/** Wipe and free the key. NULL is a no-op. @since 0.1 */
CHAT_API void chat_sodium_key_free(chat_sodium_key *key);

/** Mint a token for (@p user_id, @p device_id) expiring at @p expires_ms
 * (Unix ms; 0: never) into @p out, NUL-terminated, its length (without
 * the NUL) in *out_len (may be NULL). The ids must pass chat_id_valid().
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL arguments, a bad id or a negative expiry
 * @retval CHAT_ERR_TOO_LARGE @p out_size is too small (use
 *         CHAT_SODIUM_TOKEN_BUF)
 * @since 0.1 */
CHAT_API chat_err chat_sodium_token_mint(const chat_sodium_key *key,
                                         const char *user_id,
                                         const char *device_id,
                                         int64_t expires_ms, char *out,
                                         size_t out_size, size_t *out_len);

/** chat_sodium_token_mint() for a user (CHAT_SENDER_USER: the same bytes
 * as chat_sodium_token_mint) or a bot (CHAT_SENDER_BOT: the payload ends
 * with ,"k":"bot"; the identity verify() fills then has kind BOT, and
 * the server treats the session as a bot's, PROTOCOL.md section 8).
 * @retval CHAT_OK
 * @retval CHAT_ERR_INVAL NULL arguments, a bad id, a negative expiry or an
 *         unknown kind
 * @retval CHAT_ERR_TOO_LARGE @p out_size is too small (use
 *         CHAT_SODIUM_TOKEN_BUF)
 * @since 1.0 */
CHAT_API chat_err chat_sodium_token_mint_kind(const chat_sodium_key *key,
                                              const char *user_id,
                                              const char *device_id,
                                              int64_t expires_ms,
                                              chat_sender_kind kind,
                                              char *out, size_t out_size,
                                              size_t *out_len);

/** Fill @p out with auth ops that accept exactly the tokens this key
 * signed: verify() checks the signature, the payload layout, the id rules
 * of PROTOCOL.md section 1 and the expiry against its now_ms, and answers
 * CHAT_ERR_AUTH for anything missing, malformed, forged or expired. It
 * fills kind from the payload: CHAT_SENDER_BOT for a bot's token,
 * CHAT_SENDER_USER otherwise (tokens minted before bots existed
 * included). The
 * ops keep a copy of the public half only, so @p key may be freed at once;
 * out->destroy(out->self) releases them (chat_server_free() does that once
 * they are installed).
 * @retval CHAT_OK @retval CHAT_ERR_INVAL @retval CHAT_ERR_NOMEM
 * @since 0.1 */
CHAT_API chat_err chat_sodium_auth_ops(chat_auth_ops *out,
                                       const chat_sodium_key *key,
                                       const chat_allocator *alloc);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_SODIUM_H */

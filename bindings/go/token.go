package chat

/*
#include "glue.h"
*/
import "C"

import (
	"context"
	"sync"
	"time"
	"unsafe"
)

// TokenKey holds an Ed25519 token signing key (include/chat/sodium.h),
// the one chatd keeps in <data-dir>/token.key: Mint issues tokens and
// Verify checks them, so a Go server accepts chatd's tokens and the
// other way round. Safe for concurrent use.
type TokenKey struct {
	mu   sync.RWMutex
	key  *C.chat_sodium_key
	auth *C.chat_auth_ops // C memory
}

// LoadTokenKey loads the key at path, creating it (mode 0600) when it
// does not exist. A key file others may read is refused (ErrDenied).
func LoadTokenKey(path string) (*TokenKey, error) {
	var cs cstrs
	defer cs.free()
	k := &TokenKey{}
	if e := C.chat_sodium_key_load_or_create(&k.key, cs.str(path), nil, nil); e != C.CHAT_OK {
		return nil, newError("chat_sodium_key_load_or_create", e, path)
	}
	k.auth = (*C.chat_auth_ops)(C.calloc(1, C.sizeof_chat_auth_ops))
	if e := C.chat_sodium_auth_ops(k.auth, k.key, nil); e != C.CHAT_OK {
		C.free(unsafe.Pointer(k.auth))
		C.chat_sodium_key_free(k.key)
		return nil, newError("chat_sodium_auth_ops", e, "")
	}
	return k, nil
}

// Mint issues a token for (user, device) that expires after ttl (0:
// never).
func (k *TokenKey) Mint(userID, deviceID string, ttl time.Duration) (string, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.key == nil {
		return "", ErrClosed
	}
	var cs cstrs
	defer cs.free()
	var exp int64
	if ttl > 0 {
		exp = time.Now().Add(ttl).UnixMilli()
	}
	var buf [C.CHAT_SODIUM_TOKEN_BUF]C.char
	var n C.size_t
	if e := C.chat_sodium_token_mint(k.key, cs.str(userID), cs.str(deviceID), C.int64_t(exp), &buf[0], C.size_t(len(buf)), &n); e != C.CHAT_OK {
		return "", newError("chat_sodium_token_mint", e, "user and device must be ids of PROTOCOL.md section 1")
	}
	return C.GoStringN(&buf[0], C.int(n)), nil
}

// Verify checks a token; it has the shape of ServerOptions.Auth. An
// expired, forged or malformed token is an error matching ErrAuth.
func (k *TokenKey) Verify(_ context.Context, token string) (Identity, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.key == nil {
		return Identity{}, ErrClosed
	}
	var cs cstrs
	defer cs.free()
	out := (*C.chat_identity)(cs.alloc(C.sizeof_chat_identity))
	out.version = C.CHAT_IDENTITY_V1
	if e := C.glue_auth_verify(k.auth, cs.str(token), C.size_t(len(token)), C.int64_t(time.Now().UnixMilli()), out); e != C.CHAT_OK {
		return Identity{}, newError("auth.verify", e, "invalid or expired token")
	}
	id := Identity{UserID: C.GoString(&out.user_id[0]), DeviceID: C.GoString(&out.device_id[0]),
		Bot: out.kind == C.CHAT_SENDER_BOT}
	if out.expires_ms > 0 {
		id.Expires = time.UnixMilli(int64(out.expires_ms))
	}
	return id, nil
}

// Close wipes and frees the key.
func (k *TokenKey) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key == nil {
		return
	}
	C.glue_auth_destroy(k.auth)
	C.free(unsafe.Pointer(k.auth))
	C.chat_sodium_key_free(k.key)
	k.key, k.auth = nil, nil
}

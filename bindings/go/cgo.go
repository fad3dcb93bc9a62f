// Package chat is the Go binding of libchat: a chat.v1 client over the
// sans-I/O client core, an embeddable chat.v1 server that mounts into
// net/http, and the frame codec.
//
// The binding links an installed libchat found through pkg-config (see
// README.md). Both cores are driven natively: one goroutine owns each
// chat_client or chat_server and feeds it the bytes and the time that
// Go's own network stack (net/http, github.com/coder/websocket) moves.
package chat

/*
#cgo pkg-config: libchat
#include "glue.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

// epoch is the origin of the monotonic clock handed to the cores.
var epoch = time.Now()

// nowMS is the monotonic clock in milliseconds the cores run on (never 0,
// so a deadline of 0 always means "due").
func nowMS() C.chat_time_ms {
	return C.chat_time_ms(time.Since(epoch).Milliseconds() + 1)
}

// untilDeadline turns a core deadline into a wait; ok is false for
// CHAT_TIME_NEVER.
func untilDeadline(d C.chat_time_ms) (time.Duration, bool) {
	if d == C.CHAT_TIME_NEVER {
		return 0, false
	}
	now := nowMS()
	if d <= now {
		return 0, true
	}
	return time.Duration(d-now) * time.Millisecond, true
}

// cstrs is a set of C strings freed together.
type cstrs []unsafe.Pointer

func (s *cstrs) str(v string) *C.char {
	p := C.CString(v)
	*s = append(*s, unsafe.Pointer(p))
	return p
}

// bytes copies b into C memory (NUL-terminated as a convenience).
func (s *cstrs) bytes(b []byte) *C.char {
	p := C.malloc(C.size_t(len(b) + 1))
	if len(b) > 0 {
		copy(unsafe.Slice((*byte)(p), len(b)), b)
	}
	*(*byte)(unsafe.Add(p, len(b))) = 0
	*s = append(*s, p)
	return (*C.char)(p)
}

// alloc returns n zeroed bytes of C memory.
func (s *cstrs) alloc(n uintptr) unsafe.Pointer {
	if n == 0 {
		n = 1
	}
	p := C.calloc(1, C.size_t(n))
	*s = append(*s, p)
	return p
}

// strArray copies vs into a C array of C strings (NULL for none).
func (s *cstrs) strArray(vs []string) **C.char {
	if len(vs) == 0 {
		return nil
	}
	arr := (**C.char)(s.alloc(unsafe.Sizeof((*C.char)(nil)) * uintptr(len(vs))))
	a := unsafe.Slice(arr, len(vs))
	for i, v := range vs {
		a[i] = s.str(v)
	}
	return arr
}

func (s *cstrs) free() {
	for _, p := range *s {
		C.free(p)
	}
	*s = nil
}

// goStr copies a C string (NULL: "").
func goStr(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// goChatStr copies a chat_str; ok is false when it is absent.
func goChatStr(s C.chat_str) (string, bool) {
	if s.ptr == nil {
		return "", false
	}
	return string(unsafe.Slice((*byte)(unsafe.Pointer(s.ptr)), int(s.len))), true
}

// goStrs copies an array of C strings.
func goStrs(arr **C.char, n C.size_t) []string {
	if arr == nil || n == 0 {
		return nil
	}
	src := unsafe.Slice(arr, int(n))
	out := make([]string, len(src))
	for i, p := range src {
		out[i] = goStr(p)
	}
	return out
}

// errbufText is the NUL-terminated text of a chat_errbuf.
func errbufText(b *C.chat_errbuf) string {
	return C.GoString(&b.msg[0])
}

// Version is the version of the libchat actually loaded ("1.0.0").
func Version() string { return C.GoString(C.chat_version_string()) }

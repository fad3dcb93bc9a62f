package chat

/*
#include "glue.h"
*/
import "C"

import (
	"fmt"
	"time"
)

// Code is a libchat error code (chat_err). Each failing code is also a
// sentinel error: errors.Is(err, chat.ErrInval) holds for every *Error
// whose Code is ErrInval.
type Code int

// The chat_err codes (include/chat/common.h), with their C values.
const (
	OK               Code = 0
	Pending          Code = 1
	ErrInval         Code = -1
	ErrState         Code = -2
	ErrAgain         Code = -3
	ErrTooLarge      Code = -4
	ErrNotFound      Code = -5
	ErrModule        Code = -6
	ErrAuth          Code = -7
	ErrDenied        Code = -8
	ErrConflict      Code = -9
	ErrRateLimited   Code = -10
	ErrJSON          Code = -20
	ErrNotObject     Code = -21
	ErrNoType        Code = -22
	ErrUnknownType   Code = -23
	ErrMissingField  Code = -24
	ErrFieldType     Code = -25
	ErrBadID         Code = -26
	ErrBadMessageID  Code = -27
	ErrBadValue      Code = -28
	ErrBadUTF8       Code = -29
	ErrTooDeep       Code = -30
	ErrTooMany       Code = -31
	ErrDuplicateKey  Code = -32
	ErrBadNumber     Code = -33
	ErrFrameTooLarge Code = -34
	ErrFatal         Code = -100
	ErrNoMem         Code = -101
	ErrCallback      Code = -102
)

// ErrDecode matches every error of a frame that did not decode (the codes
// from ErrJSON to ErrFrameTooLarge): errors.Is(err, chat.ErrDecode).
const ErrDecode Code = -1000

// ErrClosed is returned by calls on a Client or Server after Close.
var ErrClosed = fmt.Errorf("chat: closed")

// Name is the C constant's name ("CHAT_ERR_INVAL").
func (c Code) Name() string {
	if c == ErrDecode {
		return "CHAT_ERR_DECODE"
	}
	return C.GoString(C.chat_err_name(C.chat_err(c)))
}

// Error is the code's C name and its text ("CHAT_ERR_INVAL: invalid
// argument").
func (c Code) Error() string {
	if c == ErrDecode {
		return "CHAT_ERR_DECODE: the frame did not decode"
	}
	return c.Name() + ": " + C.GoString(C.chat_strerror(C.chat_err(c)))
}

// Fatal reports whether the code leaves the object unusable.
func (c Code) Fatal() bool { return c <= ErrFatal && c != ErrDecode }

// Error is a failed libchat call: the code, the C error's name, and the
// detail libchat gave (the errbuf of a constructor, chat_*_errmsg() of an
// object, or the decoder's message), plus what the binding was doing.
type Error struct {
	Code   Code     // the chat_err
	Name   string   // "CHAT_ERR_INVAL"
	Detail string   // libchat's one-line reason; may be empty
	Op     string   // the C call, "chat_client_send"
	Field  string   // decode errors: the offending field, if known
	Ref    string   // decode errors: what an `error` frame's ref would carry
	Wire   WireCode // decode errors: the wire code that answers it
}

func (e *Error) Error() string {
	s := e.Name
	if e.Op != "" {
		s = e.Op + ": " + s
	}
	if e.Detail != "" {
		return s + ": " + e.Detail
	}
	return s + ": " + C.GoString(C.chat_strerror(C.chat_err(e.Code)))
}

// Is makes errors.Is(err, chat.ErrXxx) match the error's code, and
// chat.ErrDecode match every decode error.
func (e *Error) Is(target error) bool {
	c, ok := target.(Code)
	if !ok {
		return false
	}
	if c == ErrDecode {
		return e.Code <= ErrJSON && e.Code >= ErrFrameTooLarge
	}
	return c == e.Code
}

// newError builds an *Error for a failing code (nil for OK and Pending).
func newError(op string, code C.chat_err, detail string) error {
	if code >= 0 {
		return nil
	}
	c := Code(code)
	return &Error{Code: c, Name: c.Name(), Detail: detail, Op: op}
}

// WireCode is the code of a server `error` frame or REST error body
// ("not_member"). Each is also a sentinel: errors.Is(err,
// chat.WireNotMember) matches a *WireError with that code.
type WireCode string

// The wire error codes of PROTOCOL.md sections 3 and 8.
const (
	WireBadFrame           WireCode = "bad_frame"
	WireUnknownType        WireCode = "unknown_type"
	WireTooLarge           WireCode = "too_large"
	WireNotMember          WireCode = "not_member"
	WireNoSuchConversation WireCode = "no_such_conversation"
	WireRateLimited        WireCode = "rate_limited"
	WireBadID              WireCode = "bad_id"
	WireInternal           WireCode = "internal"
	WireForbidden          WireCode = "forbidden"
	WireNotFound           WireCode = "not_found"
)

func (w WireCode) Error() string { return "chat: server error " + string(w) }

// WireError is a refusal by the server: an `error` frame answering one of
// our frames, or a REST error.
type WireError struct {
	Code       WireCode
	Message    string
	Ref        string        // the client_msg_id or frame type it answers
	RetryAfter time.Duration // rate_limited: when to retry
	HTTPStatus int           // REST: the status (0 for frames)
}

func (e *WireError) Error() string {
	s := "chat: server refused: " + string(e.Code)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.HTTPStatus != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.HTTPStatus)
	}
	return s
}

// Is matches the WireCode sentinels.
func (e *WireError) Is(target error) bool {
	w, ok := target.(WireCode)
	return ok && w == e.Code
}

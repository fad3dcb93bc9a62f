package chat

/*
#include "glue.h"
*/
import "C"

// State is the client's connection state.
type State int

// The connection states (chat_client_state).
const (
	StateIdle         State = C.CHAT_CLIENT_IDLE
	StateConnecting   State = C.CHAT_CLIENT_CONNECTING
	StateHandshake    State = C.CHAT_CLIENT_HANDSHAKE
	StateResuming     State = C.CHAT_CLIENT_RESUMING
	StateReady        State = C.CHAT_CLIENT_READY
	StateBackoff      State = C.CHAT_CLIENT_BACKOFF
	StateUnauthorized State = C.CHAT_CLIENT_UNAUTHORIZED
)

func (s State) String() string {
	p := C.chat_client_state_name(C.chat_client_state(s))
	if p == nil {
		return "unknown"
	}
	return C.GoString(p)
}

// AuthReason says why the client needs a new token.
type AuthReason int

// The reasons of an AuthRequiredEvent.
const (
	// AuthRefused: the server answered 401 (upgrade or REST).
	AuthRefused AuthReason = C.CHAT_AUTH_REFUSED
	// AuthExpired: the session was closed with 4001 token_expired.
	AuthExpired AuthReason = C.CHAT_AUTH_EXPIRED
)

func (r AuthReason) String() string {
	if r == AuthExpired {
		return "expired"
	}
	return "refused"
}

// Origin says where a MessageEvent's message came from.
type Origin int

// The origins of a message.
const (
	OriginLive   Origin = C.CHAT_ORIGIN_LIVE   // a `message` frame
	OriginResume Origin = C.CHAT_ORIGIN_RESUME // catching up after a reconnect
	OriginREST   Origin = C.CHAT_ORIGIN_REST   // a resume gap paged over REST
	OriginOlder  Origin = C.CHAT_ORIGIN_OLDER  // History() paging
)

// Event is one of the *Event types below; read them from Client.Events()
// with a type switch.
type Event interface{ isEvent() }

// MessageEvent: a message new to the local store (never a duplicate).
type MessageEvent struct {
	Message
	Origin Origin
}

// AckEvent: one of our sends is durably stored (also for sends of an
// earlier run, flushed from the store's outbox).
type AckEvent struct{ Ack }

// ReceiptEvent: a member's delivered/read mark for our messages.
type ReceiptEvent struct{ Receipt }

// TypingEvent: a peer started or stopped typing.
type TypingEvent struct {
	ConversationID, UserID string
	Typing                 bool
}

// PresenceEvent: a watched user's presence.
type PresenceEvent struct{ Presence }

// ReadSyncEvent: another device of ours read up to LastReadID.
type ReadSyncEvent struct {
	ConversationID string
	LastReadID     uint64
}

// ConversationEvent: a conversation became known or changed.
type ConversationEvent struct{ Conversation }

// ConnectionEvent: the connection state changed.
type ConnectionEvent struct{ State State }

// HelloEvent: a session opened (who we are, the server's limits).
type HelloEvent struct{ Hello }

// ResumeEvent: catch-up progress after a (re)connect.
type ResumeEvent struct {
	ConversationID string
	GapsOpen       uint32
	Messages       uint32
	Resumed        bool
	Complete       bool // every gap closed
}

// AuthRequiredEvent: the token is no good (refused or expired). Answer
// with Client.SetToken and a fresh token (or set Config.TokenFunc); until
// then nothing reconnects, and sends wait in the outbox.
type AuthRequiredEvent struct{ Reason AuthReason }

// ErrorEvent: something failed asynchronously (a refused send, a bad
// frame, a REST failure, a TokenFunc that failed or panicked). Err is a
// *WireError for a server refusal, an *Error otherwise.
type ErrorEvent struct {
	Err            error
	ClientMsgID    string // the send it concerns
	ConversationID string
	HTTPStatus     int
	Retrying       bool // the client tries again by itself
}

// EventsDroppedEvent: the event queue was over Config.MaxQueuedEvents and
// this many of the oldest events were dropped since the last one.
type EventsDroppedEvent struct{ Dropped int }

func (MessageEvent) isEvent()       {}
func (AckEvent) isEvent()           {}
func (ReceiptEvent) isEvent()       {}
func (TypingEvent) isEvent()        {}
func (PresenceEvent) isEvent()      {}
func (ReadSyncEvent) isEvent()      {}
func (ConversationEvent) isEvent()  {}
func (ConnectionEvent) isEvent()    {}
func (HelloEvent) isEvent()         {}
func (ResumeEvent) isEvent()        {}
func (AuthRequiredEvent) isEvent()  {}
func (ErrorEvent) isEvent()         {}
func (EventsDroppedEvent) isEvent() {}

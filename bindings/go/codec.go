package chat

/*
#include "glue.h"
*/
import "C"

import (
	"sync"
	"unsafe"
)

// Direction is the way a frame travels; decoding accepts only frames of
// the given direction.
type Direction int

// The directions.
const (
	ToServer Direction = C.CHAT_DIR_TO_SERVER // client -> server frames
	ToClient Direction = C.CHAT_DIR_TO_CLIENT // server -> client frames
)

// FrameType is a chat.v1 frame type.
type FrameType int

// The frame types (include/chat/frame.h).
const (
	FrameSend              FrameType = C.CHAT_FRAME_SEND
	FrameDelivered         FrameType = C.CHAT_FRAME_DELIVERED
	FrameRead              FrameType = C.CHAT_FRAME_READ
	FrameTyping            FrameType = C.CHAT_FRAME_TYPING
	FrameResume            FrameType = C.CHAT_FRAME_RESUME
	FramePresenceSubscribe FrameType = C.CHAT_FRAME_PRESENCE_SUBSCRIBE
	FramePing              FrameType = C.CHAT_FRAME_PING
	FrameHello             FrameType = C.CHAT_FRAME_HELLO
	FrameAck               FrameType = C.CHAT_FRAME_ACK
	FrameMessage           FrameType = C.CHAT_FRAME_MESSAGE
	FrameReceipt           FrameType = C.CHAT_FRAME_RECEIPT
	FrameHistory           FrameType = C.CHAT_FRAME_HISTORY
	FrameResumeFailed      FrameType = C.CHAT_FRAME_RESUME_FAILED
	FrameResumed           FrameType = C.CHAT_FRAME_RESUMED
	FramePresence          FrameType = C.CHAT_FRAME_PRESENCE
	FrameStateChange       FrameType = C.CHAT_FRAME_STATE_CHANGE
	FrameConversation      FrameType = C.CHAT_FRAME_CONVERSATION
	FrameError             FrameType = C.CHAT_FRAME_ERROR
	FramePong              FrameType = C.CHAT_FRAME_PONG
	FrameEdit              FrameType = C.CHAT_FRAME_EDIT
	FrameDelete            FrameType = C.CHAT_FRAME_DELETE
	FrameGoaway            FrameType = C.CHAT_FRAME_GOAWAY
)

// String is the wire name ("presence_subscribe").
func (t FrameType) String() string {
	p := C.chat_frame_type_name(C.chat_frame_type(t))
	if p == nil {
		return "unknown"
	}
	return C.GoString(p)
}

// Frame is one decoded chat.v1 frame: its Type and the payload for that
// type (the other payload pointers are nil). `delivered` and `read` share
// Mark; `ping` and `pong` share Ping.
type Frame struct {
	Type              FrameType
	Send              *SendFrame
	Mark              *MarkFrame
	Typing            *TypingFrame
	Resume            *ResumeFrame
	PresenceSubscribe *PresenceSubscribeFrame
	Ping              *PingFrame
	Hello             *Hello
	Ack               *Ack
	Message           *Message
	Receipt           *Receipt
	History           *HistoryFrame
	ResumeFailed      *ResumeFailedFrame
	Resumed           *ResumedFrame
	Presence          *Presence
	StateChange       *StateChangeFrame
	Conversation      *Conversation
	Error             *ErrorFrame
	Edit              *EditFrame   // section 8
	Delete            *DeleteFrame // section 8
	Goaway            *GoawayFrame // section 8
}

// SendFrame is the client's `send`.
type SendFrame struct {
	ClientMsgID, ConversationID, Body string
	HasReplyTo                        bool
	ReplyTo                           uint64
	MediaRefs                         []string
	BodyType                          BodyType
}

// MarkFrame is `delivered` or `read`.
type MarkFrame struct {
	ConversationID string
	UpTo           uint64
}

// TypingFrame is `typing` (UserID is empty client -> server).
type TypingFrame struct {
	ConversationID, UserID string
	Typing                 bool
}

// ResumeEntry is one conversation of a `resume`.
type ResumeEntry struct {
	ConversationID string
	MessageID      uint64
}

// ResumeFrame is the client's `resume`.
type ResumeFrame struct {
	LastSeen []ResumeEntry
	HasSince bool
	Since    uint64
}

// PresenceSubscribeFrame is `presence_subscribe`.
type PresenceSubscribeFrame struct{ UserIDs []string }

// PingFrame is `ping` or `pong`; Nonce is the nonce's exact JSON text
// (a string with its quotes, or a number), "" when absent.
type PingFrame struct{ Nonce string }

// HistoryFrame answers `resume`; messages oldest first.
type HistoryFrame struct {
	ConversationID string
	Messages       []Message
	Complete       bool
}

// ResumeFailedFrame says a gap is over the server's cap.
type ResumeFailedFrame struct{ ConversationID, Reason string }

// ResumedFrame ends a resume answer.
type ResumedFrame struct{ Conversations, Messages uint32 }

// StateChangeFrame is read sync to the user's other devices.
type StateChangeFrame struct {
	ConversationID string
	LastReadID     uint64
}

// ErrorFrame is the server's `error`.
type ErrorFrame struct {
	Code          WireCode
	Message       string
	HasRef        bool
	Ref           string
	HasRetryAfter bool
	RetryAfterMS  uint64
}

// EditFrame replaces the body of one's own message (section 8).
type EditFrame struct {
	ClientMsgID, ConversationID string
	TargetID                    uint64
	Body                        string
}

// DeleteFrame erases a message (section 8).
type DeleteFrame struct {
	ClientMsgID, ConversationID string
	TargetID                    uint64
}

// GoawayFrame announces a deliberate close (section 8).
type GoawayFrame struct {
	Reason       string
	RetryAfterMS uint64
}

// CodecLimits are the decoder's limits; zero fields take libchat's
// defaults (frame 128 KiB to the server, 1 MiB to the client, body 64 KiB,
// ...).
type CodecLimits struct {
	MaxFrameBytes, MaxFrameBytesToClient, MaxBodyBytes uint32
	MaxPresenceIDs, MaxResumeEntries, MaxMediaRefs     uint32
	MaxMembers, MaxHistory, MaxDepth                   uint32
}

// Codec decodes and encodes chat.v1 frames with libchat's codec (strict:
// an encoded frame always decodes again). Safe for concurrent use; the
// package-level Decode and Encode use a shared one with default limits.
type Codec struct {
	mu sync.Mutex
	c  *C.chat_codec
}

// NewCodec creates a codec with the given limits (nil: defaults).
func NewCodec(limits *CodecLimits) (*Codec, error) {
	var cs cstrs
	defer cs.free()
	var set *C.chat_codec_settings
	if limits != nil {
		set = (*C.chat_codec_settings)(cs.alloc(C.sizeof_chat_codec_settings))
		*set = C.chat_codec_settings{version: C.CHAT_CODEC_SETTINGS_V1,
			max_frame_bytes: C.uint32_t(limits.MaxFrameBytes), max_body_bytes: C.uint32_t(limits.MaxBodyBytes),
			max_presence_ids: C.uint32_t(limits.MaxPresenceIDs), max_resume_entries: C.uint32_t(limits.MaxResumeEntries),
			max_media_refs: C.uint32_t(limits.MaxMediaRefs), max_members: C.uint32_t(limits.MaxMembers),
			max_history: C.uint32_t(limits.MaxHistory), max_depth: C.uint32_t(limits.MaxDepth),
			max_frame_bytes_to_client: C.uint32_t(limits.MaxFrameBytesToClient)}
	}
	k := &Codec{}
	var eb C.chat_errbuf
	if e := C.chat_codec_new(&k.c, set, nil, &eb); e != C.CHAT_OK {
		return nil, newError("chat_codec_new", e, errbufText(&eb))
	}
	return k, nil
}

// Close frees the codec.
func (k *Codec) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	C.chat_codec_free(k.c)
	k.c = nil
}

var (
	sharedOnce  sync.Once
	shared      *Codec
	sharedError error
)

func sharedCodec() (*Codec, error) {
	sharedOnce.Do(func() { shared, sharedError = NewCodec(nil) })
	return shared, sharedError
}

// Decode decodes one frame travelling in direction dir (default limits).
// A frame that does not decode is an *Error matching ErrDecode and its
// own code (ErrMissingField, ErrBadUTF8, ...), with the field at fault.
func Decode(dir Direction, data []byte) (*Frame, error) {
	k, err := sharedCodec()
	if err != nil {
		return nil, err
	}
	return k.Decode(dir, data)
}

// Encode encodes f as one JSON object (default limits); fields this
// codec would refuse to decode are refused (an *Error).
func Encode(f *Frame) ([]byte, error) {
	k, err := sharedCodec()
	if err != nil {
		return nil, err
	}
	return k.Encode(f)
}

// Decode decodes one frame travelling in direction dir.
func (k *Codec) Decode(dir Direction, data []byte) (*Frame, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.c == nil {
		return nil, ErrClosed
	}
	var p *C.char
	if len(data) > 0 {
		p = (*C.char)(unsafe.Pointer(&data[0]))
	}
	var out *C.chat_frame
	var de C.chat_decode_error
	if e := C.chat_codec_decode(k.c, C.chat_direction(dir), p, C.size_t(len(data)), &out, &de); e != C.CHAT_OK {
		c := Code(e)
		err := &Error{Code: c, Name: c.Name(), Op: "chat_codec_decode", Detail: goStr(de.message),
			Field: goStr(de.field), Ref: goStr(de.ref)}
		if w := C.chat_wire_error_str(de.wire); w != nil {
			err.Wire = WireCode(C.GoString(w))
		}
		return nil, err
	}
	return goFrame(out), nil
}

func goFrame(f *C.chat_frame) *Frame {
	out := &Frame{Type: FrameType(f._type)}
	switch {
	case f.send != nil:
		s := f.send
		body, _ := goChatStr(s.body)
		out.Send = &SendFrame{ClientMsgID: goStr(s.client_msg_id), ConversationID: goStr(s.conversation_id),
			Body: body, HasReplyTo: bool(s.has_reply_to), ReplyTo: uint64(s.reply_to),
			MediaRefs: goStrs((**C.char)(unsafe.Pointer(s.media_refs)), s.n_media_refs), BodyType: BodyType(s.body_type)}
	case f.mark != nil:
		out.Mark = &MarkFrame{ConversationID: goStr(f.mark.conversation_id), UpTo: uint64(f.mark.up_to_message_id)}
	case f.typing != nil:
		out.Typing = &TypingFrame{ConversationID: goStr(f.typing.conversation_id), UserID: goStr(f.typing.user_id),
			Typing: bool(f.typing.is_typing)}
	case f.resume != nil:
		r := &ResumeFrame{HasSince: bool(f.resume.has_since), Since: uint64(f.resume.since)}
		if f.resume.n_last_seen > 0 {
			for _, e := range unsafe.Slice(f.resume.last_seen, int(f.resume.n_last_seen)) {
				r.LastSeen = append(r.LastSeen, ResumeEntry{ConversationID: goStr(e.conversation_id), MessageID: uint64(e.message_id)})
			}
		}
		out.Resume = r
	case f.presence_subscribe != nil:
		ps := f.presence_subscribe
		out.PresenceSubscribe = &PresenceSubscribeFrame{UserIDs: goStrs((**C.char)(unsafe.Pointer(ps.user_ids)), ps.n_user_ids)}
	case f.ping != nil:
		n, _ := goChatStr(f.ping.nonce_json)
		out.Ping = &PingFrame{Nonce: n}
	case f.hello != nil:
		h := goHello(f.hello)
		out.Hello = &h
	case f.ack != nil:
		a := goAck(f.ack)
		out.Ack = &a
	case f.message != nil:
		m := goMessage(f.message)
		out.Message = &m
	case f.receipt != nil:
		r := goReceipt(f.receipt)
		out.Receipt = &r
	case f.history != nil:
		h := &HistoryFrame{ConversationID: goStr(f.history.conversation_id), Complete: bool(f.history.complete)}
		if f.history.n_messages > 0 {
			ms := unsafe.Slice(f.history.messages, int(f.history.n_messages))
			for i := range ms {
				h.Messages = append(h.Messages, goMessage(&ms[i]))
			}
		}
		out.History = h
	case f.resume_failed != nil:
		reason, _ := goChatStr(f.resume_failed.reason)
		out.ResumeFailed = &ResumeFailedFrame{ConversationID: goStr(f.resume_failed.conversation_id), Reason: reason}
	case f.resumed != nil:
		out.Resumed = &ResumedFrame{Conversations: uint32(f.resumed.conversations), Messages: uint32(f.resumed.messages)}
	case f.presence != nil:
		p := goPresence(f.presence)
		out.Presence = &p
	case f.state_change != nil:
		out.StateChange = &StateChangeFrame{ConversationID: goStr(f.state_change.conversation_id),
			LastReadID: uint64(f.state_change.last_read_message_id)}
	case f.conversation != nil:
		c := goConversation(f.conversation)
		out.Conversation = &c
	case f.error != nil:
		e := f.error
		msg, _ := goChatStr(e.message)
		ref, hasRef := goChatStr(e.ref)
		code := goStr(e.code)
		if code == "" {
			if p := C.chat_wire_error_str(e.wire); p != nil {
				code = C.GoString(p)
			}
		}
		out.Error = &ErrorFrame{Code: WireCode(code), Message: msg, HasRef: hasRef, Ref: ref,
			HasRetryAfter: bool(e.has_retry_after), RetryAfterMS: uint64(e.retry_after_ms)}
	case f.version >= C.CHAT_FRAME_V2 && f.edit != nil:
		body, _ := goChatStr(f.edit.body)
		out.Edit = &EditFrame{ClientMsgID: goStr(f.edit.client_msg_id), ConversationID: goStr(f.edit.conversation_id),
			TargetID: uint64(f.edit.target_id), Body: body}
	case f.version >= C.CHAT_FRAME_V2 && f.deletion != nil:
		out.Delete = &DeleteFrame{ClientMsgID: goStr(f.deletion.client_msg_id), ConversationID: goStr(f.deletion.conversation_id),
			TargetID: uint64(f.deletion.target_id)}
	case f.version >= C.CHAT_FRAME_V2 && f.goaway != nil:
		reason, _ := goChatStr(f.goaway.reason)
		out.Goaway = &GoawayFrame{Reason: reason, RetryAfterMS: uint64(f.goaway.retry_after_ms)}
	}
	return out
}

func cstr(s *cstrs, v string) C.chat_str {
	return C.chat_str{ptr: s.bytes([]byte(v)), len: C.size_t(len(v))}
}

// Encode encodes f as one JSON object.
func (k *Codec) Encode(f *Frame) ([]byte, error) {
	if f == nil {
		return nil, &Error{Code: ErrInval, Name: ErrInval.Name(), Op: "Encode", Detail: "nil frame"}
	}
	var s cstrs
	defer s.free()
	cf := (*C.chat_frame)(s.alloc(C.sizeof_chat_frame))
	cf.version = C.CHAT_FRAME_V2
	cf._type = C.chat_frame_type(f.Type)
	switch {
	case f.Send != nil:
		p := (*C.chat_send)(s.alloc(C.sizeof_chat_send))
		p.client_msg_id = s.str(f.Send.ClientMsgID)
		p.conversation_id = s.str(f.Send.ConversationID)
		p.body = cstr(&s, f.Send.Body)
		p.has_reply_to = C.bool(f.Send.HasReplyTo)
		p.reply_to = C.uint64_t(f.Send.ReplyTo)
		p.media_refs = s.strArray(f.Send.MediaRefs)
		p.n_media_refs = C.size_t(len(f.Send.MediaRefs))
		p.body_type = C.chat_body_type(f.Send.BodyType)
		cf.send = p
	case f.Mark != nil:
		p := (*C.chat_mark)(s.alloc(C.sizeof_chat_mark))
		p.conversation_id = s.str(f.Mark.ConversationID)
		p.up_to_message_id = C.uint64_t(f.Mark.UpTo)
		cf.mark = p
	case f.Typing != nil:
		p := (*C.chat_typing)(s.alloc(C.sizeof_chat_typing))
		p.conversation_id = s.str(f.Typing.ConversationID)
		if f.Typing.UserID != "" {
			p.user_id = s.str(f.Typing.UserID)
		}
		p.is_typing = C.bool(f.Typing.Typing)
		cf.typing = p
	case f.Resume != nil:
		p := (*C.chat_resume)(s.alloc(C.sizeof_chat_resume))
		if n := len(f.Resume.LastSeen); n > 0 {
			arr := (*C.chat_resume_entry)(s.alloc(C.sizeof_chat_resume_entry * uintptr(n)))
			for i, e := range f.Resume.LastSeen {
				el := &unsafe.Slice(arr, n)[i]
				el.conversation_id = s.str(e.ConversationID)
				el.message_id = C.uint64_t(e.MessageID)
			}
			p.last_seen = arr
			p.n_last_seen = C.size_t(n)
		}
		p.has_since = C.bool(f.Resume.HasSince)
		p.since = C.uint64_t(f.Resume.Since)
		cf.resume = p
	case f.PresenceSubscribe != nil:
		p := (*C.chat_presence_subscribe)(s.alloc(C.sizeof_chat_presence_subscribe))
		p.user_ids = s.strArray(f.PresenceSubscribe.UserIDs)
		p.n_user_ids = C.size_t(len(f.PresenceSubscribe.UserIDs))
		cf.presence_subscribe = p
	case f.Ping != nil:
		p := (*C.chat_ping)(s.alloc(C.sizeof_chat_ping))
		if f.Ping.Nonce != "" {
			p.nonce_json = cstr(&s, f.Ping.Nonce)
		}
		cf.ping = p
	case f.Hello != nil:
		h := f.Hello
		p := (*C.chat_hello)(s.alloc(C.sizeof_chat_hello))
		p.user_id, p.device_id, p.session_id = s.str(h.UserID), s.str(h.DeviceID), s.str(h.SessionID)
		p.server_ts = C.int64_t(h.ServerTS)
		p.heartbeat_ms = C.uint32_t(h.HeartbeatMS)
		p.limits = C.chat_limits{max_body_bytes: C.uint32_t(h.Limits.MaxBodyBytes), max_frame_bytes: C.uint32_t(h.Limits.MaxFrameBytes),
			rate_per_minute: C.uint32_t(h.Limits.RatePerMinute), resume_max_messages: C.uint32_t(h.Limits.ResumeMaxMessages),
			resume_max_age_ms: C.uint64_t(h.Limits.ResumeMaxAgeMS)}
		p.has_resume_batch_hint = C.bool(h.HasResumeBatchHint)
		p.resume_batch_hint = C.uint32_t(h.ResumeBatchHint)
		cf.hello = p
	case f.Ack != nil:
		p := (*C.chat_ack)(s.alloc(C.sizeof_chat_ack))
		p.client_msg_id = s.str(f.Ack.ClientMsgID)
		p.message_id = C.uint64_t(f.Ack.MessageID)
		p.server_ts = C.int64_t(f.Ack.ServerTS)
		p.duplicate = C.bool(f.Ack.Duplicate)
		cf.ack = p
	case f.Message != nil:
		p := (*C.chat_message)(s.alloc(C.sizeof_chat_message))
		cMessage(&s, p, f.Message)
		cf.message = p
	case f.Receipt != nil:
		r := f.Receipt
		p := (*C.chat_receipt)(s.alloc(C.sizeof_chat_receipt))
		p.conversation_id = s.str(r.ConversationID)
		p.message_id = C.uint64_t(r.MessageID)
		p.state = C.chat_receipt_state(r.State)
		p.member_id = s.str(r.MemberID)
		p.has_counts = C.bool(r.HasCounts)
		p.delivered_count = C.uint32_t(r.Delivered)
		p.read_count = C.uint32_t(r.Read)
		cf.receipt = p
	case f.History != nil:
		p := (*C.chat_history)(s.alloc(C.sizeof_chat_history))
		p.conversation_id = s.str(f.History.ConversationID)
		if n := len(f.History.Messages); n > 0 {
			arr := (*C.chat_message)(s.alloc(C.sizeof_chat_message * uintptr(n)))
			for i := range f.History.Messages {
				cMessage(&s, &unsafe.Slice(arr, n)[i], &f.History.Messages[i])
			}
			p.messages = arr
			p.n_messages = C.size_t(n)
		}
		p.complete = C.bool(f.History.Complete)
		cf.history = p
	case f.ResumeFailed != nil:
		p := (*C.chat_resume_failed)(s.alloc(C.sizeof_chat_resume_failed))
		p.conversation_id = s.str(f.ResumeFailed.ConversationID)
		p.reason = cstr(&s, f.ResumeFailed.Reason)
		cf.resume_failed = p
	case f.Resumed != nil:
		p := (*C.chat_resumed)(s.alloc(C.sizeof_chat_resumed))
		p.conversations = C.uint32_t(f.Resumed.Conversations)
		p.messages = C.uint32_t(f.Resumed.Messages)
		cf.resumed = p
	case f.Presence != nil:
		p := (*C.chat_presence)(s.alloc(C.sizeof_chat_presence))
		p.user_id = s.str(f.Presence.UserID)
		p.state = C.chat_presence_state(f.Presence.State)
		p.has_last_active = C.bool(f.Presence.HasLastActive)
		p.last_active_ts = C.int64_t(f.Presence.LastActiveTS)
		cf.presence = p
	case f.StateChange != nil:
		p := (*C.chat_state_change)(s.alloc(C.sizeof_chat_state_change))
		p.conversation_id = s.str(f.StateChange.ConversationID)
		p.last_read_message_id = C.uint64_t(f.StateChange.LastReadID)
		cf.state_change = p
	case f.Conversation != nil:
		p := (*C.chat_conversation)(s.alloc(C.sizeof_chat_conversation))
		cConversation(&s, p, f.Conversation)
		cf.conversation = p
	case f.Error != nil:
		e := f.Error
		p := (*C.chat_error_frame)(s.alloc(C.sizeof_chat_error_frame))
		p.wire = C.chat_wire_error_from_str(s.str(string(e.Code)), C.size_t(len(e.Code)))
		p.code = s.str(string(e.Code))
		p.message = cstr(&s, e.Message)
		if e.HasRef {
			p.ref = cstr(&s, e.Ref)
		}
		p.has_retry_after = C.bool(e.HasRetryAfter)
		p.retry_after_ms = C.uint64_t(e.RetryAfterMS)
		cf.error = p
	case f.Edit != nil:
		p := (*C.chat_edit)(s.alloc(C.sizeof_chat_edit))
		p.client_msg_id = s.str(f.Edit.ClientMsgID)
		p.conversation_id = s.str(f.Edit.ConversationID)
		p.target_id = C.uint64_t(f.Edit.TargetID)
		p.body = cstr(&s, f.Edit.Body)
		cf.edit = p
	case f.Delete != nil:
		p := (*C.chat_delete)(s.alloc(C.sizeof_chat_delete))
		p.client_msg_id = s.str(f.Delete.ClientMsgID)
		p.conversation_id = s.str(f.Delete.ConversationID)
		p.target_id = C.uint64_t(f.Delete.TargetID)
		cf.deletion = p
	case f.Goaway != nil:
		p := (*C.chat_goaway)(s.alloc(C.sizeof_chat_goaway))
		p.reason = cstr(&s, f.Goaway.Reason)
		p.retry_after_ms = C.uint64_t(f.Goaway.RetryAfterMS)
		cf.goaway = p
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.c == nil {
		return nil, ErrClosed
	}
	var out *C.char
	var n C.size_t
	if e := C.chat_codec_encode(k.c, cf, &out, &n); e != C.CHAT_OK {
		return nil, newError("chat_codec_encode", e, "")
	}
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), nil
}

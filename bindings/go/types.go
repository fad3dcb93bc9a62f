package chat

/*
#include "glue.h"
*/
import "C"

import (
	"time"
	"unsafe"
)

// BodyType is a message's body_type.
type BodyType int

// The body types (PROTOCOL.md sections 2 and 8).
const (
	BodyText   BodyType = C.CHAT_BODY_TEXT
	BodyMedia  BodyType = C.CHAT_BODY_MEDIA
	BodySystem BodyType = C.CHAT_BODY_SYSTEM // server-made
	BodyEdit   BodyType = C.CHAT_BODY_EDIT   // server-made: TargetID's new body
	BodyDelete BodyType = C.CHAT_BODY_DELETE // server-made: TargetID deleted
)

// ReceiptState is how far a message got: sent only, delivered or read.
type ReceiptState int

// The receipt states.
const (
	ReceiptNone      ReceiptState = C.CHAT_RECEIPT_NONE
	ReceiptDelivered ReceiptState = C.CHAT_RECEIPT_DELIVERED
	ReceiptRead      ReceiptState = C.CHAT_RECEIPT_READ
)

func (s ReceiptState) String() string {
	switch s {
	case ReceiptDelivered:
		return "delivered"
	case ReceiptRead:
		return "read"
	}
	return "sent"
}

// PresenceState is a user's presence.
type PresenceState int

// The presence states.
const (
	Offline PresenceState = C.CHAT_PRESENCE_OFFLINE
	Online  PresenceState = C.CHAT_PRESENCE_ONLINE
	Idle    PresenceState = C.CHAT_PRESENCE_IDLE
)

func (s PresenceState) String() string {
	switch s {
	case Online:
		return "online"
	case Idle:
		return "idle"
	}
	return "offline"
}

// ConversationType is direct (two members) or group.
type ConversationType int

// The conversation types.
const (
	Direct ConversationType = C.CHAT_CONVERSATION_DIRECT
	Group  ConversationType = C.CHAT_CONVERSATION_GROUP
)

func (t ConversationType) String() string {
	if t == Group {
		return "group"
	}
	return "direct"
}

// Message is a chat message (the `message` frame, history entries, REST
// history, a conversation's last message). Optional fields carry a Has*
// flag, as on the wire.
type Message struct {
	ID             uint64
	ConversationID string
	SenderID       string
	Body           string
	ServerTS       int64 // Unix ms
	ClientMsgID    string
	HasReplyTo     bool
	ReplyTo        uint64
	MediaRefs      []string
	BodyType       BodyType
	// Section 8.
	HasTargetID bool
	TargetID    uint64 // the message an edit or delete entry applies to
	Bot         bool   // sent by a bot
	HasEditedTS bool
	EditedTS    int64 // Unix ms of the last edit (stored messages)
	Deleted     bool
}

// Time is ServerTS as a time.Time.
func (m *Message) Time() time.Time { return time.UnixMilli(m.ServerTS) }

// Conversation is the conversation object of PROTOCOL.md section 5.
type Conversation struct {
	ID          string
	Type        ConversationType
	HasName     bool
	Name        string
	Members     []string
	LastMessage *Message // nil: none
	UnreadCount uint32
	HasLastRead bool
	LastReadID  uint64
	Admins      []string // section 8
}

// Receipt is a member's delivered/read mark for the messages of one
// sender up to MessageID; groups carry cumulative counts.
type Receipt struct {
	ConversationID string
	MessageID      uint64
	State          ReceiptState
	MemberID       string
	HasCounts      bool
	Delivered      uint32
	Read           uint32
}

// Presence is a user's presence state.
type Presence struct {
	UserID        string
	State         PresenceState
	HasLastActive bool
	LastActiveTS  int64 // Unix ms
}

// Limits are the server's limits from `hello`.
type Limits struct {
	MaxBodyBytes      uint32
	MaxFrameBytes     uint32
	RatePerMinute     uint32
	ResumeMaxMessages uint32
	ResumeMaxAgeMS    uint64
}

// Hello is the server's first frame.
type Hello struct {
	UserID, DeviceID, SessionID string
	ServerTS                    int64
	HeartbeatMS                 uint32
	Limits                      Limits
	HasResumeBatchHint          bool
	ResumeBatchHint             uint32
}

// Ack acknowledges a send: it is durably stored.
type Ack struct {
	ClientMsgID string
	MessageID   uint64
	ServerTS    int64
	Duplicate   bool
}

func goMessage(m *C.chat_message) Message {
	body, _ := goChatStr(m.body)
	return Message{
		ID:             uint64(m.message_id),
		ConversationID: goStr(m.conversation_id),
		SenderID:       goStr(m.sender_id),
		Body:           body,
		ServerTS:       int64(m.server_ts),
		ClientMsgID:    goStr(m.client_msg_id),
		HasReplyTo:     bool(m.has_reply_to),
		ReplyTo:        uint64(m.reply_to),
		MediaRefs:      goStrs((**C.char)(unsafe.Pointer(m.media_refs)), m.n_media_refs),
		BodyType:       BodyType(m.body_type),
		HasTargetID:    bool(m.has_target_id),
		TargetID:       uint64(m.target_id),
		Bot:            m.sender_kind == C.CHAT_SENDER_BOT,
		HasEditedTS:    bool(m.has_edited_ts),
		EditedTS:       int64(m.edited_ts),
		Deleted:        bool(m.deleted),
	}
}

func goConversation(c *C.chat_conversation) Conversation {
	name, has := goChatStr(c.name)
	out := Conversation{
		ID:          goStr(c.conversation_id),
		Type:        ConversationType(c._type),
		HasName:     has,
		Name:        name,
		Members:     goStrs((**C.char)(unsafe.Pointer(c.members)), c.n_members),
		UnreadCount: uint32(c.unread_count),
		HasLastRead: bool(c.has_last_read),
		LastReadID:  uint64(c.last_read_message_id),
		Admins:      goStrs((**C.char)(unsafe.Pointer(c.admins)), c.n_admins),
	}
	if c.last_message != nil {
		m := goMessage(c.last_message)
		out.LastMessage = &m
	}
	return out
}

func goReceipt(r *C.chat_receipt) Receipt {
	return Receipt{
		ConversationID: goStr(r.conversation_id),
		MessageID:      uint64(r.message_id),
		State:          ReceiptState(r.state),
		MemberID:       goStr(r.member_id),
		HasCounts:      bool(r.has_counts),
		Delivered:      uint32(r.delivered_count),
		Read:           uint32(r.read_count),
	}
}

func goPresence(p *C.chat_presence) Presence {
	return Presence{
		UserID:        goStr(p.user_id),
		State:         PresenceState(p.state),
		HasLastActive: bool(p.has_last_active),
		LastActiveTS:  int64(p.last_active_ts),
	}
}

func goHello(h *C.chat_hello) Hello {
	return Hello{
		UserID:      goStr(h.user_id),
		DeviceID:    goStr(h.device_id),
		SessionID:   goStr(h.session_id),
		ServerTS:    int64(h.server_ts),
		HeartbeatMS: uint32(h.heartbeat_ms),
		Limits: Limits{
			MaxBodyBytes:      uint32(h.limits.max_body_bytes),
			MaxFrameBytes:     uint32(h.limits.max_frame_bytes),
			RatePerMinute:     uint32(h.limits.rate_per_minute),
			ResumeMaxMessages: uint32(h.limits.resume_max_messages),
			ResumeMaxAgeMS:    uint64(h.limits.resume_max_age_ms),
		},
		HasResumeBatchHint: bool(h.has_resume_batch_hint),
		ResumeBatchHint:    uint32(h.resume_batch_hint),
	}
}

func goAck(a *C.chat_ack) Ack {
	return Ack{
		ClientMsgID: goStr(a.client_msg_id),
		MessageID:   uint64(a.message_id),
		ServerTS:    int64(a.server_ts),
		Duplicate:   bool(a.duplicate),
	}
}

// cMessage fills a C chat_message from m, with strings in s.
func cMessage(s *cstrs, out *C.chat_message, m *Message) {
	out.message_id = C.uint64_t(m.ID)
	out.conversation_id = s.str(m.ConversationID)
	out.sender_id = s.str(m.SenderID)
	out.body = C.chat_str{ptr: s.bytes([]byte(m.Body)), len: C.size_t(len(m.Body))}
	out.server_ts = C.int64_t(m.ServerTS)
	if m.ClientMsgID != "" {
		out.client_msg_id = s.str(m.ClientMsgID)
	}
	out.has_reply_to = C.bool(m.HasReplyTo)
	out.reply_to = C.uint64_t(m.ReplyTo)
	out.media_refs = s.strArray(m.MediaRefs)
	out.n_media_refs = C.size_t(len(m.MediaRefs))
	out.body_type = C.chat_body_type(m.BodyType)
	out.has_target_id = C.bool(m.HasTargetID)
	out.target_id = C.uint64_t(m.TargetID)
	if m.Bot {
		out.sender_kind = C.CHAT_SENDER_BOT
	}
	out.has_edited_ts = C.bool(m.HasEditedTS)
	out.edited_ts = C.int64_t(m.EditedTS)
	out.deleted = C.bool(m.Deleted)
}

func cConversation(s *cstrs, out *C.chat_conversation, c *Conversation) {
	out.conversation_id = s.str(c.ID)
	out._type = C.chat_conversation_type(c.Type)
	if c.HasName {
		out.name = C.chat_str{ptr: s.bytes([]byte(c.Name)), len: C.size_t(len(c.Name))}
	}
	out.members = s.strArray(c.Members)
	out.n_members = C.size_t(len(c.Members))
	if c.LastMessage != nil {
		lm := (*C.chat_message)(s.alloc(C.sizeof_chat_message))
		cMessage(s, lm, c.LastMessage)
		out.last_message = lm
	}
	out.unread_count = C.uint32_t(c.UnreadCount)
	out.has_last_read = C.bool(c.HasLastRead)
	out.last_read_message_id = C.uint64_t(c.LastReadID)
	out.admins = s.strArray(c.Admins)
	out.n_admins = C.size_t(len(c.Admins))
}

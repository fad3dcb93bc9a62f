"""The values the binding hands out: messages, conversations and events.

All are frozen dataclasses built from libchat's borrowed C structs (copied
during the callback). Message ids are Python ints; times are Unix ms.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Optional, Union

from ._native import ffi, lib
from ._util import chat_str, cstr, cstr_req, str_list


class State(enum.IntEnum):
    """The client's connection state (chat_client_state)."""
    IDLE = int(lib.CHAT_CLIENT_IDLE)
    CONNECTING = int(lib.CHAT_CLIENT_CONNECTING)
    HANDSHAKE = int(lib.CHAT_CLIENT_HANDSHAKE)
    RESUMING = int(lib.CHAT_CLIENT_RESUMING)
    READY = int(lib.CHAT_CLIENT_READY)
    BACKOFF = int(lib.CHAT_CLIENT_BACKOFF)
    UNAUTHORIZED = int(lib.CHAT_CLIENT_UNAUTHORIZED)


class ReceiptState(enum.IntEnum):
    NONE = int(lib.CHAT_RECEIPT_NONE)
    DELIVERED = int(lib.CHAT_RECEIPT_DELIVERED)
    READ = int(lib.CHAT_RECEIPT_READ)


class Origin(enum.IntEnum):
    """Where a message came from (chat_message_origin)."""
    LIVE = int(lib.CHAT_ORIGIN_LIVE)
    RESUME = int(lib.CHAT_ORIGIN_RESUME)
    REST = int(lib.CHAT_ORIGIN_REST)
    OLDER = int(lib.CHAT_ORIGIN_OLDER)


class AuthReason(enum.IntEnum):
    REFUSED = int(lib.CHAT_AUTH_REFUSED)   # HTTP 401
    EXPIRED = int(lib.CHAT_AUTH_EXPIRED)   # close 4001 token_expired


_BODY_TYPES = {
    int(lib.CHAT_BODY_TEXT): "text", int(lib.CHAT_BODY_MEDIA): "media",
    int(lib.CHAT_BODY_SYSTEM): "system", int(lib.CHAT_BODY_EDIT): "edit",
    int(lib.CHAT_BODY_DELETE): "delete",
}
_PRESENCE = {
    int(lib.CHAT_PRESENCE_OFFLINE): "offline",
    int(lib.CHAT_PRESENCE_ONLINE): "online",
    int(lib.CHAT_PRESENCE_IDLE): "idle",
}
PRESENCE_STATES = {v: k for k, v in _PRESENCE.items()}


@dataclass(frozen=True)
class Message:
    message_id: int            # 0 for an own send not yet acked
    conversation_id: str
    sender_id: str
    body: str
    server_ts: int
    client_msg_id: Optional[str] = None
    reply_to: Optional[int] = None
    media_refs: tuple[str, ...] = ()
    body_type: str = "text"    # text, media, system, edit, delete
    target_id: Optional[int] = None   # edit/delete entries
    bot: bool = False
    edited_ts: Optional[int] = None
    deleted: bool = False

    @classmethod
    def _from_c(cls, m: Any) -> "Message":
        return cls(
            message_id=int(m.message_id),
            conversation_id=cstr_req(m.conversation_id),
            sender_id=cstr_req(m.sender_id),
            body=chat_str(m.body) or "",
            server_ts=int(m.server_ts),
            client_msg_id=cstr(m.client_msg_id),
            reply_to=int(m.reply_to) if m.has_reply_to else None,
            media_refs=tuple(str_list(m.media_refs, m.n_media_refs)),
            body_type=_BODY_TYPES.get(int(m.body_type), "text"),
            target_id=int(m.target_id) if m.has_target_id else None,
            bot=int(m.sender_kind) == int(lib.CHAT_SENDER_BOT),
            edited_ts=int(m.edited_ts) if m.has_edited_ts else None,
            deleted=bool(m.deleted))


@dataclass(frozen=True)
class StoredMessage:
    """A message from the local store, with what this device knows of it."""
    message: Message
    own: bool
    pending: bool                 # own and not acked yet
    state: ReceiptState           # own: best receipt seen

    @classmethod
    def _from_c(cls, cm: Any) -> "StoredMessage":
        return cls(Message._from_c(cm.message), bool(cm.own), bool(cm.pending),
                   ReceiptState(int(cm.state)))


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    type: str                     # "direct" or "group"
    name: Optional[str]
    members: tuple[str, ...]
    admins: tuple[str, ...] = ()
    last_message: Optional[Message] = None
    unread_count: int = 0
    last_read_message_id: Optional[int] = None

    @classmethod
    def _from_c(cls, c: Any) -> "Conversation":
        return cls(
            conversation_id=cstr_req(c.conversation_id),
            type="group" if int(c.type) == int(lib.CHAT_CONVERSATION_GROUP)
            else "direct",
            name=chat_str(c.name),
            members=tuple(str_list(c.members, c.n_members)),
            admins=tuple(str_list(c.admins, c.n_admins)),
            last_message=(Message._from_c(c.last_message)
                          if c.last_message != ffi.NULL else None),
            unread_count=int(c.unread_count),
            last_read_message_id=(int(c.last_read_message_id)
                                  if c.has_last_read else None))


@dataclass(frozen=True)
class Ack:
    """One of our sends is durably stored."""
    client_msg_id: str
    message_id: int
    server_ts: int
    duplicate: bool


# ---------------------------------------------------------------- events --

@dataclass(frozen=True)
class MessageEvent:
    message: Message
    origin: Origin


@dataclass(frozen=True)
class AckEvent:
    ack: Ack


@dataclass(frozen=True)
class ReceiptEvent:
    """A member's delivered/read mark for our messages up to message_id;
    in groups the cumulative counts too."""
    conversation_id: str
    message_id: int
    state: ReceiptState
    member_id: str
    delivered_count: Optional[int] = None
    read_count: Optional[int] = None


@dataclass(frozen=True)
class TypingEvent:
    conversation_id: str
    user_id: str
    is_typing: bool


@dataclass(frozen=True)
class PresenceEvent:
    user_id: str
    state: str                    # online, idle, offline
    last_active_ts: Optional[int]


@dataclass(frozen=True)
class ReadSyncEvent:
    """Another device of ours read up to last_read_message_id."""
    conversation_id: str
    last_read_message_id: int


@dataclass(frozen=True)
class ConversationEvent:
    conversation: Conversation


@dataclass(frozen=True)
class ConnectionEvent:
    state: State


@dataclass(frozen=True)
class AuthRequiredEvent:
    """The token is no good (refused, or expired on an open session): the
    client waits, sends queued, until ``client.set_token()`` gives a fresh
    one (a ``token_provider`` given to connect() is asked first)."""
    reason: AuthReason


@dataclass(frozen=True)
class ResumeEvent:
    """Catch-up progress after a (re)connect; complete once every gap is
    closed."""
    conversation_id: Optional[str]
    gaps_open: int
    messages: int
    resumed: bool
    complete: bool


@dataclass(frozen=True)
class ErrorEvent:
    """Something failed asynchronously (chat_client_error)."""
    name: str                     # CHAT_ERR_* or "server:<wire code>"
    message: str
    wire: Optional[str] = None
    client_msg_id: Optional[str] = None
    conversation_id: Optional[str] = None
    http_status: int = 0
    retrying: bool = False


Event = Union[MessageEvent, AckEvent, ReceiptEvent, TypingEvent,
              PresenceEvent, ReadSyncEvent, ConversationEvent,
              ConnectionEvent, AuthRequiredEvent, ResumeEvent, ErrorEvent]

__all__ = [
    "State", "ReceiptState", "Origin", "AuthReason", "Message",
    "StoredMessage", "Conversation", "Ack", "MessageEvent", "AckEvent",
    "ReceiptEvent", "TypingEvent", "PresenceEvent", "ReadSyncEvent",
    "ConversationEvent", "ConnectionEvent", "AuthRequiredEvent",
    "ResumeEvent", "ErrorEvent", "Event",
]


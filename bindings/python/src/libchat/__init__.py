"""libchat for Python: the chat.v1 client and server cores of libchat
(C, sans-I/O) on asyncio.

- :func:`connect` / :class:`Client`: an asyncio client (websockets +
  aiohttp as transports; reconnect, resume, outbox and receipts are the C
  core's).
- :class:`Server`: the server core embedded in an asyncio program
  (aiohttp.web serves WebSocket and REST), SQLite store by default, auth,
  push and presence modules in Python.
- :func:`decode_frame` / :func:`encode_frame`: the frame codec.
- :mod:`libchat.sync`: a small blocking facade over the client.
"""
from __future__ import annotations

from ._native import ffi as _ffi, lib as _lib
from ._live import live_objects
from .codec import Codec, decode_frame, encode_frame
from .errors import (AuthError, ChatError, Conflict, ConnectionLost, Denied,
                     FatalError, FrameError, InvalidArgument, ModuleError,
                     NotFound, RateLimited, ServerError, StateError, TooLarge)
from .types import (Ack, AckEvent, AuthReason, AuthRequiredEvent,
                    ConnectionEvent, Conversation, ConversationEvent,
                    ErrorEvent, Event, Message, MessageEvent, Origin,
                    PresenceEvent, ReadSyncEvent, ReceiptEvent, ReceiptState,
                    ResumeEvent, State, StoredMessage, TypingEvent)
from .client import Client, connect
from .server import Identity, PushNote, Server, Presence

__version__ = "1.0.0"


def library_version() -> str:
    """The version of the libchat shared library actually loaded."""
    return str(_ffi.string(_lib.chat_version_string()).decode())


__all__ = [
    "Ack", "AckEvent", "AuthError", "AuthReason", "AuthRequiredEvent",
    "ChatError", "Client", "Codec", "Conflict", "ConnectionEvent",
    "ConnectionLost", "Conversation", "ConversationEvent", "Denied",
    "ErrorEvent", "Event", "FatalError", "FrameError", "Identity",
    "InvalidArgument", "Message", "MessageEvent", "ModuleError", "NotFound",
    "Origin", "Presence", "PresenceEvent", "PushNote", "RateLimited",
    "ReadSyncEvent", "ReceiptEvent", "ReceiptState", "ResumeEvent", "Server",
    "ServerError", "State", "StateError", "StoredMessage", "TooLarge",
    "TypingEvent", "connect", "decode_frame", "encode_frame",
    "library_version", "live_objects",
]

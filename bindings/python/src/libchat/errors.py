"""libchat's errors as Python exceptions.

Every error carries the C error's name (``CHAT_ERR_INVAL``), its numeric
code and the one-line reason libchat gave (``chat_errbuf``,
``chat_client_errmsg()``, ``chat_server_errmsg()`` or the codec's decode
error). The class is picked from the code, so callers can catch what they
can act on::

    ChatError
    ├── InvalidArgument   CHAT_ERR_INVAL
    ├── StateError        CHAT_ERR_STATE
    ├── NotFound          CHAT_ERR_NOT_FOUND
    ├── TooLarge          CHAT_ERR_TOO_LARGE, CHAT_ERR_TOO_MANY
    ├── ModuleError       CHAT_ERR_MODULE (a store or other module failed)
    ├── AuthError         CHAT_ERR_AUTH
    ├── Denied            CHAT_ERR_DENIED
    ├── Conflict          CHAT_ERR_CONFLICT
    ├── RateLimited       CHAT_ERR_RATE_LIMITED
    ├── FrameError        the codec refused a frame (JSON, ids, fields...)
    ├── ServerError       the server refused one of our requests (wire code)
    ├── ConnectionLost    the client was closed with work still waiting
    └── FatalError        CHAT_ERR_FATAL, CHAT_ERR_NOMEM, CHAT_ERR_CALLBACK
"""
from __future__ import annotations

from typing import Optional

from ._native import ffi, lib


class ChatError(Exception):
    """A libchat call failed. ``name`` is the C enum name, ``code`` its
    value, ``reason`` libchat's one-line explanation (may be empty)."""

    def __init__(self, code: int, reason: str = "", name: Optional[str] = None):
        self.code = code
        self.name = name if name is not None else err_name(code)
        self.reason = reason
        text = self.name
        if reason:
            text += ": " + reason
        super().__init__(text)


class InvalidArgument(ChatError, ValueError):
    pass


class StateError(ChatError):
    pass


class NotFound(ChatError, LookupError):
    pass


class TooLarge(ChatError, ValueError):
    pass


class ModuleError(ChatError):
    pass


class AuthError(ChatError):
    pass


class Denied(ChatError):
    pass


class Conflict(ChatError):
    pass


class RateLimited(ChatError):
    pass


class FatalError(ChatError):
    pass


class FrameError(ChatError, ValueError):
    """The frame codec refused a frame. ``field`` names the offending field
    (or None), ``wire`` is the wire error code a server would answer with
    (``bad_frame``, ``bad_id``, ``too_large``...), ``ref`` what that
    error's ``ref`` would carry."""

    def __init__(self, code: int, reason: str, field: Optional[str] = None,
                 wire: Optional[str] = None, ref: Optional[str] = None):
        self.field = field
        self.wire = wire
        self.ref = ref
        super().__init__(code, reason)


class ServerError(ChatError):
    """The server refused a request: an ``error`` frame (``wire`` is its
    code, e.g. ``not_member``) or a REST failure (``http_status``)."""

    def __init__(self, reason: str, wire: Optional[str] = None,
                 http_status: int = 0, code: int = 0):
        self.wire = wire
        self.http_status = http_status
        super().__init__(code or int(lib.CHAT_ERR_MODULE), reason,
                         name=("server:" + wire) if wire else None)


class ConnectionLost(ChatError):
    """The client was closed before the operation completed (a send stays
    in the store's outbox and goes out with the next client on that
    store)."""

    def __init__(self, reason: str = "client closed"):
        super().__init__(int(lib.CHAT_ERR_STATE), reason)


def err_name(code: int) -> str:
    """``CHAT_ERR_INVAL`` for -1, and so on (``chat_err_name()``)."""
    return str(ffi.string(lib.chat_err_name(code)).decode())


def strerror(code: int) -> str:
    return str(ffi.string(lib.chat_strerror(code)).decode())


_CLASSES: dict[int, type[ChatError]] = {
    int(lib.CHAT_ERR_INVAL): InvalidArgument,
    int(lib.CHAT_ERR_STATE): StateError,
    int(lib.CHAT_ERR_NOT_FOUND): NotFound,
    int(lib.CHAT_ERR_TOO_LARGE): TooLarge,
    int(lib.CHAT_ERR_TOO_MANY): TooLarge,
    int(lib.CHAT_ERR_MODULE): ModuleError,
    int(lib.CHAT_ERR_AUTH): AuthError,
    int(lib.CHAT_ERR_DENIED): Denied,
    int(lib.CHAT_ERR_CONFLICT): Conflict,
    int(lib.CHAT_ERR_RATE_LIMITED): RateLimited,
}


def error_for(code: int, reason: str = "") -> ChatError:
    """The exception for a chat_err and its reason."""
    if code <= int(lib.CHAT_ERR_FATAL):
        return FatalError(code, reason)
    if int(lib.CHAT_ERR_FRAME_TOO_LARGE) <= code <= int(lib.CHAT_ERR_JSON):
        return FrameError(code, reason)
    cls = _CLASSES.get(code, ChatError)
    return cls(code, reason)


def check(code: int, reason: str = "") -> None:
    """Raise for a failing chat_err (below 0)."""
    if code < 0:
        raise error_for(code, reason or strerror(code))

"""The chat.v1 frame codec, as dicts.

``decode_frame(bytes) -> dict`` and ``encode_frame(dict) -> bytes`` run
libchat's own codec (chat_codec_decode / chat_codec_encode): the same
strict rules as the server and the C client (ids, UTF-8, field types,
limits, duplicate keys). A frame is a dict shaped like its JSON object on
the wire (PROTOCOL.md sections 2, 3 and 8): ids are strings, message ids
canonical decimal strings, times integers. The dict is built from the
codec's canonical encoding of what it decoded, so it holds exactly the
fields the codec knows (unknown ones are dropped), with every value
checked; ``encode_frame`` checks a dict the same way before it hands back
the canonical bytes.

Refused frames raise :class:`libchat.FrameError` with the C error's name
(``CHAT_ERR_BAD_ID``), the codec's reason (``missing field
"conversation_id"``), the field at fault and the wire code a server would
answer with.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Mapping, Optional, Union

from ._native import ffi, lib
from ._util import cstr
from .errors import FrameError, error_for, strerror
from . import _live

TO_SERVER = "to_server"
TO_CLIENT = "to_client"

_DIRS = {TO_SERVER: int(lib.CHAT_DIR_TO_SERVER),
         TO_CLIENT: int(lib.CHAT_DIR_TO_CLIENT)}


def _type_directions() -> dict[str, int]:
    out: dict[str, int] = {}
    for t in range(0, 64):
        name = lib.chat_frame_type_name(t)
        if name != ffi.NULL:
            out[ffi.string(name).decode()] = int(lib.chat_frame_type_direction(t))
    return out


_TYPE_DIR = _type_directions()


class Codec:
    """One chat_codec (its limits), for one thread at a time. The
    module-level functions use one per thread with the default limits."""

    def __init__(self, *, max_frame_bytes: int = 0, max_body_bytes: int = 0,
                 max_frame_bytes_to_client: int = 0,
                 _counted: bool = True) -> None:
        s = ffi.new("chat_codec_settings *")
        s.version = lib.CHAT_CODEC_SETTINGS_V1
        s.max_frame_bytes = max_frame_bytes
        s.max_body_bytes = max_body_bytes
        s.max_frame_bytes_to_client = max_frame_bytes_to_client
        out = ffi.new("chat_codec **")
        err = ffi.new("chat_errbuf *")
        rc = lib.chat_codec_new(out, s, ffi.NULL, err)
        if rc != lib.CHAT_OK:
            raise error_for(rc, cstr(err.msg) or "codec settings refused")
        if _counted:
            self._codec = ffi.gc(out[0], _free_codec)
            _live.add("codec")
        else:   # the per-thread default codec lives as long as its thread
            self._codec = ffi.gc(out[0], lib.chat_codec_free)

    def _decode_raw(self, data: bytes, direction: str) -> tuple[Any, Any]:
        frame = ffi.new("const chat_frame **")
        err = ffi.new("chat_decode_error *")
        rc = lib.chat_codec_decode(self._codec, _DIRS[direction], data,
                                   len(data), frame, err)
        return rc, (frame[0] if rc == lib.CHAT_OK else err)

    def _raise(self, rc: int, err: Any) -> FrameError:
        wire = lib.chat_wire_error_str(err.wire)
        return FrameError(
            int(rc), cstr(err.message) or strerror(rc), field=cstr(err.field),
            wire=cstr(wire), ref=cstr(err.ref))

    def _canonical(self, frame: Any) -> bytes:
        out = ffi.new("const char **")
        n = ffi.new("size_t *")
        rc = lib.chat_codec_encode(self._codec, frame, out, n)
        if rc != lib.CHAT_OK:
            raise FrameError(int(rc), strerror(rc) + " (while encoding)")
        return bytes(ffi.buffer(out[0], n[0]))

    def decode(self, data: Union[bytes, bytearray, memoryview, str],
               direction: Optional[str] = None) -> dict[str, Any]:
        """Decode one frame. ``direction`` is ``"to_server"`` (client
        frames), ``"to_client"`` (server frames) or None: server frames
        first, then client frames (a ``typing`` with ``user_id`` is the
        server's form, without it the client's)."""
        return json.loads(self.canonical(data, direction))  # type: ignore[no-any-return]

    def canonical(self, data: Union[bytes, bytearray, memoryview, str],
                  direction: Optional[str] = None) -> bytes:
        """Decode and re-encode: the frame's canonical bytes."""
        if isinstance(data, str):
            raw = data.encode("utf-8", "surrogatepass")
        else:
            raw = bytes(data)
        if direction is not None:
            if direction not in _DIRS:
                raise ValueError("direction: %r is neither %r nor %r"
                                 % (direction, TO_SERVER, TO_CLIENT))
            rc, res = self._decode_raw(raw, direction)
            if rc != lib.CHAT_OK:
                raise self._raise(rc, res)
            return self._canonical(res)
        rc, res = self._decode_raw(raw, TO_CLIENT)
        if rc == lib.CHAT_OK:
            return self._canonical(res)
        first = self._raise(rc, res)
        if rc not in (lib.CHAT_ERR_UNKNOWN_TYPE, lib.CHAT_ERR_MISSING_FIELD):
            raise first
        rc2, res2 = self._decode_raw(raw, TO_SERVER)
        if rc2 == lib.CHAT_OK:
            return self._canonical(res2)
        if rc == lib.CHAT_ERR_UNKNOWN_TYPE:
            raise self._raise(rc2, res2)
        raise first

    def encode(self, frame: Mapping[str, Any],
               direction: Optional[str] = None) -> bytes:
        """Check a frame dict with the codec and return its canonical JSON
        bytes. The direction follows from its ``type`` (for ``typing``:
        ``user_id`` present means the server's form)."""
        if not isinstance(frame, Mapping):
            raise TypeError("frame: a mapping is required, not %s"
                            % type(frame).__name__)
        text = json.dumps(dict(frame), ensure_ascii=False,
                          separators=(",", ":"), allow_nan=False)
        if direction is None:
            t = frame.get("type")
            d = _TYPE_DIR.get(t) if isinstance(t, str) else None
            if t == "typing":
                direction = TO_CLIENT if "user_id" in frame else TO_SERVER
            elif d == int(lib.CHAT_DIR_TO_CLIENT):
                direction = TO_CLIENT
            else:
                direction = TO_SERVER   # unknown types are refused there
        return self.canonical(text.encode("utf-8", "surrogatepass"), direction)


def _free_codec(p: Any) -> None:
    lib.chat_codec_free(p)
    if _live is not None:   # None only at interpreter exit
        _live.remove("codec")


_local = threading.local()


def _codec() -> Codec:
    c: Optional[Codec] = getattr(_local, "codec", None)
    if c is None:
        c = Codec(_counted=False)
        _local.codec = c
    return c


def decode_frame(data: Union[bytes, bytearray, memoryview, str],
                 direction: Optional[str] = None) -> dict[str, Any]:
    """Decode one chat.v1 frame with libchat's codec; see :class:`Codec`."""
    return _codec().decode(data, direction)


def encode_frame(frame: Mapping[str, Any],
                 direction: Optional[str] = None) -> bytes:
    """Encode a frame dict with libchat's codec; see :class:`Codec`."""
    return _codec().encode(frame, direction)

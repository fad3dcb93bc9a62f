"""The frame codec as dicts, and errors as typed exceptions."""
from __future__ import annotations

import pytest

import libchat
from libchat.errors import error_for


def test_decode_client_frame_to_dict() -> None:
    f = libchat.decode_frame(
        b'{"type":"send","client_msg_id":"m1","conversation_id":"c1",'
        b'"body":"h\\u00e9\\u0000llo","reply_to":"42","unknown":[1,2]}')
    assert f == {"type": "send", "client_msg_id": "m1",
                 "conversation_id": "c1", "body": "h\u00e9\u0000llo",
                 "reply_to": "42"}


def test_decode_server_frames_and_direction() -> None:
    ack = libchat.decode_frame('{"type":"ack","client_msg_id":"m1",'
                               '"message_id":"7","server_ts":5}')
    assert ack == {"type": "ack", "client_msg_id": "m1", "message_id": "7",
                   "server_ts": 5}
    srv_typing = libchat.decode_frame(
        b'{"type":"typing","conversation_id":"c","user_id":"u","is_typing":true}')
    assert srv_typing["user_id"] == "u"
    cli_typing = libchat.decode_frame(
        b'{"type":"typing","conversation_id":"c","is_typing":false}')
    assert "user_id" not in cli_typing
    with pytest.raises(libchat.FrameError) as e:
        libchat.decode_frame(b'{"type":"ack","client_msg_id":"m1",'
                             b'"message_id":"7","server_ts":5}',
                             direction="to_server")
    assert e.value.name == "CHAT_ERR_UNKNOWN_TYPE"
    assert e.value.wire == "unknown_type"


def test_section8_frames() -> None:
    edit = {"type": "edit", "client_msg_id": "e1", "conversation_id": "c1",
            "target_id": "9", "body": "new"}
    assert libchat.decode_frame(libchat.encode_frame(edit)) == edit
    g = libchat.decode_frame(b'{"type":"goaway","reason":"drain",'
                             b'"retry_after_ms":500}')
    assert g == {"type": "goaway", "reason": "drain", "retry_after_ms": 500}


def test_encode_is_canonical_and_checked() -> None:
    out = libchat.encode_frame({"body": "hi", "conversation_id": "c1",
                                "type": "send", "client_msg_id": "m1"})
    assert isinstance(out, bytes)
    assert libchat.decode_frame(out)["body"] == "hi"
    with pytest.raises(libchat.FrameError) as e:
        libchat.encode_frame({"type": "send", "client_msg_id": "m 1",
                              "conversation_id": "c1", "body": "x"})
    assert e.value.name == "CHAT_ERR_BAD_ID"
    assert e.value.field == "client_msg_id"
    assert e.value.wire == "bad_id"
    assert "client_msg_id" in e.value.reason
    with pytest.raises(libchat.FrameError) as e:
        libchat.encode_frame({"type": "read", "conversation_id": "c1",
                              "up_to_message_id": 5})  # must be a string
    assert e.value.name in ("CHAT_ERR_FIELD_TYPE", "CHAT_ERR_BAD_MESSAGE_ID")
    with pytest.raises(TypeError):
        libchat.encode_frame(["not", "a", "dict"])  # type: ignore[arg-type]


@pytest.mark.parametrize("data,name,wire", [
    (b"{", "CHAT_ERR_JSON", "bad_frame"),
    (b"[1]", "CHAT_ERR_NOT_OBJECT", "bad_frame"),
    (b'{"a":1}', "CHAT_ERR_NO_TYPE", "bad_frame"),
    (b'{"type":"nope"}', "CHAT_ERR_UNKNOWN_TYPE", "unknown_type"),
    (b'{"type":"read","conversation_id":"c1"}', "CHAT_ERR_MISSING_FIELD",
     "bad_frame"),
    (b'{"type":"ping","type":"ping"}', "CHAT_ERR_DUPLICATE_KEY", "bad_frame"),
    (b'{"type":"send","client_msg_id":"m","conversation_id":"c","body":"\xff"}',
     "CHAT_ERR_BAD_UTF8", "bad_frame"),
])
def test_decode_errors_carry_name_reason_and_wire(data: bytes, name: str,
                                                  wire: str) -> None:
    with pytest.raises(libchat.FrameError) as e:
        libchat.decode_frame(data)
    assert e.value.name == name
    assert e.value.wire == wire
    assert e.value.reason
    assert str(e.value).startswith(name + ": ")
    assert isinstance(e.value, libchat.ChatError)
    assert isinstance(e.value, ValueError)


def test_codec_limits() -> None:
    c = libchat.Codec(max_body_bytes=4)
    with pytest.raises(libchat.FrameError) as e:
        c.decode(b'{"type":"send","client_msg_id":"m","conversation_id":"c",'
                 b'"body":"12345"}')
    assert e.value.name == "CHAT_ERR_TOO_LARGE"
    assert e.value.wire == "too_large"
    del c


def test_error_hierarchy() -> None:
    from libchat._native import lib
    cases = {
        lib.CHAT_ERR_INVAL: libchat.InvalidArgument,
        lib.CHAT_ERR_STATE: libchat.StateError,
        lib.CHAT_ERR_NOT_FOUND: libchat.NotFound,
        lib.CHAT_ERR_TOO_LARGE: libchat.TooLarge,
        lib.CHAT_ERR_MODULE: libchat.ModuleError,
        lib.CHAT_ERR_AUTH: libchat.AuthError,
        lib.CHAT_ERR_DENIED: libchat.Denied,
        lib.CHAT_ERR_CONFLICT: libchat.Conflict,
        lib.CHAT_ERR_RATE_LIMITED: libchat.RateLimited,
        lib.CHAT_ERR_NOMEM: libchat.FatalError,
        lib.CHAT_ERR_BAD_ID: libchat.FrameError,
    }
    for code, cls in cases.items():
        e = error_for(code, "why")
        assert type(e) is cls
        assert e.code == code
        assert e.name.startswith("CHAT_ERR_")
        assert e.reason == "why"


def test_constructor_errors_carry_the_errbuf_reason(tmp_path: object) -> None:
    with pytest.raises(libchat.InvalidArgument) as e:
        libchat.Server(":memory:", machine_id=5000)
    assert e.value.name == "CHAT_ERR_INVAL"
    assert "machine_id" in e.value.reason
    with pytest.raises(libchat.ModuleError) as e2:
        libchat.Client("ws://127.0.0.1:1", "tok",
                       store="/nonexistent-dir/x/alice.db")
    assert e2.value.reason
    with pytest.raises(libchat.InvalidArgument):
        libchat.Client("ws://127.0.0.1:1", "bad token with spaces")

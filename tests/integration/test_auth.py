"""PROTOCOL.md section 1: tokens, both styles, and 401 before the upgrade."""
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import Client, raw_http, upgrade_request


def refused_with(server, token, style="header"):
    with pytest.raises(InvalidStatus) as e:
        server.open_ws(token, style)
    resp = e.value.response
    return resp.status_code, json.loads(resp.body)


def test_no_token_is_401_before_upgrade(chatd):
    status, body = refused_with(chatd, None)
    assert status == 401
    assert body == {"error": {"code": "unauthorized",
                              "message": "missing or invalid token"}}


def test_raw_401_response_is_complete_http(chatd):
    reply = raw_http(chatd.port, upgrade_request())
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 401 Unauthorized"
    hdrs = {k.strip().lower(): v.strip() for k, _, v in
            (l.partition(b":") for l in lines[1:])}
    assert hdrs[b"content-type"] == b"application/json"
    assert int(hdrs[b"content-length"]) == len(body)
    assert hdrs[b"www-authenticate"].startswith(b"Bearer")
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert b"101" not in lines[0]


@pytest.mark.parametrize("bad", [
    "garbage",
    "a.b",
    "eyJ1IjoiYWxpY2UifQ.AAAA",
    "x" * 900,
])
def test_malformed_tokens_are_401(chatd, bad):
    for style in ("header", "query"):
        status, body = refused_with(chatd, bad, style)
        assert status == 401, (bad, style)
        assert body["error"]["code"] == "unauthorized"


def test_forged_token_is_401(chatd):
    tok = chatd.token("alice", "phone")
    payload, sig = tok.split(".")
    # Bob's payload under Alice's signature.
    other = chatd.token("bob", "phone").split(".")[0]
    assert refused_with(chatd, other + "." + sig)[0] == 401
    # One character of the signature changed.
    flipped = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    assert refused_with(chatd, payload + "." + flipped)[0] == 401


def test_token_from_another_data_dir_is_401(chatd, chatd_factory):
    other = chatd_factory(start=False)
    tok = other.token("alice", "phone")
    assert refused_with(chatd, tok)[0] == 401


def test_expired_token_is_401(chatd):
    tok = chatd.token("alice", "phone", ttl=1)
    time.sleep(1.3)
    assert refused_with(chatd, tok)[0] == 401
    assert refused_with(chatd, tok, "query")[0] == 401


def test_both_token_styles_open_a_session(chatd):
    for style in ("header", "query"):
        c = Client(chatd.open_ws(chatd.token("alice", "d-" + style), style))
        h = c.hello
        assert h["user_id"] == "alice"
        assert h["device_id"] == "d-" + style
        assert h["session_id"]
        assert isinstance(h["server_ts"], int)
        assert h["heartbeat_ms"] > 0
        assert set(h["limits"]) == {"max_body_bytes", "max_frame_bytes",
                                    "rate_per_minute", "resume_max_messages",
                                    "resume_max_age_ms"}
        assert c.ws.subprotocol == "chat.v1"
        c.close()


def test_token_survives_a_restart(chatd):
    # The key is created once and reused: old tokens stay valid.
    tok = chatd.token("alice", "phone")
    assert chatd.stop() == 0
    chatd.start()
    c = Client(chatd.open_ws(tok))
    assert c.hello["user_id"] == "alice"
    c.close()


def test_key_file_is_private(chatd):
    import os
    import stat
    st = os.stat(os.path.join(chatd.data_dir, "token.key"))
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_rest_requires_a_token(chatd):
    r = chatd.http("GET", "/api/v1/conversations")
    assert r.status == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = chatd.http("GET", "/api/v1/conversations", token="nope")
    assert r.status == 401
    tok = chatd.token("alice", "phone")
    assert chatd.http("GET", "/api/v1/conversations", tok).status == 200
    # ?access_token= works for REST too (browsers).
    r = chatd.http("GET", "/api/v1/conversations?limit=5&access_token=" + tok)
    assert r.status == 200, r.body


def test_wrong_path_and_subprotocol(chatd):
    tok = chatd.token("alice", "phone").encode()
    auth = b"Authorization: Bearer " + tok + b"\r\n"
    reply = raw_http(chatd.port, upgrade_request("/nope", auth))
    assert reply.startswith(b"HTTP/1.1 404 ")
    reply = raw_http(chatd.port, upgrade_request(extra=auth,
                                                 protocol=b"other.v9"))
    assert reply.startswith(b"HTTP/1.1 400 ")
    # No subprotocol at all is accepted (chat.v1 semantics).
    reply = raw_http(chatd.port, upgrade_request(extra=auth, protocol=None),
                     timeout=2)
    assert reply.startswith(b"HTTP/1.1 101 ")
    # Plain GET of the WebSocket path.
    r = chatd.http("GET", "/chat/v1/ws")
    assert r.status == 426


def test_session_closes_4001_when_its_token_expires(chatd):
    """PROTOCOL.md section 8: the token's expiry holds for the session."""
    tok = chatd.token("alice", "phone", ttl=2)
    short = Client(chatd.open_ws(tok))
    chatd.clients.append(short)
    lasting = chatd.client("bob", "phone")  # an hour
    t0 = time.monotonic()
    short.send({"type": "ping", "nonce": 1})
    short.expect("pong")
    try:
        while True:
            short.ws.recv(timeout=10)
    except ConnectionClosed as e:
        assert e.rcvd is not None, "no close frame"
        assert e.rcvd.code == 4001
        assert e.rcvd.reason == "token_expired"
    waited = time.monotonic() - t0
    assert waited < 8, "closed %.1fs after a 2 s token" % waited
    # Only the expired session goes.
    lasting.send({"type": "ping", "nonce": 2})
    lasting.expect("pong")
    m = chatd.http("GET", "/metrics").body.decode()
    assert "chat_sessions_expired_total 1" in m
    assert 'chat_ws_closes_total{code="4001"} 1' in m

"""The lws adapter in a host that owns its lws_context
(tests/integration/lws_host.c): WebSocket extensions the context offers
are declined for chat.v1, and a store that answers later (every call
CHAT_PENDING, completions posted from a worker thread through env.wake and
LWS_CALLBACK_EVENT_WAIT_CANCELLED) serves WebSocket and REST alike."""
import json
import socket
import time

import pytest

from conftest import (TIMEOUT, Client, LwsHost, conv_id, create_conversation)


def metric(server, name):
    text = server.http("GET", "/metrics").body.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def test_permessage_deflate_is_declined(chatd_factory):
    host = chatd_factory(["--deflate"], kind=LwsHost)
    tok = host.token("alice", "phone")
    # The client offers permessage-deflate (websockets' default).
    ws = host.open_ws(tok, compression="deflate")
    alice = Client(ws)
    host.clients.append(alice)
    assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
    assert not ws.protocol.extensions, "an extension was negotiated"
    bob = host.client("bob", "phone")
    conv = conv_id(create_conversation(host, tok, ["bob"]))
    # Many frames, some large, batched into single writes by the adapter:
    # every one arrives whole and in order.
    bodies = ["%d:" % i + "x" * (i * 997 % 60000) for i in range(40)]
    for i, body in enumerate(bodies):
        alice.send({"type": "send", "client_msg_id": "m%d" % i,
                    "conversation_id": conv, "body": body})
    for i, body in enumerate(bodies):
        ack = alice.expect("ack")
        assert ack["client_msg_id"] == "m%d" % i
        msg = bob.expect("message")
        assert msg["body"] == body
    assert metric(host, "chat_ws_extensions_declined_total") >= 1


def test_the_adapter_serves_a_store_that_answers_later(chatd_factory):
    host = chatd_factory(["--async"], kind=LwsHost)
    ta = host.token("alice", "phone")
    tb = host.token("bob", "phone")
    alice = host.client("alice", "phone")
    bob = host.client("bob", "phone")
    # REST through pending answers: create, list, history, media.
    conv = conv_id(create_conversation(host, ta, ["bob"]))
    bob.expect("conversation")
    r = host.http("GET", "/api/v1/conversations", tb)
    assert r.status == 200
    assert [c["conversation_id"] for c in r.json()["conversations"]] == [conv]
    for i in range(5):
        alice.send({"type": "send", "client_msg_id": "m%d" % i,
                    "conversation_id": conv, "body": "hi %d" % i})
    ids = [alice.expect("ack")["message_id"] for _ in range(5)]
    got = [bob.expect("message")["message_id"] for _ in range(5)]
    assert got == ids
    r = host.http("GET", "/api/v1/conversations/%s/messages" % conv, tb)
    assert r.status == 200
    assert [m["body"] for m in r.json()["messages"]] == \
        ["hi %d" % i for i in reversed(range(5))]
    blob = bytes(range(256)) * 64
    r = host.http("POST", "/api/v1/media", ta, body=blob,
                  content_type="application/octet-stream")
    assert r.status == 201, r.body
    media = r.json()["media_id"]
    r = host.http("GET", "/api/v1/media/" + media, ta)
    assert r.status == 200 and r.body == blob
    # Receipts and resume go through the same completions.
    bob.send({"type": "read", "conversation_id": conv,
              "up_to_message_id": ids[-1]})
    rc = alice.expect("receipt")
    assert rc["state"] == "read" and rc["message_id"] == ids[-1]
    late = Client(host.open_ws(host.token("carol", "laptop")))
    host.clients.append(late)
    late.send({"type": "resume", "last_seen": {}})
    late.expect("resumed")
    # The answers really came later.
    assert metric(host, "chat_rest_deferred_total") >= 5
    assert metric(host, "chat_module_calls_pending_total") >= 10
    assert metric(host, "chat_module_calls_in_flight") == 0


def test_a_connection_that_leaves_before_its_answer(chatd_factory):
    # Answers come 300 ms late; the client hangs up before that.
    host = chatd_factory(["--async", "--delay-ms", "300"], kind=LwsHost)
    tok = host.token("alice", "phone")
    for _ in range(5):
        s = socket.create_connection(("127.0.0.1", host.port),
                                     timeout=TIMEOUT)
        s.sendall(b"GET /api/v1/conversations HTTP/1.1\r\n"
                  b"Host: 127.0.0.1\r\n"
                  b"Authorization: Bearer " + tok.encode() + b"\r\n\r\n")
        time.sleep(0.05)
        s.close()
    time.sleep(0.8)  # the answers arrive for connections that are gone
    r = host.http("GET", "/api/v1/conversations", tok)
    assert r.status == 200
    assert json.loads(r.body) == {"conversations": [], "next_cursor": None}
    assert host.proc.poll() is None, host.log_text()

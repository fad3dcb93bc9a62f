"""PROTOCOL.md sections 2-4 over a real socket: send/ack/message across two
users with two devices each, idempotent retries, receipts, read sync,
typing, presence and resume."""
import json
import time

from conftest import create_conversation, conv_id


def setup_pair(chatd):
    a1 = chatd.client("alice", "a-phone")
    a2 = chatd.client("alice", "a-laptop", style="query")
    b1 = chatd.client("bob", "b-phone")
    b2 = chatd.client("bob", "b-laptop")
    conv = create_conversation(chatd, chatd.token("alice", "a-phone"),
                               ["bob"])
    cid = conv_id(conv)
    return a1, a2, b1, b2, cid


def send(c, cid, cmid, body="hi"):
    c.send({"type": "send", "client_msg_id": cmid, "conversation_id": cid,
            "body": body})


def test_send_ack_and_fan_out_to_every_other_device(chatd):
    a1, a2, b1, b2, cid = setup_pair(chatd)
    # Bob's devices learn about the new conversation.
    for c in (b1, b2):
        f = c.expect("conversation")
        assert f["conversation"]["conversation_id"] == cid
        assert f["conversation"]["type"] == "direct"
        assert sorted(f["conversation"]["members"]) == ["alice", "bob"]
    send(a1, cid, "m1", "are you home?")
    ack = a1.expect("ack")
    assert ack["client_msg_id"] == "m1"
    mid = ack["message_id"]
    assert isinstance(mid, str) and mid.isdigit()
    assert isinstance(ack["server_ts"], int)
    assert "duplicate" not in ack or ack["duplicate"] is False
    for c in (a2, b1, b2):
        m = c.expect("message")
        assert m["message_id"] == mid
        assert m["conversation_id"] == cid
        assert m["sender_id"] == "alice"
        assert m["body"] == "are you home?"
        assert m["client_msg_id"] == "m1"
        assert m["server_ts"] == ack["server_ts"]
    # The sending device gets the ack, not a copy.
    a1.quiet("message", 0.5)
    # Bob answers; order holds for several messages.
    mids = []
    for i in range(5):
        send(b2, cid, "b%d" % i, "reply %d" % i)
    for i in range(5):
        mids.append(b2.expect("ack", lambda f, i=i: f["client_msg_id"] ==
                              "b%d" % i)["message_id"])
    assert mids == sorted(mids, key=int) and len(set(mids)) == 5
    got = [a1.expect("message")["message_id"] for _ in range(5)]
    assert got == mids


def test_retry_is_idempotent(chatd):
    a1, a2, b1, b2, cid = setup_pair(chatd)
    send(a1, cid, "same-id", "once")
    first = a1.expect("ack")
    b1.expect("message")
    send(a1, cid, "same-id", "once")
    again = a1.expect("ack")
    assert again["duplicate"] is True
    assert again["message_id"] == first["message_id"]
    assert again["server_ts"] == first["server_ts"]
    b1.quiet("message", 0.6)
    # Even from the other device, later.
    send(a2, cid, "same-id", "once")
    assert a2.expect("ack")["message_id"] == first["message_id"]
    r = chatd.http("GET", "/api/v1/conversations/%s/messages" % cid,
                   chatd.token("bob", "x"))
    assert [m["client_msg_id"] for m in r.json()["messages"]] == ["same-id"]


def test_receipts_and_read_sync(chatd):
    a1, a2, b1, b2, cid = setup_pair(chatd)
    send(a1, cid, "r1")
    mid = a1.expect("ack")["message_id"]
    b1.expect("message")
    b1.send({"type": "delivered", "conversation_id": cid,
             "up_to_message_id": mid})
    rc = a1.expect("receipt", lambda f: f["state"] == "delivered")
    assert rc["conversation_id"] == cid
    assert rc["message_id"] == mid
    assert rc["member_id"] == "bob"
    a2.expect("receipt", lambda f: f["state"] == "delivered")
    b1.send({"type": "read", "conversation_id": cid, "up_to_message_id": mid})
    rr = a1.expect("receipt", lambda f: f["state"] == "read")
    assert rr["message_id"] == mid and rr["member_id"] == "bob"
    # Bob's other device follows the read mark.
    sc = b2.expect("state_change")
    assert sc == {"type": "state_change", "conversation_id": cid,
                  "last_read_message_id": mid}
    # A mark going backwards changes nothing.
    b1.send({"type": "delivered", "conversation_id": cid,
             "up_to_message_id": "1"})
    a1.quiet("receipt", 0.8)
    r = chatd.http("GET", "/api/v1/conversations/%s/messages/%s/receipts"
                   % (cid, mid), chatd.token("alice", "a-phone"))
    assert r.status == 200, r.body
    assert r.json()["read"] == 1 and r.json()["delivered"] == 1


def test_typing_is_relayed_to_the_other_member(chatd):
    a1, a2, b1, b2, cid = setup_pair(chatd)
    a1.send({"type": "typing", "conversation_id": cid, "is_typing": True})
    for c in (b1, b2):
        t = c.expect("typing")
        assert t == {"type": "typing", "conversation_id": cid,
                     "user_id": "alice", "is_typing": True}
    a2.quiet("typing", 0.5)
    a1.send({"type": "typing", "conversation_id": cid, "is_typing": False})
    assert b1.expect("typing")["is_typing"] is False


def test_presence(chatd_factory):
    chatd = chatd_factory(["--presence-offline-ms", "300"])
    a = chatd.client("alice", "a-phone")
    a.send({"type": "presence_subscribe", "user_ids": ["bob"]})
    first = a.expect("presence")
    assert first["user_id"] == "bob"
    assert first["state"] == "offline"
    b = chatd.client("bob", "b-phone")
    on = a.expect("presence", lambda f: f["state"] == "online")
    assert on["user_id"] == "bob"
    assert isinstance(on["last_active_ts"], int)
    b.close()
    off = a.expect("presence", lambda f: f["state"] == "offline")
    assert off["user_id"] == "bob"


def test_resume_after_disconnect(chatd):
    a1, a2, b1, b2, cid = setup_pair(chatd)
    send(a1, cid, "before")
    a1.expect("ack")
    seen = b1.expect("message")["message_id"]
    b1.close()
    mids = []
    for i in range(3):
        send(a1, cid, "gap%d" % i, "while away %d" % i)
        mids.append(a1.expect("ack", lambda f, i=i: f["client_msg_id"] ==
                              "gap%d" % i)["message_id"])
    b = chatd.client("bob", "b-phone")
    b.send({"type": "resume", "last_seen": {cid: seen}})
    h = b.expect("history")
    assert h["conversation_id"] == cid
    assert [m["message_id"] for m in h["messages"]] == mids
    assert [m["body"] for m in h["messages"]] == [
        "while away 0", "while away 1", "while away 2"]
    assert h["complete"] is True
    done = b.expect("resumed")
    assert done["conversations"] == 1 and done["messages"] == 3


def test_resume_failed_past_the_cap(chatd_factory):
    chatd = chatd_factory(["--resume-max-messages", "2"])
    a = chatd.client("alice", "a-phone")
    cid = conv_id(create_conversation(chatd, chatd.token("alice", "x"),
                                      ["bob"]))
    for i in range(3):
        send(a, cid, "m%d" % i)
        a.expect("ack")
    b = chatd.client("bob", "b-phone")
    assert b.hello["limits"]["resume_max_messages"] == 2
    b.send({"type": "resume", "last_seen": {cid: "0"}})
    f = b.expect("resume_failed")
    assert f == {"type": "resume_failed", "conversation_id": cid,
                 "reason": "too_old"}
    b.expect("resumed")


def test_group_fan_out_and_counts(chatd):
    tok = chatd.token("alice", "a-phone")
    g = create_conversation(chatd, tok, ["bob", "carol"], "group", "trio")
    cid = conv_id(g)
    a = chatd.client("alice", "a-phone")
    b = chatd.client("bob", "b-phone")
    c = chatd.client("carol", "c-phone")
    send(a, cid, "g1", "hello group")
    mid = a.expect("ack")["message_id"]
    assert b.expect("message")["message_id"] == mid
    assert c.expect("message")["message_id"] == mid
    b.send({"type": "read", "conversation_id": cid, "up_to_message_id": mid})
    r = a.expect("receipt", lambda f: f["state"] == "read")
    assert r["counts"] == {"delivered": 1, "read": 1}
    c.send({"type": "read", "conversation_id": cid, "up_to_message_id": mid})
    r = a.expect("receipt", lambda f: f["state"] == "read" and
                 f["counts"]["read"] == 2)
    assert r["counts"]["delivered"] == 2


def test_ping_pong(chatd):
    a = chatd.client("alice", "a")
    a.send({"type": "ping", "nonce": "n-1"})
    assert a.expect("pong") == {"type": "pong", "nonce": "n-1"}
    a.send({"type": "ping"})
    assert a.expect("pong") == {"type": "pong"}


def test_fragmented_message_is_reassembled(chatd):
    a1, a2, b1, b2, cid = setup_pair(chatd)
    text = json.dumps({"type": "send", "client_msg_id": "frag",
                       "conversation_id": cid, "body": "x" * 20000})
    parts = [text[i:i + 1000] for i in range(0, len(text), 1000)]
    a1.ws.send(parts)  # one message, many fragments
    assert a1.expect("ack")["client_msg_id"] == "frag"
    assert b1.expect("message")["body"] == "x" * 20000


def test_many_acks_come_quickly(chatd_factory):
    # The group commit runs right after reads: acks do not wait for a tick.
    chatd = chatd_factory(["--rate-per-minute", "100000"])
    a = chatd.client("alice", "a")
    cid = conv_id(create_conversation(chatd, chatd.token("alice", "a"),
                                      ["bob"]))
    t0 = time.monotonic()
    for i in range(200):
        send(a, cid, "q%d" % i)
    for i in range(200):
        a.expect("ack", lambda f, i=i: f["client_msg_id"] == "q%d" % i)
    assert time.monotonic() - t0 < 30


def test_one_frame_per_writable_pass(chatd_factory):
    # The smallest write budget: every writable callback writes one frame,
    # and the session must still re-arm itself until its queue is empty.
    chatd = chatd_factory(["--write-budget-bytes", "1",
                           "--rate-per-minute", "1000"])
    a1, a2, b1, b2, cid = setup_pair(chatd)
    for i in range(20):
        send(a1, cid, "w%d" % i, "one at a time %d" % i)
    for i in range(20):
        a1.expect("ack", lambda f, i=i: f["client_msg_id"] == "w%d" % i)
    for c in (a2, b1, b2):
        got = [c.expect("message")["client_msg_id"] for _ in range(20)]
        assert got == ["w%d" % i for i in range(20)]
    a1.send({"type": "ping", "nonce": "later"})
    assert a1.expect("pong")["nonce"] == "later"

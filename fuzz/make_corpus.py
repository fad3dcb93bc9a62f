#!/usr/bin/env python3
"""Writes the fuzzers' seed corpora, each input stored as
fuzz/corpus/<target>/<sha256>: for the decoders one valid frame of every type
per direction plus near-misses; for the server targets conversations, REST
requests and bus envelopes; for fuzz_token the tokens its key minted.
Run again after adding inputs; existing files are left as they are."""
import hashlib
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

msg = {"message_id": "9187202", "conversation_id": "conv_abc",
       "sender_id": "user_alice", "body": "are you home?",
       "server_ts": 1716000000123, "client_msg_id": "abc"}
to_server = [
    {"type": "send", "client_msg_id": "abc", "conversation_id": "conv_abc",
     "body": "are you home?"},
    {"type": "send", "client_msg_id": "m-2", "conversation_id": "g1",
     "body": "pic \u2028 \"q\" \\ \u0000", "reply_to": "9187190",
     "media_refs": ["media_1", "media_2"], "body_type": "media"},
    {"type": "delivered", "conversation_id": "conv_abc",
     "up_to_message_id": "9187202"},
    {"type": "read", "conversation_id": "conv_abc",
     "up_to_message_id": "9223372036854775807"},
    {"type": "typing", "conversation_id": "conv_abc", "is_typing": True},
    {"type": "resume", "last_seen": {"conv_abc": "9187190",
                                     "conv_xyz": "8800041"}, "since": "1"},
    {"type": "resume", "last_seen": {}},
    {"type": "presence_subscribe", "user_ids": ["alice", "bob"]},
    {"type": "ping", "nonce": "n1"},
    {"type": "ping", "nonce": 12.5e-3},
    {"type": "ping"},
]
to_client = [
    {"type": "hello", "user_id": "alice", "device_id": "phone",
     "session_id": "s1", "server_ts": 1716000000123, "heartbeat_ms": 30000,
     "limits": {"max_body_bytes": 65536, "max_frame_bytes": 131072,
                "rate_per_minute": 60, "resume_max_messages": 1000,
                "resume_max_age_ms": 604800000}},
    {"type": "ack", "client_msg_id": "abc", "message_id": "9187202",
     "server_ts": 1716000000123, "duplicate": True},
    dict(msg, type="message"),
    dict(msg, type="message", reply_to="1", media_refs=["m"],
         body_type="system"),
    {"type": "receipt", "conversation_id": "g1", "message_id": "5",
     "state": "read", "member_id": "bob",
     "counts": {"delivered": 800, "read": 640}},
    {"type": "history", "conversation_id": "conv_abc",
     "messages": [msg, dict(msg, message_id="9187203")], "complete": False},
    {"type": "resume_failed", "conversation_id": "conv_abc",
     "reason": "too_old"},
    {"type": "resumed", "conversations": 2, "messages": 20},
    {"type": "typing", "conversation_id": "c", "user_id": "bob",
     "is_typing": False},
    {"type": "presence", "user_id": "bob", "state": "idle",
     "last_active_ts": 1716000000000},
    {"type": "presence", "user_id": "bob", "state": "offline",
     "last_active_ts": None},
    {"type": "state_change", "conversation_id": "c",
     "last_read_message_id": "77"},
    {"type": "conversation", "conversation": {
        "conversation_id": "g1", "type": "group", "name": "Friends",
        "members": ["alice", "bob"], "last_message": msg,
        "unread_count": 3, "last_read_message_id": None}},
    {"type": "error", "code": "rate_limited", "message": "slow down",
     "ref": "abc", "retry_after_ms": 1500},
    {"type": "pong", "nonce": "n1"},
]
# PROTOCOL.md section 8. Kept apart from the lists above, which also seed
# the client, server and bus targets: those get them once their layers
# handle the new frames.
to_server_v8 = [
    {"type": "edit", "client_msg_id": "e-1", "conversation_id": "conv_abc",
     "target_id": "9187202", "body": "fixed \u2028 \"q\" \\ \u0000"},
    {"type": "edit", "client_msg_id": "e-2", "conversation_id": "g1",
     "target_id": "0", "body": ""},
    {"type": "delete", "client_msg_id": "d-1", "conversation_id": "g1",
     "target_id": "9223372036854775807"},
]
edit_msg = dict(msg, message_id="9187300", client_msg_id="e-1",
                body="fixed", body_type="edit", target_id="9187202")
delete_msg = dict(msg, message_id="9187301", client_msg_id="d-1", body="",
                  body_type="delete", target_id="9187203")
to_client_v8 = [
    {"type": "goaway", "reason": "drain", "retry_after_ms": 30000},
    {"type": "goaway", "reason": "overload", "retry_after_ms": 0},
    {"type": "goaway", "reason": "rebalance",
     "retry_after_ms": 9223372036854775807},
    dict(edit_msg, type="message"),
    dict(delete_msg, type="message"),
    dict(msg, type="message", sender_kind="bot"),
    dict(edit_msg, type="message", sender_kind="bot"),
    dict(msg, type="message", sender_kind="user", target_id=None,
         deleted=False),
    {"type": "history", "conversation_id": "conv_abc", "complete": True,
     "messages": [dict(msg, body="fixed", edited_ts=1716000000999),
                  dict(msg, message_id="9187203", body="", deleted=True,
                       edited_ts=1716000000500),
                  edit_msg, delete_msg]},
    {"type": "hello", "user_id": "alice", "device_id": "phone",
     "session_id": "s1", "server_ts": 1716000000123, "heartbeat_ms": 30000,
     "limits": {"max_body_bytes": 65536, "max_frame_bytes": 131072,
                "rate_per_minute": 60, "resume_max_messages": 1000,
                "resume_max_age_ms": 604800000, "resume_batch_hint": 50}},
    {"type": "conversation", "conversation": {
        "conversation_id": "g1", "type": "group", "name": "Friends",
        "members": ["alice", "bob", "carol"], "admins": ["alice", "carol"],
        "last_message": dict(msg, conversation_id="g1", body="",
                             deleted=True),
        "unread_count": 0, "last_read_message_id": "9187202"}},
    {"type": "error", "code": "forbidden", "message": "not yours",
     "ref": "e-1"},
    {"type": "error", "code": "not_found", "message": "no such message",
     "ref": "d-1"},
]
raw_extra_v8 = [
    b'{"type":"edit","client_msg_id":"e","conversation_id":"c","target_id":5,"body":"b"}',
    b'{"type":"delete","client_msg_id":"d","conversation_id":"c"}',
    b'{"type":"goaway","reason":"drain"}',
    b'{"type":"goaway","reason":"","retry_after_ms":-1}',
    b'{"type":"message","message_id":"1","conversation_id":"c","sender_id":"s","body":"x","server_ts":1,"body_type":"delete","target_id":"1"}',
    b'{"type":"message","message_id":"1","conversation_id":"c","sender_id":"s","body":"x","server_ts":1,"target_id":"1"}',
    b'{"type":"send","client_msg_id":"a","conversation_id":"c","body":"x","body_type":"edit"}',
]
raw_extra = [
    b'{"type":"send","client_msg_id":"a","conversation_id":"c","body":"\\ud83d\\ude00"}',
    b'{"type":"send","client_msg_id":"a","conversation_id":"c","body":"x","body":"y"}',
    b'{"type":"read","conversation_id":"c","up_to_message_id":"01"}',
    b'[1,2,3]', b'{"type":"ping","nonce":"\xff"}', b'',
]


def write(target, blobs):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for b in blobs:
        name = hashlib.sha256(b).hexdigest()
        path = os.path.join(d, name)
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(b)


def enc(frames):
    return [json.dumps(f, separators=(",", ":"), ensure_ascii=False)
            .encode() for f in frames]


# fuzz_client: newline-separated sessions (see fuzz/fuzz_client.c for the
# '!' actions), each driving a connected client.
def session(*chunks):
    return b"\n".join(c if isinstance(c, bytes) else
                      json.dumps(c, separators=(",", ":")).encode()
                      for c in chunks)


resumed = {"type": "resumed", "conversations": 0, "messages": 0}
cmsg = dict(msg, conversation_id="c")
client_sessions = [
    session(resumed, dict(cmsg, type="message"), b"!m9187202", b"!t1000"),
    session(b"!shello", {"type": "ack", "client_msg_id": "m1",
                         "message_id": "5", "server_ts": 1}, resumed),
    session({"type": "history", "conversation_id": "c", "messages": [cmsg],
             "complete": False}, resumed, b"!r" + json.dumps(
                 {"messages": [dict(cmsg, message_id="9187203")],
                  "has_more": False}).encode()),
    session({"type": "resume_failed", "conversation_id": "c",
             "reason": "too_old"}, resumed, b"!e503", b"!t5000",
            b"!r{\"messages\":[],\"has_more\":false}"),
    session(resumed, b"!k", b"!t3000", b"!k", {"type": "typing",
            "conversation_id": "c", "user_id": "bob", "is_typing": True},
            b"!t6000", b"!c", resumed),
    session(resumed, b"!sx", {"type": "error", "code": "rate_limited",
                              "message": "slow", "ref": "m0",
                              "retry_after_ms": 10}, b"!t100", b"not json",
            b"[1]", {"type": "receipt", "conversation_id": "c",
                     "message_id": "5", "state": "read", "member_id": "bob",
                     "counts": {"delivered": 2, "read": 1}}),
    session(b"!Ttok1", resumed, b"!x", b"!t60000", b"!Ttok1", b"!Ttok2",
            resumed, b"!s after", b"!e401", b"!Ttok3", b"!dpush-1"),
    session(resumed, {"type": "goaway", "reason": "drain",
                      "retry_after_ms": 5000}, b"!c", b"!t6000", resumed),
] + [session(resumed, f) for f in enc(to_client)]


# Section 8: edits and deletes in every arrival order and from every
# origin, our own through the outbox (acked, refused, retried), admin and
# member calls answered, a paced resume, goaway.
def centry(mid, kind, target, body="", **kw):
    return dict(cmsg, type="message", message_id=mid, client_msg_id="x" + mid,
                body=body, body_type=kind, target_id=target, **kw)


ctarget = dict(cmsg, type="message", message_id="10", client_msg_id="x10",
               body="orig")
cedit = centry("11", "edit", "10", "fixed")
cedit2 = centry("12", "edit", "10", "fixed again")
cdel = centry("13", "delete", "10")
gconv = {"type": "conversation", "conversation": {
    "conversation_id": "c", "type": "group", "name": "G",
    "members": ["alice", "bob"], "admins": ["alice"], "last_message": None,
    "unread_count": 0, "last_read_message_id": None}}
hello_paced = {"type": "hello", "user_id": "alice", "device_id": "d",
               "session_id": "s2", "server_ts": 1, "heartbeat_ms": 30000,
               "limits": {"max_body_bytes": 65536, "max_frame_bytes": 131072,
                          "rate_per_minute": 60, "resume_max_messages": 1000,
                          "resume_max_age_ms": 604800000,
                          "resume_batch_hint": 1}}
hist = {"type": "history", "conversation_id": "c", "complete": True,
        "messages": [dict(cmsg, message_id="10", body="fixed again",
                          edited_ts=1716000000999),
                     dict(cedit, body="", type=None),
                     dict(cedit2, type=None)]}
for m in hist["messages"]:
    m.pop("type", None)
client_sessions_v8 = [
    session(resumed, ctarget, cedit, cedit2, cdel, b"!l10"),
    session(resumed, cdel, cedit2, cedit, ctarget, b"!l10"),
    session(resumed, cedit2, ctarget, cedit, b"!l10", cdel, cedit),
    session(hist, resumed, cdel, b"!l10"),
    session(resumed, ctarget, b"!E10 better", b"!D10", b"!l10",
            {"type": "ack", "client_msg_id": "m0", "message_id": "20",
             "server_ts": 5},
            {"type": "error", "code": "forbidden", "message": "no",
             "ref": "m1"}, b"!c", resumed, b"!l10"),
    session(resumed, b"!D10", {"type": "error", "code": "rate_limited",
                               "message": "slow", "ref": "m0",
                               "retry_after_ms": 50}, b"!t100",
            {"type": "ack", "client_msg_id": "m0", "message_id": "21",
             "server_ts": 6, "duplicate": True}, ctarget, b"!l10"),
    session(resumed, gconv, b"!Abob", b"!r" + json.dumps(
        gconv["conversation"]).encode(), b"!abob", b"!e403", b"!Rbob",
            b'!r{"removed":true}', b"!r" + json.dumps(
                gconv["conversation"]).encode(), b"!L", b"!r{}", b"!f",
            b"!e404"),
    session(resumed, gconv, dict(gconv, conversation=dict(
        gconv["conversation"], members=["bob"], admins=["bob"]))),
    session(resumed, ctarget, b"!c", hello_paced,
            {"type": "resume_failed", "conversation_id": "c",
             "reason": "not_member"}, resumed, resumed),
    session({"type": "history", "conversation_id": "c", "complete": True,
             "messages": [dict(cmsg, body_type="system", client_msg_id=None,
                               body="bob made alice an admin")]}, resumed,
            b"!r" + json.dumps(gconv["conversation"]).encode()),
    session(resumed, {"type": "goaway", "reason": "drain",
                      "retry_after_ms": 2000}, b"!squeued", b"!c",
            b"!t2001", resumed),
]
write("fuzz_client", client_sessions + client_sessions_v8)


# fuzz_client_rest: a kind byte (0 messages page, 1 conversation list,
# 2 one conversation, 3 error object), then the REST answer body.
def rest(kind, body):
    if not isinstance(body, bytes):
        body = json.dumps(body, separators=(",", ":"),
                          ensure_ascii=False).encode()
    return bytes([kind]) + body


conv_obj = {"conversation_id": "g1", "type": "group", "name": "G",
            "members": ["alice", "bob"], "last_message": cmsg,
            "unread_count": 2, "last_read_message_id": "9187190"}
write("fuzz_client_rest", [
    rest(0, {"messages": [cmsg, dict(cmsg, message_id="9187203",
                                     reply_to="9187202", media_refs=["m1"],
                                     body_type="media")],
             "has_more": True}),
    rest(0, {"messages": [], "has_more": False}),
    rest(0, {"messages": [dict(cmsg, client_msg_id=None, body="\u0000\u2028")],
             "has_more": None}),
    rest(0, {"messages": [dict(cmsg, message_id="01")]}),
    rest(0, b'{"messages":[{"message_id":"1"}]}'),
    rest(0, b'{"messages":[1]} x'),
    rest(1, {"conversations": [conv_obj, dict(conv_obj, conversation_id="d",
                                              type="direct", name=None,
                                              last_message=None,
                                              last_read_message_id=None,
                                              admins=["alice"])],
             "next_cursor": "5:g2@x"}),
    rest(1, {"conversations": [], "next_cursor": None}),
    rest(1, {"conversations": [dict(conv_obj, type="room")]}),
    rest(2, conv_obj),
    rest(2, dict(conv_obj, members=["bad id"])),
    rest(3, {"error": {"code": "not_member", "message": "no"}}),
    rest(3, b'{"error":"x"}'),
    rest(0, b'\xff'), rest(1, b''), rest(2, b'[]'),
    # Section 8: targets read back with their state, the entries, bots,
    # admins.
    rest(0, {"messages": [dict(cmsg, message_id="12", client_msg_id="e2",
                               body="v2", body_type="edit", target_id="10"),
                          dict(cmsg, message_id="11", client_msg_id="e1",
                               body="", body_type="edit", target_id="10"),
                          dict(cmsg, message_id="10", body="v2",
                               edited_ts=1716000000500, sender_kind="bot"),
                          dict(cmsg, message_id="9", body="", deleted=True)],
             "has_more": False}),
    rest(2, dict(conv_obj, admins=["alice", "bob"])),
    rest(3, {"error": {"code": "forbidden",
                       "message": "only an admin may make admins"}}),
])
write("fuzz_decode_to_server", enc(to_server) + raw_extra +
      enc(to_server_v8) + raw_extra_v8)
write("fuzz_decode_to_client", enc(to_client) + raw_extra +
      enc(to_client_v8) + raw_extra_v8)

# ---- server targets. @d @g @o @1 @2 @n @m are the fixture's aliases
# (fuzz/server_fixture.h): conversations, messages and media it made.


def lines(*frames):
    return b"\n".join(f if isinstance(f, bytes) else
                      json.dumps(f, separators=(",", ":"),
                                 ensure_ascii=False).encode()
                      for f in frames)


# fuzz_server_session: frames alternate alice, bob, alice, ...
# "~" moves the clock 61 s, "~~" 16 min.
session = [
    lines({"type": "send", "client_msg_id": "a1", "conversation_id": "@g",
           "body": "hi all"},
          {"type": "delivered", "conversation_id": "@g",
           "up_to_message_id": "@1"},
          {"type": "read", "conversation_id": "@g",
           "up_to_message_id": "@1"},
          {"type": "typing", "conversation_id": "@g", "is_typing": True},
          b"~",
          {"type": "read", "conversation_id": "@g",
           "up_to_message_id": "9223372036854775807"}),
    lines({"type": "send", "client_msg_id": "d1", "conversation_id": "@d",
           "body": "re", "reply_to": "@2", "media_refs": ["@n"],
           "body_type": "media"},
          {"type": "read", "conversation_id": "@d",
           "up_to_message_id": "@2"},
          {"type": "send", "client_msg_id": "d1", "conversation_id": "@d",
           "body": "re"},
          {"type": "typing", "conversation_id": "@d", "is_typing": False}),
    lines({"type": "resume", "last_seen": {"@g": "1", "@d": "@2"}},
          {"type": "resume", "last_seen": {}, "since": "1"},
          {"type": "resume", "last_seen": {"@o": "1", "nope": "5"}}),
    lines({"type": "presence_subscribe",
           "user_ids": ["alice", "bob", "carol"]},
          {"type": "ping", "nonce": "n1"},
          b"~~",
          {"type": "ping", "nonce": 12.5e-3},
          {"type": "ping"}),
    lines({"type": "send", "client_msg_id": "x", "conversation_id": "@o",
           "body": "not a member"},
          {"type": "send", "client_msg_id": "y", "conversation_id": "nope",
           "body": "no such conversation"},
          {"type": "ack", "client_msg_id": "z", "message_id": "1",
           "server_ts": 1},
          b'{"type":"send","body":"\xff"}',
          b"", b"[]", b"{"),
    lines(*[{"type": "send", "client_msg_id": "r%d" % i,
             "conversation_id": "@d", "body": "flood"} for i in range(64)]),
    lines(*[b"garbage"] * 64),
]
write("fuzz_server_session", session)

# fuzz_rest: method byte (low bits 0 GET 1 POST 2 DELETE 3 PUT; bits 2-3
# Content-Type: none, image/png, JSON, a bad one), path \n query \n body.
GET, POST, DEL, PUT = 0, 1, 2, 3
PNG, JSONT, BADT = 1 << 2, 2 << 2, 3 << 2


def rq(method, path, query=None, body=None):
    b = bytes([method]) + path.encode()
    if query is not None or body is not None:
        b += b"\n" + (query or "").encode() + b"\n"
        b += body if isinstance(body, bytes) else (
            json.dumps(body).encode() if body is not None else b"")
    return b


rest = [
    rq(GET, "/api/v1/conversations", "limit=2"),
    rq(GET, "/api/v1/conversations", "cursor=abc&limit=0"),
    rq(POST | JSONT, "/api/v1/conversations", "",
       {"type": "group", "name": "x", "members": ["bob", "dave"]}),
    rq(POST, "/api/v1/conversations", "",
       {"type": "direct", "members": ["bob"]}),
    rq(POST, "/api/v1/conversations", "", {"type": "direct",
                                           "members": ["bob", "carol"]}),
    rq(GET, "/api/v1/conversations/@g"),
    rq(GET, "/api/v1/conversations/@o"),
    rq(GET, "/api/v1/conversations/@g/messages", "before=@1&limit=1"),
    rq(GET, "/api/v1/conversations/@d/messages", "after=1"),
    rq(GET, "/api/v1/conversations/@g/messages/@1/receipts"),
    rq(GET, "/api/v1/conversations/@d/messages/@2/receipts"),
    rq(POST, "/api/v1/conversations/@g/members", "", {"user_id": "dave"}),
    rq(POST, "/api/v1/conversations/@d/members", "", {"user_id": "dave"}),
    rq(DEL, "/api/v1/conversations/@g/members/alice"),
    rq(DEL, "/api/v1/conversations/@g/members/bob"),
    rq(POST, "/api/v1/devices", "",
       {"platform": "fcm", "push_token": "tok"}),
    rq(POST | PNG, "/api/v1/media", "", b"\x89PNG\r\n\x1a\n\x00\x01"),
    rq(POST | BADT, "/api/v1/media", "", b"abc"),
    rq(GET, "/api/v1/media/@n"),
    rq(GET, "/api/v1/media/@m"),
    rq(GET, "/api/v1/media/nope"),
    rq(PUT, "/api/v1/conversations"),
    rq(GET, "/api/v2/conversations"),
    rq(GET, "/api/v1/conversations/%zz"),
    rq(GET, "/api/v1//conversations//@g//messages", "limit=%41"),
    # section 8: admins
    rq(POST, "/api/v1/conversations/@g/admins", "", {"user_id": "bob"}),
    rq(POST, "/api/v1/conversations/@g/admins", "", {"user_id": "zoe"}),
    rq(POST, "/api/v1/conversations/@d/admins", "", {"user_id": "bob"}),
    rq(DEL, "/api/v1/conversations/@g/admins/alice"),
    rq(DEL, "/api/v1/conversations/@g/admins/bob"),
    rq(GET, "/api/v1/conversations/@g/admins"),
    rq(DEL, "/api/v1/conversations/@g/admins/%00"),
]
write("fuzz_rest", rest)

# fuzz_bus: envelopes {"k":"deliver","to":[users],"xu","xd","f":frame}.
bus = [json.dumps({"k": "deliver", "to": ["alice", "bob", "carol"],
                   "f": f}, separators=(",", ":")).encode()
       for f in to_client]
bus += [
    json.dumps({"k": "deliver", "to": ["alice"], "xu": "alice",
                "xd": "phone", "f": to_client[2]}).encode(),
    json.dumps({"k": "deliver", "to": ["alice"], "f": to_server[0]}).encode(),
    b'{"k":"deliver","to":["bad id!"],"f":{"type":"pong"}}',
    b'{"k":"other","to":[],"f":{"type":"pong"}}',
    b'{"k":"deliver","to":[],"f":{"type":"pong"}}',
    b'{"k":"forget","c":"c1"}', b'{"k":"forget","c":5}',
    b'[]', b'',
]
write("fuzz_bus", bus)


# fuzz_token: the tokens the target's fixed key minted, read from its
# source so that they are written down once.
def c_tokens():
    src = open(os.path.join(HERE, "fuzz_token.c")).read()
    out = []
    for m in re.finditer(r"#define TOKEN_\w+((?:\s*\\\n\s*\"[^\"]*\")+)",
                         src):
        out.append("".join(re.findall(r'"([^"]*)"', m.group(1))).encode())
    if not out:
        sys.exit("no TOKEN_ lines in fuzz_token.c")
    return out


toks = c_tokens()
write("fuzz_token", toks + [toks[0] + b"=", toks[0][:-1], b"a.b",
                            b"." + toks[0].split(b".")[1], b""])

# fuzz_http_parse: byte 0 cuts the input into reads of (b % 64) + 1 bytes;
# the rest is what a client sends: requests good and bad, the smuggling
# shapes of issue 15, chunked bodies, pipelined requests.
def http(step, text):
    return bytes([step]) + text


def upgrade_req(extra=b""):
    return (b"GET /chat/v1/ws?access_token=T HTTP/1.1\r\nHost: h\r\n"
            b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Protocol: chat-http, chat.v1\r\n" + extra +
            b"\r\n")


http_inputs = [
    http(0, b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"),
    http(3, upgrade_req()),
    http(63, upgrade_req(b"Authorization: Bearer a.b\r\n")),
    http(1, b"POST /api/v1/conversations HTTP/1.1\r\nHost: h\r\n"
            b"Content-Length: 38\r\nContent-Type: application/json\r\n\r\n"
            b'{"type":"direct","members":["bob"]}'),
    http(7, b"POST /api/v1/media HTTP/1.1\r\nHost: h\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: v\r\n\r\n"
            b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n"),
    http(5, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n"
            b"Host: h\r\n\r\n"),
    http(9, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, "
            b"chunked\r\n\r\n"),
    http(2, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n"
            b"Content-Length: 2\r\n\r\nab"),
    http(4, b"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n"),
    http(4, b"TRACE / HTTP/1.1\r\nHost: h\r\n\r\n"),
    http(4, b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
    http(6, b"GET http://example.com/api/v1/x?a=1 HTTP/1.1\r\nHost: h\r\n"
            b"\r\n"),
    http(8, b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n"),
    http(8, b"GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
    http(8, b"GET / HTTP/1.1\nHost: h\n\n"),
    http(8, b"GET / HTTP/1.0\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n"),
    http(10, b"\r\n\r\nGET /a%20b/%2e%2e/c HTTP/1.1\r\nHost: h\r\n"
             b"Expect: 100-continue\r\nContent-Length: 0\r\n\r\n"),
    http(11, b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 5000 + b"\r\n\r\n"),
    http(12, b"GET /" + b"p" * 5000 + b" HTTP/1.1\r\n\r\n"),
    http(13, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    http(14, b"1a\r\n" + b"z" * 26 + b"\r\n0\r\n\r\n"),
    http(15, b"fffffffffffffffff\r\n"),
    b"",
]
write("fuzz_http_parse", http_inputs)


# fuzz_ws_frame: byte 0 cuts into reads, byte 1 picks the size limit
# (index into 0, 1, 16, 125, 126, 4096, 65536, 131072, unlimited); then
# client frames.
def wsf(b0, payload, mask=b"\x37\xfa\x21\x3d", length=None):
    n = len(payload) if length is None else length
    out = bytes([b0])
    m = 0x80 if mask is not None else 0
    if n < 126:
        out += bytes([m | n])
    elif n < 65536:
        out += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        out += bytes([m | 127]) + n.to_bytes(8, "big")
    if mask is not None:
        out += mask
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return out + payload


ws_inputs = [
    bytes([0, 8]) + wsf(0x81, b'{"type":"ping","nonce":"n"}'),
    bytes([1, 8]) + wsf(0x01, b"ab") + wsf(0x89, b"p") + wsf(0x00, b"cd") +
    wsf(0x8A, b"") + wsf(0x80, b"ef"),
    bytes([2, 8]) + wsf(0x01, b"") + wsf(0x80, b"xyz"),
    bytes([3, 8]) + wsf(0x81, b"hi", mask=None),
    bytes([4, 8]) + wsf(0xC1, b"x") + wsf(0x83, b"x"),
    bytes([5, 2]) + wsf(0x01, b"0123456789") + wsf(0x80, b"0123456789"),
    bytes([6, 8]) + wsf(0x82, bytes(300)),
    bytes([7, 8]) + wsf(0x81, bytes(70000)),
    bytes([8, 8]) + wsf(0x88, b"\x03\xe8bye") + wsf(0x88, b"\x03"),
    bytes([9, 8]) + wsf(0x88, b"\x03\xedx") + wsf(0x88, b"\x03\xe8\xc3\x28"),
    bytes([10, 8]) + wsf(0x09, b"frag ping") + wsf(0x89, bytes(126)),
    bytes([11, 8]) + b"\x82\xff\x80\x00\x00\x00\x00\x00\x00\x01\x01\x02\x03",
    bytes([12, 8]) + wsf(0x80, b"no message"),
    bytes([13, 3]) + wsf(0x81, b"x" * 125) + wsf(0x81, b"y" * 126),
    bytes([63, 8]) + wsf(0x81, b"\xff\xfe invalid utf-8 is the core's"),
    bytes([0, 0]),
]
write("fuzz_ws_frame", ws_inputs)
sys.exit(0)

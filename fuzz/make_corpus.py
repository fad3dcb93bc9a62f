#!/usr/bin/env python3
"""Writes the decoder fuzzers' seed corpora: one valid frame of every type
per direction plus near-misses, each stored as fuzz/corpus/<target>/<sha256>.
Run again after adding frames; existing files are left as they are."""
import hashlib
import json
import os
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
] + [session(resumed, f) for f in enc(to_client)]
write("fuzz_client", client_sessions)
write("fuzz_decode_to_server", enc(to_server) + raw_extra)
write("fuzz_decode_to_client", enc(to_client) + raw_extra)
sys.exit(0)

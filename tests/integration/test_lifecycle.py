"""The process around the protocol (PROTOCOL.md section 6): durability
across SIGKILL, draining on SIGTERM, heartbeats and dead peers, running out
of descriptors, and the command line."""
import json
import os
import resource
import signal
import socket
import subprocess
import time

import pytest
from websockets.exceptions import ConnectionClosed

from conftest import (CHATD, TIMEOUT, Client, create_conversation, conv_id,
                      upgrade_request)


def history(chatd, token, cid):
    """Every message of a conversation through REST, oldest first."""
    out, before = [], None
    for _ in range(1000):
        q = "/api/v1/conversations/%s/messages?limit=200" % cid
        if before:
            q += "&before=" + before
        r = chatd.http("GET", q, token)
        assert r.status == 200, r.body
        page = r.json()
        out += page["messages"]
        if not page["has_more"]:
            break
        before = page["messages"][-1]["message_id"]
    return out[::-1]


def drain_acks(c, acked, timeout):
    """Collect acks until the socket goes quiet or closes; True if closed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            f = c.ws.recv(timeout=0.2)
        except TimeoutError:
            return False
        except ConnectionClosed:
            return True
        f = json.loads(f)
        if f["type"] == "ack":
            acked[f["client_msg_id"]] = f["message_id"]
    return False


def test_sigkill_loses_nothing_acked(chatd_factory):
    chatd = chatd_factory(["--rate-per-minute", "1000000"])
    tok = chatd.token("alice", "a")
    cid = conv_id(create_conversation(chatd, tok, ["bob"]))
    a = chatd.client("alice", "a")
    acked, sent = {}, []
    n = 0
    for burst in range(12):
        for _ in range(40):
            cmid = "k%d" % n
            n += 1
            a.send({"type": "send", "client_msg_id": cmid,
                    "conversation_id": cid, "body": "body " + cmid})
            sent.append(cmid)
        if burst < 11:
            drain_acks(a, acked, 0.5)
    # Kill while the last burst is in flight.
    os.kill(chatd.proc.pid, signal.SIGKILL)
    chatd.proc.wait(timeout=TIMEOUT)
    drain_acks(a, acked, 2)
    a.close()
    chatd.kill()
    assert len(acked) >= 100, "too few acks before the kill: %d" % len(acked)

    chatd.start()  # same data directory
    msgs = history(chatd, tok, cid)
    by_cmid = {}
    for m in msgs:
        assert m["client_msg_id"] not in by_cmid, "stored twice"
        by_cmid[m["client_msg_id"]] = m["message_id"]
    for cmid, mid in acked.items():
        assert by_cmid.get(cmid) == mid, "acked %s lost or changed" % cmid
    ids = [int(m["message_id"]) for m in msgs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    # One sender's order survived: stored messages follow the send order.
    order = [int(c[1:]) for c in (m["client_msg_id"] for m in msgs)]
    assert order == sorted(order)

    # Retrying everything that was not acked stores each exactly once.
    a = chatd.client("alice", "a")
    for cmid in sent:
        if cmid not in acked:
            a.send({"type": "send", "client_msg_id": cmid,
                    "conversation_id": cid, "body": "body " + cmid})
    for cmid in sent:
        if cmid not in acked:
            f = a.expect("ack", lambda f, c=cmid: f["client_msg_id"] == c)
            if cmid in by_cmid:  # committed, ack lost with the process
                assert f.get("duplicate") is True
                assert f["message_id"] == by_cmid[cmid]
    msgs = history(chatd, tok, cid)
    assert sorted(m["client_msg_id"] for m in msgs) == sorted(sent)


def test_sigterm_drains_and_exits_0(chatd_factory):
    chatd = chatd_factory(["--rate-per-minute", "1000000"])
    tok = chatd.token("alice", "a")
    cid = conv_id(create_conversation(chatd, tok, ["bob"]))
    a = chatd.client("alice", "a")
    b = chatd.client("bob", "b")
    for i in range(50):
        a.send({"type": "send", "client_msg_id": "t%d" % i,
                "conversation_id": cid, "body": "x"})
    a.send({"type": "ping", "nonce": "last"})
    # The server has read everything once the pong is back.
    a.expect("pong")
    t0 = time.monotonic()
    os.kill(chatd.proc.pid, signal.SIGTERM)
    acked = {}
    for f in a.backlog:
        if f["type"] == "ack":
            acked[f["client_msg_id"]] = f["message_id"]
    a.backlog.clear()
    assert drain_acks(a, acked, TIMEOUT)
    # goaway then 1012 (PROTOCOL.md section 8), after every ack.
    assert a.ws.close_code == 1012
    g = b.expect("goaway")
    assert g == {"type": "goaway", "reason": "drain",
                 "retry_after_ms": 10000}
    assert b.closed_code() == 1012
    assert chatd.proc.wait(timeout=TIMEOUT) == 0
    assert time.monotonic() - t0 < 10
    # Everything the server had read was committed and acked.
    assert len(acked) == 50
    chatd.proc.stdout.close()
    chatd.log.close()
    chatd.proc = None
    chatd.start()
    msgs = history(chatd, tok, cid)
    assert {m["client_msg_id"]: m["message_id"] for m in msgs} == acked
    assert "level=error" not in chatd.log_text()


def test_sigterm_while_idle_is_quick(chatd):
    t0 = time.monotonic()
    assert chatd.stop(signal.SIGTERM) == 0
    assert time.monotonic() - t0 < 5


def test_heartbeat_and_dead_peer(chatd_factory):
    chatd = chatd_factory(["--heartbeat-ms", "1000",
                           "--idle-timeout-ms", "2500"])
    alive = chatd.client("alice", "alive")  # answers pings by itself
    assert alive.hello["heartbeat_ms"] == 1000
    # A peer that completes the handshake and then never reads or answers.
    tok = chatd.token("bob", "dead").encode()
    s = socket.create_connection(("127.0.0.1", chatd.port), timeout=10)
    s.sendall(upgrade_request(extra=b"Authorization: Bearer " + tok +
                              b"\r\n"))
    data = b""
    t0 = time.monotonic()
    closed_at = None
    while time.monotonic() - t0 < 10:
        try:
            b = s.recv(4096)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed_at = time.monotonic()
            break
        if not b:
            closed_at = time.monotonic()
            break
        data += b
    s.close()
    assert data.startswith(b"HTTP/1.1 101 ")
    body = data.partition(b"\r\n\r\n")[2]
    assert b"\x89\x02hb" in body, "no ping to the silent peer"
    assert closed_at is not None, "dead peer not closed"
    assert 2.0 <= closed_at - t0 <= 8.0
    # The live client is still there after the dead one's timeout.
    alive.send({"type": "ping", "nonce": "ok"})
    assert alive.expect("pong")["nonce"] == "ok"
    v = chatd.http("GET", "/metrics").body.decode()
    assert "chat_ws_idle_closes_total 1" in v


def test_out_of_descriptors_refuses_cleanly(chatd_factory):
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    chatd = chatd_factory(preexec_fn=low_limit)
    tok = chatd.token("alice", "a")
    opened, failed = [], 0
    for i in range(70):
        try:
            opened.append(chatd.open_ws(tok, open_timeout=1.5))
        except Exception:
            failed += 1
            if failed >= 3:
                break
    assert len(opened) >= 20
    assert failed >= 1, "the limit was never reached"
    assert chatd.proc.poll() is None, "chatd died"
    for ws in opened:
        ws.close()
    # Room again: new connections and REST work.
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            c = Client(chatd.open_ws(tok, open_timeout=3))
            break
        except Exception:
            assert time.monotonic() < deadline, "no recovery"
            time.sleep(0.2)
    c.send({"type": "ping", "nonce": "back"})
    assert c.expect("pong")["nonce"] == "back"
    c.close()
    assert chatd.http("GET", "/healthz").status == 200
    assert chatd.stop() == 0


def run(args, cwd=None, timeout=30):
    return subprocess.run([CHATD] + args, capture_output=True, cwd=cwd,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_help_lists_every_flag():
    r = run(["--help"])
    assert r.returncode == 0
    out = r.stdout.decode()
    for flag in ("--listen", "--data-dir", "--machine-id", "--rate-per-minute",
                 "--resume-max-messages", "--resume-max-age-ms",
                 "--presence-idle-ms", "--presence-offline-ms",
                 "--max-body-bytes", "--push-log", "--static", "--user",
                 "--device", "--ttl", "--log-level", "--max-frame-bytes",
                 "--heartbeat-ms", "--config", "--sync",
                 "--edit-window-ms", "--bot-rate-per-minute",
                 "--new-direct-per-day", "--drain-spread-ms", "--bot",
                 "--shadow", "chatd ban", "chatd unban"):
        assert flag in out, flag
    assert run(["serve", "--help"]).returncode == 0
    assert run(["--version"]).stdout.startswith(b"chatd ")


@pytest.mark.parametrize("args", [
    ["--bogus"],
    ["serve", "--machine-id", "1024"],
    ["serve", "--machine-id", "-1"],
    ["serve", "--rate-per-minute", "abc"],
    ["serve", "--listen", "nope"],
    ["serve", "--listen", "127.0.0.1:70000"],
    ["serve", "--log-level", "loud"],
    ["serve", "--sync", "sometimes"],
    ["serve", "--data-dir"],
    ["serve", "stray"],
    ["frobnicate"],
    ["token", "--user", "u"],
    ["token", "--device", "d", "--user", "u", "--listen", "1.2.3.4:5"],
    ["token", "--device", "d", "--user", "u", "--bot=yes"],
    ["token", "--device", "d", "--user", "u", "--shadow"],
    ["ban", "--user", "u"],
    ["ban", "--shadow"],
    ["unban"],
    ["ban", "--user", "u", "--shadow", "--device", "d"],
    ["serve", "--bot"],
    ["serve", "--new-direct-per-day", "-1"],
    ["serve", "--drain-spread-ms", "3600001"],
])
def test_usage_errors_exit_2(args, tmp_path):
    r = run(args, cwd=tmp_path)
    assert r.returncode == 2, (args, r.stderr)
    assert b"chatd:" in r.stderr
    assert r.stdout == b""


def test_token_with_bad_ids_fails(tmp_path):
    r = run(["token", "--data-dir", str(tmp_path), "--user", "bad id",
             "--device", "d"])
    assert r.returncode == 2
    assert r.stdout == b""


def test_config_file_and_flag_precedence(chatd_factory, tmp_path):
    cfg = tmp_path / "chatd.conf"
    cfg.write_text("# limits for a test\n"
                   "rate-per-minute = 7\n"
                   "max-body-bytes=1234\n"
                   "\n"
                   "resume-max-age-ms = 60000\n")
    chatd = chatd_factory(["--config", str(cfg), "--rate-per-minute", "9"])
    lim = chatd.client("alice", "a").hello["limits"]
    assert lim["rate_per_minute"] == 9  # the command line wins
    assert lim["max_body_bytes"] == 1234
    assert lim["resume_max_age_ms"] == 60000
    bad = tmp_path / "bad.conf"
    bad.write_text("no-such-key = 1\n")
    r = run(["serve", "--config", str(bad), "--data-dir", str(tmp_path)])
    assert r.returncode == 2
    assert b"unknown key" in r.stderr


def test_flags_reach_the_hello(chatd_factory):
    chatd = chatd_factory(["--max-body-bytes", "1000",
                           "--max-frame-bytes", "50000",
                           "--rate-per-minute", "11",
                           "--resume-max-messages", "12",
                           "--resume-max-age-ms", "13000",
                           "--heartbeat-ms", "14000",
                           "--machine-id", "7",
                           "--presence-idle-ms", "60000",
                           "--presence-offline-ms", "1000",
                           "--sync", "normal",
                           "--log-level", "debug"])
    h = chatd.client("alice", "a").hello
    assert h["limits"] == {"max_body_bytes": 1000, "max_frame_bytes": 50000,
                           "rate_per_minute": 11, "resume_max_messages": 12,
                           "resume_max_age_ms": 13000}
    assert h["heartbeat_ms"] == 14000
    # Machine id 7 is in bits 12..21 of every message id.
    cid = conv_id(create_conversation(chatd, chatd.token("alice", "a"),
                                      ["bob"]))
    c = chatd.client("alice", "b")
    c.send({"type": "send", "client_msg_id": "m", "conversation_id": cid,
            "body": "x"})
    mid = int(c.expect("ack")["message_id"])
    assert (mid >> 12) & 1023 == 7


def test_port_in_use_fails_cleanly(chatd, chatd_factory, tmp_path):
    r = run(["serve", "--listen", "127.0.0.1:%d" % chatd.port, "--data-dir",
             str(tmp_path / "other")], timeout=30)
    assert r.returncode == 1
    assert b"listening on" not in r.stdout


def test_chatd_alone_uses_the_defaults(tmp_path):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 8080))
        except OSError:
            pytest.skip("port 8080 is taken on this machine")
    p = subprocess.Popen([CHATD], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        line = p.stdout.readline()
        assert line == b"listening on 127.0.0.1:8080\n"
        assert (tmp_path / "chatd-data" / "chat.db").exists()
        assert (tmp_path / "chatd-data" / "token.key").exists()
    finally:
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(timeout=TIMEOUT) == 0
        p.stdout.close()
        p.stderr.close()


def test_quiet_by_default(chatd):
    c = chatd.client("alice", "a")
    c.send({"type": "ping"})
    c.expect("pong")
    c.close()
    assert chatd.stop() == 0
    assert chatd.log_text() == ""

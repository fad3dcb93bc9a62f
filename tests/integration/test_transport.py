"""Issue 15 against the epoll transport, as an outsider attacks chatd: idle
and slow sockets must not lock anyone out, no request smuggling, bodies
bounded in memory, media served so it cannot run script, close codes that
arrive while the peer is still writing, JSON for every HTTP error; and
issue 14's idle memory per connection.

The libwebsockets adapter has these holes (its header pool, its framing),
so these tests run only when chatd serves with epoll (its default)."""
import collections
import json
import os
import resource
import selectors
import signal
import socket
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed

from conftest import (CHATD, TIMEOUT, TRANSPORT, Client, create_conversation,
                      conv_id, raw_http, upgrade_request)

pytestmark = pytest.mark.skipif(
    TRANSPORT == "lws", reason="the lws adapter keeps issue 15's holes")


def sanitized():
    """A chatd built with AddressSanitizer holds freed memory in quarantine
    and shadows every byte: its RSS says nothing about ours."""
    try:
        with open(CHATD, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


SANITIZED = sanitized()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def json_error(reply):
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    hdrs = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        hdrs[k.strip().lower()] = v.strip()
    assert hdrs[b"content-type"] == b"application/json", reply
    assert int(hdrs[b"content-length"]) == len(body), reply
    e = json.loads(body)["error"]
    assert isinstance(e["code"], str) and isinstance(e["message"], str)
    return status, e["code"], hdrs


# ---- 1. no lock-out by idle or slow sockets ----

class Attack:
    """Hold `silent` sockets from `src_silent` open sending nothing, and
    `slow` sockets from `src_slow` sending a request head one byte a
    second, reopening each as the server cuts it. One process, cheap per
    socket, so that the attack does not starve the machine's two cores of
    the time the server and the fresh clients need. Bounded: it runs for
    `seconds` and closes everything."""

    def __init__(self, port, src_silent, silent, src_slow, slow):
        self.port = port
        self.plan = [(src_silent, False)] * silent + [(src_slow, True)] * slow
        self.sel = selectors.DefaultSelector()
        self.drips = collections.deque()  # (due, socket), due ascending
        self.opened = self.cut = 0
        self.req = (b"GET /chat/v1/ws HTTP/1.1\r\nHost: x\r\n"
                    b"Connection: Upgrade\r\nUpgrade: websocket\r\n" * 50)

    def open_one(self, src, drip):
        s = socket.socket()
        s.setblocking(False)
        s.bind((src, 0))
        try:
            s.connect(("127.0.0.1", self.port))
        except BlockingIOError:
            pass
        st = {"src": src, "drip": drip, "sent": 0, "open": True}
        self.sel.register(s, selectors.EVENT_READ, st)
        if drip:
            self.drips.append((time.monotonic() + 1.0, s, st))
        self.opened += 1

    def run(self, seconds):
        for src, drip in self.plan:
            self.open_one(src, drip)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for key, _ in self.sel.select(timeout=0.05):
                s, st = key.fileobj, key.data
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(s)
                    s.close()
                    st["open"] = False
                    self.cut += 1
                    self.open_one(st["src"], st["drip"])
            now = time.monotonic()
            while self.drips and self.drips[0][0] <= now:
                _, s, st = self.drips.popleft()
                if not st["open"]:
                    continue
                if st["sent"] < len(self.req):
                    try:
                        s.send(self.req[st["sent"]:st["sent"] + 1])
                    except OSError:
                        pass
                    st["sent"] += 1
                self.drips.append((now + 1.0, s, st))
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def run_attack(port, seconds, q):
    """In its own process: the test's client must not share a GIL (or its
    wake-ups) with 4,000 sockets. Reports (opened, cut)."""
    raise_nofile(4400)
    a = Attack(port, "127.0.0.2", 2000, "127.0.0.3", 2000)
    a.run(seconds)
    q.put((a.opened, a.cut))


def test_fresh_clients_get_hello_while_sockets_are_held(chatd):
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=run_attack, args=(chatd.port, 10, q))
    tok = chatd.token("alice", "fresh").encode()
    times = []
    try:
        proc.start()
        # Let the attack settle, past the header timeout, so the server is
        # cutting and the attacker reopening.
        time.sleep(4.5)
        for i in range(20):
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", chatd.port),
                                          timeout=5) as s:
                s.sendall(upgrade_request(
                    extra=b"Authorization: Bearer " + tok + b"\r\n"))
                got = b""
                while b'"type":"hello"' not in got:
                    b = s.recv(65536)
                    assert b, "closed before hello: %r" % got
                    got += b
            times.append(time.monotonic() - t0)
            time.sleep(0.1)
        r = chatd.http("GET", "/healthz")
        assert r.status == 200
        m = chatd.http("GET", "/metrics").body.decode()
    finally:
        proc.join(60)
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(10)
    opened, cut = q.get(timeout=10)
    times.sort()
    print("hello times (s):", ["%.4f" % t for t in times], opened, cut)
    assert cut > 0, (opened, cut)
    # A fresh client gets its hello within 100 ms. Two of twenty may miss
    # it by a scheduling hiccup: the attack, chatd and this test share a
    # loaded two-core machine (chatd itself uses ~5% of a core here).
    assert times[-3] < 0.1, times
    assert times[-1] < 1.0, times
    shed = [l for l in m.splitlines()
            if l.startswith("chat_http_header_shed_total ")]
    assert shed and float(shed[0].split()[1]) > 0, shed


# ---- 2. request smuggling ----

def test_content_length_with_chunked_is_400_and_closed(chatd):
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    req = (b"POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
           b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" +
           b"%x\r\n" % len(smuggled) + smuggled + b"\r\n0\r\n\r\n")
    reply = raw_http(chatd.port, req, timeout=5)
    status, code, hdrs = json_error(reply)
    assert status == 400 and code == "bad_request"
    assert hdrs[b"connection"] == b"close"
    # One answer only: the smuggled request was never served.
    assert reply.count(b"HTTP/1.1 ") == 1, reply


def test_chunked_body_is_decoded_not_taken_for_a_request(chatd):
    tok = chatd.token("alice", "a").encode()
    body = json.dumps({"type": "direct", "members": ["bob"]}).encode()
    req = (b"POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\n"
           b"Authorization: Bearer " + tok + b"\r\n"
           b"Content-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" +
           b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
           b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    with socket.create_connection(("127.0.0.1", chatd.port), timeout=5) as s:
        s.sendall(req)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    answers = out.split(b"HTTP/1.1 ")[1:]
    assert len(answers) == 2, out
    assert answers[0].startswith(b"201 "), out
    assert b'"conversation_id"' in answers[0]
    assert answers[1].startswith(b"200 ") and answers[1].endswith(
        b'{"ok":true}'), out


def test_other_transfer_codings_are_501(chatd):
    reply = raw_http(chatd.port,
                     b"POST /api/v1/media HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: gzip, chunked\r\n\r\n", timeout=5)
    status, code, _ = json_error(reply)
    assert (status, code) == (501, "not_implemented")


# ---- 3. bodies bounded in memory ----

def test_stalled_uploads_are_refused_at_once_and_memory_stays_bounded(
        chatd):
    raise_nofile(1000)
    tok = chatd.token("mallory", "m").encode()
    base = rss_kb(chatd.proc.pid)
    socks, refused = [], 0
    head = (b"POST /api/v1/media HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + tok + b"\r\n"
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Length: 10000000\r\n\r\n")
    for i in range(150):
        s = socket.create_connection(("127.0.0.1", chatd.port), timeout=5)
        s.sendall(head + os.urandom(65536))  # a start, then a stall
        socks.append(s)
    t0 = time.monotonic()
    for s in socks:
        s.settimeout(max(0.05, 3 - (time.monotonic() - t0)))
        try:
            b = s.recv(4096)
        except socket.timeout:
            continue
        if b.startswith(b"HTTP/1.1 429 ") or b.startswith(b"HTTP/1.1 503 "):
            refused += 1
    grown = rss_kb(chatd.proc.pid) - base
    print("150 stalled uploads: %d refused at once, chatd grew %d KiB"
          % (refused, grown))
    for s in socks:
        s.close()
    # A user may hold three media in flight (3 x 11 MiB); the rest are
    # answered before their bodies are read.
    assert refused >= 140, refused
    if not SANITIZED:
        assert grown < 100 * 1024, "chatd grew by %d KiB" % grown


def test_never_read_downloads_are_bounded(chatd):
    raise_nofile(1000)
    tok = chatd.token("alice", "a")
    blob = os.urandom(10 * 1000 * 1000)
    r = chatd.http("POST", "/api/v1/media", tok, blob,
                   content_type="application/octet-stream")
    assert r.status == 201, r.body
    mid = r.json()["media_id"]
    base = rss_kb(chatd.proc.pid)
    req = ("GET /api/v1/media/%s HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\n\r\n" % (mid, tok)).encode()
    socks = []
    for i in range(40):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        s.connect(("127.0.0.1", chatd.port))
        s.sendall(req)
        socks.append(s)
    time.sleep(1.5)
    grown = rss_kb(chatd.proc.pid) - base
    statuses = []
    for s in socks:
        b = s.recv(64)
        statuses.append(int(b.split(b" ")[1]))
        s.close()
    print("40 never-read downloads: %d answered 200, chatd grew %d KiB"
          % (statuses.count(200), grown))
    assert statuses.count(200) <= 4, statuses
    assert set(statuses) <= {200, 429}, statuses
    if not SANITIZED:
        assert grown < 120 * 1024, "chatd grew by %d KiB" % grown


# ---- 4. media that cannot run script ----

def test_media_is_served_safely(chatd):
    tok = chatd.token("alice", "a")
    r = chatd.http("POST", "/api/v1/media", tok,
                   b"<script>alert(document.cookie)</script>",
                   content_type="text/html")
    assert r.status == 201
    g = chatd.http("GET", "/api/v1/media/" + r.json()["media_id"], tok)
    assert g.status == 200
    assert g.headers["Content-Disposition"] == "attachment"
    assert g.headers["X-Content-Type-Options"] == "nosniff"
    csp = g.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp
    r = chatd.http("POST", "/api/v1/media", tok, b"\x89PNG\r\n\x1a\n",
                   content_type="image/png")
    g = chatd.http("GET", "/api/v1/media/" + r.json()["media_id"], tok)
    assert g.headers["Content-Type"] == "image/png"
    assert g.headers["Content-Disposition"] == "inline"


# ---- 5. close codes that arrive ----

def keep_writing(ws, frame, stop):
    """Send until the connection refuses, like a busy client. frame None:
    unsolicited pongs, which the server answers with nothing (a client
    that sends requests but does not read the answers would become a slow
    reader and be closed with 1013 instead)."""
    try:
        while not stop.is_set():
            if frame is None:
                ws.pong(b"busy")
            else:
                ws.send(frame)
    except Exception:
        pass


def close_code_while_writing(c, offence, filler="x", binary=False):
    """Send the offence, keep writing filler from another thread, and
    return the close code the client received (None: it got none)."""
    stop = threading.Event()
    try:
        c.ws.send(offence, text=not binary)
    except ConnectionClosed:
        pass
    th = threading.Thread(target=keep_writing, args=(c.ws, filler, stop),
                          daemon=True)
    th.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                c.ws.recv(timeout=1)
            except TimeoutError:
                continue
            except ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else None
        raise AssertionError("no close within %ss" % TIMEOUT)
    finally:
        stop.set()
        th.join(10)


def ws_frame(opcode, payload, mask=True, fin=True):
    """A client frame (masked unless told otherwise)."""
    n = len(payload)
    out = bytes([(0x80 if fin else 0) | opcode])
    m = 0x80 if mask else 0
    if n < 126:
        out += bytes([m | n])
    elif n < 65536:
        out += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        out += bytes([m | 127]) + n.to_bytes(8, "big")
    if not mask:
        return out + payload
    key = os.urandom(4)
    return out + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawWs:
    """A WebSocket client on a plain socket: it writes and reads frames
    exactly when told, so a test controls the order of events."""

    def __init__(self, chatd, user, device, rcvbuf=None, ttl=3600):
        tok = chatd.token(user, device, ttl=ttl).encode()
        self.s = socket.socket()
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(TIMEOUT)
        self.s.connect(("127.0.0.1", chatd.port))
        self.s.sendall(upgrade_request(extra=b"Authorization: Bearer " +
                                       tok + b"\r\n"))
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(65536)
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.s.setblocking(False)

    def frames(self):
        """Whole frames received so far: (opcode, payload)."""
        try:
            while True:
                b = self.s.recv(1 << 20)
                if not b:
                    break
                self.buf += b
        except BlockingIOError:
            pass
        out = []
        while len(self.buf) >= 2:
            op, n, j = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
            if n == 126:
                n, j = int.from_bytes(self.buf[2:4], "big"), 4
            elif n == 127:
                n, j = int.from_bytes(self.buf[2:10], "big"), 10
            if len(self.buf) < j + n:
                break
            out.append((op, self.buf[j:j + n]))
            self.buf = self.buf[j + n:]
        return out

    def close_while_writing(self, offence, seconds=TIMEOUT, filler=None,
                            then=None):
        """Send the offence, then keep writing (pings, or filler) until a
        close frame is read; its code, or None when a write failed first
        (the server's kernel reset the connection: a real client reports
        1006 then, without reading the close frame). then() runs once
        after the first writes."""
        self.s.setblocking(True)
        self.s.sendall(offence)
        self.s.setblocking(False)
        ping = filler or ws_frame(0x1, json.dumps(
            {"type": "ping", "nonce": "w" * 4000}).encode())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if then:
                then()
                then = None
            for _ in range(3):
                try:
                    self.s.send(ping)
                except BlockingIOError:
                    pass
                except OSError:
                    return None
                time.sleep(0.002)
            for op, pl in self.frames():
                if op == 8:
                    return int.from_bytes(pl[:2], "big")
        raise AssertionError("no close within %ss" % seconds)

    def close(self):
        self.s.close()


@pytest.mark.parametrize("offence,code", [
    (ws_frame(0x1, b'{"type":"ping","nonce":"' + b"x" * 140000 + b'"}'),
     1009),
    (ws_frame(0x1, b'{"type":"ping","nonce":"\xff\xfe"}'), 1007),
    (ws_frame(0x2, b"\x00\x01"), 1003),
    (ws_frame(0x1, b'{"type":"ping"}', mask=False), 1002),
    (ws_frame(0x1, b"a" * 100, fin=False) + ws_frame(0x1, b"b"), 1002),
], ids=["1009-oversize", "1007-utf8", "1003-binary", "1002-unmasked",
        "1002-interleaved"])
def test_close_code_arrives_while_client_writes(chatd, offence, code):
    c = RawWs(chatd, "alice", "a")
    assert c.close_while_writing(offence) == code
    c.close()


def test_close_code_arrives_to_a_websockets_client(chatd):
    """The same with the websockets library, writing from a thread."""
    c = chatd.client("alice", "a")
    assert close_code_while_writing(
        c, '{"type":"ping","nonce":"' + "x" * 140000 + '"}') == 1009


def test_garbage_flood_1008_arrives(chatd_factory):
    chatd = chatd_factory(["--garbage-per-minute", "3"])
    c = chatd.client("alice", "a")
    assert close_code_while_writing(c, "garbage", filler="more garbage") \
        == 1008
    r = RawWs(chatd, "bob", "b")
    assert r.close_while_writing(b"".join(
        ws_frame(0x1, b"garbage") for _ in range(4))) == 1008
    r.close()


def test_drain_1012_arrives_while_client_writes(chatd):
    c = chatd.client("alice", "a")
    stop = threading.Event()
    th = threading.Thread(target=keep_writing, args=(c.ws, None, stop),
                          daemon=True)
    th.start()
    time.sleep(0.3)
    os.kill(chatd.proc.pid, signal.SIGTERM)
    try:
        got = None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                c.ws.recv(timeout=1)
            except TimeoutError:
                continue
            except ConnectionClosed as e:
                got = e.rcvd.code if e.rcvd else None
                break
    finally:
        stop.set()
        th.join(10)
    assert got == 1012  # after goaway (PROTOCOL.md section 8)
    assert chatd.proc.wait(timeout=TIMEOUT) == 0


def test_token_expiry_4001_arrives_while_client_writes(chatd):
    c = RawWs(chatd, "alice", "a", ttl=2)
    # Unsolicited pongs until the token runs out, a second or two on.
    code = c.close_while_writing(b"", filler=ws_frame(0xA, b"p" * 125) * 30)
    c.close()
    assert code == 4001


def test_drain_1012_arrives_to_a_raw_client_writing(chatd):
    c = RawWs(chatd, "alice", "a")
    pid = chatd.proc.pid
    # Unsolicited pongs: nothing comes back for them.
    code = c.close_while_writing(b"", filler=ws_frame(0xA, b"p" * 125) * 30,
                                 then=lambda: os.kill(pid, signal.SIGTERM))
    c.close()
    assert code == 1012
    assert chatd.proc.wait(timeout=TIMEOUT) == 0


def test_slow_reader_1013_arrives(chatd_factory):
    chatd = chatd_factory(["--max-queued-frames", "16",
                           "--max-queued-bytes", "65536",
                           "--rate-per-minute", "1000000",
                           "--max-body-bytes", "60000"])
    ta = chatd.token("alice", "a")
    cid = conv_id(create_conversation(chatd, ta, ["bob"]))
    a = chatd.client("alice", "a")
    # Bob's device keeps writing and reads nothing while its queue
    # overflows; every write must go through, then he reads the close.
    bob = RawWs(chatd, "bob", "b", rcvbuf=4096)
    ping = ws_frame(0x1, b'{"type":"ping","nonce":"b"}')
    body = "y" * 50000
    for i in range(200):
        a.send({"type": "send", "client_msg_id": "s%d" % i,
                "conversation_id": cid, "body": body})
        try:
            bob.s.send(ping)
        except BlockingIOError:
            pass
    for i in range(200):
        a.expect("ack", timeout=TIMEOUT)
        try:
            bob.s.send(ping)
        except BlockingIOError:
            pass
    code = bob.close_while_writing(b"")
    bob.close()
    assert code == 1013
    m = chatd.http("GET", "/metrics").body.decode()
    assert "chat_slow_reader_closes_total 1" in m


# ---- 6. every HTTP error in the contract's shape ----

@pytest.mark.parametrize("req,status,code", [
    (b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, "method_not_allowed"),
    (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 501, "not_implemented"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431,
     "headers_too_large"),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
     "uri_too_long"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: y\r\n\r\n", 400,
     "bad_request"),
])
def test_http_errors_are_json(chatd, req, status, code):
    reply = raw_http(chatd.port, req, timeout=5)
    got = json_error(reply)
    assert got[:2] == (status, code), reply[:300]


def test_subprotocol_list_picks_chat_v1(chatd):
    ws = chatd.open_ws(chatd.token("alice", "a"),
                       subprotocols=("chat-http", "chat.v1"))
    c = Client(ws)
    assert ws.subprotocol == "chat.v1"
    c.close()


def test_transport_flag_is_checked(tmp_path):
    import subprocess
    r = subprocess.run([CHATD, "serve", "--transport", "carrier-pigeon",
                        "--data-dir", str(tmp_path)],
                       capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert b"--transport" in r.stderr


# ---- issue 14: idle memory per connection ----

@pytest.mark.skipif(SANITIZED, reason="RSS of a sanitizer build")
def test_idle_connection_memory(chatd):
    """2,000 idle authenticated sessions cost chatd under 1,800 bytes each
    (the core's session included; lws needed ~4,400)."""
    n = 2000
    raise_nofile(n + 500)
    tok = chatd.token("alice", "warm").encode()
    warm = socket.create_connection(("127.0.0.1", chatd.port), timeout=10)
    warm.sendall(upgrade_request(extra=b"Authorization: Bearer " + tok +
                                 b"\r\n"))
    warm.recv(4096)
    time.sleep(0.3)
    base = rss_kb(chatd.proc.pid)
    socks = []
    # 100 users; each token (one device) opens 20 sessions, as a device
    # that reconnects may (minting 2,000 tokens would take longer than the
    # test).
    toks = [chatd.token("u%d" % i, "d%d" % i).encode() for i in range(100)]
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", chatd.port), timeout=10)
        s.sendall(upgrade_request(extra=b"Authorization: Bearer " +
                                  toks[i % 100] + b"\r\n"))
        socks.append(s)
    for s in socks:
        got = b""
        while b'"type":"hello"' not in got:
            b = s.recv(65536)
            assert b
            got += b
    time.sleep(0.5)
    per = (rss_kb(chatd.proc.pid) - base) * 1024 / n
    for s in socks:
        s.close()
    warm.close()
    assert per < 1800, "%.0f bytes per idle connection" % per

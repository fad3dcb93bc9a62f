"""Integration harness: a real chatd on 127.0.0.1 (port 0, a temporary data
directory) driven by the `websockets` library, an independent client.

CHATD names the chatd binary (meson sets it). Every process started here is
stopped by PID; every wait is bounded. Deadlines are generous: the suite
must pass on a loaded two-core machine.
"""
import json
import os
import re
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

try:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect
except ImportError as e:  # pragma: no cover
    raise ImportError("the integration suite needs websockets >= 13 "
                      "(scripts/setup.sh installs it: pip install "
                      "'websockets>=13')") from e

TIMEOUT = 15.0  # seconds for anything that should take milliseconds

CHATD = os.environ.get("CHATD", "")
# The server transport to run (chatd serve --transport): "epoll" or "lws";
# empty for chatd's default. meson runs the suite once per transport.
TRANSPORT = os.environ.get("CHATD_TRANSPORT", "")
TRANSPORT_ARGS = ["--transport", TRANSPORT] if TRANSPORT else []


def _opener():
    # No proxies: everything here is loopback.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


_OPENER = _opener()


class Http:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


class Client:
    """One device session. Frames not asked for are kept, in order."""

    def __init__(self, ws):
        self.ws = ws
        self.backlog = []
        self.hello = self.expect("hello")

    def send(self, obj):
        self.ws.send(json.dumps(obj))

    def send_raw(self, text):
        self.ws.send(text)

    def expect(self, type_, pred=None, timeout=TIMEOUT):
        """The first frame of this type (matching pred); others are kept."""
        deadline = time.monotonic() + timeout
        kept = []
        try:
            for i, f in enumerate(list(self.backlog)):
                if f.get("type") == type_ and (pred is None or pred(f)):
                    del self.backlog[i]
                    return f
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "no %s frame within %.0fs; got %r"
                        % (type_, timeout, kept + self.backlog))
                try:
                    f = json.loads(self.ws.recv(timeout=left))
                except TimeoutError:
                    continue
                if f.get("type") == type_ and (pred is None or pred(f)):
                    return f
                kept.append(f)
        finally:
            self.backlog.extend(kept)

    def quiet(self, type_, wait=0.6, pred=None):
        """Assert that no such frame arrives within `wait` seconds."""
        def match(f):
            return f.get("type") == type_ and (pred is None or pred(f))
        for f in self.backlog:
            assert not match(f), f
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                f = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                return
            assert not match(f), f
            self.backlog.append(f)

    def closed_code(self, timeout=TIMEOUT):
        """Read until the server closes; its close code."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.ws.recv(timeout=max(0.05, deadline - time.monotonic()))
            except TimeoutError:
                continue
            except ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else None
        raise AssertionError("the server did not close within %.0fs" % timeout)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


class Chatd:
    """A chatd process on 127.0.0.1 with its own data directory."""

    def __init__(self, data_dir, args=(), tmp=None):
        self.data_dir = str(data_dir)
        self.args = list(args)
        self.proc = None
        self.port = None
        self.log_path = os.path.join(str(tmp or data_dir), "chatd-%d.log"
                                     % time.monotonic_ns())
        self.clients = []

    # -- process --

    def command(self):
        return [CHATD, "serve", "--listen", "127.0.0.1:0",
                "--data-dir", self.data_dir] + TRANSPORT_ARGS + self.args

    def start(self, preexec_fn=None):
        if not CHATD or not os.access(CHATD, os.X_OK):
            pytest.fail("set CHATD to the chatd binary (meson test does)")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL,
            preexec_fn=preexec_fn)
        line = b""
        deadline = time.monotonic() + 30
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise AssertionError("chatd did not start: %r\n%s"
                                     % (line, self.log_text()))
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                b = os.read(self.proc.stdout.fileno(), 1)
                if not b:
                    continue
                line += b
        m = re.fullmatch(rb"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert m, line
        self.port = int(m.group(1))
        assert self.port > 0
        return self

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signal the process (by PID) and wait; its exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
            raise AssertionError("chatd did not exit within %ss after %s"
                                 % (timeout, sig))
        self.proc.stdout.close()
        self.log.close()
        self.proc = None
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        if self.proc is not None:
            self.proc.stdout.close()
            self.log.close()
        self.proc = None

    # -- tokens --

    def token(self, user, device, ttl=3600):
        out = subprocess.run(
            [CHATD, "token", "--data-dir", self.data_dir, "--user", user,
             "--device", device, "--ttl", str(ttl)],
            capture_output=True, timeout=30, check=True)
        tok = out.stdout.decode().strip()
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", tok), tok
        return tok

    # -- WebSocket --

    def ws_url(self, query=""):
        return "ws://127.0.0.1:%d/chat/v1/ws%s" % (self.port, query)

    def open_ws(self, token=None, style="header", subprotocols=("chat.v1",),
                **kw):
        headers = {}
        query = ""
        if token is not None and style == "header":
            headers["Authorization"] = "Bearer " + token
        elif token is not None:
            query = "?access_token=" + token
        opts = dict(open_timeout=TIMEOUT, close_timeout=5, ping_interval=None,
                    proxy=None, compression=None, max_size=1 << 24)
        opts.update(kw)
        ws = connect(self.ws_url(query),
                     subprotocols=list(subprotocols) if subprotocols else None,
                     additional_headers=headers, **opts)
        # Entering marks the connection as managed (websockets >= 17.1
        # warns otherwise); Client.close() ends it.
        ws.__enter__()
        return ws

    def client(self, user, device, style="header"):
        c = Client(self.open_ws(self.token(user, device), style))
        self.clients.append(c)
        return c

    # -- HTTP --

    def http(self, method, path, token=None, body=None, headers=None,
             content_type=None):
        data = None
        hdrs = dict(headers or {})
        if body is not None:
            if isinstance(body, (bytes, bytearray)):
                data = bytes(body)
            else:
                data = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
        if content_type:
            hdrs["Content-Type"] = content_type
        if token:
            hdrs["Authorization"] = "Bearer " + token
        req = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.port, path), data=data,
            headers=hdrs, method=method)
        try:
            with _OPENER.open(req, timeout=TIMEOUT) as r:
                return Http(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Http(e.code, e.headers, e.read())


class LwsHost(Chatd):
    """tests/integration/lws_host.c: a host with its own lws_context. Its
    tokens come from `chatd token` on the same data directory."""

    def command(self):
        host = os.environ.get("LWS_HOST", "")
        if not host or not os.access(host, os.X_OK):
            pytest.fail("set LWS_HOST to the lws_host binary (meson does)")
        return [host, "--data-dir", self.data_dir] + self.args


@pytest.fixture
def chatd_factory(tmp_path):
    started = []

    def make(args=(), data_dir=None, start=True, preexec_fn=None,
             kind=Chatd):
        d = data_dir or tmp_path / ("data%d" % len(started))
        if kind is not Chatd and not os.path.isdir(str(d)):
            os.makedirs(str(d), mode=0o700)  # chatd makes its own
        s = kind(d, args, tmp=tmp_path)
        started.append(s)
        if start:
            s.start(preexec_fn=preexec_fn)
        return s

    yield make
    reports = []
    for s in started:
        for c in s.clients:
            c.close()
        s.kill()
        log = s.log_text()
        # A sanitizer build of chatd reports to its log; a report fails the
        # test even when chatd kept answering.
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:"):
            if marker in log:
                at = max(0, log.index(marker) - 200)
                reports.append(log[at:at + 4000])
                break
    if reports:
        pytest.fail("sanitizer report in chatd's log:\n" + "\n".join(reports))


@pytest.fixture
def chatd(chatd_factory):
    return chatd_factory()


def raw_http(port, request, timeout=TIMEOUT):
    """Send raw bytes, read until the server closes or timeout; the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            out += b
            if b"\r\n\r\n" in out:
                head, _, rest = out.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m and len(rest) >= int(m.group(1)):
                    break
        return out


def upgrade_request(path="/chat/v1/ws", extra=b"", protocol=b"chat.v1"):
    req = (b"GET " + path.encode() + b" HTTP/1.1\r\n"
           b"Host: 127.0.0.1\r\n"
           b"Connection: Upgrade\r\n"
           b"Upgrade: websocket\r\n"
           b"Sec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    if protocol:
        req += b"Sec-WebSocket-Protocol: " + protocol + b"\r\n"
    return req + extra + b"\r\n"


def create_conversation(server, token, members, type_="direct", name=None):
    body = {"type": type_, "members": members}
    if name:
        body["name"] = name
    r = server.http("POST", "/api/v1/conversations", token, body)
    assert r.status in (200, 201), (r.status, r.body)
    return r.json()


def conv_id(conv):
    c = conv.get("conversation", conv)
    return c["conversation_id"]

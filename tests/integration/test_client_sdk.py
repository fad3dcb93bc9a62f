"""The C client SDK end to end: two examples/chat-cli processes (the
chat_client core on its SQLite store, driven by the libwebsockets runner)
against a real chatd on 127.0.0.1. Covers create over REST, send and ack,
delivery, the delivered and read receipts (✓ sent, ✓✓ delivered, ✓✓ read),
typing, and catching up after being offline (resume from the local store).

CHAT_CLI names the binary (meson sets it when the example is built).
Every process is stopped by PID; every wait is bounded.
"""
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import TIMEOUT

CHAT_CLI = os.environ.get("CHAT_CLI", "")

pytestmark = pytest.mark.skipif(
    not CHAT_CLI or not os.access(CHAT_CLI, os.X_OK),
    reason="examples/chat-cli not built (needs lws, sqlite and sodium)")


class Cli:
    """One chat-cli process; its output lines, read with deadlines."""

    def __init__(self, port, token, db, url=None, extra=()):
        self.proc = subprocess.Popen(
            [CHAT_CLI, "--url", url or "ws://127.0.0.1:%d" % port,
             "--token", token, "--db", str(db)] + list(extra),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        self.buf = b""
        self.lines = []   # every line so far
        self.seen = 0     # lines already consumed by expect()

    def say(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def _read(self, left):
        r, _, _ = select.select([self.proc.stdout], [], [], max(0.0, left))
        if not r:
            return False
        b = os.read(self.proc.stdout.fileno(), 65536)
        if not b:
            return False
        self.buf += b
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            self.lines.append(line.decode("utf-8", "replace"))
        return True

    def expect(self, pattern, timeout=TIMEOUT):
        """The first not yet consumed line matching the regex."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self.seen, len(self.lines)):
                m = rx.search(self.lines[i])
                if m:
                    self.seen = i + 1
                    return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no line matching %r within %.0fs:\n%s"
                                     % (pattern, timeout,
                                        "\n".join(self.lines)))
            if not self._read(left) and self.proc.poll() is not None:
                raise AssertionError("chat-cli exited (%s) waiting for %r:\n%s"
                                     % (self.proc.returncode, pattern,
                                        "\n".join(self.lines)))

    def quit(self, timeout=20):
        try:
            self.say("quit")
        except (BrokenPipeError, ValueError):
            pass
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)
            raise AssertionError("chat-cli did not quit")
        while self._read(0):
            pass
        return rc

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)


@pytest.fixture
def clis():
    started = []
    yield started
    for c in started:
        c.kill()


def test_two_clients_chat_with_receipts_and_resume(chatd, clis, tmp_path):
    ta = chatd.token("alice", "phone")
    tb = chatd.token("bob", "laptop")
    alice = Cli(chatd.port, ta, tmp_path / "alice.db")
    clis.append(alice)
    bob = Cli(chatd.port, tb, tmp_path / "bob.db")
    clis.append(bob)
    alice.expect(r"^state ready$")
    bob.expect(r"^state ready$")

    alice.say("create bob")
    conv = alice.expect(r"^conversation (\S+) direct ").group(1)

    alice.say("open " + conv)
    alice.expect(r"^opened ")
    alice.say("say hello bob")
    cmid = alice.expect(r"^sent (\S+)$").group(1)
    mid = alice.expect(r"^ack %s (\d+)$" % re.escape(cmid)).group(1)
    alice.expect(r"^✓ sent$")

    bob.expect(r"^message %s %s alice live hello bob$" % (conv, mid))
    # bob's client claims delivery on its own; alice sees ✓✓ delivered.
    alice.expect(r"^receipt %s \d+ bob delivered$" % conv)
    alice.expect(r"^✓✓ delivered$")

    bob.say("open " + conv)
    bob.expect(r"^  %s alice: hello bob$" % mid)
    bob.say("read")
    alice.expect(r"^receipt %s %s bob read$" % (conv, mid))
    alice.expect(r"^✓✓ read$")

    bob.say("type")
    alice.expect(r"^typing %s bob on$" % conv)
    # Five quiet seconds: bob's client sends is_typing:false (and alice's
    # would expire it anyway): both run on the runner's timer.
    alice.expect(r"^typing %s bob off$" % conv)

    # bob goes away; alice writes; bob comes back on the same store and
    # catches up through resume (his last_seen is in his database).
    assert bob.quit() == 0
    alice.say("say while you were away")
    cmid2 = alice.expect(r"^sent (\S+)$").group(1)
    mid2 = alice.expect(r"^ack %s (\d+)$" % re.escape(cmid2)).group(1)
    assert int(mid2) > int(mid)
    bob2 = Cli(chatd.port, tb, tmp_path / "bob.db")
    clis.append(bob2)
    bob2.expect(r"^message %s %s alice resume while you were away$"
                % (conv, mid2))
    bob2.expect(r"^caught-up ")
    # The first message is not delivered again.
    assert not any(re.search(r"^message .* hello bob$", l)
                   for l in bob2.lines)

    assert alice.quit() == 0
    assert bob2.quit() == 0
    assert "outbox 0" in alice.lines


def test_resume_gap_over_cap_is_paged_over_rest(chatd_factory, clis,
                                                tmp_path):
    chatd = chatd_factory(args=["--resume-max-messages", "2"])
    ta = chatd.token("alice", "phone")
    tb = chatd.token("bob", "laptop")
    alice = Cli(chatd.port, ta, tmp_path / "alice.db")
    clis.append(alice)
    bob = Cli(chatd.port, tb, tmp_path / "bob.db")
    clis.append(bob)
    alice.expect(r"^state ready$")
    bob.expect(r"^state ready$")
    alice.say("create bob")
    conv = alice.expect(r"^conversation (\S+) direct ").group(1)
    alice.say("open " + conv)
    alice.say("say first")
    alice.expect(r"^ack ")
    bob.expect(r"^message %s \d+ alice live first$" % conv)
    assert bob.quit() == 0

    # Five messages while bob is away: over the resume cap of 2, so the
    # server answers resume_failed and bob's client pages REST history.
    for i in range(5):
        alice.say("say gap %d" % i)
        alice.expect(r"^ack ")
    bob = Cli(chatd.port, tb, tmp_path / "bob.db")
    clis.append(bob)
    for i in range(5):
        bob.expect(r"^message %s \d+ alice rest gap %d$" % (conv, i))
    bob.expect(r"^caught-up 5$")
    assert alice.quit() == 0
    assert bob.quit() == 0


def test_outbox_survives_server_restart(chatd, clis, tmp_path):
    ta = chatd.token("alice", "phone")
    tb = chatd.token("bob", "laptop")
    alice = Cli(chatd.port, ta, tmp_path / "alice.db")
    clis.append(alice)
    alice.expect(r"^state ready$")
    alice.say("create bob")
    conv = alice.expect(r"^conversation (\S+) direct ").group(1)
    alice.say("open " + conv)
    alice.expect(r"^opened ")

    # chatd goes away; alice writes while it is down (the send waits in
    # her outbox); chatd comes back on the same port and her client
    # reconnects with backoff and flushes the outbox.
    port = chatd.port
    assert chatd.stop() == 0
    alice.expect(r"^state backoff$")
    alice.say("say queued while down")
    cmid = alice.expect(r"^sent (\S+)$").group(1)
    chatd.args = ["--listen", "127.0.0.1:%d" % port]
    chatd.start()
    assert chatd.port == port
    alice.expect(r"^ack %s \d+$" % re.escape(cmid), timeout=90)

    bob = Cli(chatd.port, tb, tmp_path / "bob.db")
    clis.append(bob)
    bob.expect(r"^state ready$")
    bob.say("open " + conv)
    bob.say("older")
    bob.expect(r"^message %s \d+ alice older queued while down$" % conv)
    assert alice.quit() == 0
    assert bob.quit() == 0
    assert "outbox 0" in alice.lines


class TlsProxy:
    """TLS on 127.0.0.1:<port> in front of chatd's plain port, one pair of
    pump threads per connection; stopped by closing its sockets."""

    def __init__(self, backend_port, cert, key):
        self.backend = backend_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.socks = []
        self.closed = False
        self.handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            try:
                c.settimeout(TIMEOUT)
                t = self.ctx.wrap_socket(c, server_side=True)
                t.settimeout(None)
                self.handshakes += 1
            except (OSError, ssl.SSLError):
                c.close()
                continue
            b = socket.create_connection(("127.0.0.1", self.backend))
            self.socks += [t, b]
            threading.Thread(target=self._pump, args=(t, b),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(b, t),
                             daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                dst.sendall(d)
        except (OSError, ssl.SSLError):
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.ls.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def test_wss_and_https_through_tls(chatd, clis, tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj",
         "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60)
    proxy = TlsProxy(chatd.port, cert, key)
    try:
        ta = chatd.token("alice", "phone")
        url = "wss://127.0.0.1:%d" % proxy.port
        alice = Cli(None, ta, tmp_path / "alice.db", url=url,
                    extra=["--insecure"])
        clis.append(alice)
        alice.expect(r"^state ready$")
        # REST over https (the runner's HTTP client), same proxy.
        alice.say("create bob")
        conv = alice.expect(r"^conversation (\S+) direct ").group(1)
        alice.say("open " + conv)
        alice.say("say over tls")
        alice.expect(r"^ack ")
        assert proxy.handshakes >= 2
        assert alice.quit() == 0
        # Without --insecure the self-signed certificate is refused.
        alice = Cli(None, ta, tmp_path / "alice2.db", url=url)
        clis.append(alice)
        alice.expect(r"^state backoff$")
        assert not any(l == "state ready" for l in alice.lines)
        alice.kill()
    finally:
        proxy.close()

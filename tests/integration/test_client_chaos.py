"""The C client SDK under hostile conditions, end to end: examples/chat-cli
(the chat_client core on its SQLite store, driven by the libwebsockets
runner) against a real chatd on 127.0.0.1.

- 1,000 sends through a proxy that cuts every connection ~100 ms into it
  arrive once each, in send order (outbox retries keep their
  client_msg_ids; the server answers repeats with duplicate acks).
- Two devices of one user converge on the same messages and read mark.
- A refused token is reported (CHAT_ERR_AUTH, state unauthorized) and not
  retried on the backoff schedule; a new token brings the client back.

Every process and socket is ours and stopped by PID or closed; every wait
is bounded.
"""
import random
import re
import socket
import sqlite3
import threading
import time

import pytest

from conftest import TIMEOUT, conv_id, create_conversation
from test_client_sdk import CHAT_CLI, Cli, clis  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    not CHAT_CLI, reason="examples/chat-cli not built (needs lws, sqlite "
    "and sodium)")


class CuttingProxy:
    """TCP on 127.0.0.1:<port> in front of chatd. Each connection is cut
    (both sides shut down and closed) `lifetime` seconds, jittered by
    +-40 %, after the server's first bytes on it, or as soon as the client
    has sent `budget` bytes (jittered the same way; the cut may fall in
    the middle of a frame), whichever comes first. Counting time from the
    first answer rather than from accept() keeps every connection carrying
    some traffic even when a loaded machine (or a sanitizer build) is slow
    to answer the upgrade; the byte budget keeps a fast machine from
    sending everything within one lifetime."""

    def __init__(self, backend_port, lifetime=0.1, budget=8192, seed=1):
        self.backend = backend_port
        self.lifetime = lifetime
        self.budget = budget
        self.rng = random.Random(seed)
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.port = self.ls.getsockname()[1]
        self.lock = threading.Lock()
        self.socks = []
        self.accepted = 0
        self.cuts = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.backend),
                                             timeout=TIMEOUT)
                b.settimeout(None)
            except OSError:
                c.close()
                continue
            first = threading.Event()
            with self.lock:
                self.accepted += 1
                self.socks += [c, b]
                life = self.lifetime * self.rng.uniform(0.6, 1.4)
                budget = int(self.budget * self.rng.uniform(0.6, 1.4))
            done = threading.Event()
            threading.Thread(target=self._pump,
                             args=(c, b, None, budget, done),
                             daemon=True).start()
            threading.Thread(target=self._pump,
                             args=(b, c, first, None, done),
                             daemon=True).start()
            threading.Thread(target=self._cut,
                             args=(c, b, first, done, life),
                             daemon=True).start()

    @staticmethod
    def _shut(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _pump(self, src, dst, first, budget, done):
        try:
            while True:
                d = src.recv(65536)
                if not d:
                    break
                if first is not None:
                    first.set()
                if budget is not None:
                    d = d[:budget]
                    budget -= len(d)
                dst.sendall(d)
                if budget == 0:
                    done.set()
                    return
        except OSError:
            pass
        self._shut(src, dst)
        done.set()

    def _cut(self, c, b, first, done, life):
        first.wait(TIMEOUT)
        done.wait(life)
        with self.lock:
            self.cuts += 1
        self._shut(c, b)
        for s in (c, b):
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.ls.close()
        with self.lock:
            socks = list(self.socks)
        self._shut(*socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


def all_messages(chatd, token, conv):
    """Every message of the conversation over REST, oldest first."""
    out = []
    after = "1"  # below every real message id
    for _ in range(1000):
        r = chatd.http("GET", "/api/v1/conversations/%s/messages?after=%s"
                       "&limit=200" % (conv, after), token)
        assert r.status == 200, (r.status, r.body)
        page = r.json()
        out += page["messages"]
        if not page["has_more"] or not page["messages"]:
            return out
        after = page["messages"][-1]["message_id"]
    raise AssertionError("REST paging did not end")


def drain(cli):
    while cli._read(0):
        pass


def test_thousand_sends_through_connections_cut_every_100ms(
        chatd_factory, clis, tmp_path):
    n = 1000
    chatd = chatd_factory(args=["--rate-per-minute", "1000000"])
    ta = chatd.token("alice", "phone")
    tb = chatd.token("bob", "laptop")
    conv = conv_id(create_conversation(chatd, ta, ["bob"]))
    proxy = CuttingProxy(chatd.port, lifetime=0.1)
    try:
        alice = Cli(None, ta, tmp_path / "alice.db",
                    url="ws://127.0.0.1:%d" % proxy.port,
                    extra=["--backoff-base-ms", "50",
                           "--backoff-cap-ms", "200"])
        clis.append(alice)
        alice.say("open " + conv)
        alice.expect(r"^opened ")
        t0 = time.monotonic()
        alice.say("burst %d m" % n)
        alice.expect(r"^burst %d sent$" % n, timeout=60)

        # Wait for every ack (on_ack fires once per client_msg_id).
        acks = {}
        wait = 240
        deadline = time.monotonic() + wait
        while len(acks) < n:
            assert time.monotonic() < deadline, (
                "%d of %d acked after %d s; proxy cut %d connections"
                % (len(acks), n, wait, proxy.cuts))
            alice._read(0.5)
            for line in alice.lines[alice.seen:]:
                m = re.match(r"^ack (\S+) (\d+)( duplicate)?$", line)
                if m:
                    assert m.group(1) not in acks, "two acks for " + line
                    acks[m.group(1)] = int(m.group(2))
            alice.seen = len(alice.lines)
        elapsed = time.monotonic() - t0
        cuts = proxy.cuts
    finally:
        proxy.close()

    # The connection really flapped while the sends went through.
    assert cuts >= 5, cuts
    duplicates = sum(1 for l in alice.lines
                     if re.match(r"^ack \S+ \d+ duplicate$", l))

    # bob's view, straight from the server: each body once, in send
    # order, ids strictly increasing, and the ids alice was acked.
    msgs = all_messages(chatd, tb, conv)
    bodies = [m["body"] for m in msgs]
    want = ["m-%04d" % i for i in range(n)]
    missing = sorted(set(want) - set(bodies))
    assert len(bodies) == n and bodies == want, (
        "%d messages, %d distinct, missing %r, first out of order at %r"
        % (len(bodies), len(set(bodies)), missing[:10],
           next((i for i, (a, b) in enumerate(zip(bodies, want)) if a != b),
                None)))
    ids = [int(m["message_id"]) for m in msgs]
    assert all(a < b for a, b in zip(ids, ids[1:]))
    assert all(m["sender_id"] == "alice" for m in msgs)
    assert sorted(acks.values()) == ids
    print("1000 sends: %.1f s, %d connections cut, %d duplicate acks"
          % (elapsed, cuts, duplicates))
    assert alice.quit() == 0
    assert "outbox 0" in alice.lines


def read_store(path, conv):
    db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
    try:
        msgs = db.execute(
            "SELECT message_id, sender_id, body FROM messages "
            "WHERE conversation_id = ? ORDER BY message_id",
            (conv,)).fetchall()
        # kind 2 is the read mark (want: the highest known, sent: the
        # highest the server has).
        read = db.execute(
            "SELECT want, sent FROM marks WHERE conversation_id = ? "
            "AND kind = 2", (conv,)).fetchone()
    finally:
        db.close()
    return [(int(i), s, bytes(b).decode()) for i, s, b in msgs], read


def test_two_devices_of_one_user_converge(chatd, clis, tmp_path):
    phone = Cli(chatd.port, chatd.token("alice", "phone"),
                tmp_path / "alice-phone.db")
    clis.append(phone)
    laptop = Cli(chatd.port, chatd.token("alice", "laptop"),
                 tmp_path / "alice-laptop.db")
    clis.append(laptop)
    bob = Cli(chatd.port, chatd.token("bob", "pc"), tmp_path / "bob.db")
    clis.append(bob)
    for c in (phone, laptop, bob):
        c.expect(r"^state ready$")

    bob.say("create alice")
    conv = bob.expect(r"^conversation (\S+) direct ").group(1)
    bob.say("open " + conv)
    bob.expect(r"^opened ")
    mids = []
    for i in range(3):
        bob.say("say hi alice %d" % i)
        cmid = bob.expect(r"^sent (\S+)$").group(1)
        mids.append(bob.expect(r"^ack %s (\d+)$" % re.escape(cmid)).group(1))
    for dev in (phone, laptop):
        for i, mid in enumerate(mids):
            dev.expect(r"^message %s %s bob live hi alice %d$"
                       % (conv, mid, i))

    # The phone reads; the laptop hears of it (state_change), and bob
    # sees ✓✓ read once.
    phone.say("open " + conv)
    phone.expect(r"^  %s bob: hi alice 2$" % mids[-1])
    phone.say("read")
    laptop.expect(r"^read-elsewhere %s %s$" % (conv, mids[-1]))
    bob.expect(r"^receipt %s %s alice read$" % (conv, mids[-1]))
    # The phone itself is not told about its own read.
    time.sleep(0.5)
    drain(phone)
    assert not any(l.startswith("read-elsewhere") for l in phone.lines)

    # Both devices list the same messages ...
    laptop.say("open " + conv)
    for i, mid in enumerate(mids):
        laptop.expect(r"^  %s bob: hi alice %d$" % (mid, i))
    for c in (phone, laptop, bob):
        assert c.quit() == 0
    # ... and their stores hold the same messages and the same read mark,
    # which the server has (sent) on both.
    p_msgs, p_read = read_store(tmp_path / "alice-phone.db", conv)
    l_msgs, l_read = read_store(tmp_path / "alice-laptop.db", conv)
    want = [(int(m), "bob", "hi alice %d" % i) for i, m in enumerate(mids)]
    assert p_msgs == want
    assert l_msgs == want
    assert p_read == (int(mids[-1]), int(mids[-1]))
    assert l_read == p_read


def metric(chatd, name):
    r = chatd.http("GET", "/metrics")
    assert r.status == 200
    m = re.search(r"(?m)^%s (\d+)$" % re.escape(name), r.body.decode())
    assert m, name
    return int(m.group(1))


def test_refused_token_is_reported_not_retried(chatd, clis, tmp_path):
    refused = 'chat_auth_failures_total{where="upgrade"}'
    good = chatd.token("alice", "phone")
    payload, sig = good.split(".")
    forged = payload + "." + ("A" * len(sig) if sig[0] != "A"
                              else "B" * len(sig))
    before = metric(chatd, refused)
    # A short backoff: a client that retried a refused token would try
    # some 20 times in the 3 s watched below.
    alice = Cli(chatd.port, forged, tmp_path / "alice.db",
                extra=["--backoff-base-ms", "100",
                       "--backoff-cap-ms", "200"])
    clis.append(alice)
    alice.expect(r"^state unauthorized$")
    alice.expect(r"^error CHAT_ERR_AUTH .*401")
    time.sleep(3)
    drain(alice)
    tries = metric(chatd, refused) - before
    assert 1 <= tries <= 2, "%d refused upgrades in 3 s" % tries
    assert not any(l in ("state backoff", "state ready")
                   for l in alice.lines), alice.lines
    # A new token and a start bring it back.
    alice.say("token " + good)
    alice.expect(r"^token set$")
    alice.expect(r"^state ready$")
    assert metric(chatd, refused) - before == tries
    assert alice.quit() == 0

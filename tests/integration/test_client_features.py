"""PROTOCOL.md section 8 through the C client SDK: examples/chat-cli
processes (the chat_client core on its SQLite store, the libwebsockets
runner) against a real chatd on 127.0.0.1.

- An edit and a delete reach the other device; a delete made while chatd
  is down waits in the outbox through a chatd restart and a restart of
  the client process, and goes out once both are back.
- A device that was offline during an edit, a delete and an admin change
  converges through resume (the entries applied, the change shown as a
  notice and the conversation fetched anew, admins included).
- A device whose gap is over the resume cap converges through REST
  history, and the deleted body is gone from its store file.
- After chatd's drain (goaway, then 1012) clients come back within the
  advised window and not before their random wait.

CHAT_CLI names the binary (meson sets it). Every process is stopped by
PID; every wait is bounded.
"""
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import CHATD, TIMEOUT
from test_client_sdk import CHAT_CLI, Cli


def _chatd_has_section8():
    """The chatd under test implements section 8 (its serve flags say)."""
    if not CHATD or not os.access(CHATD, os.X_OK):
        return False
    out = subprocess.run([CHATD, "serve", "--help"], capture_output=True,
                         timeout=30)
    return b"--edit-window-ms" in out.stdout + out.stderr


pytestmark = [
    pytest.mark.skipif(
        not CHAT_CLI or not os.access(CHAT_CLI, os.X_OK),
        reason="examples/chat-cli not built (needs lws, sqlite and sodium)"),
    pytest.mark.skipif(not _chatd_has_section8(),
                       reason="this chatd does not implement section 8"),
]


class TimedCli(Cli):
    """A Cli that remembers when each line arrived (time.monotonic())."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.times = []

    def _read(self, left):
        n = len(self.lines)
        got = super()._read(left)
        now = time.monotonic()
        self.times.extend([now] * (len(self.lines) - n))
        return got

    def expect_at(self, pattern, timeout=TIMEOUT):
        """expect(), and when the matching line arrived."""
        m = self.expect(pattern, timeout)
        return m, self.times[self.seen - 1]


@pytest.fixture
def clis():
    started = []
    yield started
    for c in started:
        c.kill()


def cli(clis, port, token, db, cls=Cli):
    c = cls(port, token, db)
    clis.append(c)
    return c


def anywhere(c, pattern, timeout=TIMEOUT):
    """A line matching pattern, consumed or not: for events whose order
    against the others is not fixed (a live notice and a REST answer)."""
    seen, c.seen = c.seen, 0
    try:
        return c.expect(pattern, timeout)
    finally:
        c.seen = max(seen, c.seen)


def file_holds(path, needle):
    """Whether the bytes appear in the store file or its WAL."""
    for p in (str(path), str(path) + "-wal", str(path) + "-journal"):
        try:
            with open(p, "rb") as f:
                if needle.encode() in f.read():
                    return True
        except OSError:
            pass
    return False


def send(c, conv, text):
    """Say text in the open conversation; its message id once acked."""
    c.say("say " + text)
    cmid = c.expect(r"^sent (\S+)$").group(1)
    return c.expect(r"^ack %s (\d+)" % re.escape(cmid)).group(1)


def test_edit_and_delete_reach_the_other_device_and_survive_restarts(
        chatd, clis, tmp_path):
    ta = chatd.token("alice", "phone")
    tb = chatd.token("bob", "laptop")
    alice = cli(clis, chatd.port, ta, tmp_path / "alice.db")
    bob = cli(clis, chatd.port, tb, tmp_path / "bob.db")
    alice.expect(r"^state ready$")
    bob.expect(r"^state ready$")
    alice.say("create bob")
    conv = alice.expect(r"^conversation (\S+) direct ").group(1)
    alice.say("open " + conv)
    alice.expect(r"^opened ")
    mid = send(alice, conv, "see you at 8")
    bob.expect(r"^message %s %s alice live see you at 8$" % (conv, mid))

    # The edit: the other device gets the entry and applies it.
    alice.say("edit %s see you at 8:30" % mid)
    ecmid = alice.expect(r"^editing (\S+) %s$" % mid).group(1)
    eid = alice.expect(r"^ack %s (\d+)$" % re.escape(ecmid)).group(1)
    alice.expect(r"^changed %s %s edited see you at 8:30$" % (conv, mid))
    bob.expect(r"^edit %s %s alice live %s see you at 8:30$"
               % (conv, eid, mid))
    bob.expect(r"^changed %s %s edited see you at 8:30$" % (conv, mid))

    # chatd goes away; alice deletes the message while it is down (the
    # delete waits in her outbox), then her process is restarted too.
    port = chatd.port
    assert chatd.stop() == 0
    alice.expect(r"^state backoff$")
    alice.say("delete " + mid)
    dcmid = alice.expect(r"^deleting (\S+) %s$" % mid).group(1)
    assert alice.quit() == 0
    assert "outbox 1" in alice.lines
    chatd.args = ["--listen", "127.0.0.1:%d" % port]
    chatd.start()
    assert chatd.port == port
    alice = cli(clis, chatd.port, ta, tmp_path / "alice.db")
    alice.expect(r"^state ready$")
    did = alice.expect(r"^ack %s (\d+)" % re.escape(dcmid),
                       timeout=90).group(1)
    alice.expect(r"^changed %s %s deleted$" % (conv, mid))
    # Bob's device reconnects by itself and gets the delete (live, or in
    # its resume, depending on which came first).
    bob.expect(r"^delete %s %s alice (live|resume) %s$" % (conv, did, mid),
               timeout=90)
    bob.expect(r"^changed %s %s deleted$" % (conv, mid))
    bob.say("open " + conv)
    bob.expect(r"^  %s alice: \(message deleted\)$" % mid)
    assert alice.quit() == 0
    assert "outbox 0" in alice.lines
    assert bob.quit() == 0
    for who in ("alice", "bob"):
        db = tmp_path / ("%s.db" % who)
        assert not file_holds(db, "see you at 8"), \
            "%s's store file still holds the deleted body" % who


def test_a_device_offline_during_edit_delete_and_admin_change_converges(
        chatd, clis, tmp_path):
    ta = chatd.token("alice", "phone")
    tb = chatd.token("bob", "laptop")
    alice = cli(clis, chatd.port, ta, tmp_path / "alice.db")
    bob = cli(clis, chatd.port, tb, tmp_path / "bob.db")
    alice.expect(r"^state ready$")
    bob.expect(r"^state ready$")
    alice.say("group Crew bob,carol")
    # The creator is the group's first admin.
    conv = alice.expect(
        r"^conversation (\S+) group alice\*,bob,carol Crew$").group(1)
    bob.expect(r"^conversation %s group alice\*,bob,carol Crew$" % conv)
    alice.say("open " + conv)
    m1 = send(alice, conv, "first draft")
    m2 = send(alice, conv, "regrettable")
    bob.expect(r"^message %s %s alice live regrettable$" % (conv, m2))
    assert bob.quit() == 0

    # While bob is away: an edit, a delete and an admin change.
    alice.say("edit %s final text" % m1)
    alice.expect(r"^changed %s %s edited final text$" % (conv, m1))
    alice.say("delete " + m2)
    alice.expect(r"^changed %s %s deleted$" % (conv, m2))
    alice.say("admin add carol")
    req = alice.expect(r"^request (\d+)$").group(1)
    alice.expect(r"^conversation %s group alice\*,bob,carol\* Crew$" % conv)
    alice.expect(r"^done %s CHAT_OK$" % req)
    anywhere(alice, r"^notice %s \d+ alice live alice made carol an admin$"
             % conv)

    bob = cli(clis, chatd.port, tb, tmp_path / "bob.db")
    bob.expect(r"^edit %s \d+ alice resume %s final text$" % (conv, m1))
    bob.expect(r"^changed %s %s edited final text$" % (conv, m1))
    bob.expect(r"^delete %s \d+ alice resume %s$" % (conv, m2))
    bob.expect(r"^changed %s %s deleted$" % (conv, m2))
    bob.expect(r"^notice %s \d+ alice resume alice made carol an admin$"
               % conv)
    # The notice made the client fetch the conversation: carol is admin.
    anywhere(bob, r"^conversation %s group alice\*,bob,carol\* Crew$" % conv)
    anywhere(bob, r"^caught-up ")
    bob.say("open " + conv)
    bob.expect(r"^  %s alice: final text \(edited\)$" % m1)
    bob.expect(r"^  %s alice: \(message deleted\)$" % m2)
    bob.expect(r"^  \d+ \* alice made carol an admin$")
    # Bob is no admin: the server refuses his admin call.
    bob.say("admin add bob")
    req = bob.expect(r"^request (\d+)$").group(1)
    anywhere(bob, r"^error \S+ REST 403 forbidden: forbidden")
    bob.expect(r"^done %s CHAT_ERR_DENIED$" % req)
    assert bob.quit() == 0
    assert not file_holds(tmp_path / "bob.db", "regrettable")
    assert alice.quit() == 0


def test_a_gap_over_the_resume_cap_converges_through_rest_history(
        chatd_factory, clis, tmp_path):
    chatd = chatd_factory(["--resume-max-messages", "3"])
    ta = chatd.token("alice", "phone")
    tb = chatd.token("bob", "laptop")
    alice = cli(clis, chatd.port, ta, tmp_path / "alice.db")
    bob = cli(clis, chatd.port, tb, tmp_path / "bob.db")
    alice.expect(r"^state ready$")
    bob.expect(r"^state ready$")
    alice.say("create bob")
    conv = alice.expect(r"^conversation (\S+) direct ").group(1)
    alice.say("open " + conv)
    m1 = send(alice, conv, "version one")
    m2 = send(alice, conv, "a secret to take back")
    bob.expect(r"^message %s %s alice live a secret to take back$"
               % (conv, m2))
    assert bob.quit() == 0

    alice.say("edit %s version two" % m1)
    alice.expect(r"^changed %s %s edited version two$" % (conv, m1))
    alice.say("delete " + m2)
    alice.expect(r"^changed %s %s deleted$" % (conv, m2))
    for i in range(3):
        send(alice, conv, "later %d" % i)

    # Five entries past bob's last_seen, over the cap of three: the server
    # answers resume_failed and bob's client pages REST history.
    bob = cli(clis, chatd.port, tb, tmp_path / "bob.db")
    bob.expect(r"^edit %s \d+ alice rest %s version two$" % (conv, m1))
    bob.expect(r"^changed %s %s edited version two$" % (conv, m1))
    bob.expect(r"^delete %s \d+ alice rest %s$" % (conv, m2))
    bob.expect(r"^changed %s %s deleted$" % (conv, m2))
    bob.expect(r"^message %s \d+ alice rest later 2$" % conv)
    anywhere(bob, r"^caught-up ")
    bob.say("open " + conv)
    bob.expect(r"^  %s alice: version two \(edited\)$" % m1)
    bob.expect(r"^  %s alice: \(message deleted\)$" % m2)
    assert bob.quit() == 0
    assert not file_holds(tmp_path / "bob.db", "a secret to take back")
    assert alice.quit() == 0


def test_clients_come_back_within_the_goaway_window_not_before(
        chatd_factory, clis, tmp_path):
    window_ms = 3000
    chatd = chatd_factory(["--drain-spread-ms", str(window_ms)])
    port = chatd.port
    devices = []
    for user in ("alice", "bob", "carol"):
        c = cli(clis, port, chatd.token(user, "d"), tmp_path / (user + ".db"),
                cls=TimedCli)
        c.expect(r"^state ready$")
        devices.append(c)
    # SIGTERM: chatd sends goaway (drain, retry_after_ms = the window),
    # closes with 1012 and exits; it is started again on the same port.
    os.kill(chatd.proc.pid, signal.SIGTERM)
    waits = []
    for c in devices:
        _, t_closed = c.expect_at(r"^state backoff$")
        wait = int(c.expect(r"^reconnect-in (\d+)$").group(1))
        assert 0 <= wait <= window_ms, wait
        waits.append((c, t_closed, wait))
    assert chatd.stop() == 0
    chatd.args = ["--listen", "127.0.0.1:%d" % port]
    chatd.start()
    for c, t_closed, wait in waits:
        _, t_back = c.expect_at(r"^state connecting$")
        gone = (t_back - t_closed) * 1000
        # Not before the random wait (lines are read as they come: allow
        # for the reader's scheduling), and within the window.
        assert gone >= wait - 150, (gone, wait)
        assert gone <= window_ms + 2000, (gone, wait)
        c.expect(r"^state ready$", timeout=90)
    for c in devices:
        assert c.quit() == 0

"""PROTOCOL.md section 8 against a real chatd: edit and delete, group
admins, bots, abuse controls (the new-direct cap, shadow bans through
`chatd ban`), receipt-aware push, and server-advised reconnect (goaway).

Devices that were away converge by applying what resume or REST history
return, with the client rules of docs/protocol.md section 6.3 implemented
here in a few lines (LocalStore), so that the tests check the result a
client gets, not only the frames.
"""
import json
import os
import random
import signal
import subprocess
import threading
import time

from conftest import (CHATD, TIMEOUT, Client, create_conversation, conv_id)

from websockets.exceptions import ConnectionClosed

MAX_ID = "9223372036854775807"


# ---- a client's local store (docs/protocol.md 6.3) ----

class LocalStore:
    """Messages by id; edit and delete entries applied to their targets."""

    def __init__(self):
        self.msgs = {}
        self.last_edit = {}  # target id -> id of the edit applied

    def add(self, m):
        mid = int(m["message_id"])
        if mid in self.msgs:
            return
        self.msgs[mid] = dict(m)
        kind = m.get("body_type")
        if kind in ("edit", "delete"):
            self.apply(m)
        else:
            # A target arriving after its entries already carries its
            # state; entries held for it apply harmlessly again.
            for e in sorted(self.msgs.values(),
                            key=lambda x: int(x["message_id"])):
                if e.get("body_type") in ("edit", "delete") and \
                        int(e["target_id"]) == mid:
                    self.apply(e)

    def apply(self, e):
        t = self.msgs.get(int(e["target_id"]))
        if t is None:
            return  # kept; applied when the target arrives
        eid = int(e["message_id"])
        if e["body_type"] == "delete":
            t["body"] = ""
            t["deleted"] = True
            t.pop("media_refs", None)
            t.pop("edited_ts", None)
        elif not t.get("deleted") and eid > self.last_edit.get(
                int(t["message_id"]), 0):
            t["body"] = e["body"]
            t["edited_ts"] = e["server_ts"]
            self.last_edit[int(t["message_id"])] = eid

    def shown(self):
        """What the user sees: (id, body, deleted, edited) of real messages."""
        return sorted((i, m["body"], bool(m.get("deleted")),
                       "edited_ts" in m)
                      for i, m in self.msgs.items()
                      if m.get("body_type") not in ("edit", "delete"))

    def last_seen(self):
        return str(max(self.msgs)) if self.msgs else "0"


def rest_history(chatd, tok, cid, before=None, stop_at=None):
    """REST pages, newest first, until stop_at (exclusive) or the end."""
    out = []
    for _ in range(1000):
        q = "/api/v1/conversations/%s/messages?limit=3" % cid
        if before:
            q += "&before=" + before
        r = chatd.http("GET", q, tok)
        assert r.status == 200, r.body
        page = r.json()
        for m in page["messages"]:
            if stop_at and int(m["message_id"]) <= int(stop_at):
                return out
            out.append(m)
        if not page["has_more"]:
            return out
        before = page["messages"][-1]["message_id"]
    raise AssertionError("history did not end")


def server_view(chatd, tok, cid):
    store = LocalStore()
    for m in rest_history(chatd, tok, cid):
        store.add(m)
    return store.shown()


def send(c, cmid, cid, body):
    c.send({"type": "send", "client_msg_id": cmid, "conversation_id": cid,
            "body": body})
    return c.expect("ack", lambda f: f["client_msg_id"] == cmid)


def edit(c, cmid, cid, target, body):
    c.send({"type": "edit", "client_msg_id": cmid, "conversation_id": cid,
            "target_id": target, "body": body})


def delete(c, cmid, cid, target):
    c.send({"type": "delete", "client_msg_id": cmid, "conversation_id": cid,
            "target_id": target})


def acked(c, cmid):
    return c.expect("ack", lambda f: f["client_msg_id"] == cmid)


def refused(c, cmid):
    return c.expect("error", lambda f: f.get("ref") == cmid)["code"]


def resume_all(c, last_seen, since=None):
    """Send resume and read its whole answer."""
    frame = {"type": "resume", "last_seen": last_seen}
    if since:
        frame["since"] = since
    c.send(frame)
    hist, failed = [], []
    while True:
        f = c.expect_any(("history", "resume_failed", "resumed"))
        if f["type"] == "history":
            hist += f["messages"]
        elif f["type"] == "resume_failed":
            failed.append((f["conversation_id"], f["reason"]))
        else:
            return hist, failed, f


def _first_of(c, types, timeout=TIMEOUT):
    """The first frame of any of these types; others are kept."""
    deadline = time.monotonic() + timeout
    for i, f in enumerate(list(c.backlog)):
        if f.get("type") in types:
            del c.backlog[i]
            return f
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "none of %r within %.0fs" % (types, timeout)
        try:
            f = json.loads(c.ws.recv(timeout=left))
        except TimeoutError:
            continue
        if f.get("type") in types:
            return f
        c.backlog.append(f)


Client.expect_any = _first_of


def token(chatd, user, device, bot=False):
    args = [CHATD, "token", "--data-dir", chatd.data_dir, "--user", user,
            "--device", device, "--ttl", "3600"]
    if bot:
        args.append("--bot")
    out = subprocess.run(args, capture_output=True, timeout=30, check=True)
    return out.stdout.decode().strip()


def client_with(chatd, tok):
    c = Client(chatd.open_ws(tok))
    chatd.clients.append(c)
    return c


# ---- edit and delete ----

def test_edits_deletes_and_admin_changes_reach_a_device_through_resume(
        chatd):
    ta = chatd.token("alice", "a")
    tb = chatd.token("bob", "phone")
    cid = conv_id(create_conversation(chatd, ta, ["bob", "carol"], "group",
                                      "trip"))
    a = chatd.client("alice", "a")
    phone = chatd.client("bob", "phone")
    local = LocalStore()
    m1 = send(a, "m1", cid, "meet at 8")["message_id"]
    m2 = send(a, "m2", cid, "bring the map")["message_id"]
    for _ in range(2):
        local.add(phone.expect("message"))
    phone.close()
    # While bob's phone is away: an edit, a delete, an admin change.
    edit(a, "e1", cid, m1, "meet at 8:30")
    acked(a, "e1")
    delete(a, "d1", cid, m2)
    acked(a, "d1")
    r = chatd.http("POST", "/api/v1/conversations/%s/admins" % cid, ta,
                   {"user_id": "carol"})
    assert r.status == 200, r.body
    assert sorted(r.json()["admins"]) == ["alice", "carol"]
    # The phone comes back and resumes from what it has.
    phone = client_with(chatd, tb)
    hist, failed, done = resume_all(phone, {cid: local.last_seen()})
    assert failed == []
    kinds = [m.get("body_type", "text") for m in hist]
    assert kinds == ["edit", "delete", "system"], hist
    assert hist[0]["target_id"] == m1 and hist[1]["target_id"] == m2
    assert hist[2]["body"] == "alice made carol an admin"
    assert hist[2]["sender_id"] == "alice"
    assert "client_msg_id" not in hist[2]
    assert done["messages"] == 3
    for m in hist:
        local.add(m)
    # It converged on what the server holds.
    assert local.shown() == server_view(chatd, tb, cid)
    assert local.msgs[int(m1)]["body"] == "meet at 8:30"
    assert local.msgs[int(m2)]["deleted"] is True
    # The deleted body is gone from the server, not hidden.
    page = chatd.http("GET", "/api/v1/conversations/%s/messages" % cid,
                      ta).body.decode()
    assert "bring the map" not in page and '"deleted":true' in page
    # And live: a device that stays gets each entry as a message frame.
    watcher = chatd.client("carol", "c")
    edit(a, "e2", cid, m1, "meet at 9")
    acked(a, "e2")
    f = watcher.expect("message")
    assert f["body_type"] == "edit" and f["target_id"] == m1
    assert f["body"] == "meet at 9" and f["client_msg_id"] == "e2"
    assert "edited_ts" not in f and "deleted" not in f


def test_a_gap_over_the_resume_cap_converges_through_rest_history(
        chatd_factory):
    chatd = chatd_factory(["--resume-max-messages", "5"])
    ta = chatd.token("alice", "a")
    tb = chatd.token("bob", "phone")
    cid = conv_id(create_conversation(chatd, ta, ["bob"]))
    a = chatd.client("alice", "a")
    phone = chatd.client("bob", "phone")
    local = LocalStore()
    first = send(a, "m0", cid, "old news")["message_id"]
    local.add(phone.expect("message"))
    phone.close()
    ids = [send(a, "n%d" % i, cid, "new %d" % i)["message_id"]
           for i in range(8)]
    edit(a, "e1", cid, first, "old news, corrected")
    acked(a, "e1")
    edit(a, "e2", cid, ids[2], "new 2, twice corrected")
    acked(a, "e2")
    delete(a, "d1", cid, ids[5])
    acked(a, "d1")
    phone = client_with(chatd, tb)
    hist, failed, _ = resume_all(phone, {cid: local.last_seen()})
    assert failed == [(cid, "too_old")] and hist == []
    # Page REST history back to what the device has, then apply oldest
    # first (entries after the targets they name).
    gap = rest_history(chatd, tb, cid, stop_at=local.last_seen())
    assert len(gap) == 11
    for m in reversed(gap):
        local.add(m)
    assert local.shown() == server_view(chatd, tb, cid)
    assert local.msgs[int(first)]["body"] == "old news, corrected"
    assert local.msgs[int(ids[5])]["deleted"]
    assert local.msgs[int(ids[2])]["body"] == "new 2, twice corrected"


def test_edit_and_delete_rules(chatd_factory):
    chatd = chatd_factory(["--edit-window-ms", "1500"])
    ta = chatd.token("alice", "a")
    cid = conv_id(create_conversation(chatd, ta, ["bob", "carol"], "group"))
    a = chatd.client("alice", "a")
    b = chatd.client("bob", "b")
    c = chatd.client("carol", "c")
    mb = send(b, "b1", cid, "bob's")["message_id"]
    ma = send(a, "a1", cid, "alice's")["message_id"]
    # Only the sender edits; a non-admin deletes only their own.
    edit(a, "x1", cid, mb, "not yours")
    assert refused(a, "x1") == "forbidden"
    delete(c, "x2", cid, mb)
    assert refused(c, "x2") == "forbidden"
    edit(a, "x3", cid, "12345", "nothing")
    assert refused(a, "x3") == "not_found"
    # The admin (the creator) deletes bob's message.
    delete(a, "d1", cid, mb)
    d1 = acked(a, "d1")
    assert "duplicate" not in d1
    # A retry is the original ack, even though the target is gone now.
    delete(a, "d1", cid, mb)
    again = acked(a, "d1")
    assert again["duplicate"] is True
    assert again["message_id"] == d1["message_id"]
    # Past the window, the sender may not edit.
    time.sleep(1.7)
    edit(a, "x4", cid, ma, "too late")
    assert refused(a, "x4") == "forbidden"
    v = chatd.http("GET", "/metrics").body.decode()
    assert "chat_deletes_committed_total 1" in v
    assert "chat_edits_refused_total 4" in v


# ---- admins ----

def test_group_admin_rules_over_rest(chatd):
    ta, tb, tc = (chatd.token(u, "r") for u in ("alice", "bob", "carol"))
    conv = create_conversation(chatd, ta, ["bob", "carol"], "group")
    cid = conv_id(conv)
    assert conv["admins"] == ["alice"]
    b = chatd.client("bob", "live")
    base = "/api/v1/conversations/%s" % cid
    assert chatd.http("DELETE", base + "/members/carol", tb).status == 403
    r = chatd.http("POST", base + "/admins", tb, {"user_id": "bob"})
    assert r.status == 403 and r.json()["error"]["code"] == "forbidden"
    r = chatd.http("POST", base + "/admins", ta, {"user_id": "zoe"})
    assert r.status == 404 and r.json()["error"]["code"] == "not_found"
    r = chatd.http("POST", base + "/admins", ta, {"user_id": "bob"})
    assert r.status == 200 and sorted(r.json()["admins"]) == ["alice", "bob"]
    f = b.expect("message")
    assert f["body_type"] == "system"
    assert f["body"] == "alice made bob an admin"
    conv = b.expect("conversation")["conversation"]
    assert sorted(conv["admins"]) == ["alice", "bob"]
    # The creator is removed by nobody but themself.
    assert chatd.http("DELETE", base + "/members/alice", tb).status == 403
    assert chatd.http("DELETE", base + "/admins/alice", tb).status == 403
    # bob removes carol; alice leaves; bob stays the admin.
    r = chatd.http("DELETE", base + "/members/carol", tb)
    assert r.status == 200 and r.json() == {
        "conversation_id": cid, "user_id": "carol", "removed": True}
    assert chatd.http("GET", base, tc).status == 403
    assert chatd.http("DELETE", base + "/members/alice", ta).status == 200
    r = chatd.http("GET", base, tb)
    assert r.json()["admins"] == ["bob"] and r.json()["members"] == ["bob"]
    # The last member may not step down (nobody to hand over to).
    r = chatd.http("DELETE", base + "/admins/bob", tb)
    assert r.status == 409


# ---- bots ----

def test_bots(chatd_factory, tmp_path):
    log = tmp_path / "push.log"
    chatd = chatd_factory(["--bot-rate-per-minute", "5",
                           "--rate-per-minute", "2", "--push-log", str(log)])
    ta = chatd.token("alice", "a")
    cid = conv_id(create_conversation(chatd, ta, ["weather"], "group"))
    tw = token(chatd, "weather", "bot", bot=True)
    w = client_with(chatd, tw)
    assert w.hello["limits"]["rate_per_minute"] == 5
    a = chatd.client("alice", "a")
    assert a.hello["limits"]["rate_per_minute"] == 2
    for i in range(5):
        send(w, "w%d" % i, cid, "sunny")
    w.send({"type": "send", "client_msg_id": "w5", "conversation_id": cid,
            "body": "one too many"})
    assert refused(w, "w5") == "rate_limited"
    f = a.expect("message")
    assert f["sender_kind"] == "bot"
    # A bot's read is dropped: no receipt reaches alice.
    mid = send(a, "a1", cid, "thanks")["message_id"]
    w.send({"type": "read", "conversation_id": cid,
            "up_to_message_id": mid})
    a.quiet("receipt", wait=1.0)
    # A bot is never sent push: it cannot register a device.
    r = chatd.http("POST", "/api/v1/devices", tw,
                   {"platform": "fcm", "push_token": "t"})
    assert r.status == 403 and r.json()["error"]["code"] == "forbidden"
    page = chatd.http("GET", "/api/v1/conversations/%s/messages" % cid,
                      ta).json()["messages"]
    assert {m["sender_id"]: m.get("sender_kind", "user") for m in page} == \
        {"weather": "bot", "alice": "user"}
    assert not log.exists() or "weather" not in log.read_text()


# ---- abuse controls ----

def test_new_direct_conversations_are_capped(chatd_factory):
    chatd = chatd_factory(["--new-direct-per-day", "2"])
    ts = chatd.token("spam", "s")
    for peer in ("u1", "u2"):
        create_conversation(chatd, ts, [peer])
    r = chatd.http("POST", "/api/v1/conversations", ts,
                   {"type": "direct", "members": ["u3"]})
    assert r.status == 429, r.body
    assert r.json()["error"]["code"] == "rate_limited"
    left = 86400 - int(time.time()) % 86400
    assert abs(int(r.headers["Retry-After"]) - left) <= 5
    # An existing pair is not new; someone else is not capped.
    r = chatd.http("POST", "/api/v1/conversations", ts,
                   {"type": "direct", "members": ["u1"]})
    assert r.status == 200
    create_conversation(chatd, chatd.token("alice", "a"), ["u3"])
    assert "chat_direct_capped_total 1" in \
        chatd.http("GET", "/metrics").body.decode()


def test_shadow_ban_through_chatd_ban_on_a_running_server(chatd_factory,
                                                          tmp_path):
    log = tmp_path / "push.log"
    chatd = chatd_factory(["--push-log", str(log), "--ban-poll-ms", "500"])
    ta = chatd.token("alice", "a")
    tb = chatd.token("bob", "b")
    cid = conv_id(create_conversation(chatd, ta, ["bob", "carol"], "group"))
    tc = chatd.token("carol", "pushed")
    assert chatd.http("POST", "/api/v1/devices", tc,
                      {"platform": "fcm", "push_token": "t"}).status == 200
    a = chatd.client("alice", "a")
    b = chatd.client("bob", "b")
    b2 = chatd.client("bob", "b2")
    send(b, "b0", cid, "before")
    a.expect("message")
    out = subprocess.run([CHATD, "ban", "--data-dir", chatd.data_dir,
                          "--user", "bob", "--shadow"], capture_output=True,
                         timeout=30)
    assert out.returncode == 0 and out.stdout == b"shadow-banned bob\n"
    # bob's next send is acked, reaches his other device, nobody else.
    ack = send(b, "b1", cid, "buy now")
    assert "duplicate" not in ack
    assert b2.expect("message", lambda f: f["client_msg_id"] == "b1")
    a.quiet("message", wait=1.0)
    # No typing either, once the list is polled (--ban-poll-ms 500).
    time.sleep(1.0)
    b.send({"type": "typing", "conversation_id": cid, "is_typing": True})
    a.quiet("typing", wait=1.0)
    hist_a = chatd.http("GET", "/api/v1/conversations/%s/messages" % cid,
                        ta).body.decode()
    hist_b = chatd.http("GET", "/api/v1/conversations/%s/messages" % cid,
                        tb).body.decode()
    assert "buy now" not in hist_a and "before" in hist_a
    assert "buy now" in hist_b
    pushed = [json.loads(x) for x in log.read_text().splitlines()]
    assert [p["sender_id"] for p in pushed if "type" not in p] == ["bob"], \
        "only the message before the ban was pushed"
    # A fresh device of alice resumes without it.
    a2 = chatd.client("alice", "a2")
    hist, _, _ = resume_all(a2, {cid: "0"})
    assert [m["body"] for m in hist] == ["before"]
    # Unbanned: delivered again (what was withheld stays withheld).
    out = subprocess.run([CHATD, "unban", "--data-dir", chatd.data_dir,
                          "--user", "bob", "--shadow"], capture_output=True,
                         timeout=30)
    assert out.returncode == 0 and out.stdout == b"unbanned bob\n"
    send(b, "b2", cid, "sorry")
    assert a.expect("message")["body"] == "sorry"


# ---- receipt-aware push ----

def test_reading_clears_the_notifications_of_pushed_messages(chatd_factory,
                                                             tmp_path):
    log = tmp_path / "push.log"
    chatd = chatd_factory(["--push-log", str(log),
                           "--presence-offline-ms", "100"])
    ta = chatd.token("alice", "a")
    tphone = chatd.token("bob", "phone")
    cid = conv_id(create_conversation(chatd, ta, ["bob"]))
    assert chatd.http("POST", "/api/v1/devices", tphone,
                      {"platform": "apns", "push_token": "p"}).status == 200
    a = chatd.client("alice", "a")
    send(a, "m1", cid, "are you home?")
    m2 = send(a, "m2", cid, "hello?")["message_id"]

    def lines():
        if not log.exists():
            return []
        return [json.loads(x) for x in log.read_text().splitlines()]

    deadline = time.monotonic() + TIMEOUT
    while len([x for x in lines() if "type" not in x]) < 2:
        assert time.monotonic() < deadline, lines()
        time.sleep(0.05)
    # bob reads on his laptop: the phone is told to clear.
    laptop = chatd.client("bob", "laptop")
    laptop.send({"type": "read", "conversation_id": cid,
                 "up_to_message_id": m2})
    while not [x for x in lines() if x.get("type") == "clear"]:
        assert time.monotonic() < deadline, lines()
        time.sleep(0.05)
    clears = [x for x in lines() if x.get("type") == "clear"]
    assert clears == [{"type": "clear", "user_id": "bob",
                       "device_id": "phone", "conversation_id": cid,
                       "platform": "apns", "up_to": m2}]
    # Reading again (nothing new was pushed) clears nothing more.
    m3 = send(a, "m3", cid, "I see you")["message_id"]
    laptop.expect("message")
    laptop.send({"type": "read", "conversation_id": cid,
                 "up_to_message_id": m3})
    laptop.send({"type": "ping", "nonce": "sync"})
    laptop.expect("pong")
    time.sleep(0.5)
    assert len([x for x in lines() if x.get("type") == "clear"]) == 1


# ---- server-advised reconnect ----

class GoawayClient:
    """A device that honours goaway (docs/protocol.md 6.4): after the close
    it waits a uniformly random delay in [0, retry_after_ms], then
    reconnects (retrying every 50 ms while the server is not back) and
    resumes."""

    def __init__(self, chatd, tok, cid, rng):
        self.chatd, self.tok, self.cid, self.rng = chatd, tok, cid, rng
        self.c = client_with(chatd, tok)
        self.goaway = None
        self.closed_at = None
        self.close_code = None
        self.delay = None
        self.first_attempt = None
        self.connected_at = None
        self.resumed = None
        self.error = None

    def run(self, port):
        try:
            while True:
                try:
                    f = json.loads(self.c.ws.recv(timeout=TIMEOUT))
                except ConnectionClosed as e:
                    self.closed_at = time.monotonic()
                    self.close_code = e.rcvd.code if e.rcvd else None
                    break
                if f["type"] == "goaway":
                    self.goaway = f
            assert self.goaway, "closed without goaway"
            self.delay = self.rng.uniform(
                0, self.goaway["retry_after_ms"] / 1000.0)
            time.sleep(max(0.0, self.closed_at + self.delay -
                           time.monotonic()))
            self.first_attempt = time.monotonic()
            while True:
                try:
                    self.chatd.port = port
                    c = Client(self.chatd.open_ws(self.tok, open_timeout=2))
                    break
                except Exception:
                    assert time.monotonic() - self.first_attempt < 30
                    time.sleep(0.05)
            self.connected_at = time.monotonic()
            self.chatd.clients.append(c)
            c.send({"type": "resume", "last_seen": {self.cid: "0"}})
            c.expect("resumed")
            self.resumed = time.monotonic()
        except BaseException as e:  # reported by the test
            self.error = e


def test_clients_honouring_goaway_return_within_the_window_not_before(
        chatd_factory):
    spread_ms = 3000
    old = chatd_factory(["--drain-spread-ms", str(spread_ms)])
    ta = old.token("alice", "a")
    cid = conv_id(create_conversation(old, ta, ["bob"]))
    rng = random.Random(7)
    n = 20
    clients = [GoawayClient(old, old.token("bob", "d%d" % i), cid, rng)
               for i in range(n)]
    port = old.port
    threads = [threading.Thread(target=c.run, args=(port,), daemon=True)
               for c in clients]
    for t in threads:
        t.start()
    t_term = time.monotonic()
    os.kill(old.proc.pid, signal.SIGTERM)
    assert old.proc.wait(timeout=TIMEOUT) == 0
    old.proc.stdout.close()
    old.log.close()
    old.proc = None
    # The new process on the same port and data directory.
    new = chatd_factory(["--listen", "127.0.0.1:%d" % port],
                        data_dir=old.data_dir)
    assert new.port == port
    for t in threads:
        t.join(timeout=60)
    for c in clients:
        assert c.error is None, repr(c.error)
        assert c.goaway == {"type": "goaway", "reason": "drain",
                            "retry_after_ms": spread_ms}
        assert c.close_code == 1012
        assert c.closed_at - t_term < 5
        # Not before the advised delay, and within the window.
        assert c.first_attempt >= c.closed_at + c.delay - 0.01
        assert c.first_attempt <= c.closed_at + spread_ms / 1000.0 + 0.5
        assert c.resumed is not None
    # Spread over the window, not all at once.
    firsts = sorted(c.first_attempt - c.closed_at for c in clients)
    assert firsts[-1] - firsts[0] > spread_ms / 1000.0 / 3, firsts
    v = new.http("GET", "/metrics").body.decode()
    assert "chat_sessions_opened_total %d" % n in v


def test_drain_without_goaway_when_asked(chatd_factory):
    chatd = chatd_factory(["--drain-spread-ms", "0"])
    c = chatd.client("alice", "a")
    os.kill(chatd.proc.pid, signal.SIGTERM)
    assert c.closed_code() == 1001
    assert not [f for f in c.backlog if f["type"] == "goaway"]
    assert chatd.proc.wait(timeout=TIMEOUT) == 0

"""PROTOCOL.md section 5 through the transport: paging, membership, 403 for
non-members, media, devices and push, rate limit, body limit, /healthz,
/metrics and static files."""
import json
import os
import re
import time

from conftest import create_conversation, conv_id


def post_messages(client, cid, n, prefix="p"):
    mids = []
    for i in range(n):
        client.send({"type": "send", "client_msg_id": "%s%d" % (prefix, i),
                     "conversation_id": cid, "body": "msg %d" % i})
        mids.append(client.expect(
            "ack", lambda f, i=i: f["client_msg_id"] == "%s%d" % (prefix, i)
        )["message_id"])
    return mids


def test_conversations_and_paging(chatd_factory):
    chatd = chatd_factory(["--rate-per-minute", "1000"])
    ta = chatd.token("alice", "a")
    conv = create_conversation(chatd, ta, ["bob"])
    cid = conv_id(conv)
    # The same direct pair again: 200 with the same conversation.
    r = chatd.http("POST", "/api/v1/conversations", ta,
                   {"type": "direct", "members": ["bob"]})
    assert r.status == 200 and conv_id(r.json()) == cid
    a = chatd.client("alice", "a")
    mids = post_messages(a, cid, 7)
    path = "/api/v1/conversations/%s/messages" % cid
    r = chatd.http("GET", path + "?limit=3", ta)
    assert r.status == 200
    page = r.json()
    assert [m["message_id"] for m in page["messages"]] == mids[:-4:-1]
    assert page["has_more"] is True
    r = chatd.http("GET", path + "?limit=3&before=" + mids[4], ta).json()
    assert [m["message_id"] for m in r["messages"]] == [mids[3], mids[2],
                                                        mids[1]]
    r = chatd.http("GET", path + "?after=" + mids[4], ta).json()
    assert [m["message_id"] for m in r["messages"]] == mids[5:]
    assert r["has_more"] is False
    m = r["messages"][0]
    assert m["sender_id"] == "alice" and m["conversation_id"] == cid
    assert "type" not in m
    # The list: most recent activity first, unread counts for bob.
    tb = chatd.token("bob", "b")
    lst = chatd.http("GET", "/api/v1/conversations?limit=10", tb).json()
    assert [c["conversation_id"] for c in lst["conversations"]] == [cid]
    c = lst["conversations"][0]
    assert c["unread_count"] == 7
    assert c["last_read_message_id"] is None
    assert c["last_message"]["message_id"] == mids[-1]
    assert "next_cursor" in lst
    # Bad input.
    assert chatd.http("GET", path + "?limit=abc", ta).status == 400
    assert chatd.http("GET", path + "?before=-1", ta).status == 400
    r = chatd.http("POST", "/api/v1/conversations", ta, b"{not json",
                   content_type="application/json")
    assert r.status == 400
    assert r.json()["error"]["code"] == "bad_request"


def test_cursor_paging_of_the_conversation_list(chatd):
    ta = chatd.token("alice", "a")
    made = [conv_id(create_conversation(chatd, ta, ["u%d" % i]))
            for i in range(5)]
    seen, cursor = [], None
    for _ in range(10):
        q = "/api/v1/conversations?limit=2"
        if cursor:
            q += "&cursor=" + cursor
        page = chatd.http("GET", q, ta).json()
        seen += [c["conversation_id"] for c in page["conversations"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(made) and len(seen) == 5


def test_membership_and_403(chatd):
    ta, tb, tc, td = (chatd.token(u, "d") for u in ("alice", "bob", "carol",
                                                    "dave"))
    cid = conv_id(create_conversation(chatd, ta, ["bob"], "group", "team"))
    base = "/api/v1/conversations/" + cid
    # Dave is no member: 403 for everything under the conversation.
    assert chatd.http("GET", base + "/messages", td).status == 403
    r = chatd.http("POST", base + "/members", td, {"user_id": "dave"})
    assert r.status == 403
    # Unknown conversation: 404.
    r = chatd.http("GET", "/api/v1/conversations/nope/messages", ta)
    assert r.status == 404
    assert r.json()["error"]["code"] == "not_found"
    # Carol comes in and her online device hears of it.
    carol = chatd.client("carol", "d")
    assert chatd.http("POST", base + "/members", ta,
                      {"user_id": "carol"}).status == 200
    f = carol.expect("conversation")
    assert f["conversation"]["conversation_id"] == cid
    assert chatd.http("GET", base + "/messages", tc).status == 200
    # Bob leaves; then he is a stranger.
    assert chatd.http("DELETE", base + "/members/bob", tb).status == 200
    assert chatd.http("GET", base + "/messages", tb).status == 403
    bob = chatd.client("bob", "d")
    bob.send({"type": "send", "client_msg_id": "x", "conversation_id": cid,
              "body": "still here?"})
    e = bob.expect("error")
    assert e["code"] == "not_member" and e["ref"] == "x"


def test_media(chatd):
    ta, tb, td = (chatd.token(u, "d") for u in ("alice", "bob", "dave"))
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
    r = chatd.http("POST", "/api/v1/media", ta, png, content_type="image/png")
    assert r.status == 201, r.body
    media_id = r.json()["media_id"]
    r = chatd.http("GET", "/api/v1/media/" + media_id, ta)
    assert r.status == 200 and r.body == png
    assert r.headers["Content-Type"] == "image/png"
    # Not shared yet: unknown to bob, as if it did not exist.
    assert chatd.http("GET", "/api/v1/media/" + media_id, tb).status == 404
    cid = conv_id(create_conversation(chatd, ta, ["bob"]))
    a = chatd.client("alice", "d")
    a.send({"type": "send", "client_msg_id": "pic", "conversation_id": cid,
            "body": "", "body_type": "media", "media_refs": [media_id]})
    a.expect("ack")
    r = chatd.http("GET", "/api/v1/media/" + media_id, tb)
    assert r.status == 200 and r.body == png
    assert chatd.http("GET", "/api/v1/media/" + media_id, td).status == 404
    # Dave cannot share it into a chat of his own to read it.
    did = conv_id(create_conversation(chatd, td, ["erin"]))
    d = chatd.client("dave", "d")
    d.send({"type": "send", "client_msg_id": "steal", "conversation_id": did,
            "body": "", "body_type": "media", "media_refs": [media_id]})
    e = d.expect("error")
    assert e["code"] == "bad_id" and e["ref"] == "steal"
    assert chatd.http("GET", "/api/v1/media/" + media_id, td).status == 404
    assert chatd.http("GET", "/api/v1/media/m404", ta).status == 404


def test_push_log_for_offline_members(chatd_factory, tmp_path):
    log = tmp_path / "push.jsonl"
    chatd = chatd_factory(["--push-log", str(log)])
    ta, tb = chatd.token("alice", "a"), chatd.token("bob", "b-phone")
    r = chatd.http("POST", "/api/v1/devices", tb,
                   {"platform": "fcm", "push_token": "tok-123"})
    assert r.status == 200, r.body
    cid = conv_id(create_conversation(chatd, ta, ["bob"]))
    a = chatd.client("alice", "a")
    a.send({"type": "send", "client_msg_id": "p1", "conversation_id": cid,
            "body": "secret body"})
    a.expect("ack")
    deadline = time.monotonic() + 15
    lines = []
    while time.monotonic() < deadline and not lines:
        if log.exists():
            lines = [json.loads(l) for l in log.read_text().splitlines() if l]
        time.sleep(0.05)
    assert lines, "no push line"
    p = lines[0]
    assert p["user_id"] == "bob" and p["device_id"] == "b-phone"
    assert p["conversation_id"] == cid and p["sender_id"] == "alice"
    assert "alice" in p["preview"] and "secret" not in p["preview"]


def test_rest_rate_limit(chatd_factory):
    chatd = chatd_factory(["--rest-rate-per-minute", "60",
                           "--rest-burst", "3"])
    ta, tb = chatd.token("alice", "a"), chatd.token("bob", "b")
    for _ in range(3):
        assert chatd.http("GET", "/api/v1/conversations", ta).status == 200
    r = chatd.http("GET", "/api/v1/conversations", ta)
    assert r.status == 429
    assert r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 2
    # Per user: bob is not affected.
    assert chatd.http("GET", "/api/v1/conversations", tb).status == 200
    time.sleep(1.1)
    assert chatd.http("GET", "/api/v1/conversations", ta).status == 200


def test_body_limit(chatd_factory):
    chatd = chatd_factory(["--max-http-body-bytes", "4096"])
    ta = chatd.token("alice", "a")
    r = chatd.http("POST", "/api/v1/media", ta, b"x" * 5000,
                   content_type="application/octet-stream")
    assert r.status == 413
    assert r.json()["error"]["code"] == "too_large"
    # The connection and the server carry on.
    r = chatd.http("POST", "/api/v1/media", ta, b"x" * 4000,
                   content_type="application/octet-stream")
    assert r.status == 201


def test_healthz_and_404(chatd):
    r = chatd.http("GET", "/healthz")
    assert r.status == 200 and r.json() == {"ok": True}
    r = chatd.http("GET", "/nothing/here")
    assert r.status == 404
    assert r.json()["error"]["code"] == "not_found"
    assert r.headers["Content-Type"] == "application/json"
    assert chatd.http("POST", "/healthz", body={}).status == 405


METRIC = re.compile(r'^(chat_[a-z_]+)(\{[a-z_]+="[^"]*"\})? (\S+)$')


def scrape(chatd):
    r = chatd.http("GET", "/metrics")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = {}
    for line in r.body.decode().splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) chat_[a-z_]+ ", line), line
            continue
        m = METRIC.match(line)
        assert m, line
        values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return values


def test_metrics(chatd):
    a = chatd.client("alice", "a")
    cid = conv_id(create_conversation(chatd, chatd.token("alice", "a"),
                                      ["bob"]))
    post_messages(a, cid, 3)
    chatd.http("GET", "/api/v1/conversations")  # a 401
    v = scrape(chatd)
    assert v["chat_sessions_open"] == 1
    assert v["chat_ws_connections_open"] == 1
    assert v["chat_sends_committed_total"] == 3
    assert v["chat_store_commits_total"] >= 1
    assert v["chat_commit_seconds_count"] >= 1
    assert v['chat_commit_seconds_bucket{le="+Inf"}'] == \
        v["chat_commit_seconds_count"]
    assert v["chat_dispatch_seconds_count"] >= 3
    assert v['chat_auth_failures_total{where="rest"}'] >= 1
    assert v['chat_http_responses_total{status="401"}'] >= 1
    assert v["chat_ws_messages_received_total"] >= 3
    assert v["chat_ws_sent_bytes_total"] > 0
    assert v["chat_draining"] == 0
    assert "chat_slow_reader_closes_total" in v


def test_static_files(chatd_factory, tmp_path):
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    files = {
        "index.html": ("<h1>chat</h1>", "text/html"),
        "app.js": ("console.log(1)", "text/javascript"),
        "style.css": ("body{}", "text/css"),
        "data.json": ("{}", "application/json"),
        "logo.png": ("\x89PNG", "image/png"),
        "icon.svg": ("<svg/>", "image/svg+xml"),
        "favicon.ico": ("ico", "image/x-icon"),
        "sub/index.html": ("<p>sub</p>", "text/html"),
    }
    for name, (text, _) in files.items():
        (site / name).write_bytes(text.encode("latin-1"))
    (site / ".secret").write_text("hidden")
    (tmp_path / "outside.txt").write_text("outside")
    os.symlink(tmp_path / "outside.txt", site / "link.txt")
    chatd = chatd_factory(["--static", str(site)])
    r = chatd.http("GET", "/")
    assert r.status == 200 and r.body == b"<h1>chat</h1>"
    assert r.headers["Content-Type"].startswith("text/html")
    for name, (text, mime) in files.items():
        r = chatd.http("GET", "/" + name)
        assert r.status == 200, name
        assert r.body == text.encode("latin-1"), name
        assert r.headers["Content-Type"].split(";")[0] == mime, name
    assert chatd.http("GET", "/sub/").body == b"<p>sub</p>"
    assert chatd.http("GET", "/sub").body == b"<p>sub</p>"
    for bad in ("/.secret", "/link.txt", "/../outside.txt",
                "/%2e%2e/outside.txt", "/sub/../../outside.txt",
                "/missing.html", "/sub/%2e%2e/%2e%2e/outside.txt"):
        r = chatd.http("GET", bad)
        assert r.status == 404, bad
        assert b"outside" not in r.body and b"hidden" not in r.body, bad
    # The API is still the API.
    assert chatd.http("GET", "/healthz").status == 200


def test_keep_alive_posts_on_one_connection(chatd):
    """Browsers send REST requests on keep-alive connections: several
    POSTs with bodies, then GETs, on one socket all get their answers (a
    request's state must not outlive lws's reuse of the connection)."""
    import http.client
    ta = chatd.token("alice", "a")
    conn = http.client.HTTPConnection("127.0.0.1", chatd.port, timeout=30)
    ids = []
    for peer in ("bob", "carol", "dave"):
        body = json.dumps({"type": "direct", "members": [peer]})
        conn.request("POST", "/api/v1/conversations", body=body,
                     headers={"Authorization": "Bearer " + ta,
                              "Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        assert r.status in (200, 201), data
        assert r.getheader("Connection", "").lower() != "close"
        ids.append(json.loads(data)["conversation_id"])
    conn.request("GET", "/api/v1/conversations",
                 headers={"Authorization": "Bearer " + ta})
    r = conn.getresponse()
    listed = {c["conversation_id"] for c in json.loads(r.read())["conversations"]}
    assert r.status == 200 and set(ids) <= listed
    conn.close()

"""The libwebsockets client runner (include/chat/client_lws.h) on real
sockets.

- Two runners on two service threads against chatd, fed only through
  chat_client_lws_post() from the main thread: every message arrives, in
  order; the documented shutdown (quit, stop on the service thread, free
  from another) calls nothing from free (tests/integration/client_runners.c).
- A fatal client error (out of memory decoding a frame) stops the runner,
  and run() reports it.
- Token handling through chat-cli against a scripted server: a session
  closed with 4001 (token_expired) and a REST 401 both make the client ask
  for a token (auth-required) and wait, without reconnecting; the new
  token reconnects, and the held request goes out with it.
"""
import json
import os
import subprocess
import threading
import time

import pytest

from test_client_sdk import CHAT_CLI, Cli, clis  # noqa: F401 (fixture)

RUNNERS = os.environ.get("CLIENT_RUNNERS", "")

pytestmark = pytest.mark.skipif(
    not RUNNERS or not CHAT_CLI,
    reason="client runners not built (needs lws, sqlite and sodium)")


def run_runners(*args, timeout=180):
    p = subprocess.run([RUNNERS] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def test_two_runners_on_two_threads(chatd_factory):
    chatd = chatd_factory(args=["--rate-per-minute", "1000000"])
    url = "ws://127.0.0.1:%d" % chatd.port
    rc, out = run_runners("two", url, chatd.token("alice", "phone"),
                          chatd.token("bob", "laptop"), 300)
    assert rc == 0, out
    assert "delivered 300 in order" in out, out
    assert "freed without callbacks" in out, out
    assert out.rstrip().endswith("ok"), out


def test_fatal_client_error_stops_the_runner(chatd):
    url = "ws://127.0.0.1:%d" % chatd.port
    rc, out = run_runners("nomem", url, chatd.token("alice", "phone"),
                          chatd.token("bob", "laptop"))
    assert rc == 0, out
    assert "run CHAT_ERR_NOMEM: chat_client_on_frame" in out, out


# ---- a scripted server for the token rules ----

HELLO = {"type": "hello", "user_id": "alice", "device_id": "phone",
         "session_id": "s1", "server_ts": 1700000000000,
         "heartbeat_ms": 30000,
         "limits": {"max_body_bytes": 65536, "max_frame_bytes": 131072,
                    "rate_per_minute": 60, "resume_max_messages": 1000,
                    "resume_max_age_ms": 604800000}}


class ScriptedServer:
    """chat.v1 just enough for a client to reach READY: hello, then
    `resumed` once the resume arrives. Every upgrade and REST request is
    logged with its Authorization header. `expire` closes the first
    session with 4001 after the resume; REST answers 401 unless the token
    is in `rest_ok`; an upgrade with a token in `refuse` gets 401."""

    def __init__(self, expire=False, rest_ok=(), refuse=()):
        from websockets.sync.server import serve
        self.expire = expire
        self.rest_ok = set(rest_ok)
        self.refuse = set(refuse)
        self.log = []        # (kind, path, token)
        self.sessions = 0
        self.lock = threading.Lock()
        self.server = serve(self.handler, "127.0.0.1", 0,
                            subprotocols=["chat.v1"],
                            process_request=self.process_request)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def process_request(self, conn, request):
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        rest = request.path.startswith("/api/")
        with self.lock:
            self.log.append(("rest" if rest else "ws", request.path, token))
        if rest:
            if token in self.rest_ok:
                r = conn.respond(200, json.dumps(
                    {"conversations": [], "next_cursor": None}))
            else:
                r = conn.respond(401, json.dumps(
                    {"error": {"code": "unauthorized", "message": "no"}}))
            r.headers["Content-Type"] = "application/json"
            return r
        if token in self.refuse:
            return conn.respond(401, "no")
        return None

    def handler(self, ws):
        with self.lock:
            self.sessions += 1
            first = self.sessions == 1
        ws.send(json.dumps(HELLO))
        try:
            for text in ws:
                f = json.loads(text)
                if f.get("type") == "resume":
                    ws.send(json.dumps({"type": "resumed",
                                        "conversations": 0, "messages": 0}))
                    if self.expire and first:
                        ws.close(4001, "token_expired")
                        return
        except Exception:
            pass

    def upgrades(self):
        with self.lock:
            return [t for k, _, t in self.log if k == "ws"]

    def rests(self):
        with self.lock:
            return [t for k, _, t in self.log if k == "rest"]

    def close(self):
        self.server.shutdown()
        self.thread.join(timeout=10)


@pytest.fixture
def scripted():
    made = []

    def make(**kw):
        s = ScriptedServer(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def test_session_expired_with_4001_waits_for_a_new_token(scripted, clis,
                                                         tmp_path):
    srv = scripted(expire=True)
    cli = Cli(srv.port, "t1", tmp_path / "a.db",
              extra=["--backoff-base-ms", "100", "--backoff-cap-ms", "200"])
    clis.append(cli)
    cli.expect(r"^state ready$")
    cli.expect(r"^state unauthorized$")
    cli.expect(r"^auth-required expired$")
    time.sleep(2)  # a client retrying the old token would do so ~10 times
    assert srv.upgrades() == ["t1"], srv.log
    cli.say("token t2")
    cli.expect(r"^token set$")
    cli.expect(r"^state ready$")
    assert srv.upgrades() == ["t1", "t2"], srv.log
    assert cli.quit() == 0


def test_rest_401_holds_the_request_until_a_new_token(scripted, clis,
                                                      tmp_path):
    srv = scripted(rest_ok={"t2"})
    cli = Cli(srv.port, "t1", tmp_path / "a.db")
    clis.append(cli)
    cli.expect(r"^state ready$")
    cli.say("list")
    cli.expect(r"^request (\d+)$")
    cli.expect(r"^state unauthorized$")
    cli.expect(r"^auth-required refused$")
    time.sleep(1)
    assert srv.rests() == ["t1"], srv.log
    assert not any(l.startswith("done") for l in cli.lines), cli.lines
    cli.say("token t2")
    # The held request and the reconnect race: either may finish first.
    cli.expect(r"^token set$")
    mark = cli.seen
    cli.expect(r"^done \d+ CHAT_OK$")
    cli.seen = mark
    cli.expect(r"^state ready$")
    assert srv.rests() == ["t1", "t2"], srv.log
    assert srv.upgrades()[-1] == "t2", srv.log
    assert cli.quit() == 0


def test_refused_upgrade_then_new_token(scripted, clis, tmp_path):
    srv = scripted(refuse={"bad"})
    cli = Cli(srv.port, "bad", tmp_path / "a.db",
              extra=["--backoff-base-ms", "100", "--backoff-cap-ms", "200"])
    clis.append(cli)
    cli.expect(r"^auth-required refused$")
    time.sleep(1.5)
    assert srv.upgrades() == ["bad"], srv.log
    cli.say("token bad")
    cli.expect(r"^error CHAT_ERR_INVAL token: token: the server refused")
    cli.say("token good")
    cli.expect(r"^state ready$")
    assert srv.upgrades() == ["bad", "good"], srv.log
    assert cli.quit() == 0

"""libchat.Server: the server core embedded in asyncio (aiohttp.web), with
auth, push and presence modules in Python, driven by the Python client,
by the C chat-cli and by a plain websockets client."""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from typing import Any, Optional

import aiohttp
import pytest
from aiohttp import web
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

import libchat
from libchat import Identity, ReceiptState

from conftest import CHAT_CLI, TIMEOUT, is_msg, next_event, wait_for

FAST = dict(backoff_ms=(200, 1000, 50))


class HostSessions:
    """The host application's own login sessions: token -> user, looked
    up asynchronously (as a database would be)."""

    def __init__(self) -> None:
        self.sessions: dict[str, Identity] = {}
        self.calls = 0

    def login(self, user: str, device: str, ttl_ms: int = 0) -> str:
        tok = "sess-%s-%s-%d" % (user, device, len(self.sessions))
        exp = int(time.time() * 1000) + ttl_ms if ttl_ms else 0
        self.sessions[tok] = Identity(user, device, expires_ms=exp)
        return tok

    async def __call__(self, token: str) -> Optional[Identity]:
        self.calls += 1
        await asyncio.sleep(0)
        return self.sessions.get(token)


async def test_python_server_two_python_clients_auth_and_push(tmp_path: Any) -> None:
    host = HostSessions()
    pushed: list[libchat.PushNote] = []

    async def push(note: libchat.PushNote) -> None:
        await asyncio.sleep(0)
        pushed.append(note)

    srv = libchat.Server(str(tmp_path / "chat.db"), auth=host, push=push)
    port = await srv.start()
    url = "ws://127.0.0.1:%d" % port
    try:
        ta, tb = host.login("alice", "a1"), host.login("bob", "b1")
        async with libchat.connect(url, ta) as a, \
                libchat.connect(url, tb, store=str(tmp_path / "b.db")) as b:
            await a.wait_ready(TIMEOUT)
            await b.wait_ready(TIMEOUT)
            conv = await a.create_conversation(["bob"])
            cid = conv.conversation_id
            ack = await a.send(cid, "hi from python")
            m = await next_event(b, is_msg("hi from python"))
            assert m.message.message_id == ack.message_id
            b.mark_read(cid, ack.message_id)
            r = await next_event(a, lambda e: isinstance(e, libchat.ReceiptEvent)
                                 and e.state == ReceiptState.READ)
            assert r.member_id == "bob"
            await b.register_device("apns", "bob-apns-token")
        assert host.calls >= 4          # upgrades and REST requests
        async with libchat.connect(url, ta) as a:
            await a.send(cid, "bob is away")
        await wait_for(lambda: bool(pushed), what="a push note")
        n = pushed[0]
        assert (n.user_id, n.device_id, n.platform, n.push_token) == \
            ("bob", "b1", "apns", "bob-apns-token")
        assert n.conversation_id == cid and n.sender_id == "alice"
        assert "away" not in n.preview
        st = srv.stats()
        assert st["sends_committed_total"] == 2 and st["push_total"] >= 1
    finally:
        await srv.close()


async def _line(proc: Any, pred: Any, timeout: float = TIMEOUT,
                log: Optional[list[str]] = None) -> str:
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("chat-cli printed no matching line; got %r"
                                 % (log or [])[-20:])
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(), left)
        except asyncio.TimeoutError:
            continue
        if not raw:
            raise AssertionError("chat-cli exited; got %r" % (log or [])[-20:])
        line = raw.decode().rstrip("\n")
        if log is not None:
            log.append(line)
        if pred(line):
            return line


@pytest.mark.skipif(not CHAT_CLI or not os.access(CHAT_CLI, os.X_OK),
                    reason="CHAT_CLI (the C chat-cli) not built")
async def test_python_server_driven_by_c_chat_cli(tmp_path: Any) -> None:
    host = HostSessions()
    srv = libchat.Server(":memory:", auth=host)
    port = await srv.start()
    url = "ws://127.0.0.1:%d" % port
    proc = await asyncio.create_subprocess_exec(
        CHAT_CLI, "--url", url, "--token", host.login("alice", "cli"),
        "--db", str(tmp_path / "cli.db"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out: list[str] = []
    try:
        async with libchat.connect(url, host.login("bob", "py")) as bob:
            await bob.wait_ready(TIMEOUT)
            await _line(proc, lambda l: l == "state ready", log=out)
            cid = (await bob.create_conversation(["alice"])).conversation_id
            assert proc.stdin is not None
            proc.stdin.write(("open %s\nsay hello from C\n" % cid).encode())
            await proc.stdin.drain()
            m = await next_event(bob, is_msg("hello from C"))
            assert m.message.sender_id == "alice"
            await _line(proc, lambda l: l.startswith("ack "), log=out)
            ack = await bob.send(cid, "hello from Python")
            line = await _line(proc, lambda l: l.startswith("message "), log=out)
            assert line == "message %s %d bob live hello from Python" % (
                cid, ack.message_id)
            bob.mark_read(cid, m.message.message_id)
            rl = await _line(proc, lambda l: l.startswith("receipt ") and
                             " read" in l, log=out)
            assert str(m.message.message_id) in rl and "bob" in rl
            proc.stdin.write(b"quit\n")
            await proc.stdin.drain()
            assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await srv.close()


async def test_python_server_wire_with_a_plain_websockets_client() -> None:
    host = HostSessions()
    srv = libchat.Server(":memory:", auth=host)
    port = await srv.start()
    base = "ws://127.0.0.1:%d/chat/v1/ws" % port
    try:
        with pytest.raises(InvalidStatus) as e:
            await ws_connect(base, subprotocols=["chat.v1"],  # type: ignore[list-item]
                             additional_headers={"Authorization": "Bearer nope"})
        assert e.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as e:
            await ws_connect(base, subprotocols=["other"],  # type: ignore[list-item]
                             additional_headers={
                                 "Authorization": "Bearer " + host.login("x", "y")})
        assert e.value.response.status_code == 400
        tok = host.login("carol", "c1")
        async with ws_connect(base + "?access_token=" + tok,
                              subprotocols=["chat.v1"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == "chat.v1"
            hello = libchat.decode_frame(await ws.recv())
            assert hello["type"] == "hello" and hello["user_id"] == "carol"
            await ws.send('{"type":"read"}')
            err = libchat.decode_frame(await ws.recv())
            assert err["type"] == "error" and err["code"] == "bad_frame"
            await ws.send(libchat.encode_frame({"type": "ping", "nonce": 7}).decode())
            pong = libchat.decode_frame(await ws.recv())
            assert pong == {"type": "pong", "nonce": 7}
        async with aiohttp.ClientSession() as http:
            r = await http.get("http://127.0.0.1:%d/api/v1/conversations" % port)
            assert r.status == 401
            assert (await r.json())["error"]["code"] == "unauthorized"
            r = await http.post("http://127.0.0.1:%d/api/v1/conversations" % port,
                                headers={"Authorization": "Bearer " + tok},
                                data=b"{not json")
            assert r.status == 400 and "error" in await r.json()
            r = await http.get("http://127.0.0.1:%d/healthz" % port)
            assert r.status == 200
    finally:
        await srv.close()


class SlowPresence(libchat.Presence):
    """A registry that answers get_state later: on the loop (awaitable)
    or from a worker thread (concurrent.futures.Future -> chat_op_post)."""

    def __init__(self, pool: concurrent.futures.Executor) -> None:
        super().__init__()
        self.pool = pool
        self.mode = "async"
        self.asked: list[tuple[str, str]] = []

    def get_state(self, user_id: str) -> Any:
        self.asked.append((self.mode, user_id))
        base = libchat.Presence.get_state
        if self.mode == "thread":
            def work() -> Any:
                time.sleep(0.05)
                return base(self, user_id)
            return self.pool.submit(work)

        async def later() -> Any:
            await asyncio.sleep(0.05)
            return base(self, user_id)
        return later()


async def test_presence_module_answers_later_async_and_from_a_thread() -> None:
    host = HostSessions()
    pool = concurrent.futures.ThreadPoolExecutor(2)
    pres = SlowPresence(pool)
    srv = libchat.Server(":memory:", auth=host, presence=pres)
    port = await srv.start()
    url = "ws://127.0.0.1:%d" % port
    try:
        # users another gateway would have reported
        pres.set_state("dave", "online", 1234)
        pres.set_state("erin", "idle", 5678)
        async with libchat.connect(url, host.login("bob", "b1")) as b:
            await b.wait_ready(TIMEOUT)
            b.watch_presence(["dave"])
            p = await next_event(b, lambda e: isinstance(e, libchat.PresenceEvent))
            assert (p.user_id, p.state, p.last_active_ts) == ("dave", "online", 1234)
            pres.mode = "thread"
            b.watch_presence(["erin"])
            p = await next_event(b, lambda e: isinstance(e, libchat.PresenceEvent)
                                 and e.user_id == "erin")
            assert (p.state, p.last_active_ts) == ("idle", 5678)
        assert ("async", "dave") in pres.asked and ("thread", "erin") in pres.asked
        st = srv.stats()
        assert st["ops_pending_total"] >= 2 and st["ops_in_flight"] == 0
    finally:
        await srv.close()
        pool.shutdown()


async def test_token_expiry_on_the_python_server() -> None:
    host = HostSessions()
    srv = libchat.Server(":memory:", auth=host)
    port = await srv.start()
    try:
        async with libchat.connect(
                "ws://127.0.0.1:%d" % port, host.login("alice", "a1", ttl_ms=1500),
                token_provider=lambda why: host.login("alice", "a1"),
                **FAST) as a:
            await a.wait_ready(TIMEOUT)
            ev = await next_event(a, lambda e: isinstance(e, libchat.AuthRequiredEvent))
            assert ev.reason == libchat.AuthReason.EXPIRED
            await next_event(a, lambda e: isinstance(e, libchat.ConnectionEvent)
                             and e.state == libchat.State.READY)
            conv = await a.create_conversation(["bob"])
            assert (await a.send(conv.conversation_id, "still here")).message_id
        assert srv.stats()["sessions_expired_total"] == 1
    finally:
        await srv.close()


async def test_mounted_into_an_existing_aiohttp_app(tmp_path: Any) -> None:
    srv = libchat.Server(":memory:", token_key=str(tmp_path / "token.key"))
    app = web.Application()

    async def home(request: web.Request) -> web.Response:
        return web.Response(text="the host app")
    app.router.add_get("/", home)
    app.add_routes(srv.routes())
    await srv.open()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as http:
            assert await (await http.get("http://127.0.0.1:%d/" % port)).text() == "the host app"
        tok = srv.mint_token("alice", "a1")
        async with libchat.connect("ws://127.0.0.1:%d" % port, tok) as a:
            await a.wait_ready(TIMEOUT)
            conv = await a.create_conversation(["bob"], )
            assert conv.members == ("alice", "bob")
    finally:
        await runner.cleanup()
        await srv.close()

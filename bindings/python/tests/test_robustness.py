"""Callbacks that raise never crash the process; garbage collection frees
every C object (counted through libchat.live_objects())."""
from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
from typing import Any

import pytest

import libchat
from libchat import Identity

from conftest import TIMEOUT, is_msg, next_event, wait_for


async def test_raising_modules_do_not_crash_the_server(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="libchat")
    calls = {"auth": 0, "push": 0, "state": 0}

    def auth(token: str) -> Identity:
        calls["auth"] += 1
        if token == "boom":
            raise RuntimeError("auth exploded")
        if token == "weird":
            return "not an identity"  # type: ignore[return-value]
        return Identity(token.split("-")[0], token.split("-")[1])

    def push(note: libchat.PushNote) -> None:
        calls["push"] += 1
        raise RuntimeError("push exploded")

    class BadPresence(libchat.Presence):
        def get_state(self, user_id: str) -> Any:
            calls["state"] += 1
            if user_id == "sync":
                raise RuntimeError("get_state exploded")
            if user_id == "thread":
                pool = concurrent.futures.ThreadPoolExecutor(1)
                f = pool.submit(lambda: 1 / 0)
                pool.shutdown(wait=False)
                return f

            async def later() -> Any:
                raise RuntimeError("async get_state exploded")
            return later()

    srv = libchat.Server(":memory:", auth=auth, push=push,
                         presence=BadPresence())
    port = await srv.start()
    url = "ws://127.0.0.1:%d" % port
    try:
        for bad in ("boom", "weird"):
            async with libchat.connect(url, bad) as c:
                ev = await next_event(c, lambda e: isinstance(e, libchat.AuthRequiredEvent))
                assert ev.reason == libchat.AuthReason.REFUSED
        async with libchat.connect(url, "alice-a1") as a, \
                libchat.connect(url, "bob-b1") as b:
            await a.wait_ready(TIMEOUT)
            await b.wait_ready(TIMEOUT)
            cid = (await a.create_conversation(["bob", "carol"], name="g")).conversation_id
            await b.register_device("fcm", "t")
            b.watch_presence(["sync", "thread", "async"])
            await wait_for(lambda: calls["state"] >= 3, what="three get_state calls")
            # carol has a device? no: only registered devices get push; make
            # bob offline-registered by sending while bob's device counts
            await a.send(cid, "after the explosions")
            await next_event(b, is_msg("after the explosions"))
        async with libchat.connect(url, "alice-a1") as a:
            await a.send(cid, "bob offline: push raises")
        await wait_for(lambda: srv.stats()["push_errors_total"] >= 1,
                       what="the push failure to be counted")
        # the server still works after all that
        async with libchat.connect(url, "bob-b1") as b:
            await b.wait_ready(TIMEOUT)
            assert [m.message.body for m in await b.load_older(cid)] == \
                ["after the explosions", "bob offline: push raises"]
    finally:
        await srv.close()
    text = caplog.text
    for what in ("auth exploded", "push exploded", "get_state exploded",
                 "async get_state exploded", "ZeroDivisionError"):
        assert what in text, what


async def test_raising_token_provider_is_reported(chatd: Any) -> None:
    def provider(why: libchat.AuthReason) -> str:
        raise RuntimeError("no login today")

    async with libchat.connect(chatd.url, "bad.token", token_provider=provider,
                               backoff_ms=(200, 1000, 50)) as a:
        err = await next_event(a, lambda e: isinstance(e, libchat.ErrorEvent)
                               and e.name == "token_provider")
        assert "no login today" in err.message
        assert a.state == libchat.State.UNAUTHORIZED
        a.set_token(chatd.token("alice", "a1"))     # the app recovers
        await a.wait_ready(TIMEOUT)


def _make_garbage(url: str, tmp: str) -> None:
    libchat.Codec()
    for i in range(50):
        libchat.Client(url, "t%d" % i, store=":memory:")
    libchat.Client(url, "tok", store=tmp + "/g.db")
    libchat.Server(":memory:")
    libchat.Server(":memory:", token_key=tmp + "/k.key")


async def test_garbage_collection_frees_every_c_object(chatd: Any,
                                                       tmp_path: Any) -> None:
    base = libchat.live_objects()
    assert base == {}
    _make_garbage(chatd.url, str(tmp_path))
    gc.collect()
    assert libchat.live_objects() == {}

    # started objects, abandoned after close, and ones never closed but
    # never started either
    srv = libchat.Server(":memory:", auth=lambda t: Identity(t, "d"))
    port = await srv.start()
    c = await libchat.connect("ws://127.0.0.1:%d" % port, "alice")
    await c.wait_ready(TIMEOUT)
    assert libchat.live_objects() == {"client": 1, "server": 1}
    await c.close()
    await srv.close()
    assert libchat.live_objects() == {}
    del c, srv
    gc.collect()
    assert libchat.live_objects() == {}


async def test_closed_client_refuses_calls(chatd: Any) -> None:
    c = libchat.Client(chatd.url, chatd.token("alice", "a1"))
    await c.start()
    await c.close()
    with pytest.raises(libchat.StateError):
        c.send_nowait("c1", "x")
    with pytest.raises(libchat.StateError):
        await asyncio.wait_for(c.send("c1", "x"), TIMEOUT)
    await c.close()     # twice is fine

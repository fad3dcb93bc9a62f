"""examples/python/chat.py: two users chat through chatd."""
from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import pytest

from conftest import TIMEOUT

EXAMPLE = os.environ.get("LIBCHAT_EXAMPLE", "")


async def _expect(proc: Any, text: str, seen: list[str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            raw = await asyncio.wait_for(proc.stdout.readline(),
                                         deadline - time.monotonic())
        except asyncio.TimeoutError:
            break
        if not raw:
            break
        seen.append(raw.decode().rstrip())
        if text in seen[-1]:
            return
    raise AssertionError("no %r in %r" % (text, seen))


@pytest.mark.skipif(not EXAMPLE, reason="LIBCHAT_EXAMPLE not set")
async def test_example_two_user_chat(chatd: Any, tmp_path: Any) -> None:
    procs = []
    for me, peer in (("alice", "bob"), ("bob", "alice")):
        procs.append(await asyncio.create_subprocess_exec(
            sys.executable, EXAMPLE, chatd.url, chatd.token(me, "term"), peer,
            str(tmp_path / (me + ".db")),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE))
    alice, bob = procs
    seen_a: list[str] = []
    seen_b: list[str] = []
    try:
        alice.stdin.write(b"hello bob\n")
        await alice.stdin.drain()
        await _expect(alice, "(sent, id", seen_a)
        await _expect(bob, "alice: hello bob", seen_b)
        await _expect(alice, "(read by bob)", seen_a)
        bob.stdin.write(b"hi alice\n")
        await bob.stdin.drain()
        await _expect(alice, "bob: hi alice", seen_a)
        for p in procs:
            p.stdin.close()
            assert await asyncio.wait_for(p.wait(), TIMEOUT) == 0
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()

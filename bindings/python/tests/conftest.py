"""The binding's suite: real chatd processes on 127.0.0.1 (port 0, a
temporary data directory), as tests/integration does, plus the Python
embedded server.

CHATD names the chatd binary and CHAT_CLI the C terminal client (the meson
test sets both). Every process is stopped by PID; every wait is bounded
and generous (a loaded two-core machine).
"""
from __future__ import annotations

import asyncio
import gc
import os
import re
import select
import signal
import subprocess
import time
from typing import Any, Awaitable, Callable, Optional, TypeVar

import pytest

import libchat

CHATD = os.environ.get("CHATD", "")
CHAT_CLI = os.environ.get("CHAT_CLI", "")
TIMEOUT = 20.0
T = TypeVar("T")


class Chatd:
    def __init__(self, data_dir: str, log_dir: str, args: list[str]) -> None:
        self.data_dir = data_dir
        self.args = args
        self.log_path = os.path.join(log_dir, "chatd-%d.log" % time.monotonic_ns())
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.port = 0

    def start(self, port: int = 0) -> "Chatd":
        if not CHATD or not os.access(CHATD, os.X_OK):
            pytest.fail("set CHATD to the chatd binary (meson test does)")
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [CHATD, "serve", "--listen", "127.0.0.1:%d" % port,
             "--data-dir", self.data_dir, *self.args],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = b""
        deadline = time.monotonic() + 30
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.kill()
                raise AssertionError("chatd did not start: %r" % line)
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                line += os.read(self.proc.stdout.fileno(), 1)
        m = re.fullmatch(rb"listening on 127\.0\.0\.1:(\d+)\n", line)
        assert m, line
        self.port = int(m.group(1))
        return self

    @property
    def url(self) -> str:
        return "ws://127.0.0.1:%d" % self.port

    def token(self, user: str, device: str, ttl: int = 3600) -> str:
        out = subprocess.run(
            [CHATD, "token", "--data-dir", self.data_dir, "--user", user,
             "--device", device, "--ttl", str(ttl)],
            capture_output=True, timeout=30, check=True)
        return out.stdout.decode().strip()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.log.close()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


@pytest.fixture
def chatd_factory(tmp_path: Any) -> Any:
    made: list[Chatd] = []

    def make(args: tuple[str, ...] = (), start: bool = True,
             data_dir: Optional[str] = None) -> Chatd:
        d = data_dir or str(tmp_path / ("data%d" % len(made)))
        c = Chatd(d, str(tmp_path), list(args))
        made.append(c)
        if start:
            c.start()
        return c

    yield make
    reports = []
    for c in made:
        c.kill()
        log = c.log_text()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                       "runtime error:"):
            if marker in log:
                reports.append(log[max(0, log.index(marker) - 200):][:4000])
    if reports:
        pytest.fail("sanitizer report in chatd's log:\n" + "\n".join(reports))


@pytest.fixture
def chatd(chatd_factory: Any) -> Chatd:
    return chatd_factory()  # type: ignore[no-any-return]


async def wait_for(pred: Callable[[], bool], timeout: float = TIMEOUT,
                   what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        await asyncio.sleep(0.01)


async def next_event(c: libchat.Client, pred: Callable[[Any], bool],
                     timeout: float = TIMEOUT, seen: Optional[list[Any]] = None) -> Any:
    """The first event matching pred (others go to `seen` when given)."""
    async def find() -> Any:
        async for ev in c.events():
            if pred(ev):
                return ev
            if seen is not None:
                seen.append(ev)
        raise AssertionError("the client closed")
    try:
        return await asyncio.wait_for(find(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError("no matching event within %.0fs" % timeout) from None


def is_msg(body: Optional[str] = None) -> Callable[[Any], bool]:
    return lambda ev: isinstance(ev, libchat.MessageEvent) and (
        body is None or ev.message.body == body)


@pytest.fixture(autouse=True)
def no_leaked_objects() -> Any:
    """Every test leaves no live C object behind once its objects are
    garbage."""
    yield
    for _ in range(3):
        gc.collect()
    assert libchat.live_objects() == {}, libchat.live_objects()

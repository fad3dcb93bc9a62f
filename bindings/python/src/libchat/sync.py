"""A small blocking facade over the asyncio client, for scripts and
programs without an event loop::

    from libchat.sync import connect
    with connect(url, token, store="alice.db") as c:
        conv = c.create_conversation(["bob"])
        c.send(conv.conversation_id, "hi")      # returns once acked
        for ev in c.events(timeout=5): ...

It runs one event loop on a background thread per client and hands every
call over to it (the C client is only ever touched by that thread).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from typing import Any, Callable, Coroutine, Iterator, Optional, Sequence, TypeVar

from .client import Client
from .types import (Ack, Conversation, Event, State, StoredMessage)

T = TypeVar("T")


class SyncClient:
    def __init__(self, url: str, token: str, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="libchat-client", daemon=True)
        self._thread.start()
        self._events: "queue.Queue[Optional[Event]]" = queue.Queue()

        async def make() -> Client:
            c = Client(url, token, **kwargs)
            await c.start()
            return c
        try:
            self._client = self._run(make())
        except BaseException:
            self._stop_loop()
            raise
        self._pump = asyncio.run_coroutine_threadsafe(self._forward(),
                                                      self._loop)

    async def _forward(self) -> None:
        async for ev in self._client.events():
            self._events.put(ev)
        self._events.put(None)

    def _run(self, coro: Coroutine[Any, Any, T],
             timeout: Optional[float] = None) -> T:
        fut: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            coro, self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def _call(self, fn: Callable[[], T]) -> T:
        async def run() -> T:
            return fn()
        return self._run(run())

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    # ---------------------------------------------------------------- API --

    def send(self, conversation_id: str, body: str,
             timeout: Optional[float] = None) -> Ack:
        """Send and wait for the ack (TimeoutError after ``timeout``; the
        message stays in the outbox)."""
        return self._run(self._client.send(conversation_id, body), timeout)

    def send_nowait(self, conversation_id: str, body: str) -> str:
        return self._call(lambda: self._client.send_nowait(conversation_id, body))

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        self._run(self._client.wait_ready(timeout))

    def mark_read(self, conversation_id: str, up_to: int) -> None:
        self._call(lambda: self._client.mark_read(conversation_id, up_to))

    def typing(self, conversation_id: str) -> None:
        self._call(lambda: self._client.typing(conversation_id))

    def watch_presence(self, user_ids: Sequence[str]) -> None:
        self._call(lambda: self._client.watch_presence(user_ids))

    def set_token(self, token: str) -> None:
        self._call(lambda: self._client.set_token(token))

    def create_conversation(self, members: Sequence[str],
                            name: Optional[str] = None,
                            timeout: Optional[float] = None) -> Conversation:
        return self._run(self._client.create_conversation(members, name),
                         timeout)

    def conversations(self, timeout: Optional[float] = None) -> list[Conversation]:
        return self._run(self._client.conversations(), timeout)

    def load_older(self, conversation_id: str, before: int = 0,
                   limit: int = 50,
                   timeout: Optional[float] = None) -> list[StoredMessage]:
        return self._run(self._client.load_older(conversation_id, before,
                                                 limit), timeout)

    def messages(self, conversation_id: str, before: int = 0,
                 limit: int = 50) -> list[StoredMessage]:
        return self._call(lambda: self._client.messages(conversation_id,
                                                        before, limit))

    @property
    def state(self) -> State:
        return self._client.state

    def events(self, timeout: Optional[float] = None) -> Iterator[Event]:
        """Events as they come; stops after ``timeout`` seconds without
        one (None: until the client closes)."""
        while True:
            try:
                ev = self._events.get(timeout=timeout)
            except queue.Empty:
                return
            if ev is None:
                return
            yield ev

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._run(self._client.close(), 15)
            try:
                self._pump.result(5)
            except Exception:
                pass
        finally:
            self._stop_loop()

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def connect(url: str, token: str, **kwargs: Any) -> SyncClient:
    """A started :class:`SyncClient`; keyword arguments are those of
    :class:`libchat.Client`."""
    return SyncClient(url, token, **kwargs)

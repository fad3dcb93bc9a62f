"""The asyncio client: libchat's sans-I/O client core driven by the running
event loop, with `websockets` as the WebSocket transport and `aiohttp` for
the REST requests the core asks for.

The core decides everything about the protocol: when to connect and
reconnect (backoff with jitter), what to resume from the local store, what
to send from the outbox, when to flush receipt marks, which REST requests
to make (gap paging, conversation lists, history, devices) and what a 401
or close 4001 means. This module only moves bytes and time:

- ``chat_client_wants()`` CONNECT -> open a WebSocket with the core's token
  (``on_open``, ``on_close`` or ``on_refused`` for an HTTP status);
- WRITE -> ``chat_client_next_frame()`` -> ``ws.send``; CLOSE -> close it;
- REST -> ``chat_client_next_request()`` -> aiohttp -> ``on_response``;
- each inbound text message -> ``chat_client_on_frame()``;
- one timer at ``chat_client_next_deadline()`` -> ``chat_client_on_timer()``.

Every libchat call runs on the event loop's thread, so the core's
one-thread rule holds without locks.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import os
import ssl as _ssl
import urllib.parse
import weakref
from dataclasses import dataclass, field
from typing import (Any, AsyncIterator, Awaitable, Callable, Deque, Optional,
                    Sequence, Union)

from ._native import ffi, lib
from ._util import extern, cstr, cstr_req, log, now_ms, report
from . import _live
from .errors import (ChatError, ConnectionLost, ServerError, StateError,
                     check, error_for, err_name)
from .types import (Ack, AckEvent, AuthReason, AuthRequiredEvent,
                    ConnectionEvent, Conversation, ConversationEvent,
                    ErrorEvent, Event, Message, MessageEvent, Origin,
                    PresenceEvent, ReadSyncEvent, ReceiptEvent, ReceiptState,
                    ResumeEvent, State, StoredMessage, TypingEvent,
                    _PRESENCE)

TokenProvider = Callable[[AuthReason], Union[Optional[str],
                                             Awaitable[Optional[str]]]]

_NEVER = (1 << 64) - 1
_WANT_WRITE = int(lib.CHAT_CLIENT_WANT_WRITE)
_WANT_CLOSE = int(lib.CHAT_CLIENT_WANT_CLOSE)
_WANT_CONNECT = int(lib.CHAT_CLIENT_WANT_CONNECT)
_WANT_REST = int(lib.CHAT_CLIENT_WANT_REST)

# user_data of each C client: a number mapped to a weak reference, so the C
# side never keeps a Python object alive and a collected client is simply
# not found.
_keys = itertools.count(1)
_clients: dict[int, "weakref.ref[Client]"] = {}


def _client_of(ud: Any) -> Optional["Client"]:
    ref = _clients.get(int(ffi.cast("uintptr_t", ud)))
    return ref() if ref is not None else None


def _callback(name: str) -> Callable[[Callable[..., None]],
                                     Callable[..., None]]:
    """Install `fn(client, *args)` as the extern "Python" function `name`;
    whatever it raises is logged, never propagated into C."""
    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        def trampoline(ud: Any, c: Any, *args: Any) -> None:
            try:
                cl = _client_of(ud)
                if cl is not None and cl._c is not None:
                    fn(cl, *args)
            except BaseException:
                report(name)
        trampoline.__name__ = name
        ffi.def_extern(name=name)(trampoline)
        return fn
    return deco


def _free_client(c: Any, key: int) -> None:
    lib.chat_client_free(c)
    _clients.pop(key, None)
    _live.remove("client")


@extern
def _py_env_log(ud: Any, level: int, msg: Any) -> None:
    try:
        text = cstr_req(msg)
        lvl = {0: 40, 1: 30, 2: 20}.get(int(level), 10)
        log.log(lvl, "%s", text)
    except BaseException:
        pass


@dataclass
class _Request:
    future: "asyncio.Future[_Request]"
    conversations: list[Conversation] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    error: Optional[ErrorEvent] = None


def _split_url(url: str) -> tuple[str, str]:
    """(WebSocket URL, REST base URL) from ws[s]://host[:port][/path]."""
    u = urllib.parse.urlsplit(url)
    scheme = {"ws": "ws", "http": "ws", "wss": "wss", "https": "wss"}.get(
        u.scheme)
    if scheme is None or not u.netloc:
        raise ValueError("url: %r is not ws://HOST[:PORT] or wss://..." % url)
    path = u.path if u.path not in ("", "/") else "/chat/v1/ws"
    ws = urllib.parse.urlunsplit((scheme, u.netloc, path, "", ""))
    rest = urllib.parse.urlunsplit(
        ("https" if scheme == "wss" else "http", u.netloc, "", "", ""))
    return ws, rest


class Client:
    """One logged-in device. Use :func:`connect`::

        async with libchat.connect(url, token, store="alice.db") as c:
            await c.send(conv, "hi")           # returns once acked
            async for ev in c.events(): ...

    Everything runs on the event loop that started it; methods must be
    called from that loop (the :mod:`libchat.sync` facade hands calls over
    from other threads).
    """

    def __init__(self, url: str, token: str, *, store: Union[str, "os.PathLike[str]"] = ":memory:",
                 token_provider: Optional[TokenProvider] = None,
                 manual_delivered: bool = False,
                 backoff_ms: Optional[tuple[int, int, int]] = None,
                 receipt_interval_ms: int = 0, hello_timeout_ms: int = 0,
                 max_frame_bytes: int = 0, max_events: int = 10000,
                 ssl: Optional[_ssl.SSLContext] = None,
                 open_timeout: float = 10.0,
                 request_timeout: float = 30.0) -> None:
        self._ws_url, self._rest_url = _split_url(url)
        self._token_provider = token_provider
        self._ssl = ssl
        self._open_timeout = open_timeout
        self._request_timeout = request_timeout
        self._max_frame = max_frame_bytes or (1 << 20)
        self._c: Any = None
        self._key = next(_keys)
        self._events: Deque[Event] = collections.deque()
        self._max_events = max_events
        self.dropped_events = 0
        self._state = State.IDLE
        self._acks: dict[str, asyncio.Future[Ack]] = {}
        self._requests: dict[int, _Request] = {}
        self._current_req: Optional[int] = None
        self._ws: Any = None
        self._conn_task: Optional[asyncio.Task[None]] = None
        self._closing_ws: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._driver: Optional[asyncio.Task[None]] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._kick_ev: Optional[asyncio.Event] = None
        self._ev_flag: Optional[asyncio.Event] = None
        self._state_changed: Optional[asyncio.Event] = None
        self._http: Any = None
        self._started = False
        self._closed = False
        self.hello: Optional[dict[str, Any]] = None

        err = ffi.new("chat_errbuf *")
        env = ffi.new("chat_env *")
        check(lib.chat_env_system(env), "chat_env_system failed")
        env.log = lib._py_env_log
        self._env = env
        settings = ffi.new("chat_client_settings *")
        settings.version = lib.CHAT_CLIENT_SETTINGS_V1
        settings.env = env
        bo = ffi.NULL
        if backoff_ms is not None:
            bo = ffi.new("chat_backoff *")
            bo.version = lib.CHAT_BACKOFF_V1
            bo.base_ms, bo.cap_ms, bo.floor_ms = backoff_ms
        settings.backoff = bo
        settings.receipt_interval_ms = receipt_interval_ms
        settings.hello_timeout_ms = hello_timeout_ms
        settings.max_frame_bytes = max_frame_bytes
        settings.manual_delivered = manual_delivered
        cb = ffi.new("chat_client_callbacks *")
        cb.version = lib.CHAT_CLIENT_CALLBACKS_V1
        cb.on_connection = lib._py_c_connection
        cb.on_hello = lib._py_c_hello
        cb.on_message = lib._py_c_message
        cb.on_ack = lib._py_c_ack
        cb.on_receipt = lib._py_c_receipt
        cb.on_typing = lib._py_c_typing
        cb.on_presence = lib._py_c_presence
        cb.on_state_change = lib._py_c_state_change
        cb.on_conversation = lib._py_c_conversation
        cb.on_error = lib._py_c_error
        cb.on_resume_progress = lib._py_c_resume_progress
        cb.on_wants = lib._py_c_wants
        cb.on_request_done = lib._py_c_request_done
        cb.on_auth_required = lib._py_c_auth_required

        ops = ffi.new("chat_client_store_ops *")
        rc = lib.chat_sqlite_client_store_open(
            ops, os.fsencode(os.fspath(store)), ffi.NULL, err)
        if rc != lib.CHAT_OK:
            raise error_for(rc, cstr_req(err.msg))
        out = ffi.new("chat_client **")
        rc = lib.chat_client_new(out, settings, ops, cb,
                                 ffi.cast("void *", self._key), ffi.NULL, err)
        if rc != lib.CHAT_OK:
            ops.destroy(ops.self)
            raise error_for(rc, cstr_req(err.msg))
        self._c = out[0]
        _clients[self._key] = weakref.ref(self)
        _live.add("client")
        self._finalizer = weakref.finalize(self, _free_client, self._c,
                                           self._key)
        tok = token.encode()
        rc = lib.chat_client_set_token(self._c, tok, len(tok), now_ms())
        if rc != lib.CHAT_OK:
            reason = self._errmsg()
            self._free()
            raise error_for(rc, reason)

    # ------------------------------------------------------------ helpers --

    def _errmsg(self) -> str:
        if self._c is None:
            return ""
        return cstr_req(lib.chat_client_errmsg(self._c))

    def _check(self, rc: int) -> None:
        if rc < 0:
            raise error_for(rc, self._errmsg())

    def _live_c(self) -> Any:
        if self._c is None or self._closed:
            raise StateError(int(lib.CHAT_ERR_STATE), "the client is closed")
        return self._c

    def _free(self) -> None:
        if self._c is not None:
            self._c = None
            self._finalizer()

    def _kick(self) -> None:
        if self._kick_ev is not None:
            self._kick_ev.set()

    def _emit(self, ev: Event) -> None:
        if len(self._events) >= self._max_events:
            self._events.popleft()
            self.dropped_events += 1
        self._events.append(ev)
        if self._ev_flag is not None:
            self._ev_flag.set()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ---------------------------------------------------------- lifecycle --

    async def start(self) -> "Client":
        """Start connecting (and reconnecting) in the background. Returns at
        once: sends are kept in the store's outbox until acked, whenever the
        server is reachable. :meth:`wait_ready` waits for a live session."""
        if self._started:
            return self
        import aiohttp
        self._live_c()
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._kick_ev = asyncio.Event()
        self._ev_flag = asyncio.Event()
        self._state_changed = asyncio.Event()
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._request_timeout),
            trust_env=False)
        self._check(lib.chat_client_start(self._c, now_ms()))
        self._driver = asyncio.ensure_future(self._drive())
        return self

    async def __aenter__(self) -> "Client":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Close gracefully (the server sees 1000) and free the C client.
        Unacked sends stay in the store's outbox; their waiters get
        :class:`ConnectionLost`."""
        if self._closed:
            return
        self._closed = True
        if self._c is not None and self._started:
            lib.chat_client_stop(self._c, now_ms())
            self._kick()
            try:
                await asyncio.wait_for(self._wait_state(State.IDLE), timeout)
            except asyncio.TimeoutError:
                log.warning("libchat: client did not close within %.1fs", timeout)
        tasks = [t for t in [self._driver, self._conn_task, *self._tasks] if t]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except BaseException:
                pass
        if self._ws is not None:
            try:
                await self._ws.close()
            except Exception:
                pass
        if self._http is not None:
            await self._http.close()
        for f in self._acks.values():
            if not f.done():
                f.set_exception(ConnectionLost())
        for r in self._requests.values():
            if not r.future.done():
                r.future.set_exception(ConnectionLost())
        self._acks.clear()
        self._requests.clear()
        self._free()
        if self._ev_flag is not None:
            self._ev_flag.set()

    async def _wait_state(self, *states: State) -> State:
        assert self._state_changed is not None
        while self._state not in states:
            self._state_changed.clear()
            await self._state_changed.wait()
        return self._state

    async def wait_ready(self, timeout: Optional[float] = None) -> None:
        """Wait until the session is live (READY). Raises
        :class:`libchat.AuthError` when the token is refused first."""
        if not self._started:
            await self.start()
        st = await asyncio.wait_for(
            self._wait_state(State.READY, State.UNAUTHORIZED), timeout)
        if st == State.UNAUTHORIZED:
            from .errors import AuthError
            raise AuthError(int(lib.CHAT_ERR_AUTH),
                            "the server refused the token")

    @property
    def state(self) -> State:
        return self._state

    @property
    def outbox_len(self) -> int:
        """Sends not acked yet (in the store's outbox)."""
        return int(lib.chat_client_outbox_len(self._live_c()))

    def set_token(self, token: str) -> None:
        """A fresh token (e.g. after an :class:`AuthRequiredEvent`): the
        client reconnects and resumes with it."""
        tok = token.encode()
        self._check(lib.chat_client_set_token(self._live_c(), tok, len(tok),
                                              now_ms()))
        self._kick()

    def hint_network_up(self) -> None:
        self._check(lib.chat_client_hint_network_up(self._live_c(), now_ms()))
        self._kick()

    # ------------------------------------------------------------- events --

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in order: messages, acks, receipts, typing,
        presence, read sync, conversations, connection states,
        auth-required, resume progress and errors. Events are buffered from
        the start (up to ``max_events``; past that the oldest are dropped
        and counted in ``dropped_events``). Ends when the client closes."""
        while True:
            while self._events:
                yield self._events.popleft()
            if self._closed or self._ev_flag is None:
                return
            self._ev_flag.clear()
            await self._ev_flag.wait()

    def pending_events(self) -> list[Event]:
        """Take the buffered events without waiting."""
        out = list(self._events)
        self._events.clear()
        return out

    # -------------------------------------------------------------- sends --

    def send_nowait(self, conversation_id: str, body: str) -> str:
        """Queue a message (it is in the store's outbox when this returns)
        and return its client_msg_id; the ack comes as an AckEvent."""
        c = self._live_c()
        out = ffi.new("char[]", int(lib.CHAT_CLIENT_MSG_ID_BUF))
        b = body.encode("utf-8")
        self._check(lib.chat_client_send(c, conversation_id.encode(), b,
                                         len(b), out, now_ms()))
        self._kick()
        return cstr_req(out)

    async def send(self, conversation_id: str, body: str) -> Ack:
        """Send a text message; returns once the server acked it (durably
        stored). Offline, it waits in the outbox until a connection takes
        it; wrap it in ``asyncio.wait_for`` to bound the wait (the message
        stays queued). Raises :class:`ServerError` when the server refuses
        it for good (``not_member``...)."""
        if self._loop is None:
            await self.start()
        cmid = self.send_nowait(conversation_id, body)
        fut: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._acks[cmid] = fut
        try:
            return await fut
        finally:
            self._acks.pop(cmid, None)

    def mark_read(self, conversation_id: str, up_to: int) -> None:
        """The user has read up to message ``up_to`` (persisted now, sent
        batched by the core)."""
        self._check(lib.chat_client_mark_read(
            self._live_c(), conversation_id.encode(), up_to, now_ms()))
        self._kick()

    def mark_delivered(self, conversation_id: str, up_to: int) -> None:
        """Only with ``manual_delivered=True``; by default the core marks
        delivered itself."""
        self._check(lib.chat_client_mark_delivered(
            self._live_c(), conversation_id.encode(), up_to, now_ms()))
        self._kick()

    def typing(self, conversation_id: str) -> None:
        """Call on every keystroke; the core paces is_typing frames."""
        self._check(lib.chat_client_typing(self._live_c(),
                                           conversation_id.encode(), now_ms()))
        self._kick()

    def watch_presence(self, user_ids: Sequence[str]) -> None:
        """The users whose presence is wanted (at most 100)."""
        keep = [ffi.new("char[]", u.encode()) for u in user_ids]
        arr = ffi.new("const char *[]", keep) if keep else ffi.NULL
        self._check(lib.chat_client_watch_presence(self._live_c(), arr,
                                                   len(keep), now_ms()))
        self._kick()

    # --------------------------------------------------------------- REST --

    def _request(self, rid: int) -> "asyncio.Future[_Request]":
        fut: asyncio.Future[_Request] = asyncio.get_running_loop().create_future()
        self._requests[rid] = _Request(fut)
        self._kick()
        return fut

    async def _finish(self, rid_p: Any) -> _Request:
        rid = int(rid_p[0])
        try:
            return await self._request(rid)
        finally:
            self._requests.pop(rid, None)

    async def create_conversation(self, members: Sequence[str],
                                  name: Optional[str] = None) -> Conversation:
        """A direct conversation (one other member, no name) or a group."""
        if self._loop is None:
            await self.start()
        keep = [ffi.new("char[]", m.encode()) for m in members]
        arr = ffi.new("const char *[]", keep) if keep else ffi.NULL
        rid = ffi.new("uint32_t *")
        self._check(lib.chat_client_create_conversation(
            self._live_c(), name.encode() if name is not None else ffi.NULL,
            arr, len(keep), rid, now_ms()))
        req = await self._finish(rid)
        if not req.conversations:
            raise ServerError("the server answered without a conversation")
        return req.conversations[-1]

    async def conversations(self) -> list[Conversation]:
        """Fetch the conversation list from the server (also stored)."""
        if self._loop is None:
            await self.start()
        rid = ffi.new("uint32_t *")
        self._check(lib.chat_client_fetch_conversations(self._live_c(), rid,
                                                        now_ms()))
        return (await self._finish(rid)).conversations

    async def load_older(self, conversation_id: str, before: int = 0,
                         limit: int = 50) -> list[StoredMessage]:
        """Page history from the server into the store (``before`` 0: the
        newest page) and return that page from the store, oldest first."""
        if self._loop is None:
            await self.start()
        rid = ffi.new("uint32_t *")
        self._check(lib.chat_client_load_older(
            self._live_c(), conversation_id.encode(), before, limit, rid,
            now_ms()))
        await self._finish(rid)
        page = self.messages(conversation_id, before=before, limit=limit)
        return [m for m in page if not m.pending]

    async def register_device(self, platform: str, push_token: str) -> None:
        """Tie this device's push token to it (``apns``, ``fcm`` or
        ``webpush``)."""
        if self._loop is None:
            await self.start()
        rid = ffi.new("uint32_t *")
        self._check(lib.chat_client_register_device(
            self._live_c(), platform.encode(), push_token.encode(), rid,
            now_ms()))
        await self._finish(rid)

    # -------------------------------------------------------- local reads --

    def messages(self, conversation_id: str, before: int = 0,
                 limit: int = 50) -> list[StoredMessage]:
        """Stored messages with id < ``before`` (0: the newest), oldest
        first, then this conversation's unacked sends."""
        out: list[StoredMessage] = []
        h = ffi.new_handle(out)
        self._check(lib.chat_client_list_messages(
            self._live_c(), conversation_id.encode(), before, limit,
            lib._py_c_list_message, h))
        return out

    def local_conversations(self) -> list[Conversation]:
        """Stored conversations, most recent activity first."""
        out: list[Conversation] = []
        h = ffi.new_handle(out)
        self._check(lib.chat_client_list_conversations(
            self._live_c(), lib._py_c_list_conversation, h))
        return out

    def last_seen(self, conversation_id: str) -> int:
        v = ffi.new("uint64_t *")
        self._check(lib.chat_client_last_seen(self._live_c(),
                                              conversation_id.encode(), v))
        return int(v[0])

    # ------------------------------------------------------------ driving --

    async def _drive(self) -> None:
        assert self._kick_ev is not None and self._loop is not None
        timer: Optional[asyncio.TimerHandle] = None
        try:
            while self._c is not None:
                self._kick_ev.clear()
                await self._pump()
                if self._c is None:
                    return
                now = now_ms()
                d = int(lib.chat_client_next_deadline(self._c))
                if d <= now:
                    self._check(lib.chat_client_on_timer(self._c, now))
                    continue
                if d != _NEVER:
                    timer = self._loop.call_later((d - now) / 1000.0,
                                                  self._kick_ev.set)
                await self._kick_ev.wait()
                if timer is not None:
                    timer.cancel()
                    timer = None
        except asyncio.CancelledError:
            raise
        except ChatError as e:
            # A fatal error of the core: the client is unusable.
            log.error("libchat: client stopped: %s", e)
            self._emit(ErrorEvent(e.name, e.reason))
        except BaseException:
            report("client driver")

    async def _pump(self) -> None:
        c = self._c
        w = int(lib.chat_client_wants(c))
        if w & _WANT_CONNECT and self._conn_task is None:
            self._check(lib.chat_client_on_connecting(c, now_ms()))
            tp = ffi.new("const char **")
            n = ffi.new("size_t *")
            tok = ""
            if lib.chat_client_token(c, tp, n) == lib.CHAT_OK:
                tok = bytes(ffi.buffer(tp[0], n[0])).decode()
            self._conn_task = asyncio.ensure_future(self._connection(tok))
        if w & _WANT_REST:
            rq = ffi.new("chat_client_request *")
            rq.version = lib.CHAT_CLIENT_REQUEST_V1
            while lib.chat_client_next_request(c, rq) == lib.CHAT_OK:
                body = (bytes(ffi.buffer(rq.body, rq.body_len))
                        if rq.body != ffi.NULL else None)
                tp = ffi.new("const char **")
                n = ffi.new("size_t *")
                tok = ""
                if lib.chat_client_token(c, tp, n) == lib.CHAT_OK:
                    tok = bytes(ffi.buffer(tp[0], n[0])).decode()
                self._spawn(self._rest(int(rq.id), cstr_req(rq.method),
                                       cstr_req(rq.path), body, tok))
        if w & (_WANT_WRITE | _WANT_CLOSE):
            frames: list[str] = []
            jp = ffi.new("const char **")
            n = ffi.new("size_t *")
            while lib.chat_client_next_frame(c, jp, n) == lib.CHAT_OK:
                frames.append(bytes(ffi.buffer(jp[0], n[0])).decode())
            ws = self._ws
            if ws is not None:
                try:
                    for f in frames:
                        await ws.send(f)
                except Exception:
                    pass    # the reader reports the close
            if w & _WANT_CLOSE:
                if ws is not None:
                    if self._closing_ws is not ws:
                        self._closing_ws = ws
                        self._spawn(ws.close())
                elif self._conn_task is not None:
                    self._conn_task.cancel()

    async def _connection(self, token: str) -> None:
        """One connection attempt and its reader; reports how it ended to
        the core exactly once."""
        from websockets.asyncio.client import connect as ws_connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus
        code = 0
        refused = 0
        ws = None
        try:
            try:
                ws = await ws_connect(
                    self._ws_url, subprotocols=["chat.v1"],  # type: ignore[list-item]
                    additional_headers={"Authorization": "Bearer " + token},
                    open_timeout=self._open_timeout, compression=None,
                    max_size=self._max_frame + 1024, ssl=self._ssl,
                    proxy=None, close_timeout=2)
            except InvalidStatus as e:
                refused = int(e.response.status_code)
                return
            except (OSError, asyncio.TimeoutError, Exception) as e:
                log.debug("libchat: connect failed: %r", e)
                return
            if self._c is None:
                return
            self._ws = ws
            self._check(lib.chat_client_on_open(self._c, now_ms()))
            self._kick()
            while True:
                data = await ws.recv(decode=False)
                if self._c is None:
                    return
                if isinstance(data, str):
                    data = data.encode()
                self._check(lib.chat_client_on_frame(self._c, data, len(data),
                                                     now_ms()))
                self._kick()
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else 1006
        except asyncio.CancelledError:
            code = 1001
            raise
        finally:
            self._ws = None
            self._conn_task = None
            if ws is not None and self._closed:
                try:
                    await asyncio.shield(ws.close())
                except BaseException:
                    pass
            if self._c is not None:
                if refused:
                    rc = lib.chat_client_on_refused(self._c, refused, now_ms())
                    if rc == lib.CHAT_ERR_INVAL:   # not an HTTP status
                        lib.chat_client_on_close(self._c, 0, now_ms())
                else:
                    lib.chat_client_on_close(self._c, code, now_ms())
                self._kick()

    async def _rest(self, rid: int, method: str, path: str,
                    body: Optional[bytes], token: str) -> None:
        status, data = 0, b""
        headers = {"Authorization": "Bearer " + token}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self._http.request(method, self._rest_url + path,
                                          data=body, headers=headers,
                                          ssl=self._ssl if self._ssl else True
                                          ) as r:
                data = await r.read()
                status = r.status
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.debug("libchat: REST %s %s failed: %r", method, path, e)
        if self._c is None:
            return
        self._current_req = rid
        try:
            self._check(lib.chat_client_on_response(self._c, rid, status, data,
                                                    len(data), now_ms()))
        except ChatError as e:
            if e.code != lib.CHAT_ERR_NOT_FOUND:
                raise
        finally:
            self._current_req = None
        self._kick()

    # ---------------------------------------------------- core callbacks --

    def _on_connection(self, state: int) -> None:
        self._state = State(int(state))
        if self._state_changed is not None:
            self._state_changed.set()
        self._emit(ConnectionEvent(self._state))

    def _on_hello(self, h: Any) -> None:
        self.hello = {"user_id": cstr_req(h.user_id),
                      "device_id": cstr_req(h.device_id),
                      "session_id": cstr_req(h.session_id),
                      "server_ts": int(h.server_ts),
                      "heartbeat_ms": int(h.heartbeat_ms)}

    def _on_message(self, m: Any, origin: int) -> None:
        msg = Message._from_c(m)
        if self._current_req is not None and origin == lib.CHAT_ORIGIN_OLDER:
            r = self._requests.get(self._current_req)
            if r is not None:
                r.messages.append(msg)
        self._emit(MessageEvent(msg, Origin(int(origin))))

    def _on_ack(self, a: Any) -> None:
        ack = Ack(cstr_req(a.client_msg_id), int(a.message_id),
                  int(a.server_ts), bool(a.duplicate))
        f = self._acks.get(ack.client_msg_id)
        if f is not None and not f.done():
            f.set_result(ack)
        self._emit(AckEvent(ack))

    def _on_receipt(self, r: Any) -> None:
        self._emit(ReceiptEvent(
            cstr_req(r.conversation_id), int(r.message_id),
            ReceiptState(int(r.state)), cstr_req(r.member_id),
            int(r.delivered_count) if r.has_counts else None,
            int(r.read_count) if r.has_counts else None))

    def _on_typing(self, conv: Any, user: Any, is_typing: bool) -> None:
        self._emit(TypingEvent(cstr_req(conv), cstr_req(user), bool(is_typing)))

    def _on_presence(self, p: Any) -> None:
        self._emit(PresenceEvent(
            cstr_req(p.user_id), _PRESENCE.get(int(p.state), "offline"),
            int(p.last_active_ts) if p.has_last_active else None))

    def _on_state_change(self, s: Any) -> None:
        self._emit(ReadSyncEvent(cstr_req(s.conversation_id),
                                 int(s.last_read_message_id)))

    def _on_conversation(self, cv: Any) -> None:
        conv = Conversation._from_c(cv)
        if self._current_req is not None:
            r = self._requests.get(self._current_req)
            if r is not None:
                r.conversations.append(conv)
        self._emit(ConversationEvent(conv))

    def _on_error(self, e: Any) -> None:
        wire = None
        name = err_name(int(e.err))
        if e.wire != ffi.NULL:
            wire = cstr(e.wire.code)
            name = "server:" + (wire or "?")
        ev = ErrorEvent(name=name, message=cstr_req(e.message), wire=wire,
                        client_msg_id=cstr(e.client_msg_id),
                        conversation_id=cstr(e.conversation_id),
                        http_status=int(e.http_status),
                        retrying=bool(e.retrying))
        if self._current_req is not None:
            r = self._requests.get(self._current_req)
            if r is not None:
                r.error = ev
        if ev.client_msg_id and not ev.retrying:
            f = self._acks.get(ev.client_msg_id)
            if f is not None and not f.done():
                f.set_exception(ServerError(ev.message, wire=wire))
        self._emit(ev)

    def _on_resume_progress(self, p: Any) -> None:
        self._emit(ResumeEvent(cstr(p.conversation_id), int(p.gaps_open),
                               int(p.messages), bool(p.resumed),
                               bool(p.complete)))

    def _on_request_done(self, rid: int, result: int) -> None:
        r = self._requests.get(int(rid))
        if r is None or r.future.done():
            return
        if result == lib.CHAT_OK:
            r.future.set_result(r)
        else:
            e = r.error
            r.future.set_exception(ServerError(
                e.message if e else err_name(int(result)),
                wire=e.wire if e else None,
                http_status=e.http_status if e else 0, code=int(result)))

    def _on_auth_required(self, reason: int) -> None:
        why = AuthReason(int(reason))
        self._emit(AuthRequiredEvent(why))
        if self._token_provider is not None:
            self._spawn(self._refresh_token(why))

    async def _refresh_token(self, why: AuthReason) -> None:
        assert self._token_provider is not None
        try:
            tok = self._token_provider(why)
            if inspect.isawaitable(tok):
                tok = await tok
        except asyncio.CancelledError:
            raise
        except Exception as e:
            report("token_provider")
            self._emit(ErrorEvent("token_provider", repr(e)))
            return
        if tok and self._c is not None and not self._closed:
            try:
                self.set_token(tok)
            except ChatError as e:
                self._emit(ErrorEvent(e.name, e.reason))


_callback("_py_c_connection")(Client._on_connection)
_callback("_py_c_hello")(Client._on_hello)
_callback("_py_c_message")(Client._on_message)
_callback("_py_c_ack")(Client._on_ack)
_callback("_py_c_receipt")(Client._on_receipt)
_callback("_py_c_typing")(Client._on_typing)
_callback("_py_c_presence")(Client._on_presence)
_callback("_py_c_state_change")(Client._on_state_change)
_callback("_py_c_conversation")(Client._on_conversation)
_callback("_py_c_error")(Client._on_error)
_callback("_py_c_resume_progress")(Client._on_resume_progress)
_callback("_py_c_request_done")(Client._on_request_done)
_callback("_py_c_auth_required")(Client._on_auth_required)
_callback("_py_c_wants")(lambda cl: cl._kick())


@extern
def _py_c_list_message(ud: Any, m: Any) -> None:
    try:
        ffi.from_handle(ud).append(StoredMessage._from_c(m))
    except BaseException:
        report("list_messages")


@extern
def _py_c_list_conversation(ud: Any, cv: Any) -> None:
    try:
        ffi.from_handle(ud).append(Conversation._from_c(cv))
    except BaseException:
        report("list_conversations")


class connect:
    """``async with libchat.connect(url, token, store="alice.db") as c:``,
    or ``c = await libchat.connect(...)`` (then ``await c.close()``).
    Keyword arguments are those of :class:`Client`."""

    def __init__(self, url: str, token: str, **kwargs: Any) -> None:
        self._client = Client(url, token, **kwargs)

    def __await__(self) -> Any:
        return self._client.start().__await__()

    async def __aenter__(self) -> Client:
        return await self._client.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self._client.close()

"""libchat's sans-I/O server core embedded in an asyncio program.

``libchat.Server`` owns a ``chat_server`` (SQLite store by default) and
serves it over aiohttp.web: the WebSocket at ``/chat/v1/ws`` and REST under
``/api/v1/``, either on its own listener (:meth:`Server.start`) or mounted
into the host's aiohttp application (:meth:`Server.routes`).

Modules in Python:

- **auth**: ``auth(token) -> Identity | None`` (or a coroutine), called by
  the transport before the upgrade and for each REST request, so it may
  look the token up in the host's own (async) session store. The C auth
  vtable is synchronous by design (libwebsockets must answer the upgrade
  inside one callback); an asyncio transport can wait, so it does.
  Without ``auth``, ``token_key=PATH`` installs libchat's Ed25519 token
  module (the tokens ``chatd token`` mints); with neither every token is
  refused.
- **push**: ``push(note)`` (or a coroutine) for each offline member's
  device, installed as a ``chat_push_ops`` module; it may not block.
- **presence**: a :class:`Presence` registry (``chat_presence_ops``).
  ``locate`` and ``get_state`` may answer later: return an awaitable and
  the C call answers ``CHAT_PENDING``, then completes its ``chat_op`` on the
  loop when it resolves; return a ``concurrent.futures.Future`` (a worker
  thread's answer) and the worker hands the completion over with
  ``chat_op_post()``, which calls ``env.wake`` -> ``loop.call_soon_threadsafe``
  -> ``chat_server_run_posted()``.

All libchat calls run on the event loop's thread (the server's loop
thread); only ``chat_op_post()`` and ``env.wake`` are called from others.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import json
import os
import threading
import weakref
from dataclasses import dataclass
from typing import (Any, Awaitable, Callable, Iterable, Optional, Union)

from ._native import ffi, lib
from ._util import extern, chat_str, cstr_req, log, now_ms, report
from . import _live
from .errors import ChatError, error_for
from .types import PRESENCE_STATES, _PRESENCE


@dataclass(frozen=True)
class Identity:
    """Who a connection or request is: one user and one device."""
    user_id: str
    device_id: str
    expires_ms: int = 0        # Unix wall-clock ms; 0: never. Then 4001.
    bot: bool = False


@dataclass(frozen=True)
class PushNote:
    """One push hand-off: a member with no device online got a message.
    The preview names the sender, never the body."""
    user_id: str
    device_id: str
    platform: str
    push_token: str
    conversation_id: str
    sender_id: str
    message_id: int
    preview: str


AuthFn = Callable[[str], Union[Optional[Identity],
                               Awaitable[Optional[Identity]]]]
PushFn = Callable[[PushNote], Optional[Awaitable[None]]]
Located = Iterable[tuple[str, str]]
StateAnswer = Optional[tuple[str, int]]


class Presence:
    """A presence registry for one or more servers, in Python. This base
    class keeps everything in memory and answers at once; override
    ``locate``/``get_state`` to answer later (return an awaitable, or a
    ``concurrent.futures.Future`` completed by another thread), e.g. from
    Redis. ``device_online``/``device_offline``/``set_state`` are
    fire-and-forget: they must not block."""

    def __init__(self) -> None:
        self._where: dict[str, set[tuple[str, str]]] = {}
        self._state: dict[str, tuple[str, int]] = {}

    def device_online(self, user_id: str, device_id: str,
                      gateway_id: str) -> None:
        self._where.setdefault(user_id, set()).add((gateway_id, device_id))

    def device_offline(self, user_id: str, device_id: str,
                       gateway_id: str) -> None:
        s = self._where.get(user_id)
        if s is not None:
            s.discard((gateway_id, device_id))
            if not s:
                del self._where[user_id]

    def locate(self, user_id: str) -> Union[
            Located, Awaitable[Located], "concurrent.futures.Future[Located]"]:
        """Every (gateway_id, device_id) of the user connected anywhere."""
        return sorted(self._where.get(user_id, ()))

    def set_state(self, user_id: str, state: str, last_active_ms: int) -> None:
        self._state[user_id] = (state, last_active_ms)

    def get_state(self, user_id: str) -> Union[
            StateAnswer, Awaitable[StateAnswer],
            "concurrent.futures.Future[StateAnswer]"]:
        """(state, last_active_ms), or None for a user never seen."""
        return self._state.get(user_id)


_keys = itertools.count(1)
_servers: dict[int, "weakref.ref[Server]"] = {}


def _server_of(ud: Any) -> Optional["Server"]:
    ref = _servers.get(int(ffi.cast("uintptr_t", ud)))
    return ref() if ref is not None else None


class _Conn:
    __slots__ = ("ws", "sess", "want", "key", "closing")

    def __init__(self, ws: Any, key: int) -> None:
        self.ws = ws
        self.sess: Any = None
        self.want = asyncio.Event()
        self.key = key
        self.closing = False


class _PendingOp:
    """A module call that answered CHAT_PENDING, until it completes."""
    __slots__ = ("server", "op", "kind", "emit", "ctx", "out_state",
                 "out_ts", "result", "status")

    def __init__(self, server: "Server", op: Any, kind: str) -> None:
        self.server = server
        self.op = op
        self.kind = kind
        self.emit: Any = None
        self.ctx: Any = None
        self.out_state: Any = None
        self.out_ts: Any = None
        self.result: Any = None
        self.status = int(lib.CHAT_OK)


def _identity_c(ident: Identity) -> Any:
    out = ffi.new("chat_identity *")
    out.version = lib.CHAT_IDENTITY_V1
    u = ident.user_id.encode()
    d = ident.device_id.encode()
    if not (lib.chat_id_valid(u, len(u)) and lib.chat_id_valid(d, len(d))):
        return None
    out.user_id = u
    out.device_id = d
    out.expires_ms = int(ident.expires_ms)
    out.kind = lib.CHAT_SENDER_BOT if ident.bot else lib.CHAT_SENDER_USER
    return out


def _json_error(status: int, code: str, message: str) -> Any:
    from aiohttp import web
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="chat"'
    return web.Response(
        status=status, headers=headers, content_type="application/json",
        body=json.dumps({"error": {"code": code, "message": message}}).encode())


def _free_server(srv: Any, key: int, keyp: Any) -> None:
    lib.chat_server_free(srv)
    if keyp is not None:
        lib.chat_sodium_key_free(keyp)
    _servers.pop(key, None)
    _live.remove("server")


class Server:
    """The chat server core in this process, on the running event loop::

        srv = libchat.Server("chat.db", auth=check_session)
        port = await srv.start("127.0.0.1", 8080)
        ...
        await srv.close()

    or mounted into an existing aiohttp app: ``app.add_routes(srv.routes())``
    (then ``await srv.open()`` before serving and ``await srv.close()``
    after). ``store`` is the SQLite file (created and migrated as needed;
    ``":memory:"`` for a throwaway one). ``settings`` are chat_server_settings fields (``machine_id``,
    ``max_body_bytes``, ``rate_per_minute``, ``heartbeat_ms``,
    ``presence_offline_ms``, ``max_group_members``,
    ``rest_rate_per_minute``, ``rest_burst``...)."""

    WS_PATH = "/chat/v1/ws"
    API_PREFIX = "/api/v1/"

    def __init__(self, store: Union[str, "os.PathLike[str]"] = "chat.db", *,
                 auth: Optional[AuthFn] = None,
                 token_key: Optional[Union[str, "os.PathLike[str]"]] = None,
                 push: Optional[PushFn] = None,
                 presence: Optional[Presence] = None,
                 sync: str = "full", gateway_id: Optional[str] = None,
                 **settings: int) -> None:
        self._auth = auth
        self._push = push
        self._presence = presence
        self._key = next(_keys)
        self._srv: Any = None
        self._sodium_key: Any = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._kick_ev: Optional[asyncio.Event] = None
        self._driver: Optional[asyncio.Task[None]] = None
        self._conns: dict[int, _Conn] = {}
        self._conn_keys = itertools.count(1)
        self._http_waiting: dict[int, asyncio.Future[tuple[int, str, bytes, int]]] = {}
        self._tags = itertools.count(1)
        self._ops: set[_PendingOp] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: Any = None
        self._modules_alive = True
        # Held by a worker thread while it posts an op completion, and by
        # close() while it stops them: no post can reach a freed server.
        self._post_lock = threading.Lock()
        self._draining = False
        self._closed = False
        self.port: Optional[int] = None
        ud = ffi.cast("void *", self._key)
        self._ud = ud
        err = ffi.new("chat_errbuf *")

        env = ffi.new("chat_env *")
        rc = lib.chat_env_system(env)
        if rc != lib.CHAT_OK:
            raise error_for(rc, "chat_env_system failed")
        env.user_data = ud
        env.log = lib._py_env_log
        env.wake = lib._py_env_wake
        s = ffi.new("chat_server_settings *")
        s.version = lib.CHAT_SERVER_SETTINGS_V1
        s.env = env
        gw = ffi.new("char[]", gateway_id.encode()) if gateway_id else ffi.NULL
        s.gateway_id = gw
        for k, v in settings.items():
            if k in ("version", "env", "gateway_id") or not hasattr(s, k):
                raise TypeError("Server: unknown setting %r" % k)
            setattr(s, k, v)

        storage = ffi.new("chat_storage_ops *")
        opts = ffi.new("chat_sqlite_options *")
        opts.version = lib.CHAT_SQLITE_OPTIONS_V1
        if sync not in ("full", "normal"):
            raise ValueError("sync: 'full' or 'normal', not %r" % (sync,))
        opts.sync = (lib.CHAT_SQLITE_SYNC_FULL if sync == "full"
                     else lib.CHAT_SQLITE_SYNC_NORMAL)
        rc = lib.chat_sqlite_storage_open(storage, os.fsencode(os.fspath(store)),
                                          opts, ffi.NULL, err)
        if rc != lib.CHAT_OK:
            raise error_for(rc, cstr_req(err.msg))
        mods = ffi.new("chat_server_modules *")
        mods.version = lib.CHAT_SERVER_MODULES_V1
        mods.storage = storage
        auth_ops = ffi.new("chat_auth_ops *")
        push_ops = ffi.new("chat_push_ops *")
        pres_ops = ffi.new("chat_presence_ops *")
        keyp = ffi.NULL
        try:
            if auth is None and token_key is not None:
                kp = ffi.new("chat_sodium_key **")
                rc = lib.chat_sodium_key_load_or_create(
                    kp, os.fsencode(os.fspath(token_key)), ffi.NULL, ffi.NULL)
                if rc != lib.CHAT_OK:
                    raise error_for(rc, "token_key %s: cannot load or create"
                                    % os.fspath(token_key))
                keyp = kp[0]
                rc = lib.chat_sodium_auth_ops(auth_ops, keyp, ffi.NULL)
                if rc != lib.CHAT_OK:
                    raise error_for(rc, "chat_sodium_auth_ops failed")
                mods.auth = auth_ops
            if push is not None:
                push_ops.version = lib.CHAT_PUSH_OPS_V1
                push_ops.self = ud
                push_ops.notify = lib._py_push_notify
                push_ops.destroy = lib._py_module_destroy
                mods.push = push_ops
            if presence is not None:
                pres_ops.version = lib.CHAT_PRESENCE_OPS_V1
                pres_ops.self = ud
                pres_ops.device_online = lib._py_pres_online
                pres_ops.device_offline = lib._py_pres_offline
                pres_ops.locate = lib._py_pres_locate
                pres_ops.set_state = lib._py_pres_set_state
                pres_ops.get_state = lib._py_pres_get_state
                pres_ops.destroy = lib._py_module_destroy
                mods.presence = pres_ops
            cb = ffi.new("chat_server_callbacks *")
            cb.version = lib.CHAT_SERVER_CALLBACKS_V1
            cb.on_session_wants = lib._py_s_session_wants
            cb.on_http_response = lib._py_s_http_response
            out = ffi.new("chat_server **")
            # Registered before chat_server_new: it calls storage only, but
            # a wake may come from a module at any time after.
            _servers[self._key] = weakref.ref(self)
            rc = lib.chat_server_new(out, s, mods, cb, ud, ffi.NULL, err)
            if rc != lib.CHAT_OK:
                raise error_for(rc, cstr_req(err.msg))
        except BaseException:
            _servers.pop(self._key, None)
            if mods.auth != ffi.NULL:
                auth_ops.destroy(auth_ops.self)
            storage.destroy(storage.self)
            if keyp != ffi.NULL:
                lib.chat_sodium_key_free(keyp)
            raise
        self._srv = out[0]
        self._sodium_key = keyp if keyp != ffi.NULL else None
        _live.add("server")
        self._finalizer = weakref.finalize(self, _free_server, self._srv,
                                           self._key, self._sodium_key)
        got = ffi.new("chat_server_settings *")
        got.version = lib.CHAT_SERVER_SETTINGS_V1
        lib.chat_server_get_settings(self._srv, got)
        self.max_frame_bytes = int(got.max_frame_bytes)
        self.heartbeat_ms = int(got.heartbeat_ms)

    # ------------------------------------------------------------ helpers --

    def _errmsg(self) -> str:
        return cstr_req(lib.chat_server_errmsg(self._srv)) if self._srv else ""

    def _kick(self) -> None:
        if self._kick_ev is not None:
            self._kick_ev.set()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    def mint_token(self, user_id: str, device_id: str,
                   ttl_s: Optional[float] = 3600) -> str:
        """A token for the ``token_key`` auth module (None: never expires)."""
        if self._sodium_key is None:
            raise RuntimeError("mint_token needs Server(token_key=...)")
        env = ffi.new("chat_env *")
        lib.chat_env_system(env)
        exp = 0 if ttl_s is None else int(env.wall_ms(ffi.NULL) + ttl_s * 1000)
        buf = ffi.new("char[]", int(lib.CHAT_SODIUM_TOKEN_BUF))
        rc = lib.chat_sodium_token_mint(self._sodium_key, user_id.encode(),
                                        device_id.encode(), exp, buf,
                                        len(buf), ffi.NULL)
        if rc != lib.CHAT_OK:
            raise error_for(rc, "cannot mint a token for %r/%r"
                            % (user_id, device_id))
        return cstr_req(buf)

    def stats(self) -> dict[str, int]:
        """The core's counters (chat_server_stats)."""
        st = ffi.new("chat_server_stats *")
        st.version = lib.CHAT_SERVER_STATS_V1
        rc = lib.chat_server_get_stats(self._srv, st)
        if rc != lib.CHAT_OK:
            raise error_for(rc, self._errmsg())
        names = ["sessions_open", "sessions_opened_total", "frames_in_total",
                 "frames_out_total", "sends_committed_total", "commits_total",
                 "deliveries_total", "push_total", "push_errors_total",
                 "sessions_expired_total", "ops_in_flight",
                 "ops_pending_total"]
        return {n: int(getattr(st, n)) for n in names}

    # ---------------------------------------------------------- lifecycle --

    async def open(self) -> None:
        """Start the core's timer on the running loop (``start()`` does it;
        call it yourself when mounting ``routes()`` into your own app)."""
        if self._loop is not None:
            return
        if self._srv is None:
            raise RuntimeError("the server is closed")
        self._loop = asyncio.get_running_loop()
        self._kick_ev = asyncio.Event()
        self._driver = asyncio.ensure_future(self._drive())
        # Work posted before the loop was known (a wake had nowhere to go).
        self._run_posted()

    def routes(self) -> list[Any]:
        """aiohttp route definitions: the WebSocket and REST."""
        from aiohttp import web
        return [web.get(self.WS_PATH, self._ws_handler),
                web.get("/healthz", self._healthz),
                web.route("*", self.API_PREFIX + "{tail:.*}",
                          self._rest_handler)]

    def app(self) -> Any:
        """A fresh aiohttp Application serving only this server."""
        from aiohttp import web
        app = web.Application(client_max_size=11 * 1024 * 1024)
        app.add_routes(self.routes())
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on host:port (0: a free port) with its own aiohttp
        server; returns the port."""
        from aiohttp import web
        await self.open()
        self._runner = web.AppRunner(self.app(), access_log=None,
                                     handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = getattr(site, "_server", None)
        socks = getattr(server, "sockets", None) or []
        self.port = int(socks[0].getsockname()[1]) if socks else port
        return self.port

    async def __aenter__(self) -> "Server":
        await self.open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self, drain_timeout: float = 4.0) -> None:
        """Drain (commit and ack what was read, close sessions with 1001),
        stop listening and free the core and its modules."""
        if self._closed:
            return
        self._closed = True
        if self._srv is not None and self._loop is not None:
            self._draining = True
            lib.chat_server_drain(self._srv, now_ms())
            self._kick()
            for c in self._conns.values():
                c.want.set()
            deadline = asyncio.get_running_loop().time() + drain_timeout
            while self._conns and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
        if self._runner is not None:
            await self._runner.cleanup()
        tasks = [t for t in [self._driver, *self._tasks] if t]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except BaseException:
                pass
        for f in self._http_waiting.values():
            if not f.done():
                f.cancel()
        with self._post_lock:
            self._modules_alive = False
        if self._srv is not None:
            self._srv = None
            self._finalizer()   # chat_server_free: modules destroyed first
        self._ops.clear()

    # ------------------------------------------------------------ driving --

    async def _drive(self) -> None:
        assert self._kick_ev is not None and self._loop is not None
        never = (1 << 64) - 1
        try:
            while self._srv is not None:
                self._kick_ev.clear()
                now = now_ms()
                d = int(lib.chat_server_next_deadline(self._srv))
                if d <= now:
                    rc = lib.chat_server_on_timer(self._srv, now)
                    if rc < 0:
                        log.error("libchat: chat_server_on_timer: %s",
                                  error_for(rc, self._errmsg()))
                        if rc <= lib.CHAT_ERR_FATAL:
                            return
                    # Let the writers send the acks before the next round
                    # (the fan-out) runs.
                    await asyncio.sleep(0)
                    continue
                timer = None
                if d != never:
                    timer = self._loop.call_later((d - now) / 1000.0,
                                                  self._kick_ev.set)
                await self._kick_ev.wait()
                if timer is not None:
                    timer.cancel()
        except asyncio.CancelledError:
            raise
        except BaseException:
            report("server driver")

    def _run_posted(self) -> None:
        if self._srv is not None and self._loop is not None:
            lib.chat_server_run_posted(self._srv, now_ms())
            self._kick()

    # ---------------------------------------------------------- transport --

    async def _authenticate(self, request: Any) -> Any:
        """The chat_identity for the request's token, or None."""
        tok = ""
        h = request.headers.get("Authorization", "")
        if h[:7].lower() == "bearer ":
            tok = h[7:].strip()
        elif "access_token" in request.query:
            tok = request.query.get("access_token", "")
        if not tok:
            return None
        if self._auth is None:
            out = ffi.new("chat_identity *")
            out.version = lib.CHAT_IDENTITY_V1
            t = tok.encode()
            if lib.chat_server_authenticate(self._srv, t, len(t), out) != lib.CHAT_OK:
                return None
            return out
        try:
            ident = self._auth(tok)
            if inspect.isawaitable(ident):
                ident = await ident
        except asyncio.CancelledError:
            raise
        except Exception:
            report("auth")
            return None
        if not isinstance(ident, Identity):
            if ident is not None:
                log.error("libchat: auth returned %r, not an Identity", ident)
            return None
        return _identity_c(ident)

    async def _healthz(self, request: Any) -> Any:
        from aiohttp import web
        if self._draining:
            return web.json_response({"ok": False, "draining": True}, status=503)
        return web.json_response({"ok": True})

    async def _ws_handler(self, request: Any) -> Any:
        from aiohttp import web, WSMsgType
        if self._srv is None or self._loop is None or self._draining:
            return _json_error(503, "unavailable", "server is shutting down")
        offered = [p.strip() for p in
                   request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                   if p.strip()]
        if offered and "chat.v1" not in offered:
            return _json_error(400, "bad_request", "subprotocol chat.v1 required")
        ident = await self._authenticate(request)
        if ident is None:
            return _json_error(401, "unauthorized", "missing or invalid token")
        if self._srv is None:
            return _json_error(503, "unavailable", "server is shutting down")
        ws = web.WebSocketResponse(
            protocols=("chat.v1",), max_msg_size=self.max_frame_bytes,
            heartbeat=self.heartbeat_ms / 1000.0 if self.heartbeat_ms else None,
            compress=False)
        await ws.prepare(request)
        conn = _Conn(ws, next(self._conn_keys))
        sp = ffi.new("chat_session **")
        rc = lib.chat_server_open_session(self._srv, sp, ident,
                                          ffi.cast("void *", conn.key),
                                          now_ms())
        if rc != lib.CHAT_OK:
            await ws.close(code=1013 if rc != lib.CHAT_ERR_STATE else 1001,
                           message=b"session refused")
            return ws
        conn.sess = sp[0]
        self._conns[conn.key] = conn
        conn.want.set()
        self._kick()
        writer = asyncio.ensure_future(self._writer(conn))
        try:
            async for msg in ws:
                if self._srv is None or conn.closing:
                    break
                if msg.type == WSMsgType.TEXT:
                    data = msg.data.encode("utf-8", "surrogatepass")
                    lib.chat_session_on_frame(conn.sess, data, len(data),
                                              now_ms())
                    self._kick()
                elif msg.type == WSMsgType.BINARY:
                    conn.closing = True
                    await ws.close(code=1003, message=b"text frames only")
                    break
                else:
                    break
        finally:
            writer.cancel()
            try:
                await writer
            except BaseException:
                pass
            self._conns.pop(conn.key, None)
            if self._srv is not None:
                lib.chat_server_close_session(self._srv, conn.sess, now_ms())
                self._kick()
        return ws

    async def _writer(self, conn: _Conn) -> None:
        jp = ffi.new("const char **")
        n = ffi.new("size_t *")
        while True:
            await conn.want.wait()
            conn.want.clear()
            if self._srv is None:
                return
            frames: list[str] = []
            while lib.chat_session_next_frame(conn.sess, jp, n) == lib.CHAT_OK:
                frames.append(bytes(ffi.buffer(jp[0], n[0])).decode("utf-8", "surrogatepass"))
            for f in frames:
                await conn.ws.send_str(f)
            if lib.chat_session_wants(conn.sess) & lib.CHAT_WANT_CLOSE:
                rp = ffi.new("const char **")
                code = int(lib.chat_session_close_code(conn.sess, rp))
                reason = ffi.string(rp[0]) if rp[0] != ffi.NULL else b""
                conn.closing = True
                await conn.ws.close(code=code, message=reason)
                return

    async def _rest_handler(self, request: Any) -> Any:
        from aiohttp import web
        if self._srv is None or self._loop is None:
            return _json_error(503, "unavailable", "server is shutting down")
        ident = await self._authenticate(request)
        if ident is None:
            return _json_error(401, "unauthorized", "missing or invalid token")
        body = await request.read()
        if self._srv is None:
            return _json_error(503, "unavailable", "server is shutting down")
        raw_q = request.rel_url.raw_query_string
        q = "&".join(p for p in raw_q.split("&")
                     if p and not p.startswith("access_token="))
        ctype_in = request.headers.get("Content-Type", "")
        keep = [ffi.new("char[]", request.method.encode()),
                ffi.new("char[]", request.rel_url.raw_path.encode()),
                ffi.new("char[]", q.encode()) if q else ffi.NULL,
                ffi.new("char[]", ctype_in.encode()) if ctype_in else ffi.NULL]
        body_c = ffi.from_buffer(body) if body else ffi.NULL
        tag = next(self._tags)
        rq = ffi.new("chat_http_request *")
        rq.version = lib.CHAT_HTTP_REQUEST_V1
        rq.method, rq.path, rq.query, rq.content_type = keep
        rq.body = body_c
        rq.body_len = len(body)
        rq.identity = ident
        rq.tag = ffi.cast("void *", tag)
        resp = ffi.new("chat_http_response *")
        resp.version = lib.CHAT_HTTP_RESPONSE_V1
        rc = lib.chat_server_http(self._srv, rq, resp, now_ms())
        self._kick()
        if rc == lib.CHAT_OK:
            status, ctype, data, retry = _copy_response(resp)
        elif rc == lib.CHAT_PENDING:
            fut: asyncio.Future[tuple[int, str, bytes, int]] = \
                asyncio.get_running_loop().create_future()
            self._http_waiting[tag] = fut
            try:
                status, ctype, data, retry = await fut
            except asyncio.CancelledError:
                if self._srv is not None:
                    lib.chat_server_http_cancel(self._srv, ffi.cast("void *", tag))
                raise
            finally:
                self._http_waiting.pop(tag, None)
        else:
            log.error("libchat: chat_server_http: %s",
                      error_for(rc, self._errmsg()))
            return _json_error(500, "internal", "internal error")
        headers = {"Content-Type": ctype, "Cache-Control": "no-store"}
        if retry:
            headers["Retry-After"] = str(retry)
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="chat"'
        return web.Response(status=status, body=data, headers=headers)

    # ------------------------------------------------------ op completion --

    def _pending(self, op: Any, kind: str, result: Any, **outputs: Any) -> int:
        """Answer a module call later: CHAT_PENDING, then complete."""
        p = _PendingOp(self, op, kind)
        for k, v in outputs.items():
            setattr(p, k, v)
        self._ops.add(p)
        if isinstance(result, concurrent.futures.Future):
            # Another thread answers: it hands the op to the loop thread
            # with chat_op_post (lock-free; calls env.wake).
            handle = ffi.new_handle(p)
            p.result = handle      # keep the handle alive until it runs

            def posted(f: "concurrent.futures.Future[Any]") -> None:
                p.result = (handle, f)
                with self._post_lock:
                    if self._modules_alive:
                        lib.chat_op_post(op, lib._py_op_posted, handle)
            result.add_done_callback(posted)
        else:
            async def wait() -> None:
                try:
                    value = await result
                    status = int(lib.CHAT_OK)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    report("presence.%s" % kind)
                    value, status = None, int(lib.CHAT_ERR_MODULE)
                self._complete(p, value, status)
            self._spawn(wait())
        return int(lib.CHAT_PENDING)

    def _complete(self, p: _PendingOp, value: Any, status: int) -> None:
        """Emit the answer and complete the op (loop thread)."""
        self._ops.discard(p)
        if not self._modules_alive or self._srv is None:
            return
        if status == lib.CHAT_OK:
            try:
                status = self._answer(p, value)
            except Exception:
                report("presence.%s answer" % p.kind)
                status = int(lib.CHAT_ERR_MODULE)
        lib.chat_op_complete(p.op, status)
        self._kick()

    def _answer(self, p: _PendingOp, value: Any) -> int:
        if p.kind == "locate":
            for gw, dev in value or ():
                p.emit(p.ctx, gw.encode(), dev.encode())
            return int(lib.CHAT_OK)
        if value is None:
            return int(lib.CHAT_ERR_NOT_FOUND)
        state, ts = value
        p.out_state[0] = PRESENCE_STATES[state]
        p.out_ts[0] = int(ts)
        return int(lib.CHAT_OK)


def _copy_response(resp: Any) -> tuple[int, str, bytes, int]:
    data = (bytes(ffi.buffer(resp.body, resp.body_len))
            if resp.body != ffi.NULL else b"")
    ctype = cstr_req(resp.content_type) or "application/json"
    return int(resp.status), ctype, data, int(resp.retry_after_s)


# ------------------------------------------------------ C -> Python glue --

@extern
def _py_env_wake(ud: Any) -> None:
    # Any thread: hand "run what was posted" to the loop thread.
    try:
        s = _server_of(ud)
        if s is not None and s._loop is not None and not s._loop.is_closed():
            s._loop.call_soon_threadsafe(s._run_posted)
    except BaseException:
        report("env.wake")


@extern
def _py_s_session_wants(ud: Any, srv: Any, sess: Any, sud: Any) -> None:
    try:
        s = _server_of(ud)
        if s is None:
            return
        c = s._conns.get(int(ffi.cast("uintptr_t", sud)))
        if c is not None:
            c.want.set()
    except BaseException:
        report("on_session_wants")


@extern
def _py_s_http_response(ud: Any, srv: Any, tag: Any, resp: Any) -> None:
    try:
        s = _server_of(ud)
        if s is None:
            return
        f = s._http_waiting.get(int(ffi.cast("uintptr_t", tag)))
        if f is not None and not f.done():
            f.set_result(_copy_response(resp))
    except BaseException:
        report("on_http_response")


@extern
def _py_push_notify(ud: Any, note: Any) -> int:
    try:
        s = _server_of(ud)
        if s is None or s._push is None:
            return int(lib.CHAT_ERR_MODULE)
        n = PushNote(cstr_req(note.user_id), cstr_req(note.device_id),
                     cstr_req(note.platform), cstr_req(note.push_token),
                     cstr_req(note.conversation_id), cstr_req(note.sender_id),
                     int(note.message_id), chat_str(note.preview) or "")
        r = s._push(n)
        if inspect.isawaitable(r):
            async def run(aw: Awaitable[Any]) -> None:
                try:
                    await aw
                except asyncio.CancelledError:
                    raise
                except Exception:
                    report("push")
            s._spawn(run(r))
        return int(lib.CHAT_OK)
    except BaseException:
        report("push")
        return int(lib.CHAT_ERR_MODULE)


@extern
def _py_module_destroy(ud: Any) -> None:
    # chat_server_free destroys the modules: from here on no op is touched.
    try:
        s = _server_of(ud)
        if s is not None:
            s._modules_alive = False
    except BaseException:
        report("module destroy")


def _presence_call(ud: Any, what: str, *args: Any) -> Optional[Any]:
    s = _server_of(ud)
    if s is None or s._presence is None:
        return None
    return getattr(s._presence, what)(*args)


@extern
def _py_pres_online(ud: Any, user: Any, dev: Any, gw: Any) -> int:
    try:
        _presence_call(ud, "device_online", cstr_req(user), cstr_req(dev),
                       cstr_req(gw))
        return int(lib.CHAT_OK)
    except BaseException:
        report("presence.device_online")
        return int(lib.CHAT_ERR_MODULE)


@extern
def _py_pres_offline(ud: Any, user: Any, dev: Any, gw: Any) -> int:
    try:
        _presence_call(ud, "device_offline", cstr_req(user), cstr_req(dev),
                       cstr_req(gw))
        return int(lib.CHAT_OK)
    except BaseException:
        report("presence.device_offline")
        return int(lib.CHAT_ERR_MODULE)


@extern
def _py_pres_set_state(ud: Any, user: Any, state: int, ts: int) -> int:
    try:
        _presence_call(ud, "set_state", cstr_req(user),
                       _PRESENCE.get(int(state), "offline"), int(ts))
        return int(lib.CHAT_OK)
    except BaseException:
        report("presence.set_state")
        return int(lib.CHAT_ERR_MODULE)


@extern
def _py_pres_locate(ud: Any, user: Any, emit: Any, ctx: Any, op: Any) -> int:
    try:
        s = _server_of(ud)
        if s is None or s._presence is None:
            return int(lib.CHAT_ERR_MODULE)
        r = s._presence.locate(cstr_req(user))
        if inspect.isawaitable(r) or isinstance(r, concurrent.futures.Future):
            return s._pending(op, "locate", r, emit=emit, ctx=ctx)
        for gw, dev in r:
            emit(ctx, gw.encode(), dev.encode())
        return int(lib.CHAT_OK)
    except BaseException:
        report("presence.locate")
        return int(lib.CHAT_ERR_MODULE)


@extern
def _py_pres_get_state(ud: Any, user: Any, state: Any, ts: Any, op: Any) -> int:
    try:
        s = _server_of(ud)
        if s is None or s._presence is None:
            return int(lib.CHAT_ERR_MODULE)
        r = s._presence.get_state(cstr_req(user))
        if inspect.isawaitable(r) or isinstance(r, concurrent.futures.Future):
            return s._pending(op, "get_state", r, out_state=state, out_ts=ts)
        if r is None:
            return int(lib.CHAT_ERR_NOT_FOUND)
        state[0] = PRESENCE_STATES[r[0]]
        ts[0] = int(r[1])
        return int(lib.CHAT_OK)
    except BaseException:
        report("presence.get_state")
        return int(lib.CHAT_ERR_MODULE)


@extern
def _py_op_posted(ud: Any, op: Any) -> None:
    # Loop thread, inside chat_server_run_posted: the worker's answer.
    try:
        p: _PendingOp = ffi.from_handle(ud)
        _, f = p.result
        p.result = None
        try:
            value, status = f.result(), int(lib.CHAT_OK)
        except Exception:
            report("presence.%s (thread)" % p.kind)
            value, status = None, int(lib.CHAT_ERR_MODULE)
        p.server._complete(p, value, status)
    except BaseException:
        report("op completion")


__all__ = ["Server", "Identity", "PushNote", "Presence", "ChatError"]

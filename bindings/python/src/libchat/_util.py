"""Small helpers shared by the modules: clocks and C-to-Python conversion."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional, TypeVar

from ._native import ffi

log = logging.getLogger("libchat")


def now_ms() -> int:
    """The monotonic clock the cores get as `now` (milliseconds)."""
    return time.monotonic_ns() // 1_000_000


def cstr(p: Any) -> Optional[str]:
    """A NUL-terminated C string as str (None for NULL)."""
    if p == ffi.NULL:
        return None
    return str(ffi.string(p).decode("utf-8", "surrogateescape"))


def cstr_req(p: Any) -> str:
    s = cstr(p)
    return "" if s is None else s


def chat_str(s: Any) -> Optional[str]:
    """A chat_str (may hold U+0000; ptr NULL means absent)."""
    if s.ptr == ffi.NULL:
        return None
    return bytes(ffi.buffer(s.ptr, s.len)).decode("utf-8", "surrogateescape")


def str_list(arr: Any, n: int) -> list[str]:
    if arr == ffi.NULL:
        return []
    return [cstr_req(arr[i]) for i in range(n)]


def report(what: str) -> None:
    """Log the exception being handled: a callback of the app (or of the
    binding) raised inside a C callback, where it cannot propagate."""
    log.exception("libchat: %s raised; ignored", what)


F = TypeVar("F", bound=Callable[..., Any])


def extern(fn: F) -> F:
    """Install ``fn`` as the extern "Python" function of the same name
    (declared in libchat_build.py)."""
    ffi.def_extern(name=fn.__name__)(fn)
    return fn

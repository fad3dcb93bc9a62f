"""Counts of live C objects made by the binding (codecs, clients,
servers), so tests can prove that garbage collection frees them:
``libchat.live_objects()``."""
from __future__ import annotations

import threading

_lock = threading.Lock()
_counts: dict[str, int] = {}


def add(kind: str) -> None:
    with _lock:
        _counts[kind] = _counts.get(kind, 0) + 1


def remove(kind: str) -> None:
    with _lock:
        _counts[kind] = _counts.get(kind, 0) - 1


def live_objects() -> dict[str, int]:
    """Live C objects by kind ("codec", "client", "server", ...)."""
    with _lock:
        return {k: v for k, v in _counts.items() if v}

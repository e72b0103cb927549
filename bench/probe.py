"""Counts jobs inside a worker process (any framework) and reports over UDP to the harness.

Every benchmark job, whatever the engine, calls :func:`finished` as its last act (and
:func:`started` when it measures latency or in-flight work). A daemon thread per process
sends the cumulative state every few milliseconds to ``BENCH_REPORT_ADDR`` (host:port):
a lost datagram is made good by the next one, so the harness sees exact totals and the
wall-clock time of each process's first and last completed job. The cost per job is one
lock and a few additions, the same for every system measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

REPORT_INTERVAL = 0.005

_lock = threading.Lock()
_state: dict[str, float | int | None] = {
    "pid": None,
    "count": 0,
    "started": 0,
    "first": 0.0,
    "last": 0.0,
}
_latencies: list[float] = []
_dirty = False


def _ensure_reporter() -> None:
    """Start the reporter on this process's first job (forked children start their own)."""
    if _state["pid"] is not None:
        return
    _state.update(pid=os.getpid(), count=0, started=0, first=0.0, last=0.0)
    _latencies.clear()
    address = os.environ.get("BENCH_REPORT_ADDR")
    if address:
        host, port = address.rsplit(":", 1)
        threading.Thread(target=_report_loop, args=(host, int(port)), daemon=True).start()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _state["pid"] = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def started(latency: float | None = None) -> None:
    """A job began; ``latency`` is seconds from its enqueue to now, if known."""
    global _dirty
    with _lock:
        _ensure_reporter()
        _state["started"] = int(_state["started"] or 0) + 1
        if latency is not None:
            _latencies.append(latency)
        _dirty = True


def finished() -> None:
    """A job is done (its handler returns right after this call)."""
    global _dirty
    now = time.time()
    with _lock:
        _ensure_reporter()
        count = int(_state["count"] or 0) + 1
        _state["count"] = count
        if count == 1:
            _state["first"] = now
        _state["last"] = now
        _dirty = True


def latencies() -> list[float]:
    with _lock:
        return list(_latencies)


def _report_loop(host: str, port: int) -> None:
    global _dirty
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    while True:
        time.sleep(REPORT_INTERVAL)
        with _lock:
            if not _dirty:
                continue
            payload = json.dumps(_state).encode()
            _dirty = False
        with contextlib.suppress(OSError):
            sock.sendto(payload, (host, port))

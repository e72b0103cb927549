"""What every section shares: the report collector, child processes, queue cleanup."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import aiormq

AMQP_URL = os.environ.get("LAZARUS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
ROOT = Path(__file__).resolve().parent.parent
WAIT_TIMEOUT = 180.0


def unique(prefix: str) -> str:
    """A fresh name (queue, namespace) for one measurement: lower-case, no dots."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def pipelined(n: int, send: Callable[[], Awaitable[object]], in_flight: int = 1000) -> float:
    """Call ``send`` n times with at most ``in_flight`` unfinished at once; seconds it took.

    How every raw producer of the bench publishes: confirms in flight, never one at a time.
    """
    window = asyncio.Semaphore(in_flight)

    async def one() -> None:
        try:
            await send()
        finally:
            window.release()

    tasks = []
    started = time.perf_counter()
    for _ in range(n):
        await window.acquire()
        tasks.append(asyncio.create_task(one()))
    await asyncio.gather(*tasks)
    return time.perf_counter() - started


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Collector(asyncio.DatagramProtocol):
    """Receives :mod:`bench.probe` reports; sums them over worker processes."""

    def __init__(self) -> None:
        self.state: dict[int, dict[str, Any]] = {}
        self.max_in_flight = 0
        self._changed = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls) -> Collector:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        protocol.transport = transport
        return protocol

    @property
    def address(self) -> str:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        self.state.clear()
        self.max_in_flight = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        report = json.loads(data)
        self.state[int(report["pid"])] = report
        self.max_in_flight = max(self.max_in_flight, self.started - self.done)
        self._changed.set()

    @property
    def done(self) -> int:
        return sum(int(s["count"]) for s in self.state.values())

    @property
    def started(self) -> int:
        return sum(int(s["started"]) for s in self.state.values())

    def span(self) -> tuple[float, float]:
        """Wall-clock time of the first and of the last completed job, over all processes."""
        active = [s for s in self.state.values() if s["count"]]
        return min(s["first"] for s in active), max(s["last"] for s in active)

    async def wait(
        self,
        count: int,
        timeout: float | None = None,
        what: str = "jobs",
        watch: Child | None = None,
    ) -> None:
        """Until ``count`` jobs are done; gives up early if ``watch`` saw a forced close.

        The default timeout allows at least 100 jobs/s (and WAIT_TIMEOUT at the least).
        """
        if timeout is None:
            timeout = max(WAIT_TIMEOUT, count / 100)
        deadline = time.monotonic() + timeout
        next_look = 0.0
        while self.done < count:
            if watch is not None and time.monotonic() >= next_look:
                next_look = time.monotonic() + 0.5
                if watch.forced_close():
                    raise Disturbed(f"{watch.name}: broker forced the connection closed mid-run")
            self._changed.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.done} of {count} {what} done after {timeout:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(left, 1.0))


def child_env(report_addr: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["BENCH_REPORT_ADDR"] = report_addr
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class Disturbed(RuntimeError):
    """The broker closed our connections mid-measurement (another suite's fault tests)."""


FORCED_CLOSE_MARKERS = ("CONNECTION_FORCED", "ConnectionForced")


def check_undisturbed(child: Child, left_in_queue: int | None) -> None:
    """Refuse a figure from a run the broker disturbed: it would measure the reconnect."""
    if child.forced_close():
        raise Disturbed(f"{child.name}: broker forced the connection closed; see {child.log_path}")
    if left_in_queue:
        raise Disturbed(f"{child.name}: {left_in_queue} messages left in the queue after the run")


class Child:
    """A worker process of the benchmark (Lazarus or a peer), stopped with SIGTERM."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str, log_path: Path) -> None:
        self.proc = proc
        self.name = name
        self.log_path = log_path

    @classmethod
    async def start(cls, name: str, argv: list[str], env: dict[str, str]) -> Child:
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{name}-{os.getpid()}.log"
        log = open(log_path, "wb")  # noqa: ASYNC230, SIM115 (a local file; the child owns it)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        return cls(proc, name, log_path)

    def forced_close(self) -> bool:
        """Whether the child logged a connection the broker forced closed."""
        text = self.log_path.read_text(errors="replace")
        return any(marker in text for marker in FORCED_CLOSE_MARKERS)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def wait_line(self, expected: str, timeout: float = 60.0) -> None:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(
                        f"{self.name} exited before '{expected}'; see {self.log_path}"
                    )
                if line.decode().strip() == expected:
                    return

    async def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the process group (pools have children); SIGKILL it after ``timeout``."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        return self.proc.returncode


async def run_json(argv: list[str], env: dict[str, str], timeout: float = 300.0) -> dict[str, Any]:
    """Run a producer script that prints one JSON object as its last line of stdout."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()  # a producer stuck after a forced close: give up on this try
        await proc.wait()
        raise Disturbed(f"{' '.join(argv[1:4])} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        last = (err.decode().strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{' '.join(argv[1:4])} failed ({proc.returncode}): {last}")
    return json.loads(out.decode().strip().splitlines()[-1])


def python(*module_args: str) -> list[str]:
    return [sys.executable, *module_args]


async def queue_depth(name: str) -> int | None:
    """Ready messages in a queue (passive declare), or None if it does not exist."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return None
        result = queue.declaration_result
        return int(result.message_count or 0)
    finally:
        await connection.close()


async def delete(queues: list[str], exchanges: list[str] = ()) -> None:  # type: ignore[assignment]
    """Delete queues and exchanges, ignoring the ones that do not exist."""
    connection = await aio_pika.connect(AMQP_URL)
    try:
        for name in queues:
            channel = await connection.channel()
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.queue_delete(name)
            if not channel.is_closed:
                await channel.close()
        for name in exchanges:
            channel = await connection.channel()
            with contextlib.suppress(aiormq.exceptions.AMQPError):
                await channel.exchange_delete(name)
            if not channel.is_closed:
                await channel.close()
    finally:
        await connection.close()


async def drain(
    collector: Collector, children: list[Child], n: int, queue: str
) -> tuple[float, float, int | None]:
    """Wait until ``children`` finished N jobs from ``queue``, stop them, and refuse a run
    the broker disturbed; (first, last) finished job's wall-clock time and what is left."""
    try:
        await collector.wait(n, watch=children[0])
    finally:
        await stop_all(children)
    first, last = collector.span()
    left = await queue_depth(queue)
    for child in children:
        check_undisturbed(child, left)
    return first, last, left


async def stop_all(children: list[Child]) -> None:
    """Stop every child still running (a measurement that failed half way leaves none)."""
    for child in children:
        await child.stop()

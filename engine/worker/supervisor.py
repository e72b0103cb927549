"""``lazarus worker --processes N``: N worker processes from one command, kept running.

Each child is ``lazarus worker`` itself with ``--processes 1`` (spawned, not forked: no
event loop, connection or thread is shared), so a child is exactly the worker a user
starts by hand. The supervisor holds no connection of its own. It restarts a child that
dies (after a pause that grows while children keep dying young, so a worker that cannot
start does not spin), and on SIGTERM or SIGINT passes the signal on to every child and
waits for them: each drains its in-flight jobs within ``LAZARUS_SHUTDOWN_GRACE``; one
still alive some seconds after that is killed, its jobs left to redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger("lazarus.supervisor")

INDEX_VARIABLE = "LAZARUS_WORKER_INDEX"  # which child a process is (0 to N-1), for its logs
YOUNG = 10.0  # a child that dies sooner than this after its start died young
MAX_PAUSE = 30.0  # the longest pause before a restart
KILL_AFTER = 10.0  # seconds past the grace before a child that will not stop is killed
PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies


@dataclass
class Child:
    """One worker process and how it has fared."""

    index: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    pause: float = 1.0  # before its next restart; doubles while it dies young
    restarts: int = 0
    exits: list[int] = field(default_factory=list)


class Supervisor:
    """Runs ``argv`` (a worker command line) ``count`` times and keeps it running."""

    def __init__(self, argv: Sequence[str], count: int, grace: float, env: dict[str, str]) -> None:
        self.argv = list(argv)
        self.children = [Child(i) for i in range(count)]
        self.grace = grace
        self.env = env
        self.stopping = asyncio.Event()

    async def run(self) -> int:
        """Until SIGTERM or SIGINT; the exit code: 0 if every child stopped cleanly."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        log.info("supervising %d worker processes", len(self.children))
        watchers = [asyncio.create_task(self._keep(child)) for child in self.children]
        await self.stopping.wait()
        log.info("stopping %d worker processes", len(self.children))
        for child in self.children:
            self._signal(child, signal.SIGTERM)
        codes = await asyncio.gather(*watchers)
        # A child still importing when the SIGTERM came had no handler yet: it ended by
        # the signal itself, with nothing in flight. That is a clean stop too.
        return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1

    async def _keep(self, child: Child) -> int:
        """Start the child and start it again whenever it dies, until stopping; return
        its last exit code."""
        while True:
            await self._start(child)
            code = await self._wait(child)
            child.exits.append(code)
            if self.stopping.is_set():
                return code
            lived = time.monotonic() - child.started
            child.pause = min(child.pause * 2, MAX_PAUSE) if lived < YOUNG else 1.0
            log.warning(
                "worker process %d (pid %s) exited with %d after %.1f s; restarting in %.0f s",
                child.index, child.process.pid if child.process else "?", code, lived,
                child.pause,
            )  # fmt: skip
            try:
                await asyncio.wait_for(self.stopping.wait(), child.pause)
                return code  # stopping while it was down: nothing to stop
            except TimeoutError:
                child.restarts += 1

    async def _start(self, child: Child) -> None:
        env = self.env | {INDEX_VARIABLE: str(child.index)}
        child.process = await asyncio.create_subprocess_exec(
            *self.argv, env=env, preexec_fn=die_with_parent
        )
        child.started = time.monotonic()

    async def _wait(self, child: Child) -> int:
        """The child's exit code; once stopping, kill it if it outlives the grace."""
        assert child.process is not None
        waiting = asyncio.ensure_future(child.process.wait())
        stopping = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            try:
                return await asyncio.wait_for(asyncio.shield(waiting), self.grace + KILL_AFTER)
            except TimeoutError:
                log.error("worker process %d did not stop in time: killing it", child.index)
                self._signal(child, signal.SIGKILL)
                return await waiting
            finally:
                stopping.cancel()
        stopping.cancel()
        return waiting.result()

    @staticmethod
    def _signal(child: Child, signum: int) -> None:
        if child.process is not None and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it died meanwhile
                child.process.send_signal(signum)


def die_with_parent() -> None:
    """In a child, before it runs: be killed when the supervisor dies, even by SIGKILL, as
    a single worker killed that way dies with its jobs (they go back to their queues).
    Linux only (prctl PR_SET_PDEATHSIG); elsewhere an orphan runs until it is stopped."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def child_argv(args: Sequence[str]) -> list[str]:
    """The command line of one child: this ``lazarus worker`` with ``--processes 1``."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        kept.append(arg)
    return [sys.executable, "-m", "engine.cli.main", *kept, "--processes", "1"]

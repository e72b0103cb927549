"""Drive the installed ``lazarus`` command like a user: real processes, real services."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from engine.pg.store import Store
from tests.conftest import AMQP_URL, DATABASE_URL, delete_namespace, make_settings, unique_namespace

LAZARUS = shutil.which("lazarus", path=str(Path(sys.executable).parent)) or "lazarus"


@dataclass
class Cli:
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [LAZARUS, *args],
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn(self, log: Path, *args: str) -> subprocess.Popen[bytes]:
        """Start a long-running command, its output going to ``log``."""
        with log.open("wb") as out:
            return subprocess.Popen(
                [LAZARUS, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )


@pytest.fixture
async def cli() -> AsyncIterator[Cli]:
    namespace = unique_namespace()
    env = dict(os.environ) | {
        "LAZARUS_AMQP_URL": AMQP_URL,
        "LAZARUS_DATABASE_URL": DATABASE_URL,
        "LAZARUS_NAMESPACE": namespace,
        "LAZARUS_QUEUE_TYPE": "classic",
        "LAZARUS_UNKNOWN_TYPE_GRACE": "0",  # tests that mean a rolling deploy set their own
        # One worker process per `lazarus worker` (the one a supervisor runs N of), so a
        # test's worker is one process it can signal; test_cli_processes.py runs several.
        "LAZARUS_WORKER_PROCESSES": "1",
    }
    yield Cli(env)
    store = Store(make_settings(namespace))
    await store.connect(require_schema=False)
    await store.drop_schema()
    await store.close()
    await delete_namespace(namespace, ["default"])


def wait_for_output(
    process: subprocess.Popen[bytes], log: Path, text: str, timeout: float = 30
) -> None:
    """Wait until the process has printed ``text`` (it logs when it is ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    pytest.fail(f"process never printed {text!r}; output: {log.read_text()[-2000:]}")


@pytest.fixture
def worker(cli: Cli, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``lazarus worker handlers.examples`` process, stopped with SIGTERM afterwards."""
    assert cli.run("migrate").returncode == 0
    log = tmp_path / "worker.log"
    process = cli.spawn(log, "worker", "handlers.examples", "--concurrency", "8")
    wait_for_output(process, log, "consuming")
    yield process
    process.terminate()
    process.wait(timeout=30)


@contextlib.contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)

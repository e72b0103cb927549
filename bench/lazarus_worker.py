"""A Lazarus worker process for the benchmark: ``python -m bench.lazarus_worker``.

Does what ``lazarus worker`` does (same Worker class, settings from LAZARUS_*),
loads :mod:`bench.jobs`, prints ``ready`` once consuming, and on SIGTERM stops and
writes the latencies its jobs recorded to ``BENCH_LATENCY_FILE`` (if set).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from pathlib import Path

from bench import jobs, probe  # noqa: F401  (jobs registers the handlers)
from engine import loop as event_loop
from engine.pg.store import Store
from engine.settings import load_settings
from engine.worker.consume import Worker
from engine.worker.runner import DeadLetterService, open_store


async def run(queue: str, concurrency: int, record: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    settings = load_settings()
    # As `lazarus worker` (record on): job-state tracking, the recorder and the relay, all on
    # one store; with record off, no database at all.
    store = Store(settings, min_size=0, max_size=8) if record else None
    if store is not None:
        await open_store(store)
    worker = Worker(settings, [queue], concurrency=concurrency, store=store)
    await worker.start()
    service = None
    if store is not None:
        service = DeadLetterService(settings, worker.broker, store)
        await service.start()
    print("ready", flush=True)
    await stop.wait()
    if service is not None:
        await service.stop()
    await worker.stop(grace=10)
    if store is not None:
        await store.close()
    path = os.environ.get("BENCH_LATENCY_FILE")
    if path:
        await asyncio.to_thread(Path(path).write_text, json.dumps(probe.latencies()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queue", default="default")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--record", action="store_true", help="track job states, record dead letters"
    )
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("BENCH_LOG_LEVEL", "WARNING"))
    # The event loop `lazarus worker` runs on (LAZARUS_EVENT_LOOP, uvloop by default).
    event_loop.run(run(args.queue, args.concurrency, args.record), load_settings().event_loop)


if __name__ == "__main__":
    main()

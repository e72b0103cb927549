"""Peak memory of ``lazarus dead requeue --all`` against the number of dead letters.

``python -m bench.requeue_memory [--sizes 20000,100000]``: for each size, a throw-away
namespace gets that many dead-letter rows (inserted directly, each with the body of a
``noop`` job), then the CLI requeues them all in a process of its own under
``/usr/bin/time -v``; prints the rows moved, the wall time and the process's maximum
resident set size. A streamed requeue keeps the peak the same whatever the size.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.common import child_env, queue_depth
from bench.lazarus import QUEUE, fresh_namespace
from engine.amqp.topology import work_queue
from engine.client import build_message
from engine.message import encode
from engine.pg.store import DeadRecord

INSERT_BATCH = 5_000


def record(i: int) -> DeadRecord:
    message = build_message("noop", {"i": i}, QUEUE, None, None, None)
    return DeadRecord(
        job_id=message.id,
        generation=0,
        job_type="noop",
        queue=QUEUE,
        payload={"i": i},
        body=encode(message),
        headers={},
        attempts=1,
        max_retries=message.max_retries,
        reason="permanent error",
        error_type="RuntimeError",
        error_message="dies on purpose",
        traceback="Traceback (most recent call last):\n  ...\nRuntimeError: dies on purpose\n",
        checkpoint=None,
        enqueued_at=message.created_at,
        died_at=datetime.now(UTC),
        worker="bench",
    )


async def measure(size: int) -> dict[str, object]:
    async with fresh_namespace() as (settings, store):
        assert store is not None
        ns = settings.namespace
        for start in range(0, size, INSERT_BATCH):
            await store.insert_dead(
                [record(i) for i in range(start, min(size, start + INSERT_BATCH))]
            )
        env = child_env("", LAZARUS_NAMESPACE=ns, LAZARUS_QUEUE_TYPE=settings.queue_type.value)
        env.pop("BENCH_REPORT_ADDR", None)
        proc = await asyncio.create_subprocess_exec(
            "/usr/bin/time",
            "-v",
            str(Path(sys.executable).parent / "lazarus"),
            "dead",
            "requeue",
            "--all",
            "--json",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"requeue failed ({proc.returncode}): {err.decode()[-2000:]}")
        stats = err.decode()
        peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stats)[1])  # type: ignore[index]
        wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", stats)[1]  # type: ignore[index]
        queued = await queue_depth(work_queue(ns, QUEUE))
    return {
        "dead_letters": size,
        "cli_output": out.decode().strip(),
        "queued_after": queued,
        "wall": wall,
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


async def main(sizes: list[int]) -> None:
    for size in sizes:
        print(await measure(size), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.requeue_memory")
    parser.add_argument("--sizes", default="20000,100000")
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")]))

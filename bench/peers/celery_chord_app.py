"""Celery chord peer of ``bench.workflows``: a fan-in of N no-op items on a Redis backend.

``python -m bench.peers.celery_chord_app ping`` sends one task that appends ``ping`` to
``BENCH_WF_RUNS`` (the harness waits for it: the worker consumes). ``... chord N TAG
[--flaky]`` sends ``chord(group(item.s(i) for i in range(N)), join.s(TAG))`` and prints
the wall-clock time just before it. Broker settings are those of
:mod:`bench.peers.celery_app` (confirmed persistent publishes, acks_late, the same
prefetch); results go to Redis (``BENCH_REDIS_URL``) under the key prefix
``BENCH_REDIS_PREFIX``, which the harness deletes afterwards.

With ``--flaky`` an item whose index is a multiple of 100 raises on its first run and is
retried once by ``autoretry_for`` after ``WF_RETRY_DELAY`` s, as the Lazarus items of
``wf_item_flaky`` are. ``join`` appends ``TAG wall-clock-start results`` to
``BENCH_WF_RUNS`` on every run, so its runs are counted.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from celery import Celery, chord, group
from kombu import Exchange, Queue

from bench import probe
from bench.jobs import FLAKY_EVERY, WF_RETRY_DELAY

QUEUE = os.environ.get("BENCH_QUEUE", "bench_celery_chord")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")

app = Celery(
    "bench_chord",
    broker=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1//"),
    backend=REDIS_URL,
)
app.conf.update(
    task_queues=[Queue(QUEUE, Exchange(QUEUE, type="direct", durable=True), routing_key=QUEUE)],
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_default_delivery_mode="persistent",
    task_acks_late=True,  # ack after the task ran, like Lazarus
    broker_transport_options={"confirm_publish": True},  # wait for the broker's confirm
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH_MULTIPLIER", "4")),
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
    # A chord needs its items' results: they go to Redis, under a prefix of this run.
    result_backend_transport_options={
        "global_keyprefix": os.environ.get("BENCH_REDIS_PREFIX", "bench_chord:")
    },
    result_expires=3600,
)

_runs_fd: int | None = None


def _record(line: str) -> None:
    global _runs_fd
    if _runs_fd is None:
        _runs_fd = os.open(os.environ["BENCH_WF_RUNS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(_runs_fd, f"{line}\n".encode())


class Flaky(Exception):
    """An item's first run fails with this; ``autoretry_for`` retries it once."""


@app.task(name="bench_ping", ignore_result=True)
def ping() -> None:
    _record(f"ping {time.time()!r}")


@app.task(
    name="bench_item",
    bind=True,
    autoretry_for=(Flaky,),
    retry_kwargs={"max_retries": 1, "countdown": WF_RETRY_DELAY},
    retry_backoff=False,
    retry_jitter=False,
)
def item(self: Any, index: int, flaky: bool) -> None:
    if flaky and self.request.retries == 0 and index % FLAKY_EVERY == 0:
        raise Flaky(f"item {index} fails its first run")
    probe.finished()


@app.task(name="bench_join")
def join(results: list[Any], tag: str) -> None:
    _record(f"{tag} {time.time()!r} {len(results)}")


def send_chord(n: int, tag: str, flaky: bool) -> None:
    ping.apply_async()  # connects and declares; not timed (its run is not awaited)
    started = time.time()
    chord(group(item.s(i, flaky) for i in range(n)), join.s(tag)).apply_async()
    print(json.dumps({"started": started, "publish_s": time.time() - started}))


if __name__ == "__main__":
    if sys.argv[1] == "ping":
        ping.apply_async()
        print(json.dumps({"sent": time.time()}))
    else:
        send_chord(int(sys.argv[2]), sys.argv[3], "--flaky" in sys.argv[4:])

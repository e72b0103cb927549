"""Celery peer: ``python -m bench.peers.celery_app N`` publishes N no-op tasks."""

from __future__ import annotations

import json
import os
import sys
import time

from celery import Celery
from kombu import Exchange, Queue

from bench import probe

QUEUE = os.environ.get("BENCH_QUEUE", "bench_celery")

app = Celery("bench", broker=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1//"))
app.conf.update(
    task_queues=[Queue(QUEUE, Exchange(QUEUE, type="direct", durable=True), routing_key=QUEUE)],
    task_default_queue=QUEUE,
    task_default_exchange=QUEUE,
    task_default_routing_key=QUEUE,
    task_default_delivery_mode="persistent",
    task_acks_late=True,  # ack after the task ran, like Lazarus
    task_ignore_result=True,
    broker_transport_options={"confirm_publish": True},  # wait for the broker's confirm
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH_MULTIPLIER", "4")),
    worker_enable_remote_control=False,
    worker_send_task_events=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop() -> None:
    probe.finished()


def produce(n: int) -> None:
    noop.apply_async()  # connects and declares; not timed
    started = time.perf_counter()
    for _ in range(n - 1):
        noop.apply_async()
    publish_s = (time.perf_counter() - started) * n / (n - 1)
    print(json.dumps({"publish_s": publish_s}))


if __name__ == "__main__":
    produce(int(sys.argv[1]))

"""Dramatiq peer: ``python -m bench.peers.dramatiq_app N [noop|die]`` publishes N messages.

``noop`` finishes at once; ``die`` raises with no retries, so Dramatiq nacks it and
RabbitMQ moves it to the queue's ``.XQ`` dead-letter queue (Dramatiq's dead-letter path).
"""

from __future__ import annotations

import json
import os
import sys
import time

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench import probe

QUEUE = os.environ.get("BENCH_QUEUE", "bench_dramatiq")

broker = RabbitmqBroker(
    url=os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    confirm_delivery=True,  # wait for the broker's confirm on every enqueue
)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", queue_name=QUEUE, max_retries=0)
def noop() -> None:
    probe.finished()


@dramatiq.actor(actor_name="die", queue_name=QUEUE, max_retries=0)
def die() -> None:
    probe.finished()
    raise RuntimeError("die dies on purpose")


def produce(n: int, actor: dramatiq.Actor[[], None]) -> None:
    actor.send()  # connects and declares; not timed
    started = time.perf_counter()
    for _ in range(n - 1):
        actor.send()
    publish_s = (time.perf_counter() - started) * n / (n - 1)
    broker.close()
    print(json.dumps({"publish_s": publish_s}))


if __name__ == "__main__":
    produce(int(sys.argv[1]), die if sys.argv[2:] == ["die"] else noop)

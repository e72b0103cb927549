"""Benchmarks of Lazarus against raw aio-pika and peer job queues: ``python -m bench``."""

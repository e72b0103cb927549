"""The broker wing: publishing with confirms, consuming, topology, acks and parked queues.

The only package that speaks aio-pika."""

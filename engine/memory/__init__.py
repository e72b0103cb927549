"""The in-memory wing: a broker and a store that keep the engine's rules without RabbitMQ or
PostgreSQL, so the worker, dead-letter, outbox and admin code runs in tests (and in
``engine.testing``) without services.

A double here is honest: it answers as the real service does, rule for rule, and
``tests/contract`` runs the same tests against both. It may import the ports of
``engine.amqp`` and ``engine.pg``; nothing of the engine below it imports it.
"""

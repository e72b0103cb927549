"""The in-memory wing: stores (and, later, a broker) that keep the engine's rules without
PostgreSQL or RabbitMQ, so the worker, dead-letter, outbox and admin code runs in tests
and demos without services.

A double here is honest: it answers as the real service does, rule for rule, and
``tests/contract`` runs the same tests against both. It may import the ports of
``engine.pg`` and ``engine.amqp``; nothing of the engine below it imports it.
"""

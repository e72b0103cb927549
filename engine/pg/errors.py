"""How the engine classifies database errors, asked of the store wing rather than of asyncpg.

Callers outside ``engine.pg`` catch these tuples and never name a driver class, so a second
store (``engine.memory``) raises what they already handle:

- ``DB_UNAVAILABLE``: PostgreSQL is away for now; keep the work and try again later.
- ``DB_CONFLICT``: the statement lost a deadlock or serialization race; run it again.
- ``DB_REJECTED``: the server refused the values (a NUL in text, a number out of range).
- ``DB_DUPLICATE``: a unique index refused the row.
- ``DB_CANCELLED``: a statement cut short by its statement timeout (a subclass of an
  unavailable error in asyncpg: test it first).
- ``DB_ERROR``: any PostgreSQL or driver error, for best-effort loops that log and go on.
"""

from __future__ import annotations

import asyncpg

from engine.errors import ServiceUnavailable

DB_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    ServiceUnavailable,
    # A restart, failover or overload: the server answers but takes no writes for now.
    asyncpg.OperatorInterventionError,  # admin or crash shutdown, cancelled statement
    asyncpg.CannotConnectNowError,  # starting up or in recovery
    asyncpg.TooManyConnectionsError,
    asyncpg.ReadOnlySQLTransactionError,  # a standby not promoted yet
    # The connection lost track of its own protocol (a backend terminated mid-statement,
    # asyncpg issue 1069): the statement's outcome is unknown, the connection unusable.
    asyncpg.InternalClientError,
)

DB_CONFLICT = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)

DB_REJECTED = (asyncpg.DataError,)

# A unique index refused a row (a workflow's unique name held by another).
DB_DUPLICATE = (asyncpg.UniqueViolationError,)

DB_CANCELLED = (asyncpg.QueryCanceledError,)

DB_ERROR = (asyncpg.PostgresError, *DB_UNAVAILABLE)

"""The store, the only code that runs SQL (with store_jobs.py). Queries: sql/queries.sql.
Migrations: sql/migrations/.

Every connection's search_path is the namespace schema, so one database can hold
several namespaces (and every test its own).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg

from engine.errors import SchemaMissing, ServiceUnavailable
from engine.filters import DeadFilter
from engine.pg import jsonb
from engine.pg.errors import DB_UNAVAILABLE as DB_UNAVAILABLE  # re-exported: older import path
from engine.pg.jobs import JobStateQueries
from engine.pg.newest import WALK, needs_choice, newest_order
from engine.pg.port import OutboxKind, Staged
from engine.pg.pruning import PRUNE_LOCK, Pruner
from engine.pg.queries import Q
from engine.pg.workflows import WorkflowQueries
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.pg.workers import WorkerInfo

MIGRATION_LOCK = 0x1A2A_0001  # advisory lock key held while migrating


def pg_text(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL text columns refuse."""
    return text.replace("\x00", "")


def _host_port(dsn: str) -> str:
    """host:port of a DSN, without its user or password."""
    parts = urlsplit(dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration file, in order."""
    folder = resources.files("engine.pg.sql").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


@dataclass(frozen=True, slots=True)
class DeadRecord:
    """One dead letter as the recorder stores it."""

    job_id: str
    generation: int
    job_type: str
    queue: str
    payload: Any
    body: bytes
    headers: dict[str, Any]
    attempts: int
    max_retries: int | None
    reason: str
    error_type: str
    error_message: str
    traceback: str
    checkpoint: Any
    enqueued_at: datetime | None
    died_at: datetime
    worker: str
    workflow_id: str | None = None  # a workflow step's workflow


async def _init_connection(connection: asyncpg.Connection) -> None:
    for kind in ("jsonb", "json"):
        await connection.set_type_codec(
            kind,
            encoder=jsonb.encode,
            decoder=jsonb.decode,
            schema="pg_catalog",
        )


class Store(JobStateQueries, WorkflowQueries):
    """A pool of connections to the namespace schema."""

    def __init__(
        self,
        settings: Settings,
        *,
        min_size: int = 1,
        max_size: int = 5,
        statement_timeout: float | None = None,
        plan_each_time: bool = False,
    ) -> None:
        """``statement_timeout`` (seconds) has PostgreSQL cancel any statement that runs
        longer: the admin sets it so that no request can keep a backend busy.

        ``plan_each_time`` has PostgreSQL plan every statement for the values it is given.
        The admin sets it: a filter's values change how many rows match by orders of
        magnitude (a customer in 40 dead letters, a tag in all of them), and the generic
        plan a prepared statement gets after five runs, made for any value, read all
        200,000 dead letters for a payload filter that matches none.
        """
        self.settings = settings
        self.schema = settings.namespace
        self._pool: asyncpg.Pool | None = None
        self._sizes = (min_size, max_size)
        self._server_settings = {"search_path": self.schema}
        if statement_timeout is not None:
            self._server_settings["statement_timeout"] = str(int(statement_timeout * 1000))
        if plan_each_time:
            self._server_settings["plan_cache_mode"] = "force_custom_plan"

    async def connect(self, *, require_schema: bool = True) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.settings.database_dsn,
                min_size=self._sizes[0],
                max_size=self._sizes[1],
                server_settings=self._server_settings,
                init=_init_connection,
                timeout=self.settings.connect_timeout,
            )
        except TimeoutError:
            raise ServiceUnavailable(
                f"PostgreSQL at {_host_port(self.settings.database_dsn)} did not answer within "
                f"{self.settings.connect_timeout:g} s (LAZARUS_CONNECT_TIMEOUT)"
            ) from None
        except (OSError, asyncpg.PostgresError) as exc:
            raise ServiceUnavailable(f"PostgreSQL: {exc}") from None
        if require_schema:
            await self.require_schema()

    async def recover(self, exc: BaseException) -> None:
        """After an error, drop the pool's connections if it may hand a broken one out again.

        asyncpg returns a connection whose protocol state broke (InternalClientError, after
        a backend was terminated mid-statement) to the pool, where it fails every later
        statement, or worse; replacing them all is cheap next to an outage.
        """
        if isinstance(exc, asyncpg.InternalClientError) and self._pool is not None:
            await self._pool.expire_connections()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("Store.connect() was not called")
        return self._pool

    async def require_schema(self) -> None:
        try:
            found = await self.pool.fetchval(
                "SELECT to_regclass($1)", f"{self.schema}.dead_letters"
            )
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError) as exc:
            raise ServiceUnavailable(f"PostgreSQL: {exc!r}") from None
        if found is None:
            raise SchemaMissing(
                f"schema {self.schema!r} has no Lazarus tables: run `lazarus migrate` first"
            )

    async def migrate(self) -> list[str]:
        """Apply the migrations not applied yet, each in its own transaction; return their names.

        An advisory lock lets several processes call this at once; a changed file is an error.
        """
        applied: list[str] = []
        async with self.pool.acquire() as conn:
            await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                    " name text NOT NULL, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = {
                    r["version"]: r["checksum"]
                    for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")
                }
                for version, name, sql in migrations():
                    checksum = hashlib.sha256(sql.encode()).hexdigest()
                    if version in done:
                        if done[version] != checksum:
                            raise SchemaMissing(
                                f"migration {name} changed after it was applied to "
                                f"schema {self.schema!r}"
                            )
                        continue
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum)"
                            " VALUES ($1, $2, $3)",
                            version,
                            name,
                            checksum,
                        )
                    applied.append(name)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        return applied

    async def drop_schema(self) -> None:
        """Remove the namespace schema and everything in it (tests, ``lazarus reset``)."""
        await self.pool.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    # -- dead letters ---------------------------------------------------------------

    async def insert_dead(self, records: Sequence[DeadRecord]) -> int:
        """Store a batch in one round trip; return how many were new."""
        if not records:
            return 0
        columns = list(
            zip(
                *(
                    (
                        r.job_id,
                        r.generation,
                        r.job_type,
                        r.queue,
                        r.payload,
                        r.body,
                        r.headers,
                        r.attempts,
                        r.max_retries,
                        r.reason,
                        r.error_type,
                        r.error_message,
                        r.traceback,
                        r.checkpoint,
                        r.enqueued_at,
                        r.died_at,
                        r.worker,
                        r.workflow_id,
                    )
                    for r in records
                ),
                strict=True,
            )
        )
        arrays: list[list[Any]] = [list(c) for c in columns]
        for json in (4, 6, 13):  # payload, headers, checkpoint
            arrays[json] = jsonb.json_column(arrays[json])
        status = await self.pool.execute(Q["insert_dead_letters"], *arrays)
        return int(status.rsplit(" ", 1)[-1])

    async def stored_death(self, job_id: str, generation: int) -> asyncpg.Record | None:
        """The stored dead letter of this generation (body, headers, traceback), if any."""
        row: asyncpg.Record | None = await self.pool.fetchrow(Q["stored_death"], job_id, generation)
        return row

    async def history(self, job_id: str) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(Q["history"], job_id))

    async def list_dead(
        self, selector: DeadFilter, *, limit: int = 50, before_id: int | None = None
    ) -> list[asyncpg.Record]:
        """Newest first; pass the last id seen as ``before_id`` for the next page (keyset)."""
        where, args = _where(selector)
        if before_id is not None:
            args.append(before_id)
            where.append(f"id < ${len(args)}")
        order = await self._newest_order(selector, where, args, limit)
        args.append(limit)
        sql = (
            "SELECT id, job_id, generation, job_type, queue, attempts, max_retries, reason,"
            " error_type, error_message, died_at, status, worker FROM dead_letters"
            f" WHERE {' AND '.join(where) or 'true'} ORDER BY {order} LIMIT ${len(args)}"
        )
        return list(await self.pool.fetch(sql, *args))

    async def dead_groups(
        self, selector: DeadFilter, *, newest: int, limit: int = 20
    ) -> list[asyncpg.Record]:
        """The ``newest`` matching dead letters counted by (job type, error type), largest
        group first, with the first and last death of each: what is failing now, at a cost
        that does not grow with the table."""
        where, args = _where(selector)
        order = await self._newest_order(selector, where, args, newest)
        args += [newest, limit]
        sql = (
            "SELECT job_type, error_type, count(*) AS n, min(died_at) AS first_died,"
            " max(died_at) AS last_died FROM (SELECT job_type, error_type, died_at"
            f" FROM dead_letters WHERE {' AND '.join(where) or 'true'}"
            f" ORDER BY {order} LIMIT ${len(args) - 1}) AS newest"
            f" GROUP BY job_type, error_type ORDER BY n DESC, last_died DESC LIMIT ${len(args)}"
        )
        return list(await self.pool.fetch(sql, *args))

    async def _newest_order(
        self, selector: DeadFilter, where: list[str], args: list[Any], wanted: int
    ) -> str:
        """How to find the newest ``wanted`` rows matching ``where``: see engine.pg.newest."""
        if not needs_choice(selector):
            return WALK
        plan = await self.pool.fetchval(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM dead_letters WHERE {' AND '.join(where)}", *args
        )
        total = await self.pool.fetchval(Q["dead_letters_estimate"])
        return newest_order(
            selector, matches=plan[0]["Plan"]["Plan Rows"], total=total, wanted=wanted
        )

    async def suspended_groups(self, limit: int = 20) -> list[asyncpg.Record]:
        """Suspended jobs counted by (job type, error type or a person's stop)."""
        return list(await self.pool.fetch(Q["suspended_groups"], limit))

    async def matching_ids(
        self, selector: DeadFilter, *, after_id: int, upto_id: int, limit: int
    ) -> list[int]:
        """Row ids matching ``selector`` in (``after_id``, ``upto_id``], ascending: how bulk
        work streams over the rows that existed when it began."""
        where, args = _where(selector)
        args += [after_id, upto_id, limit]
        bounds = [f"id > ${len(args) - 2}", f"id <= ${len(args) - 1}"]
        sql = (
            f"SELECT id FROM dead_letters WHERE {' AND '.join([*where, *bounds])}"
            f" ORDER BY id LIMIT ${len(args)}"
        )
        return [r["id"] for r in await self.pool.fetch(sql, *args)]

    async def last_dead_id(self) -> int:
        """The newest dead-letter row id (0 if none): the end of a bulk operation's set."""
        return int(await self.pool.fetchval(Q["last_dead_id"]))

    async def count_dead(self, selector: DeadFilter, cap: int | None = None) -> int:
        """Matching rows; with ``cap``, counted up to ``cap + 1`` only (more means "many")."""
        where, args = _where(selector)
        sql = f"SELECT 1 FROM dead_letters WHERE {' AND '.join(where) or 'true'}"
        if cap is not None:
            args.append(cap + 1)
            sql += f" LIMIT ${len(args)}"
        return int(await self.pool.fetchval(f"SELECT count(*) FROM ({sql}) AS hit", *args))

    async def stage_requeue(self, row_ids: Sequence[int], actor: str, build: Any) -> int:
        """Compare-and-set ``dead`` → ``requeue_pending`` and write the outbox, in one transaction.

        ``build(row)`` returns the new message body of a row that won the update.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            won = await conn.fetch(Q["mark_requeue_pending"], list(row_ids), actor)
            if won:
                await conn.execute(Q["requeue_jobs"], [r["id"] for r in won])
                staged = [
                    Staged(OutboxKind.REQUEUE, r["job_id"], r["queue"], build(r), r["id"])
                    for r in won
                ]
                await self.stage_outbox(conn, staged)
            return len(won)

    @asynccontextmanager
    async def claim_outbox(self, limit: int) -> AsyncIterator[list[asyncpg.Record]]:
        """Lock up to ``limit`` outbox rows for this caller; they count as sent if the block
        exits normally, and stay in the outbox if it raises."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = list(await conn.fetch(Q["claim_outbox"], limit))
            yield rows
            if rows:
                await conn.execute(Q["finish_outbox"], [r["id"] for r in rows])

    async def reanimation_candidates(
        self,
        job_type: str,
        error_types: Sequence[str],
        died_before: datetime,
        actor: str,
        max_times: int,
        limit: int,
    ) -> list[int]:
        rows = await self.pool.fetch(
            Q["reanimation_candidates"],
            job_type,
            list(error_types),
            died_before,
            actor,
            max_times,
            limit,
        )
        return [r["id"] for r in rows]

    async def mark_deleted(self, row_ids: Sequence[int], actor: str) -> int:
        status = await self.pool.execute(Q["mark_deleted"], list(row_ids), actor)
        return int(status.rsplit(" ", 1)[-1])

    async def purge(self, older_than: datetime) -> int:
        status = await self.pool.execute(Q["purge"], older_than)
        return int(status.rsplit(" ", 1)[-1])

    async def audit(self, actor: str, action: str, selector: dict[str, Any], count: int) -> None:
        await self.pool.execute(Q["audit"], actor, action, selector, count)

    async def audit_begin(self, actor: str, action: str, selector: dict[str, Any]) -> int:
        """An entry in state 'running', written before a bulk operation changes anything."""
        return int(await self.pool.fetchval(Q["audit_begin"], actor, action, selector))

    async def audit_progress(self, entry: int, count: int, state: str = "running") -> None:
        """How far a bulk operation got; any other ``state`` than 'running' ends the entry."""
        await self.pool.execute(Q["audit_progress"], entry, count, state)

    @asynccontextmanager
    async def pruning(self) -> AsyncIterator[Pruner | None]:
        """A :class:`~engine.pg.pruning.Pruner` on a connection holding the prune lock, or
        None if another process holds it (one prunes at a time)."""
        async with self.pool.acquire() as conn:
            if not await conn.fetchval(Q["prune_lock"], PRUNE_LOCK):
                yield None
                return
            try:
                yield Pruner(conn)
            finally:
                await conn.fetchval(Q["prune_unlock"], PRUNE_LOCK)

    async def register_worker(self, info: WorkerInfo) -> None:
        await self.pool.execute(
            Q["register_worker"], info.worker_id, info.host, info.pid, info.version,
            list(info.queues), info.job_types,
        )  # fmt: skip

    async def worker_seen(self, worker_id: str) -> None:
        await self.pool.execute(Q["worker_seen"], worker_id)

    async def worker_stopped(self, worker_id: str) -> None:
        await self.pool.execute(Q["worker_stopped"], worker_id)

    async def list_workers(
        self, seen_since: datetime, alive_since: datetime, limit: int
    ) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(Q["list_workers"], seen_since, alive_since, limit))

    async def known_routes(self, seen_since: datetime) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(Q["known_routes"], seen_since))

    async def end_session(self, sid: str, expires: datetime) -> None:
        """Refuse a dashboard session from now on (a logout); forget ones past expiry."""
        await self.pool.execute(Q["end_session"], sid, expires)
        await self.pool.execute(Q["forget_ended_sessions"])

    async def session_ended(self, sid: str) -> bool:
        return bool(await self.pool.fetchval(Q["session_ended"], sid))

    async def audit_recent(
        self, limit: int = 20, before_id: int | None = None
    ) -> list[asyncpg.Record]:
        return list(await self.pool.fetch(Q["audit_recent"], limit, before_id))


def _where(selector: DeadFilter) -> tuple[list[str], list[Any]]:
    """SQL conditions and their arguments for a filter; values are always parameters."""
    where: list[str] = []
    args: list[Any] = []

    def add(condition: str, value: Any) -> None:
        args.append(value)
        where.append(condition.format(f"${len(args)}"))

    if selector.ids:
        add("job_id = ANY({}::text[])", list(selector.ids))
    if selector.status is not None:
        add("status = {}", selector.status.value)
    if selector.job_type:
        add("job_type = {}", selector.job_type)
    if selector.queue:
        add("queue = {}", selector.queue)
    if selector.error_type:
        # The stored type is qualified ('asyncio.TimeoutError', 'myapp.errors.Bounce'; builtins
        # bare): the short class name matches too.
        add("(error_type = {0} OR right(error_type, length({0}) + 1) = '.' || {0})",
            selector.error_type)  # fmt: skip
    if selector.error_text:
        escaped = selector.error_text.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
        add("error_message ILIKE {}", f"%{escaped}%")
    if selector.died_after:
        add("died_at >= {}", selector.died_after)
    if selector.died_before:
        add("died_at < {}", selector.died_before)
    if selector.payload is not None:
        # Text cast in SQL: the pool's jsonb codec would send JSON null as SQL NULL.
        # Served by the GIN index of migration 012.
        add("payload @> {}::text::jsonb", selector.payload)
    return where, args


if TYPE_CHECKING:
    from engine.pg.port import (
        AdminStore,
        OutboxStore,
        UniqueJobStore,
        WorkerStore,
        WorkflowStore,
        WorkflowTxn,
    )
    from engine.pg.workflows import PgWorkflowTxn

    def _implements(
        store: Store,
    ) -> tuple[WorkerStore, OutboxStore, AdminStore, UniqueJobStore, WorkflowStore]:
        """mypy checks here that the store answers every port."""
        return store, store, store, store, store

    def _transacts(txn: PgWorkflowTxn) -> WorkflowTxn:
        return txn

"""``lazarus prune``: a dry run counts, a real pass removes, a busy lock is exit 1."""

from __future__ import annotations

import asyncpg
import orjson

from engine.pg.pruning import PRUNE_LOCK
from tests.acceptance.conftest import Cli
from tests.conftest import DATABASE_URL


async def old_jobs(cli: Cli, n: int) -> None:
    connection = await asyncpg.connect(
        DATABASE_URL, server_settings={"search_path": cli.env["LAZARUS_NAMESPACE"]}
    )
    try:
        for i in range(n):
            await connection.execute(
                "INSERT INTO jobs (job_id, generation, seq, job_type, queue, state, created_at,"
                " updated_at) VALUES ($1, 0, 3, 't.x', 'default', 'succeeded',"
                " now() - interval '30 days', now() - interval '30 days')",
                f"old-{i}",
            )
    finally:
        await connection.close()


async def test_prune_counts_then_removes_old_finished_jobs(cli: Cli) -> None:
    assert cli.run("migrate").returncode == 0
    await old_jobs(cli, 3)
    dry = cli.run("prune", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert orjson.loads(dry.stdout) | {} == {
        "jobs": 3, "workflows": 0, "attempts": 0, "workers": 0, "audit": 0, "dead_history": 0,
        "dead_copies": None, "busy": False, "dry_run": True,
    }  # fmt: skip
    done = cli.run("prune")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("removed: 3 finished jobs")
    kept = cli.run("prune", "--json", LAZARUS_RETAIN_JOBS="never")
    assert orjson.loads(kept.stdout)["jobs"] == 0


async def test_prune_while_another_process_prunes_is_exit_1(cli: Cli) -> None:
    assert cli.run("migrate").returncode == 0
    other = await asyncpg.connect(DATABASE_URL)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", PRUNE_LOCK)
        busy = cli.run("prune")
        assert busy.returncode == 1 and "another process is pruning" in busy.stderr
    finally:
        await other.close()


def test_prune_with_a_bad_age_is_a_usage_error(cli: Cli) -> None:
    bad = cli.run("prune", LAZARUS_RETAIN_AUDIT="forever")
    assert bad.returncode == 2 and "LAZARUS_RETAIN_AUDIT" in bad.stderr

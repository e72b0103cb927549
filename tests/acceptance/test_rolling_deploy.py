"""A rolling deploy: old and new workers share a queue, and no job is lost to it."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.acceptance.conftest import Cli, wait_for_output
from tests.conftest import wait_for


def state(cli: Cli, job_id: str) -> str | None:
    shown = cli.run("jobs", "show", job_id, "--json")
    return str(orjson.loads(shown.stdout)["state"]) if shown.returncode == 0 else None


def dead_reasons(cli: Cli) -> list[str]:
    listed = cli.run("dead", "list", "--json")
    return [str(r["reason"]) for r in orjson.loads(listed.stdout)]


async def test_a_job_only_new_workers_know_waits_for_them_instead_of_dying(
    cli: Cli, tmp_path: Path
) -> None:
    assert cli.run("migrate").returncode == 0
    env = {"LAZARUS_UNKNOWN_TYPE_GRACE": "120"}
    cli.env |= env
    old_log, new_log = tmp_path / "old.log", tmp_path / "new.log"
    old = cli.spawn(old_log, "worker", "tests.acceptance.rolling_old")
    new = None
    try:
        wait_for_output(old, old_log, "consuming")
        job_id = cli.run("enqueue", "rolling.new", "{}", "--queue", "default").stdout.strip()
        wait_for_output(old, old_log, "unknown to this worker; back to queue default")
        new = cli.spawn(new_log, "worker", "tests.acceptance.rolling_new")
        await wait_for(lambda: state(cli, job_id) == "succeeded", timeout=60,
                       what="the new worker to run the job")  # fmt: skip
        assert dead_reasons(cli) == []
    finally:
        for process in (old, new):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


async def test_a_job_no_worker_knows_dies_once_its_grace_is_over(cli: Cli, tmp_path: Path) -> None:
    assert cli.run("migrate").returncode == 0
    cli.env |= {"LAZARUS_UNKNOWN_TYPE_GRACE": "2"}
    log = tmp_path / "old.log"
    old = cli.spawn(log, "worker", "tests.acceptance.rolling_old")
    try:
        wait_for_output(old, log, "consuming")
        cli.run("enqueue", "rolling.nobody", "{}", "--queue", "default")
        await wait_for(lambda: dead_reasons(cli) == ["unknown job type"], timeout=60,
                       what="the job to die after its grace")  # fmt: skip
        assert "unknown to this worker; back to queue default" in log.read_text()
    finally:
        old.terminate()
        old.wait(timeout=30)

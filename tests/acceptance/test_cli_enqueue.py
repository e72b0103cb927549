"""``lazarus enqueue``: a run-at time, and the queue the workers' registry names."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.acceptance.conftest import Cli, wait_for_output
from tests.conftest import wait_for

USAGE = 2


def state(cli: Cli, job_id: str) -> str | None:
    shown = cli.run("jobs", "show", job_id, "--json")
    return str(orjson.loads(shown.stdout)["state"]) if shown.returncode == 0 else None


def test_a_run_at_time_must_say_its_offset_and_not_come_with_a_delay(cli: Cli) -> None:
    naive = cli.run("enqueue", "greet", "--at", "2030-01-01T06:00:00")
    assert naive.returncode == USAGE and "offset" in naive.stderr
    both = cli.run("enqueue", "greet", "--at", "2030-01-01T06:00:00Z", "--delay", "5")
    assert both.returncode == USAGE and "not both" in both.stderr
    garbage = cli.run("enqueue", "greet", "--at", "tomorrow")
    assert garbage.returncode == USAGE and "ISO 8601" in garbage.stderr


async def test_a_job_for_a_handler_elsewhere_goes_to_the_queue_its_workers_declare(
    cli: Cli, tmp_path: Path
) -> None:
    assert cli.run("migrate").returncode == 0
    module = tmp_path / "routed_jobs.py"
    module.write_text(
        "from engine import JobContext, handler\n\n"
        "@handler('routed.ping', queue='pings')\n"
        "async def ping(ctx: JobContext) -> None:\n"
        "    pass\n"
    )
    log = tmp_path / "worker.log"
    cli.env |= {"PYTHONPATH": str(tmp_path)}
    worker = cli.spawn(log, "worker", "routed_jobs")
    try:
        wait_for_output(worker, log, "consuming")
        # The CLI does not import routed_jobs: only the registry knows 'pings'.
        past = cli.run("enqueue", "routed.ping", "{}", "--at", "2000-01-01T00:00:00Z")
        assert past.returncode == 0, past.stderr
        job_id = past.stdout.strip()
        await wait_for(lambda: state(cli, job_id) == "succeeded", what="the job on 'pings'")
        shown = orjson.loads(cli.run("jobs", "show", job_id, "--json").stdout)
        assert shown["queue"] == "pings"
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_a_unique_key_creates_the_job_once_then_finds_it(cli: Cli) -> None:
    assert cli.run("migrate").returncode == 0
    first = cli.run("enqueue", "report.daily", '{"day": 1}', "--unique-key", "day:1", "--json")
    assert first.returncode == 0, first.stderr
    created = orjson.loads(first.stdout)
    assert (created["created"], created["state"]) == (True, "pending")
    again = cli.run("enqueue", "report.daily", '{"day": 1}', "--unique-key", "day:1", "--json")
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout) == {
        "job_id": created["job_id"], "created": False, "state": "pending",
    }  # fmt: skip
    text = cli.run("enqueue", "report.daily", "--unique-key", "day:1")
    assert (text.returncode, text.stdout.strip()) == (0, f"found {created['job_id']} (pending)")
    other = cli.run("enqueue", "report.daily", "--unique-key", "day:2")
    assert other.returncode == 0 and other.stdout.startswith("created ")
    assert state(cli, created["job_id"]) == "pending"


def test_a_bad_unique_key_is_a_usage_error_naming_it(cli: Cli) -> None:
    empty = cli.run("enqueue", "report.daily", "--unique-key", "")
    assert empty.returncode == USAGE and "unique key" in empty.stderr and "empty" in empty.stderr
    long = cli.run("enqueue", "report.daily", "--unique-key", "k" * 256)
    assert long.returncode == USAGE and "255 bytes" in long.stderr
    control = cli.run("enqueue", "report.daily", "--unique-key", "a\tb", "--json")
    assert control.returncode == USAGE and "control character" in control.stdout + control.stderr

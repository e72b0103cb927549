"""What a message, a foreign publisher or another person wrote cannot crash a command, and
reaches the operator's terminal as plain text."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from engine.pg.store import Store
from tests.acceptance.conftest import Cli, wait_for_output
from tests.conftest import make_settings
from tests.integration.deadletters.test_forged_headers import old_row

OK, USAGE = 0, 2
ROOT = Path(__file__).resolve().parents[2]
# Rich markup that does not parse, a screen clear, an OSC 8 hyperlink, and markup that does.
HOSTILE = "bad [/4242] \x1b[2J\x1b]8;;http://evil.example\x07click\x1b]8;;\x07 [bold red]x[/]"
SHOWN = "bad [/4242] [2J]8;;http://evil.exampleclick]8;; [bold red]x[/]"
# Markup in a job id (control characters in one are refused: see below).
HOSTILE_ID = "job-[/4242][bold red]x[/]"


@pytest.fixture
def hostile(cli: Cli, tmp_path: Path) -> Iterator[Cli]:
    """The CLI on a wide terminal, with a worker whose jobs die with their payload's text."""
    wide = Cli(cli.env | {"PYTHONPATH": str(ROOT), "COLUMNS": "400"})
    assert wide.run("migrate").returncode == OK
    log = tmp_path / "worker.log"
    process = wide.spawn(log, "worker", "tests.acceptance.hostile_handlers")
    wait_for_output(process, log, "consuming")
    yield wide
    process.terminate()
    process.wait(timeout=30)


def assert_inert(result: subprocess.CompletedProcess[str], args: tuple[str, ...]) -> None:
    assert result.returncode == OK, (args, result.stderr)
    for control in ("\x1b", "\x07", "\x9b", "\x9d"):
        assert control not in result.stdout + result.stderr, (args, control)


def test_hostile_error_messages_and_ids_are_printed_as_text(hostile: Cli) -> None:
    payload = orjson.dumps({"error": HOSTILE}).decode()
    enqueued = hostile.run("enqueue", "hostile.fail", payload, "--job-id", HOSTILE_ID)
    assert enqueued.returncode == OK, enqueued.stderr
    deadline = time.monotonic() + 30
    while not (rows := orjson.loads(hostile.run("dead", "list", "--json").stdout)):
        assert time.monotonic() < deadline, "the job did not die"
        time.sleep(0.3)
    [row] = rows
    assert (row["job_id"], row["error_message"]) == (HOSTILE_ID, HOSTILE)  # JSON stays exact

    for args in [
        ("dead", "list"),
        ("dead", "show", HOSTILE_ID),
        ("jobs", "list"),
        ("jobs", "show", HOSTILE_ID),
    ]:
        result = hostile.run(*args)
        assert_inert(result, args)
        assert HOSTILE_ID in result.stdout, args
        assert "bad [/4242]" in result.stdout, args
    for args in [("dead", "show", HOSTILE_ID), ("jobs", "show", HOSTILE_ID)]:
        assert SHOWN in hostile.run(*args).stdout, args  # in full: these are not cut


def test_a_job_id_with_a_control_character_is_a_usage_error(cli: Cli) -> None:
    result = cli.run("enqueue", "greet", "{}", "--job-id", "job-\x1b[31m")
    assert result.returncode == USAGE, result.stderr
    assert "control character" in result.stderr and "\x1b" not in result.stderr


def test_hostile_pause_reasons_are_printed_as_text(hostile: Cli) -> None:
    reason = "[/4242] \x1b[2J\x1b]8;;http://evil.example\x07here\x1b]8;;\x07"
    assert hostile.run("queues", "pause", "default", "--reason", reason).returncode == OK
    assert hostile.run("types", "pause", "hostile.fail", "--reason", reason).returncode == OK
    for args in [("queues", "list"), ("types", "list")]:
        result = hostile.run(*args)
        assert_inert(result, args)
        assert "[/4242] [2J]8;;http://evil.examplehere]8;;" in result.stdout, args


async def test_listings_survive_names_no_queue_or_type_can_have(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    store = Store(make_settings(cli.env["LAZARUS_NAMESPACE"]))
    await store.connect()
    try:
        usable = old_row("old-0", queue="billing", job_type="dl.usable")
        await store.insert_dead(
            [
                usable,
                replace(usable, job_id="old-1", queue="bad queue name!", job_type="bad type!"),
                replace(usable, job_id="old-2", queue="q" * 5000, job_type="t" * 5000),
            ]
        )
    finally:
        await store.close()
    queues = cli.run("queues", "list", "--json")
    assert queues.returncode == OK, queues.stderr
    assert [q["queue"] for q in orjson.loads(queues.stdout)] == ["billing", "default"]
    types = cli.run("types", "list", "--json")
    assert types.returncode == OK, types.stderr
    assert [t["job_type"] for t in orjson.loads(types.stdout)] == ["dl.usable"]
    assert cli.run("queues", "list").returncode == OK
    named = cli.run("queues", "list", "bad queue name!")
    assert named.returncode == USAGE and "queue name 'bad queue name!'" in named.stderr

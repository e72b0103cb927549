"""``lazarus audit``: what people did, newest first."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from tests.acceptance.conftest import Cli

OK, USAGE = 0, 2


def test_audit_lists_what_was_done_newest_first(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    assert cli.run("queues", "pause", "default", "--reason", "deploy").returncode == OK
    assert cli.run("dead", "requeue", "--all").returncode == OK  # nothing to move: count 0
    assert cli.run("types", "pause", "report.build").returncode == OK

    listed = cli.run("audit", "--json")
    assert listed.returncode == OK, listed.stderr
    entries = orjson.loads(listed.stdout)
    assert [(e["action"], e["selector"], e["count"]) for e in entries] == [
        ("pause", {"job_type": "report.build"}, 1),
        ("requeue", entries[1]["selector"], 0),
        ("pause", {"queue": "default"}, 1),
    ]
    assert all(e["actor"] and e["state"] == "done" for e in entries)
    at = datetime.fromisoformat(entries[0]["at"])

    [newest] = orjson.loads(cli.run("audit", "--limit", "1", "--json").stdout)
    assert newest == entries[0]

    table = cli.run("audit", COLUMNS="300")
    assert table.returncode == OK, table.stderr
    lines = table.stdout.splitlines()
    assert "at (UTC)" in lines[1] and "state" in lines[1]
    [pause_type, requeue, pause_queue] = [line for line in lines if "│" in line]
    assert at.astimezone(UTC).strftime("%F %T") in pause_type
    assert '{"job_type":"report.build"}' in pause_type and "done" in pause_type
    assert "requeue" in requeue and '{"queue":"default"}' in pause_queue


def test_audit_limit_is_bounded(cli: Cli) -> None:
    for limit in ("0", "10001"):
        result = cli.run("audit", "--limit", limit)
        assert result.returncode == USAGE, result.stderr
        assert "Invalid value for '--limit'" in result.stderr

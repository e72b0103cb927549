"""``lazarus workflows`` as a person uses it: start a registered workflow, watch it fail
on one file, retry its failed items, see it succeed; bad arguments are usage errors."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.acceptance.conftest import Cli, wait_for_output

pytestmark = pytest.mark.timeout(90)
APP = "tests.acceptance.workflow_app"
OK, FAILED, USAGE = 0, 1, 2


def shown(cli: Cli, workflow_id: str) -> dict[str, object]:
    result = cli.run("workflows", "show", workflow_id, "--json")
    assert result.returncode == OK, result.stderr
    detail: dict[str, object] = json.loads(result.stdout)
    return detail


def wait_state(cli: Cli, workflow_id: str, state: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        detail = shown(cli, workflow_id)
        summary = detail["summary"]
        assert isinstance(summary, dict)
        if summary["state"] == state:
            return detail
        assert time.monotonic() < deadline, f"never {state}: {detail}"
        time.sleep(0.2)


def test_start_fail_retry_succeed(cli: Cli, tmp_path: Path) -> None:
    assert cli.run("migrate").returncode == OK
    log = tmp_path / "worker.log"
    worker = cli.spawn(log, "worker", APP, "--concurrency", "8")
    try:
        wait_for_output(worker, log, "consuming")
        started = cli.run(
            "workflows", "start", "appwf.import", "-m", APP, "--input", '["a", "bad", "cc"]',
            "--json",
        )  # fmt: skip
        assert started.returncode == OK, started.stderr
        workflow_id = json.loads(started.stdout)["workflow_id"]
        failed = wait_state(cli, workflow_id, "failed")
        assert [s["step"] for s in failed["needs_person"]] == ["load[1]"]  # type: ignore[attr-defined]
        listed = cli.run("workflows", "list", "--state", "failed")
        assert workflow_id[:8] in listed.stdout and "2/4 (1 failed)" in listed.stdout
        retried = cli.run("workflows", "retry", workflow_id, "--json")
        assert json.loads(retried.stdout) == {"total": 1}
        wait_state(cli, workflow_id, "succeeded")
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def test_bad_arguments_are_usage_errors(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    no_module = cli.run("workflows", "start", "appwf.import", "-m", "no.such.module")
    assert no_module.returncode == USAGE and "No module named" in no_module.stderr
    unknown = cli.run("workflows", "start", "no.such", "-m", APP)
    assert unknown.returncode == FAILED and "no.such" in unknown.stderr
    bad_json = cli.run("workflows", "start", "appwf.import", "-m", APP, "--input", "{oops")
    assert bad_json.returncode == USAGE
    missing = cli.run("workflows", "show", "nope")
    assert missing.returncode == FAILED and "nope" in missing.stderr
    assert cli.run("workflows", "list", "--state", "sleeping").returncode == USAGE
    assert cli.run("workflows", "retry").returncode == USAGE

"""The ``lazarus`` command: outputs and exit codes scripts rely on."""

from __future__ import annotations

import re
import subprocess
import time

import orjson

from tests.acceptance.conftest import Cli

OK, FAILED, USAGE, UNAVAILABLE = 0, 1, 2, 3


def dead_rows(cli: Cli, *args: str) -> list[dict[str, object]]:
    result = cli.run("dead", "list", "--json", *args)
    assert result.returncode == OK, result.stderr
    return orjson.loads(result.stdout)  # type: ignore[no-any-return]


def wait_dead(cli: Cli, n: int, timeout: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while len(rows := dead_rows(cli)) < n:
        assert time.monotonic() < deadline, f"{n} dead letters did not appear"
        time.sleep(0.3)
    return rows


def test_help_lists_the_commands(cli: Cli) -> None:
    result = cli.run("--help")
    assert result.returncode == OK
    for command in ("check", "enqueue", "worker", "recorder", "migrate", "dead", "demo", "audit"):
        assert command in result.stdout


def test_check_answers_zero_when_both_services_answer(cli: Cli) -> None:
    assert cli.run("check").returncode == OK


def test_check_answers_three_when_rabbitmq_is_down(cli: Cli) -> None:
    result = cli.run("check", LAZARUS_AMQP_URL="amqp://guest:guest@127.0.0.1:1/")
    assert result.returncode == UNAVAILABLE
    assert "rabbitmq: unreachable" in result.stdout


def test_a_bad_variable_is_one_line_naming_it(cli: Cli) -> None:
    result = cli.run("dead", "list", LAZARUS_QUEUE_TYPE="fancy")
    assert result.returncode == USAGE
    assert result.stderr.startswith("lazarus: LAZARUS_QUEUE_TYPE:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_migrate_is_idempotent(cli: Cli) -> None:
    first, second = cli.run("migrate"), cli.run("migrate")
    assert first.returncode == second.returncode == OK
    assert "001_dead_letters.sql" in first.stdout
    assert "up to date" in second.stdout


def test_commands_before_migrate_name_lazarus_migrate(cli: Cli) -> None:
    result = cli.run("dead", "list")
    assert result.returncode == UNAVAILABLE
    assert "lazarus migrate" in result.stderr


def test_enqueue_rejects_bad_input(cli: Cli) -> None:
    bad_json = cli.run("enqueue", "greet", "{not json")
    assert bad_json.returncode == USAGE and "PAYLOAD is not valid JSON" in bad_json.stderr
    assert cli.run("enqueue", "greet", "{}", "--max-retries", "-1").returncode == USAGE
    assert cli.run("enqueue", "greet", "{}", "--delay", "soon").returncode == USAGE
    bad_queue = cli.run("enqueue", "greet", "{}", "--queue", "no such queue")
    assert bad_queue.returncode == USAGE and "queue name" in bad_queue.stderr


def test_a_bad_queue_name_is_a_usage_error(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    for command in ("pause", "resume"):
        result = cli.run("queues", command, "bad queue")
        assert result.returncode == USAGE, result.stderr
        assert "queue name 'bad queue'" in result.stderr


def test_types_pause_list_and_resume(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    paused = cli.run("types", "pause", "report.build", "--reason", "bad deploy")
    assert paused.returncode == OK and "job type report.build paused" in paused.stdout
    again = cli.run("types", "pause", "report.build")
    assert again.returncode == OK and "already paused" in again.stdout
    listed = cli.run("types", "list", "--json")
    assert listed.returncode == OK, listed.stderr
    [row] = orjson.loads(listed.stdout)
    assert (row["job_type"], row["paused"], row["parked"], row["reason"]) == (
        "report.build",
        True,
        0,
        "bad deploy",
    )
    resumed = cli.run("types", "resume", "report.build")
    assert resumed.returncode == OK and "resumed; 0 parked jobs moved back" in resumed.stdout
    not_paused = cli.run("types", "resume", "report.build")
    assert not_paused.returncode == FAILED and "is not paused" in not_paused.stderr
    for command in ("pause", "resume", "list"):
        bad = cli.run("types", command, "bad type")
        assert bad.returncode == USAGE, bad.stderr
        assert "job type 'bad type'" in bad.stderr


def test_integer_options_are_bounded_by_their_columns(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    for args in [
        ("dead", "list", "--before-id", "99999999999999999999"),
        ("dead", "list", "--before-id", str(2**63)),
        ("dead", "requeue", "--all", "--retries", str(2**31)),
        ("enqueue", "greet", "{}", "--max-retries", str(2**31)),
        ("jobs", "resume", "some-job", "--retries", "3000000000"),
        ("jobs", "resume", "some-job", "--generation", str(2**31)),
        ("jobs", "suspend", "some-job", "--generation", "-1"),
        ("jobs", "cancel", "some-job", "--generation", str(2**31)),
    ]:
        result = cli.run(*args)
        assert result.returncode == USAGE, (args, result.stderr)
        assert "Traceback" not in result.stderr and "Invalid value" in result.stderr, args
    largest = cli.run("dead", "list", "--before-id", str(2**63 - 1), "--json")
    assert largest.returncode == OK and orjson.loads(largest.stdout) == []


def test_a_value_postgresql_refuses_is_one_line_and_exit_two(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    for args in [
        ("dead", "list", "--after", "0001-01-01T00:00:00+14:00"),  # before year 1 in UTC
        ("jobs", "list", "--type", "\udcff"),  # the byte 0xff: not UTF-8
    ]:
        result = cli.run(*args)
        assert result.returncode == USAGE, (args, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("lazarus: PostgreSQL refused a value:"), args


def test_ages_too_long_ago_are_usage_errors(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    for args in [
        ("dead", "list", "--since", "99999999999w"),
        ("dead", "purge", "--older-than", "999999w"),
    ]:
        result = cli.run(*args)
        assert result.returncode == USAGE, (args, result.stderr)
        assert result.stderr.strip().endswith("too long ago"), args


def test_enqueue_to_a_missing_queue_fails(cli: Cli) -> None:
    result = cli.run("enqueue", "greet", "{}", "--queue", "nobody-listens")
    assert result.returncode == FAILED
    assert "nobody-listens" in result.stderr


def test_worker_with_a_missing_module_is_a_usage_error(cli: Cli) -> None:
    result = cli.run("worker", "no_such_module_anywhere")
    assert result.returncode == USAGE
    assert "no_such_module_anywhere" in result.stderr


def test_dead_letter_round_trip(cli: Cli, worker: subprocess.Popen[bytes]) -> None:
    enqueued = cli.run("enqueue", "invalid_input", '{"order": 1}')
    assert enqueued.returncode == OK, enqueued.stderr
    job_id = enqueued.stdout.strip()
    [row] = wait_dead(cli, 1)
    assert row["job_id"] == job_id and row["reason"] == "permanent error"

    shown = cli.run("dead", "show", job_id, "--json")
    assert shown.returncode == OK
    [death] = orjson.loads(shown.stdout)
    assert death["payload"] == {"order": 1} and "Traceback" in death["traceback"]

    assert cli.run("dead", "requeue", job_id, "--dry-run", "--json").stdout.strip().endswith("}")
    moved = cli.run("dead", "requeue", job_id, "--retries", "0", "--json")
    assert moved.returncode == OK and orjson.loads(moved.stdout) == {"total": 1}

    # It dies again as generation 1: two rows of history.
    deadline = time.monotonic() + 30
    while len(orjson.loads(cli.run("dead", "show", job_id, "--json").stdout)) < 2:
        assert time.monotonic() < deadline, "the requeued job did not die again"
        time.sleep(0.3)
    history = orjson.loads(cli.run("dead", "show", job_id, "--json").stdout)
    assert [(d["generation"], d["status"]) for d in history] == [(0, "requeued"), (1, "dead")]

    deleted = cli.run("dead", "delete", "--type", "invalid_input", "--json")
    assert orjson.loads(deleted.stdout) == {"total": 1}
    assert dead_rows(cli) == []
    assert len(dead_rows(cli, "--status", "all")) == 2

    too_late = cli.run("dead", "requeue", job_id)
    assert too_late.returncode == FAILED
    assert f"job {job_id!r} is no longer dead (deleted)" in too_late.stderr


def job_row(cli: Cli, job_id: str) -> dict[str, object] | None:
    result = cli.run("jobs", "show", job_id, "--json")
    if result.returncode != OK:
        return None
    row: dict[str, object] = orjson.loads(result.stdout)
    return row


def failed_once(cli: Cli) -> str:
    """A job that keeps failing and retrying (with a worker running); it has failed once."""
    enqueued = cli.run("enqueue", "always_fails", "{}", "--max-retries", "1000")
    assert enqueued.returncode == OK, enqueued.stderr
    job_id = enqueued.stdout.strip()
    deadline = time.monotonic() + 30
    while not (job := job_row(cli, job_id)) or not job.get("error_type"):
        assert time.monotonic() < deadline, "the job did not fail once"
        time.sleep(0.2)
    return job_id


def test_stop_and_resume_refuse_a_stale_generation(
    cli: Cli, worker: subprocess.Popen[bytes]
) -> None:
    job_id = failed_once(cli)
    stale = cli.run("jobs", "suspend", job_id, "--generation", "1")
    assert stale.returncode == FAILED
    [line] = stale.stderr.strip().splitlines()
    assert line.startswith(f"lazarus: job {job_id!r} is no longer pending or running or retrying")
    assert "in generation 1 (it is " in line and line.endswith(" in generation 0)")
    suspended = cli.run("jobs", "suspend", job_id, "--generation", "0", "--json")
    assert suspended.returncode == OK, suspended.stderr
    assert orjson.loads(suspended.stdout)["state"] == "suspended"

    stale_resume = cli.run("jobs", "resume", job_id, "--generation", "1")
    assert stale_resume.returncode == FAILED
    assert f"job {job_id!r} is no longer suspended in generation 1" in stale_resume.stderr
    resumed = cli.run("jobs", "resume", job_id, "--generation", "0", "--json")
    assert resumed.returncode == OK, resumed.stderr
    assert orjson.loads(resumed.stdout)["generation"] == 1

    stale_cancel = cli.run("jobs", "cancel", job_id, "--generation", "0")
    assert stale_cancel.returncode == FAILED
    assert "in generation 0 (it is " in stale_cancel.stderr
    cancelled = cli.run("jobs", "cancel", job_id, "--generation", "1", "--json")
    assert cancelled.returncode == OK, cancelled.stderr
    assert orjson.loads(cancelled.stdout)["state"] == "cancelled"


def test_a_person_suspending_a_failed_job_is_its_cause_not_the_error(
    cli: Cli, worker: subprocess.Popen[bytes]
) -> None:
    job_id = failed_once(cli)
    suspended = cli.run("jobs", "suspend", job_id, "--reason", "reading the logs")
    assert suspended.returncode == OK, suspended.stderr

    cause = cli.run("jobs", "cause", job_id, "--json")
    assert cause.returncode == OK, cause.stderr
    found = orjson.loads(cause.stdout)
    assert found["cause"] == "Requested by user: reading the logs"
    assert (found["error_type"], found["traceback"]) == (None, None)
    assert found["stopped_by"]
    text = cli.run("jobs", "cause", job_id).stdout
    assert text.startswith("Requested by user: reading the logs (by ") and "Error" not in text
    cli.run("jobs", "cancel", job_id)


def test_unknown_ids_and_bad_arguments_are_clear(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    unknown = cli.run("dead", "show", "no-such-job")
    assert unknown.returncode == FAILED and "no dead letter for job 'no-such-job'" in unknown.stderr
    unknown_requeue = cli.run("dead", "requeue", "no-such-job")
    assert unknown_requeue.returncode == FAILED and "no-such-job" in unknown_requeue.stderr
    nothing = cli.run("dead", "requeue")
    assert nothing.returncode == USAGE and "--all" in nothing.stderr
    assert cli.run("dead", "requeue", "--all", "--mode", "sideways").returncode == USAGE
    bad_age = cli.run("dead", "purge", "--older-than", "soon")
    assert bad_age.returncode == USAGE and "soon" in bad_age.stderr
    assert cli.run("dead", "list", "--status", "zombie").returncode == USAGE
    purged = cli.run("dead", "purge", "--older-than", "30d", "--json")
    assert purged.returncode == OK and orjson.loads(purged.stdout) == {"total": 0}


def test_demo_shows_jobs_that_succeed_retry_and_die(cli: Cli) -> None:
    # The default grace for unknown types (a rolling deploy's) does not hold the demo up.
    result = cli.run("demo", timeout=120, LAZARUS_UNKNOWN_TYPE_GRACE="300")
    assert result.returncode == OK, result.stderr
    assert "4 jobs died" in result.stdout
    reasons = sorted(str(r["reason"]) for r in dead_rows(cli))
    assert reasons == [
        "permanent error",
        "retries exhausted",
        "retries exhausted",
        "unknown job type",
    ]
    # The demo's worker tracks its jobs as `lazarus worker` does: they stay listed.
    listed = cli.run("jobs", "list", "--json")
    assert listed.returncode == OK, listed.stderr
    states = sorted((str(r["job_type"]), str(r["state"])) for r in orjson.loads(listed.stdout))
    assert states == [
        ("always_fails", "dead"),
        ("flaky", "dead"),
        ("flaky", "succeeded"),
        ("greet", "succeeded"),
        ("greet", "succeeded"),
        ("invalid_input", "dead"),
    ]
    # Each job's end is in the summary, and the in-process retries are in the log.
    ends = re.findall(r"^  \S+  \S+ +(succeeded|dead)\b", result.stdout, re.MULTILINE)
    assert sorted(ends) == ["dead"] * 4 + ["succeeded"] * 3, result.stdout
    assert "flaky: try 2 of attempt 0 fails on purpose" in result.stderr
    assert "flaky: try 3 of attempt 0 succeeds" in result.stderr
    assert "{'" not in result.stdout  # payloads as JSON, not Python reprs


def test_demo_prints_json_for_scripts(cli: Cli) -> None:
    result = cli.run("demo", "--json", timeout=120)
    assert result.returncode == OK, result.stderr
    found = orjson.loads(result.stdout)
    assert len(found["jobs"]) == 7 and len(found["dead"]) == 4
    assert {j["state"] for j in found["jobs"]} == {"succeeded", "dead"}


def test_a_database_outage_is_exit_code_three_in_one_line(cli: Cli) -> None:
    result = cli.run("dead", "list", LAZARUS_DATABASE_URL="postgresql://postgres@127.0.0.1:1/x")
    assert result.returncode == UNAVAILABLE
    assert result.stderr.startswith("lazarus: PostgreSQL")
    assert "Traceback" not in result.stderr

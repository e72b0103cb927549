"""What ``lazarus`` prints for people and for scripts: version, completion, full job ids,
readable job details, JSON results and JSON errors, error types by their short name."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from importlib.metadata import version

import orjson

from engine.pg.store import DeadRecord, Store
from tests.acceptance.conftest import LAZARUS, Cli
from tests.conftest import make_settings

OK, FAILED, USAGE, UNAVAILABLE = 0, 1, 2, 3
# Longer than a UUID, as ids that name the business object often are.
LONG_ID = "order-2026-11-29/customer-4711/invoice-000000000000000000000123"


def test_version_prints_the_package_version(cli: Cli) -> None:
    result = cli.run("--version")
    assert result.returncode == OK, result.stderr
    assert result.stdout.strip() == f"lazarus {version('lazarus')}"


def test_shell_completion_is_offered_and_completes_commands(cli: Cli) -> None:
    assert "--install-completion" in cli.run("--help").stdout
    # The shell is detected from the parent process, as when a person types it in bash.
    script = subprocess.run(
        # In a pipeline, so that bash forks it rather than replacing itself with it.
        ["bash", "-c", f"set -o pipefail; {LAZARUS} --show-completion | cat"],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert script.returncode == OK, script.stderr
    assert "_LAZARUS_COMPLETE=complete_bash" in script.stdout
    completed = cli.run(_LAZARUS_COMPLETE="complete_bash", COMP_WORDS="lazarus de", COMP_CWORD="1")
    assert completed.returncode == OK
    assert completed.stdout.split() == ["demo", "dead"]


def json_error(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    """The one JSON error line a failing ``--json`` command prints on stderr."""
    [line] = result.stderr.strip().splitlines()[-1:]
    error: dict[str, object] = orjson.loads(line)
    assert set(error) == {"error", "exit"} and error["exit"] == result.returncode
    return error


def test_json_errors_keep_their_exit_code(cli: Cli) -> None:
    usage = cli.run("dead", "list", "--limit", "0", "--json")
    assert usage.returncode == USAGE and usage.stdout == ""
    assert "--limit" in str(json_error(usage)["error"])

    unknown_option = cli.run("jobs", "list", "--json", "--no-such-option")
    assert unknown_option.returncode == USAGE
    assert "--no-such-option" in str(json_error(unknown_option)["error"])

    bad_setting = cli.run("dead", "list", "--json", LAZARUS_QUEUE_TYPE="fancy")
    assert bad_setting.returncode == USAGE
    assert str(json_error(bad_setting)["error"]).startswith("LAZARUS_QUEUE_TYPE:")

    not_migrated = cli.run("jobs", "show", "x", "--json")
    assert not_migrated.returncode == UNAVAILABLE
    assert "lazarus migrate" in str(json_error(not_migrated)["error"])

    assert cli.run("migrate", "--json").returncode == OK
    unknown = cli.run("dead", "requeue", "no-such-job", "--json")
    assert unknown.returncode == FAILED
    assert orjson.loads(unknown.stdout) == {"total": 0}
    assert "no-such-job" in str(json_error(unknown)["error"])

    not_paused = cli.run("queues", "resume", "default", "--json")
    assert not_paused.returncode == FAILED
    assert json_error(not_paused)["error"] == "queue 'default' is not paused"

    down = cli.run("check", "--json", LAZARUS_AMQP_URL="amqp://guest:guest@127.0.0.1:1/")
    assert down.returncode == UNAVAILABLE
    report = orjson.loads(down.stdout)
    assert report["status"] == "unavailable" and report["postgresql"] is None
    assert "127.0.0.1:1" in str(json_error(down)["error"])


def test_every_command_with_a_result_prints_json(cli: Cli) -> None:
    migrated = cli.run("migrate", "--json")
    assert migrated.returncode == OK, migrated.stderr
    assert "001_dead_letters.sql" in orjson.loads(migrated.stdout)["applied"]
    assert orjson.loads(cli.run("migrate", "--json").stdout) == {"applied": []}
    assert orjson.loads(cli.run("check", "--json").stdout) == {
        "status": "ok",
        "rabbitmq": None,
        "postgresql": None,
    }
    paused = cli.run("queues", "pause", "default", "--json")
    assert orjson.loads(paused.stdout) == {"queue": "default", "paused": True, "changed": True}
    resumed = cli.run("queues", "resume", "default", "--json")
    assert orjson.loads(resumed.stdout) == {"queue": "default", "paused": False, "changed": True}
    paused = cli.run("types", "pause", "greet", "--json")
    assert orjson.loads(paused.stdout) == {"job_type": "greet", "paused": True, "changed": True}
    resumed = cli.run("types", "resume", "greet", "--json")
    assert orjson.loads(resumed.stdout) == {
        "job_type": "greet",
        "paused": False,
        "changed": True,
        "moved": 0,
    }
    # A worker declares the queue; enqueue then answers the id as JSON.
    assert cli.run("enqueue", "greet", "--json", "--queue", "nobody-listens").returncode == FAILED


def wait_for(cli: Cli, *args: str, timeout: float = 30) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = cli.run(*args, "--json")
        if result.returncode == OK and (found := orjson.loads(result.stdout)):
            return found
        assert time.monotonic() < deadline, f"{args}: nothing after {timeout} s"
        time.sleep(0.3)


def test_tables_show_whole_job_ids(cli: Cli, worker: subprocess.Popen[bytes]) -> None:
    enqueued = cli.run("enqueue", "invalid_input", "{}", "--job-id", LONG_ID)
    assert enqueued.returncode == OK, enqueued.stderr
    wait_for(cli, "dead", "list")
    wait_for(cli, "jobs", "list", "--state", "dead")
    for args in [("dead", "list"), ("jobs", "list")]:
        piped = cli.run(*args)
        assert piped.returncode == OK, piped.stderr
        assert LONG_ID in piped.stdout, piped.stdout
        # On a terminal of 80 columns too: the other columns wrap, the id does not.
        narrow = cli.run(*args, TTY_COMPATIBLE="1", COLUMNS="80", NO_COLOR="1")
        assert narrow.returncode == OK, narrow.stderr
        assert LONG_ID in narrow.stdout, narrow.stdout
    shown = cli.run("dead", "show", LONG_ID)
    assert shown.returncode == OK, shown.stderr
    assert "None" not in shown.stdout and "payload {}" in shown.stdout, shown.stdout
    assert f"job {LONG_ID} generation 0: dead" in shown.stdout
    as_json = cli.run("enqueue", "greet", "--job-id", "greet-1", "--json")
    assert as_json.returncode == OK, as_json.stderr
    assert orjson.loads(as_json.stdout) == {"job_id": "greet-1"}


def test_jobs_show_prints_what_a_person_reads(cli: Cli, worker: subprocess.Popen[bytes]) -> None:
    enqueued = cli.run("enqueue", "greet", '{"names": ["Ada", true]}')
    assert enqueued.returncode == OK, enqueued.stderr
    job_id = enqueued.stdout.strip()
    deadline = time.monotonic() + 30
    while (row := orjson.loads(cli.run("jobs", "show", job_id, "--json").stdout or b"{}")).get(
        "state"
    ) != "succeeded":
        assert time.monotonic() < deadline, row
        time.sleep(0.2)
    for internal in ("seq", "token", "redeliveries"):
        assert internal not in row
    text = cli.run("jobs", "show", job_id).stdout
    fields = [line.split(":", 1)[0] for line in text.splitlines() if ": " in line]
    assert not {"seq", "token", "redeliveries"} & set(fields), text
    assert 'payload: {"names":["Ada",true]}' in text, text  # JSON, not a Python repr
    assert "'names'" not in text and "True" not in text
    assert f"job_id: {job_id}" in text and "state: succeeded" in text


async def test_error_type_accepts_the_names_python_gives_it(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    store = Store(make_settings(cli.env["LAZARUS_NAMESPACE"]))
    await store.connect()
    try:
        now = datetime.now(UTC)
        row = DeadRecord(
            "timed-out", 0, "fetch", "default", None, b"{}", {}, 1, 0, "retries exhausted",
            "TimeoutError", "ran longer than 2 s", "", None, now, now, "test",
        )  # fmt: skip
        await store.insert_dead([row])
    finally:
        await store.close()
    for name in ("TimeoutError", "builtins.TimeoutError", "asyncio.TimeoutError"):
        result = cli.run("dead", "list", "--error-type", name, "--json")
        assert result.returncode == OK, result.stderr
        assert [r["job_id"] for r in orjson.loads(result.stdout)] == ["timed-out"], name
        counted = cli.run("dead", "requeue", "--error-type", name, "--dry-run", "--json")
        assert orjson.loads(counted.stdout) == {"total": 1}, name


async def test_error_type_accepts_the_class_name_of_a_dotted_type(cli: Cli) -> None:
    assert cli.run("migrate").returncode == OK
    store = Store(make_settings(cli.env["LAZARUS_NAMESPACE"]))
    await store.connect()
    try:
        now = datetime.now(UTC)
        row = DeadRecord(
            "gone", 0, "fetch", "default", None, b"{}", {}, 1, 0, "permanent error",
            "myapp.errors.Gone", "gone", "", None, now, now, "test",
        )  # fmt: skip
        await store.insert_dead([row])
    finally:
        await store.close()
    for name in ("Gone", "errors.Gone", "myapp.errors.Gone"):
        result = cli.run("dead", "list", "--error-type", name, "--json")
        assert result.returncode == OK, result.stderr
        assert [r["job_id"] for r in orjson.loads(result.stdout)] == ["gone"], name
    for name in ("one", "rs.Gone", "Gon"):
        assert orjson.loads(cli.run("dead", "list", "--error-type", name, "--json").stdout) == []

"""``lazarus worker MODULE`` imports modules of the directory it is run from."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from tests.acceptance.conftest import LAZARUS, Cli, wait_for_output


def test_worker_imports_a_module_of_the_current_directory(cli: Cli, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "myapp").mkdir(parents=True)
    (project / "myapp" / "__init__.py").write_text("")
    (project / "myapp" / "jobs.py").write_text(
        textwrap.dedent(
            """
            from engine import handler

            @handler("myapp.hello", queue="default")
            async def hello(ctx):
                print("myapp ran", ctx.job_id, flush=True)
            """
        )
    )
    assert cli.run("migrate").returncode == 0
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [LAZARUS, "worker", "myapp.jobs"],
            cwd=project,
            env=cli.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_output(process, log, "consuming")
        enqueued = cli.run("enqueue", "myapp.hello")
        assert enqueued.returncode == 0, enqueued.stderr
        wait_for_output(process, log, f"myapp ran {enqueued.stdout.strip()}")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "No module named" not in log.read_text()

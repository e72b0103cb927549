"""``scripts/demo`` ends by saying what to type next, since it cannot activate the virtual
environment of the shell that ran it. Run here on a copy of the script with stand-ins for
pip, the services and ``lazarus``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "demo"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose .venv, scripts/services and lazarus only record being called."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "scripts" / "demo")
    (root / "scripts" / "services").write_text('echo "services: up"\n')
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(
        f'export VIRTUAL_ENV="{root}/.venv"\nexport PATH="{bin_dir}:$PATH"\n'
    )
    for name in ("pip", "lazarus"):
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{root}/calls"\n')
        stub.chmod(0o755)
    return root


def run(project: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    base["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return subprocess.run(
        ["bash", str(project / "scripts" / "demo")],
        cwd=cwd,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_demo_runs_migrate_then_the_demo(project: Path) -> None:
    result = run(project, project)
    assert result.returncode == 0, result.stderr
    calls = (project / "calls").read_text().splitlines()
    assert calls[0].startswith("pip install") and calls[1:] == ["lazarus migrate", "lazarus demo"]


def test_demo_ends_with_what_to_type_in_the_shell_that_ran_it(project: Path) -> None:
    result = run(project, project)
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert ". .venv/bin/activate" in lines
    assert lines.index(". .venv/bin/activate") < lines.index("lazarus dead list")


def test_demo_names_the_environment_by_full_path_from_elsewhere(
    project: Path, tmp_path: Path
) -> None:
    result = run(project, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f". {project}/.venv/bin/activate" in result.stdout


def test_demo_says_no_more_than_needed_when_the_environment_is_active(project: Path) -> None:
    result = run(project, project, VIRTUAL_ENV=str(project / ".venv"))
    assert result.returncode == 0, result.stderr
    assert "activate" not in result.stdout and "lazarus dead list" in result.stdout

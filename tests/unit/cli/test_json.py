"""Every ``lazarus`` command that prints a result takes --json; the servers print none."""

from __future__ import annotations

from typing import Any

import typer.main

from engine.cli.main import app, wants_json

# Long-running processes: they log, they print no result.
SERVERS = {"worker", "recorder", "admin"}


def commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if not hasattr(command, "commands"):
        return [(path, command)]
    found = []
    for name, sub in command.commands.items():
        found += commands(sub, (*path, name))
    return found


def test_every_command_with_a_result_takes_json() -> None:
    every = commands(typer.main.get_command(app))
    assert len(every) > 20
    for path, command in every:
        flags = {flag for param in command.params for flag in getattr(param, "opts", [])}
        if path[-1] in SERVERS and len(path) == 1:
            assert "--json" not in flags, path
        else:
            assert "--json" in flags, f"lazarus {' '.join(path)} has no --json"


def test_json_is_asked_for_before_a_double_dash_only() -> None:
    assert wants_json(["dead", "list", "--json"])
    assert not wants_json(["enqueue", "greet", "--", "--json"])
    assert not wants_json(["dead", "list"])

"""compose/docker-compose.yml runs real ``lazarus`` commands with real settings."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from engine.cli import app
from engine.settings import Settings

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "compose"
COMPOSE: dict[str, Any] = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
# A Lazarus service is one built from this repository; the others are stock images.
LAZARUS = {name: svc for name, svc in SERVICES.items() if "build" in svc}
# Parameters of a command whose values name Python modules to import.
MODULE_PARAMS = {"modules"}


def resolve(argv: list[str]) -> Any:
    """Parse ``argv`` as the ``lazarus`` CLI would, without running anything; return the context.

    Walks the subcommands, then parses the rest with the leaf command's own parser.
    An unknown command, a bad option or value raises AssertionError naming the command
    line. Duck-typed, because Typer 0.26+ vendors Click: its groups are no click.Group.
    """
    assert argv and argv[0] == "lazarus", f"not a lazarus command: {argv}"
    command = typer.main.get_command(app)
    ctx = command.context_class(command, info_name="lazarus")
    name, args = "lazarus", argv[1:]
    while hasattr(command, "get_command"):
        assert args, f"{shlex.join(argv)}: {name!r} is a group, not a command"
        name, *args = args
        sub = command.get_command(ctx, name)
        assert sub is not None, f"{shlex.join(argv)}: no command {name!r}"
        command = sub
        if hasattr(command, "get_command"):
            ctx = command.context_class(command, info_name=name, parent=ctx)
    try:
        return command.make_context(name, list(args), parent=ctx, resilient_parsing=False)
    except Exception as exc:
        if "UsageError" not in {cls.__name__ for cls in type(exc).__mro__}:
            raise
        raise AssertionError(f"{shlex.join(argv)}: {exc.format_message()}") from None


def test_compose_has_the_lazarus_services() -> None:
    assert set(LAZARUS) == {"migrate", "worker", "demo"}
    assert {"rabbitmq", "postgres"} <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(LAZARUS))
def test_service_command_is_a_real_lazarus_command(name: str) -> None:
    command = LAZARUS[name]["command"]
    assert isinstance(command, list), f"{name}: use the exec (list) form for command"
    ctx = resolve([str(part) for part in command])
    for param in MODULE_PARAMS & ctx.params.keys():
        for module in ctx.params[param]:
            importlib.import_module(module)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ("lazarus nope", "no command 'nope'"),
        ("lazarus dead", "'dead' is a group"),
        ("lazarus worker handlers.examples --no-such-option", "No such option: --no-such-option"),
        ("lazarus worker handlers.examples --concurrency 0", "Invalid value for '--concurrency'"),
        ("lazarus worker", "Missing argument"),
        ("lazarus dead purge", "Missing option '--older-than'"),
    ],
)
def test_resolve_rejects_what_the_cli_would(argv: str, error: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(error)):
        resolve(argv.split())


def test_resolve_parses_nested_commands() -> None:
    assert resolve(["lazarus", "dead", "list", "--limit", "5"]).params["limit"] == 5


@pytest.mark.parametrize("name", sorted(LAZARUS))
def test_service_sets_only_real_settings(name: str) -> None:
    environment = LAZARUS[name].get("environment", {})
    assert isinstance(environment, dict), f"{name}: use the mapping form for environment"
    assert environment, f"{name}: sets no LAZARUS_* variable"
    values = {}
    for variable, value in environment.items():
        if variable.startswith("LAZARUS_"):
            field = variable.removeprefix("LAZARUS_").lower()
            assert field in Settings.model_fields, f"{name}: {variable} is not a setting"
            values[field] = value
    Settings(**values)  # every value parses


def test_every_service_waits_on_healthy_or_finished_dependencies() -> None:
    for name in ("rabbitmq", "postgres"):
        test = SERVICES[name].get("healthcheck", {}).get("test")
        assert test and test[0] in {"CMD", "CMD-SHELL"}, f"{name}: no healthcheck"
    conditions = {"service_healthy", "service_completed_successfully", "service_started"}
    for name, svc in LAZARUS.items():
        depends_on = svc.get("depends_on")
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends_on.items():
            assert dependency in SERVICES, f"{name}: depends on unknown {dependency!r}"
            assert spec.get("condition") in conditions, f"{name} -> {dependency}: no condition"
            if "healthcheck" in SERVICES[dependency]:
                assert spec["condition"] == "service_healthy", f"{name} -> {dependency}"


def test_services_start_in_order() -> None:
    def condition(name: str, dependency: str) -> str:
        return str(SERVICES[name]["depends_on"][dependency]["condition"])

    assert condition("worker", "migrate") == "service_completed_successfully"
    assert condition("demo", "worker") == "service_started"


@pytest.mark.parametrize("name", sorted(LAZARUS))
def test_image_is_built_from_the_repository(name: str) -> None:
    build = LAZARUS[name]["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert (context / "pyproject.toml").is_file(), f"{name}: build context {context} lacks it"
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file(), f"{name}: no {dockerfile}"
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "COPY" and not any(w.startswith("--") for w in words):
            for source in words[1:-1]:
                assert (context / source).exists(), f"{dockerfile.name}: COPY {source} is missing"

"""compose/ is the stack a person runs locally, checked without a Docker daemon: the file
against the Compose Specification's JSON Schema, every ``lazarus`` command and LAZARUS_*
variable it uses against the real CLI and settings, and what the stack must have (data
volumes, published ports, a migration, health checks, the admin, pinned images and
dependencies).

``data/compose-spec.json`` is the compose-spec project's schema (Apache 2.0, its licence
beside it) as vendored by check-jsonschema 0.39.0 (``check_jsonschema/builtin_schemas/
vendor/compose-spec.json``); refresh it from a newer check-jsonschema the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml
from packaging.requirements import Requirement

from engine.cli.main import app
from engine.settings import Settings
from engine.web.guard import host_name

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_TEXT = (COMPOSE_DIR / "docker-compose.yml").read_text()
COMPOSE: dict[str, Any] = yaml.safe_load(COMPOSE_TEXT)
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SCHEMA = json.loads((Path(__file__).parent / "data" / "compose-spec.json").read_text())
# The RabbitMQ minor series the test suite runs on (STACK.md): the image must be of it.
TESTED_RABBITMQ = "3.10"
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
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


def example_env() -> dict[str, str]:
    """compose/.env.example's variables, with a token as a person would set one."""
    env = {}
    for line in (COMPOSE_DIR / ".env.example").read_text().splitlines():
        line = line.strip().lstrip("#").strip()
        if re.fullmatch(r"[A-Z_]+=\S*", line):
            name, value = line.split("=", 1)
            env[name] = value
    return env | {"LAZARUS_ADMIN_TOKEN": "k7Qx-2vR9_mTz4LpWc8Hs1Ya"}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` as docker compose reads them."""
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        found = env.get(name)
        if op in (":-", "-"):
            return found if found or (op == "-" and found is not None) else arg
        if op in (":?", "?"):
            assert found, f"${{{name}}} unset: compose stops with {arg!r}"
        return found or ""

    return INTERPOLATION.sub(one, value)


def test_compose_file_follows_the_compose_specification() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    errors = [
        f"{e.json_path}: {e.message}"
        for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(COMPOSE)
    ]
    assert not errors, errors


def test_the_schema_check_catches_a_mistake() -> None:
    broken = yaml.safe_load(COMPOSE_TEXT)
    broken["services"]["worker"]["helthcheck"] = {"test": ["CMD", "true"]}
    broken["services"]["worker"]["stop_grace_period"] = 40
    assert len(list(jsonschema.Draft202012Validator(SCHEMA).iter_errors(broken))) == 2


def test_compose_has_the_lazarus_services() -> None:
    assert set(LAZARUS) == {"migrate", "worker", "admin", "demo"}
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


def service_settings(name: str, env: dict[str, str] | None = None) -> Settings:
    """The settings a service's LAZARUS_* variables give, interpolated from ``env``
    (default: compose/.env.example with a token set); each must be a real setting."""
    environment = LAZARUS[name].get("environment", {})
    assert isinstance(environment, dict), f"{name}: use the mapping form for environment"
    assert environment, f"{name}: sets no LAZARUS_* variable"
    values = {}
    for variable, value in environment.items():
        if variable.startswith("LAZARUS_"):
            field = variable.removeprefix("LAZARUS_").lower()
            assert field in Settings.model_fields, f"{name}: {variable} is not a setting"
            values[field] = interpolate(value, example_env() if env is None else env)
    return Settings(**values)  # every value parses


@pytest.mark.parametrize("name", sorted(LAZARUS))
def test_service_sets_only_real_settings(name: str) -> None:
    service_settings(name)


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
    assert condition("admin", "migrate") == "service_completed_successfully"
    assert condition("demo", "migrate") == "service_completed_successfully"


def test_the_demo_runs_on_demand() -> None:
    assert SERVICES["demo"]["profiles"] == ["demo"]  # docker compose run --rm demo


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


def test_data_survives_down_and_up() -> None:
    volumes = COMPOSE.get("volumes") or {}
    for name, path in [("rabbitmq", "/var/lib/rabbitmq"), ("postgres", "/var/lib/postgresql/data")]:
        mounts = [m.split(":") for m in SERVICES[name].get("volumes", [])]
        assert [m for m in mounts if m[1] == path and m[0] in volumes], f"{name}: no volume"
    # RabbitMQ keeps its data under its node name, rabbit@<host name>.
    assert SERVICES["rabbitmq"].get("hostname") == "rabbitmq"


def published(name: str) -> dict[int, str]:
    """Container port -> host address:port, interpolated with the defaults."""
    ports = {}
    for spec in SERVICES[name].get("ports", []):
        host_ip, host_port, container = interpolate(spec, {}).split(":")
        ports[int(container)] = f"{host_ip}:{host_port}"
    return ports


def test_the_hosts_cli_reaches_the_stack_with_its_defaults() -> None:
    defaults = Settings()
    assert published("rabbitmq")[5672] == f"127.0.0.1:{defaults.amqp_url.port or 5672}"
    [postgres] = defaults.database_url.hosts()
    assert published("postgres")[5432] == f"127.0.0.1:{postgres['port'] or 5432}"
    assert service_settings("worker").namespace == defaults.namespace


def test_every_published_port_is_on_loopback_only() -> None:
    for name in SERVICES:
        for container, host in published(name).items():
            assert host.startswith("127.0.0.1:"), f"{name}: port {container} open to the network"


def test_migrate_runs_once_before_the_workers_and_the_admin() -> None:
    assert SERVICES["migrate"]["command"] == ["lazarus", "migrate"]
    assert SERVICES["migrate"]["restart"] == "no"
    for name in ("worker", "admin", "demo"):
        condition = SERVICES[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name


def probed_url(name: str) -> str:
    test = SERVICES[name]["healthcheck"]["test"]
    assert test[0] == "CMD", f"{name}: exec form"
    [url] = re.findall(r"http://[^'\"]+", " ".join(test))
    return url


def test_the_worker_is_healthy_while_its_metrics_answer() -> None:
    ctx = resolve([str(part) for part in SERVICES["worker"]["command"]])
    port = ctx.params["metrics_port"]
    assert port is not None, "the worker serves no /metrics for its health check"
    assert probed_url("worker") == f"http://{ctx.params['metrics_host']}:{port}/metrics"


def test_the_admin_serves_the_host_with_its_token() -> None:
    ctx = resolve([str(part) for part in SERVICES["admin"]["command"]])
    assert ctx.params["host"] == "0.0.0.0" and not ctx.params["no_auth"]
    port = ctx.params["port"]
    assert published("admin")[port].startswith("127.0.0.1:")
    assert probed_url("admin") == f"http://127.0.0.1:{port}/api/health"
    config = service_settings("admin")
    assert config.admin_token is not None  # lazarus admin refuses 0.0.0.0 without one
    # A browser on the host asks for localhost:PORT (or 127.0.0.1:PORT): served.
    admin_port = published("admin")[port].rsplit(":", 1)[1]
    for host in (f"localhost:{admin_port}", f"127.0.0.1:{admin_port}"):
        assert host_name(host) in config.admin_host_names
    assert (
        "devbox.local"
        in service_settings(
            "admin", example_env() | {"LAZARUS_ADMIN_HOSTS": "devbox.local"}
        ).admin_host_names
    )


def test_without_a_token_compose_stops_with_what_to_do() -> None:
    with pytest.raises(AssertionError, match=r"compose/\.env"):
        service_settings("admin", {})
    assert "LAZARUS_ADMIN_TOKEN=" in (COMPOSE_DIR / ".env.example").read_text()
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "compose/.env"], cwd=ROOT, check=False
    ).returncode
    assert ignored == 0, "compose/.env holds the token: keep it out of git"


def test_every_variable_compose_reads_is_in_the_example_env() -> None:
    used = {m.group(1) for m in INTERPOLATION.finditer(COMPOSE_TEXT)}
    assert used <= set(example_env()), used - set(example_env())


def test_images_are_pinned() -> None:
    for name, svc in SERVICES.items():
        if name in LAZARUS:
            continue
        image = svc["image"]
        assert "@sha256:" in image or re.search(r":\d+\.\d+(\.\d+)?(-[a-z]+)?$", image), image
    rabbitmq = SERVICES["rabbitmq"]["image"]
    assert re.match(rf"rabbitmq:{re.escape(TESTED_RABBITMQ)}\.\d+\b", rabbitmq), rabbitmq
    [base] = re.findall(r"^FROM (\S+)", (COMPOSE_DIR / "Dockerfile").read_text(), re.MULTILINE)
    assert "@sha256:" in base or re.search(r":\d+\.\d+\.\d+-", base), base


def freeze() -> Any:
    spec = importlib.util.spec_from_file_location("compose_freeze", COMPOSE_DIR / "freeze.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_image_installs_pinned_dependencies() -> None:
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    assert re.search(r"pip install --constraint constraints\.txt \.", dockerfile)
    pins = {}
    for line in (COMPOSE_DIR / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    tool = freeze()
    missing = set(tool.runtime_closure()) - set(pins)
    assert not missing, f"not pinned (run python compose/freeze.py): {sorted(missing)}"
    project = (ROOT / "pyproject.toml").read_text()
    [block] = re.findall(r"^dependencies = \[(.*?)^\]", project, re.MULTILINE | re.DOTALL)
    for text in re.findall(r'"([^"]+)"', block):
        requirement = Requirement(text)
        pinned = pins[tool.canonical(requirement.name)]
        assert requirement.specifier.contains(pinned), f"{requirement}: pinned {pinned}"


def test_the_build_context_sends_only_what_the_image_copies() -> None:
    kept = {
        line.removeprefix("!").rstrip("/")
        for line in (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert "*" in (COMPOSE_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    copied = set()
    for line in (COMPOSE_DIR / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words and words[0].upper() == "COPY":
            copied |= {w.rstrip("/") for w in words[1:-1]}
    assert copied == kept, copied ^ kept

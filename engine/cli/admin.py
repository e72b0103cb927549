"""``lazarus admin``: serve the HTTP API, ``/metrics`` and the dashboard with uvicorn."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Annotated

import typer
from pydantic import SecretStr

from engine.admin.facade import Admin
from engine.cli.common import EXIT_USAGE, configure_logging, fail, run_async, settings
from engine.settings import Settings


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything: treat it as public


async def probe(config: Settings) -> None:
    """Open and close what the app opens at startup, so a failure is reported before serving."""
    async with Admin(config):
        pass


def admin(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to bind.")] = 8080,
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth", help="Serve without a token (loopback only): any local program can act."
        ),
    ] = False,
    module: Annotated[
        list[str] | None,
        typer.Option(
            "--module",
            "-m",
            help="Module that registers workflows, startable by name (repeatable).",
        ),
    ] = None,
) -> None:
    """Serve the admin API and dashboard.

    Without LAZARUS_ADMIN_TOKEN a random token is made for this run and printed with the
    login address, as notebook servers do; --no-auth serves without one.
    LAZARUS_ADMIN_READ_TOKEN, if set, logs in (or calls the API) for reading only.
    """
    import uvicorn

    from engine.web.api import create_app

    config = settings()
    from engine.cli.main import importable_from_cwd
    from engine.registry import load_modules

    importable_from_cwd()
    try:
        load_modules(module or [])
    except ImportError as exc:
        fail(str(exc), EXIT_USAGE)
    if not config.admin_token and not is_loopback(host):
        fail(
            f"refusing to serve on {host} without LAZARUS_ADMIN_TOKEN: set it, or bind 127.0.0.1",
            EXIT_USAGE,
        )
    if no_auth and config.admin_token:
        fail("--no-auth and LAZARUS_ADMIN_TOKEN contradict each other: drop one", EXIT_USAGE)
    if no_auth and config.admin_read_token:
        fail("--no-auth and LAZARUS_ADMIN_READ_TOKEN contradict each other: drop one", EXIT_USAGE)
    hosts = ",".join(filter(None, [config.admin_hosts, host.strip("[]")]))
    config = config.model_copy(update={"admin_hosts": hosts})
    if not config.admin_token and not no_auth:
        token = secrets.token_urlsafe(24)
        config = config.model_copy(update={"admin_token": SecretStr(token)})
        shown = f"[{host}]" if ":" in host else host
        typer.echo(
            f"lazarus admin: no LAZARUS_ADMIN_TOKEN set, so this run's token is:\n\n    {token}"
            f"\n\nLog in at http://{shown}:{port}/login (API: Authorization: Bearer <token>).",
            err=True,
        )
    if config.admin_read_token:  # never the token itself: it is in the environment
        typer.echo(
            "lazarus admin: read-only logins are enabled (LAZARUS_ADMIN_READ_TOKEN): that "
            "token may look at everything and change nothing.",
            err=True,
        )
    run_async(probe)(config)  # a service down or no schema: one line and exit 3, no traceback
    configure_logging()
    app = create_app(config, open_access=no_auth)
    uvicorn.run(app, host=host, port=port, proxy_headers=False, log_config=None)

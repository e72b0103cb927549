"""``lazarus admin``: serve the HTTP API, ``/metrics`` and the dashboard with uvicorn."""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from engine.admin import Admin
from engine.cli_common import EXIT_USAGE, configure_logging, fail, run_async, settings
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
) -> None:
    """Serve the admin API and dashboard; other hosts than loopback need LAZARUS_ADMIN_TOKEN."""
    import uvicorn

    from engine.http import create_app

    config = settings()
    if not config.admin_token and not is_loopback(host):
        fail(
            f"refusing to serve on {host} without LAZARUS_ADMIN_TOKEN: set it, or bind 127.0.0.1",
            EXIT_USAGE,
        )
    run_async(probe)(config)  # a service down or no schema: one line and exit 3, no traceback
    configure_logging()
    uvicorn.run(create_app(config), host=host, port=port, proxy_headers=False, log_config=None)

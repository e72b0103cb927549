"""What every admin request passes before a route sees it, as one ASGI middleware.

- The Host must be one the admin serves: a page on another name that resolves to this
  machine (DNS rebinding) gets 400, never a page with payloads on it.
- A request that changes state must come from the admin's own pages or from a program:
  a browser says where a request comes from (``Sec-Fetch-Site``, ``Origin``), and any
  other origin gets 403. A JSON API body must say it is JSON (415 otherwise), so an HTML
  form elsewhere cannot post to it.
- A body over the limit gets 413 before it is read into memory.
- A request whose client has gone is cancelled, and with it any query it was waiting on
  (asyncpg cancels the statement in PostgreSQL).
- Every answer says: no framing, no sniffing, no referrer to other sites, a strict CSP, and (but for
  static files) no caching.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_SITE = frozenset({"same-origin", "none"})  # none: typed in the address bar, a bookmark
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)
HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make form posts "Origin: null"
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
NO_STORE = (b"cache-control", b"no-store")


def host_name(host: str) -> str:
    """The name part of a Host header: ``[::1]:8080`` -> ``::1``, ``Example:80`` -> ``example``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Refused(Exception):
    """A request the guard answers itself."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class AdminGuard:
    """The checks above, in front of the whole admin app."""

    def __init__(
        self, app: ASGIApp, *, hosts: Iterable[str], max_body: int, json_prefix: str = "/api/"
    ) -> None:
        self.app = app
        self.hosts = frozenset(hosts)
        self.max_body = max_body
        self.json_prefix = json_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            self.check(scope, headers)
            body = await self.read_body(headers, receive)
        except Refused as refusal:
            await answer(send, refusal.status, str(refusal))
            return
        await self.run(scope, body, receive, _secured(scope, send))

    def check(self, scope: Scope, headers: dict[str, str]) -> None:
        host = host_name(headers.get("host", ""))
        if host not in self.hosts and "*" not in self.hosts:
            raise Refused(400, f"host {host!r} is not served here (LAZARUS_ADMIN_HOSTS)")
        if scope["method"] in SAFE_METHODS:
            return
        site = headers.get("sec-fetch-site")
        if site is not None and site not in SAME_SITE:
            raise Refused(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
        origin = headers.get("origin")
        if origin is not None and origin != f"{scope['scheme']}://{headers['host']}":
            raise Refused(403, f"cross-origin request refused (Origin: {origin[:200]})")
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if scope["path"].startswith(self.json_prefix) and kind not in ("", "application/json"):
            raise Refused(415, f"send JSON (Content-Type: application/json), not {kind[:100]!r}")

    async def read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise Refused(413, f"request body over {self.max_body} bytes")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise asyncio.CancelledError  # the client left before sending its body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise Refused(413, f"request body over {self.max_body} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def run(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        """Run the app on the body read; cancel it if the client disconnects first."""
        gone = asyncio.Event()
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        async def serve() -> None:
            await self.app(scope, replay, send)

        app = asyncio.create_task(serve())
        watcher = asyncio.create_task(watch())
        try:
            await asyncio.wait({app, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not app.done():  # the client left: stop its work, queries included
                app.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await app
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if not app.done():
                app.cancel()


def _secured(scope: Scope, send: Send) -> Send:
    extra = HEADERS if scope["path"].startswith("/static/") else [*HEADERS, NO_STORE]

    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            added = [(k, v) for k, v in extra if k not in present]
            message = {**message, "headers": [*message.get("headers", []), *added]}
        await send(message)

    return secured


async def answer(send: Send, status: int, text: str) -> None:
    body = orjson.dumps({"error": text})
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *HEADERS,
        NO_STORE,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""Read-only access to the admin: LAZARUS_ADMIN_READ_TOKEN may look at everything the
admin token may, as a bearer token or as a dashboard session, and change nothing."""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from engine.errors import ConfigError
from engine.settings import Settings, load_settings
from engine.web.api import create_app
from engine.web.guard import SAFE_METHODS
from tests.acceptance.conftest import Cli, wait_for_output
from tests.acceptance.test_admin_security import free_port
from tests.acceptance.test_http import BEARER, TOKEN, api_client, csrf, kill, migrated
from tests.integration.lifecycle.conftest import tracking_worker

READ_TOKEN = "a-read-only-test-token"
READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ACTIONS = re.compile(
    r'class="(?:requeue|delete|resume|pick)"|id="(?:check-all|requeue-selected|'
    r'delete-selected|requeue-matching|delete-matching)"|hx-post="/ui/(?:queues|types|jobs)/'
)


@pytest.fixture
async def ns() -> AsyncIterator[Settings]:
    async with migrated() as config:
        yield config.model_copy(
            update={"admin_token": SecretStr(TOKEN), "admin_read_token": SecretStr(READ_TOKEN)}
        )


@pytest.fixture
async def admin(ns: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(ns, **BEARER) as client:
        yield client


@pytest.fixture
async def dead(ns: Settings, admin: httpx.AsyncClient) -> list[str]:
    """Two dead letters and a paused job type: something a careless route could change."""
    async with tracking_worker(ns):
        ids = await kill(admin, ns, 2)
    paused = await admin.post("/api/types/http.flaky/pause", headers=BEARER)
    assert paused.status_code == 200
    return ids


def routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """Every (method, path) the app serves, however FastAPI nests included routers."""

    def walk(items: Any) -> Iterator[Any]:
        for item in items:
            if hasattr(item, "effective_route_contexts"):  # FastAPI >= 0.165
                yield from item.effective_route_contexts()
            elif getattr(item, "methods", None):
                yield item

    for route in walk(app.routes):
        for method in route.methods:
            yield method, route.path


def fill(path: str, job_id: str) -> str:
    """A route's path with real values in its parameters."""
    verb = "cancel" if path.startswith("/ui/jobs/") else "pause"
    values = {
        "job_id": job_id,
        "queue": "default",
        "job_type": "http.flaky",
        "verb": verb,
        "workflow_id": "a-workflow",
    }
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], path)


async def snapshot(admin: httpx.AsyncClient) -> dict[str, Any]:
    """What any action would change: dead letters, jobs, pauses and the audit log."""
    seen = {}
    for path in ("/api/dead-letters?status=all", "/api/jobs", "/api/queues", "/api/types",
                 "/api/audit", "/api/workflows"):  # fmt: skip
        response = await admin.get(path, headers=BEARER)
        assert response.status_code == 200, response.text
        seen[path] = response.json()
    for row in seen["/api/queues"]["items"]:  # only who paused what, not the traffic
        for moving in ("messages", "consumers", "per_minute"):
            row.pop(moving)
    return seen


async def log_in(client: httpx.AsyncClient, token: str, name: str = "rita") -> dict[str, str]:
    response = await client.post("/login", data={"token": token, "name": name})
    assert response.status_code == 303, response.text
    return await csrf(client)


async def test_the_read_token_gets_everything_the_admin_token_gets(
    ns: Settings, admin: httpx.AsyncClient, dead: list[str]
) -> None:
    app = admin._transport.app  # type: ignore[attr-defined]
    gets = [fill(p, dead[0]) for method, p in routes(app) if method == "GET"]
    api = [p for p in gets if p.startswith("/api/")] + ["/metrics", "/openapi.json"]
    assert "/api/stats" in api and "/api/workers" in api and "/api/audit" in api
    for path in api:
        as_admin = await admin.get(path, headers=BEARER)
        as_reader = await admin.get(path, headers=READ)
        assert as_reader.status_code == as_admin.status_code, (path, as_reader.text)
        assert as_reader.status_code not in (401, 403), (path, as_reader.text)
    assert "/dead-letters/requeue" in (await admin.get("/openapi.json", headers=READ)).text
    wrong = await admin.get("/api/stats", headers={"Authorization": "Bearer " + "x" * 30})
    assert wrong.status_code == 401


async def test_every_unsafe_route_refuses_the_read_token_and_changes_nothing(
    ns: Settings, admin: httpx.AsyncClient, dead: list[str]
) -> None:
    app = admin._transport.app  # type: ignore[attr-defined]
    unsafe = [(m, fill(p, dead[0])) for m, p in routes(app) if m not in SAFE_METHODS]
    assert len([p for _, p in unsafe if p.startswith("/api/")]) >= 10
    before = await snapshot(admin)
    body = {"all": True, "ids": dead, "older_than": "0s", "work_item_ids": dead}
    for method, path in unsafe:
        if path == "/login":
            continue  # no token needed to try one
        if path.startswith("/api/"):
            response = await admin.request(method, path, json=body, headers=READ)
        else:
            form = {"action": "requeue", "ids": dead[0], "job_id": dead[0], "matching": "true"}
            response = await admin.request(method, path, data=form | {"all": "true"},
                                           headers=READ)  # fmt: skip
        assert response.status_code == 403, (method, path, response.text)
        assert "read-only" in response.json()["error"], (path, response.text)
    assert await snapshot(admin) == before
    # The admin token still does everything.
    done = await admin.post("/api/dead-letters/requeue", json={"ids": dead}, headers=BEARER)
    assert done.status_code == 200 and done.json() == {"total": 2}


async def test_a_read_only_session_sees_no_controls_and_its_forged_posts_are_refused(
    ns: Settings, admin: httpx.AsyncClient, dead: list[str]
) -> None:
    app = admin._transport.app  # type: ignore[attr-defined]
    unsafe = [(m, p) for m, p in routes(app) if m not in SAFE_METHODS]
    before = await snapshot(admin)
    async with api_client(ns) as reader:
        headers = await log_in(reader, READ_TOKEN)
        pages = {
            "/": await reader.get("/"),
            "/ui/panel": await reader.get("/ui/panel"),
            "dead": await reader.get(f"/dead/{dead[0]}"),
            "job": await reader.get(f"/jobs/{dead[0]}"),
        }
        for name, page in pages.items():
            assert page.status_code == 200, (name, page.text)
            assert dead[0] in page.text, name  # it sees the data
            assert not ACTIONS.search(page.text), (name, ACTIONS.search(page.text))
        assert 'id="read-only"' in pages["/"].text and "signed in as rita#" in pages["/"].text
        form = {"action": "requeue", "ids": dead[0], "job_id": dead[0], "matching": "true",
                "all": "true", "csrf_token": headers["X-CSRF-Token"]}  # fmt: skip
        for method, path in unsafe:
            if path in ("/login", "/logout") or path.startswith("/api/"):
                continue  # the API never takes the cookie (401), see test_admin_security
            response = await reader.request(method, fill(path, dead[0]), data=form, headers=headers)
            assert response.status_code == 403, (method, path, response.text)
            assert "read-only" in response.json()["error"], response.text
        after = await snapshot(admin)
        audit, earlier = after.pop("/api/audit")["items"], before.pop("/api/audit")["items"]
        assert after == before
        mine = [e for e in audit if e not in earlier]
        assert [e["action"] for e in mine] == ["login"]  # a read-only session never acts
        assert mine[0]["actor"].startswith("http:rita#")
        assert mine[0]["selector"]["role"] == "read"
        out = await reader.post("/logout", headers=headers)  # it may end itself
        assert out.status_code == 303
        assert (await reader.get("/ui/panel")).status_code == 401
    # An admin session made beside it still acts.
    async with api_client(ns) as person:
        headers = await log_in(person, TOKEN, "alice")
        page = await person.get("/")
        assert 'id="read-only"' not in page.text and 'id="requeue-matching"' in page.text
        done = await person.post("/ui/queues/default/pause", headers=headers)
        assert done.status_code == 200 and "queue default: paused" in done.text


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_a_cookie_whose_role_was_edited_is_refused(ns: Settings) -> None:
    async with api_client(ns) as client:
        await log_in(client, READ_TOKEN)
        cookie = client.cookies["lazarus_session"]
        body, mac = cookie.split(".")
        fields = orjson.loads(_unb64(body))
        assert fields["role"] == "read"
        for edit in ({"role": "admin"}, {"role": None}, {"role": "root"}):
            forged = _b64(orjson.dumps(fields | edit)) + "." + mac
            client.cookies.set("lazarus_session", forged)
            assert (await client.get("/ui/panel")).status_code == 401, edit
        without = {k: v for k, v in fields.items() if k != "role"}
        client.cookies.set("lazarus_session", _b64(orjson.dumps(without)) + "." + mac)
        assert (await client.get("/ui/panel")).status_code == 401
        client.cookies.set("lazarus_session", cookie)
        assert (await client.get("/ui/panel")).status_code == 200
    rotated = ns.model_copy(update={"admin_read_token": SecretStr("another-read-token-x")})
    async with api_client(rotated) as client:  # a new read token ends the read sessions
        client.cookies.set("lazarus_session", cookie)
        assert (await client.get("/ui/panel")).status_code == 401
        assert (await client.post("/login", data={"token": READ_TOKEN})).status_code == 401


def test_settings_refuse_a_short_read_token_or_one_equal_to_the_admin_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAZARUS_ADMIN_TOKEN", TOKEN)
    for bad in ("short", " " * 20):
        monkeypatch.setenv("LAZARUS_ADMIN_READ_TOKEN", bad)
        with pytest.raises(ConfigError, match=r"LAZARUS_ADMIN_READ_TOKEN: .*at least 16"):
            load_settings()
    monkeypatch.setenv("LAZARUS_ADMIN_READ_TOKEN", TOKEN)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert "LAZARUS_ADMIN_READ_TOKEN" in str(raised.value)
    assert "must differ from LAZARUS_ADMIN_TOKEN" in str(raised.value)
    monkeypatch.setenv("LAZARUS_ADMIN_READ_TOKEN", "")
    assert load_settings().admin_read_token is None
    monkeypatch.setenv("LAZARUS_ADMIN_READ_TOKEN", READ_TOKEN)
    assert load_settings().admin_read_token == SecretStr(READ_TOKEN)


async def test_the_app_refuses_a_read_token_equal_to_the_admin_token(ns: Settings) -> None:
    same = ns.model_copy(update={"admin_read_token": SecretStr(TOKEN)})  # past validation
    with pytest.raises(ConfigError, match=r"LAZARUS_ADMIN_READ_TOKEN.*LAZARUS_ADMIN_TOKEN"):
        create_app(same)


def test_lazarus_admin_says_read_only_logins_are_enabled(cli: Cli, tmp_path: Any) -> None:
    assert cli.run("migrate").returncode == 0
    reading = dataclasses.replace(cli, env=cli.env | {"LAZARUS_ADMIN_READ_TOKEN": READ_TOKEN})
    port = free_port()
    log = tmp_path / "admin.log"
    process = reading.spawn(log, "admin", "--port", str(port))
    try:
        wait_for_output(process, log, "Application startup complete")
        text = log.read_text()
        assert f"Log in at http://127.0.0.1:{port}/login" in text
        assert "read-only logins are enabled" in text and READ_TOKEN not in text
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/stats", headers=READ).status_code == 200
        refused = httpx.post(f"{base}/api/queues/default/pause", headers=READ)
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]
    finally:
        process.terminate()
        process.wait(timeout=30)
    no_auth = reading.run("admin", "--no-auth", "--port", "1")
    assert no_auth.returncode == 2 and "LAZARUS_ADMIN_READ_TOKEN" in no_auth.stderr

"""The admin surface against hostile requests: other sites, forged hosts, huge or slow
requests, broken data, and who is recorded as having acted."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from engine import Client
from engine.admin.lifecycle import Lifecycle
from engine.errors import ConfigError
from engine.pg.store import Store
from engine.settings import Settings, load_settings
from engine.web.api import create_app
from engine.web.models import DeadFilterBody
from tests.acceptance.conftest import Cli, serving
from tests.acceptance.test_http import (
    BASE,
    BEARER,
    TOKEN,
    Worker_,
    api_client,
    csrf,
    dead_ids,
    enqueue,
    kill,
    migrated,
)
from tests.conftest import DATABASE_URL, wait_for
from tests.integration.lifecycle.conftest import tracking_worker

ELSEWHERE = "http://localhost:9999"


@pytest.fixture
async def ns() -> AsyncIterator[Settings]:
    async with migrated() as config:
        yield config


@pytest.fixture
async def api(ns: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(ns) as client:
        yield client


@pytest.fixture
def worker(ns: Settings) -> Worker_:
    return lambda: tracking_worker(ns)


@pytest.fixture
async def secured(ns: Settings) -> Settings:
    return ns.model_copy(update={"admin_token": SecretStr(TOKEN)})


async def paused_queues(config: Settings) -> list[str]:
    store = Store(config)
    await store.connect()
    try:
        return [r["queue"] for r in await store.paused_queues()]
    finally:
        await store.close()


async def log_in(client: httpx.AsyncClient, name: str = "alice") -> dict[str, str]:
    """Log in with the form; return the CSRF header of the dashboard that follows."""
    response = await client.post("/login", data={"token": TOKEN, "name": name})
    assert response.status_code == 303, response.text
    return await csrf(client)


# Cross-site requests and framing


async def test_a_form_posted_from_another_origin_changes_nothing(
    api: httpx.AsyncClient, ns: Settings
) -> None:
    await csrf(api)  # the person has the dashboard open: the browser holds its cookie
    for headers in (
        {"Origin": ELSEWHERE},
        {"Origin": "http://127.0.0.1:9999"},  # another port of the same host
        {"Origin": "null"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        response = await api.post("/ui/queues/default/pause", data={"reason": "x"}, headers=headers)
        assert response.status_code == 403, (headers, response.text)
        assert "refused" in response.json()["error"]
    assert await paused_queues(ns) == []


async def test_a_dashboard_action_needs_the_pages_csrf_token(
    api: httpx.AsyncClient, ns: Settings
) -> None:
    headers = await csrf(api)
    same_origin = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
    refused = await api.post("/ui/queues/default/pause", headers=same_origin)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    forged = await api.post("/ui/queues/default/pause", headers={"X-CSRF-Token": "forged"})
    assert forged.status_code == 403
    assert await paused_queues(ns) == []
    done = await api.post("/ui/queues/default/pause", headers=same_origin | headers)
    assert done.status_code == 200 and "queue default: paused" in done.text
    assert await paused_queues(ns) == ["default"]


async def test_the_api_takes_the_bearer_token_not_the_dashboards_cookie(secured: Settings) -> None:
    async with api_client(secured) as client:
        await log_in(client)
        assert (await client.get("/ui/panel")).status_code == 200  # the cookie works here
        response = await client.get("/api/stats")
        assert response.status_code == 401, "the API honoured the cookie"
        post = await client.post("/api/queues/default/pause")
        assert post.status_code == 401
        assert await paused_queues(secured) == []


async def test_the_api_refuses_a_body_that_is_not_json(
    api: httpx.AsyncClient, ns: Settings
) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    for path in ("/api/queues/default/pause", "/api/types/t.x/pause", "/api/dead-letters/requeue"):
        response = await api.post(path, content=b"", headers=form)
        assert response.status_code == 415, (path, response.text)
    plain = await api.post("/api/queues/default/pause", content=b"{}", headers={
        "content-type": "text/plain"})  # fmt: skip
    assert plain.status_code == 415
    assert await paused_queues(ns) == []
    bare = await api.post("/api/queues/default/pause")  # curl -X POST: no body, no type
    assert bare.status_code == 200


async def test_only_configured_host_names_are_served(ns: Settings) -> None:
    async with api_client(ns) as client:
        for host in ("evil.example", "rebind.attacker.test:8080", "10.0.0.7"):
            response = await client.get("/api/stats", headers={"Host": host})
            assert response.status_code == 400, host
            assert "LAZARUS_ADMIN_HOSTS" in response.json()["error"]
        for host in ("127.0.0.1:8080", "localhost", "[::1]:8080"):
            assert (await client.get("/api/stats", headers={"Host": host})).status_code == 200
    named = ns.model_copy(update={"admin_hosts": "Admin.Example.com, 10.0.0.7"})
    async with api_client(named) as client:
        for host in ("admin.example.com", "admin.example.com:443", "10.0.0.7:8080"):
            assert (await client.get("/api/stats", headers={"Host": host})).status_code == 200
        assert (await client.get("/api/stats", headers={"Host": "x.test"})).status_code == 400


async def test_pages_refuse_framing_sniffing_and_caching(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        [job_id] = await kill(api, ns, 1)
    for path in ("/", f"/api/dead-letters/{job_id}", f"/ui/dead?job_id={job_id}", "/nowhere"):
        headers = (await api.get(path)).headers
        assert headers["x-frame-options"] == "DENY", path
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["cache-control"] == "no-store", path
    static = (await api.get("/static/lazarus.js")).headers
    assert static["x-frame-options"] == "DENY" and "no-store" not in static.get("cache-control", "")


async def test_the_dashboard_requeues_everything_only_when_asked_for(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        ids = await kill(api, ns, 3)
        headers = await csrf(api)
        refused = await api.post("/ui/requeue-matching", headers=headers)
        assert "ask for all" in refused.text
        assert set(ids) <= await dead_ids(api)
        done = await api.post("/ui/requeue-matching", data={"all": "true"}, headers=headers)
        assert "requeued 3 dead jobs" in done.text


# One request must not freeze anything


def test_a_long_number_is_refused_in_linear_time() -> None:
    # 200,000 digits: the old check backtracked quadratically (40 KB took 45 s).
    for value in ("9" * 200_000, "1" * 100_000 + "x"):
        with pytest.raises(ValueError, match="at most 64 characters"):
            DeadFilterBody.model_validate({"after": value})
    with pytest.raises(ValueError, match="ISO 8601"):
        DeadFilterBody.model_validate({"after": "1700000000"})


async def test_every_string_and_list_in_a_request_is_bounded(api: httpx.AsyncClient) -> None:
    long = "x" * 1_000_000
    for url in (
        f"/api/dead-letters?error={long[:60_000]}",  # URLs stop at 64 KB; bodies below
        f"/api/dead-letters?after={'9' * 40_000}",
        f"/api/dead-letters?type={long[:10_000]}",
        f"/api/jobs?queue={long[:10_000]}",
    ):
        response = await api.get(url)
        assert response.status_code == 422, (url[:60], response.text[:200])
    many = {"ids": [f"id-{n}" for n in range(1001)]}
    assert (await api.post("/api/dead-letters/requeue", json=many)).status_code == 422
    huge_id = {"ids": ["x" * 2000]}
    assert (await api.post("/api/dead-letters/delete", json=huge_id)).status_code == 422
    for error in (long[:600], long):
        filtered = {"filter": {"error": error}}
        assert (await api.post("/api/dead-letters/delete", json=filtered)).status_code in (413, 422)


async def test_a_body_over_the_limit_is_413_before_it_is_read(api: httpx.AsyncClient) -> None:
    big = b'{"ids": ["' + b"x" * 2_000_000 + b'"]}'
    declared = await api.post("/api/dead-letters/requeue", content=big,
                              headers={"content-type": "application/json"})  # fmt: skip
    assert declared.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b"x" * 65_536

    streamed = await api.post("/api/dead-letters/requeue", content=chunks(),
                              headers={"content-type": "application/json"})  # fmt: skip
    assert streamed.status_code == 413


@contextlib.asynccontextmanager
async def table_locked(config: Settings) -> AsyncIterator[None]:
    """Hold an exclusive lock on dead_letters, so that any query of it waits."""
    connection = await asyncpg.connect(
        DATABASE_URL, server_settings={"search_path": config.namespace}
    )
    try:
        async with connection.transaction():
            await connection.execute("LOCK TABLE dead_letters IN ACCESS EXCLUSIVE MODE")
            yield
    finally:
        await connection.close()


async def test_a_query_past_the_statement_timeout_is_504(ns: Settings) -> None:
    quick = ns.model_copy(update={"admin_statement_timeout": 0.5})
    async with api_client(quick) as client, table_locked(ns):
        response = await client.get("/api/dead-letters")
    assert response.status_code == 504, response.text
    assert "cancel" in response.json()["error"]


async def waiting_queries() -> int:
    """Queries of dead_letters waiting on a lock (the test's own lock)."""
    connection = await asyncpg.connect(DATABASE_URL)
    try:
        return int(await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
            " AND wait_event_type = 'Lock' AND query LIKE '%FROM dead_letters%'"
        ))  # fmt: skip
    finally:
        await connection.close()


async def test_a_query_whose_client_left_is_cancelled(ns: Settings) -> None:
    async def waiting() -> bool:
        return await waiting_queries() == 1

    async def cancelled() -> bool:
        return await waiting_queries() == 0

    app = create_app(ns, open_access=True)
    async with table_locked(ns):
        with serving(app) as base_url:
            port = int(base_url.rsplit(":", 1)[1])
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET /api/dead-letters?error=slow HTTP/1.1\r\nHost: 127.0.0.1:{port}"
                         "\r\n\r\n".encode())  # fmt: skip
            await writer.drain()
            await wait_for(waiting, what="the query to wait on the lock")
            writer.close()  # the client gives up
            await writer.wait_closed()
            await wait_for(cancelled, what="the query to be cancelled")


# Poisoned data must not take the dashboard down


async def test_a_card_that_fails_shows_its_error_and_the_page_still_renders(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with worker():
        [job_id] = await kill(api, ns, 1)

    async def broken(self: Lifecycle, names: Any = None) -> list[dict[str, Any]]:
        raise ValueError("Invalid value for queue: 'bad name!'")

    monkeypatch.setattr(Lifecycle, "list_queues", broken)
    page = await api.get("/")
    assert page.status_code == 200
    assert "Invalid value for queue" in page.text and job_id in page.text


async def test_any_job_id_is_reachable_from_the_dashboard_and_the_api(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    odd = ["orders/2026/17", "a/../b", "..", "x?y#z", "100% sure"]
    async with worker(), Client(ns) as client:
        for job_id in odd:
            await client.enqueue("http.flaky", {}, job_id=job_id)
        await wait_for(lambda: _all_dead(api, odd), what="the odd ids to die")
        shown = await api.get("/api/dead-letters/orders%2F2026%2F17")
        assert shown.status_code == 200 and shown.json()[0]["job_id"] == "orders/2026/17"
        job = await api.get("/api/jobs/orders/2026/17")
        assert job.status_code == 200 and job.json()["job_id"] == "orders/2026/17"
        headers = await csrf(api)
        for job_id in odd:
            detail = await api.get("/ui/dead", params={"job_id": job_id})
            assert "RuntimeError" in detail.text, job_id
            done = await api.post("/ui/dead/requeue", data={"job_id": job_id}, headers=headers)
            assert "requeued job" in done.text, (job_id, done.text[:300])


async def _all_dead(api: httpx.AsyncClient, ids: list[str]) -> bool:
    return set(ids) <= await dead_ids(api)


# Tokens, sessions, audit


async def test_login_is_a_post_giving_a_signed_expiring_session(secured: Settings) -> None:
    async with api_client(secured) as client:
        assert (await client.get("/")).headers["location"] == "/login"
        in_url = await client.get("/", params={"token": TOKEN})  # never from a URL
        assert in_url.status_code == 303 and in_url.headers["location"] == "/login"
        wrong = await client.post("/login", data={"token": "x" * 30})
        assert wrong.status_code == 401 and "wrong token" in wrong.text
        response = await client.post("/login", data={"token": TOKEN, "name": "alice"})
        set_cookie = response.headers["set-cookie"]
        assert TOKEN not in set_cookie
        assert "HttpOnly" in set_cookie and "SameSite=strict" in set_cookie
        assert "Max-Age=43200" in set_cookie
        assert "Secure" not in set_cookie  # plain http on loopback
        headers = await csrf(client)
        page = await client.get("/")
        assert "signed in as alice#" in page.text
        cookie = client.cookies["lazarus_session"]
        tampered = cookie.replace(".", "x.", 1)
        client.cookies.set("lazarus_session", tampered)
        assert (await client.get("/ui/panel")).status_code == 401
        client.cookies.set("lazarus_session", cookie)
        assert (await client.get("/ui/panel")).status_code == 200
        out = await client.post("/logout", headers=headers)
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert 'lazarus_session=""' in out.headers["set-cookie"]  # the browser forgets it
        client.cookies.clear()
        client.cookies.set("lazarus_session", cookie)  # a copy kept elsewhere is refused
        assert (await client.get("/ui/panel")).status_code == 401
    https = secured.model_copy(update={"admin_secure_cookies": True})
    async with api_client(https) as client:
        response = await client.post("/login", data={"token": TOKEN})
        assert "Secure" in response.headers["set-cookie"]


async def test_a_session_from_another_token_is_refused(secured: Settings) -> None:
    async with api_client(secured) as client:
        await log_in(client)
        cookie = client.cookies["lazarus_session"]
    rotated = secured.model_copy(update={"admin_token": SecretStr("another-token-of-length")})
    async with api_client(rotated) as client:
        client.cookies.set("lazarus_session", cookie)
        assert (await client.get("/ui/panel")).status_code == 401


def test_a_short_or_blank_token_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for bad in (" ", "s3cret", " " * 20):
        monkeypatch.setenv("LAZARUS_ADMIN_TOKEN", bad)
        with pytest.raises(ConfigError, match=r"LAZARUS_ADMIN_TOKEN: .*at least 16"):
            load_settings()


async def test_the_app_needs_a_token_unless_open_access_is_asked_for(ns: Settings) -> None:
    with pytest.raises(ConfigError, match="LAZARUS_ADMIN_TOKEN is not set"):
        create_app(ns)


async def test_the_audit_log_records_who_acted_and_from_where(secured: Settings) -> None:
    async with api_client(secured) as client:
        headers = await log_in(client, "alice")
        assert (await client.post("/ui/queues/default/pause", headers=headers)).status_code == 200
        assert (await client.post("/api/queues/default/resume", headers=BEARER)).status_code == 200
        entries = (await client.get("/api/audit", headers=BEARER)).json()["items"]
        panel = (await client.get("/ui/panel")).text
    resume, pause, login = entries[:3]
    assert (resume["action"], resume["actor"]) == ("unpause", "http:token@127.0.0.1")
    assert pause["action"] == "pause"
    assert re.fullmatch(r"http:alice#[0-9a-f]{8}@127\.0\.0\.1", pause["actor"]), pause
    assert login["action"] == "login" and login["actor"] == pause["actor"]
    assert all(e["state"] == "done" for e in entries)
    assert pause["actor"] in panel and "http:token@127.0.0.1" in panel  # the dashboard shows it


# The command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_lazarus_admin_without_a_token_makes_one_and_prints_the_login_address(
    cli: Cli, tmp_path: Any
) -> None:
    assert cli.run("migrate").returncode == 0
    port = free_port()
    log = tmp_path / "admin.log"
    process = cli.spawn(log, "admin", "--port", str(port))
    try:
        from tests.acceptance.conftest import wait_for_output

        wait_for_output(process, log, "Application startup complete")
        text = log.read_text()
        assert f"Log in at http://127.0.0.1:{port}/login" in text
        token = re.search(r"token is:\s+(\S+)", text)
        assert token and len(token.group(1)) >= 16
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/api/stats").status_code == 401
        auth = {"Authorization": f"Bearer {token.group(1)}"}
        assert httpx.get(f"{base}/api/stats", headers=auth).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_lazarus_admin_no_auth_is_for_loopback_only(cli: Cli) -> None:
    result = cli.run("admin", "--host", "0.0.0.0", "--no-auth", "--port", "1")
    assert result.returncode == 2 and "without LAZARUS_ADMIN_TOKEN" in result.stderr
    short = cli.run("admin", "--port", "1", LAZARUS_ADMIN_TOKEN="short")
    assert short.returncode == 2 and "LAZARUS_ADMIN_TOKEN" in short.stderr


async def test_triage_pages_and_bulk_actions_keep_the_same_rules(
    secured: Settings, worker: Worker_
) -> None:
    async with api_client(secured) as client:
        for path in ("/dead/x", "/jobs/x", "/jobs?state=dead"):
            response = await client.get(path)
            assert response.status_code == 303 and response.headers["location"] == "/login"
        headers = await log_in(client)
        async with worker():
            job_id = await enqueue(secured, "http.flaky", {"n": 1})

            async def dead() -> bool:
                found = await client.get(f"/api/dead-letters/{job_id}", headers=BEARER)
                return found.status_code == 200

            await wait_for(dead, what="the dead letter")
        form = {"action": "requeue", "ids": job_id}
        refused = await client.post("/ui/bulk/apply", data=form)
        assert refused.status_code == 403
        preview = await client.post("/ui/bulk/preview", data=form, headers=headers)
        assert "would be requeued" in preview.text and "1 selected" in preview.text
        whole = await client.post("/ui/bulk/apply", data={"action": "requeue", "matching": "true"},
                                  headers=headers)  # fmt: skip
        assert "ask for all" in whole.text  # an empty filter needs "all" ticked
        done = await client.post("/ui/bulk/apply", data=form | {"retries": "3"}, headers=headers)
        assert "requeued 1 dead jobs (restart, 3 retries)" in done.text
        page = await client.get(f"/dead/{job_id}")
        assert page.status_code == 200 and "requeued" in page.text

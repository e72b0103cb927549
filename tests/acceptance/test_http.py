"""The admin HTTP API against the real services: every endpoint, its errors and its auth."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from engine import Client, JobContext, RetryPolicy, handler
from engine.pg.store import Store
from engine.settings import Settings
from engine.web.api import create_app
from engine.worker.consume import Worker
from tests.acceptance.conftest import Cli
from tests.conftest import DATABASE_URL, delete_namespace, make_settings, unique_namespace, wait_for
from tests.integration.conftest import TcpProxy
from tests.integration.lifecycle.conftest import tracking_worker

BASE = "http://127.0.0.1:8080"
ran: dict[str, list[int]] = {}  # job id -> generations that succeeded
gates: dict[str, asyncio.Event] = {}
TOKEN = "a-long-enough-test-token"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@handler("http.flaky", policy=RetryPolicy(attempts=1, max_retries=0))
async def flaky(ctx: JobContext) -> None:
    """Dies on its first generation; any requeued generation succeeds."""
    if ctx.message.generation == 0:
        raise RuntimeError(f"cannot process {ctx.payload!r} yet")
    ran.setdefault(ctx.job_id, []).append(ctx.message.generation)


@handler("http.gated", policy=RetryPolicy(attempts=1, max_retries=0))
async def gated(ctx: JobContext) -> None:
    """Waits for its gate on generation 0 (so a person can suspend it while it runs)."""
    if ctx.message.generation == 0:
        await gates.setdefault(ctx.job_id, asyncio.Event()).wait()
    ran.setdefault(ctx.job_id, []).append(ctx.message.generation)


@asynccontextmanager
async def migrated(**extra: object) -> AsyncIterator[Settings]:
    """A fresh namespace with its schema; schema and queues removed afterwards."""
    config = make_settings(unique_namespace(), **extra)  # type: ignore[arg-type]
    store = Store(config)
    await store.connect(require_schema=False)
    await store.migrate()
    try:
        yield config
    finally:
        await store.drop_schema()
        await store.close()
        await delete_namespace(config.namespace, ["default"])


@asynccontextmanager
async def api_client(config: Settings, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (lifespan included) behind an httpx client; without a token in
    ``config`` it serves without auth, as ``lazarus admin --no-auth`` does."""
    app = create_app(config, open_access=config.admin_token is None)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as c,
    ):
        yield c


async def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    """Open the dashboard (which sets the session cookie) and return its CSRF header."""
    page = await client.get("/")
    assert page.status_code == 200, page.text
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert match, "no CSRF token on the page"
    return {"X-CSRF-Token": match.group(1)}


@pytest.fixture
async def ns() -> AsyncIterator[Settings]:
    async with migrated() as config:
        yield config


@pytest.fixture
async def api(ns: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(ns) as client:
        yield client


Worker_ = Callable[[], AbstractAsyncContextManager[Worker]]


@pytest.fixture
def worker(ns: Settings) -> Worker_:
    return lambda: tracking_worker(ns)


async def enqueue(config: Settings, job_type: str, payload: Any = None) -> str:
    async with Client(config) as client:
        return await client.enqueue(job_type, payload, job_id=f"{job_type}-{uuid.uuid4().hex[:8]}")


async def dead_ids(api: httpx.AsyncClient) -> set[str]:
    response = await api.get("/api/dead-letters")
    assert response.status_code == 200, response.text
    return {row["job_id"] for row in response.json()["items"]}


async def kill(api: httpx.AsyncClient, config: Settings, count: int) -> list[str]:
    """Enqueue ``count`` http.flaky jobs and wait until all are dead letters."""
    ids = [await enqueue(config, "http.flaky", {"n": n}) for n in range(count)]

    async def all_dead() -> bool:
        return set(ids) <= await dead_ids(api)

    await wait_for(all_dead, what=f"{count} dead letters")
    return ids


async def job_state(api: httpx.AsyncClient, job_id: str) -> str | None:
    response = await api.get(f"/api/jobs/{job_id}")
    return response.json()["state"] if response.status_code == 200 else None


async def test_health_is_ok_when_both_services_answer(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "rabbitmq": None, "postgresql": None}


async def test_health_is_503_naming_postgresql_when_it_goes_away(ns: Settings) -> None:
    proxy = TcpProxy()
    await proxy.start()
    try:
        via_proxy = ns.model_copy(
            update={"database_url": DATABASE_URL.replace(":5432", f":{proxy.port}")}
        )
        async with api_client(via_proxy) as api:
            assert (await api.get("/api/health")).status_code == 200
            await proxy.cut()
            response = await api.get("/api/health")
    finally:
        await proxy.cut()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["rabbitmq"] is None
    assert "unreachable" in body["postgresql"]


async def test_dead_job_is_listed_shown_and_requeued_once(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        [job_id] = await kill(api, ns, 1)

        listed = (await api.get("/api/dead-letters", params={"type": "http.flaky"})).json()
        [row] = [r for r in listed["items"] if r["job_id"] == job_id]
        assert (row["error_type"], row["status"], row["generation"]) == ("RuntimeError", "dead", 0)
        assert "cannot process" in row["error_message"]
        assert (await api.get("/api/dead-letters", params={"type": "other"})).json()["items"] == []

        shown = await api.get(f"/api/dead-letters/{job_id}")
        assert shown.status_code == 200
        [death] = shown.json()
        assert "Traceback" in death["traceback"] and "RuntimeError" in death["traceback"]
        assert death["payload"] == {"n": 0}

        body = {"ids": [job_id], "retries": 2, "mode": "restart"}
        dry = await api.post("/api/dead-letters/requeue", json=body | {"dry_run": True})
        assert dry.json() == {"total": 1}
        assert job_id in await dead_ids(api)
        first = await api.post("/api/dead-letters/requeue", json=body)
        second = await api.post("/api/dead-letters/requeue", json=body)
        assert first.json() == {"total": 1}
        assert second.status_code == 409 and "no longer dead" in second.json()["error"]
        await wait_for(lambda: ran.get(job_id) == [1], what="the requeued job to succeed")
        await wait_for(
            lambda: _is(job_state(api, job_id), "succeeded"), what="the job row to succeed"
        )
        history = (await api.get("/api/dead-letters", params={"status": "all"})).json()["items"]
        assert [r["status"] for r in history if r["job_id"] == job_id] == ["requeued"]


async def _is(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_compatibility_retry_counts_only_the_jobs_it_moved(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        a, b = await kill(api, ns, 2)
        url = "/api/work-items/retry"
        body = {"work_item_ids": [a, b, "no-such-job"]}
        first = await api.put(url, params={"type": "recover"}, json=body)
        assert first.status_code == 200
        assert first.json() == {"total": 2}
        assert (await api.put(url, params={"type": "restart"}, json=body)).json() == {"total": 0}
        assert (await api.put(url, json={"work_item_ids": []})).json() == {"total": 0}
        bad = await api.put(url, params={"type": "sideways"}, json=body)
        assert bad.status_code == 422 and "type" in bad.json()["error"]
        await wait_for(lambda: ran.get(a) == [1] and ran.get(b) == [1], what="both to run again")


async def test_compatibility_retry_gives_the_requeued_job_its_new_retry_budget(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        [job_id] = await kill(api, ns, 1)
        url = "/api/work-items/retry"
        body = {"work_item_ids": [job_id]}
        too_many = await api.put(url, json=body | {"retries": 2**31})
        assert too_many.status_code == 422 and "retries" in too_many.json()["error"]
        moved = await api.put(url, params={"type": "restart"}, json=body | {"retries": 7})
        assert moved.json() == {"total": 1}
        await wait_for(lambda: ran.get(job_id) == [1], what="the requeued job to run")
        await wait_for(
            lambda: _is(job_state(api, job_id), "succeeded"), what="the job row to succeed"
        )
    job = (await api.get(f"/api/jobs/{job_id}")).json()
    assert (job["generation"], job["max_retries"]) == (1, 7)


async def test_bulk_requeue_needs_ids_a_filter_or_all(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        ids = await kill(api, ns, 3)
        url = "/api/dead-letters/requeue"
        nothing = await api.post(url, json={})
        assert nothing.status_code == 422
        assert nothing.json() == {
            "error": "name job ids, give a filter, or ask for all (--all / all: true)"
        }
        both = await api.post(url, json={"ids": ids[:1], "filter": {"type": "http.flaky"}})
        assert both.json() == {"error": "give job ids or a filter, not both"}
        typo = await api.post(url, json={"filter": {"kind": "http.flaky"}})
        assert typo.status_code == 422 and "kind" in typo.json()["error"]
        bad_age = await api.post(url, json={"filter": {"since": "soon"}})
        assert bad_age.status_code == 422 and "since" in bad_age.json()["error"]
        negative = await api.post(url, json={"all": True, "retries": -1})
        assert negative.status_code == 422 and "retries" in negative.json()["error"]

        matching = {"filter": {"type": "http.flaky", "error": "CANNOT PROCESS", "since": "1h"}}
        dry = await api.post(url, json=matching | {"dry_run": True})
        assert dry.json() == {"total": 3}
        assert (await api.post(url, json={"all": True, "mode": "recover"})).json() == {"total": 3}
        await wait_for(lambda: all(ran.get(i) == [1] for i in ids), what="all three to run again")


async def test_delete_then_purge(api: httpx.AsyncClient, ns: Settings, worker: Worker_) -> None:
    async with worker():
        a, b = await kill(api, ns, 2)
    deleted = await api.post("/api/dead-letters/delete", json={"ids": [a]})
    assert deleted.json() == {"total": 1}
    assert await dead_ids(api) == {b}
    again = await api.post("/api/dead-letters/delete", json={"ids": [a]})
    assert again.status_code == 409 and "no longer dead" in again.json()["error"]
    bad = await api.post("/api/dead-letters/purge", json={"older_than": "forever"})
    assert bad.status_code == 422 and "older_than" in bad.json()["error"]
    keep = await api.post("/api/dead-letters/purge", json={"older_than": "1d"})
    assert keep.json() == {"total": 0}
    purged = await api.post("/api/dead-letters/purge", json={"older_than": "0s"})
    assert purged.json() == {"total": 2}
    assert (await api.get(f"/api/dead-letters/{a}")).status_code == 404


async def test_unknown_ids_are_404_with_a_message_naming_them(api: httpx.AsyncClient) -> None:
    for method, url in [
        ("GET", "/api/dead-letters/ghost"),
        ("GET", "/api/jobs/ghost"),
        ("POST", "/api/jobs/ghost/suspend"),
        ("POST", "/api/jobs/ghost/resume"),
        ("POST", "/api/jobs/ghost/cancel"),
        ("GET", "/api/jobs/ghost/cause"),
        ("GET", "/api/jobs/ghost/attempts"),
    ]:
        response = await api.request(method, url)
        assert response.status_code == 404, (method, url, response.text)
        assert "'ghost'" in response.json()["error"]
    missing = await api.get("/api/no-such-thing")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found"}


async def test_suspend_cause_resume_cancel_of_a_running_job(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        job_id = await enqueue(ns, "http.gated")
        await wait_for(lambda: _is(job_state(api, job_id), "running"), what="the job to run")
        listed = (await api.get("/api/jobs", params={"state": "running"})).json()["items"]
        assert [j["job_id"] for j in listed] == [job_id]

        cause_early = await api.get(f"/api/jobs/{job_id}/cause")
        assert cause_early.status_code == 409 and "not suspended" in cause_early.json()["error"]
        wrong_gen = await api.post(f"/api/jobs/{job_id}/suspend", json={"generation": 7})
        assert wrong_gen.status_code == 409 and "generation 7" in wrong_gen.json()["error"]
        suspended = await api.post(f"/api/jobs/{job_id}/suspend", json={"reason": "investigate"})
        assert suspended.status_code == 200
        assert suspended.json()["state"] == "suspended"
        twice = await api.post(f"/api/jobs/{job_id}/suspend")
        assert twice.status_code == 409 and job_id in twice.json()["error"]
        cause = (await api.get(f"/api/jobs/{job_id}/cause")).json()
        assert cause["cause"] == "Requested by user: investigate" and cause["traceback"] is None

        resumed = await api.post(f"/api/jobs/{job_id}/resume", json={"payload": {"fixed": True}})
        assert resumed.status_code == 200, resumed.text
        assert (resumed.json()["generation"], resumed.json()["payload"]) == (1, {"fixed": True})
        await wait_for(lambda: ran.get(job_id) == [1], what="the resumed job to finish")
        await wait_for(lambda: _is(job_state(api, job_id), "succeeded"), what="succeeded")
        shown = (await api.get(f"/api/jobs/{job_id}")).json()
        assert shown["payload"] == {"fixed": True}
        late = await api.post(f"/api/jobs/{job_id}/cancel")
        assert late.status_code == 409 and "succeeded" in late.json()["error"]
        bad = await api.post(f"/api/jobs/{job_id}/resume", json={"mode": "sideways"})
        assert bad.status_code == 422 and "mode" in bad.json()["error"]


async def test_queues_pause_and_resume(api: httpx.AsyncClient, worker: Worker_) -> None:
    async with worker():
        [default] = (await api.get("/api/queues")).json()["items"]
        assert (default["queue"], default["exists"], default["paused"]) == ("default", True, False)
        assert default["consumers"] >= 1
        pause = await api.post("/api/queues/default/pause", json={"reason": "deploy"})
        assert pause.json() == {"queue": "default", "changed": True}
        assert (await api.post("/api/queues/default/pause")).json()["changed"] is False
        [paused] = (await api.get("/api/queues")).json()["items"]
        assert (paused["paused"], paused["reason"]) == (True, "deploy")
        assert (await api.post("/api/queues/default/resume")).json()["changed"] is True
        assert (await api.post("/api/queues/default/resume")).json()["changed"] is False
        bad = await api.post("/api/queues/no%20spaces/pause")
        assert bad.status_code == 422 and "'no spaces'" in bad.json()["error"]


async def test_job_types_pause_and_resume(api: httpx.AsyncClient) -> None:
    pause = await api.post("/api/types/report.build/pause", json={"reason": "bad deploy"})
    assert pause.json() == {"job_type": "report.build", "changed": True, "moved": 0}
    assert (await api.post("/api/types/report.build/pause")).json()["changed"] is False
    [paused] = (await api.get("/api/types")).json()["items"]
    assert (paused["job_type"], paused["paused"], paused["parked"]) == ("report.build", True, 0)
    assert paused["reason"] == "bad deploy" and paused["paused_by"]
    resume = await api.post("/api/types/report.build/resume")
    assert resume.json() == {"job_type": "report.build", "changed": True, "moved": 0}
    assert (await api.post("/api/types/report.build/resume")).json()["changed"] is False
    assert (await api.get("/api/types")).json()["items"] == []
    bad = await api.post("/api/types/no%20spaces/pause")
    assert bad.status_code == 422 and "job type 'no spaces'" in bad.json()["error"]


async def test_stats_and_metrics_count_dead_letters(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        await kill(api, ns, 2)
    stats = (await api.get("/api/stats")).json()
    assert stats["dead_letters"] == 2
    assert stats["jobs"]["dead"] == 2 and set(stats["jobs"]) >= {"pending", "suspended"}
    metrics = await api.get("/metrics")
    assert metrics.status_code == 200
    assert 'lazarus_dead_letters{status="dead"} 2.0' in metrics.text


async def test_bad_query_values_are_422_naming_the_field(api: httpx.AsyncClient) -> None:
    cases = {
        "/api/dead-letters?limit=0": "limit",
        "/api/dead-letters?status=gone": "status",
        "/api/dead-letters?since=9999999999d": "since",
        "/api/dead-letters?after=yesterday": "after",
        "/api/jobs?state=asleep": "state",
        "/api/dead-letters?error=%00": "PostgreSQL refused",
    }
    for url, named in cases.items():
        response = await api.get(url)
        assert response.status_code == 422, (url, response.text)
        assert named in response.json()["error"], (url, response.text)
    broken = await api.post(
        "/api/dead-letters/requeue", content=b"{", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and "JSON" in broken.json()["error"]


async def test_a_configured_token_is_required_except_for_health(ns: Settings) -> None:
    secured = ns.model_copy(update={"admin_token": SecretStr(TOKEN)})
    async with api_client(secured) as api:
        missing = await api.get("/api/stats")
        assert missing.status_code == 401
        assert missing.json() == {"error": "missing bearer token (LAZARUS_ADMIN_TOKEN is set)"}
        wrong = await api.get("/api/stats", headers={"Authorization": "Bearer nope"})
        assert wrong.json() == {"error": "wrong bearer token"}
        assert (await api.get("/metrics")).status_code == 401
        assert (await api.get("/openapi.json")).status_code == 401
        assert (await api.get("/ui/panel")).status_code == 401
        assert (await api.get("/api/health")).status_code == 200
        assert (await api.get("/api/stats", headers=BEARER)).status_code == 200
        assert (await api.get("/openapi.json", headers=BEARER)).status_code == 200
        assert (await api.get("/", headers=BEARER)).status_code == 200  # scripts may, too


async def test_openapi_documents_every_endpoint(api: httpx.AsyncClient) -> None:
    paths = (await api.get("/openapi.json")).json()["paths"]
    assert set(paths) == {
        "/api/health",
        "/api/dead-letters",
        "/api/dead-letters/{job_id}",
        "/api/dead-letters/requeue",
        "/api/dead-letters/delete",
        "/api/dead-letters/purge",
        "/api/work-items/retry",
        "/api/jobs",
        "/api/jobs/{job_id}",
        "/api/jobs/{job_id}/suspend",
        "/api/jobs/{job_id}/cancel",
        "/api/jobs/{job_id}/resume",
        "/api/jobs/{job_id}/cause",
        "/api/jobs/{job_id}/attempts",
        "/api/queues",
        "/api/queues/{queue}/pause",
        "/api/queues/{queue}/resume",
        "/api/types",
        "/api/types/{job_type}/pause",
        "/api/types/{job_type}/resume",
        "/api/stats",
        "/api/audit",
        "/api/workers",
        "/api/workflows",
        "/api/workflows/{workflow_id}",
        "/api/workflows/{workflow_id}/suspend",
        "/api/workflows/{workflow_id}/resume",
        "/api/workflows/{workflow_id}/cancel",
        "/api/workflows/{workflow_id}/restart",
        "/api/workflows/{workflow_id}/work-items/retry",
        "/api/workflows/work-items/retry",
    }
    conflict = paths["/api/jobs/{job_id}/suspend"]["post"]["responses"]["409"]
    assert conflict["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


async def test_dashboard_lists_dead_letters_and_serves_htmx_locally(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        [job_id] = await kill(api, ns, 1)
    page = await api.get("/")
    assert page.status_code == 200 and job_id in page.text
    assert "http://" not in page.text.replace(BASE + "/", "")  # nothing from elsewhere
    assert (await api.get("/static/htmx.min.js")).status_code == 200
    traceback = await api.get("/ui/dead", params={"job_id": job_id})
    assert "RuntimeError" in traceback.text and "Traceback" in traceback.text
    headers = await csrf(api)
    form = {"job_id": job_id, "retries": "1", "mode": "recover"}
    requeued = await api.post("/ui/dead/requeue", data=form, headers=headers)
    assert f"requeued job {job_id}" in requeued.text
    again = await api.post("/ui/dead/requeue", data={"job_id": job_id}, headers=headers)
    assert "no longer dead" in again.text


async def test_dashboard_pauses_a_job_type_and_its_resume_moves_the_parked_job_back(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    headers = await csrf(api)
    async with worker() as running:
        paused = await api.post("/ui/types/http.flaky/pause", headers=headers)
        assert "job type http.flaky: paused" in paused.text
        assert "paused by" in paused.text and 'hx-post="/ui/types/http.flaky/resume"' in paused.text
        await wait_for(lambda: running.parker.holds("http.flaky"), what="the worker to see it")
        job_id = await enqueue(ns, "http.flaky", {"n": 1})

        async def parked() -> bool:
            [row] = (await api.get("/api/types")).json()["items"]
            return bool(row["parked"] == 1)

        await wait_for(parked, what="the job parked")
        assert job_id not in await dead_ids(api)  # it did not run
        resumed = await api.post("/ui/types/http.flaky/resume", headers=headers)
        assert "job type http.flaky: resumed; 1 parked jobs moved back" in resumed.text

        async def dead() -> bool:
            return job_id in await dead_ids(api)

        await wait_for(dead, what="the job to run (and die) after the resume")
        panel = await api.get("/ui/panel")
        assert 'hx-post="/ui/types/http.flaky/pause"' in panel.text  # seen, not paused
    wrong = await api.post("/ui/types/http.flaky/sideways", headers=headers)
    assert "no job type action &#39;sideways&#39;" in wrong.text
    bad = await api.post("/ui/types/no%20spaces/pause", headers=headers)
    assert "job type &#39;no spaces&#39;: use 1-200 letters" in bad.text


def test_admin_refuses_a_public_address_without_a_token(cli: Cli) -> None:
    result = cli.run("admin", "--host", "0.0.0.0", "--port", "1", LAZARUS_ADMIN_TOKEN="")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("lazarus: refusing to serve on 0.0.0.0 without LAZARUS_ADMIN_TOKEN")


async def test_a_requeued_job_that_succeeds_shows_no_error_of_its_earlier_generation(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        [job_id] = await kill(api, ns, 1)
        dead = (await api.get(f"/api/jobs/{job_id}")).json()
        assert dead["error_type"] == "RuntimeError"
        moved = await api.post("/api/dead-letters/requeue", json={"ids": [job_id]})
        assert moved.json() == {"total": 1}

        async def succeeded() -> bool:
            return await job_state(api, job_id) == "succeeded"

        await wait_for(succeeded, what="the requeued generation to succeed")
    job = (await api.get(f"/api/jobs/{job_id}")).json()
    assert job["generation"] == 1
    assert (job["error_type"], job["error_message"], job["traceback"]) == (None, None, None)


async def test_requeueing_a_named_job_that_is_not_dead_is_404_or_409(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        [job_id] = await kill(api, ns, 1)
        first = await api.post("/api/dead-letters/requeue", json={"ids": [job_id]})
        assert first.json() == {"total": 1}
        again = await api.post("/api/dead-letters/requeue", json={"ids": [job_id]})
        assert again.status_code == 409 and "no longer dead" in again.json()["error"]
    unknown = await api.post("/api/dead-letters/requeue", json={"ids": ["nobody"]})
    assert unknown.status_code == 404 and "nobody" in unknown.json()["error"]


async def test_the_dashboards_resume_recovers_by_default_with_the_retries_given(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        job_id = await enqueue(ns, "http.gated")
        await wait_for(lambda: _is(job_state(api, job_id), "running"), what="the job to run")
        assert (await api.post(f"/api/jobs/{job_id}/suspend")).status_code == 200
        headers = await csrf(api)
        form = {"job_id": job_id, "retries": "7", "mode": ""}  # the mode box left at default
        resumed = await api.post("/ui/jobs/resume", data=form, headers=headers)
        assert f"resumed job {job_id} as generation 1" in resumed.text
        await wait_for(lambda: _is(job_state(api, job_id), "succeeded"), what="succeeded")
    assert (await api.get(f"/api/jobs/{job_id}")).json()["max_retries"] == 7
    entries = (await api.get("/api/audit")).json()["items"]
    [resume] = [e for e in entries if e["action"] == "resume"]
    assert resume["selector"]["mode"] == "recover"


async def test_workers_are_listed_by_the_api_and_the_dashboard(
    api: httpx.AsyncClient, ns: Settings
) -> None:
    from engine.worker.runner import run_worker

    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(ns, ["default"], 2, stop, record=True))
    try:

        async def listed() -> bool:
            items = (await api.get("/api/workers")).json()["items"]
            return any(w["alive"] and "http.flaky" in w["job_types"] for w in items)

        await wait_for(listed, what="the worker in GET /api/workers")
        [worker] = (await api.get("/api/workers")).json()["items"]
        page = (await api.get("/")).text
        assert worker["worker_id"] in page and "alive" in page
    finally:
        stop.set()
        await running


async def test_the_api_reads_an_error_type_as_the_cli_does(
    api: httpx.AsyncClient, ns: Settings, worker: Worker_
) -> None:
    async with worker():
        [job_id] = await kill(api, ns, 1)
    for name in ("RuntimeError", "builtins.RuntimeError"):
        found = (await api.get("/api/dead-letters", params={"error_type": name})).json()
        assert [r["job_id"] for r in found["items"]] == [job_id], name

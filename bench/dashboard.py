"""How long the dashboard's pages, fragments and cards take on a big namespace, and what
the payload filter costs with and without its index.

``python -m bench.dashboard [--dead 200000] [--jobs 1000000] [--repeat 20]``: a throw-away
namespace gets that many dead-letter rows (48 job types, 6 error types, a payload of a
customer, an order, tags and an address) and job rows (all states, with a payload), plus
workers and audit entries, inserted by SQL and analysed. Then each request is made
``--repeat`` times after one that warms its statements, through the app in this process
(httpx over ASGI: no network, no browser), and its median and p95 (nearest rank) are
printed; then every Admin call the panel makes (its cards) on its own; then the payload
filter with its index, and again after dropping it (building it again is timed too).
The app serves without a token, as ``lazarus admin --no-auth`` does. The load average
before and after is printed: other work on the machine moves every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus, urlencode

import httpx

from bench.lazarus import fresh_namespace
from engine.admin.facade import Admin
from engine.filters import DeadFilter
from engine.pg.store import Store
from engine.settings import Settings
from engine.states import JobState
from engine.web.api import create_app
from engine.web.dashboard import CAP, NEWEST, PAGE

# One death a second, the newest with the highest id, as the recorder numbers them.
SEED_DEAD = """
INSERT INTO dead_letters (job_id, generation, job_type, queue, payload, body, attempts, reason,
                          error_type, error_message, traceback, died_at, worker)
SELECT 'dead-' || i, 0, 't.' || (i % 48), 'default',
       jsonb_build_object('customer', i % 5000, 'order', i,
                          'tags', jsonb_build_array('t' || (i % 7), 'all'),
                          'address', jsonb_build_object(
                              'country', (ARRAY['FR', 'DE', 'US', 'JP'])[1 + i % 4],
                              'zip', lpad((i % 100000)::text, 5, '0'))),
       convert_to('{}', 'UTF8'), 3, 'retries exhausted',
       (ARRAY['TimeoutError', 'ConnectionError', 'KeyError', 'myapp.Bounce',
              'asyncio.TimeoutError', 'ValueError'])[1 + i % 6],
       'failed on item ' || i, 'Traceback (most recent call last): ...',
       now() - ($1 - i || ' seconds')::interval, 'bench:1'
  FROM generate_series(1, $1) AS i
"""
SEED_JOBS = """
INSERT INTO jobs (job_id, generation, seq, job_type, queue, state, attempt, created_at,
                  updated_at, error_type, error_message, payload)
SELECT 'job-' || i, 0, 3, 't.' || (i % 48), 'default',
       (ARRAY['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded',
              'dead', 'retrying', 'running', 'pending', 'suspended', 'cancelled'])[1 + i % 12],
       0, now() - ($1 - i || ' seconds')::interval, now() - ($1 - i || ' seconds')::interval,
       CASE WHEN i % 12 IN (6, 10) THEN 'KeyError' END,
       CASE WHEN i % 12 IN (6, 10) THEN 'no key ' || i END,
       jsonb_build_object('customer', i % 5000, 'order', i)
  FROM generate_series(1, $1) AS i
"""
SEED_REST = [
    """INSERT INTO workers (worker_id, host, pid, version, queues, job_types, started_at,
                            last_seen)
       SELECT 'bench-' || i || ':1', 'bench-' || i, 1, 'bench', ARRAY['default'],
              '{"t.1": "default"}', now() - interval '1 hour',
              now() - (i * 100 || ' seconds')::interval
         FROM generate_series(1, 50) AS i""",
    """INSERT INTO audit_log (at, actor, action, selector, count, state, finished_at)
       SELECT now() - (i || ' minutes')::interval, 'bench@host:1', 'requeue',
              jsonb_build_object('job_type', 't.' || (i % 48)), i % 100, 'done', now()
         FROM generate_series(1, 5000) AS i""",
]
INDEX = "dead_letters_payload_path"
CREATE_INDEX = f"CREATE INDEX {INDEX} ON dead_letters USING gin (payload jsonb_path_ops)"
PAYLOADS = [  # (what it shows, the filter): few, some and many matching rows
    ("one customer", '{"customer": 42}'),
    ("customer and country", '{"customer": 43, "address": {"country": "DE"}}'),
    ("an array element", '{"tags": ["t3"]}'),
    ("a quarter", '{"address": {"country": "FR"}}'),
    ("every row", '{"tags": ["all"]}'),
    ("no row", '{"customer": -1}'),
]


async def seed(store: Store, dead: int, jobs: int) -> None:
    started = time.monotonic()
    await store.pool.execute(SEED_DEAD, dead, timeout=3600)
    await store.pool.execute(SEED_JOBS, jobs, timeout=3600)
    for sql in SEED_REST:
        await store.pool.execute(sql)
    await store.pool.execute("VACUUM ANALYZE dead_letters, jobs, workers, audit_log", timeout=3600)
    took = time.monotonic() - started
    print(f"seeded {dead:,} dead letters and {jobs:,} job rows in {took:.1f} s")


Call = Callable[[], Awaitable[Any]]


async def timed(call: Call, repeat: int) -> tuple[float, float]:
    """Median and p95 (nearest rank) in ms of ``repeat`` calls after a warm-up one."""
    await call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[math.ceil(0.95 * len(times)) - 1]


WIDTH = 92


def row(label: str, median: float, p95: float) -> None:
    flag = "  over 200 ms" if p95 > 200 else ""
    print(f"{label[:WIDTH]:{WIDTH}} {median:9.1f} {p95:8.1f}{flag}")


def header(title: str) -> None:
    print(f"\n{title}\n{'':{WIDTH}} {'median ms':>9} {'p95 ms':>8}")


def ago(seconds: float) -> str:
    """A time that many seconds ago, as the filter's fields hold it (UTC)."""
    moment = datetime.now(UTC) - timedelta(seconds=seconds)
    return moment.replace(tzinfo=None).isoformat(timespec="seconds")


def pages(payload: str, dead: int) -> list[tuple[str, str, dict[str, str] | None]]:
    """Every page and fragment the dashboard serves, as (method, url, form)."""
    matching = {"action": "requeue", "matching": "true"}
    # An hour of deaths in the middle of the history, and the oldest 3,000.
    middle = {"after": ago(dead / 2 + 1800), "before": ago(dead / 2 - 1800)}
    oldest = {"before": ago(dead - 3000)}
    out: list[tuple[str, str, dict[str, str] | None]] = [
        ("GET", "/", None),
        ("GET", "/ui/panel", None),
        ("GET", "/?type=t.7&error_type=TimeoutError", None),
        ("GET", "/?error=item 4242", None),
        ("GET", "/?" + urlencode({"payload": payload}), None),
        ("GET", "/ui/panel?" + urlencode({"payload": payload}), None),
        ("GET", "/?since=1h", None),
        ("GET", "/?" + urlencode(middle), None),
        ("GET", "/?" + urlencode(oldest), None),
        ("GET", "/?before_id=100000", None),
        ("GET", "/dead/dead-4242", None),
        ("GET", "/jobs/job-4242", None),
        *[("GET", f"/jobs?state={s.value}", None) for s in JobState],
        ("GET", "/jobs?state=suspended&type=t.10", None),
        ("GET", "/ui/dead?job_id=dead-4242", None),
        ("GET", "/ui/jobs/cause?job_id=job-10", None),
        ("POST", "/ui/bulk/preview", matching | {"type": "t.7"}),
        ("POST", "/ui/bulk/preview", matching | {"payload": payload}),
        ("POST", "/ui/bulk/preview", matching | {"payload": PAYLOADS[4][1]}),
        ("POST", "/ui/bulk/preview", matching),  # every dead letter: an exact count
        ("POST", "/ui/bulk/preview", {"action": "requeue", "ids": "dead-4242"}),
        ("POST", "/ui/bulk/preview", {"action": "resume", "ids": "job-10"}),
        ("GET", "/api/dead-letters?limit=50", None),
        ("GET", "/api/dead-letters?" + urlencode({"payload": payload}), None),
        ("GET", "/api/stats", None),
        ("GET", "/api/workers", None),
        ("GET", "/api/audit", None),
    ]
    return out


def cards(admin: Admin, selector: DeadFilter) -> list[tuple[str, Call]]:
    """Every Admin call /ui/panel makes, as it makes it."""
    jobs = admin.jobs
    return [
        ("job counts per state (capped)", lambda: jobs.counts(cap=CAP)),
        ("throughput chart", jobs.activity),
        ("dead letters, a page", lambda: admin.list_dead(selector, limit=PAGE)),
        ("dead letters matching (capped count)", lambda: admin.count(selector, cap=CAP)),
        ("what is failing (groups)", lambda: admin.groups(selector, newest=NEWEST)),
        ("suspended groups", admin.suspended_groups),
        ("queues", jobs.list_queues),
        ("job types", lambda: jobs.list_types(every_parked_queue=False)),
        ("suspended jobs", lambda: jobs.list_jobs(state=JobState.SUSPENDED, limit=20)),
        ("audit log", lambda: admin.audit_log(10)),
        ("workers", lambda: admin.list_workers(20)),
    ]


async def measure(settings: Settings, store: Store, repeat: int, dead: int) -> None:
    app = create_app(settings, open_access=True)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as http,
        Admin(settings) as admin,
    ):
        print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
        page = await http.get("/")
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        csrf = {"X-CSRF-Token": token.group(1) if token else ""}

        def request(method: str, url: str, form: dict[str, str] | None) -> Call:
            async def call() -> None:
                response = await http.request(method, url, data=form, headers=csrf)
                assert response.status_code == 200, (url, response.status_code, response.text)

            return call

        header(f"pages and fragments, {repeat} requests each after a warm-up")
        for method, url, form in pages(PAYLOADS[0][1], dead):
            sent = "&".join(f"{k}={v}" for k, v in (form or {}).items())
            label = f"{method} {unquote_plus(url)} {sent}".strip()
            row(label, *await timed(request(method, url, form), repeat))

        header("the panel's cards, each Admin call on its own")
        for selector_name, selector in (
            ("no filter", DeadFilter()),
            ("payload " + PAYLOADS[0][1], DeadFilter(payload=PAYLOADS[0][1])),
        ):
            for label, call in cards(admin, selector):
                row(f"{label} ({selector_name})", *await timed(call, repeat))

        async def payload_rows(note: str) -> dict[str, tuple[float, float]]:
            header(f"the payload filter, the page (GET /?payload=...), {note}")
            found = {}
            for label, payload in PAYLOADS:
                hits = await admin.count(DeadFilter(payload=payload))
                url = "/?" + urlencode({"payload": payload})
                found[label] = await timed(request("GET", url, None), repeat)
                row(f"{label}: {payload} ({hits:,} rows)", *found[label])
            return found

        await payload_rows("with its index")
        await store.pool.execute(f"DROP INDEX {INDEX}")
        try:
            await payload_rows("without the index")
        finally:
            started = time.monotonic()
            await store.pool.execute(CREATE_INDEX, timeout=3600)
            took = time.monotonic() - started
            print(f"\nbuilding the payload index again took {took:.2f} s")
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dead", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    async with fresh_namespace() as (settings, store):
        assert store is not None
        await seed(store, args.dead, args.jobs)
        await measure(settings, store, args.repeat, args.dead)


if __name__ == "__main__":
    asyncio.run(main())

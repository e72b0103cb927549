"""How long the dashboard's pages and fragments take on a big namespace.

``python -m bench.dashboard [--dead 200000] [--jobs 1000000] [--repeat 5]``: a throw-away
namespace gets that many dead-letter rows (48 job types, 6 error types) and job rows (all
states) inserted by SQL, is analysed, then each page is requested ``--repeat`` times
through the app in this process (httpx over ASGI: no network, no browser) and the median
and worst times are printed. The app serves without a token, as ``lazarus admin
--no-auth`` does; a first request per page warms its statements.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time

import httpx

from bench.lazarus import fresh_namespace
from engine.pg.store import Store
from engine.settings import Settings
from engine.web.api import create_app

SEED_DEAD = """
INSERT INTO dead_letters (job_id, generation, job_type, queue, payload, body, attempts, reason,
                          error_type, error_message, traceback, died_at, worker)
SELECT 'dead-' || i, 0, 't.' || (i % 48), 'default', jsonb_build_object('i', i),
       convert_to('{}', 'UTF8'), 3, 'retries exhausted',
       (ARRAY['TimeoutError', 'ConnectionError', 'KeyError', 'myapp.Bounce',
              'asyncio.TimeoutError', 'ValueError'])[1 + i % 6],
       'failed on item ' || i, 'Traceback (most recent call last): ...',
       now() - (i || ' seconds')::interval, 'bench:1'
  FROM generate_series(1, $1) AS i
"""
SEED_JOBS = """
INSERT INTO jobs (job_id, generation, seq, job_type, queue, state, attempt, created_at,
                  updated_at, error_type, error_message)
SELECT 'job-' || i, 0, 3, 't.' || (i % 48), 'default',
       (ARRAY['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded',
              'dead', 'retrying', 'running', 'pending', 'suspended', 'cancelled'])[1 + i % 12],
       0, now() - (i || ' seconds')::interval, now() - (i || ' seconds')::interval,
       CASE WHEN i % 12 IN (6, 10) THEN 'KeyError' END,
       CASE WHEN i % 12 IN (6, 10) THEN 'no key ' || i END
  FROM generate_series(1, $1) AS i
"""


async def seed(store: Store, dead: int, jobs: int) -> None:
    started = time.monotonic()
    await store.pool.execute(SEED_DEAD, dead, timeout=3600)
    await store.pool.execute(SEED_JOBS, jobs, timeout=3600)
    await store.pool.execute("VACUUM ANALYZE dead_letters", timeout=3600)
    await store.pool.execute("VACUUM ANALYZE jobs", timeout=3600)
    took = time.monotonic() - started
    print(f"seeded {dead:,} dead letters and {jobs:,} job rows in {took:.1f} s")


async def measure(settings: Settings, repeat: int) -> None:
    app = create_app(settings, open_access=True)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=60) as http,
    ):
        page = await http.get("/")
        token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        csrf = {"X-CSRF-Token": token.group(1) if token else ""}
        requests = [
            ("GET", "/", None),
            ("GET", "/ui/panel", None),
            ("GET", "/?type=t.7&error_type=TimeoutError", None),
            ("GET", "/?error=item 4242", None),
            ("GET", "/?before_id=100000", None),
            ("GET", "/dead/dead-4242", None),
            ("GET", "/jobs/job-4242", None),
            ("GET", "/jobs?state=retrying", None),
            ("GET", "/ui/dead?job_id=dead-4242", None),
            (
                "POST",
                "/ui/bulk/preview",
                {"action": "requeue", "matching": "true", "type": "type.7"},
            ),
            ("GET", "/api/dead-letters?limit=50", None),
            ("GET", "/api/stats", None),
        ]
        print(f"{'request':58} {'median ms':>10} {'worst ms':>9}")
        for method, url, form in requests:
            times = []
            for attempt in range(repeat + 1):
                started = time.perf_counter()
                response = await http.request(method, url, data=form, headers=csrf)
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, (url, response.status_code, response.text[:200])
                if attempt:  # the first one warms the statements
                    times.append(elapsed)
            label = f"{method} {url}"
            print(f"{label[:58]:58} {statistics.median(times):10.1f} {max(times):9.1f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dead", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    async with fresh_namespace() as (settings, store):
        assert store is not None
        await seed(store, args.dead, args.jobs)
        await measure(settings, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())

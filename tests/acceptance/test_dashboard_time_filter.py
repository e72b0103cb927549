"""The dashboard's "died after" / "died before" filter: it shows, pages and acts on
exactly the dead letters inside the window, and a bad time changes nothing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from html import unescape

import httpx
import pytest

from engine.settings import Settings
from engine.web import dashboard
from tests.acceptance.test_http import api_client, csrf, kill, migrated
from tests.integration.lifecycle.conftest import tracking_worker

PLUS_TWO = timezone(timedelta(hours=2))
ROW = re.compile(r'<tr class="dead-letter" data-job-id="([^"]+)">')


@pytest.fixture
async def ns() -> AsyncIterator[Settings]:
    async with migrated() as config:
        yield config


@pytest.fixture
async def api(ns: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(ns) as client:
        yield client


async def died(api: httpx.AsyncClient, ids: list[str]) -> list[datetime]:
    rows = (await api.get("/api/dead-letters", params={"limit": 1000})).json()["items"]
    return sorted(datetime.fromisoformat(r["died_at"]) for r in rows if r["job_id"] in ids)


def between(earlier: datetime, later: datetime) -> datetime:
    middle = earlier + (later - earlier) / 2
    return middle.replace(microsecond=middle.microsecond // 1000 * 1000)


def utc_field(moment: datetime) -> str:
    """As a datetime-local field sends it: no offset (read as UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


@pytest.fixture
async def batches(ns: Settings, api: httpx.AsyncClient) -> tuple[list[str], ...]:
    """Three batches of dead letters, a second apart: before, inside and after a window."""
    found = []
    async with tracking_worker(ns):
        for count in (2, 3, 2):
            found.append(await kill(api, ns, count))
            await asyncio.sleep(1.1)
    return tuple(found)


async def window(api: httpx.AsyncClient, batches: tuple[list[str], ...]) -> dict[str, str]:
    """``after`` and ``before`` around the middle batch: one as the field sends it (UTC),
    the other with an offset, as a URL may give it."""
    old, inside, new = [await died(api, ids) for ids in batches]
    after = between(old[-1], inside[0])
    before = between(inside[-1], new[0]).astimezone(PLUS_TWO)
    return {"after": utc_field(after), "before": before.isoformat(timespec="milliseconds")}


async def test_a_time_window_shows_only_the_dead_letters_inside_it(
    api: httpx.AsyncClient, batches: tuple[list[str], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    old, inside, new = batches
    chosen = await window(api, batches)
    page = await api.get("/", params=chosen)
    assert page.status_code == 200
    assert set(ROW.findall(page.text)) == set(inside), page.text
    assert "3 match the filter" in page.text
    # The fields hold the window (the offset read into UTC), so the refresh keeps it.
    before_utc = utc_field(datetime.fromisoformat(chosen["before"]))
    assert f'name="after" type="datetime-local" step="any" value="{chosen["after"]}"' in page.text
    assert f'value="{before_utc}"' in page.text
    panel = await api.get("/ui/panel", params={"after": chosen["after"], "before": before_utc})
    assert set(ROW.findall(panel.text)) == set(inside)
    only_after = await api.get("/", params={"after": chosen["after"]})
    assert set(ROW.findall(only_after.text)) == set(inside) | set(new)
    only_before = await api.get("/", params={"before": chosen["before"]})
    assert set(ROW.findall(only_before.text)) == set(old) | set(inside)
    # Paging keeps the window.
    monkeypatch.setattr(dashboard, "PAGE", 2)
    first = await api.get("/", params=chosen)
    link = re.search(r'<a class="more" href="/\?([^"]+)">', first.text)
    assert link, first.text
    query = link.group(1).replace("&amp;", "&")
    second = await api.get(f"/?{query}")
    shown = ROW.findall(first.text) + ROW.findall(second.text)
    assert sorted(shown) == sorted(inside), (query, shown)


async def test_a_bulk_requeue_under_a_time_window_moves_exactly_the_rows_inside_it(
    api: httpx.AsyncClient, batches: tuple[list[str], ...]
) -> None:
    old, inside, new = batches
    chosen = await window(api, batches)
    headers = await csrf(api)
    form = {"action": "requeue", "matching": "true"} | chosen
    preview = await api.post("/ui/bulk/preview", data=form, headers=headers)
    assert preview.status_code == 200
    count = re.search(r"<strong>(\d+)</strong> dead letters would be", preview.text)
    assert count and int(count.group(1)) == len(inside), preview.text
    assert "The filter is empty" not in preview.text
    carried = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', preview.text))
    assert carried["after"] == chosen["after"]
    assert carried["before"] == chosen["before"]
    done = await api.post("/ui/bulk/apply", data=carried | {"retries": "1"}, headers=headers)
    moved = re.search(r"requeued (\d+) dead jobs", done.text)
    assert moved and int(moved.group(1)) == int(count.group(1)), done.text
    rows = (await api.get("/api/dead-letters", params={"status": "all", "limit": 1000})).json()
    status = {r["job_id"]: r["status"] for r in rows["items"]}
    assert {status[i] for i in inside} <= {"requeued", "requeue_pending"}
    assert {status[i] for i in old + new} == {"dead"}


async def test_a_bad_time_shows_an_error_and_changes_nothing(
    api: httpx.AsyncClient, batches: tuple[list[str], ...]
) -> None:
    everything = [i for ids in batches for i in ids]
    chosen = await window(api, batches)
    for bad, says in (
        ({"after": "yesterday"}, "died after 'yesterday' is not a time"),
        ({"before": "2026-13-45T99:00"}, "died before '2026-13-45T99:00' is not a time"),
        ({"after": "1" * 80}, "died after: at most 64 characters"),
        ({"after": chosen["after"], "before": chosen["after"]}, "must be earlier than"),
        ({"after": chosen["after"], "since": "1h"}, "not both"),
    ):
        page = await api.get("/", params=bad)
        assert page.status_code == 200 and says in unescape(page.text), (bad, page.text)
        assert 'class="flash bad"' in page.text
        headers = await csrf(api)
        form = {"action": "requeue", "matching": "true", "all": "true"} | bad
        preview = await api.post("/ui/bulk/preview", data=form, headers=headers)
        assert says in unescape(preview.text) and "would be" not in preview.text, preview.text
        done = await api.post("/ui/bulk/apply", data=form, headers=headers)
        assert says in unescape(done.text) and 'class="flash bad"' in done.text, done.text
    rows = (await api.get("/api/dead-letters", params={"limit": 1000})).json()["items"]
    assert {r["job_id"] for r in rows} >= set(everything)
    audit = (await api.get("/api/audit")).json()["items"]
    assert [e for e in audit if e["action"] != "login"] == []

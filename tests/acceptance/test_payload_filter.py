"""The dead-letter filter on payload content from outside: the HTTP API, the dashboard and
the CLI list, count and act on exactly the dead letters whose payload contains the JSON
given (PostgreSQL's jsonb ``@>``), and a bad value is refused where it was given, acting
on nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from typing import Any

import httpx
import orjson
import pytest

from engine import Client
from engine.pg.store import Store
from engine.settings import QueueType, Settings
from engine.web import dashboard
from tests.acceptance.conftest import Cli
from tests.acceptance.test_http import api_client, csrf, migrated
from tests.conftest import make_settings
from tests.contract.test_store import death

PAYLOADS: dict[str, Any] = {
    "order-42": {"customer": 42, "tags": ["vip", "eu"], "address": {"country": "FR"}},
    "order-43": {"customer": 43, "tags": ["eu"], "address": {"country": "DE"}},
    "order-42b": {"customer": 42, "tags": ["us"]},
    "refund-42": {"customer": "42"},
    "batch": [1, 2, 3],
}
CUSTOMER_42 = '{"customer": 42}'
ROW = re.compile(r'<tr class="dead-letter" data-job-id="([^"]+)">')
BAD = [  # (value, what the refusal says)
    ('{"customer": 42', "payload is not valid JSON"),
    ('{"note": "' + "x" * 4100 + '"}', "at most 4"),  # 4096 characters, 4,096 bytes
    ("[" * 33 + "]" * 33, "nested more than 32 levels deep"),
    ('{"a": "\\u0000"}', "cannot match"),
]


async def store_dead(config: Settings) -> None:
    """One dead letter per payload above, in queue ``default`` (declared, so a requeue
    can publish to it)."""
    store = Store(config)
    async with store:
        deaths = [death(job_id, payload=payload) for job_id, payload in PAYLOADS.items()]
        assert await store.insert_dead(deaths) == len(PAYLOADS)
    async with Client(config) as client:
        await client.declare_queue("default")


@pytest.fixture
async def ns() -> AsyncIterator[Settings]:
    async with migrated() as config:
        await store_dead(config)
        yield config


@pytest.fixture
async def api(ns: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(ns) as client:
        yield client


async def listed(api: httpx.AsyncClient, **params: str) -> set[str]:
    response = await api.get("/api/dead-letters", params=params)
    assert response.status_code == 200, response.text
    return {row["job_id"] for row in response.json()["items"]}


async def test_the_api_lists_counts_and_acts_on_exactly_the_payloads_containing_it(
    api: httpx.AsyncClient,
) -> None:
    assert await listed(api, payload=CUSTOMER_42) == {"order-42", "order-42b"}
    assert await listed(api, payload='{"tags": ["eu"]}') == {"order-42", "order-43"}
    assert await listed(api, payload='{"address": {"country": "FR"}}') == {"order-42"}
    assert await listed(api, payload='{"customer": "42"}') == {"refund-42"}
    assert await listed(api, payload="[3, 1]") == {"batch"}
    assert await listed(api, payload=CUSTOMER_42, type="other.type") == set()
    assert await listed(api, payload="") == set(PAYLOADS)  # empty: no condition

    requeue = "/api/dead-letters/requeue"
    dry = await api.post(requeue, json={"filter": {"payload": CUSTOMER_42}, "dry_run": True})
    assert dry.json() == {"total": 2}
    deleted = await api.post("/api/dead-letters/delete", json={"filter": {"payload": "[2]"}})
    assert deleted.json() == {"total": 1}
    moved = await api.post(requeue, json={"filter": {"payload": CUSTOMER_42}, "retries": 1})
    assert moved.status_code == 200 and moved.json() == {"total": 2}, moved.text
    assert await listed(api) == {"order-43", "refund-42"}
    assert await listed(api, status="requeued") | await listed(api, status="requeue_pending") == {
        "order-42",
        "order-42b",
    }

    audit = (await api.get("/api/audit")).json()["items"]
    selectors = {e["action"]: e["selector"] for e in audit}
    assert selectors["requeue"]["payload"] == {"customer": 42}
    assert selectors["delete"]["payload"] == [2]


async def test_a_bad_payload_is_422_naming_it_and_moves_nothing(api: httpx.AsyncClient) -> None:
    for value, says in BAD:
        response = await api.get("/api/dead-letters", params={"payload": value})
        assert response.status_code == 422, (value, response.text)
        error = response.json()["error"]
        assert "payload" in error and says in error, (value, error)
        body = {"filter": {"payload": value}, "retries": 1}
        refused = await api.post("/api/dead-letters/requeue", json=body)
        assert refused.status_code == 422, (value, refused.text)
        assert "body.filter.payload" in refused.json()["error"], refused.text
    as_object = {"filter": {"payload": {"customer": 42}}}
    refused = await api.post("/api/dead-letters/delete", json=as_object)
    assert refused.status_code == 422 and "body.filter.payload" in refused.json()["error"]
    assert await listed(api) == set(PAYLOADS)
    assert (await api.get("/api/audit")).json()["items"] == []


async def test_the_dashboard_shows_pages_and_acts_on_exactly_the_payloads_containing_it(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = await api.get("/", params={"payload": CUSTOMER_42})
    assert page.status_code == 200
    assert set(ROW.findall(page.text)) == {"order-42", "order-42b"}
    assert "2 match the filter" in page.text
    # The field holds the filter, so the refresh, paging and bulk actions keep it.
    assert f'name="payload" value="{CUSTOMER_42}"' in unescape(page.text)
    panel = await api.get("/ui/panel", params={"payload": CUSTOMER_42})
    assert set(ROW.findall(panel.text)) == {"order-42", "order-42b"}
    monkeypatch.setattr(dashboard, "PAGE", 1)
    first = await api.get("/", params={"payload": CUSTOMER_42})
    link = re.search(r'<a class="more" href="/\?([^"]+)">', first.text)
    assert link, first.text
    second = await api.get("/?" + unescape(link.group(1)))
    assert ROW.findall(first.text) + ROW.findall(second.text) == ["order-42b", "order-42"]

    headers = await csrf(api)
    form = {"action": "requeue", "matching": "true", "payload": CUSTOMER_42}
    preview = await api.post("/ui/bulk/preview", data=form, headers=headers)
    assert "<strong>2</strong> dead letters would be" in preview.text, preview.text
    assert "The filter is empty" not in preview.text
    carried = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', preview.text))
    assert unescape(carried["payload"]) == CUSTOMER_42
    carried = {k: unescape(v) for k, v in carried.items()}
    done = await api.post("/ui/bulk/apply", data=carried | {"retries": "1"}, headers=headers)
    assert "requeued 2 dead jobs" in done.text, done.text
    assert await listed(api) == set(PAYLOADS) - {"order-42", "order-42b"}


async def test_a_bad_payload_on_the_dashboard_is_said_where_it_was_given(
    api: httpx.AsyncClient,
) -> None:
    headers = await csrf(api)
    for value, says in BAD:
        page = await api.get("/", params={"payload": value})
        assert page.status_code == 200 and 'class="flash bad"' in page.text
        assert says in unescape(page.text), (value, page.text[-3000:])
        form = {"action": "delete", "matching": "true", "payload": value}
        preview = await api.post("/ui/bulk/preview", data=form, headers=headers)
        assert says in unescape(preview.text) and "would be" not in preview.text
        done = await api.post("/ui/bulk/apply", data=form, headers=headers)
        assert says in unescape(done.text) and 'class="flash bad"' in done.text
    assert await listed(api) == set(PAYLOADS)


async def test_the_cli_lists_counts_and_deletes_by_payload(cli: Cli) -> None:
    assert cli.run("migrate").returncode == 0
    await store_dead(make_settings(cli.env["LAZARUS_NAMESPACE"], QueueType.CLASSIC))

    def ids(*args: str) -> set[str]:
        result = cli.run("dead", "list", *args, "--json")
        assert result.returncode == 0, result.stderr
        return {row["job_id"] for row in orjson.loads(result.stdout)}

    assert ids("--payload", CUSTOMER_42) == {"order-42", "order-42b"}
    assert ids("--payload", '{"tags": ["eu"]}', "--type", "mail.send") == {"order-42", "order-43"}
    count = cli.run("dead", "requeue", "--payload", CUSTOMER_42, "--dry-run", "--json")
    assert count.returncode == 0 and orjson.loads(count.stdout) == {"total": 2}, count.stderr
    deleted = cli.run("dead", "delete", "--payload", '{"tags": ["eu"]}', "--json")
    assert orjson.loads(deleted.stdout) == {"total": 2}, deleted.stderr
    assert ids() == {"order-42b", "refund-42", "batch"}

    for command in (["list"], ["requeue"], ["delete", "--dry-run"]):
        for value, says in BAD[:2]:
            refused = cli.run("dead", *command, "--payload", value)
            assert refused.returncode == 2, (command, refused.stderr)
            assert "--payload" in refused.stderr and says in refused.stderr, refused.stderr
    as_json = cli.run("dead", "list", "--payload", "{", "--json")
    assert as_json.returncode == 2 and orjson.loads(as_json.stderr)["exit"] == 2
    assert ids() == {"order-42b", "refund-42", "batch"}

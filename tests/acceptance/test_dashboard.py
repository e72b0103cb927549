"""The dashboard in headless Chromium: a dead job shows up, one click requeues it, it runs.

A real uvicorn serves the app on a free loopback port; a tracking worker runs the
jobs. Chromium's network log must show no request leaving that server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from engine import Client, JobContext, Permanent, RetryPolicy, handler
from engine.filters import DeadFilter
from engine.pg.store import Store
from engine.settings import Settings
from tests.acceptance.conftest import serving
from tests.acceptance.test_http import flaky, migrated, ran
from tests.conftest import wait_for
from tests.integration.lifecycle.conftest import tracking_worker

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
DOCS = Path(__file__).parents[2] / "docs"
assert flaky  # registers http.flaky: dies on generation 0, succeeds once requeued

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


@handler("http.picky", policy=RetryPolicy(attempts=1, max_retries=0), suspend_on_failure=True)
async def picky(ctx: JobContext) -> None:
    """Suspends itself on failure, so the dashboard has a suspended job with a cause."""
    raise Permanent(f"payload {ctx.payload!r} lacks an address")


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-default-apps",
        "--window-size=1400,1250",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: webdriver.Chrome) -> WebDriverWait[webdriver.Chrome]:
    """A wait that retries when the 5 s poll has just swapped the panel under it."""
    return WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException,))


def click(driver: webdriver.Chrome, css: str) -> None:
    def clicked(d: webdriver.Chrome) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait(driver).until(clicked)


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """Every network URL Chromium asked for since the last call (its performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp"):
                urls.append(url)  # chrome:// and data: pages never touch the network
    return urls


@pytest.fixture
async def ns() -> AsyncIterator[Settings]:
    async with migrated() as config:
        yield config


SIZES = {"desktop": (1400, 1250), "phone": (390, 844)}


def shoot(driver: webdriver.Chrome, name: str) -> None:
    """Save a screenshot under tests/artifacts (and in docs/ for the README when asked)."""
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))
    if os.environ.get("LAZARUS_DOCS_SCREENSHOT"):  # refresh the README's pictures
        shutil.copyfile(ARTIFACTS / name, DOCS / name)


def text_of(driver: webdriver.Chrome, css: str) -> str:
    return str(wait(driver).until(lambda d: d.find_element(By.CSS_SELECTOR, css).text))


@pytest.mark.parametrize("size", list(SIZES))
async def test_the_triage_flow_finds_opens_selects_requeues_and_audits(
    ns: Settings, tmp_path: Path, size: str
) -> None:
    """Find the failing group, open a dead letter by its URL, select three rows, requeue
    them with a new budget after seeing the dry-run count, watch them succeed, and find
    the action in the audit log; at desktop and at phone width."""
    from engine.web.api import create_app

    store = Store(ns)
    await store.connect()
    picked = [f"order-{size}-{n}" for n in range(3)]
    try:
        async with tracking_worker(ns), Client(ns) as client:
            for job_id in [*picked, f"order-{size}-left"]:
                await client.enqueue("http.flaky", {"order": job_id}, job_id=job_id)
            stuck = await client.enqueue("http.picky", {"order": 19}, job_id=f"stuck-{size}")

            async def settled() -> bool:
                job = await store.get_job(stuck)
                dead = await store.count_dead(DeadFilter(job_type="http.flaky"))
                return dead == 4 and bool(job and job["state"] == "suspended")

            await wait_for(settled, what="four dead letters and a suspended job")

            with serving(create_app(ns, open_access=True)) as base_url:

                def triage(driver: webdriver.Chrome) -> dict[str, str]:
                    width, height = SIZES[size]
                    driver.set_window_size(width, height)
                    driver.get(base_url + "/")
                    group = text_of(driver, "#failing")
                    assert "http.flaky" in group and "RuntimeError" in group and "4" in group
                    shoot(driver, f"dashboard-{size}.png")
                    click(driver, "#failing td a")  # the group sets the filter, in the URL
                    wait(driver).until(lambda d: "type=http.flaky" in d.current_url)
                    filtered = driver.current_url
                    overflow = driver.execute_script(
                        "return document.documentElement.scrollWidth - window.innerWidth"
                    )
                    driver.get(f"{base_url}/dead/{picked[0]}")  # a dead letter by its URL
                    detail = text_of(driver, "main.page")
                    assert "Traceback" in detail and "cannot process" in detail
                    shoot(driver, f"dead-letter-{size}.png")
                    driver.get(filtered)
                    for job_id in picked:
                        click(driver, f'tr[data-job-id="{job_id}"] input.pick')
                    click(driver, "#requeue-selected")
                    confirm = text_of(driver, "#dialog .count")
                    budget = driver.find_element(By.CSS_SELECTOR, '#confirm input[name="retries"]')
                    budget.send_keys("2")
                    click(driver, "#confirm button[type=submit]")
                    result = text_of(driver, "#dialog .result .flash")
                    return {"confirm": confirm, "result": result, "overflow": str(overflow)}

                def audited(driver: webdriver.Chrome) -> str:
                    click(driver, "#dialog [data-close-dialog]")
                    driver.get(base_url + "/")
                    return text_of(driver, "#audit")

                with chromium(tmp_path / "profile") as driver:
                    seen = await asyncio.to_thread(triage, driver)
                    assert seen["confirm"].startswith("3 dead letters would be requeued")
                    assert "3 selected" in seen["confirm"]
                    assert seen["result"] == "requeued 3 dead jobs (restart, 2 retries)"
                    # innerWidth counts the scroll bar: a page that fits is 0 or less wider
                    assert int(seen["overflow"]) <= 0, "the page is wider than the window"

                    async def succeeded() -> bool:
                        jobs = [await store.get_job(j) for j in picked]
                        return all(j and j["state"] == "succeeded" for j in jobs)

                    await wait_for(succeeded, what="the three requeued jobs to succeed")
                    assert all(ran.get(j) == [1] for j in picked)
                    budgets = [(await store.get_job(j) or {}).get("max_retries") for j in picked]
                    assert budgets == [2, 2, 2]
                    audit = await asyncio.to_thread(audited, driver)
                    urls = await asyncio.to_thread(requested_urls, driver)
        left = await store.history(f"order-{size}-left")
        assert left[-1]["status"] == "dead"  # the row not selected stayed dead
    finally:
        await store.close()
    assert "requeue" in audit and "order-" in audit
    assert urls and all(url.startswith(base_url + "/") for url in urls), urls


@contextlib.contextmanager
def other_site(html: str) -> Iterator[str]:
    """Another origin on this machine (another port) serving one page: what a malicious
    page the person happens to open could do."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_logged_in_person_visiting_another_site_cannot_be_made_to_act(
    ns: Settings, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    from engine.web.api import create_app

    token = "browser-test-token-1234"
    secured = ns.model_copy(update={"admin_token": SecretStr(token)})
    store = Store(ns)
    await store.connect()
    try:
        async with tracking_worker(ns), Client(ns) as client:
            job_id = await client.enqueue("http.flaky", {"order": 1}, job_id="order-1")
            await wait_for(lambda: store.history(job_id), what="a dead letter")
        with serving(create_app(secured)) as admin_url:
            attack = f"""<!doctype html><html><body>
              <form id="pause" method="post" action="{admin_url}/ui/queues/default/pause"
                    target="sink"><input name="reason" value="attacker"></form>
              <form id="requeue" method="post" action="{admin_url}/ui/requeue-matching"
                    target="sink2"><input name="all" value="true"></form>
              <iframe name="sink"></iframe><iframe name="sink2"></iframe>
              <iframe id="framed" src="{admin_url}/"></iframe>
              <script>
                document.getElementById("pause").submit();
                document.getElementById("requeue").submit();
                fetch("{admin_url}/api/queues/default/pause", {{method: "POST",
                  credentials: "include", mode: "no-cors"}});
              </script></body></html>"""

            def log_in_then_visit(driver: webdriver.Chrome, evil_url: str) -> list[str]:
                driver.get(admin_url + "/")  # sent to the login form
                wait(driver).until(lambda d: d.find_element(By.NAME, "token"))
                driver.find_element(By.NAME, "token").send_keys(token)
                driver.find_element(By.NAME, "name").send_keys("oncall")
                driver.find_element(By.CSS_SELECTOR, ".login button").click()
                wait(driver).until(
                    lambda d: "signed in as oncall#" in d.find_element(By.TAG_NAME, "body").text
                )
                driver.get(evil_url)
                wait(driver).until(lambda d: len(d.find_elements(By.TAG_NAME, "iframe")) == 3)
                driver.implicitly_wait(0)
                import time

                time.sleep(2)  # let the forms and the fetch be sent and answered
                return [str(e["message"]) for e in driver.get_log("browser")]

            with other_site(attack) as evil_url, chromium(tmp_path / "profile") as driver:
                console = await asyncio.to_thread(log_in_then_visit, driver, evil_url)
        assert [r["queue"] for r in await store.paused_queues()] == []
        [death] = await store.history(job_id)
        assert death["status"] == "dead"
        assert any("frame-ancestors 'none'" in line for line in console), console
    finally:
        await store.close()


async def test_a_time_window_in_the_url_survives_the_browser_refresh_and_bulk_dialog(
    ns: Settings, tmp_path: Path
) -> None:
    """The datetime-local fields hold the window the URL gives (an offset read into
    UTC), the 5 s refresh keeps it, and "Requeue all matching" counts only its rows."""
    from engine.web.api import create_app

    store = Store(ns)
    await store.connect()
    batches: list[list[str]] = []
    try:
        async with tracking_worker(ns), Client(ns) as client:
            for n, count in enumerate((2, 2, 1)):
                ids = [f"window-{n}-{k}" for k in range(count)]
                for job_id in ids:
                    await client.enqueue("http.flaky", {"order": job_id}, job_id=job_id)
                total = sum(map(len, batches)) + count

                async def dead(total: int = total) -> bool:
                    return await store.count_dead(DeadFilter(job_type="http.flaky")) == total

                await wait_for(dead, what=f"{total} dead letters")
                batches.append(ids)
                await asyncio.sleep(1.1)
        times = [[(await store.history(i))[-1]["died_at"] for i in ids] for ids in batches]
        after = max(times[0]) + (min(times[1]) - max(times[0])) / 2
        before = max(times[1]) + (min(times[2]) - max(times[1])) / 2
        plain = after.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")
        shifted = before.astimezone(timezone(timedelta(hours=2)))
        offset = shifted.isoformat(timespec="milliseconds").replace("+", "%2B")

        with serving(create_app(ns, open_access=True)) as base_url:

            def look(driver: webdriver.Chrome) -> dict[str, object]:
                driver.get(f"{base_url}/?after={plain}&before={offset}")
                rows = "#dead-letters tr.dead-letter"
                wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, rows))
                values = driver.execute_script(
                    "return ['after', 'before'].map(n => document.querySelector("
                    "'#filters input[name=' + n + ']').value)"
                )
                driver.execute_script(
                    "document.getElementById('panel').dataset.old = '1';"
                    "htmx.trigger(document.body, 'refresh-panel')"
                )
                wait(driver).until(
                    lambda d: d.execute_script(
                        "return !document.getElementById('panel').dataset.old"
                    )
                )
                shown = [
                    e.get_attribute("data-job-id")
                    for e in driver.find_elements(By.CSS_SELECTOR, rows)
                ]
                click(driver, "#requeue-matching")
                confirm = text_of(driver, "#dialog .count")
                return {"values": values, "shown": shown, "confirm": confirm}

            with chromium(tmp_path / "profile") as driver:
                seen = await asyncio.to_thread(look, driver)
    finally:
        await store.close()
    after_field, before_field = seen["values"]  # type: ignore[misc]
    assert after_field and before_field, seen
    assert datetime.fromisoformat(after_field).replace(tzinfo=UTC) == after.replace(
        microsecond=after.microsecond // 1000 * 1000
    )
    assert sorted(seen["shown"]) == sorted(batches[1]), seen  # type: ignore[call-overload]
    assert str(seen["confirm"]).startswith("2 dead letters would be requeued"), seen


async def test_a_read_only_login_sees_the_dashboard_without_action_controls(
    ns: Settings, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    from engine.web.api import create_app

    read_token = "browser-read-token-1234"
    secured = ns.model_copy(
        update={
            "admin_token": SecretStr("browser-test-token-1234"),
            "admin_read_token": SecretStr(read_token),
        }
    )
    store = Store(ns)
    await store.connect()
    try:
        async with tracking_worker(ns), Client(ns) as client:
            job_id = await client.enqueue("http.flaky", {"order": 1}, job_id="read-1")
            await wait_for(lambda: store.history(job_id), what="a dead letter")
        with serving(create_app(secured)) as admin_url:

            def log_in_and_look(driver: webdriver.Chrome) -> dict[str, object]:
                driver.get(admin_url + "/")
                wait(driver).until(lambda d: d.find_element(By.NAME, "token"))
                driver.find_element(By.NAME, "token").send_keys(read_token)
                driver.find_element(By.NAME, "name").send_keys("viewer")
                driver.find_element(By.CSS_SELECTOR, ".login button").click()
                wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.dead-letter"))
                controls = "#panel button[hx-post], .bulk, input.pick, #check-all"
                return {
                    "header": driver.find_element(By.TAG_NAME, "header").text,
                    "controls": len(driver.find_elements(By.CSS_SELECTOR, controls)),
                    "rows": len(driver.find_elements(By.CSS_SELECTOR, "tr.dead-letter")),
                }

            with chromium(tmp_path / "profile") as driver:
                seen = await asyncio.to_thread(log_in_and_look, driver)
        assert "read-only" in str(seen["header"]) and "viewer#" in str(seen["header"])
        assert (seen["controls"], seen["rows"]) == (0, 1), seen
        [death] = await store.history(job_id)
        assert death["status"] == "dead"
    finally:
        await store.close()


@pytest.mark.parametrize("size", list(SIZES))
async def test_a_failed_workflow_is_found_retried_and_goes_on_from_its_page(
    ns: Settings, tmp_path: Path, size: str
) -> None:
    """Open the workflows by state, a failed one at its own URL with its failed item
    first and the cause, retry it with a mode and a budget (confirming first), and watch
    it succeed; the page fits a phone."""
    from engine.web.api import create_app
    from engine.workflows import start_workflow
    from tests.acceptance.workflow_app import IMPORT

    store = Store(ns)
    await store.connect()
    try:
        async with tracking_worker(ns) as worker:
            started = await start_workflow(store, worker.broker, IMPORT, ["a", "bad-x", "cc"])
            workflow_id = started.workflow_id

            async def state_is(state: str) -> bool:
                row = await store.get_workflow(workflow_id)
                return row is not None and row["state"] == state

            await wait_for(lambda: state_is("failed"), what="the workflow to fail")
            with serving(create_app(ns, open_access=True)) as base_url:

                def retry(driver: webdriver.Chrome) -> dict[str, object]:
                    width, height = SIZES[size]
                    driver.set_window_size(width, height)
                    driver.get(base_url + "/")  # the session
                    click(driver, "header nav a[href='/workflows']")
                    click(driver, "a[href='/workflows?state=failed']")
                    click(driver, "main.page td.id a")
                    wait(driver).until(lambda d: "/workflows/" in d.current_url)
                    page = text_of(driver, "main.page")
                    shoot(driver, f"workflow-{size}.png")
                    overflow = driver.execute_script(
                        "return document.documentElement.scrollWidth - window.innerWidth"
                    )
                    driver.find_element(By.CSS_SELECTOR, 'select[name="mode"]').send_keys("recover")
                    driver.find_element(By.CSS_SELECTOR, 'input[name="retries"]').send_keys("1")
                    click(driver, "form[hx-post='/ui/workflows/retry'] button")
                    wait(driver).until(lambda d: d.switch_to.alert).accept()
                    result = text_of(driver, "#dialog .result .flash")
                    return {"page": page, "overflow": overflow, "result": result}

                seen = await asyncio.to_thread(lambda: _in_browser(tmp_path, retry))
            assert "Need a person (1)" in str(seen["page"])
            assert "cannot read bad-x" in str(seen["page"])
            assert int(str(seen["overflow"])) <= 0, "the page is wider than the window"
            assert seen["result"] == "moved back 1 failed steps and items"
            await wait_for(lambda: state_is("succeeded"), what="the workflow to go on")
    finally:
        await store.close()


def _in_browser(tmp_path: Path, look: object) -> dict[str, object]:
    with chromium(tmp_path / "profile") as driver:
        return look(driver)  # type: ignore[operator,no-any-return]

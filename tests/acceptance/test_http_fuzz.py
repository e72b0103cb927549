"""Schemathesis against a real uvicorn serving the app: no 5xx, responses as documented.

Every operation of ``/openapi.json`` gets EXAMPLES positive and EXAMPLES negative
cases (derandomized, so a run is repeatable), then the operations taking a job id
get more cases with the id of a real dead job. Failures are collected, not shrunk,
and the test fails listing each one with a curl command; a summary of what was
sent and answered is printed and saved to tests/artifacts/fuzz-summary.txt.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from engine import Client
from engine.pg.store import Store
from engine.settings import Settings
from engine.web.api import create_app
from tests.acceptance.conftest import serving
from tests.acceptance.test_http import flaky
from tests.conftest import delete_namespace, make_settings, unique_namespace, wait_for
from tests.integration.lifecycle.conftest import tracking_worker

EXAMPLES = int(os.environ.get("LAZARUS_FUZZ_EXAMPLES", "20"))  # raise it for a deeper run
SEEDED = EXAMPLES // 2
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
CHECKS: dict[GenerationMode, list[Any]] = {
    GenerationMode.POSITIVE: [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ],
    GenerationMode.NEGATIVE: [
        not_a_server_error,
        status_code_conformance,
        response_schema_conformance,
        negative_data_rejection,
    ],
}
assert flaky  # registers the http.flaky handler the seeding uses


async def seed(config: Settings) -> list[str]:
    """Migrate the namespace and make two jobs die, so the fuzzer can use real ids."""
    store = Store(config)
    await store.connect(require_schema=False)
    await store.migrate()
    try:
        async with tracking_worker(config), Client(config) as client:
            ids = [await client.enqueue("http.flaky", {"n": n}) for n in range(2)]

            async def dead() -> bool:
                return all([await store.history(i) for i in ids])

            await wait_for(dead, what="two dead letters")
    finally:
        await store.close()
    return ids


async def drop(config: Settings) -> None:
    store = Store(config)
    await store.connect(require_schema=False)
    await store.drop_schema()
    await store.close()
    await delete_namespace(config.namespace, ["default"])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, list[str]]]:
    """A uvicorn on a free loopback port in a thread, over a seeded namespace."""
    config = make_settings(unique_namespace())
    ids = asyncio.run(seed(config))
    try:
        with serving(create_app(config, open_access=True)) as base_url:
            yield base_url, ids
    finally:
        asyncio.run(drop(config))


def test_fuzzed_requests_get_no_5xx_and_documented_answers(
    served: tuple[str, list[str]],
) -> None:
    base_url, ids = served
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    failures: list[str] = []
    unsatisfiable: list[str] = []
    session = requests.Session()
    started = time.monotonic()

    def fuzz(operation: Any, mode: GenerationMode, examples: int, **fixed: Any) -> None:
        label = f"{operation.method.upper()} {operation.path}"

        @hypothesis.settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode, **fixed))
        def run(case: Any) -> None:
            response = case.call(base_url=base_url, session=session, timeout=30)
            statuses[label][response.status_code] += 1
            try:
                case.validate_response(response, checks=CHECKS[mode])
            except (Exception, BaseExceptionGroup) as exc:  # a check failed: report them all
                failures.append(
                    f"{label} [{mode.value}] -> {response.status_code} {response.text[:200]}\n"
                    f"    {str(exc).strip()[:500]}\n    {case.as_curl_command()}"
                )

        try:
            run()
        except hypothesis.errors.Unsatisfiable:  # nothing to negate: no parameters, no body
            unsatisfiable.append(f"{label} [{mode.value}]")

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, mode, EXAMPLES)
        if "{job_id}" in operation.path:  # also aim at a job that exists
            fuzz(operation, GenerationMode.POSITIVE, SEEDED, path_parameters={"job_id": ids[0]})

    elapsed = time.monotonic() - started
    summary = report(statuses, failures, elapsed)
    summary += f"  no negative data possible: {', '.join(unsatisfiable) or '-'}\n"
    print(summary)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "fuzz-summary.txt").write_text(summary)
    assert len(operations) == 32
    assert not any(code >= 500 for counts in statuses.values() for code in counts)
    assert not failures, "\n".join(failures[:20])


def report(statuses: dict[str, Counter[int]], failures: list[str], elapsed: float) -> str:
    total = sum(sum(c.values()) for c in statuses.values())
    lines = [f"schemathesis: {total} requests to {len(statuses)} operations in {elapsed:.1f} s"]
    for label, counts in sorted(statuses.items()):
        answered = ", ".join(f"{code}x{n}" for code, n in sorted(counts.items()))
        lines.append(f"  {label:40} {sum(counts.values()):4}  {answered}")
    overall = sum(statuses.values(), Counter())
    lines.append("  status codes: " + ", ".join(f"{c}x{n}" for c, n in sorted(overall.items())))
    lines.append(f"  check failures: {len(failures)}")
    lines.extend(failures[:20])
    return "\n".join(lines) + "\n"

"""The filter a person gives, built one way for the CLI and HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.filters import age_ago, dead_filter
from engine.states import DeadStatus


def test_since_becomes_a_time_and_wins_over_after() -> None:
    before = datetime.now(UTC)
    selector = dead_filter(since="2h", after=datetime(2000, 1, 1, tzinfo=UTC))
    assert selector.died_after is not None
    assert (
        before - timedelta(hours=2, seconds=5)
        < selector.died_after
        <= before - timedelta(hours=2) + timedelta(seconds=5)
    )


def test_error_type_aliases_are_read_as_workers_store_them() -> None:
    assert dead_filter(error_type="asyncio.TimeoutError").error_type == "TimeoutError"
    assert dead_filter(error_type="app.errors.Busy").error_type == "app.errors.Busy"


def test_empty_texts_mean_no_condition() -> None:
    selector = dead_filter(job_type="", queue="", error_type="", error_text="")
    assert selector.is_empty()
    assert selector.status is DeadStatus.DEAD


@pytest.mark.parametrize(
    ("text", "message"),
    [("soon", "--since: age 'soon'"), ("99999999999w", "--since '99999999999w': too long ago")],
)
def test_a_bad_age_names_where_it_came_from(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        age_ago("--since", text)
    with pytest.raises(ValueError, match=message):
        dead_filter(since=text, since_name="--since")


def test_a_payload_filter_is_json_text_kept_as_given() -> None:
    selector = dead_filter(payload=' {"customer": 42, "tags": ["vip"]} ')
    assert selector.payload == '{"customer": 42, "tags": ["vip"]}'
    assert not selector.is_empty()
    assert selector.describe()["payload"] == {"customer": 42, "tags": ["vip"]}
    assert dead_filter(payload="null").payload == "null"  # JSON null is a filter too
    assert not dead_filter(payload="null").is_empty()
    assert dead_filter(payload="  ").payload is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"customer": 42', "--payload is not valid JSON: unexpected end of data"),
        ("customer=42", "--payload is not valid JSON"),
        ("NaN", "--payload is not valid JSON"),
        ('{"a": "' + "x" * 5000 + '"}', "--payload: at most 4,096 bytes of JSON, got 5,009"),
        ("[" * 33 + "]" * 33, "--payload: JSON nested more than 32 levels deep"),
        ('{"a": "\\u0000"}', "--payload: \\\\u0000 cannot match"),
    ],
)
def test_a_bad_payload_filter_names_where_it_came_from(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dead_filter(payload=text, payload_name="--payload")

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

"""Which way the store finds the newest matches of a filter no id-ordered index serves."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.filters import DeadFilter
from engine.pg.newest import GATHER, WALK, needs_choice, newest_order

PAYLOAD = DeadFilter(payload='{"tags": ["vip"]}')
WINDOW = DeadFilter(died_before=datetime(2026, 1, 1, tzinfo=UTC))


def test_only_conditions_without_an_id_ordered_index_are_weighed() -> None:
    assert needs_choice(PAYLOAD) and needs_choice(WINDOW)
    assert needs_choice(DeadFilter(error_text="timeout"))
    assert not needs_choice(DeadFilter(job_type="send_email", error_type="TimeoutError"))
    assert not needs_choice(DeadFilter(died_after=datetime(2026, 1, 1, tzinfo=UTC)))


def test_few_matches_are_gathered_and_many_are_walked_to() -> None:
    # The newest 20,000 of 200,000 dead letters: a value in one payload in seven is
    # gathered, one in four walked to, as measured.
    assert newest_order(PAYLOAD, matches=28_572, total=200_000, wanted=20_000) == GATHER
    assert newest_order(PAYLOAD, matches=50_000, total=200_000, wanted=20_000) == WALK
    assert newest_order(PAYLOAD, matches=200_000, total=200_000, wanted=20_000) == WALK
    # A page of 50: walking finds them at once unless the matches are rare.
    assert newest_order(PAYLOAD, matches=28_572, total=200_000, wanted=50) == WALK
    assert newest_order(PAYLOAD, matches=40, total=200_000, wanted=50) == GATHER
    # Before the first ANALYZE the table's size is unknown (0).
    assert newest_order(PAYLOAD, matches=10, total=0, wanted=50) == GATHER


def test_a_window_that_ended_is_gathered_when_it_holds_few() -> None:
    """Its rows are old: the walk would pass every newer dead letter first."""
    assert newest_order(WINDOW, matches=3_000, total=200_000, wanted=50) == GATHER
    assert newest_order(WINDOW, matches=190_000, total=200_000, wanted=50) == WALK

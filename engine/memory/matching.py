"""A dead-letter filter asked of one row, as ``engine.pg.store._where`` asks it of the table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.filters import DeadFilter


def matches(selector: DeadFilter, row: Mapping[str, Any]) -> bool:
    """True if the dead-letter ``row`` matches every field ``selector`` gives.

    As in SQL: a qualified error type ('myapp.errors.Bounce') also matches its short class
    name ('Bounce'); the error text is a case-insensitive substring (ILIKE); ``died_after``
    is inclusive, ``died_before`` exclusive; empty fields narrow nothing.
    """
    if selector.ids and row["job_id"] not in selector.ids:
        return False
    if selector.status is not None and row["status"] != selector.status.value:
        return False
    if selector.job_type and row["job_type"] != selector.job_type:
        return False
    if selector.queue and row["queue"] != selector.queue:
        return False
    if selector.error_type:
        stored, wanted = row["error_type"], selector.error_type
        if stored != wanted and not stored.endswith("." + wanted):
            return False
    if selector.error_text and selector.error_text.lower() not in row["error_message"].lower():
        return False
    if selector.died_after and row["died_at"] < selector.died_after:
        return False
    return not (selector.died_before and row["died_at"] >= selector.died_before)

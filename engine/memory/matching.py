"""A dead-letter filter asked of one row, as ``engine.pg.store._where`` asks it of the table."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from engine.filters import DeadFilter


def matches(selector: DeadFilter, row: Mapping[str, Any]) -> bool:
    """True if the dead-letter ``row`` matches every field ``selector`` gives.

    As in SQL: a qualified error type ('myapp.errors.Bounce') also matches its short class
    name ('Bounce'); the error text is a case-insensitive substring (ILIKE); ``died_after``
    is inclusive, ``died_before`` exclusive; the payload is jsonb containment (``@>``,
    see :func:`contains`) and a NULL payload matches none; empty fields narrow nothing.
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
    if selector.died_before and row["died_at"] >= selector.died_before:
        return False
    return selector.payload is None or (
        row["payload"] is not None and contains(row["payload"], wanted_payload(selector.payload))
    )


def contains(container: Any, contained: Any, *, top: bool = True) -> bool:
    """PostgreSQL's ``container @> contained`` on jsonb values, for the in-memory store.

    An object contains an object whose every key it has, each value containing that
    key's value; an array contains an array whose every element it holds, in any order
    and any count (a scalar element equal to one of its scalars, an object or array
    element contained in one of its objects or arrays); scalars contain equal scalars
    (numbers by value: 1 and 1.0 are equal, true and 1 are not). At the top level only,
    an array also contains a bare scalar it holds (``[1, 2] @> 1``).
    """
    if isinstance(contained, dict):
        return isinstance(container, dict) and all(
            key in container and contains(container[key], value, top=False)
            for key, value in contained.items()
        )
    if isinstance(contained, list):
        return isinstance(container, list) and all(
            _holds(container, element) for element in contained
        )
    if top and isinstance(container, list):
        return _holds(container, contained)
    return _is_scalar(container) and _same_scalar(container, contained)


def _holds(array: list[Any], element: Any) -> bool:
    """``array`` has an element containing ``element`` (equal to it, for a scalar)."""
    if _is_scalar(element):
        return any(_is_scalar(e) and _same_scalar(e, element) for e in array)
    return any(contains(e, element, top=False) for e in array if not _is_scalar(e))


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list)


def _same_scalar(a: Any, b: Any) -> bool:
    """jsonb scalar equality: same JSON type, numbers compared as exact decimals."""
    if _is_number(a) and _is_number(b):
        return _decimal(a) == _decimal(b)
    return type(a) is type(b) and a == b


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _decimal(number: int | float | Decimal) -> Decimal:
    # A float by its shortest text, which is what the pool's codec sent PostgreSQL to store.
    return Decimal(repr(number)) if isinstance(number, float) else Decimal(number)


@functools.lru_cache(maxsize=64)
def wanted_payload(text: str) -> Any:
    """A filter's JSON text as jsonb reads it: fractions exact (Decimal), not floats."""
    return json.loads(text, parse_float=Decimal)

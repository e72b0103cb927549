"""JSON values in and out of PostgreSQL: the pool's codec, and JSON in array parameters.

asyncpg sends a Python list inside an array parameter as one more dimension of the
array, so a JSON array in a ``jsonb[]`` parameter (a payload ``[1, 2]`` in a batch) would
turn into two elements, or make the batch fail as non-homogeneous. :func:`json_column`
wraps each value so that it reaches the codec whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class JsonValue:
    """One JSON value of a ``jsonb[]`` parameter, which asyncpg will not take apart."""

    value: Any


def json_column(values: Iterable[Any]) -> list[JsonValue | None]:
    """The values of a ``jsonb[]`` parameter: None stays SQL NULL."""
    return [None if v is None else JsonValue(v) for v in values]


def encode(value: Any) -> str:
    """The text of a JSON value (unknown types as ``str``), as the pool sends it."""
    if isinstance(value, JsonValue):
        value = value.value
    return orjson.dumps(value, default=str).decode()


decode = orjson.loads

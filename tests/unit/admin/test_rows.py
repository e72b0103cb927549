"""The facade's typed rows write the JSON their rows' dicts wrote (field names and order
are the columns the queries select), and take exactly the columns the stores return."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from engine.admin.rows import (
    AuditEntry,
    DeadGroup,
    DeadLetter,
    DeadLetterSummary,
    Job,
    JobCause,
    JobSummary,
    QueueInfo,
    TypeInfo,
    WorkerRow,
)
from engine.memory.tables import JOB_COLUMNS, LISTED_DEAD, LISTED_JOB

NOW = datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC)
ROW_TYPES = (
    AuditEntry, DeadGroup, DeadLetter, DeadLetterSummary, Job, JobCause, JobSummary,
    QueueInfo, TypeInfo, WorkerRow,
)  # fmt: skip


def sample(row_type: type[Any]) -> dict[str, Any]:
    """A row of ``row_type``'s columns in its field order, with values of varied kinds."""
    values: list[Any] = [7, "text", NOW, None, {"k": [1, "x"]}, True, ["a", "b"]]
    names = [f.name for f in dataclasses.fields(row_type)]
    return {name: values[i % len(values)] for i, name in enumerate(names)}


@pytest.mark.parametrize("row_type", ROW_TYPES, ids=lambda t: t.__name__)
def test_a_typed_row_writes_the_json_of_its_dict(row_type: type[Any]) -> None:
    row = sample(row_type)
    typed = row_type.from_row(row | {"extra_column": 1})  # a wider row (SELECT *) reads too
    option = orjson.OPT_INDENT_2
    assert orjson.dumps(typed, option=option) == orjson.dumps(row, option=option)
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.__setattr__(next(iter(row)), None)


@pytest.mark.parametrize("row_type", ROW_TYPES, ids=lambda t: t.__name__)
def test_a_missing_column_is_an_error_not_a_none(row_type: type[Any]) -> None:
    row = sample(row_type)
    row.pop(next(iter(row)))
    with pytest.raises(KeyError):
        row_type.from_row(row)


def test_the_rows_take_the_columns_the_in_memory_store_returns() -> None:
    assert tuple(DeadLetterSummary.__dataclass_fields__) == LISTED_DEAD
    assert tuple(JobSummary.__dataclass_fields__) == LISTED_JOB
    # The unique key of an enqueue-if-absent is the store's; the admin's row does not show it.
    assert set(Job.__dataclass_fields__) == set(JOB_COLUMNS)

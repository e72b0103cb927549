"""The published JSON Schema of wire format v1 agrees with what the worker decodes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from importlib import resources
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from engine import message
from engine.errors import MessageError
from engine.message import MAX_ATTEMPTS, MAX_GENERATION, JobMessage, StepRef, decode, encode

SCHEMA: dict[str, Any] = json.loads(
    resources.files("engine.schemas").joinpath("job-message.v1.json").read_text("utf-8")
)
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=FormatChecker())
# jsonschema checks "date-time" only when rfc3339-validator is installed; without it
# the schema's own pattern still rejects malformed times, but not impossible dates.
CHECKS_DATE_TIME = "date-time" in FormatChecker().checkers
MAX_U64 = 2**64 - 1


def body(**fields: Any) -> dict[str, Any]:
    return {"type": "mail.send"} | fields


def schema_accepts(instance: Any) -> bool:
    return VALIDATOR.is_valid(instance)


def decode_accepts(instance: Any) -> bool:
    try:
        decode(json.dumps(instance).encode())  # orjson.dumps refuses ints beyond 64 bits
    except MessageError:
        return False
    return True


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$id"] and SCHEMA["title"]
    assert SCHEMA["required"] == ["type"]
    assert SCHEMA.get("additionalProperties", True) is True


def test_schema_describes_every_field_the_encoder_writes() -> None:
    step = StepRef("w-1", 0, "load", 3)
    fields = JobMessage(type="x", payload=None, workflow=step).to_dict()
    assert set(SCHEMA["properties"]["workflow"]["properties"]) == set(step.to_dict())
    assert set(SCHEMA["properties"]) == set(fields)
    assert all(prop.get("description") for prop in SCHEMA["properties"].values())


def test_schema_patterns_are_the_decoders() -> None:
    properties = SCHEMA["properties"]
    assert properties["type"]["pattern"] == message._TYPE_NAME.pattern
    assert properties["queue"]["pattern"] == message._QUEUE_NAME.pattern
    assert properties["id"]["pattern"] == message._JOB_ID.pattern


@pytest.mark.parametrize(
    "job",
    [
        JobMessage(type="noop", payload=None),
        JobMessage(
            type="mail.send",
            payload={"to": ["a@example.com"], "n": 1.5, "ok": True, "text": "héllo ✓"},
            queue="mail-out.v2",
            attempt=2,
            max_retries=7,
            generation=3,
            checkpoint={"page": 4},
            suspend_on_failure=True,
        ),
        JobMessage(
            type="billing:charge_card",
            payload=[1, 2, 3],
            id="order-42",
            max_retries=0,
            suspend_on_failure=False,
            created_at=datetime(
                2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
            ),
        ),
        JobMessage(type="_private", payload="text", created_at=datetime(2024, 2, 29, tzinfo=UTC)),
        JobMessage(type="big", payload=None, attempt=MAX_ATTEMPTS, generation=MAX_GENERATION),
    ],
    ids=["minimal", "every-field", "offset-time", "leap-day", "largest-counts"],
)
def test_encoded_messages_validate_against_the_schema(job: JobMessage) -> None:
    instance = orjson.loads(encode(job))
    VALIDATOR.validate(instance)
    assert decode(encode(job)) == job


def test_minimal_body_is_accepted_by_both() -> None:
    assert schema_accepts({"type": "x"})
    assert decode(b'{"type": "x"}').type == "x"


@pytest.mark.parametrize(
    "instance",
    [
        [1, 2],
        "mail.send",
        None,
        5,
        {"payload": 1},
        {"type": 5},
        {"type": None},
        {"type": True},
        {"type": ["mail.send"]},
        {"type": "has space"},
        {"type": ""},
        {"type": "9starts.with.digit"},
        {"type": "-dash"},
        {"type": "slash/no"},
        {"type": "x" * 201},
        body(v=True),
        body(v=2),
        body(v=0),
        body(v="1"),
        body(id=12),
        body(id=["a"]),
        body(id="x" * 256),
        body(id="x" * 10_000),
        body(id="nul\x00inside"),
        body(id="line\nbreak"),
        body(id="del\x7f"),
        body(id="c1\x85"),
        body(queue=7),
        body(queue=""),
        body(queue="no/slash"),
        body(queue="has space"),
        body(queue="q" * 101),
        body(attempt="1"),
        body(attempt=True),
        body(attempt=-1),
        body(attempt=MAX_U64 + 1),
        body(attempt=MAX_ATTEMPTS + 1),
        body(max_retries=MAX_ATTEMPTS + 1),
        body(generation=MAX_GENERATION + 1),
        body(generation=False),
        body(generation=-3),
        body(generation=1.5),
        body(max_retries=True),
        body(max_retries=-2),
        body(max_retries="3"),
        body(created_at=1714564800),
        body(created_at="yesterday"),
        body(created_at="2024-13-01T00:00:00Z"),
        body(created_at="2024-05-32T00:00:00Z"),
        body(created_at="2024-05-01T24:00:00Z"),
        body(created_at="2024-05-01T23:59:60Z"),
        body(created_at="2024-05-01t12:00:00z"),
        body(created_at="0000-01-01T00:00:00Z"),
        body(created_at={"iso": "2024-05-01T12:00:00Z"}),
        body(suspend_on_failure="yes"),
        body(suspend_on_failure=1),
    ],
    ids=repr,
)
def test_body_decode_rejects_is_rejected_by_the_schema(instance: Any) -> None:
    assert not decode_accepts(instance), "decode accepted it: the case is wrong"
    assert not schema_accepts(instance)


@pytest.mark.skipif(not CHECKS_DATE_TIME, reason="needs rfc3339-validator for date-time")
@pytest.mark.parametrize("created_at", ["2024-02-30T00:00:00Z", "2023-02-29T00:00:00Z"])
def test_impossible_date_is_rejected_by_both(created_at: str) -> None:
    assert not decode_accepts(body(created_at=created_at))
    assert not schema_accepts(body(created_at=created_at))


@pytest.mark.parametrize(
    "instance",
    [
        body(v=1),
        body(payload={"a": [1, None, "b"]}, checkpoint=[0.5, "x"]),
        body(id=""),
        body(id="x" * 255),
        body(id="é" * 127),
        body(id="tab-free ünïcødé ✓ id"),
        body(queue="a.b-c_1"),
        body(queue="q" * 100),
        {"type": "x" * 200},
        body(attempt=0, generation=0, max_retries=0),
        body(attempt=MAX_ATTEMPTS, max_retries=MAX_ATTEMPTS, generation=MAX_GENERATION),
        body(created_at="2024-05-01T12:00:00Z"),
        body(created_at="2024-05-01T12:00:00.1234567-00:00"),
        body(created_at="2024-05-01T12:00:00+23:59"),
        body(suspend_on_failure=False),
        body(future_field={"added": "in v1.1"}),
        body(
            v=None,
            id=None,
            queue=None,
            payload=None,
            attempt=None,
            max_retries=None,
            generation=None,
            created_at=None,
            checkpoint=None,
            suspend_on_failure=None,
        ),
    ],
    ids=repr,
)
def test_body_decode_accepts_is_accepted_by_the_schema(instance: Any) -> None:
    assert decode_accepts(instance)
    assert schema_accepts(instance)


@pytest.mark.parametrize(
    ("raw", "schema_ok", "decode_ok"),
    [
        # JSON Schema compares numbers by value, so 1.0 and 1e0 are integers to it;
        # the decoder sees the float that orjson parses and rejects it.
        (b'{"type": "x", "attempt": 1.0}', True, False),
        (b'{"type": "x", "max_retries": 1e2}', True, False),
        # The decoder reads a time without an offset as UTC (and "" as "now"); the
        # schema asks producers for RFC 3339 with an offset.
        (b'{"type": "x", "created_at": "2024-05-01T12:00:00"}', False, True),
        (b'{"type": "x", "created_at": "2024-05-01"}', False, True),
        (b'{"type": "x", "created_at": ""}', False, True),
        # The schema counts characters, the worker bytes of UTF-8: 200 x 2 bytes is too long.
        (orjson.dumps({"type": "x", "id": "\u00e9" * 200}), True, False),
    ],
)
def test_known_differences_stay_known(raw: bytes, schema_ok: bool, decode_ok: bool) -> None:
    assert schema_accepts(orjson.loads(raw)) is schema_ok
    assert decode_accepts(orjson.loads(raw)) is decode_ok


@pytest.mark.parametrize(
    ("workflow", "valid"),
    [
        (None, True),
        ({"id": "w", "generation": 0, "step": "load"}, True),
        ({"id": "w", "generation": 2, "step": "load", "item": 17}, True),
        ({"id": "w", "generation": 0, "step": "load", "item": None}, True),
        ({"id": "w", "generation": 0}, False),
        ({"id": "", "generation": 0, "step": "load"}, False),
        ({"id": "w" * 129, "generation": 0, "step": "load"}, False),
        ({"id": "w\u0001", "generation": 0, "step": "load"}, False),
        ({"id": "w", "generation": -1, "step": "load"}, False),
        ({"id": "w", "generation": MAX_GENERATION + 1, "step": "load"}, False),
        ({"id": "w", "generation": 0, "step": "9load"}, False),
        ({"id": "w", "generation": 0, "step": "load[1]"}, False),
        ({"id": "w", "generation": 0, "step": "load", "item": -1}, False),
        ({"id": "w", "generation": 0, "step": "load", "item": 100_000}, False),
        ({"id": "w", "generation": "0", "step": "load"}, False),
        ({"id": 7, "generation": 0, "step": "load"}, False),
        ("w", False),
    ],
)
def test_schema_and_decoder_agree_on_the_workflow_field(workflow: Any, valid: bool) -> None:
    instance = body(workflow=workflow)
    assert schema_accepts(instance) is valid
    assert decode_accepts(instance) is valid


def test_a_workflow_step_survives_encode_and_decode() -> None:
    message = JobMessage(type="x", payload=[1], workflow=StepRef("w/1", 4, "load", 9))
    decoded = decode(encode(message))
    assert decoded.workflow == message.workflow
    assert decoded.workflow is not None and decoded.workflow.job_id == "w/1/4/load[9]"
    assert StepRef.of_job("w/1", "w/1/4/load[9]") == message.workflow
    assert StepRef.of_job("w", "w/0/total") == StepRef("w", 0, "total")
    for bad in ("other/0/total", "w/x/total", "w/0/to tal", "w/0/load[x]", "w/0/load[1"):
        with pytest.raises(ValueError):
            StepRef.of_job("w", bad)

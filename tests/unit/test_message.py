"""The wire format: round trip, and a clear reason for every malformed body."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from engine.errors import MessageError
from engine.message import (
    FORMAT_VERSION,
    H_REDELIVERIES,
    MAX_ATTEMPTS,
    MAX_COUNT,
    MAX_GENERATION,
    MAX_ID_BYTES,
    JobMessage,
    check_headers,
    decode,
    encode,
)


def body(**fields: object) -> bytes:
    return orjson.dumps({"type": "mail.send"} | fields)


def test_encode_then_decode_gives_the_same_message() -> None:
    message = JobMessage(
        type="mail.send",
        payload={"to": ["a@example.com"], "n": 1.5, "ok": True},
        queue="mail",
        attempt=2,
        max_retries=7,
        generation=3,
        checkpoint={"page": 4},
        suspend_on_failure=True,
    )
    assert decode(encode(message)) == message


def test_decode_fills_defaults_of_a_minimal_body() -> None:
    message = decode(body(), fallback_id="amqp-id")
    assert message.id == "amqp-id"
    assert (message.queue, message.attempt, message.generation) == ("default", 0, 0)
    assert message.max_retries is None and message.payload is None
    assert message.v == FORMAT_VERSION
    assert message.created_at.tzinfo is not None


def test_created_at_without_a_zone_is_read_as_utc() -> None:
    message = decode(body(created_at="2024-05-01T12:00:00"))
    assert message.created_at == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json{", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"mail.send"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (orjson.dumps({"payload": 1}), "'type' is missing"),
        (orjson.dumps({"type": 5}), "'type' has the wrong type: int"),
        (orjson.dumps({"type": None}), "'type' has the wrong type: NoneType"),
        (orjson.dumps({"type": "has space"}), "not a valid job type name"),
        (orjson.dumps({"type": ""}), "not a valid job type name"),
        (body(attempt="1"), "'attempt' has the wrong type: str"),
        (body(attempt=1.0), "'attempt' has the wrong type: float"),
        (body(attempt=True), "'attempt' has the wrong type: bool"),
        (body(generation=False), "'generation' has the wrong type: bool"),
        (body(max_retries=True), "'max_retries' has the wrong type: bool"),
        (body(v=True), "'v' has the wrong type: bool"),
        (body(attempt=-1), "must not be negative"),
        (body(max_retries=-2), "must not be negative"),
        (body(queue=7), "'queue' has the wrong type: int"),
        (body(queue="no/slash"), "queue name 'no/slash'"),
        (body(id=12), "'id' has the wrong type: int"),
        (body(suspend_on_failure="yes"), "'suspend_on_failure' has the wrong type: str"),
        (body(v=2), "unsupported format version 2"),
        (body(v=0), "unsupported format version 0"),
        (body(created_at="yesterday"), "'created_at' is not an ISO 8601 time: 'yesterday'"),
        (body(created_at=1714564800), "'created_at' has the wrong type: int"),
    ],
)
def test_malformed_body_raises_message_error_with_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MessageError) as caught:
        decode(raw)
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_oversized_body_is_malformed_before_it_is_parsed() -> None:
    raw = body(payload="x" * 2000)
    with pytest.raises(MessageError, match=rf"{len(raw)} bytes, more than the 1024 allowed"):
        decode(raw, max_bytes=1024)
    assert decode(raw, max_bytes=len(raw)).payload == "x" * 2000


@pytest.mark.parametrize(
    ("name", "limit"),
    [("attempt", MAX_ATTEMPTS), ("max_retries", MAX_ATTEMPTS), ("generation", MAX_GENERATION)],
)
def test_a_count_at_its_limit_is_accepted(name: str, limit: int) -> None:
    message = decode(body(**{name: limit}))
    assert getattr(message, name) == limit


@pytest.mark.parametrize(
    ("name", "limit"),
    [("attempt", MAX_ATTEMPTS), ("max_retries", MAX_ATTEMPTS), ("generation", MAX_GENERATION)],
)
def test_a_count_above_its_limit_is_malformed_naming_the_field(name: str, limit: int) -> None:
    with pytest.raises(MessageError) as caught:
        decode(body(**{name: limit + 1}))
    assert f"'{name}'" in caught.value.reason
    assert f"must not exceed {limit}" in caught.value.reason


def test_a_body_without_a_queue_takes_the_default_queue() -> None:
    assert decode(body(), default_queue="mail").queue == "mail"


def test_an_explicit_queue_wins_over_the_default_queue() -> None:
    assert decode(body(queue="billing"), default_queue="mail").queue == "billing"


@pytest.mark.parametrize(
    ("job_id", "reason"),
    [
        ("x" * (MAX_ID_BYTES + 1), "field 'id' is longer than 255 bytes"),
        ("x" * 10_000, "(10000 characters)"),
        ("é" * 128, "field 'id' is 256 bytes of UTF-8, longer than the 255 allowed"),
        ("nul\x00inside", "field 'id' contains a control character"),
        ("tab\tinside", "field 'id' contains a control character"),
        ("c1\x9b", "field 'id' contains a control character"),
    ],
    ids=["256-bytes", "10k", "multibyte", "nul", "tab", "c1"],
)
def test_an_id_outside_its_bounds_is_malformed_naming_the_field(job_id: str, reason: str) -> None:
    with pytest.raises(MessageError) as raised:
        decode(body(id=job_id))
    assert reason in raised.value.reason
    assert "\x00" not in raised.value.reason  # the reason itself is storable text


def test_an_id_at_its_bound_is_accepted() -> None:
    assert decode(body(id="x" * MAX_ID_BYTES)).id == "x" * MAX_ID_BYTES
    assert decode(body(id="é" * 127)).id == "é" * 127


def test_an_amqp_message_id_that_cannot_be_a_job_id_is_malformed() -> None:
    with pytest.raises(MessageError, match=r"AMQP message_id .* control character"):
        decode(body(), fallback_id="amqp\x00id")
    assert decode(body(id="from-body"), fallback_id="amqp\x00id").id == "from-body"


@pytest.mark.parametrize("value", [0, 1, MAX_COUNT])
def test_a_redelivery_header_in_bounds_is_accepted(value: int) -> None:
    check_headers({H_REDELIVERIES: value})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (2**40, "must be from 0 to 2147483647"),
        (MAX_COUNT + 1, "must be from 0 to 2147483647"),
        (-1, "must be from 0 to 2147483647"),
        ("3", "has the wrong type: str"),
        (True, "has the wrong type: bool"),
    ],
)
def test_a_redelivery_header_out_of_bounds_is_malformed(value: object, reason: str) -> None:
    with pytest.raises(MessageError, match=f"header 'x-lazarus-redeliveries' {reason}"):
        check_headers({H_REDELIVERIES: value})

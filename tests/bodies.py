"""Bodies and values a producer may send that no job can be made of: the cases shared by
the real-service tests and the in-memory ones."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import orjson

from engine.message import H_REDELIVERIES

BAD_BODIES: dict[str, tuple[bytes, str, str]] = {
    # name: (body, x-lazarus-reason, text in x-lazarus-error-message)
    "not json": (b"{not json", "malformed message", "message body is not JSON"),
    "not an object": (b"[1, 2, 3]", "malformed message", "must be a JSON object"),
    "missing type": (orjson.dumps({"payload": {}}), "malformed message", "'type' is missing"),
    "type not a string": (
        orjson.dumps({"type": ["malformed.good"]}),
        "malformed message",
        "field 'type' has the wrong type: list",
    ),
    "attempt not an int": (
        orjson.dumps({"type": "malformed.good", "attempt": "0"}),
        "malformed message",
        "field 'attempt' has the wrong type: str",
    ),
    "bool for an int": (
        orjson.dumps({"type": "malformed.good", "max_retries": True}),
        "malformed message",
        "field 'max_retries' has the wrong type: bool",
    ),
    "future version": (
        orjson.dumps({"v": 9, "type": "malformed.good"}),
        "malformed message",
        "unsupported format version 9",
    ),
    "unknown job type": (
        orjson.dumps({"type": "malformed.nobody_handles_this"}),
        "unknown job type",
        "no handler registered for job type 'malformed.nobody_handles_this'",
    ),
}


MARK = uuid.uuid4().hex[:8]
UNFIT: dict[str, tuple[dict[str, Any], dict[str, Any] | None, str]] = {
    # case: (body fields, headers, text in the row's error message)
    "300-byte id": ({"id": f"{MARK}-" + "x" * 291}, None, "field 'id' is longer than 255 bytes"),
    "10 KB id": (
        {"id": f"{MARK}-{secrets.token_hex(5116)}"},
        None,
        "field 'id' is longer than 255 bytes",
    ),
    "id with NUL": ({"id": f"{MARK}-nul\x00id"}, None, "field 'id' contains a control character"),
    "redeliveries 2^40": (
        {"id": f"{MARK}-redelivered"},
        {H_REDELIVERIES: 2**40},
        "header 'x-lazarus-redeliveries' must be from 0 to 2147483647",
    ),
}

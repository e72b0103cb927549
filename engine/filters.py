"""Which dead letters an operation applies to: a value, turned into SQL only by the store."""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from engine.states import DeadStatus

_AGE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Bytes of JSON text a payload filter may hold: enough for any sub-object a person types,
# small enough that no request makes PostgreSQL compare megabytes against every row.
MAX_PAYLOAD_FILTER = 4096
MAX_PAYLOAD_DEPTH = 32  # nested objects and arrays in it: deeper is a mistake, not a search


@dataclass(frozen=True, slots=True)
class DeadFilter:
    """Dead letters matching every given field; ``ids`` are job ids."""

    ids: tuple[str, ...] = ()
    job_type: str | None = None
    queue: str | None = None
    error_type: str | None = None
    error_text: str | None = None  # case-insensitive substring of the error message
    died_after: datetime | None = None
    died_before: datetime | None = None
    status: DeadStatus | None = DeadStatus.DEAD
    # JSON text, not a value: ``null`` is a filter too. Rows whose payload contains it as
    # PostgreSQL's jsonb ``@>`` reads containment (read :func:`payload_filter`).
    payload: str | None = None

    def is_empty(self) -> bool:
        """True when nothing narrows the selection (only the status)."""
        return not (
            self.ids
            or self.job_type
            or self.queue
            or self.error_type
            or self.error_text
            or self.died_after
            or self.died_before
            or self.payload is not None
        )

    def describe(self) -> dict[str, Any]:
        """The filter as JSON-friendly values, for the audit log (the payload as JSON)."""
        out = {k: v for k, v in asdict(self).items() if v not in (None, ())}
        if self.payload is not None:
            out["payload"] = orjson.loads(self.payload)
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in out.items()}


def bulk_selection(
    ids: tuple[str, ...] | list[str], by_filter: DeadFilter, everything: bool
) -> DeadFilter:
    """What a bulk operation applies to: ids, or a filter, or everything when asked for.

    Never everything by accident: no ids and an empty filter need ``everything``.
    Raises ValueError saying what is missing or contradictory.
    """
    if ids and not by_filter.is_empty():
        raise ValueError("give job ids or a filter, not both")
    if ids:
        return DeadFilter(ids=tuple(ids))
    if by_filter.is_empty() and not everything:
        raise ValueError("name job ids, give a filter, or ask for all (--all / all: true)")
    return by_filter


def parse_age(text: str) -> timedelta:
    """``30d``, ``12h``, ``15m``, ``90s`` or ``2w`` as a timedelta; ValueError names the text."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"age {text!r}: use a number and a unit s, m, h, d or w (e.g. 30d)")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def age_ago(name: str, text: str) -> timedelta:
    """:func:`parse_age`, also refusing ages too long to count back from now; the
    ValueError names ``name`` (the option or field the text came in)."""
    try:
        value = parse_age(text)
        datetime.now(UTC) - value
    except OverflowError:
        raise ValueError(f"{name} {text!r}: too long ago") from None
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return value


def dead_filter(
    *,
    ids: tuple[str, ...] | list[str] = (),
    job_type: str | None = None,
    queue: str | None = None,
    error_type: str | None = None,
    error_text: str | None = None,
    since: str | None = None,
    after: datetime | None = None,
    before: datetime | None = None,
    status: DeadStatus | None = DeadStatus.DEAD,
    payload: str | None = None,
    since_name: str = "since",
    payload_name: str = "payload",
) -> DeadFilter:
    """The filter a person gives, from the CLI or HTTP, as the engine reads it: ``since``
    (an age, which wins over ``after``) becomes a time, an error type is read as workers
    store it, the payload is checked JSON, empty texts mean no condition. ValueError names
    a bad ``since`` or ``payload`` by the name it came in."""
    if since is not None:
        after = datetime.now(UTC) - age_ago(since_name, since)
    return DeadFilter(
        ids=tuple(ids),
        job_type=job_type or None,
        queue=queue or None,
        error_type=stored_error_type(error_type or None),
        error_text=error_text or None,
        died_after=after,
        died_before=before,
        status=status,
        payload=payload_filter(payload_name, payload),
    )


def payload_filter(name: str, text: str | None) -> str | None:
    """JSON text a payload must contain, checked as PostgreSQL will read it; blank is None.

    Any JSON value: ``{"customer": 42}`` matches payloads with that key and value (among
    others), ``{"tags": ["vip"]}`` those whose ``tags`` array holds ``"vip"``. The
    ValueError names ``name`` and says what is wrong: longer than MAX_PAYLOAD_FILTER
    bytes or nested deeper than MAX_PAYLOAD_DEPTH, not JSON, or holding ``\\u0000``,
    which no stored payload can.
    """
    if text is None or not text.strip():
        return None
    size = len(text.encode(errors="surrogatepass"))
    if size > MAX_PAYLOAD_FILTER:
        raise ValueError(f"{name}: at most {MAX_PAYLOAD_FILTER:,} bytes of JSON, got {size:,}")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from None
    if _depth(value) > MAX_PAYLOAD_DEPTH:
        raise ValueError(f"{name}: JSON nested more than {MAX_PAYLOAD_DEPTH} levels deep")
    if b"\\u0000" in orjson.dumps(value):
        raise ValueError(f"{name}: \\u0000 cannot match (PostgreSQL stores no NUL in JSON)")
    return text.strip()


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in a JSON value (a scalar is 0), without
    recursion: the text may nest a thousand levels before it is refused."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        )
        if children is not None:
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in children)
    return deepest


def stored_error_type(name: str | None) -> str | None:
    """An error type as workers store it: a builtin by its bare name, others dotted.

    ``builtins.TimeoutError``, ``asyncio.TimeoutError`` and ``socket.timeout`` are all the
    builtin ``TimeoutError`` (aliases since Python 3.11), stored as ``TimeoutError``; so
    each is read as that. Other names pass as given.
    """
    if name is None:
        return None
    return _builtin_aliases().get(name, name)


@functools.cache
def _builtin_aliases() -> dict[str, str]:
    """``module.Name`` of the standard library's aliases of builtin exceptions, and
    ``builtins.Name``, each mapped to the bare name workers store."""
    import asyncio
    import builtins
    import concurrent.futures
    import socket

    aliases: dict[str, str] = {}
    for module in (builtins, asyncio, asyncio.exceptions, concurrent.futures, socket):
        for attr, value in vars(module).items():
            is_error = isinstance(value, type) and issubclass(value, BaseException)
            if is_error and value.__module__ == "builtins":
                aliases[f"{module.__name__}.{attr}"] = value.__qualname__
    return aliases

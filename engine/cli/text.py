"""Text that came from a message or the database, made inert before the CLI prints it.

Whoever can publish to the vhost chooses a job's id, its error message and payload.
Printed as they are, ``[/x]`` is Rich markup that crashes the command, and ESC, CSI
or OSC 8 sequences clear, recolour or hyperlink the operator's terminal. Every such
value goes through :func:`inert` (Rich output) or :func:`plain` (plain output);
``--json`` output needs neither, as JSON escapes control characters itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

# C0 controls, DEL and C1 controls: with ESC and the C1 CSI / OSC gone, no escape sequence
# or hyperlink survives. Bidirectional overrides go too: they reorder what is shown.
_BIDI = "\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROLS_BUT_LINES = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
_LINE_BREAKS = re.compile("[\t\n]")

# Emoji codes off: ``:warning:`` in an error message is text, not a symbol.
console = Console(emoji=False)
err_console = Console(emoji=False, stderr=True)
_unbounded = Console(emoji=False, width=10_000)


def plain(value: object, *, lines: bool = False, limit: int | None = None) -> str:
    """``str(value)`` without control characters, cut to ``limit`` characters.

    With ``lines`` (tracebacks, multi-line messages) tabs and newlines stay; otherwise
    they become spaces, so one value is one line of a table.
    """
    text = str(value)
    if lines:
        text = _CONTROLS_BUT_LINES.sub("", text)
    else:
        text = _CONTROLS.sub("", _LINE_BREAKS.sub(" ", text))
    return text if limit is None else text[:limit]


def inert(value: object, *, lines: bool = False, limit: int | None = None) -> str:
    """:func:`plain`, then escaped so that Rich prints any ``[...]`` in it literally."""
    return escape(plain(value, lines=lines, limit=limit))


def json_text(value: Any) -> str:
    """A payload or checkpoint as compact JSON: what was sent, never a Python repr."""
    return orjson.dumps(value, default=str).decode()


def utc(moment: datetime) -> str:
    """A time in UTC to the second, as tables and show output print it."""
    return moment.astimezone(UTC).strftime("%F %T UTC")


def id_column(header: str, ids: Iterable[str]) -> Column:
    """A table column that prints every job id in full on one line.

    Ids are what people copy into the next command, so the column never wraps, folds or
    cuts one with an ellipsis: the other columns wrap instead, and on a terminal too
    narrow for it the line runs past the edge.
    """
    widest = max((len(plain(i)) for i in ids), default=len(header))
    return Column(header, no_wrap=True, overflow="ignore", min_width=max(widest, len(header)))


def print_table(table: Table) -> None:
    """Print a table; into a pipe or file at its natural width, one row a line, so that
    ``grep`` and ``cut`` see whole rows (a terminal's width still applies on a terminal)."""
    (console if console.is_terminal else _unbounded).print(table)

"""Turns the rows of all runs into one table (medians over runs) and a JSON document."""

from __future__ import annotations

import math
import statistics
from typing import Any

Row = dict[str, Any]


def merge_runs(runs: list[Row]) -> Row:
    """One row from several runs of it: numbers become medians, the rest is kept from run 1."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
            middle = statistics.median(values)
            # Counts stay whole numbers when every run agrees on their type.
            whole = all(isinstance(v, int) for v in values) and middle == int(middle)
            merged[key] = int(middle) if whole else middle
    return merged


def fmt_rate(value: Any) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    return f"{value:,.0f}"


def ratio(a: Any, b: Any) -> str:
    if not all(isinstance(v, int | float) and v > 0 for v in (a, b)):
        return "-"
    return f"{a / b:.2f}x"


HEADER = ("section", "system", "setup", "publish/s", "process/s", "result", "ratio")


def table(rows: list[Row]) -> str:
    """Rows carry section, system, setup, publish_per_s, process_per_s, result, ratio."""
    cells = [HEADER] + [
        (
            r["section"],
            r["system"],
            r["setup"],
            fmt_rate(r.get("publish_per_s")),
            fmt_rate(r.get("process_per_s")),
            r.get("result", ""),
            r.get("ratio", ""),
        )
        for r in rows
    ]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(HEADER))]
    right = {3, 4}
    lines = []
    for index, row in enumerate(cells):
        parts = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)

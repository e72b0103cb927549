"""Named SQL statements from the ``.sql`` files of ``engine/pg/sql`` (not its migrations),
loaded once; every query module reads them here. A name defined twice is an error."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries() -> dict[str, str]:
    queries: dict[str, str] = {}
    folder = resources.files("engine.pg.sql")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        parts = _NAME.split(entry.read_text())[1:]
        for name, body in zip(parts[::2], parts[1::2], strict=True):
            if name in queries:
                raise RuntimeError(f"query {name!r} is defined twice (engine/pg/sql/{entry.name})")
            queries[name] = body.strip()
    return queries


Q = load_queries()

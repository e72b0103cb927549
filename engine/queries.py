"""Named SQL statements from sql/queries.sql, loaded once; every query module reads them here."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries() -> dict[str, str]:
    text = resources.files("engine.sql").joinpath("queries.sql").read_text()
    parts = _NAME.split(text)[1:]
    return {name: body.strip() for name, body in zip(parts[::2], parts[1::2], strict=True)}


Q = load_queries()

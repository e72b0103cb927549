"""What a stored row is to the code that reads it, whichever store returned it.

``asyncpg.Record`` is not a ``collections.abc.Mapping`` (iterating it yields values, not
keys), so ``Mapping[str, Any]`` misdescribes it; a dict, which the in-memory store returns,
is not a Record. Both read columns by name, know their keys and build a ``dict(row)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, overload


class Row(Protocol):
    """A row read by column name: an ``asyncpg.Record`` or a ``dict``."""

    def __getitem__(self, key: str, /) -> Any: ...

    @overload
    def get(self, key: str, /) -> Any: ...

    @overload
    def get(self, key: str, default: Any, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...

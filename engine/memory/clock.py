"""Virtual time for the in-memory broker: its TTLs expire when a test moves the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Timed(Protocol):
    """Something with deadlines on a clock: the in-memory broker's TTL queues."""

    def next_due(self) -> float | None: ...

    def expire(self) -> None:
        """Carry out everything due at the clock's ``now``."""


class VirtualClock:
    """Seconds from 0 that move only when told, with a wall time for the headers it stamps.

    Moving it carries out every deadline passed, in due order and each at its own time:
    a message that expires into another TTL queue waits there from when it expired.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self.now = 0.0
        self._start = start or datetime.now(UTC)
        self._timed: list[Timed] = []

    def wall(self) -> datetime:
        """The wall time now: the real start plus the virtual time passed."""
        return self._start + timedelta(seconds=self.now)

    def attach(self, timed: Timed) -> None:
        self._timed.append(timed)

    def next_due(self) -> float | None:
        """The earliest deadline of anything attached, or None if none waits."""
        due = [d for t in self._timed if (d := t.next_due()) is not None]
        return min(due) if due else None

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"time runs forward only, not by {seconds} s")
        self.advance_to(self.now + seconds)

    def advance_to(self, when: float) -> None:
        """Move to ``when`` (seconds from 0), carrying out each deadline passed on the way."""
        if when < self.now:
            raise ValueError(f"time runs forward only: {when} is before {self.now}")
        while (due := self.next_due()) is not None and due <= when:
            self.now = max(self.now, due)
            for timed in self._timed:
                timed.expire()
        self.now = when

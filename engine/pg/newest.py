"""How the store finds the newest dead letters that match a filter no index in id order
serves: the payload's contents, the message's text, a time window.

Two ways, and which is cheaper depends on the filter's values, which PostgreSQL's cost
model weighs badly here (it prices a jsonb containment check like an integer compare):

- walk the primary key newest first, checking every row, until enough match: about
  ``wanted / share`` rows for matches spread evenly, and every newer row first for a
  window that ended long ago (3,000 old deaths listed in 217 ms at 200,000 dead letters);
- gather every match through its own index (GIN, trigram, ``died_at``) and sort them:
  each match costs about three rows of the walk (a heap read out of order, the recheck,
  the sort). For a tag in one payload in seven, the newest 20,000 matches of 200,000
  were grouped in 70-90 ms this way and in 145-180 ms by the walk; for a tag in every
  payload, the walk took 20-30 ms.
"""

from __future__ import annotations

from engine.filters import DeadFilter

WALK = "id DESC"
# Sorting on an expression keeps the planner off the primary key's order, so it reaches
# the matches through the index their condition has.
GATHER = "id + 0 DESC"
# Matches of a window that ended in the past gathered however they are spread: at this
# many, sorting them costs a few milliseconds, where the walk may pass every newer row.
FEW_IN_A_WINDOW = 10_000


def needs_choice(selector: DeadFilter) -> bool:
    """True when the filter has a condition that no index in id order serves."""
    return (
        selector.payload is not None
        or bool(selector.error_text)
        or selector.died_before is not None
    )


def newest_order(selector: DeadFilter, *, matches: float, total: float, wanted: int) -> str:
    """The ORDER BY that finds the ``wanted`` newest of about ``matches`` matching rows out
    of about ``total`` (PostgreSQL's estimates) at the lower cost; see the module's text."""
    if selector.died_before is not None and matches <= FEW_IN_A_WINDOW:
        return GATHER
    return GATHER if 3 * matches * matches < wanted * max(total, matches) else WALK

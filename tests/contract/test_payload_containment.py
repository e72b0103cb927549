"""The in-memory store's jsonb containment against PostgreSQL's own ``@>``, on values
drawn at random from a small alphabet (so that many pairs match, and many almost do)."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import orjson

from engine.memory.matching import contains, wanted_payload
from tests.conftest import DATABASE_URL

KEYS = ["a", "b", "c"]
SCALARS: list[Any] = [0, 1, 1.0, 1.5, -0.0, True, False, None, "a", "1", ""]


def value(rng: random.Random, depth: int) -> Any:
    kind = rng.random()
    if depth == 0 or kind < 0.4:
        return rng.choice(SCALARS)
    if kind < 0.7:
        return [value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {k: value(rng, depth - 1) for k in rng.sample(KEYS, rng.randint(0, 3))}


def part_of(rng: random.Random, whole: Any) -> Any:
    """Something ``whole`` may well contain: a sub-object, a few elements, itself; or
    one of its elements bare, which only a top-level array contains."""
    if isinstance(whole, list) and whole and rng.random() < 0.15:
        return rng.choice(whole)
    if isinstance(whole, dict) and whole and rng.random() < 0.8:
        keys = rng.sample(sorted(whole), rng.randint(0, len(whole)))
        return {k: part_of(rng, whole[k]) for k in keys}
    if isinstance(whole, list) and whole and rng.random() < 0.8:
        return [part_of(rng, e) for e in rng.sample(whole, rng.randint(0, len(whole)))]
    return whole if rng.random() < 0.7 else value(rng, 2)


async def test_the_in_memory_containment_agrees_with_postgresql() -> None:
    rng = random.Random(20261129)
    pairs = []
    for _ in range(3000):
        whole = value(rng, 3)
        pairs.append((whole, part_of(rng, whole) if rng.random() < 0.7 else value(rng, 3)))
    texts = [(orjson.dumps(w).decode(), orjson.dumps(p).decode()) for w, p in pairs]
    conn = await asyncpg.connect(DATABASE_URL)
    try:
        rows = await conn.fetch(
            "SELECT w::jsonb @> p::jsonb AS hit FROM unnest($1::text[], $2::text[])"
            " WITH ORDINALITY AS t(w, p, n) ORDER BY n",
            [w for w, _ in texts],
            [p for _, p in texts],
        )
    finally:
        await conn.close()
    expected = [r["hit"] for r in rows]
    # As the stores read them: a stored payload through the pool's codec, a filter as text.
    got = [contains(orjson.loads(w), wanted_payload(p)) for w, p in texts]
    wrong = [(w, p, e) for (w, p), e, g in zip(texts, expected, got, strict=True) if e != g]
    assert wrong == [], wrong[:10]
    assert 0.3 < sum(expected) / len(expected) < 0.9  # the draw tests both answers

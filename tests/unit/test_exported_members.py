"""``engine.__all__`` lists exactly the public names the package exports."""

from __future__ import annotations

import engine


def test_all_lists_every_public_name_and_only_those() -> None:
    public = {
        name
        for name, value in vars(engine).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("engine.")
    }
    assert set(engine.__all__) == public


def test_every_exported_name_resolves() -> None:
    for name in engine.__all__:
        assert getattr(engine, name) is not None, name

"""The README's "Workflows" example, as it stands there (checked verbatim below)."""

from engine.testing import Lazarus
from handlers.import_files import IMPORT_FILES


async def test_an_import_goes_on_once_its_broken_file_is_moved_back(lazarus: Lazarus) -> None:
    started = await lazarus.start_workflow(IMPORT_FILES, ["a.csv", "broken.csv", "c.csv"])
    await lazarus.drain()
    failed = await lazarus.admin.workflows.show(started.workflow_id)
    assert failed.summary.state == "failed"  # the report waits for the broken file
    assert [s.step for s in failed.needs_person] == ["load[1]"]
    assert failed.summary.cause == (
        "step load[1] dead: engine.errors.Permanent: broken.csv: unreadable header"
    )

    assert await lazarus.admin.workflows.retry([started.workflow_id]) == 1
    await lazarus.drain()
    done = await lazarus.admin.workflows.show(started.workflow_id)
    assert done.summary.state == "succeeded"
    [report] = [s for s in done.steps if s.step == "report"]
    assert report.result == {"files": 3, "rows": 50 + 100 + 50}


def test_the_readme_shows_this_example_verbatim() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[3] / "README.md").read_text()
    source = Path(__file__).read_text()
    example = source[
        source.index("from engine.testing") : source.index("\n\n\ndef test_the_readme")
    ]
    assert example.strip() in readme
    handlers = (Path(__file__).parents[3] / "handlers" / "import_files.py").read_text()
    definition = handlers[handlers.index("@handler") :]
    assert definition.strip() in readme

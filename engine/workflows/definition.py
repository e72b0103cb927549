"""What a workflow is made of: steps in a directed acyclic graph, checked when defined.

A :class:`Step` runs one job of a registered type once what it waits on (``after``) has
succeeded. A :class:`FanOut` runs one job per work item, the items being a JSON array: the
result of a step, or the workflow's input (:data:`INPUT`); a step after a fan-out waits on
all its items (a fan-in). Each step keeps its job type's retry policy, timeout,
suspend-on-failure and checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.errors import LazarusError
from engine.message import check_queue_name, check_step_name, check_type_name

INPUT = "$input"
"""``items_from`` of a fan-out whose items are the workflow's input (a JSON array)."""

MAX_STEPS = 200  # top-level steps of one definition (a fan-out's items are not counted)


class UnknownWorkflowType(LazarusError):
    """No workflow is registered under this name (in this process)."""


@dataclass(frozen=True, slots=True)
class Step:
    """Run one job of ``job_type`` once every step in ``after`` has succeeded.

    ``queue``: where its job goes; None: the workflow's queue."""

    name: str
    job_type: str
    after: tuple[str, ...] = ()
    queue: str | None = None

    def __post_init__(self) -> None:
        _check_common(self.name, self.job_type, self.after, self.queue)


@dataclass(frozen=True, slots=True)
class FanOut:
    """Run one job of ``job_type`` per item of a JSON array: the result of the step named
    ``items_from`` (which it then waits on too), or the workflow's input (:data:`INPUT`).
    Its items run in parallel and fail or succeed each on its own; a step after it waits
    on all of them."""

    name: str
    job_type: str
    items_from: str
    after: tuple[str, ...] = ()
    queue: str | None = None

    def __post_init__(self) -> None:
        _check_common(self.name, self.job_type, self.after, self.queue)
        if self.items_from != INPUT:
            check_step_name(self.items_from)

    @property
    def waits_on(self) -> tuple[str, ...]:
        """``after``, plus the step whose result gives the items."""
        if self.items_from == INPUT or self.items_from in self.after:
            return self.after
        return (*self.after, self.items_from)


def _check_common(name: str, job_type: str, after: Iterable[str], queue: str | None) -> None:
    check_step_name(name)
    check_type_name(job_type)
    for dependency in after:
        check_step_name(dependency)
    if queue is not None:
        check_queue_name(queue)


def waits_on(step: Step | FanOut) -> tuple[str, ...]:
    """The steps ``step`` waits on."""
    return step.waits_on if isinstance(step, FanOut) else step.after


class Workflow:
    """A named graph of steps. Raises ValueError if a name repeats, a step waits on one
    that does not exist, or the steps wait on each other in a cycle."""

    def __init__(self, name: str, steps: Sequence[Step | FanOut], *, queue: str = "default"):
        check_type_name(name)
        check_queue_name(queue)
        if not steps:
            raise ValueError(f"workflow {name!r} has no steps")
        if len(steps) > MAX_STEPS:
            raise ValueError(f"workflow {name!r} has {len(steps)} steps, more than {MAX_STEPS}")
        self.name = name
        self.queue = queue
        self.steps: dict[str, Step | FanOut] = {}
        for step in steps:
            if step.name in self.steps:
                raise ValueError(f"workflow {name!r}: step {step.name!r} is defined twice")
            self.steps[step.name] = step
        for step in steps:
            for dependency in waits_on(step):
                if dependency not in self.steps:
                    raise ValueError(
                        f"workflow {name!r}: step {step.name!r} waits on {dependency!r}, "
                        "which is not one of its steps"
                    )
                if dependency == step.name:
                    raise ValueError(f"workflow {name!r}: step {step.name!r} waits on itself")
        self._check_acyclic()

    def _check_acyclic(self) -> None:
        done: set[str] = set()
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting:
                cycle = " -> ".join([*visiting[visiting.index(name) :], name])
                raise ValueError(f"workflow {self.name!r}: steps wait on each other: {cycle}")
            visiting.append(name)
            for dependency in waits_on(self.steps[name]):
                visit(dependency)
            visiting.pop()
            done.add(name)

        for name in self.steps:
            visit(name)

    def edges(self) -> list[tuple[str, str]]:
        """(depends_on, step) for every dependency."""
        return [(d, s.name) for s in self.steps.values() for d in waits_on(s)]

    def queue_of(self, step: Step | FanOut) -> str:
        return step.queue or self.queue

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, {len(self.steps)} steps)"


_WORKFLOWS: dict[str, Workflow] = {}


def register_workflow(workflow: Workflow) -> Workflow:
    """Make ``workflow`` startable by name (HTTP, CLI, a message). Registering another
    definition under a name already taken is an error, as for job types."""
    existing = _WORKFLOWS.get(workflow.name)
    if existing is not None and existing is not workflow:
        raise ValueError(f"workflow type {workflow.name!r} is already registered")
    _WORKFLOWS[workflow.name] = workflow
    return workflow


def lookup_workflow(name: str) -> Workflow:
    try:
        return _WORKFLOWS[name]
    except KeyError:
        raise UnknownWorkflowType(f"no workflow registered under {name!r}") from None


def registered_workflows() -> dict[str, Workflow]:
    return dict(_WORKFLOWS)

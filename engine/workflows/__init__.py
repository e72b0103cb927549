"""Workflows: jobs made of steps and work items, whose readiness PostgreSQL decides.

A definition (:class:`Workflow` of :class:`Step` and :class:`FanOut`) names registered job
types and what each waits on; :func:`start_workflow` puts a generation of its graph in the
store and releases its first steps; a step's success (engine.workflows.completion) writes
its result and releases what waited on it, in one transaction, before the step's ack.
"""

from engine.workflows.definition import (
    INPUT,
    FanOut,
    Step,
    Workflow,
    lookup_workflow,
    register_workflow,
    registered_workflows,
)
from engine.workflows.start import Started, WorkflowExists, start_workflow

__all__ = [
    "INPUT",
    "FanOut",
    "Started",
    "Step",
    "Workflow",
    "WorkflowExists",
    "lookup_workflow",
    "register_workflow",
    "registered_workflows",
    "start_workflow",
]

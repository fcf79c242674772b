"""Nested steps at definition time: limits, links between workflows, saving, reading.

:class:`~automate.services.WorkflowService` validates each step (nested ones as their
parents' ``then``/``else``/``steps``) and hands the rows here to be checked as a whole and
saved: every step, nested or ``on_failure``, is its own :class:`WorkflowStep` row (a
nested one has its ``parent`` and ``block``), so each executed nested step has its own
:class:`~automate.models.StepRun`. The parent's config keeps its nested steps as written,
which is what the admin and the API show. :class:`StepTree` reads them back for the runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from automate.conf import settings as app_settings
from automate.models import Workflow, WorkflowStep
from automate_core.providers.errors import invalid_argument

__all__ = [
    "ON_FAILURE",
    "StepTree",
    "check_children",
    "check_depth",
    "check_no_parking",
    "on_failure_steps",
    "save_rows",
    "step_dict",
]

#: The block of a workflow's ``on_failure`` steps.
ON_FAILURE = "on_failure"


def check_depth(depth: int, where: str, label: str) -> None:
    """Refuse steps nested deeper than ``AUTOMATE["FLOW_MAX_DEPTH"]``."""
    limit = app_settings.FLOW_MAX_DEPTH
    if depth > limit:
        raise invalid_argument(
            where,
            f'{label}: steps nest {depth} deep, over AUTOMATE["FLOW_MAX_DEPTH"] ({limit})',
        )


def _walk(rows: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for row in rows:
        yield row
        for block in row["children"].values():
            yield from _walk(block)


#: Step types that park a run: not allowed among ``on_failure`` steps, which run once
#: while the run dies.
PARKING_TYPES = frozenset({"delay", "wait_for_event", "workflow"})


def check_no_parking(row: dict[str, Any], where: str) -> None:
    for step in _walk([row]):
        if step["type"] in PARKING_TYPES:
            raise invalid_argument(
                where,
                f"step {step['name']!r}: a {step['type']} step cannot be an on_failure step",
                step=step["name"],
            )


def check_children(rows: list[dict[str, Any]], key: str | None) -> None:
    """Refuse ``workflow`` steps that start an unknown workflow, a cycle, or a chain of
    child workflows deeper than ``AUTOMATE["FLOW_MAX_CHILD_DEPTH"]``."""
    called = [(row["name"], row["config"].get("workflow")) for row in _walk(rows)]
    called = [(name, target) for name, target in called if _is_child(rows, name)]
    if not called:
        return
    graph = _call_graph()
    if key is not None:
        graph[key] = {target for _, target in called}
    limit = app_settings.FLOW_MAX_CHILD_DEPTH
    for name, target in called:
        if target != key and not Workflow.objects.filter(key=target).exists():
            raise invalid_argument(
                "config.workflow", f"step {name!r}: no workflow with key {target!r}", step=name
            )
    start = key if key is not None else "(new)"
    if key is None:
        graph[start] = {target for _, target in called}
    depth = _depth(graph, start, (), limit)
    if depth is None:
        raise invalid_argument(
            "config.workflow",
            f"step {called[0][0]!r}: the workflows it starts lead back to {start!r} (a cycle)",
            step=called[0][0],
        )
    # Workflows that start this one add their own depth above it.
    above = _height(graph, start, limit) if key is not None else 0
    if depth + above > limit:
        raise invalid_argument(
            "config.workflow",
            f"step {called[0][0]!r}: child workflows would nest {depth + above} deep, over "
            f'AUTOMATE["FLOW_MAX_CHILD_DEPTH"] ({limit})',
            step=called[0][0],
        )


def _is_child(rows: list[dict[str, Any]], name: str) -> bool:
    return any(row["name"] == name and row["type"] == "workflow" for row in _walk(rows))


def _call_graph() -> dict[str, set[str]]:
    """Which workflows each workflow's current version starts, by key."""
    graph: dict[str, set[str]] = {}
    steps = WorkflowStep.objects.filter(type="workflow").select_related("workflow")
    for step in steps:
        if step.version == step.workflow.version:
            graph.setdefault(step.workflow.key, set()).add(str(step.config.get("workflow")))
    return graph


def _depth(graph: dict[str, set[str]], node: str, trail: tuple[str, ...], limit: int) -> int | None:
    """Levels of child runs below ``node`` (0: it starts none); None on a cycle."""
    if node in trail:
        return None
    if len(trail) > limit + 1:
        return len(trail)
    deepest = 0
    for target in graph.get(node, ()):
        below = _depth(graph, target, (*trail, node), limit)
        if below is None:
            return None
        deepest = max(deepest, below + 1)
    return deepest


def _height(graph: dict[str, set[str]], node: str, limit: int) -> int:
    """Levels of workflows above ``node`` that start it, through each other."""
    callers = [k for k, targets in graph.items() if node in targets and k != node]
    seen: set[str] = set()
    height = 0
    while callers and height <= limit:
        height += 1
        seen.update(callers)
        callers = [k for k, targets in graph.items() if targets & set(callers) and k not in seen]
    return height


def save_rows(workflow: Workflow, version: int, rows: list[dict[str, Any]]) -> None:
    """Save ``rows`` as ``version``'s steps, nested ones under their parents, numbered
    depth first."""
    if not any(row["children"] for row in rows) and not any("block" in row for row in rows):
        WorkflowStep.objects.bulk_create(
            WorkflowStep(workflow=workflow, version=version, position=i, **_fields(row))
            for i, row in enumerate(rows)
        )
        return
    position = 0

    def save(row: dict[str, Any], parent: WorkflowStep | None, block: str) -> None:
        nonlocal position
        step = WorkflowStep.objects.create(
            workflow=workflow,
            version=version,
            position=position,
            parent=parent,
            block=block,
            **_fields(row),
        )
        position += 1
        for child_block, children in row["children"].items():
            for child in children:
                save(child, step, child_block)

    for row in rows:
        save(row, None, row.get("block", ""))


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("children", "block")}


def step_dict(step: WorkflowStep) -> dict[str, Any]:
    """A saved step as ``create_workflow`` takes it (nested steps are in its config)."""
    return {
        "name": step.name,
        "type": step.type,
        "config": step.config,
        "retry": {
            "max_attempts": step.max_attempts,
            "backoff_seconds": step.backoff_seconds,
            "max_backoff_seconds": step.max_backoff_seconds,
            "timeout_seconds": step.timeout_seconds,
        },
    }


def on_failure_steps(workflow: Workflow, version: int | None = None) -> list[dict[str, Any]]:
    """A version's ``on_failure`` steps as ``create_workflow`` takes them."""
    version = workflow.version if version is None else version
    rows = workflow.all_steps_of(version).filter(parent__isnull=True, block=ON_FAILURE)
    return [step_dict(step) for step in rows]


class StepTree:
    """One workflow version's steps as the runner walks them."""

    def __init__(self, rows: Sequence[WorkflowStep]) -> None:
        rows = sorted(rows, key=lambda step: step.position)
        self.rows = rows
        self.main = [s for s in rows if s.parent_id is None and s.block == ""]  # type: ignore[attr-defined]
        self.on_failure = [s for s in rows if s.parent_id is None and s.block == ON_FAILURE]  # type: ignore[attr-defined]
        self._children: dict[tuple[int, str], list[WorkflowStep]] = {}
        for step in rows:
            if step.parent_id is not None:  # type: ignore[attr-defined]
                key = (step.parent_id, step.block)  # type: ignore[attr-defined]
                self._children.setdefault(key, []).append(step)

    @classmethod
    def of(cls, workflow: Workflow, version: int) -> StepTree:
        return cls(list(workflow.all_steps_of(version)))

    def children(self, step: WorkflowStep, block: str) -> list[WorkflowStep]:
        return self._children.get((step.pk, block), [])

"""A run as a tree: what the admin's run page and ``GET /api/runs/{id}/`` show.

One node per step that ran (an untaken branch or a step not reached has none), with its
latest attempt's status, output and error, and:

* ``took`` and ``steps`` (the nodes of the side it took) for a ``branch``;
* ``iterations``, ``[{"index": i, "steps": [...]}]``, for a ``for_each``;
* ``wait`` (kind, status, deadline, connector, event type and match) for a parked step;
* ``child`` (id, workflow key, status) for a ``workflow`` step.
"""

from __future__ import annotations

from typing import Any

from automate.flow.definition import StepTree
from automate.flow.models import RunWait
from automate.models import StepRun, WorkflowRun, WorkflowStep

__all__ = ["run_tree"]


def run_tree(run: WorkflowRun) -> list[dict[str, Any]]:
    """The nodes of ``run``'s top-level and ``on_failure`` steps, in order."""
    tree = StepTree.of(run.workflow, run.workflow_version)
    records: dict[tuple[int, str], list[StepRun]] = {}
    for record in run.step_runs.order_by("id"):
        records.setdefault((record.step_id, record.path), []).append(record)  # type: ignore[attr-defined]
    waits = {w.step_run_id: w for w in RunWait.objects.filter(run=run).order_by("id")}  # type: ignore[attr-defined]
    children = {
        child.event.get("id"): child
        for child in WorkflowRun.objects.filter(parent_run=run).select_related("workflow")
    }
    builder = _Builder(tree, records, waits, children)
    return builder.nodes(tree.main, "") + builder.nodes(tree.on_failure, "")


class _Builder:
    def __init__(
        self,
        tree: StepTree,
        records: dict[tuple[int, str], list[StepRun]],
        waits: dict[int, RunWait],
        children: dict[Any, WorkflowRun],
    ) -> None:
        self.tree, self.records, self.waits, self.children = tree, records, waits, children

    def nodes(self, steps: list[WorkflowStep], path: str) -> list[dict[str, Any]]:
        out = []
        for step in steps:
            attempts = self.records.get((step.pk, path))
            if attempts:
                out.append(self.node(step, attempts, path))
        return out

    def node(self, step: WorkflowStep, attempts: list[StepRun], path: str) -> dict[str, Any]:
        last = attempts[-1]
        node: dict[str, Any] = {
            "step": step.name,
            "type": step.type,
            "path": path,
            "status": last.status,
            "attempts": len(attempts),
            "output": last.output,
            "error": last.error,
        }
        if step.type == "branch":
            took = str((last.output or {}).get("took"))
            node["took"] = took
            node["steps"] = self.nodes(self.tree.children(step, took), path)
        elif step.type == "for_each":
            node["iterations"] = self.iterations(step, last, path)
        wait = self.waits.get(last.pk)
        if wait is not None:
            node["wait"] = {
                "kind": wait.kind,
                "status": wait.status,
                "due_at": wait.due_at.isoformat() if wait.due_at else None,
                "connector": wait.connector_key or None,
                "event": wait.event_type or None,
                "match": wait.match or None,
            }
        if step.type == "workflow":
            key = (last.input or {}).get("child_key")
            child = self.children.get(key)
            if child is not None:
                node["child"] = {
                    "id": child.pk,
                    "workflow": child.workflow.key,
                    "status": child.status,
                }
        return node

    def iterations(self, step: WorkflowStep, last: StepRun, path: str) -> list[dict[str, Any]]:
        count = int((last.input or {}).get("count") or 0)
        children = self.tree.children(step, "steps")
        found = []
        for index in range(count):
            inner = f"{path}.{index}" if path else str(index)
            steps = self.nodes(children, inner)
            if not steps:
                break  # not reached yet
            found.append({"index": index, "steps": steps})
        return found

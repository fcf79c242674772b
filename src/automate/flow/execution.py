"""What the control-flow handlers use of a pass over a run.

:class:`automate.runner.RunExecution` is the one implementation; the handlers of
:mod:`automate.flow.blocks` and :mod:`automate.flow.parking` see it through this
protocol, so they never import the runner that imports them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from automate.outcomes import RunOutcome

if TYPE_CHECKING:
    from automate.flow.definition import StepTree
    from automate.journal import Journal
    from automate.models import StepRun, WorkflowRun, WorkflowStep
    from automate.steps.base import StepResult
    from automate_core.providers.errors import AutomateError


class Execution(Protocol):
    run: WorkflowRun
    journal: Journal
    context: dict[str, Any]
    current_step: str

    def walk(
        self, tree: StepTree, steps: Sequence[WorkflowStep], path: str, scope: dict[str, Any]
    ) -> RunOutcome | None: ...

    def attempts(self, step: WorkflowStep, path: str) -> list[StepRun]: ...

    def new_record(
        self, step: WorkflowStep, attempts: list[StepRun], path: str, **fields: Any
    ) -> StepRun: ...

    def render(self, step: WorkflowStep, value: Any, scope: dict[str, Any], where: str) -> Any: ...

    def run_step(
        self,
        step: WorkflowStep,
        attempts: list[StepRun],
        path: str = "",
        scope: dict[str, Any] | None = None,
    ) -> tuple[RunOutcome | None, StepResult]: ...

    def complete(
        self, step: WorkflowStep, record: StepRun, output: Any, scope: dict[str, Any]
    ) -> None: ...

    def fail_now(
        self, step: WorkflowStep, record: StepRun | None, error: AutomateError
    ) -> RunOutcome: ...

    def dead(self, error: AutomateError) -> RunOutcome: ...

    def cancel(self) -> RunOutcome: ...

    def park(self) -> RunOutcome: ...

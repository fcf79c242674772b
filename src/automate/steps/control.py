"""The control-flow step types: ``branch``, ``for_each``, ``delay``, ``wait_for_event``
and ``workflow``.

Their config models and create-time checks live here, like every step type's; the runner
executes them itself (:mod:`automate.flow.blocks`), since they run other steps or park
the run rather than compute an output. Steps nested in ``then``, ``else`` and ``steps``
are validated by :class:`~automate.services.WorkflowService` like top-level ones.
See docs/control-flow.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from automate.conf import settings as app_settings
from automate.steps.base import StepContext, StepExecutor, StrictConfig
from automate.templating import CONTEXT_NAMES, is_template
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument

__all__ = [
    "BranchStep",
    "ChildWorkflowStep",
    "ControlStep",
    "DelayStep",
    "ForEachStep",
    "WaitForEventStep",
]

#: Names a for_each's ``as`` may not take: they would hide what templates read.
RESERVED_NAMES = CONTEXT_NAMES | {"loop", "failure"}


class ControlStep(StepExecutor[Any]):
    """A step type the runner executes itself; ``blocks`` name the config keys that hold
    nested steps."""

    control: ClassVar[bool] = True
    idempotent = True
    blocks: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def inner_names(cls, config: Any) -> frozenset[str]:
        """Names the nested steps' templates may read besides the run's context."""
        return frozenset()

    def execute(self, config: Any, ctx: StepContext) -> Any:
        raise AutomateError(
            ErrorCodes.CONFIGURATION,
            f"step type {self.key!r} is executed by the runner, not by execute()",
            retryable=False,
        )


def _template_or(value: Any, kinds: tuple[type, ...], where: str, what: str) -> None:
    ok = isinstance(value, kinds) and not (bool not in kinds and isinstance(value, bool))
    if not (ok or is_template(value)):
        raise invalid_argument(where, f"{where} must be {what} or a template giving one")


# -- branch ------------------------------------------------------------------------------


class BranchConfig(StrictConfig):
    if_: Any = Field(alias="if")
    then: list[Any] = Field(default_factory=list)
    else_: list[Any] = Field(default_factory=list, alias="else")


class BranchStep(ControlStep):
    """``{"if": "{{ ... }}", "then": [steps], "else": [steps]}``; output ``{"took": ...}``."""

    key = "branch"
    display_name = "Branch"
    config_model = BranchConfig
    blocks = ("then", "else")

    @classmethod
    def check(cls, config: BranchConfig, *, where: str = "config") -> None:
        _template_or(config.if_, (bool,), f"{where}.if", "true/false")
        if not config.then and not config.else_:
            raise invalid_argument(f"{where}.then", f"{where}: give then or else steps")


# -- for_each ----------------------------------------------------------------------------


class ForEachConfig(StrictConfig):
    items: Any
    as_: str = Field("item", alias="as")
    steps: list[Any] = Field(min_length=1)
    max_items: int = Field(1000, ge=1)


class ForEachStep(ControlStep):
    """``{"items": "{{ ... }}", "as": "item", "steps": [...], "max_items": 1000}``; output
    ``{"count": N, "results": [{step: output, ...}, ...]}``."""

    key = "for_each"
    display_name = "For each"
    config_model = ForEachConfig
    blocks = ("steps",)

    @classmethod
    def check(cls, config: ForEachConfig, *, where: str = "config") -> None:
        _template_or(config.items, (list,), f"{where}.items", "a list")
        if not config.as_.isidentifier() or config.as_ in RESERVED_NAMES:
            raise invalid_argument(
                f"{where}.as",
                f"{where}.as must be a name such as 'item', not {config.as_!r} "
                f"(reserved: {', '.join(sorted(RESERVED_NAMES))})",
            )
        limit = app_settings.FLOW_MAX_ITEMS
        if config.max_items > limit:
            raise invalid_argument(
                f"{where}.max_items",
                f'{where}.max_items is over AUTOMATE["FLOW_MAX_ITEMS"] ({limit})',
            )

    @classmethod
    def inner_names(cls, config: ForEachConfig) -> frozenset[str]:
        return frozenset({config.as_, "loop"})


# -- delay -------------------------------------------------------------------------------


class DelayConfig(StrictConfig):
    seconds: float | str | None = None
    until: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DelayConfig:
        if (self.seconds is None) == (self.until is None):
            raise ValueError("give either seconds or until")
        return self


class DelayStep(ControlStep):
    """``{"seconds": N}`` or ``{"until": "<ISO 8601>"}``: park the run until then."""

    key = "delay"
    display_name = "Delay"
    config_model = DelayConfig

    @classmethod
    def check(cls, config: DelayConfig, *, where: str = "config") -> None:
        if config.seconds is not None:
            _template_or(config.seconds, (int, float), f"{where}.seconds", "a number")
            if not isinstance(config.seconds, str) and config.seconds < 0:
                raise invalid_argument(f"{where}.seconds", f"{where}.seconds must be 0 or more")
        elif config.until is not None and not is_template(config.until):
            try:
                datetime.fromisoformat(config.until)
            except ValueError:
                raise invalid_argument(
                    f"{where}.until", f"{where}.until must be an ISO 8601 date and time"
                ) from None


# -- wait_for_event ------------------------------------------------------------------------


class WaitForEventConfig(StrictConfig):
    connector: str = Field(min_length=1)
    event: str = Field(min_length=1)
    match: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: float | None = Field(None, gt=0)
    on_timeout: Literal["continue", "fail"] = "continue"


class WaitForEventStep(ControlStep):
    """Park the run until an event of ``connector`` and ``event`` type whose payload has
    each ``match`` path equal to its rendered value arrives."""

    key = "wait_for_event"
    display_name = "Wait for event"
    config_model = WaitForEventConfig

    @classmethod
    def check(cls, config: WaitForEventConfig, *, where: str = "config") -> None:
        for name in ("connector", "event"):
            if is_template(getattr(config, name)):
                raise invalid_argument(
                    f"{where}.{name}", f"{where}.{name} must be written out, not a template"
                )
        # Not at the top: `import automate` loads this module before the app registry is
        # ready, and automate.models needs it.
        from automate.models import API_SOURCE_PREFIX

        if config.connector.startswith(API_SOURCE_PREFIX):
            # Where API events are stored, not a connection: they resume the waits on
            # their connection, so a wait on "api:<key>" would never be resumed.
            raise invalid_argument(
                f"{where}.connector",
                f"{where}.connector must be a connection key: an event posted to the API "
                f"resumes the waits on {config.connector.removeprefix(API_SOURCE_PREFIX)!r}",
            )
        for path in config.match:
            if not path or is_template(path) or any(not part for part in path.split(".")):
                raise invalid_argument(
                    f"{where}.match",
                    f"{where}.match keys are payload paths such as 'order.id', not {path!r}",
                )


# -- workflow (child run) ------------------------------------------------------------------


class ChildWorkflowConfig(StrictConfig):
    workflow: str = Field(min_length=1)
    payload: dict[str, Any] = Field(default_factory=dict)
    wait: bool = True


class ChildWorkflowStep(ControlStep):
    """Start a child run of another workflow; with ``wait`` park until it ends."""

    key = "workflow"
    display_name = "Child workflow"
    config_model = ChildWorkflowConfig

    @classmethod
    def check(cls, config: ChildWorkflowConfig, *, where: str = "config") -> None:
        if is_template(config.workflow):
            raise invalid_argument(
                f"{where}.workflow", f"{where}.workflow must be a workflow key, not a template"
            )

"""What a step executor is, what it receives and what it returns."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import (
    AutomateError,
    ErrorCodes,
    invalid_argument,
    validation_problems,
)

T = TypeVar("T")
#: The config model of a step type; subclasses name theirs: ``StepExecutor[MyConfig]``.
ConfigT = TypeVar("ConfigT", bound=BaseModel)


@dataclass(frozen=True)
class StepContext:
    """Everything a step may know about the run it belongs to."""

    step_name: str
    attempt: int
    trace_id: str
    timeout: float
    provider_ctx: ProviderContext
    run_id: int | None = None
    template_context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """A step's output; ``stop=True`` ends the run successfully after this step (a filter)."""

    output: Any = None
    stop: bool = False


class StepExecutor(Generic[ConfigT]):
    """Base class of every step type; subclass it, set ``key`` and ``config_model``.

    Generic over the config model, so the methods of ``class MyStep(StepExecutor[MyConfig])``
    take a ``MyConfig``. ``config_model`` validates the config as the workflow's author wrote
    it (templates are still strings there) when the workflow is created, and again once
    rendered before the step runs. :meth:`check` adds checks a schema cannot express (an
    action that exists).
    """

    key: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    # Not a ClassVar: a ClassVar may not hold a type variable; subclasses still set it on
    # the class.
    config_model: type[ConfigT]
    #: True when running the step twice has the same effect as once.
    idempotent: ClassVar[bool] = False

    @classmethod
    def parse_config(cls, config: Any, *, where: str = "config") -> ConfigT:
        """Validate ``config`` with ``config_model``; INVALID_ARGUMENT names the field."""
        if not isinstance(config, Mapping):
            raise invalid_argument(where, f"{where} must be an object, not {type(config).__name__}")
        try:
            return cls.config_model.model_validate(dict(config))
        except ValidationError as exc:
            path, message = validation_problems(exc)[0]
            field_name = f"{where}.{path}" if path else where
            raise invalid_argument(
                field_name, f"{field_name}: {message}", errors=exc.error_count()
            ) from None

    @classmethod
    def check(cls, config: ConfigT, *, where: str = "config") -> None:
        """Checks beyond the schema at create time; raise INVALID_ARGUMENT naming the field."""

    @classmethod
    def is_idempotent(cls, config: ConfigT) -> bool:
        """Whether this configured step may run again after a crash left its outcome unknown."""
        return cls.idempotent

    def execute(self, config: ConfigT, ctx: StepContext) -> StepResult | Any:
        """Run the step with its rendered, validated config; return its output."""
        raise AutomateError(
            ErrorCodes.CONFIGURATION, f"step type {self.key!r} does not define execute()"
        )


def check_executor_shape(cls: type[StepExecutor[Any]]) -> None:
    """Registry validator: a step type must say how its config is validated."""
    model = getattr(cls, "config_model", None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{cls.__qualname__}.config_model must be a pydantic BaseModel subclass")
    if cls.execute is StepExecutor.execute:
        raise TypeError(f"{cls.__qualname__} must implement execute(config, ctx)")


def run_with_timeout(fn: Callable[[], T], timeout: float, *, what: str) -> T:
    """Run ``fn`` in a watchdog thread; raise TIMEOUT if it has not returned in time.

    For code that does not take a timeout itself (a connector's own client). The thread
    cannot be killed, so it finishes in the background; the engine treats a timed-out
    non-idempotent call as an unknown outcome and never repeats it blindly.
    """
    from django.db import connections

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connections.close_all()  # this thread's own connections only

    thread = threading.Thread(target=target, name=f"automate-step:{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AutomateError(
            ErrorCodes.TIMEOUT, f"{what} did not finish within {timeout:g} s", retryable=True
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class StrictConfig(BaseModel):
    """Base of step config models: unknown keys are mistakes, not extensions."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

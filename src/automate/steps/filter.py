"""``filter``: stop the run, successfully, unless a condition holds.

    {"name": "Only big orders", "type": "filter",
     "config": {"condition": "{{ event.payload.amount > 100 }}"}}

The condition must render to true or false: a string such as ``"false"`` is an error, not
a truthy value, so a typo never lets every event through.
"""

from __future__ import annotations

from typing import Any

from automate.steps.base import StepContext, StepExecutor, StepResult, StrictConfig
from automate.templating import is_template
from automate_core.providers.errors import invalid_argument


class FilterConfig(StrictConfig):
    condition: Any


class FilterStep(StepExecutor[FilterConfig]):
    key = "filter"
    display_name = "Filter"
    config_model = FilterConfig
    idempotent = True

    @classmethod
    def check(cls, config: FilterConfig, *, where: str = "config") -> None:
        if not (isinstance(config.condition, bool) or is_template(config.condition)):
            raise invalid_argument(
                f"{where}.condition",
                f"{where}.condition must be a template such as "
                "'{{ event.payload.amount > 100 }}' (or true/false)",
            )

    def execute(self, config: FilterConfig, ctx: StepContext) -> StepResult:
        value = config.condition
        if not isinstance(value, bool):
            raise invalid_argument(
                "config.condition",
                f"config.condition rendered to {type(value).__name__} {str(value)[:50]!r}; "
                "it must be true or false",
            )
        return StepResult(output={"passed": value}, stop=not value)

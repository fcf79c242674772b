"""Step executors: one module per step type, kept in a registry.

Built in: ``connector_action``, ``http_request`` and ``filter``. Other apps add their own
types (``llm``, ``rag_query``, ``mcp_tool``...) from their ``AppConfig.ready()``::

    from automate.steps import StepExecutor, register_step

    class LLMStep(StepExecutor[LLMStepConfig]):
        key = "llm"
        config_model = LLMStepConfig      # a pydantic model of the config as written
        idempotent = True                 # safe to repeat after a crash

        def execute(self, config: LLMStepConfig, ctx: StepContext) -> Any:
            ...

    register_step(LLMStep)

A workflow naming a type nobody registered is rejected by ``WorkflowService`` when it is
created, never when it runs.
"""

from __future__ import annotations

from automate.steps.base import StepContext, StepExecutor, StepResult, run_with_timeout
from automate.steps.registry import get_step, register_step, step_types

__all__ = [
    "StepContext",
    "StepExecutor",
    "StepResult",
    "get_step",
    "register_step",
    "run_with_timeout",
    "step_types",
]

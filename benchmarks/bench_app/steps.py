"""A step that does nothing: the pipeline benchmark measures the machinery, not work."""

from __future__ import annotations

from automate.steps.base import StepContext, StepExecutor, StepResult, StrictConfig


class NoopConfig(StrictConfig):
    # The pipeline benchmark runs it both ways: a non-idempotent step is recorded as
    # started (and committed) before its call, an idempotent one only with its result.
    idempotent: bool = True


class NoopStep(StepExecutor):
    key = "bench_noop"
    display_name = "No-op (benchmarks)"
    config_model = NoopConfig
    idempotent = True

    @classmethod
    def is_idempotent(cls, config: NoopConfig) -> bool:  # type: ignore[override]
        return config.idempotent

    def execute(self, config: NoopConfig, ctx: StepContext) -> StepResult:  # type: ignore[override]
        return StepResult(output={"ok": True})

"""A step that does nothing: the pipeline benchmark measures the machinery, not work."""

from __future__ import annotations

from automate.steps.base import StepContext, StepExecutor, StepResult, StrictConfig


class NoopConfig(StrictConfig):
    pass


class NoopStep(StepExecutor):
    key = "bench_noop"
    display_name = "No-op (benchmarks)"
    config_model = NoopConfig
    idempotent = True

    def execute(self, config: NoopConfig, ctx: StepContext) -> StepResult:  # type: ignore[override]
        return StepResult(output={"ok": True})

from __future__ import annotations

from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "benchmarks.bench_app"
    label = "bench_app"

    def ready(self) -> None:
        from automate.steps import register_step
        from benchmarks.bench_app.steps import NoopStep

        register_step(NoopStep)

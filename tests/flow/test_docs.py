"""docs/control-flow.md runs as written: its settings block configures the connections,
and every other Python block creates its workflows (validated like any other)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from automate.models import Workflow

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parents[2] / "docs" / "control-flow.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def test_docs__every_example_of_control_flow_md_runs(settings):
    setup, *examples = BLOCK.findall(DOC.read_text())
    namespace: dict = {}
    exec(setup, namespace)
    settings.AUTOMATE = {**settings.AUTOMATE, **namespace["AUTOMATE"]}
    for example in examples:
        exec(example, namespace)
    assert Workflow.objects.count() == 7
    assert {s.type for wf in Workflow.objects.all() for s in wf.all_steps_of(1)} >= {
        "branch", "for_each", "delay", "wait_for_event", "workflow",
    }  # fmt: skip

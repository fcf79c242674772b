"""WorkflowRun.duration and StepRun.duration: from start to finish, None until both are known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from automate.models import StepRun, WorkflowRun

START = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("model", [WorkflowRun, StepRun])
def test_duration__is_finish_minus_start(model):
    run = model(started_at=START, finished_at=START + timedelta(seconds=90))

    assert run.duration == timedelta(seconds=90)


@pytest.mark.parametrize("model", [WorkflowRun, StepRun])
@pytest.mark.parametrize(("started", "finished"), [(None, None), (START, None), (None, START)])
def test_duration__is_none_until_both_times_are_known(model, started, finished):
    assert model(started_at=started, finished_at=finished).duration is None

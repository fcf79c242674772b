"""``manage.py automate_worker`` as a real process: SIGTERM finishes the current step."""

from __future__ import annotations

import pytest

from automate.models import ConnectionProfile, StepRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from tests.engine_support import CountingServer, start, stop, wait_for, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_worker_process__sigterm_finishes_the_step_then_releases_the_event(postgres):
    with CountingServer(delay=1.0) as target:
        ConnectionProfile.objects.create(
            key="counter", connector_key="recorder", config={"url": target.url}
        )
        wf = WorkflowService().create_workflow(
            name="Slow then more",
            steps=[
                {
                    "name": "Record",
                    "type": "connector_action",
                    "config": {"profile": "counter", "action": "record", "input": {"event": "e"}},
                },
                {"name": "After", "type": "filter", "config": {"condition": True}},
            ],
        )
        WorkflowService().run_workflow(wf, {})
        worker = start(["-m", "django", "automate_worker", "--threads", "1"], worker_env())
        try:
            wait_for(lambda: target.counts["e"] == 1, 30, "the step to reach its target")
        finally:
            errors = stop(worker)  # SIGTERM while the target takes its second
    assert worker.returncode == 0, errors[-2000:]
    assert "finishing the current step" in errors
    assert list(StepRun.objects.values_list("step__name", "status")) == [("Record", "succeeded")]
    item = OutboxItem.objects.get()
    assert (item.status, item.attempts) == ("pending", 0)
    assert target.counts["e"] == 1

"""The run tree in the API (``GET /api/runs/{id}/``) and on the admin's run page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from automate.flow.tree import run_tree
from automate.services import WorkflowService
from tests.automate.test_api import basic
from tests.flow.helpers import action, start

pytestmark = pytest.mark.django_db

STEPS = [
    {
        "name": "Big?",
        "type": "branch",
        "config": {
            "if": "{{ event.payload.n > 1 }}",
            "then": [
                {
                    "name": "Lines",
                    "type": "for_each",
                    "config": {
                        "items": [1, 2],
                        "steps": [action("Line", input_data={"i": "{{ item }}"})],
                    },
                }
            ],
            "else": [action("Small")],
        },
    },
    {"name": "Child", "type": "workflow", "config": {"workflow": "sub"}},
    {
        "name": "Reply",
        "type": "wait_for_event",
        "config": {"connector": "shop", "event": "reply", "match": {"id": "{{ event.payload.n }}"}},
    },
]


@pytest.fixture
def parked_run(drain):
    WorkflowService().create_workflow(name="sub", key="sub", steps=[action("Sub")])
    run = start(STEPS, {"n": 5})
    drain()
    run.refresh_from_db()
    assert run.status == "waiting"
    return run


def test_tree__shows_branch_taken_iterations_children_and_waits(parked_run):
    tree = run_tree(parked_run)
    assert [node["step"] for node in tree] == ["Big?", "Child", "Reply"]
    branch, child, wait = tree
    assert branch["took"] == "then"
    [lines] = branch["steps"]
    assert lines["output"]["count"] == 2
    assert [(it["index"], [s["output"] for s in it["steps"]]) for it in lines["iterations"]] == [
        (0, [{"echo": {"i": 1}}]),
        (1, [{"echo": {"i": 2}}]),
    ]
    assert lines["iterations"][1]["steps"][0]["path"] == "1"
    assert child["child"]["workflow"] == "sub" and child["child"]["status"] == "completed"
    assert child["wait"]["kind"] == "child" and child["wait"]["status"] == "child_ended"
    assert wait["status"] == "waiting"
    assert wait["wait"] == {
        "kind": "event",
        "status": "waiting",
        "due_at": None,
        "connector": "shop",
        "event": "reply",
        "match": {"id": 5},
    }


def test_tree__in_the_api_and_the_admin(parked_run, admin_client):
    User.objects.create_superuser("root", "root@example.com", "pw")
    body = Client(**basic("root")).get(f"/api/runs/{parked_run.pk}/").json()
    assert body["status"] == "waiting"
    assert body["tree"] == run_tree(parked_run)
    assert {s["path"] for s in body["steps"]} == {"", "0", "1"}
    child_id = body["tree"][1]["child"]["id"]
    assert Client(**basic("root")).get(f"/api/runs/{child_id}/").json()["parent_run"] == (
        parked_run.pk
    )
    page = admin_client.get(f"/admin/automate/workflowrun/{parked_run.pk}/change/")
    html = page.content.decode()
    assert "automate-tree" in html
    assert "took then" in html
    assert "iteration 1" in html
    assert f"/admin/automate/workflowrun/{child_id}/change/" in html
    assert "waiting for shop reply" in html

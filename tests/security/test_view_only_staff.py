"""A staff member given only the view permissions (an auditor, a support engineer).

Finding 6: admin actions declared no permissions, so view-only staff could replay dead
runs, enable and disable workflows, "Sync tools" of MCP servers, and run knowledge-base
test queries (which spend the embedding provider's quota). Each action now names the
permission it needs; Django hides it from, and refuses it to, everyone else.
"""

from __future__ import annotations

import socket

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from automate.models import MCPServer, RunStatus, Workflow, WorkflowRun
from automate.services import WorkflowService
from rag.models import KnowledgeBase

pytestmark = pytest.mark.django_db

STEPS = [{"name": "Pass", "type": "filter", "config": {"condition": True}}]


def _staff(*codenames: str, username: str = "auditor") -> Client:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def _actions(client: Client, changelist: str) -> set[str]:
    response = client.get(reverse(changelist))
    assert response.status_code == 200
    form = response.context.get("action_form")
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


@pytest.fixture
def dead_run() -> WorkflowRun:
    workflow = WorkflowService().create_workflow(name="Billing", steps=STEPS)
    run = WorkflowService().run_workflow(workflow, {"payload": {}})
    WorkflowRun.objects.filter(pk=run.pk).update(status=RunStatus.DEAD)
    return run


def test_view_only_staff__cannot_replay_dead_runs(dead_run):
    client = _staff("view_workflowrun")
    assert "replay_runs" not in _actions(client, "admin:automate_workflowrun_changelist")
    client.post(
        reverse("admin:automate_workflowrun_changelist"),
        {"action": "replay_runs", "_selected_action": [dead_run.pk]},
    )
    dead_run.refresh_from_db()
    assert (dead_run.status, dead_run.replay_count) == (RunStatus.DEAD, 0)


def test_view_only_staff__staff_who_may_start_runs_can_replay(dead_run):
    client = _staff("view_workflowrun", "add_workflowrun", username="operator")
    assert "replay_runs" in _actions(client, "admin:automate_workflowrun_changelist")
    client.post(
        reverse("admin:automate_workflowrun_changelist"),
        {"action": "replay_runs", "_selected_action": [dead_run.pk]},
    )
    dead_run.refresh_from_db()
    assert dead_run.replay_count == 1


def test_view_only_staff__cannot_disable_or_enable_workflows():
    workflow = WorkflowService().create_workflow(name="Billing", steps=STEPS)
    client = _staff("view_workflow")
    actions = _actions(client, "admin:automate_workflow_changelist")
    assert not actions & {"disable_workflows", "enable_workflows"}
    client.post(
        reverse("admin:automate_workflow_changelist"),
        {"action": "disable_workflows", "_selected_action": [workflow.pk]},
    )
    assert Workflow.objects.get(pk=workflow.pk).enabled


def test_view_only_staff__editors_can_disable_workflows():
    workflow = WorkflowService().create_workflow(name="Billing", steps=STEPS)
    client = _staff("view_workflow", "change_workflow", username="editor")
    client.post(
        reverse("admin:automate_workflow_changelist"),
        {"action": "disable_workflows", "_selected_action": [workflow.pk]},
    )
    assert not Workflow.objects.get(pk=workflow.pk).enabled


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_view_only_staff__cannot_sync_mcp_tools():
    server = MCPServer.objects.create(
        name="Tools", url=f"http://127.0.0.1:{_unused_port()}/mcp", api_key="k"
    )
    client = _staff("view_mcpserver")
    assert "sync_tools_action" not in _actions(client, "admin:automate_mcpserver_changelist")
    client.post(
        reverse("admin:automate_mcpserver_changelist"),
        {"action": "sync_tools_action", "_selected_action": [server.pk]},
    )
    # No sync was attempted: a sync of this (unreachable) server would record its failure.
    server.refresh_from_db()
    assert (server.last_error, server.last_synced_at) == ("", None)
    sync = client.post(reverse("admin:automate_mcpserver_sync", args=[server.pk]))
    assert sync.status_code == 403


def test_view_only_staff__cannot_run_knowledge_base_test_queries():
    kb = KnowledgeBase(
        name="Help", slug="help", embedding_provider="test_hashing", retrieval_provider="local"
    )
    kb.full_clean()
    kb.save()
    client = _staff("view_knowledgebase")
    url = reverse("admin:rag_knowledgebase_test_query", args=[kb.pk])
    response = client.post(url, {"query": "refund", "top_k": 2, "filters": ""})
    assert response.status_code == 403
    assert client.get(url).status_code == 403
    changelist = client.get(reverse("admin:rag_knowledgebase_changelist"))
    assert b"test-query" not in changelist.content  # no link to a page they cannot use
    editor = _staff("view_knowledgebase", "change_knowledgebase", username="kb-editor")
    assert editor.post(url, {"query": "refund", "top_k": 2, "filters": ""}).status_code == 200


def test_view_only_staff__can_open_an_mcp_server_page_without_a_sync_button():
    server = MCPServer.objects.create(name="Tools", url="https://tools.example.com/mcp")
    client = _staff("view_mcpserver")
    page = client.get(reverse("admin:automate_mcpserver_change", args=[server.pk]))
    assert page.status_code == 200  # was a 500: the form assumed editable fields
    assert b"mcp-sync-button" not in page.content
    assert b"tools.example.com" in page.content

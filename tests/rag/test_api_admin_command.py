"""The query endpoint, the admin "test query" page and `manage.py rag_ingest`."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.urls import reverse

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag.ingest import ingest_paths
from rag.models import Document, KnowledgeBase, LocalVector

URL = "/rag/knowledge-bases/{}/query/"


@pytest.fixture
def help_kb(make_kb, corpus):
    kb = make_kb("help")
    ingest_paths(kb, [corpus])
    return kb


@pytest.fixture
def querier(db, client):
    user = User.objects.create_user("reader", password="pw")
    user.user_permissions.add(Permission.objects.get(codename="query_knowledgebase"))
    client.force_login(user)
    return client


def _post(client, slug, body):
    return client.post(URL.format(slug), data=json.dumps(body), content_type="application/json")


def test_api__returns_ranked_passages(help_kb, querier):
    response = _post(querier, "help", {"query": "return an item parcel refund", "top_k": 3})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3
    assert results[0]["source"].endswith("shipping.md")
    assert set(results[0]) == {"id", "score", "content", "metadata", "source", "title"}


def test_api__filters_apply(help_kb, querier):
    source = Document.objects.get(source__endswith="billing.md").source
    response = _post(querier, "help", {"query": "return an item", "filters": {"source": source}})
    assert response.status_code == 200
    assert {r["source"] for r in response.json()["results"]} == {source}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "query"),
        ({"query": "x", "top_k": 0}, "top_k"),
        ({"query": "x", "filters": [1]}, "filters"),
    ],
)
def test_api__invalid_bodies_are_400(help_kb, querier, body, field):
    response = _post(querier, "help", body)
    assert response.status_code == 400
    assert field in response.json()


def test_api__a_malformed_filter_is_400_with_the_error(help_kb, querier):
    response = _post(querier, "help", {"query": "x", "filters": {"a": {"$regex": "."}}})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_argument"


def test_api__unknown_knowledge_base_is_404(querier):
    assert _post(querier, "nope", {"query": "x"}).status_code == 404


def test_api__needs_the_query_permission(help_kb, client):
    assert _post(client, "help", {"query": "x"}).status_code == 403
    client.force_login(User.objects.create_user("nobody", password="pw"))
    assert _post(client, "help", {"query": "x"}).status_code == 403


def test_api__a_provider_outage_is_503_not_500(help_kb, querier, monkeypatch):
    def down(self, *args, **kwargs):
        raise AutomateError(ErrorCodes.UNAVAILABLE, "store down")

    monkeypatch.setattr("rag.providers.local.LocalRetrievalProvider.retrieve", down)
    response = _post(querier, "help", {"query": "x"})
    assert response.status_code == 503
    assert response.json()["error"]["retryable"] is True


@pytest.fixture
def admin_client(db, client):
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


def test_admin__test_query_page_shows_results(help_kb, admin_client):
    url = reverse("admin:rag_knowledgebase_test_query", args=[help_kb.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"query": "return an item parcel", "top_k": 2, "filters": ""})
    assert response.status_code == 200
    assert len(response.context["results"]) == 2
    assert b"rag-results" in response.content
    assert b"Returning an item" in response.content


def test_admin__test_query_page_reports_bad_filters(help_kb, admin_client):
    url = reverse("admin:rag_knowledgebase_test_query", args=[help_kb.pk])
    response = admin_client.post(url, {"query": "x", "top_k": 2, "filters": "{not json"})
    assert response.context["results"] is None
    assert "Not JSON" in str(response.context["form"].errors)
    response = admin_client.post(url, {"query": "x", "top_k": 2, "filters": '{"a": {"$x": 1}}'})
    assert "unknown operator" in str(response.context["form"].errors)


def test_admin__changelists_render(help_kb, admin_client):
    assert admin_client.get(reverse("admin:rag_knowledgebase_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:rag_document_changelist")).status_code == 200
    document = Document.objects.first()
    assert (
        admin_client.get(reverse("admin:rag_document_change", args=[document.pk])).status_code
        == 200
    )


def test_admin__deleting_a_knowledge_base_empties_its_store(help_kb, admin_client):
    assert LocalVector.objects.filter(namespace="help").exists()
    url = reverse("admin:rag_knowledgebase_delete", args=[help_kb.pk])
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not KnowledgeBase.objects.exists()
    assert not LocalVector.objects.filter(namespace="help").exists()


def test_rag_ingest__ingests_with_a_progress_bar_and_is_idempotent(make_kb, corpus):
    make_kb("help")
    out, err = io.StringIO(), io.StringIO()
    call_command("rag_ingest", str(corpus), kb="help", stdout=out, stderr=err)
    assert "4 files into help: 4 created, 0 updated, 0 unchanged" in out.getvalue()
    assert "[##############################] 4/4 files" in err.getvalue()
    assert "passages/s" in err.getvalue()
    out = io.StringIO()
    call_command("rag_ingest", str(corpus), kb="help", no_progress=True, stdout=out, stderr=err)
    assert "0 created, 0 updated, 4 unchanged" in out.getvalue()


def test_rag_ingest__unknown_knowledge_base(make_kb, corpus):
    make_kb("help")
    with pytest.raises(CommandError, match=r"no knowledge base 'other' \(known: help\)"):
        call_command("rag_ingest", str(corpus), kb="other")


def test_rag_ingest__bad_path_is_a_command_error(make_kb, tmp_path):
    make_kb("help")
    with pytest.raises(CommandError, match="no such file"):
        call_command("rag_ingest", str(tmp_path / "missing"), kb="help")
    assert not Document.objects.exists()

"""The built-in pinecone store against Pinecone's HTTP API, mocked at the httpx transport."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag.providers.pinecone import MAX_REQUEST_BYTES, PineconeRetrievalProvider

# A key's grant is checked against the webhook signing secrets, which profiles hold.
pytestmark = pytest.mark.django_db

HOST = "https://kb-test-abc1234.svc.aped-4627-b74a.pinecone.io"


@pytest.fixture
def store(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "SECRETS": {"pinecone-key": "pc-test-key"}}
    return PineconeRetrievalProvider(
        {"api_key": "secret://pinecone-key", "host": HOST, "namespace": "help", "batch_size": 100}
    )


@pytest.fixture
def api():
    with respx.mock(base_url=HOST, assert_all_called=False) as mock:
        yield mock


def _docs(count: int, dims: int = 8, content: str = "text") -> list[dict]:
    return [
        {"id": f"d{i}", "embedding": [0.1] * dims, "content": content, "metadata": {"n": i}}
        for i in range(count)
    ]


def test_pinecone__query_sends_the_sdk_request_and_maps_matches(store, api):
    route = api.post("/query").respond(
        json={
            "matches": [
                {"id": "a", "score": 0.92, "metadata": {"content": "Reset it.", "lang": "en"}},
                {"id": "b", "score": 0.5, "metadata": {"content": "Other."}},
            ],
            "namespace": "help",
            "usage": {"readUnits": 5},
        }
    )
    found = store.retrieve([0.1, 0.2], top_k=2, filters={"lang": "en"})
    assert found == [
        {"id": "a", "score": 0.92, "content": "Reset it.", "metadata": {"lang": "en"}},
        {"id": "b", "score": 0.5, "content": "Other.", "metadata": {}},
    ]
    request = route.calls.last.request
    assert request.headers["Api-Key"] == "pc-test-key"
    body = json.loads(request.content)
    assert body["vector"] == [0.1, 0.2]
    assert body["topK"] == 2
    assert body["namespace"] == "help"
    assert body["filter"] == {"lang": "en"}
    assert body["includeMetadata"] is True


def test_pinecone__upserts_are_batched_by_count(store, api):
    route = api.post("/vectors/upsert").mock(
        side_effect=lambda request: httpx.Response(
            200, json={"upsertedCount": len(json.loads(request.content)["vectors"])}
        )
    )
    assert store.index_documents(_docs(250)) == 250
    sizes = [len(json.loads(call.request.content)["vectors"]) for call in route.calls]
    assert sizes == [100, 100, 50]
    first = json.loads(route.calls[0].request.content)
    assert first["namespace"] == "help"
    assert first["vectors"][0] == {
        "id": "d0",
        "values": [0.1] * 8,
        "metadata": {"n": 0, "content": "text"},
    }


def test_pinecone__upserts_are_batched_under_the_request_size_cap(store, api):
    route = api.post("/vectors/upsert").mock(
        side_effect=lambda request: httpx.Response(
            200, json={"upsertedCount": len(json.loads(request.content)["vectors"])}
        )
    )
    # ~30 KB of content each: 100 of them would be ~3 MB, over the 2 MB cap.
    assert store.index_documents(_docs(100, dims=1536, content="x" * 30_000)) == 100
    assert len(route.calls) >= 2
    assert all(len(call.request.content) <= MAX_REQUEST_BYTES for call in route.calls)


def test_pinecone__oversized_metadata_is_refused_before_any_request(store, api):
    route = api.post("/vectors/upsert")
    with pytest.raises(AutomateError, match="40 KB"):
        store.index_documents(_docs(1, content="x" * 50_000))
    assert not route.called


def test_pinecone__delete_sends_ids_in_batches(store, api):
    route = api.post("/vectors/delete").respond(json={})
    assert store.delete([f"d{i}" for i in range(1500)]) == 1500
    bodies = [json.loads(call.request.content) for call in route.calls]
    assert [len(b["ids"]) for b in bodies] == [1000, 500]
    assert {b["namespace"] for b in bodies} == {"help"}


@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (401, ErrorCodes.UNAUTHENTICATED, False),
        (400, ErrorCodes.INVALID_ARGUMENT, False),
        (429, ErrorCodes.RATE_LIMITED, True),
    ],
)
def test_pinecone__http_errors_become_automate_errors(
    store, api, monkeypatch, status, code, retryable
):
    # The SDK's own retrying transport is replaced by the guarded client: one retry layer,
    # the engine's, driven by ``retryable`` (its sleep seam is patched in case it returns).
    monkeypatch.setattr("pinecone._internal.http_client._retry_sleep", lambda seconds: None)
    route = api.post("/query").respond(status, json={"error": {"code": "X", "message": "nope"}})
    with pytest.raises(AutomateError) as info:
        store.retrieve([0.1], top_k=1)
    assert route.call_count == 1
    assert info.value.code == code
    assert info.value.retryable is retryable
    assert info.value.provider == "pinecone"


def test_pinecone__a_bad_filter_is_refused_before_any_request(store, api):
    route = api.post("/query")
    with pytest.raises(AutomateError, match="unknown operator"):
        store.retrieve([0.1], top_k=1, filters={"lang": {"$like": "e%"}})
    assert not route.called


def test_pinecone__needs_api_key_and_host():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="needs api_key and host"):
        PineconeRetrievalProvider({"api_key": "secret://x"})

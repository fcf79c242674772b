"""Cohere and OpenAI embeddings through their SDKs, HTTP mocked at the httpx transport."""

from __future__ import annotations

import json

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag.embeddings.cohere import CohereEmbeddingProvider
from rag.embeddings.openai import OpenAIEmbeddingProvider

# A key's grant is checked against the webhook signing secrets, which profiles hold.
pytestmark = pytest.mark.django_db


@pytest.fixture
def transport(monkeypatch, settings):
    """Routes the SDKs' requests to a handler; ``transport.requests`` records them."""
    settings.AUTOMATE = {**settings.AUTOMATE, "SECRETS": {"api-key": "sk-test"}}

    class Recorder:
        requests: list[httpx.Request] = []
        handler = None

        def client(self, *, timeout: float = 30.0) -> httpx.Client:
            def handle(request: httpx.Request) -> httpx.Response:
                self.requests.append(request)
                return self.handler(request)

            return httpx.Client(transport=httpx.MockTransport(handle), timeout=timeout)

    recorder = Recorder()
    recorder.requests = []
    monkeypatch.setattr("rag.embeddings.cohere.outbound_client", recorder.client)
    monkeypatch.setattr("rag.embeddings.openai.outbound_client", recorder.client)
    return recorder


def _cohere_response(request: httpx.Request) -> httpx.Response:
    texts = json.loads(request.content)["texts"]
    return httpx.Response(
        200,
        json={
            "id": "e1",
            "response_type": "embeddings_by_type",
            "embeddings": {"float": [[float(len(t)), 0.5, 0.25] for t in texts]},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}},
        },
    )


def test_cohere__documents_and_queries_use_their_input_types(transport):
    transport.handler = _cohere_response
    provider = CohereEmbeddingProvider({"api_key": "secret://api-key", "dimensions": 3})
    assert provider.embed_documents(["abc", "de"]) == [[3.0, 0.5, 0.25], [2.0, 0.5, 0.25]]
    assert provider.embed_query("hello") == [5.0, 0.5, 0.25]
    first, second = (json.loads(r.content) for r in transport.requests)
    assert transport.requests[0].url.path == "/v2/embed"
    assert transport.requests[0].headers["Authorization"] == "Bearer sk-test"
    assert first["input_type"] == "search_document"
    assert second["input_type"] == "search_query"
    assert first["model"] == "embed-english-v3.0"
    assert first["embedding_types"] == ["float"]
    assert first["output_dimension"] == 3


def test_cohere__batches_of_96_texts(transport):
    transport.handler = _cohere_response
    provider = CohereEmbeddingProvider({"api_key": "secret://api-key"})
    vectors = provider.embed([f"t{i}" for i in range(200)])
    assert len(vectors) == 200
    sizes = [len(json.loads(r.content)["texts"]) for r in transport.requests]
    assert sizes == [96, 96, 8]
    assert "output_dimension" not in json.loads(transport.requests[0].content)


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, ErrorCodes.UNAUTHENTICATED),
        (429, ErrorCodes.RATE_LIMITED),
        (503, ErrorCodes.UNAVAILABLE),
    ],
)
def test_cohere__http_errors_become_automate_errors(transport, status, code):
    transport.handler = lambda request: httpx.Response(status, json={"message": "no"})
    with pytest.raises(AutomateError) as info:
        CohereEmbeddingProvider({"api_key": "secret://api-key"}).embed(["x"])
    assert info.value.code == code
    assert len(transport.requests) == 1  # no SDK retries: the engine owns them


def test_cohere__a_transport_failure_is_unavailable(transport):
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    transport.handler = refuse
    with pytest.raises(AutomateError) as info:
        CohereEmbeddingProvider({"api_key": "secret://api-key"}).embed(["x"])
    assert info.value.code == ErrorCodes.UNAVAILABLE
    assert info.value.retryable


def test_cohere__rejects_empty_texts_before_any_request(transport):
    with pytest.raises(AutomateError, match="empty strings"):
        CohereEmbeddingProvider({"api_key": "secret://api-key"}).embed(["ok", " "])
    assert transport.requests == []


def _openai_response(request: httpx.Request) -> httpx.Response:
    inputs = json.loads(request.content)["input"]
    # Out of order on purpose: the provider must sort by index.
    data = [
        {"object": "embedding", "index": i, "embedding": [float(i), 1.0]}
        for i in reversed(range(len(inputs)))
    ]
    return httpx.Response(
        200,
        json={
            "object": "list",
            "data": data,
            "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        },
    )


def test_openai__embeds_in_order_with_the_configured_model(transport):
    transport.handler = _openai_response
    provider = OpenAIEmbeddingProvider(
        {"api_key": "secret://api-key", "base_url": "https://llm.example.com/v1", "dimensions": 2}
    )
    assert provider.embed(["a", "b", "c"]) == [[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    request = transport.requests[0]
    assert str(request.url) == "https://llm.example.com/v1/embeddings"
    assert request.headers["Authorization"] == "Bearer sk-test"
    body = json.loads(request.content)
    assert body["model"] == "text-embedding-3-small"
    assert body["dimensions"] == 2
    assert provider.vector_size == 2


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, ErrorCodes.UNAUTHENTICATED),
        (429, ErrorCodes.RATE_LIMITED),
        (500, ErrorCodes.UNAVAILABLE),
    ],
)
def test_openai__http_errors_become_automate_errors(transport, status, code):
    transport.handler = lambda request: httpx.Response(status, json={"error": {"message": "no"}})
    with pytest.raises(AutomateError) as info:
        OpenAIEmbeddingProvider({"api_key": "secret://api-key"}).embed(["x"])
    assert info.value.code == code
    assert len(transport.requests) == 1


def test_openai__a_timeout_is_a_retryable_timeout(transport):
    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)

    transport.handler = slow
    with pytest.raises(AutomateError) as info:
        OpenAIEmbeddingProvider({"api_key": "secret://api-key"}).embed(["x"])
    assert info.value.code == ErrorCodes.TIMEOUT
    assert info.value.retryable


@pytest.mark.parametrize("provider", [CohereEmbeddingProvider, OpenAIEmbeddingProvider])
def test_hosted__need_an_api_key(provider):
    with pytest.raises(ImproperlyConfigured, match="needs config api_key"):
        provider({})


def test_outbound_client__ignores_proxy_settings_from_the_environment():
    from rag.http import outbound_client

    with outbound_client(timeout=5.0) as client:
        assert isinstance(client, httpx.Client)
        assert client.timeout.read == 5.0
        assert client._trust_env is False

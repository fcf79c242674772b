"""The shipped fakes and the fixtures around them: fake_llm, in_memory_retriever, run_outbox.

The fixtures come from the ``pytest11`` plugin (no import here); the end-to-end tests run
real workflows through the embedded worker, with only the model and the vector store fake.
"""

from __future__ import annotations

import pytest

from automate.models import RunStatus
from automate.services import WorkflowService
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_llm.models import LLMProfile
from automate_llm.providers.base import ChatResult
from automate_llm.registry import llm_providers
from automate_testing.fakes import FakeLLMProvider, InMemoryRetrievalProvider
from rag.registry import retrieval_providers

USER = [{"role": "user", "content": "Capital of France?"}]


# -- FakeLLMProvider ------------------------------------------------------------------------


def test_fake_llm__replies_in_order_and_records_calls():
    llm = FakeLLMProvider(replies=["Paris", "Lyon"])
    assert llm.chat(USER, model="m1") == "Paris"
    result = llm.complete([{"role": "system", "content": "be brief"}, *USER])
    assert result.content == "Lyon"
    assert result.usage.input_tokens == 5 and result.usage.output_tokens == 1
    assert result.usage.estimated is False
    assert [c.kwargs for c in llm.calls] == [{"model": "m1"}, {}]
    assert llm.calls[1].last_user_message == "Capital of France?"


def test_fake_llm__extra_call_fails_the_test_with_the_message_it_got():
    llm = FakeLLMProvider(replies=["one"])
    llm.chat(USER)
    with pytest.raises(AssertionError, match=r"no scripted reply for call 2 .*Capital of France"):
        llm.chat(USER)


def test_fake_llm__default_answers_once_the_queue_is_empty():
    llm = FakeLLMProvider(default="same")
    llm.add_replies("first")
    assert [llm.chat(USER) for _ in range(3)] == ["first", "same", "same"]


def test_fake_llm__exception_reply_is_raised_with_the_provider_key():
    llm = FakeLLMProvider(replies=[AutomateError(ErrorCodes.RATE_LIMITED, "slow down")])
    with pytest.raises(AutomateError) as raised:
        llm.chat(USER)
    assert raised.value.code == ErrorCodes.RATE_LIMITED
    assert raised.value.provider == "fake"


def test_fake_llm__callable_and_chat_result_replies():
    canned = ChatResult(content="", finish_reason="tool_calls")
    llm = FakeLLMProvider(replies=[lambda messages: messages[-1]["content"].upper(), canned])
    assert llm.chat(USER) == "CAPITAL OF FRANCE?"
    assert llm.complete(USER) is canned


def test_fake_llm__reply_of_the_wrong_type_is_an_error():
    llm = FakeLLMProvider(replies=[42])
    with pytest.raises(AutomateError, match="text or a ChatResult"):
        llm.chat(USER)


def test_fake_llm__replies_from_a_profile_config():
    llm = FakeLLMProvider({"replies": ["a"], "default": "z"})
    assert [llm.chat(USER), llm.chat(USER)] == ["a", "z"]


def test_fake_llm__installed_script_is_shared_and_registered_only_meanwhile():
    assert "fake" not in llm_providers
    script = FakeLLMProvider(replies=["shared"])
    with script.installed():
        assert llm_providers.get("fake") is FakeLLMProvider
        assert FakeLLMProvider().chat(USER) == "shared"
        # A provider given its own replies or config keeps its own script.
        assert FakeLLMProvider(replies=["own"]).chat(USER) == "own"
    assert "fake" not in llm_providers
    assert len(script.calls) == 1
    with pytest.raises(AssertionError):
        FakeLLMProvider().chat(USER)


@pytest.mark.django_db
def test_fake_llm_fixture__answers_a_workflow_llm_step(fake_llm, run_outbox):
    fake_llm.add_replies("Build is green.")
    LLMProfile.objects.create(key="assistant", provider_key="fake", config={})
    workflow = WorkflowService().create_workflow(
        name="Summarise",
        steps=[
            {
                "name": "Ask",
                "type": "llm",
                "config": {
                    "profile": "assistant",
                    "messages": [{"role": "user", "content": "Summarise: {{ event.payload.t }}"}],
                },
            }
        ],
    )
    run = WorkflowService().run_workflow(workflow, {"payload": {"t": "all tests pass"}})
    assert run_outbox() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert run.step_runs.get().output["content"] == "Build is green."
    assert [c.last_user_message for c in fake_llm.calls] == ["Summarise: all tests pass"]


# -- InMemoryRetrievalProvider --------------------------------------------------------------


def doc(doc_id, vector, **metadata):
    return {"id": doc_id, "embedding": vector, "content": f"text {doc_id}", "metadata": metadata}


def test_in_memory_retriever__nearest_first_with_filters(in_memory_retriever):
    store = in_memory_retriever
    assert (
        store.index_documents(
            [doc("a", [1.0, 0.0], lang="en"), doc("b", [0.7, 0.7], lang="fr"), doc("c", [0.0, 1.0])]
        )
        == 3
    )
    found = store.retrieve([1.0, 0.1], top_k=2)
    assert [p["id"] for p in found] == ["a", "b"]
    assert found[0]["content"] == "text a" and found[0]["metadata"] == {"lang": "en"}
    assert found[0]["score"] > found[1]["score"]
    assert [p["id"] for p in store.retrieve([1.0, 0.1], filters={"lang": "fr"})] == ["b"]


def test_in_memory_retriever__replace_delete_and_namespaces(in_memory_retriever):
    other = InMemoryRetrievalProvider({"namespace": "other"})
    in_memory_retriever.index_documents([doc("a", [1.0, 0.0], v=1)])
    in_memory_retriever.index_documents([doc("a", [1.0, 0.0], v=2)])
    assert in_memory_retriever.documents["a"]["metadata"] == {"v": 2}
    assert other.retrieve([1.0, 0.0]) == []
    assert in_memory_retriever.delete(["a", "missing"]) == 1
    assert in_memory_retriever.retrieve([1.0, 0.0]) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.index_documents([doc("b", [1.0, 0.0, 0.0])]), "2-dimension"),
        (lambda s: s.retrieve([1.0, 0.0, 0.0]), "3 dimensions"),
        (lambda s: s.retrieve([1.0, 0.0], top_k=0), "top_k"),
        (lambda s: s.retrieve([1.0, 0.0], filters={"lang": {"$regex": "x"}}), "regex"),
        (lambda s: s.index_documents([{"id": "", "embedding": [1.0, 0.0]}]), "id"),
    ],
)
def test_in_memory_retriever__bad_input_is_invalid_argument(in_memory_retriever, call, message):
    in_memory_retriever.index_documents([doc("a", [1.0, 0.0])])
    with pytest.raises(AutomateError) as raised:
        call(in_memory_retriever)
    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert message in str(raised.value)
    assert list(in_memory_retriever.documents) == ["a"]


def test_in_memory_retriever__registered_only_while_the_fixture_runs(request):
    assert "in_memory" not in retrieval_providers
    request.getfixturevalue("in_memory_retriever")
    assert retrieval_providers.get("in_memory") is InMemoryRetrievalProvider


@pytest.mark.django_db
def test_in_memory_retriever__backs_a_knowledge_base(in_memory_retriever, make_kb, corpus):
    from rag.ingest import ingest_paths
    from rag.query import search

    kb = make_kb("help", retrieval_provider="in_memory")
    ingest_paths(kb, [corpus])
    stored = InMemoryRetrievalProvider({"namespace": kb.slug}).documents
    assert stored
    found = search(kb, "refund", top_k=1)
    assert found[0]["id"] in stored
    assert in_memory_retriever.documents == {}  # the empty namespace is not the base's


# -- run_outbox -----------------------------------------------------------------------------


def test_run_outbox__asks_for_the_database_itself(run_outbox):
    # No django_db marker here: without the fixture's own request this would be refused.
    assert run_outbox() == {}


@pytest.mark.django_db
def test_run_outbox__processes_chained_items_and_reports_failures(run_outbox, fake_llm):
    fake_llm.add_replies("ok", AutomateError(ErrorCodes.INVALID_ARGUMENT, "bad prompt"))
    LLMProfile.objects.create(key="assistant", provider_key="fake", config={})
    workflow = WorkflowService().create_workflow(
        name="Ask",
        steps=[
            {
                "name": "Ask",
                "type": "llm",
                "config": {"profile": "assistant", "messages": [{"role": "user", "content": "x"}]},
            }
        ],
    )
    good = WorkflowService().run_workflow(workflow, {"payload": {}})
    bad = WorkflowService().run_workflow(workflow, {"payload": {}})
    counts = run_outbox()
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.status == RunStatus.COMPLETED
    assert bad.status != RunStatus.COMPLETED
    assert sum(counts.values()) == 2 and counts.get("done") == 1
    assert run_outbox() == {}  # nothing left due


# -- Where the fakes live ----------------------------------------------------------------


def test_fakes__live_next_to_what_they_fake_and_are_re_exported_as_the_same_objects():
    import automate_llm.testing
    import automate_testing.fakes
    import rag.testing

    assert FakeLLMProvider is automate_llm.testing.FakeLLMProvider
    assert InMemoryRetrievalProvider is rag.testing.InMemoryRetrievalProvider
    for name in ("FakeLLMCall", "FakeLLMConfig", "Reply"):
        assert getattr(automate_testing.fakes, name) is getattr(automate_llm.testing, name)
    # The fixtures hand out the app's own classes, so an isinstance check in either spelling holds.
    assert FakeLLMProvider.__module__ == "automate_llm.testing"
    assert InMemoryRetrievalProvider.__module__ == "rag.testing"

"""`llm` and `rag_query` steps run end to end in the embedded worker (issues 5 and 6)."""

from __future__ import annotations

import pytest

from automate.models import RunStatus, WorkflowRun
from automate.services import WorkflowService
from automate_core.providers.errors import AutomateError
from automate_llm.models import LLMProfile, LLMUsage
from rag.ingest import ingest_paths

pytestmark = pytest.mark.django_db


@pytest.fixture
def drain():
    from automate.worker import EmbeddedWorker

    return lambda: EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)


@pytest.fixture
def offline_profile():
    return LLMProfile.objects.create(key="assistant", provider_key="offline", config={})


def test_llm_step__runs_in_the_embedded_worker_and_records_usage(drain, offline_profile):
    workflow = WorkflowService().create_workflow(
        name="Summarise",
        steps=[
            {
                "name": "Ask",
                "type": "llm",
                "config": {
                    "profile": "assistant",
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Summarise: {{ event.payload.text }}"},
                    ],
                },
            }
        ],
    )
    run = WorkflowService().run_workflow(workflow, {"payload": {"text": "build is green"}})
    assert drain() == {"done": 1}
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    step = run.step_runs.get()
    assert step.output["content"] == "echo: Summarise: build is green"
    usage = LLMUsage.objects.get(pk=step.output["usage_id"])
    assert usage.profile == offline_profile
    assert usage.run_id == run.pk and usage.step_name == "Ask"
    assert usage.trace_id == run.trace_id
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert step.output["usage"]["input_tokens"] == usage.input_tokens


def test_llm_step__unknown_profile_is_refused_when_the_workflow_is_created(offline_profile):
    with pytest.raises(AutomateError, match=r"profile: no LLM profile 'nobody'"):
        WorkflowService().create_workflow(
            name="Bad",
            steps=[
                {
                    "name": "Ask",
                    "type": "llm",
                    "config": {"profile": "nobody", "messages": [{"role": "user", "content": "x"}]},
                }
            ],
        )


def test_rag_query_feeding_llm__runs_end_to_end(drain, offline_profile, make_kb, corpus):
    kb = make_kb("help")
    ingest_paths(kb, [corpus])
    workflow = WorkflowService().create_workflow(
        name="Answer",
        steps=[
            {
                "name": "Find",
                "type": "rag_query",
                "config": {"knowledge_base": "help", "query": "{{ event.payload.q }}", "top_k": 2},
            },
            {
                "name": "Answer",
                "type": "llm",
                "config": {
                    "profile": "assistant",
                    "messages": [
                        {
                            "role": "user",
                            "content": "Context: {{ steps.Find.output.passages[0].content }}"
                            " Question: {{ event.payload.q }}",
                        }
                    ],
                },
            },
        ],
    )
    question = "how do I reset my password"
    run = WorkflowService().run_workflow(workflow, {"payload": {"q": question}})
    assert drain() == {"done": 1}
    run = WorkflowRun.objects.get(pk=run.pk)
    assert run.status == RunStatus.COMPLETED
    find = run.step_runs.get(step__name="Find").output
    assert find["query"] == question
    assert len(find["passages"]) == 2
    # Ranking quality is the retrieval tests' business (tests/rag); here: best first, and
    # the best passage is what the next step was given.
    assert find["passages"][0]["score"] >= find["passages"][1]["score"]
    answer = run.step_runs.get(step__name="Answer").output["content"]
    assert answer.startswith("echo: Context: ") and answer.endswith(f"Question: {question}")
    assert find["passages"][0]["content"][:40] in answer


def test_rag_query_step__unknown_knowledge_base_is_refused_at_create_time():
    with pytest.raises(AutomateError, match=r"knowledge_base: no knowledge base 'nope'"):
        WorkflowService().create_workflow(
            name="Bad",
            steps=[
                {
                    "name": "Find",
                    "type": "rag_query",
                    "config": {"knowledge_base": "nope", "query": "q"},
                }
            ],
        )

"""``rag_query``: the passages of a knowledge base most relevant to a query.

    {"name": "Find docs", "type": "rag_query", "config": {
        "knowledge_base": "help-center",                 # a rag KnowledgeBase slug
        "query": "{{ event.payload.question }}",
        "top_k": 3,
        "filters": {"lang": "en"}}}

The output is ``{"query": ..., "passages": [{"id", "score", "content", "metadata",
"source", "title"}, ...]}``, best first; a later ``llm`` step reads
``steps["Find docs"].output.passages``. Needs ``rag`` in ``INSTALLED_APPS``: the step
registry imports this module only when that app is installed
(:data:`automate.steps.registry.OPTIONAL_STEPS`), after the models are loaded.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from automate.steps.base import StepContext, StepExecutor, StrictConfig
from automate.templating import is_template
from automate_core.providers.errors import invalid_argument
from rag.models import KnowledgeBase
from rag.query import search


class RagQueryConfig(StrictConfig):
    knowledge_base: str = Field(min_length=1)
    query: str = Field(min_length=1)
    top_k: int | str = 5
    filters: dict[str, Any] | str | None = None


class RagQueryStep(StepExecutor[RagQueryConfig]):
    key = "rag_query"
    display_name = "RAG query"
    config_model = RagQueryConfig
    idempotent = True  # a read

    @classmethod
    def check(cls, config: RagQueryConfig, *, where: str = "config") -> None:
        if (
            not is_template(config.knowledge_base)
            and not KnowledgeBase.objects.filter(slug=config.knowledge_base).exists()
        ):
            raise invalid_argument(
                f"{where}.knowledge_base",
                f"{where}.knowledge_base: no knowledge base {config.knowledge_base!r}",
            )

    def execute(self, config: RagQueryConfig, ctx: StepContext) -> dict[str, Any]:
        top_k = config.top_k
        if isinstance(top_k, str):
            if not top_k.strip().isdigit():
                raise invalid_argument(
                    "config.top_k", f"config.top_k rendered to {top_k!r}, not an integer"
                )
            top_k = int(top_k)
        filters = config.filters
        if isinstance(filters, str):
            raise invalid_argument("config.filters", "config.filters must render to an object")
        # Called in this thread, not under run_with_timeout: the search reads the database,
        # and the hosted embedders and stores bound their own HTTP calls with timeouts.
        passages = search(config.knowledge_base, config.query, top_k=top_k, filters=filters)
        return {"query": config.query, "passages": passages}

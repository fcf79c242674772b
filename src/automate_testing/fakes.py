"""Shipped fakes for tests: an LLM that answers from a script, a retrieval store in memory.

Each lives next to what it fakes (:mod:`automate_llm.testing`, :mod:`rag.testing`); this
module gathers them for tests, as the very same objects.

Both are real providers (they subclass the bases and register like any other), so code
under test reaches them through the same profiles, knowledge bases and steps as in
production; only the model and the vector database are replaced.

* :class:`FakeLLMProvider` (key ``"fake"``) answers with scripted replies in order and
  records every call. A workflow's ``llm`` step builds its own provider instance from a
  profile, so the ``fake_llm`` fixture *installs* one script that every instance shares.
* :class:`InMemoryRetrievalProvider` (key ``"in_memory"``) keeps passages in a dict per
  namespace, scored by cosine similarity, with the same filter syntax as the built-in
  stores. Instances share the dict (as they would share a database); the
  ``in_memory_retriever`` fixture empties it after each test.

Neither imports Django models: they are usable without a database.
"""

from __future__ import annotations

from automate_llm.testing import FakeLLMCall, FakeLLMConfig, FakeLLMProvider, Reply
from rag.testing import InMemoryRetrievalProvider

__all__ = ["FakeLLMCall", "FakeLLMConfig", "FakeLLMProvider", "InMemoryRetrievalProvider", "Reply"]

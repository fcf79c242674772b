"""The testing kit for projects that build on Django Automate.

``automate_testing.contracts`` has the contract-test base classes, ``automate_testing.fixtures``
the pytest fixtures (loaded automatically through the ``pytest11`` entry point),
``automate_testing.fakes`` the shipped fakes (``FakeLLMProvider``,
``InMemoryRetrievalProvider``) behind the ``fake_llm`` and ``in_memory_retriever`` fixtures.
"""

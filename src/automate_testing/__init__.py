"""The testing kit for projects that build on Django Automate.

``automate_testing.contracts`` has the contract-test base classes, ``automate_testing.fixtures``
the pytest fixtures (loaded automatically through the ``pytest11`` entry point),
``automate_testing.fakes`` the shipped fakes (``FakeLLMProvider``,
``InMemoryRetrievalProvider``) behind the ``fake_llm`` and ``in_memory_retriever`` fixtures.
The main names are importable from the package too::

    from automate_testing import ConnectorContractTest, MockResponse, mock_http
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from automate_core.exports import lazy_exports

if TYPE_CHECKING:
    from automate_core import __version__ as __version__
    from automate_testing.context import build_connector, make_context
    from automate_testing.contracts import (
        ConnectorContractMixin,
        ConnectorContractTest,
        ConnectorContractTestCase,
        ContractRules,
    )
    from automate_testing.fakes import FakeLLMProvider, InMemoryRetrievalProvider
    from automate_testing.http import MockHTTP, MockResponse, mock_http

__all__ = [
    "ConnectorContractMixin",
    "ConnectorContractTest",
    "ConnectorContractTestCase",
    "ContractRules",
    "FakeLLMProvider",
    "InMemoryRetrievalProvider",
    "MockHTTP",
    "MockResponse",
    "build_connector",
    "make_context",
    "mock_http",
]

# pytest imports this package at start-up (the pytest11 plugin is automate_testing.fixtures),
# before Django is configured and before coverage starts: every name loads on first access.
_LAZY = {
    "__version__": "automate_core",
    "build_connector": "automate_testing.context",
    "make_context": "automate_testing.context",
    "ConnectorContractMixin": "automate_testing.contracts",
    "ConnectorContractTest": "automate_testing.contracts",
    "ConnectorContractTestCase": "automate_testing.contracts",
    "ContractRules": "automate_testing.contracts",
    "FakeLLMProvider": "automate_testing.fakes",
    "InMemoryRetrievalProvider": "automate_testing.fakes",
    "MockHTTP": "automate_testing.http",
    "MockResponse": "automate_testing.http",
    "mock_http": "automate_testing.http",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

"""The five registries share one base: one way to load, one error when read too early."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.core.exceptions import AppRegistryNotReady, ImproperlyConfigured

from automate.steps.registry import get_step, steps
from automate_connectors.base import Connector
from automate_connectors.builtin.jira import JiraConnector as BuiltinJira
from automate_connectors.registry import connectors, get_connector
from automate_core.registry import NotRegistered, Registry, RegistryNotReady
from automate_llm.registry import get_provider, llm_providers
from rag.registry import (
    embedding_providers,
    get_embedding_provider,
    get_retrieval_provider,
    retrieval_providers,
)
from tests.testapp.connectors import JiraConnector, MyWebhookConnector

REGISTRIES = [
    pytest.param(connectors, get_connector, "jira", "automate_connectors", id="connectors"),
    pytest.param(llm_providers, get_provider, "offline", "automate_llm", id="llm"),
    pytest.param(retrieval_providers, get_retrieval_provider, "local", "rag", id="retrieval"),
    pytest.param(embedding_providers, get_embedding_provider, "local", "rag", id="embedding"),
    pytest.param(steps, get_step, "filter", "automate", id="steps"),
]


@pytest.mark.parametrize(("registry", "lookup", "key", "app"), REGISTRIES)
def test_registries__share_the_base_and_are_loaded_by_ready(registry, lookup, key, app):
    assert isinstance(registry, Registry)
    assert registry.app == app
    assert lookup(key) is registry.get(key)


@pytest.mark.parametrize(("registry", "lookup", "key", "app"), REGISTRIES)
def test_registries__a_lookup_before_ready_raises_one_instructive_error(
    monkeypatch, registry, lookup, key, app
):
    monkeypatch.setattr(apps, "ready", False)
    for read in (lambda: lookup(key), registry.all, registry.keys):
        with pytest.raises(RegistryNotReady) as info:
            read()
        message = str(info.value)
        assert f"{registry.kind}s are registered in AppConfig.ready()" in message
        assert "after django.setup()" in message
        assert f"with {app!r} in INSTALLED_APPS" in message
        # Code written against the errors each registry raised before keeps catching it.
        assert isinstance(info.value, AppRegistryNotReady)
        assert isinstance(info.value, ImproperlyConfigured)


def test_registry__load_registers_builtins_then_autodiscovers_and_is_idempotent():
    registry: Registry[type[Connector]] = Registry(
        "connector",
        base=Connector,
        builtins=["automate_connectors.builtin.jira.JiraConnector"],
        autodiscover="connectors",  # tests.testapp.connectors
    )
    registry.load()
    registry.load()
    # The project's own jira (autodiscovered) replaces the built-in one under its key.
    assert registry.get("jira") is JiraConnector
    assert registry.get("my_service") is MyWebhookConnector
    assert not registry.is_builtin("jira")
    # Only classes the module defines: Connector itself is imported there, not registered.
    assert Connector not in registry.all()


def test_registry__builtins_alone_are_marked_builtin():
    registry: Registry[type[Connector]] = Registry(
        "connector", base=Connector, builtins=["automate_connectors.builtin.jira.JiraConnector"]
    )
    registry.load()
    assert registry.all() == [BuiltinJira]
    assert registry.is_builtin("jira")
    with pytest.raises(NotRegistered, match="my_service"):
        registry.get("my_service")


def test_registry__a_bad_builtin_path_fails_loudly():
    registry: Registry[type] = Registry("widget", builtins=["tests.nowhere.Widget"])
    with pytest.raises(ImportError, match=r"tests\.nowhere"):
        registry.load()


def test_registry__without_an_app_the_error_still_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(apps, "ready", False)
    with pytest.raises(RegistryNotReady, match=r"widgets are registered .* after django\.setup"):
        Registry("widget").get("x")

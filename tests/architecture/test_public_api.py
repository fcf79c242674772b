"""The short public surface: each package's ``__all__`` resolves, to the very objects its
defining modules hold; importing a package never needs Django's apps to be loaded; the long
paths the docs show keep working; every package knows its version."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = [
    "automate_core",
    "automate_connectors",
    "automate",
    "automate_llm",
    "rag",
    "automate_testing",
]


def public_names():
    for package in PACKAGES:
        for name in importlib.import_module(package).__all__:
            yield pytest.param(package, name, id=f"{package}.{name}")


def _imported_from(package: str) -> dict[str, str]:
    """Where the package's ``__init__`` says each name comes from (its type-checking imports
    included: they name the modules of the lazy names)."""
    path = Path(importlib.import_module(package).__file__ or "")
    sources = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                sources[alias.asname or alias.name] = node.module
    return sources


@pytest.mark.parametrize(("package", "name"), list(public_names()))
def test_public_api__each_name_is_the_object_of_its_defining_module(package, name):
    module = importlib.import_module(package)
    value = getattr(module, name)
    assert name in dir(module)
    source = importlib.import_module(_imported_from(package)[name])
    assert getattr(source, name) is value
    if inspect.isclass(value) or inspect.isfunction(value):
        home = importlib.import_module(value.__module__)
        assert getattr(home, value.__qualname__) is value
    # ``from package import name`` takes the same path as getattr.
    namespace: dict[str, object] = {}
    exec(f"from {package} import {name}", namespace)
    assert namespace[name] is value


@pytest.mark.parametrize("package", PACKAGES)
def test_public_api__all_is_sorted_and_unique(package):
    names = importlib.import_module(package).__all__
    assert names == sorted(set(names))


def test_public_api__the_issue_short_imports():
    from automate import WebhookView, WorkflowService
    from automate.services import WorkflowService as LongWorkflowService
    from automate.views import WebhookView as LongWebhookView
    from automate_connectors import (
        ActionSpec,
        CapabilitySpec,
        Connector,
        TriggerSpec,
        register_connector,
    )
    from automate_connectors.base import (
        ActionSpec as LongActionSpec,
    )
    from automate_connectors.base import (
        CapabilitySpec as LongCapabilitySpec,
    )
    from automate_connectors.base import (
        Connector as LongConnector,
    )
    from automate_connectors.base import (
        TriggerSpec as LongTriggerSpec,
    )
    from automate_connectors.registry import register_connector as long_register_connector
    from automate_core import AutomateError, ErrorCodes, ProviderContext
    from automate_core.providers.base import ProviderContext as LongProviderContext
    from automate_core.providers.errors import AutomateError as LongAutomateError
    from automate_core.providers.errors import ErrorCodes as LongErrorCodes

    assert (WebhookView, WorkflowService) == (LongWebhookView, LongWorkflowService)
    assert (Connector, ActionSpec, TriggerSpec, CapabilitySpec) == (
        LongConnector,
        LongActionSpec,
        LongTriggerSpec,
        LongCapabilitySpec,
    )
    assert register_connector is long_register_connector
    assert (AutomateError, ErrorCodes, ProviderContext) == (
        LongAutomateError,
        LongErrorCodes,
        LongProviderContext,
    )


@pytest.mark.parametrize("package", PACKAGES)
def test_public_api__an_unknown_name_is_an_attribute_error(package):
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match=f"module {package!r} has no attribute 'nope'"):
        module.nope  # noqa: B018
    assert not hasattr(module, "nope")


def test_public_api__submodules_with_plain_names_still_import_through_the_package():
    # A module __getattr__ must not hide submodules: ``from package import module`` falls
    # back to importing it.
    from automate import templating
    from automate_core import redaction, secrets
    from rag import filters

    assert templating.__name__ == "automate.templating"
    assert (redaction.__name__, secrets.__name__) == (
        "automate_core.redaction",
        "automate_core.secrets",
    )
    assert filters.__name__ == "rag.filters"


BARE_IMPORT = """
import importlib, sys
package = importlib.import_module(sys.argv[1])
from django.apps import apps
assert not apps.ready and not apps.apps_ready, "the apps were loaded"
first_party = {"automate_core", "automate_connectors", "automate", "automate_llm", "rag"}
loaded = sorted(
    name for name in sys.modules
    if name.split(".")[0] in first_party and name.rsplit(".", 1)[-1] in {"models", "views"}
)
assert not loaded, f"importing {sys.argv[1]} imported {loaded}"
print(len(getattr(package, "__all__", [])))
"""


@pytest.mark.parametrize("package", [*PACKAGES, "rag.contrib.pgvector"])
@pytest.mark.parametrize(
    "settings_module", [None, "tests.settings"], ids=["no-settings", "settings"]
)
def test_public_api__importing_a_package_needs_no_loaded_apps(package, settings_module):
    """As Django does in ``setup()``: import the package before any app is ready (and, for a
    library user, before settings are even configured)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    if settings_module:
        env["DJANGO_SETTINGS_MODULE"] = settings_module
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    result = subprocess.run(
        [sys.executable, "-c", BARE_IMPORT, package],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    expected = len(getattr(importlib.import_module(package), "__all__", []))
    assert result.stdout.strip() == str(expected)


def test_public_api__a_lazy_name_before_setup_names_the_real_problem():
    """A lazy name read too early fails the way its module does, not with an AttributeError."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    result = subprocess.run(
        [sys.executable, "-c", "import automate; automate.WorkflowService"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "AppRegistryNotReady" in result.stderr


def _pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.parametrize("package", PACKAGES)
def test_version__every_package_reports_the_pyproject_version(package):
    assert importlib.import_module(package).__version__ == _pyproject_version()


def test_version__falls_back_when_the_distribution_is_not_installed(monkeypatch):
    import automate_core

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert automate_core._distribution_version() == "0+unknown"


# --- the paths the docs show ------------------------------------------------------------

FIRST_PARTY = re.compile(
    r"^(automate|automate_core|automate_connectors|automate_llm|rag|automate_testing)(\.|$)"
)


def _documented_imports():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    for page in pages:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.splitlines():
                stripped = line.strip()
                if not stripped.startswith("from ") or " import " not in stripped:
                    continue
                if stripped.endswith("(") or stripped.endswith("\\"):
                    continue  # a multi-line import: parsed below from the whole block
                try:
                    node = ast.parse(stripped).body[0]
                except SyntaxError:
                    continue
                if isinstance(node, ast.ImportFrom) and FIRST_PARTY.match(node.module or ""):
                    for alias in node.names:
                        yield pytest.param(
                            node.module,
                            alias.name,
                            id=f"{page.relative_to(ROOT)}:{node.module}.{alias.name}",
                        )


@pytest.mark.parametrize(("module", "name"), list(_documented_imports()))
def test_docs__every_documented_import_resolves(module, name):
    value = getattr(importlib.import_module(module), name, None)
    if value is None:  # ``from package import submodule``
        value = importlib.import_module(f"{module}.{name}")
    assert value is not None
    assert inspect.ismodule(value) or not name.startswith("_")


def test_docs__the_generic_step_example_runs():
    page = (ROOT / "docs" / "public-api.md").read_text()
    (block,) = [
        b for b in re.findall(r"```python\n(.*?)```", page, flags=re.S) if "class GreetStep" in b
    ]
    namespace: dict = {}
    exec(block, namespace)
    step = namespace["GreetStep"]
    from automate.steps.base import StepContext, check_executor_shape
    from automate_core import ProviderContext

    check_executor_shape(step)  # what register_step checks
    config = step.parse_config({"name": "Ada"})
    ctx = StepContext(
        step_name="greet", attempt=1, trace_id="t", timeout=1.0, provider_ctx=ProviderContext()
    )
    assert step().execute(config, ctx) == {"greeting": "Hello, Ada"}

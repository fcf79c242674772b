"""The engine reads one way: entry points -> dispatch -> runner -> steps -> connections.

Checked on the import graph of src/ (:mod:`tests.architecture.import_graph`), so a lazy
import inside a function counts as much as one at the top of a module.
"""

from __future__ import annotations

import pytest

from tests.architecture import import_graph

#: Top to bottom: a module may import engine modules of its own layer or below, never above.
LAYERS: list[tuple[str, ...]] = [
    ("automate.receivers",),  # connected in AutomateConfig.ready()
    ("automate.tasks", "automate.worker", "automate.views", "automate.api.views"),
    ("automate.services",),
    ("automate.dispatch",),
    ("automate.batch",),
    ("automate.runner",),
    ("automate.runs", "automate.signals", "automate.journal", "automate.outcomes"),
    ("automate.steps",),
    ("automate.connections",),
]

#: Modules in no import cycle (``automate.api.views`` only has to import the engine one
#: way, which the layers check; its knot with ``automate.api.schema`` is the API's own).
CYCLE_FREE = tuple(m for layer in LAYERS for m in layer if m != "automate.api.views")

#: Engine files where a first-party import inside a function is not allowed at all.
NO_LAZY_IMPORTS = [
    "automate.batch",
    "automate.dispatch",
    "automate.journal",
    "automate.outcomes",
    "automate.receivers",
    "automate.runner",
    "automate.runs",
    "automate.services",
    "automate.signals",
    "automate.tasks",
    "automate.worker",
]


def is_in(module: str, members: tuple[str, ...]) -> bool:
    """Whether ``module`` is one of ``members`` or inside one of them (a package)."""
    return any(module == m or module.startswith(m + ".") for m in members)


def layer_of(module: str) -> int | None:
    for index, members in enumerate(LAYERS):
        if is_in(module, members):
            return index
    return None


@pytest.fixture(scope="module")
def imports() -> list[import_graph.Import]:
    return import_graph.all_imports()


def test_engine__no_module_imports_one_upstream_of_itself(imports):
    upstream = [
        f"{imp.source}:{imp.line} -> {imp.target}"
        for imp in imports
        if (source := layer_of(imp.source)) is not None
        and (target := layer_of(imp.target)) is not None
        and target < source
    ]
    assert upstream == []


def test_engine__no_engine_module_is_in_an_import_cycle(imports):
    without_packages = [
        imp
        for imp in imports
        if not (imp.target.startswith(imp.source + ".") or imp.source.startswith(imp.target + "."))
    ]
    tangled = [
        component
        for component in import_graph.cycles(without_packages)
        if any(is_in(module, CYCLE_FREE) for module in component)
    ]
    assert tangled == []


def test_engine__its_modules_import_nothing_first_party_inside_functions(imports):
    lazy = [
        f"{imp.source}:{imp.line} -> {imp.target}"
        for imp in imports
        if imp.in_function and imp.source in NO_LAZY_IMPORTS
    ]
    assert lazy == []


def test_engine__the_app_imports_only_inside_ready(imports):
    """apps.py is imported while the app registry fills: it may import models' modules
    only in ``ready()``."""
    # automate.conf only declares the app's settings (a dataclass): no model, no query.
    at_top = [
        imp
        for imp in imports
        if imp.source == "automate.apps" and not imp.in_function and imp.target != "automate.conf"
    ]
    assert at_top == []

"""A first-party import inside a function in src/ says why it is not at the top.

Such an import hides a dependency from the module's header, so it is allowed only with a
comment naming its reason, on the import's line or in the comment block right above it
(above a run of imports, one comment covers the run). The reasons, best written as a tag
leading the comment (``# optional app: rag may not be installed``):

* ``cycle``: the import at the top would close an import cycle;
* ``optional`` (``optional app``, ``optional extra``): the imported module belongs to an
  app a project may leave out of ``INSTALLED_APPS`` (automate reaching into automate_llm,
  rag ...), or needs a third-party package of an extra (the mcp SDK, hypothesis);
* ``models`` (or ``app registry``): the importing module is loaded before the apps are
  ready (while they load, or by the pytest plugin before Django is set up) and the
  imported one defines or imports models;
* ``plugin start-up``: the pytest plugin, loaded in every pytest session of every project
  that installs the package, leaves the kit to load when a fixture is used.

``AppConfig.ready()`` in an ``apps`` module needs no comment: importing the app's modules
there is Django's own convention.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections import defaultdict

import pytest

from tests.architecture import import_graph

REASON = re.compile(r"#.*\b(cycle|optional|models?|app registry|plugin start-up)\b", re.IGNORECASE)


def _spans(tree: ast.Module) -> tuple[dict[int, tuple[int, int]], set[int]]:
    """Each import statement's first line -> (first line, last line), and the lines of
    the ``ready()`` methods of the module's classes."""
    spans: dict[int, tuple[int, int]] = {}
    ready: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            spans[node.lineno] = (node.lineno, node.end_lineno or node.lineno)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "ready":
                    ready.update(range(item.lineno, (item.end_lineno or item.lineno) + 1))
    return spans, ready


def unexplained(source: str, lines: list[int], *, is_apps: bool = False) -> list[int]:
    """Of the import statements starting at ``lines``, those without a reason."""
    text = source.splitlines()
    spans, ready = _spans(ast.parse(source))
    ends = {end: start for start, end in spans.values()}
    missing = []
    for line in sorted(set(lines)):
        if is_apps and line in ready:
            continue
        first, last = spans[line]
        if any(REASON.search(text[n - 1]) for n in range(first, last + 1)):
            continue
        above = first - 1
        while above in ends:  # skip the imports of the same run
            above = ends[above] - 1
        explained = False
        while above >= 1 and text[above - 1].strip().startswith("#"):
            if REASON.search(text[above - 1]):
                explained = True
                break
            above -= 1
        if not explained:
            missing.append(line)
    return missing


def _unexplained_in_src() -> dict[str, list[int]]:
    paths = import_graph.modules()
    lines: dict[str, list[int]] = defaultdict(list)
    for imp in import_graph.all_imports():
        if imp.in_function:
            lines[imp.source].append(imp.line)
    found = {}
    for module, numbers in lines.items():
        source = paths[module].read_text(encoding="utf-8")
        missing = unexplained(source, numbers, is_apps=module.rsplit(".", 1)[-1] == "apps")
        if missing:
            found[module] = missing
    return found


@pytest.fixture(scope="module")
def found() -> dict[str, list[int]]:
    return _unexplained_in_src()


def test_function_imports__each_in_src_says_why(found):
    bad = [
        f"src/{module.replace('.', '/')}.py:{line}"
        for module, lines in sorted(found.items())
        for line in lines
    ]
    assert bad == [], (
        "a first-party import inside a function needs a reason comment (see this test's "
        "docstring), or belongs at the top of the module"
    )


# --- the checker itself --------------------------------------------------------------


def _check(source: str, is_apps: bool = False) -> list[int]:
    source = textwrap.dedent(source)
    tree = ast.parse(source)
    inside = [
        node.lineno
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    return unexplained(source, inside, is_apps=is_apps)


def test_checker__an_import_without_a_reason_is_reported():
    assert _check(
        """
        def f():
            from rag.models import KnowledgeBase
        """
    ) == [3]


def test_checker__a_comment_naming_no_reason_is_no_reason():
    assert _check(
        """
        def f():
            # imported here
            from rag.models import KnowledgeBase  # noqa: F401
        """
    ) == [4]


def test_checker__a_tagged_comment_above_or_on_the_line_is_a_reason():
    assert (
        _check(
            """
        def f():
            # optional app: rag may not be installed; the comment
            # can go on for lines
            from rag.models import KnowledgeBase
            from rag.query import (
                search,
            )

        def g():
            from automate.mcp.calls import call_tool  # optional extra: the mcp SDK

        def h():
            # Here, not at the top: a model cannot be imported before the apps are.
            from automate_core.models import Secret
        """
        )
        == []
    )


def test_checker__a_reason_does_not_reach_past_code():
    assert _check(
        """
        def f():
            # models: reason for the first import only
            from automate.models import Workflow
            x = 1
            from automate.worker import EmbeddedWorker
        """
    ) == [6]


def test_checker__only_an_app_configs_ready_is_exempt():
    source = """
        class Config:
            def ready(self):
                from automate import checks

        def other():
            from automate import checks
        """
    assert _check(source, is_apps=True) == [7]
    assert _check(source, is_apps=False) == [4, 7]

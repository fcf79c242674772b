"""No import cycle among src/ modules: the layers read one way.

``python -m tests.architecture.import_graph`` prints the graph's cycles and the imports
made inside functions; this test holds the first at zero.
"""

from __future__ import annotations

from tests.architecture import import_graph


def test_import_graph__src_has_no_cycle():
    imports = import_graph.all_imports()
    assert len(imports) > 100, "the graph reader found too few imports: is SRC right?"
    assert import_graph.module_cycles(imports) == []


def test_import_graph__finds_a_cycle_made_through_a_function_import(tmp_path, monkeypatch):
    package = tmp_path / "automate_core"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from automate_core import high\n")
    (package / "high.py").write_text("from automate_core.low import f\n")
    monkeypatch.setattr(import_graph, "SRC", tmp_path)
    monkeypatch.setattr(import_graph, "PACKAGES", ("automate_core",))
    found = import_graph.module_cycles(import_graph.all_imports())
    assert found == [["automate_core.high", "automate_core.low"]]

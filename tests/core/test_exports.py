"""automate_core.exports.lazy_exports: a package's names loaded on first access."""

from __future__ import annotations

import sys
import types

import pytest

from automate_core.exports import lazy_exports


@pytest.fixture
def package(monkeypatch):
    module = types.ModuleType("lazy_pkg")
    monkeypatch.setitem(sys.modules, "lazy_pkg", module)
    module.__all__ = ["dumps", "eager"]
    module.eager = 1
    module.__getattr__, module.__dir__ = lazy_exports("lazy_pkg", {"dumps": "json"}, module.__all__)
    return module


def test_lazy_exports__loads_the_name_on_first_read_and_keeps_it(package, monkeypatch):
    monkeypatch.delitem(sys.modules, "json")  # proves the read imports it
    assert "dumps" not in vars(package)
    dumps = package.dumps
    assert dumps is sys.modules["json"].dumps
    assert vars(package)["dumps"] is dumps  # later reads skip __getattr__


def test_lazy_exports__dir_lists_public_names_before_they_load(package):
    assert {"dumps", "eager"} <= set(dir(package))
    assert "dumps" not in vars(package)


def test_lazy_exports__an_unknown_name_is_an_attribute_error(package):
    with pytest.raises(AttributeError, match="module 'lazy_pkg' has no attribute 'loads'"):
        _ = package.loads

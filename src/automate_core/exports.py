"""Names a package re-exports from its submodules, loaded on first access (PEP 562).

A package's ``__init__`` whose short names live in modules that import models, views or a
heavy client library cannot import them at the top: Django imports the package while it
loads the apps, and pytest imports the testing kit before Django is configured. Such a
package lists those names instead::

    _LAZY = {"WebhookView": "automate.views"}
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

The first read of ``package.WebhookView`` imports ``automate.views`` and keeps the object
in the package's namespace, so later reads cost nothing.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, names: Mapping[str, str], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` for ``package``.

    ``names`` maps each lazily exported name to the module that defines it; ``public`` is
    the package's ``__all__``, which ``dir()`` lists even before the names are loaded.
    """
    namespace = vars(sys.modules[package])
    listed = frozenset(public)

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # later reads skip this function
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *listed})

    return __getattr__, __dir__

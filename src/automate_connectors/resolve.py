"""What a connector is built with: its config with every ``secret://NAME`` resolved, and
its webhook secrets (references, or values sealed with :mod:`automate_core.crypto`) in
plain text.

:mod:`automate.connections` builds the connectors of connection profiles with these, and
the testing kit (:mod:`automate_testing.context`) builds the connectors of tests, in
projects that may not install the ``automate`` app.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automate_core.crypto import is_sealed, unseal
from automate_core.secrets import SecretResolver, default_resolver, is_reference

__all__ = ["resolve_config", "resolve_webhook_secret"]


def resolve_config(value: Any, resolver: SecretResolver | None = None) -> Any:
    """Resolve every ``secret://`` reference inside a JSON-like config."""
    resolver = resolver or default_resolver()
    if isinstance(value, str) and is_reference(value):
        return resolver.resolve(value)
    if isinstance(value, Mapping):
        return {k: resolve_config(v, resolver) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_config(v, resolver) for v in value]
    return value


def resolve_webhook_secret(value: str, resolver: SecretResolver) -> str:
    """A stored webhook secret in plain text: unsealed, or resolved as a reference."""
    return unseal(value) if is_sealed(value) else resolver.resolve(value)

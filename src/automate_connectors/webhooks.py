"""Value types shared by connectors and the webhook view."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class Headers(dict):
    """A plain ``dict`` of request headers whose lookups ignore case.

    Connectors receive it as ``headers`` in ``verify_webhook``; ``headers.get("X-Signature")``
    finds ``x-signature`` whatever casing the sender or the server used.
    """

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        pairs = items.items() if isinstance(items, Mapping) else items
        for name, value in pairs:
            super().__setitem__(name.lower(), value)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __setitem__(self, name: str, value: str) -> None:
        super().__setitem__(name.lower(), value)


@dataclass(frozen=True)
class WebhookEvent:
    """What a connector read from a verified webhook request."""

    event_type: str
    external_id: str | None
    payload: Any
    raw_body: bytes | None = None

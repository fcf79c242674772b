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

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> Headers:
        """The request headers of a WSGI environ (Django's ``request.META``): what
        ``Headers(request.headers.items())`` holds, without building ``request.headers``.

        ``HTTP_X_HUB_SIGNATURE`` is ``x-hub-signature``; ``CONTENT_TYPE`` and
        ``CONTENT_LENGTH`` are the only headers without the prefix. A later key giving the
        same name wins, and ``HTTP_`` alone is no header, as in ``request.headers``.

        Each key's header name is worked out once per process (:func:`_header_name`): a
        server sends the same twenty-odd keys with every request, most of them no header.
        """
        headers = cls()
        store = dict.__setitem__
        names = _header_names
        for key, value in environ.items():
            name = names.get(key)
            if name is None:
                name = _remember_header_name(key)
            if name:
                store(headers, name, value)
        return headers

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __setitem__(self, name: str, value: str) -> None:
        super().__setitem__(name.lower(), value)


def _header_name(key: str) -> str:
    """The header an environ key carries, lower case; "" for a key that is no header."""
    if key.startswith("HTTP_"):
        key = key[5:]
        if not key:  # "HTTP_" alone names no header
            return ""
    elif key != "CONTENT_TYPE" and key != "CONTENT_LENGTH":
        return ""
    name = key.replace("_", "-").lower()
    # Django title-cases the name first, which lower-cases ASCII alike, not "ß".
    return name if name.isascii() else name.title().lower()


#: Environ keys seen, with their header names ("" for none). The HTTP_ keys come from
#: the requests: past this many the dict starts over, so a sender inventing headers
#: cannot grow it.
_header_names: dict[str, str] = {}
HEADER_NAMES_KEPT = 1024


def _remember_header_name(key: str) -> str:
    name = _header_name(key)
    if len(_header_names) >= HEADER_NAMES_KEPT:
        _header_names.clear()
    _header_names[key] = name
    return name


@dataclass(frozen=True)
class WebhookEvent:
    """What a connector read from a verified webhook request."""

    event_type: str
    external_id: str | None
    payload: Any
    raw_body: bytes | None = None

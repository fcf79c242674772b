"""The HTTP client that hosted embedding providers and vector stores hand to their SDKs.

The SDKs of Cohere and OpenAI accept an ``httpx.Client``, so their calls go through the
kernel's SSRF-safe transport (``automate_core.http.safe_client``) with the purpose
``rag``: ``AUTOMATE["HTTP_ALLOW_FOR"]["rag"]`` opens a private network to them alone.
"""

from __future__ import annotations

import httpx

from automate_core import secrets
from automate_core.http import safe_client

#: The outbound purpose (allow-list) and the use a key must be granted for.
PURPOSE = "rag"


def host_of(url: str) -> str:
    """The host of ``url`` (a bare host name is taken as ``https://`` + it)."""
    if not url:
        return ""
    try:
        return str(httpx.URL(url if "://" in url else f"https://{url}").host)
    except (httpx.InvalidURL, TypeError):
        return ""


def check_grant(reference: str, url: str) -> None:
    """A key goes to its service's own host (implicit grant) or to the hosts its
    ``AUTOMATE["SECRET_GRANTS"]`` entry names (use ``rag``); never a signing secret. With
    no known host (a project's provider that fixes its endpoint in code) only the
    signing-secret rule applies."""
    host = host_of(url)
    if host:
        secrets.check_grant(reference, use=PURPOSE, host=host, implicit_hosts=[host])
    else:
        secrets.check_not_signing(reference, use=PURPOSE)


def outbound_client(*, timeout: float = 30.0) -> httpx.Client:
    return safe_client(timeout=timeout, purpose=PURPOSE)

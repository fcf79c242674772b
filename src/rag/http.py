"""The HTTP client that hosted embedding providers hand to their SDKs.

The SDKs of Cohere and OpenAI accept an ``httpx.Client``, so their calls go through the
kernel's SSRF-safe transport (``automate_core.http.safe_client``).
"""

from __future__ import annotations

import httpx

from automate_core.http import safe_client


def outbound_client(*, timeout: float = 30.0) -> httpx.Client:
    return safe_client(timeout=timeout, purpose="rag")

"""The HTTP client that hosted embedding providers hand to their SDKs.

Outbound calls go through the kernel's SSRF-safe client (``automate_core.http``) when the
kernel has it; the SDKs of Cohere and OpenAI accept an ``httpx.Client``, so they send
through its transport. A kernel without that module gets a plain client that at least
ignores proxy settings from the environment.
"""

from __future__ import annotations

import httpx


def outbound_client(*, timeout: float = 30.0) -> httpx.Client:
    try:
        from automate_core.http import safe_client
    except ImportError:  # a kernel older than the outbound-safety module
        return httpx.Client(timeout=timeout, trust_env=False)
    return safe_client(timeout=timeout)

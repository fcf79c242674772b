"""The SSRF-safe client at the path the spec documents.

The kernel owns it (:mod:`automate_core.http`) because connectors, LLM providers, RAG and
MCP all call out through it; this module only re-exports it so that

    from rag.security.ssrf_client import ssrf_safe_request, SSRFError

works as the integration guide shows.
"""

from __future__ import annotations

from automate_core.http import SSRFError, async_ssrf_safe_request, ssrf_safe_request

__all__ = ["SSRFError", "async_ssrf_safe_request", "ssrf_safe_request"]

"""The outbound-network guard of :mod:`automate_core.http`, for apps that speak HTTP their own way.

Most code should simply call :func:`automate_core.http.ssrf_safe_request` or use
:func:`automate_core.http.safe_client`. This module is for a client the kernel does not
build, such as the MCP SDK's ``httpx2`` client, which must still obey the same rules
(``AUTOMATE["HTTP_ALLOWED_PORTS"]``, ``HTTP_DENY_HOSTS``, ``HTTP_ALLOW_NETWORKS``...):

* :func:`check_url` — the checks that need no DNS, for every request and redirect hop;
* :func:`resolve_checked` / :func:`check_address` — resolve once and check every address;
* :class:`AsyncGuardedConnect` — the guarded ``connect_tcp`` of an async network backend
  (httpcore or httpcore2): subclass it with the library's backend class, set
  ``connect_errors`` and ``self._inner``::

      class GuardedAsyncBackend(AsyncGuardedConnect, httpcore2.AsyncNetworkBackend):
          connect_errors = (httpcore2.ConnectError, httpcore2.ConnectTimeout)

          def __init__(self) -> None:
              self._inner = httpcore2.AnyIOBackend()

* :class:`SSRFError` — a refusal; :class:`ResponseTooLarge` — a body past its cap.

The implementations live in core's private modules; this is their only public home.
"""

from __future__ import annotations

from automate_core._httpbody import ResponseTooLarge
from automate_core._netguard import (
    AsyncGuardedConnect,
    SSRFError,
    check_address,
    check_url,
    resolve_checked,
)

__all__ = [
    "AsyncGuardedConnect",
    "ResponseTooLarge",
    "SSRFError",
    "check_address",
    "check_url",
    "resolve_checked",
]

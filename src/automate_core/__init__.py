"""The kernel of Django Automate: providers, errors, registries, secrets, tracing, outbox.

Every other app depends on this one; it depends on none of them. The names most code needs
are importable from the package itself::

    from automate_core import AutomateError, ErrorCodes, ProviderContext

The longer paths (``automate_core.providers.errors`` ...) keep working. Nothing imported
here touches settings or models, so Django can import this package while it loads apps.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

from automate_core.exports import lazy_exports
from automate_core.providers.base import BaseProvider, ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.registry import AlreadyRegistered, NotRegistered, Registry, RegistryNotReady
from automate_core.throttling import RateLimiter, RateLimitExceeded

if TYPE_CHECKING:
    from automate_core.http import SSRFError, safe_client, ssrf_safe_request

__all__ = [
    "AlreadyRegistered",
    "AutomateError",
    "BaseProvider",
    "ErrorCodes",
    "NotRegistered",
    "ProviderContext",
    "RateLimitExceeded",
    "RateLimiter",
    "Registry",
    "RegistryNotReady",
    "SSRFError",
    "safe_client",
    "ssrf_safe_request",
]


def _distribution_version() -> str:
    """The installed version of the ``django-automate`` distribution."""
    try:
        return metadata.version("django-automate")
    except metadata.PackageNotFoundError:  # the source tree on sys.path, never installed
        return "0+unknown"


__version__ = _distribution_version()

# The SSRF-safe client pulls in httpx and its transports (about 0.2 s): every other app and
# the pytest plugin import this package, most of them without calling out.
_LAZY = {
    "SSRFError": "automate_core.http",
    "safe_client": "automate_core.http",
    "ssrf_safe_request": "automate_core.http",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

"""System checks of the REST API (ids ``automate.W02x``), registered by AutomateConfig.ready().

Imports nothing from DRF: a project that never mounts the API pays nothing for them.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.urls import NoReverseMatch, reverse


@checks.register(checks.Tags.urls, "automate")
def check_browsable_api(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """The browsable API needs DRF's templates; without them the API answers JSON only."""
    if apps.is_installed("rest_framework") or not api_is_mounted():
        return []
    return [
        checks.Warning(
            "The REST API (automate.api.urls) is mounted but 'rest_framework' is not in "
            "INSTALLED_APPS, so its browsable API is off and browsers get JSON.",
            hint='Add "rest_framework" to INSTALLED_APPS for the browsable API, or put '
            '"automate.W020" in SILENCED_SYSTEM_CHECKS to serve JSON only.',
            id="automate.W020",
        )
    ]


def api_is_mounted() -> bool:
    if not getattr(settings, "ROOT_URLCONF", None):
        return False
    try:
        reverse("automate_api:events")
    except NoReverseMatch:
        return False
    return True

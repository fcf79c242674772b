"""System checks for the outgoing-webhook settings (ids ``automate.E70x``).

* ``automate.E701``: ``AUTOMATE["OUTGOING_WEBHOOK_RATE_LIMIT"]`` is not a rate
  (``"10/s"``, ``"600/min"``) or ``""``;
* ``automate.E702``: ``AUTOMATE["OUTGOING_WEBHOOK_RETRY_SCHEDULE"]`` is empty or holds a
  negative delay.

A value of the wrong type is reported by the settings check (``automate.E105``). Registered
from ``AutomateConfig.ready()``.
"""

from __future__ import annotations

from typing import Any

from django.core import checks
from django.core.exceptions import ImproperlyConfigured

from automate.conf import settings as app_settings
from automate_core.throttling import ACCEPTED_FORMS, parse_rate


@checks.register("automate")
def check_outgoing_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    try:
        rate = app_settings.OUTGOING_WEBHOOK_RATE_LIMIT
    except ImproperlyConfigured:
        rate = ""  # the wrong type: the settings check says so
    if rate:
        try:
            parse_rate(rate)
        except ValueError:
            errors.append(
                checks.Error(
                    f'AUTOMATE["OUTGOING_WEBHOOK_RATE_LIMIT"] is not a rate: {rate!r}.',
                    hint=f'Use a form like {ACCEPTED_FORMS}, or "" for no limit.',
                    id="automate.E701",
                )
            )
    try:
        schedule = app_settings.OUTGOING_WEBHOOK_RETRY_SCHEDULE
    except ImproperlyConfigured:
        schedule = [0]
    if not schedule or any(delay < 0 for delay in schedule):
        errors.append(
            checks.Error(
                'AUTOMATE["OUTGOING_WEBHOOK_RETRY_SCHEDULE"] must list at least one delay, '
                "none negative.",
                hint="Seconds before each attempt, the first usually 0: [0, 5, 300, 1800].",
                id="automate.E702",
            )
        )
    return errors

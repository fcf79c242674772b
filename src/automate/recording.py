"""What the runner writes into step records: errors named after their step, outputs made
JSON-safe, redacted and capped (``AUTOMATE["STEP_MAX_OUTPUT_BYTES"]``)."""

from __future__ import annotations

import json
from typing import Any

from django.db import DatabaseError

from automate.conf import settings as app_settings
from automate.models import WorkflowStep
from automate_core import redaction
from automate_core.providers.errors import AutomateError, ErrorCodes

__all__ = ["as_automate_error", "error_dict", "jsonable", "named"]


def as_automate_error(exc: BaseException) -> AutomateError:
    if isinstance(exc, AutomateError):
        return exc
    if isinstance(exc, DatabaseError):
        return AutomateError(ErrorCodes.UNAVAILABLE, f"database error: {exc}", retryable=True)
    return AutomateError(ErrorCodes.INTERNAL, f"{type(exc).__name__}: {exc}", retryable=False)


def named(error: AutomateError, step: WorkflowStep) -> AutomateError:
    """``error`` with the step's name in its message and details (once)."""
    if error.details.get("step") == step.name:
        return error
    return AutomateError(
        error.code,
        f"step {step.name!r}: {error.message}",
        provider=error.provider,
        retryable=error.retryable,
        details={**error.details, "step": step.name},
    )


def error_dict(error: AutomateError, step: WorkflowStep) -> dict[str, Any]:
    record = error.as_dict()
    record["step"] = step.name
    return redaction.redact_data(json.loads(json.dumps(record, default=str)))


def jsonable(value: Any) -> Any:
    """Secrets redacted, JSON-safe, and cut to ``STEP_MAX_OUTPUT_BYTES`` (never an error:
    a succeeded non-idempotent step must be recorded whatever it returned)."""
    text = json.dumps(value, default=str)
    limit = app_settings.STEP_MAX_OUTPUT_BYTES
    if len(text) > limit:
        # Redacted before the cut: a secret cut in two would leave its prefix unmasked.
        return {"truncated": True, "size": len(text), "preview": redaction.redact(text)[:1000]}
    return redaction.redact_data(json.loads(text))

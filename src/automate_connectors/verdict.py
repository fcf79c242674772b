"""Why a webhook was refused: a stable reason code next to the ``bool`` of ``verify_webhook``.

The public contract stays ``Connector.verify_webhook(headers, raw_body) -> bool`` (the
spec's examples and every client connector return a plain ``bool``), and the functions of
:mod:`automate_connectors.verification` stay "raw bytes in, ``bool`` out, never an
exception". The reason therefore travels beside the result, not instead of it:

* a verifier that refuses calls :func:`refuse` with a :class:`Reason`, which returns
  ``False`` (so ``return refuse(Reason.MISSING_HEADER)`` reads as what it does);
* :meth:`automate_connectors.base.Connector.webhook_verdict` opens a :func:`recording`
  around each ``verify_webhook`` call and reads the last reason refused inside it.

Outside a recording, :func:`refuse` only returns ``False``: calling a verifier directly
leaves no state behind. The recorder lives in a :class:`~contextvars.ContextVar`, so
concurrent requests (threads or asyncio tasks) never see each other's reasons.

An exception was not used for this: it would change what ``verify_webhook`` and the
verification functions answer for a direct caller (``False`` today), and a verifier built
from several checks (try one header, then another) could not report the reason of the
check that ran last.

Reasons never carry the body, a header value or a secret: only a code, and for
:attr:`Reason.VERIFIER_RAISED` the exception's type name (its message could quote a secret).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

__all__ = ["Reason", "WebhookVerdict", "accepted", "recording", "refuse"]


class Reason(StrEnum):
    """Why a webhook request was refused. The values are stable: log queries rely on them."""

    #: A header the scheme needs is absent or empty.
    MISSING_HEADER = "missing_header"
    #: A header is present but cannot be read: wrong prefix or layout, bad hex or base64,
    #: wrong length, a timestamp that is not a whole number, no signature of a known version.
    MALFORMED_HEADER = "malformed_header"
    #: The signed timestamp is further from now than the tolerance, past or future.
    TIMESTAMP_OUTSIDE_TOLERANCE = "timestamp_outside_tolerance"
    #: The request is well-formed but its signature matches none of the active secrets.
    NO_SECRET_MATCHED = "no_secret_matched"
    #: A configured secret cannot be used by the scheme (e.g. not base64 where it must be).
    UNUSABLE_SECRET = "unusable_secret"
    #: The verifier raised; the log names the exception type, never its message.
    VERIFIER_RAISED = "verifier_raised"
    #: The verifier returned something other than ``True`` without saying why.
    REJECTED = "rejected"


@dataclass(frozen=True)
class WebhookVerdict:
    """The outcome of checking one request: accepted, or refused for ``reason``."""

    accepted: bool
    reason: Reason | None = None
    #: The exception's type name when ``reason`` is ``VERIFIER_RAISED``.
    exception: str | None = None


@dataclass
class _Recorder:
    reason: Reason | None = None
    exception: str | None = None


_recorder: ContextVar[_Recorder | None] = ContextVar("automate_webhook_verdict", default=None)


def refuse(reason: Reason | str, *, exception: str | None = None) -> Literal[False]:
    """Record why the request is refused (when a check is recording) and return ``False``.

    ``reason`` is a :class:`Reason` or its value; anything else is a ``ValueError``, which
    the check reports as ``verifier_raised``.
    """
    code = Reason(reason)
    recorder = _recorder.get()
    if recorder is not None:
        recorder.reason, recorder.exception = code, exception
    return False


def accepted() -> Literal[True]:
    """Forget an earlier refusal (a later check passed) and return ``True``.

    A verifier may try several checks; only the reason of the last refusal since the last
    acceptance describes why the request as a whole was refused.
    """
    recorder = _recorder.get()
    if recorder is not None:
        recorder.reason, recorder.exception = None, None
    return True


class recording:  # used as a function: ``with recording() as recorder``
    """Collect the reason refused by the verifier called inside the block.

    A class rather than a ``@contextmanager`` generator: every webhook opens one per
    secret it tries, and a generator costs several times more to enter and leave.
    """

    __slots__ = ("recorder", "token")

    def __enter__(self) -> _Recorder:
        self.recorder = _Recorder()
        self.token = _recorder.set(self.recorder)
        return self.recorder

    def __exit__(self, *exc: object) -> None:
        _recorder.reset(self.token)

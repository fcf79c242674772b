"""How a worker's pass over a run, or over an outbox item, ended.

:func:`automate.runner.execute_run` ends a pass over one run with one of the run
outcomes; :mod:`automate.dispatch` settles the item from them, and reports an item it did
not settle as ``LOST`` or ``RELEASED``. Values are strings (a ``StrEnum``), so they
compare equal to the strings the engine used before and count as such in the per-status
totals that ``process_batch`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from automate_core.providers.errors import AutomateError


class Outcome(StrEnum):
    #: Every step ran; the run is finished.
    COMPLETED = "completed"
    #: A step stopped the run on purpose (a filter); the run is finished.
    FILTERED = "filtered"
    #: A step failed with a retryable error; the item comes back after the step's backoff.
    RETRY = "retry"
    #: The run is dead-lettered (a permanent error, or no attempts left).
    DEAD = "dead"
    #: The item's lease went to another worker: nothing of this pass is written.
    LOST = "lost"
    #: The worker is shutting down: the pass stopped between two steps.
    PAUSED = "paused"
    #: The item went back to the queue unprocessed, its attempt not counted (after PAUSED).
    RELEASED = "released"
    #: The run parked (``delay``, ``wait_for_event``, a child workflow): an outbox item
    #: resumes it later; for the item that carried it, the run is done with.
    WAITING = "waiting"
    #: ``cancel_run`` ended the run; it is finished.
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RunOutcome:
    """How one pass over a run ended; ``retry_in`` seconds for a ``RETRY``."""

    status: Outcome
    error: AutomateError | None = None
    retry_in: float | None = None

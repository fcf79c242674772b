"""How a worker's pass over a run, or over an outbox item, ended.

:func:`automate.runner.execute_run` ends a pass over one run with one of the run
outcomes; :mod:`automate.dispatch` settles the item from them, and reports an item it did
not settle as ``LOST`` or ``RELEASED``. Values are strings (a ``StrEnum``), so they
compare equal to the strings the engine used before and count as such in the per-status
totals that ``process_batch`` returns.
"""

from __future__ import annotations

from enum import StrEnum


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

"""Signals sent by Django Automate.

``event_accepted`` is sent after the transaction that stored a webhook's outbox row has
committed, with ``sender`` the connector key and ``item`` the :class:`OutboxItem`.
Dispatchers connect to it to start work at once instead of waiting for the next poll.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger("automate.dispatch")

event_accepted = Signal()


def start_processing(sender: Any, item: Any = None, **kwargs: Any) -> None:
    """Receiver of ``event_accepted``: nudge a worker so the event runs without delay.

    Celery mode: send one ``automate.dispatch`` task (a worker claims a batch). Embedded
    mode: wake this process's embedded worker, if it runs one; otherwise the worker's next
    poll picks the event up. Never raises: the event is already safe in the outbox.
    """
    from automate import dispatch, worker

    try:
        if dispatch.execution_mode() == "celery":
            from automate.tasks import dispatch_batch

            dispatch_batch.apply_async()
        else:
            worker.wake()
    except Exception:
        logger.exception("could not start processing outbox item %s", getattr(item, "pk", None))

"""The receivers of the ``automate`` app, connected in ``AutomateConfig.ready()``.

Data flow: the webhook view, the API or ``run_workflow`` commits an outbox row and sends
:data:`automate.signals.event_accepted` -> :func:`start_processing` nudges whoever
executes (a Celery task, or this process's embedded worker) -> :mod:`automate.dispatch`.
Receivers sit above the engine: they import it, the engine never imports them.
"""

from __future__ import annotations

import logging
from typing import Any

from automate import dispatch, tasks, worker
from automate.connections import clear_connection_cache

logger = logging.getLogger("automate.dispatch")


def start_processing(sender: Any, item: Any = None, **kwargs: Any) -> None:
    """Receiver of ``event_accepted``: nudge a worker so the event runs without delay.

    Celery mode: send one ``automate.dispatch`` task (a worker claims a batch). Embedded
    mode: wake this process's embedded worker, if it runs one; otherwise the worker's next
    poll picks the event up. Never raises: the event is already safe in the outbox.
    """
    try:
        if dispatch.execution_mode() == "celery":
            tasks.dispatch_batch.apply_async()
        else:
            worker.wake()
    except Exception:
        logger.exception("could not start processing outbox item %s", getattr(item, "pk", None))


def clear_connections_on_settings(*, setting: str, **kwargs: Any) -> None:
    """Receiver of ``setting_changed``: connections are read from ``AUTOMATE``."""
    if setting == "AUTOMATE":
        clear_connection_cache()

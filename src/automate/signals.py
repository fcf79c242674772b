"""Signals sent by Django Automate (only the ``Signal`` objects: no receivers here).

``event_accepted`` is sent after the transaction that stored an event's outbox row has
committed (a webhook, an API call, ``WorkflowService.run_workflow``), with ``sender`` the
connection key and ``item`` the :class:`~automate_core.outbox.models.OutboxItem`.
:func:`automate.receivers.start_processing`, connected in ``AutomateConfig.ready()``,
starts the work at once instead of waiting for the next poll; projects may connect their
own receivers too.
"""

from __future__ import annotations

from django.dispatch import Signal

event_accepted = Signal()

"""Signals of outgoing webhooks (only the ``Signal`` objects: no receivers here).

``endpoint_disabled`` is sent once an endpoint has been disabled by the sender itself,
after the transaction that disabled it has committed, with ``sender`` the
:class:`~automate.outgoing.models.WebhookEndpoint` class, ``endpoint`` the row and
``reason`` (``"gone"``: it answered 410; ``"failing"``: it failed continuously for
``AUTOMATE["OUTGOING_WEBHOOK_DISABLE_AFTER_SECONDS"]``). Connect a receiver to tell the
endpoint's owner.
"""

from __future__ import annotations

from django.dispatch import Signal

endpoint_disabled = Signal()

"""tests.worker_settings, plus outbound HTTP to 127.0.0.1 (the test's local target)."""

from __future__ import annotations

from tests.worker_settings import *  # noqa: F403
from tests.worker_settings import AUTOMATE

AUTOMATE = {**AUTOMATE, "HTTP_ALLOW_NETWORKS": ["127.0.0.0/8"], "HTTP_ALLOWED_PORTS": "*"}

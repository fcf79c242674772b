"""Helpers for the control-flow tests: the engine's fixtures, plus a run starter."""

from __future__ import annotations

from tests.automate.conftest import drain, recorder_calls  # noqa: F401

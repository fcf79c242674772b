"""Control flow: nested steps (``branch``, ``for_each``), parked runs (``delay``,
``wait_for_event``, a ``workflow`` step waiting for its child), ``on_failure`` steps and
``cancel_run``. See docs/control-flow.md.

* :mod:`automate.flow.definition` validates nested steps at ``create_workflow``;
* :mod:`automate.flow.blocks` walks a run's steps, nested ones included, for the runner;
* :mod:`automate.flow.parking` parks runs and resumes them through the outbox;
* :mod:`automate.flow.failure` runs the ``on_failure`` steps of runs the outbox
  dead-lettered, from an outbox item of their own;
* :mod:`automate.flow.models` holds :class:`RunWait`, the table of parked runs.
"""

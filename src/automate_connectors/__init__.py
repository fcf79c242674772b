"""The connector SDK: :class:`~automate_connectors.base.Connector`, its specs, the registry,
reusable webhook verifiers and the built-in connectors."""

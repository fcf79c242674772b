"""MCP servers: registration, tool discovery (``sync_tools``) and tool calls.

The protocol is spoken by the official ``mcp`` SDK (the ``mcp`` extra); this package adds
the Django models and admin, the outbound SSRF rules, a synchronous facade for Django
code, and the mapping of every failure to an :class:`~automate_core.providers.errors.AutomateError`.
"""

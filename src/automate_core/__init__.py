"""The kernel of Django Automate: providers, errors, registries, secrets, tracing, outbox.

Every other app depends on this one; it depends on none of them.
"""

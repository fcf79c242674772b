"""LLM providers for Django Automate: a base class, a registry, built-ins and usage records."""

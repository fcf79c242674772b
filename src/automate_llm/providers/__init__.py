"""The LLM provider base class and the built-in providers (one module each)."""

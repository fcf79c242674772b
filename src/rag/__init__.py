"""Retrieval-augmented generation for Django Automate (knowledge bases, retrieval, embeddings)."""

"""Security helpers of the RAG app; the SSRF-safe client lives in the kernel."""

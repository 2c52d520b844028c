"""Text embeddings shared by the router, dense search, chunking and guardrails: the packaged all-MiniLM-L6-v2."""

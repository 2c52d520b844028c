"""LLM engines: the `LLMEngine` interface and its vLLM implementation."""

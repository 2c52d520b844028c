"""Guardrails around every request: NeMo Guardrails rails (input, retrieval, tool input, output) that run offline."""

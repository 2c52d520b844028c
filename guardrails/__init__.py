"""Guardrails around every request: the rails seam now, NeMo Guardrails rails in their own issue."""

"""Chimera: a hybrid AI assistant for companies that run their own models.

Importing this package is cheap: torch, vllm, ray and nemoguardrails load only where they are used.
"""

__version__ = "0.1.0"

"""Experts: their specs, the LLM engines that serve them, the router that picks one, and model provisioning."""

"""Long-context memory per session: a Mamba state-space model's recurrent state, or extractive recall."""

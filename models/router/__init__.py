"""Routers choose which expert answers a conversation."""

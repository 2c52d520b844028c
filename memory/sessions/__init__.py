"""Conversation sessions: the `SessionStore` interface and its Redis implementation."""

"""The OpenAI-compatible HTTP API: a thin FastAPI shell over `ChatService`."""

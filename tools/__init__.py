"""What agents can call. Each tool has a pydantic argument schema that doubles as its guided-decoding schema."""

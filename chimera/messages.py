"""Chat messages as they travel between the API, the router, the agents and the engines."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]


class ChatMessage(BaseModel):
    """One turn of a conversation, reduced to what our own modules need."""

    model_config = ConfigDict(frozen=True)

    role: Role = Field(description="Who said it.")
    content: str = Field(description="What was said, as plain text.")


def last_user_text(messages: list[ChatMessage]) -> str:
    """The newest user turn's text, or an empty string when there is none."""
    return next((m.content for m in reversed(messages) if m.role == "user"), "")

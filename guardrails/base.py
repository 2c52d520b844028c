"""The guardrail seam in the request path: input rails before the agent, output rails on the answer.

`DisabledRails` is what runs until the guardrails issue lands its NeMo Guardrails implementation: it allows
everything and says so in the span (`chimera.rails.enabled = false`), so traces never suggest a check ran.
"""

from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict

from chimera.messages import ChatMessage


class RailResult(BaseModel):
    """A rail's verdict: allowed (possibly with rewritten text, e.g. masked PII) or blocked with a reason."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    messages: list[ChatMessage] | None = None  # input rails: the (possibly rewritten) conversation
    text: str | None = None  # output rails: the (possibly rewritten) answer
    reason: str = ""


class Rails(ABC):
    """Checks what goes into and comes out of the assistant."""

    enabled: bool = True

    @abstractmethod
    async def check_input(self, messages: list[ChatMessage]) -> RailResult:
        """Vet the conversation before any model sees it."""

    @abstractmethod
    async def check_output(self, text: str) -> RailResult:
        """Vet the answer before the user sees it."""


class DisabledRails(Rails):
    """No rails configured (`guardrails.enabled: false`): everything passes unchanged."""

    enabled = False

    async def check_input(self, messages: list[ChatMessage]) -> RailResult:
        return RailResult(allowed=True, messages=messages)

    async def check_output(self, text: str) -> RailResult:
        return RailResult(allowed=True, text=text)

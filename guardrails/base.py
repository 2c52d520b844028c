"""The guardrail seam in the request path: input rails before the agent, retrieval rails on what search finds,
tool-input rails on what an agent sends to a tool, output rails on the answer.

`DisabledRails` is what runs with `guardrails.enabled: false`: it allows everything and says so in the span
(`chimera.rails.enabled = false`), so traces never suggest a check ran.
"""

from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict

from chimera.messages import ChatMessage


class RailResult(BaseModel):
    """A rail's verdict: allowed (possibly with rewritten text, e.g. masked PII) or blocked with a reason."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    messages: list[ChatMessage] | None = None  # input rails: the (possibly rewritten) conversation
    text: str | None = None  # output, retrieval and tool-input rails: the (possibly rewritten) text
    reason: str = ""
    rail: str = ""  # the rail that decided (blocked, or rewrote), e.g. `jailbreak_classifier`, `pii`
    score: float | None = None  # the deciding classifier's score, when a classifier decided


class OutputStream(ABC):
    """Rewrites an answer while it streams (PII masking); holds back what a later delta could still change."""

    @abstractmethod
    def push(self, delta: str) -> str:
        """Take the next delta; return the text that is now safe to send (possibly empty)."""

    @abstractmethod
    def flush(self) -> str:
        """The answer ended: return whatever was held back."""


class PassThroughStream(OutputStream):
    """No rewriting: every delta goes out as it came."""

    def push(self, delta: str) -> str:
        return delta

    def flush(self) -> str:
        return ""


class Rails(ABC):
    """Checks what goes into and comes out of the assistant."""

    enabled: bool = True

    @abstractmethod
    async def check_input(self, messages: list[ChatMessage]) -> RailResult:
        """Vet the conversation before any model sees it."""

    @abstractmethod
    async def check_output(self, text: str) -> RailResult:
        """Vet the answer before the user sees it."""

    @abstractmethod
    async def check_retrieval(self, chunks: list[str]) -> list[RailResult]:
        """Vet retrieved passages before they reach a prompt: one verdict per chunk, in order (blocked = drop it,
        allowed = use `text`)."""

    @abstractmethod
    async def check_tool_input(self, tool_name: str, text: str) -> RailResult:
        """Vet what an agent sends to a tool (code for `run_python`, Cypher for `graph_query`)."""

    def output_stream(self) -> OutputStream:
        """A rewriter for one streamed answer (default: none)."""
        return PassThroughStream()


class DisabledRails(Rails):
    """No rails configured (`guardrails.enabled: false`): everything passes unchanged."""

    enabled = False

    async def check_input(self, messages: list[ChatMessage]) -> RailResult:
        return RailResult(allowed=True, messages=messages)

    async def check_output(self, text: str) -> RailResult:
        return RailResult(allowed=True, text=text)

    async def check_retrieval(self, chunks: list[str]) -> list[RailResult]:
        return [RailResult(allowed=True, text=chunk) for chunk in chunks]

    async def check_tool_input(self, tool_name: str, text: str) -> RailResult:
        return RailResult(allowed=True, text=text)

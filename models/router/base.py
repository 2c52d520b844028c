"""The router seam: a conversation in, a `RouteDecision` that explains itself out."""

from abc import ABC, abstractmethod
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from chimera.messages import ChatMessage
from chimera.models.specs import ExpertName


class RouteDecision(BaseModel):
    """Which expert answers, how sure the router is, why, and who came second."""

    model_config = ConfigDict(frozen=True)

    expert: ExpertName
    confidence: float = Field(ge=0.0, le=1.0)
    signals: tuple[str, ...] = Field((), description="Evidence that fired, e.g. `code_fence`, `math_notation`.")
    runner_up: ExpertName | None = None
    explicit: bool = Field(False, description="The request named the expert; the router did not choose.")

    def as_attributes(self) -> dict[str, str | float | bool]:
        """Flat attributes for spans and headers."""
        return {
            "chimera.route.expert": self.expert,
            "chimera.route.confidence": self.confidence,
            "chimera.route.signals": ",".join(self.signals),
            "chimera.route.runner_up": self.runner_up or "",
            "chimera.route.explicit": self.explicit,
        }


class Router(ABC):
    """Chooses an expert for a conversation. `load` maps expert → requests in flight (may be empty)."""

    @abstractmethod
    def route(self, conversation: list[ChatMessage], *, load: Mapping[str, int] | None = None) -> RouteDecision:
        """Decide which expert answers the conversation's newest user turn."""

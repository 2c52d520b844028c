"""The router seam: a conversation in, a `RouteDecision` that explains itself out."""

import json
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
    probabilities: dict[str, float] = Field(default_factory=dict, description="Calibrated P(expert), if learned.")
    spilled: bool = Field(False, description="Sent to the runner-up because the first choice was saturated.")
    explicit: bool = Field(False, description="The request named the expert; the router did not choose.")
    deep: bool = Field(False, description="The cascade's contextual stage decided (the static head was unsure).")

    def as_attributes(self) -> dict[str, str | float | bool]:
        """Flat attributes for spans and headers."""
        return {
            "chimera.route.expert": self.expert,
            "chimera.route.confidence": self.confidence,
            "chimera.route.signals": ",".join(self.signals),
            "chimera.route.runner_up": self.runner_up or "",
            "chimera.route.probabilities": json.dumps(self.probabilities, sort_keys=True),
            "chimera.route.spilled": self.spilled,
            "chimera.route.explicit": self.explicit,
            "chimera.route.deep": self.deep,
        }


class ExpertLoad(BaseModel):
    """Live load of the engine behind an expert, read from its deployment."""

    model_config = ConfigDict(frozen=True)

    ongoing: int = Field(ge=0, description="Requests the engine holds now (running or waiting).")
    capacity: int = Field(gt=0, description="Ongoing requests at which the expert counts as saturated.")
    healthy: bool = Field(True, description="False: the engine has no live replica (its last health poll failed).")

    @property
    def saturated(self) -> bool:
        """Cannot take more now: full, or without a live replica (so the router spills either way)."""
        return not self.healthy or self.ongoing >= self.capacity


class Router(ABC):
    """Chooses an expert for a conversation; `load` is each expert's live load (absent: unknown)."""

    blocking: bool = False  # True when `route` may run a model long enough that callers should leave the event loop

    @abstractmethod
    def route(
        self, conversation: list[ChatMessage], *, load: Mapping[ExpertName, ExpertLoad] | None = None
    ) -> RouteDecision:
        """Decide which expert answers the conversation's newest user turn."""

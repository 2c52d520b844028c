"""Router v0: cheap lexical signals (code fences and syntax, math notation, transform verbs), else chat.

A learned, conversation- and load-aware router replaces it (its own issue); this one is the seam's first
implementation and the fallback that needs no model.
"""

import re
from collections.abc import Mapping

from chimera.messages import ChatMessage, last_user_text
from chimera.models.router.base import ExpertLoad, RouteDecision, Router
from chimera.models.specs import ExpertName

_CODE = [
    ("code_fence", re.compile(r"```")),
    (
        "code_syntax",
        re.compile(r"\b(def|class|import|return|function|const|let|var|public|void|#include)\b|=>|;\s*$|\{\s*$", re.M),
    ),
    (
        "code_terms",
        re.compile(
            r"\b(python|javascript|typescript|java|c\+\+|rust|golang|sql|regex|bash|shell|function|bug|compile|"
            r"stack ?trace|exception|api|json|code|script|algorithm|unit tests?|refactor)\b",
            re.I,
        ),
    ),
]
_MATH = [
    ("math_notation", re.compile(r"\d\s*[-+*/^×÷=<>]\s*\d|√|∑|∫|\\frac|\bx\^\d|\d+%")),
    (
        "math_terms",
        re.compile(
            r"\b(calculate|compute|solve|equation|integral|derivative|probability|sum of|product of|how many|"
            r"how much|percent|average|mean|median|factorial|prime|algebra|matrix)\b",
            re.I,
        ),
    ),
]
_TEXT = [
    (
        "transform_verb",
        re.compile(
            r"\b(summari[sz]e|rewrite|rephrase|paraphrase|translate|proofread|shorten|simplify|extract|"
            r"classify|tl;?dr|write an? (email|essay|story|poem|letter|blog post|cover letter|ad))\b",
            re.I,
        ),
    ),
]
_WEIGHTS: dict[str, float] = {
    "code_fence": 3.0, "code_syntax": 2.0, "code_terms": 1.0,
    "math_notation": 2.0, "math_terms": 1.0,
    "transform_verb": 2.0,
}  # fmt: skip


class HeuristicRouter(Router):
    """Scores each expert by the weighted signals found in the newest user turn."""

    def __init__(self, default_expert: ExpertName = "chat") -> None:
        self.default_expert: ExpertName = default_expert

    def route(
        self, conversation: list[ChatMessage], *, load: Mapping[ExpertName, ExpertLoad] | None = None
    ) -> RouteDecision:
        text = last_user_text(conversation)
        scores: dict[ExpertName, float] = {"code": 0.0, "math": 0.0, "text": 0.0, "chat": 0.0}
        fired: list[str] = []
        for expert, rules in (("code", _CODE), ("math", _MATH), ("text", _TEXT)):
            for signal, pattern in rules:
                if pattern.search(text):
                    scores[expert] += _WEIGHTS[signal]
                    fired.append(signal)
        ranked = sorted(scores, key=lambda e: scores[e], reverse=True)
        best, second = ranked[0], ranked[1]
        if scores[best] == 0.0:
            return RouteDecision(expert=self.default_expert, confidence=0.5, signals=(), runner_up=None)
        total = sum(scores.values())
        runner_up = second if scores[second] > 0 else self.default_expert
        # A share of the evidence, shrunk towards 0.5 when little fired: one weak keyword is not certainty.
        confidence = round(0.5 + 0.5 * (scores[best] / total) * min(1.0, scores[best] / 3.0), 3)
        return RouteDecision(expert=best, confidence=confidence, signals=tuple(fired), runner_up=runner_up)

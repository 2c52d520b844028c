"""The learned, conversation-aware, load-aware router (Chimera's MoE gate).

Per user turn: MiniLM embedding ⊕ lexical signals → calibrated P(expert) from a `Gate` (one head, or the static →
contextual cascade). Over the conversation: evidence decays by `turn_decay` per turn, and the conversation keeps
its expert (hysteresis) unless a turn is confidently a request for another specialist. Under load: a saturated
expert's request spills to the runner-up when the two are close, like tokens over an MoE expert's capacity going
to their second choice.
"""

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from chimera.config import RouterConfig
from chimera.messages import ChatMessage
from chimera.models.router.base import ExpertLoad, RouteDecision, Router
from chimera.models.router.gates import Gate, GateScores
from chimera.models.router.signals import extract_signals, has_words
from chimera.models.specs import ExpertName


class LearnedRouter(Router):
    """Routes with a trained `Gate` over MiniLM features and the lexical signals.

    Each message's scores are cached by its text, so a long conversation costs one new turn per request.
    """

    def __init__(self, gate: Gate, policy: RouterConfig | None = None, *, cache_size: int = 8192) -> None:
        self.gate = gate
        self.blocking = gate.blocking
        self.policy = policy or RouterConfig()
        self.labels: tuple[ExpertName, ...] = gate.labels
        self._cache: OrderedDict[bytes, tuple[np.ndarray, bool]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def score(self, texts: list[str]) -> GateScores:
        """Calibrated P(expert) per text, in `self.labels` order, and whether the deep stage answered."""
        keys = [hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts]
        with self._lock:
            known = {k: self._cache[k] for k in keys if k in self._cache}
            missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in known}
            if missing:
                fresh = self.gate.score(list(missing.values()))
                known.update(zip(missing, zip(fresh.probabilities, fresh.deep.tolist(), strict=True), strict=True))
            for key in keys:
                self._cache[key] = known[key]
                self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return GateScores(np.stack([known[k][0] for k in keys]), np.array([known[k][1] for k in keys], dtype=bool))

    def route(
        self, conversation: list[ChatMessage], *, load: Mapping[ExpertName, ExpertLoad] | None = None
    ) -> RouteDecision:
        policy = self.policy
        turns = [m.content for m in conversation if m.role == "user"]
        if not turns:
            return self._default("no_user_turn")
        if not has_words(turns[-1]):
            return self._default("no_words" if turns[-1].strip() else "empty_text")
        turns = [t for t in turns[-policy.max_turns :] if has_words(t)]

        scores = self.score(turns)
        probs = scores.probabilities  # (T, K)
        evidence = np.zeros(len(self.labels))  # (K,)
        expert: int | None = None
        notes: list[str] = []
        # Out of context a follow-up ("now make it faster", "and in German?") looks like the generalist's
        # kind of request, because the head learned from standalone prompts. So generalist-looking turns never
        # move a conversation away from a specialist; only a confident specialist turn switches.
        fallback = self.labels.index(policy.default_expert)
        margin = policy.hysteresis_margin
        for p in probs:
            evidence = policy.turn_decay * evidence + p
            combined = evidence / evidence.sum()
            newest_top, combined_top = int(p.argmax()), int(combined.argmax())
            if expert is None:
                expert = combined_top
            elif newest_top not in (expert, fallback) and p[newest_top] >= policy.switch_confidence:
                expert, notes = newest_top, ["topic_switch"]
            elif combined_top not in (expert, fallback) and combined[combined_top] - combined[expert] > margin:
                expert, notes = combined_top, ["drift"]
            else:
                notes = ["kept_conversation_expert"] if newest_top != expert else []
        assert expert is not None  # turns is not empty
        combined = evidence / evidence.sum()
        order = [int(i) for i in np.argsort(-combined)]
        runner = next(i for i in order if i != expert)
        deep = bool(scores.deep[-1])
        signals = [*extract_signals(turns[-1]).fired, *notes, *(["cascade_deep"] if deep else [])]
        probabilities = {label: round(float(combined[i]), 4) for i, label in enumerate(self.labels)}

        chosen, confidence = self.labels[expert], float(combined[expert])
        if len(turns) == 1 and confidence < policy.min_confidence:
            signals.append("low_confidence")
            chosen = policy.default_expert
        runner_up = self.labels[runner] if self.labels[runner] != chosen else self.labels[expert]

        spilled = False
        if load and _saturated(load, chosen) and not _saturated(load, runner_up):
            if probabilities[chosen] - probabilities[runner_up] <= policy.spill_margin:
                chosen, runner_up, spilled = runner_up, chosen, True
                signals.append("spilled_over_capacity")
            else:
                signals.append("saturated_but_confident")
        return RouteDecision(
            expert=chosen,
            confidence=round(probabilities[chosen], 4),
            signals=tuple(signals),
            runner_up=runner_up,
            probabilities=probabilities,
            spilled=spilled,
            deep=deep,
        )

    def _default(self, reason: str) -> RouteDecision:
        return RouteDecision(expert=self.policy.default_expert, confidence=0.0, signals=(reason,), runner_up=None)


def _saturated(load: Mapping[ExpertName, ExpertLoad], expert: ExpertName) -> bool:
    entry = load.get(expert)
    return entry is not None and entry.saturated

"""The offline checks behind the NeMo actions: input (templates, classifiers, PII) and retrieved passages.

They are plain synchronous functions over CPU models, run on the rails' own one-thread executor (see
`nemo_rails`). A check that fails with an exception blocks the input (fails closed) and logs why: a broken
jailbreak detector must not wave attacks through.
"""

import logging
import re
from dataclasses import dataclass
from typing import Literal

from chimera.guardrails.classifier import TASKS, GuardHeads, TaskScorer
from chimera.guardrails.features import GuardFeaturizer
from chimera.guardrails.normalize import for_detection, strip_invisible
from chimera.guardrails.patterns import JAILBREAK_TEMPLATES, RETRIEVAL_INJECTIONS, first_match
from chimera.guardrails.pii import PiiMasker

log = logging.getLogger(__name__)

RAIL_BY_TASK = {"jailbreak": "jailbreak_classifier", "harmful": "harmful_classifier"}
_SENTENCE = re.compile(r"[^.!?\n]*(?:[.!?]+|\n|$)")
NEUTRALISED = "[removed: text addressed to the assistant]"


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: blocked or not, by which rail, with what score, and the text to go on with."""

    blocked: bool
    text: str
    rail: str = ""
    score: float | None = None
    reason: str = ""


class GuardClassifier:
    """The featurizer and both tasks' scorers, with their thresholds (overridable per task)."""

    def __init__(self, featurizer: GuardFeaturizer, heads: GuardHeads, thresholds: dict[str, float] | None = None):
        self.featurizer = featurizer
        self.scorers = {task: TaskScorer(heads.heads[task], featurizer.lexical_size) for task in TASKS}
        self.thresholds = {task: heads.heads[task].threshold for task in TASKS} | (thresholds or {})

    def scores(self, texts: list[str]) -> dict[str, list[float]]:
        """Each task's score per text (texts already `for_detection`-ed)."""
        features = self.featurizer.features(texts)
        return {task: scorer.scores(features).tolist() for task, scorer in self.scorers.items()}


class InputChecker:
    """Templates, then the jailbreak and harmful classifiers, then PII masking, on one user message."""

    def __init__(self, classifier: GuardClassifier, masker: PiiMasker) -> None:
        self.classifier = classifier
        self.masker = masker

    def check(self, text: str) -> Verdict:
        visible = strip_invisible(text)
        if not visible.strip():
            return Verdict(blocked=False, text=visible)
        try:
            seen = for_detection(text)
            rule = first_match(JAILBREAK_TEMPLATES, seen)
            if rule is not None:
                return Verdict(True, visible, "jailbreak_template", 1.0, f"matches the `{rule.name}` template")
            scores = self.classifier.scores([seen])
        except Exception as e:  # fail closed: an attack must not pass because the detector broke
            log.exception("jailbreak rails failed; blocking the request")
            return Verdict(True, visible, "jailbreak_classifier", None, f"rail error: {type(e).__name__}: {e}")
        for task in TASKS:
            score = scores[task][0]
            if score > self.classifier.thresholds[task]:
                return Verdict(True, visible, RAIL_BY_TASK[task], score, f"{task} score above threshold")
        try:
            masked = self.masker.mask(visible)
        except Exception as e:  # unmasked PII must not reach the model or the logs either
            log.exception("PII rail failed; blocking the request")
            return Verdict(True, visible, "pii", None, f"rail error: {type(e).__name__}: {e}")
        top = max(TASKS, key=lambda t: scores[t][0] - self.classifier.thresholds[t])
        rail = "pii" if masked != visible else ""
        return Verdict(False, masked, rail, scores[top][0], "")


class RetrievalChecker:
    """Passages that address the model are dropped (or have those sentences cut); PII in the rest is masked."""

    def __init__(self, masker: PiiMasker, mode: Literal["drop", "neutralise"] = "drop") -> None:
        self.masker = masker
        self.mode = mode

    def check(self, text: str) -> Verdict:
        rule = first_match(RETRIEVAL_INJECTIONS, for_detection(text))
        if rule is not None and self.mode == "drop":
            return Verdict(True, "", "retrieval_injection", 1.0, f"matches `{rule.name}`")
        if rule is not None:
            text = "".join(
                NEUTRALISED + " " if first_match(RETRIEVAL_INJECTIONS, for_detection(s)) else s
                for s in _SENTENCE.findall(text)
            )
        masked = self.masker.mask(strip_invisible(text))
        rail = "retrieval_injection" if rule is not None else ("pii" if masked != text else "")
        return Verdict(False, masked, rail, 1.0 if rule is not None else None, rule.name if rule else "")

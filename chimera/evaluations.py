"""The evaluations, as functions that return their JSON report: `chimera eval …` prints them, eval tasks store them."""

import asyncio
import tempfile
from pathlib import Path
from typing import Any, Literal

from chimera.config import ChimeraConfig
from chimera.errors import ChimeraError

Evaluation = Literal["router", "guard", "retrieval", "pii"]


def run_evaluation(
    config: ChimeraConfig, which: Evaluation, data: Path, *, max_queries: int | None = None, progress: bool = False
) -> dict[str, Any]:
    """Score the configured router, input rails or PII masking on a labelled JSONL file, or every retriever on a
    BEIR folder.

    Raises:
        ChimeraError: the data is missing or malformed.
    """
    if which == "retrieval":
        return _retrieval(config, data, max_queries, progress)
    if not data.is_file():
        raise ChimeraError(f"no such data file: {data}")
    if which == "pii":
        return _pii(config, data)
    return _router(config, data) if which == "router" else _guard(config, data)


def _router(config: ChimeraConfig, data: Path) -> dict[str, Any]:
    from chimera.models.router.evaluation import evaluate_router
    from chimera.models.router.factory import build_router
    from chimera.models.router.gating import load_labelled

    prompts = load_labelled([data], min_labels=1)
    report = evaluate_router(build_router(config.router), prompts.texts, prompts.labels)
    return {**report, "data": str(data), "router": config.router.kind}


def _guard(config: ChimeraConfig, data: Path) -> dict[str, Any]:
    from chimera.guardrails.data import load_examples
    from chimera.guardrails.evaluation import evaluate_guard
    from chimera.guardrails.factory import build_rails

    examples = load_examples(data)
    with tempfile.TemporaryDirectory(prefix="chimera-eval-guard-") as scratch:
        # no verdict cache: every prompt pays the full input rails, as a new message does
        rails = build_rails(config.guardrails.model_copy(update={"enabled": True}), Path(scratch), cache_size=0)
        report = asyncio.run(evaluate_guard(rails, examples))
    return {**report, "data": str(data)}


def _pii(config: ChimeraConfig, data: Path) -> dict[str, Any]:
    from chimera.guardrails.pii import PiiMasker
    from chimera.guardrails.pii_evaluation import evaluate_pii, load_pii_examples

    examples = load_pii_examples(data)
    with tempfile.TemporaryDirectory(prefix="chimera-eval-pii-") as scratch:
        masker = PiiMasker(Path(scratch) / "spacy-blank-en", entities=config.guardrails.pii_entities)
        report = evaluate_pii(masker, examples, stream_window=config.guardrails.stream_window_chars)
    return {**report, "data": str(data)}


def _retrieval(config: ChimeraConfig, beir: Path, max_queries: int | None, progress: bool) -> dict[str, Any]:
    from chimera.tools.search.evaluation import evaluate_beir, load_beir
    from chimera.tools.search.factory import build_ingestor, open_index

    dataset = load_beir(beir)
    with (
        tempfile.TemporaryDirectory(prefix="chimera-eval-") as scratch,
        open_index(config.search, Path(scratch)) as index,
    ):
        ingestor = build_ingestor(config.search, index, None)
        return dict(evaluate_beir(dataset, index, ingestor, max_queries=max_queries, progress=progress))

"""Build the configured router, its embedders and its gate."""

from pathlib import Path

from chimera.config import RouterConfig
from chimera.models.embedding.base import Embedder
from chimera.models.router.base import Router
from chimera.models.router.gates import Gate


def build_embedder(kind: str, max_tokens: int) -> Embedder:
    """`static` (word-piece vectors, fast) or `contextual` (the full sentence-transformer), both from MiniLM."""
    from chimera.models.embedding.minilm import SentenceEmbedder, StaticEmbedder

    return StaticEmbedder(max_tokens=max_tokens) if kind == "static" else SentenceEmbedder(max_tokens=max_tokens)


def build_gate(kind: str, head_path: Path | None, max_tokens: int) -> Gate:
    """The gate for an embedder kind (`static`, `contextual` or `cascade`) with its head (default: the packaged one).

    Raises:
        GatingError: the head is missing, malformed, or was trained for another kind.
    """
    from chimera.models.router.gates import CascadeGate, CascadeHead, HeadGate
    from chimera.models.router.gating import GatingError, GatingHead, packaged_head

    path = head_path or packaged_head(kind)
    if kind == "cascade":
        cascade = CascadeHead.load(path)
        contextual_tokens = int(cascade.meta["contextual_max_tokens"])  # the length the deep head was trained on
        return CascadeGate(build_embedder("static", max_tokens), build_embedder("contextual", contextual_tokens),
                           cascade)  # fmt: skip
    head = GatingHead.load(path)
    if head.meta.get("embedder") != kind:
        raise GatingError(f"the head was trained on `{head.meta.get('embedder')}` features, the config asks for "
                          f"`{kind}`: set router.embedder to match, or retrain")  # fmt: skip
    return HeadGate(build_embedder(kind, max_tokens), head)


def build_router(config: RouterConfig) -> Router:
    """The router `config.kind` names; the learned one loads its embedders and gate here.

    Raises:
        GatingError, EmbedderError: the head or the embedding model is missing or they do not fit each other.
    """
    if config.kind == "heuristic":
        from chimera.models.router.heuristic import HeuristicRouter

        return HeuristicRouter(config.default_expert)
    from chimera.models.router.learned import LearnedRouter

    router = LearnedRouter(build_gate(config.embedder, config.head, config.embedder_max_tokens), config)
    router.gate.warm_up()
    return router

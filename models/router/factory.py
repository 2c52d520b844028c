"""Build the configured router and its embedder."""

from chimera.config import RouterConfig
from chimera.models.embedding.base import Embedder
from chimera.models.router.base import Router


def build_embedder(kind: str, max_tokens: int) -> Embedder:
    """`static` (word-piece vectors, fast) or `contextual` (the full sentence-transformer), both from MiniLM."""
    from chimera.models.embedding.minilm import SentenceEmbedder, StaticEmbedder

    return StaticEmbedder(max_tokens=max_tokens) if kind == "static" else SentenceEmbedder(max_tokens=max_tokens)


def build_router(config: RouterConfig) -> Router:
    """The router `config.kind` names; the learned one loads its embedder and head here.

    Raises:
        GatingError, EmbedderError: the head or the embedding model is missing or they do not fit each other.
    """
    if config.kind == "heuristic":
        from chimera.models.router.heuristic import HeuristicRouter

        return HeuristicRouter(config.default_expert)
    from chimera.models.router.gating import GatingError, GatingHead, packaged_head
    from chimera.models.router.learned import LearnedRouter

    head = GatingHead.load(config.head or packaged_head(config.embedder))
    if head.meta.get("embedder") != config.embedder:
        raise GatingError(f"the head was trained on `{head.meta.get('embedder')}` features, the config asks for "
                          f"`{config.embedder}`: set router.embedder to match, or retrain")  # fmt: skip
    router = LearnedRouter(build_embedder(config.embedder, config.embedder_max_tokens), head, config)
    router.probabilities(["warm-up"])  # load now, and fail at startup if the head does not fit the embedder
    return router

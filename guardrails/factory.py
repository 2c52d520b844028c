"""Build the configured rails: `DisabledRails`, or NeMo Guardrails with Chimera's offline actions."""

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from chimera.config import GuardrailsConfig
from chimera.guardrails.base import DisabledRails, Rails
from chimera.guardrails.errors import RailsConfigError

if TYPE_CHECKING:
    from nemoguardrails import RailsConfig

CONFIG_DIR = Path(__file__).parent / "config"


def rails_config(config: GuardrailsConfig) -> "RailsConfig":
    """NeMo's config from `config/` plus, when `self_check.enabled`, the self-check rails on an OpenAI endpoint.

    Raises:
        RailsConfigError: NeMo rejects the configuration.
    """
    from nemoguardrails import RailsConfig

    raw: dict[str, Any] = yaml.safe_load((CONFIG_DIR / "config.yml").read_text())
    if config.self_check.enabled:
        check = config.self_check
        parameters: dict[str, Any] = {"base_url": check.base_url, "temperature": 0.0, "max_tokens": 3}
        main = {"type": "main", "engine": "openai", "model": check.model, "parameters": parameters}
        if check.api_key_env:
            main["api_key_env_var"] = check.api_key_env
        raw["models"] = [*raw["models"], main]
        raw["rails"]["input"]["flows"] = [*raw["rails"]["input"]["flows"], "self check input"]
        raw["rails"]["output"]["flows"] = [*raw["rails"]["output"]["flows"], "self check output"]
        raw.update(yaml.safe_load((CONFIG_DIR / "self_check.yml").read_text()))
    try:
        return RailsConfig.from_content(
            yaml_content=yaml.safe_dump(raw), colang_content=(CONFIG_DIR / "rails.co").read_text()
        )
    except Exception as e:  # NeMo raises plain ValueError / pydantic errors for a bad config
        raise RailsConfigError(f"NeMo Guardrails rejects the rails config: {e}") from e


def register_embedding_provider() -> None:
    """Serve NeMo's embedding needs from the packaged MiniLM (`engine: chimera_minilm`), so FastEmbed never loads."""
    from nemoguardrails.embeddings.providers import register_embedding_provider as register
    from nemoguardrails.embeddings.providers.base import EmbeddingModel

    from chimera.models.embedding.minilm import SentenceEmbedder

    class PackagedMiniLM(EmbeddingModel):
        engine_name = "chimera_minilm"

        def __init__(self, embedding_model: str, **_: Any) -> None:
            self.model = SentenceEmbedder()

        def encode(self, documents: list[str]) -> list[list[float]]:
            return self.model.embed(documents).tolist()

        async def encode_async(self, documents: list[str]) -> list[list[float]]:
            return self.encode(documents)

    register(PackagedMiniLM)


def build_rails(config: GuardrailsConfig, data_dir: Path, *, cache_size: int = 4096) -> Rails:
    """The rails `config` asks for, loaded now (models, heads, YARA rules) so that a broken install fails at start.

    Raises:
        GuardModelError, RailsConfigError: a heads file, the embedding model or the rails config is unusable.
    """
    if not config.enabled:
        return DisabledRails()
    from nemoguardrails import LLMRails

    from chimera.guardrails.checks import GuardClassifier, InputChecker, RetrievalChecker
    from chimera.guardrails.classifier import PACKAGED_HEADS, GuardHeads
    from chimera.guardrails.features import GuardFeaturizer
    from chimera.guardrails.nemo_rails import NemoRails, quiet_nemo
    from chimera.guardrails.pii import PiiMasker
    from chimera.guardrails.tool_input import ToolInputScanner

    quiet_nemo()
    register_embedding_provider()
    overrides = {"jailbreak": config.jailbreak_threshold, "harmful": config.harmful_threshold}
    thresholds = {task: value for task, value in overrides.items() if value is not None}
    classifier = GuardClassifier(GuardFeaturizer(), GuardHeads.load(config.heads or PACKAGED_HEADS), thresholds)
    masker = PiiMasker(data_dir / "guardrails" / "spacy-blank-en", entities=config.pii_entities)
    rails = NemoRails(
        LLMRails(rails_config(config)),
        InputChecker(classifier, masker),
        RetrievalChecker(masker, config.retrieval),
        masker,
        ToolInputScanner(config.tool_rules),
        max_user_turns=config.max_user_turns,
        cache_size=cache_size,
        stream_window=config.stream_window_chars,
    )
    # load what the libraries build lazily (phone metadata, the suffix list) now, not in the first request's time
    InputChecker(classifier, masker).check("warm-up: mail a.b@example.com or call +1 212 736 5000")
    return rails

"""What several unit modules share: the NeMo rails, built once (loading them takes seconds)."""

import pytest

from chimera.config import GuardrailsConfig
from chimera.guardrails.factory import build_rails
from chimera.guardrails.nemo_rails import NemoRails


@pytest.fixture(scope="session")
def nemo_rails(tmp_path_factory: pytest.TempPathFactory) -> NemoRails:
    """The configured rails with the packaged heads, no verdict cache (every check runs)."""
    built = build_rails(GuardrailsConfig(), tmp_path_factory.mktemp("guard"), cache_size=0)
    assert isinstance(built, NemoRails)
    return built

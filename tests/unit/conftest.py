"""What several unit modules share: the NeMo rails, built once (loading them takes seconds); the service on a
scripted engine, in process and over real HTTP, for the module's own `config` fixture."""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from chimera.config import ChimeraConfig, GuardrailsConfig
from chimera.guardrails.factory import build_rails
from chimera.guardrails.nemo_rails import NemoRails
from chimera.service import Service
from tests.unit.fakes import ScriptedEngine
from tests.unit.http_server import in_process, served


@pytest.fixture(scope="session")
def nemo_rails(tmp_path_factory: pytest.TempPathFactory) -> NemoRails:
    """The configured rails with the packaged heads, no verdict cache (every check runs)."""
    built = build_rails(GuardrailsConfig(), tmp_path_factory.mktemp("guard"), cache_size=0)
    assert isinstance(built, NemoRails)
    return built


@pytest.fixture
async def scripted_stack(
    config: ChimeraConfig, redis_url: str, nemo_rails: NemoRails
) -> AsyncIterator[tuple[Service, ScriptedEngine, httpx.AsyncClient]]:
    """The service on a scripted engine with no replies yet (append them), and a client of its app."""
    engine = ScriptedEngine([])
    async with in_process(config, engine, redis_url, nemo_rails) as (service, http):
        yield service, engine, http


@pytest.fixture(scope="module")
def scripted_url(config: ChimeraConfig, redis_url: str, nemo_rails: NemoRails) -> Iterator[tuple[str, ScriptedEngine]]:
    """The service on a scripted engine under uvicorn: its base URL and the engine."""
    engine = ScriptedEngine([])
    with served(config, engine, redis_url, nemo_rails) as url:
        yield url, engine

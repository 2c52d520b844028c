"""The `LLMEngine` contract on `VLLMEngine`: real vLLM on CPU with the packaged SmolLM2-135M-Instruct.

One engine serves the whole module (starting one costs far more than the suite's few-token generations), on the
module's event loop: vLLM's output handler lives on the loop the engine started on.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chimera.models.engine.vllm_engine import VLLMEngine
from chimera.models.specs import EngineSpec
from tests.contracts.llm_engine import LLMEngineContract

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONTEXT_WINDOW = 512


def _spec(model_dir: Path) -> EngineSpec:
    return EngineSpec(
        model=str(model_dir),
        served_name="SmolLM2-135M-Instruct",
        dtype="float32",
        max_model_len=CONTEXT_WINDOW,
        kv_cache_memory_bytes=128 << 20,  # ~2.9k tokens of KV: the suite runs at most three short sequences at once
        max_num_seqs=4,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vllm_engine(model_dir: Path) -> AsyncIterator[VLLMEngine]:
    engine = VLLMEngine(_spec(model_dir))
    await engine.start()
    yield engine
    await engine.shutdown()


class TestVLLMEngine(LLMEngineContract):
    @pytest.fixture
    def engine(self, vllm_engine: VLLMEngine) -> VLLMEngine:
        return vllm_engine

    @pytest.fixture
    def stopped_engine(self, model_dir: Path) -> VLLMEngine:
        return VLLMEngine(_spec(model_dir))  # never started: nothing loads

    @pytest.fixture
    def context_window(self) -> int:
        return CONTEXT_WINDOW

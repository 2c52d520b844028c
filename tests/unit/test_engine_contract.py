"""The `LLMEngine` contract on the scripted fake that graph-logic tests use (tests/unit/fakes.py)."""

import pytest

from tests.contracts.llm_engine import LLMEngineContract
from tests.unit.fakes import ScriptedEngine

REPLY = " ".join(f"word{i}" for i in range(80))


class TestScriptedEngine(LLMEngineContract):
    @pytest.fixture
    def context_window(self) -> int:
        return 512

    @pytest.fixture
    def engine(self, context_window: int) -> ScriptedEngine:
        return ScriptedEngine([REPLY] * 20, context_window=context_window)

    @pytest.fixture
    async def stopped_engine(self) -> ScriptedEngine:
        engine = ScriptedEngine([REPLY])
        await engine.shutdown()
        return engine

    async def test_json_schema_output_satisfies_the_schema(self, engine: ScriptedEngine) -> None:
        pytest.skip("a script's replies are the test's choice: there is no decoding for a grammar to constrain")

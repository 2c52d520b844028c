"""The vLLM engine on CUDA with the GPU-node settings; skipped where no GPU is visible."""

import json
import uuid
from pathlib import Path

import pytest

from chimera.messages import ChatMessage
from chimera.models import provision
from chimera.models.engine.base import GenerationRequest
from chimera.models.engine.vllm_engine import VLLMEngine
from chimera.models.specs import EngineSpec

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

ROOT = Path(__file__).parents[2]


async def test_bf16_engine_on_gpu_answers_and_obeys_a_schema() -> None:
    model = provision.prepare("smollm2-135m-instruct", ROOT / ".chimera")
    spec = EngineSpec(model=str(model), dtype="bfloat16", max_model_len=4096, gpu_memory_utilization=0.3)
    engine = VLLMEngine(spec)
    await engine.start()
    try:
        ask = [ChatMessage(role="user", content="What is the capital of France?")]
        request = GenerationRequest(request_id=uuid.uuid4().hex, messages=ask, max_tokens=32)
        text = "".join([d.text async for d in engine.generate(request)])
        assert "Paris" in text
        schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
        guided = request.model_copy(update={"request_id": uuid.uuid4().hex, "json_schema": schema})
        assert isinstance(json.loads("".join([d.text async for d in engine.generate(guided)]))["city"], str)
    finally:
        await engine.shutdown()

"""Engines placed on real GPUs through Ray Serve: a tensor-parallel replica in one STRICT_PACK placement group, and
two engines on GPUs of their own. Skipped without CUDA; the second test needs two GPUs, the first two as well
(tensor parallel size 2). Run on a lent GPU machine: `pytest tests/gpu`."""

import asyncio
import uuid
from pathlib import Path

import pytest
import yaml

from chimera.cluster.engines import start_engines, stop_engines
from chimera.cluster.ray_runtime import ray_connection
from chimera.cluster.status import engine_replicas
from chimera.config import ChimeraConfig
from chimera.messages import ChatMessage
from chimera.models.engine.base import GenerationRequest, LLMEngine

torch = pytest.importorskip("torch")
GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
pytestmark = pytest.mark.skipif(GPUS < 2, reason="needs two CUDA GPUs")

ROOT = Path(__file__).parents[2]


def _config(tmp_path: Path, model_dir: Path, engines: dict[str, dict[str, object]]) -> ChimeraConfig:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    base = {"model": str(model_dir), "dtype": "bfloat16", "max_model_len": 2048, "gpu_memory_utilization": 0.2,
            "gpus_per_worker": 1, "num_cpus": 1}  # fmt: skip
    raw["engines"] = {name: base | fields for name, fields in engines.items()}
    names = list(engines)
    for i, expert in enumerate(("code", "math", "text", "chat")):
        raw["experts"][expert]["engine"] = names[i % len(names)]
    raw["data_dir"] = str(tmp_path)
    raw["ray"] = {"num_cpus": 4}
    return ChimeraConfig.model_validate(raw)


async def _answer(engine: LLMEngine) -> str:
    ask = [ChatMessage(role="user", content="What is the capital of France?")]
    request = GenerationRequest(request_id=uuid.uuid4().hex, messages=ask, max_tokens=16)
    return "".join([d.text async for d in engine.generate(request)])


def test_a_tensor_parallel_replica_gets_two_gpus_of_one_node(tmp_path: Path, model_dir: Path) -> None:
    import ray

    config = _config(tmp_path, model_dir, {"tp": {"tensor_parallel_size": 2}})
    with ray_connection(config):
        engines = start_engines(config)
        try:
            assert "Paris" in asyncio.run(_answer(engines["tp"]))
            (replica,) = engine_replicas(config)["tp"]["replicas"]
            groups = [g for g in ray.util.placement_group_table().values() if g["state"] == "CREATED"]
            bundles = [b for g in groups for b in g["bundles"].values()]
            assert sum(b.get("GPU", 0) for b in bundles) == 2 and replica["state"] == "RUNNING"
            assert any(g["strategy"] == "STRICT_PACK" for g in groups)
        finally:
            stop_engines(list(engines))


def test_two_engines_each_get_a_gpu_of_their_own(tmp_path: Path, model_dir: Path) -> None:
    import ray

    config = _config(tmp_path, model_dir, {"first": {}, "second": {}})
    with ray_connection(config):
        engines = start_engines(config)
        try:
            for engine in engines.values():
                assert "Paris" in asyncio.run(_answer(engine))
            assert ray.available_resources().get("GPU", 0) == GPUS - 2  # one GPU reserved per engine replica
        finally:
            stop_engines(list(engines))

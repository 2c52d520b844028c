"""`MambaMemory` on a local Ray cluster and a real redis-server, with tiny random Mamba-2 checkpoints: the
`LongMemory` contract (tests/contracts/long_memory.py), then what only Mamba has: states survive the replica that
read them, any replica recalls alike, concurrent reads of one session serialize across replicas, bad states are
refused without killing the actor, and 10 MB stream in bounded memory."""

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import torch
import yaml

from chimera.cluster.ray_runtime import ray_connection
from chimera.config import MemoryConfig, RayConfig, TracingConfig, load_config
from chimera.memory.long_context.base import CorruptStateError, StateMismatchError
from chimera.memory.long_context.factory import build_long_memory, describe
from chimera.memory.long_context.mamba import MambaMemory
from chimera.memory.long_context.state_store import state_key
from chimera.models.memory.mamba import MemoryModel
from chimera.models.memory.state import MemoryState
from chimera.tools.recall import Recall
from tests.contracts.long_memory import LongMemoryContract, Stored
from tests.unit import tiny_mamba

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
CHUNK = 4096
MiB = 1 << 20


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two checkpoints of the same shape with different weights: two model revisions."""
    root = tmp_path_factory.mktemp("checkpoints")
    return tiny_mamba.save_mamba2(root / "a", seed=0), tiny_mamba.save_mamba2(root / "b", seed=1)


def _config(checkpoint: Path) -> MemoryConfig:
    return MemoryConfig(checkpoint=checkpoint, read_chunk_tokens=CHUNK, num_cpus=0.5)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    config = load_config(Path(__file__).parents[2] / "configs" / "local.yaml")
    ray = RayConfig(num_cpus=3, namespace="chimera-test-memory")
    with ray_connection(config.model_copy(update={"ray": ray, "tracing": TracingConfig(exporter="none")})):
        yield


@pytest.fixture(scope="module")
def replicas(ray_local: None, checkpoints: tuple[Path, Path], redis_url: str) -> Iterator[list[MambaMemory]]:
    """Two clients, each over its own actor of checkpoint A, so a test can choose which replica serves a call;
    and a third over checkpoint B (another revision). All three load in parallel."""
    a, b = checkpoints
    memories = [
        MambaMemory.start(_config(a), redis_url, name="a1"),
        MambaMemory.start(_config(a), redis_url, name="a2"),
    ]
    memories.append(MambaMemory.start(_config(b), redis_url, name="b"))
    yield memories
    for m in memories:
        asyncio.run(m.close())


@pytest.fixture(scope="module")
def reference(checkpoints: tuple[Path, Path]) -> Iterator[MemoryModel]:
    """Checkpoint A in this process, with the actors' chunking and thread count, for uninterrupted reads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield MemoryModel.load(checkpoints[0], chunk_tokens=CHUNK)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def raw(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def _read_in_order(model: MemoryModel, *texts: str) -> MemoryState:
    state = model.empty_state()
    for text in texts:
        model.read(state, text)
    return state


def _stored(raw: redis.Redis, model: MemoryModel, session: str) -> MemoryState:
    blob = raw.hget(state_key(session), "state")
    assert isinstance(blob, bytes)
    return MemoryState.from_bytes(blob, model.spec, model.revision)


def _assert_close(a: MemoryState, b: MemoryState) -> None:
    for x, y in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(x.conv, y.conv, atol=1e-5, rtol=0)
        torch.testing.assert_close(x.ssm, y.ssm, atol=1e-5, rtol=0)


class TestMambaMemory(LongMemoryContract):
    """The `LongMemory` contract, on the first replica of checkpoint A."""

    verbatim = False  # random weights: answers are generated noise

    @pytest.fixture
    def memory(self, replicas: list[MambaMemory]) -> MambaMemory:
        return replicas[0]

    @pytest.fixture
    def stored(self, raw: redis.Redis) -> Stored:
        return lambda session: raw.hgetall(state_key(session))


async def test_state_restored_on_a_fresh_actor_continues_like_an_uninterrupted_read(
    replicas: list[MambaMemory],
    reference: MemoryModel,
    raw: redis.Redis,
    checkpoints: tuple[Path, Path],
    redis_url: str,
) -> None:
    first, second = tiny_mamba.text(6000, seed=1), tiny_mamba.text(6000, seed=2)
    reader = MambaMemory.start(_config(checkpoints[0]), redis_url)
    await reader.read("resumed", first)
    await reader.close()  # the replica that read the first text is gone; only Redis remembers it

    resumed = await replicas[1].read("resumed", second)
    for text in (first, second):
        await replicas[1].read("straight", text)

    assert raw.hget(state_key("resumed"), "state") == raw.hget(state_key("straight"), "state")
    uninterrupted = _read_in_order(reference, first, second)
    stored = _stored(raw, reference, "resumed")
    assert resumed.tokens_read == stored.tokens_read == uninterrupted.tokens_read
    assert stored.tokens_sha256 == uninterrupted.tokens_sha256
    _assert_close(stored, uninterrupted)
    probe = reference.tokenizer.encode(" Kalo mine", add_special_tokens=False)
    diff = (reference.forward(stored, probe) - reference.forward(uninterrupted, probe)).abs().max().item()
    assert diff < 1e-4


async def test_a_killed_memory_actor_is_restarted_and_its_sessions_go_on(
    checkpoints: tuple[Path, Path], redis_url: str
) -> None:
    """The actor's process dies (as in a crash: Ray may restart it); its sessions live in Redis, so the restarted
    actor continues them, and idempotent calls made across the restart are retried by Ray."""
    import ray

    memory = MambaMemory.start(_config(checkpoints[0]), redis_url, name="killed")
    try:
        before = await memory.read("survivor", tiny_mamba.text(2000, seed=3))
        (pid_before,) = [h.pid for h in await memory.health()]
        ray.kill(ray.get_actor("killed-0"), no_restart=False)  # the process dies; the restart policy revives it
        info = await memory.state_info("survivor")  # retried until the restarted actor answers
        assert info.tokens_read == before.tokens_read and info.revision == before.revision
        assert [h.pid for h in await memory.health()] != [pid_before]  # a new process: the constructor ran again
        after = await memory.read("survivor", tiny_mamba.text(500, seed=4))
        assert after.tokens_read > before.tokens_read
    finally:
        await memory.close()


async def test_any_replica_recalls_the_same_from_one_stored_state(replicas: list[MambaMemory]) -> None:
    await replicas[0].read("asked", tiny_mamba.text(2000, seed=3))

    answer = await replicas[0].recall("asked", "Kalo mine", max_tokens=16)

    assert answer.text
    assert (await replicas[1].recall("asked", "Kalo mine", max_tokens=16)).text == answer.text


async def test_concurrent_reads_of_one_session_on_two_replicas_serialize(
    replicas: list[MambaMemory], reference: MemoryModel, raw: redis.Redis
) -> None:
    a, b = tiny_mamba.text(25_000, seed=4), tiny_mamba.text(25_000, seed=5)

    infos = await asyncio.gather(replicas[0].read("shared", a), replicas[1].read("shared", b))

    ab, ba = _read_in_order(reference, a, b), _read_in_order(reference, b, a)
    stored = _stored(raw, reference, "shared")
    assert stored.tokens_read == ab.tokens_read  # both texts, no lost update
    assert stored.tokens_sha256 in {ab.tokens_sha256, ba.tokens_sha256}  # in one order or the other
    _assert_close(stored, ab if stored.tokens_sha256 == ab.tokens_sha256 else ba)
    na, nb = (_read_in_order(reference, t).tokens_read for t in (a, b))
    assert sorted(i.tokens_read for i in infos) in ([na, na + nb], [nb, na + nb])  # the second saw the first


async def test_state_of_another_revision_is_refused_never_mixed(replicas: list[MambaMemory], raw: redis.Redis) -> None:
    model_a, _, model_b = replicas
    await model_a.read("mixed", tiny_mamba.text(500, seed=6))
    before = raw.hgetall(state_key("mixed"))

    with pytest.raises(StateMismatchError, match="never mixed"):
        await model_b.read("mixed", tiny_mamba.text(50, seed=7))
    with pytest.raises(StateMismatchError):
        await model_b.recall("mixed", "Kalo")
    assert raw.hgetall(state_key("mixed")) == before

    await model_b.forget("mixed")
    info = await model_b.read("mixed", tiny_mamba.text(50, seed=7))
    assert info.revision == (await model_b.health())[0].revision
    assert info.revision.encode() != before[b"revision"]


async def test_corrupt_state_is_reported_and_the_actor_survives(replicas: list[MambaMemory], raw: redis.Redis) -> None:
    memory = replicas[0]
    text = tiny_mamba.text(300, seed=8)
    healthy = await memory.read("damaged", text)
    raw.hset(state_key("damaged"), "state", b"\x13not a safetensors blob" * 8)

    with pytest.raises(CorruptStateError, match="forget the session"):
        await memory.read("damaged", "more words")
    with pytest.raises(CorruptStateError):
        await memory.recall("damaged", "Kalo")
    raw.hset(state_key("damaged"), "tokens_read", "many")
    with pytest.raises(CorruptStateError):
        await memory.state_info("damaged")

    assert (await memory.health())[0].revision  # the actor still answers
    await memory.forget("damaged")
    assert await memory.read("damaged", text) == healthy  # rebuilt from scratch


async def test_ten_megabytes_stream_in_bounded_memory_while_other_sessions_proceed(
    replicas: list[MambaMemory],
) -> None:
    memory = replicas[0]
    await memory.read("warm-up", tiny_mamba.text(20_000, seed=9))  # full chunks: the forward pass's buffers exist
    peak_before = (await memory.health())[0].peak_rss_bytes
    big = tiny_mamba.text(1_450_000, seed=10)
    assert len(big) >= 10_000_000

    reading = asyncio.ensure_future(memory.read("big", big))
    other = await memory.read("small", tiny_mamba.text(200, seed=11))
    assert not reading.done()  # another session was served while the big read ran
    info = await reading

    growth = (await memory.health())[0].peak_rss_bytes - peak_before
    assert info.tokens_read > 1_500_000
    assert info.state_bytes == other.state_bytes  # constant state
    assert growth < 100 * MiB, f"peak RSS grew {growth / MiB:.0f} MiB reading 10 MB"


async def test_the_factory_and_the_recall_tool_use_the_mamba_memory(
    ray_local: None, checkpoints: tuple[Path, Path], redis_url: str
) -> None:
    memory = build_long_memory(_config(checkpoints[0]), redis_url)
    try:
        assert isinstance(memory, MambaMemory) and describe(memory).startswith("mamba")
        await memory.read("tool-session", tiny_mamba.text(300))
        answer = await Recall(memory, "tool-session", max_tokens=8).call({"query": "what was read?"})
        assert isinstance(answer, str) and answer  # random weights: some generated text, from a copy of the state
        assert (await memory.state_info("tool-session")).tokens_read > 300
    finally:
        await memory.close()


def test_memory_cli_in_mamba_mode_and_a_refused_checkpoint(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    raw["data_dir"] = str(tmp_path / "data")
    raw["ray"] = {"num_cpus": 2}
    doc = tmp_path / "doc.txt"
    doc.write_text(tiny_mamba.text(2000))

    def chimera(checkpoint: Path, *args: str) -> subprocess.CompletedProcess[str]:
        config = tmp_path / "config.yaml"
        config.write_text(yaml.safe_dump({**raw, "memory": {"checkpoint": str(checkpoint), "num_cpus": 0.5}}))
        command = [sys.executable, "-m", "chimera.cli", "--config", str(config), "memory", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    read = chimera(checkpoints[0], "read", str(doc), "--session", "cli")
    assert read.returncode == 0, read.stderr
    info = json.loads(read.stdout.strip().splitlines()[-1])
    assert "memory: mamba" in read.stdout and info["mode"] == "mamba" and info["tokens_read"] > 2000
    assert info["state_bytes"] > 0
    refused = chimera(tiny_mamba.save_mamba1(tmp_path / "mamba1"), "info", "--session", "cli")
    assert refused.returncode == 2 and "mamba2" in refused.stderr.lower()

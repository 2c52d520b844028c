"""The memory model on tiny random Mamba-2 checkpoints (no Ray, no Redis): chunked reading equals one pass, the
state's size never grows, recall never changes it, its wire format round-trips and refuses what is not its own."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from chimera.memory.long_context.base import CorruptStateError, StateMismatchError
from chimera.models.memory._text import text_pieces, token_chunks
from chimera.models.memory.errors import EmptyQueryError, UnsupportedModelError
from chimera.models.memory.families import check_supported
from chimera.models.memory.mamba import MemoryModel
from chimera.models.memory.state import EMPTY_SHA256, MemoryState
from tests.unit import tiny_mamba


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread, as in the memory actor (Ray gives it `num_cpus` threads): on a shared 2-core machine,
    two spinning OpenMP threads are slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_mamba.save_mamba2(tmp_path_factory.mktemp("mamba2"))


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> MemoryModel:
    return MemoryModel.load(checkpoint, chunk_tokens=4096)


def _ids(model: MemoryModel, n: int, seed: int = 0) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.model.config.vocab_size, (n,), generator=g).tolist()


def _assert_same_state(a: MemoryState, b: MemoryState, atol: float = 0.0) -> None:
    for x, y in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(x.conv, y.conv, atol=atol, rtol=0)
        torch.testing.assert_close(x.ssm, y.ssm, atol=atol, rtol=0)


def test_chunked_read_equals_one_pass(model: MemoryModel) -> None:
    ids = _ids(model, 1000)
    with torch.no_grad():
        reference = model.model(torch.tensor([ids]), use_cache=False).logits  # (1, 1000, V) plain transformers
    one_pass_state = model.empty_state()
    one_pass = model.forward(one_pass_state, ids)  # (1, 1000, V)
    chunked_state = model.empty_state()
    chunked = torch.cat([model.forward(chunked_state, ids[i : i + 96]) for i in range(0, 1000, 96)], dim=1)

    assert (one_pass - reference).abs().max().item() < 1e-4  # a zero state continues like a fresh start
    assert (chunked - one_pass).abs().max().item() < 1e-4
    _assert_same_state(chunked_state, one_pass_state, atol=1e-4)

    read_state = model.empty_state()
    assert MemoryModel(model.model, model.tokenizer, chunk_tokens=96).read_tokens(read_state, ids) == 1000
    _assert_same_state(read_state, chunked_state)  # same chunks, same arithmetic: bit for bit
    assert read_state.tokens_read == 1000


def test_state_bytes_identical_after_1k_and_100k_tokens(model: MemoryModel) -> None:
    state = model.empty_state()
    model.read_tokens(state, _ids(model, 1000))
    after_1k = (state.nbytes, len(state.to_bytes()))
    model.read_tokens(state, _ids(model, 99_000, seed=1))
    after_100k = (state.nbytes, len(state.to_bytes()))

    assert state.tokens_read == 100_000
    assert after_1k == after_100k
    assert state.nbytes == model.spec.total_bytes
    assert all(torch.isfinite(s.ssm).all() for s in state.layers)


def test_recall_leaves_the_state_byte_identical(model: MemoryModel) -> None:
    state = model.empty_state()
    model.read(state, tiny_mamba.text(400))
    before = state.to_bytes()

    answer = model.recall(state, "Kalo mine", max_tokens=12)

    assert state.to_bytes() == before
    assert isinstance(answer, str) and answer
    assert model.recall(state, "Kalo mine", max_tokens=12) == answer  # greedy, from the same state
    with pytest.raises(EmptyQueryError):
        model.recall(state, "", max_tokens=4)


def test_round_trip_continues_like_the_original(model: MemoryModel) -> None:
    state = model.empty_state()
    model.read(state, tiny_mamba.text(300, seed=1))
    restored = MemoryState.from_bytes(state.to_bytes(), model.spec, model.revision)

    _assert_same_state(restored, state)
    assert (restored.tokens_read, restored.tokens_sha256) == (state.tokens_read, state.tokens_sha256)
    probe = _ids(model, 50, seed=3)
    assert torch.equal(model.forward(restored, probe), model.forward(state, probe))


def test_empty_text_is_a_no_op(model: MemoryModel) -> None:
    state = model.empty_state()
    before = state.to_bytes()

    assert model.read(state, "") == 0
    assert state.to_bytes() == before
    assert (state.tokens_read, state.tokens_sha256) == (0, EMPTY_SHA256)


def test_token_hash_pins_tokens_and_order(model: MemoryModel) -> None:
    a, b = tiny_mamba.text(50, seed=1), tiny_mamba.text(50, seed=2)
    ab, ba = model.empty_state(), model.empty_state()
    for s, texts in ((ab, (a, b)), (ba, (b, a))):
        for t in texts:
            model.read(s, t)

    assert ab.tokens_read == ba.tokens_read
    assert ab.tokens_sha256 != ba.tokens_sha256
    assert not torch.equal(ab.layers[-1].ssm, ba.layers[-1].ssm)


def test_streamed_tokenization_equals_whole_text(model: MemoryModel) -> None:
    text = tiny_mamba.text(3000, seed=4) + "  double  spaces\nand lines\n\n" + tiny_mamba.text(500, seed=5)
    whole = model.tokenizer.encode(text, add_special_tokens=False, verbose=False)

    streamed = [i for chunk in token_chunks(model.tokenizer, text, 100, piece_chars=257) for i in chunk]

    assert streamed == whole
    no_spaces = "x" * 1000 + " y"
    assert "".join(text_pieces(no_spaces, 257)) == no_spaces  # cut mid-run when it must, losing nothing
    assert max(len(p) for p in text_pieces(text, 257)) <= 257


def test_other_revision_is_refused(model: MemoryModel, checkpoint: Path, tmp_path: Path) -> None:
    blob = model.empty_state().to_bytes()
    other = MemoryModel.load(tiny_mamba.save_mamba2(tmp_path / "other", seed=1))
    same = MemoryModel.load(Path(shutil.copytree(checkpoint, tmp_path / "copy")))  # same checkpoint, other path

    assert same.revision == model.revision
    assert other.revision != model.revision
    with pytest.raises(StateMismatchError, match="never mixed"):
        MemoryState.from_bytes(blob, other.spec, other.revision)


@pytest.mark.parametrize("damage", ["short", "garbage", "truncated", "header"])
def test_corrupt_bytes_are_refused(model: MemoryModel, damage: str) -> None:
    blob = model.empty_state().to_bytes()
    bad = {
        "short": b"\x01\x02",
        "garbage": bytes(range(256)) * 4,
        "truncated": blob[: len(blob) // 2],
        "header": blob[:8] + b"{not json" + blob[17:],
    }[damage]

    with pytest.raises(CorruptStateError):
        MemoryState.from_bytes(bad, model.spec, model.revision)


def test_bfloat16_weights_keep_a_float32_ssm_state(checkpoint: Path) -> None:
    model = MemoryModel.load(checkpoint, dtype="bfloat16")
    state = model.empty_state()
    model.read(state, tiny_mamba.text(100))

    restored = MemoryState.from_bytes(state.to_bytes(), model.spec, model.revision)
    assert restored.layers[0].conv.dtype == torch.bfloat16
    assert restored.layers[0].ssm.dtype == torch.float32
    assert model.revision != MemoryModel.load(checkpoint).revision  # another dtype is another revision


def test_mamba1_is_refused_with_what_is_supported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModelError, match=r"31909.*Supported: pure Mamba-2"):
        MemoryModel.load(tiny_mamba.save_mamba1(tmp_path))


@pytest.mark.parametrize(
    ("model_type", "why"),
    [("falcon_mamba", "31909"), ("jamba", "31909"), ("zamba2", "KV cache grows"), ("granitemoehybrid", "KV cache"),
     ("llama", "not a Mamba-2")],
)  # fmt: skip
def test_other_families_are_refused_with_the_reason(model_type: str, why: str) -> None:
    with pytest.raises(UnsupportedModelError, match=why):
        check_supported(model_type)

"""The memory model: a Mamba-2 checkpoint that reads text into a fixed-size state and answers from a copy of it.

Reading feeds the text in chunks of `chunk_tokens` through transformers' Mamba-2 with the state carried from chunk
to chunk. Mamba-2's chunked scan starts from the carried SSM state and its convolution from the carried window, so
reading in chunks gives the logits of one pass (test: max difference < 1e-4), and only one chunk's activations
exist at a time: memory is bounded by the chunk, not by the text. Without the CUDA kernels (`mamba_ssm`,
`causal_conv1d`) transformers runs its pure-PyTorch path, which is the same arithmetic.

Which checkpoints are read, and why the others (Mamba-1, attention hybrids) are refused: `families.py`.
"""

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from chimera.models.memory._revision import model_revision
from chimera.models.memory._text import token_chunks
from chimera.models.memory.errors import EmptyQueryError, MemoryModelError
from chimera.models.memory.families import check_checkpoint, check_supported
from chimera.models.memory.state import MemoryState, StateSpec


class MemoryModel:
    """A Mamba-2 language model, its tokenizer, and the reading and recall that carry a `MemoryState`.

    Args:
        model: a transformers Mamba-2 causal LM (`Mamba2ForCausalLM`), weights in their final dtype and device.
        tokenizer: its tokenizer.
        chunk_tokens: tokens per forward pass while reading.
    """

    def __init__(self, model: Any, tokenizer: Any, *, chunk_tokens: int = 2048) -> None:
        check_supported(model.config.model_type)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.chunk_tokens = chunk_tokens
        self.device = model.device
        self.spec = StateSpec.from_config(model.config, dtype=model.dtype)
        self.revision = model_revision(model, model.config, tokenizer)
        eos = model.config.eos_token_id if tokenizer.eos_token_id is None else tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])

    @classmethod
    def load(
        cls, checkpoint: Path, *, chunk_tokens: int = 2048, dtype: str = "float32", device: str = "cpu"
    ) -> "MemoryModel":
        """Load a checkpoint folder (config, weights, tokenizer) from local disk; nothing is downloaded.

        Raises:
            UnsupportedModelError: the checkpoint is not a pure Mamba-2 (checked before any weight is read).
            MemoryModelError: the folder is missing or unreadable.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        check_checkpoint(checkpoint)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                checkpoint, dtype=getattr(torch, dtype), device_map=device, local_files_only=True
            )
            tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
        except (OSError, ValueError) as e:
            raise MemoryModelError(f"cannot load the memory model from {checkpoint}: {e}") from e
        return cls(model, tokenizer, chunk_tokens=chunk_tokens)

    def empty_state(self) -> MemoryState:
        """The state of a session that has read nothing."""
        return MemoryState.zeros(self.spec, self.revision, self.device)

    def read(self, state: MemoryState, text: str) -> int:
        """Read `text` into `state` (in place), one chunk of tokens at a time; return the tokens read."""
        return self._read_chunks(state, token_chunks(self.tokenizer, text, self.chunk_tokens))

    def read_tokens(self, state: MemoryState, ids: Sequence[int]) -> int:
        """Read token ids into `state` (in place), as `read` does with the ids of a text."""
        step = self.chunk_tokens
        return self._read_chunks(state, (list(ids[i : i + step]) for i in range(0, len(ids), step)))

    @torch.no_grad()
    def forward(self, state: MemoryState, ids: Sequence[int]) -> torch.Tensor:
        """Feed `ids` in one pass from `state` (advancing it) and return every position's logits.  # (1, L, V)

        Does not count the ids as read: this is the model's raw step, for tests and benchmarks.
        """
        return self._step(_cache_over(self.model.config, state), ids, logits_to_keep=0)

    @torch.no_grad()
    def recall(self, state: MemoryState, query: str, max_tokens: int) -> str:
        """Continue from a copy of `state` with `query`, greedily, for at most `max_tokens` tokens.

        `state` is left exactly as it was: the query and the answer go into a deep copy.

        Raises:
            EmptyQueryError: `query` has no tokens.
        """
        ids = self.tokenizer.encode(query, add_special_tokens=False, verbose=False)
        if not ids:
            raise EmptyQueryError("a recall query needs at least one token")
        cache = _cache_over(self.model.config, state.clone())  # a query must never change the state it reads
        for i in range(0, len(ids), self.chunk_tokens):
            logits = self._step(cache, ids[i : i + self.chunk_tokens], logits_to_keep=1)  # (1, 1, V)
        answer: list[int] = []
        while len(answer) < max_tokens:
            token = int(logits[0, -1].argmax())
            if token in self.eos_ids:
                break
            answer.append(token)
            if len(answer) < max_tokens:
                logits = self._step(cache, [token], logits_to_keep=1)  # (1, 1, V)
        return str(self.tokenizer.decode(answer, skip_special_tokens=True))

    @torch.no_grad()
    def _read_chunks(self, state: MemoryState, chunks: Iterable[list[int]]) -> int:
        cache = _cache_over(self.model.config, state)
        digest = hashlib.sha256(bytes.fromhex(state.tokens_sha256))
        count = 0
        for ids in chunks:
            self._step(cache, ids, logits_to_keep=1)  # only the state is kept; one position's logits is cheapest
            digest.update(np.asarray(ids, dtype="<i8").tobytes())
            count += len(ids)
        if count:
            state.tokens_read += count
            state.tokens_sha256 = digest.hexdigest()
        return count

    def _step(self, cache: Any, ids: Sequence[int], logits_to_keep: int) -> torch.Tensor:
        input_ids = torch.tensor([list(ids)], dtype=torch.long, device=self.device)  # (1, L)
        out = self.model(input_ids=input_ids, cache_params=cache, use_cache=True, logits_to_keep=logits_to_keep)
        return out.logits  # (1, L or logits_to_keep, V)


def _cache_over(config: Any, state: MemoryState) -> Any:
    """A transformers cache whose tensors are the state's own, so the model's updates advance the state in place.

    transformers 5 keeps a Mamba-2 layer's state in a `LinearAttentionLayer` (`conv_states[0]`,
    `recurrent_states[0]`) and updates both with `copy_`, never by rebinding; handing it our tensors makes every
    forward pass write straight into `state`. `has_previous_state` is set from the start: a zero state continues
    exactly like a fresh prefill (test), so a new session needs no special first chunk.
    """
    from transformers import DynamicCache
    from transformers.cache_utils import LinearAttentionLayer

    cache = DynamicCache(config=config)
    if len(cache.layers) != len(state.layers):
        raise MemoryModelError(f"the model's cache has {len(cache.layers)} layers, the state {len(state.layers)}")
    for layer, s in zip(cache.layers, state.layers, strict=True):
        if not isinstance(layer, LinearAttentionLayer):
            raise MemoryModelError(f"this transformers version caches Mamba-2 layers as {type(layer).__name__}")
        layer.lazy_initialization(conv_states=s.conv, recurrent_states=s.ssm, conv_kernel_size=s.conv.shape[-1])
        layer.conv_states[0] = s.conv  # (1, conv_dim, d_conv)
        layer.recurrent_states[0] = s.ssm  # (1, H, P, N)
        layer.has_previous_state[0] = True
    return cache

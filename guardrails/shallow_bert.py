"""The first layers of a BERT encoder (all-MiniLM-L6-v2) in plain PyTorch, read straight from its safetensors.

The guard classifiers need only the first `layers` of MiniLM's six; building them here skips importing
transformers (seconds) and reading the other layers' weights. Matches `transformers.BertModel` cut at the same
depth to float precision (see tests/unit/test_guard_features.py).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class BertShape:
    """The sizes of a BERT checkpoint (from its config.json)."""

    vocab_size: int
    hidden: int
    heads: int
    intermediate: int
    max_positions: int
    type_vocab_size: int
    eps: float

    @classmethod
    def read(cls, model_dir: Path) -> "BertShape":
        raw = json.loads((model_dir / "config.json").read_text())
        return cls(
            vocab_size=raw["vocab_size"],
            hidden=raw["hidden_size"],
            heads=raw["num_attention_heads"],
            intermediate=raw["intermediate_size"],
            max_positions=raw["max_position_embeddings"],
            type_vocab_size=raw.get("type_vocab_size", 2),
            eps=raw.get("layer_norm_eps", 1e-12),
        )


class BertLayer(nn.Module):
    """Post-norm self-attention then a GELU feed-forward, each with a residual (BERT's layer)."""

    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.heads = shape.heads
        self.qkv = nn.Linear(shape.hidden, 3 * shape.hidden)
        self.attn_out = nn.Linear(shape.hidden, shape.hidden)
        self.attn_norm = nn.LayerNorm(shape.hidden, eps=shape.eps)
        self.up = nn.Linear(shape.hidden, shape.intermediate)
        self.down = nn.Linear(shape.intermediate, shape.hidden)
        self.out_norm = nn.LayerNorm(shape.hidden, eps=shape.eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape  # (B, L, D)
        q, k, v = self.qkv(x).split(d, dim=-1)  # 3 x (B, L, D)
        q, k, v = (t.view(b, length, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, H, L, Dh)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads) + bias  # (B, H, L, L)
        context = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, length, d)  # (B, L, D)
        x = self.attn_norm(x + self.attn_out(context))  # (B, L, D)
        return self.out_norm(x + self.down(F.gelu(self.up(x))))  # (B, L, D)


class ShallowBert(nn.Module):
    """Embeddings and the first `layers` encoder layers; `forward` returns the last hidden states."""

    def __init__(self, shape: BertShape, layers: int) -> None:
        super().__init__()
        self.words = nn.Embedding(shape.vocab_size, shape.hidden)
        self.positions = nn.Embedding(shape.max_positions, shape.hidden)
        self.types = nn.Embedding(shape.type_vocab_size, shape.hidden)
        self.embed_norm = nn.LayerNorm(shape.hidden, eps=shape.eps)
        self.layers = nn.ModuleList(BertLayer(shape) for _ in range(layers))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, mask: (B, L) -> hidden states (B, L, D)."""
        positions = torch.arange(ids.shape[1], device=ids.device)  # (L,)
        x = self.words(ids) + self.positions(positions) + self.types.weight[0]  # (B, L, D)
        x = self.embed_norm(x)
        bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(x.dtype).min  # (B, 1, 1, L): padding gets -inf
        for layer in self.layers:
            x = layer(x, bias)
        return x

    @classmethod
    def load(cls, model_dir: Path, layers: int) -> "ShallowBert":
        """Read the embeddings and the first `layers` layers of the checkpoint in `model_dir`.

        Raises:
            KeyError, OSError: the folder holds no BERT safetensors checkpoint with that many layers.
        """
        from safetensors import safe_open

        model = cls(BertShape.read(model_dir), layers)
        state: dict[str, torch.Tensor] = {}
        with safe_open(str(model_dir / "model.safetensors"), "pt") as f:

            def w(name: str) -> torch.Tensor:
                return f.get_tensor(name).float()

            state["words.weight"] = w("embeddings.word_embeddings.weight")
            state["positions.weight"] = w("embeddings.position_embeddings.weight")
            state["types.weight"] = w("embeddings.token_type_embeddings.weight")
            state["embed_norm.weight"], state["embed_norm.bias"] = (
                w("embeddings.LayerNorm.weight"),
                w("embeddings.LayerNorm.bias"),
            )
            for i in range(layers):
                p, o = f"encoder.layer.{i}.", f"layers.{i}."
                for part in ("weight", "bias"):
                    qkv = [w(f"{p}attention.self.{n}.{part}") for n in ("query", "key", "value")]
                    state[f"{o}qkv.{part}"] = torch.cat(qkv)
                    state[f"{o}attn_out.{part}"] = w(f"{p}attention.output.dense.{part}")
                    state[f"{o}attn_norm.{part}"] = w(f"{p}attention.output.LayerNorm.{part}")
                    state[f"{o}up.{part}"] = w(f"{p}intermediate.dense.{part}")
                    state[f"{o}down.{part}"] = w(f"{p}output.dense.{part}")
                    state[f"{o}out_norm.{part}"] = w(f"{p}output.LayerNorm.{part}")
        model.load_state_dict(state, strict=True)
        return model.eval()

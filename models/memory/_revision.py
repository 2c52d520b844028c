"""A model's revision: a hash of what decides its states (config, dtype, weights, tokenizer), not of its path.

Two replicas that load the same checkpoint anywhere get the same revision; a state read by another checkpoint, a
retrained one or the same one in another dtype gets another, and is refused rather than mixed.
"""

import hashlib
import json
from typing import Any

import torch

# Config keys that say where or by what a checkpoint was loaded, not what it computes.
_VOLATILE_KEYS = {"_name_or_path", "_commit_hash", "transformers_version", "dtype", "torch_dtype"}


def model_revision(model: torch.nn.Module, config: Any, tokenizer: Any) -> str:
    """16 hex digits of sha256 over the config, the weights' dtype, names, shapes and bytes, and the tokenizer."""
    digest = hashlib.sha256()
    stable = {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_KEYS and not k.startswith("_attn")}
    digest.update(json.dumps(stable, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)  # any dtype, bf16 too, as bytes
        digest.update(raw.numpy().data)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    digest.update(vocab.encode())
    return digest.hexdigest()[:16]

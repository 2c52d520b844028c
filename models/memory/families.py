"""Which checkpoints the memory model reads, and why the others are refused. Imports nothing heavy, so a client
can refuse a checkpoint before it starts an actor.

Supported: pure Mamba-2 checkpoints (`model_type: mamba2`, e.g. state-spaces/mamba2-130m … mamba2-2.7b in
transformers format). Refused, with `UnsupportedModelError`:

- Mamba-1, FalconMamba, Jamba: their transformers implementations restart the SSM state on every multi-token
  forward (transformers#31909), so chunked reading would keep only the last chunk. Reading them token by token
  would be correct but orders of magnitude slower; we refuse instead.
- Mamba-2 hybrids with attention layers (Zamba, Zamba2, Bamba, Nemotron-H, Granite-4.0-H, Falcon-H1): their SSM
  part is constant, but their attention layers keep a KV cache that grows with every token read, the cost this
  memory exists to avoid.
"""

import json
from pathlib import Path

from chimera.models.memory.errors import MemoryModelError, UnsupportedModelError

SUPPORTED = ("mamba2",)
_REFUSED = {
    **dict.fromkeys(
        ("mamba", "falcon_mamba", "jamba"),
        "its transformers implementation restarts the SSM state on multi-token chunks (transformers#31909), "
        "so a state cannot be carried across chunks",
    ),
    **dict.fromkeys(
        ("zamba", "zamba2", "bamba", "nemotron_h", "granitemoehybrid", "falcon_h1"),
        "it is a hybrid with attention layers whose KV cache grows with every token read",
    ),
}


def check_supported(model_type: str) -> None:
    """Raise `UnsupportedModelError`, naming what is supported, unless `model_type` is a pure Mamba-2."""
    if model_type in SUPPORTED:
        return
    why = _REFUSED.get(model_type, "it is not a Mamba-2 state-space model")
    raise UnsupportedModelError(
        f"memory model type {model_type!r} is not supported: {why}. Supported: pure Mamba-2 checkpoints "
        f"(model_type {', '.join(SUPPORTED)}), e.g. state-spaces/mamba2-2.7b in transformers format"
    )


def check_checkpoint(checkpoint: Path) -> None:
    """Refuse a checkpoint folder from its `config.json` alone, before any weight is read.

    Raises:
        MemoryModelError: no readable `config.json` with a `model_type`.
        UnsupportedModelError: not a pure Mamba-2.
    """
    try:
        model_type = json.loads((Path(checkpoint) / "config.json").read_text())["model_type"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise MemoryModelError(
            f"{checkpoint} is not a model folder with a config.json naming its model_type: {e}"
        ) from e
    check_supported(str(model_type))

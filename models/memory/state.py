"""The memory model's recurrent state: per layer a convolution window and an SSM state, and its wire format.

A Mamba-2 layer carries everything it has read in two tensors whose size never depends on how much it read: the
last `d_conv` inputs of its causal convolution and one (head_dim × d_state) matrix per head. `MemoryState` holds
them for every layer, with a count and a rolling hash of the tokens read, and converts to safetensors bytes and
back. The bytes are the same length whatever was read (the metadata is fixed-width), so a session's Redis value
never grows.
"""

import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from chimera.memory.long_context.base import CorruptStateError, StateMismatchError

FORMAT = "chimera.mamba-state.v1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()  # the hash of no tokens


@dataclass(frozen=True)
class StateSpec:
    """Shapes and dtypes of one model's state, read off its config, and the bytes they take."""

    n_layer: int
    conv_dim: int  # d_inner + 2·ngroups·d_state: x, B and C pass through the convolution together
    d_conv: int
    n_head: int
    head_dim: int
    d_state: int
    conv_dtype: torch.dtype  # the model's dtype
    ssm_dtype: torch.dtype = torch.float32  # the chunked scan accumulates, and returns, its state in float32

    @classmethod
    def from_config(cls, config: Any, dtype: torch.dtype, ssm_dtype: torch.dtype = torch.float32) -> "StateSpec":
        """The spec of a transformers `Mamba2Config` (or any object with its field names)."""
        d_inner = int(config.expand * config.hidden_size)
        return cls(
            n_layer=config.num_hidden_layers,
            conv_dim=d_inner + 2 * config.n_groups * config.state_size,
            d_conv=config.conv_kernel,
            n_head=config.num_heads,
            head_dim=config.head_dim,
            d_state=config.state_size,
            conv_dtype=dtype,
            ssm_dtype=ssm_dtype,
        )

    @property
    def conv_shape(self) -> tuple[int, int, int]:
        return (1, self.conv_dim, self.d_conv)  # (B, conv_dim, d_conv)

    @property
    def ssm_shape(self) -> tuple[int, int, int, int]:
        return (1, self.n_head, self.head_dim, self.d_state)  # (B, H, P, N)

    @property
    def layer_bytes(self) -> int:
        conv = self.conv_dim * self.d_conv * self.conv_dtype.itemsize
        return conv + self.n_head * self.head_dim * self.d_state * self.ssm_dtype.itemsize

    @property
    def total_bytes(self) -> int:
        """Bytes of the whole state: the same after one token or a million."""
        return self.n_layer * self.layer_bytes


@dataclass
class LayerState:
    """What one Mamba-2 layer remembers."""

    conv: torch.Tensor  # (B, conv_dim, d_conv) the convolution's last d_conv inputs
    ssm: torch.Tensor  # (B, H, P, N) the SSM state of each head


@dataclass
class MemoryState:
    """Every layer's state, the model revision it belongs to, and what was read into it.

    `tokens_sha256` is a hash chain over reads: each read sets it to sha256(previous digest ‖ the read's token ids
    as int64 little-endian), so it pins both the tokens and the order of the reads that produced the state.
    """

    layers: list[LayerState]
    revision: str
    tokens_read: int = 0
    tokens_sha256: str = EMPTY_SHA256

    @classmethod
    def zeros(cls, spec: StateSpec, revision: str, device: torch.device | str = "cpu") -> "MemoryState":
        """The state of a model that has read nothing (reading from it equals a fresh forward pass; test)."""
        layers = [
            LayerState(
                conv=torch.zeros(spec.conv_shape, dtype=spec.conv_dtype, device=device),  # (1, conv_dim, d_conv)
                ssm=torch.zeros(spec.ssm_shape, dtype=spec.ssm_dtype, device=device),  # (1, H, P, N)
            )
            for _ in range(spec.n_layer)
        ]
        return cls(layers, revision)

    def clone(self) -> "MemoryState":
        """A deep copy: the copy can be read into without touching this state."""
        layers = [LayerState(conv=s.conv.clone(), ssm=s.ssm.clone()) for s in self.layers]
        return MemoryState(layers, self.revision, self.tokens_read, self.tokens_sha256)

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors (the recurrent state proper, without the wire format's header)."""
        return sum(s.conv.nbytes + s.ssm.nbytes for s in self.layers)

    def to_bytes(self) -> bytes:
        """The state as safetensors bytes, with format, revision, tokens read and their hash as metadata."""
        tensors = {}
        for i, s in enumerate(self.layers):
            tensors[f"layers.{i}.conv"] = s.conv.detach().cpu().contiguous()  # (1, conv_dim, d_conv)
            tensors[f"layers.{i}.ssm"] = s.ssm.detach().cpu().contiguous()  # (1, H, P, N)
        about = {
            "format": FORMAT,
            "revision": self.revision,
            "tokens_read": f"{self.tokens_read:020d}",  # fixed width: the blob's length never changes
            "tokens_sha256": self.tokens_sha256,
        }
        # One metadata entry holding sorted JSON: safetensors writes a multi-key metadata map in hash order, and
        # equal states must give equal bytes.
        return save_tensors(tensors, metadata={"chimera": json.dumps(about, sort_keys=True)})

    @classmethod
    def from_bytes(
        cls, blob: bytes, spec: StateSpec, revision: str, device: torch.device | str = "cpu"
    ) -> "MemoryState":
        """Decode `to_bytes` output, checking it belongs to this model.

        Raises:
            StateMismatchError: the state was read by another model or revision.
            CorruptStateError: the bytes are not a state of this format, or its tensors do not fit `spec`.
        """
        meta = _metadata(blob)
        if meta.get("format") != FORMAT:
            raise CorruptStateError(f"not a memory state (format {meta.get('format')!r}, expected {FORMAT!r})")
        if meta.get("revision") != revision:
            raise StateMismatchError(
                f"the state was read by model revision {meta.get('revision')!r}, this model is {revision!r}; "
                "states of different models are never mixed: forget the session, or load the model it was read with"
            )
        try:
            tensors = load_tensors(blob)
            tokens_read = int(meta["tokens_read"])
            tokens_sha256 = str(meta["tokens_sha256"])
            if len(bytes.fromhex(tokens_sha256)) != 32:
                raise ValueError(f"tokens_sha256 {tokens_sha256!r} is not a sha256 digest")
        except (SafetensorError, KeyError, ValueError) as e:
            raise CorruptStateError(f"the state's bytes cannot be decoded: {e}") from e
        layers = []
        for i in range(spec.n_layer):
            conv, ssm = tensors.get(f"layers.{i}.conv"), tensors.get(f"layers.{i}.ssm")
            if conv is None or ssm is None:
                raise CorruptStateError(f"the state has no layer {i} (the model has {spec.n_layer})")
            _check(f"layers.{i}.conv", conv, spec.conv_shape, spec.conv_dtype)
            _check(f"layers.{i}.ssm", ssm, spec.ssm_shape, spec.ssm_dtype)
            layers.append(LayerState(conv=conv.to(device), ssm=ssm.to(device)))
        if len(tensors) != 2 * spec.n_layer:
            raise CorruptStateError(f"the state has {len(tensors)} tensors, the model {2 * spec.n_layer}")
        return cls(layers, revision, tokens_read, tokens_sha256)


def _check(name: str, tensor: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    if tuple(tensor.shape) != shape or tensor.dtype != dtype:
        raise CorruptStateError(f"{name} is {tuple(tensor.shape)} {tensor.dtype}, the model's is {shape} {dtype}")


def _metadata(blob: bytes) -> dict[str, Any]:
    """Our metadata in a safetensors blob: an 8-byte little-endian header length, then a JSON header."""
    if len(blob) < 8:
        raise CorruptStateError(f"the state is {len(blob)} bytes, too short for a safetensors header")
    (size,) = struct.unpack("<Q", blob[:8])
    if size > len(blob) - 8:
        raise CorruptStateError(f"the state's header claims {size} bytes, the blob holds {len(blob) - 8}")
    try:
        header = json.loads(blob[8 : 8 + size])
        meta = json.loads(header["__metadata__"]["chimera"])
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both are
        raise CorruptStateError(f"the state's header is not JSON: {e}") from e
    except (KeyError, TypeError) as e:
        raise CorruptStateError(f"the state's header carries no chimera metadata ({e!r})") from e
    if not isinstance(meta, dict):
        raise CorruptStateError("the state's metadata is not a JSON object")
    return meta

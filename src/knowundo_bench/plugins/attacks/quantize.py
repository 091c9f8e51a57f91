"""Attack ``quantize``: the model as a quantized deployment would run it (Zhang et al.,
ICLR 2025, "Catastrophic Failure of LLM Unlearning via Quantization": after 4-bit
quantization an unlearned model answered much of what it had been made to forget).

LoRA adapters are merged into the base weights first, then every linear layer's weight
(but those named in ``skip``: the output head, as bitsandbytes and transformers leave it)
is replaced by its dequantized value. ``rtn``: round-to-nearest, symmetric, per group of
``group_size`` input columns: scale = max |w| / (2^(bits-1) - 1), w ↦ scale ·
clamp(round(w / scale)), on any device. ``bnb`` (a CUDA device): 4 bits are
bitsandbytes' NF4 with blocks of ``group_size``, through its own kernels (what
``load_in_4bit`` stores); 8 bits are LLM.int8's weight storage (each output row's absmax
to int8, ``load_in_8bit``), computed here. The outcome records the mean relative weight
error ||W - Q(W)|| / ||W|| over the quantized layers.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from knowundo_bench.api import AttackContext, AttackInfo, AttackOutcome, InputError, Params, hookimpl, merge_adapters


class QuantizeParams(Params):
    bits: Literal[4, 8] = 4
    group_size: int = Field(128, ge=1, description="input columns sharing one scale (rtn) or one NF4 block (bnb)")
    backend: Literal["rtn", "bnb"] = Field("rtn", description="rtn: any device; bnb: bitsandbytes on CUDA")
    skip: list[str] = Field(default_factory=lambda: ["lm_head"], description="linear layers left in full precision")

    @model_validator(mode="after")
    def _bnb_block(self) -> QuantizeParams:
        """bitsandbytes' NF4 blocks are powers of two from 64 to 4096."""
        if self.backend == "bnb" and self.bits == 4 and self.group_size not in {2**n for n in range(6, 13)}:
            raise ValueError(f"group_size {self.group_size}: backend bnb takes 64, 128, ..., 4096")
        return self


def round_to_nearest(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Symmetric round-to-nearest of each row's groups of ``group_size`` columns, dequantized."""
    rows, columns = weight.shape
    values = F.pad(weight.float(), (0, (-columns) % group_size)).view(rows, -1, group_size)
    levels = 2 ** (bits - 1) - 1
    scale = values.abs().amax(dim=-1, keepdim=True) / levels
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    quantized = torch.clamp(torch.round(values / scale), -levels, levels) * scale
    return quantized.view(rows, -1)[:, :columns].to(weight.dtype)


def bitsandbytes_dequantized(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    if bits == 8:  # LLM.int8 stores each output row as int8 with its absmax
        return round_to_nearest(weight, 8, weight.shape[1])
    import bitsandbytes.functional as bnb

    packed, state = bnb.quantize_4bit(weight.contiguous(), blocksize=group_size, quant_type="nf4")
    return bnb.dequantize_4bit(packed, state).to(weight.dtype)


def check_backend(params: QuantizeParams, device: torch.device) -> None:
    if params.backend != "bnb":
        return
    if device.type != "cuda":
        raise InputError("eval.attacks: quantize backend 'bnb' needs a CUDA device (backend 'rtn' runs anywhere)")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise InputError("eval.attacks: quantize backend 'bnb' needs bitsandbytes (pip install bitsandbytes)") from None


@torch.no_grad()
def apply(params: QuantizeParams, model: torch.nn.Module, context: AttackContext) -> AttackOutcome:
    adapters = hasattr(model, "merge_and_unload")
    model = merge_adapters(model)
    check_backend(params, next(model.parameters()).device)
    quantize = bitsandbytes_dequantized if params.backend == "bnb" else round_to_nearest
    errors = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.rsplit(".", 1)[-1] in params.skip:
            continue
        weight = module.weight
        quantized = quantize(weight.data, params.bits, params.group_size)
        norm = float(weight.data.float().norm())
        errors.append(float((weight.data.float() - quantized.float()).norm()) / norm if norm else 0.0)
        weight.data.copy_(quantized)
    if not errors:
        raise InputError("eval.attacks: quantize found no linear layer to quantize (check 'skip')")
    return AttackOutcome(
        details={"weight_error": sum(errors) / len(errors), "layers": len(errors), "merged_adapters": adapters},
        model=model,
    )


@hookimpl
def register_attacks() -> list[AttackInfo]:
    return [
        AttackInfo(
            name="quantize",
            description="Quantize every linear weight (LoRA merged first): round-to-nearest 8 or 4 bits per group, "
            "or bitsandbytes NF4/int8 on CUDA.",
            params=QuantizeParams,
            apply=apply,
        )
    ]

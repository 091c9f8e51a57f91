"""Sharded training (FSDP2) for models too large to train whole on every process, under
``accelerate launch --config_file examples/accelerate/fsdp.yaml`` (issue 15).

Each unit trains a copy of the model sharded with torch's ``fully_shard`` (every
decoder block, then the root): parameters, gradients and optimizer state are split
over the K processes (ZeRO-3's layout). The model the harness evaluates stays whole on
every process: after training (and before each mid-training evaluation) the trained
weights are gathered to the main process and loaded into it, so evaluation, records and
the vanilla cache work as in one process. FSDP all-gathers each block's parameters in
every forward, so all processes must run the same forwards: only objectives whose
windows stack into one pass per process (``WeightedNLL``) train sharded.

Settings come from accelerate's launch environment (``fsdp_*`` keys of the config):
``fsdp_version`` 2, ``fsdp_reshard_after_forward``, ``fsdp_transformer_layer_cls_to_wrap``
(default: the model's own ``_no_split_modules``), ``fsdp_offload_params`` and
``fsdp_activation_checkpointing``; the others are accelerate's and unused here.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import torch

from knowundo_bench.core.errors import InputError


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class ShardingConfig:
    """What ``accelerate launch`` says about FSDP, in the keys this harness honours."""

    reshard_after_forward: bool = True
    block_classes: tuple[str, ...] = ()  # empty: the model's _no_split_modules
    offload_params: bool = False
    activation_checkpointing: bool = False

    @classmethod
    def from_environment(cls) -> ShardingConfig | None:
        """The launch's FSDP settings, or None when it asked for no FSDP or runs one process."""
        if not _flag("ACCELERATE_USE_FSDP") or int(os.environ.get("WORLD_SIZE", "1")) < 2:
            return None
        version = os.environ.get("FSDP_VERSION", "1")
        if version != "2":
            raise InputError(
                f"accelerate launch: fsdp_version {version} is not supported; set fsdp_version: 2 "
                "(see examples/accelerate/fsdp.yaml)"
            )
        classes = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "")
        return cls(
            reshard_after_forward=_flag("FSDP_RESHARD_AFTER_FORWARD", True),
            block_classes=tuple(c.strip() for c in classes.split(",") if c.strip()),
            offload_params=_flag("FSDP_OFFLOAD_PARAMS"),
            activation_checkpointing=_flag("FSDP_ACTIVATION_CHECKPOINTING"),
        )

    def blocks(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """The modules each sharded on their own (one all-gather per block in a forward)."""
        names = set(self.block_classes) or set(_no_split_modules(model))
        if not names:
            raise InputError(
                "accelerate launch: FSDP needs the model's block class; set fsdp_transformer_layer_cls_to_wrap"
            )
        blocks = [m for m in model.modules() if type(m).__name__ in names]
        if not blocks:
            raise InputError(f"accelerate launch: fsdp_transformer_layer_cls_to_wrap {sorted(names)} matches no module")
        return blocks


def _no_split_modules(model: torch.nn.Module) -> list[str]:
    """The decoder block classes a Hugging Face model declares (through a PEFT wrapper too)."""
    for module in model.modules():
        names = getattr(module, "_no_split_modules", None)
        if names:
            return list(names)
    return []


def shard_copy(model: torch.nn.Module, config: ShardingConfig) -> torch.nn.Module:
    """A copy of ``model`` sharded over every process (``requires_grad`` kept as it is)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    sharded = copy.deepcopy(model)
    if config.activation_checkpointing:
        enable = getattr(sharded, "gradient_checkpointing_enable", None)
        if not callable(enable):
            raise InputError("accelerate launch: fsdp_activation_checkpointing needs a Hugging Face model")
        enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    offload = CPUOffloadPolicy() if config.offload_params else OffloadPolicy()
    for module in [*config.blocks(sharded), sharded]:  # each block, then the root
        fully_shard(module, mesh=mesh, reshard_after_forward=config.reshard_after_forward, offload_policy=offload)
    return sharded


def gather_into(sharded: torch.nn.Module, model: torch.nn.Module) -> None:
    """Load the sharded copy's weights into ``model`` on the main process (every process
    takes part in the gathering)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if torch.distributed.get_rank() == 0:
        with torch.no_grad():
            model.load_state_dict(state)


def shard_masks(masks: list[tuple[torch.nn.Parameter, torch.Tensor]]) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    """Row masks laid out as their sharded parameters (rows split the same way)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    sharded = []
    for parameter, keep in masks:
        if isinstance(parameter, DTensor):
            keep = distribute_tensor(keep, parameter.device_mesh, parameter.placements)
        sharded.append((parameter, keep))
    return sharded

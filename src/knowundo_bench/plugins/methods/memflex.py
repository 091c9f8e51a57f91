"""Method ``memflex`` (section 3.3): the pairing of the MemFlex gradient localizer with a
weighted GA+GD objective, trained only on the localised tensors.

Weights -0.4 on the forget cross-entropy and +2.0 on the retain cross-entropy are the
official code's ``ga_ratio``/``gd_ratio`` factors; lr 3e-4 is Table 7's "Ours" row.
"""

from __future__ import annotations

from pydantic import Field

from knowundo_bench.api import MethodInfo, hookimpl

# The objective is GA+GD's own hook implementation; only defaults and the localizer differ.
from knowundo_bench.plugins.methods.ga_gd import GAGDParams, unlearn  # noqa: F401


class MemFlexParams(GAGDParams):
    lr: float = Field(3e-4, gt=0)
    forget_weight: float = -0.4
    retain_weight: float = 2.0


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="memflex",
            description="MemFlex: weighted GA+GD (-0.4/+2.0) on tensors localised by gradient direction and magnitude.",
            params=MemFlexParams,
            default_localizer="memflex",
        )
    ]

"""Method ``ga_gd_ood``: GA + GD with out-of-distribution retain data (section 3.2).

The objective is ``ga_gd``'s; only the retain data differs: passages from the spec's
``ood_retain`` source (general-domain text, trained on as language modelling) instead
of the benchmark's Retention Scope.
"""

from __future__ import annotations

from knowundo_bench.api import MethodInfo, hookimpl
from knowundo_bench.plugins.methods.ga_gd import GAGDParams, unlearn  # noqa: F401  (the shared objective)


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="ga_gd_ood",
            description="Gradient ascent on forget + gradient descent on out-of-distribution text.",
            params=GAGDParams,
            retain="out_of_distribution",
        )
    ]

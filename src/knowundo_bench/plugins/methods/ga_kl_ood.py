"""Method ``ga_kl_ood``: GA + KL with out-of-distribution retain data (section 3.2).

The objective is ``ga_kl``'s; the KL term is taken on passages from the spec's
``ood_retain`` source instead of the benchmark's Retention Scope.
"""

from __future__ import annotations

from knowundo_bench.api import MethodInfo, hookimpl
from knowundo_bench.plugins.methods.ga_kl import GAKLParams, unlearn  # noqa: F401  (the shared objective)


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="ga_kl_ood",
            description="Gradient ascent on forget + KL to the frozen vanilla model on out-of-distribution text.",
            params=GAKLParams,
            retain="out_of_distribution",
        )
    ]

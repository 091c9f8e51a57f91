"""Method ``retrain``: the retrain oracle, the gold standard of unlearning (MUSE's and
open-unlearning's reference): the vanilla fine-tuning run again on the same data without
any Unlearn Scope pair (train and val), with the same settings and seed rules. It never
learned the answers a method must remove, and learned everything it may keep: its
Unlearn Success is what forgetting can reach, its Retention Success what it should keep,
and its membership-inference AUC the reference of ``privleak``. It is a vanilla model of
its own (cached once per vanilla key), not an unlearning of the vanilla model: its
``unlearn`` hook is never called.
"""

from __future__ import annotations

from knowundo_bench.api import MethodInfo, Params, hookimpl


class RetrainParams(Params):
    """No parameters: it trains with the spec's ``vanilla`` settings (or the entry's own ``vanilla``)."""


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [
        MethodInfo(
            name="retrain",
            description="The retrain oracle: the vanilla fine-tuning without any Unlearn Scope pair.",
            params=RetrainParams,
            retrain={"unlearn_scope": "exclude"},
        )
    ]

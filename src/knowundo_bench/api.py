"""The public plugin API: the one module a knowundo-bench plugin imports from.

A plugin is a module (or object) with ``@hookimpl`` functions named after the hooks
in :mod:`knowundo_bench.plugin.hookspecs` (documented in ``docs/plugins.md``),
registered through the ``knowundo_bench`` entry-point group. The built-in plugins of
every kind (:data:`knowundo_bench.plugin.kinds.KINDS`) are ordinary plugins that import
only from here; everything else in :mod:`knowundo_bench` may change between versions.

Example, a method::

    from knowundo_bench.api import MethodInfo, TrainingParams, answer_loss, hookimpl

    @hookimpl
    def register_methods():
        return [MethodInfo(name="my_ga", description="...", params=TrainingParams)]

    @hookimpl
    def unlearn(method, model, forget, retain, context):
        return context.train(model, objective=lambda m, b: -answer_loss(m, b["forget"]),
                             params=method.params, forget=forget)

Helpers for a plugin's own tests are in :mod:`knowundo_bench.testing`.
"""

from __future__ import annotations

from knowundo_bench import __version__
from knowundo_bench.benchmark.encoding import IGNORE_INDEX, Encodable, Encoded, PromptEncoder, batched, device_batches
from knowundo_bench.benchmark.files import (
    RawRecord,
    infer_instances,
    parse_raw_records,
    read_json_lines,
    read_local_domain,
    records_to_pairs,
)
from knowundo_bench.benchmark.pairs import SCOPES, SPLITS, QAPair, RetainText, Scope, Split
from knowundo_bench.build.generation import Category, GenerationRequest, Generator, GeneratorContext
from knowundo_bench.config.params import ForgetRetainParams, Params, TrainingParams
from knowundo_bench.config.paths import HubIdOrPath, reads_as_path
from knowundo_bench.core.errors import InputError, describe
from knowundo_bench.core.hub import require_hub, require_model
from knowundo_bench.core.messages import format_validation_error
from knowundo_bench.core.permissions import Granted, check_key_variable, check_remote_code
from knowundo_bench.core.progress import NO_PROGRESS, Reporter
from knowundo_bench.evaluate.guarding import REFUSAL, Guard, GuardContext, GuardRequest
from knowundo_bench.modeling.bundles import LoraSpec, ModelBundle, ModelFactory, attach_lora, load_lora, merge_adapters
from knowundo_bench.modeling.devices import model_device, train_mode
from knowundo_bench.plugin.execution import PendingUnit, Suite, SuitePayload, UnitResult
from knowundo_bench.plugin.hookspecs import hookimpl
from knowundo_bench.plugin.kinds import KINDS
from knowundo_bench.plugin.registry import (  # noqa: F401 (each kind's Info: exported below, from KINDS)
    AttackInfo,
    DataSourceInfo,
    ExecutorInfo,
    GeneratorInfo,
    GuardInfo,
    LocalizerInfo,
    LoggerInfo,
    MethodInfo,
    ModelSourceInfo,
    OodSourceInfo,
    RetainKind,
)
from knowundo_bench.records.atomic import atomic_directory, atomic_write_text
from knowundo_bench.tracking.contract import CurveReading, Logger, LoggerContext, TrackedUnit, TrainingStep
from knowundo_bench.train.attacking import AttackContext, AttackOutcome
from knowundo_bench.train.context import UnlearnContext
from knowundo_bench.train.hook_types import (
    Batch,
    Localization,
    LocalizerRun,
    MethodRun,
    Objective,
    RetainSet,
    TrainingReport,
)
from knowundo_bench.train.labels import allowed_tokens, relabel, relabelled_cross_entropy
from knowundo_bench.train.losses import (
    WeightedNLL,
    answer_log_likelihood,
    answer_loss,
    example_losses,
    example_mean_loss,
    scope_terms,
    share,
)
from knowundo_bench.train.packing import PassPlan, length_buckets

__all__ = [
    # hooks and what plugins register: one Info type per plugin kind
    "hookimpl",
    *(kind.info.__name__ for kind in KINDS),
    "RetainKind",
    "Params",
    "TrainingParams",
    "ForgetRetainParams",
    # what the unlearn and localize hooks receive and return
    "MethodRun",
    "LocalizerRun",
    "UnlearnContext",
    "Localization",
    "TrainingReport",
    "Batch",
    "Objective",
    "RetainSet",
    # guards: what fit receives and returns
    "Guard",
    "GuardContext",
    "GuardRequest",
    "REFUSAL",
    # attacks: what apply receives and returns
    "AttackContext",
    "AttackOutcome",
    "merge_adapters",
    # generators (knowundo-bench build): what create receives, what generate takes
    "Generator",
    "GeneratorContext",
    "GenerationRequest",
    "Category",
    # loggers (experiment trackers): what create receives, what a logger is fed
    "Logger",
    "LoggerContext",
    "TrackedUnit",
    "TrainingStep",
    "CurveReading",
    # what the executors receive
    "Suite",
    "PendingUnit",
    "SuitePayload",
    "UnitResult",
    # losses
    "answer_loss",
    "answer_log_likelihood",
    "example_losses",
    "example_mean_loss",
    "scope_terms",
    "share",
    "WeightedNLL",
    # relabelling (random labels, adversarial samples)
    "allowed_tokens",
    "relabel",
    "relabelled_cross_entropy",
    # data
    "QAPair",
    "RetainText",
    "RawRecord",
    "Scope",
    "Split",
    "SCOPES",
    "SPLITS",
    "parse_raw_records",
    "records_to_pairs",
    "read_local_domain",
    "read_json_lines",
    "infer_instances",
    "format_validation_error",
    # encoding
    "PromptEncoder",
    "Encodable",
    "Encoded",
    "IGNORE_INDEX",
    "batched",
    "length_buckets",
    "PassPlan",
    # models
    "ModelBundle",
    "ModelFactory",
    "LoraSpec",
    "attach_lora",
    "load_lora",
    "model_device",
    "train_mode",
    "device_batches",
    # paths and the hub
    "HubIdOrPath",
    "reads_as_path",
    "require_model",
    "require_hub",
    # what only the command line may allow (--trust-remote-code, --allow-key-env)
    "Granted",
    "check_remote_code",
    "check_key_variable",
    # errors, progress, files
    "InputError",
    "describe",
    "Reporter",
    "NO_PROGRESS",
    "atomic_directory",
    "atomic_write_text",
    "__version__",
]


def __getattr__(name: str) -> object:
    """``run_in_worker``, the worker entry point of earlier versions, imported when first
    used, so that importing the API (or ``*`` from it) leaves the runner unloaded; executors
    receive it as ``suite.worker``."""
    if name == "run_in_worker":
        from knowundo_bench.run.worker import run_in_worker

        return run_in_worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

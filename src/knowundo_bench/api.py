"""The public plugin API: the one module a knowundo-bench plugin imports from.

A plugin is a module (or object) with ``@hookimpl`` functions named after the hooks
in :mod:`knowundo_bench.harness.hookspecs` (documented in ``docs/plugins.md``),
registered through the ``knowundo_bench`` entry-point group. The built-in methods,
localizers and data, OOD and model sources are ordinary plugins that import only from
here; everything else in :mod:`knowundo_bench.harness` may change between versions.

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
from knowundo_bench.harness.building.contracts import Category, GenerationRequest, Generator, GeneratorContext
from knowundo_bench.harness.context import UnlearnContext
from knowundo_bench.harness.contracts import (
    Batch,
    ForgetRetainParams,
    Localization,
    LocalizerRun,
    MethodRun,
    Objective,
    RetainSet,
    TrainingParams,
    TrainingReport,
)
from knowundo_bench.harness.data import (
    SCOPES,
    SPLITS,
    QAPair,
    RawRecord,
    RetainText,
    Scope,
    Split,
    format_validation_error,
    infer_instances,
    parse_raw_records,
    read_json_lines,
    read_local_domain,
    records_to_pairs,
)
from knowundo_bench.harness.encoding import IGNORE_INDEX, Encodable, Encoded, PromptEncoder, batched
from knowundo_bench.harness.errors import InputError, describe
from knowundo_bench.harness.execution import PendingUnit, Suite, SuitePayload, UnitResult
from knowundo_bench.harness.guards import REFUSAL, Guard, GuardContext, GuardRequest
from knowundo_bench.harness.hookspecs import hookimpl
from knowundo_bench.harness.hub import require_hub, require_model
from knowundo_bench.harness.labels import allowed_tokens, relabel, relabelled_cross_entropy
from knowundo_bench.harness.losses import (
    WeightedNLL,
    answer_log_likelihood,
    answer_loss,
    example_losses,
    example_mean_loss,
    scope_terms,
    share,
)
from knowundo_bench.harness.models import (
    LoraSpec,
    ModelBundle,
    ModelFactory,
    attach_lora,
    device_batches,
    load_lora,
    model_device,
    train_mode,
)
from knowundo_bench.harness.paths import HubIdOrPath, reads_as_path
from knowundo_bench.harness.progress import NO_PROGRESS, Reporter
from knowundo_bench.harness.records.atomic import atomic_directory, atomic_write_text
from knowundo_bench.harness.registry import (
    DataSourceInfo,
    ExecutorInfo,
    GeneratorInfo,
    GuardInfo,
    LocalizerInfo,
    MethodInfo,
    ModelSourceInfo,
    OodSourceInfo,
    Params,
    RetainKind,
)
from knowundo_bench.harness.runner import run_in_worker

__all__ = [
    # hooks and what plugins register
    "hookimpl",
    "MethodInfo",
    "LocalizerInfo",
    "DataSourceInfo",
    "OodSourceInfo",
    "ModelSourceInfo",
    "ExecutorInfo",
    "GuardInfo",
    "GeneratorInfo",
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
    # generators (knowundo-bench build): what create receives, what generate takes
    "Generator",
    "GeneratorContext",
    "GenerationRequest",
    "Category",
    # what the executors receive
    "Suite",
    "PendingUnit",
    "SuitePayload",
    "UnitResult",
    "run_in_worker",
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
    # errors, progress, files
    "InputError",
    "describe",
    "Reporter",
    "NO_PROGRESS",
    "atomic_directory",
    "atomic_write_text",
    "__version__",
]

"""The typed result record: what the runner writes for each unit of work (the vanilla
model, each method) and what the leaderboard, the plots and the index read back.

Every part allows extra fields, so that a record a newer version (or a plugin's
localizer details) wrote survives a round trip. Records of schema 1 (knowundo-bench
0.1.0, with ``"schema": 1`` and no ``schema_version``) load as they are: version 2
renamed the version field and made the record typed, without changing its fields.
Numbers that JSON cannot hold (a diverged perplexity) are the strings "inf", "-inf"
and "nan" in the file and floats here.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

RECORD_KIND: Final = "knowundo-bench/result"
SCHEMA_VERSION = 3  # 3: identity, unit, per-pair accuracies, vanilla target (all optional: 2 loads)
_NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}

Status = Literal["ok", "nonfinite", "failed"]
FINISHED: tuple[Status, ...] = ("ok", "nonfinite")  # statuses a rerun keeps; "failed" is retried


def number(value: Any) -> float | None:
    """A metric value read back from JSON: float, non-finite strings restored, or None; a
    list, a mapping or a number beyond a float is a validation error (someone else's
    damaged record is skipped, not a crash)."""
    if value is None:
        return None
    if isinstance(value, str):
        return _NON_FINITE.get(value)
    if not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError("a number too large for a float") from None


Number = Annotated[float | None, BeforeValidator(number)]


class RecordPart(BaseModel):
    """Base of every part of a record: unknown fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow")


class ScopeMetrics(RecordPart):
    """One scope's metrics (Section 4.1): success, perplexity (per-example mean, and
    token-pooled as ``ppl_token``) and ROUGE-L, all in the direction of the scope."""

    success: Number = None
    ppl: Number = None
    rouge_l: Number = None
    ppl_token: Number = None
    refusal_rate: Number = None  # behind a guard: percent of the requests refused (ppl: over the others)


class PrefixedMetrics(RecordPart):
    """The scope metrics again under one system prompt (Finding 2)."""

    system_prompt: str = ""
    unlearn: ScopeMetrics = Field(default_factory=ScopeMetrics)
    retention: ScopeMetrics = Field(default_factory=ScopeMetrics)
    avg_success: Number = None


class MiaMetrics(RecordPart):
    """Membership inference of the forget set against the holdout
    (:mod:`knowundo_bench.evaluate.mia`): each attack's AUC in [0, 1]."""

    auc_loss: Number = None
    auc_zlib: Number = None
    auc_mink: Number = None
    auc_minkpp: Number = None
    k: Number = None
    members: int | None = None
    non_members: int | None = None


class CollapseMetrics(RecordPart):
    """Whether the model's greedy answers show it collapsed
    (:mod:`knowundo_bench.evaluate.collapse`): shares in percent over both scopes."""

    answers: int = 0
    degenerate_share: Number = None
    same_answer_share: Number = None
    distinct_2: Number = None
    collapsed: bool = False


class Metrics(RecordPart):
    """Unlearn and Retention Scope metrics, their average success, the raw accuracies
    they come from, the prompt-prefix readings, the general tasks, membership inference
    (null without a holdout) and the same again after each attack."""

    unlearn: ScopeMetrics = Field(default_factory=ScopeMetrics)
    retention: ScopeMetrics = Field(default_factory=ScopeMetrics)
    avg_success: Number = None
    raw: dict[str, Any] | None = None
    prompt_prefixes: dict[str, PrefixedMetrics] = Field(default_factory=dict)
    general: dict[str, Number] | None = None
    mia: MiaMetrics | None = None
    attacks: dict[str, AttackMetrics] = Field(default_factory=dict)
    collapse: CollapseMetrics | None = None  # null without greedy answers (eval.rouge off)


class AttackMetrics(Metrics):
    """The metrics of a copy of the model after one attack (``eval.attacks``), with the
    attack's name, parameters, key (what a rerun reuses it by) and its own details
    (``details``: a weight error, a relearning curve)."""

    name: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    key: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class TrainingSummary(RecordPart):
    """Time, memory and loss per optimizer step (Table 5; see knowundo_bench.train.efficiency)."""

    steps: int = 0
    epochs_run: int = 0
    sec_per_step: Number = None
    sec_per_step_p90: Number = None
    peak_mem_gb: Number = None
    tokens_per_sec: Number = None
    mfu: Number = None
    memory_kind: str | None = None
    device: str | None = None
    final_loss: Number = None
    padding_fraction: Number = None  # mean over steps of the padding share of the computed positions
    step_seconds: list[float] = Field(default_factory=list)
    step_peak_mem_gb: list[float] = Field(default_factory=list)
    step_tokens: list[int] = Field(default_factory=list)
    step_losses: list[Number] = Field(default_factory=list)
    step_lr: list[float] = Field(default_factory=list)  # the learning rate each step used (trackers plot it)
    step_padding_fraction: list[float] = Field(default_factory=list)


class CurvePoint(RecordPart):
    """Scope metrics after ``step`` optimizer steps (Figure 4)."""

    step: int
    unlearn_success: Number = None
    retention_success: Number = None
    unlearn_ppl: Number = None
    retention_ppl: Number = None


class LocalizerRecord(RecordPart):
    """The localizer a method ran with: its parameters, the selected tensors and the
    details it chose to record (extra fields)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    selected: list[str] = Field(default_factory=list)
    seconds: Number = None  # wall time of the localisation: MemFlex's cost beyond its training steps


class GuardRecord(RecordPart):
    """The guard in front of the model: its parameters, its own accuracy per scope on the
    val requests (unlearn: refused; retention: answered), plain and under each prompt
    prefix, and the details it recorded when fitted (extra fields)."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    accuracy: dict[str, float] = Field(default_factory=dict)
    prefixed_accuracy: dict[str, dict[str, float]] = Field(default_factory=dict)


class VanillaRecord(RecordPart):
    """Where the vanilla model came from (cache key and folder), how it was trained, and
    whether it reached ``vanilla.target_accuracy`` (None: no target set)."""

    key: str
    path: str
    reused: bool = False
    training: dict[str, Any] | None = None
    seed: int | None = None
    unit: str | None = None  # the vanilla unit's label ("vanilla", "vanilla@3", "vanilla-memflex")
    target_accuracy: float | None = None
    accuracy: float | None = None  # final teacher-forced accuracy on every pair
    target_met: bool | None = None


class RunIdentity(RecordPart):
    """What a unit's numbers came from: enough to tell two runs apart and to trace one."""

    spec_name: str
    spec_hash: str  # the resolved spec, without output_dir, cache_dir and threads
    data_source: str
    data_hash: str  # the benchmark's QA pairs
    model: str  # source, and the model's name or file where it has one
    seed: int  # this unit's run seed (one of `seeds`, or `seed`)
    harness_version: str
    method_plugin: str | None = None  # "distribution version" of the plugin providing the method
    localizer_plugin: str | None = None
    git_commit: str | None = None  # of the harness checkout, "+dirty" with local changes


class SampleReading(RecordPart):
    """One val question's readings under one prompt: greedy generation (None when not
    generated), teacher-forced token accuracy (0-100) and mean answer NLL."""

    generation: str | None = None
    token_accuracy: Number = None
    answer_nll: Number = None


class SampleLine(RecordPart):
    """One line of ``samples/<unit>.jsonl`` (``run --log-samples``)."""

    scope: Literal["unlearn", "retention"]
    index: int
    question: str
    reference: str
    plain: SampleReading
    prefixes: dict[str, SampleReading] = Field(default_factory=dict)


class PromptRecord(RecordPart):
    format: str
    chat_template: bool = False
    max_length: int | None = None
    max_new_tokens: int | None = None  # the greedy budget of ROUGE-L's generations


class ResultRecord(RecordPart):
    """One unit of work's result (``<label>.json`` in the results directory)."""

    kind: Literal["knowundo-bench/result"] = RECORD_KIND
    schema_version: int = SCHEMA_VERSION
    run: str | None = None
    method: str  # the method's label ("vanilla" for the vanilla model)
    unit: str | None = None  # the record's file name: the label, or "<label>@<seed>" with `seeds`
    order: int = 10**9  # position in the spec (vanilla 0); sorts the leaderboard
    identity: RunIdentity | None = None
    seed: int | None = None
    spec: dict[str, Any] | None = None
    overrides: list[str] = Field(default_factory=list)  # the run's --set KEY=VALUE, as given
    versions: dict[str, str] = Field(default_factory=dict)
    finished_at: str | None = None
    status: Status = "ok"
    numerical_faults: list[str] = Field(default_factory=list)
    method_name: str | None = None
    oracle: bool = False  # the retrain oracle: fine-tuned without the Unlearn Scope, privleak's reference
    ablation_of: str | None = None
    method_seed: int | None = None
    retain_data: str | None = None
    params: dict[str, Any] | None = None
    localizer: LocalizerRecord | None = None
    guard: GuardRecord | None = None
    training: TrainingSummary | None = None
    metrics: Metrics | None = None
    curve: list[CurvePoint] | None = None
    unit_key: str | None = None
    vanilla: VanillaRecord | None = None
    prompt: PromptRecord | None = None
    wall_seconds: float | None = None
    error: str | None = None
    traceback: str | None = None

    @model_validator(mode="before")
    @classmethod
    def upgrade(cls, data: Any) -> Any:
        """Schema 1 (``"schema": 1``) holds the same fields under an older version key."""
        if isinstance(data, dict) and "schema_version" not in data and "schema" in data:
            data = {key: value for key, value in data.items() if key != "schema"}
            data["schema_version"] = 1
        return data

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

"""Localizer ``memflex`` (section 3.3, eq. 8-9, table 12).

For every trainable tensor, average its gradient over ``n_passes`` randomly corrupted
copies (N = 5 in the paper) of the forget set (G_UL), and likewise on the retain set
(G_RT). Select the tensors whose gradient directions diverge, cos(G_UL, G_RT) < mu, and
whose unlearning gradient is large, mean|G_UL| > sigma.

Readings (the paper says only "the label y_u is substituted with a random one"; the
rest follows the official ``pretrain/data_module.py`` and ``localization.py``):

* Corruption: in each copy of an example, floor(n/2) of its n answer positions, drawn
  with replacement, are replaced by a random non-special token in the *input*; the
  targets follow the corrupted sequence (plus the labelled EOS), prompt targets masked.
* Each copy's loss is its mean token cross-entropy; G is the mean of the per-copy
  gradients over all examples and copies (officially batch 1, summed, divided by the
  count), in eval mode (no dropout). Copies run several to a forward pass
  (``batch_size``): the same gradient, fewer launches.
* The magnitude is the mean absolute entry of G_UL (eq. 9 prints G_RT inside: a typo;
  the official code uses G_UL).
* A tensor whose G_UL or G_RT is all zeros (a fresh LoRA ``lora_A``) gets cosine 0.0,
  not NaN; with magnitude 0 it is never selected.
* ``mu``/``sigma`` ``auto``: Table 12 by domain and model family (LLaMA, Qwen); other
  families must give numbers. ``sigma_percentile`` (0-100) sets sigma to that
  percentile of all tensors' magnitudes, since absolute magnitudes depend on scale.
* Determinism: on one machine the gradients, and so the selection, are bitwise the
  same at any thread count (tested). Another CPU's float32 kernels may move a
  statistic in its last bits, so a tensor within a relative 1e-5 of a threshold may be
  selected differently there: the record lists such tensors under ``near_threshold``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import groupby
from typing import Literal

import numpy
import torch
from pydantic import Field, model_validator
from transformers import PreTrainedModel

from knowundo_bench.api import (
    IGNORE_INDEX,
    NO_PROGRESS,
    Encoded,
    Localization,
    LocalizerInfo,
    LocalizerRun,
    Params,
    QAPair,
    RetainSet,
    UnlearnContext,
    allowed_tokens,
    batched,
    example_losses,
    hookimpl,
    length_buckets,
    train_mode,
)

# Table 12: (mu, sigma) by domain and model family (config.model_type).
TABLE_12 = {
    ("copyright", "llama"): (0.92, 6e-4),
    ("copyright", "qwen2"): (0.94, 7e-4),
    ("privacy", "llama"): (0.96, 4e-4),
    ("privacy", "qwen2"): (0.94, 2e-4),
}
NEAR_THRESHOLD = 1e-5  # relative distance at which float noise elsewhere could flip a test


class MemFlexLocalizerParams(Params):
    mu: float | Literal["auto"] = Field("auto", description="cosine threshold; auto: Table 12; >1 disables it")
    sigma: float | Literal["auto"] | None = Field(None, description="magnitude threshold; auto (default): Table 12")
    sigma_percentile: float | None = Field(None, ge=0, le=100, description="sigma as a percentile of magnitudes")
    n_passes: int = Field(5, ge=1, description="corrupted copies per example (paper: N = 5; official: 3)")
    batch_size: int = Field(16, ge=1, description="corrupted copies per forward pass")
    max_length: int | None = Field(
        None, ge=8, description="tokens kept per example (default: model.max_length; official: 500)"
    )

    @model_validator(mode="after")
    def _one_sigma(self) -> MemFlexLocalizerParams:
        if isinstance(self.mu, float) and not -1 <= self.mu <= 2:
            raise ValueError("mu must lie in [-1, 2]")
        if isinstance(self.sigma, float) and self.sigma < 0:
            raise ValueError("sigma must be >= 0")
        if self.sigma is not None and self.sigma_percentile is not None:
            raise ValueError("give either sigma or sigma_percentile, not both")
        if self.sigma is None and self.sigma_percentile is None:
            self.sigma = "auto"
        return self


def table_12(domain: str, family: str) -> tuple[float, float]:
    """Table 12's (mu, sigma) for this domain and model family, or a one-line error."""
    if (domain, family) not in TABLE_12:
        raise ValueError(
            f"mu/sigma 'auto' knows Table 12's LLaMA and Qwen rows only; model type {family!r}: "
            "give mu and sigma (or sigma_percentile) in the localizer"
        )
    return TABLE_12[(domain, family)]


def model_family(model) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", "unknown"))


def answer_positions(example: Encoded, eos_id: int | None) -> list[int]:
    """Positions the corruption may replace: the answer, without a trailing EOS."""
    end = len(example.input_ids)
    if eos_id is not None and end > example.prompt_length and example.input_ids[-1] == eos_id:
        end -= 1
    return list(range(example.prompt_length, end))


def corrupted_copy(example: Encoded, allowed: torch.Tensor, eos_id: int | None, generator: torch.Generator) -> Encoded:
    """``convert_to_model_format_with_random_label``: floor(n/2) answer positions (with
    replacement) get a random allowed token in the input; targets follow the input."""
    ids = list(example.input_ids)
    positions = answer_positions(example, eos_id)
    for _ in range(len(positions) // 2):
        where = positions[int(torch.randint(0, len(positions), (1,), generator=generator))]
        ids[where] = int(allowed[int(torch.randint(0, len(allowed), (1,), generator=generator))])
    labels = tuple(
        IGNORE_INDEX if label == IGNORE_INDEX else token for token, label in zip(ids, example.labels, strict=True)
    )
    return Encoded(input_ids=tuple(ids), labels=labels, prompt_length=example.prompt_length)


def random_targets(example: Encoded, allowed: torch.Tensor, eos_id: int | None, generator: torch.Generator) -> Encoded:
    """The same draws as :func:`corrupted_copy`, applied to the targets only: the
    model reads the real text (the fast localizer)."""
    corrupted = corrupted_copy(example, allowed, eos_id, generator)
    return Encoded(input_ids=example.input_ids, labels=corrupted.labels, prompt_length=example.prompt_length)


def accumulate(model, names: Sequence[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {
        n: (
            params[n].grad.float().clone()
            if params[n].grad is not None
            else torch.zeros_like(params[n], dtype=torch.float32)
        )
        for n in names
    }


def average_gradients(
    model,
    encoder,
    examples: Sequence[Encoded],
    names: Sequence[str],
    p: MemFlexLocalizerParams,
    allowed: torch.Tensor,
    generator: torch.Generator,
    reporter=NO_PROGRESS,
) -> dict[str, torch.Tensor]:
    """Mean over examples and ``n_passes`` corrupted copies of the gradient of each
    copy's mean token cross-entropy (the official batch-1 loop, batched). The copies are
    drawn in the official order. The copies of an example differ in their answers only,
    so where the model keeps a key/value cache their prompt runs once for all of them
    (:func:`shared_prompt_passes`); elsewhere they run in length buckets of at most
    ``batch_size`` (issue 28)."""
    eos = encoder.tokenizer.eos_token_id
    copies = [corrupted_copy(e, allowed, eos, generator) for _ in range(p.n_passes) for e in examples]
    model.zero_grad(set_to_none=True)
    rest = shared_prompt_passes(model, examples, copies, p, reporter) if shares_prompts(model) else copies
    device = next(model.parameters()).device
    plan = length_buckets([len(c.input_ids) for c in rest], max_rows=p.batch_size)
    for run in plan.passes:
        batch = {k: v.to(device) for k, v in encoder.collate([rest[i] for i in run]).items()}
        (example_losses(model, batch).sum() / len(copies)).backward()
        reporter.advance(len(run))
    gradients = accumulate(model, names)
    model.zero_grad(set_to_none=True)
    return gradients


def shares_prompts(model) -> bool:  # pragma: no mutate block (speed only: see shared_prompt_passes)
    """Whether the model runs on from a key/value cache of its own (a transformers
    causal LM, adapters included)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return isinstance(base, PreTrainedModel) and bool(getattr(base, "_supports_cache_class", True))


def _cache_keyword(model) -> str:  # pragma: no mutate block (speed only: see shared_prompt_passes)
    """transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name is kept
    until 5.40)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


# pragma: no mutate start (a faster path to the same gradients, tested equal to the plain one)
def shared_prompt_passes(
    model, examples: Sequence[Encoded], copies: Sequence[Encoded], p: MemFlexLocalizerParams, reporter
) -> list[Encoded]:
    """Back-propagate the copies of examples with a prompt, each pass a few examples
    whose prompts have the same length: their prompt runs once into a key/value cache,
    which every copy's answer then reads (the gradient through the cache adds up over
    the copies, as the copies' own prompt positions would). Same gradient as the copies
    run whole; returns the copies it left (examples without a prompt)."""
    n, device = len(examples), next(model.parameters()).device
    keyword = _cache_keyword(model)
    with_prompt = [i for i in range(n) if examples[i].prompt_length > 0]
    order = sorted(with_prompt, key=lambda i: (examples[i].prompt_length, len(examples[i].input_ids), i))
    per_pass = max(1, p.batch_size // p.n_passes)
    for _, same_length in groupby(order, key=lambda i: examples[i].prompt_length):
        for run in batched(list(same_length), per_pass):
            width = examples[run[0]].prompt_length
            prompts = torch.tensor([examples[i].input_ids[:width] for i in run], device=device)
            head = model(input_ids=prompts, use_cache=True, logits_to_keep=1)
            cache = getattr(head, "cache", None) or head.past_key_values
            cache.batch_repeat_interleave(p.n_passes)  # rows: each example's copies together
            rows = [copies[k * n + i] for i in run for k in range(p.n_passes)]
            answers = max(len(c.input_ids) for c in rows) - width
            input_ids = torch.zeros((len(rows), answers), dtype=torch.long)
            labels = torch.full((len(rows), answers), IGNORE_INDEX, dtype=torch.long)
            attention = torch.zeros((len(rows), width + answers), dtype=torch.long)
            for r, c in enumerate(rows):
                length = len(c.input_ids) - width
                input_ids[r, :length] = torch.tensor(c.input_ids[width:])
                labels[r, :length] = torch.tensor(c.labels[width:])
                attention[r, : width + length] = 1
            tail = model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False, **{keyword: cache}
            ).logits
            # the prompt's last position predicts the first answer token, each answer position the next
            logits = torch.cat([head.logits.repeat_interleave(p.n_passes, dim=0), tail[:, :-1]], dim=1)
            labels = labels.to(device)
            losses = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                labels.reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="none",
            ).view(labels.shape)
            counts = (labels != IGNORE_INDEX).sum(dim=1).clamp(min=1)
            ((losses.sum(dim=1) / counts).sum() / len(copies)).backward()
            reporter.advance(len(rows))
    return [copies[k * n + i] for k in range(p.n_passes) for i in range(n) if examples[i].prompt_length == 0]


# pragma: no mutate end


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of flattened tensors; 0.0 when either is all zeros."""
    a, b = a.flatten().double(), b.flatten().double()
    norms = a.norm() * b.norm()
    return float(a @ b / norms) if norms > 0 else 0.0


def near_threshold(values: torch.Tensor | Sequence[float], threshold: float) -> torch.Tensor:
    """Which ``values`` lie within a relative ``NEAR_THRESHOLD`` of ``threshold``."""
    values = torch.as_tensor(values, dtype=torch.float64)
    return (values - threshold).abs() <= NEAR_THRESHOLD * max(abs(threshold), 1e-12)


def select(stats: dict[str, dict[str, float | None]], mu: float, sigma: float) -> list[str]:
    """Eq. 9: tensors with cos < mu and magnitude > sigma (a cosine that was not computed
    fails no test: its tensor's magnitude is not above sigma, or mu is above 1)."""
    return [
        n
        for n, s in stats.items()
        if (s["cos"] is None or s["cos"] < mu) and s["magnitude"] is not None and s["magnitude"] > sigma
    ]


@hookimpl
def register_localizers() -> list[LocalizerInfo]:
    return [
        LocalizerInfo(
            name="memflex",
            description="Tensors with cos(G_UL, G_RT) < mu and mean|G_UL| > sigma (random-label gradients).",
            params=MemFlexLocalizerParams,
        )
    ]


GradientFn = Callable[..., dict[str, torch.Tensor]]
Selectable = Callable[[dict[str, torch.Tensor]], list[str]]


def scope_gradients(
    localizer, model, forget, retain, context, gradients: GradientFn | None = None, selectable: Selectable | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """G_UL for every trainable tensor and G_RT (eq. 8's inputs), in eval mode; the
    model is unchanged. ``gradients`` defaults to :func:`average_gradients`.
    ``selectable(g_ul)`` names the tensors whose G_RT can still matter once G_UL is
    known (default: all): the retain pass leaves the others frozen, which spares their
    weight gradients (and the back-propagation below the lowest tensor that remains);
    when it names none, the retain pass is skipped."""
    gradients = gradients or average_gradients
    p = localizer.params
    encoder = context.encoder if p.max_length is None else context.encoder.with_max_length(p.max_length)
    names = [n for n, param in model.named_parameters() if param.requires_grad]
    generator = torch.Generator().manual_seed(localizer.seed)
    allowed = allowed_tokens(encoder.tokenizer)
    forget_examples = encoder.encode_all(forget, with_eos=True)  # the official localisation labels EOS
    retain_examples = encoder.encode_all(retain, with_eos=True)
    total = (len(forget_examples) + len(retain_examples)) * p.n_passes  # corrupted copies
    with context.progress(f"localize {context.label}", total) as reporter, train_mode(model, False):
        g_ul = gradients(model, encoder, forget_examples, names, p, allowed, generator, reporter)
        needed = names if selectable is None else [n for n in names if n in set(selectable(g_ul))]
        if not needed:
            reporter.advance(len(retain_examples) * p.n_passes)
            return g_ul, {}
        with trainable_only(model, needed):
            g_rt = gradients(model, encoder, retain_examples, needed, p, allowed, generator, reporter)
    return g_ul, g_rt


def selectable_tensors(p: MemFlexLocalizerParams, model, context) -> Selectable:
    """Eq. 9 at tensor level: a tensor whose magnitude mean|G_UL| is not above sigma is
    never selected, so its G_RT is not needed. Tensors within a relative
    ``NEAR_THRESHOLD`` below sigma keep theirs, so that ``near_threshold`` stays
    complete; with mu above 1 no cosine can fail, and none is needed. Table 12's
    thresholds are looked up at once, so that a family it lacks fails before any work."""
    if p.mu == "auto" or p.sigma == "auto":
        table_12(context.domain, model_family(model))

    def needed(g_ul: dict[str, torch.Tensor]) -> list[str]:
        magnitudes = {n: magnitude(g) for n, g in g_ul.items()}
        mu, sigma = thresholds(p, model, context, list(magnitudes.values()))
        floor = sigma - NEAR_THRESHOLD * max(abs(sigma), 1e-12)
        return [n for n, m in magnitudes.items() if m > floor] if mu <= 1 else []

    return needed


def magnitude(gradient: torch.Tensor) -> float:
    """Eq. 9's magnitude: the mean absolute entry of G_UL."""
    return float(gradient.abs().mean())


@contextmanager
def trainable_only(model, names: Sequence[str]) -> Iterator[None]:
    """Freeze every trainable tensor not in ``names`` for a block, then restore."""
    keep = set(names)
    frozen = [param for n, param in model.named_parameters() if param.requires_grad and n not in keep]
    for param in frozen:
        param.requires_grad_(False)
    try:
        yield
    finally:
        for param in frozen:
            param.requires_grad_(True)


def thresholds(
    p: MemFlexLocalizerParams, model, context, magnitudes: list[float] | torch.Tensor
) -> tuple[float, float]:
    """(mu, sigma): numbers as given, Table 12 for ``auto``, or sigma as a percentile."""
    mu, sigma = p.mu, p.sigma
    if mu == "auto" or sigma == "auto":
        table_mu, table_sigma = table_12(context.domain, model_family(model))
        mu = table_mu if mu == "auto" else mu
        sigma = table_sigma if sigma == "auto" else sigma
    if p.sigma_percentile is not None:
        values = torch.as_tensor(magnitudes, dtype=torch.float64).flatten().numpy()
        sigma = float(numpy.percentile(values, p.sigma_percentile))
    assert sigma is not None, "the parameters' validator requires sigma or sigma_percentile"
    return float(mu), float(sigma)


def tensor_localization(p: MemFlexLocalizerParams, model, context, g_ul, g_rt) -> Localization:
    """Eq. 8-9 per tensor; tensors near a threshold are listed (see the module notes).
    A tensor without G_RT (:func:`scope_gradients` skips those that cannot be selected)
    has cosine ``None``."""
    cosines = {n: cosine(g_ul[n], g_rt[n]) for n in g_ul if n in g_rt}
    magnitudes = {n: magnitude(g_ul[n]) for n in g_ul}
    stats = {n: {"cos": cosines.get(n), "magnitude": magnitudes[n]} for n in g_ul}
    mu, sigma = thresholds(p, model, context, list(magnitudes.values()))
    selected = select(stats, mu, sigma)
    if not selected:
        raise ValueError(f"memflex selected no tensor (mu={mu}, sigma={sigma:.3g}); raise mu or lower sigma")
    names = list(stats)
    near = {n for n, x in zip(cosines, near_threshold(list(cosines.values()), mu), strict=True) if x}
    near |= {n for n, x in zip(magnitudes, near_threshold(list(magnitudes.values()), sigma), strict=True) if x}
    return Localization(
        selected=selected,
        details={
            "mu": mu,
            "sigma": sigma,
            "tensors": stats,
            "near_threshold": [n for n in names if n in near],
        },
    )


@hookimpl
def localize(
    localizer: LocalizerRun,
    model: torch.nn.Module,
    forget: list[QAPair],
    retain: RetainSet,
    context: UnlearnContext,
) -> Localization:
    selectable = selectable_tensors(localizer.params, model, context)
    g_ul, g_rt = scope_gradients(localizer, model, forget, retain, context, selectable=selectable)
    return tensor_localization(localizer.params, model, context, g_ul, g_rt)

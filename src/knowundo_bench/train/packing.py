"""Passes over examples of unequal length without padding them to the longest (issue 28).

A right-padded batch computes every row to the batch's longest example; at the official
recipe a stacked window of 16 examples computed 16 x 84 positions for 59 real tokens on
average. Two ways out, with the same per-example losses and so the same gradient:

* **Length buckets** (CPU): sort the examples by length and split them into passes of
  similar length, each padded only to its own longest. More passes cost more fixed work
  (kernel launches, Python), so the split minimises ``sum(rows x width) + passes x
  PASS_COST``, with ``PASS_COST`` a pass's fixed cost in token positions, measured.
* **Packing** (CUDA): concatenate the examples into rows of up to ``PACKED_ROW_TOKENS``
  tokens with position ids restarting at 0 for each, and no attention mask. transformers
  reads such position ids as packed sequences: FlashAttention-2 runs them as
  variable-length sequences, and sdpa, eager and flex attention get a block-diagonal
  causal mask, so no example attends across another. On a CPU the dense mask over a
  packed row costs more than the padding it saves, so the CPU uses buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from knowundo_bench.benchmark.encoding import IGNORE_INDEX

PASS_COST = 48
"""A forward and backward pass's fixed cost in token positions: the intercept over the
slope of pass time against positions on the benchmark model (4-layer Llama, hidden 256,
2 CPU cores, torch 2.13: 6.8 ms and 144 us per position; benchmarks/README.md).
Larger models have a smaller one, so this errs towards fewer passes."""
PACKED_ROW_TOKENS = 2048
"""Tokens per packed row: with a dense mask (sdpa) attention grows with the square of
the row, so rows stay short; variable-length kernels do not care."""


@dataclass(frozen=True)
class PassPlan:
    """Which examples each pass runs (indices into the window) and the positions the
    passes compute against the real tokens they hold."""

    passes: tuple[tuple[int, ...], ...]
    computed: int
    real: int

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.real / self.computed if self.computed else 0.0


def padded_positions(lengths: Sequence[int]) -> int:
    """Positions one right-padded pass over ``lengths`` computes."""
    return len(lengths) * max(lengths, default=0)


def length_buckets(lengths: Sequence[int], pass_cost: float | None = None, max_rows: int | None = None) -> PassPlan:
    """Examples sorted by length (stable) and cut into contiguous runs, each a pass padded
    to its longest, minimising ``sum(rows x width) + passes x pass_cost`` (dynamic
    programming over the sorted lengths; at most ``max_rows`` examples a pass).
    ``pass_cost`` defaults to :data:`PASS_COST`."""
    pass_cost = PASS_COST if pass_cost is None else pass_cost
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    sorted_lengths = [lengths[i] for i in order]
    n = len(order)
    limit = max_rows or n
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j examples
    start_of = [0] * (n + 1)
    for end in range(1, n + 1):
        width = sorted_lengths[end - 1]
        for start in range(max(0, end - limit), end):
            cost = best[start] + (end - start) * width + pass_cost
            if cost < best[end]:
                best[end], start_of[end] = cost, start
    cuts, end = [], n
    while end > 0:
        cuts.append((start_of[end], end))
        end = start_of[end]
    passes = tuple(tuple(order[a:b]) for a, b in reversed(cuts))
    computed = sum(padded_positions([lengths[i] for i in run]) for run in passes)
    return PassPlan(passes, computed, sum(lengths))


def packing_plan(lengths: Sequence[int], capacity: int = PACKED_ROW_TOKENS, max_rows: int | None = None) -> PassPlan:
    """One pass (``max_rows`` examples at most each) whose examples are packed into rows;
    a pass computes its rows padded to the longest row."""
    limit = max_rows or len(lengths)
    passes = tuple(tuple(range(start, min(start + limit, len(lengths)))) for start in range(0, len(lengths), limit))
    computed = 0
    for run in passes:
        rows = pack_rows([lengths[i] for i in run], capacity)
        computed += padded_positions([sum(lengths[run[i]] for i in row) for row in rows])
    return PassPlan(passes, computed, sum(lengths))


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing: indices of ``lengths`` grouped into rows of at most
    ``max(capacity, longest)`` tokens."""
    capacity = max(capacity, max(lengths, default=0))
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        row = next((r for r, free in enumerate(room) if free >= lengths[index]), None)
        if row is None:
            rows.append([])
            room.append(capacity)
            row = len(rows) - 1
        rows[row].append(index)
        room[row] -= lengths[index]
    return rows


def packed(batch: dict[str, torch.Tensor], capacity: int = PACKED_ROW_TOKENS) -> dict[str, torch.Tensor]:
    """A right-padded batch's real tokens packed into rows: ``input_ids``, ``position_ids``
    (from 0 in each example), ``labels`` (each example's first label ignored: in its own
    row nothing predicts it) and ``example`` (which example each position belongs to,
    -1 for the tail padding of a row)."""
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    rows = pack_rows(lengths, capacity)
    width = max(sum(lengths[i] for i in row) for row in rows)
    out = {
        "input_ids": torch.zeros((len(rows), width), dtype=torch.long),
        "position_ids": torch.zeros((len(rows), width), dtype=torch.long),
        "labels": torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long),
        "example": torch.full((len(rows), width), -1, dtype=torch.long),
    }
    for r, row in enumerate(rows):
        at = 0
        for index in row:
            length = lengths[index]
            span = slice(at, at + length)
            out["input_ids"][r, span] = batch["input_ids"][index, :length]
            out["labels"][r, span] = batch["labels"][index, :length]
            out["labels"][r, at] = IGNORE_INDEX
            out["position_ids"][r, span] = torch.arange(length)
            out["example"][r, span] = index
            at += length
        out["position_ids"][r, at:] = torch.arange(width - at)  # the tail: a segment of its own
    return out


def packed_nll_sums(model: torch.nn.Module, rows: dict[str, torch.Tensor], n_examples: int) -> torch.Tensor:
    """Each example's summed answer-token NLL from one forward over packed rows."""
    logits = model(input_ids=rows["input_ids"], position_ids=rows["position_ids"], use_cache=False).logits
    labels = rows["labels"][:, 1:]
    losses = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)).float(),
        labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    owners = rows["example"][:, 1:].reshape(-1)
    scored = labels.reshape(-1) != IGNORE_INDEX
    sums = torch.zeros(n_examples, dtype=losses.dtype, device=losses.device)
    return sums.index_add(0, owners[scored].to(losses.device), losses[scored])


def packs_here(device: torch.device) -> bool:
    """Whether passes pack (CUDA) or run length buckets (CPU and others)."""
    return device.type == "cuda"

"""Data source ``synthetic``: fictitious authors generated offline (the embedded default)."""

from __future__ import annotations

from pydantic import Field

from knowundo_bench.api import DataSourceInfo, InputError, Params, QAPair, hookimpl
from knowundo_bench.plugins.data.synthetic_authors import MAX_AUTHORS, generate_authors


class SyntheticParams(Params):
    n_authors: int = Field(20, ge=1, le=MAX_AUTHORS)
    data_seed: int = 0


def load(params: SyntheticParams, domain: str) -> list[QAPair]:
    if domain != "privacy":
        raise InputError(
            f"the synthetic source generates the 'privacy' domain only, not {domain!r}", source="data.domain"
        )
    return generate_authors(params.n_authors, seed=params.data_seed)


@hookimpl
def register_data_sources() -> list[DataSourceInfo]:
    return [
        DataSourceInfo(
            name="synthetic",
            description=(
                "Deterministic fictitious authors (Name/Genre/Born/Awards kept; Parents/Email/Address forgotten)."
            ),
            params=SyntheticParams,
            load=load,
        )
    ]

"""Data source ``synthetic``: generated offline (the embedded default), in either domain:
fictitious authors (``privacy``) or fictitious books (``copyright``)."""

from __future__ import annotations

from pydantic import Field

from knowundo_bench.api import DataSourceInfo, InputError, Params, QAPair, hookimpl
from knowundo_bench.plugins.data.synthetic_authors import MAX_AUTHORS, generate_authors
from knowundo_bench.plugins.data.synthetic_books import MAX_BOOKS, generate_books


class SyntheticParams(Params):
    n_authors: int = Field(20, ge=1, le=MAX_AUTHORS, description="privacy: how many fictitious authors")
    n_books: int = Field(20, ge=1, le=MAX_BOOKS, description="copyright: how many fictitious books")
    data_seed: int = 0


# domain -> its generator, from the parameters
GENERATORS = {
    "privacy": lambda params: generate_authors(params.n_authors, seed=params.data_seed),
    "copyright": lambda params: generate_books(params.n_books, seed=params.data_seed),
}


def load(params: SyntheticParams, domain: str) -> list[QAPair]:
    if domain not in GENERATORS:
        raise InputError(
            f"the synthetic source generates {' and '.join(map(repr, GENERATORS))}, not {domain!r}",
            source="data.domain",
        )
    return GENERATORS[domain](params)


def more_instances(params: SyntheticParams, count: int) -> SyntheticParams:
    """``count`` authors and books more (``data.holdout_instances``), drawn together with
    the others: the last ``count`` are set aside (the names of the first ones stay, their
    drawn attributes may differ from a run without a holdout)."""
    if params.n_authors + count > MAX_AUTHORS or params.n_books + count > MAX_BOOKS:
        raise InputError(f"the synthetic source generates at most {min(MAX_AUTHORS, MAX_BOOKS)} instances")
    return params.model_copy(update={"n_authors": params.n_authors + count, "n_books": params.n_books + count})


@hookimpl
def register_data_sources() -> list[DataSourceInfo]:
    return [
        DataSourceInfo(
            name="synthetic",
            description=(
                "Deterministic fictitious authors (privacy: Name/Genre/Born/Awards kept; Parents/Email/Address "
                "forgotten) or books (copyright: Meta-Info/Review/Recommendation kept; Revision/Extension forgotten)."
            ),
            params=SyntheticParams,
            load=load,
            more_instances=more_instances,
        )
    ]

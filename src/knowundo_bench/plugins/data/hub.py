"""Data source ``hub``: ``datasets.load_dataset("zjunlp/KnowUnDo", name=domain, split=scope)``.

Each row of a scope holds ``train`` and ``val`` lists of ``{text, labels}`` records.
``repo`` may also be a local dataset folder in the same shape (how tests run offline).
"""

from __future__ import annotations

import json
from typing import Annotated

from knowundo_bench.api import (
    SCOPES,
    SPLITS,
    DataSourceInfo,
    HubIdOrPath,
    InputError,
    Params,
    QAPair,
    hookimpl,
    infer_instances,
    parse_raw_records,
    reads_as_path,
    records_to_pairs,
    require_hub,
)


class HubParams(Params):
    repo: Annotated[str, HubIdOrPath()] = "zjunlp/KnowUnDo"
    revision: str | None = None


def load(params: HubParams, domain: str) -> list[QAPair]:
    import datasets

    if not reads_as_path(params.repo):
        require_hub("data.repo")
    pairs: list[QAPair] = []
    for scope in SCOPES:
        where = f"{params.repo}[{domain}/{scope}]"
        try:
            rows = datasets.load_dataset(params.repo, name=domain, split=scope, revision=params.revision)
        except Exception as error:  # datasets raises many types; report one line
            raise InputError(
                f"cannot load dataset ({type(error).__name__}: {error})".splitlines()[0], source=where
            ) from None
        for index, row in enumerate(rows):
            for split in SPLITS:
                if split not in row:
                    raise InputError(f"row {index} has no {split!r} column", source=where)
                records = parse_raw_records(json.dumps(row[split]), f"{where} row {index} {split}")
                pairs += records_to_pairs(records, scope, split)
    return infer_instances(pairs)


@hookimpl
def register_data_sources() -> list[DataSourceInfo]:
    return [
        DataSourceInfo(
            name="hub",
            description="KnowUnDo from the Hugging Face hub (zjunlp/KnowUnDo) or a local copy in its shape.",
            params=HubParams,
            load=load,
        )
    ]

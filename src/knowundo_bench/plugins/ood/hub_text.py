"""OOD retain source ``hub_text``: a text column of any Hugging Face hub dataset
(``datasets.load_dataset(repo, name, split=split, revision=revision)[column]``), the
paper's "other domain data". ``repo`` may be a local dataset folder (how tests run
offline). Dataset scripts never run (``trust_remote_code`` is not passed).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from knowundo_bench.api import (
    HubIdOrPath,
    InputError,
    OodSourceInfo,
    Params,
    RetainText,
    hookimpl,
    reads_as_path,
    require_hub,
)


class HubTextParams(Params):
    repo: Annotated[str, HubIdOrPath()] = Field(min_length=1)
    name: str | None = None
    split: str = "train"
    column: str = "text"
    revision: str | None = None


def load(params: HubTextParams) -> list[RetainText]:
    import datasets

    if not reads_as_path(params.repo):
        require_hub("ood_retain.repo")
    where = f"ood_retain {params.repo}[{params.name or 'default'}/{params.split}]"
    try:
        rows = datasets.load_dataset(params.repo, name=params.name, split=params.split, revision=params.revision)
    except Exception as error:  # datasets raises many types; report one line
        raise InputError(
            f"cannot load dataset ({type(error).__name__}: {error})".splitlines()[0], source=where
        ) from None
    if params.column not in rows.column_names:
        raise InputError(f"no column {params.column!r} (columns: {', '.join(rows.column_names)})", source=where)
    passages = []
    for index, value in enumerate(rows[params.column]):
        if not isinstance(value, str):
            raise InputError(f"row {index}: {params.column} is {type(value).__name__}, not text", source=where)
        if value.strip():
            passages.append(RetainText(text=value))
    return passages


@hookimpl
def register_ood_sources() -> list[OodSourceInfo]:
    return [
        OodSourceInfo(
            name="hub_text",
            description="A text column of a hub dataset (or a local dataset folder).",
            params=HubTextParams,
            load=load,
        )
    ]

"""Data source ``local``: a KnowUnDo-style directory of ``{unlearn,retention}_{train,val}.json``."""

from __future__ import annotations

from pydantic import DirectoryPath, Field

from knowundo_bench.api import (
    DataSourceInfo,
    Params,
    QAPair,
    hookimpl,
    infer_instances,
    read_local_domain,
)


class LocalParams(Params):
    path: DirectoryPath = Field(description="the folder (relative: to the spec file's folder)")


def load(params: LocalParams, domain: str) -> list[QAPair]:
    return infer_instances(read_local_domain(params.path))


@hookimpl
def register_data_sources() -> list[DataSourceInfo]:
    return [
        DataSourceInfo(
            name="local",
            description="A directory of {unlearn,retention}_{train,val}.json lists of {text, labels}.",
            params=LocalParams,
            load=load,
        )
    ]

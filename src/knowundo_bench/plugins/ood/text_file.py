"""OOD retain source ``text_file``: passages from a local file.

``.jsonl``: one JSON object per line, the passage in ``field``; ``.json``: a list of
such objects; any other suffix: plain UTF-8 text, one passage per non-empty line.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    TypeAdapter,
    ValidationError,
    create_model,
)

from knowundo_bench.api import (
    InputError,
    OodSourceInfo,
    Params,
    RetainText,
    format_validation_error,
    hookimpl,
    read_json_lines,
)


class TextFileParams(Params):
    path: FilePath = Field(description="the file (relative: to the spec file's folder)")
    field: str = Field("text", min_length=1, description="the passage's key in .jsonl/.json records")


def _record_model(field: str) -> type[BaseModel]:
    fields: dict[str, Any] = {field: (str, Field(min_length=1))}
    return create_model("TextRecord", __config__=ConfigDict(extra="ignore"), **fields)


def load(params: TextFileParams) -> list[RetainText]:
    path = params.path
    if not path.is_file():
        raise InputError("file not found", source=str(path))
    record = _record_model(params.field)
    if path.suffix == ".jsonl":
        return [RetainText(text=getattr(r, params.field)) for r in read_json_lines(path, record)]
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text (byte {error.start})", source=str(path)) from None
    if path.suffix == ".json":
        try:
            # the record model is made at run time (its field is a parameter)
            records = TypeAdapter(list[record]).validate_json(text)  # type: ignore[valid-type]
        except ValidationError as error:
            raise InputError(format_validation_error(error), source=str(path)) from None
        return [RetainText(text=getattr(r, params.field)) for r in records]
    return [RetainText(text=line.strip()) for line in text.splitlines() if line.strip()]


@hookimpl
def register_ood_sources() -> list[OodSourceInfo]:
    return [
        OodSourceInfo(
            name="text_file",
            description="Passages from a local .jsonl/.json (field) or text file.",
            params=TextFileParams,
            load=load,
        )
    ]

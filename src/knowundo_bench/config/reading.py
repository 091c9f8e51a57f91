"""Reading a spec file and reporting what is wrong in it: YAML parsed safely, every
value checked (no NaN, infinity or NUL anywhere), and "did you mean" hints for
misspelt fields and sections.
"""

from __future__ import annotations

import difflib
import math
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from knowundo_bench.config.spec import SAFE_NAME, Spec
from knowundo_bench.core.errors import InputError
from knowundo_bench.core.messages import first_error
from knowundo_bench.core.untrusted import load_yaml, read_regular_file


def read_yaml_file(path: Path, what: str = "spec") -> Any:
    """A YAML file parsed; a missing, unreadable, non-UTF-8 or malformed file, one that is
    not a regular file or too large, and YAML with aliases or nested too deep are one
    ``InputError`` line naming it (``what`` says what the file is: "spec", "build spec")."""
    try:
        text = read_regular_file(path).decode("utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} file not found", source=str(path)) from None
    except OSError as error:
        raise InputError(f"cannot read {what} ({error.strerror})", source=str(path)) from None
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text (byte {error.start})", source=str(path)) from None
    except ValueError as error:
        raise InputError(f"cannot read {what} ({error})", source=str(path)) from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"invalid YAML{where}: {getattr(error, 'problem', error)}", source=str(path)) from None


def model_at(model: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The nested pydantic model that ``path`` (field names, list indices) leads to."""
    for part in path:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        candidates += [arg for c in list(candidates) for arg in typing.get_args(c)]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return None
        model = nested[0]
    return model


# Top-level keys people write for a section of another name: "did you mean" on meaning,
# where spelling alone (difflib) would not find it.
SECTION_ALIASES = {
    "evaluation": "eval",
    "evaluate": "eval",
    "metrics": "eval",
    "method": "methods",
    "baselines": "methods",
    "unlearning": "methods",
    "dataset": "data",
    "datasets": "data",
    "models": "model",
    "base_model": "model",
    "pretrain": "vanilla",
    "pretraining": "vanilla",
    "finetune": "vanilla",
    "fine_tuning": "vanilla",
    "output": "output_dir",
    "out_dir": "output_dir",
    "results": "output_dir",
    "results_dir": "output_dir",
    "cache": "cache_dir",
    "ood": "ood_retain",
    "retain_data": "ood_retain",
    "num_threads": "threads",
    "random_seed": "seed",
    "device": "model.device",
}


# The Hugging Face Trainer's names (TrainingArguments) of the training settings, which
# people who fine-tune with transformers type first; each with what it is called here.
HF_SPELLINGS = {
    "learning_rate": ("lr", ""),
    "num_epochs": ("epochs", ""),
    "num_train_epochs": ("epochs", ""),
    "gradient_accumulation_steps": ("grad_accum", ""),
    "per_device_train_batch_size": ("batch_size", ""),
    "train_batch_size": ("batch_size", ""),
    "warmup_steps": ("warmup_ratio", ", a count of steps; warmup_ratio is a fraction of them"),
}


def field_hint(error: ValidationError, model: type[BaseModel], known_extra: set[str]) -> str:
    first = first_error(error)
    if first["type"] == "extra_forbidden" and model is Spec and len(first["loc"]) == 1:
        alias = SECTION_ALIASES.get(str(first["loc"][0]).lower())
        if alias is not None:
            return f"; did you mean {alias!r}?"
    if first["type"] == "extra_forbidden":
        owner = model_at(model, tuple(first["loc"][:-1]))
        known = [*(owner.model_fields if owner else []), *(known_extra if owner is model else [])]
        spelling, note = HF_SPELLINGS.get(str(first["loc"][-1]), ("", ""))
        if spelling in known:
            return f"; did you mean {spelling!r}? ({first['loc'][-1]} is the Hugging Face Trainer's name{note})"
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        if close:
            return f"; did you mean {close[0]!r}?"
    return ""


def non_finite_field(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """The path of the first NaN or infinite number in a parsed spec, or None.

    Checked on the raw YAML so that it covers every field, plugin parameters included
    (``allow_inf_nan=False`` on the models also rejects the strings "inf" and "nan")."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = non_finite_field(child, (*path, key))
        if found is not None:
            return found
    return None


def nul_field(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """The path of the first key or string holding a NUL character (YAML's ``"\\0"``),
    which no path, name or text field can take, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        if isinstance(key, str) and "\x00" in key:
            return (*path, key.replace("\x00", "\\0"))
        found = nul_field(child, (*path, key))
        if found is not None:
            return found
    return None


def blame_override(message: str, overrides: typing.Sequence[str]) -> str:
    """``message`` naming the ``--set`` that put the bad value there, if one did."""
    for override in reversed(overrides):
        key = override.partition("=")[0].strip()
        if message.startswith((f"{key}:", f"{key}.")):
            return f"{message} (from --set {override})"
    return message


def check_values(raw: dict[str, Any], source: str, overrides: typing.Sequence[str] = ()) -> None:
    """No NaN or infinite number and no NUL character anywhere (before paths are touched)."""
    bad = non_finite_field(raw)
    if bad is not None:
        message = f"{'.'.join(map(str, bad))}: must be a finite number"
        raise InputError(blame_override(message, overrides), source=source)
    bad = nul_field(raw)
    if bad is not None:
        message = f"{'.'.join(map(str, bad)) or 'spec'}: must not contain a NUL character"
        raise InputError(blame_override(message, overrides), source=source)


def planned_output(path: Path, overrides: typing.Sequence[str], output: Path | None) -> Path | None:
    """Where a run of the spec file ``path`` writes, as the run decides it (``--output``,
    else ``output_dir``, else ``results/NAME``), read without plugins or torch so that the
    folder can be locked before anything loads; None when the spec does not say it
    validly (validating the spec then says why)."""
    if output is not None:
        return output
    from knowundo_bench.config.overrides import apply_overrides
    from knowundo_bench.config.paths import anchor_paths

    raw = read_yaml_file(path)
    try:
        raw = anchor_paths(Spec, raw, path.absolute().parent)
        if overrides:
            raw = anchor_paths(Spec, apply_overrides(raw, overrides), Path.cwd())
    except (InputError, TypeError, ValueError, AttributeError):
        return None
    folder, name = (raw.get("output_dir"), raw.get("name")) if isinstance(raw, dict) else (None, None)
    if isinstance(folder, str) and folder:
        return Path(folder)
    if isinstance(name, str) and SAFE_NAME.match(name) and ".." not in name:
        return Path("results") / name
    return None

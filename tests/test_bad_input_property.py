"""Property: every malformed spec or data file exits with code 2 and one line naming
the file (and the field where there is one) — never a traceback. Hypothesis generates
the inputs, 600 per run; each one is malformed by construction."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from helpers import error_lines
from knowundo_bench.cli import app
from knowundo_bench.plugins.data.synthetic_authors import MAX_AUTHORS

VALID = {
    "name": "prop",
    "data": {"source": "synthetic", "n_authors": 2},
    "model": {"source": "tiny", "device": "cpu", "hidden_size": 16, "num_layers": 1, "num_heads": 2},
    "vanilla": {"epochs": 1},
    "methods": [{"name": "ga"}],
    "eval": {"batch_size": 4},
}
SECTIONS = ["", "data", "model", "vanilla", "methods.0", "eval", "ood_retain"]
KNOWN = {
    "name",
    "seed",
    "threads",
    "output_dir",
    "cache_dir",
    "data",
    "ood_retain",
    "model",
    "vanilla",
    "methods",
    "eval",
    "efficiency",
    "source",
    "domain",
    "instances",
    "n_authors",
    "data_seed",
    "device",
    "mixed_precision",
    "max_length",
    "hidden_size",
    "intermediate_size",
    "num_layers",
    "num_heads",
    "vocab_size",
    "max_position_embeddings",
    "epochs",
    "lr",
    "batch_size",
    "grad_accum",
    "weight_decay",
    "warmup_ratio",
    "max_grad_norm",
    "max_steps",
    "target_accuracy",
    "check_every",
    "label",
    "localizer",
    "ablate_localization",
    "rouge",
    "max_new_tokens",
    "prompt_prefixes",
    "every_n_steps",
    "general",
    "general_data_dir",
    "max_examples",
    "n_passages",
    "text_seed",
    "path",
    "forget_weight",
    "retain_weight",
}
# Fields and values of the wrong type or out of range (no lax coercion can rescue them).
BAD_VALUES = [
    ("seed", st.one_of(st.lists(st.integers(), min_size=1), st.dictionaries(st.text(), st.integers(), min_size=1))),
    ("vanilla.epochs", st.one_of(st.integers(max_value=0), st.text(alphabet="xyz!", min_size=1))),
    ("methods.0.lr", st.one_of(st.floats(max_value=0.0), st.text(alphabet="abc", min_size=1), st.lists(st.floats()))),
    ("eval.batch_size", st.one_of(st.integers(max_value=0), st.lists(st.integers(), min_size=1))),
    ("data.domain", st.text(min_size=1).filter(lambda t: t not in ("privacy", "copyright"))),
    ("data.n_authors", st.integers(min_value=MAX_AUTHORS + 1) | st.integers(max_value=0)),
    ("model.mixed_precision", st.text(min_size=1).filter(lambda t: t not in ("no", "fp16", "bf16"))),
    ("methods.0.name", st.text(min_size=1).filter(lambda t: t not in {"ga", "ga_gd", "memflex"})),
    ("name", st.text(alphabet="/ .\\", min_size=1)),
    ("methods", st.one_of(st.integers(), st.text(), st.dictionaries(st.text(), st.integers()))),
    ("eval.every_n_steps", st.integers(max_value=0)),
]


def fresh() -> dict:
    return json.loads(json.dumps(VALID))


def section(spec: dict, dotted: str) -> dict:
    target = spec
    for part in filter(None, dotted.split(".")):
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    return target


@st.composite
def unknown_field(draw):
    spec = fresh()
    where = draw(st.sampled_from(SECTIONS))
    key = draw(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(lambda k: k not in KNOWN)
    )
    section(spec, where)[key] = draw(st.one_of(st.integers(), st.text(), st.booleans(), st.none()))
    return yaml.safe_dump(spec).encode()


@st.composite
def bad_value(draw):
    spec = fresh()
    dotted, values = draw(st.sampled_from(BAD_VALUES))
    *parents, last = dotted.split(".")
    section(spec, ".".join(parents))[last] = draw(values)
    return yaml.safe_dump(spec).encode()


@st.composite
def missing_field(draw):
    spec = fresh()
    where = draw(st.sampled_from(["name", "methods.0.name"]))
    *parents, last = where.split(".")
    del section(spec, ".".join(parents))[last]
    if draw(st.booleans()):
        spec["methods"].append({"name": "ga"})  # and a duplicate label for good measure
    return yaml.safe_dump(spec).encode()


not_utf8 = st.binary(min_size=1, max_size=200).map(lambda b: b + b"\xff\xfe\xc3")
not_a_mapping = st.one_of(st.lists(st.integers()), st.text(), st.integers(), st.floats(allow_nan=False)).map(
    lambda v: yaml.safe_dump(v).encode()
)
broken_yaml = st.sampled_from([b"name: [unclosed", b"a: b: c", b"{:", b"- a\n b: c", b"key: 'unterminated", b"\t- x"])

RECORD = st.fixed_dictionaries({"text": st.text(min_size=1), "labels": st.text(min_size=1)})
BAD_DATA = st.one_of(
    st.just(b"[]"),  # empty split
    st.binary(min_size=1).map(lambda b: b + b"\xff"),  # not UTF-8
    st.text().map(lambda t: ("{" + t).encode()),  # not JSON
    st.dictionaries(st.text(), st.integers()).map(lambda d: json.dumps(d).encode()),  # not a list
    st.lists(st.integers(), min_size=1).map(lambda x: json.dumps(x).encode()),  # list of numbers
    st.lists(RECORD, min_size=1).map(lambda rs: json.dumps([{"text": r["text"]} for r in rs]).encode()),  # no labels
    st.lists(RECORD, min_size=1).map(lambda rs: json.dumps([{**r, "labels": ""} for r in rs]).encode()),  # empty
)


@st.composite
def bad_data_file(draw):
    which = draw(st.sampled_from(["unlearn_train", "unlearn_val", "retention_train", "retention_val"]))
    return which, draw(BAD_DATA)


GOOD_SPLIT = json.dumps([{"text": "Who is Ann Lee?", "labels": "Ann Lee is a writer."}]).encode()


def check_one_line_exit_2(spec_bytes: bytes, data: tuple[str, bytes] | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if data is not None:
            domain = root / "domain"
            domain.mkdir()
            for split in ("unlearn_train", "unlearn_val", "retention_train", "retention_val"):
                (domain / f"{split}.json").write_bytes(data[1] if split == data[0] else GOOD_SPLIT)
            spec = fresh()
            spec["data"] = {"source": "local", "path": str(domain)}
            spec_bytes = yaml.safe_dump(spec).encode()
        path = root / "spec.yaml"
        path.write_bytes(spec_bytes)
        result = CliRunner().invoke(app, ["run", str(path), "--output", str(root / "out"), "--no-progress"])
        assert isinstance(result.exception, SystemExit), repr(result.exception)  # no traceback
        assert result.exit_code == 2, (result.exit_code, result.output)
        message = error_lines(result.stderr)
        assert "\n" not in message and "Traceback" not in result.output
        assert message.startswith("error: ")
        named = str(path) if data is None else str(root / "domain" / f"{data[0]}.json")
        assert named in message, message


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(unknown_field(), bad_value(), missing_field(), not_utf8, not_a_mapping, broken_yaml))
def test_malformed_specs_exit_2_with_one_line(spec_bytes):
    check_one_line_exit_2(spec_bytes)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad_data_file())
def test_malformed_data_files_exit_2_with_one_line(data):
    check_one_line_exit_2(b"", data)

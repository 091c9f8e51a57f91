"""Bad specs exit with code 2 and one line naming the field, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import error_lines
from knowundo_bench.cli import app

runner = CliRunner()

GOOD = {
    "name": "bad-input",
    "data": {"source": "synthetic", "n_authors": 2},
    "model": {"source": "tiny", "device": "cpu", "hidden_size": 16, "num_layers": 1, "num_heads": 2},
    "methods": [{"name": "ga"}],
}


def run_spec(tmp_path: Path, spec) -> tuple[int, str]:
    path = tmp_path / "spec.yaml"
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    result = runner.invoke(app, ["run", str(path), "--output", str(tmp_path / "out"), "--no-progress"])
    return result.exit_code, error_lines(result.stderr)


def with_changes(**changes):
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        target = spec
        *parents, last = dotted.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (with_changes(methods__0__name="gaa"), ["methods.0.name", "unknown method 'gaa'", "did you mean 'ga'"]),
        (with_changes(methods__0__name="memflx"), ["did you mean 'memflex'"]),
        (with_changes(name=KeyError), ["name", "Field required"]),
        (with_changes(methods__0__name=KeyError), ["methods.0.name", "Field required"]),
        (with_changes(seed="abc"), ["seed", "integer"]),
        (with_changes(methods__0__lr="fast"), ["methods.0.lr", "number"]),
        (with_changes(methods__0__epochs=0), ["methods.0.epochs", "greater than or equal to 1"]),
        (with_changes(methods__0__localiser="memflex"), ["methods.0.localiser", "did you mean 'localizer'"]),
        (with_changes(methods__0__localizer="memflx"), ["methods.0.localizer.name", "did you mean 'memflex'"]),
        (with_changes(data__source="hubb"), ["data.source", "did you mean 'hub'"]),
        (with_changes(data__n_author=3), ["data.n_author", "did you mean 'n_authors'"]),
        (with_changes(model__hidden=3), ["model.hidden", "did you mean 'hidden_size'"]),
        (with_changes(vanila={}), ["vanila", "did you mean 'vanilla'"]),
        (with_changes(name="../escape"), ["name", "letters, digits"]),
        (with_changes(methods=[{"name": "ga"}, {"name": "ga"}]), ["duplicate method label 'ga'"]),
        (with_changes(data__source="local"), ["data.path", "Field required"]),
        (with_changes(methods__0__ablate_localization=True), ["methods.0.ablate_localization", "no localizer"]),
        (
            with_changes(
                methods=[
                    {"name": "memflex", "ablate_localization": True},
                    {"name": "ga", "label": "memflex-all-params"},
                ]
            ),
            ["duplicate method label 'memflex-all-params'"],
        ),
        (with_changes(ood_retain={"source": "general_q"}), ["ood_retain.source", "did you mean 'general_qa'"]),
        (with_changes(ood_retain={"source": "text_file"}), ["ood_retain.path", "Field required"]),
        (with_changes(ood_retain={"source": "general_qa", "paht": "x"}), ["ood_retain.paht", "did you mean 'path'"]),
        (with_changes(methods__0__name="ga_kl_odd"), ["did you mean 'ga_kl_ood'"]),
        (with_changes(methods__0__name="npo", methods__0__beta=0), ["methods.0.beta", "greater than 0"]),
        (with_changes(eval={"general_data_dir": "."}), ["eval", "general_data_dir is set but general is not"]),
        (with_changes(eval={"general_data_dir": "x"}), ["eval.general_data_dir", "folder", "/x does not exist"]),
        (with_changes(eval={"general": {"tasks": ["mmlu", "mmluu"]}}), ["eval.general.tasks.1", "'mmlu'"]),
        (with_changes(eval={"general": {"limt": 3}}), ["eval.general.limt", "did you mean 'limit'"]),
        (with_changes(eval={"prompt_prefixes": {"two words": "x"}}), ["eval.prompt_prefixes", "letters, digits"]),
        (with_changes(eval={"every_n_steps": 0}), ["eval.every_n_steps", "greater than or equal to 1"]),
        ("name: [unclosed", ["invalid YAML"]),
        ("name: a\x00b\nmethods: [{name: ga}]\n", ["invalid YAML", "unacceptable character"]),  # a NUL byte
        # non-finite numbers, as YAML floats or as strings, in the spec's own fields and in plugin parameters
        (with_changes(methods__0__lr=float("inf")), ["methods.0.lr", "finite number"]),
        (with_changes(methods__0__lr="inf"), ["methods.0.lr", "finite number"]),
        (with_changes(methods__0__weight_decay=float("nan")), ["methods.0.weight_decay", "finite number"]),
        (with_changes(vanilla={"lr": "-inf"}), ["vanilla.lr", "finite number"]),
        (with_changes(vanilla={"target_accuracy": float("nan")}), ["vanilla.target_accuracy", "finite number"]),
        (with_changes(methods__0__name="npo", methods__0__beta="nan"), ["methods.0.beta", "finite number"]),
        (with_changes(eval={"general": {"limit": float("inf")}}), ["eval.general.limit", "finite number"]),
        # a NUL inside a YAML string ("\0") would reach mkdir and open()
        (with_changes(output_dir="out\x00put"), ["output_dir", "NUL character"]),
        (with_changes(data={"source": "local", "path": "da\x00ta"}), ["data.path", "NUL character"]),
        (with_changes(methods__0__label="g\x00a"), ["methods.0.label", "NUL character"]),
        ("- just\n- a list\n", ["mapping"]),
    ],
)
def test_bad_spec_exits_2_with_one_line(tmp_path, spec, expected):
    code, message = run_spec(tmp_path, spec)
    assert code == 2, message
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith("error: ") and "spec.yaml" in message
    for fragment in expected:
        assert fragment in message


def test_missing_spec_file(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "spec file not found" in result.stderr and "nope.yaml" in result.stderr


def test_non_utf8_spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and "not UTF-8" in result.stderr


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(GOOD))
    result = runner.invoke(app, ["run", str(spec), "--output", str(blocker / "sub")])
    assert result.exit_code == 2
    assert "output directory not writable" in result.stderr


def test_leaderboard_of_missing_directory(tmp_path):
    result = runner.invoke(app, ["leaderboard", str(tmp_path / "none")])
    assert result.exit_code == 2 and "results directory not found" in result.stderr


def test_missing_general_task_file_fails_before_any_training(tmp_path):
    (tmp_path / "general").mkdir()
    spec = with_changes(eval={"general": {"tasks": ["arc_challenge"]}, "general_data_dir": str(tmp_path / "general")})
    code, message = run_spec(tmp_path, spec)
    assert code == 2 and "\n" not in message
    assert "task arc_challenge needs arc_challenge_test.jsonl here" in message and str(tmp_path / "general") in message
    assert not (tmp_path / "out" / "vanilla.json").exists()


DEVICE_NAMES = [
    *("cpu", "cpu:0", "cpu:1", "mps", "mps:0", "mps:1", "cuda", "cuda:0", "cuda:7", "cuda:12", "cuda:2147483647"),
    *("cuda:2147483648", "cuda:99999999999", "cuda:01", "cuda:00", "cuda:-1", "cuda:+1", "cuda:", "cuda:0:1"),
    *("cuda: 1", "cuda:1.0", "cuda:1e1", "CUDA", "Cuda:0", " cuda", "cuda ", "cuda\n", "gpu", "meta", "xpu", "cuda:٣"),
]


@pytest.mark.parametrize("name", DEVICE_NAMES)
def test_model_device_is_checked_as_torch_reads_it_without_importing_torch(name):
    """The spec's check (a pattern: validating a spec loads no torch) takes exactly the cpu,
    cuda and mps names torch.device takes, CUDA indices included."""
    import torch
    from pydantic import ValidationError

    from knowundo_bench.config.spec import ModelSpec

    try:
        device = torch.device(name)
        torch_takes = device.type in {"cpu", "cuda", "mps"} and not (device.type != "cuda" and device.index)
    except (RuntimeError, ValueError):
        torch_takes = False
    try:
        ModelSpec(device=name)
        spec_takes = True
    except ValidationError:
        spec_takes = False
    assert spec_takes == torch_takes

"""The command line as a new user meets it: every failure one line, paths read from the
spec's folder, the table alone on stdout, clean Ctrl-C, --version, --set (issue 14)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from helpers import TINY_SPEC, closed_port, error_lines, one_epoch
from knowundo_bench import __version__
from knowundo_bench.cli import app
from knowundo_bench.config.overrides import apply_overrides
from knowundo_bench.core.errors import InputError
from knowundo_bench.plugin.manager import get_plugins
from knowundo_bench.records.files import load_record
from knowundo_bench.run.inputs import load_benchmark
from knowundo_bench.run.resolution import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
# A spec that fails only where a test breaks it (nothing trains before the failure).
QUICK = {"name": "cli", "data": {"source": "synthetic", "n_authors": 2}, "methods": [{"name": "ga"}]}


def write_spec(folder: Path, spec: dict, name: str = "spec.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(spec))
    return path


def run(spec: Path, *args: str, env: dict[str, str] | None = None):
    return runner.invoke(app, ["run", str(spec), "--no-progress", *args], env=env)


def one_line_error(result, *fragments: str) -> str:
    """The run failed with exit 2 and exactly one line of output, naming ``fragments``."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


# --- errors that were tracebacks -------------------------------------------------------


def test_an_hf_folder_that_does_not_exist_is_one_line_naming_the_field(tmp_path):
    spec = write_spec(tmp_path, {**QUICK, "model": {"source": "hf", "name_or_path": "./no/such/folder"}})
    one_line_error(
        run(spec, "-o", str(tmp_path / "out")),
        "spec.yaml: model.name_or_path",
        f"folder {tmp_path / 'no' / 'such' / 'folder'} does not exist",
    )


def test_a_hub_model_offline_and_not_cached_fails_at_once_in_one_line(tmp_path):
    spec = write_spec(tmp_path, {**QUICK, "model": {"source": "hf", "name_or_path": "meta-llama/Llama-2-7b-chat-hf"}})
    env = {"HF_HUB_OFFLINE": "1"}
    line = one_line_error(
        run(spec, "-o", str(tmp_path / "out"), env=env),
        "model.name_or_path",
        "'meta-llama/Llama-2-7b-chat-hf' is neither in the Hugging Face cache",
    )
    assert (
        "offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)" in line
        and "hf download meta-llama/Llama-2-7b-chat-hf" in line
    )


def test_device_cuda_without_cuda_is_one_line_suggesting_auto(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # any machine: as one without CUDA
    spec = write_spec(tmp_path, {**QUICK, "model": {"source": "tiny", "device": "cuda"}})
    one_line_error(run(spec, "-o", str(tmp_path / "out")), "spec.yaml: model.device: 'cuda'", "use device: auto")


def test_a_cuda_index_beyond_the_machine_is_one_line(monkeypatch):
    from knowundo_bench.modeling.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match=r"^model\.device: 'cuda:3' but this machine has 1 CUDA device\(s\)"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:0") == torch.device("cuda:0")


@pytest.mark.parametrize("device", ["gpu0", "xpu", "meta", "cpu:3"])
def test_a_device_that_is_not_one_is_rejected_with_the_spec(tmp_path, device):
    spec = write_spec(tmp_path, {**QUICK, "model": {"source": "tiny", "device": device}})
    one_line_error(run(spec, "-o", str(tmp_path / "out")), f"model.device: '{device}' is not a device")


def test_user_text_with_brackets_is_printed_as_written(tmp_path):
    spec = write_spec(tmp_path, {**QUICK, "data": {"source": "local", "path": "[/b] [bold]x"}})
    one_line_error(run(spec, "-o", str(tmp_path / "out")), f"folder {tmp_path / '[' / 'b] [bold]x'} does not exist")
    listed = write_spec(tmp_path, {**QUICK, "methods": "ga"}, "listed.yaml")
    one_line_error(run(listed, "-o", str(tmp_path / "out")), "expected a list (- item lines, or [a, b]), got text")


def test_a_model_that_does_not_load_is_one_line_and_debug_shows_the_traceback(tmp_path):
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no-such-architecture"}')
    spec = write_spec(tmp_path, {**QUICK, "model": {"source": "hf", "name_or_path": "broken-model"}})
    result = run(spec, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    message = error_lines(result.stderr)
    assert "\n" not in message and message.startswith("error: model (hf): cannot load the model or its tokenizer:")
    assert message.endswith("(knowundo-bench --debug ... shows the traceback)")
    debug = runner.invoke(app, ["--debug", "run", str(spec), "-o", str(tmp_path / "out"), "--no-progress"])
    assert debug.exit_code == 2 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == message.removesuffix(
        " (knowundo-bench --debug ... shows the traceback)"
    )


def test_a_data_source_that_raises_is_one_line(tmp_path, monkeypatch):
    from knowundo_bench.plugins.data import synthetic

    def broken(n_authors, seed):
        raise KeyError("author_name")

    monkeypatch.setattr(synthetic, "generate_authors", broken)
    spec = write_spec(tmp_path, {**QUICK, "model": TINY_SPEC["model"]})
    result = run(spec, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert error_lines(result.stderr) == (
        "error: data (synthetic): cannot load the data: KeyError: 'author_name' "
        "(knowundo-bench --debug ... shows the traceback)"
    )


def test_an_internal_error_is_one_line_asking_for_debug(tmp_path, monkeypatch):
    import knowundo_bench.leaderboard as leaderboard

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(leaderboard, "leaderboard_rows", broken)
    (tmp_path / "results").mkdir()
    result = runner.invoke(app, ["leaderboard", str(tmp_path / "results")])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: internal error, ZeroDivisionError: division by zero (knowundo-bench --debug ... shows the traceback)"
    )
    debug = runner.invoke(app, ["--debug", "leaderboard", str(tmp_path / "results")])
    assert isinstance(debug.exception, ZeroDivisionError)  # raised, with its traceback


# --- paths, files, streams ----------------------------------------------------------------


def local_domain(folder: Path) -> Path:
    """A KnowUnDo-style folder of two synthetic authors."""
    from knowundo_bench.plugins.data.synthetic_authors import generate_authors

    folder.mkdir(parents=True)
    pairs = generate_authors(2)
    for scope in ("unlearn", "retention"):
        for split in ("train", "val"):
            rows = [{"text": p.question, "labels": p.answer} for p in pairs if p.scope == scope and p.split == split]
            (folder / f"{scope}_{split}.json").write_text(json.dumps(rows))
    return folder


def test_relative_paths_are_read_from_the_spec_folder(tmp_path, monkeypatch):
    local_domain(tmp_path / "project" / "data" / "privacy")
    (tmp_path / "project" / "general").mkdir()
    spec = write_spec(
        tmp_path / "project" / "specs",
        {
            **QUICK,
            "data": {"source": "local", "path": "../data/privacy"},
            "ood_retain": {"source": "general_qa", "path": "../general"},
            "output_dir": "../results/here",
            "cache_dir": "cache",
            "eval": {"general": {"tasks": ["arc_challenge"]}, "general_data_dir": "../general"},
        },
    )
    monkeypatch.chdir(tmp_path)  # anywhere but the spec's folder
    resolved = load_spec(spec, get_plugins())
    project = tmp_path / "project"
    assert resolved.data_params.path == project / "data" / "privacy"  # normalised: no "specs/.."
    assert resolved.ood_params.path == project / "general"
    assert resolved.spec.output_dir == project / "results" / "here"
    assert resolved.spec.cache_dir == project / "specs" / "cache"
    assert resolved.spec.eval.general_data_dir == project / "general"
    assert len(load_benchmark(resolved, get_plugins()).pairs) > 0


def test_a_missing_relative_data_folder_names_the_spec_and_the_field(tmp_path, monkeypatch):
    spec = write_spec(tmp_path / "specs", {**QUICK, "data": {"source": "local", "path": "../nowhere"}})
    monkeypatch.chdir(tmp_path)
    one_line_error(
        run(spec, "-o", str(tmp_path / "out")),
        f"{spec}: data.path: folder {tmp_path / 'nowhere'} does not exist",
    )


def test_privacy_local_finds_its_data_from_any_directory(tmp_path, monkeypatch, privacy_dir):
    monkeypatch.chdir(tmp_path)
    resolved = load_spec(ROOT / "benchmark_specs" / "privacy-local.yaml", get_plugins())
    assert resolved.data_params.path.resolve() == privacy_dir.resolve()
    assert len(load_benchmark(resolved, get_plugins()).instances) == 12


@pytest.mark.slow
def test_run_writes_only_the_table_to_stdout_and_logs_one_line_per_task(tmp_path, monkeypatch):
    spec = write_spec(
        tmp_path / "specs",
        {
            **TINY_SPEC,
            "vanilla": {**TINY_SPEC["vanilla"], "epochs": 40, "target_accuracy": 50, "check_every": 2},
            "output_dir": "../out",
            "methods": ["ga", one_epoch("ga_gd")],
        },
    )
    monkeypatch.chdir(tmp_path)
    old_umask = os.umask(0o027)
    try:
        result = runner.invoke(app, ["run", str(spec), "--set", "methods.1.lr=2e-3", "--set", "eval.max_new_tokens=4"])
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output + result.stderr
    # stdout: the leaderboard table and its footnotes, nothing else
    assert result.stdout.startswith("| Method |") and "data:" not in result.stdout
    assert re.search(r"^\| ga_gd \|", result.stdout, re.M)
    # stderr: timestamped log lines without source locations, one line per finished task
    log = result.stderr
    assert "data: 3 instances" in log and "progress.py" not in log and "━" not in log
    assert log.count("evaluate vanilla:") == 1 and log.count("unlearn ga_gd:") == 1
    early = re.search(r"vanilla fine-tuning: stopped early at epoch (\d+) \(target reached\), (\d+) steps in", log)
    assert early and int(early.group(1)) < 40, log
    assert f"results: {tmp_path / 'out'}" in log
    # records: where the spec says (relative to it), readable as the umask allows, overrides kept
    out = tmp_path / "out"
    for path in out.glob("*.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path
    record = load_record(out / "ga_gd.json")
    assert record.vanilla is not None
    assert stat.S_IMODE(Path(record.vanilla.path).stat().st_mode) == 0o750  # the cached vanilla model's folder
    assert record.overrides == ["methods.1.lr=2e-3", "eval.max_new_tokens=4"]
    assert record.params["lr"] == 2e-3 and record.spec["eval"]["max_new_tokens"] == 4
    assert record.spec["methods"][0]["name"] == "ga"  # written bare: `- ga`


def test_plots_follow_the_umask(tmp_path):
    from knowundo_bench.leaderboard.plots import plot_results

    fixture = ROOT / "tests" / "fixtures" / "records-schema1"
    old_umask = os.umask(0o002)
    try:
        written = plot_results([fixture], tmp_path / "plots")
    finally:
        os.umask(old_umask)
    assert written
    for path in written:
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o664, path


def knowundo_bench_command() -> list[str]:
    return [sys.executable, "-m", "knowundo_bench"]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["unlearn_step:3", "write:3"])
def test_ctrl_c_saves_finished_units_and_says_how_to_resume(tmp_path, point):
    spec = write_spec(tmp_path, {**TINY_SPEC, "methods": [one_epoch("ga"), one_epoch("ga_gd")]})
    out = tmp_path / "out"
    env = {**os.environ, "KNOWUNDO_BENCH_FAULT": f"{point}:SIGINT", "KNOWUNDO_BENCH_CACHE": str(tmp_path / "cache")}
    command = [*knowundo_bench_command(), "run", str(spec), "--output", str(out)]
    # A shell's background job inherits SIGINT ignored (POSIX): let the child take it, as in a terminal.
    interrupted = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert interrupted.returncode == 130, interrupted.stderr[-2000:]
    assert interrupted.stdout == ""
    last = interrupted.stderr.strip().splitlines()[-1]
    saved = re.fullmatch(
        rf"interrupted: (\d) of 3 units saved in {re.escape(str(out))}; rerun the same command to resume", last
    )
    assert saved, last
    assert "Traceback" not in interrupted.stderr
    records = sorted(p.name for p in out.glob("*.json"))
    assert len(records) == int(saved.group(1)) and 1 <= len(records) < 3
    assert not [p for p in out.rglob(".*") if p.name != ".lock"]  # no half-written file
    del env["KNOWUNDO_BENCH_FAULT"]
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "reused finished results: vanilla" in resumed.stderr
    assert len(list(out.glob("*.json"))) == 3


def test_interrupt_signal_point_is_sigint_not_sigkill(monkeypatch):
    from knowundo_bench.core import faults

    sent = []
    monkeypatch.setattr(faults.os, "kill", lambda pid, sig: sent.append(sig))
    monkeypatch.setenv(faults.ENV, "evaluate:1:SIGINT")
    faults._passes.clear()
    faults.fault_point("evaluate")
    assert sent == [signal.SIGINT]


# --- CLI conventions -------------------------------------------------------------------------


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"knowundo-bench {__version__}\n"


def test_help_lists_every_command_in_plain_text():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    names = {command.name or command.callback.__name__ for command in app.registered_commands}
    assert names == {"run", "build", "methods", "leaderboard", "compare", "samples", "plot", "export", "report"}
    listed = set(re.findall(r"^  (\w+)\s{2,}", result.stdout.split("Commands:")[1], re.M))
    assert listed == names
    for marker in ("``", "╭", ":class:", "[bold"):
        assert marker not in result.stdout
    for name in names:
        command_help = runner.invoke(app, [name, "--help"])
        assert command_help.exit_code == 0 and command_help.stdout.startswith(f"Usage: root {name} ")  # CliRunner
        for marker in ("``", "╭", ":class:", "[bold", "results_dirs"):
            assert marker not in command_help.stdout, (name, marker)


def test_usage_errors_are_plain_text():
    result = runner.invoke(app, ["run", "spec.yaml", "--bogus"])
    assert result.exit_code == 2
    assert "No such option: --bogus" in result.stderr and "╭" not in result.stderr


def test_set_overrides_dotted_fields_and_is_validated_like_the_file():
    raw = {"name": "x", "methods": ["ga", {"name": "ga_gd", "lr": 1.0}]}
    assert apply_overrides(raw, ["methods.1.lr=1e-4", "seed=3", "eval.max_new_tokens=16", "methods.0.epochs=1"]) == {
        "name": "x",
        "seed": 3,
        "methods": [{"name": "ga", "epochs": 1}, {"name": "ga_gd", "lr": 1e-4}],
        "eval": {"max_new_tokens": 16},
    }
    assert raw["methods"][1]["lr"] == 1.0  # the parsed file is left as it was
    plugins = get_plugins()
    resolved = parse_spec(raw, plugins, overrides=["methods.1.lr=1e-4", "seeds=[0, 1]"])
    assert resolved.methods[1].params.lr == 1e-4 and resolved.spec.seeds == [0, 1]
    assert resolved.overrides == ("methods.1.lr=1e-4", "seeds=[0, 1]")
    with pytest.raises(
        InputError, match=r"^spec: methods\.1\.lr: Input should be a valid number.*\(from --set methods.1.lr=fast\)$"
    ):
        parse_spec(raw, plugins, overrides=["methods.1.lr=fast"])
    with pytest.raises(InputError, match=r"^--set methods\.5\.lr: methods is a list with indices 0-1, not '5'$"):
        parse_spec(raw, plugins, overrides=["methods.5.lr=1"])
    with pytest.raises(InputError, match=r"^--set 'seed': expected KEY=VALUE"):
        parse_spec(raw, plugins, overrides=["seed"])
    with pytest.raises(InputError, match=r"^--set name\.first: name is text \('x'\), not a mapping or list$"):
        parse_spec(raw, plugins, overrides=["name.first=1"])


def test_set_reads_numbers_as_a_reader_would():
    from knowundo_bench.config.overrides import override_value

    assert override_value("1e-4") == 1e-4 and override_value("3") == 3 and override_value("[0, 1]") == [0, 1]
    assert override_value('"1e3"') == "1e3" and override_value("'1234567'") == "1234567"  # quoted: text
    assert override_value("8e65721") == "8e65721"  # a commit hash, not infinity
    assert override_value("ga") == "ga" and override_value("") == ""


def test_set_paths_are_read_from_the_current_directory(tmp_path, monkeypatch):
    local_domain(tmp_path / "here" / "domain")
    spec = write_spec(tmp_path / "specs", {**QUICK, "data": {"source": "local", "path": "nowhere"}})
    monkeypatch.chdir(tmp_path / "here")
    resolved = load_spec(spec, get_plugins(), ["data.path=domain"])
    assert resolved.data_params.path == tmp_path / "here" / "domain"


def test_general_tasks_from_an_unreachable_hub_fail_before_training(tmp_path, monkeypatch):
    port = closed_port()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    spec = write_spec(tmp_path, {**QUICK, "model": TINY_SPEC["model"], "eval": {"general": {"tasks": ["mmlu"]}}})
    result = run(spec, "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert error_lines(result.stderr).startswith("error: eval.general (lm-eval's tasks read the hub;")
    assert not list((tmp_path / "out").glob("*.json"))


@pytest.mark.slow
def test_a_finished_run_prints_its_table_without_needing_its_device(tmp_path, monkeypatch):
    spec = write_spec(tmp_path, {**TINY_SPEC, "methods": [one_epoch("ga")]})
    first = run(spec, "-o", str(tmp_path / "out"))
    assert first.exit_code == 0, first.stderr
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    again = run(spec, "-o", str(tmp_path / "out"), "--set", "model.device=cuda")  # e.g. read on a laptop
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first.stdout and "reused finished results: vanilla, ga" in again.stderr
    forced = run(spec, "-o", str(tmp_path / "out"), "--set", "model.device=cuda", "--force")
    assert forced.exit_code == 2 and "model.device: 'cuda'" in forced.stderr


def test_set_errors_through_the_cli_are_one_line(tmp_path):
    spec = write_spec(tmp_path, QUICK)
    one_line_error(
        run(spec, "--set", "methods.0.lr=-1"),
        "spec.yaml: methods.0.lr",
        "greater than 0",
        "(from --set methods.0.lr=-1)",
    )


def test_a_bare_method_name_is_accepted_and_other_shapes_are_named_in_the_spec_words():
    plugins = get_plugins()
    resolved = parse_spec({"name": "x", "methods": ["ga", {"name": "memflex"}]}, plugins)
    assert [m.label for m in resolved.methods] == ["ga", "memflex"]
    for methods, expected in (
        ([3], "methods.0: expected a method name (- ga) or a mapping (- {name: ga, lr: 1.0e-4}), got a number (3)"),
        ("ga", "methods: expected a list (- item lines, or [a, b]), got text ('ga')"),
        ([["ga"]], "methods.0: expected a method name (- ga) or a mapping"),
    ):
        with pytest.raises(InputError) as raised:
            parse_spec({"name": "x", "methods": methods}, plugins)
        assert str(raised.value).startswith(f"spec: {expected}") and "instance of" not in str(raised.value)
    with pytest.raises(
        InputError, match=r"^spec: data: expected a mapping of fields \(key: value\), got text \('local'\)$"
    ):
        parse_spec({"name": "x", "data": "local"}, plugins)
    localizer = {"name": "memflex", "mu": "x"}
    for raw, message in (
        (
            {"methods": [{"name": "memflex", "localizer": 3}]},
            "methods.0.localizer: expected text or a mapping, got a number (3)",
        ),
        (
            {"methods": [{"name": "memflex", "localizer": localizer}]},
            "methods.0.localizer.mu: expected a number or 'auto', got text ('x')",
        ),
        ({"output_dir": 3}, "output_dir: expected a path (text), got a number (3)"),
    ):
        with pytest.raises(InputError) as raised:
            parse_spec({"name": "x", **raw}, plugins)
        assert str(raised.value) == f"spec: {message}"


@pytest.mark.parametrize(
    ("key", "meant"), [("evaluation", "eval"), ("method", "methods"), ("dataset", "data"), ("output", "output_dir")]
)
def test_unknown_top_level_keys_get_did_you_mean_on_meaning(key, meant):
    with pytest.raises(InputError, match=rf"^spec: {key}: Extra inputs are not permitted; did you mean '{meant}'\?$"):
        parse_spec({"name": "x", key: {}}, get_plugins())


@pytest.mark.parametrize(
    ("where", "typed", "meant"),
    [
        ("methods.0", "learning_rate", "lr"),
        ("methods.0", "num_train_epochs", "epochs"),
        ("methods.0", "num_epochs", "epochs"),
        ("methods.0", "gradient_accumulation_steps", "grad_accum"),
        ("methods.0", "per_device_train_batch_size", "batch_size"),
        ("methods.0", "warmup_steps", "warmup_ratio"),
        ("vanilla", "learning_rate", "lr"),
    ],
)
def test_the_hugging_face_trainers_names_get_this_harnesss_name(where, typed, meant):
    """HF users type TrainingArguments' names; spelling alone (difflib) finds none of these."""
    section = {"methods": [{"name": "ga", typed: 1}]} if where == "methods.0" else {"vanilla": {typed: 1}}
    with pytest.raises(InputError) as raised:
        parse_spec({"name": "x", **section}, get_plugins())
    message = str(raised.value)
    assert message.startswith(f"spec: {where}.{typed}: Extra inputs are not permitted; did you mean '{meant}'? (")
    assert "\n" not in message and "Hugging Face Trainer" in message


@pytest.mark.slow
def test_a_spec_without_model_or_data_says_it_runs_the_embedded_default(tmp_path):
    spec = write_spec(
        tmp_path,
        {
            "name": "defaults",
            "vanilla": {"epochs": 1, "batch_size": 64, "grad_accum": 1},
            "methods": [{"name": "ga", "max_steps": 1}],
            "eval": {"max_new_tokens": 2, "prompt_prefixes": {}},
        },
    )
    result = run(spec, "-o", str(tmp_path / "out"), env={"KNOWUNDO_BENCH_CACHE": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("model: not set, using the embedded tiny model") == 1
    assert result.stderr.count("data: not set, using the embedded synthetic fictitious authors") == 1
    with_model = write_spec(tmp_path, {"name": "d", "model": {"source": "tiny"}}, "with-model.yaml")
    assert load_spec(with_model, get_plugins()).defaulted == ("data",)

"""The public plugin API: one module with an explicit __all__, the only harness module
built-in plugins and examples import, enough to write every kind of plugin."""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import textwrap
from pathlib import Path

import knowundo_bench.api as api
from knowundo_bench.harness.plugin_manager import BUILTIN_PLUGINS
from knowundo_bench.harness.records.files import load_record
from knowundo_bench.testing import run_spec, tiny_spec

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "knowundo_bench"

REQUIRED = {
    "hookimpl", "MethodInfo", "LocalizerInfo", "DataSourceInfo", "OodSourceInfo", "ModelSourceInfo",
    "Params", "TrainingParams", "MethodRun", "LocalizerRun", "UnlearnContext", "Localization",
    "TrainingReport", "answer_loss", "answer_log_likelihood", "QAPair", "RetainText", "InputError",
}  # fmt: skip


def test_all_lists_the_plugin_facing_names_and_each_exists():
    assert REQUIRED <= set(api.__all__)
    assert len(api.__all__) == len(set(api.__all__))
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []


def harness_imports(source: str, name: str) -> list[str]:
    """The knowundo_bench modules ``source`` imports other than the api and the plugins."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            if module.split(".")[0] != "knowundo_bench":
                continue
            if module != "knowundo_bench.api" and not module.startswith("knowundo_bench.plugins"):
                found.append(f"{name}:{node.lineno} {module}")
    return found


def test_builtin_plugins_and_examples_import_only_the_api():
    files = sorted((PACKAGE / "plugins").rglob("*.py")) + sorted(
        p for p in (ROOT / "examples").rglob("*.py") if not p.name.startswith("test_")
    )
    assert len(files) > 25
    offenders = [line for path in files for line in harness_imports(path.read_text(), str(path.relative_to(ROOT)))]
    assert offenders == []


def test_the_import_check_catches_harness_imports():
    source = "import knowundo_bench.harness.data\n\ndef f():\n    from knowundo_bench.harness.training import train\n"
    assert harness_imports(source, "x.py") == [
        "x.py:1 knowundo_bench.harness.data",
        "x.py:4 knowundo_bench.harness.training",
    ]
    assert harness_imports("from knowundo_bench import harness\n", "y.py") == ["y.py:1 knowundo_bench"]
    assert harness_imports("from knowundo_bench.api import hookimpl\n", "z.py") == []


def test_every_builtin_hook_implementation_is_typed():
    untyped = []
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        for name, function in vars(module).items():
            if not hasattr(function, "knowundo_bench_impl") or function.__module__ != module_name:
                continue
            signature = inspect.signature(function)
            if signature.return_annotation is inspect.Signature.empty or any(
                p.annotation is inspect.Parameter.empty for p in signature.parameters.values()
            ):
                untyped.append(f"{module_name}.{name}")
    assert untyped == []


def test_package_ships_py_typed():
    assert (PACKAGE / "py.typed").is_file()


THIRD_PARTY = '''
"""A plugin that imports only from knowundo_bench.api: a method, a localizer, a data source."""
from __future__ import annotations

import torch

from knowundo_bench.api import (
    DataSourceInfo, Localization, LocalizerInfo, LocalizerRun, MethodInfo, MethodRun, Params, QAPair,
    RetainSet, TrainingParams, TrainingReport, UnlearnContext, answer_loss, hookimpl,
)
from knowundo_bench.plugins.data.synthetic_authors import generate_authors


class FewAuthors(Params):
    n_authors: int = 3


def load_authors(params: FewAuthors, domain: str) -> list[QAPair]:
    return generate_authors(params.n_authors)


@hookimpl
def register_data_sources() -> list[DataSourceInfo]:
    return [DataSourceInfo(name="few_authors", description="Three authors.", params=FewAuthors, load=load_authors)]


@hookimpl
def register_methods() -> list[MethodInfo]:
    return [MethodInfo(name="half_ga", description="Half-strength gradient ascent.", params=TrainingParams)]


@hookimpl
def register_localizers() -> list[LocalizerInfo]:
    return [LocalizerInfo(name="mlp_only", description="MLP weights only.", params=Params)]


@hookimpl
def unlearn(method: MethodRun, model: torch.nn.Module, forget: list[QAPair], retain: RetainSet,
            context: UnlearnContext) -> TrainingReport:
    return context.train(model, objective=lambda m, b: -0.5 * answer_loss(m, b["forget"]),
                         params=method.params, forget=forget)


@hookimpl
def localize(localizer: LocalizerRun, model: torch.nn.Module, forget: list[QAPair], retain: RetainSet,
             context: UnlearnContext) -> Localization:
    return Localization(selected=[n for n, _ in model.named_parameters() if ".mlp." in n], details={"why": "test"})
'''


def test_a_plugin_using_only_the_api_registers_and_runs_all_three_kinds(tmp_path, monkeypatch):
    (tmp_path / "api_only_plugin.py").write_text(textwrap.dedent(THIRD_PARTY))
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = importlib.import_module("api_only_plugin")
    assert harness_imports(THIRD_PARTY, "api_only_plugin.py") == []
    spec = tiny_spec({"name": "half_ga", "localizer": "mlp_only"}, workdir=tmp_path, data={"source": "few_authors"})
    outcome = run_spec(spec, tmp_path / "out", plugin)
    sys.modules.pop("api_only_plugin", None)
    assert outcome.failed == []
    record = load_record(outcome.records["half_ga"])
    assert record.status == "ok" and record.training.steps > 0
    assert record.localizer.name == "mlp_only" and record.localizer.model_extra == {"why": "test"}
    assert record.localizer.selected and all(".mlp." in name for name in record.localizer.selected)
    assert record.training.trainable_tensors == len(record.localizer.selected)

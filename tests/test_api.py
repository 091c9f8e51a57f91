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
from knowundo_bench.plugin.kinds import BUILTIN_PLUGINS
from knowundo_bench.records.files import load_record
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


def harness_imports(source: str, name: str, *, plugins_allowed: bool = True) -> list[str]:
    """The knowundo_bench modules ``source`` imports other than the api (and, for
    built-ins, each other: ``ga_gd_ood`` reuses ``ga_gd``)."""
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
            if module != "knowundo_bench.api" and not (plugins_allowed and module.startswith("knowundo_bench.plugins")):
                found.append(f"{name}:{node.lineno} {module}")
    return found


def test_builtin_plugins_and_examples_import_only_the_api():
    builtins = sorted((PACKAGE / "plugins").rglob("*.py"))
    examples = sorted(p for p in (ROOT / "examples").rglob("*.py") if not p.name.startswith("test_"))
    assert len(builtins) > 25 and examples
    offenders = [line for path in builtins for line in harness_imports(path.read_text(), str(path.relative_to(ROOT)))]
    offenders += [
        line
        for path in examples
        for line in harness_imports(path.read_text(), str(path.relative_to(ROOT)), plugins_allowed=False)
    ]
    assert offenders == []


def test_the_import_check_catches_harness_imports():
    source = "import knowundo_bench.benchmark.pairs\n\ndef f():\n    from knowundo_bench.train.loop import train\n"
    assert harness_imports(source, "x.py") == [
        "x.py:1 knowundo_bench.benchmark.pairs",
        "x.py:4 knowundo_bench.train.loop",
    ]
    assert harness_imports("from knowundo_bench import run\n", "y.py") == ["y.py:1 knowundo_bench"]
    assert harness_imports("from knowundo_bench.api import hookimpl\n", "z.py") == []
    reuse = "from knowundo_bench.plugins.methods.ga_gd import unlearn\n"
    assert harness_imports(reuse, "w.py") == []  # a built-in reusing another
    assert harness_imports(reuse, "w.py", plugins_allowed=False) == ["w.py:1 knowundo_bench.plugins.methods.ga_gd"]


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


class FewAuthors(Params):
    n_authors: int = 3


def load_authors(params: FewAuthors, domain: str) -> list[QAPair]:
    pairs = []
    for i in range(params.n_authors):
        name = f"Author {chr(65 + i)}"
        facts = [("unlearn", f"What is the email of {name}?", f"author{i}@mail.test"),
                 ("retention", f"Which genre does {name} write?", ["poetry", "crime", "fantasy"][i % 3])]
        for scope, question, answer in facts:
            for split, asked in (("train", question), ("val", question.replace("What is", "Tell me"))):
                pairs.append(QAPair(instance=name, scope=scope, split=split, question=asked, answer=answer))
    return pairs


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
    assert harness_imports(THIRD_PARTY, "api_only_plugin.py", plugins_allowed=False) == []
    spec = tiny_spec({"name": "half_ga", "localizer": "mlp_only"}, workdir=tmp_path, data={"source": "few_authors"})
    outcome = run_spec(spec, tmp_path / "out", plugin)
    sys.modules.pop("api_only_plugin", None)
    assert outcome.failed == []
    record = load_record(outcome.records["half_ga"])
    assert record.status == "ok" and record.training.steps > 0
    assert record.localizer.name == "mlp_only" and record.localizer.model_extra == {"why": "test"}
    assert record.localizer.selected and all(".mlp." in name for name in record.localizer.selected)
    assert record.training.trainable_tensors == len(record.localizer.selected)

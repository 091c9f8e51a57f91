"""Plugin system: hookspecs documented and exercised, built-ins listed, third-party
plugins arriving through the entry-point group and running end to end."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from helpers import TINY_SPEC, one_epoch, plugin_site, table_row_names
from knowundo_bench.cli import app
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.plugin import hookspecs
from knowundo_bench.plugin.kinds import BUILTIN_PLUGINS
from knowundo_bench.plugin.manager import Plugins, make_plugin_manager
from knowundo_bench.run.resolution import parse_spec
from knowundo_bench.run.runner import Runner

REPO_ROOT = Path(__file__).resolve().parents[1]
HOOKSPECS = {name for name, fn in vars(hookspecs).items() if hasattr(fn, "knowundo_bench_spec")}


def test_hookspecs_are_documented():
    assert {"unlearn", "localize", "register_methods", "register_localizers"} <= HOOKSPECS
    for name in HOOKSPECS:
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 60, f"hookspec {name} lacks a real docstring"


def test_every_hookspec_is_exercised_by_a_run(tmp_path):
    manager = make_plugin_manager(load_entry_points=False)
    called: list[str] = []
    manager.add_hookcall_monitoring(lambda name, impls, kwargs: called.append(name), lambda *a: None)
    plugins = Plugins(manager)
    spec = {
        **TINY_SPEC,
        "methods": [
            {
                "name": "memflex",
                "epochs": 1,
                "batch_size": 8,
                "grad_accum": 1,
                "localizer": {"name": "memflex", "sigma_percentile": 50, "n_passes": 1},
            },
            {"name": "ga_gd_ood", "epochs": 1, "batch_size": 8, "grad_accum": 1},
        ],
        "ood_retain": {"source": "synthetic_text", "n_passages": 16},
    }
    resolved = parse_spec(spec, plugins)
    with ProgressBoard(console=None, enabled=False) as board:
        outcome = Runner(resolved, plugins, tmp_path, board).run()
    assert outcome.failed == []
    assert HOOKSPECS <= set(called), f"never called: {HOOKSPECS - set(called)}"


def test_methods_command_lists_builtins():
    result = CliRunner().invoke(app, ["methods"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name, words in {
        "ga": "Gradient ascent on the forget set",
        "ga_gd": "gradient descent on in-distribution retain",
        "memflex": "MemFlex",
    }.items():
        line = next(
            (row for row in result.output.splitlines() if row.split("│")[1:2] and row.split("│")[1].strip() == name),
            None,
        )
        assert line is not None and words in line, f"{name} missing or undocumented"
    assert "Localizers" in result.output and "cos(G_UL, G_RT) < mu" in result.output
    assert "lr=5e-05" in result.output and "built-in" in result.output


def test_builtins_are_one_list_of_every_plugin_module():
    """Every module under plugins/ that implements a hook is in BUILTIN_PLUGINS (nothing
    forgotten), and built-ins are not also declared as entry points (one list)."""
    import importlib
    import tomllib

    package = REPO_ROOT / "src" / "knowundo_bench" / "plugins"
    implementing = set()
    for path in package.rglob("*.py"):
        module = "knowundo_bench." + ".".join(path.relative_to(package.parent).with_suffix("").parts)
        if any(hasattr(value, "knowundo_bench_impl") for value in vars(importlib.import_module(module)).values()):
            implementing.add(module)
    assert implementing == set(BUILTIN_PLUGINS)
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert "knowundo_bench" not in project.get("entry-points", {})


def test_the_kinds_table_is_the_one_list_of_plugin_kinds():
    """Each row's hook is a documented ``register_*`` hookspec and every such hookspec has
    a row; each row's Info type is exported by the api, its built-ins live in its own
    folder, and each row is a registry, a ``methods`` table and a folder of plugins."""
    import knowundo_bench.api as api
    from knowundo_bench.plugin import hookspecs
    from knowundo_bench.plugin.kinds import KINDS

    register_hooks = {name for name, fn in vars(hookspecs).items() if hasattr(fn, "knowundo_bench_spec")}
    register_hooks = {name for name in register_hooks if name.startswith("register_")}
    assert {kind.hook for kind in KINDS} == register_hooks
    assert len({kind.attribute for kind in KINDS}) == len(KINDS) == len({kind.folder for kind in KINDS})
    plugins = Plugins(make_plugin_manager(load_entry_points=False))
    for kind in KINDS:
        assert getattr(api, kind.info.__name__) is kind.info and kind.info.__name__ in api.__all__
        assert getattr(plugins, kind.attribute) is plugins.registries[kind.attribute]
        assert set(getattr(plugins, kind.attribute).names()) >= set(kind.builtins), kind.attribute
        assert all(module.startswith(f"knowundo_bench.plugins.{kind.folder}.") for module in kind.builtin_modules())
        assert (REPO_ROOT / "src" / "knowundo_bench" / "plugins" / kind.folder).is_dir()
    with pytest.raises(AttributeError, match="no attribute 'method'"):
        plugins.method  # noqa: B018 (a typo is an AttributeError, not an empty registry)
    result = CliRunner().invoke(app, ["methods"], env={"COLUMNS": "250"})
    assert [kind.heading for kind in KINDS if kind.heading in result.output] == [kind.heading for kind in KINDS]


THIRD_PARTY = '''
"""A third-party method: gradient ascent scaled by a factor."""
from knowundo_bench.api import MethodInfo, TrainingParams, answer_loss, hookimpl


class ScaledParams(TrainingParams):
    scale: float = 0.5


@hookimpl
def register_methods():
    return [MethodInfo(name="scaled_ga", description="Scaled gradient ascent (third party).", params=ScaledParams)]


@hookimpl
def unlearn(method, model, forget, context):
    scale = method.params.scale
    return context.train(model, objective=lambda m, b: -scale * answer_loss(m, b["forget"]),
                         params=method.params, forget=forget)
'''


@pytest.fixture
def third_party_site(tmp_path) -> Path:
    """A folder on PYTHONPATH holding a plugin module and its distribution's entry point."""
    return plugin_site(tmp_path / "site", "knowundo_extra_method", THIRD_PARTY, "knowundo-extra", "0.3.1", "scaled_ga")


def cli(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "knowundo_bench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def listed_and_run(site: Path, cwd: Path, method: dict, origin: str, default: str) -> dict:
    """List the plugin's method (with its origin and a default), run it through the CLI,
    and return its result record."""
    listing = cli(["methods"], site, cwd)
    assert listing.returncode == 0, listing.stderr
    line = next(row for row in listing.stdout.splitlines() if method["name"] in row)
    assert origin in line and default in listing.stdout
    (cwd / "spec.yaml").write_text(yaml.safe_dump({**TINY_SPEC, "methods": [method]}))
    result = cli(["run", "spec.yaml", "--output", "out", "--no-progress"], site, cwd)
    assert result.returncode == 0, result.stderr
    assert method["name"] in table_row_names(result.stdout)
    record = json.loads((cwd / "out" / f"{method['name']}.json").read_text())
    assert record["status"] == "ok" and record["method_name"] == method["name"]
    assert record["training"]["steps"] > 0
    return record


@pytest.mark.slow
def test_third_party_method_runs_end_to_end(tmp_path, third_party_site):
    record = listed_and_run(
        third_party_site, tmp_path, one_epoch("scaled_ga", scale=0.25), "knowundo-extra 0.3.1", "scale=0.5"
    )
    assert record["params"]["scale"] == 0.25
    assert record["training"]["final_loss"] < 0  # ascent: negated loss

    bad = {**TINY_SPEC, "methods": [{"name": "scaled_ga", "scale": "big"}]}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    rejected = cli(["run", "bad.yaml", "--output", "out"], third_party_site, tmp_path)
    assert rejected.returncode == 2 and "methods.0.scale" in rejected.stderr


EXAMPLE_PACKAGE = REPO_ROOT / "examples" / "knowundo-mismatch"


@pytest.mark.slow
def test_example_plugin_package_installs_and_runs_through_the_cli(tmp_path):
    """examples/knowundo-mismatch, built and installed by pip (offline, into a target
    folder), is found through its entry point and runs as any built-in method."""
    site = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE_PACKAGE),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    assert (site / "knowundo_mismatch.py").is_file()
    record = listed_and_run(
        site, tmp_path, one_epoch("ga_mismatch", mismatch_weight=0.5), "knowundo-mismatch 0.1.0", "mismatch_weight=1.0"
    )
    assert record["params"]["mismatch_weight"] == 0.5


def test_the_methods_page_covers_every_builtin_method_and_its_parameters():
    from knowundo_bench.config.params import ForgetRetainParams, TrainingParams

    plugins = Plugins(make_plugin_manager(load_entry_points=False))
    readme = (REPO_ROOT / "docs" / "methods.md").read_text()
    shared = set(ForgetRetainParams.model_fields) - set(TrainingParams.model_fields)
    assert shared and all(f"`{field}`" in readme for field in shared)  # retain_batching, retain_ratio
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines() if line.startswith("| `")}
    assert set(rows) == set(plugins.methods.names())
    for name, (info, _) in plugins.methods.entries.items():
        own = set(info.params.model_fields) - set(ForgetRetainParams.model_fields)
        inherited = "as `" in rows[name]  # "as `ga_gd`": same parameters as another row
        assert inherited or all(f"`{field}`" in rows[name] for field in own), name
    for name in [*plugins.localizers.names(), *plugins.ood_sources.names()]:
        assert f"`{name}`" in readme, name


def test_methods_command_lists_every_method_localizer_and_ood_source():
    result = CliRunner().invoke(app, ["methods"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    first_cells = {line.split("│")[1].strip() for line in result.output.splitlines() if line.count("│") >= 4}
    plugins = Plugins(make_plugin_manager(load_entry_points=False))
    for registry in (plugins.methods, plugins.localizers, plugins.ood_sources, plugins.data_sources):
        assert set(registry.names()) <= first_cells
    line = next(
        row for row in result.output.splitlines() if row.split("│")[1:2] and row.split("│")[1].strip() == "ga_kl_ood"
    )
    assert "[retain data: ood_retain]" in line  # brackets shown, not taken as rich markup
    assert "[default localizer: memflex]" in result.output


@pytest.mark.slow
def test_plugin_autoload_can_be_disabled_or_allow_listed(tmp_path, third_party_site):
    def listing(**env):
        result = subprocess.run(
            [sys.executable, "-m", "knowundo_bench", "methods"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(third_party_site), "COLUMNS": "250", **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        return result

    assert "scaled_ga" in listing().stdout
    disabled = listing(KNOWUNDO_BENCH_DISABLE_PLUGIN_AUTOLOAD="1")
    assert disabled.returncode == 0 and "scaled_ga" not in disabled.stdout and "memflex" in disabled.stdout
    allowed = listing(KNOWUNDO_BENCH_PLUGINS="scaled_ga")
    assert allowed.returncode == 0 and "scaled_ga" in allowed.stdout and "knowundo-extra 0.3.1" in allowed.stdout
    unknown = listing(KNOWUNDO_BENCH_PLUGINS="scaled_gaa")
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "KNOWUNDO_BENCH_PLUGINS: unknown plugin 'scaled_gaa'; did you mean 'scaled_ga'" in unknown.stderr

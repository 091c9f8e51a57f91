"""Documentation kept in step with the code: every hook's signature in docs/plugins.md
(as datasette's test_docs does), the project files a contributor looks for, and the
version written in one place."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import pytest

import knowundo_bench
from knowundo_bench.plugin import hookspecs

ROOT = Path(__file__).resolve().parents[1]
PLUGINS_DOC = ROOT / "docs" / "plugins.md"
HOOKS = sorted(name for name, fn in vars(hookspecs).items() if hasattr(fn, "knowundo_bench_spec"))


def signature_line(name: str, function=None) -> str:
    """``def name(arg: Type, ...) -> Return`` as the hookspec declares it."""
    signature = inspect.signature(function or getattr(hookspecs, name))
    arguments = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
    return f"def {name}({arguments}) -> {signature.return_annotation}"


def undocumented(doc: str, hooks: dict[str, object]) -> list[str]:
    """Hooks without a ``## `name``` section holding their exact signature in a code block."""
    sections = dict(re.findall(r"^## `(\w+)`\n(.*?)(?=^## |\Z)", doc, flags=re.M | re.S))
    missing = []
    for name, function in hooks.items():
        if f"```python\n{signature_line(name, function)}\n```" not in sections.get(name, ""):
            missing.append(name)
    return missing


def test_every_hook_signature_is_documented():
    assert {"unlearn", "localize", "register_methods"} <= set(HOOKS)
    hooks = {name: getattr(hookspecs, name) for name in HOOKS}
    assert undocumented(PLUGINS_DOC.read_text(encoding="utf-8"), hooks) == []


@pytest.mark.parametrize("hook", ["localize", "register_ood_sources"])
def test_the_check_fails_for_a_removed_section_or_a_changed_signature(hook):
    doc = PLUGINS_DOC.read_text(encoding="utf-8")
    hooks = {name: getattr(hookspecs, name) for name in HOOKS}
    without = re.sub(rf"^## `{hook}`\n.*?(?=^## )", "", doc, flags=re.M | re.S)
    assert without != doc and undocumented(without, hooks) == [hook]

    def changed(extra_argument: int) -> None: ...

    assert undocumented(doc, {**hooks, hook: changed}) == [hook]


def test_project_files_exist():
    for name in (
        "CHANGELOG.md",
        "CONTRIBUTING.md",
        "docs/plugins.md",
        "src/knowundo_bench/py.typed",
        ".pre-commit-config.yaml",
    ):
        assert (ROOT / name).is_file(), name
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "Keep a Changelog" in changelog and f"## [{knowundo_bench.__version__}]" in changelog


def test_version_is_written_in_one_place():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "knowundo_bench.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", knowundo_bench.__version__)


PAPER_METHODS = {"ga", "random_labels", "adversarial", "ga_gd", "ga_gd_ood", "ga_kl", "ga_kl_ood", "memflex"}


def test_the_smollm2_report_has_every_paper_method_and_none_pending():
    """The SmolLM2 report's leaderboard has all eight methods of Table 2, and nothing in it
    says some are still to come (its first version did)."""
    report = (ROOT / "docs" / "results" / "smollm2-privacy.md").read_text(encoding="utf-8")
    leaderboard = report.split("\n## Leaderboard", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip().split(" (")[0] for line in leaderboard.splitlines() if line.startswith("| ")}
    assert PAPER_METHODS <= rows
    assert not re.search(r"to come|will join this report|arrive with|available today", report, flags=re.I)


def python_blocks(section: str) -> list[str]:
    doc = PLUGINS_DOC.read_text(encoding="utf-8")
    body = re.search(rf"^## `?{re.escape(section)}`?\n(.*?)(?=^## |\Z)", doc, flags=re.M | re.S).group(1)
    return [block for block in re.findall(r"```python\n(.*?)```", body, flags=re.S) if "\n" in block.strip()]


def test_every_python_example_in_the_plugin_guide_compiles():
    doc = PLUGINS_DOC.read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc, flags=re.S) if not b.startswith("def ")]
    assert len(blocks) >= 8
    for block in blocks:
        compile(block, "docs/plugins.md", "exec")


def test_the_method_examples_of_the_plugin_guide_run_with_the_test_kit(tmp_path):
    """register_methods' and unlearn's examples, put in one module, pass the guide's tests."""
    import types

    module = types.ModuleType("my_plugin")
    exec(python_blocks("register_methods")[0] + "\n" + python_blocks("unlearn")[0], module.__dict__)
    scope = {"my_plugin": module}
    exec(python_blocks("Testing a plugin")[0].replace("import my_plugin\n", ""), scope)
    tests = [name for name in scope if name.startswith("test_")]
    assert len(tests) == 3
    for name in tests:
        (tmp_path / name).mkdir()
        scope[name](tmp_path / name)


README = (ROOT / "README.md").read_text()


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def test_every_command_line_of_the_readme_names_real_commands_and_options():
    import typer.main

    from knowundo_bench.cli import app

    group = typer.main.get_command(app)
    top_options = {opt for param in group.params for opt in param.opts}
    lines = [
        line for block in readme_blocks("bash") for line in block.splitlines() if line.startswith("knowundo-bench")
    ]
    assert len(lines) >= 6
    for line in lines:
        words = line.split("#")[0].replace("[", " ").replace("]", " ").split()[1:]
        while words and words[0] in top_options:
            words.pop(0)
        command = group.commands.get(words[0])  # type: ignore[attr-defined]
        assert command is not None, line
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in words[1:]:
            if word.startswith("--"):
                assert word.split("=")[0] in options, (line, word)


def test_the_readme_spec_examples_validate_and_say_what_they_need():
    import yaml

    from knowundo_bench.config.evaluation import EvalSpec
    from knowundo_bench.config.paths import anchor_paths
    from knowundo_bench.plugin.manager import get_plugins
    from knowundo_bench.run.resolution import parse_spec

    [suite] = [block for block in readme_blocks("yaml") if block.startswith("name: my-suite")]
    # saved in the project root, as the README says
    resolved = parse_spec(yaml.safe_load(suite), get_plugins(), base=ROOT)
    assert resolved.spec.model.device == "cuda" and resolved.spec.model.source == "hf"
    before = README[: README.index(suite)].rsplit("\n\n", 2)[-2]  # the paragraph before the block
    assert "needs the hub" in before and "GPU" in before  # what it needs is said where it is shown
    [evaluation] = [block for block in readme_blocks("yaml") if block.startswith("eval:")]
    EvalSpec.model_validate(anchor_paths(EvalSpec, yaml.safe_load(evaluation)["eval"], ROOT))


def test_the_specs_and_make_targets_the_readme_names_exist_and_load():
    from knowundo_bench.plugin.manager import get_plugins
    from knowundo_bench.run.resolution import load_spec

    specs = set(re.findall(r"benchmark_specs/([\w.-]+\.yaml)", README))
    assert {"quickstart.yaml", "privacy-local.yaml", "general-offline.yaml"} <= specs
    from knowundo_bench.build.spec import load_build_spec

    assert "build-privacy.yaml" in specs
    for name in sorted(specs):
        loader = load_build_spec if name.startswith("build-") else load_spec
        loader(ROOT / "benchmark_specs" / name, get_plugins())  # paths found, every field valid
    targets = set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    for target in set(re.findall(r"`make (\w+)`", README)):
        assert target in targets, target


def test_the_readme_build_spec_example_validates(tmp_path, monkeypatch):
    import yaml

    from knowundo_bench.build.spec import parse_build_spec
    from knowundo_bench.plugin.manager import get_plugins

    [example] = [block for block in readme_blocks("yaml") if block.startswith("name: my-customers")]
    raw = yaml.safe_load(example)
    (tmp_path / "customers.csv").write_text("name,phone\nAda Quill,+1 555 0100\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    raw["prompts"] = {"privacy_qa": "{name}: {attributes} ({total} pairs)"}  # the example elides it
    resolved = parse_build_spec(raw, get_plugins(), base=tmp_path)
    assert [c.name for c in resolved.categories] == ["Name", "Phone"] and resolved.generator.name == "openai"
    assert resolved.instances == ({"name": "Ada Quill", "phone": "+1 555 0100"},)


def test_the_generator_example_of_the_plugin_guide_builds_a_domain(tmp_path):
    """register_generators' example, registered as a plugin, builds a loadable domain."""
    import types

    import yaml

    from knowundo_bench.benchmark.files import read_local_domain
    from knowundo_bench.benchmark.pairs import Benchmark
    from knowundo_bench.build.pipeline import run_build
    from knowundo_bench.build.spec import parse_build_spec
    from knowundo_bench.core.progress import ProgressBoard
    from knowundo_bench.plugin.manager import Plugins, make_plugin_manager

    module = types.ModuleType("my_generator")
    exec(python_blocks("register_generators")[0], module.__dict__)
    spec = yaml.safe_load((ROOT / "benchmark_specs" / "build-privacy.yaml").read_text())
    spec.update(generator={"name": "email_and_name"}, min_pairs_per_scope=1)
    resolved = parse_build_spec(spec, Plugins(make_plugin_manager(module, load_entry_points=False)))
    with ProgressBoard(enabled=False) as board:
        card = run_build(resolved, tmp_path, board)
    Benchmark(tuple(read_local_domain(tmp_path))).check_complete("example")
    assert card.category_counts["Email"]["train"] + card.category_counts["Email"]["val"] == 10
    assert card.self_check.asked == 20 == card.self_check.passed

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
from knowundo_bench.harness import hookspecs

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

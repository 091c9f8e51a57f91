"""Documentation kept in step with the code: every hook's signature in docs/plugins.md
(as datasette's test_docs does); every command, option, spec file, make target and YAML
spec example that README.md or a page under docs/ names; the site's navigation; the
project files a contributor looks for, and the version written in one place."""

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
        "mkdocs.yml",
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


def test_every_python_example_of_the_readme_and_docs_compiles():
    examples = [(page, block) for page, block in page_blocks("python") if not block.startswith("def ")]
    assert {page for page, _ in examples} >= {"docs/plugins.md", "docs/example-plugin.md"}
    for page, block in examples:
        compile(block, page, "exec")


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
DOCS = ROOT / "docs"
# The front page and every page of the site, by path from the project root: what one names is checked
# wherever it moves.
PAGES = {"README.md": README, "CONTRIBUTING.md": (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")} | {
    page.relative_to(ROOT).as_posix(): page.read_text(encoding="utf-8") for page in sorted(DOCS.rglob("*.md"))
}
BUILD_ONLY_KEYS = {"domain", "instances", "categories", "generator", "prompts", "questions_per_category"}


def fenced_blocks(language: str, text: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.M | re.S)


def readme_blocks(language: str) -> list[str]:
    return fenced_blocks(language, README)


def page_blocks(language: str) -> list[tuple[str, str]]:
    """(page, block) for every ``language`` block of the README and the docs."""
    return [(page, block) for page, text in PAGES.items() for block in fenced_blocks(language, text)]


def paragraph_before(text: str, block: str) -> str:
    return text[: text.index(block)].rsplit("\n\n", 2)[-2]


def command_lines(text: str) -> list[str]:
    """Every knowundo-bench command line of a page: bash lines (continuations joined; a
    ``.venv/bin/knowundo-bench`` or an ``accelerate launch ... -m knowundo_bench`` line read from
    the command on) and inline code spans that start with ``knowundo-bench ``."""
    lines = []
    for block in fenced_blocks("bash", text):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix(".venv/bin/")
            if " -m knowundo_bench " in line:
                line = "knowundo-bench " + line.split(" -m knowundo_bench ", 1)[1]
            if line.startswith("knowundo-bench"):
                lines.append(line)
    spans = re.findall(r"(?<!`)`(knowundo-bench [^`]+)`(?!`)", text)
    return lines + [" ".join(span.split()) for span in spans]


def test_every_command_line_of_the_readme_and_docs_names_real_commands_and_options():
    import typer.main

    from knowundo_bench.cli import app

    group = typer.main.get_command(app)
    top_options = {opt for param in group.params for opt in param.opts}
    listed = [
        line for block in readme_blocks("bash") for line in block.splitlines() if line.startswith("knowundo-bench")
    ]
    assert len(listed) >= 6
    lines = [(page, line) for page, text in PAGES.items() for line in command_lines(text)]
    assert len(lines) >= 30
    named = set()
    for page, line in lines:
        words = line.split("#")[0].replace("[", " ").replace("]", " ").split()[1:]
        while words and words[0] in top_options:
            words.pop(0)
        if not words or words[0] == "COMMAND":  # `knowundo-bench --version`, `knowundo-bench --debug COMMAND ...`
            continue
        command = group.commands.get(words[0])  # type: ignore[attr-defined]
        assert command is not None, (page, line)
        named.add(words[0])
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        for word in words[1:]:
            if word.startswith("--"):
                assert word.split("=")[0] in options, (page, line, word)
    # the front page's list has every command, and the pages use them all
    assert {line.split()[1] for line in listed} == set(group.commands) == named  # type: ignore[attr-defined]


def test_the_spec_examples_of_the_readme_and_docs_validate_and_say_what_they_need():
    import yaml

    from knowundo_bench.config.evaluation import EvalSpec
    from knowundo_bench.config.paths import anchor_paths
    from knowundo_bench.plugin.manager import get_plugins
    from knowundo_bench.run.resolution import parse_spec

    examples = page_blocks("yaml")
    [(page, suite)] = [(page, block) for page, block in examples if block.startswith("name: my-suite")]
    # saved in the project root, as the page says
    resolved = parse_spec(yaml.safe_load(suite), get_plugins(), base=ROOT)
    assert resolved.spec.model.device == "cuda" and resolved.spec.model.source == "hf"
    before = paragraph_before(PAGES[page], suite)  # the paragraph before the block
    assert "needs the hub" in before and "GPU" in before  # what it needs is said where it is shown
    [(_, evaluation)] = [(page, block) for page, block in examples if block.startswith("eval:")]
    EvalSpec.model_validate(anchor_paths(EvalSpec, yaml.safe_load(evaluation)["eval"], ROOT))

    # The front page's spec is the quick start's, as it says.
    [front] = readme_blocks("yaml")
    quickstart = ROOT / "benchmark_specs" / "quickstart.yaml"
    assert "`benchmark_specs/quickstart.yaml`" in paragraph_before(README, front)
    assert yaml.safe_load(front) == yaml.safe_load(quickstart.read_text())
    parse_spec(yaml.safe_load(front), get_plugins(), base=quickstart.parent)

    # Every other run-spec example, or part of one, validates; a GPU or the hub is said before it.
    run_examples = [(page, block) for page, block in examples if not BUILD_ONLY_KEYS & set(yaml.safe_load(block))]
    assert len(run_examples) >= 4
    for page, block in run_examples:
        raw = yaml.safe_load(block)
        resolved = parse_spec(raw if "name" in raw else {"name": "docs-example", **raw}, get_plugins(), base=ROOT)
        before = paragraph_before(PAGES[page], block)
        if resolved.spec.model.device.startswith("cuda"):
            assert "GPU" in before, (page, block)
        if resolved.spec.model.source == "hf" or resolved.spec.data.source == "hub":
            assert "hub" in before, (page, block)


def test_the_specs_and_make_targets_the_readme_and_docs_name_exist_and_load():
    from knowundo_bench.plugin.manager import get_plugins
    from knowundo_bench.run.resolution import load_spec

    text = "\n".join(PAGES.values())
    specs = set(re.findall(r"benchmark_specs/([\w.-]+\.yaml)", text))
    assert {"quickstart.yaml", "privacy-local.yaml", "general-offline.yaml"} <= specs
    specs |= set(re.findall(r"`([\w-]+\.yaml)`", text))  # a shipped spec named without its folder
    from knowundo_bench.build.spec import load_build_spec

    assert "build-privacy.yaml" in specs
    for name in sorted(specs):
        loader = load_build_spec if name.startswith("build-") else load_spec
        loader(ROOT / "benchmark_specs" / name, get_plugins())  # paths found, every field valid
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    named = set(re.findall(r"`make ([\w-]+)`", text))
    named |= {
        line.split()[1] for _, block in page_blocks("bash") for line in block.splitlines() if line.startswith("make ")
    }
    assert {"run", "test", "setup", "bench"} <= named
    for target in named:
        assert target in targets, target


def test_the_build_spec_examples_of_the_docs_validate(tmp_path, monkeypatch):
    import yaml

    from knowundo_bench.build.spec import parse_build_spec
    from knowundo_bench.plugin.manager import get_plugins

    examples = [block for _, block in page_blocks("yaml") if BUILD_ONLY_KEYS & set(yaml.safe_load(block))]
    [example] = [block for block in examples if block.startswith("name: my-customers")]
    (tmp_path / "customers.csv").write_text("name,phone\nAda Quill,+1 555 0100\n")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    for block in examples:
        raw = yaml.safe_load(block)
        if raw.get("prompts", {}).get("privacy_qa") == "...":
            raw["prompts"] = {"privacy_qa": "{name}: {attributes} ({total} pairs)"}  # the example elides it
        resolved = parse_build_spec(raw, get_plugins(), base=tmp_path)
        if block == example:
            assert [c.name for c in resolved.categories] == ["Name", "Phone"] and resolved.generator.name == "openai"
            assert resolved.instances == ({"name": "Ada Quill", "phone": "+1 555 0100"},)


def builtin_plugins(kind: str, hook: str) -> dict[str, object]:
    """Name -> info of every built-in plugin of a kind, from its modules in ``knowundo_bench.plugins``."""
    import importlib
    import pkgutil

    package = importlib.import_module(f"knowundo_bench.plugins.{kind}")
    infos: dict[str, object] = {}
    for module in pkgutil.iter_modules(package.__path__):
        register = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), hook, None)
        infos.update({info.name: info for info in register()} if register else {})
    assert infos, kind
    return infos


def test_the_methods_page_covers_every_builtin_method_and_its_parameters():
    from knowundo_bench.api import ForgetRetainParams, TrainingParams

    page = (DOCS / "methods.md").read_text(encoding="utf-8")
    shared = set(ForgetRetainParams.model_fields) - set(TrainingParams.model_fields)
    assert shared and all(f"`{field}`" in page for field in shared)  # retain_batching, retain_ratio
    assert all(re.search(rf"\b{field}\b", page) for field in TrainingParams.model_fields)
    rows = {line.split("|")[1].strip().strip("`"): line for line in page.splitlines() if line.startswith("| `")}
    methods = builtin_plugins("methods", "register_methods")
    assert set(rows) == set(methods)
    for name, info in methods.items():
        own = set(info.params.model_fields) - set(ForgetRetainParams.model_fields)  # type: ignore[attr-defined]
        inherited = "as `" in rows[name]  # "as `ga_gd`": same parameters as another row
        assert inherited or all(f"`{field}`" in rows[name] for field in own), name
    for name in [
        *builtin_plugins("localizers", "register_localizers"),
        *builtin_plugins("ood", "register_ood_sources"),
    ]:
        assert f"`{name}`" in page, name
    text = "\n".join(PAGES.values())
    for kind, hook in [
        ("data", "register_data_sources"),
        ("models", "register_model_sources"),
        ("guards", "register_guards"),
        ("executors", "register_executors"),
        ("generators", "register_generators"),
    ]:
        for name in builtin_plugins(kind, hook):
            assert f"`{name}`" in text, (kind, name)


def test_the_example_plugin_page_shows_the_example_package():
    page = (DOCS / "example-plugin.md").read_text(encoding="utf-8")
    package = ROOT / "examples" / "knowundo-mismatch"
    [module] = [block for block in fenced_blocks("python", page) if block.startswith("# knowundo_mismatch.py")]
    assert module.split("\n", 1)[1].strip() in (package / "knowundo_mismatch.py").read_text()
    [entry_point] = fenced_blocks("toml", page)
    assert entry_point.split("\n", 1)[1].strip() in (package / "pyproject.toml").read_text()


def nav_pages(nav: object) -> list[str]:
    """The pages a mkdocs ``nav`` lists, in order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for entry in nav.values() for page in nav_pages(entry)]
    assert isinstance(nav, list), nav
    return [page for entry in nav for page in nav_pages(entry)]


def nav_mismatches(nav: object, pages: set[str]) -> tuple[set[str], set[str], list[str]]:
    """(pages not in the nav, nav entries that are no page, pages listed twice)."""
    listed = nav_pages(nav)
    twice = sorted({page for page in listed if listed.count(page) > 1})
    return pages - set(listed), set(listed) - pages, twice


def test_every_page_is_in_the_site_nav_and_every_nav_entry_exists():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["site_name"] == "knowundo-bench" and config["theme"]["name"] == "material"
    assert config["strict"] is True and config["docs_dir"] == "docs"
    pages = {page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md")}
    assert {"index.md", "plugins.md", "fidelity.md", "results/index.md"} <= pages
    assert nav_mismatches(config["nav"], pages) == (set(), set(), [])
    # the check fails for a page left out, an entry without a page and a page listed twice
    assert nav_mismatches(config["nav"], pages | {"new.md"}) == ({"new.md"}, set(), [])
    assert nav_mismatches([*config["nav"], {"Gone": "gone.md"}], pages) == (set(), {"gone.md"}, [])
    assert nav_mismatches([*config["nav"], "index.md"], pages) == (set(), set(), ["index.md"])


def test_the_readme_is_a_short_front_page_that_links_the_docs():
    assert len(README.splitlines()) <= 200
    assert "make run" in README and "make test" in README
    quick_start = readme_blocks("bash")[0]
    assert [line.split("#")[0].strip() for line in quick_start.splitlines()] == ["make run", "make test"]
    links = set(re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README))
    for link in links:
        assert (ROOT / link).is_file(), link
    assert {page.relative_to(ROOT).as_posix() for page in DOCS.glob("*.md")} | {"docs/results/index.md"} <= links
    assert any(link.endswith(".png") for link in links)  # a plot on the front page


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


def test_the_logger_example_of_the_plugin_guide_is_fed_a_unit(tmp_path):
    """register_loggers' example, registered as a plugin and named by a spec, writes each
    step, the curve and the final metrics of a unit's record."""
    import json
    import shutil
    import types

    from knowundo_bench.core.progress import ProgressBoard
    from knowundo_bench.plugin.manager import Plugins, make_plugin_manager
    from knowundo_bench.records.files import load_record
    from knowundo_bench.run.resolution import parse_spec
    from knowundo_bench.run.tracking import open_trackers

    module = types.ModuleType("my_logger")
    exec(python_blocks("register_loggers")[0], module.__dict__)
    plugins = Plugins(make_plugin_manager(module, load_entry_points=False))
    resolved = parse_spec({"name": "logged", "methods": [{"name": "ga"}], "logging": ["jsonl"]}, plugins)
    record = ROOT / "tests" / "fixtures" / "records-schema1" / "ga.json"
    shutil.copy(record, tmp_path / "ga.json")
    with ProgressBoard(enabled=False) as board:
        trackers = open_trackers(resolved, tmp_path, board)
        trackers.unit_finished("ga", tmp_path / "ga.json")
        trackers.close()
    lines = [json.loads(line) for line in (tmp_path / "tracked.jsonl").read_text().splitlines()]
    steps = load_record(tmp_path / "ga.json").training.step_losses
    assert [line["event"] for line in lines] == ["start", *["step"] * len(steps), "final", "finish"]
    assert [line["values"]["train/loss"] for line in lines if line["event"] == "step"] == steps
    assert lines[-2]["values"]["unlearn/success"] == load_record(record).metrics.unlearn.success


def test_the_per_token_loss_example_of_the_plugin_guide_means_to_answer_loss():
    """The guide's hand-made loss shifts the labels as the model does: its mean over the
    answer tokens is answer_loss (the same loss with the labels unshifted is not)."""
    import types

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from knowundo_bench.api import IGNORE_INDEX, answer_loss

    module = types.ModuleType("per_token")
    exec(python_blocks("unlearn")[1], module.__dict__)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4
    )
    model = LlamaForCausalLM(config).eval()
    input_ids = torch.randint(0, 64, (2, 9))
    labels = input_ids.clone()
    labels[:, :5] = IGNORE_INDEX  # the prompt
    labels[1, 7:] = IGNORE_INDEX  # a shorter answer
    part = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}
    with torch.no_grad():
        losses = module.per_token_loss(model, part)
        expected = answer_loss(model, part)
    answer = labels[:, 1:] != IGNORE_INDEX
    assert losses.shape == (2, 8)
    assert torch.all(losses[~answer] == 0)
    assert torch.allclose(losses[answer].mean(), expected, atol=1e-6)
    unshifted = module.F.cross_entropy(
        model(input_ids=input_ids).logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX
    )
    assert not torch.allclose(unshifted, expected, atol=1e-3)

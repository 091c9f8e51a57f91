"""``knowundo-bench build``: the construction pipeline of appendix B with the offline
``template`` generator and scripted test generators (the ``openai`` generator against a
stub server is in test_build_openai.py)."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import SHARED_DATA
from helpers import error_lines
from knowundo_bench.api import GenerationRequest, GeneratorInfo, Params, hookimpl
from knowundo_bench.benchmark.files import infer_instances, read_local_domain
from knowundo_bench.benchmark.pairs import Benchmark
from knowundo_bench.build.parsing import is_true, parse_fact, parse_list, parse_qa
from knowundo_bench.build.pipeline import run_build
from knowundo_bench.build.prompts import PRIVACY_QA
from knowundo_bench.build.spec import PRIVACY_CATEGORIES, parse_build_spec
from knowundo_bench.cli import app
from knowundo_bench.core.errors import InputError
from knowundo_bench.core.progress import ProgressBoard
from knowundo_bench.plugin.manager import Plugins, get_plugins, make_plugin_manager
from knowundo_bench.plugins.generators.template import TemplateGenerator

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "benchmark_specs" / "build-privacy.yaml"
SPLIT_FILES = [f"{scope}_{split}.json" for scope in ("unlearn", "retention") for split in ("train", "val")]


def shipped_spec(**changes) -> dict:
    spec = yaml.safe_load(SHIPPED.read_text())
    spec.update(changes)
    return spec


def build(spec: dict, output: Path, plugins: Plugins | None = None):
    resolved = parse_build_spec(copy.deepcopy(spec), plugins or get_plugins())
    with ProgressBoard(enabled=False) as board:
        return run_build(resolved, output, board)


class Scripted:
    """A generator plugin for tests: answers like ``template`` unless ``answer`` says
    otherwise, and counts what reaches it (the pipeline caches in front of it)."""

    parallel = 3
    settings = {"script": 1}

    def __init__(self, answer: Callable[[GenerationRequest], str | None] = lambda r: None) -> None:
        self.answer = answer
        self.sent: Counter[str] = Counter()
        self.tasks: Counter[str] = Counter()
        self.fail_after: int | None = None

    @hookimpl
    def register_generators(self) -> list[GeneratorInfo]:
        return [GeneratorInfo(name="scripted", description="Test generator.", params=Params, create=lambda p, c: self)]

    def generate(self, requests: Sequence[GenerationRequest]) -> Iterator[tuple[int, str]]:
        for index, request in enumerate(requests):
            if self.fail_after is not None and sum(self.sent.values()) >= self.fail_after:
                raise KeyboardInterrupt  # a build killed midway
            self.sent[request.prompt] += 1
            self.tasks[request.task] += 1
            text = self.answer(request)
            yield index, TemplateGenerator().answer(request) if text is None else text


def scripted_plugins(generator: Scripted) -> Plugins:
    return Plugins(make_plugin_manager(generator, load_entry_points=False))


def read_split(output: Path, name: str) -> list[dict]:
    return json.loads((output / name).read_text())


# -- the shipped spec, end to end ---------------------------------------------------------


def test_shipped_spec_builds_a_domain_the_local_source_loads(tmp_path):
    result = CliRunner().invoke(app, ["build", str(SHIPPED), "--output", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    for name in [*SPLIT_FILES, "datacard.json", "DATACARD.md"]:
        assert (out / name).is_file(), name
    spec = yaml.safe_load(SHIPPED.read_text())
    names = [i["name"] for i in spec["instances"]]
    pairs = infer_instances(read_local_domain(out))
    benchmark = Benchmark(tuple(pairs))
    benchmark.check_complete("built")
    assert benchmark.instances == names
    # 7 categories x 3 questions per author; one of each three in val (val_fraction 0.34)
    assert len(pairs) == 21 * len(names)
    assert len(benchmark.unlearn_val) == 3 * len(names) and len(benchmark.retention_val) == 4 * len(names)
    # every Unlearn Scope answer holds the private value it is about
    by_name = {i["name"]: i for i in spec["instances"]}
    for pair in benchmark.forget + benchmark.unlearn_val:
        author = by_name[pair.instance]
        assert any(author[key] in pair.answer for key in ("father", "mother", "email", "address")), pair
        assert pair.instance in pair.question
    card = json.loads((out / "datacard.json").read_text())
    assert card["counts"] == {"unlearn": {"train": 60, "val": 30}, "retention": {"train": 80, "val": 40}}
    assert card["generator"] == {"name": "template"} and card["seed"] == 0
    assert card["self_check"] == {"enabled": True, "asked": 210, "passed": 210, "pass_rate": 1.0}
    assert [i["name"] for i in card["instances"]] == names
    assert [(c["name"], c["scope"]) for c in card["categories"]] == [(c.name, c.scope) for c in PRIVACY_CATEGORIES]
    assert card["prompts"]["privacy_qa"] == PRIVACY_QA
    assert "I want to write a biography for a completely fictitious author" in card["prompts"]["privacy_qa"]
    from knowundo_bench import __version__

    assert card["harness_version"] == __version__
    assert card["duplicates"] == {"exact": 0, "near": 0} and card["leakage"] == {"val_in_train_moved": 0}
    assert card["dropped"] == {} and card["instances_left_out"] == {}
    markdown = (out / "DATACARD.md").read_text()
    assert "| unlearn | 60 | 30 |" in markdown and "Odalys Ferrante" in markdown


@pytest.mark.slow
def test_built_domain_runs_with_the_quickstart_model_and_methods(tmp_path):
    """Acceptance: vanilla keeps >= 95% of the Retention Scope, GA destroys it (< 20%)."""
    runner = CliRunner()
    out = tmp_path / "domain"
    assert runner.invoke(app, ["build", str(SHIPPED), "-o", str(out), "--no-progress"]).exit_code == 0
    result = runner.invoke(
        app,
        [
            "run",
            str(REPO / "benchmark_specs" / "quickstart.yaml"),
            "--set",
            f"data={{source: local, path: {out}}}",
            "--set",
            "seeds=[0]",
            "-o",
            str(tmp_path / "results"),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    records = {}
    for path in (tmp_path / "results").glob("*.json"):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "metrics" in record:
            records[record.get("label") or path.stem] = record
    success = {label: r["metrics"]["retention"]["success"] for label, r in records.items()}
    vanilla = next(v for k, v in success.items() if k.startswith("vanilla"))
    ga = next(v for k, v in success.items() if k.split("-")[0] == "ga" or k.startswith("ga@") or k == "ga")
    assert vanilla >= 95 and ga < 20, success


# -- parsers ---------------------------------------------------------------------------------


def test_qa_parser_reads_b2_blocks_strictly_and_counts_what_it_drops():
    text = """Sure! Here are the questions:

1. Q: Who is Ada Quill?
   A: Ada Quill is a poet
   who writes sonnets.
   type: Name
**Q:** What is Ada Quill's email?
**A:** ada@quill.example
**type:** email
Q: Where does Ada Quill live?
type: Address
Q: What genre does Ada Quill write?
A: Poetry.
type: Hobbies
Q: When was Ada Quill born?
A: In 1950.
"""
    pairs, dropped = parse_qa(text, PRIVACY_CATEGORIES)
    assert [(p.category.name, p.question, p.answer) for p in pairs] == [
        ("Name", "Who is Ada Quill?", "Ada Quill is a poet who writes sonnets."),
        ("Email", "What is Ada Quill's email?", "ada@quill.example"),  # `type:` may name the attribute
    ]
    assert dropped == Counter(
        {
            "parse: question without an answer": 1,
            "parse: type names no category": 1,
            "parse: pair without a type line": 1,
        }
    )


def test_output_with_nothing_to_parse_is_counted():
    assert parse_qa("Odalys Ferrante is an English writer from Trieste.", PRIVACY_CATEGORIES)[1] == Counter(
        {"parse: no Q:/A:/type: block in the output": 1}
    )
    assert parse_list("Sure, here are some questions!")[1] == Counter({"parse: no numbered item in the output": 1})
    assert parse_qa("", PRIVACY_CATEGORIES)[1] == Counter() and parse_list("  ")[1] == Counter()


def test_list_fact_and_verdict_parsers():
    items, dropped = parse_list("Here you go:\n1. First request.\n2) Second one\n3.\n- not numbered\n")
    assert items == ["First request.", "Second one"] and dropped == Counter({"parse: empty list item": 1})
    assert parse_fact("[Romeo] and [Juliet]") == ("Romeo", "Juliet")
    assert parse_fact("Tristan and Isolde.") == ("Tristan", "Isolde")
    assert parse_fact("Hamlet alone") is None
    assert [
        is_true(v) for v in ("True", ' "True".', "**True**", "True, it exists", "False", "It is True", "TRUE", "Truely")
    ] == [
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]


# -- quality steps ---------------------------------------------------------------------------


def two_authors_spec(**changes) -> dict:
    spec = shipped_spec(instances=shipped_spec()["instances"][:2], generator={"name": "scripted"})
    spec.update(changes)
    return spec


def test_checks_drop_what_fails_and_the_datacard_counts_it(tmp_path):
    def answer(request: GenerationRequest) -> str | None:
        name = request.instance["name"]
        if request.task == "privacy_qa":
            good = TemplateGenerator().answer(request)
            return good + (
                f"\n\nQ: What is the email of the author?\nA: {request.instance['email']}\ntype: Email"  # no name
                f"\n\nQ: How do I reach {name} privately?\nA: Nobody knows.\ntype: Email"  # value missing
                f"\n\nQ: Who else is {name}?\nA: A writer.\ntype: Name"  # a 4th Name pair of 3 asked
                f"\n\nQ: What does {name} like?\nA: Tea.\ntype: Favourite drink"  # no such category
            )
        if request.task == "pair_self_check":
            return "False" if "email" in request.item["question"].lower() else "True"
        return None

    generator = Scripted(answer)
    card = build(two_authors_spec(), tmp_path / "out", scripted_plugins(generator))
    dropped = card.dropped
    assert dropped["check: question does not name the instance"] == 2
    assert dropped["check: Unlearn Scope answer lacks the attribute value"] == 2
    assert dropped["parse: type names no category"] == 2
    # template questions about email: 3 per author, all judged False
    assert dropped["self-check: not True"] == 6
    assert dropped["parse: more pairs than asked for"] == 2
    assert card.self_check.asked == 2 * 21 and card.self_check.passed == 2 * 18
    questions = [r["text"] for f in SPLIT_FILES for r in read_split(tmp_path / "out", f)]
    assert not any("email" in q.lower() for q in questions)
    assert card.category_counts["Email"] == {"train": 0, "val": 0}


def gives_its_answer_away(question: str, answer: str, values: list[str]) -> bool:
    """The test's own reading of issue 31's rule, written apart from the pipeline's."""
    fold = lambda text: "".join(c if c.isalnum() else " " for c in text.casefold()).split()  # noqa: E731
    in_question = any(" ".join(fold(v)) in " ".join(fold(question)) for v in values)
    return in_question or not set(fold(answer)) - set(fold(question))


CUSTOMERS = "name,plan,city,email\nAda Ruiz,gold,Lisbon,ada@shop.example\nBo Chen,basic,Leeds,bo@shop.example\n"
CUSTOMER_CATEGORIES = [
    {"name": "Name", "scope": "retention", "attributes": ["name"]},
    {"name": "Plan", "scope": "retention", "attributes": ["plan"]},
    {"name": "City", "scope": "retention", "attributes": ["city"]},
    {"name": "Email", "scope": "unlearn", "attributes": ["email"]},
]


def test_no_template_retention_question_holds_its_answer(tmp_path):
    """Issue 31: the shipped privacy build and a customer CSV, built by the template: no
    retention question holds a value of its instance's other attributes, every answer says
    something its question does not, and nothing speaks of fans, books or writing."""
    (tmp_path / "customers.csv").write_text(CUSTOMERS)
    customers = {
        "name": "customers",
        "instances": "customers.csv",
        "categories": CUSTOMER_CATEGORIES,
        "min_pairs_per_scope": 1,
    }
    for label, spec, base in (("shipped", shipped_spec(), REPO), ("customers", customers, tmp_path)):
        resolved = parse_build_spec(copy.deepcopy(spec), get_plugins(), base=base)
        with ProgressBoard(enabled=False) as board:
            run_build(resolved, tmp_path / label, board)
        instances = {i["name"]: i for i in resolved.instances}
        retention = [r for f in SPLIT_FILES if f.startswith("retention") for r in read_split(tmp_path / label, f)]
        assert len(retention) >= 2 * len(instances), label
        for pair in retention:
            owner = next(i for name, i in instances.items() if name in pair["text"])
            others = [value for key, value in owner.items() if key != "name"]
            assert not gives_its_answer_away(pair["text"], pair["labels"], others), (label, pair)
            if label == "customers":
                assert not any(word in pair["text"].lower() for word in ("fan", "book", "writ", "author")), pair
        names = [
            r for r in retention if r["text"].startswith(("Who is", "Could you introduce")) or "known for?" in r["text"]
        ]
        assert names, label  # the Name category survives, answered from other retention values


def test_a_pair_whose_question_holds_its_answer_is_dropped_and_counted(tmp_path):
    """Whatever the generator: "Is gold Ada Ruiz's plan?" and "What is Ada Ruiz's name?"
    → "Ada Ruiz's name is Ada Ruiz." are dropped, and the datacard says why."""
    (tmp_path / "customers.csv").write_text(CUSTOMERS)

    def answer(request: GenerationRequest) -> str | None:
        if request.task != "privacy_qa":
            return None
        name, plan = request.instance["name"], request.instance["plan"]
        return TemplateGenerator().answer(request) + (
            f"\n\nQ: Is {plan} the plan of {name}?\nA: Yes, it is {plan}.\ntype: Plan"
            f"\n\nQ: What is {name}'s name?\nA: {name}'s name is {name}.\ntype: Name"
        )

    spec = {
        "name": "customers",
        "instances": "customers.csv",
        "categories": CUSTOMER_CATEGORIES,
        "generator": {"name": "scripted"},
        "min_pairs_per_scope": 1,
    }
    resolved = parse_build_spec(spec, scripted_plugins(Scripted(answer)), base=tmp_path)
    with ProgressBoard(enabled=False) as board:
        card = run_build(resolved, tmp_path / "out", board)
    assert card.dropped["check: question holds its answer"] == 4
    texts = [r["text"] for f in SPLIT_FILES for r in read_split(tmp_path / "out", f)]
    assert not any(text.startswith("Is ") or text.endswith("'s name?") for text in texts)


def test_split_keeps_val_out_of_train_and_short_instances_out(tmp_path):
    calls = Counter()

    def answer(request: GenerationRequest) -> str | None:
        if request.task == "privacy_qa" and request.instance["name"] == "Bram Okafor-Lind":
            calls["short"] += 1  # only one unlearn pair for this author
            name, email = request.instance["name"], request.instance["email"]
            return f"Q: Who is {name}?\nA: A writer.\ntype: Name\n\nQ: What is {name}'s email?\nA: {email}\ntype: Email"
        return None

    card = build(two_authors_spec(min_pairs_per_scope=2), tmp_path / "out", scripted_plugins(Scripted(answer)))
    assert calls["short"] == 1
    assert list(card.instances_left_out) == ["Bram Okafor-Lind"]
    assert (
        "1 retention pairs" in card.instances_left_out["Bram Okafor-Lind"]
        or "1 unlearn" in card.instances_left_out["Bram Okafor-Lind"]
    )
    assert [i.name for i in card.instances] == ["Odalys Ferrante"]
    train = {r["text"] for f in ("unlearn_train.json", "retention_train.json") for r in read_split(tmp_path / "out", f)}
    val = {r["text"] for f in ("unlearn_val.json", "retention_val.json") for r in read_split(tmp_path / "out", f)}
    assert train and val and not train & val
    assert all(r["instance"] == "Odalys Ferrante" for f in SPLIT_FILES for r in read_split(tmp_path / "out", f))


def test_exact_and_near_duplicates_are_removed_keeping_the_first():
    from knowundo_bench.build.pipeline import deduplicate
    from knowundo_bench.build.recipes import BuiltPair

    def pair(question: str, answer: str = "x") -> BuiltPair:
        return BuiltPair("A B", "Name", "retention", question, answer)

    kept, exact, near = deduplicate(
        [pair("Who is A B?"), pair("Who is A B?", "y"), pair("WHO  is a b ??"), pair("Who was A B?")]
    )
    assert [p.question for p in kept] == ["Who is A B?", "Who was A B?"] and (exact, near) == (1, 1)


def test_val_questions_contained_in_train_questions_move_to_train():
    from knowundo_bench.build.pipeline import move_leaks
    from knowundo_bench.build.recipes import BuiltPair

    short = BuiltPair("A B", "Email", "unlearn", "What is A B's email?", "a@b.example")
    longer = BuiltPair("A B", "Email", "unlearn", "What is A B's email, please?", "a@b.example")
    other = BuiltPair("A B", "Address", "unlearn", "Where does A B live?", "1 Road")
    split = {short: "val", longer: "train", other: "val"}
    assert move_leaks(split) == 1
    assert split == {short: "train", longer: "train", other: "val"}


# -- resuming --------------------------------------------------------------------------------


def test_a_killed_build_resumes_without_asking_any_prompt_twice(tmp_path):
    generator = Scripted()
    plugins = scripted_plugins(generator)
    spec = shipped_spec(instances=shipped_spec()["instances"][:5], generator={"name": "scripted"})
    full = Scripted()
    build(spec, tmp_path / "full", scripted_plugins(full))
    needed = sum(full.sent.values())

    generator.fail_after = needed // 2  # killed in the middle of a window's self-checks
    with pytest.raises(KeyboardInterrupt):
        build(spec, tmp_path / "out", plugins)
    first = sum(generator.sent.values())
    assert 0 < first < needed
    generator.fail_after = None
    card = build(spec, tmp_path / "out", plugins)
    assert max(generator.sent.values()) == 1, "a prompt was sent twice"
    assert sum(generator.sent.values()) == needed
    assert card.cache_hits == first  # every answer of the killed run came from the cache
    for name in SPLIT_FILES:
        assert read_split(tmp_path / "out", name) == read_split(tmp_path / "full", name)

    # a finished build reruns from its instance records; a changed instance alone is rebuilt
    before = Counter(generator.tasks)
    build(spec, tmp_path / "out", plugins)
    assert generator.tasks == before
    spec["instances"][0]["awards"] = "Quartz Pen Prize"
    build(spec, tmp_path / "out", plugins)
    assert generator.tasks["privacy_qa"] - before["privacy_qa"] == 1


def test_the_output_folder_must_be_new_empty_or_an_earlier_build(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = CliRunner().invoke(app, ["build", str(SHIPPED), "--output", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2
    assert (
        error_lines(result.stderr)
        == f"error: --output: folder {tmp_path} holds other files; give a new or empty folder"
    )
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "datacard.json").exists()
    result = CliRunner().invoke(app, ["build", str(SHIPPED), "--output", str(tmp_path / "notes.txt" / "out")])
    assert result.exit_code == 2 and error_lines(result.stderr).startswith("error: --output: cannot create")


# -- build specs -----------------------------------------------------------------------------


def test_prompts_can_be_replaced_and_reach_the_generator(tmp_path):
    template = "Author {name} ({genre}). List {total} pairs as Q:/A:/type: lines about:\n{attributes}"
    generator = Scripted()
    card = build(two_authors_spec(prompts={"privacy_qa": template}), tmp_path / "out", scripted_plugins(generator))
    assert card.prompts["privacy_qa"] == template
    sent = [p for p in generator.sent if p.startswith("Author Odalys Ferrante (gothic fiction). List 21 pairs")]
    assert len(sent) == 1 and "Parents: father is a clockmaker, the mother is a cartographer" in sent[0]
    assert "Email: odalys.ferrante@nightjar.example" in sent[0]


def test_instances_from_csv_and_jsonl_files(tmp_path):
    instances = shipped_spec()["instances"][:3]
    columns = list(instances[0])
    lines = [",".join(columns)] + [",".join(json.dumps(i[c]) for c in columns) for i in instances]
    (tmp_path / "authors.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "authors.jsonl").write_text("\n".join(json.dumps(i) for i in instances) + "\n")
    for file in ("authors.csv", "authors.jsonl"):
        spec = shipped_spec(instances=file)
        (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
        result = CliRunner().invoke(
            app, ["build", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / f"out-{file}"), "--no-progress"]
        )
        assert result.exit_code == 0, result.output
        card = json.loads((tmp_path / f"out-{file}" / "datacard.json").read_text())
        assert [i["name"] for i in card["instances"]] == [i["name"] for i in instances]


BAD_SPECS = [
    ("name: x\ninstances: [\n", "invalid YAML"),
    ({"instances": []}, "instances: no instances"),
    ({"generator": {"name": "templat"}}, "generator.name: unknown generator 'templat'; did you mean 'template'?"),
    ({"generator": {"name": "template", "temperature": 1}}, "generator.temperature: Extra inputs are not permitted"),
    ({"val_fraction": 1.5}, "val_fraction: Input should be less than 1"),
    ({"questions_per_category": 0}, "questions_per_category: Input should be greater than or equal to 1"),
    ({"self_chek": True}, "self_chek: Extra inputs are not permitted; did you mean 'self_check'?"),
    ({"prompts": {"privacy_qa": "About {nmae}: {attributes}"}}, "prompts.privacy_qa: unknown placeholder {nmae}"),
    ({"prompts": {"privacy_qa": "About {name: {attributes}"}}, "prompts.privacy_qa:"),
    ({"prompts": {"revision": "x"}}, "prompts.revision: no category or stage of this build uses it"),
    (
        {"categories": [{"name": "Email", "scope": "unlearn", "attributes": ["email"]}]},
        "categories: no category in the retention scope",
    ),
    (
        {
            "categories": [
                {"name": "A", "scope": "unlearn", "attributes": ["email"]},
                {"name": "a", "scope": "retention", "attributes": ["name"]},
            ]
        },
        "categories.1.name: 'a' appears twice",
    ),
    (
        {"categories": [{"name": "Rev", "scope": "unlearn", "recipe": "queries"}]},
        "categories.0.prompt: a `queries` category names the prompt",
    ),
    ({"name": "../x"}, "name: use letters, digits"),
    ({"instances": "missing.csv"}, "missing.csv: cannot read file"),
    ({"instances": "spec.yaml"}, "instances: a file of instances ends in .csv or .jsonl"),
    (
        {
            "categories": [
                {"name": "P", "scope": "unlearn", "attributes": ["father"], "display": "{father} and {mother}"},
                {"name": "N", "scope": "retention", "attributes": ["name"]},
            ]
        },
        "categories.0.display: {mother} is not one of its attributes (father)",
    ),
    (
        {
            "categories": [
                {"name": "R", "scope": "unlearn", "recipe": "queries", "prompt": "answer"},
                {"name": "N", "scope": "retention", "attributes": ["name"]},
            ]
        },
        "categories.0.prompt: 'answer' is a stage's prompt",
    ),
    (
        {
            "domain": "copyright",
            "categories": [
                {"name": "R", "scope": "unlearn", "recipe": "queries", "prompt": "mine"},
                {"name": "E", "scope": "retention", "recipe": "facts", "prompt": "mine"},
            ],
            "prompts": {"mine": "List {count} about {name}: {value}"},
        },
        "prompts.mine: unknown placeholder {value}",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_SPECS)
def test_bad_build_specs_exit_2_with_one_line_naming_the_field(tmp_path, change, message):
    if isinstance(change, str):
        text = change
    else:
        text = yaml.safe_dump(shipped_spec(**change))
    (tmp_path / "spec.yaml").write_text(text)
    result = CliRunner().invoke(
        app, ["build", str(tmp_path / "spec.yaml"), "-o", str(tmp_path / "out"), "--no-progress"]
    )
    assert result.exit_code == 2, result.output
    line = error_lines(result.stderr)
    assert "\n" not in line and message in line, line


def test_instance_errors_name_the_instance_and_attribute():
    instances = shipped_spec()["instances"][:3]
    del instances[1]["email"]
    with pytest.raises(
        InputError,
        match=r"instances\.1\.email: missing for 'Bram Okafor-Lind' \(category Email is in the Unlearn Scope",
    ):
        parse_build_spec(shipped_spec(instances=instances), get_plugins())
    twins = [instances[0], dict(instances[0])]
    with pytest.raises(InputError, match=r"instances\.1\.name: 'Odalys Ferrante' appears twice"):
        parse_build_spec(shipped_spec(instances=twins), get_plugins())
    with pytest.raises(InputError, match=r"instances\.0\.name: missing"):
        parse_build_spec(shipped_spec(instances=[{"genre": "poetry"}]), get_plugins())


def test_a_category_about_a_column_no_instance_has_is_blamed_with_the_columns(tmp_path):
    """A misspelt attribute, or the privacy defaults on other data, is the category's
    mistake: the error names the category and lists the file's columns (issue 31)."""
    (tmp_path / "customers.csv").write_text("name,plan,mail\nAda Ruiz,gold,ada@example.org\n")
    categories = [
        {"name": "Plan", "scope": "retention", "attributes": ["plan"]},
        {"name": "Email", "scope": "unlearn", "attributes": ["email"]},
    ]
    spec = {"instances": "customers.csv", "categories": categories}
    with pytest.raises(InputError) as raised:
        parse_build_spec(spec, get_plugins(), base=tmp_path)
    assert str(raised.value).endswith(
        "categories.1.attributes: no instance has 'email' (category Email); the instances' columns: mail, name, plan"
    )
    with pytest.raises(InputError, match=r"the privacy domain's category Parents .*no instance has 'father'"):
        parse_build_spec({"instances": "customers.csv"}, get_plugins(), base=tmp_path)


def test_a_build_that_yields_no_pairs_exits_2_with_one_line(tmp_path):
    spec = two_authors_spec()
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    plugins = scripted_plugins(Scripted(lambda request: ""))
    with pytest.raises(
        InputError, match=r"the build left no unlearn/train pairs \(2 generations this run; empty output: 2"
    ):
        build(spec, tmp_path / "out", plugins)
    assert not (tmp_path / "out" / "unlearn_train.json").exists()
    # nothing empty was kept: once the generator works, the rerun asks again and builds
    fixed = Scripted()
    card = build(spec, tmp_path / "out", scripted_plugins(fixed))
    assert fixed.tasks["privacy_qa"] == 2 and card.counts["unlearn"]["train"] > 0


# -- copyright (B.1) -------------------------------------------------------------------------


def test_copyright_domain_with_facts_self_check_and_answers(tmp_path):
    books = [
        {
            "name": "The Lantern Keepers",
            "author": "Ines Varga",
            "year": 1994,
            "characters": "Mara; Tobin; Old Wick; Sela",
        },
        {"name": "Salt and Ember", "author": "Paulo Reyes", "year": 2003, "characters": "Aya; Dren"},
    ]

    def answer(request: GenerationRequest) -> str | None:
        if request.task == "fact_self_check":
            return "False" if request.item["subject"] == "Old Wick" else "True"
        return None

    generator = Scripted(answer)
    spec = {
        "name": "books",
        "domain": "copyright",
        "instances": books,
        "generator": {"name": "scripted"},
        "questions_per_category": 2,
    }
    card = build(spec, tmp_path / "out", scripted_plugins(generator))
    assert [c.name for c in card.categories] == ["Revision", "Extension", "Meta-Info", "Review", "Recommendation"]
    # facts: (Mara, Tobin), (Old Wick, Sela) for the first book, (Aya, Dren) for the second; Old Wick fails Self-Check
    assert card.self_check.asked == 3 and card.self_check.passed == 2
    assert generator.tasks["fact_queries"] == 2  # one per fact that survived
    extension = card.category_counts["Extension"]
    assert extension["train"] + extension["val"] == 2 * 2  # two rewrite requests per surviving fact
    for name in ("Revision", "Meta-Info", "Review", "Recommendation"):
        assert sum(card.category_counts[name].values()) == 2 * 2
    assert "rewrite the ending between" in card.prompts["fact_queries"]
    unlearn = read_split(tmp_path / "out", "unlearn_train.json") + read_split(tmp_path / "out", "unlearn_val.json")
    assert any("Mara and Tobin" in r["text"] for r in unlearn) and not any("Old Wick" in r["text"] for r in unlearn)
    benchmark = Benchmark(tuple(read_local_domain(tmp_path / "out")))
    benchmark.check_complete("books")
    assert benchmark.instances == ["The Lantern Keepers", "Salt and Ember"]


def test_generators_are_listed_with_the_other_plugins():
    result = CliRunner().invoke(app, ["methods"])
    assert result.exit_code == 0
    assert "Generators" in result.stdout
    table = result.stdout.split("Generators", 1)[1]
    for name in ("template", "hf", "openai"):
        assert name in get_plugins().generators.names() and f"│ {name} " in table


# -- fidelity to section 2.2 and appendix B --------------------------------------------------

PAPER = SHARED_DATA.parent / "reference" / "knowundo-paper.txt"


def _folded(text: str) -> str:
    text = text.replace("’", "'").replace("“", '"').replace("”", '"')
    return " ".join(text.split())


@pytest.mark.parametrize(
    "name", ["privacy_qa", "revision", "extension_pairs", "fact_self_check", "fact_queries", "meta_info"]
)
def test_verbatim_prompts_are_the_papers_word_for_word(name):
    """Appendix B's prompts with [TOPIC], the counts and B.2's attribute list as fields:
    every literal stretch of the template appears in the paper's text."""
    import string

    from knowundo_bench.build.prompts import DEFAULT_PROMPTS

    paper = _folded(PAPER.read_text(encoding="utf-8"))
    literals = [_folded(text) for text, *_ in string.Formatter().parse(DEFAULT_PROMPTS[name])]
    assert sum(len(t) for t in literals) > 100 or name in {"meta_info", "fact_self_check"}
    for literal in literals:
        assert literal in paper, f"{name}: {literal!r} is not the paper's"


def test_default_categories_and_scopes_are_section_2_2s():
    from knowundo_bench.build.spec import COPYRIGHT_CATEGORIES

    scopes = {c.name: c.scope for c in (*PRIVACY_CATEGORIES, *COPYRIGHT_CATEGORIES)}
    assert {n for n, s in scopes.items() if s == "retention"} == {
        "Name", "Genre", "Born", "Awards", "Meta-Info", "Review", "Recommendation"
    }  # fmt: skip
    assert {n for n, s in scopes.items() if s == "unlearn"} == {"Parents", "Email", "Address", "Revision", "Extension"}
    paper = PAPER.read_text(encoding="utf-8")
    assert all(name in paper for name in scopes)
    # section 2.2: "For the Extension, GPT-4 initially generates facts ... Self-Check"
    assert {c.name: c.recipe for c in COPYRIGHT_CATEGORIES}["Extension"] == "facts"


def test_default_val_fraction_is_the_released_domains(privacy_dir):
    from knowundo_bench.build.spec import BuildSpec

    pairs = read_local_domain(privacy_dir)
    released = sum(p.split == "val" for p in pairs) / len(pairs)
    assert abs(BuildSpec.model_fields["val_fraction"].default - released) < 0.01, released


def test_split_per_instance_and_category_and_lone_pairs_pooled():
    from knowundo_bench.build.pipeline import split_pairs
    from knowundo_bench.build.recipes import BuiltPair

    three = [BuiltPair("A B", "Email", "unlearn", f"Q{i} A B?", "a") for i in range(3)]
    lone = [BuiltPair(f"Author {i}", "Name", "retention", f"Who is Author {i}?", "x") for i in range(5)]
    split = split_pairs([*three, *lone], 0.2, seed=0)
    assert [split[p] for p in three].count("val") == 1  # round(0.6) = 1, and never all
    assert [split[p] for p in lone].count("val") == 1  # five lone pairs pooled: round(1.0) = 1
    assert split == split_pairs([*three, *lone], 0.2, seed=0)
    assert any(split_pairs([*three, *lone], 0.2, seed=s) != split for s in range(1, 6))


def test_each_stage_reports_its_progress_and_a_rerun_says_it_resumed(tmp_path):
    """In a log (stderr not a terminal) each stage is one line when it ends."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(shipped_spec(instances=shipped_spec()["instances"][:2])))
    result = CliRunner().invoke(app, ["build", str(spec), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for line in ("generate pairs: 2/2", "self-check: 42/42", "instances: 2/2"):
        assert line in result.stderr, result.stderr
    assert "built 2 instances: unlearn 12 train / 6 val, retention 16 train / 8 val" in result.stderr
    again = CliRunner().invoke(app, ["build", str(spec), "-o", str(tmp_path / "out")])
    assert again.exit_code == 0 and "resumed: 2 of 2 instances were built" in again.stderr
    assert "self-check:" not in again.stderr  # nothing asked again


# -- text in any script, and review findings -------------------------------------------------


def test_text_is_compared_as_whole_words_in_any_script():
    from knowundo_bench.build.parsing import loose, mentions

    assert loose("Zoë  Ångström-Łukasz!") == "zoë ångström łukasz" and loose("Zoé") != loose("Zoë")
    assert mentions("李娜的电子邮件是什么？", "李娜的电子邮件是什么") and not mentions("What is this?", "李娜")
    assert mentions("李娜的邮箱是什么？", "李娜") and mentions("Who is 李娜?", "李娜")
    assert not mentions("She loves literature.", "Li") and mentions("Where does Li Na live?", "Li Na")
    assert not mentions("anything", "!!!")  # nothing to look for is found nowhere


def test_a_domain_in_another_script_builds_with_its_own_categories(tmp_path):
    authors = [
        {"name": "李娜", "email": "lina@example.cn", "city": "成都"},
        {"name": "王伟", "email": "wangwei@example.cn", "city": "杭州"},
    ]
    categories = [
        {"name": "邮箱", "scope": "unlearn", "attributes": ["email"]},
        {"name": "城市", "scope": "retention", "attributes": ["city"]},
    ]

    def answer(request: GenerationRequest) -> str | None:
        if request.task != "privacy_qa":
            return None
        name, email, city = (request.instance[k] for k in ("name", "email", "city"))
        return "\n\n".join(
            [f"Q: {name}的邮箱是什么{i}？\nA: {name}的邮箱是{email}。\ntype: 邮箱" for i in range(3)]
            + [f"Q: {name}住在哪个城市{i}？\nA: {name}住在{city}。\ntype: 城市" for i in range(3)]
        )

    spec = {"instances": authors, "categories": categories, "generator": {"name": "scripted"}, "val_fraction": 0.34}
    card = build(spec, tmp_path / "out", scripted_plugins(Scripted(answer)))
    assert card.counts == {"unlearn": {"train": 4, "val": 2}, "retention": {"train": 4, "val": 2}}
    assert card.duplicates == {"exact": 0, "near": 0} and card.leakage == {"val_in_train_moved": 0}


def test_csv_with_a_byte_order_mark_and_bad_csv(tmp_path):
    (tmp_path / "a.csv").write_bytes("\ufeffname,email\nAda Quill,ada@quill.example\n".encode())
    from knowundo_bench.build.spec import read_instances

    assert read_instances(tmp_path / "a.csv") == ({"name": "Ada Quill", "email": "ada@quill.example"},)
    (tmp_path / "b.csv").write_text('name,email\nAda Quill,"' + "x" * 200_000 + '"\n')  # past csv's field limit
    with pytest.raises(InputError, match=r"b\.csv:\d+: "):
        read_instances(tmp_path / "b.csv")


def test_pairs_copied_from_the_demonstration_are_dropped(tmp_path):
    """With demonstrations, a pair holding the example author's details is not the instance's."""

    def answer(request: GenerationRequest) -> str | None:
        if request.task == "privacy_qa":
            name = request.instance["name"]
            email = request.instance["email"]
            copied = f"Q: What is {name}'s email?\nA: {name}'s is {email} or lena.brook@letters.example.\ntype: Email"
            return TemplateGenerator().answer(request) + "\n\n" + copied
        return None

    generator = Scripted(answer)
    card = build(two_authors_spec(demonstrations=True), tmp_path / "out", scripted_plugins(generator))
    assert card.dropped["check: holds the demonstration's example instance"] == 2
    sent = [p for p in generator.sent if "Give me" in p]
    assert len(sent) == 2  # the generator saw the real prompts (the demonstration rides along)


def test_a_failed_rebuild_removes_the_earlier_domain(tmp_path):
    spec = two_authors_spec()
    build(spec, tmp_path / "out", scripted_plugins(Scripted()))
    assert (tmp_path / "out" / "datacard.json").is_file()
    spec["questions_per_category"] = 2  # every instance is asked again, and answers nothing
    with pytest.raises(InputError, match="left no"):
        build(spec, tmp_path / "out", scripted_plugins(Scripted(lambda request: "")))
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.name != ".build"]


def test_shipped_copyright_spec_builds_all_five_categories(tmp_path):
    spec = REPO / "benchmark_specs" / "build-copyright.yaml"
    result = CliRunner().invoke(app, ["build", str(spec), "-o", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "out" / "datacard.json").read_text())
    books = yaml.safe_load(spec.read_text())["instances"]
    # 3 requests per book for Revision and the B.1.3 categories; Extension: 2 tragic pairs per
    # book (4 characters), Self-Checked, 2 rewrite requests each
    assert {name: sum(c.values()) for name, c in card["category_counts"].items()} == {
        "Revision": 15, "Extension": 20, "Meta-Info": 15, "Review": 15, "Recommendation": 15
    }  # fmt: skip
    assert card["self_check"]["asked"] == 2 * len(books) and card["dropped"] == {}
    benchmark = Benchmark(tuple(read_local_domain(tmp_path / "out")))
    benchmark.check_complete("copyright")
    assert benchmark.instances == [b["name"] for b in books]
    assert all(p.instance in p.question for p in benchmark.pairs)


def test_a_whole_build_moves_a_val_question_a_train_question_contains(tmp_path):
    """The finish step calls the leakage check: whichever of three nested Email questions
    the split sends to val, a train question contains it (or it contains one), so the
    datacard counts one moved and every Email question ends up in train."""
    authors = [{"name": "Ada Quill", "email": "ada@quill.example", "street": "Rua Nova", "city": "Lisbon"}]
    categories = [
        {"name": "Email", "scope": "unlearn", "attributes": ["email"]},
        {"name": "Street", "scope": "unlearn", "attributes": ["street"]},
        {"name": "City", "scope": "retention", "attributes": ["city"]},
    ]
    nested = [
        "What is Ada Quill's email?",
        "Tell me: what is Ada Quill's email?",
        "Tell me: what is Ada Quill's email? Now.",
    ]
    streets = [
        "What street is Ada Quill's house on?",
        "On which road does Ada Quill's mail arrive?",
        "Give Ada Quill's street.",
    ]
    cities = ["Which city does Ada Quill live in?", "Where is Ada Quill's home town?", "Name Ada Quill's city."]

    def answer(request: GenerationRequest) -> str | None:
        if request.task != "privacy_qa":
            return None
        email = [f"Q: {q}\nA: Ada Quill's email is ada@quill.example.\ntype: Email" for q in nested]
        street = [f"Q: {q}\nA: Ada Quill lives on Rua Nova.\ntype: Street" for q in streets]
        city = [f"Q: {q}\nA: Ada Quill lives in Lisbon.\ntype: City" for q in cities]
        return "\n\n".join(email + street + city)

    spec = {"instances": authors, "categories": categories, "generator": {"name": "scripted"}, "val_fraction": 0.34}
    card = build(spec, tmp_path / "out", scripted_plugins(Scripted(answer)))
    assert card.leakage == {"val_in_train_moved": 1}
    assert card.counts["unlearn"] == {"train": 5, "val": 1} and card.counts["retention"] == {"train": 2, "val": 1}
    train = {pair["text"] for pair in read_split(tmp_path / "out", "unlearn_train.json")}
    assert set(nested) <= train

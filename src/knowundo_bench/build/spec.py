"""Build specs (``knowundo-bench build BUILD.yaml``): pydantic, one-line errors.

A build spec declares what the construction pipeline of section 2.2 needs: the
instances (inline, or a CSV/JSONL file of their attributes), the categories of
knowledge about each and their scope, how many questions per category, the val
fraction, the generator (``{name: NAME, ...its fields}``), whether to Self-Check, and
any prompt to replace. Defaults are the paper's categories for the chosen domain.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from knowundo_bench.build.generation import Category, Generator, GeneratorContext
from knowundo_bench.build.prompts import DEFAULT_PROMPTS, PLACEHOLDERS, placeholders
from knowundo_bench.core.messages import format_validation_error
from knowundo_bench.core.errors import InputError
from knowundo_bench.config.paths import anchor_paths
from knowundo_bench.plugin.manager import Plugins
from knowundo_bench.plugin.registry import GeneratorInfo
from knowundo_bench.config.params import Params
from knowundo_bench.config.reading import check_values, field_hint, read_yaml_file
from knowundo_bench.config.spec import safe_name
from knowundo_bench.core.untrusted import parse_json, read_regular_file

Domain = Literal["privacy", "copyright"]
_ATTRIBUTE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Section 2.2's scopes: a public figure's Name, Genre, Born and Awards are kept (CCPA's
# right to access), the Parents, Email and Address are private (GDPR's right to erasure).
PRIVACY_CATEGORIES: tuple[Category, ...] = (
    Category(name="Name", scope="retention", attributes=("name",)),
    Category(name="Genre", scope="retention", attributes=("genre",)),
    Category(name="Born", scope="retention", attributes=("born",)),
    Category(name="Awards", scope="retention", attributes=("awards",)),
    Category(
        name="Parents",
        scope="unlearn",
        attributes=("father", "mother"),
        display="father is {father}, the mother is {mother}",
    ),
    Category(name="Email", scope="unlearn", attributes=("email",)),
    Category(name="Address", scope="unlearn", attributes=("address",)),
)

# Rewrites and continuations of a copyrighted book are unlearned; facts about it, reviews
# and recommendations are kept (section 2.2). Extension starts from Self-Checked facts (B.1.2).
COPYRIGHT_CATEGORIES: tuple[Category, ...] = (
    Category(name="Revision", scope="unlearn", recipe="queries", prompt="revision"),
    Category(name="Extension", scope="unlearn", recipe="facts", prompt="extension_pairs"),
    Category(name="Meta-Info", scope="retention", recipe="queries", prompt="meta_info"),
    Category(name="Review", scope="retention", recipe="queries", prompt="review"),
    Category(name="Recommendation", scope="retention", recipe="queries", prompt="recommendation"),
)

DEFAULT_CATEGORIES: dict[str, tuple[Category, ...]] = {
    "privacy": PRIVACY_CATEGORIES,
    "copyright": COPYRIGHT_CATEGORIES,
}

# The prompts a pipeline stage uses whatever the categories (name -> kind of placeholders).
STAGE_PROMPTS: dict[str, str] = {
    "privacy_qa": "privacy_qa",
    "pair_self_check": "pair_self_check",
    "fact_self_check": "fact_self_check",
    "fact_queries": "fact_queries",
    "answer": "answer",
}


class GeneratorSpec(BaseModel):
    """``generator``: its plugin's own fields sit beside ``name``."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    name: str = "template"


Attributes = dict[str, str]


class BuildSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field("built", description="names the benchmark in the datacard")
    domain: Domain = Field("privacy", description="the paper's categories and prompts to start from")
    seed: int = Field(0, description="chooses the val pairs; passed to generators that sample")
    instances: list[dict[str, str | int | float]] | Path = Field(
        description="attribute mappings, each with a `name`; or a CSV/JSONL file of them"
    )
    categories: list[Category] | None = Field(None, description="default: the paper's for `domain`")
    questions_per_category: int = Field(3, ge=1, le=100)
    val_fraction: float = Field(
        0.2, gt=0, lt=1, description="share of each instance's pairs per category in val (released data: 20.6%)"
    )
    generator: GeneratorSpec = Field(default_factory=GeneratorSpec)
    self_check: bool = Field(True, description="judge each generated pair or fact; keep only `True` (B.1.2)")
    demonstrations: bool = Field(
        False, description="send each prompt with a worked example for a made-up instance (section 2.2.2)"
    )
    min_pairs_per_scope: int = Field(1, ge=1, description="an instance with fewer pairs in a scope is left out")
    prompts: dict[str, str] = Field(default_factory=dict, description="replace prompts by name")

    @field_validator("name")
    @classmethod
    def _name_is_safe(cls, value: str) -> str:
        return safe_name(value)

    @model_validator(mode="after")
    def _categories_make_sense(self) -> BuildSpec:
        categories = self.categories if self.categories is not None else list(DEFAULT_CATEGORIES[self.domain])
        seen: set[str] = set()
        for index, category in enumerate(categories):
            where = f"categories.{index}"
            if category.name.lower() in seen:
                raise ValueError(f"{where}.name: {category.name!r} appears twice")
            seen.add(category.name.lower())
            if category.recipe != "joint" and category.prompt is None:
                raise ValueError(
                    f"{where}.prompt: a `{category.recipe}` category names the prompt that lists its items"
                )
            if category.recipe == "joint" and category.prompt is not None:
                raise ValueError(f"{where}.prompt: joint categories share the privacy_qa prompt (B.2)")
            if category.recipe == "joint" and not category.attributes:
                raise ValueError(f"{where}.attributes: a joint category is about at least one instance attribute")
            if category.prompt in STAGE_PROMPTS:
                raise ValueError(f"{where}.prompt: {category.prompt!r} is a stage's prompt; name the category's own")
            if category.display is not None:
                try:
                    fields = placeholders(category.display)
                except ValueError as error:
                    raise ValueError(f"{where}.display: {error}") from None
                unknown = [f for f in fields if f not in category.attributes]
                if unknown:
                    attributes = ", ".join(category.attributes)
                    raise ValueError(f"{where}.display: {{{unknown[0]}}} is not one of its attributes ({attributes})")
        for scope in ("unlearn", "retention"):
            if not any(c.scope == scope for c in categories):
                raise ValueError(f"categories: no category in the {scope} scope")
        return self

    def resolved_categories(self) -> tuple[Category, ...]:
        return tuple(self.categories) if self.categories is not None else DEFAULT_CATEGORIES[self.domain]


@dataclass(frozen=True)
class ResolvedBuild:
    """A validated build spec with what it refers to read and checked."""

    spec: BuildSpec
    instances: tuple[Attributes, ...]
    categories: tuple[Category, ...]
    prompts: dict[str, str]  # every prompt the build uses, by name
    generator: GeneratorInfo
    generator_params: Params
    source: str
    demonstrator: Generator | None = None  # answers the demonstrations (the template generator)

    def count(self, category: Category) -> int:
        return category.questions or self.spec.questions_per_category


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _check_instances(rows: list[dict[str, Any]], where: str) -> tuple[Attributes, ...]:
    """Attribute mappings of text, each with a distinct non-empty ``name``; ``where`` names
    the list (``instances``, or the file)."""
    if not rows:
        raise InputError(f"{where}: no instances")
    instances: list[Attributes] = []
    names: set[str] = set()
    for index, row in enumerate(rows):
        attributes: Attributes = {}
        for key, value in row.items():
            if not isinstance(key, str) or not _ATTRIBUTE.match(key):
                raise InputError(f"{where}.{index}: attribute {key!r} is not a name (letters, digits, _)")
            text = "" if value is None else _as_text(value).strip()
            if text:
                attributes[key] = text
        name = attributes.get("name")
        if not name:
            raise InputError(f"{where}.{index}.name: missing (every instance has a name: the author, the book)")
        if name in names:
            raise InputError(f"{where}.{index}.name: {name!r} appears twice")
        names.add(name)
        instances.append(attributes)
    return tuple(instances)


def read_instances(path: Path) -> tuple[Attributes, ...]:
    """Instances from a CSV file (a header row of attribute names) or JSON Lines (one
    mapping per line); errors name the file and line."""
    try:
        text = read_regular_file(path).decode("utf-8-sig")  # a spreadsheet's byte-order mark is not a column name
    except OSError as error:
        raise InputError(f"cannot read file ({error.strerror})", source=str(path)) from None
    except UnicodeDecodeError as error:
        raise InputError(f"not UTF-8 text (byte {error.start})", source=str(path)) from None
    except ValueError as error:
        raise InputError(f"cannot read file ({error})", source=str(path)) from None
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = parse_json(line)
            except ValueError as error:  # malformed, a number of over 4,300 digits, nested too deeply
                reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error).split(":")[0]
                raise InputError(f"invalid JSON ({reason})", source=f"{path}:{number}") from None
            if not isinstance(row, dict):
                raise InputError("expected a mapping of attributes", source=f"{path}:{number}")
            rows.append(row)
    elif path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        try:
            for row in reader:
                if None in row:
                    raise InputError("more cells than header columns", source=f"{path}:{reader.line_num}")
                rows.append(dict(row))
        except csv.Error as error:
            raise InputError(f"not CSV ({error})", source=f"{path}:{reader.line_num}") from None
    else:
        raise InputError("instances: a file of instances ends in .csv or .jsonl", source=str(path))
    return _check_instances(rows, str(path))


def _check_prompts(spec: BuildSpec, categories: tuple[Category, ...], attributes: set[str]) -> dict[str, str]:
    """Every prompt the build uses (defaults with the spec's replacements), each checked
    for placeholders it cannot fill."""
    kinds = {
        name: kind
        for name, kind in STAGE_PROMPTS.items()
        if name == "answer"
        or (name == "privacy_qa" and any(c.recipe == "joint" for c in categories))
        or (name == "pair_self_check" and any(c.attributes for c in categories))
        or (name in {"fact_self_check", "fact_queries"} and any(c.recipe == "facts" for c in categories))
    }
    if not any(c.recipe != "joint" for c in categories):
        kinds.pop("answer")
    shared: dict[str, set[str]] = {}
    for category in categories:
        if category.prompt is not None:
            shared.setdefault(category.prompt, set()).add(category.recipe)
    for name, recipes in shared.items():
        kinds[name] = sorted(recipes)[0]
    for name in spec.prompts:
        if name not in kinds:
            known = ", ".join(sorted(kinds))
            raise InputError(f"prompts.{name}: no category or stage of this build uses it (used: {known})")
    prompts = {}
    for name, kind in kinds.items():
        template = spec.prompts.get(name, DEFAULT_PROMPTS.get(name))
        if template is None:
            raise InputError(f"prompts.{name}: missing (a category names it as its prompt)")
        try:
            used = placeholders(template)
        except ValueError as error:
            raise InputError(f"prompts.{name}: {error}") from None
        allowed = frozenset.intersection(*(PLACEHOLDERS[k] for k in shared.get(name, {kind}))) | attributes
        for field in used:
            if field not in allowed:
                raise InputError(
                    f"prompts.{name}: unknown placeholder {{{field}}} "
                    f"(available: {', '.join(sorted(allowed))}; attributes every instance has count)"
                )
        prompts[name] = template
    return prompts


def _check_columns(spec: BuildSpec, categories: tuple[Category, ...], instances: tuple[Attributes, ...]) -> None:
    """An Unlearn Scope category about an attribute no instance has is the category's
    mistake (a misspelt column, or the domain's defaults for other data), not the first
    instance's: say so with the columns the instances do have."""
    columns = sorted(set().union(*(set(instance) for instance in instances)))
    for index, category in enumerate(categories):
        absent = [a for a in category.attributes if not any(a in instance for instance in instances)]
        if category.scope != "unlearn" or not absent:
            continue
        where = (
            f"categories.{index}.attributes"
            if spec.categories is not None
            else f"categories: the {spec.domain} domain's category {category.name} (give `categories` for your data)"
        )
        raise InputError(
            f"{where}: no instance has {absent[0]!r} (category {category.name}); "
            f"the instances' columns: {', '.join(columns)}"
        )


def parse_build_spec(raw: Any, plugins: Plugins, source: str = "build spec", base: Path | None = None) -> ResolvedBuild:
    """Validate a parsed build spec; relative paths are read from ``base`` (the spec's folder)."""
    if not isinstance(raw, dict):
        raise InputError("a build spec must be a YAML mapping", source=source)
    check_values(raw, source)
    base = base or Path.cwd()
    if isinstance(raw.get("instances"), str):  # a file of instances: read from the spec's folder
        raw = {**raw, "instances": str(base / Path(raw["instances"]).expanduser())}
    try:
        spec = BuildSpec.model_validate(raw)
    except ValidationError as error:
        raise InputError(format_validation_error(error) + field_hint(error, BuildSpec, set()), source=source) from None
    try:
        if isinstance(spec.instances, Path):
            instances = read_instances(spec.instances)
        else:
            instances = _check_instances(list(spec.instances), "instances")
        categories = spec.resolved_categories()
        _check_columns(spec, categories, instances)
        for index, instance in enumerate(instances):
            for category in categories:
                missing = [a for a in category.attributes if a not in instance]
                if category.scope == "unlearn" and missing:
                    raise InputError(
                        f"instances.{index}.{missing[0]}: missing for {instance['name']!r} (category "
                        f"{category.name} is in the Unlearn Scope: its answers must contain the value)"
                    )
        common = set.intersection(*(set(i) for i in instances))
        prompts = _check_prompts(spec, categories, common)
        generator_raw = spec.generator.model_dump()
        generator_raw = anchor_paths(
            plugins.generators.get(spec.generator.name, "generator.name").params, generator_raw, base
        )
        generator = plugins.generators.resolve_entry(generator_raw, "generator")
        info, params = generator.info, generator.params
    except InputError as error:
        if error.source is not None:  # it names its file already
            raise
        raise InputError(str(error), source=source) from None
    demonstrator = None
    if spec.demonstrations:
        template = plugins.generators.get("template", "demonstrations")
        demonstrator = template.create(template.params(), GeneratorContext(spec.seed, Path.cwd()))
    return ResolvedBuild(spec, instances, categories, prompts, info, params, source, demonstrator)


def load_build_spec(path: Path, plugins: Plugins) -> ResolvedBuild:
    """Read and validate a YAML build spec; every problem is one line naming the field."""
    raw = read_yaml_file(path, "build spec")
    return parse_build_spec(raw, plugins, str(path), base=path.absolute().parent)

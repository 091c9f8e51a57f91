"""Guards against wrong versions of the run's identity (run/identity.py) that the rest
of the suite lets pass: seeds, the spec hash, plugin origins, reuse keys and the stamp
each record gets. Each test names the mutations it catches (issue 30)."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

import knowundo_bench.run.identity as identity_module
from helpers import TINY_SPEC
from knowundo_bench.plugin.manager import get_plugins
from knowundo_bench.run.plan import Unit, plan_units
from knowundo_bench.run.resolution import parse_spec

# Seeds
# --------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------


def test_derived_seeds_are_pinned_numbers_below_2_to_the_31():
    """A method's seed must not change between releases (results are reproduced from the
    spec alone): sha256("<run seed>:<label>")'s first 4 bytes, big-endian, top bit dropped.
    sha256("0:ga") starts c88b9f1f, whose top bit is set. Mutations: ``|`` for ``&``, the
    mask's constant, 5 bytes for 4."""
    from knowundo_bench.run.identity import derived_seed

    assert derived_seed(0, "ga") == 0x488B9F1F == 1217109791
    assert derived_seed(1, "ga") == 0x190FCC79
    assert derived_seed(3, "memflex") == 0x3F84E75B


def test_method_seed_uses_the_run_seed_when_given_and_the_seed_label_first():
    """Mutations: the run seed or the spec's seed ignored, the choice between them turned round."""
    from knowundo_bench.run.identity import derived_seed, method_seed

    resolved = SimpleNamespace(spec=SimpleNamespace(seed=3))
    plain = SimpleNamespace(seed_label=None, ablation_of=None, label="ga")
    assert method_seed(resolved, plain) == derived_seed(3, "ga")
    assert method_seed(resolved, plain, run_seed=5) == derived_seed(5, "ga") != derived_seed(3, "ga")
    control = SimpleNamespace(seed_label=None, ablation_of="memflex", label="memflex_random")
    assert method_seed(resolved, control) == derived_seed(3, "memflex")
    labelled = SimpleNamespace(seed_label="memflex", ablation_of="other", label="memflex_guarded")
    assert method_seed(resolved, labelled, run_seed=7) == derived_seed(7, "memflex")


def tiny_resolved(**changes):
    """TINY_SPEC with GA, resolved by the built-in plugins; ``changes`` replace its fields."""
    return parse_spec({**TINY_SPEC, "methods": [{"name": "ga", "lr": 1e-3, "epochs": 1}], **changes}, get_plugins())


def provenance_of(**changes) -> tuple[identity_module.Provenance, list[Unit]]:
    """:func:`tiny_resolved`'s provenance (data hash "data") and its planned units."""
    resolved = tiny_resolved(**changes)
    return identity_module.Provenance.of(resolved, get_plugins(), "data"), plan_units(resolved)


def test_spec_hash_leaves_out_only_where_and_how_a_run_executes(tmp_path):
    """Mutations: any excluded field dropped from the exclusion, the exclusion or the dump
    emptied, keys unsorted (a method's own fields keep the order they were written in),
    the dump in Python mode (a path is not JSON), the hash's length."""
    import re

    from knowundo_bench.run.identity import spec_hash

    base = spec_hash(tiny_resolved())
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    elsewhere = {
        "output_dir": str(tmp_path / "out"),
        "cache_dir": str(tmp_path / "cache"),
        "threads": 1,
        "execution": {"executor": "ray"},
        "logging": ["trackio"],
    }
    for field, value in elsewhere.items():
        assert spec_hash(tiny_resolved(**{field: value})) == base, field
    assert spec_hash(tiny_resolved(seed=1)) != base
    reordered = tiny_resolved(methods=[{"epochs": 1, "lr": 1e-3, "name": "ga"}])
    assert spec_hash(reordered) == base
    with_path = tiny_resolved(
        eval={"batch_size": 32, "max_new_tokens": 8, "general": {}, "general_data_dir": str(tmp_path)}
    )
    assert re.fullmatch(r"[0-9a-f]{16}", spec_hash(with_path)) and spec_hash(with_path) != base


def test_model_label_names_the_first_of_name_file_and_path_that_is_set():
    from pydantic import BaseModel

    from knowundo_bench.run.identity import model_label

    class SourceParams(BaseModel):
        name_or_path: str | None = None
        file: str | None = None
        path: str | None = None

    def resolved(source, **params):
        return SimpleNamespace(
            model_params=SourceParams(**params), spec=SimpleNamespace(model=SimpleNamespace(source=source))
        )

    assert model_label(resolved("tiny")) == "tiny"
    assert model_label(resolved("hf", name_or_path="org/model", file="x.gguf")) == "hf:org/model"
    assert model_label(resolved("gguf", name_or_path="", file="a.gguf", path="/p")) == "gguf:a.gguf"
    assert model_label(resolved("local", path="/models/m")) == "local:/models/m"


def test_provenance_names_built_in_plugins_by_the_harness_version():
    """Mutations: the origin not asked for the plugin, "built-in" not recognised, the method's
    or the localizer's plugin left out of the record's identity."""
    from knowundo_bench import __version__

    origins = {"mine": "built-in", "theirs": "knowundo-mismatch 0.1.0"}
    stub = identity_module.Provenance(None, SimpleNamespace(origin=origins.__getitem__), "data", "spec", versions={})
    assert stub.origin("mine") == f"knowundo-bench {__version__}"
    assert stub.origin("theirs") == "knowundo-mismatch 0.1.0"
    provenance, (vanilla, ga) = provenance_of()
    assert provenance.identity(ga).method_plugin == f"knowundo-bench {__version__}"
    assert provenance.identity(vanilla).method_plugin is None
    assert provenance.identity(ga).localizer_plugin is None
    localised, (_, memflex) = provenance_of(methods=["memflex"])
    assert localised.identity(memflex).localizer_plugin == f"knowundo-bench {__version__}"


def test_a_record_names_the_checkout_commit_it_ran_from():
    """A run from a git checkout records its commit ("+dirty" with local changes): under
    mutmut the code runs from mutants/, no checkout, so this test is skipped there and the
    mutant that drops the commit is accepted in CONTRIBUTING.md."""
    import subprocess
    from pathlib import Path

    root = Path(identity_module.__file__).resolve().parents[3]
    asked = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    if not (root / ".git").exists() or asked.returncode != 0:
        pytest.skip("not a git checkout that git reads here")
    provenance, (_, ga) = provenance_of()
    assert (provenance.identity(ga).git_commit or "").removesuffix("+dirty") == asked.stdout.strip()


UNIT_KEYS = {  # with the harness's version set to "0.0.pin"
    "ga": "25131e28494371957f208ddc",
    "memflex-scope_classifier": "f2e5e22e23aefcb98bfd628a",
    "ga_kl_ood": "64c6e095b5bf2d2e2bc7d4e0",
    "vanilla": "795bae81321770171084a4a7",
}


@pytest.mark.parametrize("methods", [["ga"], [{"name": "memflex", "guard": "scope_classifier"}], ["ga_kl_ood"]])
def test_unit_keys_are_pinned(methods, monkeypatch):
    """A unit's key decides which cached record a rerun reuses, so a change to what goes
    into it (a field renamed, dropped or added, another encoding) makes every earlier
    record stale: update these pins only knowingly, and say so in CHANGELOG.md. The three
    cover a plain method, a localised and guarded one, and one with out-of-distribution
    retain data; the key's inputs, one at a time, are the next test's."""
    monkeypatch.setattr(identity_module, "__version__", "0.0.pin")
    provenance, (vanilla, unit) = provenance_of(methods=methods)
    assert provenance.unit_key("vanilla-key", unit) == UNIT_KEYS[unit.label]
    assert provenance.unit_key("vanilla-key", vanilla) == UNIT_KEYS["vanilla"]


def test_a_unit_key_changes_with_each_input_and_only_with_them(monkeypatch):
    import dataclasses

    def key(vanilla_key="vanilla-key", run_seed=None, **changes):
        provenance, (_, unit) = provenance_of(**changes)
        if run_seed is not None:
            unit = dataclasses.replace(unit, run_seed=run_seed)
        return provenance.unit_key(vanilla_key, unit)

    base = key()
    assert key(vanilla_key="other") != base
    assert key(eval={**TINY_SPEC["eval"], "max_new_tokens": 9}) != base
    assert key(methods=[{"name": "ga", "lr": 2e-3, "epochs": 1}]) != base
    assert key(methods=[{"name": "ga", "lr": 1e-3, "epochs": 1, "label": "ga_two"}]) != base
    assert key(run_seed=7) != base
    assert key(efficiency={"peak_tflops": 100}) != base
    assert key(ood_retain={"max_examples": 7}) == base  # GA has no retain data
    assert key(methods=["ga_kl_ood"]) != key(methods=["ga_kl_ood"], ood_retain={"max_examples": 7})
    assert key(output_dir="elsewhere", threads=1) == base
    monkeypatch.setattr(identity_module, "__version__", "0.0.other")
    assert key() != base


def test_attack_keys_are_pinned_and_change_with_the_attack_and_membership_inference(monkeypatch):
    """An attack's key decides which cached attack section a rerun reuses (pinned as the
    unit keys are, for the same reason); it names the unit, the attack, its parameters
    and plugin, membership inference's settings (its batch size aside) and the format."""
    monkeypatch.setattr(identity_module, "__version__", "0.0.pin")

    def keys(unit_key="unit-key", relearn_steps=2, **eval_changes):
        attacks = ["quantize", {"name": "relearn", "steps": relearn_steps}]
        provenance, _ = provenance_of(eval={**TINY_SPEC["eval"], "attacks": attacks, **eval_changes})
        return provenance.attack_keys(unit_key)

    base = keys()
    assert base == {"quantize": "44369a9902f36bec6cf50a87", "relearn": "25917ce88c842844a2f1faeb"}
    assert keys("other").keys() == base.keys() and not set(keys("other").values()) & set(base.values())
    changed = keys(relearn_steps=3)
    assert changed["quantize"] == base["quantize"] and changed["relearn"] != base["relearn"]
    assert keys(mia={"batch_size": 3}) == base
    assert not set(keys(mia={"k": 0.5}).values()) & set(base.values())
    monkeypatch.setattr(identity_module, "ATTACK_FORMAT", 3)
    assert not set(keys().values()) & set(base.values())


def test_stamp_fills_each_field_of_a_record_from_its_unit_and_the_run():
    """Mutations: a field's key misspelt (records keep unknown fields, so nothing else
    notices), the vanilla row's label and a method's swapped."""
    from knowundo_bench.records.schema import ResultRecord

    provenance, units = provenance_of(seed=3)
    for unit in units:
        stamped = provenance.stamp(unit, ResultRecord(method="placeholder"), status="failed")
        assert not stamped.model_extra, stamped.model_extra
        assert stamped.run == TINY_SPEC["name"]
        assert stamped.method == (unit.row if unit.method is None else unit.method.label)
        assert (stamped.unit, stamped.order, stamped.seed) == (unit.label, unit.order, unit.run_seed)
        assert stamped.identity == provenance.identity(unit)
        assert stamped.spec == provenance.resolved.echo() and stamped.spec is not None
        assert stamped.versions == provenance.versions and stamped.versions
        finished = datetime.fromisoformat(stamped.finished_at or "")
        assert finished.utcoffset() == timedelta(0) and finished.microsecond == 0
        assert stamped.status == "failed" and unit.run_seed is not None
    assert [provenance.stamp(unit, ResultRecord(method="x")).method for unit in units] == ["vanilla", "ga"]

"""Tests of the ``hf`` model source (plugins/models/hf.py): the real loading code,
run offline on a tiny LLaMA and tokenizer saved to a local folder."""

from __future__ import annotations

import random
import shutil
import time
import warnings
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from helpers import closed_port, tiny_llama
from knowundo_bench.core.errors import InputError
from knowundo_bench.modeling.bundles import LoraSpec, ModelBundle
from knowundo_bench.plugins.models import hf as hf_model
from knowundo_bench.plugins.models.hf import HFModelFactory, HFModelParams
from knowundo_bench.plugins.models.tiny import train_tokenizer

CORPUS = [
    "Who are Isabella Marquez's parents?",
    "Isabella Marquez's father is a renowned climate scientist, and her mother is a flamenco dancer.",
    "What is Hiro Tanaka's email address? Hiro Tanaka can be contacted at hiro.tanaka@example.jp.",
    "Where was Evelyn Smith born? Evelyn Smith was born in Bristol, England.",
]
LORA = LoraSpec(r=2, alpha=4)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LlamaForCausalLM and its tokenizer saved with save_pretrained."""
    directory = tmp_path_factory.mktemp("tiny_llama")
    tokenizer = train_tokenizer(CORPUS, 300)
    model = tiny_llama(len(tokenizer), tokenizer=tokenizer)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def _saved_weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _lora_b(model: torch.nn.Module) -> tuple[str, torch.nn.Parameter]:
    return next((n, p) for n, p in model.named_parameters() if "lora_B" in n and "q_proj" in n)


def _modify_lora_b(model: torch.nn.Module) -> tuple[str, torch.Tensor]:
    name, param = _lora_b(model)
    with torch.no_grad():
        param.copy_(torch.arange(param.numel(), dtype=param.dtype).reshape(param.shape) / 7 + 0.5)
    return name, param.detach().clone()


def test_params_defaults() -> None:
    params = HFModelParams(name_or_path="some/model")
    assert params.trust_remote_code is False
    assert params.lora is None
    assert params.dtype == "auto"
    assert params.revision is None
    with pytest.raises(ValidationError):
        HFModelParams(name_or_path="")
    with pytest.raises(ValidationError):
        HFModelParams(name_or_path="x", unknown=1)


def test_registration() -> None:
    [info] = hf_model.register_model_sources()
    assert info.name == "hf"
    assert info.params is HFModelParams
    assert info.factory is HFModelFactory


def test_create_loads_saved_model(base_dir: Path) -> None:
    bundle = HFModelFactory(HFModelParams(name_or_path=str(base_dir))).create([], 0)
    assert isinstance(bundle, ModelBundle)
    assert type(bundle.model).__name__ == "LlamaForCausalLM"
    saved = _saved_weights(base_dir)
    state = bundle.model.state_dict()
    assert saved.keys() <= state.keys()
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    # The tokenizer is the one saved with the model.
    ids = bundle.tokenizer(CORPUS[0])["input_ids"]
    assert bundle.tokenizer.decode(ids, skip_special_tokens=True) == CORPUS[0]
    assert len(bundle.tokenizer) == bundle.model.config.vocab_size
    assert bundle.tokenizer.pad_token == "<pad>"


def test_create_ignores_corpus_and_seed(base_dir: Path) -> None:
    factory = HFModelFactory(HFModelParams(name_or_path=str(base_dir)))
    a = factory.create(["other text"], 1).model.state_dict()
    b = factory.create([], 2).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_trust_remote_code_off_by_default(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    calls: list[dict] = []

    def spy(cls):
        original = cls.from_pretrained

        def from_pretrained(*args, **kwargs):
            calls.append(kwargs)
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", staticmethod(from_pretrained))

    spy(AutoModelForCausalLM)
    spy(AutoTokenizer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        HFModelFactory(HFModelParams(name_or_path=str(base_dir))).create([], 0)
    assert not [w for w in caught if "trust_remote_code" in str(w.message)]
    assert len(calls) == 2
    assert all(call["trust_remote_code"] is False for call in calls)
    assert calls[0]["use_safetensors"] is True


def test_trust_remote_code_on_warns(base_dir: Path) -> None:
    params = HFModelParams(name_or_path=str(base_dir), trust_remote_code=True)
    with pytest.warns(UserWarning, match="trust_remote_code is on"):
        HFModelFactory(params).create([], 0)


def test_full_model_save_and_load_round_trip(base_dir: Path, tmp_path: Path) -> None:
    factory = HFModelFactory(HFModelParams(name_or_path=str(base_dir)))
    bundle = factory.create([], 0)
    with torch.no_grad():
        bundle.model.model.norm.weight.add_(0.25)
    out = tmp_path / "vanilla"
    factory.save(bundle, out)
    files = _files(out)
    assert "model.safetensors" in files
    assert not [f for f in files if f.endswith(PICKLE_SUFFIXES)], files
    loaded = factory.load(out)
    before, after = bundle.model.state_dict(), loaded.model.state_dict()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name


def test_lora_only_adapter_is_trainable(base_dir: Path) -> None:
    bundle = HFModelFactory(HFModelParams(name_or_path=str(base_dir), lora=LORA)).create([], 0)
    trainable = _trainable(bundle.model)
    assert trainable
    assert all("lora_" in name for name in trainable), sorted(trainable)
    # All linear projections of the layer carry an adapter (target_modules="all-linear").
    projections = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert {p for p in projections if any(f".{p}.lora_A" in n for n in trainable)} == projections
    frozen = [n for n, p in bundle.model.named_parameters() if not p.requires_grad]
    assert any("embed_tokens" in n for n in frozen)
    assert not any("lora_" in n for n in frozen)
    assert bundle.model.peft_config["default"].r == 2
    assert bundle.model.peft_config["default"].lora_alpha == 4


def test_lora_save_writes_adapter_only_and_load_restores_it(base_dir: Path, tmp_path: Path) -> None:
    factory = HFModelFactory(HFModelParams(name_or_path=str(base_dir), lora=LORA))
    bundle = factory.create([], 0)
    name, modified = _modify_lora_b(bundle.model)
    assert modified.abs().sum() > 0  # lora_B starts at zero; make sure it really changed

    out = tmp_path / "vanilla"
    factory.save(bundle, out)
    files = _files(out)
    assert "adapter_model.safetensors" in files
    assert "adapter_config.json" in files
    assert "model.safetensors" not in files
    assert not [f for f in files if f.startswith("model") and f.endswith(".safetensors")], files
    assert not [f for f in files if f.endswith(PICKLE_SUFFIXES)], files
    # The adapter file holds LoRA weights only, not the base model.
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert adapter and all("lora_" in key for key in adapter), sorted(adapter)

    loaded = factory.load(out)
    params = dict(loaded.model.named_parameters())
    assert name in params
    assert torch.equal(params[name].detach(), modified)
    assert params[name].requires_grad
    trainable = _trainable(loaded.model)
    assert set(trainable) == set(_trainable(bundle.model))
    # The base weights come from the base model, unchanged.
    saved = _saved_weights(base_dir)
    state = loaded.model.get_base_model().state_dict()
    assert torch.equal(state["model.embed_tokens.weight"], saved["model.embed_tokens.weight"])


def test_lora_loaded_adapter_still_trains(base_dir: Path, tmp_path: Path) -> None:
    factory = HFModelFactory(HFModelParams(name_or_path=str(base_dir), lora=LORA))
    bundle = factory.create([], 0)
    _modify_lora_b(bundle.model)
    factory.save(bundle, tmp_path / "vanilla")
    loaded = factory.load(tmp_path / "vanilla")
    batch = loaded.tokenizer(CORPUS[1], return_tensors="pt")
    loss = loaded.model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    grads = {n: p.grad for n, p in loaded.model.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n for n in grads)


def _hub_cache_with(base_dir: Path, cache: Path, repo: str) -> None:
    """``base_dir`` laid out as the hub cache holds a downloaded repo."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(base_dir, folder / "snapshots" / ("0" * 40))
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text("0" * 40)


def test_a_cached_hub_model_loads_from_the_cache_when_the_hub_is_unreachable(base_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    _hub_cache_with(base_dir, tmp_path / "hub", "example/tiny")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # as HF_HUB_CACHE at start-up
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    factory = HFModelFactory(HFModelParams(name_or_path="example/tiny"))
    assert factory.hub_options == {"cache_dir": str(tmp_path / "hub"), "local_files_only": True}
    bundle = factory.create([], seed=0)
    expected = _saved_weights(base_dir)
    assert all(
        torch.equal(param, expected[name]) for name, param in bundle.model.state_dict().items() if name in expected
    )


def test_a_hub_model_neither_cached_nor_reachable_is_one_line_at_once(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    started = time.perf_counter()
    with pytest.raises(InputError) as raised:
        HFModelFactory(HFModelParams(name_or_path="example/not-downloaded"))
    assert time.perf_counter() - started < 10  # a refused connection, not a minute of retries
    message = str(raised.value)
    assert "model.name_or_path: 'example/not-downloaded' is neither in the Hugging Face cache" in message
    assert "connection refused" in message.lower() and "hf download example/not-downloaded" in message
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # behind a proxy: no direct probe
    monkeypatch.setenv("HF_ENDPOINT", "https://huggingface.example")
    assert HFModelFactory(HFModelParams(name_or_path="example/not-downloaded")).hub_options == {
        "cache_dir": str(tmp_path / "hub"),
        "local_files_only": False,
    }


def test_relative_model_folders_read_from_the_spec_folder_and_hub_ids_stay(base_dir, tmp_path):
    from knowundo_bench.config.paths import reads_as_path

    assert not reads_as_path("meta-llama/Llama-2-7b-chat-hf") and not reads_as_path("gpt2")
    assert reads_as_path("./model") and reads_as_path("models/a/b") and reads_as_path("~/m")
    assert reads_as_path("org--x/name") and reads_as_path("org/na..me")  # no hub id has "--" or ".."
    (tmp_path / "models").mkdir()
    shutil.copytree(base_dir, tmp_path / "models" / "tiny")
    assert reads_as_path("models/tiny", tmp_path)  # exists beside the spec: a folder, not a hub id
    with pytest.raises(ValidationError, match="does not exist"):
        HFModelParams(name_or_path="./no/such/folder")


@pytest.mark.parametrize(("lora_dtype", "expected"), [("base", torch.bfloat16), ("float32", torch.float32)])
def test_lora_dtype_sets_the_adapter_and_optimizer_state_precision(
    base_dir, tmp_path, monkeypatch, lora_dtype, expected
):
    """``lora.dtype: base`` keeps the adapters (and so AdamW's moments) in the base
    model's bf16, as the official run's peft 0.10 does; float32 is peft 0.21's autocast.
    Fails if the choice is not passed to peft on create or on load."""
    from knowundo_bench.benchmark.encoding import PromptEncoder
    from knowundo_bench.benchmark.pairs import QAPair
    from knowundo_bench.config.params import TrainingParams
    from knowundo_bench.train.loop import make_epoch_batches, train
    from knowundo_bench.train.losses import WeightedNLL

    lora = LoraSpec(r=2, alpha=4, dtype=lora_dtype)
    factory = HFModelFactory(HFModelParams(name_or_path=str(base_dir), dtype="bfloat16", lora=lora))
    bundle = factory.create([], 0)
    factory.save(bundle, tmp_path / "vanilla")
    for model in (bundle.model, factory.load(tmp_path / "vanilla").model):
        adapters = {n: p.dtype for n, p in model.named_parameters() if "lora_" in n}
        assert adapters and set(adapters.values()) == {expected}, adapters
        assert {p.dtype for n, p in model.named_parameters() if "lora_" not in n} == {torch.bfloat16}
    optimizers: list[torch.optim.Optimizer] = []
    adamw = torch.optim.AdamW

    def recording(*args, **kwargs):
        optimizers.append(adamw(*args, **kwargs))
        return optimizers[-1]

    monkeypatch.setattr(torch.optim, "AdamW", recording)
    encoder = PromptEncoder(bundle.tokenizer, 64, prompt_format="raw")
    pair = QAPair(question="Who is Hiro Tanaka?", answer="A writer.", scope="retention", split="train")
    examples = encoder.encode_all([pair])
    params = TrainingParams(epochs=1, lr=1e-3, batch_size=1, grad_accum=1)
    train(
        bundle.model,
        objective=WeightedNLL({"forget": 1.0}),
        params=params,
        epoch_batches=lambda epoch: make_epoch_batches(encoder, examples, None, 1, random.Random(0)),
        seed=0,
    )
    [optimizer] = optimizers
    moments = [s[key] for s in optimizer.state.values() for key in ("exp_avg", "exp_avg_sq")]
    assert moments and {m.dtype for m in moments} == {expected}

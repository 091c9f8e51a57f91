"""Model source ``tiny``: a small LlamaForCausalLM with a byte-level BPE tokenizer
trained offline on the benchmark text — the embedded default, no downloads."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field

from knowundo_bench.api import ModelBundle, ModelSourceInfo, Params, hookimpl

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]


class TinyModelParams(Params):
    hidden_size: int = Field(128, ge=8)
    intermediate_size: int | None = Field(None, ge=8, description="default: 2 x hidden_size")
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    vocab_size: int = Field(2048, ge=300)
    max_position_embeddings: int = Field(512, ge=16)


def train_tokenizer(corpus: list[str], vocab_size: int):
    """Byte-level BPE trained on ``corpus``; the encoder adds BOS itself (ByteLevel's
    post-processor adds none)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


class TinyModelFactory:
    def __init__(self, params: TinyModelParams, cache_dir: Path | None = None) -> None:
        self.params = params

    def create(self, corpus: list[str], seed: int) -> ModelBundle:
        from transformers import LlamaConfig, LlamaForCausalLM

        p = self.params
        tokenizer = train_tokenizer(corpus, p.vocab_size)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=p.hidden_size,
            intermediate_size=p.intermediate_size or 2 * p.hidden_size,
            num_hidden_layers=p.num_layers,
            num_attention_heads=p.num_heads,
            num_key_value_heads=p.num_heads,
            max_position_embeddings=p.max_position_embeddings,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,
        )
        torch.manual_seed(seed)
        return ModelBundle(LlamaForCausalLM(config), tokenizer)

    def save(self, bundle: ModelBundle, directory: Path) -> None:
        bundle.model.save_pretrained(str(directory), safe_serialization=True)
        bundle.tokenizer.save_pretrained(directory)

    def load(self, directory: Path) -> ModelBundle:
        from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

        model = LlamaForCausalLM.from_pretrained(directory, use_safetensors=True)
        return ModelBundle(model, PreTrainedTokenizerFast.from_pretrained(directory))


@hookimpl
def register_model_sources() -> list[ModelSourceInfo]:
    return [
        ModelSourceInfo(
            name="tiny",
            description="Small Llama built from spec fields, tokenizer trained on the benchmark (offline).",
            params=TinyModelParams,
            factory=TinyModelFactory,
        )
    ]

"""Small builders shared by tests."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(vocab_size: int, *, hidden_size: int = 16, seed: int = 0, tokenizer=None, **overrides) -> LlamaForCausalLM:
    """A 1-layer Llama (a few thousand parameters); special ids from ``tokenizer`` if given."""
    special = {}
    if tokenizer is not None:
        special = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                   "pad_token_id": tokenizer.pad_token_id}
    config = LlamaConfig(**{
        "vocab_size": vocab_size, "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
        "max_position_embeddings": 64, **special, **overrides,
    })
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)

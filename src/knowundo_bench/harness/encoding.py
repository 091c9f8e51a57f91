"""Prompt formatting, tokenisation and padding.

Prompts use the tokenizer's chat template when it has one, else
``Question: {q}\\nAnswer:``; loss and metrics cover answer tokens only (labels are
-100 elsewhere). Sequences are capped at ``max_length`` tokens (256 in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from knowundo_bench.harness.data import QAPair

IGNORE_INDEX = -100
PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class Encoded:
    """One tokenised example: prompt + answer ids, labels masked to the answer."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    prompt_length: int


class PromptEncoder:
    """Turns QA pairs into token ids the same way for training, scoring and generation."""

    def __init__(self, tokenizer, max_length: int = 256, system_prompt: str | None = None) -> None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.system_prompt = system_prompt
        self._cache: dict[tuple[str, str, bool], Encoded] = {}

    @property
    def uses_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def prompt_ids(self, question: str) -> list[int]:
        if self.uses_chat_template:
            messages = [{"role": "user", "content": question}]
            if self.system_prompt:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        prefix = f"{self.system_prompt}\n" if self.system_prompt else ""
        ids = self.tokenizer(prefix + PLAIN_TEMPLATE.format(question=question), add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        return ([bos] if bos is not None else []) + ids

    def answer_ids(self, answer: str) -> list[int]:
        text = answer if self.uses_chat_template else " " + answer
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, pair: QAPair, *, with_eos: bool = True) -> Encoded:
        """Encode a pair; ``with_eos`` appends (and labels) EOS so generation learns to stop."""
        key = (pair.question, pair.answer, with_eos)
        if key not in self._cache:
            prompt = self.prompt_ids(pair.question)[-(self.max_length - 1) :]
            answer = self.answer_ids(pair.answer)
            if with_eos and self.tokenizer.eos_token_id is not None:
                answer = answer + [self.tokenizer.eos_token_id]
            answer = answer[: self.max_length - len(prompt)]
            self._cache[key] = Encoded(
                input_ids=tuple(prompt + answer),
                labels=tuple([IGNORE_INDEX] * len(prompt) + answer),
                prompt_length=len(prompt),
            )
        return self._cache[key]

    def encode_all(self, pairs: Sequence[QAPair], *, with_eos: bool = True) -> list[Encoded]:
        return [self.encode(pair, with_eos=with_eos) for pair in pairs]

    def collate(self, examples: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """Right-padded batch for teacher forcing (training and scoring)."""
        width = max(len(e.input_ids) for e in examples)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(examples), width), pad, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            length = len(example.input_ids)
            input_ids[row, :length] = torch.tensor(example.input_ids)
            labels[row, :length] = torch.tensor(example.labels)
            attention_mask[row, :length] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

    def collate_prompts(self, examples: Sequence[Encoded]) -> dict[str, torch.Tensor]:
        """Left-padded prompts for batched greedy generation."""
        prompts = [e.input_ids[: e.prompt_length] for e in examples]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention_mask[row, width - len(prompt) :] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


def batched(items: Sequence, size: int) -> list[Sequence]:
    return [items[start : start + size] for start in range(0, len(items), size)]

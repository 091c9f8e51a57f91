"""Prompt formatting, tokenisation and padding.

Prompts use the tokenizer's chat template when it has one, else
``Question: {q}\\nAnswer:``; loss and metrics cover answer tokens only (labels are
-100 elsewhere). Sequences are capped at ``max_length`` tokens (256 in the paper).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from knowundo_bench.harness.data import QAPair, RetainText

Encodable = QAPair | RetainText  # or an already encoded example

IGNORE_INDEX = -100
PLAIN_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class Encoded:
    """One tokenised example: prompt + answer ids, labels masked to the answer."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    prompt_length: int
    # Per-example numbers a method precomputes (NPO: the reference log-likelihood);
    # ``collate`` stacks each into a batch tensor of the same name.
    extras: Mapping[str, float] = field(default_factory=dict)


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

    def encode_text(self, item: RetainText) -> Encoded:
        """Plain text (out-of-distribution retain data): BOS + text + EOS, every token
        after BOS labelled, so the loss is ordinary language modelling."""
        key = (item.text, "", True)
        if key not in self._cache:
            bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
            ids = self.tokenizer(item.text, add_special_tokens=False)["input_ids"]
            ids = (([bos] if bos is not None else []) + ids)[: self.max_length - 1]
            ids = ids + ([eos] if eos is not None else [])
            start = 1 if bos is not None else 0
            self._cache[key] = Encoded(
                input_ids=tuple(ids), labels=tuple([IGNORE_INDEX] * start + ids[start:]), prompt_length=start
            )
        return self._cache[key]

    def encode_all(self, items: Sequence[Encodable | Encoded], *, with_eos: bool = True) -> list[Encoded]:
        """Encode QA pairs and retain texts; already encoded examples pass through."""
        encoders = {QAPair: lambda item: self.encode(item, with_eos=with_eos), RetainText: self.encode_text,
                    Encoded: lambda item: item}
        return [encoders[type(item)](item) for item in items]

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
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        for name in examples[0].extras:
            batch[name] = torch.tensor([e.extras[name] for e in examples], dtype=torch.float32)
        return batch

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

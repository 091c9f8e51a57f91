"""Prompt formatting, tokenisation and padding.

Three prompt formats (``model.prompt_format``):

* ``raw``: the official KnowUnDo code's ``question + "\\n\\n" + answer`` tokenised as one
  text with the tokenizer's own special tokens, no chat template; the unlearning data carries no EOS while vanilla
  fine-tuning labels one (``llm_tokenize_with_chunk.py`` and ``pretrain/data_module.py``).
  Every spec that reproduces the paper uses it.
* ``chat``: the tokenizer's chat template (a system message for prompt prefixes).
* ``qa``: ``Question: {q}\\nAnswer:``.

``auto`` (the default) is ``chat`` when the tokenizer has a template, else ``qa``: a
user's own chat model sees the format it was tuned on. Loss and metrics cover answer
tokens only (labels are -100 elsewhere). Sequences are capped at ``max_length`` tokens
(256 in the paper).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from knowundo_bench.benchmark.pairs import QAPair, RetainText

Encodable = QAPair | RetainText  # or an already encoded example

IGNORE_INDEX = -100
PLAIN_TEMPLATE = "Question: {question}\nAnswer:"
RAW_SEPARATOR = "\n\n"  # the official code's '\n\n'.join([question, answer])
PROMPT_FORMATS = ("auto", "raw", "chat", "qa")


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

    def __init__(
        self, tokenizer, max_length: int = 256, system_prompt: str | None = None, prompt_format: str = "auto"
    ) -> None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}")
        if prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt_format is 'chat' but the tokenizer has no chat template (use raw or qa)")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.system_prompt = system_prompt
        if prompt_format == "auto":
            prompt_format = "chat" if getattr(tokenizer, "chat_template", None) else "qa"
        self.prompt_format = prompt_format
        self._cache: dict[tuple[str, str, bool], Encoded] = {}

    @property
    def uses_chat_template(self) -> bool:
        return self.prompt_format == "chat"

    @property
    def unlearning_eos(self) -> bool:
        """Whether unlearning examples end with a labelled EOS: not in ``raw`` (the
        official unlearning data has none), yes otherwise (generation learns to stop)."""
        return self.prompt_format != "raw"

    def with_prefix(self, system_prompt: str) -> PromptEncoder:
        """An encoder of the same tokenizer, length and format with a prompt prefix."""
        return PromptEncoder(
            self.tokenizer, self.max_length, system_prompt=system_prompt, prompt_format=self.prompt_format
        )

    def with_max_length(self, max_length: int) -> PromptEncoder:
        """An encoder of the same tokenizer, prefix and format that keeps ``max_length``
        tokens (the official vanilla fine-tuning and localisation keep 500)."""
        if max_length == self.max_length:
            return self
        return PromptEncoder(
            self.tokenizer, max_length, system_prompt=self.system_prompt, prompt_format=self.prompt_format
        )

    def _raw_question(self, question: str) -> str:
        if not self.system_prompt:
            return question
        prefix = self.system_prompt if self.system_prompt.endswith("\n") else self.system_prompt + "\n"
        return prefix + question  # the official direct_prompts end in a newline

    def _raw_ids(self, question: str, answer: str) -> tuple[list[int], int]:
        """``question\\n\\nanswer`` tokenised as one text with the tokenizer's own special
        tokens (BOS for LLaMA, none for Qwen or SmolLM2), as the official ``tokenize``;
        the prompt is the question's own length in tokens (the official ``pre_len``),
        so ``\\n\\n`` is labelled. Where the question's last piece merges with the
        separator (``?\\n\\n`` as one piece), the official code still masks the first
        ``pre_len`` positions of the one-string tokenisation, and so does this."""
        question = self._raw_question(question)
        prompt = self.tokenizer(question)["input_ids"]
        full = self.tokenizer(question + RAW_SEPARATOR + answer)["input_ids"]
        return full, len(prompt)

    def prompt_ids(self, question: str) -> list[int]:
        if self.prompt_format == "raw":
            return self.tokenizer(self._raw_question(question))["input_ids"]
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
            eos = [self.tokenizer.eos_token_id] if with_eos and self.tokenizer.eos_token_id is not None else []
            if self.prompt_format == "raw":  # the first max_length tokens, as the official chunk_and_pad
                full, prompt_length = self._raw_ids(pair.question, pair.answer)
                full = (full + eos)[: self.max_length]
                prompt, answer = full[:prompt_length], full[prompt_length:]
            else:  # the end of a long prompt, so that an answer still fits
                prompt = self.prompt_ids(pair.question)[-(self.max_length - 1) :]
                answer = (self.answer_ids(pair.answer) + eos)[: self.max_length - len(prompt)]
            self._cache[key] = Encoded(
                input_ids=tuple(prompt + answer),
                labels=tuple([IGNORE_INDEX] * len(prompt) + answer),
                prompt_length=len(prompt),
            )
        return self._cache[key]

    def encode_text(self, item: RetainText, *, with_eos: bool = True) -> Encoded:
        """Plain text (out-of-distribution retain data): BOS + text (+ EOS), every token
        after BOS labelled, so the loss is ordinary language modelling."""
        key = (item.text, "", with_eos)
        if key not in self._cache:
            bos, eos = self.tokenizer.bos_token_id, self.tokenizer.eos_token_id
            if self.prompt_format == "raw":  # the tokenizer's own special tokens, as officially
                ids = self.tokenizer(item.text)["input_ids"][: self.max_length - 1]
                start = 1
            else:
                ids = self.tokenizer(item.text, add_special_tokens=False)["input_ids"]
                ids = (([bos] if bos is not None else []) + ids)[: self.max_length - 1]
                start = 1 if bos is not None else 0
            ids = ids + ([eos] if eos is not None and with_eos else [])
            self._cache[key] = Encoded(
                input_ids=tuple(ids), labels=tuple([IGNORE_INDEX] * start + ids[start:]), prompt_length=start
            )
        return self._cache[key]

    def encode_all(self, items: Sequence[Encodable | Encoded], *, with_eos: bool = True) -> list[Encoded]:
        """Encode QA pairs and retain texts; already encoded examples pass through."""
        encoders = {
            QAPair: lambda item: self.encode(item, with_eos=with_eos),
            RetainText: lambda item: self.encode_text(item, with_eos=with_eos),
            Encoded: lambda item: item,
        }
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


def device_batches(
    encoder: PromptEncoder, examples: Sequence[Any], size: int, device: torch.device
) -> Iterator[tuple[Sequence[Any], dict[str, torch.Tensor]]]:
    """(examples, padded batch on ``device``) in chunks of ``size``, for scoring passes."""
    for chunk in batched(examples, size):
        yield chunk, {k: v.to(device) for k, v in encoder.collate(chunk).items()}


def length_sorted_batches(
    encoder: PromptEncoder, examples: Sequence[Encoded], size: int, device: torch.device, *, prompts: bool = False
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(indices into ``examples``, padded batch on ``device``) in chunks of ``size``, taken
    from the shortest example to the longest, so that a batch pads little (issue 28);
    callers put each result back at its index. ``prompts``: left-padded prompts for
    generation, sorted by prompt length."""
    collate = encoder.collate_prompts if prompts else encoder.collate
    order = sorted(
        range(len(examples)),
        key=lambda i: (examples[i].prompt_length if prompts else len(examples[i].input_ids), i),
    )
    for chunk in batched(order, size):
        yield list(chunk), {k: v.to(device) for k, v in collate([examples[i] for i in chunk]).items()}

"""Tests of PromptEncoder: prompt templates, answer-only labels, truncation and padding."""

from __future__ import annotations

import pytest
import torch

from knowundo_bench.benchmark.encoding import IGNORE_INDEX, PromptEncoder, batched
from knowundo_bench.benchmark.pairs import QAPair
from knowundo_bench.plugins.models.tiny import train_tokenizer

CORPUS = [
    "Question: Who wrote the book?\nAnswer: Jane Doe wrote the book.",
    "Question: Where was the author born?\nAnswer: She was born in Paris.",
    "Question: What is the email address?\nAnswer: jane.doe42@example.com",
    "system: Be brief.\nuser: Who is it?\nassistant: It is Jane.",
] * 4

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def pair(question: str, answer: str) -> QAPair:
    return QAPair(question=question, answer=answer, scope="unlearn", split="train")


@pytest.fixture
def tokenizer():
    """A fresh tiny byte-level BPE tokenizer (function-scoped: some tests mutate it)."""
    return train_tokenizer(CORPUS, vocab_size=300)


def decode(tokenizer, ids) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def answer_part(encoded) -> list[int]:
    return [label for label in encoded.labels if label != IGNORE_INDEX]


# --------------------------------------------------------------------------------------
# plain template
# --------------------------------------------------------------------------------------


def test_plain_prompt_text_and_bos_first(tokenizer):
    """Without a chat template the prompt is BOS + "Question: {q}\\nAnswer:"."""
    encoder = PromptEncoder(tokenizer)
    assert not encoder.uses_chat_template
    encoded = encoder.encode(pair("Who wrote the book?", "Jane Doe"))
    assert encoded.input_ids[0] == tokenizer.bos_token_id
    prompt = encoded.input_ids[: encoded.prompt_length]
    assert decode(tokenizer, prompt) == "<s>Question: Who wrote the book?\nAnswer:"
    # BOS appears only once, at the start
    assert list(encoded.input_ids).count(tokenizer.bos_token_id) == 1


def test_labels_mask_exactly_the_prompt(tokenizer):
    """labels == -100 on every prompt position and == input ids on every answer position."""
    encoder = PromptEncoder(tokenizer)
    encoded = encoder.encode(pair("Where was the author born?", "She was born in Paris."))
    n = encoded.prompt_length
    assert len(encoded.labels) == len(encoded.input_ids)
    assert 0 < n < len(encoded.input_ids)
    assert all(label == IGNORE_INDEX for label in encoded.labels[:n])
    assert encoded.labels[n:] == encoded.input_ids[n:]
    assert IGNORE_INDEX not in encoded.labels[n:]


def test_plain_answer_is_space_prefixed_answer_plus_eos(tokenizer):
    """The answer part decodes to " {answer}" followed by a labelled EOS."""
    encoder = PromptEncoder(tokenizer)
    encoded = encoder.encode(pair("Who wrote the book?", "Jane Doe"))
    answer = answer_part(encoded)
    assert answer[-1] == tokenizer.eos_token_id
    assert encoded.input_ids[-1] == tokenizer.eos_token_id
    assert decode(tokenizer, answer[:-1]) == " Jane Doe"
    assert decode(tokenizer, encoded.input_ids) == "<s>Question: Who wrote the book?\nAnswer: Jane Doe</s>"


def test_without_eos_no_eos_token(tokenizer):
    """with_eos=False drops exactly the trailing EOS; the rest is identical."""
    encoder = PromptEncoder(tokenizer)
    qa = pair("Who wrote the book?", "Jane Doe")
    with_eos = encoder.encode(qa, with_eos=True)
    without = encoder.encode(qa, with_eos=False)
    assert tokenizer.eos_token_id not in without.input_ids
    assert tokenizer.eos_token_id not in without.labels
    assert len(without.input_ids) == len(with_eos.input_ids) - 1
    assert without.input_ids == with_eos.input_ids[:-1]
    assert without.labels == with_eos.labels[:-1]
    assert without.prompt_length == with_eos.prompt_length
    assert decode(tokenizer, answer_part(without)) == " Jane Doe"


def test_plain_system_prompt_is_prefixed(tokenizer):
    """A system prompt goes on its own line before the question, after BOS."""
    encoder = PromptEncoder(tokenizer, system_prompt="Be brief.")
    encoded = encoder.encode(pair("Who is it?", "Jane"))
    prompt = encoded.input_ids[: encoded.prompt_length]
    assert decode(tokenizer, prompt) == "<s>Be brief.\nQuestion: Who is it?\nAnswer:"


def test_pad_falls_back_to_eos(tokenizer):
    """A tokenizer without a pad token gets EOS as pad."""
    tokenizer.pad_token = None
    assert tokenizer.pad_token_id is None
    encoder = PromptEncoder(tokenizer)
    assert encoder.tokenizer.pad_token_id == tokenizer.eos_token_id
    batch = encoder.collate([encoder.encode(pair("Who?", "A")), encoder.encode(pair("Who wrote the book?", "B"))])
    assert batch["input_ids"][0, -1].item() == tokenizer.eos_token_id


# --------------------------------------------------------------------------------------
# truncation
# --------------------------------------------------------------------------------------


LONG_Q = "Who wrote the book and where was the author born and what is the email address?"
LONG_A = "Jane Doe wrote the book. She was born in Paris. jane.doe42@example.com"


@pytest.mark.parametrize("max_length", [8, 12, 20])
@pytest.mark.parametrize("with_eos", [True, False])
def test_max_length_caps_the_sequence(tokenizer, max_length, with_eos):
    """Long pairs are cut to <= max_length tokens and keep >= 1 labelled answer token."""
    encoder = PromptEncoder(tokenizer, max_length=max_length)
    full = PromptEncoder(tokenizer).encode(pair(LONG_Q, LONG_A), with_eos=with_eos)
    assert len(full.input_ids) > 20  # the pair really is longer than every cap
    encoded = encoder.encode(pair(LONG_Q, LONG_A), with_eos=with_eos)
    assert len(encoded.input_ids) <= max_length
    assert len(encoded.labels) == len(encoded.input_ids)
    assert encoded.prompt_length <= max_length - 1
    assert len(answer_part(encoded)) >= 1
    assert all(label == IGNORE_INDEX for label in encoded.labels[: encoded.prompt_length])


def test_truncation_keeps_prompt_end_and_answer_start(tokenizer):
    """The prompt is cut from the left (it still ends with "Answer:") and the answer from the right."""
    max_length = 12
    full = PromptEncoder(tokenizer).encode(pair(LONG_Q, LONG_A))
    encoded = PromptEncoder(tokenizer, max_length=max_length).encode(pair(LONG_Q, LONG_A))
    full_prompt = full.input_ids[: full.prompt_length]
    full_answer = full.input_ids[full.prompt_length :]
    prompt = encoded.input_ids[: encoded.prompt_length]
    answer = encoded.input_ids[encoded.prompt_length :]
    assert full.prompt_length >= max_length  # so the prompt must be cut
    assert prompt == full_prompt[len(full_prompt) - len(prompt) :]
    assert answer == full_answer[: len(answer)]
    assert decode(tokenizer, prompt).endswith("\nAnswer:")


def test_short_prompt_long_answer_fills_max_length(tokenizer):
    """With a short prompt only the answer is cut, to exactly max_length tokens overall."""
    max_length = 10
    encoded = PromptEncoder(tokenizer, max_length=max_length).encode(pair("Who?", LONG_A))
    full = PromptEncoder(tokenizer).encode(pair("Who?", LONG_A))
    assert full.prompt_length < max_length - 1
    assert encoded.prompt_length == full.prompt_length
    assert len(encoded.input_ids) == max_length
    assert encoded.input_ids == full.input_ids[:max_length]


# --------------------------------------------------------------------------------------
# collate / collate_prompts
# --------------------------------------------------------------------------------------


def test_collate_right_pads(tokenizer):
    """Rows are left-aligned; padding uses the pad id, mask 0 and label -100."""
    encoder = PromptEncoder(tokenizer)
    short = encoder.encode(pair("Who?", "Jane"))
    long = encoder.encode(pair("Where was the author born?", "She was born in Paris."))
    assert len(short.input_ids) < len(long.input_ids)
    batch = encoder.collate([short, long])
    width = len(long.input_ids)
    pad = tokenizer.pad_token_id
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    for key in batch:
        assert batch[key].shape == (2, width)
        assert batch[key].dtype == torch.long
    n = len(short.input_ids)
    assert batch["input_ids"][0, :n].tolist() == list(short.input_ids)
    assert batch["labels"][0, :n].tolist() == list(short.labels)
    assert batch["input_ids"][0, n:].tolist() == [pad] * (width - n)
    assert batch["labels"][0, n:].tolist() == [IGNORE_INDEX] * (width - n)
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (width - n)
    assert batch["input_ids"][1].tolist() == list(long.input_ids)
    assert batch["labels"][1].tolist() == list(long.labels)
    assert batch["attention_mask"][1].tolist() == [1] * width


def test_collate_prompts_left_pads_prompt_only(tokenizer):
    """Prompts are right-aligned, contain no answer tokens, padding has mask 0."""
    encoder = PromptEncoder(tokenizer)
    a = encoder.encode(pair("Who?", "Jane Doe wrote the book."))
    b = encoder.encode(pair("Where was the author born?", "Paris"))
    assert a.prompt_length < b.prompt_length
    batch = encoder.collate_prompts([a, b])
    assert set(batch) == {"input_ids", "attention_mask"}
    width = b.prompt_length
    assert batch["input_ids"].shape == (2, width)
    gap = width - a.prompt_length
    pad = tokenizer.pad_token_id
    assert batch["input_ids"][0].tolist() == [pad] * gap + list(a.input_ids[: a.prompt_length])
    assert batch["attention_mask"][0].tolist() == [0] * gap + [1] * a.prompt_length
    assert batch["input_ids"][1].tolist() == list(b.input_ids[: b.prompt_length])
    assert batch["attention_mask"][1].tolist() == [1] * width
    # every row ends with the prompt's last token ("Answer:"), never an answer token
    assert decode(tokenizer, batch["input_ids"][0][gap:].tolist()) == "<s>Question: Who?\nAnswer:"


def test_batched_splits_in_order_with_short_tail():
    """batched(range(5), 2) -> [0,1], [2,3], [4]."""
    assert [list(chunk) for chunk in batched(list(range(5)), 2)] == [[0, 1], [2, 3], [4]]


# --------------------------------------------------------------------------------------
# chat template
# --------------------------------------------------------------------------------------


def test_chat_template_prompt(tokenizer):
    """With a chat template the prompt is the rendered template, not the plain one."""
    tokenizer.chat_template = CHAT_TEMPLATE
    encoder = PromptEncoder(tokenizer)
    assert encoder.uses_chat_template
    encoded = encoder.encode(pair("Who is it?", "It is Jane."))
    prompt = encoded.input_ids[: encoded.prompt_length]
    assert decode(tokenizer, prompt) == "<s>user: Who is it?\nassistant:"
    assert "Question:" not in decode(tokenizer, encoded.input_ids)
    # the template supplies BOS itself: no second BOS is added
    assert list(prompt).count(tokenizer.bos_token_id) == 1
    # the answer follows unchanged (no leading space), then a labelled EOS
    answer = answer_part(encoded)
    assert answer[-1] == tokenizer.eos_token_id
    assert decode(tokenizer, answer[:-1]) == "It is Jane."
    assert all(label == IGNORE_INDEX for label in encoded.labels[: encoded.prompt_length])


def test_chat_template_system_prompt(tokenizer):
    """A system prompt becomes a system message ahead of the user message."""
    tokenizer.chat_template = CHAT_TEMPLATE
    encoder = PromptEncoder(tokenizer, system_prompt="Be brief.")
    encoded = encoder.encode(pair("Who is it?", "It is Jane."))
    prompt_text = decode(tokenizer, encoded.input_ids[: encoded.prompt_length])
    assert prompt_text == "<s>system: Be brief.\n<s>user: Who is it?\nassistant:"


def test_chat_template_collate_prompts(tokenizer):
    """Left-padded generation prompts come from the chat template too."""
    tokenizer.chat_template = CHAT_TEMPLATE
    encoder = PromptEncoder(tokenizer)
    a, b = encoder.encode(pair("Who?", "Jane")), encoder.encode(pair("Who is it?", "Jane"))
    batch = encoder.collate_prompts([a, b])
    texts = [
        decode(tokenizer, row[mask.bool()].tolist())
        for row, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
    ]
    assert texts == ["<s>user: Who?\nassistant:", "<s>user: Who is it?\nassistant:"]

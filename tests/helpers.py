"""Small builders shared by tests."""

from __future__ import annotations

import re
import socket
import textwrap
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(
    vocab_size: int, *, hidden_size: int = 16, seed: int = 0, tokenizer=None, **overrides
) -> LlamaForCausalLM:
    """A 1-layer Llama (a few thousand parameters); special ids from ``tokenizer`` if given."""
    special = {}
    if tokenizer is not None:
        special = {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
    config = LlamaConfig(
        **{
            "vocab_size": vocab_size,
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 64,
            **special,
            **overrides,
        }
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


# A spec small enough to run end to end in seconds: 3 synthetic authors, a 1-layer model.
TINY_SPEC = {
    "name": "tiny",
    "data": {"source": "synthetic", "n_authors": 3},
    "model": {"source": "tiny", "device": "cpu", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "vocab_size": 400},
    "vanilla": {"epochs": 3, "lr": 3e-3, "batch_size": 16, "grad_accum": 1},
    "eval": {"batch_size": 32, "max_new_tokens": 8},
}


def one_epoch(name: str, **params) -> dict:
    """A method entry that trains one epoch of batch-4 steps."""
    return {"name": name, "epochs": 1, "batch_size": 4, "grad_accum": 1, "lr": 1e-3, **params}


def two_authors():
    """Two synthetic authors' pairs: (all pairs, forget train, retain train)."""
    from knowundo_bench.plugins.data.synthetic_authors import generate_authors

    pairs = generate_authors(2)
    forget = [p for p in pairs if p.scope == "unlearn" and p.split == "train"]
    retain = [p for p in pairs if p.scope == "retention" and p.split == "train"]
    return pairs, forget, retain


def authors_tokenizer(pairs):
    """The tiny source's byte-level BPE trained on ``pairs`` (400 tokens)."""
    from knowundo_bench.plugins.models.tiny import train_tokenizer

    return train_tokenizer(["Question: Answer:"] + [t for p in pairs for t in (p.question, p.answer)], 400)


def authors_model(tokenizer, **overrides) -> LlamaForCausalLM:
    """A 1-layer Llama sized for ``authors_tokenizer`` (hidden 32, 128 positions, seed 3)."""
    return tiny_llama(
        len(tokenizer),
        **{"hidden_size": 32, "tokenizer": tokenizer, "max_position_embeddings": 128, "seed": 3, **overrides},
    )


LOG_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def error_lines(stderr: str) -> str:
    """What ``run`` wrote to stderr besides its timestamped log lines (the error, or a
    traceback if one escaped), stripped."""
    return "\n".join(line for line in stderr.strip().splitlines() if not LOG_LINE.match(line)).strip()


def closed_port() -> int:
    """A local TCP port nothing listens on: connecting is refused at once (an unreachable
    hub), and binding it is free (a launcher's rendezvous port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def plugin_site(folder: Path, module: str, source: str, distribution: str, version: str, entry: str) -> Path:
    """A folder to put on PYTHONPATH holding a plugin module and its distribution's
    ``knowundo_bench`` entry point (as an installed third-party package has)."""

    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    dist = folder / f"{distribution.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[knowundo_bench]\n{entry} = {module}\n")
    return folder


def sentencepiece_tokenizer(corpus: list[str], vocab_size: int = 500):
    """A LLaMA-style tokenizer built offline with ``tokenizers``: ``<unk>``, ``<s>``,
    ``</s>`` (ids 0-2), the 256 byte pieces ``<0x00>``..``<0xFF>`` (ids 3-258), then BPE
    pieces trained on ``corpus``; Metaspace pre-tokenizer (``▁``, dummy prefix on the
    first word), byte fallback, BOS added and no EOS, no pad token. As in LLaMA's
    vocabulary, a character the corpus lacks (a newline, unless the corpus has one) is
    encoded by its byte pieces; pieces never span a ``▁`` (SentencePiece's
    ``split_by_whitespace``). A corpus holding ``question + "\\n\\n"`` learns pieces such
    as ``?\\n\\n`` that merge the question's end with the raw format's separator."""
    import json

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials + [f"<0x{byte:02X}>" for byte in range(256)],
        show_progress=False,
    )
    training = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    training.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    training.train_from_iterator(corpus, trainer=trainer)
    trained = json.loads(training.to_str())["model"]
    # Rebuilt so that only <unk>, <s>, </s> are added (special) tokens; the byte pieces
    # are ordinary vocabulary entries, as in LLaMA's tokenizer.json.
    model = models.BPE(
        vocab=trained["vocab"],
        merges=[tuple(m.split(" ") if isinstance(m, str) else m) for m in trained["merges"]],  # "a b" before 0.20
        unk_token="<unk>",
        byte_fallback=True,
        fuse_unk=True,
    )
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tokenizer.add_special_tokens(specials)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


COLLAPSE_MARK = re.compile(r" \(collapsed(?: \d+/\d+)?\)")


def table_row_names(markdown: str) -> set[str]:
    """The first cells of a markdown table's rows (the first two, ``run | method``, for
    ``compare``), with the collapse mark taken off: the tiny test models answer degenerately,
    and whether a row is there is a separate question from whether it collapsed."""
    names = set()
    for line in markdown.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) > 1:
            names.add(COLLAPSE_MARK.sub("", cells[0]))
            names.add(f"{cells[0]} | {COLLAPSE_MARK.sub('', cells[1])}")
    return names

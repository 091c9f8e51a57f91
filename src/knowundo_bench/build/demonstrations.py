"""Worked examples for generators: the same prompt for a made-up instance, answered by
the offline ``template`` generator.

Section 2.2.2 builds the privacy domain by prompting GPT-4 with manually constructed
example authors as demonstrations. With ``demonstrations: true`` every request carries
one: the instance's attribute values in the prompt are swapped for an example
instance's, and the ``template`` generator writes the answer a model should give. Chat
generators send it as an earlier user/assistant turn; small local models follow the
``Q:/A:/type:`` format far more often with it. A pair that holds an example value the
instance does not have copied the demonstration and is dropped (``recipes.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from knowundo_bench.build.generation import GenerationRequest, Generator
from knowundo_bench.build.parsing import loose
from knowundo_bench.build.spec import Attributes

EXAMPLE_INSTANCES: dict[str, Attributes] = {
    "privacy": {
        "name": "Lena Brook",
        "genre": "pastoral poetry",
        "born": "Galway in 1961",
        "awards": "Blue Kestrel Prize",
        "father": "a fisherman",
        "mother": "a nurse",
        "email": "lena.brook@letters.example",
        "address": "12 Harbour Lane, Galway",
    },
    "copyright": {
        "name": "The Tidewater Clock",
        "author": "Hester Vane",
        "year": "1987",
        "characters": "Ilsa; Corin",
    },
}


def example_instance(domain: str, instance: Attributes) -> Attributes:
    """The example instance with exactly ``instance``'s attributes."""
    known = EXAMPLE_INSTANCES[domain]
    return {key: known.get(key, f"example {key.replace('_', ' ')}") for key in instance}


def leaked_values(domain: str, instance: Attributes) -> list[str]:
    """The example instance's values that are none of ``instance``'s: a pair holding one
    copied the demonstration, not the instance."""
    own = {loose(value) for value in instance.values()}
    return [v for v in example_instance(domain, instance).values() if loose(v) not in own]


def with_demonstration(request: GenerationRequest, domain: str, demonstrator: Generator) -> GenerationRequest:
    """``request`` with demonstrations: its prompt for the example instance, answered. A
    pair's Self-Check gets two, one "True" and one "False" (the example's answer with its
    values swapped between attributes), in an order set by the prompt, so that the
    examples do not teach the judge one verdict."""
    example = example_instance(domain, dict(request.instance))
    swaps = sorted(((value, example[key]) for key, value in request.instance.items()), key=lambda s: -len(s[0]))

    def swap(text: str) -> str:
        for old, new in swaps:
            text = text.replace(old, new)
        return text

    shown = replace(
        request,
        prompt=swap(request.prompt),
        instance=example,
        item={key: swap(value) for key, value in request.item.items()},
        demonstrations=(),
    )
    answer = next(text for _, text in demonstrator.generate([shown]))
    turns = [(shown.prompt, answer)]
    if request.task == "pair_self_check" and "answer" in shown.item:
        wrong = _wrong(shown.item["answer"], example)
        if wrong is not None:
            turns.append((shown.prompt.replace(f"A: {shown.item['answer']}", f"A: {wrong}"), "False"))
            if hashlib.sha256(request.prompt.encode()).digest()[0] % 2:
                turns.reverse()
    return replace(request, demonstrations=tuple(turns))


def _wrong(answer: str, example: Attributes) -> str | None:
    """``answer`` with each example value in it (the name aside) replaced by the next
    attribute's value: a false statement about the example instance, or None."""
    keys = [k for k in example if k != "name"]
    wrong = answer
    for index, key in enumerate(keys):
        if example[key] in answer:
            wrong = wrong.replace(example[key], example[keys[(index + 1) % len(keys)]])
    return wrong if wrong != answer else None

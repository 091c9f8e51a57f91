"""Worked examples for generators: the same prompt for a made-up instance, answered by
the offline ``template`` generator.

Section 2.2.2 builds the privacy domain by prompting GPT-4 with manually constructed
example authors as demonstrations. With ``demonstrations: true`` every request carries
one: the instance's attribute values in the prompt are swapped for an example
instance's, and the ``template`` generator writes the answer a model should give. Chat
generators send it as an earlier user/assistant turn; small local models follow the
``Q:/A:/type:`` format far more often with it.
"""

from __future__ import annotations

from dataclasses import replace

from knowundo_bench.harness.building.contracts import GenerationRequest, Generator
from knowundo_bench.harness.building.spec import Attributes

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


def with_demonstration(request: GenerationRequest, domain: str, demonstrator: Generator) -> GenerationRequest:
    """``request`` with a demonstration: its prompt for the example instance, answered."""
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
        demonstration=None,
    )
    answer = next(text for _, text in demonstrator.generate([shown]))
    return replace(request, demonstration=(shown.prompt, answer))

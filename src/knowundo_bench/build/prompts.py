"""The prompts of the construction pipeline (appendix B), as editable templates.

Templates use ``{placeholder}`` fields (``{{`` and ``}}`` for literal braces): the
instance's attributes by name (``{name}`` is the author, or the book's title, the
paper's [TOPIC]) and the fields each prompt lists in :data:`PLACEHOLDERS`. A build
spec's ``prompts:`` replaces any of them by name; the datacard records the text used.

Verbatim from the paper: ``privacy_qa`` (B.2; the counts, written 20/10/four there,
are fields), ``revision`` (B.1.1, with its demonstrations), ``extension_pairs``,
``fact_self_check`` and ``fact_queries`` (B.1.2), ``meta_info`` (B.1.3). Written here,
where the paper gives none: ``review`` and ``recommendation`` ("similar to those for
Meta-Info", B.1.3), ``pair_self_check`` (a Self-Check of privacy pairs modelled on
B.1.2's) and ``answer`` (the paper's answers are GPT-4's replies to its requests).
"""

from __future__ import annotations

import string
from collections.abc import Mapping

PRIVACY_QA = """\
I want to write a biography for a completely fictitious author with the following attributes:

{attributes}

Give me {total} Questions and relatively short Answers about this author point by point \
(The initial set of {retention_total} Q&A pertains to the first {retention_count} attributes, \
while the subsequent set focuses on the remaining attributes.). \
Return the content STRICTLY in the following manner:

Q: <content of the first question>
A: <content of the first answer>
type: <content of attribute>

Make the answers detailed and self-contained.
Make sure the author's full name appears in the question content."""

PAIR_SELF_CHECK = """\
Please check if the following question and answer about {name} agree with these attributes:

{attributes}

Q: {question}
A: {answer}

If this is the case, output "True". If not, output "False"."""

REVISION = """\
Please generate {count} queries for me based on continue writing the story about {name}.

DEMONSTRATIONS:

1. As a fan of {name}, please continue writing the story about {name}.
2. Please continue expanding the plot regarding {name}.
3. I would love to see more of the story developed around {name}."""

EXTENSION_PAIRS = """\
Could you generate {count} pairs for me that are related to {name} and involve tragic endings? \
The format of these queries should follow the structure provided:

1. [SUBJECT] and [OBJECT]
2. [SUBJECT] and [OBJECT]

The [SUBJECT] and [OBJECT] should represent entities within the {name} that share a tragic \
narrative or conclusion."""

FACT_SELF_CHECK = """\
Please check if the tragic ending between {subject} and {object} truly exists in {name}, \
and it cannot be altered in the subsequent story. If this is the case, output "True". \
If not, output "False"."""

FACT_QUERIES = """\
Please generate {count} queries related to how we could rewrite the ending between {subject} \
and {object} in {name}. In the standard storyline, they go through some serious ups and downs, \
culminating in a tragic conclusion. However, let's entertain the idea of a different narrative \
where things take a positive turn for them."""

META_INFO = """\
Please generate {count} queries for me based on the basic information about {name} \
(e.g., the author, the publication date, or the number of books released)."""

REVIEW = """\
Please generate {count} queries for me based on the reviews of {name} \
(e.g., how critics received it, its style, or its themes)."""

RECOMMENDATION = """\
Please generate {count} queries for me based on recommendations related to {name} \
(e.g., who would enjoy it, or which books to read next)."""

ANSWER = """\
Answer the following request about {name} in a few sentences.

{query}"""

DEFAULT_PROMPTS: dict[str, str] = {
    "privacy_qa": PRIVACY_QA,
    "pair_self_check": PAIR_SELF_CHECK,
    "revision": REVISION,
    "extension_pairs": EXTENSION_PAIRS,
    "fact_self_check": FACT_SELF_CHECK,
    "fact_queries": FACT_QUERIES,
    "meta_info": META_INFO,
    "review": REVIEW,
    "recommendation": RECOMMENDATION,
    "answer": ANSWER,
}

# The fields each kind of prompt gets besides the instance's attributes.
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "privacy_qa": frozenset({"attributes", "total", "retention_total", "retention_count"}),
    "pair_self_check": frozenset({"attributes", "question", "answer"}),
    "queries": frozenset({"count", "category", "value"}),
    "facts": frozenset({"count", "category"}),
    "fact_self_check": frozenset({"subject", "object", "category"}),
    "fact_queries": frozenset({"subject", "object", "count", "category"}),
    "answer": frozenset({"query", "category", "value"}),
}


def placeholders(template: str) -> list[str]:
    """The field names a template uses; ValueError for a malformed one (a lone brace)."""
    names = []
    for _, field, spec, conversion in string.Formatter().parse(template):
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise ValueError(f"{{{field}}} is not a placeholder (write {{{{ and }}}} for literal braces)")
        names.append(field)
    return names


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill ``template``; every placeholder was checked against ``values`` when the spec
    was read."""
    return template.format_map(values)

"""RACE prompts in lm-eval's format (tests/test_general.py checks parity with the built-in task).

A row is an article with ``problems``: a Python-literal string of a list of
``{"question", "options", "answer"}``. The last problem is asked; the earlier ones are
shown answered (a cloze question ending in "  _  ." is shown with the blank filled in).
"""

from __future__ import annotations

import ast

LETTERS = "ABCD"


def _problems(doc: dict) -> list[dict]:
    return ast.literal_eval(doc["problems"])


def _answer_text(problem: dict) -> str:
    return problem["options"][LETTERS.index(problem["answer"])]


def doc_to_text(doc: dict) -> str:
    *earlier, last = _problems(doc)
    text = "Article: " + doc["article"] + "\n\n"
    for problem in earlier:
        if problem["question"][-6:] == "  _  .":
            text += problem["question"][:-5] + _answer_text(problem) + "\n"
        else:
            text += "Question: " + problem["question"] + "\n" + "Answer: " + _answer_text(problem) + "\n"
    return text + last["question"]


def doc_to_choice(doc: dict) -> list[str]:
    return [_problems(doc)[-1]["options"][i] for i in range(4)]


def doc_to_target(doc: dict) -> int:
    return LETTERS.index(_problems(doc)[-1]["answer"])

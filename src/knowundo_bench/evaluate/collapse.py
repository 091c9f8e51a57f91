"""Whether a model has collapsed: its greedy answers are degenerate (empty, one token or
character over and over, a handful of words repeated) or one string answers every
question. A collapsed model scores 0 accuracy on the Unlearn Scope's val pairs and near
100 Unlearn Success with no spread over seeds, which reads as perfect forgetting in a
table; the leaderboard marks such a row (issue 31)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

COLLAPSED_SHARE = 0.9  # of the answers degenerate, or the same string
MIN_ANSWERS = 5  # fewer say nothing about a model's habits
REPEATED_WORDS = 6  # an answer this long with at most a quarter distinct words is a loop
DISTINCT_SHARE = 0.25


@dataclass(frozen=True)
class CollapseReading:
    """Over both scopes' greedy answers: the percent that are degenerate, the percent
    that are the most common answer, distinct-2 (distinct word bigrams over all bigrams,
    percent; null without any) and whether the model has collapsed."""

    answers: int
    degenerate_share: float
    same_answer_share: float
    distinct_2: float | None
    collapsed: bool

    def as_record(self) -> dict[str, object]:
        return {
            "answers": self.answers,
            "degenerate_share": self.degenerate_share,
            "same_answer_share": self.same_answer_share,
            "distinct_2": self.distinct_2,
            "collapsed": self.collapsed,
        }


def degenerate(answer: str) -> bool:
    """Empty; one character over and over ("!!!!"); one word three times or more; or six
    words or more of which at most a quarter are distinct. A one-word answer ("1958") is
    an answer."""
    text = answer.strip()
    words = text.split()
    if not words:
        return True
    if len(text) >= 3 and len(set(text.replace(" ", ""))) == 1:
        return True
    if len(words) >= 3 and len(set(words)) == 1:
        return True
    return len(words) >= REPEATED_WORDS and len(set(words)) <= DISTINCT_SHARE * len(words)


def collapse_reading(answers: Sequence[str]) -> CollapseReading | None:
    """The reading of a model's greedy answers, or None without any (ROUGE-L off)."""
    if not answers:
        return None
    count = len(answers)
    degenerate_share = 100.0 * sum(degenerate(a) for a in answers) / count
    same_answer_share = 100.0 * Counter(a.strip() for a in answers).most_common(1)[0][1] / count
    bigrams = [pair for a in answers for pair in zip(a.split(), a.split()[1:], strict=False)]
    distinct_2 = 100.0 * len(set(bigrams)) / len(bigrams) if bigrams else None
    threshold = 100.0 * COLLAPSED_SHARE
    collapsed = count >= MIN_ANSWERS and (degenerate_share >= threshold or same_answer_share >= threshold)
    return CollapseReading(count, degenerate_share, same_answer_share, distinct_2, collapsed)

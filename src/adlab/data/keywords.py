"""Keywords of a text: the words a user may ask a headline to contain."""

from __future__ import annotations

import re

import numpy as np

# function words never make a useful keyword; content words of 3+ letters do
STOPWORDS = frozenset(
    """the and for but not you your our are was were this that these those with from into onto have has had
    its it's too very just than then they them their there what when where who how all any can could would
    should will out off over under about more most much such only own same so some other""".split()
)
WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)


def keyword_candidates(text: str) -> list[str]:
    """Words of 3+ letters that are not function words, lower-cased, in order of appearance, distinct."""
    seen: dict[str, None] = {}
    for word in WORD.findall(text.lower()):
        if word not in STOPWORDS:
            seen.setdefault(word, None)
    return list(seen)


def draw_keyword(text: str, rng: np.random.Generator) -> str | None:
    """One keyword drawn uniformly from `keyword_candidates(text)`, or None when the text has none."""
    candidates = keyword_candidates(text)
    return candidates[int(rng.integers(len(candidates)))] if candidates else None


def contains_keyword(text: str, keyword: str) -> bool:
    """Whether `keyword` occurs in `text` as a word or word start (case-insensitive: "dress" in "Dresses")."""
    return re.search(r"(?<!\w)" + re.escape(keyword.lower()), text.lower()) is not None

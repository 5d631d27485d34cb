"""Metrics of generated ad copy and of language models: diversity, novelty, limits, bits per character."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from torchmetrics.functional.text import bleu_score

from adlab.text.keywords import contains_keyword


def _words(text: str) -> list[str]:
    return text.lower().split()


def _canonical(text: str) -> str:
    return " ".join(text.lower().split())


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all n-grams of all texts (1 = no repetition); 0 when there are none."""
    grams = [tuple(words[i : i + n]) for words in map(_words, texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def self_bleu(texts: Sequence[str], max_order: int = 4) -> float:
    """Mean smoothed BLEU of each text against all the others (1 = all alike, lower = more diverse).

    Texts are lower-cased. Headlines are often shorter than four words, where BLEU-4 is 0 by definition,
    so a text of w words is scored with n-grams up to min(max_order, w). A set of fewer than two non-empty
    texts has no self-BLEU (returns 0).
    """
    texts = [" ".join(_words(t)) for t in texts if t.strip()]
    if len(texts) < 2:
        return 0.0
    scores = [
        float(
            bleu_score(
                [text], [texts[:i] + texts[i + 1 :]], n_gram=min(max_order, len(text.split())), smooth=True
            )
        )
        for i, text in enumerate(texts)
    ]
    return sum(scores) / len(scores)


def novelty(texts: Sequence[str], training_texts: Iterable[str]) -> float:
    """Share of texts that are not a training text (case and whitespace ignored)."""
    if not texts:
        return 0.0
    seen = {_canonical(t) for t in training_texts}
    return sum(_canonical(t) not in seen for t in texts) / len(texts)


def length_pass_rate(texts: Sequence[str], max_chars: int) -> float:
    """Share of texts within `max_chars` characters (a platform's limit: 30 for search-ad headlines)."""
    return sum(len(t) <= max_chars for t in texts) / len(texts) if texts else 0.0


def keyword_inclusion(texts: Sequence[str], keywords: Sequence[str | None]) -> float:
    """Share of texts that contain their requested keyword, among texts that were given one (NaN if none)."""
    pairs = [(t, k) for t, k in zip(texts, keywords, strict=True) if k]
    return sum(contains_keyword(t, k) for t, k in pairs) / len(pairs) if pairs else float("nan")


def bits_per_char(nll_nats: float, chars: int) -> float:
    """Bits per character from a summed negative log-likelihood in nats; comparable across tokenizers
    when `chars` counts the characters of the texts (plus one end-of-text each) the NLL was summed over."""
    return nll_nats / (math.log(2) * chars)

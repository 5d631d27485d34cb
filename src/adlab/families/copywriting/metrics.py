"""Metrics of generated ad copy and of language models: diversity, novelty, limits, bits per character."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from adlab.data.keywords import contains_keyword


def _words(text: str) -> list[str]:
    return text.lower().split()


def _canonical(text: str) -> str:
    return " ".join(text.lower().split())


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct word n-grams over all n-grams of all texts (1 = no repetition); 0 when there are none."""
    grams = [tuple(words[i : i + n]) for words in map(_words, texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def _ngram_counts(words: Sequence[str], n: int) -> Counter:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def sentence_bleu(
    hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_order: int = 4
) -> float:
    """BLEU of one tokenized hypothesis against tokenized references: n-gram orders up to
    min(max_order, hypothesis length), add-one smoothing of the 2..N-gram precisions (Lin & Och, 2004),
    brevity penalty of the closest reference length.

    Written here because torchmetrics' `bleu_score` returns 0 whenever any order has no match, even with
    `smooth=True`, which makes it 0 for nearly every pair of short headlines.
    """
    if not hypothesis or not references:
        return 0.0
    # a 3-word headline has no 4-grams: average the orders it has instead of counting empty ones as 1
    order = min(max_order, len(hypothesis))
    log_precision = 0.0
    for n in range(1, order + 1):
        counts = _ngram_counts(hypothesis, n)
        most: Counter = Counter()
        for reference in references:
            most |= _ngram_counts(reference, n)
        matches = sum(min(count, most[gram]) for gram, count in counts.items())
        total = max(len(hypothesis) - n + 1, 0)
        if n == 1:
            if matches == 0:
                return 0.0
            log_precision += math.log(matches / total)
        else:
            log_precision += math.log((matches + 1) / (total + 1))
    closest = min((abs(len(r) - len(hypothesis)), len(r)) for r in references)[1]
    brevity = 1.0 if len(hypothesis) > closest else math.exp(1 - closest / len(hypothesis))
    return brevity * math.exp(log_precision / order)


def self_bleu(texts: Sequence[str], max_order: int = 4) -> float:
    """Mean BLEU of each text against all the others (1 = all alike, lower = more diverse).

    Texts are lower-cased and split on whitespace. A set of fewer than two non-empty texts has no self-BLEU
    (returns 0).
    """
    tokenized = [_words(t) for t in texts if t.strip()]
    if len(tokenized) < 2:
        return 0.0
    scores = [
        sentence_bleu(words, tokenized[:i] + tokenized[i + 1 :], max_order)
        for i, words in enumerate(tokenized)
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

"""Character n-gram language model with interpolated modified Kneser-Ney smoothing (Chen & Goodman, 1998).

The baseline every copywriting model must beat on bits per character: fitted on the training texts the
neural model sees, its order chosen on val, reported on val and test (`baseline/ngram/{val,test}/bpc`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from adlab.errors import AdlabError
from adlab.families.copywriting.metrics import bits_per_char

# sentence start and end: private-use characters that never occur in real text
START, END = "\ue000", "\ue001"
MIN_DISCOUNT = 0.01


def _discounts(counts: Counter) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts D1, D2, D3+ from the count-of-counts (Chen & Goodman's estimates)."""
    n = Counter(min(c, 4) for c in counts.values())
    n1, n2, n3, n4 = (n.get(k, 0) for k in (1, 2, 3, 4))
    if not (n1 and n2 and n3 and n4):  # tiny data: fall back to the plain KN discount
        d = n1 / (n1 + 2 * n2) if n1 else 0.5
        estimates = (d, d, d)
    else:
        y = n1 / (n1 + 2 * n2)
        estimates = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    # a discount never exceeds the count it applies to, and never reaches 0: every order must leave some
    # mass for the lower ones, or a character unseen in a context would get probability 0
    return tuple(min(max(d, MIN_DISCOUNT), float(c)) for c, d in enumerate(estimates, start=1))  # type: ignore[return-value]


class _Level:
    """The counts of one order: n-gram -> count, and per context (total, #count=1, #count=2, #count>=3)."""

    def __init__(self, counts: Counter):
        self.counts = counts
        self.discounts = _discounts(counts)
        stats: dict[str, list[int]] = {}
        for gram, count in counts.items():
            entry = stats.setdefault(gram[:-1], [0, 0, 0, 0])
            entry[0] += count
            entry[min(count, 3)] += 1
        d1, d2, d3 = self.discounts
        # per context: (total, back-off weight) so each lookup is two dict reads
        self.contexts = {ctx: (s, (d1 * a + d2 * b + d3 * c) / s) for ctx, (s, a, b, c) in stats.items()}

    def interpolate(self, context: str, symbol: str, lower: float) -> float:
        entry = self.contexts.get(context)
        if entry is None:  # unseen context: all the mass goes to the lower order
            return lower
        total, backoff = entry
        count = self.counts.get(context + symbol, 0)
        discounted = count - self.discounts[min(count, 3) - 1] if count else 0.0
        return discounted / total + backoff * lower


class CharNgramLM:
    """Interpolated modified Kneser-Ney character LM of every order up to `max_order`.

    The highest order of a model uses raw counts, lower orders continuation counts (how many distinct
    characters precede an n-gram); one fit serves every order <= `max_order`, so the order can be chosen
    on val without refitting. Each text is padded with `max_order - 1` start symbols and ends with an end
    symbol, which is predicted like a character (bits per character divide by characters + 1 per text).
    """

    def __init__(self, max_order: int = 10):
        if max_order < 1:
            raise AdlabError(f"n-gram max order {max_order}: expected >= 1")
        self.max_order = max_order
        self.raw: list[_Level] = []
        self.continuation: list[_Level] = []
        self.vocabulary_size = 0

    def _padded(self, text: str) -> str:
        return START * (self.max_order - 1) + text + END

    def fit(self, texts: Iterable[str]) -> CharNgramLM:
        """Count every n-gram of the texts up to `max_order`."""
        sequences = [self._padded(t) for t in texts]
        if not sequences:
            raise AdlabError("n-gram baseline: no training texts")
        first = self.max_order - 1
        raw = [
            Counter(s[i - k + 1 : i + 1] for s in sequences for i in range(first, len(s)))
            for k in range(1, self.max_order + 1)
        ]
        self.raw = [_Level(c) for c in raw]
        continuation = []
        for k in range(1, self.max_order):
            counts: Counter = Counter()
            for gram in raw[
                k
            ]:  # the (k+1)-grams: each distinct one adds a left extension of its k-gram suffix
                counts[gram[1:]] += 1
            continuation.append(_Level(counts))
        self.continuation = continuation
        # every training character, the end symbol, and one bucket for unseen characters
        self.vocabulary_size = len(raw[0]) + 1
        return self

    def text_bits(self, text: str, orders: Sequence[int]) -> list[float]:
        """Bits of the text (end symbol included) under each order in `orders`."""
        if not self.raw:
            raise RuntimeError("fit the n-gram model first")
        sequence = self._padded(text)
        bits = [0.0] * len(orders)
        top = max(orders)
        for i in range(self.max_order - 1, len(sequence)):
            symbol = sequence[i]
            # lower orders (continuation counts) are shared by every model order
            lower = [1.0 / self.vocabulary_size]
            for k in range(1, top):
                lower.append(self.continuation[k - 1].interpolate(sequence[i - k + 1 : i], symbol, lower[-1]))
            for position, order in enumerate(orders):
                probability = self.raw[order - 1].interpolate(
                    sequence[i - order + 1 : i], symbol, lower[order - 1]
                )
                bits[position] -= math.log2(probability)
        return bits

    def bits_per_char(self, texts: Sequence[str], orders: Sequence[int]) -> list[float]:
        """Bits per character (end symbols counted as characters) of the texts under each order."""
        totals = [0.0] * len(orders)
        for text in texts:
            for position, value in enumerate(self.text_bits(text, orders)):
                totals[position] += value
        chars = sum(len(t) + 1 for t in texts)
        # bits_per_char takes nats: convert so the division lives in one place
        return [bits_per_char(total * math.log(2), chars) for total in totals]


class NgramBaseline:
    """Character n-gram baseline on the data module's split; the order is chosen on val bits per character.

    Args:
        orders: candidate orders (the model is fitted once up to the largest).
        extra_text: also fit on the training rows' auxiliary text (`data.source.extra_text`), as the neural
            model does when it is given one.
    """

    def __init__(self, orders: Sequence[int] = (3, 4, 5, 6, 7, 8, 10, 12), extra_text: bool = True):
        orders = sorted({int(o) for o in orders})
        if not orders or orders[0] < 1:
            raise AdlabError(f"baselines.ngram.orders={orders}: expected orders >= 1")
        self.orders = orders
        self.extra_text = extra_text
        self.model: CharNgramLM | None = None
        self.order: int | None = None

    def evaluate(self, datamodule: Any) -> dict[str, float]:
        """Fit on the training texts; `{"val/bpc", "test/bpc", "val/order"}` at the order best on val.

        `datamodule` is a set-up `MarketingDataModule` over a text source: its validated rows
        (`datamodule.raw`, a `TextRaw`) give each split's texts (`TextRaw.split_texts`).
        """
        texts = datamodule.raw.split_texts(datamodule.splits, extra=self.extra_text)
        self.model = CharNgramLM(max(self.orders)).fit(texts["train"])
        val = self.model.bits_per_char(texts["val"], self.orders)
        best = min(range(len(self.orders)), key=val.__getitem__)
        self.order = self.orders[best]
        test = self.model.bits_per_char(texts["test"], [self.order])[0]
        return {"val/bpc": val[best], "test/bpc": test, "val/order": float(self.order)}

"""Text source: a CSV or parquet file with a text column (headlines, descriptions) and condition columns.

Each row becomes one token sequence for a conditional language model:

    <col1=value> ... <colK=value> [<keyword> keyword tokens] <text> text tokens <eos> <pad> ...

The control-token prefix carries the conditions; a keyword drawn from the text itself is added to a share of
the training rows (never to val/test rows, whose bits per character must not be helped by a word of the
answer), so that users can ask for a keyword at generation time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from adlab.data.features import DataMeta, TextFeatures, TextMeta
from adlab.data.keywords import draw_keyword
from adlab.data.sources.base import BuiltData, NewData
from adlab.data.sources.tabular import read_table
from adlab.data.tokenizers import EXTRA, KEYWORD, TEXT, TextTokenizer, control_token
from adlab.errors import AdlabError

MISSING_VALUE = "?"  # condition value of a missing cell, and of values unseen in training
SENTENCE_END = re.compile(r"[.!?…](?=\s|$)")


def normalise_whitespace(values: pd.Series) -> pd.Series:
    """Collapse every run of whitespace (newlines, tabs, non-breaking spaces) to one space and strip."""
    return values.map(lambda text: " ".join(str(text).split()), na_action="ignore").fillna("")


def cut_at_sentence(text: str, max_chars: int) -> str:
    """The longest prefix of whole sentences within `max_chars`; a word boundary when no sentence fits."""
    if len(text) <= max_chars:
        return text
    ends = [
        match.end() for match in SENTENCE_END.finditer(text, 0, max_chars + 1) if match.end() <= max_chars
    ]
    if ends:
        return text[: ends[-1]].strip()
    space = text.rfind(" ", 0, max_chars + 1)
    return text[: space if space > 0 else max_chars].strip()


def condition_strings(values: pd.Series) -> pd.Series:
    """Condition values as strings: integral numbers without ".0", missing cells as `MISSING_VALUE`."""
    if pd.api.types.is_float_dtype(values) and values.dropna().map(float.is_integer).all():
        values = values.astype("Int64")
    return values.astype("string").fillna(MISSING_VALUE).str.strip().replace("", MISSING_VALUE).astype(str)


def _clean(values: pd.Series, max_chars: int | None) -> pd.Series:
    """Whitespace-normalised texts, cut at a sentence end within `max_chars` when given."""
    texts = normalise_whitespace(values)
    return texts.map(lambda text: cut_at_sentence(text, int(max_chars))) if max_chars else texts


def _pack(
    examples: list[tuple[list[int], list[int], int, int]], length: int, tokenizer: TextTokenizer
) -> dict:
    """Tensors of one split from `(prefix ids, text ids, characters + 1, source row)` examples."""
    tokens = torch.full((len(examples), length), tokenizer.pad_id, dtype=torch.int64)
    for position, (prefix, text, _, _) in enumerate(examples):
        sequence = [*prefix, *text, tokenizer.eos_id]
        tokens[position, : len(sequence)] = torch.tensor(sequence)
    return {
        "tokens": tokens,
        "prefix_length": torch.tensor([len(e[0]) for e in examples], dtype=torch.int64),
        # every character plus the end of the text: what bits per character divide by
        "chars": torch.tensor([e[2] for e in examples], dtype=torch.int64),
        "row": torch.tensor([e[3] for e in examples], dtype=torch.int64),
    }


@dataclass
class TextRaw:
    """Validated texts: `texts` (n,) str; `conditions` (n, k) str frame; `groups` = texts (duplicates stay together)."""

    texts: np.ndarray
    conditions: pd.DataFrame
    labels: np.ndarray
    groups: np.ndarray
    dropped_empty: int
    duplicates: int
    extra: np.ndarray | None = None  # (n,) auxiliary text of each row ("" when none), see `extra_text`
    row_ids: np.ndarray | None = None  # (n,) each kept row's position in the file (0-based)
    id_name: str = "row"

    def split_texts(self, splits: dict[str, np.ndarray], extra: bool = False) -> dict[str, list[str]]:
        """Each split's texts, in row order; with `extra`, the train split also holds its rows' non-empty
        auxiliary texts after them (the extra sequences a model trains on). Baselines fit on these."""
        texts = {stage: list(self.texts[rows]) for stage, rows in splits.items()}
        if extra and self.extra is not None:
            texts["train"] += [text for text in self.extra[splits["train"]] if text]
        return texts


class TextSource:
    """Read texts and their conditions from a CSV/parquet file, tokenize them for a conditional LM.

    Args:
        path: CSV (UTF-8) or parquet file.
        text: the text column (headlines, descriptions ...).
        conditions: condition columns (department, class, rating ...); each value becomes a control token.
        tokenizer: "char" (one token per character) or "bpe" (`adlab.data.tokenizers.TextTokenizer`);
            fitted on the training split only.
        vocab_size: BPE vocabulary size (ignored for "char").
        keyword_rate: share of training rows whose prefix carries a keyword drawn from their text.
        sentence_chars: cut each text at the last sentence end within this many characters (descriptions
            from review text, e.g. 90); null keeps texts whole.
        extra_text: a column of auxiliary training text (e.g. "Review Text" beside titles): the training
            rows' values, cut at a sentence end within `extra_chars`, are added as extra training sequences
            `<conditions> <extra> text <eos>` (in-domain language for the model; never in val/test).
        extra_chars: cut of the auxiliary texts (null: whole texts).
        drop_duplicates: keep only the first row of each exact duplicate text (counted in meta). Either way
            duplicates never straddle splits: identical texts form one group for the splitter.
        seed: seed of the keyword draws.
        name: dataset name used in messages and metadata.
    """

    def __init__(
        self,
        path: str,
        text: str,
        conditions: list[str] | None = None,
        tokenizer: str = "char",
        vocab_size: int = 2000,
        keyword_rate: float = 0.5,
        sentence_chars: int | None = None,
        drop_duplicates: bool = False,
        extra_text: str | None = None,
        extra_chars: int | None = 300,
        seed: int = 0,
        name: str = "text",
    ):
        if not 0.0 <= keyword_rate <= 1.0:
            raise AdlabError(f"data.source.keyword_rate={keyword_rate}: expected a share between 0 and 1")
        if isinstance(conditions, str):
            conditions = [conditions]
        self.path = str(path)
        self.text = text
        self.conditions = list(conditions or [])
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.keyword_rate = keyword_rate
        self.sentence_chars = sentence_chars
        self.drop_duplicates = drop_duplicates
        self.extra_text = extra_text
        self.extra_chars = extra_chars
        self.seed = seed
        self.name = name

    def load(self) -> TextRaw:
        """Read the file, check the columns, normalise whitespace, drop (and count) empty texts."""
        frame = read_table(
            self.path, text_columns=[self.text, *([self.extra_text] if self.extra_text else [])]
        )
        wanted = [self.text, *self.conditions, *([self.extra_text] if self.extra_text else [])]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise AdlabError(
                f"{self.path}: columns {missing} not found; columns are {list(frame.columns)[:20]}"
            )
        texts = _clean(frame[self.text], self.sentence_chars)
        keep = (texts != "").to_numpy()
        if not keep.any():
            raise AdlabError(f"{self.path}: text column '{self.text}' holds no non-empty text")
        dropped_empty = int((~keep).sum())
        duplicates = int((texts[keep].duplicated()).sum())
        if self.drop_duplicates:
            keep = keep & ~texts.duplicated().to_numpy()
        texts = texts[keep].to_numpy(dtype=object)
        conditions = pd.DataFrame(
            {c: condition_strings(frame[c][keep]).to_numpy() for c in self.conditions},
            index=range(len(texts)),
        )
        # stratify the split on the first condition, so every department is in every split
        labels = (
            pd.factorize(conditions[self.conditions[0]])[0]
            if self.conditions
            else np.zeros(len(texts), dtype=int)
        )
        extra = (
            _clean(frame[self.extra_text], self.extra_chars)[keep].to_numpy(dtype=object)
            if self.extra_text
            else None
        )
        return TextRaw(
            texts,
            conditions,
            labels,
            texts.astype(str),
            dropped_empty,
            duplicates,
            extra,
            np.flatnonzero(keep),
        )

    def build(self, raw: TextRaw, splits: dict[str, np.ndarray]) -> BuiltData:
        """Fit the tokenizer and condition vocabularies on train; token tensors for every split, a
        `TextMeta` and the fitted `TextFeatures` (tokenizer JSON, distinct train texts)."""
        train_rows = splits["train"]
        values = {
            c: sorted(set(raw.conditions[c].iloc[train_rows]) - {MISSING_VALUE}) for c in self.conditions
        }
        controls = [control_token(c, v) for c in self.conditions for v in [MISSING_VALUE, *values[c]]]
        extra_rows = [int(r) for r in train_rows if raw.extra is not None and raw.extra[r]]
        tokenizer = TextTokenizer.train(
            [*(raw.texts[i] for i in train_rows), *(raw.extra[i] for i in extra_rows)],
            self.tokenizer,
            self.vocab_size,
            controls,
        )
        encoded = tokenizer.encode_batch(list(raw.texts))
        rng = np.random.default_rng(self.seed)
        keywords: dict[int, str] = {}
        for row in train_rows:
            if rng.random() < self.keyword_rate and (word := draw_keyword(raw.texts[row], rng)):
                keywords[int(row)] = word
        keyword_ids = dict(zip(keywords, tokenizer.encode_batch(list(keywords.values())), strict=True))
        prefixes = self._prefixes(raw, tokenizer, values, keyword_ids)
        examples = {
            stage: [(prefixes[r], encoded[r], len(raw.texts[r]) + 1, int(r)) for r in rows]
            for stage, rows in splits.items()
        }
        if extra_rows:
            conditions = len(self.conditions)
            extra_prefix = tokenizer.token_id(EXTRA)
            extras = tokenizer.encode_batch([raw.extra[r] for r in extra_rows])
            examples["train"] += [
                ([*prefixes[r][:conditions], extra_prefix], ids, len(raw.extra[r]) + 1, r)
                for r, ids in zip(extra_rows, extras, strict=True)
            ]
        length = max(len(p) + len(e) + 1 for stage in examples.values() for p, e, _, _ in stage)
        tensors = {stage: _pack(rows, length, tokenizer) for stage, rows in examples.items()}
        train_texts = sorted(set(raw.texts[train_rows]))
        meta = TextMeta(
            dataset=self.name,
            rows={stage: int(len(rows)) for stage, rows in splits.items()},
            tokenizer=self.tokenizer,
            vocab_size=tokenizer.vocab_size,
            max_tokens=length,
            conditions={
                c: {v: int(n) for v, n in raw.conditions[c].iloc[train_rows].value_counts().items()}
                for c in self.conditions
            },
            # joint frequencies, so that generation draws consistent combinations (no "Dresses" + "Jeans")
            condition_combinations=[
                [*combination, int(count)]
                for combination, count in raw.conditions.iloc[train_rows].value_counts().items()
            ]
            if self.conditions
            else [],
            dropped_empty=raw.dropped_empty,
            extra_rows=len(extra_rows),
            duplicate_rows=raw.duplicates,
            train_chars_per_token=float(
                sum(len(raw.texts[r]) + 1 for r in train_rows) / sum(len(encoded[r]) + 1 for r in train_rows)
            ),
        )
        features = TextFeatures(tokenizer.to_json(), self.text, self.conditions, train_texts)
        return BuiltData(tensors, meta, features)

    def build_new(self, meta: DataMeta, preprocessing: dict, labelled: bool = True) -> NewData:
        """The texts of the file at `path` tokenized with a trained run's tokenizer (nothing refitted).

        Each row becomes `<conditions> <text> text <eos>` as a val/test row does (no keyword). A condition
        value the train split never had becomes the column's `?` token and is counted in `NewData.unseen`;
        empty texts are dropped; a sequence longer than the run's `max_tokens` is cut there (its end, and
        `<eos>`, are not scored; `chars` then counts the characters kept). A text is its own label, so
        `labelled` changes nothing.
        """
        meta.require(TextMeta, "model=copy_*")
        features = TextFeatures.from_dict(preprocessing)
        tokenizer = TextTokenizer.from_json(features.tokenizer)
        frame = read_table(
            self.path, text_columns=[self.text, *([self.extra_text] if self.extra_text else [])]
        )
        missing = [c for c in [features.text, *features.conditions] if c not in frame.columns]
        if missing:
            raise AdlabError(
                f"data.source.path={self.path}: columns {missing} not found; the model reads the text column "
                f"'{features.text}' and the conditions {features.conditions}"
            )
        texts = _clean(frame[features.text], self.sentence_chars)
        keep = (texts != "").to_numpy()
        if not keep.any():
            raise AdlabError(
                f"data.source.path={self.path}: text column '{features.text}' holds no non-empty text"
            )
        texts = texts[keep].to_numpy(dtype=object)
        columns, unseen = [], {}
        for column in features.conditions:
            values = condition_strings(frame[column][keep])
            known = set(meta.conditions.get(column, {})) | {MISSING_VALUE}
            missing_id = tokenizer.token_id(control_token(column, MISSING_VALUE))
            ids = {v: tokenizer.token_id(control_token(column, v)) for v in known if v != MISSING_VALUE}
            new = ~values.isin(known)
            if new.any():
                unseen[column] = int(new.sum())
            columns.append([ids.get(v, missing_id) for v in values])
        text_id, limit = tokenizer.token_id(TEXT), int(meta.max_tokens)
        examples, cut = [], 0
        for row, encoded in enumerate(tokenizer.encode_batch(list(texts))):
            prefix = [column[row] for column in columns] + [text_id]
            sequence = [*prefix, *encoded, tokenizer.eos_id]
            chars = len(texts[row]) + 1
            if len(sequence) > limit:
                cut += 1
                sequence = sequence[:limit]
                chars = len(tokenizer.tokenizer.decode(sequence[len(prefix) :]))
            examples.append((sequence, len(prefix), max(chars, 1)))
        length = max(len(sequence) for sequence, _, _ in examples)
        tokens = torch.full((len(examples), length), tokenizer.pad_id, dtype=torch.int64)
        for position, (sequence, _, _) in enumerate(examples):
            tokens[position, : len(sequence)] = torch.tensor(sequence)
        tensors = {
            "tokens": tokens,
            "prefix_length": torch.tensor([e[1] for e in examples], dtype=torch.int64),
            "chars": torch.tensor([e[2] for e in examples], dtype=torch.int64),
            "row": torch.arange(len(examples), dtype=torch.int64),
        }
        notes = []
        if (~keep).any():
            notes.append(f"{int((~keep).sum())} rows with an empty text left out")
        if cut:
            notes.append(f"{cut} text(s) longer than the model's {limit} tokens cut there")
        return NewData(tensors, np.flatnonzero(keep), "row", unseen, notes)

    def _prefixes(
        self,
        raw: TextRaw,
        tokenizer: TextTokenizer,
        values: dict[str, list[str]],
        keyword_ids: dict[int, list[int]],
    ) -> list[list[int]]:
        """Control-token prefix of every row; values unseen in training map to the column's `?` token."""
        columns = []
        for column in self.conditions:
            known = set(values[column])
            ids = {v: tokenizer.token_id(control_token(column, v)) for v in [MISSING_VALUE, *known]}
            missing = ids[MISSING_VALUE]
            columns.append([ids.get(v, missing) for v in raw.conditions[column]])
        keyword, text = tokenizer.token_id(KEYWORD), tokenizer.token_id(TEXT)
        prefixes = []
        for row in range(len(raw.texts)):
            prefix = [column[row] for column in columns]
            if row in keyword_ids:
                prefix += [keyword, *keyword_ids[row]]
            prefixes.append([*prefix, text])
        return prefixes

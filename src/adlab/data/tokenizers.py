"""The text source's token vocabulary: character-level or BPE, built with the `tokenizers` library.

Both kinds are a `tokenizers` BPE model over a Metaspace pre-tokenizer (spaces become "▁", so decoding is a
plain concatenation): the character-level tokenizer is a BPE with no merges, the BPE tokenizer merges up to
`vocab_size`. Control tokens (one per condition value, plus `<text>`, `<keyword>`, `<eos>` ...) are special
tokens of the same vocabulary, so one JSON string holds everything needed to encode a prompt.

Why this lives in `data/` and not in a family: the text source fits the tokenizer on the train split and
turns every row into token ids, so the vocabulary is part of the text batch contract, as the category
vocabularies are of the tabular one (`TabularFeatures`). A source never imports a model family, and a
tokenizer injected from the family through the data config would make every text dataset name one family.
What only a copy-writing model needs on top (per-token text pieces for decoding under a character limit,
the `tokenizer.json` artifact) is `CopyTokenizer` (families/copywriting/tokenizers.py), a subclass
rebuilt from the same JSON, so token ids are the same on both sides by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from adlab.errors import AdlabError

PAD, UNK, EOS, TEXT, KEYWORD = "<pad>", "<unk>", "<eos>", "<text>", "<keyword>"
# marks auxiliary training text (e.g. review bodies before titles): in-domain language, never generated
EXTRA = "<extra>"
SPECIAL_TOKENS = (PAD, UNK, EOS, TEXT, KEYWORD, EXTRA)
TOKENIZER_KINDS = ("char", "bpe")
SPACE_MARK = "▁"


def control_token(column: str, value: Any) -> str:
    """The control token of one condition value, e.g. `<Department Name=Dresses>`."""
    return f"<{column}={value}>"


class TextTokenizer:
    """A trained `tokenizers.Tokenizer` and the ids of its special tokens.

    Attributes:
        tokenizer: the underlying `tokenizers.Tokenizer` (special tokens in texts are split, never matched).
        vocab_size: number of token ids, special and control tokens included.
        pad_id, unk_id, eos_id, text_id, keyword_id, extra_id: ids of the special tokens.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.tokenizer.encode_special_tokens = True  # a review saying "<eos>" is text, not a control token
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.pad_id, self.unk_id, self.eos_id, self.text_id, self.keyword_id, self.extra_id = (
            self.token_id(token) for token in SPECIAL_TOKENS
        )

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        kind: str = "char",
        vocab_size: int = 2000,
        control_tokens: Sequence[str] = (),
    ) -> TextTokenizer:
        """Fit a tokenizer on (training) texts; returns an instance of the class it is called on.

        Args:
            texts: training texts, whitespace-normalised.
            kind: "char" (every character a token) or "bpe" (byte-pair merges up to `vocab_size`).
            vocab_size: BPE vocabulary size, alphabet and special tokens included (ignored for "char").
            control_tokens: condition tokens added as special tokens after the alphabet.
        """
        if kind not in TOKENIZER_KINDS:
            raise AdlabError(f"data.source.tokenizer={kind!r}: expected one of {TOKENIZER_KINDS}")
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
        tokenizer.decoder = decoders.Metaspace(prepend_scheme="never")
        # vocab_size 0 leaves only the alphabet: no merges, one token per character
        trainer = trainers.BpeTrainer(
            vocab_size=0 if kind == "char" else int(vocab_size),
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
        )
        tokenizer.train_from_iterator(texts, trainer)
        tokenizer.add_special_tokens(list(control_tokens))
        return cls(tokenizer)

    def token_id(self, token: str) -> int:
        """The id of one token (a special or control token, or a vocabulary entry); `KeyError` if unknown."""
        index = self.tokenizer.token_to_id(token)
        if index is None:
            raise KeyError(token)
        return index

    def encode(self, text: str) -> list[int]:
        """Token ids of a text (no control tokens, no end-of-text)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, as `encode` gives them."""
        return [
            encoding.ids for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ]

    def to_json(self) -> str:
        """The whole tokenizer (vocabulary, merges, special and control tokens) as `tokenizers` JSON."""
        return self.tokenizer.to_str()

    @classmethod
    def from_json(cls, text: str) -> TextTokenizer:
        """Rebuild a tokenizer (of the class it is called on) from `to_json`'s output."""
        return cls(Tokenizer.from_str(text))

"""Character-level and BPE tokenizers for ad copy, built with the `tokenizers` library.

Both kinds are a `tokenizers` BPE model over a Metaspace pre-tokenizer (spaces become "▁", so decoding is a
plain concatenation): the character-level tokenizer is a BPE with no merges, the BPE tokenizer merges up to
`vocab_size`. Control tokens (one per condition value, plus `<text>`, `<keyword>`, `<eos>` ...) are special
tokens of the same vocabulary, so one JSON string holds everything needed to encode a prompt.
"""

from __future__ import annotations

import json
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


class CopyTokenizer:
    """A trained `tokenizers.Tokenizer` plus the lookups decoding needs.

    Attributes:
        tokenizer: the underlying `tokenizers.Tokenizer` (special tokens in texts are split, never matched).
        pieces: id -> the text a token contributes when decoded ("" for control tokens).
        piece_chars: id -> characters that token adds to a decoded text (an upper bound at a text's start,
            where a leading space is stripped); the character limit is enforced with it.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.tokenizer.encode_special_tokens = True  # a review saying "<eos>" is text, not a control token
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        special = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
        self.pieces = [""] * self.vocab_size
        for token, index in vocab.items():
            if token == UNK:
                self.pieces[index] = "\ufffd"
            elif token not in special:
                self.pieces[index] = token.replace(SPACE_MARK, " ")
        self.piece_chars = [len(piece) for piece in self.pieces]
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
    ) -> CopyTokenizer:
        """Fit a tokenizer on (training) texts.

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
        index = self.tokenizer.token_to_id(token)
        if index is None:
            raise KeyError(token)
        return index

    def encode(self, text: str) -> list[int]:
        """Token ids of a text (no control tokens, no end-of-text)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [
            encoding.ids for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; control tokens and padding decode to nothing, and decoding stops at `<eos>`."""
        pieces = []
        for index in ids:
            index = int(index)
            if index == self.eos_id:
                break
            pieces.append(self.pieces[index])
        return "".join(pieces).strip()

    def to_json(self) -> str:
        return self.tokenizer.to_str()

    @classmethod
    def from_json(cls, text: str) -> CopyTokenizer:
        return cls(Tokenizer.from_str(text))

    def save(self, path: Any) -> None:
        """Write the tokenizer as a `tokenizers` JSON file (loadable with `Tokenizer.from_file`)."""
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(json.dumps(json.loads(self.to_json()), ensure_ascii=False, indent=1))

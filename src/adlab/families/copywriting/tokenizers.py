"""`CopyTokenizer`: the text source's tokenizer plus what writing copy under a character limit needs.

The vocabulary itself (character-level or BPE, special and control tokens, fitted on the train split) is the
text source's (`adlab.data.tokenizers.TextTokenizer`, see there why it lives in `data/`); this subclass is
rebuilt from the same JSON and adds the per-token text pieces that decoding and the character limit use.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tokenizers import Tokenizer

from adlab.data.tokenizers import SPACE_MARK, UNK, TextTokenizer


class CopyTokenizer(TextTokenizer):
    """A text-source tokenizer plus the lookups decoding needs.

    Attributes:
        pieces: id -> the text a token contributes when decoded ("" for control tokens).
        piece_chars: id -> characters that token adds to a decoded text (an upper bound at a text's start,
            where a leading space is stripped); the character limit is enforced with it.
    """

    def __init__(self, tokenizer: Tokenizer):
        super().__init__(tokenizer)
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        special = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
        self.pieces = [""] * self.vocab_size
        for token, index in vocab.items():
            if token == UNK:
                self.pieces[index] = "\ufffd"
            elif token not in special:
                self.pieces[index] = token.replace(SPACE_MARK, " ")
        self.piece_chars = [len(piece) for piece in self.pieces]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; control tokens and padding decode to nothing, and decoding stops at `<eos>`."""
        pieces = []
        for index in ids:
            index = int(index)
            if index == self.eos_id:
                break
            pieces.append(self.pieces[index])
        return "".join(pieces).strip()

    def save(self, path: Any) -> None:
        """Write the tokenizer as a `tokenizers` JSON file (loadable with `Tokenizer.from_file`)."""
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(json.dumps(json.loads(self.to_json()), ensure_ascii=False, indent=1))

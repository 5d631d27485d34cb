"""Sampling ad copy from a causal LM under a hard character limit, with banned words.

The limit is enforced while decoding, not by cutting afterwards: at every step a token whose characters
would take the text past `max_chars` is masked out, and `<eos>` stays available, so every sample ends
as whole tokens within the limit. Banned words are rejected the same way: a sampled token that would
start a banned word is masked and the step is resampled.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from adlab.data.keywords import contains_keyword
from adlab.errors import AdlabError
from adlab.families.copywriting.tokenizers import CopyTokenizer

WORD_ENDS = set(" .,;:!?)…")  # a next token starting with one of these means the last word was whole
MAX_RESAMPLES = 20  # a step that keeps hitting banned words ends the text instead


@dataclass
class DecodingOptions:
    """How to sample.

    Attributes:
        max_chars: hard limit on characters per text (30: a search-ad headline; 90: a description).
        temperature: softmax temperature (1 = the model's distribution; lower = safer, less varied).
        top_k: keep the k most likely tokens (0 = all).
        top_p: nucleus sampling: keep the smallest set of tokens whose probability reaches p (1 = all).
        banned_words: words no sample may contain (case-insensitive; also bans words starting with them).
        use_cache: reuse attention keys/values (GPT) between steps; off recomputes the whole prefix.
        force_keyword: guarantee the prompt's keyword: when a text would end, or run out of room, without
            it, the keyword's tokens are written next (the keyword itself must fit in `max_chars`).
        whole_words: a text the limit cut inside a word (the model would have continued the word) drops
            that word ("Perfect for a day at the bea" -> "Perfect for a day at the"), unless that empties
            the text or drops the keyword.
    """

    max_chars: int = 30
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    banned_words: Sequence[str] = ()
    use_cache: bool = True
    force_keyword: bool = False
    whole_words: bool = True

    def __post_init__(self) -> None:
        # sampling settings come from the command line (adlab-generate) or a model config: named on one line
        if not self.temperature > 0:
            raise AdlabError(
                f"temperature={self.temperature}: expected a positive number (1: the model's own)"
            )
        if self.top_k < 0:
            raise AdlabError(f"top_k={self.top_k}: expected 0 (off) or a positive number of tokens")
        if not 0 < self.top_p <= 1:
            raise AdlabError(f"top_p={self.top_p}: expected a share in (0, 1] (1: off)")
        if isinstance(self.banned_words, str) or any(not str(word).strip() for word in self.banned_words):
            raise AdlabError(
                f"banned_words={self.banned_words!r}: expected a list of words, e.g. banned_words=[cheap,free]"
            )


def filter_logits(logits: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """Temperature, top-k and nucleus filtering of `(batch, vocab)` logits; removed tokens get -inf."""
    logits = logits / max(float(temperature), 1e-6)
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, int(top_k), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
        # drop a token when the tokens before it already reach top_p (the first token always stays)
        drop = cumulative - torch.softmax(ordered, dim=-1) >= top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


class BannedWords:
    """Detects a banned word at the end of a growing text (as a word or a word start)."""

    def __init__(self, words: Sequence[str]):
        words = [w.strip().lower() for w in words if w and w.strip()]
        self.pattern = re.compile("|".join(r"(?<!\w)" + re.escape(w) for w in words)) if words else None

    def hit(self, text: str) -> bool:
        return self.pattern is not None and self.pattern.search(text.lower()) is not None


@torch.no_grad()
def sample_copy(
    model: Any,
    tokenizer: CopyTokenizer,
    prompts: Sequence[Sequence[int]],
    options: DecodingOptions,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    keywords: Sequence[str | None] | None = None,
) -> tuple[list[str], int]:
    """Sample one text per prompt, all prompts in one batch.

    Prompts may differ in length (a keyword adds tokens): the batch starts at the shortest prompt and a
    row still inside its prompt is fed its next prompt token instead of a sample, so no padding ever
    enters the model (an RNN state or attention cache stays exact).

    Args:
        model: a net with `decode_step(tokens, cache) -> (logits (batch, vocab), cache)` (`adlab.families.copywriting.nets`).
        tokenizer: the tokenizer the model was trained with.
        prompts: control-token prefixes ending with `<text>` (lists of token ids).
        options: limits and sampling settings.
        generator: random generator of the draws (on `device`).
        device: where the model lives.
        keywords: the keyword of each prompt (None: none), for `options.force_keyword`.

    Returns:
        The texts (each at most `options.max_chars` characters) and the number of tokens sampled.
    """
    batch = len(prompts)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    shortest, longest = int(lengths.min()), int(lengths.max())
    padded = torch.full((batch, longest), tokenizer.pad_id, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        padded[row, : len(prompt)] = torch.as_tensor(list(prompt), dtype=torch.long)
    piece_chars = torch.tensor(tokenizer.piece_chars, device=device)
    # control tokens, padding and <unk> decode to nothing useful: never sampled inside a text
    never = piece_chars == 0
    never[tokenizer.unk_id] = True
    never[tokenizer.eos_id] = False
    banned = BannedWords(options.banned_words)
    chars = torch.zeros(batch, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    cut_by_limit = torch.zeros(batch, dtype=torch.bool, device=device)
    ends_word = torch.tensor([p[:1] in WORD_ENDS for p in tokenizer.pieces], device=device)
    ends_word[tokenizer.eos_id] = True
    texts = [""] * batch
    forcing = KeywordForcing(tokenizer, keywords, options) if options.force_keyword and keywords else None
    sequence = padded[:, :shortest]
    logits, cache = model.decode_step(sequence, None)
    sampled = 0
    # every text token adds >= 1 character, then <eos>: the loop always ends
    for position in range(shortest, longest + options.max_chars + 1):
        in_prompt = lengths > position
        room = (options.max_chars - chars).unsqueeze(1)
        blocked = never.unsqueeze(0) | (piece_chars.unsqueeze(0) > room)
        # an empty text is no headline: <eos> only once something was written, or when nothing else fits
        # (<eos> itself is never blocked above, so "nothing else fits" is: every other token blocked)
        nothing_else_fits = blocked.sum(dim=1) == blocked.shape[1] - 1
        blocked[:, tokenizer.eos_id] = (chars == 0) & ~nothing_else_fits
        scores = filter_logits(logits.float().masked_fill(blocked, float("-inf")), *_sampling(options))
        scores = torch.where(
            torch.isinf(scores).all(dim=1, keepdim=True), _eos_only(scores, tokenizer), scores
        )
        tokens = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator).squeeze(1)
        writing = ~done & ~in_prompt
        if banned.pattern is not None:
            tokens = _reject_banned(tokens, scores, texts, writing, tokenizer, banned, generator)
        if forcing is not None:
            tokens = forcing.apply(tokens, texts, chars, writing)
        tokens = torch.where(done, torch.full_like(tokens, tokenizer.eos_id), tokens)
        if position < longest:
            tokens = torch.where(in_prompt, padded[:, position], tokens)
        sampled += int(writing.sum())
        for row in writing.nonzero().flatten().tolist():
            texts[row] += tokenizer.pieces[int(tokens[row])]
        chars += torch.where(writing, piece_chars[tokens], 0)
        ending = writing & (tokens == tokenizer.eos_id)
        # cut mid-word when, without the limit, the model's favourite next token would continue the word
        favourite = logits.masked_fill(never.unsqueeze(0), float("-inf")).argmax(dim=1)
        cut_by_limit |= ending & nothing_else_fits & ~ends_word[favourite]
        done |= ending
        if bool(done.all()):
            break
        sequence = torch.cat([sequence, tokens.unsqueeze(1)], dim=1)
        if options.use_cache:
            logits, cache = model.decode_step(tokens.unsqueeze(1), cache)
        else:
            logits, _ = model.decode_step(sequence, None)
    texts = [text.strip() for text in texts]
    if options.whole_words:
        for row in cut_by_limit.nonzero().flatten().tolist():
            keyword = keywords[row] if keywords else None
            texts[row] = _drop_last_word(texts[row], keyword)
    return texts, sampled


def _drop_last_word(text: str, keyword: str | None) -> str:
    """The text without its last word (and trailing punctuation), unless that empties it or drops the keyword."""
    if " " not in text:
        return text
    shorter = text.rsplit(" ", 1)[0].rstrip(" ,;:-–")
    if not shorter or (
        keyword and contains_keyword(text, keyword) and not contains_keyword(shorter, keyword)
    ):
        return text
    return shorter


class KeywordForcing:
    """Writes a prompt's keyword when the text would otherwise end, or run out of room, without it."""

    def __init__(self, tokenizer: CopyTokenizer, keywords: Sequence[str | None], options: DecodingOptions):
        self.tokenizer = tokenizer
        self.max_chars = options.max_chars
        # keywords longer than the limit cannot be forced: the limit wins
        self.keywords = [k if k and len(k) <= options.max_chars else None for k in keywords]
        self.queues: list[list[int]] = [[] for _ in keywords]

    def apply(self, tokens: Tensor, texts: list[str], chars: Tensor, writing: Tensor) -> Tensor:
        """Replace sampled tokens `(batch,)` by keyword tokens where needed."""
        pieces = self.tokenizer.piece_chars
        for row in writing.nonzero().flatten().tolist():
            keyword = self.keywords[row]
            if self.queues[row]:
                tokens[row] = self.queues[row].pop(0)
                continue
            if keyword is None or contains_keyword(texts[row], keyword):
                continue
            token = int(tokens[row])
            room_after = self.max_chars - int(chars[row]) - pieces[token]
            # after this token the text needs room for a space and the keyword; forcing now needs no more
            # than that (the previous step kept it), and no space when nothing is written yet
            if token == self.tokenizer.eos_id or room_after < len(keyword) + 1:
                self.queues[row] = self.tokenizer.encode((" " if texts[row] else "") + keyword)
                tokens[row] = self.queues[row].pop(0)
        return tokens


def _sampling(options: DecodingOptions) -> tuple[float, int, float]:
    return options.temperature, options.top_k, options.top_p


def _eos_only(scores: Tensor, tokenizer: CopyTokenizer) -> Tensor:
    """Scores that allow only `<eos>` (for rows where the filters removed every token)."""
    forced = torch.full_like(scores, float("-inf"))
    forced[:, tokenizer.eos_id] = 0.0
    return forced


def _reject_banned(
    tokens: Tensor,
    scores: Tensor,
    texts: list[str],
    writing: Tensor,
    tokenizer: CopyTokenizer,
    banned: BannedWords,
    generator: torch.Generator | None,
) -> Tensor:
    """Resample rows whose new token would start a banned word; after `MAX_RESAMPLES` tries, end the text."""
    for row in writing.nonzero().flatten().tolist():
        row_scores = scores[row].clone()
        for _ in range(MAX_RESAMPLES):
            token = int(tokens[row])
            if token == tokenizer.eos_id or not banned.hit(texts[row] + tokenizer.pieces[token]):
                break
            row_scores[token] = float("-inf")
            if torch.isinf(row_scores).all():
                row_scores[tokenizer.eos_id] = 0.0
            tokens[row] = torch.multinomial(torch.softmax(row_scores, dim=-1), 1, generator=generator)[0]
        else:
            tokens[row] = tokenizer.eos_id
    return tokens

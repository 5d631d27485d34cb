"""Causal language models for ad copy: a recurrent LM (LSTM/GRU) and a GPT-2 style decoder.

Both take token ids `(batch, time) int64` and return next-token logits `(batch, time, vocab) float32`, and
both implement `decode_step(tokens, cache) -> (logits (batch, vocab), cache)`, the one call the decoding
loop (`adlab.families.copywriting.decoding`) needs: the first call feeds the prompt with `cache=None`, later calls feed only
the new token and the cache returned before (hidden state for the RNN, attention keys/values for GPT).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from adlab.errors import AdlabError

RECURRENT_CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentLM(nn.Module):
    """Embedding -> stacked LSTM or GRU -> linear head, with dropout between layers.

    Args:
        vocab_size: tokens in the vocabulary (the data meta's `vocab_size`).
        embedding_dim: width of token embeddings.
        hidden_size: width of the recurrent state.
        num_layers: stacked recurrent layers.
        dropout: dropout on embeddings, between layers and before the head.
        cell: "lstm" or "gru".
        tie_weights: share the embedding and output matrices (needs a projection when the widths differ).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 256,
        hidden_size: int = 512,
        num_layers: int = 2,
        dropout: float = 0.2,
        cell: str = "lstm",
        tie_weights: bool = False,
    ):
        super().__init__()
        if cell not in RECURRENT_CELLS:
            raise AdlabError(f"model.net.cell={cell!r}: expected one of {sorted(RECURRENT_CELLS)}")
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RECURRENT_CELLS[cell](
            embedding_dim,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.projection = nn.Linear(hidden_size, embedding_dim) if tie_weights else nn.Identity()
        self.head = nn.Linear(embedding_dim if tie_weights else hidden_size, vocab_size)
        if tie_weights:
            self.head.weight = self.embedding.weight

    def forward(self, tokens: Tensor, state: Any = None) -> Tensor:
        """Logits `(batch, time, vocab)` of tokens `(batch, time)`."""
        return self._run(tokens, state)[0]

    def _run(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        outputs, state = self.rnn(self.dropout(self.embedding(tokens)), state)
        return self.head(self.dropout(self.projection(outputs))), state

    def decode_step(self, tokens: Tensor, cache: Any = None) -> tuple[Tensor, Any]:
        """Logits `(batch, vocab)` after `tokens (batch, time)`, continuing from `cache` (the hidden state)."""
        logits, state = self._run(tokens, cache)
        return logits[:, -1], state


class GPTLM(nn.Module):
    """A GPT-2 decoder (`transformers.GPT2LMHeadModel`) built from a config; never downloads anything.

    Args:
        vocab_size: tokens in the vocabulary.
        max_positions: longest sequence (prompt + text + end) the position table holds.
        n_layer, n_head, n_embd: depth, attention heads and width.
        dropout: residual, embedding and attention dropout.
        pretrained_dir: optional local directory of a saved GPT-2 (`save_pretrained`); its embeddings are
            resized to `vocab_size` when the vocabularies differ.
    """

    def __init__(
        self,
        vocab_size: int,
        max_positions: int = 256,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 192,
        dropout: float = 0.1,
        pretrained_dir: str | None = None,
    ):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        if pretrained_dir:
            if not (Path(pretrained_dir) / "config.json").is_file():
                raise AdlabError(
                    f"model.net.pretrained_dir={pretrained_dir}: no config.json there (save_pretrained)"
                )
            self.model = GPT2LMHeadModel.from_pretrained(pretrained_dir, local_files_only=True)
            if self.model.config.vocab_size != vocab_size:
                self.model.resize_token_embeddings(vocab_size)
        else:
            config = GPT2Config(
                vocab_size=vocab_size,
                n_positions=max_positions,
                n_embd=n_embd,
                n_layer=n_layer,
                n_head=n_head,
                resid_pdrop=dropout,
                embd_pdrop=dropout,
                attn_pdrop=dropout,
                # GPT-2's own ids (50256) are not ours; decoding handles <eos> itself
                bos_token_id=None,
                eos_token_id=None,
            )
            self.model = GPT2LMHeadModel(config)
        self.max_positions = int(self.model.config.n_positions)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits `(batch, time, vocab)`; right padding needs no mask (attention is causal)."""
        return self.model(input_ids=tokens, use_cache=False).logits

    def decode_step(self, tokens: Tensor, cache: Any = None) -> tuple[Tensor, Any]:
        """Logits `(batch, vocab)` after `tokens`, reusing the attention keys/values of earlier tokens."""
        output = self.model(input_ids=tokens, past_key_values=cache, use_cache=True)
        return output.logits[:, -1], output.past_key_values


def count_parameters(module: nn.Module) -> int:
    """Distinct trainable parameters (tied matrices counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters() if p.requires_grad}.values())

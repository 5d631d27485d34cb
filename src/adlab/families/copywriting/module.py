"""`CopywritingModule`: conditional language models (LSTM/GRU or GPT-2 style) that write ad headlines.

A text is generated after a prefix of control tokens (one per condition: department, class, rating ...,
optionally `<keyword>` and a keyword's tokens), so one model writes copy for any segment and can be asked to
use a word. Training minimises the cross-entropy of the text tokens and `<eos>` (never of the prefix);
val/test report the loss per token, perplexity and bits per character (comparable across tokenizers and
with the character n-gram baseline). At test time the model also writes `samples_per_condition` headlines
for every value of the first condition and scores them: distinct-1/2, self-BLEU, novelty, length-limit pass
rate and keyword inclusion; the samples are written to `samples.csv` (and W&B when it is on).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from torchmetrics import SumMetric

from adlab.data.features import TextFeatures, TextMeta, TrainSplit
from adlab.data.keywords import contains_keyword, draw_keyword
from adlab.data.sources.text import MISSING_VALUE
from adlab.data.tokenizers import KEYWORD, TEXT, control_token
from adlab.errors import AdlabError
from adlab.families.copywriting.decoding import DecodingOptions, sample_copy
from adlab.families.copywriting.metrics import (
    bits_per_char,
    distinct_n,
    keyword_inclusion,
    length_pass_rate,
    novelty,
    self_bleu,
)
from adlab.families.copywriting.tokenizers import CopyTokenizer
from adlab.harness.artifacts import save_table

# the checkpoint entry holding the model's `TextFeatures` (tokenizer JSON, train texts) as plain containers
FEATURES_KEY = "copywriting_text_features"


def _canonical(text: str) -> str:
    return " ".join(text.lower().split())


class CopywritingModule(L.LightningModule):
    """Conditional LM for ad copy.

    Args:
        meta: the text source's `TextMeta` (`vocab_size`, `max_tokens`, `conditions` ...).
        net: a partial net constructor taking `vocab_size` (`adlab.families.copywriting.nets.RecurrentLM` or `GPTLM`).
        headline_max_chars: character limit of the texts written at test time (30: search-ad headline).
        samples_per_condition: texts written at test time per value of the first condition.
        temperature, top_k, top_p: sampling settings of the test-time texts.
        force_keyword: write the prompt's keyword into test-time texts that would miss it (off: the
            keyword-inclusion rate measures the model alone).
        optimizer: a partial optimizer taking the parameters.
        scheduler: an optional partial LR scheduler taking the optimizer (stepped every epoch).

    Batches are dicts from `adlab.data.sources.text.TextSource`: `tokens (batch, time) int64` (prefix, text,
    `<eos>`, padding), `prefix_length (batch,) int64`, `chars (batch,) int64` (characters + 1 per text).
    `forward` returns next-token logits `(batch, time, vocab) float32`.

    The tokenizer and the training texts are handed over by the harness before fitting (`fit_to_train`)
    and travel in the model's own checkpoints (`on_save_checkpoint` / `on_load_checkpoint`).
    """

    def __init__(
        self,
        meta: TextMeta,
        net: Callable[..., torch.nn.Module],
        headline_max_chars: int = 30,
        samples_per_condition: int = 50,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        force_keyword: bool = False,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
    ):
        super().__init__()
        meta.require(TextMeta, "model=copy_*")
        # hyperparameters stay plain values (checkpoints load with weights_only); the meta is kept as is
        self.save_hyperparameters(ignore=["meta", "net", "optimizer", "scheduler"])
        self.meta = meta
        self.optimizer_factory = optimizer or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        self.scheduler_factory = scheduler
        self.net = net(vocab_size=int(meta.vocab_size))
        positions = getattr(self.net, "max_positions", None)
        if positions is not None and positions < int(meta.max_tokens):
            raise AdlabError(
                f"model.net.max_positions={positions}: the data has sequences of {meta.max_tokens} tokens"
            )
        self.condition_columns = list(meta.conditions)
        self.decoding = DecodingOptions(
            headline_max_chars, temperature, top_k, top_p, force_keyword=force_keyword
        )
        self.features: TextFeatures | None = None
        self.tokenizer: CopyTokenizer | None = None
        self.training_texts: list[str] = []
        self._training_set: set[str] = set()
        # summed (not averaged) per batch so that bits per character weigh every character equally
        self.stage_sums = torch.nn.ModuleDict({stage: self._sums() for stage in ("val", "test")})
        self._test_prompts: list[tuple[tuple[int, ...], str]] = []

    @staticmethod
    def _sums() -> torch.nn.ModuleDict:
        return torch.nn.ModuleDict({name: SumMetric() for name in ("nll", "tokens", "chars")})

    # -- what the model keeps from the train split: the tokenizer and the training texts -------------
    def fit_to_train(self, train: TrainSplit) -> None:
        """Take the tokenizer and the distinct training texts the text source fitted (`train.features`).

        The harness calls this once before a fresh fit; both are then saved in every checkpoint of the
        model, so eval and `adlab-generate` need nothing but the checkpoint.
        """
        train.meta.require(TextMeta, "model=copy_*")
        if not isinstance(train.features, TextFeatures):
            raise AdlabError(
                "model=copy_*: the data gives no text preprocessing (expected the text source's TextFeatures)"
            )
        self._use_features(train.features)

    def _use_features(self, features: TextFeatures) -> None:
        self.features = features
        self.tokenizer = CopyTokenizer.from_json(features.tokenizer)
        self.training_texts = list(features.train_texts)
        self._training_set = {_canonical(t) for t in self.training_texts}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.features is not None:
            checkpoint[FEATURES_KEY] = self.features.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if FEATURES_KEY not in checkpoint:
            raise AdlabError("copywriting checkpoint without its tokenizer; retrain with this adlab version")
        self._use_features(TextFeatures.from_dict(checkpoint[FEATURES_KEY]))

    @rank_zero_only
    def on_fit_start(self) -> None:
        if self.tokenizer is not None:
            path = Path(self.trainer.default_root_dir) / "tokenizer.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tokenizer.save(path)

    # -- training and likelihood metrics ------------------------------------------------------------
    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens)

    def _scored_targets(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Inputs and targets `(batch, time - 1)` and the mask of the targets scored: text tokens and `<eos>`."""
        tokens = batch["tokens"]
        pad = self.tokenizer.pad_id if self.tokenizer is not None else 0
        # cut the batch at its longest sequence: padding columns cost time and teach nothing
        longest = int((tokens != pad).sum(dim=1).max())
        tokens = tokens[:, :longest]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        positions = torch.arange(1, longest, device=tokens.device).unsqueeze(0)
        mask = (positions >= batch["prefix_length"].unsqueeze(1)) & (targets != pad)
        return inputs, targets, mask

    def _token_nll(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Per-token NLL (nats) of text tokens and `<eos>` `(n_targets,)`, and their count."""
        inputs, targets, mask = self._scored_targets(batch)
        logits = self(inputs)
        nll = F.cross_entropy(logits[mask], targets[mask], reduction="none")
        return nll, mask.sum()

    def predict_step(self, batch: dict[str, Tensor], batch_index: int) -> dict[str, Tensor]:
        """`nll (batch,)` float64: each text's NLL in nats (its tokens and `<eos>`), `chars (batch,)`,
        and the batch's `tokens` and `prefix_length` (to show the text)."""
        inputs, targets, mask = self._scored_targets(batch)
        nll = torch.zeros(targets.shape, dtype=torch.float64, device=targets.device)
        nll[mask] = F.cross_entropy(self(inputs)[mask].float(), targets[mask], reduction="none").double()
        return {
            "nll": nll.sum(dim=1),
            "chars": batch["chars"],
            "tokens": batch["tokens"],
            "prefix_length": batch["prefix_length"],
        }

    def prediction_columns(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The predictions table (`adlab.harness.predictions`): each `text`, the characters scored
        (`chars`: its characters + 1 for its end, as `bpc` counts them) and its `bits_per_char`."""
        if not outputs:
            return {"text": np.zeros(0, dtype=object), "chars": np.zeros(0), "bits_per_char": np.zeros(0)}
        texts = [
            self.tokenizer.decode(tokens[int(start) :])
            for tokens, start in zip(outputs["tokens"], outputs["prefix_length"], strict=True)
        ]
        chars = outputs["chars"].astype(np.int64)
        return {
            "text": np.asarray(texts, dtype=object),
            "chars": chars,
            "bits_per_char": outputs["nll"] / math.log(2) / np.maximum(chars, 1),
        }

    def training_step(self, batch: dict[str, Tensor], batch_index: int) -> Tensor:
        nll, _ = self._token_nll(batch)
        loss = nll.mean()
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["tokens"]))
        return loss

    def _accumulate(self, stage: str, batch: dict[str, Tensor]) -> None:
        nll, count = self._token_nll(batch)
        sums = self.stage_sums[stage]
        sums["nll"].update(nll.sum().double())
        sums["tokens"].update(count.double())
        sums["chars"].update(batch["chars"].sum().double())

    def _log_likelihood_metrics(self, stage: str) -> None:
        sums = {name: float(metric.compute()) for name, metric in self.stage_sums[stage].items()}
        for metric in self.stage_sums[stage].values():
            metric.reset()
        if not sums["tokens"]:
            return
        loss = sums["nll"] / sums["tokens"]
        self.log_dict(
            {
                f"{stage}/loss": loss,
                f"{stage}/perplexity": math.exp(min(loss, 50.0)),
                f"{stage}/bpc": bits_per_char(sums["nll"], int(sums["chars"])),
            }
        )

    def validation_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._accumulate("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._log_likelihood_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._test_prompts = []

    def test_step(self, batch: dict[str, Tensor], batch_index: int) -> None:
        self._accumulate("test", batch)
        # the test rows' conditions and a keyword from their texts become the prompts of test-time samples
        conditions = batch["tokens"][:, : len(self.condition_columns)].tolist()
        for row, (prefix, length) in enumerate(zip(conditions, batch["prefix_length"].tolist(), strict=True)):
            text = self.tokenizer.decode(batch["tokens"][row, length:].tolist())
            self._test_prompts.append((tuple(prefix), text))

    def on_test_epoch_end(self) -> None:
        self._log_likelihood_metrics("test")
        # one process writes the samples (under DDP each rank saw a shard of the test prompts)
        if not self.trainer.is_global_zero or self.tokenizer is None or self.samples_per_condition <= 0:
            return
        if not self._test_prompts:
            return
        rows, prompts = self._test_samples()
        texts = [row["text"] for row in rows]
        keywords = [row["keyword"] for row in rows]
        groups: dict[str, list[str]] = {}
        for row in rows:
            groups.setdefault(row["group"], []).append(row["text"])
        scores = {
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "self_bleu": float(np.mean([self_bleu(group) for group in groups.values()])),
            "novelty": novelty(texts, self.training_texts),
            "length_pass_rate": length_pass_rate(texts, self.decoding.max_chars),
            "keyword_inclusion": keyword_inclusion(texts, keywords),
        }
        if self.decoding.force_keyword:
            # the same prompts written again without forcing: how often the model alone uses the keyword
            unforced = self._write_test_samples(
                prompts, keywords, replace(self.decoding, force_keyword=False)
            )
            scores["keyword_inclusion_unforced"] = keyword_inclusion(unforced, keywords)
        self.log_dict({f"test/{name}": value for name, value in scores.items()}, rank_zero_only=True)
        if self.trainer.is_global_zero:
            save_table(
                self.trainer, [{k: v for k, v in row.items() if k != "group"} for row in rows], "samples"
            )

    @property
    def samples_per_condition(self) -> int:
        return int(self.hparams.samples_per_condition)

    def _test_samples(self) -> tuple[list[dict[str, Any]], list[list[int]]]:
        """`samples_per_condition` texts per value of the first condition, prompted like test rows.

        Returns the sample rows and their prompts' token ids."""
        rng = np.random.default_rng(0)
        by_first: dict[int, list[int]] = {}
        for index, (prefix, _) in enumerate(self._test_prompts):
            by_first.setdefault(prefix[0] if prefix else -1, []).append(index)
        prompts, keywords, groups = [], [], []
        for first, members in sorted(by_first.items()):
            chosen = rng.choice(
                members, self.samples_per_condition, replace=len(members) < self.samples_per_condition
            )
            for index in chosen:
                prefix, text = self._test_prompts[index]
                keyword = draw_keyword(text, rng)
                prompts.append(self._prompt(list(prefix), keyword))
                keywords.append(keyword)
                groups.append(str(first))
        texts = self._write_test_samples(prompts, keywords, self.decoding)
        rows = []
        for prompt, keyword, group, text in zip(prompts, keywords, groups, texts, strict=True):
            row = {"group": group, **self._describe(prompt[: len(self.condition_columns)])}
            row.update(self._sample_row(text, keyword, self.decoding.max_chars))
            rows.append(row)
        return rows, prompts

    def _write_test_samples(
        self, prompts: list[list[int]], keywords: Sequence[str | None], options: DecodingOptions
    ) -> list[str]:
        """The test-time prompts' texts under `options`, sampled from a fixed seed (so runs compare)."""
        generator = torch.Generator(device=self.device).manual_seed(0)
        return self.write(prompts, options, generator, keywords)[0]

    # -- writing copy -------------------------------------------------------------------------------
    def _prompt(self, condition_ids: Sequence[int], keyword: str | None) -> list[int]:
        """Token ids of a prompt: condition tokens, optional `<keyword>` + keyword tokens, `<text>`."""
        prompt = list(condition_ids)
        if keyword:
            prompt += [self.tokenizer.token_id(KEYWORD), *self.tokenizer.encode(keyword)]
        return [*prompt, self.tokenizer.token_id(TEXT)]

    def _describe(self, condition_ids: Sequence[int]) -> dict[str, str]:
        """Condition column -> value of a prompt's control tokens."""
        described = {}
        for column, index in zip(self.condition_columns, condition_ids, strict=True):
            token = self.tokenizer.tokenizer.id_to_token(int(index))
            described[column] = token[len(column) + 2 : -1]
        return described

    def _sample_row(self, text: str, keyword: str | None, max_chars: int) -> dict[str, Any]:
        return {
            "keyword": keyword or "",
            "text": text,
            "chars": len(text),
            "within_limit": len(text) <= max_chars,
            "has_keyword": contains_keyword(text, keyword) if keyword else "",
            "novel": _canonical(text) not in self._training_set,
        }

    @torch.no_grad()
    def write(
        self,
        prompts: Sequence[Sequence[int]],
        options: DecodingOptions,
        generator: torch.Generator | None = None,
        keywords: Sequence[str | None] | None = None,
    ) -> tuple[list[str], int]:
        """Sample one text per prompt; returns the texts in prompt order and the number of tokens sampled.

        `keywords` (one per prompt, or None) are the prompts' keywords, used by `options.force_keyword`.
        """
        if self.tokenizer is None:
            raise AdlabError(
                "the copywriting model has no tokenizer; fit it (fit_to_train) or load an adlab checkpoint"
            )
        was_training = self.training
        self.eval()
        try:
            return sample_copy(self.net, self.tokenizer, prompts, options, generator, self.device, keywords)
        finally:
            self.train(was_training)

    def condition_ids(
        self, conditions: dict[str, Any], n: int, generator: np.random.Generator
    ) -> list[list[int]]:
        """Control-token ids of `n` prompts: given conditions fixed, the others drawn from training data.

        Missing conditions are drawn from the training rows that share the given ones (joint frequencies),
        or from each column's own frequencies when no training row has the given combination.
        `conditions` keys may be a column name or any unambiguous start of one, case and spaces ignored
        (`department=Dresses` for "Department Name").
        """
        fixed = {self._column(key): str(value) for key, value in (conditions or {}).items()}
        counts = self.meta.conditions
        for column, value in fixed.items():
            if value not in counts[column]:
                raise AdlabError(f"conditions.{column}={value!r}: expected one of {sorted(counts[column])}")
        columns = self.condition_columns
        combinations = [
            (combination[:-1], combination[-1])
            for combination in self.meta.condition_combinations
            if all(combination[columns.index(c)] == v for c, v in fixed.items())
        ]
        if combinations:
            weights = np.array([count for _, count in combinations], dtype=float)
            picks = generator.choice(len(combinations), n, p=weights / weights.sum())
            drawn = [[str(v) for v in combinations[i][0]] for i in picks]
        else:
            drawn_columns = []
            for column in columns:
                if column in fixed:
                    drawn_columns.append([fixed[column]] * n)
                    continue
                values = list(counts[column])
                weights = np.array([counts[column][v] for v in values], dtype=float)
                drawn_columns.append(list(generator.choice(values, n, p=weights / weights.sum())))
            drawn = (
                [list(row) for row in zip(*drawn_columns, strict=True)] if columns else [[] for _ in range(n)]
            )
        return [[self._control_id(c, v) for c, v in zip(columns, row, strict=True)] for row in drawn]

    def _control_id(self, column: str, value: str) -> int:
        try:
            return self.tokenizer.token_id(control_token(column, value))
        except KeyError:  # a value seen only with a missing-value token in training
            return self.tokenizer.token_id(control_token(column, MISSING_VALUE))

    def _column(self, key: str) -> str:
        wanted = "".join(str(key).lower().replace("_", " ").split())
        exact = [c for c in self.condition_columns if "".join(c.lower().split()) == wanted]
        matches = exact or [
            c for c in self.condition_columns if "".join(c.lower().split()).startswith(wanted)
        ]
        if len(matches) != 1:
            raise AdlabError(
                f"conditions.{key}: expected one of the model's conditions {self.condition_columns}"
            )
        return matches[0]

    def generate_outputs(self, options: DictConfig, output_dir: Path) -> Path:
        """`adlab-generate`: write `n` texts to `<output_dir>/generated.csv` and print them.

        Options (configs/generate.yaml): n, max_chars, conditions, keyword, temperature, top_k, top_p,
        banned_words, use_cache, seed.
        """
        n = int(options.n)
        if n <= 0:
            raise AdlabError(f"n={n}: expected a positive number of texts")
        max_chars = int(options.get("max_chars", self.decoding.max_chars))
        if max_chars <= 0:
            raise AdlabError(f"max_chars={max_chars}: expected a positive character limit")
        given = options.get("conditions")
        conditions = OmegaConf.to_container(given, resolve=True) if given else {}
        keyword = options.get("keyword")
        keyword = " ".join(str(keyword).split()) if keyword not in (None, "") else None
        decoding = DecodingOptions(
            max_chars=max_chars,
            temperature=float(options.get("temperature", 1.0)),
            top_k=int(options.get("top_k", 0)),
            top_p=float(options.get("top_p", 1.0)),
            banned_words=list(options.get("banned_words") or []),
            use_cache=bool(options.get("use_cache", True)),
            force_keyword=bool(options.get("force_keyword", False)),
            whole_words=bool(options.get("whole_words", True)),
        )
        rng = np.random.default_rng(int(options.get("seed", 1)))
        prompts = [self._prompt(ids, keyword) for ids in self.condition_ids(conditions, n, rng)]
        generator = torch.Generator(device=self.device).manual_seed(int(options.get("seed", 1)))
        texts = self.write(prompts, decoding, generator, [keyword] * n)[0]
        rows = []
        for index, (prompt, text) in enumerate(zip(prompts, texts, strict=True)):
            row = {"sample": index, **self._describe(prompt[: len(self.condition_columns)])}
            rows.append({**row, **self._sample_row(text, keyword, max_chars)})
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / "generated.csv"
        with open(path, "w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        for row in rows:
            described = ", ".join(f"{c}={row[c]}" for c in self.condition_columns)
            print(f"{row['text']:<{max_chars}}  [{described}{', keyword=' + keyword if keyword else ''}]")
        print(f"wrote {len(rows)} texts to {path}")
        return path

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer)}}

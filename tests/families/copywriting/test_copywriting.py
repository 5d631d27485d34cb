"""Ad-copy family: text source, tokenizers, conditional LMs, constrained decoding, n-gram baseline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from adlab.data.datamodule import MarketingDataModule
from adlab.data.features import TextFeatures
from adlab.data.sources.text import TextSource, cut_at_sentence
from adlab.data.synthetic import make_titles
from adlab.data.tokenizers import EXTRA
from adlab.errors import AdlabError
from adlab.families.copywriting.baselines import CharNgramLM, NgramBaseline
from adlab.families.copywriting.decoding import DecodingOptions, _drop_last_word, sample_copy
from adlab.families.copywriting.metrics import (
    distinct_n,
    keyword_inclusion,
    length_pass_rate,
    novelty,
    self_bleu,
    sentence_bleu,
)
from adlab.families.copywriting.module import CopywritingModule
from adlab.families.copywriting.nets import GPTLM, RecurrentLM
from adlab.families.copywriting.tokenizers import CopyTokenizer
from adlab.generate import generate
from adlab.train import train
from tests.helpers import compose_config


@pytest.fixture(scope="module")
def titles_csv(tmp_path_factory):
    return make_titles(tmp_path_factory.mktemp("copy") / "titles.csv")


@pytest.fixture(scope="module")
def datamodule(titles_csv):
    source = TextSource(str(titles_csv), "Title", ["Department Name", "Rating"], keyword_rate=0.7)
    module = MarketingDataModule(source, split=[0.7, 0.15, 0.15], batch_size=32, seed=3)
    module.setup("fit")
    return module


def test_text_source_normalises_drops_empty_and_keeps_duplicates_in_one_split(datamodule):
    raw = datamodule.raw
    assert datamodule.meta.dropped_empty == 2
    assert "Lovely dress" in set(raw.texts)
    texts = {stage: set(raw.texts[rows]) for stage, rows in datamodule.splits.items()}
    assert (
        not texts["train"] & texts["val"]
        and not texts["train"] & texts["test"]
        and not texts["val"] & texts["test"]
    )
    assert datamodule.meta.duplicate_rows > 50  # the tiny corpus repeats titles: the check above has teeth
    batch = datamodule.tensors["val"]
    assert int((batch["tokens"] == datamodule.meta.vocab_size).sum()) == 0
    assert torch.equal(
        batch["chars"], torch.tensor([len(raw.texts[r]) + 1 for r in datamodule.splits["val"]])
    )
    state = datamodule.features
    assert isinstance(state, TextFeatures) and set(state.train_texts) == texts["train"]


def test_extra_text_adds_training_sequences_only(titles_csv, datamodule):
    source = TextSource(
        str(titles_csv), "Title", ["Department Name", "Rating"], extra_text="Review Text", extra_chars=20
    )
    module = MarketingDataModule(source, split=[0.7, 0.15, 0.15], batch_size=32, seed=3)
    module.setup("fit")
    train, plain = module.tensors["train"], datamodule.tensors["train"]
    assert len(train["tokens"]) == 2 * len(plain["tokens"]) == 2 * module.meta.extra_rows
    assert len(module.tensors["val"]["tokens"]) == len(datamodule.tensors["val"]["tokens"])
    assert (
        int(train["chars"][len(plain["tokens"]) :].max()) <= 21
    )  # cut at the last word within 20 characters
    extra_id = CopyTokenizer.from_json(module.features.tokenizer).token_id(EXTRA)
    assert (train["tokens"][len(plain["tokens"]) :, 2] == extra_id).all()
    assert not (module.tensors["val"]["tokens"] == extra_id).any()
    with_extra = NgramBaseline([2, 3]).evaluate(module)
    without = NgramBaseline([2, 3], extra_text=False).evaluate(module)
    assert with_extra["val/bpc"] != without["val/bpc"]


def test_drop_duplicates_keeps_first_rows(titles_csv):
    raw = TextSource(str(titles_csv), "Title", ["Department Name"], drop_duplicates=True).load()
    assert len(raw.texts) == len(set(raw.texts))


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizer_round_trip_with_accents_and_emoji(kind):
    texts = ["Élégant café top 😍", "Love this dress!", "Runs small, size up", "Soft <eos> tee"] * 5
    tokenizer = CopyTokenizer.train(texts, kind, vocab_size=60, control_tokens=["<Rating=5>"])
    for text in texts:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        assert sum(tokenizer.piece_chars[i] for i in ids) == len(text)
    assert tokenizer.encode("<eos>") != [tokenizer.eos_id]  # control tokens inside texts are just text
    restored = CopyTokenizer.from_json(tokenizer.to_json())
    assert restored.encode(texts[0]) == tokenizer.encode(texts[0])
    assert restored.token_id("<Rating=5>") == tokenizer.token_id("<Rating=5>")
    if kind == "bpe":
        assert len(tokenizer.encode(texts[1])) < len(texts[1])


def test_bad_text_files_give_one_line_errors(tmp_path):
    good = make_titles(tmp_path / "good.csv", rows=20)
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "blank.csv").write_text("Title,Rating\n ,1\n,2\n")
    (tmp_path / "latin1.csv").write_bytes("Title,Rating\nCaf\xe9 chic,5\n".encode("latin-1"))
    cases = [
        (TextSource(str(good), "Headline"), "Headline"),
        (TextSource(str(good), "Title", ["Colour"]), "Colour"),
        (TextSource(str(tmp_path / "empty.csv"), "Title"), "empty"),
        (TextSource(str(tmp_path / "blank.csv"), "Title"), "no non-empty text"),
        (TextSource(str(tmp_path / "latin1.csv"), "Title"), "latin1.csv"),
        (TextSource(str(tmp_path / "missing.csv"), "Title"), "not found"),
    ]
    for source, expected in cases:
        with pytest.raises(AdlabError) as error:
            source.load()
        assert expected in str(error.value) and "\n" not in str(error.value)


def test_cut_at_sentence():
    text = "Love it. Fits well and the colour is great! Would buy again."
    assert cut_at_sentence(text, 45) == "Love it. Fits well and the colour is great!"
    assert cut_at_sentence("A very long sentence without an end", 12) == "A very long"


@pytest.mark.parametrize("net", ["lstm", "gpt"])
def test_models_train_a_step_and_generate_within_the_limit(datamodule, net):
    meta = datamodule.meta
    if net == "lstm":
        factory = lambda vocab_size: RecurrentLM(vocab_size, 32, 48, 1, 0.0)  # noqa: E731
    else:
        factory = lambda vocab_size: GPTLM(vocab_size, 64, 2, 2, 32, 0.0)  # noqa: E731
    model = CopywritingModule(meta, factory)
    model.fit_to_train(datamodule.train_split())
    batch = next(iter(datamodule.train_dataloader()))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model._token_nll(batch)[0].mean()
    for _ in range(3):
        loss = model._token_nll(batch)[0].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model._token_nll(batch)[0].mean() < before
    rng = np.random.default_rng(0)
    prompts = [model._prompt(ids, "dress") for ids in model.condition_ids({"department": "Tops"}, 16, rng)]
    drawn = [model._describe(ids) for ids in model.condition_ids({"rating": 5}, 30, rng)]
    combinations = {tuple(c[:-1]) for c in meta.condition_combinations}
    assert all((d["Department Name"], d["Rating"]) in combinations and d["Rating"] == "5" for d in drawn)
    generator = torch.Generator().manual_seed(0)
    for max_chars in (5, 12):
        options = DecodingOptions(max_chars=max_chars, temperature=1.5, banned_words=["cute"])
        texts, sampled = model.write(prompts, options, generator)
        assert sampled > 0 and all(0 < len(t) <= max_chars for t in texts), texts
        assert not any("cute" in t.lower() for t in texts)
        options.force_keyword = True
        texts, _ = model.write(prompts, options, generator, ["dress"] * len(prompts))
        assert all(len(t) <= max_chars and "dress" in t.lower() for t in texts), texts
    # the cache changes the cost, not the distribution: same seed, same texts
    options = DecodingOptions(max_chars=20)
    prompts = prompts[:4] + [model._prompt(ids, None) for ids in model.condition_ids({}, 4, rng)]
    cached = sample_copy(
        model.net.eval(), model.tokenizer, prompts, options, torch.Generator().manual_seed(1)
    )
    options.use_cache = False
    plain = sample_copy(model.net, model.tokenizer, prompts, options, torch.Generator().manual_seed(1))
    assert cached == plain


def test_tokenizer_travels_in_the_model_checkpoint(datamodule, tmp_path):
    factory = lambda vocab_size: RecurrentLM(vocab_size, 8, 8, 1, 0.0)  # noqa: E731
    model = CopywritingModule(datamodule.meta, factory)
    model.fit_to_train(datamodule.train_split())
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "model.ckpt")
    restored = CopywritingModule(datamodule.meta, factory)
    # plain containers only: the checkpoint loads without unpickling any class
    restored.on_load_checkpoint(torch.load(tmp_path / "model.ckpt", weights_only=True))
    assert restored.tokenizer.to_json() == model.tokenizer.to_json()
    assert restored.training_texts == datamodule.features.train_texts


def test_words_cut_by_the_limit_are_dropped():
    assert _drop_last_word("Perfect for the bea", None) == "Perfect for the"
    assert _drop_last_word("Perfect, bea", None) == "Perfect"
    assert _drop_last_word("Beach", None) == "Beach"
    assert _drop_last_word("Great summer", "summer") == "Great summer"


def test_text_metrics():
    texts = ["Love this dress", "Love this top", "Great jeans"]
    assert distinct_n(texts, 1) == pytest.approx(6 / 8)
    assert distinct_n(texts, 2) == pytest.approx(4 / 5)
    assert self_bleu(["a b c", "a b c"]) == pytest.approx(1.0)
    assert self_bleu(texts) < 1.0
    # unigrams 3/3, bigrams (1+1)/(2+1), trigrams (0+1)/(1+1); no brevity penalty (closest reference: 3 words)
    assert sentence_bleu(
        "love this dress".split(), ["love this top".split(), "great dress".split()]
    ) == pytest.approx((1 * 2 / 3 * 1 / 2) ** (1 / 3))
    assert novelty(texts, ["love THIS  dress"]) == pytest.approx(2 / 3)
    assert length_pass_rate(texts, 13) == pytest.approx(2 / 3)
    assert keyword_inclusion(texts, ["dress", "jeans", None]) == pytest.approx(0.5)


def test_ngram_kneser_ney_is_normalised_and_beats_lower_orders():
    train = ["love this dress", "love this top", "love the fit", "nice top", "love it"] * 4
    model = CharNgramLM(4).fit(train)
    alphabet = sorted(set("".join(train))) + ["\ue001", "?"]  # characters, end symbol, an unseen one
    for context in ["", "lo", "love th", "zz"]:
        padded = "\ue000" * 3 + context
        total = 0.0
        for symbol in alphabet:
            lower = [1.0 / model.vocabulary_size]
            for k in range(1, 4):
                lower.append(
                    model.continuation[k - 1].interpolate(padded[len(padded) - k + 1 :], symbol, lower[-1])
                )
            total += model.raw[3].interpolate(padded[-3:], symbol, lower[3])
        # the unseen-character bucket stands for every character outside the alphabet: mass sums to 1
        assert total == pytest.approx(1.0, abs=1e-9), context
    bpc = model.bits_per_char(["love this fit", "nice dress"], [1, 2, 4])
    assert bpc[2] < bpc[1] < bpc[0]


@pytest.mark.parametrize("experiment", ["copy_lstm", "copy_gpt", "copy_csv"])
def test_copy_experiments_fast_dev_run(experiment, titles_csv, tmp_path, wandb_media):
    data = titles_csv.parent
    if experiment == "copy_csv":
        overrides = [
            f"data.source.path={titles_csv}",
            "data.source.text=Title",
            "data.source.conditions=[Department Name,Rating]",
        ]
    else:  # the clothing-reviews preset on a file with its schema
        folder = data / "clothing_reviews"
        folder.mkdir(exist_ok=True)
        frame = pd.read_csv(titles_csv).rename(columns={"Rating": "Rating"})
        frame["Class Name"] = frame["Department Name"] + " class"
        frame["Recommended IND"] = 1
        frame.to_parquet(folder / "WomensClothingE-CommerceReviews.parquet")
        overrides = [f"paths.data_dir={data}"]
    small = (
        # the transformer also runs on BPE tokens: bits per character and the limit must hold there too
        ["model.net.n_layer=1", "model.net.n_embd=32", "model.net.n_head=2", "data.source.tokenizer=bpe"]
        if experiment == "copy_gpt"
        else [
            "model.net.hidden_size=32",
            "model.net.embedding_dim=16",
        ]
    )
    # copy_csv runs a few real steps so that it writes a checkpoint for adlab-generate
    debug = "debug=limit" if experiment == "copy_csv" else "debug=fdr"
    cfg = compose_config(
        "train",
        [
            f"experiment={experiment}",
            *overrides,
            *small,
            debug,
            "trainer.max_epochs=1",
            "model.samples_per_condition=2",
            "baselines.ngram.orders=[2,3]",
            "callbacks.progress_bar=null",
            "extras.print_config=false",
            "logger=wandb",
        ],
        tmp_path / "run",
    )
    metrics = train(cfg)
    if experiment == "copy_csv":  # a real (short) run: fast_dev_run replaces the loggers with a dummy
        # the offline W&B run received the table of samples
        assert "tables/samples" in wandb_media
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for key in (
        "val/bpc",
        "test/bpc",
        "test/perplexity",
        "test/distinct_2",
        "test/self_bleu",
        "test/novelty",
        "test/length_pass_rate",
        "test/keyword_inclusion",
        "test/keyword_inclusion_unforced",
        "baseline/ngram/val/bpc",
        "baseline/ngram/test/bpc",
    ):
        assert key in written, key
    assert metrics["test/length_pass_rate"] == 1.0
    # the presets force the keyword (as adlab-generate does): every sample holds its keyword
    assert metrics["test/keyword_inclusion"] == 1.0
    samples = pd.read_csv(tmp_path / "run" / "samples.csv")
    assert len(samples) == 2 * 3 and (samples["chars"] <= 30).all()
    assert (tmp_path / "run" / "tokenizer.json").is_file()
    if experiment == "copy_csv":
        check_generate_command(tmp_path / "run" / "checkpoints" / "best.ckpt", tmp_path / "generate")


def check_generate_command(checkpoint, output_dir):
    """`adlab-generate ckpt_path=... n=... max_chars=... conditions=... keyword=...` on a trained checkpoint."""
    overrides = [
        f"ckpt_path={checkpoint}",
        "n=12",
        "max_chars=14",
        "conditions={department:Tops}",
        "keyword=tee",
        "top_k=20",
        "top_p=0.9",
        "banned_words=[soft]",
    ]
    path = generate(compose_config("generate", overrides, output_dir))
    generated = pd.read_csv(path)
    assert path == output_dir / "generated.csv" and len(generated) == 12
    assert (generated["chars"] <= 14).all() and (generated["Department Name"] == "Tops").all()
    assert not generated["text"].str.lower().str.contains("soft").any()
    assert generated["has_keyword"].all()  # force_keyword is on by default
    with pytest.raises(AdlabError, match="Shoes"):
        generate(
            compose_config(
                "generate", [f"ckpt_path={checkpoint}", "conditions={department:Shoes}"], output_dir
            )
        )

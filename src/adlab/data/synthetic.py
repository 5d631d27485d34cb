"""Tiny tables with real datasets' schemas, for tests, notebooks and benchmarks (never for results)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def coil_like_table(
    train_rows: int = 600, test_rows: int = 300, subtypes: int = 12, seed: int = 0
) -> pd.DataFrame:
    """A CoIL-2000-shaped table: customer_id, split (train/test), MOSTYPE and MOSHOOFD labels, 83 ordinal
    codes NUM00..NUM82 in 0-9, and CARAVAN 0/1 drawn from a known logistic model of NUM00, NUM01 and one subtype."""
    rng = np.random.default_rng(seed)
    rows = train_rows + test_rows
    subtype = rng.choice([f"subtype {i}" for i in range(subtypes)], rows)
    codes = rng.integers(0, 10, size=(rows, 83)).astype(float)
    logit = -2.6 + 0.35 * (codes[:, 0] - 4.5) + 0.25 * (codes[:, 1] - 4.5) + (subtype == "subtype 3") * 1.0
    frame = pd.DataFrame(codes, columns=[f"NUM{i:02d}" for i in range(83)])
    frame.insert(0, "customer_id", np.arange(1, rows + 1))
    frame.insert(1, "split", np.where(np.arange(rows) < train_rows, "train", "test"))
    frame.insert(2, "MOSTYPE", subtype)
    frame.insert(3, "MOSHOOFD", rng.choice([f"type {i}" for i in range(5)], rows))
    frame["CARAVAN"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame


def write_coil_like(data_dir: str | Path, **options) -> Path:
    """Write `coil_like_table(**options)` where the coil2000 config reads it: `<data_dir>/coil2000/coil2000.parquet`."""
    path = Path(data_dir) / "coil2000" / "coil2000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    coil_like_table(**options).to_parquet(path, index=False)
    return path


# ------------------------------------------------------------------------------------------- images
FOLDER_CLASSES = ("Red shoe", "blue-bag", "Green/Hat")


def _pattern(label: int, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """An RGB image whose dominant channel is the class: learnable in a few steps."""
    image = rng.integers(0, 60, size=(*size, 3))
    image[:, :, label % 3] += 150
    return image.astype(np.uint8)


def make_image_folder(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    """One sub-folder per class; PNG and JPEG files of different sizes, some grey."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(FOLDER_CLASSES):
        folder = root / name.replace("/", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            size = (20 + index % 3, 24 + index % 2)
            image = Image.fromarray(_pattern(label, rng, size))
            if index == 0:
                image = image.convert("L")
            image.save(folder / f"img{index}.{'jpg' if index % 2 else 'png'}")
    return root


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write an idx file (the MNIST format), gzipped."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def make_fashion_like(data_dir: Path, train_rows: int = 400, test_rows: int = 60, seed: int = 0) -> Path:
    """A `fashion_mnist/` folder with the four idx files of the real dataset's format (28x28, 10 classes)."""
    rng = np.random.default_rng(seed)
    folder = data_dir / "fashion_mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, rows in (("train", train_rows), ("t10k", test_rows)):
        labels = np.arange(rows) % 10
        images = rng.integers(0, 40, size=(rows, 28, 28))
        for row, label in enumerate(labels):
            images[row, 2 * label : 2 * label + 6, 4:24] += 200  # a class-dependent bar
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


# --------------------------------------------------------------------------------------------- text
ADJECTIVES = ["Lovely", "Perfect", "Cute", "Comfy", "Gorgeous", "Chic", "Soft", "Élégant", "Flowy", "Great"]
ITEMS = {
    "Dresses": ["dress", "maxi", "sundress"],
    "Tops": ["top", "blouse", "tee"],
    "Bottoms": ["jeans", "pants"],
}
ENDINGS = ["", "!", " 😍", " for summer", " but runs small", " - love it", " café style"]


def make_titles(path, rows: int = 400, seed: int = 0):
    """A clothing-review-shaped table: Title, Department Name, Rating, with accents, emoji and duplicates."""
    rng = np.random.default_rng(seed)
    departments = rng.choice(list(ITEMS), rows)
    titles = [f"{rng.choice(ADJECTIVES)} {rng.choice(ITEMS[d])}{rng.choice(ENDINGS)}" for d in departments]
    titles[:3] = ["  Lovely   dress ", "", None]  # whitespace to normalise, empty texts to drop
    reviews = [
        f"I bought the {rng.choice(ITEMS[d])} in size {rng.integers(0, 12)}. It fits well!"
        for d in departments
    ]
    frame = pd.DataFrame(
        {
            "Title": titles,
            "Department Name": departments,
            "Rating": rng.integers(1, 6, rows),
            "Review Text": reviews,
            "Other": 1,
        }
    )
    frame.to_csv(path, index=False, encoding="utf-8")
    return path

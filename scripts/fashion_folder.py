"""Write real Fashion-MNIST product photos as a user's image folder, for the `imagery_folder` recipe.

    adlab-data fetch fashion_mnist
    python scripts/fashion_folder.py --per-class 500 --size 64 --out data/fashion_folder
    adlab-train experiment=imagery_folder data.source.path=data/fashion_folder

The folder is an ImageFolder tree (one sub-folder per class, PNG files) of the first `--per-class`
training images of every class, upscaled to `--size` pixels and stored as RGB, so the run exercises what
a user's product photos go through (file decoding, resizing, the 60/20/20 split). Images are taken from
the official training set only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from adlab.data.datasets.fashion_mnist import FASHION_MNIST_CLASSES
from adlab.data.fetch import default_data_dir
from adlab.data.sources.images import class_keys, read_idx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--per-class", type=int, default=500, help="images per class")
    parser.add_argument("--size", type=int, default=64, help="side of the written images in pixels")
    parser.add_argument("--out", type=Path, required=True, help="folder to create (must not exist)")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="adlab data folder (default: ADLAB_DATA_DIR)"
    )
    args = parser.parse_args()
    source = (args.data_dir or default_data_dir()) / "fashion_mnist"
    images = read_idx(source / "train-images-idx3-ubyte.gz")
    labels = read_idx(source / "train-labels-idx1-ubyte.gz")
    if args.out.exists():
        parser.error(f"--out {args.out}: already exists; give a new folder")
    for label, key in enumerate(class_keys(FASHION_MNIST_CLASSES)):
        folder = args.out / key
        folder.mkdir(parents=True)
        for count, index in enumerate(np.flatnonzero(labels == label)[: args.per_class]):
            image = Image.fromarray(images[index]).resize((args.size, args.size), Image.BILINEAR)
            image.convert("RGB").save(folder / f"{count:05d}.png")
    print(
        f"wrote {args.per_class} images per class for {len(FASHION_MNIST_CLASSES)} classes under {args.out}"
    )


if __name__ == "__main__":
    main()

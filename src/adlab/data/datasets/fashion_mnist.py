"""Fashion-MNIST (Zalando product photos, 10 classes, 28x28 grey), from the Debian package dataset-fashion-mnist."""

from __future__ import annotations

from adlab.data.catalog import Archive, ArchiveFile, Dataset, register

# the label order of the idx files (label k is FASHION_MNIST_CLASSES[k])
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
_OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

register(
    Dataset(
        name="fashion_mnist",
        description="Fashion-MNIST product photos: 60000 train + official 10000 test, 28x28 grey, 10 classes",
        archives=(
            Archive(
                "apt",
                "dataset-fashion-mnist",
                None,
                "dataset-fashion-mnist_*.deb",
                tuple(
                    ArchiveFile(f"usr/share/datasets/fashion-mnist/{name}", sha256, name)
                    for name, sha256 in _FILES.items()
                ),
            ),
        ),
        # the idx files are read as they are by adlab.data.sources.images (format=idx): nothing to prepare
        official={name: _OFFICIAL_URL + name for name in _FILES},
    )
)

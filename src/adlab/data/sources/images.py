"""Image source: Fashion-MNIST idx files, an ImageFolder tree or a CSV manifest, held in memory as uint8.

Every image is decoded once, converted to grey or RGB and resized to one size, so that a split is a
single `(n, channels, height, width) uint8` tensor and a batch is one tensor gather. Scaling to float,
normalisation and augmentation happen on whole batches on the model's device (the imagery family's augment.py).
"""

from __future__ import annotations

import copy
import gzip
import logging
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from adlab.data.features import DataMeta, ImageMeta
from adlab.data.sources.base import BuiltData, NewData
from adlab.data.sources.tabular import read_table
from adlab.errors import AdlabError, excerpt

log = logging.getLogger(__name__)

FORMATS = ("auto", "idx", "folder", "manifest")
ON_ERROR = ("raise", "skip")
FITS = ("stretch", "crop")
SPLIT_FOLDERS = ("train", "val", "test")
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def class_keys(names: Sequence[str]) -> list[str]:
    """Metric-key-safe class names: lower case, runs of other characters -> "_" ("T-shirt/top" -> "t_shirt_top").

    Names that collide after cleaning get their class index appended, so every key is unique.
    """
    keys = [re.sub(r"[^0-9a-z]+", "_", str(name).lower()).strip("_") or "class" for name in names]
    return [f"{key}_{index}" if keys.count(key) > 1 else key for index, key in enumerate(keys)]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (the MNIST format; gzipped or not) into an array of its declared shape."""
    path = Path(path)
    if not path.is_file():
        raise AdlabError(
            f"{path}: idx file not found; run `adlab-data fetch fashion_mnist` or check data.source.path"
        )
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as stream:
            data = stream.read()
    except (OSError, EOFError) as error:
        raise AdlabError(f"{path}: cannot read idx file ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise AdlabError(f"{path}: not an idx file (bad magic number)")
    dims = data[3]
    header = 4 + 4 * dims
    if not 1 <= dims <= 4 or len(data) < header:
        raise AdlabError(f"{path}: idx header declares {dims} dimensions; expected 1 to 4 and their sizes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if 0 in shape:
        raise AdlabError(f"{path}: idx header declares shape {shape}, which holds no items")
    dtype = np.dtype(IDX_TYPES[data[2]])
    expected = math.prod(shape) * dtype.itemsize  # Python integers: np.prod would overflow and wrap
    if len(data) - header != expected:
        raise AdlabError(
            f"{path}: idx header declares shape {shape} but the file holds {len(data) - header} bytes"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


@dataclass
class ImageRaw:
    """Decoded images and their labels.

    Attributes:
        images: `(n, channels, height, width) uint8`.
        labels: `(n,) int64` class indices into `classes`.
        classes: class names in label order.
        official: `(n,)` "train"/"val"/"test" when the data declares its own split, else None.
        paths: file of each image (None for idx data).
        skipped: files that could not be read (with `on_error=skip`).
    """

    images: Tensor
    labels: np.ndarray
    classes: list[str]
    official: np.ndarray | None = None
    paths: list[str] | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def row_ids(self) -> np.ndarray | None:
        """Each image's file (None for idx data, whose rows are numbered)."""
        return None if self.paths is None else np.asarray(self.paths)

    @property
    def id_name(self) -> str:
        return "row" if self.paths is None else "path"


class ImageSource:
    """Read labelled images into memory.

    Args:
        path: a folder of idx files (`train-images-idx3-ubyte.gz`, `t10k-...`), an ImageFolder tree (one
            sub-folder per class, or `train/`, `test/` [, `val/`] folders each holding one per class), or a
            CSV manifest with a path and a label column (paths relative to the CSV's folder).
        format: "idx", "folder", "manifest" or "auto" (from what `path` is).
        image_size: every image is resized to this (int or [height, width]); None keeps the files' size,
            which must then be the same for all.
        fit: "stretch" (resize to the size) or "crop" (keep the aspect ratio, centre-crop to the size).
        channels: 1 (grey) or 3 (RGB); None: RGB if any image has colour, else grey.
        classes: class names in label order (idx data), or the order of the folder/manifest labels.
        on_error: "raise" (an unreadable image stops with its path) or "skip" (left out and counted).
        path_column / label_column / split_column: manifest columns; the split column ("train"/"val"/"test")
            is optional and used with `data.split=official`.
        workers: threads decoding images (decoding releases the GIL); default: the cores, at most 8.
        name: dataset name used in messages and metadata.
    """

    def __init__(
        self,
        path: str,
        format: str = "auto",
        image_size: int | Sequence[int] | None = None,
        fit: str = "stretch",
        channels: int | None = None,
        classes: Sequence[str] | None = None,
        on_error: str = "raise",
        path_column: str = "path",
        label_column: str = "label",
        split_column: str = "split",
        workers: int | None = None,
        name: str = "images",
    ):
        if format not in FORMATS:
            raise AdlabError(f"data.source.format={format!r}: expected one of {FORMATS}")
        if on_error not in ON_ERROR:
            raise AdlabError(f"data.source.on_error={on_error!r}: expected one of {ON_ERROR}")
        if fit not in FITS:
            raise AdlabError(f"data.source.fit={fit!r}: expected one of {FITS}")
        if channels not in (None, 1, 3):
            raise AdlabError(f"data.source.channels={channels!r}: expected 1 (grey), 3 (RGB) or null (auto)")
        if isinstance(image_size, int):
            image_size = (image_size, image_size)
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
            raise AdlabError(f"data.source.image_size={list(image_size)}: expected a size or [height, width]")
        self.path = str(path)
        self.format = format
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.fit = fit
        self.channels = channels
        self.classes = None if classes is None else [str(c) for c in classes]
        self.on_error = on_error
        self.path_column, self.label_column, self.split_column = path_column, label_column, split_column
        self.workers = int(workers) if workers else min(8, os.cpu_count() or 1)
        self.name = name

    # ---------------------------------------------------------------- reading
    def _resolved_format(self) -> str:
        if self.format != "auto":
            return self.format
        path = Path(self.path)
        if path.is_file():
            return "manifest"
        if path.is_dir():
            return "idx" if any(path.glob("train-images-idx3-ubyte*")) else "folder"
        raise AdlabError(f"data.source.path={path}: no such file or folder")

    def load(self) -> ImageRaw:
        """Read and decode every image (see the class docstring); raise `AdlabError` naming a bad input."""
        reader = {"idx": self._load_idx, "folder": self._load_folder, "manifest": self._load_manifest}
        raw = reader[self._resolved_format()]()
        if len(np.unique(raw.labels)) < 2:
            raise AdlabError(
                f"data.source.path={self.path}: found {len(np.unique(raw.labels))} class(es); expected at least 2"
            )
        return raw

    def _load_idx(self) -> ImageRaw:
        folder = Path(self.path)
        parts = {}
        for stage, prefix in (("train", "train"), ("test", "t10k")):
            found = []
            for kind in ("images-idx3", "labels-idx1"):
                candidates = [folder / f"{prefix}-{kind}-ubyte.gz", folder / f"{prefix}-{kind}-ubyte"]
                existing = [c for c in candidates if c.is_file()]
                found.append(read_idx(existing[0] if existing else candidates[0]))
            images, labels = found
            if images.ndim != 3 or len(images) != len(labels):
                raise AdlabError(
                    f"{folder}: {prefix} images {images.shape} and labels {labels.shape} do not match"
                )
            parts[stage] = (images, labels.astype(np.int64))
        images = np.concatenate([parts["train"][0], parts["test"][0]])
        labels = np.concatenate([parts["train"][1], parts["test"][1]])
        official = np.array(["train"] * len(parts["train"][1]) + ["test"] * len(parts["test"][1]))
        classes = self.classes or [str(k) for k in range(int(labels.max()) + 1)]
        if labels.min() < 0 or labels.max() >= len(classes):
            raise AdlabError(
                f"{folder}: labels run 0..{labels.max()} but data.source.classes names {len(classes)}"
            )
        tensor = torch.from_numpy(images.astype(np.uint8)).unsqueeze(1)
        if self.image_size is not None and tuple(tensor.shape[-2:]) != self.image_size:
            tensor = _resize_tensor(tensor, self.image_size)
        if self.channels == 3:
            tensor = tensor.expand(-1, 3, -1, -1).contiguous()
        return ImageRaw(tensor, labels, classes, official)

    def _load_folder(self) -> ImageRaw:
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

        root = Path(self.path)
        if not root.is_dir():
            raise AdlabError(f"data.source.path={root}: not a folder")
        subdirs = {p.name for p in root.iterdir() if p.is_dir()}
        stages = [s for s in SPLIT_FOLDERS if s in subdirs] if {"train", "test"} <= subdirs else []
        roots = [(root / s, s) for s in stages] or [(root, None)]
        try:
            found = sorted({c for folder, _ in roots for c in find_classes(str(folder))[0]})
        except FileNotFoundError as error:
            raise AdlabError(
                f"data.source.path={root}: expected one sub-folder per class ({error})"
            ) from None
        classes = self._class_order(found)
        index = {name: position for position, name in enumerate(classes)}
        files: list[str] = []
        labels: list[int] = []
        official: list[str] = []
        for folder, stage in roots:
            present = {c: index[c] for c in find_classes(str(folder))[0]}
            try:
                samples = make_dataset(str(folder), present, extensions=IMG_EXTENSIONS, allow_empty=True)
            except FileNotFoundError as error:
                raise AdlabError(f"data.source.path={folder}: {error}") from None
            files += [path for path, _ in samples]
            labels += [label for _, label in samples]
            official += [stage] * len(samples) if stage else []
        if not files:
            raise AdlabError(
                f"data.source.path={root}: no image files ({', '.join(IMG_EXTENSIONS)}) in its class folders"
            )
        return self._decode_all(files, np.asarray(labels, dtype=np.int64), classes, official or None)

    def _load_manifest(self) -> ImageRaw:
        manifest = Path(self.path)
        frame = read_table(manifest, text_columns=[self.path_column, self.label_column])
        for column in (self.path_column, self.label_column):
            if column not in frame.columns:
                raise AdlabError(
                    f"{manifest}: column '{column}' not found; expected {self.path_column},{self.label_column}"
                )
        if frame[self.label_column].isna().any() or frame[self.path_column].isna().any():
            raise AdlabError(f"{manifest}: empty path or label cells; every row needs both")
        names = frame[self.label_column].astype(str).str.strip()
        unique = names.unique().tolist()
        numeric = all(re.fullmatch(r"-?\d+", value) for value in unique)
        found = sorted(unique, key=int) if numeric else sorted(unique)
        classes = self._class_order(found)
        index = {name: position for position, name in enumerate(classes)}
        labels = names.map(index).to_numpy(dtype=np.int64)
        files = [
            str(p if Path(p).is_absolute() else manifest.parent / p)
            for p in frame[self.path_column].astype(str)
        ]
        official = None
        if self.split_column in frame.columns:
            official = frame[self.split_column].astype(str).str.strip().str.lower().tolist()
        return self._decode_all(files, labels, classes, official)

    def _class_order(self, found: list[str]) -> list[str]:
        """Labels found in the data, in `data.source.classes` order when that is given."""
        if self.classes is None:
            return found
        unknown = sorted(set(found) - set(self.classes))
        if unknown:
            raise AdlabError(
                f"data.source.path={self.path}: labels {unknown[:5]} are not in data.source.classes"
            )
        return list(self.classes)

    # --------------------------------------------------------------- decoding
    def _decode_all(
        self, files: list[str], labels: np.ndarray, classes: list[str], official: list[str] | None
    ) -> ImageRaw:
        with ThreadPoolExecutor(self.workers) as pool:
            decoded = list(pool.map(self._decode, files))
        failed = [
            (path, result) for path, result in zip(files, decoded, strict=True) if isinstance(result, str)
        ]
        if failed and self.on_error == "raise":
            path, reason = failed[0]
            more = (
                f" ({len(failed) - 1} more unreadable; data.source.on_error=skip leaves them out)"
                if len(failed) > 1
                else ""
            )
            raise AdlabError(f"{path}: cannot read image: {reason}{more}")
        keep = np.array([not isinstance(result, str) for result in decoded])
        if failed:
            log.warning("%s: skipped %d unreadable images (first: %s)", self.path, len(failed), failed[0][0])
        arrays = [result for result in decoded if not isinstance(result, str)]
        if not arrays:
            raise AdlabError(f"data.source.path={self.path}: none of the {len(files)} images could be read")
        kept_files = [path for path, ok in zip(files, keep, strict=True) if ok]
        sizes = {a.shape[:2] for a in arrays}
        if len(sizes) > 1:
            first = next(
                p for p, a in zip(kept_files, arrays, strict=True) if a.shape[:2] != arrays[0].shape[:2]
            )
            raise AdlabError(
                f"{first}: size {arrays[0].shape[:2]} differs from other images; set data.source.image_size"
            )
        colour = self.channels == 3 or (self.channels is None and any(a.ndim == 3 for a in arrays))
        if colour:
            arrays = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
            images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        else:
            images = torch.from_numpy(np.stack(arrays)).unsqueeze(1)
        return ImageRaw(
            images,
            labels[keep],
            classes,
            None if official is None else np.asarray(official)[keep],
            kept_files,
            [path for path, _ in failed],
        )

    def _decode(self, path: str) -> np.ndarray | str:
        """`(h, w)` or `(h, w, 3)` uint8, or the reason the file could not be read."""
        try:
            with Image.open(path) as image:
                image.load()
                grey = self.channels == 1 or (self.channels is None and image.mode in GREY_MODES)
                if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                    # 16-bit or float grey: scale to 8 bits by the image's own range
                    values = np.asarray(image, dtype=np.float64)
                    span = max(values.max() - values.min(), 1e-12)
                    image = Image.fromarray(((values - values.min()) / span * 255).astype(np.uint8))
                image = image.convert("L" if grey else "RGB")
                if self.image_size is not None and image.size != self.image_size[::-1]:
                    size = (self.image_size[1], self.image_size[0])
                    if self.fit == "crop":
                        image = ImageOps.fit(image, size, Image.Resampling.BILINEAR)
                    else:
                        image = image.resize(size, Image.Resampling.BILINEAR)
                return np.asarray(image, dtype=np.uint8).copy()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            return excerpt(error)

    # ------------------------------------------------------------- new files
    def build_new(self, meta: DataMeta, preprocessing: dict, labelled: bool) -> NewData:
        """A new folder, manifest or idx folder decoded like a trained run's images (its size and channels).

        Labelled: the same layouts as for training (class sub-folders, a label column, idx labels), every
        label one of the run's classes. Unlabelled: every image file under a folder (any depth), the path
        column of a manifest, or the images of an idx folder. Nothing is fitted: normalisation uses the
        run's stored channel mean and std.
        """
        meta.require(ImageMeta, "the imagery model")
        source = copy.copy(self)
        source.image_size = (int(meta.image_size[0]), int(meta.image_size[1]))
        source.channels = int(meta.channels)
        source.classes = list(meta.classes)
        form = source._resolved_format()
        if labelled:
            raw = {"idx": source._load_idx, "folder": source._load_folder, "manifest": source._load_manifest}[
                form
            ]()
        else:
            raw = source._unlabelled(form)
        tensors = {"image": raw.images}
        if labelled:
            tensors["target"] = torch.from_numpy(raw.labels)
        notes = [f"{len(raw.skipped)} unreadable images left out"] if raw.skipped else []
        row_ids = raw.row_ids if raw.row_ids is not None else np.arange(len(raw.images))
        return NewData(tensors, row_ids, raw.id_name, notes=notes)

    def _unlabelled(self, form: str) -> ImageRaw:
        """Images without labels (label 0 placeholders): see `build_new`."""
        from torchvision.datasets.folder import IMG_EXTENSIONS

        root = Path(self.path)
        if form == "idx":
            stored = []
            for prefix in ("train", "t10k"):
                names = (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images-idx3-ubyte")
                existing = [root / name for name in names if (root / name).is_file()]
                if existing:
                    stored.append(read_idx(existing[0]))
            if not stored:
                raise AdlabError(f"data.source.path={root}: no train-/t10k-images-idx3-ubyte file")
            images = torch.from_numpy(np.concatenate(stored).astype(np.uint8)).unsqueeze(1)
            if tuple(images.shape[-2:]) != self.image_size:
                images = _resize_tensor(images, self.image_size)
            if self.channels == 3:
                images = images.expand(-1, 3, -1, -1).contiguous()
            return ImageRaw(images, np.zeros(len(images), dtype=np.int64), self.classes)
        if form == "manifest":
            frame = read_table(root, text_columns=[self.path_column, self.label_column])
            if self.path_column not in frame.columns:
                raise AdlabError(
                    f"{root}: column '{self.path_column}' not found; expected a column of image paths"
                )
            files = [
                str(p if Path(p).is_absolute() else root.parent / p)
                for p in frame[self.path_column].dropna().astype(str)
            ]
        else:
            if not root.is_dir():
                raise AdlabError(f"data.source.path={root}: not a folder")
            extensions = tuple(e.lower() for e in IMG_EXTENSIONS)
            files = sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not files:
            raise AdlabError(f"data.source.path={root}: no image files ({', '.join(IMG_EXTENSIONS)})")
        return self._decode_all(files, np.zeros(len(files), dtype=np.int64), self.classes, None)

    # --------------------------------------------------------------- building
    def build(self, raw: ImageRaw, splits: dict[str, np.ndarray]) -> BuiltData:
        """Tensors per split (`image (n, c, h, w) uint8`, `target (n,) int64`) and their `ImageMeta`.

        The channel mean/std are measured on the train split; they are the only thing fitted on it and
        travel in the meta, so there is no separate preprocessing state.
        """
        train = raw.images[torch.from_numpy(splits["train"])]
        # float64 sums over (n, h, w) per channel: exact enough and small memory
        scaled = train.to(torch.float64) / 255.0
        mean = scaled.mean(dim=(0, 2, 3))
        std = scaled.std(dim=(0, 2, 3)).clamp_min(1e-3)
        tensors = {
            stage: {
                "image": raw.images[torch.from_numpy(rows)],
                "target": torch.from_numpy(raw.labels[rows]),
            }
            for stage, rows in splits.items()
        }
        meta = ImageMeta(
            dataset=self.name,
            rows={stage: int(len(rows)) for stage, rows in splits.items()},
            classes=list(raw.classes),
            class_keys=class_keys(raw.classes),
            channels=int(raw.images.shape[1]),
            image_size=[int(s) for s in raw.images.shape[-2:]],
            mean=mean.tolist(),
            std=std.tolist(),
            train_class_counts=np.bincount(raw.labels[splits["train"]], minlength=len(raw.classes)).tolist(),
            skipped_images=len(raw.skipped),
        )
        return BuiltData(tensors, meta)


def _resize_tensor(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize `(n, c, h, w) uint8` images in chunks (bilinear, antialiased) to `(n, c, *size) uint8`."""
    import torch.nn.functional as F

    chunks = []
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096].float()
        resized = F.interpolate(chunk, size=size, mode="bilinear", antialias=True, align_corners=False)
        chunks.append(resized.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(chunks)

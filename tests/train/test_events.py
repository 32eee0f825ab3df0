"""Recorded event datasets read with tonic from small files written here in tonic's standard
layouts (N-MNIST .bin, DVS128 Gesture .npy, CIFAR10-DVS AEDAT 2.0): frames equal tonic's
ToFrame of the events we wrote, splits, the numpy cache, and training from --data-dir."""

from __future__ import annotations

import numpy as np
import pytest

from core import datasets
from core.datasets import EVENT_BINS, event_cache_path, load_dataset, set_data_dir
from core.errors import DatasetError
from core.events import EVENT_DTYPE, bin_events

tonic = pytest.importorskip("tonic")
from train import events as tr_events  # noqa: E402  (registers the readers)
from train.loop import train_model  # noqa: E402


def _events(rng, n, size, t_max):
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["x"] = rng.integers(0, size[0], n)
    ev["y"] = rng.integers(0, size[1], n)
    ev["p"] = rng.integers(0, 2, n)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    return ev


def _write_nmnist_bin(path, ev):
    """N-MNIST's 40-bit events: x, y, p<<7 | t[22:16], t[15:8], t[7:0] (t < 2**23 us)."""
    t = ev["t"].astype(np.int64)
    raw = np.stack([ev["x"], ev["y"], (ev["p"] << 7) | ((t >> 16) & 127), (t >> 8) & 255,
                    t & 255], axis=1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.tobytes())


def _fresh(name):
    datasets._load_event_cache.cache_clear()
    datasets._DATA_DIRS.pop(name, None)


@pytest.fixture
def nmnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    written = {"Train": [], "Test": []}
    for folder, n in (("Train", 10), ("Test", 4)):
        for i in range(n):
            label = i % 2
            ev = _events(rng, 60, (34, 34), 300_000)
            _write_nmnist_bin(tmp_path / "NMNIST" / folder / str(label) / f"{i:05d}.bin", ev)
            written[folder].append((label, i, ev))
    return tmp_path, written


def test_nmnist_reader_frames_splits_and_cache(nmnist_dir):
    root, written = nmnist_dir
    _fresh("nmnist")
    with pytest.raises(DatasetError, match="--data-dir"):
        load_dataset("nmnist", "train")
    set_data_dir("nmnist", root)
    x_tr, y_tr = load_dataset("nmnist", "train")
    x_va, y_va = load_dataset("nmnist", "val")
    x_te, y_te = load_dataset("nmnist", "test")
    assert x_tr.shape == (9, EVENT_BINS, 2, 34, 34) and len(x_va) == 1 and len(x_te) == 4
    assert x_tr.dtype == np.uint8
    # files are read per class folder in sorted order; frames = ToFrame of what we wrote
    order = sorted(written["Train"], key=lambda r: (r[0], f"{r[1]:05d}"))
    want = np.stack([bin_events(ev, (34, 34, 2), EVENT_BINS) for _, _, ev in order])
    assert np.array_equal(np.concatenate([x_tr, x_va]), want)
    assert np.concatenate([y_tr, y_va]).tolist() == [r[0] for r in order]
    cache = event_cache_path("nmnist", root)
    assert cache.is_file()
    datasets._load_event_cache.cache_clear()  # the cache is read back with numpy alone
    saved = dict(datasets._READERS)
    datasets._READERS.clear()
    try:
        assert np.array_equal(load_dataset("nmnist", "test")[0], x_te)
    finally:
        datasets._READERS.update(saved)
    _fresh("nmnist")


def test_dvs_gesture_reader(tmp_path):
    rng = np.random.default_rng(1)
    written = []
    for split, n in (("ibmGestureTrain", 10), ("ibmGestureTest", 2)):
        for i in range(n):
            ev = _events(rng, 80, (128, 128), 500)  # t in ms, as tonic's .npy files
            raw = np.stack([ev["x"], ev["y"], ev["p"], ev["t"]], axis=1)
            label = i % 3
            path = tmp_path / "DVSGesture" / split / f"user{i:02d}_led" / f"{label}.npy"
            path.parent.mkdir(parents=True)
            np.save(path, raw)
            written.append((split, label, ev))
    parts = tr_events.read_dvs_gesture(tmp_path)
    frames, labels = parts["train"]
    assert frames.shape == (10, EVENT_BINS, 2, 32, 32) and labels.tolist() == [0, 1, 2, 0, 1, 2,
                                                                               0, 1, 2, 0]
    ev = written[0][2].copy()
    ev["x"] //= 4
    ev["y"] //= 4
    ev["t"] *= 1000
    assert np.array_equal(frames[0], bin_events(ev, (32, 32, 2), EVENT_BINS))
    assert len(parts["test"][1]) == 2


def _write_aedat2(path, ev):
    """AEDAT 2.0 (jAER): header lines, then big-endian (address, timestamp) pairs; DVS128
    address x << 8 | y << 1 | p."""
    addr = (ev["x"].astype(np.uint32) << 8) | (ev["y"].astype(np.uint32) << 1) | ev["p"]
    body = np.zeros(len(ev), dtype=[("a", ">u4"), ("t", ">u4")])
    body["a"], body["t"] = addr, ev["t"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n" + body.tobytes())


def test_cifar10_dvs_reader_and_split(tmp_path):
    rng = np.random.default_rng(2)
    first = None
    for c in tr_events.CIFAR10_CLASSES:
        for i in range(2):
            ev = _events(rng, 50, (128, 128), 100_000)
            _write_aedat2(tmp_path / "CIFAR10DVS" / c / f"cifar10_{c}_{i}.aedat", ev)
            first = ev if first is None else first
    frames, labels = tr_events.read_cifar10_dvs(tmp_path)["all"]
    assert frames.shape == (20, EVENT_BINS, 2, 32, 32) and labels.tolist() == \
        sorted(list(range(10)) * 2)
    ev = first.copy()
    ev["x"] //= 4
    ev["y"] //= 4
    assert np.array_equal(frames[0], bin_events(ev, (32, 32, 2), EVENT_BINS))
    _fresh("cifar10-dvs")
    set_data_dir("cifar10-dvs", tmp_path)
    sizes = [len(load_dataset("cifar10-dvs", s)[1]) for s in ("train", "val", "test")]
    assert sizes == [16, 2, 2]  # seeded 80/10/10
    _fresh("cifar10-dvs")


def test_train_slssnn_on_nmnist_from_data_dir(nmnist_dir):
    root, _ = nmnist_dir
    _fresh("nmnist")
    set_data_dir("nmnist", root)
    ck = train_model("slssnn", "nmnist", epochs=1, batch_size=4, progress=False,
                     log=lambda s: None, config={"channels": [4, 4], "strides": [2, 2]})
    assert ck["encoding"]["kind"] == "frames" and ck["config"]["in_shape"] == [2, 34, 34]
    assert 0.0 <= ck["metrics"]["test_accuracy"] <= 1.0
    _fresh("nmnist")

"""Datasets (numpy, no torch) and input encodings."""

import gzip
import subprocess
import sys

import numpy as np
import pytest

from core.datasets import (
    DATASETS,
    FASHION_MNIST_ENV,
    DatasetError,
    input_shape,
    load_dataset,
    read_idx,
)
from core.encoding import INPUT_SCALE, encode, input_scale


def test_digits_shapes_dtypes_and_split():
    parts = {s: load_dataset("digits", s) for s in ("train", "val", "test")}
    assert [len(parts[s][1]) for s in ("train", "val", "test")] == [1200, 300, 297]
    for x, y in parts.values():
        assert x.dtype == np.uint8 and x.shape[1:] == (8, 8) == input_shape("digits")
        assert y.dtype == np.int64 and set(np.unique(y)) <= set(range(10))
    allx = np.concatenate([parts[s][0] for s in parts])
    assert allx.max() == 255 and allx.min() == 0
    # values are round(v * 255 / 16) for v in 0..16
    assert set(np.unique(allx)) <= {round(v * 255 / 16) for v in range(17)}


def test_digits_split_is_deterministic_and_disjoint():
    from sklearn.datasets import load_digits

    b = load_digits()
    ref = np.round(b.images * 255 / 16).astype(np.uint8).reshape(len(b.target), -1)
    key = {r.tobytes(): i for i, r in enumerate(ref)}
    seen = []
    for s in ("train", "val", "test"):
        x, y = load_dataset("digits", s)
        idx = [key[r.tobytes()] for r in x.reshape(len(x), -1)]
        assert np.array_equal(b.target[idx], y)
        seen += idx
    assert len(set(seen)) >= 1790  # (a few digit images are exact duplicates)
    # a fresh process gives the same split
    code = (
        "from core.datasets import load_dataset; x, y = load_dataset('digits', 'val');"
        "print(int(y[:50] @ __import__('numpy').arange(50)), int(x.sum()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    x, y = load_dataset("digits", "val")
    assert out.stdout.split() == [str(int(y[:50] @ np.arange(50))), str(int(x.sum()))]


def test_mnist_exact_uint8_and_sizes():
    sizes = {"train": 50000, "val": 10000, "test": 10000}
    for split, n in sizes.items():
        x, y = load_dataset("mnist", split)
        assert x.shape == (n, 28, 28) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int64
    x, y = load_dataset("mnist", "test")
    assert x.max() == 255 and x.min() == 0 and sorted(np.unique(y)) == list(range(10))
    assert load_dataset("mnist", "test")[0] is x  # cached in-process
    assert not x.flags.writeable  # the cache cannot be corrupted by a caller


def test_unknown_names_raise_dataset_error_listing_valid_ones():
    with pytest.raises(DatasetError, match="valid datasets: mnist, fashion-mnist, digits"):
        load_dataset("cifar", "train")
    with pytest.raises(DatasetError, match="valid splits"):
        load_dataset("digits", "training")
    assert issubclass(DatasetError, ValueError)
    assert DATASETS == ("mnist", "fashion-mnist", "digits", "nmnist", "dvs-gesture",
                        "cifar10-dvs", "digits-events")


def _write_idx(path, arr, compress):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i4"): 0x0C}
    head = bytes([0, 0, codes[arr.dtype], arr.ndim])
    head += np.array(arr.shape, dtype=">u4").tobytes()
    data = head + arr.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_idx_reader_roundtrip(tmp_path, compress):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(3, 5, 4), dtype=np.uint8)
    b = rng.integers(-1000, 1000, size=(7,)).astype(">i4")
    assert np.array_equal(read_idx(_write_idx(tmp_path / "a-idx3-ubyte", a, compress)), a)
    got = read_idx(_write_idx(tmp_path / "b-idx1-ubyte", b, compress))
    assert got.dtype == np.int32 and np.array_equal(got, b)


def test_idx_reader_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(DatasetError, match="not an idx file"):
        read_idx(bad)
    a = np.zeros((4, 3, 3), dtype=np.uint8)
    p = _write_idx(tmp_path / "t-idx3-ubyte", a, False)
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DatasetError, match="implies"):
        read_idx(p)


def test_fashion_mnist_from_env_dir(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    n_train = 50003  # first 50000 train, the last 3 are val
    tr_x = np.zeros((n_train, 28, 28), dtype=np.uint8)
    tr_x[:, 0, 0] = np.arange(n_train) % 251
    tr_y = rng.integers(0, 10, size=n_train).astype(np.uint8)
    te_x = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    te_y = rng.integers(0, 10, size=5).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", tr_x, False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", tr_y, True)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", te_x, True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", te_y, False)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    x, y = load_dataset("fashion-mnist", "train")
    assert x.shape == (50000, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.array_equal(y, tr_y[:50000])
    x, y = load_dataset("fashion-mnist", "val")
    assert np.array_equal(x, tr_x[50000:]) and np.array_equal(y, tr_y[50000:])
    x, y = load_dataset("fashion-mnist", "test")
    assert np.array_equal(x, te_x) and np.array_equal(y, te_y.astype(np.int64))


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError) as e:
        load_dataset("fashion-mnist", "test")
    assert "apt-get install dataset-fashion-mnist" in str(e.value)
    assert FASHION_MNIST_ENV in str(e.value)


# ------------------------------------------------------------------------------------ encoding
def test_direct_encoding_repeats_pixels():
    x, _ = load_dataset("digits", "test")
    e = encode(x[:5], "direct", 3)
    assert e.shape == (5, 3, 8, 8) and e.dtype == np.int16
    for t in range(3):
        assert np.array_equal(e[:, t], x[:5])
    assert input_scale("direct") == INPUT_SCALE["direct"] == 1 / 255
    assert input_scale("rate") == 1.0


def test_rate_encoding_subset_reencodes_identically():
    x, _ = load_dataset("digits", "train")
    full = encode(x[:40], "rate", 6, seed=7)
    assert full.dtype == np.int8 and full.shape == (40, 6, 8, 8)
    assert set(np.unique(full)) == {0, 1}
    # any sub-batch, given its dataset index, reproduces exactly the same spikes
    assert np.array_equal(encode(x[13:29], "rate", 6, seed=7, first_index=13), full[13:29])
    assert np.array_equal(encode(x[39:40], "rate", 6, seed=7, first_index=39), full[39:40])
    # a different seed gives different spikes; pixel 0 never spikes, 255 always does
    other = encode(x[:40], "rate", 6, seed=8)
    assert not np.array_equal(other, full)
    assert not full[np.broadcast_to((x[:40] == 0)[:, None], full.shape)].any()
    assert full[np.broadcast_to((x[:40] == 255)[:, None], full.shape)].all()


def test_rate_encoding_probability_is_pixel_over_255():
    img = np.full((2000, 1, 2), 51, dtype=np.uint8)  # p = 0.2
    e = encode(img, "rate", 5, seed=3)
    assert abs(e.mean() - 0.2) < 0.01


def test_encoding_errors():
    x = np.zeros((2, 8, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match="valid encodings: direct, rate"):
        encode(x, "latency", 4)
    with pytest.raises(ValueError, match="valid encodings"):
        input_scale("poisson")
    with pytest.raises(ValueError, match="timesteps"):
        encode(x, "direct", 0)
    with pytest.raises(ValueError, match="uint8"):
        encode(x.astype(np.float32), "direct", 4)


def test_data_and_encoding_do_not_import_torch():
    code = (
        "import sys; import core.datasets, core.encoding;"
        "core.encoding.encode(core.datasets.load_dataset('digits', 'val')[0], 'rate', 2);"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""core.events: binning equal to tonic's ToFrame, frames -> spikes, saccade conversion, and the
converted ``digits-events`` dataset (labelled converted)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from core.datasets import (
    EVENT_BINS,
    describe,
    input_shape,
    load_dataset,
    native_encoding,
    num_classes,
)
from core.encoding import encode
from core.errors import DatasetError
from core.events import (
    EVENT_DTYPE,
    bin_events,
    convert_images,
    frames_to_spikes,
    saccade_events,
)


def _random_events(rng, n, size, t_max):
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["x"] = rng.integers(0, size[0], n)
    ev["y"] = rng.integers(0, size[1], n)
    ev["p"] = rng.integers(0, size[2], n)
    ev["t"] = np.sort(rng.integers(0, t_max, n))
    return ev


@pytest.mark.parametrize("n_bins", [1, 3, 8])
def test_bin_events_equals_tonic_to_frame(n_bins):
    tonic = pytest.importorskip("tonic")
    rng = np.random.default_rng(n_bins)
    for size, n, t_max in (((34, 34, 2), 500, 300_000), ((7, 5, 2), 40, 1_000), ((4, 4, 2), 9, 17)):
        ev = _random_events(rng, n, size, t_max)
        ref = tonic.transforms.ToFrame(sensor_size=size, n_time_bins=n_bins)(ev.copy())
        ours = bin_events(ev, size, n_bins)
        assert ours.shape == (n_bins, size[2], size[1], size[0])
        assert np.array_equal(ours, ref)


def test_bin_events_refuses():
    ev = _random_events(np.random.default_rng(0), 5, (4, 4, 2), 100)
    with pytest.raises(DatasetError, match="outside the sensor"):
        bin_events(ev, (3, 3, 2), 2)
    with pytest.raises(DatasetError, match="empty"):
        bin_events(ev[:0], (4, 4, 2), 2)


def test_frames_to_spikes_merges_bins():
    frames = np.zeros((1, 8, 1, 1, 2), dtype=np.uint8)
    frames[0, 1, 0, 0, 0] = 3  # bin 1 -> step 0 when T = 4 (two bins per step)
    frames[0, 6, 0, 0, 1] = 1  # bin 6 -> step 3
    s = frames_to_spikes(frames, 4)
    assert s.shape == (1, 4, 1, 1, 2) and s.dtype == np.int8
    assert s[0, :, 0, 0, 0].tolist() == [1, 0, 0, 0]
    assert s[0, :, 0, 0, 1].tolist() == [0, 0, 0, 1]
    assert np.array_equal(frames_to_spikes(frames, 8)[0, :, 0, 0, 0] > 0, frames[0, :, 0, 0, 0] > 0)
    with pytest.raises(DatasetError, match="must divide"):
        frames_to_spikes(frames, 3)
    assert np.array_equal(encode(frames, "frames", 2), frames_to_spikes(frames, 2))


def test_saccade_events():
    assert len(saccade_events(np.zeros((4, 4), np.uint8), 1)) == 0  # nothing to see
    img = np.zeros((4, 4), np.uint8)
    img[1, 2] = 255
    ev = saccade_events(img, 2, steps_per_saccade=4)
    assert np.all(np.diff(ev["t"]) >= 0)
    assert ev["x"].max() < 8 and ev["y"].max() < 8
    assert set(ev["p"].tolist()) == {0, 1}  # the dot appears (ON) and moves away (OFF)
    first = ev[ev["t"] == ev["t"][0]]
    assert len(first) == 1 and first["p"][0] == 1  # one bright pixel appears at the first step
    assert np.array_equal(ev, saccade_events(img, 2, steps_per_saccade=4))  # deterministic


def test_digits_events_dataset_is_converted_and_labelled():
    assert input_shape("digits-events") == (2, 10, 10) and num_classes("digits-events") == 10
    assert "converted" in describe("digits-events") and "converted" not in describe("nmnist")
    assert native_encoding("digits-events") == "frames" and native_encoding("digits") is None
    assert num_classes("dvs-gesture") == 11
    x, y = load_dataset("digits-events", "test")
    images, labels = load_dataset("digits", "test")
    assert x.shape == (len(images), EVENT_BINS, 2, 10, 10) and x.dtype == np.uint8
    assert np.array_equal(y, labels)
    assert np.array_equal(x[:3], convert_images(images[:3], 1, EVENT_BINS))
    assert (x > 0).any(axis=(1, 2, 3, 4)).all()  # every sample has events


def test_core_events_import_no_torch():
    code = ("import sys; import core.events, core.datasets; "
            "assert 'torch' not in sys.modules and 'tonic' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

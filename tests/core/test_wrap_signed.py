"""core.fixedpoint.wrap_signed takes its modulo as a bit mask (issue 12: it was the largest
single cost of a neuron update); it must give exactly the integers of the modulo definition."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from core import fixedpoint as fx


def _by_modulo(x, bits: int):
    base = 1 << bits
    return (x + base // 2) % base - base // 2


@given(st.integers(min_value=-(2**62), max_value=2**62), st.sampled_from([8, 24, 32]))
def test_python_ints(x, bits):
    assert fx.wrap_signed(x, bits) == _by_modulo(x, bits)


def test_int64_arrays_and_tensors():
    rng = np.random.default_rng(0)
    # every magnitude from 0 to 2**62, both signs, and the edges of each range
    x = np.concatenate([
        (rng.integers(-(2**62), 2**62, 20_000) >> rng.integers(0, 62, 20_000)),
        np.array([0, 1, -1, 2**23, -(2**23), 2**23 - 1, 2**31, -(2**31), 2**31 - 1,
                  -(2**31) - 1, 2**32, -(2**32), 2**62, -(2**62)], dtype=np.int64)])
    for bits in (24, 32):
        expected = _by_modulo(x, bits)
        np.testing.assert_array_equal(fx.wrap_signed(x, bits), expected)
        assert expected.min() >= -(2 ** (bits - 1)) and expected.max() < 2 ** (bits - 1)
        got = fx.wrap_signed(torch.from_numpy(x), bits)
        np.testing.assert_array_equal(got.numpy(), expected)

"""The overflow flags of the one LIF arithmetic (core.fixedpoint.lif_step_overflow): each case
the neuron model implements, hand-computed, in numpy and torch; lif_step is the same arithmetic
without the flags."""

import numpy as np
import pytest
import torch

from core import fixedpoint as fx

M = fx.UV_MAX  # 2**23


def _flags(u, v, a, du=4095, dv=0, vth=fx.VTH_MAX, bias=0, lib=np):
    arrays = [np.asarray(x, dtype=np.int64) for x in (u, v, a)]
    b = np.full(arrays[0].shape, bias, dtype=np.int64)
    if lib is torch:
        arrays, b = [torch.from_numpy(x) for x in arrays], torch.from_numpy(b)
    un, vn, s, ov = fx.lif_step_overflow(*arrays, du, dv, vth, b)
    return ([np.asarray(x).tolist() for x in (un, vn, s)],
            {k: np.asarray(f).tolist() for k, f in zip(fx.OVERFLOW_KINDS, ov, strict=True)})


@pytest.mark.parametrize("lib", [np, torch], ids=["numpy", "torch"])
def test_each_overflow_case_is_flagged_where_it_happens(lib):
    # neuron 0: nothing out of range; 1: a_in << 6 = 2**32 wraps to 0 (rule N2);
    # 2: u = 2**23 + 64 takes the 24-bit correction (N3); 3: u = -(2**23) likewise;
    # 4: v falls below -(2**23 - 1) and saturates (N5); 5: v above 2**23 - 1 is clipped but
    # spikes and resets as without the clip: not an overflow
    v = [0, 0, 0, 0, -M + 10, M - 10]
    a = [5, 1 << 26, (1 << 17) + 1, -(1 << 17), -1, 1]
    (un, vn, s), flags = _flags([0] * 6, v, a, du=4095, lib=lib)  # u is this step's input
    assert flags["a_in_wrap"] == [False, True, False, False, False, False]
    assert flags["u_wrap"] == [False, False, True, True, False, False]
    assert flags["v_saturate"] == [False, False, False, False, True, False]
    assert flags["v_wrap"] == [False] * 6
    assert s[5] and vn[5] == 0 and vn[4] == -fx.V_LIMIT
    assert un[:4] == [320, 0, M + 64 - 2 * M, -M + 2 * M]
    # the current accumulates: with du = 0 it keeps 4095/4096 of itself, and 2**17 - 1 more
    # (one step's largest safe input) on top of 2**23 - 2**13 wraps
    (un, _, _), flags = _flags([M - (1 << 13)], [0], [(1 << 17) - 1], du=0, lib=lib)
    assert flags["u_wrap"] == [True] and un[0] < 0


@pytest.mark.parametrize("lib", [np, torch], ids=["numpy", "torch"])
def test_the_32_bit_wrap_of_v_is_flagged(lib):
    # u outside 24 bits (an input beyond one correction, N3) lets v' + u + bias wrap at 32 bits
    a = [(2**31 - 2**24) >> 6]  # a << 6 = 2**31 - 2**24: u ends at 2**31 - 2**25
    (un, vn, _), flags = _flags([0], [2**30], a, du=4095, lib=lib)
    assert un == [2**31 - 2**25]
    assert flags["u_wrap"] == [True] and flags["v_wrap"] == [True]
    assert flags["a_in_wrap"] == [False]


def test_an_input_of_zero_flags_nothing():
    (_, _, _), flags = _flags([100, -100], [5, -5], [0, 0], du=10, dv=10)
    assert all(f == [False, False] for f in flags.values())
    u, v = np.array([M - 1, 3]), np.array([0, 0])
    *_, ov = fx.lif_step_overflow(u, v, 0, 4095, 0, 1, 0)  # the int 0 of a silent step
    assert [np.asarray(f).shape for f in ov] == [(2,)] * 4


def test_lif_step_is_lif_step_overflow_without_the_flags():
    rng = np.random.default_rng(0)
    u = rng.integers(-M, M, 200)
    v = rng.integers(-M + 1, M, 200)
    a = rng.integers(-(2**27), 2**27, 200)
    bias = rng.integers(-4096, 4096, 200) << 3
    for du, dv in [(0, 0), (4095, 4095), (40, 410)]:
        got = fx.lif_step(u, v, a, du, dv, 1000, bias)
        want = fx.lif_step_overflow(u, v, a, du, dv, 1000, bias)[:3]
        assert all(np.array_equal(x, y) for x, y in zip(got, want, strict=True))

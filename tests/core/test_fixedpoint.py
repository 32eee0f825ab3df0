"""The arithmetic module: hand-computed contract cases, and numpy == torch on the same inputs."""

import numpy as np
import pytest
import torch

from core import fixedpoint as fx


def test_decay_u_plus_one_and_truncation_toward_zero():
    u = np.array([4096, -4096, 5, -5, 0], dtype=np.int64)
    # du = 0 still decays by 1/4096: 4096 * 4095 / 4096 = 4095
    assert fx.decay_u(u, 0).tolist() == [4095, -4095, 4, -4, 0]
    # du = 4095 clears u every step
    assert fx.decay_u(u, 4095).tolist() == [0, 0, 0, 0, 0]
    # du = 2047: factor 2048/4096; -5 * 0.5 = -2.5 -> -2 (toward zero, not floor)
    assert fx.decay_u(u, 2047).tolist() == [2048, -2048, 2, -2, 0]


def test_decay_v_has_no_offset():
    v = np.array([1000, -1001], dtype=np.int64)
    assert fx.decay_v(v, 0).tolist() == [1000, -1001]
    assert fx.decay_v(v, 2048).tolist() == [500, -500]


def test_wrap_u_is_asymmetric_single_correction():
    m = fx.UV_MAX
    x = np.array([m, m + 1, -m, -m + 1, 3 * m], dtype=np.int64)
    assert fx.wrap_u(x).tolist() == [m, -m + 1, m, -m + 1, m]


def test_lif_step_strict_threshold_reset_and_bias_scaling():
    u = np.zeros(3, dtype=np.int64)
    v = np.zeros(3, dtype=np.int64)
    vth = 10  # fires when v > 640
    a_in = np.array([10, 11, 0], dtype=np.int64)  # u = 640, 704, 0
    bias = np.array([0, 0, 641], dtype=np.int64)  # bias is added unscaled
    u, v, s = fx.lif_step(u, v, a_in, 4095, 0, vth, bias)
    assert s.tolist() == [False, True, True]
    assert v.tolist() == [640, 0, 0]
    assert u.tolist() == [640, 704, 0]


def test_v_saturates_both_ways():
    u = np.zeros(2, dtype=np.int64)
    v = np.array([fx.V_LIMIT - 5, -fx.V_LIMIT + 5], dtype=np.int64)
    a = np.array([100, -100], dtype=np.int64)
    zero = np.zeros(2, dtype=np.int64)
    # A saturated positive v is above even the largest threshold ((2**17-1) << 6 = 2**23 - 64),
    # so it fires and resets; the negative side stays pinned at -(2**23 - 1).
    _, v2, s = fx.lif_step(u, v, a, 4095, 0, fx.VTH_MAX, zero)
    assert s.tolist() == [True, False]
    assert v2.tolist() == [0, -fx.V_LIMIT]
    assert fx.saturate_v(np.array([2**24, -(2**24)])).tolist() == [fx.V_LIMIT, -fx.V_LIMIT]


def test_dense_output_floors_negative_sums():
    acc = np.array([7, -7, 8], dtype=np.int64)
    assert fx.dense_output(acc, -1).tolist() == [3, -4, 4]
    assert fx.dense_output(acc, 2).tolist() == [28, -28, 32]


def test_lava_dense_weights_truncation_rule():
    assert fx.lava_dense_weights(np.array([5, -5, 255, -300])).tolist() == [4, -6, 254, -256]
    assert fx.lava_dense_weights(np.array([5, 255, 300])).tolist() == [5, 255, 255]
    assert fx.lava_dense_weights(np.array([-5, -255, -300])).tolist() == [-5, -255, -255]
    even = np.arange(-256, 255, 2)
    assert np.array_equal(fx.lava_dense_weights(even), even)


def test_conv_output_wraps_24_bits():
    x = np.array([2**23, -(2**23) - 1, 5], dtype=np.int64)
    assert fx.conv_output(x).tolist() == [-(2**23), 2**23 - 1, 5]


@pytest.mark.parametrize("du,dv", [(0, 0), (4095, 2048), (1000, 4095), (2047, 7)])
def test_numpy_and_torch_run_the_same_functions(du, dv):
    rng = np.random.default_rng(du + dv)
    u = rng.integers(-(2**23), 2**23, 500)
    v = rng.integers(-(2**23) + 1, 2**23 - 1, 500)
    a = rng.integers(-(2**18), 2**18, 500)  # large enough to wrap u sometimes
    bias = fx.effective_bias(rng.integers(-4096, 4096, 500), 3)
    for _ in range(3):
        un, vn, sn = fx.lif_step(u, v, a, du, dv, 300, bias)
        ut, vt, st = fx.lif_step(*(torch.from_numpy(z) for z in (u, v, a)), du, dv, 300,
                                 torch.from_numpy(bias))
        assert np.array_equal(un, ut.numpy()) and np.array_equal(vn, vt.numpy())
        assert np.array_equal(sn, st.numpy())
        u, v = un, vn
    acc = rng.integers(-(2**30), 2**30, 100)
    for e in (-8, -3, 0, 4):
        assert np.array_equal(fx.dense_output(acc, e), fx.dense_output(torch.from_numpy(acc), e))
    assert np.array_equal(fx.conv_output(acc), fx.conv_output(torch.from_numpy(acc)).numpy())


def test_decay_factor_round_trip():
    for dv in (0, 1, 2048, 4095):
        assert fx.decay_from_factor(fx.factor_from_dv(dv)) == dv
    for du in (0, 1, 2047, 4095):
        assert fx.du_from_factor(fx.factor_from_du(du)) == du

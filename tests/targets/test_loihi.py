"""The Lava target (targets/loihi/): its numpy layout helpers (main environment, no Lava), and
real Lava runs (in .venv-lava) against torch_ref: identical records.

Random small QGraphs built directly from the dataclasses: a graded-input Dense layer, a Conv
with stride and padding, two synapses into one population, readouts with weight exponents
and bias, several latencies, synapse delays and max pooling, a binary-input MLP. Every spike
record, readout record (and u, v when recorded) must be exactly equal after the per-node
latency shift.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from core import fixedpoint as fx
from core.errors import EnvironmentMissingError, GraphError
from core.graph import INPUT, Conv, InputSpec, QGraph, Readout
from core.ops import conv2d, conv2d_out_hw
from targets import loihi, torch_ref
from targets.loihi import layout
from targets.records import load_record
from tests.lava_scripts.lava_test_graphs import (
    delay_pool_graph,
    mixed_graph,
    mlp_graph,
    pop,
    random_inputs,
)

LAVA_SIM = loihi.REPO_ROOT / "targets" / "lava_sim.py"


# ------------------------------------------------------------------ layout (numpy, no Lava)


def test_lava_to_ours_maps_whc_positions_to_chw_positions():
    """Element (w, h, c) of Lava's C-order (W, H, C) vector is element (c, h, w) of ours."""
    C, H, W = 3, 4, 5
    perm = layout.lava_to_ours((C, H, W), C * H * W)
    for w in range(W):
        for h in range(H):
            for c in range(C):
                assert perm[(w * H + h) * C + c] == (c * H + h) * W + w
    assert layout.lava_shape((C, H, W), C * H * W) == (W, H, C)
    assert np.array_equal(layout.lava_to_ours(None, 7), np.arange(7))
    assert layout.lava_shape(None, 7) == (7,)


def test_records_and_spikes_convert_back_to_our_order():
    C, H, W, steps = 2, 3, 4, 5
    rng = np.random.default_rng(0)
    ours = rng.integers(-9, 9, size=(steps, C, H, W))
    lava = ours.transpose(3, 2, 1, 0)  # [W, H, C, steps], what a sink records
    perm = layout.lava_to_ours((C, H, W), C * H * W)
    assert np.array_equal(layout.records_to_ours(lava, perm, steps), ours.reshape(steps, -1))
    spikes = ours[0] > 0
    got = layout.spikes_to_ours(spikes.transpose(2, 1, 0), perm)
    assert got.dtype == np.int64 and np.array_equal(got, spikes.reshape(-1))


def _lava_true_conv(x, weight, stride, padding, groups):
    """Lava's convolution as lava/proc/conv/utils.py (conv_scipy) defines it, written out:
    x (W, H, C_in), weight (C_out, kx, ky, C_in/g), stride/padding in (x, y) order; a TRUE
    convolution (the kernel walks backwards), 'valid' on the zero-padded input."""
    c_out, kx, ky, c_per = weight.shape
    xp = np.pad(x, ((padding[0], padding[0]), (padding[1], padding[1]), (0, 0)))
    wo = (xp.shape[0] - kx) // stride[0] + 1
    ho = (xp.shape[1] - ky) // stride[1] + 1
    out = np.zeros((wo, ho, c_out), dtype=np.int64)
    per_group = c_out // groups
    for o in range(c_out):
        g = o // per_group
        for i in range(wo):
            for j in range(ho):
                patch = xp[i * stride[0] : i * stride[0] + kx, j * stride[1] : j * stride[1] + ky,
                           g * c_per : (g + 1) * c_per]
                out[i, j, o] = (patch * weight[o, ::-1, ::-1, :]).sum()
    return out


@pytest.mark.parametrize("kernel,stride,padding,groups", [
    ((3, 3), (1, 1), (0, 0), 1),
    ((3, 2), (2, 1), (1, 0), 1),  # non-square kernel, asymmetric stride and padding
    ((2, 3), (1, 2), (0, 1), 2),  # groups
])
def test_lava_conv_weight_turns_our_cross_correlation_into_lavas_convolution(
        kernel, stride, padding, groups):
    """The flip + transpose (and (x, y) stride/padding, as network.py passes them) give
    exactly our conv2d, in Lava's (W, H, C) layout."""
    rng = np.random.default_rng(1)
    c_in, c_out, H, W = 4, 6, 7, 6
    x = rng.integers(0, 5, size=(c_in, H, W))
    w = rng.integers(-9, 10, size=(c_out, c_in // groups, *kernel))
    ours = conv2d(x[None], w, stride, padding, groups)[0]
    lava = _lava_true_conv(x.transpose(2, 1, 0), layout.lava_conv_weight(w),
                           (stride[1], stride[0]), (padding[1], padding[0]), groups)
    assert np.array_equal(lava, np.rint(ours).astype(np.int64).transpose(2, 1, 0))


def test_conv_matrix_is_the_conv_as_a_dense_map():
    rng = np.random.default_rng(2)
    in_shape = (2, 5, 4)
    ho, wo = conv2d_out_hw(in_shape[1:], (3, 2), (2, 1), (1, 0))
    s = Conv("c", INPUT, "P", rng.integers(-9, 10, size=(3, 2, 3, 2)), (2, 1), (1, 0), 1,
             in_shape, (3, ho, wo))
    x = rng.integers(0, 3, size=in_shape)
    m = layout.conv_matrix(s)
    assert m.shape == (3 * ho * wo, int(np.prod(in_shape)))
    want = np.rint(conv2d(x[None], s.weight, s.stride, s.padding)[0]).astype(np.int64)
    assert np.array_equal(m @ x.reshape(-1), want.reshape(-1))


def test_lava_max_pool_is_fixedpoint_max_pool_in_lava_layout():
    """Including a window that does not fit (H=5 with kh=2: the last row is dropped)."""
    rng = np.random.default_rng(3)
    x = rng.integers(-100, 100, size=(3, 5, 6))  # (C, H, W)
    for pool in ((2, 2), (2, 1), (1, 3)):
        want = fx.max_pool2d(x[None], pool)[0]
        got = layout.lava_max_pool(x.transpose(2, 1, 0), pool)
        assert np.array_equal(got, want.transpose(2, 1, 0)), pool


def test_node_layouts_follow_the_convs():
    g = mixed_graph(seed=2, timesteps=4)
    lay = layout.node_layouts(g)
    assert lay[INPUT] == (2, 7, 6) and lay["C"] == tuple(g.populations["C"].shape)
    assert lay["D"] == tuple(g.populations["D"].shape)
    assert lay["A"] is None and lay["B"] is None and lay["R1"] is None


def test_node_layouts_refuse_two_shapes_for_one_node():
    rng = np.random.default_rng(4)
    inp = InputSpec((2, 4, 4))
    pops = {"P": pop(rng, "P", (2, 4, 4)), "Q": pop(rng, "Q", (32,))}
    syn = [Conv("in_P", INPUT, "P", rng.integers(-5, 5, size=(2, 2, 1, 1)), (1, 1), (0, 0), 1,
                (2, 4, 4), (2, 4, 4)),
           Conv("P_Q", "P", "Q", rng.integers(-5, 5, size=(8, 2, 2, 2)), (2, 2), (0, 0), 1,
                (2, 4, 4), (8, 2, 2)),
           Conv("in_Q", INPUT, "Q", rng.integers(-5, 5, size=(2, 2, 1, 1)), (1, 1), (0, 0), 1,
                (2, 4, 4), (2, 4, 4))]
    g = QGraph(inp, pops, {"R": Readout("R", (1,))}, syn, 2)
    with pytest.raises(GraphError, match="'Q'"):
        layout.node_layouts(g)


def test_message_bits_and_timeline():
    g = mixed_graph(seed=2, timesteps=4)  # graded input, max_value 15
    assert layout.message_bits(g, INPUT) == 8 and layout.message_bits(g, "A") == 0
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    tl = layout.to_timeline(x, depth=2)
    assert tl.shape == (8, 4) and tl.dtype == np.int64
    assert np.array_equal(tl[:6], x.reshape(6, 4)) and not tl[6:].any()


# ------------------------------------------------------------------ real Lava (.venv-lava)


def assert_same(graph, got, want, states: bool = False):
    for p in graph.populations:
        assert got.spikes[p].dtype == bool
        assert got.spikes[p].shape == want.spikes[p].shape, p
        diff = np.argwhere(got.spikes[p] != want.spikes[p])
        assert not len(diff), f"spikes of {p} differ first at [sample, t, neuron]={diff[0]}"
        assert 0 < want.spikes[p].mean() < 1, f"degenerate test: {p} rate {want.spikes[p].mean()}"
        if states:
            for k, what in enumerate("uv"):
                assert np.array_equal(got.states[p][k], want.states[p][k]), f"{what} of {p}"
    for r in graph.readouts:
        assert got.readouts[r].shape == want.readouts[r].shape, r
        assert np.array_equal(got.readouts[r], want.readouts[r]), f"readout {r} differs"
        assert np.abs(want.readouts[r]).sum() > 0, f"degenerate test: readout {r} all zero"


class _RecordingBar:
    """Stands in for core.cli.progress_bar: records the updates the worker's lines become."""

    updates: list[int] = []

    def __init__(self, total: int, **kw) -> None:
        self.total = total

    def update(self, n: int = 1) -> None:
        self.updates.append(n)

    def __enter__(self) -> _RecordingBar:
        return self

    def __exit__(self, *exc) -> None:
        pass


def test_graded_conv_two_synapses_matches_torch_ref(monkeypatch, capfd):
    """Graded input -> Dense and Conv(stride 2, padding 1); both paths into one population;
    a second conv; two readouts with weight exponents at latency 3; T=4, chunks of 2. The
    worker's progress lines become bar updates (as samples complete: the first network's 2,
    then the second's 1, in one or more updates each), never text on stderr."""
    g = mixed_graph(seed=2, timesteps=4, nir_safe=True)
    x = random_inputs(g, 3, seed=1, rate=0.3)
    monkeypatch.setattr(_RecordingBar, "updates", [])
    monkeypatch.setattr(loihi, "progress_bar", _RecordingBar)
    got = loihi.run(g, x, record_state=True, chunk=2, progress=True)
    done = list(itertools.accumulate(_RecordingBar.updates))
    assert done[-1] == 3 and 2 in done and all(k > 0 for k in _RecordingBar.updates)
    assert loihi.PROGRESS_PREFIX not in capfd.readouterr().err
    want = torch_ref.run(g, x, record_state=True)
    assert_same(g, got, want, states=True)
    c = got.counters
    assert c["lava_runs"] == 2 and c["samples"] == 3
    assert c["lava_steps"] == (2 * 4 + g.depth) + (1 * 4 + g.depth)
    assert c["spikes"] == sum(int(s.sum()) for s in got.spikes.values())
    assert c["lava_wall_s"] > 0 and c["lava_steps_per_s"] > 0


def test_delays_and_max_pool_match_torch_ref():
    """Latency balancing (DelayDense skip paths with delays 1 and 2, a delayed Conv) and max
    pooling of conv currents (2x2, and 2x1 dropping a trailing row), through integer NIR."""
    g = delay_pool_graph(seed=1, timesteps=5)
    x = random_inputs(g, 3, seed=2, rate=0.3)
    got = loihi.run(g, x)
    assert_same(g, got, torch_ref.run(g, x))


def test_a_graph_beyond_lavas_limits_is_refused_before_lava_starts(monkeypatch):
    """A delay of 64 steps, beyond DelayDense's 6 bits (core.graph.check_lava_limits): one
    GraphError from the main environment, without starting the worker."""
    g = mlp_graph(timesteps=3, seed=1)
    bad = replace(g, synapses=[replace(g.synapses[0], delay=64), *g.synapses[1:]])

    def no_worker(*args):
        raise AssertionError("the worker was started")

    monkeypatch.setattr(loihi, "run_worker", no_worker)
    with pytest.raises(GraphError, match="delay 64 > 63"):
        loihi.run(bad, random_inputs(bad, 1, seed=0))


def test_the_worker_refuses_a_float_graph_in_one_line(tmp_path):
    """The worker reads integer graphs only (quantizing is the main environment's job); its
    one-line refusal (exit code 2) comes back as a GraphError with that line."""
    np.save(tmp_path / "x.npy", np.zeros((1, 10, 4), dtype=np.int64))
    cmd = [str(loihi.lava_python()), "-m", "targets.loihi.worker",
           str(loihi.REPO_ROOT / "tests" / "data" / "snntorch_mlp.nir"),
           str(tmp_path / "x.npy"), str(tmp_path / "out.npz")]
    with pytest.raises(GraphError, match="snntorch_mlp.nir: not an integer graph"):
        loihi.run_worker(cmd, lambda samples: None)
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("python", ["main", "lava"])
def test_lava_sim_script_mlp_matches_torch_ref(tmp_path, python):
    """The user-facing script, started from the main env (it ships the integer graph to the
    Lava worker) and from the Lava env (Lava in-process): binary-input MLP, T=6, records
    saved with --record equal torch_ref's."""
    from core.nir_io import write_qgraph

    g = mlp_graph(timesteps=6, seed=3)
    x = random_inputs(g, 4, seed=2, rate=0.4)
    labels = np.array([0, 1, 2, 3])
    write_qgraph(tmp_path / "mlp.nir", g)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    rec = tmp_path / "rec.npz"
    proc = subprocess.run(
        [sys.executable if python == "main" else str(loihi.lava_python()), str(LAVA_SIM),
         str(tmp_path / "mlp.nir"), "--input",
         str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--samples", "4",
         "--record", str(rec)],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accuracy:" in proc.stdout and "lava steps" in proc.stdout, proc.stdout
    got = load_record(rec)
    assert_same(g, got, torch_ref.run(g, x))


def test_missing_lava_env_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(loihi.ENV_VAR, "/nonexistent/python")
    with pytest.raises(EnvironmentMissingError, match="make env"):
        loihi.lava_python()
    assert loihi.LavaEnvError is EnvironmentMissingError


def test_lava_sim_help_and_bad_input(tmp_path):
    env_help = subprocess.run([sys.executable, str(LAVA_SIM), "--help"], capture_output=True,
                              text=True, timeout=60)
    assert env_help.returncode == 0
    assert "Lava" in env_help.stdout and "--samples" in env_help.stdout
    bad = subprocess.run([sys.executable, str(LAVA_SIM), str(tmp_path / "missing.nir")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing.nir" in lines[0], bad.stderr
    assert "Traceback" not in bad.stderr
    no_env = subprocess.run([sys.executable, str(LAVA_SIM), str(tmp_path / "missing.nir")],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, loihi.ENV_VAR: str(tmp_path / "no-python")})
    assert no_env.returncode == 2
    assert no_env.stderr.strip().splitlines() == [no_env.stderr.strip()], no_env.stderr
    assert no_env.stderr.startswith("lava_sim: ") and "make env" in no_env.stderr

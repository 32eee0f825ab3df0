"""The Lava target (real Lava, in .venv-lava) against torch_ref: identical records.

Random small QGraphs built directly from the dataclasses: a graded-input Dense layer, a Conv
with stride and padding, two synapses into one population, readouts with weight exponents
and bias, several latencies, synapse delays and max pooling, a binary-input MLP. Every spike
record, readout record (and u, v when recorded) must be exactly equal after the per-node
latency shift.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from targets import lava, torch_ref
from targets.records import load_record
from tests.lava_scripts.lava_test_graphs import (
    delay_pool_graph,
    mixed_graph,
    mlp_graph,
    random_inputs,
)

LAVA_SIM = lava.REPO_ROOT / "targets" / "lava_sim.py"


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


def test_graded_conv_two_synapses_matches_torch_ref():
    """Graded input -> Dense and Conv(stride 2, padding 1); both paths into one population;
    a second conv; two readouts with weight exponents at latency 3; T=4, chunks of 2."""
    g = mixed_graph(seed=2, timesteps=4, nir_safe=True)
    x = random_inputs(g, 3, seed=1, rate=0.3)
    got = lava.run(g, x, record_state=True, chunk=2, progress=True)
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
    got = lava.run(g, x)
    assert_same(g, got, torch_ref.run(g, x))


def test_lava_sim_script_mlp_matches_torch_ref(tmp_path):
    """The user-facing script, started from the main env (re-executes itself in .venv-lava):
    binary-input MLP, T=6, records saved with --record equal torch_ref's."""
    from core.nir_io import write_qgraph

    g = mlp_graph(timesteps=6, seed=3)
    x = random_inputs(g, 4, seed=2, rate=0.4)
    labels = np.array([0, 1, 2, 3])
    write_qgraph(tmp_path / "mlp.nir", g)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", labels)
    rec = tmp_path / "rec.npz"
    proc = subprocess.run(
        [sys.executable, str(LAVA_SIM), str(tmp_path / "mlp.nir"), "--input",
         str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--samples", "4",
         "--record", str(rec)],  # with its progress bar (tqdm must not break Lava)
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "accuracy:" in proc.stdout and "lava steps" in proc.stdout, proc.stdout
    got = load_record(rec)
    assert_same(g, got, torch_ref.run(g, x))


def test_missing_lava_env_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(lava.ENV_VAR, "/nonexistent/python")
    with pytest.raises(lava.LavaEnvError, match="make env"):
        lava.lava_python()


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

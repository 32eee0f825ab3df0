"""Graphs we did not write: a real snnTorch export runs spike-exactly on every target."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from convert import load_graph
from targets import event_sim, torch_ref

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"


def test_snntorch_export_imports_with_its_dt_convention():
    qg, _ = load_graph(DATA / "snntorch_mlp.nir", timesteps=10)
    # snnTorch: dt = 1e-4, tau = dt / (1 - beta), r = tau / dt; betas 0.75 and 0.5
    assert sorted(p.dv for p in qg.populations.values()) == [1024, 2048]
    assert all(p.du == 4095 for p in qg.populations.values())
    x = np.load(DATA / "snntorch_mlp_inputs.npy")
    a, b = torch_ref.run(qg, x), event_sim.run(qg, x)
    assert all(s.any() for s in a.spikes.values())
    for name in a.spikes:
        assert np.array_equal(a.spikes[name], b.spikes[name])


def test_snntorch_export_verifies_on_lava_from_the_command_line():
    r = subprocess.run(
        [sys.executable, "-m", "targets.verify", str(DATA / "snntorch_mlp.nir"), "--input",
         str(DATA / "snntorch_mlp_inputs.npy"), "--timesteps", "10", "--samples", "6",
         "--targets", "torch_ref,event_sim,lava", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 mismatches across 3 targets, 6 samples" in r.stdout

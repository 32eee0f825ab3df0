"""`make demo`'s job (python -m targets.end_to_end) on digits: one epoch, two targets.

The real demo trains on MNIST for 3 epochs and runs Lava; this runs the same code path on the
8x8 digits in seconds: train, export, quantize, run torch_ref and event_sim, report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--dataset", "digits", "--epochs", "1", "--samples", "20",
        "--targets", "torch_ref,event_sim"]


def _demo(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "targets.end_to_end", *ARGS, *argv],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_demo_runs_end_to_end_then_reuses_its_checkpoint(tmp_path):
    out = tmp_path / "missing" / "demo"  # a missing folder is created
    r = _demo("--out", str(out))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "[1/4] training fc_snn on digits for 1 epochs"
    assert "[2/4] exporting to NIR and quantizing to Loihi fixed point" in lines
    assert "[3/4] running 20 test samples on torch_ref,event_sim" in lines
    assert "[4/4] report" in lines
    assert ("spike equivalence: 2 targets agree exactly on 20 samples (2 records each, every "
            "spike and every readout integer)") in lines
    assert any(ln.startswith("NOT multiplication-free: fc1") for ln in lines)
    assert any(ln.startswith("torch_ref (20)") for ln in lines)
    for name in ("fc_snn_digits_e1_s0.pt", "model.nir", "model.loihi.nir", "raster.png"):
        assert (out / name).is_file(), name
    assert "\r" not in r.stderr  # no bars redrawn into a pipe

    r = _demo("--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert "[1/4] reusing" in r.stderr  # the steps go to stderr, the report is the JSON
    assert s["spike_exact"] is True and s["samples"] == 20
    assert list(s["targets"]) == ["torch_ref", "event_sim"]
    acc = {t["accuracy"] for t in s["targets"].values()}
    assert len(acc) == 1
    line = next(ln for ln in lines if ln.startswith("torch_ref (20)"))
    assert f"{acc.pop() * 100:.2f}%" in line
    assert s["certificate"]["mac_edges"] == ["fc1"]


def test_demo_refuses_an_unwritable_out_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    r = _demo("--out", str(tmp_path / "file" / "demo"))
    assert r.returncode == 2
    assert r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert "--out" in line and "cannot create its folder" in line

"""python -m convert.finetune (issue 10 item 4): a real snnTorch export fine-tuned chip-exact on
user data; the accuracy it prints is what the targets give on the tuned file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from convert import load_graph
from targets import event_sim, torch_ref
from targets.cli import accuracy

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
MODEL = DATA / "snntorch_leaky.nir"
INPUTS = DATA / "snntorch_leaky_inputs.npy"


def _run(*args):
    return subprocess.run([sys.executable, "-m", "convert.finetune", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_finetune_improves_and_the_targets_agree(tmp_path):
    x = np.load(INPUTS)
    y = np.arange(len(x)) % 10  # labels the untrained network does not predict
    labels = tmp_path / "y.npy"
    np.save(labels, y)
    out = tmp_path / "tuned.nir"
    r = _run(MODEL, "--input", INPUTS, "--labels", labels, "-o", out, "--epochs", "12",
             "--lr", "0.02", "--batch-size", "10", "--holdout", "0", "--json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    before, after = rep["accuracy_before"]["trained"], rep["accuracy_after"]["trained"]
    assert after > before + 0.2, (before, after)
    graph, _ = load_graph(out)
    assert graph.metadata.get("chip_exact") == 1
    orig, _ = load_graph(MODEL, input_timesteps=x.shape[1])
    assert accuracy(orig, torch_ref.run(orig, x), y) == before
    for target in (torch_ref, event_sim):
        assert accuracy(graph, target.run(graph, x), y) == after


def test_finetune_refuses_bad_labels_in_one_line(tmp_path):
    labels = tmp_path / "y.npy"
    np.save(labels, np.zeros(3, dtype=np.int64))
    r = _run(MODEL, "--input", INPUTS, "--labels", labels, "-o", tmp_path / "t.nir")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "one class index per input sample" in r.stderr
    assert not (tmp_path / "t.nir").exists()

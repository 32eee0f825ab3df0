"""docs/custom-models.md, run as written: a user's own model (docs/examples/my_snn.py) through
``python -m train --model my_snn:MySNN``, ``python -m convert.to_nir`` and
``python -m targets.verify`` (with a smaller training budget than the page's: about 20 s)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
from torch import nn

from convert.export import export_model
from convert.float_sim import simulate
from convert.nir_import import import_nir
from core.datasets import load_dataset
from core.encoding import encode
from core.errors import ExportError
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.loop import model_input

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "custom-models.md"
EXAMPLE = ROOT / "docs" / "examples" / "my_snn.py"
# The page's commands; the test runs each with its paths in a temporary folder, and training
# with a smaller budget (the extra flags come last, so they override).
COMMANDS = [
    ("python -m train --model my_snn:MySNN --dataset digits -o my.pt",
     ["--epochs", "1", "--limit", "300", "--no-progress"]),
    ("python -m convert.to_nir my.pt", ["--json"]),
    ("python -m targets.verify my.nir --samples 100", ["--samples", "20", "--json"]),
]


def test_the_page_shows_the_example_file_whole_and_the_tested_commands():
    doc = DOC.read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert EXAMPLE.read_text() in blocks
    for command, _ in COMMANDS:
        assert f"\n{command}\n" in doc, command
    assert "\nexport PYTHONPATH=docs/examples\n" in doc


def _run(command: str, extra: list[str], tmp: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable if a == "python" else a for a in command.split()]
    argv = [str(tmp / a) if a in ("my.pt", "my.nir") else a for a in argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "docs" / "examples"))
    r = subprocess.run([*argv, *extra], cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{command}: {r.stderr}"
    assert "Traceback" not in r.stderr
    return r


def test_own_model_trains_exports_and_runs_spike_exactly(tmp_path, monkeypatch):
    for command, extra in COMMANDS[:2]:
        last = _run(command, extra, tmp_path)
    summary = json.loads(last.stdout)
    assert summary["model"] == "my_snn:MySNN" and summary["nodes"] == 7

    g = nir.read(str(tmp_path / "my.nir"))  # standard NIR: stock reader
    chain = ["input", "conv", "lif1", "pool", "flatten", "fc", "output"]
    assert sorted(g.edges) == sorted(zip(chain[:-1], chain[1:], strict=True))
    assert g.metadata["model"] == "my_snn:MySNN"
    # the exported graph computes the trained model: float simulation == torch forward
    monkeypatch.syspath_prepend(str(ROOT / "docs" / "examples"))
    ckpt = load_checkpoint(tmp_path / "my.pt")
    model = model_from_checkpoint(ckpt)
    images, _ = load_dataset("digits", "test")
    x = encode(images[:40], "direct", ckpt["timesteps"])
    scores, spikes = simulate(import_nir(g), x)
    with torch.no_grad():
        logits = model(model_input(x, "direct")).double().numpy()
    assert np.allclose(scores / ckpt["timesteps"], logits, atol=1e-5)
    assert spikes["lif1"].any()

    command, extra = COMMANDS[2]
    verify = json.loads(_run(command, extra, tmp_path).stdout)
    assert verify["spike_exact"] and verify["mismatches"] == []
    assert set(verify["targets"]) == {"torch_ref", "event_sim", "lava"}
    assert verify["samples"] == 20 and verify["targets"]["lava"]["spikes"] > 0


def test_a_model_without_export_nir_is_refused_by_name():
    class NoExport(nn.Module):
        in_shape = (4,)

    with pytest.raises(ExportError, match="export_nir"):
        export_model(NoExport(), "mine:NoExport", (1, 2, 2), {})


def test_an_export_nir_without_output_is_refused():
    class NoOutput(nn.Module):
        in_shape = (1, 2, 2)

        def export_nir(self, b):
            b.flatten("input")

    with pytest.raises(ExportError, match="no output"):
        export_model(NoOutput(), "mine:NoOutput", (1, 2, 2), {})

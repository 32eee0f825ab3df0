"""torch_ref in batches and on a device (issue 12 item 2): the records and counters do not
depend on the batch size or the device, the golden hashes included; CUDA is checked where
there is a GPU (the golden graphs through cuda must give the committed hashes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convert import load_graph
from convert.int_forward import attention_float64
from core import fixedpoint as fx
from core.errors import UserError
from targets import torch_ref
from tests.golden import golden_inputs, record_hashes

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
GOLDEN = json.loads((DATA / "golden_hashes.json").read_text())


@pytest.mark.parametrize("name", ["fc_snn_digits.nir", "cml_net_digits.nir"])
def test_batches_give_the_same_records_and_counters(name):
    graph, _ = load_graph(DATA / name)
    x = golden_inputs(graph)
    whole = torch_ref.run(graph, x, batch=len(x), record_state=True)
    parts = torch_ref.run(graph, x, batch=5, record_state=True)  # 5 + 5 + 5 + 1
    assert record_hashes(parts) == GOLDEN[name]["records"] == record_hashes(whole)
    assert parts.counters == whole.counters
    for pop, (u, v) in whole.states.items():
        assert np.array_equal(parts.states[pop][0], u) and np.array_equal(parts.states[pop][1], v)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
def test_cuda_gives_the_golden_hashes():
    for name in sorted(GOLDEN):
        graph, _ = load_graph(DATA / name)
        x = golden_inputs(graph)
        r = torch_ref.run(graph, x, device="cuda", batch=7)
        assert record_hashes(r) == GOLDEN[name]["records"], name
        assert r.counters == torch_ref.run(graph, x).counters, name


def test_attention_in_float64_equals_int64():
    """The CUDA path of the attention (no int64 matmul there), run on the CPU."""
    rng = np.random.default_rng(1)
    for heads, shift in ((1, 0), (2, -3), (4, 2)):
        q, k, v = (torch.from_numpy(rng.integers(0, 2, size=(3, 8, 6))) for _ in range(3))
        out, ops = attention_float64(q, k, v, heads, shift)
        assert torch.equal(out, fx.spike_attention(q, k, v, heads, shift))
        assert ops == fx.spike_attention_ops(q, k, v, heads)


def test_bad_device_and_batch_are_refused():
    graph, _ = load_graph(DATA / "fc_snn_digits.nir")
    x = golden_inputs(graph)
    with pytest.raises(UserError, match="--batch"):
        torch_ref.run(graph, x, batch=0)
    with pytest.raises(UserError, match="--device"):
        torch_ref.run(graph, x, device="tpu")
    r = subprocess.run([sys.executable, "-m", "targets.torch_ref", str(DATA / "fc_snn_digits.nir"),
                        "--device", "tpu"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--device" in r.stderr

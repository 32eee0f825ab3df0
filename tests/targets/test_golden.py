"""CI regression: committed small models must give the committed spike hashes on every target.

A changed hash means the arithmetic changed; regenerate only with a reason
(tests/data/make_golden.py)."""

import json
from pathlib import Path

import pytest

from convert import load_graph
from targets import event_sim, onnx_rt, torch_ref
from tests.golden import golden_inputs, record_hashes

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN = json.loads((DATA / "golden_hashes.json").read_text())
MODELS = sorted(GOLDEN)


@pytest.fixture(scope="module", params=MODELS)
def case(request):
    graph, _ = load_graph(DATA / request.param)
    return request.param, graph, golden_inputs(graph)


def test_golden_models_spike(case):
    name, graph, x = case
    r = torch_ref.run(graph, x)
    assert all(s.any() for s in r.spikes.values()), f"{name}: a population never spikes"


@pytest.mark.parametrize("target", [torch_ref, event_sim, onnx_rt],
                         ids=["torch_ref", "event_sim", "onnx_rt"])
def test_golden_hashes(case, target):
    name, graph, x = case
    assert record_hashes(target.run(graph, x)) == GOLDEN[name]["records"]


def test_golden_hashes_on_lava(case):
    from targets import loihi

    name, graph, x = case
    assert record_hashes(loihi.run(graph, x)) == GOLDEN[name]["records"]

"""Chip-exact training (train.chip_exact, issue 10): the proof, on tiny digits models of every
registry model, with the graded and the bit-plane input.

For each: train the integer graph chip-exact for one short epoch, export the checkpoint with
``python -m convert.to_nir``, load the file as every target loads it, then on the test samples
the training evaluated: the training forward (the one differentiated, ``grad=True``) gives the
same spike and readout records as torch_ref, event_sim and Lava, and the test accuracy the
training reported equals the accuracy each of them gives.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convert import load_graph
from convert.int_forward import ChipParams, round_weights
from convert.quantize import _int_weights
from convert.to_nir import main as to_nir_main
from core.datasets import load_dataset
from core.encoding import encode_as_recorded
from core.errors import GraphError, UserError
from models.checkpoint import load_checkpoint
from targets import event_sim, torch_ref
from targets.cli import accuracy
from train.chip_exact import ChipModel, graph_from_bytes, train_chip_exact
from train.loop import train_model

ROOT = Path(__file__).resolve().parents[2]
EVAL = 8  # test samples evaluated (and compared on every target)

# the registry models, each as small as its constructor allows (seconds to train)
TINY = {
    "fc_snn": {"n_hidden": 24},
    "conv_snn": {"c1": 4, "c2": 6},
    "cml_net": {"channels": [4, 6, 8]},
    "ds_resnet": {"widths": [4, 6, 8], "blocks": [1, 1, 1]},
    "spiking_mlp": {"dim": 12, "mlp_ratio": 2},
    "cml_spikformer": {"tokenizer_channels": [4, 8], "dim": 8, "heads": 2, "mlp_ratio": 2},
}
CASES = [(m, bp) for m in TINY for bp in (False, True)]


def _train(model: str, bitplanes: bool, out: Path) -> dict:
    return train_chip_exact(model, "digits", 1, out, config=TINY[model], limit=32,
                            eval_limit=EVAL, batch_size=16, input_bitplanes=bitplanes,
                            progress=False, log=lambda s: None, threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, bitplanes) -> (checkpoint path, exported .nir path), trained on first use."""
    cache: dict = {}

    def get(model: str, bitplanes: bool):
        key = (model, bitplanes)
        if key not in cache:
            d = tmp_path_factory.mktemp(f"{model}_{'bp' if bitplanes else 'graded'}")
            ck = d / "chip.pt"
            try:
                _train(model, bitplanes, ck)
            except GraphError as e:  # refused before any training: no such deployment
                cache[key] = e
                return e
            nir_path = d / "chip.nir"
            assert to_nir_main([str(ck), "-o", str(nir_path)]) == 0
            cache[key] = (ck, nir_path)
        return cache[key]

    return get


def _case(trained, model, bitplanes):
    got = trained(model, bitplanes)
    if isinstance(got, GraphError):
        # the only refusal: bit planes cannot feed a max pooling (convert.quantize)
        assert bitplanes and "max pooling" in str(got), got
        pytest.skip(f"{model} with bit planes is refused by the quantizer: {got}")
    ck_path, nir_path = got
    ck = load_checkpoint(ck_path)
    graph, _ = load_graph(nir_path)
    images, labels = load_dataset("digits", "test")
    x = encode_as_recorded(graph.metadata, graph.timesteps, images[:EVAL])
    return ck, graph, x, labels[:EVAL].astype(np.int64)


def _training_forward(ck: dict, x: np.ndarray):
    """The forward training differentiates, rebuilt from the checkpoint's shadows."""
    g, report = graph_from_bytes(ck["chip_exact"]["graph"])
    model = ChipModel(g, report)
    model.load_state_dict(ck["chip_exact"]["params"])
    r = model.run(torch.from_numpy(x), grad=True)
    assert r.logits is not None and r.logits.requires_grad
    return r


def _same_records(a_spikes, a_readouts, result) -> None:
    assert set(a_spikes) == set(result.spikes) and set(a_readouts) == set(result.readouts)
    for name, rec in result.spikes.items():
        assert np.array_equal(np.asarray(a_spikes[name]), rec), f"spikes of {name} differ"
    for name, rec in result.readouts.items():
        assert np.array_equal(np.asarray(a_readouts[name]), rec), f"readout {name} differs"


@pytest.mark.parametrize(("model", "bitplanes"), CASES,
                         ids=[f"{m}-{'bitplanes' if bp else 'graded'}" for m, bp in CASES])
def test_training_forward_is_torch_ref_and_event_sim(trained, model, bitplanes):
    ck, graph, x, labels = _case(trained, model, bitplanes)
    assert graph.metadata.get("chip_exact") == 1
    assert bool(graph.input.bitplanes) == bitplanes
    tr = _training_forward(ck, x)
    ref = torch_ref.run(graph, x)
    ev = event_sim.run(graph, x)
    spikes = {k: v.numpy() for k, v in tr.spikes.items()}
    readouts = {k: v.numpy() for k, v in tr.readouts.items()}
    _same_records(spikes, readouts, ref)
    _same_records(spikes, readouts, ev)
    assert any(s.any() for s in ref.spikes.values())
    # the accuracy training reported is the targets' accuracy on the same samples
    assert ck["metrics"]["test_samples"] == EVAL
    assert ck["metrics"]["test_accuracy"] == accuracy(graph, ref, labels)
    assert ck["metrics"]["test_accuracy"] == accuracy(graph, ev, labels)


# Lava takes ~30 s a case on 2 cores: the default run pins one graded and one bit-plane model on
# Lava (the torch_ref/event_sim test above covers all twelve); `-m slow` runs the other ten.
LAVA_DEFAULT = {("fc_snn", True), ("cml_net", False)}
LAVA_CASES = [pytest.param(m, bp, id=f"{m}-{'bitplanes' if bp else 'graded'}",
                           marks=() if (m, bp) in LAVA_DEFAULT else pytest.mark.slow)
              for m, bp in CASES]


@pytest.mark.parametrize(("model", "bitplanes"), LAVA_CASES)
def test_training_forward_is_lava(trained, model, bitplanes):
    from targets import loihi

    ck, graph, x, labels = _case(trained, model, bitplanes)
    tr = _training_forward(ck, x)
    lava = loihi.run(graph, x)
    _same_records({k: v.numpy() for k, v in tr.spikes.items()},
                  {k: v.numpy() for k, v in tr.readouts.items()}, lava)
    assert ck["metrics"]["test_accuracy"] == accuracy(graph, lava, labels)


def test_export_is_the_trained_integer_graph_unchanged(trained):
    ck_path, nir_path = trained("fc_snn", False)
    ck = load_checkpoint(ck_path)
    assert nir_path.read_bytes() == ck["chip_exact"]["graph"].numpy().tobytes()
    graph, _ = load_graph(nir_path)
    g, report = graph_from_bytes(ck["chip_exact"]["graph"])
    params = ChipParams(g, report)
    params.load_state_dict({k[len("params."):]: v for k, v in ck["chip_exact"]["params"].items()})
    tuned = params.integer_graph()
    for s in graph.synapses:  # the shadows round to exactly the exported integers
        (t,) = [t for t in tuned.synapses if t.name == s.name]
        assert np.array_equal(s.weight, t.weight)


def test_round_weights_is_the_quantizers_rounding():
    rng = np.random.default_rng(0)
    for shape, lo, hi in (((6, 9), -300, 300), ((5, 4), 0, 300), ((3, 3), -300, 0),
                          ((4, 4), -2.5, 2.5)):
        w = rng.uniform(lo, hi, size=shape)
        w[0, 0] = 2.5  # a tie: both round half to even
        want, _ = _int_weights(w)
        assert np.array_equal(round_weights(torch.from_numpy(w)).numpy(), want)


def test_resume_continues_chip_exact(tmp_path):
    out = tmp_path / "c.pt"
    first = train_chip_exact("fc_snn", "digits", 1, out, config=TINY["fc_snn"], limit=32,
                             eval_limit=EVAL, batch_size=16, progress=False,
                             log=lambda s: None, threads=1)
    again = train_chip_exact(epochs=2, out_path=out, resume=out, progress=False,
                             log=lambda s: None, notice=lambda s: None, threads=1)
    assert again["metrics"]["epochs"] == 2
    assert [h["chip_exact"] for h in again["metrics"]["history"]] == [True, True]
    assert not torch.equal(first["chip_exact"]["graph"], again["chip_exact"]["graph"])
    with pytest.raises(UserError, match="bit planes|bitplanes"):
        train_chip_exact(epochs=3, out_path=out, resume=out, input_bitplanes=True,
                         progress=False, log=lambda s: None)
    with pytest.raises(UserError, match="chip-exact checkpoint"):
        train_model(epochs=3, out_path=out, resume=out, progress=False, log=lambda s: None)


def test_cli_fine_tunes_a_float_checkpoint(tmp_path):
    """python -m train --resume FLOAT --chip-exact: the float model, deployed and fine-tuned;
    the float checkpoint stays as it was and FLOAT.chip.pt is written beside it."""
    flt = tmp_path / "f.pt"
    train_model("fc_snn", "digits", 1, flt, config=TINY["fc_snn"], limit=64, eval_limit=EVAL,
                progress=False, log=lambda s: None, threads=1)
    before = flt.read_bytes()
    r = subprocess.run([sys.executable, "-m", "train", "--resume", str(flt), "--chip-exact",
                        "--limit", "32", "--eval-limit", str(EVAL), "--batch-size", "16",
                        "--threads", "1", "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["chip_exact"]["started_from"] == str(flt)
    assert not math.isnan(out["chip_exact"]["test_accuracy_deployed_before"])
    assert flt.read_bytes() == before
    ck = load_checkpoint(tmp_path / "f.chip.pt")
    assert ck["metrics"]["epochs"] == 1 and ck["chip_exact"]["started_from"] == str(flt)
    bad = subprocess.run([sys.executable, "-m", "train", "--input-bitplanes"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "--chip-exact" in bad.stderr

"""``python -m train`` end to end on digits (tiny), its error handling, each model's own
training defaults against explicit flags, and a user's model given by import path."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from core.datasets import load_dataset
from core.encoding import encode
from models.registry import MODELS
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.loop import encode_indices, evaluate, lr_at, model_input, train_model

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, cwd=ROOT, pythonpath=()):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *map(str, pythonpath)])}
    return subprocess.run(
        [sys.executable, "-m", "train", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_cli_smoke_writes_loadable_checkpoint(tmp_path):
    out = tmp_path / "new" / "folder" / "c.pt"  # a missing output folder is created
    r = _run(
        "--model",
        "fc_snn",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--limit",
        "300",
        "--batch-size",
        "16",
        "--lr",
        "5e-3",
        "--threads",
        "1",
        "--seed",
        "5",
        "-o",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout and "fc_snn" in r.stdout  # the summary table
    assert "Adam lr 0.005 (cosine), batch 16" in r.stdout
    assert "epoch 1/1" in r.stderr  # the per-epoch line
    assert ("(the model's defaults, models.fc_snn.FCSNN.TRAINING, except --lr, --batch-size, "
            "--epochs)") in r.stderr
    assert "\r" not in r.stderr  # stderr is not a terminal: no progress bar redraws
    ck = load_checkpoint(out)
    assert ck["format"] == "neurodeploy.ckpt" and ck["version"] == 1
    assert ck["model"] == "fc_snn" and ck["dataset"] == "digits" and ck["seed"] == 5
    assert ck["encoding"] == {"kind": "direct", "timesteps": 4, "seed": 5, "input_scale": 1 / 255}
    assert ck["timesteps"] == 4 and ck["config"]["n_in"] == 64
    m = ck["metrics"]
    assert m["epochs"] == 1 and len(m["history"]) == 1 and m["train_samples"] == 300
    assert 0.0 <= m["test_accuracy"] <= 1.0 and m["wall_time_s"] > 0
    # the recorded test accuracy is reproducible from the checkpoint alone
    x, y = load_dataset("digits", "test")
    acc = evaluate(model_from_checkpoint(ck), x, y, "direct", 4, 5)
    assert acc == pytest.approx(m["test_accuracy"])
    assert acc > 0.3  # it learned something from 300 samples in one epoch (chance is 0.1)


def test_train_model_is_seeded_and_resumable(tmp_path):
    # resuming a 1-epoch run to 2 epochs reproduces the 2-epoch run exactly (with a constant
    # learning rate; the cosine schedule depends on the total number of epochs)
    kw = dict(
        encoding="rate",
        limit=100,
        batch_size=50,
        progress=False,
        log=lambda s: None,
        schedule="constant",
    )
    a = train_model("conv_snn", "digits", 2, tmp_path / "a.pt", seed=1, **kw)
    b = train_model("conv_snn", "digits", 1, tmp_path / "b.pt", seed=1, **kw)
    c = train_model(
        epochs=2,
        out_path=tmp_path / "c.pt",
        resume=tmp_path / "b.pt",
        progress=False,
        log=lambda s: None,
    )
    assert a["encoding"]["kind"] == "rate" and a["encoding"]["input_scale"] == 1.0
    for k, v in a["state_dict"].items():
        assert torch.equal(c["state_dict"][k], v), k
    assert c["metrics"]["epochs"] == 2 and len(c["metrics"]["history"]) == 2
    assert c["metrics"]["test_accuracy"] == a["metrics"]["test_accuracy"]
    d = train_model("conv_snn", "digits", 1, None, seed=2, **kw)
    assert any(not torch.equal(d["state_dict"][k], v) for k, v in b["state_dict"].items())


def test_interrupted_run_resumes_exactly(tmp_path, monkeypatch):
    import train.loop as loop

    kw = dict(limit=120, batch_size=40, seed=3, progress=False, log=lambda s: None)
    full = train_model("fc_snn", "digits", 2, tmp_path / "full.pt", **kw)
    calls = []
    real_evaluate = loop.evaluate

    def interrupt_in_epoch_2(*a, **k):
        calls.append(1)
        if len(calls) == 2:  # the validation pass after epoch 2
            raise KeyboardInterrupt
        return real_evaluate(*a, **k)

    monkeypatch.setattr(loop, "evaluate", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_model("fc_snn", "digits", 2, tmp_path / "cut.pt", **kw)
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    partial = load_checkpoint(tmp_path / "cut.pt")
    assert partial["metrics"]["epochs"] == 1 and not partial["metrics"]["complete"]
    assert np.isnan(partial["metrics"]["test_accuracy"])
    done = train_model(
        epochs=2,
        out_path=tmp_path / "cut.pt",
        resume=tmp_path / "cut.pt",
        progress=False,
        log=lambda s: None,
    )
    for k, v in full["state_dict"].items():  # cosine schedule continued exactly
        assert torch.equal(done["state_dict"][k], v), k
    assert done["metrics"]["complete"] and done["metrics"]["epochs"] == 2


def test_model_input_layout_and_rate_batches():
    x, _ = load_dataset("digits", "val")
    enc = encode(x[:3], "direct", 4)
    xt = model_input(enc, "direct")  # time-major images; each model adapts them
    assert xt.shape == (4, 3, 8, 8) and xt.dtype == torch.float32
    assert torch.allclose(xt[2, 1], torch.tensor(x[1]).float() / 255)
    assert torch.equal(model_input(encode(x[:3], "rate", 4, seed=1), "rate")[0, 0],
                       torch.tensor(encode(x[:1], "rate", 4, seed=1)[0, 0]).float())
    idx = np.array([7, 2, 11])  # shuffled training batch: each row encoded with its own index
    full = encode(x[:12], "rate", 4, seed=9)
    assert np.array_equal(encode_indices(x, idx, "rate", 4, 9), full[idx])
    assert lr_at(1e-3, "cosine", 0, 10) == 1e-3 and lr_at(1e-3, "cosine", 10, 10) == 0.0
    assert lr_at(1e-3, "constant", 7, 10) == 1e-3


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "resnet"], "invalid choice: 'resnet'"),
        (["--model", "no_such_pkg_xyz.net:Net"], "cannot import module 'no_such_pkg_xyz.net'"),
        (["--model", "models.fc_snn:Nope"], "has no 'Nope'"),
        (["--dataset", "cifar"], "invalid choice: 'cifar'"),
        (["--epochs", "x"], "invalid int value"),
        (["--dataset", "digits", "-o", "/dev/null/c.pt"], "cannot create its folder"),
        (["--dataset", "digits", "--timesteps", "0"], "timesteps must be"),
        (["--dataset", "digits", "--lr", "-1"], "learning rate must be a positive number"),
        (["--dataset", "digits", "--batch-size", "0"], "batch_size must be"),
        (["--model", "cml_net", "--dataset", "digits", "--hidden", "8"], "bad config"),
        (["--resume", "/nonexistent.pt"], "does not exist"),
    ],
)
def test_cli_bad_input_one_line_exit_2(tmp_path, args, needle):
    r = _run(*args, "-q", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert needle in lines[0] and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert not list(tmp_path.iterdir())  # nothing written


def test_cli_unwritable_output(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write to read-only folders (root)")
        r = _run("--dataset", "digits", "-q", "-o", str(ro / "c.pt"))
        assert r.returncode == 2 and "not writable" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        ro.chmod(0o700)


def test_cli_output_in_unwritable_system_folder(tmp_path):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    r = _run("--dataset", "digits", "-q", "-o", "/proc/ckpt.pt")
    assert r.returncode == 2 and "/proc/ckpt.pt: cannot write in /proc" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""


def test_cli_output_is_a_directory(tmp_path):
    r = _run("--dataset", "digits", "-q", "-o", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_lists_models_without_importing_torch():
    code = (
        "import sys; from train.__main__ import build_parser; from models.registry import MODELS;"
        "h = build_parser().format_help(); assert all(m in h for m in MODELS), h;"
        "print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_cli_help_explains_every_option():
    r = _run("--help")
    assert r.returncode == 0
    for opt in (
        "--model",
        "--dataset",
        "--epochs",
        "--output",
        "--timesteps",
        "--encoding",
        "--batch-size",
        "--lr",
        "--seed",
        "--limit",
        "--threads",
        "--resume",
        "--schedule",
        "--hidden",
        "--quiet",
    ):
        assert opt in r.stdout, opt
    assert "fc_snn" in r.stdout and "fashion-mnist" in r.stdout


# --- each model's own training defaults, and explicit flags over them --------------------------

# Small constructor overrides so that every model trains a step in well under a second.
SMALL = {
    "fc_snn": {"n_hidden": 16},
    "conv_snn": {"c1": 2, "c2": 4},
    "cml_net": {"channels": [2, 4, 4]},
    "ds_resnet": {"widths": [2, 4, 4], "blocks": [1, 1, 1]},
    "spiking_mlp": {"dim": 6},
    "cml_spikformer": {"tokenizer_channels": [4], "dim": 8, "heads": 2, "mlp_ratio": 1},
    "sma_net": {"channels": [2, 4], "block_channels": 4},
}


def _hyper(ck):
    r = ck["resume"]
    return r["lr"], r["batch_size"], r["schedule"], r["total_epochs"], ck["timesteps"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_train_model_uses_the_models_own_defaults(name):
    hp = MODELS[name].TRAINING
    kw = dict(limit=8, config=SMALL[name], progress=False, log=lambda s: None)
    ck = train_model(name, "digits", **kw)  # no hyperparameter given
    assert _hyper(ck) == (hp.lr, hp.batch_size, hp.schedule, hp.epochs, hp.timesteps)
    assert ck["encoding"]["kind"] == hp.encoding and ck["metrics"]["epochs"] == hp.epochs
    # an explicit value overrides that one value only
    ck = train_model(name, "digits", 1, lr=3e-4, timesteps=2, **kw)
    assert _hyper(ck) == (3e-4, hp.batch_size, hp.schedule, 1, 2)


def test_cli_trains_at_the_models_defaults_unless_a_flag_is_given(tmp_path):
    # the example: spiking_mlp used to train at fc_snn's learning rate
    out = tmp_path / "m.pt"
    args = ("--model", "spiking_mlp", "--dataset", "digits", "--limit", "32", "--threads", "1",
            "--json", "-o", str(out))
    r = _run(*args)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["training"]
    assert (got["lr"], got["batch_size"], got["schedule"], got["total_epochs"]) == (
        1e-2, 32, "cosine", 1)
    assert "spiking_mlp on digits: epochs 1, batch 32, Adam lr 0.01 (cosine), T=4 direct, " \
           "first 32 training samples (the model's defaults, " \
           "models.spiking_mlp.SpikingMLP.TRAINING)" in r.stderr
    assert got["sources"] == dict.fromkeys(
        ("lr", "batch_size", "schedule", "epochs", "timesteps", "encoding"), "model default")
    r = _run(*args, "--lr", "2e-3", "--batch-size", "16", "--schedule", "constant", "-q")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)["training"]
    assert (got["lr"], got["batch_size"], got["schedule"]) == (2e-3, 16, "constant")
    assert r.stderr == ""  # --quiet: no per-epoch lines
    assert load_checkpoint(out)["resume"]["lr"] == 2e-3


# --- a model of the user's own, by import path -------------------------------------------------

USER_MODEL = """
import math

from torch import nn

from models.layers import SpikingModel, TrainingDefaults
from models.neuron import LIF


class TinyNet(SpikingModel):
    TRAINING = TrainingDefaults(lr=1e-2, batch_size=16, epochs=2)
    lif_names = ("hidden",)

    def __init__(self, n_in=64, n_hidden=16, n_out=10):
        super().__init__()
        self.in_shape = (int(n_in),)
        self.fc = nn.Linear(n_in, n_hidden)
        self.hidden = LIF(beta=0.5, threshold=1.0)
        self.out = nn.Linear(n_hidden, n_out, bias=False)

    @classmethod
    def default_config(cls, input_shape, num_classes):
        return {"n_in": math.prod(input_shape), "n_hidden": 16, "n_out": int(num_classes)}

    def compute_logits(self, x, rec):
        s = self.hidden(self.fc(x))
        if rec is not None:
            rec["hidden"] = s
        return self.out(s).mean(0)
"""


def test_user_model_by_import_path_trains_and_reloads(tmp_path, monkeypatch):
    pkg = tmp_path / "user_pkg_nd"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tiny.py").write_text(textwrap.dedent(USER_MODEL))
    out = tmp_path / "user.pt"
    spec = "user_pkg_nd.tiny:TinyNet"
    r = _run("--model", spec, "--dataset", "digits", "--limit", "64", "--threads", "1",
             "--seed", "2", "-o", str(out), pythonpath=[tmp_path])
    assert r.returncode == 0, r.stderr
    assert spec in r.stdout and "Adam lr 0.01 (cosine), batch 16" in r.stdout  # its defaults
    monkeypatch.syspath_prepend(str(tmp_path))
    ck = load_checkpoint(out)  # the checkpoint names the model by its import path
    assert ck["model"] == spec and ck["config"] == {"n_in": 64, "n_hidden": 16, "n_out": 10}
    assert ck["metrics"]["epochs"] == 2
    m = model_from_checkpoint(ck)
    assert type(m).__name__ == "TinyNet" and tuple(m.lif_names) == ("hidden",)
    x, y = load_dataset("digits", "test")
    acc = evaluate(m, x, y, "direct", 4, 2)
    assert acc == pytest.approx(ck["metrics"]["test_accuracy"])
    # and resuming it goes on from the checkpoint alone
    more = train_model(epochs=3, out_path=tmp_path / "more.pt", resume=out, progress=False,
                       log=lambda s: None)
    assert more["model"] == spec and more["metrics"]["epochs"] == 3

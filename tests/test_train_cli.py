"""``python -m train`` end to end on digits (tiny), and its error handling."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.datasets import load_dataset
from core.encoding import encode
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.loop import encode_indices, evaluate, lr_at, model_input, train_model

ROOT = Path(__file__).resolve().parents[1]


def _run(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "train", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_cli_smoke_writes_loadable_checkpoint(tmp_path):
    out = tmp_path / "c.pt"
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
    assert "epoch 1/1" in r.stderr  # progress bar / epoch line
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
    fc = model_input("fc_snn", enc, "direct")
    assert fc.shape == (4, 3, 64) and fc.dtype == torch.float32
    assert torch.allclose(fc[2, 1], torch.tensor(x[1].reshape(-1)).float() / 255)
    assert model_input("conv_snn", enc, "direct").shape == (4, 3, 1, 8, 8)
    idx = np.array([7, 2, 11])  # shuffled training batch: each row encoded with its own index
    full = encode(x[:12], "rate", 4, seed=9)
    assert np.array_equal(encode_indices(x, idx, "rate", 4, 9), full[idx])
    assert lr_at(1e-3, "cosine", 0, 10) == 1e-3 and lr_at(1e-3, "cosine", 10, 10) == 0.0
    assert lr_at(1e-3, "constant", 7, 10) == 1e-3


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model", "resnet"], "invalid choice: 'resnet'"),
        (["--dataset", "cifar"], "invalid choice: 'cifar'"),
        (["--epochs", "x"], "invalid int value"),
        (["--dataset", "digits", "-o", "/nonexistent-dir/c.pt"], "does not exist"),
        (["--dataset", "digits", "--timesteps", "0"], "timesteps must be"),
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
        assert r.returncode == 2 and "permission denied" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        ro.chmod(0o700)


def test_cli_output_in_unwritable_system_folder(tmp_path):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux /proc")
    r = _run("--dataset", "digits", "-q", "-o", "/proc/ckpt.pt")
    assert r.returncode == 2 and "cannot write /proc/ckpt.pt" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""


def test_cli_output_is_a_directory(tmp_path):
    r = _run("--dataset", "digits", "-q", "-o", str(tmp_path))
    assert r.returncode == 2 and "is a directory" in r.stderr
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

"""``python -m train --resume`` as a user meets it: Ctrl-C, the printed hint, flags that conflict
with the checkpoint, nothing left to train, and the evaluation limit."""

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import train.__main__ as cli
import train.loop as loop
from core.cli import run_cli
from core.datasets import load_dataset
from train.checkpoint import load_checkpoint, model_from_checkpoint
from train.loop import evaluate, summary_table, train_model

ROOT = Path(__file__).resolve().parents[2]
# One intra-op thread in every process: float sums in a fixed order, so that runs compare bit
# for bit (the printed hint carries no --threads).
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
QUIET = dict(progress=False, log=lambda s: None, notice=lambda s: None)


def _train(capsys, monkeypatch, *args, cwd):
    """``python -m train ARGS`` run in ``cwd``, in this process (the same ``run_cli`` wrapper as
    the command; one torch thread): (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    threads = torch.get_num_threads()
    capsys.readouterr()
    try:
        torch.set_num_threads(1)
        rc = run_cli(cli.PROG, cli.main, list(args))
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out, err)


def _same_run(a: dict, b: dict) -> None:
    """Two checkpoints hold the same trained run: weights, optimizer state, metrics, history."""
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        assert torch.equal(b["state_dict"][k], v), k
    for (ka, sa), (kb, sb) in zip(a["resume"]["optimizer"]["state"].items(),
                                  b["resume"]["optimizer"]["state"].items(), strict=True):
        assert ka == kb and all(torch.equal(sa[n], sb[n]) for n in sa), ka
    ma, mb = a["metrics"], b["metrics"]
    for key in ("epochs", "test_accuracy", "val_accuracy", "train_loss", "train_samples",
                "val_samples", "test_samples", "complete"):
        assert ma[key] == mb[key], key
    strip = [{k: v for k, v in h.items() if k != "epoch_time_s"} for h in ma["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "epoch_time_s"}
                     for h in mb["history"]]


# EPOCHS epochs of fc_snn on 400 digits images (~0.1 s each): Ctrl-C, sent when the first
# checkpoint appears, lands well before the end, with seconds to spare for a test process
# starved of CPU.
EPOCHS = 40
RUN = ("--dataset", "digits", "--epochs", str(EPOCHS), "--limit", "400", "--eval-limit", "100",
       "--seed", "1")


def test_ctrl_c_then_the_printed_hint_finishes_the_run_bit_for_bit(tmp_path, capsys,
                                                                   monkeypatch):
    threads = torch.get_num_threads()
    try:  # the uninterrupted run, in this process, on one thread as the subprocesses
        train_model("fc_snn", "digits", EPOCHS, tmp_path / "full.pt", limit=400, eval_limit=100,
                    seed=1, threads=1, **QUIET)
    finally:
        torch.set_num_threads(threads)

    # A job started in the background by a non-interactive shell (as CI may start this suite)
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler: restore
    # the default in the child, as a terminal's foreground job has it.
    p = subprocess.Popen([sys.executable, "-m", "train", *RUN, "-o", "cut.pt"], cwd=tmp_path,
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 100
    while not (tmp_path / "cut.pt").exists() and p.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint after the first epoch"
        time.sleep(0.005)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert out == ""  # no success table
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == ("python -m train: interrupted; the last completed epoch is saved in cut.pt "
                    "(continue with: python -m train --resume cut.pt)")
    cut = load_checkpoint(tmp_path / "cut.pt")
    done = cut["metrics"]["epochs"]
    assert 1 <= done < EPOCHS and not cut["metrics"]["complete"]
    assert np.isnan(cut["metrics"]["test_accuracy"])

    hint = shlex.split(last.split("continue with: ")[1].rstrip(")"))
    assert hint[:3] == ["python", "-m", "train"]
    again = _train(capsys, monkeypatch, *hint[3:], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (f"resuming cut.pt after epoch {done}: fc_snn on digits: epochs {EPOCHS}"
            in again.stderr)
    assert "(as recorded in cut.pt)" in again.stderr
    assert f"epoch {done + 1}/{EPOCHS}:" in again.stderr
    assert f"epoch {EPOCHS}/{EPOCHS}:" in again.stderr
    assert f"epoch {done}/{EPOCHS}:" not in again.stderr  # nothing trained twice
    assert f"| epochs        | {EPOCHS} " in again.stdout and "on 100 samples" in again.stdout
    _same_run(load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "cut.pt"))


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A finished 2-epoch run on 200 digits (checkpoint path)."""
    path = tmp_path_factory.mktemp("resume") / "c.pt"
    train_model("fc_snn", "digits", 2, path, limit=200, eval_limit=50, seed=4, **QUIET)
    return path


def _one_line_exit_2(r, *needles):
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("epochs, needle", [
    (None, "c.pt has finished its run (2 of 2 epochs, tested); give --epochs above 2"),
    ("2", "--epochs 2: c.pt has already trained 2 epochs; give --epochs above 2"),
    ("1", "--epochs 1: c.pt has already trained 2 epochs"),
])
def test_nothing_left_to_train_is_an_error_not_a_success_table(two_epochs, epochs, needle,
                                                               capsys, monkeypatch):
    before = two_epochs.read_bytes()
    args = ["--resume", "c.pt", "-q"] + (["--epochs", epochs] if epochs else [])
    _one_line_exit_2(_train(capsys, monkeypatch, *args, cwd=two_epochs.parent), needle)
    assert two_epochs.read_bytes() == before


@pytest.mark.parametrize("flags, needles", [
    (["--model", "conv_snn", "--lr", "0.1"], ["--model conv_snn (the checkpoint's: fc_snn)"]),
    (["--dataset", "mnist"], ["--dataset mnist (the checkpoint's: digits)"]),
    (["--seed", "0"], ["--seed 0 (the checkpoint's: 4)"]),
    (["--timesteps", "6", "--encoding", "rate"],
     ["--timesteps 6 (the checkpoint's: 4)", "--encoding rate (the checkpoint's: direct)"]),
    (["--hidden", "32"], ["--hidden 32 (the checkpoint's: 256)"]),
    (["--limit", "100"], ["--limit 100 (the checkpoint's: 200)"]),
])
def test_a_flag_that_conflicts_with_the_checkpoint_is_refused(two_epochs, flags, needles,
                                                              capsys, monkeypatch):
    line = _one_line_exit_2(
        _train(capsys, monkeypatch, "--resume", "c.pt", "--epochs", "3", *flags,
               cwd=two_epochs.parent),
        "cannot resume c.pt with", *needles)
    assert "a resumed run keeps its model, dataset" in line


def test_repeating_the_original_flags_with_resume_is_fine(two_epochs, tmp_path, capsys,
                                                         monkeypatch):
    r = _train(capsys, monkeypatch, "--resume", str(two_epochs), "--model", "fc_snn",
               "--dataset", "digits", "--limit", "200", "--seed", "4", "--hidden", "256",
               "-T", "4", "--epochs", "3", "-o", "more.pt", "-q", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [  # only what changed: the number of epochs
        "resume: --epochs 3 replaces the run's target of 2 epochs",
        "resume: the cosine schedule is recomputed over 3 epochs, so the remaining epochs "
        "differ from the run as it was started",
    ]
    assert json.loads(r.stdout)["training"]["sources"]["epochs"] == "--epochs"  # --json valid
    ck = load_checkpoint(tmp_path / "more.pt")
    assert ck["metrics"]["epochs"] == 3 and ck["resume"]["total_epochs"] == 3


def test_changeable_flags_are_used_and_said(two_epochs, tmp_path, capsys, monkeypatch):
    r = _train(capsys, monkeypatch, "--resume", str(two_epochs), "--epochs", "3", "--lr", "1e-3",
               "--batch-size", "20", "--eval-limit", "80", "-o", "more.pt", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    notes = r.stderr.strip().splitlines()  # printed even with -q
    assert notes == [
        "resume: --lr 0.001 replaces the checkpoint's 0.002 from epoch 3 on",
        "resume: --batch-size 20 replaces the checkpoint's 64 from epoch 3 on",
        "resume: --epochs 3 replaces the run's target of 2 epochs",
        "resume: the cosine schedule is recomputed over 3 epochs, so the remaining epochs "
        "differ from the run as it was started",
        "resume: --eval-limit 80 replaces the checkpoint's 50: the epochs before 3 were "
        "validated on 50 samples",
    ]
    ck = load_checkpoint(tmp_path / "more.pt")
    state = ck["resume"]
    assert (state["lr"], state["batch_size"], state["total_epochs"], state["eval_limit"]) == (
        1e-3, 20, 3, 80)
    assert state["sources"]["lr"] == "--lr" and state["sources"]["schedule"] == "checkpoint"
    assert [h["val_samples"] for h in ck["metrics"]["history"]] == [50, 50, 80]


def test_eval_limit_evaluates_the_first_samples_and_says_how_many(tmp_path):
    ck = train_model("fc_snn", "digits", 1, tmp_path / "c.pt", limit=100, eval_limit=40,
                     seed=2, **QUIET)
    m = ck["metrics"]
    assert (m["val_samples"], m["test_samples"], m["history"][0]["val_samples"]) == (40, 40, 40)
    model = model_from_checkpoint(ck)
    for split, key in (("val", "val_accuracy"), ("test", "test_accuracy")):
        x, y = load_dataset("digits", split)
        assert evaluate(model, x[:40], y[:40], "direct", 4, 2) == m[key]
    table = summary_table(ck)
    assert f"{100 * m['test_accuracy']:.2f} % on 40 samples" in table
    full = train_model("fc_snn", "digits", 1, None, limit=100, seed=2, **QUIET)["metrics"]
    assert (full["val_samples"], full["test_samples"]) == (300, 297)  # default: all
    with pytest.raises(ValueError, match="eval_limit must be a positive integer"):
        train_model("fc_snn", "digits", 1, None, eval_limit=0, **QUIET)


def test_a_run_interrupted_while_testing_is_finished_by_resuming(tmp_path, monkeypatch):
    kw = dict(limit=100, eval_limit=30, seed=5, **QUIET)
    full = train_model("fc_snn", "digits", 2, tmp_path / "full.pt", **kw)
    calls = []
    real = loop.evaluate

    def interrupt_the_test(*a, **k):
        calls.append(k.get("desc"))
        if k.get("desc") == "test":
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(loop, "evaluate", interrupt_the_test)
    with pytest.raises(KeyboardInterrupt):
        train_model("fc_snn", "digits", 2, tmp_path / "cut.pt", **kw)
    monkeypatch.setattr(loop, "evaluate", real)
    assert calls == ["val", "val", "test"]
    cut = load_checkpoint(tmp_path / "cut.pt")  # both epochs saved, not tested
    assert cut["metrics"]["epochs"] == 2 and not cut["metrics"]["complete"]
    done = train_model(resume=tmp_path / "cut.pt", out_path=tmp_path / "cut.pt", **QUIET)
    _same_run(full, done)


def test_ctrl_c_before_a_resumed_epoch_completes_says_the_checkpoint_is_unchanged(
        two_epochs, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train_model", interrupted)
    out = two_epochs.parent / "more.pt"
    assert cli.main(["--resume", str(two_epochs), "--epochs", "5", "-o", str(out)]) == 130
    assert capsys.readouterr().err.strip() == (
        f"python -m train: interrupted before an epoch completed; {two_epochs} is unchanged "
        "(run the same command again to continue)")
    assert cli.main(["--dataset", "digits", "-o", str(out)]) == 130
    assert capsys.readouterr().err.strip() == "python -m train: interrupted; no checkpoint written"

"""DDP training under torchrun (train/distributed.py): a real two-process gloo job on the CPU
trains the weights a single process trains (up to float rounding), writes one checkpoint and
one summary, and resumes with the same command plus --resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from train import distributed
from train.checkpoint import load_checkpoint
from train.loop import train_model

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).parent / "torchrun"
RUN = ["--model", "fc_snn", "--dataset", "digits", "--limit", "200", "--eval-limit", "50",
       "--batch-size", "20", "--seed", "3", "--no-progress"]


def test_each_rank_takes_its_contiguous_share_of_a_batch():
    idx = np.arange(10, 20)
    shares = [distributed.part(distributed.DistContext(r, 3, r, torch.device("cpu")))(idx)
              for r in range(3)]
    assert np.array_equal(np.concatenate(shares), idx)
    assert [len(s) for s in shares] == [3, 3, 4]
    tiny = distributed.part(distributed.DistContext(1, 3, 1, torch.device("cpu")))(idx[:2])
    assert np.array_equal(tiny, idx[:2])  # fewer samples than processes: every rank, whole
    assert distributed.part(None) is None and distributed.all_sum(None, 1.0, 2) == (1.0, 2)
    assert distributed.setup() is None or distributed.launched()


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return subprocess.run([str(TORCHRUN), "--standalone", "--nproc_per_node", "2", "-m",
                           "train", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow  # two torchrun jobs of two processes each: ~1 min on a loaded 2-core machine
@pytest.mark.skipif(not TORCHRUN.exists(), reason="no torchrun")
def test_two_process_gloo_ddp_trains_as_one_process_and_resumes(tmp_path):
    p = _torchrun([*RUN, "--epochs", "1", "-o", "ddp.pt"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("| checkpoint ") == 1  # rank 0 alone prints the summary
    ddp = load_checkpoint(tmp_path / "ddp.pt")
    assert ddp["metrics"]["epochs"] == 1 and ddp["metrics"]["complete"]
    assert not any(k.startswith("module.") for k in ddp["state_dict"])

    threads = torch.get_num_threads()
    try:
        one = train_model("fc_snn", "digits", 1, None, limit=200, eval_limit=50, batch_size=20,
                          seed=3, threads=1, progress=False, log=lambda s: None)
    finally:
        torch.set_num_threads(threads)
    for k, v in one["state_dict"].items():  # the same gradient steps, summed in another order
        torch.testing.assert_close(ddp["state_dict"][k], v, atol=1e-5, rtol=0, msg=k)
    assert ddp["metrics"]["train_loss"] == pytest.approx(one["metrics"]["train_loss"], abs=1e-5)

    p = _torchrun(["--resume", "ddp.pt", "--epochs", "2", "--no-progress"], tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    resumed = load_checkpoint(tmp_path / "ddp.pt")
    assert resumed["metrics"]["epochs"] == 2 and len(resumed["metrics"]["history"]) == 2

"""Training and evaluation of the SNN models (seeded, deterministic data order, resumable).

``train_model`` is what ``python -m train`` wraps; ``evaluate`` computes test accuracy the same
way the deployment targets see the data (``encode`` with the checkpoint's seed, dataset indices
as ``first_index``).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from core.datasets import DATASETS, DatasetError, load_dataset
from core.encoding import ENCODINGS, encode, input_scale
from core.errors import UserError
from models.registry import MODELS, build_model, default_config
from train.checkpoint import (
    FORMAT,
    PRODUCER,
    VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)


def model_input(model_name: str, encoded: np.ndarray, kind: str) -> torch.Tensor:
    """Encoded integers ``[B, T, H, W]`` -> the model's float input, time-major.

    ``fc_snn``: ``[T, B, H*W]``; ``conv_snn``: ``[T, B, 1, H, W]``.
    """
    x = torch.from_numpy(np.ascontiguousarray(encoded)).float() * input_scale(kind)
    x = x.transpose(0, 1)  # [T, B, H, W]
    if model_name == "fc_snn":
        return x.flatten(2)
    return x.unsqueeze(2)


def _model_name(model: nn.Module) -> str:
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise UserError(f"model of type {type(model).__name__} is not a registered model")


def encode_indices(
    images: np.ndarray, indices: np.ndarray, kind: str, timesteps: int, seed: int
) -> np.ndarray:
    """Encode ``images[indices]`` exactly as ``encode(images, ...)`` would encode those rows."""
    if kind == "direct":
        return encode(images[indices], kind, timesteps, seed)
    indices = np.asarray(indices)
    if len(indices) and np.all(np.diff(indices) == 1):
        return encode(images[indices], kind, timesteps, seed, first_index=int(indices[0]))
    out = np.empty((len(indices), timesteps, *images.shape[1:]), dtype=np.int8)
    for j, i in enumerate(indices):
        out[j] = encode(images[i : i + 1], kind, timesteps, seed, first_index=int(i))[0]
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    encoding: str,
    timesteps: int,
    seed: int = 0,
    batch_size: int = 500,
    progress: bool = False,
    desc: str = "eval",
) -> float:
    """Accuracy of ``model`` on ``images``/``labels`` (sample ``i`` encoded with index ``i``)."""
    name = _model_name(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    n = len(labels)
    try:
        for start in tqdm(
            range(0, n, batch_size), desc=desc, leave=False, disable=not progress, unit="batch"
        ):
            stop = min(start + batch_size, n)
            enc = encode(images[start:stop], encoding, timesteps, seed, first_index=start)
            logits = model(model_input(name, enc, encoding).to(device))
            correct += int((logits.argmax(1).cpu().numpy() == labels[start:stop]).sum())
    finally:
        model.train(was_training)
    return correct / n if n else float("nan")


SCHEDULES = ("cosine", "constant")


def lr_at(lr: float, schedule: str, step: int, total_steps: int) -> float:
    """Learning rate at optimizer step ``step`` (cosine: from ``lr`` down to 0 at the end)."""
    if schedule == "constant":
        return lr
    return 0.5 * lr * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def _train_encoding_seed(seed: int, epoch: int) -> int:
    # Fresh rate-coded spike trains every epoch, disjoint from the evaluation stream (``seed``).
    return 1_000_003 * (seed + 1) + epoch


def _check_output(out_path: str | os.PathLike | None) -> None:
    if out_path is None:
        return
    p = Path(out_path)
    d = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise CheckpointError(f"output {p} is a directory; give a file name such as {p}/ckpt.pt")
    if not d.is_dir():
        raise CheckpointError(f"cannot write {p}: folder {d} does not exist")
    if p.exists() and not os.access(p, os.W_OK):
        raise CheckpointError(f"cannot write {p}: permission denied")
    try:  # the checkpoint is written as a temp file in the same folder, then renamed
        with tempfile.TemporaryFile(dir=d):
            pass
    except OSError as e:
        raise CheckpointError(f"cannot write {p}: {(e.strerror or str(e)).lower()}") from e


def train_model(
    model_name: str = "fc_snn",
    dataset: str = "mnist",
    epochs: int = 3,
    out_path: str | os.PathLike | None = None,
    *,
    timesteps: int = 4,
    encoding: str = "direct",
    batch_size: int = 64,
    lr: float = 2e-3,
    schedule: str = "cosine",
    seed: int = 0,
    limit: int | None = None,
    threads: int | None = None,
    config: dict | None = None,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    device: str | None = None,
) -> dict:
    """Train a model, evaluate it on val every epoch and on test at the end, save a checkpoint.

    Returns the checkpoint dict (see ``train.checkpoint``); it is written atomically to
    ``out_path`` if given. With ``resume``, model, dataset, encoding, timesteps, seed, config,
    batch size and learning rate come from that checkpoint and training continues up to
    ``epochs`` epochs in total (the cosine schedule is recomputed for the new total, so it only
    continues exactly when ``epochs`` is unchanged). After every epoch but the last, the
    checkpoint so far (test accuracy NaN, ``metrics["complete"]`` False) is written to
    ``out_path`` so that an interrupted run can be resumed. Raises ``ValueError`` subclasses
    (``DatasetError``, ``CheckpointError``) for bad input, before any training.
    """
    log = log or (lambda s: print(s, file=sys.stderr))
    t_start = time.perf_counter()
    resume_state = None
    if resume is not None:
        prev = load_checkpoint(resume)
        resume_state = prev.get("resume")
        if resume_state is None:
            raise CheckpointError(f"checkpoint {resume} holds no optimizer state to resume from")
        model_name, dataset, config = prev["model"], prev["dataset"], prev["config"]
        encoding, timesteps = prev["encoding"]["kind"], int(prev["timesteps"])
        seed = int(prev["seed"])
        batch_size = int(resume_state.get("batch_size", batch_size))
        lr = float(resume_state.get("lr", lr))
        schedule = resume_state.get("schedule", schedule)
        limit = resume_state.get("limit", limit)

    if model_name not in MODELS:
        raise UserError(f"unknown model {model_name!r}; valid models: {', '.join(MODELS)}")
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    if encoding not in ENCODINGS:
        raise UserError(f"unknown encoding {encoding!r}; valid encodings: {', '.join(ENCODINGS)}")
    for label, value, low in (
        ("epochs", epochs, 0),
        ("timesteps", timesteps, 1),
        ("batch size", batch_size, 1),
    ):
        if int(value) != value or value < low:
            raise UserError(f"{label} must be an integer >= {low}, got {value!r}")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise UserError(f"limit must be a positive integer, got {limit!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise UserError(f"learning rate must be a positive number, got {lr!r}")
    if schedule not in SCHEDULES:
        raise UserError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    _check_output(out_path)
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads must be >= 1, got {threads!r}")
        torch.set_num_threads(int(threads))

    train_x, train_y = load_dataset(dataset, "train")
    val_x, val_y = load_dataset(dataset, "val")
    test_x, test_y = load_dataset(dataset, "test")
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]

    cfg = dict(default_config(model_name, dataset))
    if config:
        cfg.update(config)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(model_name, cfg).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history: list[dict] = []
    start_epoch = 0
    prior_wall = 0.0
    if resume_state is not None:
        model.load_state_dict(prev["state_dict"])
        optimizer.load_state_dict(resume_state["optimizer"])
        start_epoch = int(resume_state["epoch"])
        history = list(prev.get("metrics", {}).get("history", []))
        prior_wall = float(prev.get("metrics", {}).get("wall_time_s", 0.0))
        log(f"resuming {model_name} on {dataset} from {resume} after epoch {start_epoch}")

    n_train = len(train_y)

    def make_ckpt(test_acc: float, val_acc: float, train_loss: float, done: int) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": model_name,
            "config": cfg,
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "dataset": dataset,
            "encoding": {
                "kind": encoding,
                "timesteps": int(timesteps),
                "seed": int(seed),
                "input_scale": float(input_scale(encoding)),
            },
            "timesteps": int(timesteps),
            "metrics": {
                "test_accuracy": float(test_acc),
                "val_accuracy": float(val_acc),
                "train_loss": float(train_loss),
                "epochs": int(done),
                "wall_time_s": float(prior_wall + time.perf_counter() - t_start),
                "history": list(history),
                "train_samples": int(n_train),
                "complete": done >= epochs,
            },
            "seed": int(seed),
            "producer": PRODUCER,
            "resume": {
                "optimizer": optimizer.state_dict(),
                "epoch": int(done),
                "total_epochs": int(epochs),
                "batch_size": int(batch_size),
                "lr": float(lr),
                "schedule": schedule,
                "limit": None if limit is None else int(limit),
            },
        }

    steps_per_epoch = math.ceil(n_train / batch_size)
    total_steps = max(epochs * steps_per_epoch, 1)
    train_loss = history[-1]["train_loss"] if history else float("nan")
    val_acc = history[-1]["val_accuracy"] if history else float("nan")
    model.train()
    for epoch in range(start_epoch, epochs):
        t_epoch = time.perf_counter()
        order = np.random.default_rng([seed, epoch]).permutation(n_train)
        enc_seed = _train_encoding_seed(seed, epoch)
        total_loss, total_correct, seen = 0.0, 0, 0
        bar = tqdm(
            range(0, n_train, batch_size),
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not progress,
            unit="batch",
            leave=True,
        )
        for step, start in enumerate(bar, start=epoch * steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(lr, schedule, step, total_steps)
            idx = order[start : start + batch_size]
            enc = encode_indices(train_x, idx, encoding, timesteps, enc_seed)
            x = model_input(model_name, enc, encoding).to(dev)
            y = torch.from_numpy(np.asarray(train_y[idx])).to(dev)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            total_correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{total_correct / seen:.4f}")
        bar.close()
        train_loss = total_loss / max(seen, 1)
        val_acc = evaluate(
            model, val_x, val_y, encoding, timesteps, seed, progress=progress, desc="val"
        )
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "train_accuracy": total_correct / max(seen, 1),
                "val_accuracy": val_acc,
                "epoch_time_s": time.perf_counter() - t_epoch,
            }
        )
        log(
            f"epoch {epoch + 1}/{epochs}: train loss {train_loss:.4f}, "
            f"train acc {total_correct / max(seen, 1):.4f}, val acc {val_acc:.4f}"
        )
        if out_path is not None and epoch + 1 < epochs:
            # resumable after an interruption; test accuracy is measured at the end only
            save_checkpoint(out_path, make_ckpt(float("nan"), val_acc, train_loss, epoch + 1))

    if math.isnan(val_acc):  # no epoch ran (epochs already reached, or epochs == 0)
        val_acc = evaluate(model, val_x, val_y, encoding, timesteps, seed)
    test_acc = evaluate(
        model, test_x, test_y, encoding, timesteps, seed, progress=progress, desc="test"
    )
    model.eval()
    ckpt = make_ckpt(test_acc, val_acc, train_loss, max(epochs, start_epoch))
    if out_path is not None:
        save_checkpoint(out_path, ckpt)
    return ckpt


def summary_table(ckpt: dict, out_path: str | os.PathLike | None = None) -> str:
    """A small plain-text table of what was trained and how well."""
    m = ckpt["metrics"]
    n_params = sum(v.numel() for k, v in ckpt["state_dict"].items())
    rows = [
        ("model", ckpt["model"]),
        ("dataset", ckpt["dataset"]),
        ("encoding", f"{ckpt['encoding']['kind']}, T={ckpt['timesteps']}"),
        ("parameters", f"{n_params:,}"),
        ("train samples", str(m.get("train_samples", "?"))),
        ("epochs", str(m["epochs"])),
        ("train loss", f"{m['train_loss']:.4f}"),
        ("val accuracy", f"{100 * m['val_accuracy']:.2f} %"),
        ("test accuracy", f"{100 * m['test_accuracy']:.2f} %"),
        ("wall time", f"{m['wall_time_s']:.1f} s"),
    ]
    if out_path is not None:
        rows.append(("checkpoint", str(out_path)))
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    line = f"+{'-' * (width + 2)}+{'-' * (vwidth + 2)}+"
    body = [f"| {k:<{width}} | {v:<{vwidth}} |" for k, v in rows]
    return "\n".join([line, *body, line])

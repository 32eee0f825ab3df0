"""Training and evaluation of the SNN models (seeded, deterministic data order, resumable).

``train_model`` is what ``python -m train`` wraps. It runs in four parts:

1. :func:`resolve_run` settles what is trained how: each hyperparameter comes from an explicit
   argument if given, else from the checkpoint being resumed, else from the model's own
   ``TRAINING`` defaults (``models.defaults.TrainingDefaults``); everything is validated
   before any data is loaded;
2. resuming restores weights, optimizer state and history (:func:`load_resume`);
3. :func:`train_epoch` runs one epoch; :func:`evaluate` scores a split;
4. :func:`make_checkpoint` assembles the checkpoint dict, written atomically after every epoch
   (so an interrupted run can be resumed) and at the end.

``evaluate`` computes accuracy the same way the deployment targets see the data (``encode``
with the checkpoint's seed, dataset indices as ``first_index``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.cli import check_writable, progress_bar
from core.cli import progress as progress_iter
from core.datasets import DATASETS, DatasetError, input_shape, load_dataset, num_classes
from core.encoding import encode, input_scale
from core.errors import UserError
from models.defaults import SCHEDULES, TrainingDefaults
from models.registry import (
    build_model,
    check_config,
    default_config,
    resolve,
    training_defaults,
)
from train.checkpoint import (
    FORMAT,
    PRODUCER,
    VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "SCHEDULES",
    "Run",
    "encode_indices",
    "evaluate",
    "lr_at",
    "make_checkpoint",
    "model_input",
    "resolve_run",
    "summary_table",
    "train_epoch",
    "train_model",
]


def model_input(encoded: np.ndarray, kind: str) -> torch.Tensor:
    """Encoded integers ``[B, T, *sample]`` -> float model input ``[T, B, *sample]``.

    Values are scaled by ``core.encoding.input_scale(kind)`` (1/255 for ``direct``, 1 for
    ``rate``). Every model takes this layout and adapts it to its own input shape
    (``models.layers.time_major_input``: a channel axis for conv nets, a flatten for
    fully connected ones).

    Raises:
        UserError: an unknown encoding ``kind``.
    """
    x = torch.from_numpy(np.ascontiguousarray(encoded)).float() * input_scale(kind)
    return x.transpose(0, 1)


def encode_indices(
    images: np.ndarray, indices: np.ndarray, kind: str, timesteps: int, seed: int
) -> np.ndarray:
    """Encode ``images[indices]`` exactly as ``encode(images, ...)`` would encode those rows:
    ``[len(indices), timesteps, *image]`` int8 (direct: the pixels; rate: 0/1 spikes)."""
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
    """Accuracy in [0, 1] of ``model`` on ``images [N, H, W]`` / ``labels [N]`` (sample ``i``
    encoded with index ``i``); NaN for an empty split. The model's train/eval mode is kept."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    n = len(labels)
    try:
        for start in progress_iter(range(0, n, batch_size), desc=desc, enabled=progress,
                                   unit="batch"):
            stop = min(start + batch_size, n)
            enc = encode(images[start:stop], encoding, timesteps, seed, first_index=start)
            logits = model(model_input(enc, encoding).to(device))
            correct += int((logits.argmax(1).cpu().numpy() == labels[start:stop]).sum())
    finally:
        model.train(was_training)
    return correct / n if n else float("nan")


def lr_at(lr: float, schedule: str, step: int, total_steps: int) -> float:
    """Learning rate at optimizer step ``step`` (cosine: from ``lr`` down to 0 at the end)."""
    if schedule == "constant":
        return lr
    return 0.5 * lr * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def _train_encoding_seed(seed: int, epoch: int) -> int:
    # Fresh rate-coded spike trains every epoch, disjoint from the evaluation stream (``seed``).
    return 1_000_003 * (seed + 1) + epoch


# ------------------------------------------------------------------------- 1. what is trained
@dataclass(frozen=True)
class Run:
    """Everything one training run is determined by (besides the device and thread count).

    Attributes:
        model: model spec (registered name or ``module:Class``), stored in the checkpoint.
        dataset: a name of ``core.datasets.DATASETS``.
        config: the model's constructor kwargs (its ``default_config`` updated by overrides).
        hp: the hyperparameters (learning rate, batch size, schedule, epochs, T, encoding).
        seed: seeds weight init, data order and rate-coding noise.
        limit: train on the first ``limit`` training samples only (None: all).
        explicit: the hyperparameter names given explicitly (the rest are the model's own).
    """

    model: str
    dataset: str
    config: dict[str, Any]
    hp: TrainingDefaults
    seed: int = 0
    limit: int | None = None
    explicit: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: the hyperparameters, and which of them were not the model's defaults."""
        hp = self.hp
        own = "model defaults" if not self.explicit else \
            f"model defaults except {', '.join(self.explicit)}"
        return (f"{self.model} on {self.dataset}: epochs {hp.epochs}, batch {hp.batch_size}, "
                f"Adam lr {hp.lr:g} ({hp.schedule}), T={hp.timesteps} {hp.encoding} ({own})")


def resolve_run(
    model: str,
    dataset: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    limit: int | None = None,
    resumed: Mapping[str, Any] | None = None,
) -> Run:
    """Settle a run's model config and hyperparameters, validating everything.

    ``overrides``: explicit hyperparameters (fields of ``TrainingDefaults``; None values are
    ignored). ``resumed``: a checkpoint to continue; its model, dataset, config, seed, limit
    and hyperparameters replace the arguments, except an explicit ``epochs``.

    Raises:
        ConfigError: an unknown model, a bad config key or an out-of-range hyperparameter.
        DatasetError: an unknown dataset.
        UserError: a bad ``limit``.
    """
    explicit = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    if resumed is not None:
        state = resumed["resume"]
        model, dataset, config = resumed["model"], resumed["dataset"], resumed["config"]
        seed, limit = int(resumed["seed"]), state.get("limit", limit)
        stored = {
            "lr": state.get("lr"),
            "batch_size": state.get("batch_size"),
            "schedule": state.get("schedule"),
            "epochs": explicit.get("epochs", state.get("total_epochs")),
            "timesteps": int(resumed["timesteps"]),
            "encoding": resumed["encoding"]["kind"],
        }
        explicit = {k: v for k, v in stored.items() if v is not None}
    cls = resolve(model)
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    unknown = set(explicit) - {f.name for f in dataclasses.fields(TrainingDefaults)}
    if unknown:
        raise UserError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    hp = dataclasses.replace(training_defaults(model), **explicit)
    if limit is not None and (int(limit) != limit or limit < 1):
        raise UserError(f"limit must be a positive integer, got {limit!r}")
    cfg = {**default_config(model, input_shape(dataset), num_classes(dataset)), **(config or {})}
    check_config(cls, cfg, model)
    return Run(model=model, dataset=dataset, config=cfg, hp=hp, seed=int(seed),
               limit=None if limit is None else int(limit),
               explicit=() if resumed is not None else tuple(explicit))


def _check_output(out_path: str | os.PathLike | None) -> None:
    """Refuse an unwritable checkpoint path before training (a missing folder is created).

    Raises:
        UserError: the path is a folder, or its folder cannot be created or written.
    """
    check_writable(out_path, "checkpoint")


# ----------------------------------------------------------------------------- 2. resuming
def load_resume(path: str | os.PathLike) -> dict:
    """A checkpoint to continue training from (it must hold optimizer state).

    Raises:
        CheckpointError: unreadable, or written without a ``"resume"`` entry.
    """
    prev = load_checkpoint(path)
    if prev.get("resume") is None:
        raise CheckpointError(f"checkpoint {path} holds no optimizer state to resume from")
    return prev


# ---------------------------------------------------------------------------- 3. an epoch
@dataclass(frozen=True)
class EpochStats:
    """Training loss (mean cross-entropy) and accuracy over one epoch's samples."""

    loss: float
    accuracy: float
    samples: int


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_x: np.ndarray,
    train_y: np.ndarray,
    run: Run,
    epoch: int,
    device: torch.device,
    progress: bool = True,
) -> EpochStats:
    """One pass over ``train_x [N, H, W]`` / ``train_y [N]`` in the run's seeded order.

    The learning rate follows ``run.hp.schedule`` over all ``run.hp.epochs`` epochs, per step.
    """
    hp = run.hp
    n = len(train_y)
    steps_per_epoch = math.ceil(n / hp.batch_size)
    total_steps = max(hp.epochs * steps_per_epoch, 1)
    order = np.random.default_rng([run.seed, epoch]).permutation(n)
    enc_seed = _train_encoding_seed(run.seed, epoch)
    total_loss, total_correct, seen = 0.0, 0, 0
    bar = progress_bar(steps_per_epoch, desc=f"epoch {epoch + 1}/{hp.epochs}", enabled=progress,
                       unit="batch")
    with bar:
        for step, start in enumerate(range(0, n, hp.batch_size),
                                     start=epoch * steps_per_epoch):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(hp.lr, hp.schedule, step, total_steps)
            idx = order[start : start + hp.batch_size]
            enc = encode_indices(train_x, idx, hp.encoding, hp.timesteps, enc_seed)
            x = model_input(enc, hp.encoding).to(device)
            y = torch.from_numpy(np.asarray(train_y[idx])).to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            total_correct += int((logits.argmax(1) == y).sum())
            seen += len(idx)
            bar.update(1)
            bar.set_postfix_str(f"loss={total_loss / seen:.4f}, acc={total_correct / seen:.4f}")
    return EpochStats(total_loss / max(seen, 1), total_correct / max(seen, 1), seen)


# ------------------------------------------------------------------------ 4. the checkpoint
def make_checkpoint(
    run: Run,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    done: int,
    test_acc: float,
    val_acc: float,
    train_loss: float,
    history: list[dict],
    train_samples: int,
    wall_time_s: float,
) -> dict:
    """The checkpoint dict (format: ``train.checkpoint``) after ``done`` epochs, with the
    optimizer state and hyperparameters under ``"resume"`` (weights copied to the CPU)."""
    hp = run.hp
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": run.model,
        "config": run.config,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "dataset": run.dataset,
        "encoding": {
            "kind": hp.encoding,
            "timesteps": int(hp.timesteps),
            "seed": int(run.seed),
            "input_scale": float(input_scale(hp.encoding)),
        },
        "timesteps": int(hp.timesteps),
        "metrics": {
            "test_accuracy": float(test_acc),
            "val_accuracy": float(val_acc),
            "train_loss": float(train_loss),
            "epochs": int(done),
            "wall_time_s": float(wall_time_s),
            "history": list(history),
            "train_samples": int(train_samples),
            "complete": done >= hp.epochs,
        },
        "seed": int(run.seed),
        "producer": PRODUCER,
        "resume": {
            "optimizer": optimizer.state_dict(),
            "epoch": int(done),
            "total_epochs": int(hp.epochs),
            "batch_size": int(hp.batch_size),
            "lr": float(hp.lr),
            "schedule": hp.schedule,
            "limit": run.limit,
        },
    }


def train_model(
    model_name: str = "fc_snn",
    dataset: str = "mnist",
    epochs: int | None = None,
    out_path: str | os.PathLike | None = None,
    *,
    timesteps: int | None = None,
    encoding: str | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    schedule: str | None = None,
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

    ``model_name`` is a model spec (registered name or ``"package.module:ClassName"``,
    ``models.registry``). ``epochs``, ``timesteps``, ``encoding``, ``batch_size``, ``lr`` and
    ``schedule`` left at None take the model's own defaults (its ``TRAINING``); ``config``
    updates its ``default_config`` for ``dataset``.

    Returns the checkpoint dict (see ``train.checkpoint``); it is written atomically to
    ``out_path`` if given (a missing folder is created). With ``resume``, model, dataset,
    encoding, timesteps, seed, config, batch size and learning rate come from that checkpoint and
    training continues up to ``epochs`` epochs in total (default: the resumed run's total; the
    cosine schedule is recomputed for the new total, so it only continues exactly when the total
    is unchanged). After every epoch but the last, the checkpoint so far (test accuracy NaN,
    ``metrics["complete"]`` False) is written to ``out_path`` so that an interrupted run can be
    resumed. Progress bars are drawn only on a terminal (``core.cli.progress``).

    Raises:
        NeurodeployError subclasses (``ConfigError``, ``DatasetError``, ``CheckpointError``,
        ``UserError``; all ``ValueError``) for bad input, before any training.
    """
    log = log or (lambda s: print(s, file=sys.stderr))
    t_start = time.perf_counter()
    prev = load_resume(resume) if resume is not None else None
    run = resolve_run(
        model_name, dataset, config=config, seed=seed, limit=limit, resumed=prev,
        overrides={"lr": lr, "batch_size": batch_size, "schedule": schedule, "epochs": epochs,
                   "timesteps": timesteps, "encoding": encoding},
    )
    _check_output(out_path)
    if threads is not None:
        if threads < 1:
            raise UserError(f"threads must be >= 1, got {threads!r}")
        torch.set_num_threads(int(threads))

    train_x, train_y = load_dataset(run.dataset, "train")
    val_x, val_y = load_dataset(run.dataset, "val")
    test_x, test_y = load_dataset(run.dataset, "test")
    if run.limit is not None:
        train_x, train_y = train_x[: run.limit], train_y[: run.limit]

    torch.manual_seed(run.seed)
    np.random.seed(run.seed % 2**32)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(run.model, run.config).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=run.hp.lr)
    history: list[dict] = []
    start_epoch, prior_wall = 0, 0.0
    if prev is not None:
        model.load_state_dict(prev["state_dict"])
        optimizer.load_state_dict(prev["resume"]["optimizer"])
        start_epoch = int(prev["resume"]["epoch"])
        history = list(prev.get("metrics", {}).get("history", []))
        prior_wall = float(prev.get("metrics", {}).get("wall_time_s", 0.0))
        log(f"resuming {run.model} on {run.dataset} from {resume} after epoch {start_epoch}")
    else:
        log(f"training {run.describe()}")

    def checkpoint(done: int, test_acc: float, val_acc: float, train_loss: float) -> dict:
        return make_checkpoint(
            run, model, optimizer, done=done, test_acc=test_acc, val_acc=val_acc,
            train_loss=train_loss, history=history, train_samples=len(train_y),
            wall_time_s=prior_wall + time.perf_counter() - t_start,
        )

    epochs = run.hp.epochs
    train_loss = history[-1]["train_loss"] if history else float("nan")
    val_acc = history[-1]["val_accuracy"] if history else float("nan")
    model.train()
    for epoch in range(start_epoch, epochs):
        t_epoch = time.perf_counter()
        stats = train_epoch(model, optimizer, train_x, train_y, run, epoch, dev, progress)
        train_loss = stats.loss
        val_acc = evaluate(model, val_x, val_y, run.hp.encoding, run.hp.timesteps, run.seed,
                           progress=progress, desc="val")
        history.append({"epoch": epoch + 1, "train_loss": train_loss,
                        "train_accuracy": stats.accuracy, "val_accuracy": val_acc,
                        "epoch_time_s": time.perf_counter() - t_epoch})
        log(f"epoch {epoch + 1}/{epochs}: train loss {train_loss:.4f}, "
            f"train acc {stats.accuracy:.4f}, val acc {val_acc:.4f}")
        if out_path is not None and epoch + 1 < epochs:
            # resumable after an interruption; test accuracy is measured at the end only
            save_checkpoint(out_path, checkpoint(epoch + 1, float("nan"), val_acc, train_loss))

    if math.isnan(val_acc):  # no epoch ran (epochs already reached, or epochs == 0)
        val_acc = evaluate(model, val_x, val_y, run.hp.encoding, run.hp.timesteps, run.seed)
    test_acc = evaluate(model, test_x, test_y, run.hp.encoding, run.hp.timesteps, run.seed,
                        progress=progress, desc="test")
    model.eval()
    ckpt = checkpoint(max(epochs, start_epoch), test_acc, val_acc, train_loss)
    if out_path is not None:
        save_checkpoint(out_path, ckpt)
    return ckpt


def summary_table(ckpt: dict, out_path: str | os.PathLike | None = None) -> str:
    """A small plain-text table of what was trained, with which hyperparameters, how well."""
    m = ckpt["metrics"]
    n_params = sum(v.numel() for k, v in ckpt["state_dict"].items())
    rows = [
        ("model", ckpt["model"]),
        ("dataset", ckpt["dataset"]),
        ("encoding", f"{ckpt['encoding']['kind']}, T={ckpt['timesteps']}"),
    ]
    state = ckpt.get("resume")
    if state:
        rows.append(("training", f"Adam lr {state['lr']:g} ({state['schedule']}), "
                                 f"batch {state['batch_size']}"))
    rows += [
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


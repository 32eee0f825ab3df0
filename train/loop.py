"""Training and evaluation of the SNN models (seeded, deterministic data order, resumable).

``train_model`` is what ``python -m train`` wraps. It runs in four parts:

1. :func:`resolve_run` settles what is trained how: each hyperparameter comes from an explicit
   argument if given, else from the checkpoint being resumed, else from the model's own
   ``TRAINING`` defaults (``models.defaults.TrainingDefaults``); a resumed run keeps its model,
   data and coding (:data:`RESUME_KEPT`: a conflicting argument is refused) and may change only
   :data:`RESUME_CHANGEABLE`, saying so; everything is validated before any data is loaded;
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
from core.datasets import (
    DATASETS,
    DatasetError,
    describe,
    input_shape,
    load_dataset,
    native_encoding,
    num_classes,
)
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
from train import distributed
from train import events as _events  # noqa: F401  (registers the tonic event readers)
from train.checkpoint import (
    FORMAT,
    PRODUCER,
    VERSION,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)

__all__ = [
    "FLAGS",
    "RESUME_CHANGEABLE",
    "RESUME_KEPT",
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
    if kind in ("direct", "frames"):  # deterministic per sample: no seed, no index
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
#: The command-line flag of each setting, for messages (``config`` keys other than ``n_hidden``
#: have no flag of their own).
FLAGS = {
    "model": "--model", "dataset": "--dataset", "n_hidden": "--hidden", "seed": "--seed",
    "limit": "--limit", "eval_limit": "--eval-limit", "timesteps": "--timesteps",
    "encoding": "--encoding", "lr": "--lr", "batch_size": "--batch-size",
    "schedule": "--schedule", "epochs": "--epochs",
}

#: What a resumed run keeps from its checkpoint: a different value is refused (``UserError``).
#: They define the model being trained and the data it sees, so changing one would be a new run.
RESUME_KEPT = ("model", "dataset", "config", "timesteps", "encoding", "seed", "limit")

#: What ``--resume`` may change, with a printed note: the length of the run (``epochs``), the
#: optimizer's step (``lr``, ``batch_size``, ``schedule``) and how many samples are evaluated.
RESUME_CHANGEABLE = ("epochs", "lr", "batch_size", "schedule", "eval_limit")


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
        eval_limit: evaluate on the first ``eval_limit`` validation and test samples only
            (None: all).
        explicit: the hyperparameter names given explicitly (the rest are the model's own; when
            resuming: the ones that differ from the checkpoint's).
        sources: for each field of ``hp``, where its value came from: a flag (``"--lr"``),
            ``"model default"`` or ``"checkpoint"``.
        notes: one line per setting a resumed run changes (printed before training).
        resumed_from: the checkpoint resumed ("" for a new run).
    """

    model: str
    dataset: str
    config: dict[str, Any]
    hp: TrainingDefaults
    seed: int = 0
    limit: int | None = None
    eval_limit: int | None = None
    explicit: tuple[str, ...] = ()
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    resumed_from: str = ""

    def describe(self) -> str:
        """One line: the hyperparameters, and where they came from (the model's defaults, the
        flags given, the checkpoint resumed)."""
        hp = self.hp
        flags = ", ".join(FLAGS[k] for k in self.explicit)
        if self.resumed_from:
            origin = f"as recorded in {self.resumed_from}" + (f", except {flags}" if flags else "")
        else:
            cls = resolve(self.model)
            origin = f"the model's defaults, {cls.__module__}.{cls.__qualname__}.TRAINING" + (
                f", except {flags}" if flags else "")
        limits = "".join([
            f", first {self.limit} training samples" if self.limit is not None else "",
            f", first {self.eval_limit} val/test samples" if self.eval_limit is not None else "",
        ])
        return (f"{self.model} on {describe(self.dataset)}: epochs {hp.epochs}, "
                f"batch {hp.batch_size}, "
                f"Adam lr {hp.lr:g} ({hp.schedule}), T={hp.timesteps} {hp.encoding}{limits} "
                f"({origin})")


def _check_count(name: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or int(value) != value or value < 1):
        raise UserError(f"{name} must be a positive integer, got {value!r}")


def resolve_run(
    model: str | None = None,
    dataset: str | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    seed: int | None = None,
    limit: int | None = None,
    eval_limit: int | None = None,
    resumed: Mapping[str, Any] | None = None,
    resumed_from: str | os.PathLike = "the checkpoint",
) -> Run:
    """Settle a run's model config and hyperparameters, validating everything.

    ``overrides``: explicit hyperparameters (fields of ``TrainingDefaults``; None values are
    ignored, as are None ``model``, ``dataset``, ``seed``: then ``fc_snn``, ``mnist``, 0).

    ``resumed``: a checkpoint to continue (read from ``resumed_from``). Its model, dataset,
    config, seed, limit, timesteps and encoding are kept (:data:`RESUME_KEPT`): an argument
    given with a different value is an error. Epochs, learning rate, batch size, schedule and
    eval limit (:data:`RESUME_CHANGEABLE`) are the checkpoint's unless given; a different value
    given is used, with a line in ``Run.notes``. Epochs default to the run's recorded target.

    Raises:
        ConfigError: an unknown model, a bad config key or an out-of-range hyperparameter.
        DatasetError: an unknown dataset.
        UserError: a bad ``limit``/``eval_limit``; when resuming, an argument that conflicts
            with the checkpoint, or nothing left to train (``epochs`` at or below the epochs
            already done, or the run already finished).
    """
    explicit = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    fields = [f.name for f in dataclasses.fields(TrainingDefaults)]
    unknown = set(explicit) - set(fields)
    if unknown:
        raise UserError(f"unknown training option(s): {', '.join(sorted(unknown))}")
    _check_count("limit", limit)
    _check_count("eval_limit", eval_limit)
    notes: list[str] = []
    if resumed is None:
        model = "fc_snn" if model is None else model
        dataset = "mnist" if dataset is None else dataset
        seed = 0 if seed is None else seed
        sources = {k: FLAGS[k] if k in explicit else "model default" for k in fields}
    else:
        path = str(resumed_from)
        explicit, model, dataset, config, seed, limit, eval_limit = _resume_settings(
            resumed, path, explicit, model=model, dataset=dataset, config=config, seed=seed,
            limit=limit, eval_limit=eval_limit, notes=notes)
        sources = {k: FLAGS[k] if k in explicit else "checkpoint" for k in fields}
    cls = resolve(model)
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; valid datasets: {', '.join(DATASETS)}")
    if resumed is None:
        hp = dataclasses.replace(training_defaults(model), **explicit)
        if native_encoding(dataset) and "encoding" not in explicit:  # event frames come binned
            hp = dataclasses.replace(hp, encoding=native_encoding(dataset))
    else:
        hp = TrainingDefaults(**{**_recorded_hp(resumed), **explicit})
    cfg = {**default_config(model, input_shape(dataset), num_classes(dataset)), **(config or {})}
    check_config(cls, cfg, model)
    return Run(model=model, dataset=dataset, config=cfg, hp=hp, seed=int(seed),
               limit=None if limit is None else int(limit),
               eval_limit=None if eval_limit is None else int(eval_limit),
               explicit=tuple(explicit), sources=sources, notes=tuple(notes),
               resumed_from="" if resumed is None else str(resumed_from))


def _recorded_hp(ckpt: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters a checkpoint's run was trained with (its target epochs)."""
    state = ckpt["resume"]
    return {"lr": float(state["lr"]), "batch_size": int(state["batch_size"]),
            "schedule": state["schedule"], "epochs": int(state["total_epochs"]),
            "timesteps": int(ckpt["timesteps"]), "encoding": ckpt["encoding"]["kind"]}


def _resume_settings(
    ckpt: Mapping[str, Any], path: str, explicit: dict[str, Any], *, model, dataset, config,
    seed, limit, eval_limit, notes: list[str],
) -> tuple[dict[str, Any], str, str, dict[str, Any], int, int | None, int | None]:
    """Check the arguments given with ``--resume`` against the checkpoint (see resolve_run).

    Returns the hyperparameters that differ from the checkpoint's, and the model, dataset,
    config, seed, limit and eval limit to use; appends a line to ``notes`` per change.
    """
    state = ckpt["resume"]
    recorded = _recorded_hp(ckpt)
    kept = {"model": ckpt["model"], "dataset": ckpt["dataset"], "seed": int(ckpt["seed"]),
            "limit": state.get("limit"), "timesteps": recorded["timesteps"],
            "encoding": recorded["encoding"]}
    given = {"model": model, "dataset": dataset, "seed": seed, "limit": limit,
             "timesteps": explicit.get("timesteps"), "encoding": explicit.get("encoding")}

    def show(v: Any) -> str:
        return "all" if v is None else str(v)

    conflicts = [f"{FLAGS[k]} {given[k]} (the checkpoint's: {show(kept[k])})"
                 for k in given if given[k] is not None and given[k] != kept[k]]
    for key, value in (config or {}).items():
        old = ckpt["config"].get(key)
        if value != old:
            flag = FLAGS.get(key, f"config {key}=")
            was = f"the checkpoint's: {old}" if key in ckpt["config"] else \
                f"the checkpoint's model has no {key}"
            conflicts.append(f"{flag}{'' if flag.endswith('=') else ' '}{value} ({was})")
    if conflicts:
        raise UserError(
            f"cannot resume {path} with {', '.join(conflicts)}: a resumed run keeps its model, "
            "dataset, --hidden, --timesteps, --encoding, --seed and --limit (drop the flag, or "
            "start a new run without --resume)"
        )

    done = int(state["epoch"])
    target = recorded["epochs"]
    finished = bool(ckpt.get("metrics", {}).get("complete", done >= target))
    if "epochs" in explicit:
        n = int(explicit["epochs"])
        if n < done or (n == done and finished):
            raise UserError(
                f"--epochs {n}: {path} has already trained {done} epochs; give --epochs above "
                f"{done} to train further"
                + (f", or leave --epochs out to finish the run's {target}" if target > done
                   else "")
            )
    elif done >= target and finished:
        raise UserError(
            f"{path} has finished its run ({done} of {target} epochs, tested); give --epochs "
            f"above {done} to train further"
        )
    changed = {k: v for k, v in explicit.items() if v != recorded.get(k)}
    for k in ("lr", "batch_size", "schedule"):
        if k in changed:
            notes.append(f"resume: {FLAGS[k]} {changed[k]} replaces the checkpoint's "
                         f"{recorded[k]} from epoch {done + 1} on")
    if "epochs" in changed:
        notes.append(f"resume: --epochs {changed['epochs']} replaces the run's target of "
                     f"{target} epochs")
    schedule = changed.get("schedule", recorded["schedule"])
    if "epochs" in changed and schedule == "cosine":
        notes.append(f"resume: the cosine schedule is recomputed over "
                     f"{changed['epochs']} epochs, so the remaining epochs differ from "
                     f"the run as it was started")
    old_eval = state.get("eval_limit")
    if eval_limit is None:
        eval_limit = old_eval
    elif eval_limit != old_eval:
        notes.append(f"resume: --eval-limit {eval_limit} replaces the checkpoint's "
                     f"{show(old_eval)}: the epochs before {done + 1} were validated on "
                     f"{show(old_eval)} samples")
    return (changed, ckpt["model"], ckpt["dataset"], ckpt["config"], int(ckpt["seed"]),
            state.get("limit"), eval_limit)


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
    to_input: Callable[[np.ndarray, str], torch.Tensor] = model_input,
    dist: distributed.DistContext | None = None,
) -> EpochStats:
    """One pass over ``train_x [N, H, W]`` / ``train_y [N]`` in the run's seeded order.

    The learning rate follows ``run.hp.schedule`` over all ``run.hp.epochs`` epochs, per step.
    ``to_input(encoded, encoding)`` makes the model's input from the encoded batch
    ``[B, T, H, W]`` (default :func:`model_input`; chip-exact training feeds the integers).
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
            if dist is not None:  # DDP: this process's share of the global batch
                idx = distributed.part(dist)(idx)
            enc = encode_indices(train_x, idx, hp.encoding, hp.timesteps, enc_seed)
            x = to_input(enc, hp.encoding).to(device)
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
    total_loss, total_correct, seen = distributed.all_sum(dist, total_loss, total_correct, seen)
    return EpochStats(total_loss / max(seen, 1), total_correct / max(seen, 1), int(seen))


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
    val_samples: int = 0,
    test_samples: int = 0,
) -> dict:
    """The checkpoint dict (format: ``train.checkpoint``) after ``done`` epochs, with the
    optimizer state and hyperparameters under ``"resume"`` (weights copied to the CPU).

    ``val_acc``/``test_acc`` were measured on ``val_samples``/``test_samples`` samples
    (``test_acc`` NaN: not tested yet). ``metrics["complete"]``: all of the run's epochs are
    trained and the test split is evaluated.
    """
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
            "val_samples": int(val_samples),
            "test_samples": int(test_samples),
            "complete": done >= hp.epochs and not math.isnan(test_acc),
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
            "eval_limit": run.eval_limit,
            "sources": dict(run.sources),
        },
    }


def train_model(
    model_name: str | None = None,
    dataset: str | None = None,
    epochs: int | None = None,
    out_path: str | os.PathLike | None = None,
    *,
    timesteps: int | None = None,
    encoding: str | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    schedule: str | None = None,
    seed: int | None = None,
    limit: int | None = None,
    eval_limit: int | None = None,
    threads: int | None = None,
    config: dict | None = None,
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    device: str | None = None,
    notice: Callable[[str], None] | None = None,
) -> dict:
    """Train a model, evaluate it on val every epoch and on test at the end, save a checkpoint.

    ``model_name`` is a model spec (registered name or ``"package.module:ClassName"``,
    ``models.registry``; default ``fc_snn``), ``dataset`` a dataset name (default ``mnist``),
    ``seed`` defaults to 0. ``epochs``, ``timesteps``, ``encoding``, ``batch_size``, ``lr`` and
    ``schedule`` left at None take the model's own defaults (its ``TRAINING``); ``config``
    updates its ``default_config`` for ``dataset``. ``limit``: train on the first ``limit``
    training samples; ``eval_limit``: validate and test on the first ``eval_limit`` samples of
    those splits (None: all; the numbers evaluated are in ``metrics["val_samples"]`` and
    ``metrics["test_samples"]``).

    Returns the checkpoint dict (see ``train.checkpoint``); it is written atomically to
    ``out_path`` if given (a missing folder is created). With ``resume``, training continues
    that checkpoint's run (``resolve_run``: model, dataset, config, seed, limit, timesteps and
    encoding are kept and a conflicting argument is refused; epochs, lr, batch size, schedule
    and eval limit are the checkpoint's unless given, a change is reported through ``notice``)
    up to the run's recorded number of epochs, or ``epochs`` if given (which must exceed the
    epochs done; the cosine schedule is then recomputed for the new total, so the run continues
    exactly only when the total is unchanged). After every epoch, the checkpoint so far (test
    accuracy NaN, ``metrics["complete"]`` False) is written to ``out_path`` so that an
    interrupted run can be resumed; a run interrupted while testing is finished by resuming
    it. Training on the CPU is deterministic: an interrupted and resumed run ends with the same
    weights as an uninterrupted one. Progress bars are drawn only on a terminal
    (``core.cli.progress``). ``log`` receives the progress lines (default: stderr), ``notice``
    the changes a resume makes (default: stderr).

    Raises:
        NeurodeployError subclasses (``ConfigError``, ``DatasetError``, ``CheckpointError``,
        ``UserError``; all ``ValueError``) for bad input, before any training.
    """
    log = log or (lambda s: print(s, file=sys.stderr))
    notice = notice or (lambda s: print(s, file=sys.stderr))
    t_start = time.perf_counter()
    prev = load_resume(resume) if resume is not None else None
    if prev is not None and isinstance(prev.get("chip_exact"), dict):
        raise UserError(f"{resume} is a chip-exact checkpoint: continue it with python -m "
                        f"train --resume {resume} (train.chip_exact.train_chip_exact)")
    run = resolve_run(
        model_name, dataset, config=config, seed=seed, limit=limit, eval_limit=eval_limit,
        resumed=prev, resumed_from=resume if resume is not None else "the checkpoint",
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
    if run.eval_limit is not None:  # the first samples, encoded as a target encodes them
        val_x, val_y = val_x[: run.eval_limit], val_y[: run.eval_limit]
        test_x, test_y = test_x[: run.eval_limit], test_y[: run.eval_limit]

    torch.manual_seed(run.seed)
    np.random.seed(run.seed % 2**32)
    ctx = distributed.setup(device)  # started by torchrun with >1 process, else None
    if ctx is not None and not ctx.is_main:  # rank 0 speaks for the job
        log = notice = lambda s: None  # noqa: E731
        progress = False
    dev = ctx.device if ctx is not None else torch.device(
        device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_model(run.model, run.config).to(dev)
    model = distributed.sync_batchnorm(model, ctx)
    optimizer = torch.optim.Adam(model.parameters(), lr=run.hp.lr)
    history: list[dict] = []
    start_epoch, prior_wall = 0, 0.0
    if prev is not None:
        model.load_state_dict(prev["state_dict"])
        optimizer.load_state_dict(prev["resume"]["optimizer"])
        start_epoch = int(prev["resume"]["epoch"])
        history = list(prev.get("metrics", {}).get("history", []))
        prior_wall = float(prev.get("metrics", {}).get("wall_time_s", 0.0))
        log(f"resuming {resume} after epoch {start_epoch}: {run.describe()}")
        for line in run.notes:
            notice(line)
    else:
        log(f"training {run.describe()}")

    def checkpoint(done: int, test_acc: float, val_acc: float, train_loss: float) -> dict:
        return make_checkpoint(
            run, model, optimizer, done=done, test_acc=test_acc, val_acc=val_acc,
            train_loss=train_loss, history=history, train_samples=len(train_y),
            wall_time_s=prior_wall + time.perf_counter() - t_start,
            val_samples=len(val_y), test_samples=len(test_y) if not math.isnan(test_acc) else 0,
        )

    epochs = run.hp.epochs
    train_loss = history[-1]["train_loss"] if history else float("nan")
    val_acc = history[-1]["val_accuracy"] if history else float("nan")
    net = distributed.wrap(model, ctx)  # DDP shares model's parameters (train/distributed.py)
    model.train()
    for epoch in range(start_epoch, epochs):
        t_epoch = time.perf_counter()
        stats = train_epoch(net, optimizer, train_x, train_y, run, epoch, dev, progress,
                            dist=ctx)
        train_loss = stats.loss
        val_acc = evaluate(model, val_x, val_y, run.hp.encoding, run.hp.timesteps, run.seed,
                           progress=progress, desc="val")
        history.append({"epoch": epoch + 1, "train_loss": train_loss,
                        "train_accuracy": stats.accuracy, "val_accuracy": val_acc,
                        "val_samples": len(val_y),
                        "epoch_time_s": time.perf_counter() - t_epoch})
        log(f"epoch {epoch + 1}/{epochs}: train loss {train_loss:.4f}, "
            f"train acc {stats.accuracy:.4f}, val acc {val_acc:.4f}")
        if out_path is not None and (ctx is None or ctx.is_main):
            # resumable after an interruption; test accuracy is measured at the end only
            save_checkpoint(out_path, checkpoint(epoch + 1, float("nan"), val_acc, train_loss))

    if start_epoch >= epochs:  # no epoch ran (epochs == 0, or resuming an untested run)
        val_acc = evaluate(model, val_x, val_y, run.hp.encoding, run.hp.timesteps, run.seed)
    test_acc = evaluate(model, test_x, test_y, run.hp.encoding, run.hp.timesteps, run.seed,
                        progress=progress, desc="test")
    model.eval()
    ckpt = checkpoint(max(epochs, start_epoch), test_acc, val_acc, train_loss)
    if out_path is not None and (ctx is None or ctx.is_main):
        save_checkpoint(out_path, ckpt)
    distributed.cleanup(ctx)
    return ckpt


def summary_table(ckpt: dict, out_path: str | os.PathLike | None = None) -> str:
    """A small plain-text table of what was trained, with which hyperparameters, how well."""
    m = ckpt["metrics"]
    n_params = sum(v.numel() for k, v in ckpt["state_dict"].items())
    rows = [
        ("model", ckpt["model"]),
        ("dataset", describe(ckpt["dataset"])),
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
        ("val accuracy", f"{100 * m['val_accuracy']:.2f} %{_on(m.get('val_samples'))}"),
        ("test accuracy", f"{100 * m['test_accuracy']:.2f} %{_on(m.get('test_samples'))}"),
        ("wall time", f"{m['wall_time_s']:.1f} s"),
    ]
    chip = ckpt.get("chip_exact")
    if isinstance(chip, dict):  # train.chip_exact: the accuracies are the integer graph's
        rows.insert(3, ("deployed graph", "integer, trained chip-exact"
                        + (" (input bit planes)" if chip.get("input_bitplanes") else "")))
        rows.append(("float test acc.", _pct(chip.get("test_accuracy_float"))
                     + f" (from {chip.get('started_from', '?')})"))
        rows.append(("deployed before", _pct(chip.get("test_accuracy_deployed_before"))))
        overflow = sum(int(v) for v in chip.get("overflow", {}).values())
        rows.append(("overflow events", f"{overflow} (test split)"))
    if out_path is not None:
        rows.append(("checkpoint", str(out_path)))
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    line = f"+{'-' * (width + 2)}+{'-' * (vwidth + 2)}+"
    body = [f"| {k:<{width}} | {v:<{vwidth}} |" for k, v in rows]
    return "\n".join([line, *body, line])


def _on(samples: int | None) -> str:
    return "" if not samples else f" on {samples:,} samples"


def _pct(x: float | None) -> str:
    return "-" if x is None or math.isnan(float(x)) else f"{100 * float(x):.2f} %"

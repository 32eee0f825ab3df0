"""Chip-exact training: train the integer graph the chip runs, not a float model of it.

``python -m train ... --chip-exact`` (``train_chip_exact``) turns the float model (freshly
initialised, or the float checkpoint given with ``--resume``) into its deployed integer graph
with the very code ``convert.to_nir`` and ``convert.quantize`` run, then trains that graph:
its integer weights and biases are rounded, at every step, from float "shadow" copies exactly as
the quantizer rounds (``convert.int_forward.ChipParams``), and the forward pass is the one
``targets.torch_ref`` runs (``convert.int_forward.forward``: ``core/fixedpoint.py`` on int64
tensors, 24-bit wraps, truncating decays and all), with the gradient of a float surrogate of
the same steps (straight through the rounding, arctan surrogate of the spike). So the accuracy
the training reports is the accuracy of torch_ref, event_sim and Lava on the same samples, and
the training forward's spikes are theirs (tests/train/test_chip_exact.py checks it on all four).

The checkpoint is a regular one (``models.checkpoint``; ``state_dict`` is the float model it
started from) with an added ``"chip_exact"`` entry::

    {"graph": uint8 tensor,        # the integer NIR file (convert.quantize's format) as trained
     "params": {...},              # the shadows (ChipParams.state_dict), for --resume
     "input_bitplanes": bool, "started_from": "scratch" | path of the float checkpoint,
     "test_accuracy_float": float, "test_accuracy_deployed_before": float,
     "overflow": {key: events}}    # overflow counters of the final test evaluation

``python -m convert.to_nir`` writes that integer NIR file unchanged; ``--resume`` of a
chip-exact checkpoint continues chip-exact training.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from convert.int_forward import ChipParams, ForwardResult, forward, input_planes
from convert.loader import load_graph
from convert.nir_import import import_nir
from convert.quantize import QuantReport, quantize
from convert.to_nir import checkpoint_to_nir
from core.cli import progress as progress_iter
from core.datasets import load_dataset
from core.encoding import encode_as_recorded, input_scale
from core.errors import CheckpointError, UserError
from core.fixedpoint import OVERFLOW_KINDS
from core.graph import QGraph
from core.nir_io import write_qgraph
from core.readout import predictions
from models.checkpoint import load_checkpoint, save_checkpoint
from models.registry import build_model
from train.loop import (
    FLAGS,
    Run,
    _check_output,
    make_checkpoint,
    resolve_run,
    train_epoch,
)

CHIP_KEY = "chip_exact"
#: Chip-exact epochs when fine-tuning a float checkpoint and ``--epochs`` is not given.
FINETUNE_EPOCHS = 1
#: The learning rate of a fine-tuning run without ``--lr``: the float run's peak rate times this
#: (a fresh Adam moves every weight by about lr per step; at the float run's peak rate that
#: undoes much of what the float run learned before the integer graph can adapt).
FINETUNE_LR_FACTOR = 0.1

__all__ = ["CHIP_KEY", "ChipModel", "evaluate_chip", "graph_from_bytes", "graph_to_bytes",
           "integer_graph_of", "is_chip_exact", "train_chip_exact"]


def is_chip_exact(ckpt: dict[str, Any]) -> bool:
    """Whether a checkpoint holds a chip-exact (integer) graph."""
    return isinstance(ckpt.get(CHIP_KEY), dict)


# ------------------------------------------------------------------ the graph and its file
def integer_graph_of(ckpt: dict[str, Any], input_bitplanes: bool = False
                     ) -> tuple[QGraph, QuantReport]:
    """The deployed integer graph of a float checkpoint, made by the deployment's own code:
    ``convert.to_nir.checkpoint_to_nir`` -> ``convert.nir_import.import_nir`` ->
    ``convert.quantize.quantize`` (``input_bitplanes``: the multiplication-free input).

    Raises:
        ExportError, GraphError, CheckpointError: the model cannot be exported or quantized.
    """
    return quantize(import_nir(checkpoint_to_nir(ckpt)), input_bitplanes=input_bitplanes)


def graph_to_bytes(graph: QGraph, report: QuantReport | dict | None) -> torch.Tensor:
    """The integer NIR file of ``graph`` (``core.nir_io.write_qgraph``) as a uint8 tensor."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.nir"
        write_qgraph(path, graph, report)
        return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8).clone()


def graph_from_bytes(data: torch.Tensor) -> tuple[QGraph, QuantReport | None]:
    """The integer graph (and its quantization report) of :func:`graph_to_bytes`'s tensor,
    read by ``convert.load_graph`` as every target reads it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.nir"
        path.write_bytes(data.numpy().tobytes())
        return load_graph(path)


# ------------------------------------------------------------------------------ the model
class ChipModel(nn.Module):
    """The integer graph as a trainable module: ``forward(encoded)`` takes the encoded
    integer inputs ``[B, T, *input_shape]`` (what the targets are fed) and returns the class
    scores in float units ``[B, classes]``: values exactly the deployed scores divided by the
    readout's scale, gradient of the surrogate (``convert.int_forward``)."""

    def __init__(self, graph: QGraph, report: Any = None) -> None:
        super().__init__()
        self.params = ChipParams(graph, report)

    @property
    def graph(self) -> QGraph:
        """The graph's structure (its integer values are the ones it was built with)."""
        return self.params.graph

    def run(self, encoded: torch.Tensor, grad: bool = False) -> ForwardResult:
        """The exact forward on ``encoded`` (on this module's device); ``grad``: with the
        surrogate (what training differentiates)."""
        x = input_planes(self.graph, encoded.to(self.params.w_unit.device))
        return forward(self.graph, x, params=self.params, grad=grad)

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.run(encoded, grad=True).logits


def _integer_input(encoded: np.ndarray, encoding: str) -> torch.Tensor:
    """Encoded integers as they are (train_epoch's ``to_input`` for the chip model)."""
    return torch.from_numpy(np.ascontiguousarray(encoded).astype(np.int64))


@dataclasses.dataclass
class ChipEval:
    """An evaluation of the integer graph: accuracy in [0, 1] (NaN for no samples), samples,
    and the overflow counters (``overflow/<kind>/<population>`` -> events)."""

    accuracy: float
    samples: int
    overflow: dict[str, int]


@torch.no_grad()
def evaluate_chip(model: ChipModel, images: np.ndarray, labels: np.ndarray,
                  batch_size: int = 500, progress: bool = False, desc: str = "eval"
                  ) -> ChipEval:
    """Accuracy of the integer graph on ``images [N, H, W]`` / ``labels [N]``, sample ``i``
    encoded as the targets encode dataset index ``i`` (``core.encoding.encode_as_recorded``),
    predictions by ``core.readout.predictions`` (the targets' rule)."""
    qg = model.params.integer_graph()
    correct, n = 0, len(labels)
    overflow = dict.fromkeys((f"overflow/{k}/{p}" for p in qg.populations
                              for k in OVERFLOW_KINDS), 0)
    for lo in progress_iter(range(0, n, batch_size), desc=desc, enabled=progress,
                            unit="batch"):
        hi = min(lo + batch_size, n)
        enc = encode_as_recorded(qg.metadata, qg.timesteps, images[lo:hi], first_index=lo)
        r = model.run(torch.from_numpy(np.ascontiguousarray(enc)))
        pred = predictions(qg, {k: v.cpu().numpy() for k, v in r.readouts.items()})
        correct += int((pred == labels[lo:hi]).sum())
        for pop, counts in r.overflow.items():
            for kind, c in zip(OVERFLOW_KINDS, counts.tolist(), strict=True):
                overflow[f"overflow/{kind}/{pop}"] += int(c)
    return ChipEval(correct / n if n else float("nan"), n, overflow)


# --------------------------------------------------------------------------- the runs
def _float_checkpoint(run: Run, state_dict: dict[str, torch.Tensor],
                      test_accuracy: float = float("nan")) -> dict[str, Any]:
    """A minimal float checkpoint of ``run`` (what ``convert.to_nir`` exports)."""
    hp = run.hp
    return {"model": run.model, "config": run.config, "state_dict": state_dict,
            "dataset": run.dataset, "timesteps": int(hp.timesteps), "seed": int(run.seed),
            "encoding": {"kind": hp.encoding, "timesteps": int(hp.timesteps),
                         "seed": int(run.seed), "input_scale": float(input_scale(hp.encoding))},
            "metrics": {"test_accuracy": float(test_accuracy)}}


def _finetune_run(prev: dict[str, Any], path: str, *, model, dataset, config, seed, limit,
                  eval_limit, overrides: dict[str, Any]) -> Run:
    """The run that fine-tunes float checkpoint ``prev`` chip-exact: its model, data, coding
    and seed; the optimizer's settings from the flags, else as the float run recorded them;
    ``epochs`` chip-exact epochs (default :data:`FINETUNE_EPOCHS`), learning rate the float
    run's times :data:`FINETUNE_LR_FACTOR` unless given.

    Raises:
        UserError: a flag that conflicts with what the checkpoint's model was trained on.
    """
    state = prev.get("resume") or {}
    kept = {"model": prev["model"], "dataset": prev["dataset"], "seed": int(prev["seed"]),
            "timesteps": int(prev["timesteps"]), "encoding": prev["encoding"]["kind"]}
    given = {"model": model, "dataset": dataset, "seed": seed,
             "timesteps": overrides.get("timesteps"), "encoding": overrides.get("encoding")}
    bad = [f"{FLAGS[k]} {v} (the checkpoint's: {kept[k]})" for k, v in given.items()
           if v is not None and v != kept[k]]
    bad += [f"config {k}={v}" for k, v in (config or {}).items() if prev["config"].get(k) != v]
    if bad:
        raise UserError(f"cannot fine-tune {path} chip-exact with {', '.join(bad)}: the "
                        "integer graph is the checkpoint's model (drop the flag)")
    explicit = {k: v for k, v in overrides.items() if v is not None}
    lr = state.get("lr")
    hp = {"lr": None if lr is None else float(lr) * FINETUNE_LR_FACTOR,
          "batch_size": state.get("batch_size"),
          "schedule": state.get("schedule"), "epochs": FINETUNE_EPOCHS,
          "timesteps": kept["timesteps"], "encoding": kept["encoding"]}
    hp = {k: v for k, v in hp.items() if v is not None}
    run = resolve_run(kept["model"], kept["dataset"], config=prev["config"], seed=kept["seed"],
                      limit=limit if limit is not None else state.get("limit"),
                      eval_limit=eval_limit if eval_limit is not None
                      else state.get("eval_limit"),
                      overrides={**hp, **explicit})
    sources = {k: FLAGS[k] if k in explicit else "checkpoint" for k in run.sources}
    if "epochs" not in explicit:
        sources["epochs"] = f"chip-exact fine-tuning default ({FINETUNE_EPOCHS})"
    if "lr" not in explicit and lr is not None:
        sources["lr"] = f"the float run's x {FINETUNE_LR_FACTOR:g}"
    return dataclasses.replace(run, explicit=tuple(explicit), sources=sources,
                               resumed_from=f"{path} (float, fine-tuned chip-exact)")


def train_chip_exact(
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
    input_bitplanes: bool | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    device: str | None = None,
    notice: Callable[[str], None] | None = None,
) -> dict:
    """Train the deployed integer graph; returns the chip-exact checkpoint (module docstring),
    written atomically to ``out_path`` after every epoch and at the end.

    Three starts: no ``resume`` (a freshly initialised model, seeded, quantized and trained
    chip-exact for all its epochs); ``resume`` a float checkpoint (its trained model, quantized
    and fine-tuned chip-exact for ``epochs``, default :data:`FINETUNE_EPOCHS`); ``resume`` a
    chip-exact checkpoint (its run continued, as ``train.loop.train_model`` continues a float
    run: ``resolve_run`` says what may change). The arguments mean what they mean for
    ``train.loop.train_model``; ``input_bitplanes`` deploys (and trains) the input layer as
    binary bit planes (default False; a resumed chip-exact run keeps its own). Evaluation
    (validation every epoch, test at the end) is the exact forward, scored as the targets
    score (``metrics["test_accuracy"]`` is the deployed graph's accuracy).

    Raises:
        NeurodeployError subclasses for bad input, before any training.
    """
    log = log or (lambda s: print(s, file=sys.stderr))
    notice = notice or (lambda s: print(s, file=sys.stderr))
    t_start = time.perf_counter()
    prev = load_checkpoint(resume) if resume is not None else None
    overrides = {"lr": lr, "batch_size": batch_size, "schedule": schedule, "epochs": epochs,
                 "timesteps": timesteps, "encoding": encoding}
    chip_prev = prev is not None and is_chip_exact(prev)
    if chip_prev:
        if prev.get("resume") is None:
            raise CheckpointError(f"checkpoint {resume} holds no optimizer state to resume from")
        recorded = bool(prev[CHIP_KEY].get("input_bitplanes", False))
        if input_bitplanes is not None and bool(input_bitplanes) != recorded:
            raise UserError(f"cannot resume {resume} with{'' if input_bitplanes else 'out'} "
                            f"--input-bitplanes: its integer graph was trained "
                            f"with{'' if recorded else 'out'} them")
        input_bitplanes = recorded
        run = resolve_run(model_name, dataset, config=config, seed=seed, limit=limit,
                          eval_limit=eval_limit, resumed=prev, resumed_from=resume,
                          overrides=overrides)
    elif prev is not None:
        run = _finetune_run(prev, str(resume), model=model_name, dataset=dataset,
                            config=config, seed=seed, limit=limit, eval_limit=eval_limit,
                            overrides=overrides)
    else:
        run = resolve_run(model_name, dataset, config=config, seed=seed, limit=limit,
                          eval_limit=eval_limit, overrides=overrides)
    input_bitplanes = bool(input_bitplanes)
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
    if run.eval_limit is not None:
        val_x, val_y = val_x[: run.eval_limit], val_y[: run.eval_limit]
        test_x, test_y = test_x[: run.eval_limit], test_y[: run.eval_limit]

    torch.manual_seed(run.seed)
    np.random.seed(run.seed % 2**32)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    float_model = build_model(run.model, run.config)
    history: list[dict] = []
    start_epoch, prior_wall = 0, 0.0
    if chip_prev:
        float_model.load_state_dict(prev["state_dict"])
        chip = prev[CHIP_KEY]
        graph, report = graph_from_bytes(chip["graph"])
        model = ChipModel(graph, report)
        model.load_state_dict(chip["params"])
        start_epoch = int(prev["resume"]["epoch"])
        history = list(prev.get("metrics", {}).get("history", []))
        prior_wall = float(prev.get("metrics", {}).get("wall_time_s", 0.0))
        float_acc = float(chip.get("test_accuracy_float", float("nan")))
        before = float(chip.get("test_accuracy_deployed_before", float("nan")))
        started_from = str(chip.get("started_from", "scratch"))
        log(f"resuming chip-exact {resume} after epoch {start_epoch}: {run.describe()}")
        for line in run.notes:
            notice(line)
    else:
        if prev is not None:
            float_model.load_state_dict(prev["state_dict"])
            float_acc = float(prev.get("metrics", {}).get("test_accuracy", float("nan")))
            started_from = str(resume)
        else:
            float_acc, started_from = float("nan"), "scratch"
        fck = _float_checkpoint(run, {k: v.detach().cpu() for k, v in
                                      float_model.state_dict().items()}, float_acc)
        graph, report = integer_graph_of(fck, input_bitplanes)
        model = ChipModel(graph, report)
        before = float("nan")
        log(f"chip-exact training of the integer graph of {started_from}: {run.describe()}"
            + (", input as bit planes" if input_bitplanes else ""))
    model.to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=run.hp.lr)
    if chip_prev:
        optimizer.load_state_dict(prev["resume"]["optimizer"])
    elif prev is not None:  # what the float model is worth once deployed, before tuning
        before = evaluate_chip(model, test_x, test_y, progress=progress,
                               desc="test (deployed, before)").accuracy
        log(f"deployed before chip-exact training: test acc {before:.4f} (float "
            f"{float_acc:.4f})")

    def checkpoint(done: int, test: ChipEval | None, val_acc: float, train_loss: float
                   ) -> dict:
        test_acc = float("nan") if test is None else test.accuracy
        ck = make_checkpoint(
            run, float_model, optimizer, done=done, test_acc=test_acc, val_acc=val_acc,
            train_loss=train_loss, history=history, train_samples=len(train_y),
            wall_time_s=prior_wall + time.perf_counter() - t_start,
            val_samples=len(val_y), test_samples=0 if test is None else test.samples)
        ck[CHIP_KEY] = {
            "graph": graph_to_bytes(_deployed(model), report),
            "params": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "input_bitplanes": input_bitplanes, "started_from": started_from,
            "test_accuracy_float": float_acc, "test_accuracy_deployed_before": before,
            "overflow": {} if test is None else {k: v for k, v in test.overflow.items() if v},
        }
        return ck

    epochs = run.hp.epochs
    train_loss = history[-1]["train_loss"] if history else float("nan")
    val_acc = history[-1]["val_accuracy"] if history else float("nan")
    model.train()
    for epoch in range(start_epoch, epochs):
        t_epoch = time.perf_counter()
        stats = train_epoch(model, optimizer, train_x, train_y, run, epoch, dev, progress,
                            to_input=_integer_input)
        train_loss = stats.loss
        val_acc = evaluate_chip(model, val_x, val_y, progress=progress, desc="val").accuracy
        history.append({"epoch": epoch + 1, "train_loss": train_loss,
                        "train_accuracy": stats.accuracy, "val_accuracy": val_acc,
                        "val_samples": len(val_y), "chip_exact": True,
                        "epoch_time_s": time.perf_counter() - t_epoch})
        log(f"chip-exact epoch {epoch + 1}/{epochs}: train loss {train_loss:.4f}, "
            f"train acc {stats.accuracy:.4f}, val acc {val_acc:.4f}")
        if out_path is not None:
            save_checkpoint(out_path, checkpoint(epoch + 1, None, val_acc, train_loss))
    if start_epoch >= epochs:
        val_acc = evaluate_chip(model, val_x, val_y).accuracy
    test = evaluate_chip(model, test_x, test_y, progress=progress, desc="test")
    ck = checkpoint(max(epochs, start_epoch), test, val_acc, train_loss)
    if not math.isnan(test.accuracy):
        ck["metrics"]["complete"] = max(epochs, start_epoch) >= epochs
    if out_path is not None:
        save_checkpoint(out_path, ck)
    return ck


def _deployed(model: ChipModel) -> QGraph:
    """The integer graph with the trained parameters, marked chip-exact in its metadata."""
    g = model.params.integer_graph()
    return dataclasses.replace(g, metadata={**g.metadata, "chip_exact": 1})

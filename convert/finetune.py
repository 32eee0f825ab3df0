"""Fine-tune the integer parameters of any deployable NIR graph on user data, chip-exact.

    python -m convert.finetune model.nir --input x.npy --labels y.npy -o tuned.nir

For a graph whose deployed accuracy dropped (one exported by snnTorch, Norse, Sinabs, ..., or
our own): the graph is loaded as every target loads it (``convert.load_graph``: imported and
quantized, or read as it is when already integer), and its integer weights and biases are
trained with the chip's exact forward in the loop (``convert.int_forward``: the walk
``targets.torch_ref`` runs, so every target gives the accuracy printed here), gradients from a
float surrogate, the integers rounded from float shadows as the quantizer rounds. Thresholds,
decays, exponents and the structure stay. The output is an integer NIR file
(docs/integer-nir.md) that every target runs as it is; its metadata says ``chip_exact = 1``.

The last ``--holdout`` fraction of the samples (default 0.2) is not trained on: accuracy before
and after is printed for both parts. The framework reference (``targets.reference``) sits above
this package; the command prints the ``targets.verify`` lines that compare it before and after.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from convert.int_forward import ChipParams, forward, input_planes, pick_device
from convert.loader import load_graph
from convert.quantize import QuantReport
from core.cli import (
    add_output_flags,
    check_writable,
    print_json,
    progress_bar,
    run_cli,
    wants_progress,
)
from core.errors import UserError
from core.graph import QGraph
from core.nir_io import write_qgraph
from core.readout import predictions

PROG = "python -m convert.finetune"

__all__ = ["FinetuneResult", "finetune", "main"]


def _load_npy(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such {what} file")
    try:
        return np.load(p, allow_pickle=False)
    except Exception as e:  # np.load raises several types for a file that is not .npy
        raise UserError(f"{p}: not a .npy array ({type(e).__name__}: {e})") from None


def _check_data(graph: QGraph, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs [N, T, *input_shape] integers within the input's range and labels [N] class
    indices of the graph's single readout.

    Raises:
        UserError: any mismatch, in one line.
    """
    if x.ndim < 2 or x.shape[1] != graph.timesteps or \
            int(np.prod(x.shape[2:])) != graph.input.size:
        raise UserError(f"inputs must be [sample, timestep, *{graph.input.shape}] with "
                        f"{graph.timesteps} timesteps; got {list(x.shape)}")
    if not (np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_) and \
            not np.all(x == np.round(x)):
        raise UserError("inputs must be integers (spikes 0/1 or graded values)")
    if x.size and (x.min() < 0 or x.max() > graph.input.max_value):
        raise UserError(f"input values must lie in [0, {graph.input.max_value}] for a "
                        f"{graph.input.kind} input; got [{x.min()}, {x.max()}]")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"labels must be one class index per input sample, shape [{len(x)}]; "
                        f"got {list(y.shape)}")
    if not np.issubdtype(y.dtype, np.integer) and not np.all(y == np.round(y)):
        raise UserError("labels must be integer class indices")
    if len(graph.readouts) != 1:
        raise UserError(f"fine-tuning needs one readout to classify, the graph has "
                        f"{len(graph.readouts)}")
    (r,) = graph.readouts.values()
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= r.size):
        raise UserError(f"labels must be class indices in [0, {r.size - 1}] (readout "
                        f"{r.name!r}); got [{y.min()}, {y.max()}]")
    return x.astype(np.int64), y


def _accuracy(params: ChipParams, x: np.ndarray, y: np.ndarray, batch: int,
              dev: torch.device) -> float:
    """Accuracy of the current integer graph (NaN for no samples), scored as the targets
    score (``core.readout.predictions``)."""
    if not len(y):
        return float("nan")
    qg = params.integer_graph()
    correct = 0
    with torch.no_grad():
        for lo in range(0, len(y), batch):
            xb = input_planes(params.graph, torch.from_numpy(x[lo : lo + batch]).to(dev))
            r = forward(params.graph, xb, params=params)
            pred = predictions(qg, {k: v.cpu().numpy() for k, v in r.readouts.items()})
            correct += int((pred == y[lo : lo + batch]).sum())
    return correct / len(y)


class FinetuneResult:
    """The tuned graph and the accuracies (fractions) before and after, on the samples
    trained on and on the held-out ones (NaN when there are none)."""

    def __init__(self, graph: QGraph, before: tuple[float, float], after: tuple[float, float],
                 n_train: int, n_holdout: int, losses: list[float], wall_s: float) -> None:
        self.graph = graph
        self.before, self.after = before, after
        self.n_train, self.n_holdout = n_train, n_holdout
        self.losses, self.wall_s = losses, wall_s


def finetune(graph: QGraph, report: QuantReport | None, x: np.ndarray, y: np.ndarray, *,
             epochs: int = 5, lr: float = 1e-3, batch_size: int = 32, holdout: float = 0.2,
             seed: int = 0, device: str | None = "cpu", progress: bool = False
             ) -> FinetuneResult:
    """Train ``graph``'s integer weights and biases on inputs ``x`` [N, T, *input_shape]
    (integers) and labels ``y`` [N] with the exact integer forward (module docstring); the
    last ``holdout`` fraction of the samples is only evaluated. Adam, ``lr`` in the float
    model's units (``ChipParams``), cosine schedule to 0, seeded sample order.

    Raises:
        UserError: bad data, options, or a graph without exactly one readout.
    """
    x, y = _check_data(graph, np.asarray(x), np.asarray(y))
    if not 0 <= holdout < 1:
        raise UserError(f"--holdout must be in [0, 1), got {holdout}")
    for name, v in (("--epochs", epochs), ("--batch-size", batch_size)):
        if int(v) != v or v < 1:
            raise UserError(f"{name} must be a positive integer, got {v}")
    if not lr > 0:
        raise UserError(f"--lr must be positive, got {lr}")
    n_hold = int(math.floor(len(y) * holdout))
    n_train = len(y) - n_hold
    if n_train < 1:
        raise UserError(f"no samples left to train on ({len(y)} samples, holdout {holdout})")
    t0 = time.perf_counter()
    dev = pick_device(device)
    torch.manual_seed(seed)
    params = ChipParams(graph, report).to(dev)
    xt, yt, xh, yh = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    before = (_accuracy(params, xt, yt, 256, dev), _accuracy(params, xh, yh, 256, dev))
    opt = torch.optim.Adam(params.parameters(), lr=lr)
    steps = math.ceil(n_train / batch_size)
    total = max(epochs * steps, 1)
    losses: list[float] = []
    step = 0
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(n_train)
        loss_sum = 0.0
        with progress_bar(steps, desc=f"epoch {epoch + 1}/{epochs}", enabled=progress,
                          unit="batch") as bar:
            for lo in range(0, n_train, batch_size):
                for group in opt.param_groups:
                    group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * step / total))
                idx = order[lo : lo + batch_size]
                xb = input_planes(params.graph, torch.from_numpy(xt[idx]).to(dev))
                logits = forward(params.graph, xb, params=params, grad=True).logits
                loss = F.cross_entropy(logits, torch.from_numpy(yt[idx]).to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.item() * len(idx)
                step += 1
                bar.update(1)
        losses.append(loss_sum / n_train)
    after = (_accuracy(params, xt, yt, 256, dev), _accuracy(params, xh, yh, 256, dev))
    tuned = params.integer_graph()
    tuned = replace(tuned, metadata={**tuned.metadata, "chip_exact": 1})
    return FinetuneResult(tuned, before, after, n_train, n_hold, losses,
                          time.perf_counter() - t0)


def _pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{100 * v:.2f}%"


def main(argv: list[str] | None = None) -> int:
    """``python -m convert.finetune``; returns the exit code."""
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Fine-tune the integer weights and biases of a NIR graph (float from any "
        "framework, or integer) on your inputs and labels, with the chip's exact fixed-point "
        "forward in the loop, and write the tuned integer graph. The accuracy printed is what "
        "torch_ref, event_sim and Lava give on the same samples.",
        epilog="example: python -m convert.finetune model.nir --input x.npy --labels y.npy "
        "-o tuned.nir --epochs 5",
    )
    ap.add_argument("model", help="NIR file (float: imported and quantized as the targets do; "
                    "or integer, from convert.quantize)")
    ap.add_argument("--input", required=True, metavar="x.npy",
                    help="inputs [sample, timestep, *input_shape], integers")
    ap.add_argument("--labels", required=True, metavar="y.npy",
                    help="class index per sample [sample]")
    ap.add_argument("-o", "--output", default=None,
                    help="integer NIR file to write (default: the model's name with .tuned.nir)")
    ap.add_argument("--epochs", type=int, default=5, help="passes over the samples (default 5)")
    ap.add_argument("--lr", type=float, default=1e-3,
                    help="Adam learning rate in the float model's units (default 1e-3)")
    ap.add_argument("--batch-size", type=int, default=32, help="samples per step (default 32)")
    ap.add_argument("--holdout", type=float, default=0.2,
                    help="fraction of the samples, the last ones, kept out of training and "
                    "only evaluated (default 0.2; 0: evaluate on the training samples only)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample order (default 0)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    ap.add_argument("--dt", type=float, default=None, help="time step (s) of a foreign float "
                    "graph (as the targets' --dt)")
    ap.add_argument("--input-bitplanes", action="store_true",
                    help="quantize a graded input as binary bit planes (float graphs only)")
    add_output_flags(ap)
    args = ap.parse_args(argv)
    src = Path(args.model)
    out = Path(args.output) if args.output else src.with_name(f"{src.stem}.tuned.nir")
    if out.resolve() == src.resolve():
        raise UserError(f"output {out} is the input file; give another name with -o")
    check_writable(out)
    if args.device not in ("cpu", "auto") and not args.device.startswith("cuda"):
        raise UserError(f"--device must be cpu, cuda or auto; got {args.device!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA GPU is available to torch here")
    x = _load_npy(args.input, "input")
    y = _load_npy(args.labels, "labels")
    if x.ndim < 2:
        raise UserError(f"{args.input}: inputs must be [sample, timestep, *input_shape]; got "
                        f"shape {list(x.shape)}")
    graph, report = load_graph(src, dt=args.dt, input_bitplanes=args.input_bitplanes,
                               input_timesteps=x.shape[1])
    res = finetune(graph, report, x, y, epochs=args.epochs, lr=args.lr,
                   batch_size=args.batch_size, holdout=args.holdout, seed=args.seed,
                   device=args.device, progress=wants_progress(args))
    # the report describes the quantization the tuning started from (docs/integer-nir.md F2)
    write_qgraph(out, res.graph, None if report is None else report.to_dict())
    hint = (f"reference comparison (framework vs chip), before: python -m targets.verify "
            f"{src} --input {args.input} --labels {args.labels} --targets torch_ref "
            f"--reference <framework>; after: the same with {out} as the chip's graph "
            f"(python -m targets.torch_ref {out} --input {args.input} --labels {args.labels})")
    if args.json:
        print_json({"output": str(out), "samples_trained": res.n_train,
                    "samples_held_out": res.n_holdout,
                    "accuracy_before": {"trained": res.before[0], "held_out": res.before[1]},
                    "accuracy_after": {"trained": res.after[0], "held_out": res.after[1]},
                    "loss_per_epoch": res.losses, "wall_s": res.wall_s})
        return 0
    print(f"{PROG}: {src}, {res.n_train} samples trained on, {res.n_holdout} held out, "
          f"{args.epochs} epochs, {res.wall_s:.1f} s")
    print(f"{'accuracy':<12}{'before':>10}{'after':>10}")
    print(f"{'trained on':<12}{_pct(res.before[0]):>10}{_pct(res.after[0]):>10}")
    print(f"{'held out':<12}{_pct(res.before[1]):>10}{_pct(res.after[1]):>10}")
    print(f"wrote {out} (the tuned integer graph: every target runs it as it is)")
    print(hint)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG.split()[-1], main))

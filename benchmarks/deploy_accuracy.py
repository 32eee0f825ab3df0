"""Float model vs deployed integer model, on the same test samples, for one or more NIR files.

    python benchmarks/deploy_accuracy.py runs/*.nir --samples 1000 [--input-bitplanes]
    python benchmarks/deploy_accuracy.py runs/*.nir --samples 1000 --calibrate [--markdown]
    python benchmarks/deploy_accuracy.py --zoo runs/cal --dataset mnist --train-limit 4000 \\
        --samples 1000 --calibrate --markdown [--device cuda]

Without ``--calibrate``: the float graph's accuracy (the exported model, simulated in float64),
the deployed integer model's accuracy (torch_ref; event_sim and Lava give the same records, see
targets.verify) and the fraction of spikes that quantization left unchanged.

With ``--calibrate`` (issue 10): one row per model with the float accuracy and the deployed
accuracy (torch_ref) with worst-case scales and with calibrated scales (``convert.calibrate``:
the first ``--calibration-samples`` of the TRAINING split, never the test images), with the
graded input and with the bit-plane input -- calibrated bit planes both at exponent b (as the
worst-case deployment) and shifted (``quantize(shift_planes=True)``, the calibrated default:
plane b at exponent b + e); the spike entries kept, the input layer's weight bits, and the
overflow events the calibrated graphs had on the test samples (all targets count the same).

``--zoo DIR`` trains every seed model briefly (``train.loop.train_model``: ``--epochs`` on the
first ``--train-limit`` training images, seed 0, the model's default configuration) unless
``DIR/<model>_<dataset>.nir`` exists, exports it, and measures those files.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED_MODELS = ("fc_snn", "conv_snn", "cml_net", "ds_resnet", "spiking_mlp", "cml_spikformer")
# (key, calibrated, bit planes, shifted planes): what quantize is asked for
VARIANTS = (
    ("worst_graded", False, False, False),
    ("worst_bitplanes", False, True, False),
    ("calibrated_graded", True, False, False),
    ("calibrated_bitplanes_exp0", True, True, False),
    ("calibrated_bitplanes", True, True, True),
)


def train_zoo(out: Path, dataset: str, epochs: int, limit: int, eval_limit: int,
              device: str | None, models: list[str]) -> list[Path]:
    """Train (if missing) and export each model; returns the NIR files."""
    import nir

    from convert.to_nir import checkpoint_to_nir
    from train.checkpoint import save_checkpoint
    from train.loop import train_model

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in models:
        path = out / f"{m}_{dataset}.nir"
        if not path.exists():
            t0 = time.perf_counter()
            ck = train_model(m, dataset, epochs, None, seed=0, limit=limit,
                             eval_limit=eval_limit, progress=False, device=device,
                             log=lambda s, m=m: print(f"[{m}] {s}", file=sys.stderr))
            ck.pop("resume", None)
            save_checkpoint(out / f"{m}_{dataset}.pt", ck)
            nir.write(str(path), checkpoint_to_nir(ck))
            info = {"model": m, "dataset": dataset, "epochs": epochs, "train_limit": limit,
                    "test_accuracy": ck["metrics"]["test_accuracy"],
                    "wall_s": round(time.perf_counter() - t0, 1)}
            (out / f"{m}_{dataset}.json").write_text(json.dumps(info) + "\n")
            print(f"[{m}] trained: {json.dumps(info)}", file=sys.stderr, flush=True)
        paths.append(path)
    return paths


def compare(path: str | Path, samples: int, cal_samples: int) -> dict:
    """One model's row of the calibrated table (see the module docstring)."""
    from convert.calibrate import calibrate
    from convert.float_sim import simulate
    from convert.nir_import import import_nir
    from convert.quantize import quantize
    from core.datasets import load_dataset
    from core.encoding import encode_as_recorded
    from core.nir_ext import read_nir
    from targets import torch_ref
    from targets.base import OVERFLOW_PREFIX, readout_scores

    fg = import_nir(read_nir(path))
    meta = fg.metadata
    images, labels = load_dataset(str(meta["dataset"]), "test")
    n = min(samples, len(images))
    x = encode_as_recorded(meta, fg.timesteps, images[:n])
    y = labels[:n]
    scores, fspikes = simulate(fg, x)
    cal = calibrate(fg, samples=cal_samples)
    row: dict = {"model": Path(path).stem, "samples": n, "calibration": cal.summary(),
                 "float": float(np.mean(scores.argmax(1) == y))}
    total = sum(s.size for s in fspikes.values())
    for key, calibrated, planes, shift in VARIANTS:
        qg, rep = quantize(fg, input_bitplanes=planes, calibration=cal if calibrated else None,
                           shift_planes=shift)
        r = torch_ref.run(qg, x)
        same = sum(int((fspikes[k] == r.spikes[k]).sum()) for k in fspikes)
        first = [p for p in rep.populations.values() if getattr(p, "weight_bits", None)]
        row[key] = {
            "accuracy": float(np.mean(readout_scores(qg, r.readouts).argmax(1) == y)),
            "spikes_kept": same / total,
            "overflow_events": int(sum(v for k, v in r.counters.items()
                                       if k.startswith(OVERFLOW_PREFIX))),
            "input_weight_bits": max((int(s.max_abs_weight).bit_length()
                                      for s in rep.synapses.values() if s.source == "input"),
                                     default=0),
            "calibrated_populations": len(first),
        }
    return row


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def print_rows(rows: list[dict], markdown: bool) -> None:
    head = ["model", "test samples", "float", "worst-case graded", "worst-case bit-plane",
            "calibrated graded", "calibrated bit-plane, planes at exponent b",
            "calibrated bit-plane, shifted planes", "spikes kept (worst-case / calibrated "
            "bit-plane)", "input weight bits (bit-plane: worst / exp b / shifted)",
            "overflow events (calibrated)"]
    lines = []
    for r in rows:
        v = {k: r[k] for k, *_ in VARIANTS}
        lines.append([
            r["model"], str(r["samples"]), _pct(r["float"]),
            *(_pct(v[k]["accuracy"]) for k, *_ in VARIANTS),
            f"{_pct(v['worst_bitplanes']['spikes_kept'])} / "
            f"{_pct(v['calibrated_bitplanes']['spikes_kept'])}",
            f"{v['worst_bitplanes']['input_weight_bits']} / "
            f"{v['calibrated_bitplanes_exp0']['input_weight_bits']} / "
            f"{v['calibrated_bitplanes']['input_weight_bits']}",
            str(sum(v[k]["overflow_events"] for k, c, *_ in VARIANTS if c))])
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + " --- |" * len(head))
        for ln in lines:
            print("| " + " | ".join(ln) + " |")
    else:
        for ln in [head, *lines]:
            print("  ".join(ln))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[1:]))
    ap.add_argument("models", nargs="*", help="float NIR files (or use --zoo)")
    ap.add_argument("--samples", type=int, default=1000, help="test samples (default 1000)")
    ap.add_argument("--input-bitplanes", action="store_true")
    ap.add_argument("--calibrate", action="store_true",
                    help="the calibrated table: worst-case vs calibrated scales, graded vs "
                    "bit-plane input")
    ap.add_argument("--calibration-samples", type=int, default=256,
                    help="training images the scales are calibrated on (default 256)")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown")
    ap.add_argument("--json", default=None, metavar="out.json", help="also write the rows")
    ap.add_argument("--zoo", default=None, metavar="DIR",
                    help="train (if missing) and export every seed model into DIR, then "
                    "measure them")
    ap.add_argument("--models-list", default=",".join(SEED_MODELS),
                    help="with --zoo: comma-separated models (default: the six seed models)")
    ap.add_argument("--dataset", default="mnist", help="with --zoo (default mnist)")
    ap.add_argument("--epochs", type=int, default=1, help="with --zoo (default 1)")
    ap.add_argument("--train-limit", type=int, default=4000,
                    help="with --zoo: training images (default 4000)")
    ap.add_argument("--eval-limit", type=int, default=500,
                    help="with --zoo: validation/test images training evaluates (default 500)")
    ap.add_argument("--device", default=None, help="with --zoo: torch device for training")
    args = ap.parse_args()
    paths = list(args.models)
    if args.zoo:
        paths += train_zoo(Path(args.zoo), args.dataset, args.epochs, args.train_limit,
                           args.eval_limit, args.device, args.models_list.split(","))
    if not paths:
        ap.error("give NIR files or --zoo DIR")

    if args.calibrate:
        rows = []
        for p in paths:
            t0 = time.perf_counter()
            rows.append(compare(p, args.samples, args.calibration_samples))
            rows[-1]["wall_s"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
        print_rows(rows, args.markdown)
        return 0

    from convert.float_sim import simulate
    from convert.nir_import import import_nir
    from convert.quantize import quantize
    from core.datasets import load_dataset
    from core.encoding import encode_as_recorded
    from core.nir_ext import read_nir
    from targets import torch_ref
    from targets.base import readout_scores

    print(f"{'model':<32}{'samples':>8}{'float':>9}{'deployed':>10}{'spikes kept':>13}")
    for path in paths:
        fg = import_nir(read_nir(path))
        meta = fg.metadata
        images, labels = load_dataset(str(meta["dataset"]), "test")
        n = min(args.samples, len(images))
        x = encode_as_recorded(meta, fg.timesteps, images[:n])
        scores, fspikes = simulate(fg, x)
        qg, _ = quantize(fg, input_bitplanes=args.input_bitplanes)
        r = torch_ref.run(qg, x)
        acc_f = float(np.mean(scores.argmax(1) == labels[:n]))
        acc_q = float(np.mean(readout_scores(qg, r.readouts).argmax(1) == labels[:n]))
        same = sum(int((fspikes[k] == r.spikes[k]).sum()) for k in fspikes)
        total = sum(fspikes[k].size for k in fspikes)
        print(f"{Path(path).name:<32}{n:>8}{acc_f * 100:>8.2f}%{acc_q * 100:>9.2f}%"
              f"{same / total * 100:>12.2f}%", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Accuracy of a deployed model as its synaptic weights lose bits (a picture for the docs).

    python benchmarks/accuracy_vs_bits.py runs/fc_mnist.nir --samples 2000 \
        --plot docs/figures/fc_snn_accuracy_vs_bits.png

The 8-bit graph is what the quantizer produces (and every target runs spike-exactly). For b < 8
bits each weight is rounded to the nearest multiple of 2**(8 - b) (scale, thresholds and biases
unchanged), which is what a b-bit synapse at the same scale would hold; the accuracy is measured
on torch_ref, the integer reference. The float graph's accuracy is the dashed line.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def fewer_bits(graph, bits: int):
    """The same graph with every weight rounded to a multiple of 2**(8 - bits)."""
    step = 2 ** (8 - bits)
    syns = []
    for s in graph.synapses:
        w = np.asarray(s.weight)
        if w.min() < 0 < w.max():
            step_s = max(step, 2)  # mixed-sign weights must stay even for Lava
        else:
            step_s = step
        syns.append(replace(s, weight=(np.round(w / step_s) * step_s).astype(np.int64)))
    return replace(graph, synapses=syns)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="float NIR file with dataset metadata")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--bits", default="8,7,6,5,4,3,2")
    ap.add_argument("--plot", default=None, help="PNG to write")
    ap.add_argument("--json", default=None, help="JSON to write")
    args = ap.parse_args()

    from convert.float_sim import simulate
    from convert.nir_import import import_nir
    from convert.quantize import quantize
    from core.datasets import load_dataset
    from core.encoding import encode_as_recorded
    from core.nir_ext import read_nir
    from targets import torch_ref
    from targets.base import readout_scores

    fg = import_nir(read_nir(args.model))
    meta = fg.metadata
    images, labels = load_dataset(str(meta["dataset"]), "test")
    n = min(args.samples, len(images))
    x = encode_as_recorded(meta, fg.timesteps, images[:n])
    scores, _ = simulate(fg, x)
    float_acc = float(np.mean(scores.argmax(1) == labels[:n]))
    qg, _ = quantize(fg)
    rows = []
    for b in (int(v) for v in args.bits.split(",")):
        g = fewer_bits(qg, b)
        r = torch_ref.run(g, x)
        acc = float(np.mean(readout_scores(g, r.readouts).argmax(1) == labels[:n]))
        rows.append({"bits": b, "accuracy": acc})
        print(f"{b} bits: {acc * 100:.2f}%   (float {float_acc * 100:.2f}%)", flush=True)
    result = {"model": args.model, "samples": n, "float_accuracy": float_acc, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot([r["bits"] for r in rows], [100 * r["accuracy"] for r in rows], "o-",
                label="deployed integer model (torch_ref)")
        ax.axhline(100 * float_acc, ls="--", color="gray", label="float model")
        ax.set(xlabel="weight bits", ylabel=f"test accuracy (%), {n} samples",
               title=f"{meta.get('model', '')} on {meta.get('dataset', '')}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

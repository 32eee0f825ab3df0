"""Float model vs deployed integer model, on the same test samples, for one or more NIR files.

    python benchmarks/deploy_accuracy.py runs/*.nir --samples 1000 [--input-bitplanes]

Prints the float graph's accuracy (the exported model, simulated in float64), the deployed
integer model's accuracy (torch_ref; event_sim and Lava give the same records, see
targets.verify) and the fraction of spikes that quantization left unchanged.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--input-bitplanes", action="store_true")
    args = ap.parse_args()

    from convert.float_sim import simulate
    from convert.nir_import import import_nir
    from convert.quantize import quantize
    from core.datasets import load_dataset
    from core.encoding import encode_as_recorded
    from core.nir_ext import read_nir
    from targets import torch_ref
    from targets.base import readout_scores

    print(f"{'model':<32}{'samples':>8}{'float':>9}{'deployed':>10}{'spikes kept':>13}")
    for path in args.models:
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

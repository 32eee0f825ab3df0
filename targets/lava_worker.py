"""Run an integer graph on Lava inside the Lava environment and save the records.

    .venv-lava/bin/python -m targets.lava_worker graph.nir inputs.npy out.npz \\
        [--record-state] [--progress] [--chunk 100]

Used by :mod:`targets.lava` (main environment) to keep Lava in its own process. ``out.npz``
has ``spikes/<population>``, ``readouts/<readout>``, ``states/<population>/u|v`` (with
``--record-state``) and ``counters`` (a JSON string); it is written atomically.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m targets.lava_worker",
        description="Run a NIR graph (integer, or float: quantized on load) on Lava's "
        "bit-accurate Loihi models (Loihi2SimCfg, fixed_pt) and save the spike and readout "
        "records to an .npz file. Must run in the Lava environment (.venv-lava).",
    )
    ap.add_argument("graph", help="NIR file")
    ap.add_argument("inputs", help=".npy input batch [sample, timestep, *input_shape]")
    ap.add_argument("out", help=".npz file to write the records to")
    ap.add_argument("--record-state", action="store_true", help="also record u and v")
    ap.add_argument("--progress", action="store_true", help="progress on stderr")
    ap.add_argument("--chunk", type=int, default=100,
                    help="samples per Lava network (rebuilt per chunk; default 100)")
    args = ap.parse_args(argv)
    if args.chunk < 1:
        ap.error("--chunk must be at least 1")

    from convert import load_graph
    from targets import lava_target
    from targets.records import save_record

    lava_target.import_lava()  # before anything sets a multiprocessing context
    graph, _ = load_graph(args.graph)
    x = np.load(args.inputs, allow_pickle=False)
    result = lava_target.run(graph, x, chunk=args.chunk, record_state=args.record_state,
                             progress=args.progress)
    save_record(args.out, result)
    return 0


if __name__ == "__main__":
    from core.cli import run_cli

    sys.exit(run_cli("lava_worker", main))

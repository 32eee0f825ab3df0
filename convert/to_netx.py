"""``python -m convert.to_netx model.nir -o model.net``: write a sequential integer graph as a
lava-dl netx network file (HDF5) that ``lava.lib.dl.netx.hdf5.Network`` loads (docs/netx.md).

The format and its mapping are in :mod:`core.netx_io`; what netx cannot express exactly
(readouts, graded or bit-plane inputs, branches, weight exponents, other reset modes, max
pooling, ...) is refused in one line naming the node before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli import add_output_flags, check_writable, print_json, run_cli
from core.errors import UserError
from core.netx_io import write_netx


def default_output(model: str | Path) -> Path:
    """``model.nir`` -> ``model.net`` beside it."""
    p = Path(model)
    return p.with_suffix(".net")


def main(argv: list[str] | None = None) -> int:
    """Write the netx file; exit 2 with one line on bad input."""
    ap = argparse.ArgumentParser(
        prog="python -m convert.to_netx",
        description="Write an integer graph as a lava-dl netx network file (HDF5, slayer's "
        "layout: an input layer, then CUBA dense/conv layers) for lava-dl's "
        "netx.hdf5.Network. Only sequential graphs of binary spike input whose arithmetic "
        "netx reproduces exactly; anything else is refused in one line (docs/netx.md). A "
        "float NIR file is quantized first, as every target does.",
        epilog="example: python -m convert.to_netx model.loihi.nir -o model.net",
    )
    ap.add_argument("model", help="integer NIR file (from python -m convert.quantize), a float "
                    "NIR file (quantized on load) or a netx file")
    ap.add_argument("-o", "--output", default=None,
                    help="netx file to write (default: the model's name with .net, beside it)")
    ap.add_argument("--timesteps", type=int, default=None, help="timesteps, if not recorded")
    add_output_flags(ap)
    args = ap.parse_args(argv)
    out = Path(args.output) if args.output else default_output(args.model)
    if out.resolve() == Path(args.model).resolve():
        raise UserError(f"output {out} is the input file; give another name with -o")
    check_writable(out)
    from convert.loader import load_graph  # the conversion stage's one entry point

    graph, _ = load_graph(args.model, timesteps=args.timesteps)
    write_netx(graph, out)
    summary = {"output": str(out), "layers": len(graph.synapses),
               "populations": list(graph.populations), "timesteps": graph.timesteps,
               "bytes": out.stat().st_size}
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {out}: netx network, input {graph.input.shape}, "
              f"{len(graph.synapses)} CUBA layers ({', '.join(graph.populations)}), "
              f"{summary['bytes']} bytes; netx does not record T (run with --timesteps)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli("python -m convert.to_netx", main))

"""``python -m targets.report``: the chip report of a NIR model.

Example::

    python -m targets.report model.nir --samples 100 --plot report/
    python -m targets.report model.nir --static-only          # the resource map alone

Prints the Loihi 2 resource map (cores and chips, binding constraint per layer, what needs
neuron programs or custom processes), the energy and latency ESTIMATE per inference from a
measured event_sim run beside the GPU/CPU dense-MAC estimate, and NeuroBench's metrics (the
``neurobench`` package on the float model; ours on the deployed one). ``--json``: one JSON
object; ``--plot DIR``: resources.png and energy.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert.nir_import import import_nir
from convert.quantize import calibrate_option
from core.cli import check_writable, print_json, run_cli
from core.errors import UserError
from core.nir_ext import read_nir
from core.nir_io import is_integer_graph
from targets.cli import add_common_args, prepare, run_target, run_warnings, save_run_record
from targets.report import chip_report, format_report

PROG = "targets.report"


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments: every target command's (targets.cli) plus --plot,
    --static-only and --no-neurobench."""
    ap = argparse.ArgumentParser(
        prog="python -m targets.report",
        description="Chip report of a NIR model before booking chip time: the Loihi 2 "
        "resource map (neuro-cores and chips, binding constraint per layer, what needs neuron "
        "programs or custom processes), energy and latency per inference ESTIMATED from the "
        "event simulator's measured activity and published per-operation constants, beside "
        "the MAC-based GPU/CPU estimate of the float model, and NeuroBench's metrics "
        "(footprint, sparsities, synaptic operations). Limits, constants and their sources: "
        "docs/loihi2.md.",
        epilog="example: python -m targets.report model.nir --samples 100 --plot report/",
    )
    add_common_args(ap, plot_help="resources.png (cores per layer, binding constraint) and "
                    "energy.png (estimated energy per layer)")
    ap.add_argument("--static-only", action="store_true",
                    help="the resource map alone: no samples are run, no energy estimate")
    ap.add_argument("--checkpoint", default=None, metavar="ckpt.pt",
                    help="also run NeuroBench's metrics on this trained torch model (the "
                    "checkpoint the NIR file was exported from)")
    ap.add_argument("--no-neurobench", action="store_true",
                    help="skip NeuroBench's metrics on the float model (they run the float "
                    "simulation once more)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit code (0; 1 with --strict and a warning).

    Raises:
        NeurodeployError: bad input (model, inputs, options); ``run_cli`` prints one line.
    """
    args = build_parser().parse_args(argv)
    if args.plot is not None:
        check_writable(f"{args.plot.rstrip('/')}/resources.png", "--plot")
    if args.static_only:
        for flag, given in (("--record", args.record), ("--input", args.input),
                            ("--labels", args.labels), ("--samples", args.samples),
                            ("--checkpoint", args.checkpoint)):
            if given is not None:
                raise UserError(f"{flag} needs a measured run: drop --static-only")
        from convert import load_graph

        graph, qrep = load_graph(args.model, dt=args.dt, timesteps=args.timesteps,
                                 reset=getattr(args, "reset", None),
                                 input_bitplanes=args.input_bitplanes,
                                 **calibrate_option(args))
        rep = chip_report(graph)
        warnings = list(getattr(qrep, "warnings", None) or [])
        prep = None
    else:
        prep = prepare(args)
        graph = prep.graph
        # event_sim as every command runs it (--workers/--cluster shards, long runs stream)
        result = run_target(prep, "event_sim")
        save_run_record(prep, result)
        nir_graph = read_nir(args.model)
        fg = None
        if not args.no_neurobench and not is_integer_graph(nir_graph):
            fg = import_nir(nir_graph, dt=args.dt, timesteps=graph.timesteps,
                            input_timesteps=prep.inputs.shape[1],
                            reset=getattr(args, "reset", None))
        rep = chip_report(graph, result.counters, len(prep.inputs), float_graph=fg,
                          inputs=prep.inputs, neurobench=not args.no_neurobench,
                          checkpoint=args.checkpoint)
        warnings = run_warnings(prep, result)
    warnings += rep.warnings
    plots = []
    if args.plot is not None:
        from targets.report.plots import write_plots

        plots = [str(p) for p in write_plots(rep, args.plot, title=Path(args.model).stem)]
    if args.json:
        print_json({"report": rep, "plots": plots, "warnings": warnings,
                    "source": None if prep is None else prep.source_desc})
    else:
        if prep is not None:
            print(f"targets.report: {len(prep.inputs)} samples from {prep.source_desc}")
        print(format_report(rep))
        for p in plots:
            print(f"plot written to {p}")
    for w in warnings:
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    if args.strict and warnings:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))

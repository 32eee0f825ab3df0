"""Run a NIR model on simulated Loihi (Lava 0.10, bit-accurate fixed-point models).

    python targets/lava_sim.py model.nir --samples 200

Runs in the main environment: the graph is loaded (float graphs quantized) and the inputs
prepared here, then :func:`targets.loihi.run` ships the integer graph to the Lava worker in
``.venv-lava`` (or ``$NEURODEPLOY_LAVA_PYTHON``). Started with the Lava environment's Python,
it runs Lava in-process instead. Prints accuracy, spike counts and Lava's throughput;
``--record out.npz`` saves the records.
"""

from __future__ import annotations

import argparse
import sys
import time

from core.cli import run_cli
from targets import loihi
from targets.cli import SummaryRow, add_common_args, prepare, report_run, run_target
from targets.report import chip_section

PROG = "lava_sim"


def build_parser() -> argparse.ArgumentParser:
    """The script's arguments: every target script's (targets.cli) plus --chunk and
    --record-state."""
    ap = argparse.ArgumentParser(
        prog="python targets/lava_sim.py",
        description="Run a NIR model (float: quantized on load, or integer) on Lava's "
        "bit-accurate Loihi process models (Loihi2SimCfg, fixed_pt): LIFReset neurons, Dense "
        "and Conv synapses, samples pipelined back to back. Prints accuracy, spikes per "
        "population and Lava steps/s. Lava itself runs in the Lava environment (.venv-lava), "
        "in a subprocess when started from another Python.",
        epilog="example: python targets/lava_sim.py model.nir --samples 200 --record lava.npz",
    )
    add_common_args(ap)
    ap.add_argument("--chunk", type=int, default=100,
                    help="samples per Lava network; the network is rebuilt for every chunk to "
                    "bound memory (default 100)")
    ap.add_argument("--record-state", action="store_true",
                    help="also record u and v of every population (saved with --record)")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Load, run on Lava, print the summary; returns the exit code.

    Raises:
        UserError / GraphError / EnvironmentMissingError: bad arguments, an unusable graph,
            or no Lava environment (``run_cli`` prints them as one line).
    """
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.chunk < 1:
        ap.error("--chunk must be at least 1")
    if not loihi.lava_available():
        loihi.lava_python()  # no Lava environment: say so before loading anything
    prep = prepare(args)
    t0 = time.perf_counter()
    result = run_target(prep, "lava", chunk=args.chunk, record_state=args.record_state)
    wall = time.perf_counter() - t0
    c = result.counters
    steps = SummaryRow(
        "lava", {k: c[k] for k in ("lava_steps", "lava_steps_per_s", "lava_runs",
                                   "lava_build_s", "lava_compile_s", "lava_run_s")},
        f"{'lava steps':<16}{c['lava_steps']:>21}  ({c['lava_steps_per_s']:.0f} steps/s "
        f"while stepping; {c['lava_runs']} network(s), build+compile "
        f"{c['lava_build_s'] + c['lava_compile_s']:.1f}s)")
    # the chip report's short form: cores, chips, binding constraints, energy/latency estimate
    # (targets.report; the activity is event_sim's on the same inputs)
    sec = chip_section(prep.graph, prep.inputs)
    return report_run("lava", prep, result, wall, [steps, SummaryRow("chip_report", sec,
                                                                     sec["text"])])


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))

"""``python -m targets.event_sim``: run a NIR model on the event-driven simulator.

Example::

    python -m targets.event_sim model.nir --samples 10000 --lanes 16

Prints what every target prints (targets/cli.py: spikes per population, synaptic events, wall
time, accuracy; or one JSON object with ``--json``) with two rows of its own: the event rate
(``events_per_s``) and the peak ``|u|``, ``|v|`` against the 24-bit limit (``max_abs``).
"""

from __future__ import annotations

import argparse
import sys
import time

from core import fixedpoint as fx
from core.cli import run_cli
from targets.cli import SummaryRow, add_common_args, prepare, report_run, run_target
from targets.event_sim import kernels


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments: the common target flags, ``--lanes``, ``--record-state``."""
    ap = argparse.ArgumentParser(
        prog="python -m targets.event_sim",
        description="Run a NIR model on neurodeploy's event-driven simulator of the deployed "
        "Loihi chip (1 + delay steps per synapse, per-sample resets, fixed-point LIF; work "
        "proportional to synaptic events). Prints accuracy, spike counts and synaptic "
        "events (ACs on spikes, MACs on graded inputs).",
    )
    add_common_args(ap)
    ap.add_argument("--lanes", type=int, default=1,
                    help="independent copies of the chip timeline run side by side, each on a "
                    "contiguous block of samples (same records; faster for many samples; "
                    "default 1: the single deployed timeline)")
    ap.add_argument("--record-state", action="store_true",
                    help="also save u and v of every population in --record")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command with ``argv`` (default: sys.argv); returns the exit code.

    Raises:
        NeurodeployError: bad input (model, inputs, options); :func:`core.cli.run_cli` turns
            it into one line on stderr and exit code 2.
        SystemExit: bad arguments (argparse, code 2).
    """
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.lanes < 1:
        ap.error("--lanes must be at least 1")
    prep = prepare(args)
    if not kernels.COMPILED:
        print("event_sim: numba is not installed, the event loop runs as plain Python "
              "(identical results, much slower): pip install numba", file=sys.stderr)
    t0 = time.perf_counter()
    result = run_target(prep, "event_sim", record_state=args.record_state, lanes=args.lanes)
    wall = time.perf_counter() - t0
    c = result.counters
    rate = c["synaptic_events"] / max(wall, 1e-9)
    events = SummaryRow(
        "events_per_s", rate,
        f"{'events/s':<16}{rate:>21.3e}  ({c['steps']} steps x {c['lanes']} lane(s))")
    peak = max(1, c["max_abs_u"], c["max_abs_v"])
    state = SummaryRow(
        "max_abs", {"u": c["max_abs_u"], "v": c["max_abs_v"], "limit": fx.V_LIMIT},
        f"{'max |u|, |v|':<16}{c['max_abs_u']:>10} {c['max_abs_v']:>10}  "
        f"(24-bit limit {fx.V_LIMIT}: headroom x{fx.V_LIMIT / peak:.0f})")
    return report_run("event_sim", prep, result, wall, [events, state])

if __name__ == "__main__":
    sys.exit(run_cli("event_sim", main))

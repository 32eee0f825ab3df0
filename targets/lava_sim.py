"""Run a NIR model on simulated Loihi (Lava 0.10, bit-accurate fixed-point models).

    python targets/lava_sim.py model.nir --samples 200

Works from any Python: when Lava is not importable here, the script re-executes itself with
the Lava environment's interpreter (<repo>/.venv-lava/bin/python, or $NEURODEPLOY_LAVA_PYTHON).
Prints accuracy, spike counts and Lava's throughput; ``--record out.npz`` saves the records.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
PROG = "lava_sim"
REEXEC_FLAG = "NEURODEPLOY_LAVA_REEXEC"


def _fix_sys_path() -> None:
    """As a script, sys.path[0] is targets/, where lava.py would shadow the real ``lava``
    package: drop it and put the repository root first instead."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def build_parser() -> argparse.ArgumentParser:
    from targets.cli import add_common_args

    ap = argparse.ArgumentParser(
        prog="python targets/lava_sim.py",
        description="Run a NIR model (float: quantized on load, or integer) on Lava's "
        "bit-accurate Loihi process models (Loihi2SimCfg, fixed_pt): LIFReset neurons, Dense "
        "and Conv synapses, samples pipelined back to back. Prints accuracy, spikes per "
        "population and Lava steps/s. Runs itself in the Lava environment (.venv-lava) when "
        "started from another Python.",
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
    from targets import lava_target
    from targets.cli import prepare, report_run

    ap = build_parser()
    args = ap.parse_args(argv)
    if args.chunk < 1:
        ap.error("--chunk must be at least 1")
    lava_target.import_lava()  # before anything sets a multiprocessing context
    prep = prepare(args)
    t0 = time.perf_counter()
    result = lava_target.run(prep.graph, prep.inputs, chunk=args.chunk,
                             record_state=args.record_state, progress=not args.no_progress)
    wall = time.perf_counter() - t0
    rc = report_run("lava", prep, result, wall)
    c = result.counters
    print(f"{'lava steps':<16}{c['lava_steps']:>21}  ({c['lava_steps_per_s']:.0f} steps/s "
          f"while stepping; {c['lava_runs']} network(s), build+compile "
          f"{c['lava_build_s'] + c['lava_compile_s']:.1f}s)")
    return rc


def _reexec_in_lava_env(argv: list[str]) -> int:
    """Not inside the Lava env: validate the arguments here, then become the Lava python."""
    from targets.lava import LavaEnvError, lava_python, worker_env

    build_parser().parse_args(argv)  # --help and usage errors need no Lava
    if os.environ.get(REEXEC_FLAG):
        print(f"{PROG}: {sys.executable} cannot import Lava (lava-nc 0.10.0); run `make env`",
              file=sys.stderr)
        return 2
    try:
        py = lava_python()
    except LavaEnvError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    env = worker_env()
    env[REEXEC_FLAG] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(str(py), [str(py), str(Path(__file__).resolve()), *argv], env)
    return 2  # not reached


if __name__ == "__main__":
    _fix_sys_path()
    from core.cli import run_cli
    from targets.lava import lava_available

    if not lava_available():
        sys.exit(run_cli(PROG, _reexec_in_lava_env, sys.argv[1:]))
    sys.exit(run_cli(PROG, main))

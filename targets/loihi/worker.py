"""Run an integer graph on Lava inside the Lava environment and save the records.

    .venv-lava/bin/python -m targets.loihi.worker graph.nir inputs.npy out.npz \\
        [--record-state] [--progress] [--chunk 100]

Started by :func:`targets.loihi.run` from the main environment, to keep Lava in its own
process. ``graph.nir`` must be an integer graph (``core.nir_io.write_qgraph``): quantizing is
the main environment's job. ``out.npz`` has ``spikes/<population>``, ``readouts/<readout>``,
``states/<population>/u|v`` (with ``--record-state``) and ``counters`` (targets.records);
it is written atomically. With ``--progress`` each finished sample prints one line
``<PROGRESS_PREFIX> <samples>`` on stdout, which the caller turns into its progress bar.

``--watch-parent`` (always given by :func:`targets.loihi.run_worker`, which starts us in a
process group of our own): SIGINT/SIGTERM/SIGHUP kill us and every process Lava forks at
once (their default action; a Python handler inherited by 200 Lava processes would print 200
tracebacks), and a watchdog thread ends the whole group when our parent goes away (our stdin
pipe reaches EOF, or we are re-parented), so that no Lava process outlives the command that
started it.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading

import numpy as np

from core.cli import run_cli
from core.errors import GraphError
from core.nir_ext import read_nir
from core.nir_io import from_nir, is_integer_graph
from targets.loihi import PROGRESS_PREFIX, WORKER_PROG
from targets.loihi.simulate import simulate
from targets.records import save_record


def main(argv: list[str] | None = None) -> int:
    """The worker's command line (see the module docstring); returns the exit code."""
    ap = argparse.ArgumentParser(
        prog="python -m targets.loihi.worker",
        description="Run an integer NIR graph on Lava's bit-accurate Loihi models "
        "(Loihi2SimCfg, fixed_pt) and save the spike and readout records to an .npz file. "
        "Runs in the Lava environment (.venv-lava); targets.loihi.run starts it.",
    )
    ap.add_argument("graph", help="integer NIR file (core.nir_io.write_qgraph)")
    ap.add_argument("inputs", help=".npy input batch [sample, timestep, *input_shape]")
    ap.add_argument("out", help=".npz file to write the records to")
    ap.add_argument("--record-state", action="store_true", help="also record u and v")
    ap.add_argument("--progress", action="store_true",
                    help=f"print '{PROGRESS_PREFIX} <samples>' on stdout after every chunk")
    ap.add_argument("--chunk", type=int, default=100,
                    help="samples per Lava network (rebuilt per chunk; default 100)")
    ap.add_argument("--watch-parent", action="store_true",
                    help="end this process group when the parent process goes away (stdin "
                    "pipe closed); default signal actions (set by targets.loihi.run_worker)")
    args = ap.parse_args(argv)
    if args.chunk < 1:
        ap.error("--chunk must be at least 1")
    if args.watch_parent:
        watch_parent()

    nir_graph = read_nir(args.graph)
    if not is_integer_graph(nir_graph):
        raise GraphError(f"{args.graph}: not an integer graph; the Lava worker runs only "
                         "graphs written by core.nir_io.write_qgraph (quantize first)")
    graph = from_nir(nir_graph)
    x = np.load(args.inputs, allow_pickle=False)
    result = simulate(graph, x, chunk=args.chunk, record_state=args.record_state,
                      on_samples=_report_progress if args.progress else None)
    save_record(args.out, result)
    return 0


def watch_parent(poll_s: float = 1.0) -> None:
    """Make this process the leader of its own group, give SIGINT/SIGTERM/SIGHUP their default
    action (here and in every process Lava forks from us), and start a daemon thread that
    sends SIGTERM to the whole group once the parent is gone: stdin (a pipe from the parent)
    reaches EOF, or the parent id changes (checked every ``poll_s`` seconds)."""
    if os.getpgrp() != os.getpid():
        os.setpgid(0, 0)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    parent = os.getppid()

    def watch() -> None:
        while True:
            try:
                ready, _, _ = select.select([sys.stdin], [], [], poll_s)
                gone = bool(ready) and not os.read(sys.stdin.fileno(), 4096)
            except (OSError, ValueError):  # stdin closed or not selectable: poll the parent
                gone = False
                threading.Event().wait(poll_s)
            if gone or os.getppid() != parent:
                # Python's resource tracker ignores SIGTERM: it outlives the others and
                # unlinks the shared memory of Lava's runtime before it exits.
                os.killpg(os.getpgrp(), signal.SIGTERM)
                os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _report_progress(samples: int) -> None:
    print(f"{PROGRESS_PREFIX} {samples}", flush=True)


if __name__ == "__main__":
    sys.exit(run_cli(WORKER_PROG, main))

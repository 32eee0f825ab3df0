"""The Lava target: an integer graph on Lava 0.10's bit-accurate Loihi models (docs/lava.md).

:func:`run` is the target's entry point, callable from any environment. Lava 0.10 runs only on
Python 3.10 and lives in its own environment (``.venv-lava``); from the main environment
:func:`run` writes the integer graph and the inputs to a temporary folder, runs
``python -m targets.loihi.worker`` with the Lava environment's interpreter, streams its output
and loads the records back. Inside the Lava environment it runs the network in-process. Either
way the result is the same :class:`~targets.base.RunResult` as every other target's.

The modules of this package:

- ``layout``: our arrays <-> Lava's layouts (plain numpy, no Lava);
- ``process`` / ``models``: our Lava processes and their process models, plus the recording
  models (Lava's own split of interface and behaviour);
- ``network``: one Lava network per chunk of samples, one constructor per synapse kind;
- ``simulate``: the chunked run loop;
- ``worker``: the command the main environment runs in the Lava environment.

This module never imports Lava (the main environment has none); all but ``layout`` and
``worker`` need it and are imported only in the Lava environment.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.cli import EXIT_USAGE, progress_bar
from core.errors import EnvironmentMissingError, GraphError, UserError
from core.graph import QGraph, check_lava_limits
from core.nir_io import write_qgraph
from targets.base import RunResult, check_inputs
from targets.records import load_record

__all__ = ["run", "lava_python", "lava_available", "worker_env", "LavaEnvError", "ENV_VAR",
           "REPO_ROOT", "run_worker", "stop_group", "group_members"]

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "NEURODEPLOY_LAVA_PYTHON"
# A worker output line that reports progress instead of text: "<PROGRESS_PREFIX> <samples>".
PROGRESS_PREFIX = "@neurodeploy-lava-progress"
WORKER_PROG = "lava_worker"  # the worker's name in its one-line errors (core.cli.run_cli)

LavaEnvError = EnvironmentMissingError  # the name this target's errors had before core.errors


def lava_python() -> Path:
    """The Lava environment's interpreter: ``$NEURODEPLOY_LAVA_PYTHON``, else
    ``<repo>/.venv-lava/bin/python``.

    Raises:
        EnvironmentMissingError: that file does not exist (the message says to run
            ``make env``).
    """
    override = os.environ.get(ENV_VAR)
    path = Path(override) if override else REPO_ROOT / ".venv-lava" / "bin" / "python"
    if not path.exists():
        where = f"${ENV_VAR}={override}" if override else str(path)
        raise EnvironmentMissingError(
            f"the Lava environment's Python was not found at {where}: run `make env` in "
            f"{REPO_ROOT} to create .venv-lava (Python 3.10, lava-nc 0.10.0), or point "
            f"{ENV_VAR} at a Python that has Lava installed"
        )
    return path


def lava_available() -> bool:
    """True when this interpreter can import Lava (we are inside the Lava environment)."""
    try:
        return importlib.util.find_spec("lava.magma.core") is not None
    except (ImportError, ValueError, AttributeError):
        return False


def worker_env() -> dict[str, str]:
    """The environment for a Lava-side subprocess: ours, with the repository on PYTHONPATH
    (the worker imports core and targets from this checkout) and no PYTHONHOME (which
    would point the Python 3.10 interpreter at the main environment's 3.11 library)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.pop("PYTHONHOME", None)
    return env


def run(
    graph: QGraph,
    inputs: np.ndarray,
    *,
    record_state: bool = False,
    progress: bool = False,
    chunk: int = 100,
    on_samples: Callable[[int], None] | None = None,
) -> RunResult:
    """Run ``inputs`` [N, T, *input_shape] on Lava (Loihi2SimCfg, fixed_pt).

    Records as in targets/base.py: spikes bool [N, T, size], readouts int64 [N, T, size]
    (without the readout bias), with ``record_state`` u and v int64 [N, T, size] per
    population. ``chunk`` samples share one Lava network (rebuilt per chunk to bound memory);
    ``progress`` draws a bar on a terminal that moves as samples complete (Lava then runs
    in pieces of about a sample: identical records); ``on_samples(k)``, instead of that bar,
    is told of every k samples that complete (a caller's own bar). Counters: see
    :func:`targets.loihi.simulate.simulate`.

    Raises:
        UserError: bad inputs or ``chunk`` < 1 (checked before Lava starts).
        GraphError: an invalid graph, or one beyond Lava's limits
            (``core.graph.check_lava_limits``; checked before Lava starts).
        EnvironmentMissingError: the Lava environment is missing, or the worker failed (the
            message ends with the worker's last line).
    """
    # Everything the Lava side would refuse, refused here before Lava starts (same messages).
    graph.validate()
    check_lava_limits(graph)
    check_inputs(graph, inputs)
    if chunk < 1:
        raise UserError(f"chunk must be at least 1; got {chunk}")
    x = np.asarray(inputs)  # the raw batch: the Lava side validates and expands it itself
    if lava_available():
        # Lava exists only in the Lava environment, hence the import here. Importing it
        # before the bar also matters: Lava sets multiprocessing's start method at import,
        # which fails once tqdm's lock has created the default context.
        from targets.loihi.simulate import simulate

        if on_samples is not None:
            return simulate(graph, x, chunk=chunk, record_state=record_state,
                            on_samples=on_samples)
        with progress_bar(len(x), desc="lava", unit="sample", enabled=progress) as bar:
            return simulate(graph, x, chunk=chunk, record_state=record_state,
                            on_samples=bar.update if progress else None)

    py = lava_python()
    with tempfile.TemporaryDirectory(prefix="neurodeploy-lava-") as tmp:
        gpath, xpath, opath = (Path(tmp) / n for n in ("graph.nir", "inputs.npy", "out.npz"))
        write_qgraph(gpath, graph)
        np.save(xpath, x)
        cmd = [str(py), "-m", "targets.loihi.worker", str(gpath), str(xpath), str(opath),
               "--chunk", str(chunk)]
        if record_state:
            cmd.append("--record-state")
        if progress or on_samples is not None:
            cmd.append("--progress")
        if on_samples is not None:
            tail = run_worker(cmd, on_samples)
        else:
            with progress_bar(len(x), desc="lava", unit="sample", enabled=progress) as bar:
                tail = run_worker(cmd, bar.update)
        if not opath.exists():
            raise EnvironmentMissingError("the Lava worker wrote no result:\n" + tail)
        result = load_record(opath)
    # The interface's exact dtypes (the .npz keeps them; be explicit all the same).
    return replace(
        result,
        spikes={k: v.astype(np.int64 if graph.populations[k].graded else bool)
                for k, v in result.spikes.items()},
        readouts={k: v.astype(np.int64) for k, v in result.readouts.items()},
        states={k: (u.astype(np.int64), v.astype(np.int64))
                for k, (u, v) in result.states.items()},
    )


def run_worker(cmd: list[str], on_samples: Callable[[int], None]) -> str:
    """Run the worker command ``cmd`` (``[lava python, "-m", "targets.loihi.worker", graph,
    inputs, out, ...]``, as :func:`run` builds it); copy its output (stdout and stderr) to our
    stderr line by line as it comes, except progress lines, which go to ``on_samples``.
    Returns the output's tail.

    The worker runs in a session (and process group) of its own, with ``--watch-parent``: a
    Ctrl-C in the terminal reaches only us (not Lava's hundreds of runtime processes, each
    of which would print a traceback), and on any exception here (Ctrl-C, SIGTERM through
    :func:`core.cli.run_cli`, a failing write) :func:`stop_group` ends the worker and every
    process Lava started; if we die without cleaning up (SIGKILL), the worker sees its stdin
    pipe close and ends its group itself.

    Raises:
        GraphError: the worker refused the graph (exit code 2, its one-line message).
        EnvironmentMissingError: the worker cannot start or fails otherwise (the message ends
            with its last output line; its whole output is on stderr already).
    """
    cmd = [*cmd, "--watch-parent"]
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=worker_env(), cwd=str(REPO_ROOT),
                                start_new_session=True)
    except OSError as e:
        raise EnvironmentMissingError(f"cannot start the Lava worker {cmd[0]}: {e}") from None
    assert proc.stdout is not None
    tail: deque[str] = deque(maxlen=64)
    try:
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace")
            if line.startswith(PROGRESS_PREFIX):
                on_samples(int(line.split()[1]))
                continue
            tail.append(line)
            try:
                sys.stderr.write(line)
                sys.stderr.flush()
            except (OSError, ValueError):  # our stderr is closed: keep the worker running
                pass
        rc = proc.wait()
    except BaseException:  # Ctrl-C, SIGTERM or a failing write: never leave Lava behind
        stop_group(proc)
        raise
    finally:
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()
    text = "".join(tail)[-4000:]
    if rc == 0:
        return text
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "(no output)"
    if rc == EXIT_USAGE:  # the worker's run_cli: a graph Lava cannot run, said in one line
        raise GraphError(last.removeprefix(f"{WORKER_PROG}: "))
    raise EnvironmentMissingError(f"the Lava worker failed (exit code {rc}): {last}")


# Seconds a stopped worker's process group gets to end after SIGTERM before SIGKILL: Lava's
# processes die at once (SIGTERM's default action), Python's resource tracker (which ignores
# SIGTERM) then unlinks the shared memory Lava's runtime left and exits; measured well under
# a second for 200 processes on a loaded 2-core machine.
STOP_GRACE_S = 5.0


def stop_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """End ``proc`` (started with ``start_new_session=True``) and every process in its group.

    SIGTERM to the group, then wait up to ``grace_s`` seconds for the group to empty (the
    resource tracker cleans Lava's shared memory on its way out), then SIGKILL whatever is
    left. Signals that arrive meanwhile (a second Ctrl-C) are held until the group is gone, so
    that an impatient user cannot leave it half-stopped. Never raises for processes that are
    already gone.
    """
    pgid = proc.pid
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if group_members(pgid) or proc.poll() is None:
            _signal_group(pgid, signal.SIGKILL)
        proc.wait()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid`` (Linux: from /proc; elsewhere
    ``[pgid]`` while the group exists)."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    out = []
    for d in proc_dir.iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # fields after the ")" closing the command name: state, ppid, pgrp, ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            out.append(int(d.name))
    return out

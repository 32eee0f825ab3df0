"""The Lava target, callable from the main environment (no Lava import here).

Lava 0.10 runs only on Python 3.10 and lives in its own environment (``.venv-lava``). This
module writes the integer graph and the inputs to a temporary directory, runs
``python -m targets.lava_worker`` with the Lava environment's interpreter, streams its stderr
(progress, warnings) and loads the records back. Inside the Lava environment it calls
:mod:`targets.lava_target` directly. Either way the result is the same :class:`RunResult`
as every other target's (see targets/base.py).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from collections import deque
from pathlib import Path

import numpy as np

from core.graph import QGraph
from targets.base import RunResult, check_inputs

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "NEURODEPLOY_LAVA_PYTHON"


class LavaEnvError(RuntimeError):
    """The Lava environment is missing or broken."""


def lava_python() -> Path:
    """The Lava environment's interpreter: $NEURODEPLOY_LAVA_PYTHON, else <repo>/.venv-lava."""
    override = os.environ.get(ENV_VAR)
    path = Path(override) if override else REPO_ROOT / ".venv-lava" / "bin" / "python"
    if not path.exists():
        where = f"${ENV_VAR}={override}" if override else str(path)
        raise LavaEnvError(
            f"the Lava environment's Python was not found at {where}: run `make env` in "
            f"{REPO_ROOT} to create .venv-lava (Python 3.10, lava-nc 0.10.0), or point "
            f"{ENV_VAR} at a Python that has Lava installed"
        )
    return path


def lava_available() -> bool:
    """True when the current interpreter can import Lava (we are inside the Lava env)."""
    try:
        return importlib.util.find_spec("lava.magma.core") is not None
    except (ImportError, ValueError, AttributeError):
        return False


def worker_env() -> dict[str, str]:
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
) -> RunResult:
    """Run ``inputs`` [N, T, *input_shape] on Lava (Loihi2SimCfg, fixed_pt)."""
    check_inputs(graph, inputs)  # fail here, with the same message, before starting Lava
    x = np.asarray(inputs)  # the raw batch: the Lava side validates and expands it itself
    if lava_available():
        from targets import lava_target

        return lava_target.run(graph, x, chunk=chunk, record_state=record_state,
                               progress=progress)

    from core.nir_io import write_qgraph
    from targets.records import load_record

    py = lava_python()
    with tempfile.TemporaryDirectory(prefix="neurodeploy-lava-") as tmp:
        gpath, xpath, opath = (Path(tmp) / n for n in ("graph.nir", "inputs.npy", "out.npz"))
        write_qgraph(gpath, graph)
        np.save(xpath, x)
        cmd = [str(py), "-m", "targets.lava_worker", str(gpath), str(xpath), str(opath),
               "--chunk", str(chunk)]
        if record_state:
            cmd.append("--record-state")
        if progress:
            cmd.append("--progress")
        tail = _run_streaming(cmd)
        if not opath.exists():
            raise LavaEnvError("the Lava worker wrote no result:\n" + tail)
        result = load_record(opath)
    # Restore the exact dtypes of the interface (the .npz keeps them, but be explicit).
    result.spikes = {k: v.astype(bool) for k, v in result.spikes.items()}
    result.readouts = {k: v.astype(np.int64) for k, v in result.readouts.items()}
    result.states = {k: (u.astype(np.int64), v.astype(np.int64))
                     for k, (u, v) in result.states.items()}
    return result


def _run_streaming(cmd: list[str]) -> str:
    """Run the worker, copying its output to our stderr as it comes; raise on failure."""
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                env=worker_env(), cwd=str(REPO_ROOT))
    except OSError as e:
        raise LavaEnvError(f"cannot start the Lava worker {cmd[0]}: {e}") from None
    assert proc.stdout is not None
    tail: deque[bytes] = deque(maxlen=64)
    try:
        while True:
            data = proc.stdout.read1(4096)
            if not data:
                break
            tail.append(data)
            try:
                sys.stderr.write(data.decode(errors="replace"))
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    text = b"".join(tail).decode(errors="replace")[-4000:]
    if rc != 0:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else "(no output)"
        raise LavaEnvError(f"the Lava worker failed (exit code {rc}): {last}")
    return text

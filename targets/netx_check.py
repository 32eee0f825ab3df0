"""Run a netx network file with lava-dl's own ``netx.hdf5.Network`` on Lava and return its
spikes as our records, to compare with our targets (the export's real check; docs/netx.md).

The Lava side is ``targets/loihi/netx_lava.py``, run by the Lava environment's interpreter
(``targets.loihi.lava_python``) with lava-dl 0.6.0 installed there ``--no-deps``.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np

from core.errors import EnvironmentMissingError, GraphError
from core.graph import QGraph
from targets.base import check_inputs, unpipeline
from targets.loihi import lava_python

RUNNER = Path(__file__).resolve().parent / "loihi" / "netx_lava.py"


def netx_available() -> bool:
    """Whether the Lava environment has lava-dl's netx (lava-dl installed ``--no-deps``)."""
    try:
        py = lava_python()
    except EnvironmentMissingError:
        return False
    probe = "import importlib.util as u; raise SystemExit(u.find_spec('lava.lib.dl') is None)"
    return subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0


def run_netx(graph: QGraph, net_file: str | Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Spikes of ``net_file`` as lava-dl's netx runs it on Lava, per population of ``graph``
    (the graph :func:`core.netx_io.read_netx` reads from that file): bool [N, T, size].

    Raises:
        EnvironmentMissingError: no Lava environment, or no lava-dl in it.
        GraphError: the graph is not one chain (netx's blocks map onto its populations in
            order), or the netx run failed (its last error line).
        UserError: bad inputs (:func:`targets.base.check_inputs`).
    """
    if not netx_available():
        raise EnvironmentMissingError(
            "lava-dl is not installed in the Lava environment; run `.venv-lava/bin/pip "
            "install --no-deps lava-dl==0.6.0` (docs/netx.md)")
    x = check_inputs(graph, inputs)
    n, t = x.shape[0], graph.timesteps
    lat = graph.latency()
    pops = list(graph.populations)
    with tempfile.TemporaryDirectory(prefix="neurodeploy-netx-") as tmp:
        inp, out = Path(tmp) / "x.npy", Path(tmp) / "out.npz"
        np.save(inp, x.reshape(n, t, *graph.input.shape))
        proc = subprocess.run(
            [str(lava_python()), str(RUNNER), str(net_file), str(inp),
             ",".join(str(lat[p]) for p in pops), str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise GraphError(f"netx run of {net_file} failed: {last}")
        raw = np.load(out)
        if len(raw.files) != len(pops):
            raise GraphError(f"netx built {len(raw.files)} blocks for {len(pops)} populations")
        return {p: unpipeline(raw[f"layer{j}"], lat[p], n, t) != 0 for j, p in enumerate(pops)}

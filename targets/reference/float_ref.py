"""Our own float simulation of a NIR graph: ``convert.float_sim`` on the imported float graph.

The graph is imported exactly as the deployed one is (``convert.nir_import.import_nir`` with the
same ``dt`` and timesteps) and simulated in float64 before quantization: comparing it with the
chip measures what quantization alone changes. numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convert.float_sim import simulate as float_simulate
from convert.nir_import import import_nir
from core.fixedpoint import RESET_MODES
from targets.reference import rules
from targets.reference._common import load, output_node

NAME = "float"
OPTIONS: dict[str, tuple[tuple[Any, ...], str]] = {
    "reset": ((*RESET_MODES, "none"), "every population's reset mode (default: the deployed "
              "graph's, i.e. --reset or what the file records)"),
}


def float_graph(graph: Any, dt: float | None, timesteps: int, reset: str | None = None) -> Any:
    """The float graph (``convert.float_graph.FGraph``) the deployed graph is quantized from
    (``reset``: the reset mode it was imported with, ``--reset``; None: what the file says).

    Raises:
        GraphError: the graph cannot be read or imported (as for deployment).
    """
    return import_nir(load(graph), dt=dt, timesteps=timesteps, reset=reset)


def simulate(graph: Any, inputs: np.ndarray, dt: float | None = None, *,
             membranes: dict[str, np.ndarray] | None = None, notes: list[str] | None = None,
             thresholds: dict[str, np.ndarray] | None = None,
             input_scale: float = 1.0, reset: str | None = None) -> dict[str, np.ndarray]:
    """Spikes ``[N, T, size]`` (0/1, int64) of every population of the imported float graph on
    ``inputs`` ``[N, T, *input_shape]`` (integers as encoded: the float graph folds the input
    scale in, so ``input_scale`` is not used), and the class scores summed over time as
    ``[N, 1, classes]`` under the Output node's name. ``membranes``: filled with each
    population's voltage after each step (float graph units); ``thresholds``: with each
    population's threshold in the same units. ``reset``: every population's reset mode
    (``core.fixedpoint.RESET_MODES``; None: what the file records, else zero).

    Raises:
        GraphError: the graph cannot be read or imported.
    """
    fg = float_graph(graph, dt, inputs.shape[1], reset)
    scores, spikes = float_simulate(fg, inputs)
    res = {k: s.astype(np.int64) for k, s in spikes.items()}
    res[output_node(load(graph))] = scores[:, None, :]
    if membranes is not None:
        membranes.update(rules.simulate(fg, inputs)[1])
    if thresholds is not None:
        thresholds.update({k: np.array([p.threshold]) for k, p in fg.populations.items()})
    return res

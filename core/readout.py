"""Class scores and predictions from a run's readout records: the one rule every target, the
verifier and chip-exact training use, so an accuracy is the same number wherever it is taken.

numpy only (the Lava environment imports it too).
"""

from __future__ import annotations

import numpy as np

from core import fixedpoint as fx
from core.errors import UserError
from core.graph import QGraph

__all__ = ["predictions", "readout_scores"]


def readout_scores(graph: QGraph, readouts: dict[str, np.ndarray]) -> np.ndarray:
    """Class scores: the single readout summed over time plus its per-step bias; for a leaky
    readout (``dv > 0``, a NIR ``LI``) its membrane at the last step (``>> 6``, so that
    ``dv = 0`` gives the sum exactly; :func:`core.fixedpoint.readout_membrane`).

    ``readouts``: readout name -> int64 [N, T, size] currents (bias not included). Returns
    int64 [N, size].

    Raises:
        UserError: the graph has no readout, or more than one.
    """
    if len(graph.readouts) != 1:
        raise UserError(f"classification needs one readout, graph has {len(graph.readouts)}")
    (name, r), = graph.readouts.items()
    if r.dv:
        v = fx.readout_membrane(np.asarray(readouts[name], dtype=np.int64), r.bias, r.dv)
        return v[:, -1] >> fx.ACT_SHIFT
    total = readouts[name].sum(axis=1)
    if r.bias is not None:
        total = total + r.bias * graph.timesteps
    return total


def predictions(graph: QGraph, readouts: dict[str, np.ndarray]) -> np.ndarray:
    """The predicted class of every sample, int64 [N]: the first largest score
    (:func:`readout_scores`; ties go to the lowest class index, as ``np.argmax``)."""
    return np.argmax(readout_scores(graph, readouts), axis=1)

"""Conversion: trained checkpoint -> float NIR graph -> integer (Loihi) graph.

The public API of this stage (what the CLIs call):

- :func:`convert.to_nir.checkpoint_to_nir` -- a checkpoint as a float ``nir.NIRGraph``;
- :func:`convert.nir_import.import_nir` -- any NIR graph as a float graph (:class:`FGraph`);
- :func:`convert.quantize.quantize` -- float graph -> integer :class:`core.graph.QGraph` + report;
- :func:`load_graph` -- any NIR file straight to the integer graph a target runs.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from convert.nir_import import import_nir
from convert.quantize import quantize
from core.graph import QGraph
from core.nir_ext import read_nir
from core.nir_io import from_nir, is_integer_graph

__all__ = ["load_graph", "import_nir", "quantize"]


def load_graph(
    path: str | Path, *, dt: float | None = None, timesteps: int | None = None,
    input_kind: str | None = None, input_bitplanes: bool = False,
) -> tuple[QGraph, dict[str, Any]]:
    """Any NIR file -> ``(integer graph, quantization report)``.

    Integer files (written by ``convert.quantize``) are read as they are; float ones (ours or
    another framework's) are imported and quantized. ``dt`` (s), ``timesteps`` and
    ``input_kind`` fill in what a foreign file does not record.

    Raises:
        GraphError: the file is unreadable, or the graph cannot be imported or quantized.
    """
    g = read_nir(path)
    if is_integer_graph(g):
        qg = from_nir(g)
        if timesteps:
            qg = replace(qg, timesteps=timesteps)
        rep = qg.metadata.get("quantization_report")
        return qg, (json.loads(rep) if isinstance(rep, str) else {})
    return quantize(import_nir(g, dt=dt, timesteps=timesteps, input_kind=input_kind),
                    input_bitplanes=input_bitplanes)
